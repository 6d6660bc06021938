//! The simulation driver: one seed drives time, the network, the disks, the faults and the
//! client, exactly as the real node driver carries out `Ready` batches.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use conclave_consensus::{
    Config, EntryKind, Error, Membership, MembershipChange, MemoryStorage, Message, MessageKind,
    NodeId, Prng, ReadMode, Role, Storage,
};

use super::checker::Checker;
use super::history::{HistoryClient, Request};
use super::network::Network;
use super::node::{DiskWrite, Machine, SimNode};
use super::{SimOptions, SimReport};

/// A learner is promoted only once it matches the leader's log to within this many entries.
const LEARNER_LAG_ENTRIES_MAX: u64 = 16;

/// Time units per tick: messages and disk writes take a fraction of a tick to a few ticks.
const TICK_UNITS: u64 = 10;

/// One seeded run.
pub struct Simulation<'a> {
    options: &'a SimOptions,
    prng: Prng,
    network: Network,
    nodes: BTreeMap<NodeId, SimNode>,
    checker: Checker,
    now: u64,
    next_node_id: NodeId,
    next_payload: u64,
    /// Nodes added as learners whose addition has not been applied anywhere yet.
    joining: BTreeSet<NodeId>,
    membership_index_max: u64,
    /// The membership at `membership_index_max`.
    latest_membership: Membership,
    membership_changes: u64,
    /// Reads asked and the committed index known anywhere when they were asked.
    pending_reads: BTreeMap<u64, u64>,
    next_read_id: u64,
    liveness_proposals: Vec<(u64, u64)>,
    reliable: bool,
    report: SimReport,
    node_config: Config,
    /// The history mode's clients (see `history.rs`).
    history: Option<HistoryClient>,
}

