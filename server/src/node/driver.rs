//! The driver: one thread that owns the core, the storage and the application, and carries
//! out each `Ready` in the order documented on `conclave_consensus::Ready`. It makes no
//! Raft decision of its own.
//!
//! For each batch: (1) send `messages` at once, so that the leader replicates while it
//! writes its own copy (group commit: every proposal gathered since the last batch shares
//! this one write and fsync); (2) install `snapshot`, append `entries`, record `hard_state`,
//! fsync if `must_sync`; (3) send `persisted_messages`; (4) apply `committed_entries` and
//! queue `read_states`; (5) `advance`. Then serve the reads whose index is applied, answer
//! the proposers, and take a snapshot if the policy asks for one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use conclave_consensus::{
    Entry, EntryKind, MembershipChange, Message, MessageKind, NodeId, RawNode, Ready, Role, Status,
};
use conclave_transport::Transport;
use tokio::sync::{mpsc, oneshot};

use crate::node::application::Application;
use crate::node::config::NodeConfig;
use crate::node::envelope::{self, Envelope};
use crate::node::error::NodeError;
use crate::node::storage::LogStorage;

/// A reply channel.
pub type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// What clients of the node ask the driver.
#[derive(Debug)]
pub enum Request {
    /// Replicate and apply a command; the reply carries the application's output.
    Propose(Bytes, Reply<Bytes>),
    /// A linearizable read (ReadIndex); the reply carries the application's answer.
    Read(Bytes, Reply<Bytes>),
    /// A membership change; answered once its entry is applied.
    ChangeMembership(Vec<MembershipChange>, Reply<()>),
    /// Hand leadership to a voter; answered once the core accepted the request.
    TransferLeadership(NodeId, Reply<()>),
    /// A sequential read served from this replica's applied state, without a quorum round.
    LocalQuery(Bytes, oneshot::Sender<(u64, Bytes)>),
    /// The core's status.
    Status(oneshot::Sender<Status>),
    /// Stop after the current batch.
    Stop,
}

