//! The driver: one thread that owns the core and the storage, and carries out each `Ready`
//! in the order documented on `conclave_consensus::Ready`. It makes no Raft decision of its
//! own. The application lives on the apply task (`apply.rs`).
//!
//! For each batch: (1) send `messages` at once, so that the leader replicates while it
//! writes its own copy (group commit: every proposal gathered since the last batch shares
//! this one write and fsync); (2) install `snapshot`, append `entries`, record `hard_state`,
//! fsync if `must_sync`; (3) send `persisted_messages`; (4) hand `committed_entries` and
//! confirmed `read_states` to the apply task, in order; (5) `advance`. Snapshots the apply
//! task takes come back here to be stored and to compact the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use conclave_consensus::{
    MembershipChange, Message, MessageKind, NodeId, RawNode, Ready, Role, Status,
};
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
    runtime: tokio::runtime::Handle,
    /// The apply task's queue (bounded: a slow application slows the driver down).
    work: SyncSender<Work>,
    /// Snapshots the apply task took.
    taken: mpsc::UnboundedReceiver<Taken>,
    /// Reads asked of the core, by request id.
    reads_asked: HashMap<u64, (Bytes, Reply<Bytes>)>,
    read_id_next: u64,
    ticks_since_proposal: u64,
    stopping: bool,
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
    /// Builds the driver: starts the core from storage.
    pub fn new(
        config: NodeConfig,
        storage: LogStorage,
        transport: Arc<dyn Transport>,
        channels: Channels,
        runtime: tokio::runtime::Handle,
    ) -> Result<Driver, NodeError> {
        let raw = RawNode::new(config.consensus_config(), storage)?;
        Ok(Driver {
            config,
            raw,
            transport,
            inbox: channels.inbox,
            requests: channels.requests,
            runtime,
            work: channels.work,
            taken: channels.taken,
            reads_asked: HashMap::new(),
            read_id_next: 1,
            ticks_since_proposal: 0,
            stopping: false,
        })
    }

    /// Runs until stopped or until storage fails; waiting clients are then answered with
    /// `Stopped` (here, or by the apply task once the driver drops its queue).
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
        for (_, (_, reply)) in self.reads_asked.drain() {
            let _ = reply.send(Err(NodeError::Stopped));
        }
        result
    }

    fn next_input(&mut self, ticker: &mut tokio::time::Interval) -> Input {
        let inbox = &mut self.inbox;
        let requests = &mut self.requests;
        let taken = &mut self.taken;
        self.runtime.block_on(async {
            tokio::select! {
                biased;
                _ = ticker.tick() => Input::Tick,
                snapshot = taken.recv() => snapshot.map_or(Input::Closed, Input::Taken),
                message = inbox.recv() => message.map_or(Input::Closed, Input::Message),
                request = requests.recv() => request.map_or(Input::Closed, Input::Request),
            }
        })
    }

    fn run_loop(&mut self, ticker: &mut tokio::time::Interval) -> Result<(), NodeError> {
        while !self.stopping {
            let mut proposals = Vec::new();
            match self.next_input(ticker) {
                Input::Closed => return Ok(()),
                Input::Tick => self.tick()?,
                Input::Message(message) => self.step(message),
                Input::Request(request) => self.handle_request(request, &mut proposals)?,
                Input::Taken(taken) => {
                    self.raw
                        .storage_mut()
                        .compact(taken.index, taken.data, taken.membership)?;
                }
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

    fn hand(&self, work: Work) -> Result<(), NodeError> {
        self.work.send(work).map_err(|_| NodeError::Stopped)
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
        // 2. Persist: snapshot, entries, hard state; fsync if asked.
        if let Some(snapshot) = &ready.snapshot {
            self.raw.storage_mut().install_snapshot(snapshot.clone())?;
            self.hand(Work::Restore(snapshot.clone()))?;
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
        // 4. Apply (on the apply task, in order) and queue confirmed reads behind them. The
        // batch keeps its committed entries: `advance` learns the applied index from them.
        if !ready.committed_entries.is_empty() {
            self.hand(Work::Entries(ready.committed_entries.clone()))?;
        }
        for read_state in std::mem::take(&mut ready.read_states) {
            if let Some((query, reply)) = self.reads_asked.remove(&read_state.request_id) {
                self.hand(Work::Read {
                    index: read_state.index,
                    query,
                    reply,
                })?;
            }
        }
        // 5. Close the batch.
        self.raw.advance(ready)?;
        self.fail_reads_if_not_leader();
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
        for (_, (_, reply)) in self.reads_asked.drain() {
            let _ = reply.send(Err(NodeError::NotLeader {
                leader: status.soft_state.leader,
            }));
        }
    }
}
