//! The driver: one thread that owns the core and the storage, and carries out each `Ready`
//! in the order documented on `conclave_consensus::Ready`. It makes no Raft decision of its
//! own. The application lives on the apply task (`apply.rs`).
//!
//! For each batch: (1) send `messages` at once; (2) install `snapshot`, write `entries`,
//! record `hard_state`; (3) send `persisted_messages`; (4) hand `committed_entries` and
//! confirmed `read_states` to the apply task, in order; (5) `advance`. Snapshots the apply
//! task takes come back here to be stored and to compact the log.
//!
//! Step 2 has two ways (thesis 10.2.1, etcd-raft's asynchronous storage writes). When the
//! batch's entries continue the log and nothing in it must be durable before the driver
//! goes on (no `persisted_messages`, no snapshot) — the leader's own appends — they are
//! queued to conclave-log's group-commit writer, the batch is closed with
//! `advance_async`, and the driver goes on stepping acknowledgements and proposing while
//! the writer appends and fsyncs; a watcher thread waits for each write's ticket and
//! reports it back, and the driver tells the core (`entries_persisted`), which only then
//! counts the leader's own copy. Otherwise (a follower about to acknowledge, a vote, a
//! replacement of part of the log, a snapshot) the driver first waits for every queued
//! write, then writes and fsyncs in place and closes the batch with `advance`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use conclave_consensus::{MembershipChange, Message, NodeId, RawNode, Ready, Role, Status};
use conclave_log::Ticket;
use conclave_transport::Transport;
use tokio::sync::{mpsc, oneshot};

use crate::node::apply::{Reply, Taken, Waiter, Work};
use crate::node::config::NodeConfig;
use crate::node::envelope;
use crate::node::error::NodeError;
use crate::node::storage::LogStorage;