enum Waiter {
    Output(Reply<Bytes>),
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

/// The driver's state, owned by its thread.
pub struct Driver {
    config: NodeConfig,
    raw: RawNode<LogStorage>,
    application: Box<dyn Application>,
    transport: Arc<dyn Transport>,
    inbox: mpsc::Receiver<Message>,
    requests: mpsc::Receiver<Request>,
    runtime: tokio::runtime::Handle,
    /// Proposals by log index, with the term they were proposed in.
    waiters: HashMap<u64, (u64, Waiter)>,
    /// Reads asked of the core, by request id.
    reads_asked: HashMap<u64, (Bytes, Reply<Bytes>)>,
    /// Reads confirmed at an index, waiting for it to be applied.
    reads_confirmed: BTreeMap<u64, Vec<(Bytes, Reply<Bytes>)>>,
    read_id_next: u64,
    log_time_ms: u64,
    applied_since_snapshot_entries: u64,
    applied_since_snapshot_bytes: u64,
    ticks_since_proposal: u64,
    stopping: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// The log time stored in front of the application's snapshot.
const SNAPSHOT_HEADER_BYTES: usize = 8;

enum Input {
    Tick,
    Message(Message),
    Request(Request),
    Closed,
}

impl Driver {
    /// Builds the driver: restores the application from the newest snapshot and starts the
    /// core from storage.
    pub fn new(
        config: NodeConfig,
        storage: LogStorage,
        mut application: Box<dyn Application>,
        transport: Arc<dyn Transport>,
        inbox: mpsc::Receiver<Message>,
        requests: mpsc::Receiver<Request>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Driver, NodeError> {
        let log_time_ms = restore(application.as_mut(), &storage.current_snapshot().data)?;
        let raw = RawNode::new(config.consensus_config(), storage)?;
        Ok(Driver {
            config,
            raw,
            application,
            transport,
            inbox,
            requests,
            runtime,
            waiters: HashMap::new(),
            reads_asked: HashMap::new(),
            reads_confirmed: BTreeMap::new(),
            read_id_next: 1,
            log_time_ms,
            applied_since_snapshot_entries: 0,
            applied_since_snapshot_bytes: 0,
            ticks_since_proposal: 0,
            stopping: false,
        })
    }

    /// Runs until stopped or until storage fails; every waiting client is then answered
    /// with `Stopped`.
    pub fn run(mut self) -> Result<(), NodeError> {
        let tick = Duration::from_millis(self.config.tick_interval_ms);
        let mut ticker = {
            let _entered = self.runtime.enter();
            let mut ticker = tokio::time::interval(tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        };
        let result = self.run_loop(&mut ticker);
        if let Err(error) = &result {
            tracing::error!(node = self.config.id, %error, "node stops");
        }
        for (_, (_, waiter)) in self.waiters.drain() {
            waiter.fail(NodeError::Stopped);
        }
        for (_, (_, reply)) in self.reads_asked.drain() {
            let _ = reply.send(Err(NodeError::Stopped));
        }
        for (_, reads) in std::mem::take(&mut self.reads_confirmed) {
            for (_, reply) in reads {
                let _ = reply.send(Err(NodeError::Stopped));
            }
        }
        result
    }

    fn run_loop(&mut self, ticker: &mut tokio::time::Interval) -> Result<(), NodeError> {
        while !self.stopping {
            let input = {
                let inbox = &mut self.inbox;
                let requests = &mut self.requests;
                self.runtime.block_on(async {
                    tokio::select! {
                        biased;
                        _ = ticker.tick() => Input::Tick,
                        message = inbox.recv() => message.map_or(Input::Closed, Input::Message),
                        request = requests.recv() => request.map_or(Input::Closed, Input::Request),
                    }
                })
            };
            let mut proposals = Vec::new();
            match input {
                Input::Closed => return Ok(()),
                Input::Tick => self.tick()?,
                Input::Message(message) => self.step(message),
                Input::Request(request) => self.handle_request(request, &mut proposals),
            }
            for _ in 0..self.config.inbox_messages_max {
                match self.inbox.try_recv() {
                    Ok(message) => self.step(message),
                    Err(_) => break,
                }
            }
            while proposals.len() < self.config.proposal_batch_entries_max {
                match self.requests.try_recv() {
                    Ok(request) => self.handle_request(request, &mut proposals),
                    Err(_) => break,
                }
            }
            self.propose(proposals);
            while self.raw.has_ready() {
                let ready = self.raw.ready()?;
                self.carry_out(ready)?;
            }
        }
        Ok(())
    }

    fn step(&mut self, mut message: Message) {
        if message.kind == MessageKind::Heartbeat {
            // The leader caps a heartbeat's commit at what it believes this node holds; a
            // node whose data directory was wiped holds less, and the core asserts that a
            // commit never passes its last index. Knowing less of the commit is always safe,
            // and the append that follows repairs the log (through a snapshot if needed).
            let last_index = self.raw.status().last_index;
            message.commit = message.commit.min(last_index);
        }
        // A message the core refuses (stale, from a removed node) changes nothing.
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(node = self.config.id, %error, "message refused");
        }
    }

    fn tick(&mut self) -> Result<(), NodeError> {
        self.raw.tick()?;
        self.ticks_since_proposal += 1;
        let is_leader = self.raw.status().soft_state.role == Role::Leader;
        if is_leader && self.ticks_since_proposal >= self.config.time_tick_interval_ticks {
            self.ticks_since_proposal = 0;
            // Refusals (a transfer in progress) only delay the next tick entry.
            let _ = self.raw.propose(vec![envelope::tick(now_ms())]);
        }
        Ok(())
    }

    fn handle_request(&mut self, request: Request, proposals: &mut Vec<(Bytes, Reply<Bytes>)>) {
        match request {
            Request::Propose(command, reply) => {
                if command.len() > self.config.command_bytes_max {
                    let reason = format!("command of {} bytes", command.len());
                    let _ = reply.send(Err(NodeError::Refused(reason)));
                } else {
                    proposals.push((envelope::command(now_ms(), &command), reply));
                }
            }
            Request::Read(query, reply) => {
                let id = self.read_id_next;
                self.read_id_next += 1;
                match self.raw.read_index(id) {
                    Ok(()) => {
                        self.reads_asked.insert(id, (query, reply));
                    }
                    Err(error) => drop(reply.send(Err(error.into()))),
                }
            }
            Request::ChangeMembership(changes, reply) => {
                match self.raw.propose_membership(&changes) {
                    Ok(receipt) => {
                        self.waiters
                            .insert(receipt.last_index, (receipt.term, Waiter::Done(reply)));
                    }
                    Err(error) => drop(reply.send(Err(error.into()))),
                }
            }
            Request::TransferLeadership(target, reply) => {
                let _ = reply.send(
                    self.raw
                        .transfer_leadership(target)
                        .map_err(NodeError::from),
                );
            }
            Request::LocalQuery(query, reply) => {
                let applied = self.raw.status().applied;
                let _ = reply.send((applied, self.application.query(&query)));
            }
            Request::Status(reply) => drop(reply.send(self.raw.status())),
            Request::Stop => self.stopping = true,
        }
    }

    fn propose(&mut self, proposals: Vec<(Bytes, Reply<Bytes>)>) {
        if proposals.is_empty() {
            return;
        }
        self.ticks_since_proposal = 0;
        let (payloads, replies): (Vec<Bytes>, Vec<Reply<Bytes>>) = proposals.into_iter().unzip();
        match self.raw.propose(payloads) {
            Ok(receipt) => {
                for (index, reply) in (receipt.first_index..=receipt.last_index).zip(replies) {
                    self.waiters
                        .insert(index, (receipt.term, Waiter::Output(reply)));
                }
            }
            Err(error) => {
                let error = NodeError::from(error);
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    fn send_all(&self, messages: Vec<Message>) {
        for message in messages {
            self.transport.send(message);
        }
    }

    fn carry_out(&mut self, mut ready: Ready) -> Result<(), NodeError> {
        // 1. The leader's own traffic goes out before its write (replication in parallel).
        self.send_all(std::mem::take(&mut ready.messages));
        // 2. Persist: snapshot, entries, hard state; fsync if asked.
        if let Some(snapshot) = &ready.snapshot {
            self.log_time_ms = restore(self.application.as_mut(), &snapshot.data)?;
            self.raw.storage_mut().install_snapshot(snapshot.clone())?;
            self.fail_waiters_up_to(snapshot.metadata.index);
            self.applied_since_snapshot_entries = 0;
            self.applied_since_snapshot_bytes = 0;
        }
        self.raw.storage_mut().append(&ready.entries)?;
        if ready.must_sync {
            self.raw.storage_mut().sync()?;
        }
        if let Some(hard_state) = ready.hard_state {
            self.raw
                .storage_mut()
                .set_hard_state(hard_state, ready.must_sync)?;
        }
        // 3. Acknowledgements and votes promise what step 2 made durable.
        self.send_all(std::mem::take(&mut ready.persisted_messages));
        // 4. Apply, and queue confirmed reads.
        // The batch keeps its committed entries: `advance` learns the applied index from them.
        for entry in &ready.committed_entries {
            self.apply(entry);
        }
        for read_state in std::mem::take(&mut ready.read_states) {
            if let Some(read) = self.reads_asked.remove(&read_state.request_id) {
                self.reads_confirmed
                    .entry(read_state.index)
                    .or_default()
                    .push(read);
            }
        }
        // 5. Close the batch.
        self.raw.advance(ready)?;
        self.serve_reads();
        self.fail_reads_if_not_leader();
        self.maybe_snapshot()
    }

    fn apply(&mut self, entry: &Entry) {
        self.applied_since_snapshot_entries += 1;
        self.applied_since_snapshot_bytes += entry.payload.len() as u64;
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
            EntryKind::Noop | EntryKind::Membership => Bytes::new(),
        };
        if let Some((term, waiter)) = self.waiters.remove(&entry.index) {
            match (term == entry.term, waiter) {
                (true, Waiter::Output(reply)) => drop(reply.send(Ok(output))),
                (true, Waiter::Done(reply)) => drop(reply.send(Ok(()))),
                (false, waiter) => waiter.fail(NodeError::Dropped),
            }
        }
    }

    /// Proposals at or below an installed snapshot's index can no longer be matched to their
    /// outcome; their clients must retry (a retry may apply twice: exactly-once is the
    /// session layer's job).
    fn fail_waiters_up_to(&mut self, index: u64) {
        let covered: Vec<u64> = self
            .waiters
            .keys()
            .copied()
            .filter(|i| *i <= index)
            .collect();
        for waiter_index in covered {
            if let Some((_, waiter)) = self.waiters.remove(&waiter_index) {
                waiter.fail(NodeError::Dropped);
            }
        }
    }

    fn serve_reads(&mut self) {
        let applied = self.raw.status().applied;
        let later = self.reads_confirmed.split_off(&(applied + 1));
        for (_, reads) in std::mem::replace(&mut self.reads_confirmed, later) {
            for (query, reply) in reads {
                let _ = reply.send(Ok(self.application.query(&query)));
            }
        }
    }

    /// Reads asked of a leader that lost its role are never confirmed; answer them now.
    fn fail_reads_if_not_leader(&mut self) {
        let status = self.raw.status();
        if status.soft_state.role == Role::Leader || self.reads_asked.is_empty() {
            return;
        }
        for (_, (_, reply)) in self.reads_asked.drain() {
            let _ = reply.send(Err(NodeError::NotLeader {
                leader: status.soft_state.leader,
            }));
        }
    }

    fn maybe_snapshot(&mut self) -> Result<(), NodeError> {
        let due = self.applied_since_snapshot_entries >= self.config.snapshot_entries_threshold
            || self.applied_since_snapshot_bytes >= self.config.snapshot_bytes_threshold;
        if !due {
            return Ok(());
        }
        let status = self.raw.status();
        let mut data = BytesMut::new();
        data.put_u64_le(self.log_time_ms);
        let mut writer = data.writer();
        self.application
            .snapshot(&mut writer)
            .map_err(|error| NodeError::Application(error.to_string()))?;
        let data = writer.into_inner().freeze();
        self.raw
            .storage_mut()
            .compact(status.applied, data, status.membership)?;
        self.applied_since_snapshot_entries = 0;
        self.applied_since_snapshot_bytes = 0;
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
