//! Quorum arithmetic for simple majorities and joint configurations.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{Membership, NodeId};

/// The outcome of counting votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    /// A quorum granted.
    Won,
    /// A quorum can no longer grant.
    Lost,
    /// Still undecided.
    Pending,
}

/// The largest index that a majority of `voters` has reached, given each voter's index
/// (missing voters count as zero). An empty voter set does not constrain: `u64::MAX`.
pub fn majority_index(voters: &BTreeSet<NodeId>, index_of: impl Fn(NodeId) -> u64) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    let mut indexes: Vec<u64> = voters.iter().map(|id| index_of(*id)).collect();
    // Sorted descending, the entry at position quorum - 1 is held by a quorum.
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[voters.len() / 2]
}

/// The index that a quorum of both halves of a (possibly joint) configuration reached.
pub fn joint_index(membership: &Membership, index_of: impl Fn(NodeId) -> u64) -> u64 {
    let incoming = majority_index(&membership.voters, &index_of);
    let outgoing = majority_index(&membership.voters_outgoing, &index_of);
    incoming.min(outgoing)
}

fn majority_vote(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let quorum = voters.len() / 2 + 1;
    let granted = voters
        .iter()
        .filter(|id| votes.get(id) == Some(&true))
        .count();
    let rejected = voters
        .iter()
        .filter(|id| votes.get(id) == Some(&false))
        .count();
    if granted >= quorum {
        VoteResult::Won
    } else if voters.len() - rejected < quorum {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

/// Counts `votes` against both halves of `membership`: both must be won.
pub fn joint_vote(membership: &Membership, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let incoming = majority_vote(&membership.voters, votes);
    let outgoing = majority_vote(&membership.voters_outgoing, votes);
    match (incoming, outgoing) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_index_is_the_quorum_median() {
        let voters: BTreeSet<NodeId> = [1, 2, 3, 4, 5].into();
        let indexes = BTreeMap::from([(1, 9), (2, 7), (3, 5), (4, 3), (5, 1)]);
        assert_eq!(majority_index(&voters, |id| indexes[&id]), 5);
        let voters: BTreeSet<NodeId> = [1, 2, 3, 4].into();
        assert_eq!(majority_index(&voters, |id| indexes[&id]), 5);
    }

    #[test]
    fn joint_needs_both_halves() {
        let membership = Membership {
            voters: [1, 2, 3].into(),
            voters_outgoing: [3, 4, 5].into(),
            learners: BTreeSet::new(),
        };
        let indexes = BTreeMap::from([(1, 9), (2, 9), (3, 2), (4, 1), (5, 1)]);
        assert_eq!(joint_index(&membership, |id| indexes[&id]), 1);
        let votes = BTreeMap::from([(1, true), (2, true)]);
        assert_eq!(joint_vote(&membership, &votes), VoteResult::Pending);
        let votes = BTreeMap::from([(1, true), (2, true), (4, false), (5, false)]);
        assert_eq!(joint_vote(&membership, &votes), VoteResult::Lost);
        let votes = BTreeMap::from([(1, true), (3, true), (4, true)]);
        assert_eq!(joint_vote(&membership, &votes), VoteResult::Won);
    }
}
