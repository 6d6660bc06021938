//! A synchronous in-memory cluster for the integration tests: every Ready is carried out at
//! once (persist, then send), and messages sit in a queue until a test delivers them.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use conclave_consensus::{
    Config, Entry, Membership, MemoryStorage, Message, MessageKind, NodeId, RawNode, ReadState,
    Ready, Role,
};

/// A cluster of cores wired through a message queue.
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, RawNode<MemoryStorage>>,
    pub queue: Vec<Message>,
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    pub read_states: BTreeMap<NodeId, Vec<ReadState>>,
    /// Pairs of nodes that cannot talk (both directions are listed).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    configure: fn(&mut Config),
}

pub fn quiet(config: &mut Config) {
    // Tests elect leaders explicitly: timers far away from the ticks tests use.
    config.election_timeout_ticks = 10;
    config.heartbeat_interval_ticks = 1;
}

pub fn payload(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

impl Cluster {
    pub fn new(ids: &[NodeId], configure: fn(&mut Config)) -> Cluster {
        let membership = Membership::with_voters(ids.iter().copied());
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            queue: Vec::new(),
            applied: BTreeMap::new(),
            read_states: BTreeMap::new(),
            cut: BTreeSet::new(),
            configure,
        };
        for id in ids {
            cluster.add_node(*id, MemoryStorage::new(membership.clone()));
        }
        cluster
    }

    pub fn add_node(&mut self, id: NodeId, storage: MemoryStorage) {
        let mut config = Config::new(id);
        config.seed = 7;
        (self.configure)(&mut config);
        let node = RawNode::new(config, storage).expect("node starts");
        self.nodes.insert(id, node);
        self.applied.entry(id).or_default();
    }

    pub fn node(&mut self, id: NodeId) -> &mut RawNode<MemoryStorage> {
        self.nodes.get_mut(&id).expect("node exists")
    }

    /// Takes one Ready from `id` without carrying it out.
    pub fn take_ready(&mut self, id: NodeId) -> Ready {
        self.node(id).ready().expect("ready")
    }

    /// Carries out a Ready as documented: send immediate messages, persist, send the rest,
    /// apply, advance.
    pub fn carry_out(&mut self, id: NodeId, ready: Ready) {
        self.queue.extend(ready.messages.iter().cloned());
        let node = self.nodes.get_mut(&id).expect("node exists");
        if let Some(snapshot) = &ready.snapshot {
            node.storage_mut().apply_snapshot(snapshot.clone());
            let applied = self.applied.entry(id).or_default();
            applied.retain(|entry| entry.index <= snapshot.metadata.index);
        }
        node.storage_mut().append(&ready.entries);
        if let Some(hard_state) = ready.hard_state {
            node.storage_mut().set_hard_state(hard_state);
        }
        self.queue.extend(ready.persisted_messages.iter().cloned());
        self.applied
            .entry(id)
            .or_default()
            .extend(ready.committed_entries.iter().cloned());
        self.read_states
            .entry(id)
            .or_default()
            .extend(ready.read_states.iter().copied());
        node.advance(ready).expect("advance");
        node.validate().expect("invariants hold");
    }

    /// Carries out every pending Ready of every node.
    pub fn process(&mut self) {
        loop {
            let ids: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.has_ready())
                .map(|(id, _)| *id)
                .collect();
            if ids.is_empty() {
                return;
            }
            for id in ids {
                let ready = self.take_ready(id);
                self.carry_out(id, ready);
            }
        }
    }

    pub fn deliver(&mut self, message: Message) {
        if self.cut.contains(&(message.from, message.to)) {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&message.to) {
            node.step(message).expect("step");
            node.validate().expect("invariants hold");
        }
    }

    /// Delivers queued messages (and the ones they cause) until the queue is empty.
    pub fn stabilize(&mut self) {
        for _ in 0..10_000 {
            self.process();
            if self.queue.is_empty() {
                return;
            }
            let messages = std::mem::take(&mut self.queue);
            for message in messages {
                self.deliver(message);
            }
        }
        panic!("cluster did not stabilize");
    }

    /// Delivers only messages matching `keep`, dropping the others.
    pub fn deliver_if(&mut self, keep: impl Fn(&Message) -> bool) {
        self.process();
        let messages = std::mem::take(&mut self.queue);
        for message in messages.into_iter().filter(|m| keep(m)) {
            self.deliver(message);
        }
        self.process();
    }

    pub fn tick(&mut self, id: NodeId, ticks: u64) {
        for _ in 0..ticks {
            self.node(id).tick().expect("tick");
        }
    }

    pub fn campaign(&mut self, id: NodeId) {
        self.node(id).campaign().expect("campaign");
        self.stabilize();
    }

    pub fn role(&self, id: NodeId) -> Role {
        self.nodes[&id].status().soft_state.role
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|(_, n)| n.status().soft_state.role == Role::Leader)
            .map(|(id, _)| *id)
    }

    pub fn commit(&self, id: NodeId) -> u64 {
        self.nodes[&id].status().hard_state.commit
    }

    pub fn propose(&mut self, id: NodeId, text: &str) -> u64 {
        let receipt = self.node(id).propose(vec![payload(text)]).expect("propose");
        receipt.last_index
    }

    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|o| *o != id).collect();
        for other in others {
            self.cut.insert((id, other));
            self.cut.insert((other, id));
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn applied_payloads(&self, id: NodeId) -> Vec<Bytes> {
        self.applied[&id]
            .iter()
            .filter(|e| !e.payload.is_empty() && e.kind == conclave_consensus::EntryKind::Normal)
            .map(|e| e.payload.clone())
            .collect()
    }
}

pub fn kinds(messages: &[Message]) -> Vec<(MessageKind, NodeId)> {
    messages.iter().map(|m| (m.kind, m.to)).collect()
}