impl<'a> Simulation<'a> {
    /// Builds the cluster for `seed`: the seed also picks the protocol options.
    pub fn new(seed: u64, options: &'a SimOptions) -> Result<Simulation<'a>, String> {
        let mut prng = Prng::new(seed);
        let mut node_config = Config::new(1);
        node_config.seed = prng.next_u64();
        node_config.election_timeout_ticks = 10;
        node_config.heartbeat_interval_ticks = prng.range(1, 4);
        node_config.pre_vote = prng.chance(3, 4);
        node_config.check_quorum = prng.chance(3, 4);
        if node_config.check_quorum && prng.chance(1, 3) {
            node_config.read_mode = ReadMode::LeaseBased;
        }
        node_config.message_entries_max = prng.range(1, 17) as usize;
        node_config.inflight_messages_max = prng.range(1, 5) as usize;
        node_config.message_bytes_max = prng.range(64, 1024);
        node_config.inflight_bytes_max = node_config.message_bytes_max * prng.range(1, 8);
        if prng.chance(1, 3) {
            // Small apply pages keep committed membership entries unapplied for a while.
            node_config.committed_entries_bytes_max = prng.range(1, 128);
        }
        if let Some(configure) = options.configure_node {
            configure(&mut node_config);
        }
        let ids: Vec<NodeId> = (1..=options.node_count as u64).collect();
        let membership = Membership::with_voters(ids.iter().copied());
        let mut nodes = BTreeMap::new();
        for id in &ids {
            let mut config = node_config.clone();
            config.id = *id;
            let phase = prng.range(0, TICK_UNITS);
            let storage = MemoryStorage::new(membership.clone());
            let mut node = SimNode::start(*id, config, storage, phase)?;
            if options.history.is_some() {
                node.enable_layer()?;
            }
            nodes.insert(*id, node);
        }
        if let Some(history) = &options.history {
            history.validate()?;
        }
        Ok(Simulation {
            options,
            prng,
            network: Network::default(),
            nodes,
            checker: Checker::default(),
            now: 0,
            next_node_id: options.node_count as u64 + 1,
            next_payload: 0,
            joining: BTreeSet::new(),
            membership_index_max: 0,
            latest_membership: Membership::default(),
            membership_changes: 0,
            pending_reads: BTreeMap::new(),
            next_read_id: 1,
            liveness_proposals: Vec::new(),
            reliable: false,
            report: SimReport::default(),
            node_config,
            history: options.history.clone().map(HistoryClient::new),
        })
    }

    /// Runs the safety phase then the liveness phase.
    pub fn run(mut self) -> Result<SimReport, String> {
        let safety_units = self.options.safety_ticks * TICK_UNITS;
        while self.now < safety_units {
            self.step(true)?;
        }
        self.stop_faults()?;
        let deadline = self.now + self.options.liveness_ticks_max * TICK_UNITS;
        loop {
            self.step(false)?;
            if self.liveness_reached()? {
                self.report.liveness_ticks = (self.now - safety_units) / TICK_UNITS;
                self.check_not_stuck_joint()?;
                break;
            }
            if self.now >= deadline {
                return Err(format!(
                    "liveness: no proposal committed within {} ticks after faults stopped",
                    self.options.liveness_ticks_max
                ));
            }
        }
        self.finish_history()?;
        self.report.committed = self.checker.committed_max;
        Ok(self.report)
    }

    /// History mode: no new operations; the open ones get `drain_ticks_max` ticks to finish,
    /// then the whole history goes to the linearizability checker.
    fn finish_history(&mut self) -> Result<(), String> {
        let Some(history) = self.history.as_mut() else {
            return Ok(());
        };
        history.drain();
        let deadline = self.now + history.options().drain_ticks_max * TICK_UNITS;
        while self.now < deadline && !self.history.as_ref().is_some_and(|h| h.idle()) {
            self.step(false)?;
        }
        if let Some(history) = self.history.take() {
            self.report.operations_retried = history.retries();
            let (checked, unknown) = history.check().map_err(|e| self.fail_at(e))?;
            self.report.operations_checked = checked;
            self.report.operations_unknown = unknown;
        }
        Ok(())
    }

    fn fail_at(&self, message: String) -> String {
        format!(
            "time {} (tick {}): {message}",
            self.now,
            self.now / TICK_UNITS
        )
    }

    fn trace(&self) {
        let mut line = format!("tick {:>4}:", self.now / TICK_UNITS);
        for node in self.nodes.values() {
            let Some(core) = node.core.as_ref() else {
                let state = if node.decommissioned { "gone" } else { "down" };
                line.push_str(&format!(" | {} {state}", node.id));
                continue;
            };
            let status = core.status();
            line.push_str(&format!(
                " | {} {:?} t{} c{} a{} l{} v{:?}/{:?} L{:?}",
                node.id,
                status.soft_state.role,
                status.hard_state.term,
                status.hard_state.commit,
                node.machine.applied_index,
                status.last_index,
                status.membership.voters,
                status.membership.voters_outgoing,
                status.membership.learners,
            ));
        }
        eprintln!("{line}");
    }

    fn trace_event(&self, event: String) {
        if self.options.trace {
            eprintln!("time {:>5}: {event}", self.now);
        }
    }

    fn step(&mut self, faults: bool) -> Result<(), String> {
        self.now += 1;
        if self.options.trace && self.now.is_multiple_of(TICK_UNITS) {
            self.trace();
        }
        self.tick_nodes().map_err(|e| self.fail_at(e))?;
        self.deliver_messages().map_err(|e| self.fail_at(e))?;
        self.complete_disk_writes().map_err(|e| self.fail_at(e))?;
        self.take_readies().map_err(|e| self.fail_at(e))?;
        // Check before faults: a leader that commits and crashes in the same step must be
        // seen committing.
        self.checker
            .after_step(&mut self.nodes)
            .map_err(|e| self.fail_at(e))?;
        self.decommission_removed();
        if faults {
            self.inject_faults().map_err(|e| self.fail_at(e))?;
        }
        self.client().map_err(|e| self.fail_at(e))
    }

    fn tick_nodes(&mut self) -> Result<(), String> {
        let now = self.now;
        for node in self.nodes.values_mut() {
            if !node.is_up() || !(now + node.tick_phase).is_multiple_of(TICK_UNITS) {
                continue;
            }
            if let Some(core) = node.core.as_mut() {
                core.tick()
                    .map_err(|e| format!("node {} tick: {e}", node.id))?;
            }
        }
        Ok(())
    }

    fn send(&mut self, message: Message) {
        self.report.messages += 1;
        let faults = self.options.network;
        self.network
            .send(message, self.now, &faults, self.reliable, &mut self.prng);
    }

    fn deliver_messages(&mut self) -> Result<(), String> {
        for message in self.network.due(self.now) {
            if !self.network.connected(message.from, message.to) {
                continue;
            }
            let Some(node) = self.nodes.get_mut(&message.to) else {
                continue;
            };
            if !node.is_up() {
                continue;
            }
            if let Some(core) = node.core.as_mut() {
                let description = format!("{:?} {}->{}", message.kind, message.from, message.to);
                core.step(message)
                    .map_err(|e| format!("step {description}: {e}"))?;
            }
        }
        Ok(())
    }

    fn take_readies(&mut self) -> Result<(), String> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let Some(node) = self.nodes.get_mut(&id) else {
                continue;
            };
            if !node.is_up() || node.disk.is_some() {
                continue;
            }
            let Some(core) = node.core.as_mut() else {
                continue;
            };
            if !core.has_ready() {
                continue;
            }
            let mut ready = core.ready().map_err(|e| format!("node {id} ready: {e}"))?;
            let immediate = std::mem::take(&mut ready.messages);
            // The Ready contract: only a leader's own traffic may leave before persisting.
            if let Some(message) = immediate.iter().find(|m| !is_leader_traffic(m.kind)) {
                return Err(format!(
                    "ready contract: {:?} from {id} sent before persisting",
                    message.kind
                ));
            }
            let latency = self.prng.range(1, self.options.disk_latency_units_max + 1);
            node.disk = Some(DiskWrite {
                due: self.now + latency,
                ready,
            });
            // The leader's own traffic leaves while its disk write is still in progress.
            for message in immediate {
                self.send(message);
            }
        }
        Ok(())
    }

    fn complete_disk_writes(&mut self) -> Result<(), String> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let due = self
                .nodes
                .get(&id)
                .and_then(|n| n.disk.as_ref())
                .map(|d| d.due);
            if due.is_some_and(|due| due <= self.now) {
                self.complete_disk_write(id)?;
            }
        }
        Ok(())
    }

    fn complete_disk_write(&mut self, id: NodeId) -> Result<(), String> {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let (Some(write), Some(core)) = (node.disk.take(), node.core.as_mut()) else {
            return Ok(());
        };
        let mut ready = write.ready;
        if let Some(snapshot) = &ready.snapshot {
            core.storage_mut().apply_snapshot(snapshot.clone());
            node.machine = Machine::from_storage(core.storage());
            if node.layer.is_some() {
                node.layer = Some(super::node::layer_from_storage(core.storage())?);
            }
            self.checker
                .on_snapshot(id, snapshot.metadata.index, node.machine.hash)?;
            self.report.snapshots_installed += 1;
        }
        core.storage_mut().append(&ready.entries);
        self.checker
            .on_persist(id, core.storage(), &ready.entries)?;
        if let Some(hard_state) = ready.hard_state {
            core.storage_mut().set_hard_state(hard_state);
        }
        let mut memberships = Vec::new();
        let mut replies = Vec::new();
        for entry in &ready.committed_entries {
            node.machine.apply(entry);
            self.checker.on_apply(id, entry, node.machine.hash)?;
            // The layer sees only envelopes' entries, as a real node gives it; other
            // payloads (the hash-chain client's) are refused by it and change nothing.
            if entry.kind == EntryKind::Normal
                && let Some(layer) = node.layer.as_mut()
            {
                let applied = layer.apply(entry.index, entry.index, &entry.payload);
                replies.push(applied.reply);
            }
            if entry.kind == EntryKind::Membership {
                memberships.push((entry.index, node.machine.membership.clone()));
            }
        }
        if let Some(history) = self.history.as_mut() {
            for reply in &replies {
                history.on_reply(self.now, id, reply)?;
            }
            for read in &ready.read_states {
                history.on_read_confirmed(id, read.request_id, read.index);
            }
            if let Some(layer) = node.layer.as_ref() {
                history.serve_reads(self.now, id, node.machine.applied_index, layer)?;
            }
        }
        for read in &ready.read_states {
            if let Some(required) = self.pending_reads.remove(&read.request_id)
                && read.index < required
            {
                return Err(format!(
                    "read index {} for read {} is below index {required} committed before it",
                    read.index, read.request_id
                ));
            }
            self.report.reads += 1;
        }
        let persisted_messages = std::mem::take(&mut ready.persisted_messages);
        // The Ready contract: an acknowledgement never claims entries that are not durable.
        // (An acknowledgement of an older term may follow a truncation by a newer leader; it
        // was true when the entries were persisted, and the old leader's commit is safe by
        // the usual argument because the entries were accepted before any later vote.)
        let term = core.status().hard_state.term;
        for message in &persisted_messages {
            let claims = message.kind == MessageKind::AppendResponse
                && !message.reject
                && message.term == term;
            let last_index = core.storage().last_index().unwrap_or(0);
            if claims && message.index > last_index {
                return Err(format!(
                    "ready contract: {id} acknowledges index {} but has persisted only {last_index}",
                    message.index
                ));
            }
        }
        core.advance(ready)
            .map_err(|e| format!("node {id} advance: {e}"))?;
        for message in persisted_messages {
            self.send(message);
        }
        for (index, membership) in memberships {
            self.on_membership_applied(index, &membership);
        }
        Ok(())
    }

    /// Records the newest membership applied anywhere; removed nodes are shut down later
    /// (see `decommission_removed`).
    fn on_membership_applied(&mut self, index: u64, membership: &Membership) {
        if index <= self.membership_index_max {
            return;
        }
        self.membership_index_max = index;
        let members = membership.members();
        self.joining.retain(|id| !members.contains(id));
        self.latest_membership = membership.clone();
    }

    /// The operator shuts removed nodes down for good, but only once a majority of the new
    /// voters applied their removal (before that, the survivors may still need the removed
    /// nodes' votes under the configuration they applied), and then only after a random
    /// while, during which the removed nodes may try to disrupt the cluster.
    fn decommission_removed(&mut self) {
        let membership = &self.latest_membership;
        if membership.is_joint() || membership.voters.is_empty() {
            return;
        }
        let applied = membership
            .voters
            .iter()
            .filter(|id| {
                self.nodes.get(id).is_some_and(|n| {
                    n.is_up() && n.machine.applied_index >= self.membership_index_max
                })
            })
            .count();
        if applied * 2 <= membership.voters.len() || !self.prng.chance(1, 100) {
            return;
        }
        let members = membership.members();
        for node in self.nodes.values_mut() {
            if !members.contains(&node.id)
                && !self.joining.contains(&node.id)
                && !node.decommissioned
            {
                node.crash();
                node.decommissioned = true;
            }
        }
    }

    fn live_ids(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.is_up())
            .map(|n| n.id)
            .collect()
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|n| {
                n.core
                    .as_ref()
                    .filter(|_| !n.decommissioned)
                    .map(|c| (n.id, c.status()))
            })
            .filter(|(_, status)| status.soft_state.role == Role::Leader)
            .max_by_key(|(_, status)| status.hard_state.term)
            .map(|(id, _)| id)
    }

    fn pick(&mut self, ids: &[NodeId]) -> Option<NodeId> {
        if ids.is_empty() {
            return None;
        }
        Some(ids[self.prng.range(0, ids.len() as u64) as usize])
    }

    fn inject_faults(&mut self) -> Result<(), String> {
        let rates = self.options.fault_rates;
        if self.prng.chance(rates.crash_per_million, 1_000_000) {
            let live = self.live_ids();
            if let Some(id) = self.pick(&live)
                && let Some(node) = self.nodes.get_mut(&id)
            {
                node.crash();
                self.report.crashes += 1;
                self.trace_event(format!("crash {id}"));
            }
        }
        if self.prng.chance(rates.restart_per_million, 1_000_000) {
            let down: Vec<NodeId> = self
                .nodes
                .values()
                .filter(|n| n.core.is_none() && !n.decommissioned)
                .map(|n| n.id)
                .collect();
            if let Some(id) = self.pick(&down)
                && let Some(node) = self.nodes.get_mut(&id)
            {
                node.restart()?;
                self.trace_event(format!("restart {id}"));
            }
        }
        if self.prng.chance(rates.partition_per_million, 1_000_000) {
            self.partition();
        }
        if self.prng.chance(rates.heal_per_million, 1_000_000) {
            self.network.heal();
            self.trace_event("heal".into());
        }
        if self.prng.chance(rates.membership_per_million, 1_000_000) {
            self.change_membership()?;
        }
        if self.prng.chance(rates.transfer_per_million, 1_000_000) {
            self.transfer();
        }
        if self.prng.chance(rates.compact_per_million, 1_000_000) {
            self.compact()?;
        }
        Ok(())
    }

    fn partition(&mut self) {
        let all: BTreeSet<NodeId> = self
            .nodes
            .values()
            .filter(|n| !n.decommissioned)
            .map(|n| n.id)
            .collect();
        let ids: Vec<NodeId> = all.iter().copied().collect();
        if ids.len() < 2 {
            return;
        }
        if self.prng.chance(1, 4) {
            // An asymmetric fault: one direction of one link.
            if let (Some(from), Some(to)) = (self.pick(&ids), self.pick(&ids))
                && from != to
            {
                self.network.cut_one_way(from, to);
                self.trace_event(format!("cut {from}->{to}"));
            }
        } else {
            let side_size = self.prng.range(1, ids.len() as u64 / 2 + 1);
            let mut side = BTreeSet::new();
            while (side.len() as u64) < side_size {
                if let Some(id) = self.pick(&ids) {
                    side.insert(id);
                }
            }
            self.network.partition(&side, &all);
            self.trace_event(format!("partition {side:?}"));
        }
        self.report.partitions += 1;
    }

    fn change_membership(&mut self) -> Result<(), String> {
        if self.membership_changes >= self.options.membership_changes_max {
            return Ok(());
        }
        let Some(leader) = self.leader() else {
            return Ok(());
        };
        let Some(status) = self.nodes[&leader].core.as_ref().map(|c| c.status()) else {
            return Ok(());
        };
        // With fewer than three voters, promoting a learner far behind stalls commitment
        // until it catches up (the new configuration needs it for a quorum), which is not
        // what the liveness bound is about; there an operator waits until it caught up.
        // Larger clusters promote lagging learners too, which keeps applies slow and
        // membership entries unapplied for a while.
        let lagging = status.membership.voters.len() < 3
            && status.membership.learners.iter().any(|id| {
                status
                    .progress
                    .get(id)
                    .is_none_or(|p| p.matched + LEARNER_LAG_ENTRIES_MAX < status.last_index)
            });
        if lagging {
            return Ok(());
        }
        let changes = self.next_membership_changes(&status.membership);
        let Some(core) = self.nodes.get_mut(&leader).and_then(|n| n.core.as_mut()) else {
            return Ok(());
        };
        match core.propose_membership(&changes) {
            Ok(_) => {}
            // The leader is busy with a change or a transfer: expected, try again later.
            Err(Error::MembershipChangePending | Error::TransferInProgress) => return Ok(()),
            Err(error) => {
                return Err(format!(
                    "leader {leader} refused membership change {changes:?}: {error}"
                ));
            }
        }
        self.membership_changes += 1;
        self.report.membership_changes += 1;
        self.trace_event(format!("membership {changes:?} via {leader}"));
        for change in changes {
            if let MembershipChange::AddLearner(id) = change {
                // A fresh node with a fresh id: reusing an id would let stale messages of the
                // old node pass for the new one.
                self.next_node_id = self.next_node_id.max(id + 1);
                let mut config = self.node_config.clone();
                config.id = id;
                let phase = self.prng.range(0, TICK_UNITS);
                let storage = MemoryStorage::new(Membership::default());
                let mut node = SimNode::start(id, config, storage, phase)?;
                if self.history.is_some() {
                    node.enable_layer()?;
                }
                self.nodes.insert(id, node);
                self.joining.insert(id);
            }
        }
        Ok(())
    }

    /// The next change: add one or two fresh learners; promote every learner, half the time
    /// swapping out as many old voters in the same joint change; or remove the extra voters
    /// (one or two at once) down to the initial count.
    fn next_membership_changes(&mut self, membership: &Membership) -> Vec<MembershipChange> {
        let mut voters: Vec<NodeId> = membership.voters.iter().copied().collect();
        if !membership.learners.is_empty() {
            let mut changes: Vec<MembershipChange> = membership
                .learners
                .iter()
                .map(|id| MembershipChange::AddVoter(*id))
                .collect();
            if self.prng.chance(1, 2) {
                for _ in 0..membership.learners.len().min(voters.len()) {
                    let position = self.prng.range(0, voters.len() as u64) as usize;
                    changes.push(MembershipChange::Remove(voters.remove(position)));
                }
            }
            return changes;
        }
        let extra = voters.len().saturating_sub(self.options.node_count);
        if extra > 0 {
            let count = extra.min(self.prng.range(1, 3) as usize);
            let mut changes = Vec::new();
            for _ in 0..count {
                let position = self.prng.range(0, voters.len() as u64) as usize;
                changes.push(MembershipChange::Remove(voters.remove(position)));
            }
            return changes;
        }
        let count = if self.prng.chance(1, 3) { 2 } else { 1 };
        (0..count)
            .map(|offset| MembershipChange::AddLearner(self.next_node_id + offset))
            .collect()
    }

    /// After liveness: the cluster must leave any joint configuration by itself.
    fn check_not_stuck_joint(&mut self) -> Result<(), String> {
        let deadline = self.now + self.options.liveness_ticks_max * TICK_UNITS;
        loop {
            let joint = self.leader().and_then(|leader| {
                self.nodes[&leader]
                    .core
                    .as_ref()
                    .map(|c| c.status().membership.is_joint())
            });
            if joint == Some(false) {
                return Ok(());
            }
            if self.now >= deadline {
                return Err(self.fail_at(format!(
                    "stuck in joint consensus {} ticks after liveness (leader joint: {joint:?})",
                    self.options.liveness_ticks_max
                )));
            }
            self.step(false)?;
        }
    }

    fn transfer(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let Some(core) = self.nodes.get_mut(&leader).and_then(|n| n.core.as_mut()) else {
            return;
        };
        let voters: Vec<NodeId> = core
            .status()
            .membership
            .voters
            .into_iter()
            .filter(|id| *id != leader)
            .collect();
        if voters.is_empty() {
            return;
        }
        let target = voters[self.prng.range(0, voters.len() as u64) as usize];
        if core.transfer_leadership(target).is_ok() {
            self.report.transfers += 1;
            self.trace_event(format!("transfer {leader}->{target}"));
        }
    }

    fn compact(&mut self) -> Result<(), String> {
        let live = self.live_ids();
        let Some(id) = self.pick(&live) else {
            return Ok(());
        };
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let data = node.snapshot_data()?;
        let Some(core) = node.core.as_mut() else {
            return Ok(());
        };
        let snapshot_index = core.storage().first_index().unwrap_or(1) - 1;
        // A joining node that has not applied a membership entry yet cannot describe the
        // membership its snapshot would need.
        let membership_known = !node.machine.membership.voters.is_empty();
        if node.disk.is_some()
            || !membership_known
            || node.machine.applied_index < snapshot_index + 4
        {
            return Ok(());
        }
        let index = node.machine.applied_index;
        core.storage_mut()
            .compact(index, data, node.machine.membership.clone());
        Ok(())
    }

    fn client(&mut self) -> Result<(), String> {
        if self.prng.chance(1, self.options.propose_every_units) {
            self.propose(false)?;
        }
        if self.prng.chance(1, self.options.read_every_units) {
            self.read();
        }
        self.history_client()
    }

    /// History mode: each process registers, starts or retries an operation; commands go
    /// to the leader's log, reads to the leader's ReadIndex (or, under the test-only wrong
    /// rule, straight to a random running node's layer).
    fn history_client(&mut self) -> Result<(), String> {
        let Some(history) = self.history.as_mut() else {
            return Ok(());
        };
        let mut next_read_id = self.next_read_id;
        let requests = history.step(self.now, TICK_UNITS, &mut self.prng, &mut || {
            next_read_id += 1;
            next_read_id - 1
        })?;
        self.next_read_id = next_read_id;
        for (process, request) in requests {
            match request {
                Request::Propose(bytes) => {
                    let Some(leader) = self.leader() else {
                        continue;
                    };
                    if let Some(core) = self.nodes.get_mut(&leader).and_then(|n| n.core.as_mut())
                        && core.propose(vec![Bytes::from(bytes)]).is_ok()
                        && let Some(history) = self.history.as_mut()
                    {
                        // A refused proposal is retried after the timeout like a lost one.
                        history.proposed_to(process, leader);
                    }
                }
                Request::ReadIndex(request_id) => {
                    let required = self.checker.committed_max;
                    if let Some(core) = self
                        .leader()
                        .and_then(|leader| self.nodes.get_mut(&leader))
                        .and_then(|n| n.core.as_mut())
                        && core.read_index(request_id).is_ok()
                    {
                        self.pending_reads.insert(request_id, required);
                    }
                }
                Request::StaleRead => {
                    let live = self.live_ids();
                    if let Some(id) = self.pick(&live)
                        && let Some(layer) = self.nodes.get(&id).and_then(|n| n.layer.as_ref())
                        && let Some(history) = self.history.as_mut()
                    {
                        history.serve_stale_read(self.now, process, layer)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn propose(&mut self, track: bool) -> Result<(), String> {
        let Some(leader) = self.leader() else {
            return Ok(());
        };
        let count = self.prng.range(1, 4);
        let mut batch = Vec::new();
        for _ in 0..count {
            self.next_payload += 1;
            batch.push(Bytes::from(format!("p{}", self.next_payload)));
        }
        let Some(core) = self.nodes.get_mut(&leader).and_then(|n| n.core.as_mut()) else {
            return Ok(());
        };
        let status = core.status();
        // Clients wait when the leader is far behind, as real ones do under back-pressure;
        // otherwise the backlog grows without bound and liveness means nothing.
        if !track && status.last_index - status.hard_state.commit > self.options.backlog_entries_max
        {
            return Ok(());
        }
        if let Ok(receipt) = core.propose(batch) {
            self.report.proposed += count;
            if track {
                self.liveness_proposals
                    .push((receipt.last_index, receipt.term));
            }
        }
        Ok(())
    }

    /// Asks a random node that believes it leads, deposed or not: a stale lease or a
    /// ReadIndex confirmed by the wrong quorum shows up as a read below a committed index.
    fn read(&mut self) {
        let believers: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.is_up())
            .filter(|n| {
                n.core
                    .as_ref()
                    .is_some_and(|c| c.status().soft_state.role == Role::Leader)
            })
            .map(|n| n.id)
            .collect();
        let Some(leader) = self.pick(&believers) else {
            return;
        };
        let request_id = self.next_read_id;
        let required = self.checker.committed_max;
        let Some(core) = self.nodes.get_mut(&leader).and_then(|n| n.core.as_mut()) else {
            return;
        };
        if core.read_index(request_id).is_ok() {
            self.next_read_id += 1;
            self.pending_reads.insert(request_id, required);
        }
    }

    /// Ends the fault phase: heal the network, restart every crashed node, stop dropping.
    fn stop_faults(&mut self) -> Result<(), String> {
        self.network.heal();
        self.reliable = true;
        for node in self.nodes.values_mut() {
            if !node.decommissioned && node.core.is_none() {
                node.restart()?;
            }
        }
        Ok(())
    }

    /// True once a proposal made after the faults stopped has been applied somewhere.
    fn liveness_reached(&mut self) -> Result<bool, String> {
        let committed = self
            .liveness_proposals
            .iter()
            .any(|(index, term)| self.checker.applied_at(*index).map(|(t, _)| t) == Some(*term));
        if committed {
            return Ok(true);
        }
        let all_lost = self.liveness_proposals.iter().all(|(index, term)| {
            self.checker
                .applied_at(*index)
                .is_some_and(|(t, _)| t != *term)
                || self.leader().is_some_and(|leader| {
                    self.nodes[&leader]
                        .core
                        .as_ref()
                        .is_some_and(|c| c.status().hard_state.term != *term)
                })
        });
        if all_lost && self.now.is_multiple_of(TICK_UNITS) {
            // Propose again whenever earlier proposals were lost to a leader change.
            self.propose(true)?;
        }
        Ok(false)
    }
}

fn is_leader_traffic(kind: MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::Append
            | MessageKind::Heartbeat
            | MessageKind::Snapshot
            | MessageKind::TimeoutNow
    )
}
