//! The apply task: a thread that owns the application. The driver hands it committed
//! entries (in order), snapshots to restore, proposers to answer and confirmed reads; it
//! applies, answers, serves reads once their index is applied, and takes snapshots by
//! policy, which it reports back to the driver for the log's compaction. Applying thus
//! overlaps with the driver's next write and fsync.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::Receiver;

use bytes::{BufMut, Bytes, BytesMut};
use conclave_consensus::{Entry, EntryKind, Membership, Snapshot};
use tokio::sync::{mpsc, oneshot};

use crate::node::application::Application;
use crate::node::envelope::{self, Envelope};
use crate::node::error::NodeError;

/// A reply channel.
pub type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// Who waits for the entry at an index.
#[derive(Debug)]
pub enum Waiter {
    /// A proposer, answered with the application's output.
    Output(Reply<Bytes>),
    /// A membership change, answered once applied.
    Done(Reply<()>),
}

impl Waiter {
    fn fail(self, error: NodeError) {
        match self {
            Waiter::Output(reply) => drop(reply.send(Err(error))),
            Waiter::Done(reply) => drop(reply.send(Err(error))),
        }
    }
}

/// Work for the apply task, carried out in the order sent.
#[derive(Debug)]
pub enum Work {
    /// Committed entries, in log order.
    Entries(Vec<Entry>),
    /// Replace the application's state with a snapshot installed from the leader.
    Restore(Snapshot),
    /// Answer `waiter` when the entry at `index` is applied: with its outcome if the entry
    /// has `term`, with `Dropped` otherwise.
    Await {
        index: u64,
        term: u64,
        waiter: Waiter,
    },
    /// Serve a confirmed read once `index` is applied.
    Read {
        index: u64,
        query: Bytes,
        reply: Reply<Bytes>,
    },
    /// Answer from the applied state now.
    LocalQuery(Bytes, oneshot::Sender<(u64, Bytes)>),
}

/// A snapshot the apply task took, for the driver to store and compact the log up to.
#[derive(Debug)]
pub struct Taken {
    /// The last index the snapshot covers.
    pub index: u64,
    /// Log time, then the application's bytes.
    pub data: Bytes,
    /// The membership in force at `index`.
    pub membership: Membership,
}

/// The apply task's state.
pub struct Applier {
    application: Box<dyn Application>,
    applied: u64,
    log_time_ms: u64,
    membership: Membership,
    waiters: HashMap<u64, (u64, Waiter)>,
    reads: BTreeMap<u64, Vec<(Bytes, Reply<Bytes>)>>,
    since_snapshot_entries: u64,
    since_snapshot_bytes: u64,
    snapshot_entries_threshold: u64,
    snapshot_bytes_threshold: u64,
    taken: mpsc::UnboundedSender<Taken>,
}

/// The log time stored in front of the application's snapshot.
const SNAPSHOT_HEADER_BYTES: usize = 8;

impl Applier {
    /// An apply task starting from `snapshot` (restored into `application`).
    pub fn new(
        mut application: Box<dyn Application>,
        snapshot: &Snapshot,
        thresholds: (u64, u64),
        taken: mpsc::UnboundedSender<Taken>,
    ) -> Result<Applier, NodeError> {
        let log_time_ms = restore(application.as_mut(), &snapshot.data)?;
        Ok(Applier {
            application,
            applied: snapshot.metadata.index,
            log_time_ms,
            membership: snapshot.metadata.membership.clone(),
            waiters: HashMap::new(),
            reads: BTreeMap::new(),
            since_snapshot_entries: 0,
            since_snapshot_bytes: 0,
            snapshot_entries_threshold: thresholds.0,
            snapshot_bytes_threshold: thresholds.1,
            taken,
        })
    }

    /// Runs until the driver drops its end; then answers everyone still waiting.
    pub fn run(mut self, work: Receiver<Work>) -> Result<(), NodeError> {
        let result = self.run_loop(work);
        for (_, (_, waiter)) in self.waiters.drain() {
            waiter.fail(NodeError::Stopped);
        }
        for (_, reads) in std::mem::take(&mut self.reads) {
            for (_, reply) in reads {
                let _ = reply.send(Err(NodeError::Stopped));
            }
        }
        result
    }

