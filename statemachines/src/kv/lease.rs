//! Leases as their own objects (etcd's model): a TTL, an expiry in log time, attached keys.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lease {
    pub(crate) ttl_seconds: i64,
    pub(crate) granted_ttl_seconds: i64,
    pub(crate) expiry_ms: u64,
    pub(crate) keys: BTreeSet<Vec<u8>>,
}

/// Every lease, and an index of them by expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Leases {
    leases: BTreeMap<i64, Lease>,
    expiries: BTreeSet<(u64, i64)>,
}

pub(crate) fn expiry_ms(now_ms: u64, ttl_seconds: i64) -> u64 {
    now_ms.saturating_add(
        u64::try_from(ttl_seconds)
            .unwrap_or(0)
            .saturating_mul(1_000),
    )
}

impl Leases {
    pub(crate) fn len(&self) -> usize {
        self.leases.len()
    }

    pub(crate) fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub(crate) fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub(crate) fn ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&i64, &Lease)> {
        self.leases.iter()
    }

    pub(crate) fn insert(&mut self, id: i64, lease: Lease) {
        self.expiries.insert((lease.expiry_ms, id));
        let previous = self.leases.insert(id, lease);
        assert!(previous.is_none(), "lease ids are unique");
    }

    pub(crate) fn remove(&mut self, id: i64) -> Option<Lease> {
        let lease = self.leases.remove(&id)?;
        self.expiries.remove(&(lease.expiry_ms, id));
        Some(lease)
    }

    /// Moves a lease's expiry; returns its TTL, or `None` if there is no such lease.
    pub(crate) fn renew(&mut self, id: i64, now_ms: u64) -> Option<i64> {
        let lease = self.leases.get_mut(&id)?;
        self.expiries.remove(&(lease.expiry_ms, id));
        lease.expiry_ms = expiry_ms(now_ms, lease.ttl_seconds);
        self.expiries.insert((lease.expiry_ms, id));
        Some(lease.ttl_seconds)
    }

    /// The lease that expires first, if it is due at `now_ms`.
    pub(crate) fn first_due(&self, now_ms: u64) -> Option<i64> {
        self.expiries
            .first()
            .filter(|(expiry_ms, _)| *expiry_ms <= now_ms)
            .map(|(_, id)| *id)
    }

    /// Checks that the expiry index matches the leases (for tests).
    pub(crate) fn validate(&self) -> Result<(), String> {
        let expiries: BTreeSet<(u64, i64)> = self
            .leases
            .iter()
            .map(|(id, lease)| (lease.expiry_ms, *id))
            .collect();
        if expiries != self.expiries {
            return Err("the lease expiry index disagrees with the leases".to_string());
        }
        Ok(())
    }

    pub(crate) fn attach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.to_vec());
        }
    }

    pub(crate) fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.remove(key);
        }
    }
}
