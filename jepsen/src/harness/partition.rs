//! Network partitions as sets of cut directed links between nodes.
//!
//! A partition is described by which peer links are cut; the proxy carries it out. Every
//! kind here cuts links in both directions, but the representation is per directed link so
//! that one-way faults stay expressible.

use std::collections::BTreeSet;

use super::random::Random;

/// The shape of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionKind {
    /// One random node is cut from all others.
    IsolateOne,
    /// The current leader (or a random node if none is known) is cut from all others.
    IsolateLeader,
    /// A random minority is cut from the majority.
    Halves,
    /// Each node sees a majority, but different nodes see different majorities (a ring of
    /// overlapping majorities); only meaningful from five nodes on.
    Ring,
    /// Two halves joined by one node that sees both.
    Bridge,
}

impl PartitionKind {
    /// Every partition kind.
    pub const ALL: [PartitionKind; 5] = [
        PartitionKind::IsolateOne,
        PartitionKind::IsolateLeader,
        PartitionKind::Halves,
        PartitionKind::Ring,
        PartitionKind::Bridge,
    ];
}

/// A partition: the directed links (from, to) that are cut.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Partition {
    /// Directed cut links, as (sender node, receiver node).
    pub cut: BTreeSet<(u64, u64)>,
}

impl Partition {
    /// Cuts every link between `group` and the other nodes, both ways.
    pub fn isolate_group(nodes: &[u64], group: &[u64]) -> Self {
        let mut cut = BTreeSet::new();
        for &inside in group {
            for &outside in nodes.iter().filter(|node| !group.contains(node)) {
                cut.insert((inside, outside));
                cut.insert((outside, inside));
            }
        }
        Self { cut }
    }

    /// Whether `from` can send to `to`.
    pub fn connected(&self, from: u64, to: u64) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// The nodes `node` can exchange messages with both ways, itself included.
    pub fn neighbours(&self, nodes: &[u64], node: u64) -> Vec<u64> {
        nodes
            .iter()
            .copied()
            .filter(|&other| {
                other == node || (self.connected(node, other) && self.connected(other, node))
            })
            .collect()
    }

    /// The nodes on the minority side: those that cannot exchange messages with a
    /// majority (themselves included). Clients are taken to stand with the majority, so
    /// cutting client traffic with a partition means cutting the client links to these.
    pub fn minority_nodes(&self, nodes: &[u64]) -> Vec<u64> {
        let majority = nodes.len() / 2 + 1;
        nodes
            .iter()
            .copied()
            .filter(|&node| self.neighbours(nodes, node).len() < majority)
            .collect()
    }

    /// Builds a partition of `kind` over `nodes` (sorted ids); `leader` is used by
    /// [`PartitionKind::IsolateLeader`].
    pub fn generate(
        kind: PartitionKind,
        nodes: &[u64],
        leader: Option<u64>,
        random: &mut Random,
    ) -> Self {
        assert!(!nodes.is_empty(), "a partition needs nodes");
        match kind {
            PartitionKind::IsolateOne => Self::isolate_group(nodes, &[*random.choose(nodes)]),
            PartitionKind::IsolateLeader => {
                let target = leader
                    .filter(|leader| nodes.contains(leader))
                    .unwrap_or_else(|| *random.choose(nodes));
                Self::isolate_group(nodes, &[target])
            }
            PartitionKind::Halves => {
                let mut shuffled = nodes.to_vec();
                random.shuffle(&mut shuffled);
                let minority = &shuffled[..nodes.len() / 2];
                Self::isolate_group(nodes, minority)
            }
            PartitionKind::Ring => Self::ring(nodes, random),
            PartitionKind::Bridge => Self::bridge(nodes, random),
        }
    }

    fn ring(nodes: &[u64], random: &mut Random) -> Self {
        let mut order = nodes.to_vec();
        random.shuffle(&mut order);
        let count = order.len();
        let majority = count / 2 + 1;
        // Each node keeps the nodes within `reach` steps on each side of the ring, which
        // with itself makes at least a majority.
        let reach = (majority - 1).div_ceil(2);
        let mut cut = BTreeSet::new();
        for (position, &node) in order.iter().enumerate() {
            for (other_position, &other) in order.iter().enumerate() {
                let forward = (other_position + count - position) % count;
                let distance = forward.min(count - forward);
                if distance > reach {
                    cut.insert((node, other));
                }
            }
        }
        Self { cut }
    }