    fn run_loop(&mut self, work: Receiver<Work>) -> Result<(), NodeError> {
        while let Ok(item) = work.recv() {
            match item {
                Work::Entries(entries) => {
                    for entry in &entries {
                        self.apply(entry)?;
                    }
                    self.serve_reads();
                    self.maybe_snapshot()?;
                }
                Work::Restore(snapshot) => self.restore(snapshot)?,
                Work::Await {
                    index,
                    term,
                    waiter,
                } => {
                    if index <= self.applied {
                        // Covered by a snapshot installed meanwhile: the outcome is unknown.
                        waiter.fail(NodeError::Dropped);
                    } else {
                        self.waiters.insert(index, (term, waiter));
                    }
                }
                Work::Read {
                    index,
                    query,
                    reply,
                } => {
                    self.reads.entry(index).or_default().push((query, reply));
                    self.serve_reads();
                }
                Work::LocalQuery(query, reply) => {
                    let _ = reply.send((self.applied, self.application.query(&query)));
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, entry: &Entry) -> Result<(), NodeError> {
        assert!(
            entry.index == self.applied + 1,
            "entries applied out of order"
        );
        self.applied = entry.index;
        self.since_snapshot_entries += 1;
        self.since_snapshot_bytes += entry.payload.len() as u64;
        let output = match entry.kind {
            EntryKind::Normal => match envelope::decode(&entry.payload) {
                Some(Envelope::Command { stamp_ms, command }) => {
                    self.log_time_ms = self.log_time_ms.max(stamp_ms);
                    self.application
                        .apply(entry.index, self.log_time_ms, &command)
                }
                Some(Envelope::Tick { stamp_ms }) => {
                    self.log_time_ms = self.log_time_ms.max(stamp_ms);
                    self.application.advance_time(entry.index, self.log_time_ms);
                    Bytes::new()
                }
                None => {
                    tracing::warn!(index = entry.index, "entry without envelope skipped");
                    Bytes::new()
                }
            },
            EntryKind::Membership => {
                self.membership = Membership::decode(&entry.payload)
                    .map_err(|error| NodeError::Storage(format!("membership entry: {error}")))?;
                Bytes::new()
            }
            EntryKind::Noop => Bytes::new(),
        };
        if let Some((term, waiter)) = self.waiters.remove(&entry.index) {
            match (term == entry.term, waiter) {
                (true, Waiter::Output(reply)) => drop(reply.send(Ok(output))),
                (true, Waiter::Done(reply)) => drop(reply.send(Ok(()))),
                (false, waiter) => waiter.fail(NodeError::Dropped),
            }
        }
        Ok(())
    }

    fn restore(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        self.log_time_ms = restore(self.application.as_mut(), &snapshot.data)?;
        self.applied = snapshot.metadata.index;
        self.membership = snapshot.metadata.membership;
        self.since_snapshot_entries = 0;
        self.since_snapshot_bytes = 0;
        // Proposals the snapshot covers can no longer be matched to their outcome; their
        // clients must retry (exactly-once is the session layer's job).
        let covered: Vec<u64> = self
            .waiters
            .keys()
            .copied()
            .filter(|i| *i <= self.applied)
            .collect();
        for index in covered {
            if let Some((_, waiter)) = self.waiters.remove(&index) {
                waiter.fail(NodeError::Dropped);
            }
        }
        self.serve_reads();
        Ok(())
    }

    fn serve_reads(&mut self) {
        let later = self.reads.split_off(&(self.applied + 1));
        for (_, reads) in std::mem::replace(&mut self.reads, later) {
            for (query, reply) in reads {
                let _ = reply.send(Ok(self.application.query(&query)));
            }
        }
    }

    fn maybe_snapshot(&mut self) -> Result<(), NodeError> {
        let due = self.since_snapshot_entries >= self.snapshot_entries_threshold
            || self.since_snapshot_bytes >= self.snapshot_bytes_threshold;
        if !due {
            return Ok(());
        }
        let mut data = BytesMut::new();
        data.put_u64_le(self.log_time_ms);
        let mut writer = data.writer();
        self.application
            .snapshot(&mut writer)
            .map_err(|error| NodeError::Application(error.to_string()))?;
        let taken = Taken {
            index: self.applied,
            data: writer.into_inner().freeze(),
            membership: self.membership.clone(),
        };
        self.since_snapshot_entries = 0;
        self.since_snapshot_bytes = 0;
        // The driver may have stopped; then the snapshot is simply not stored.
        let _ = self.taken.send(taken);
        Ok(())
    }
}

/// Restores the application from snapshot data (log time, then the application's bytes);
/// the empty initial snapshot leaves it as it is.
fn restore(application: &mut dyn Application, data: &Bytes) -> Result<u64, NodeError> {
    if data.is_empty() {
        return Ok(0);
    }
    if data.len() < SNAPSHOT_HEADER_BYTES {
        return Err(NodeError::Application(
            "snapshot shorter than its header".into(),
        ));
    }
    let mut stamp = [0u8; SNAPSHOT_HEADER_BYTES];
    stamp.copy_from_slice(&data[..SNAPSHOT_HEADER_BYTES]);
    let mut reader = &data[SNAPSHOT_HEADER_BYTES..];
    application
        .restore(&mut reader)
        .map_err(|error| NodeError::Application(error.to_string()))?;
    Ok(u64::from_le_bytes(stamp))
}
