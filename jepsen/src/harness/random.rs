//! A small seeded generator (SplitMix64) so that a nemesis schedule replays from its seed
//! on every machine, independently of any external crate's algorithm changes.

/// A deterministic pseudo-random generator.
#[derive(Debug, Clone)]
pub struct Random {
    state: u64,
}

impl Random {
    /// A generator whose whole output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut value = self.state;
        value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        value ^ (value >> 31)
    }

    /// A number in `0..bound`; `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below() needs a positive bound");
        // The modulo bias is below 2^-40 for the small bounds the harness uses.
        self.next_u64() % bound
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "between() needs low <= high");
        low + self.below(high - low + 1)
    }

    /// One element of a non-empty slice.
    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        assert!(!items.is_empty(), "choose() needs a non-empty slice");
        let index = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        &items[index]
    }

    /// Shuffles a slice in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for upper in (1..items.len()).rev() {
            let index = usize::try_from(self.below(upper as u64 + 1)).unwrap_or(0);
            items.swap(upper, index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_other_seed_other_sequence() {
        let first: Vec<u64> = {
            let mut random = Random::new(7);
            (0..8).map(|_| random.next_u64()).collect()
        };
        let again: Vec<u64> = {
            let mut random = Random::new(7);
            (0..8).map(|_| random.next_u64()).collect()
        };
        let other: Vec<u64> = {
            let mut random = Random::new(8);
            (0..8).map(|_| random.next_u64()).collect()
        };
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn between_stays_in_range_and_reaches_both_ends() {
        let mut random = Random::new(1);
        let values: Vec<u64> = (0..1000).map(|_| random.between(3, 6)).collect();
        assert!(values.iter().all(|value| (3..=6).contains(value)));
        assert!(values.contains(&3) && values.contains(&6));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut random = Random::new(3);
        let mut items: Vec<u32> = (0..20).collect();
        random.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }
}