    fn bridge(nodes: &[u64], random: &mut Random) -> Self {
        let mut order = nodes.to_vec();
        random.shuffle(&mut order);
        let bridge = order[0];
        let rest = &order[1..];
        let (left, right) = rest.split_at(rest.len() / 2);
        let mut cut = BTreeSet::new();
        for &first in left {
            for &second in right {
                cut.insert((first, second));
                cut.insert((second, first));
            }
        }
        assert!(!cut.iter().any(|&(a, b)| a == bridge || b == bridge));
        Self { cut }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE: [u64; 5] = [1, 2, 3, 4, 5];

    fn majority_sizes(partition: &Partition, nodes: &[u64]) -> Vec<usize> {
        nodes
            .iter()
            .map(|&node| partition.neighbours(nodes, node).len())
            .collect()
    }

    #[test]
    fn isolate_leader_cuts_exactly_the_leader_both_ways() {
        let mut random = Random::new(1);
        let partition =
            Partition::generate(PartitionKind::IsolateLeader, &FIVE, Some(3), &mut random);
        assert_eq!(partition.neighbours(&FIVE, 3), vec![3]);
        assert_eq!(partition.neighbours(&FIVE, 1), vec![1, 2, 4, 5]);
        assert_eq!(partition.cut.len(), 8);
    }

    #[test]
    fn halves_leave_exactly_one_majority_side() {
        for seed in 0..20 {
            let mut random = Random::new(seed);
            let partition = Partition::generate(PartitionKind::Halves, &FIVE, None, &mut random);
            let sizes = majority_sizes(&partition, &FIVE);
            assert_eq!(sizes.iter().filter(|&&size| size == 3).count(), 3);
            assert_eq!(sizes.iter().filter(|&&size| size == 2).count(), 2);
        }
    }

    #[test]
    fn ring_gives_every_node_a_majority_but_no_common_one() {
        for seed in 0..20 {
            let mut random = Random::new(seed);
            let partition = Partition::generate(PartitionKind::Ring, &FIVE, None, &mut random);
            let neighbourhoods: Vec<Vec<u64>> = FIVE
                .iter()
                .map(|&node| partition.neighbours(&FIVE, node))
                .collect();
            assert!(neighbourhoods.iter().all(|group| group.len() == 3));
            let distinct: BTreeSet<&Vec<u64>> = neighbourhoods.iter().collect();
            assert_eq!(distinct.len(), 5, "every node sees a different majority");
        }
    }

    #[test]
    fn bridge_node_sees_everyone_and_the_sides_do_not_see_each_other() {
        let mut random = Random::new(5);
        let partition = Partition::generate(PartitionKind::Bridge, &FIVE, None, &mut random);
        let sizes = majority_sizes(&partition, &FIVE);
        assert_eq!(sizes.iter().filter(|&&size| size == 5).count(), 1);
        assert_eq!(sizes.iter().filter(|&&size| size == 3).count(), 4);
    }

    #[test]
    fn minority_nodes_are_the_cut_off_ones_and_none_in_a_ring() {
        let partition = Partition::isolate_group(&FIVE, &[2, 4]);
        assert_eq!(partition.minority_nodes(&FIVE), vec![2, 4]);
        let mut random = Random::new(2);
        let ring = Partition::generate(PartitionKind::Ring, &FIVE, None, &mut random);
        assert!(ring.minority_nodes(&FIVE).is_empty());
        assert!(Partition::default().minority_nodes(&FIVE).is_empty());
    }

    #[test]
    fn isolate_one_on_three_nodes_leaves_a_majority_of_two() {
        let nodes = [1, 2, 3];
        let mut random = Random::new(9);
        let partition = Partition::generate(PartitionKind::IsolateOne, &nodes, None, &mut random);
        let sizes = majority_sizes(&partition, &nodes);
        let mut sorted = sizes.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![1, 2, 2]);
    }
}
