//! The simulated network: every message waits a seeded random delay, may be dropped or
//! duplicated, and never crosses a partition.

use std::collections::{BTreeMap, BTreeSet};

use conclave_consensus::{Message, NodeId, Prng};

/// The bounds of the network faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkFaults {
    /// Messages dropped, per thousand.
    pub drop_per_mille: u64,
    /// Messages delivered twice, per thousand.
    pub duplicate_per_mille: u64,
    /// The longest delay of a message in time units (delays differ, so messages reorder).
    pub delay_units_max: u64,
}

/// Messages in flight, ordered by delivery time.
#[derive(Debug, Default)]
pub struct Network {
    in_flight: BTreeMap<(u64, u64), Message>,
    sequence: u64,
    /// Directed links that are cut.
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    /// Queues `message` sent at `now`, applying the faults (unless `reliable`).
    pub fn send(
        &mut self,
        message: Message,
        now: u64,
        faults: &NetworkFaults,
        reliable: bool,
        prng: &mut Prng,
    ) {
        if !reliable && prng.chance(faults.drop_per_mille, 1000) {
            return;
        }
        let copies = if !reliable && prng.chance(faults.duplicate_per_mille, 1000) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = prng.range(1, faults.delay_units_max + 1);
            self.sequence += 1;
            self.in_flight
                .insert((now + delay, self.sequence), message.clone());
        }
    }

    /// Removes and returns every message due at or before `now`.
    pub fn due(&mut self, now: u64) -> Vec<Message> {
        let later = self.in_flight.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        due.into_values().collect()
    }

    /// True if a message from `from` may reach `to`.
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// Splits the nodes into `side` and the rest, cutting every link across.
    pub fn partition(&mut self, side: &BTreeSet<NodeId>, all: &BTreeSet<NodeId>) {
        for a in side {
            for b in all.difference(side) {
                self.cut.insert((*a, *b));
                self.cut.insert((*b, *a));
            }
        }
    }

    /// Cuts one direction of one link (an asymmetric fault).
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Messages still in flight.
    #[cfg(test)]
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_consensus::MessageKind;

    #[test]
    fn delivers_in_time_order_and_respects_partitions() {
        let faults = NetworkFaults {
            drop_per_mille: 0,
            duplicate_per_mille: 0,
            delay_units_max: 10,
        };
        let mut prng = Prng::new(3);
        let mut network = Network::default();
        for to in 2..6 {
            let message = Message::new(MessageKind::Heartbeat, 1, to, 1);
            network.send(message, 0, &faults, false, &mut prng);
        }
        assert!(network.due(0).is_empty());
        let delivered = network.due(10);
        assert_eq!(delivered.len(), 4);
        assert_eq!(network.in_flight_count(), 0);
        network.partition(&[1].into(), &[1, 2, 3].into());
        assert!(!network.connected(1, 2) && !network.connected(3, 1));
        assert!(network.connected(2, 3));
        network.heal();
        assert!(network.connected(1, 2));
    }
}