/// What clients of the node ask the driver.
#[derive(Debug)]
pub enum Request {
    /// Replicate and apply a command; the reply carries the application's output.
    Propose(Bytes, Reply<Bytes>),
    /// A linearizable read (ReadIndex); the reply carries the application's answer.
    Read(Bytes, Reply<Bytes>),
    /// A ReadIndex forwarded by a follower: the reply carries the index the leader
    /// confirmed with a quorum.
    ReadIndex(Reply<u64>),
    /// A read whose index the leader confirmed: served here once applied reaches it.
    ReadAt(u64, Bytes, Reply<Bytes>),
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

/// The driver's state, owned by its thread.
pub struct Driver {
    config: NodeConfig,
    raw: RawNode<LogStorage>,
    transport: Arc<dyn Transport>,
    inbox: mpsc::Receiver<Message>,
    requests: mpsc::Receiver<Request>,
    /// The apply task's queue (bounded: a slow application slows the driver down).
    work: SyncSender<Work>,
    /// Snapshots the apply task took.
    taken: mpsc::UnboundedReceiver<Taken>,
    /// Reads asked of the core, by request id.
    reads_asked: HashMap<u64, AskedRead>,
    read_id_next: u64,
    ticks_since_proposal: u64,
    ticks_since_commit_persisted: u64,
    /// Queued writes, for the watcher thread to wait on; `None` once the driver ends.
    writes: Option<std::sync::mpsc::Sender<QueuedWrite>>,
    /// The watcher's reports, in the order the writes were queued.
    durable: mpsc::UnboundedReceiver<DurableWrite>,
    watcher: Option<JoinHandle<()>>,
    /// Writes queued and not yet reported.
    writes_in_flight: usize,
    /// Writes reported durable that the core has not been told of yet: it is told between
    /// batches, never while one is outstanding.
    durable_unreported: Vec<(u64, u64)>,
    stopping: bool,
}

/// A read waiting for the core to confirm its index.
enum AskedRead {
    /// Served here, by the apply task, once the index is applied.
    Query(Bytes, Reply<Bytes>),
    /// Forwarded by a follower, which serves it: answered with the index alone.
    Index(Reply<u64>),
}

impl AskedRead {
    fn fail(self, error: NodeError) {
        match self {
            AskedRead::Query(_, reply) => drop(reply.send(Err(error))),
            AskedRead::Index(reply) => drop(reply.send(Err(error))),
        }
    }
}

/// A write queued to the group-commit writer: its ticket and its last entry.
struct QueuedWrite {
    ticket: Ticket,
    index: u64,
    term: u64,
}

/// The watcher's report of a queued write.
struct DurableWrite {
    index: u64,
    term: u64,
    result: Result<(), NodeError>,
}

/// Waits for each queued write in turn (the writer completes them in order) and reports it.
fn watch_writes(
    writes: std::sync::mpsc::Receiver<QueuedWrite>,
    reports: mpsc::UnboundedSender<DurableWrite>,
) {
    while let Ok(write) = writes.recv() {
        let result = write.ticket.wait().map(drop).map_err(NodeError::from);
        let report = DurableWrite {
            index: write.index,
            term: write.term,
            result,
        };
        if reports.send(report).is_err() {
            return;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

enum Input {
    Tick,
    Message(Message),
    Request(Request),
    Taken(Taken),
    Durable(DurableWrite),
    Closed,
}

/// The channels that connect the driver to its clients, its transport and its apply task.
pub struct Channels {
    /// Messages the transport received for this node.
    pub inbox: mpsc::Receiver<Message>,
    /// Client requests.
    pub requests: mpsc::Receiver<Request>,
    /// The apply task's queue.
    pub work: SyncSender<Work>,
    /// Snapshots the apply task took.
    pub taken: mpsc::UnboundedReceiver<Taken>,
}

impl Driver {
    /// Builds the driver: starts the core from storage and the watcher of queued writes.
    pub fn new(
        config: NodeConfig,
        storage: LogStorage,
        transport: Arc<dyn Transport>,
        channels: Channels,
    ) -> Result<Driver, NodeError> {
        let raw = RawNode::new(config.consensus_config(), storage)?;
        let (writes, writes_receiver) = std::sync::mpsc::channel();
        let (reports, durable) = mpsc::unbounded_channel();
        let watcher = std::thread::Builder::new()
            .name(format!("conclave-durable-{}", config.id))
            .spawn(move || watch_writes(writes_receiver, reports))
            .map_err(|error| NodeError::Storage(format!("spawn write watcher: {error}")))?;
        Ok(Driver {
            config,
            raw,
            transport,
            inbox: channels.inbox,
            requests: channels.requests,
            work: channels.work,
            taken: channels.taken,
            reads_asked: HashMap::new(),
            read_id_next: 1,
            ticks_since_proposal: 0,
            ticks_since_commit_persisted: 0,
            writes: Some(writes),
            durable,
            watcher: Some(watcher),
            writes_in_flight: 0,
            durable_unreported: Vec::new(),
            stopping: false,
        })
    }

    /// Runs until stopped, until its inputs close (the runtime that served the peer
    /// protocol shut down) or until storage fails; waiting clients are then answered with
    /// `Stopped` (here, or by the apply task once the driver drops its queue). The driver
    /// keeps its ticks on a runtime of its own, so that the caller's runtime may shut down
    /// first without the driver panicking.
    pub fn run(mut self) -> Result<(), NodeError> {
        let result = self
            .run_on_own_runtime()
            .and_then(|()| self.finish_writes());
        if let Err(error) = &result {
            tracing::error!(node = self.config.id, %error, "node stops");
        }
        for (_, read) in self.reads_asked.drain() {
            read.fail(NodeError::Stopped);
        }
        self.writes = None;
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        result
    }

    fn run_on_own_runtime(&mut self) -> Result<(), NodeError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|error| NodeError::Storage(format!("driver runtime: {error}")))?;
        let tick = Duration::from_millis(self.config.tick_interval_ms);
        let mut ticker = {
            let _entered = runtime.enter();
            let mut ticker = tokio::time::interval(tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        };
        self.run_loop(&runtime, &mut ticker)
    }

    /// Lets queued writes complete and saves the commit index, so that a stopped node holds
    /// on disk everything it acknowledged or applied.
    fn finish_writes(&mut self) -> Result<(), NodeError> {
        self.wait_for_writes()?;
        self.raw.storage_mut().persist_commit()
    }

    fn next_input(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        ticker: &mut tokio::time::Interval,
    ) -> Input {
        let inbox = &mut self.inbox;
        let requests = &mut self.requests;
        let taken = &mut self.taken;
        let durable = &mut self.durable;
        runtime.block_on(async {
            tokio::select! {
                biased;
                _ = ticker.tick() => Input::Tick,
                write = durable.recv() => write.map_or(Input::Closed, Input::Durable),
                snapshot = taken.recv() => snapshot.map_or(Input::Closed, Input::Taken),
                message = inbox.recv() => message.map_or(Input::Closed, Input::Message),
                request = requests.recv() => request.map_or(Input::Closed, Input::Request),
            }
        })
    }

    fn run_loop(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        ticker: &mut tokio::time::Interval,
    ) -> Result<(), NodeError> {
        while !self.stopping {
            let mut proposals = Vec::new();
            match self.next_input(runtime, ticker) {
                Input::Closed => return Ok(()),
                Input::Tick => self.tick()?,
                Input::Message(message) => self.step(message),
                Input::Request(request) => self.handle_request(request, &mut proposals)?,
                Input::Durable(write) => self.on_durable(write)?,
                Input::Taken(taken) => {
                    // Compaction needs the log durable up to the snapshot's index.
                    self.wait_for_writes()?;
                    self.report_durable()?;
                    self.raw
                        .storage_mut()
                        .compact(taken.index, taken.data, taken.membership)?;
                }
            }
            while let Ok(write) = self.durable.try_recv() {
                self.on_durable(write)?;
            }
            for _ in 0..self.config.inbox_messages_max {
                match self.inbox.try_recv() {
                    Ok(message) => self.step(message),
                    Err(_) => break,
                }
            }
            while proposals.len() < self.config.proposal_batch_entries_max {
                match self.requests.try_recv() {
                    Ok(request) => self.handle_request(request, &mut proposals)?,
                    Err(_) => break,
                }
            }
            self.propose(proposals)?;
            while self.raw.has_ready() {
                let ready = self.raw.ready()?;
                self.carry_out(ready)?;
            }
        }
        Ok(())
    }

    /// A queued write completed: the core learns it at once (no batch is outstanding).
    fn on_durable(&mut self, write: DurableWrite) -> Result<(), NodeError> {
        self.writes_in_flight -= 1;
        write.result?;
        self.durable_unreported.push((write.index, write.term));
        self.report_durable()
    }

    /// Tells the core of the writes reported durable.
    fn report_durable(&mut self) -> Result<(), NodeError> {
        for (index, term) in std::mem::take(&mut self.durable_unreported) {
            self.raw.entries_persisted(index, term)?;
        }
        Ok(())
    }

    /// Blocks until every queued write is durable (the reports wait for `report_durable`).
    fn wait_for_writes(&mut self) -> Result<(), NodeError> {
        while self.writes_in_flight > 0 {
            // The driver's thread is outside any runtime here, so a blocking receive is
            // allowed.
            let write = self.durable.blocking_recv().ok_or(NodeError::Stopped)?;
            self.writes_in_flight -= 1;
            write.result?;
            self.durable_unreported.push((write.index, write.term));
        }
        Ok(())
    }

    fn hand(&self, work: Work) -> Result<(), NodeError> {
        self.work.send(work).map_err(|_| NodeError::Stopped)
    }

    fn step(&mut self, message: Message) {
        // A message the core refuses (stale, from a removed node) changes nothing.
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(node = self.config.id, %error, "message refused");
        }
    }

    fn tick(&mut self) -> Result<(), NodeError> {
        self.raw.tick()?;
        self.ticks_since_proposal += 1;
        self.ticks_since_commit_persisted += 1;
        if self.ticks_since_commit_persisted >= self.config.commit_persist_interval_ticks {
            self.ticks_since_commit_persisted = 0;
            self.raw.storage_mut().persist_commit()?;
        }
        let is_leader = self.raw.status().soft_state.role == Role::Leader;
        if is_leader && self.ticks_since_proposal >= self.config.time_tick_interval_ticks {
            self.ticks_since_proposal = 0;
            // Refusals (a transfer in progress) only delay the next tick entry.
            let _ = self.raw.propose(vec![envelope::tick(now_ms())]);
        }
        Ok(())
    }

    fn handle_request(
        &mut self,
        request: Request,
        proposals: &mut Vec<(Bytes, Reply<Bytes>)>,
    ) -> Result<(), NodeError> {
        match request {
            Request::Propose(command, reply) => {
                if command.len() > self.config.command_bytes_max {
                    let reason = format!("command of {} bytes", command.len());
                    let _ = reply.send(Err(NodeError::Refused(reason)));
                } else {
                    proposals.push((envelope::command(now_ms(), &command), reply));
                }
            }
            Request::Read(query, reply) => self.ask_read(AskedRead::Query(query, reply)),
            Request::ReadIndex(reply) => self.ask_read(AskedRead::Index(reply)),
            Request::ReadAt(index, query, reply) => self.hand(Work::Read {
                index,
                query,
                reply,
            })?,
            Request::ChangeMembership(changes, reply) => {
                match self.raw.propose_membership(&changes) {
                    Ok(receipt) => self.hand(Work::Await {
                        index: receipt.last_index,
                        term: receipt.term,
                        waiter: Waiter::Done(reply),
                    })?,
                    Err(error) => drop(reply.send(Err(error.into()))),
                }
            }
            Request::TransferLeadership(target, reply) => {
                let result = self
                    .raw
                    .transfer_leadership(target)
                    .map_err(NodeError::from);
                let _ = reply.send(result);
            }
            Request::LocalQuery(query, reply) => self.hand(Work::LocalQuery(query, reply))?,
            Request::Status(reply) => drop(reply.send(self.raw.status())),
            Request::Stop => self.stopping = true,
        }
        Ok(())
    }

    fn ask_read(&mut self, read: AskedRead) {
        let id = self.read_id_next;
        self.read_id_next += 1;
        match self.raw.read_index(id) {
            Ok(()) => {
                self.reads_asked.insert(id, read);
            }
            Err(error) => read.fail(error.into()),
        }
    }

    fn propose(&mut self, proposals: Vec<(Bytes, Reply<Bytes>)>) -> Result<(), NodeError> {
        if proposals.is_empty() {
            return Ok(());
        }
        self.ticks_since_proposal = 0;
        let (payloads, replies): (Vec<Bytes>, Vec<Reply<Bytes>>) = proposals.into_iter().unzip();
        match self.raw.propose(payloads) {
            Ok(receipt) => {
                // Registered before the Ready that could commit them, so the apply task
                // always knows the waiter when the entry arrives.
                for (index, reply) in (receipt.first_index..=receipt.last_index).zip(replies) {
                    let waiter = Waiter::Output(reply);
                    self.hand(Work::Await {
                        index,
                        term: receipt.term,
                        waiter,
                    })?;
                }
            }
            Err(error) => {
                let error = NodeError::from(error);
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
        Ok(())
    }

    fn send_all(&self, messages: Vec<Message>) {
        for message in messages {
            self.transport.send(message);
        }
    }

    fn carry_out(&mut self, mut ready: Ready) -> Result<(), NodeError> {
        // 1. The leader's own traffic goes out before its write (replication in parallel).
        self.send_all(std::mem::take(&mut ready.messages));
        // 2. Persist. Entries are queued behind the writes in flight only when nothing in
        // this batch has to be durable before the driver goes on.
        let queue_entries = !ready.entries.is_empty()
            && ready.snapshot.is_none()
            && ready.persisted_messages.is_empty()
            && self.raw.storage().continues_submitted(&ready.entries);
        if !queue_entries {
            self.wait_for_writes()?;
        }
        if let Some(snapshot) = &ready.snapshot {
            self.raw.storage_mut().install_snapshot(snapshot.clone())?;
            self.hand(Work::Restore(snapshot.clone()))?;
        }
        if queue_entries {
            self.queue_write(&ready.entries)?;
        } else {
            self.raw.storage_mut().append_durably(&ready.entries)?;
        }
        if let Some(hard_state) = ready.hard_state {
            // Saved (with an fsync) at once only if the term or vote changed.
            self.raw.storage_mut().set_hard_state(hard_state)?;
        }
        // 3. Acknowledgements and votes promise what step 2 made durable (every queued
        // write included: the wait above).
        self.send_all(std::mem::take(&mut ready.persisted_messages));
        // 4. Apply (on the apply task, in order) and queue confirmed reads behind them. The
        // batch keeps its committed entries: `advance` learns the applied index from them.
        if !ready.committed_entries.is_empty() {
            self.hand(Work::Entries(ready.committed_entries.clone()))?;
        }
        for read_state in std::mem::take(&mut ready.read_states) {
            match self.reads_asked.remove(&read_state.request_id) {
                Some(AskedRead::Query(query, reply)) => self.hand(Work::Read {
                    index: read_state.index,
                    query,
                    reply,
                })?,
                Some(AskedRead::Index(reply)) => drop(reply.send(Ok(read_state.index))),
                None => {}
            }
        }
        // 5. Close the batch, then tell the core of writes that completed meanwhile.
        if queue_entries {
            self.raw.advance_async(ready)?;
        } else {
            self.raw.advance(ready)?;
        }
        self.report_durable()?;
        self.fail_reads_if_not_leader();
        Ok(())
    }

    fn queue_write(&mut self, entries: &[conclave_consensus::Entry]) -> Result<(), NodeError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let (index, term) = (last.index, last.term);
        let ticket = self.raw.storage_mut().submit(entries)?;
        let writes = self.writes.as_ref().ok_or(NodeError::Stopped)?;
        writes
            .send(QueuedWrite {
                ticket,
                index,
                term,
            })
            .map_err(|_| NodeError::Stopped)?;
        self.writes_in_flight += 1;
        Ok(())
    }

    /// Reads asked of a leader that lost its role are never confirmed; answer them now.
    fn fail_reads_if_not_leader(&mut self) {
        if self.reads_asked.is_empty() {
            return;
        }
        let status = self.raw.status();
        if status.soft_state.role == Role::Leader {
            return;
        }
        for (_, read) in self.reads_asked.drain() {
            read.fail(NodeError::NotLeader {
                leader: status.soft_state.leader,
            });
        }
    }
}
