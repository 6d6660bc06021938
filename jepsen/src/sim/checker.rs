//! The safety invariants checked after every step of a simulation.
//!
//! Each check names the property of the Raft paper (Figure 3) it enforces.

use std::collections::{BTreeMap, BTreeSet};

use conclave_consensus::{Entry, Membership, MemoryStorage, NodeId, RawNode, Role, Storage};

use super::node::{SimNode, fnv1a};

/// What the checker has learned from every node so far.
#[derive(Debug, Default)]
pub struct Checker {
    /// Election safety: the leader of each term.
    leaders: BTreeMap<u64, NodeId>,
    /// Log matching: for each (index, term) ever persisted, the payload hash and the term
    /// of the entry before it.
    persisted: BTreeMap<(u64, u64), (u64, u64)>,
    /// For every index known to be committed: the entry's term, and the lowest current term
    /// of a node that saw it committed (the entry was committed in that term or earlier).
    committed: BTreeMap<u64, (u64, u64)>,
    /// State machine safety: what was applied at each index (term, payload hash) and the
    /// state hash after it.
    applied: BTreeMap<u64, (u64, u64, u64)>,
    /// The highest committed index seen anywhere.
    pub committed_max: u64,
}

impl Checker {
    /// The term and hash of the entry applied at `index`, if any node applied it.
    pub fn applied_at(&self, index: u64) -> Option<(u64, u64)> {
        self.applied
            .get(&index)
            .map(|(term, payload, _)| (*term, *payload))
    }

    /// Log matching (paper 5.3): two persisted entries with the same index and term hold the
    /// same command and follow entries of the same term, so by induction the logs are
    /// identical up to there. Called after `entries` were appended to `storage`.
    pub fn on_persist(
        &mut self,
        node: NodeId,
        storage: &MemoryStorage,
        entries: &[Entry],
    ) -> Result<(), String> {
        for entry in entries {
            let previous_term = storage
                .term(entry.index - 1)
                .map_err(|e| format!("node {node}: no term before {}: {e}", entry.index))?;
            let fingerprint = (fnv1a(&entry.payload) ^ entry.kind as u64, previous_term);
            let known = self
                .persisted
                .entry((entry.index, entry.term))
                .or_insert(fingerprint);
            if *known != fingerprint {
                return Err(format!(
                    "log matching: node {node} persisted ({}, term {}) with a different \
                     command or predecessor term than another node",
                    entry.index, entry.term
                ));
            }
        }
        Ok(())
    }

    /// State machine safety (paper 5.4.3): no two nodes apply different entries at one index,
    /// and their states agree after it.
    pub fn on_apply(&mut self, node: NodeId, entry: &Entry, state_hash: u64) -> Result<(), String> {
        let record = (entry.term, fnv1a(&entry.payload), state_hash);
        let known = self.applied.entry(entry.index).or_insert(record);
        if *known != record {
            return Err(format!(
                "state machine safety: node {node} applied index {} as (term {}, hash {:x}), \
                 another node applied (term {}, hash {:x})",
                entry.index, record.0, record.2, known.0, known.2
            ));
        }
        Ok(())
    }

    /// A restored snapshot must equal the state every other node had at that index.
    pub fn on_snapshot(&mut self, node: NodeId, index: u64, state_hash: u64) -> Result<(), String> {
        if let Some((_, _, hash)) = self.applied.get(&index)
            && *hash != state_hash
        {
            return Err(format!(
                "state machine safety: node {node} installed a snapshot at {index} that differs \
                 from the state others applied"
            ));
        }
        Ok(())
    }

    /// The checks run after every step.
    pub fn after_step(&mut self, nodes: &mut BTreeMap<NodeId, SimNode>) -> Result<(), String> {
        for node in nodes.values_mut() {
            if node.decommissioned {
                continue;
            }
            if let Some(storage) = node.storage.as_ref() {
                check_persisted_commit(
                    node.id,
                    storage.hard_state().commit,
                    &mut node.persisted_commit_seen,
                )?;
            }
            let Some(core) = node.core.as_ref() else {
                continue;
            };
            core.validate()
                .map_err(|e| format!("node {}: {e}", node.id))?;
            let status = core.status();
            check_persisted_commit(
                node.id,
                core.storage().hard_state().commit,
                &mut node.persisted_commit_seen,
            )?;
            // Commit and apply never go backwards within an incarnation.
            let commit = status.hard_state.commit;
            if commit < node.commit_seen {
                return Err(format!(
                    "node {}: commit went back {} -> {commit}",
                    node.id, node.commit_seen
                ));
            }
            node.commit_seen = commit;
            if node.machine.applied_index < node.applied_seen {
                return Err(format!("node {}: applied went backwards", node.id));
            }
            node.applied_seen = node.machine.applied_index;
            if status.soft_state.role == Role::Leader {
                self.check_leader(node.id, status.hard_state.term, core)?;
            }
            self.check_committed(node, commit, status.hard_state.term)?;
        }
        check_commits_durable_on_a_quorum(nodes)
    }

    /// Election safety (paper 5.2): at most one leader per term. Leader completeness
    /// (paper 5.4): a leader holds every entry committed in earlier terms.
    fn check_leader(
        &mut self,
        id: NodeId,
        term: u64,
        core: &RawNode<MemoryStorage>,
    ) -> Result<(), String> {
        let known = *self.leaders.entry(term).or_insert(id);
        if known != id {
            return Err(format!(
                "election safety: nodes {known} and {id} both lead term {term}"
            ));
        }
        let first = core.first_index().map_err(|e| e.to_string())?;
        let last = core.status().last_index;
        for (index, (committed_term, seen_in_term)) in self.committed.range(first..) {
            // Only leaders of later terms must hold it: a deposed leader that still thinks
            // it leads may lack entries committed in a higher term.
            if *seen_in_term >= term {
                continue;
            }
            let held = if *index > last {
                None
            } else {
                core.term(*index).ok()
            };
            if held != Some(*committed_term) {
                return Err(format!(
                    "leader completeness: leader {id} of term {term} lacks committed entry \
                     {index} of term {committed_term} (holds {held:?})"
                ));
            }
        }
        Ok(())
    }

    /// Committed entries are never lost or changed: every node's committed prefix agrees.
    fn check_committed(
        &mut self,
        node: &mut SimNode,
        commit: u64,
        current_term: u64,
    ) -> Result<(), String> {
        let Some(core) = node.core.as_ref() else {
            return Ok(());
        };
        if commit <= node.commit_checked {
            return Ok(());
        }
        let first = core.first_index().map_err(|e| e.to_string())?;
        let low = (node.commit_checked + 1).max(first);
        for index in low..=commit {
            let term = core
                .term(index)
                .map_err(|e| format!("node {}: {e}", node.id))?;
            let known = self.committed.entry(index).or_insert((term, current_term));
            known.1 = known.1.min(current_term);
            let known = known.0;
            if known != term {
                return Err(format!(
                    "committed entry lost: node {} committed index {index} with term {term}, \
                     but term {known} was committed there before",
                    node.id
                ));
            }
        }
        node.commit_checked = commit;
        self.committed_max = self.committed_max.max(commit);
        Ok(())
    }
}

/// Committed means durable on a quorum (paper 5.3, Figure 2): whenever a leader's commit
/// index advances within its term, a quorum of its membership (before or after this step,
/// as a membership entry applied in the step may have changed it) holds the entry at that
/// index on disk, or a snapshot covering it. The volatile commit index alone could hide a
/// leader that counted a write still in flight.
fn check_commits_durable_on_a_quorum(nodes: &mut BTreeMap<NodeId, SimNode>) -> Result<(), String> {
    let mut views = Vec::new();
    for node in nodes.values() {
        let Some(core) = node.core.as_ref().filter(|_| !node.decommissioned) else {
            continue;
        };
        let status = core.status();
        if status.soft_state.role != Role::Leader {
            continue;
        }
        let (term, commit) = (status.hard_state.term, status.hard_state.commit);
        let entry_term = core
            .term(commit)
            .map_err(|e| format!("node {}: {e}", node.id))?;
        views.push((node.id, term, commit, entry_term, status.membership));
    }
    let mut leaders = BTreeSet::new();
    for (id, term, commit, entry_term, membership) in views {
        leaders.insert(id);
        let previous = nodes.get(&id).and_then(|n| n.leader_view.clone());
        if let Some((previous_term, previous_commit, previous_membership)) = previous
            && previous_term == term
            && commit > previous_commit
        {
            let holds = |voter: &NodeId| durably_holds(nodes.get(voter), commit, entry_term);
            let quorum_in = |membership: &Membership| {
                let majority = |voters: &BTreeSet<NodeId>| {
                    voters.is_empty()
                        || voters.iter().filter(|v| holds(v)).count() * 2 > voters.len()
                };
                majority(&membership.voters) && majority(&membership.voters_outgoing)
            };
            if !quorum_in(&previous_membership) && !quorum_in(&membership) {
                return Err(format!(
                    "committed but not durable: leader {id} of term {term} committed index \
                     {commit} (term {entry_term}), which no quorum of {membership:?} holds on disk"
                ));
            }
        }
        if let Some(node) = nodes.get_mut(&id) {
            node.leader_view = Some((term, commit, membership));
        }
    }
    for node in nodes.values_mut() {
        if !leaders.contains(&node.id) {
            node.leader_view = None;
        }
    }
    Ok(())
}

/// True if `node`'s disk (running or crashed) holds `(index, term)` or a snapshot past it.
fn durably_holds(node: Option<&SimNode>, index: u64, term: u64) -> bool {
    let Some(node) = node else {
        return false;
    };
    let storage = node
        .core
        .as_ref()
        .map(|core| core.storage())
        .or(node.storage.as_ref());
    let Some(storage) = storage else {
        return false;
    };
    match storage.first_index() {
        Ok(first) if index < first => true,
        Ok(_) => storage.term(index) == Ok(term),
        Err(_) => false,
    }
}

fn check_persisted_commit(id: NodeId, commit: u64, seen: &mut u64) -> Result<(), String> {
    if commit < *seen {
        return Err(format!(
            "node {id}: persisted commit went back {seen} -> {commit}"
        ));
    }
    *seen = commit;
    Ok(())
}
