//! The kv machine: etcd's data model as its clients observe it.
//!
//! - A global revision: an empty store is at revision 1; every put, every delete that
//!   removes something and every transaction that writes adds exactly one; reads, lease
//!   grants, keep-alives and compaction add none.
//! - Per key: create revision, mod revision and version (a delete ends the key's life; the
//!   next put starts a new one at version 1).
//! - Ranges over `[key, range_end)`: an empty `range_end` is the single key, `[0]` is "every
//!   key from `key` on" (so key `[0]` with end `[0]` is every key), and a prefix `p` is the
//!   range `[p, prefix_range_end(p))`.
//! - Transactions decide every branch (nested ones included) against the store before the
//!   transaction, check every operation, and only then write; later operations see earlier
//!   writes of the same transaction.
//! - History is kept until compaction; reads before the compact revision and after the
//!   current one fail with etcd's errors.
//! - Watches belong to a session and report, from any retained revision on, all matching
//!   events of one revision in one [`WatchResponse`] event.
//! - Leases are their own objects with a TTL in log time; revocation and expiry delete the
//!   attached keys as one revision.

mod lease;
mod store;
mod txn;
mod types;
mod watch;

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

pub use types::*;

use crate::codec;
use crate::error::Error;
use crate::machine::{ApplyContext, QueryContext, SessionId, StateMachine};
use lease::{Lease, Leases};
use store::{KeyEntry, KeyRange, Store, WriteBatch};
use watch::{Watch, Watches};

/// The end of the range that holds every key starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte is 0xff (or the prefix is empty): the range runs to the end.
    vec![0]
}

/// The bounds of the kv machine; every one is checked by [`KvConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvConfig {
    /// The most compares, success ops or failure ops one transaction level may hold.
    pub txn_ops_max: u64,
    /// The shortest lease TTL; shorter requests are raised to it, as etcd does.
    pub lease_ttl_seconds_min: i64,
    /// The longest lease TTL; longer requests fail.
    pub lease_ttl_seconds_max: i64,
    /// The most leases at once.
    pub leases_max: u64,
    /// The most watches at once.
    pub watches_max: u64,
    /// How many revisions of history watches that start in the past are sent per applied
    /// entry, in all; the rest follows on later entries (idle leaders' ticks included).
    pub watch_catch_up_revisions_per_entry: u64,
    /// The longest key.
    pub key_bytes_max: u64,
    /// The most history the store retains (keys, values and a per-entry allowance, summed
    /// over every retained revision); puts beyond it fail until compaction frees room.
    /// Deletes, revocations and expiries are always allowed, as they lead to freeing room.
    pub history_bytes_max: u64,
    /// The longest value.
    pub value_bytes_max: u64,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            txn_ops_max: 128,
            lease_ttl_seconds_min: 2,
            lease_ttl_seconds_max: 9_000_000_000,
            leases_max: 1_000_000,
            watches_max: 100_000,
            watch_catch_up_revisions_per_entry: 1_000,
            key_bytes_max: 1_572_864,
            history_bytes_max: 2 * 1024 * 1024 * 1024,
            value_bytes_max: 1_572_864,
        }
    }
}

impl KvConfig {
    /// Checks every bound.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("txn_ops_max", self.txn_ops_max),
            ("leases_max", self.leases_max),
            ("watches_max", self.watches_max),
            (
                "watch_catch_up_revisions_per_entry",
                self.watch_catch_up_revisions_per_entry,
            ),
            ("key_bytes_max", self.key_bytes_max),
            ("history_bytes_max", self.history_bytes_max),
            ("value_bytes_max", self.value_bytes_max),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::Config {
                    field,
                    reason: "must be at least 1".to_string(),
                });
            }
        }
        if self.lease_ttl_seconds_min < 1 {
            return Err(Error::Config {
                field: "lease_ttl_seconds_min",
                reason: "must be at least 1".to_string(),
            });
        }
        if self.lease_ttl_seconds_max < self.lease_ttl_seconds_min {
            return Err(Error::Config {
                field: "lease_ttl_seconds_max",
                reason: "must be at least lease_ttl_seconds_min".to_string(),
            });
        }
        Ok(())
    }
}

/// The etcd-style multi-version key-value machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvMachine {
    config: KvConfig,
    store: Store,
    leases: Leases,
    watches: Watches,
}

type Context<'a> = ApplyContext<'a, WatchResponse>;

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHeader {
    revision: i64,
    compact_revision: i64,
    key_count: u64,
    lease_count: u64,
    next_watch_id: i64,
    watch_count: u64,
}

impl KvMachine {
    /// An empty store at revision 1.
    pub fn new(config: KvConfig) -> Self {
        KvMachine {
            config,
            store: Store::default(),
            leases: Leases::default(),
            watches: Watches::new(1),
        }
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.store.revision()
    }

    fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        let at = self.store.check_read_revision(request.revision)?;
        Ok(self.store.range(request, at, self.store.revision()))
    }

    fn check_put(&self, request: &PutRequest) -> Result<(), KvError> {
        if request.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        if request.key.len() as u64 > self.config.key_bytes_max
            || request.value.len() as u64 > self.config.value_bytes_max
        {
            return Err(KvError::RequestTooLarge);
        }
        if request.ignore_value && !request.value.is_empty() {
            return Err(KvError::ValueProvided);
        }
        if request.ignore_lease && request.lease != 0 {
            return Err(KvError::LeaseProvided);
        }
        if (request.ignore_value || request.ignore_lease)
            && self.store.latest(&request.key).is_none()
        {
            return Err(KvError::KeyNotFound);
        }
        if request.lease != 0 && !self.leases.contains(request.lease) {
            return Err(KvError::LeaseNotFound);
        }
        Ok(())
    }

    fn check_delete(request: &DeleteRangeRequest) -> Result<(), KvError> {
        if request.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        Ok(())
    }

    /// Checks every operation of the branches `path` selects, before anything is written.
    /// Also adds up, in `put_bytes`, what the branch's puts will add to the history.
    fn check_txn(
        &self,
        txn: &TxnRequest,
        path: &[bool],
        cursor: &mut usize,
        put_bytes: &mut u64,
    ) -> Result<(), KvError> {
        let succeeded = path[*cursor];
        *cursor += 1;
        for op in if succeeded {
            &txn.success
        } else {
            &txn.failure
        } {
            match op {
                RequestOp::Range(range) => {
                    self.store.check_read_revision(range.revision).map(drop)?
                }
                RequestOp::Put(put) => {
                    self.check_put(put)?;
                    *put_bytes += store::entry_bytes(put.key.len(), put.value.len());
                }
                RequestOp::DeleteRange(delete) => Self::check_delete(delete)?,
                RequestOp::Txn(nested) => self.check_txn(nested, path, cursor, put_bytes)?,
            }
        }
        Ok(())
    }

    fn put_key(&mut self, batch: &mut WriteBatch, request: &PutRequest) -> PutResponse {
        let previous = self.store.latest(&request.key);
        let (value, lease) = match &previous {
            Some(kv) if request.ignore_value || request.ignore_lease => (
                if request.ignore_value {
                    kv.value.clone()
                } else {
                    request.value.clone()
                },
                if request.ignore_lease {
                    kv.lease
                } else {
                    request.lease
                },
            ),
            _ => (request.value.clone(), request.lease),
        };
        let (_, prev_kv) = self.store.put(batch, &request.key, value, lease);
        if let Some(previous) = &prev_kv
            && previous.lease != 0
            && previous.lease != lease
        {
            self.leases.detach(previous.lease, &request.key);
        }
        if lease != 0 {
            self.leases.attach(lease, &request.key);
        }
        PutResponse {
            revision: 0,
            prev_kv: if request.prev_kv { prev_kv } else { None },
        }
    }

    fn delete_keys(
        &mut self,
        batch: &mut WriteBatch,
        range: KeyRange<'_>,
        prev_kv: bool,
    ) -> DeleteRangeResponse {
        let deleted = self.store.delete_range(batch, range);
        for kv in &deleted {
            if kv.lease != 0 {
                self.leases.detach(kv.lease, &kv.key);
            }
        }
        DeleteRangeResponse {
            revision: 0,
            deleted: deleted.len() as i64,
            prev_kvs: if prev_kv { deleted } else { Vec::new() },
        }
    }

    fn execute_txn(
        &mut self,
        batch: &mut WriteBatch,
        txn: &TxnRequest,
        path: &[bool],
        cursor: &mut usize,
    ) -> TxnResponse {
        let succeeded = path[*cursor];
        *cursor += 1;
        let mut responses = Vec::new();
        for op in if succeeded {
            &txn.success
        } else {
            &txn.failure
        } {
            let response = match op {
                RequestOp::Range(range) => {
                    // Reads at the current revision see this transaction's earlier writes.
                    let at = if range.revision == 0 {
                        batch.main
                    } else {
                        range.revision
                    };
                    ResponseOp::Range(self.store.range(range, at, 0))
                }
                RequestOp::Put(put) => ResponseOp::Put(self.put_key(batch, put)),
                RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(self.delete_keys(
                    batch,
                    KeyRange::new(&delete.key, &delete.range_end),
                    delete.prev_kv,
                )),
                RequestOp::Txn(nested) => {
                    ResponseOp::Txn(self.execute_txn(batch, nested, path, cursor))
                }
            };
            responses.push(response);
        }
        TxnResponse {
            revision: 0,
            succeeded,
            responses,
        }
    }

    /// Sends watches that are behind their next part of history.
    fn catch_up(&mut self, context: &mut Context<'_>) {
        if !self.watches.any_behind() {
            return;
        }
        let budget = self.config.watch_catch_up_revisions_per_entry;
        for (session, response) in self.watches.catch_up(&self.store, budget) {
            context.publish(session, response);
        }
    }

    /// Commits a write batch and tells the watches; returns the revision after it.
    fn finish(&mut self, context: &mut Context<'_>, batch: WriteBatch) -> i64 {
        self.store.commit(&batch);
        if !batch.changes.is_empty() {
            for (session, response) in self.watches.notify(batch.main, &batch.changes) {
                context.publish(session, response);
            }
        }
        self.store.revision()
    }

    fn txn(&mut self, context: &mut Context<'_>, txn: &TxnRequest) -> KvOutput {
        txn::check_op_counts(txn, self.config.txn_ops_max)?;
        txn::check_duplicates(txn)?;
        let mut path = Vec::new();
        txn::decide_path(&self.store, txn, &mut path);
        let mut put_bytes = 0;
        self.check_txn(txn, &path, &mut 0, &mut put_bytes)?;
        self.check_space(put_bytes)?;
        let mut batch = self.store.begin();
        let mut response = self.execute_txn(&mut batch, txn, &path, &mut 0);
        let revision = self.finish(context, batch);
        set_revisions(&mut response, revision);
        Ok(KvResponse::Txn(response))
    }

    /// Refuses writes that would take the history beyond `history_bytes_max`.
    fn check_space(&self, put_bytes: u64) -> Result<(), KvError> {
        let history_bytes_max = self.config.history_bytes_max;
        if put_bytes > 0 && self.store.history_bytes().saturating_add(put_bytes) > history_bytes_max
        {
            return Err(KvError::NoSpace { history_bytes_max });
        }
        Ok(())
    }

    fn put(&mut self, context: &mut Context<'_>, request: &PutRequest) -> KvOutput {
        self.check_put(request)?;
        self.check_space(store::entry_bytes(request.key.len(), request.value.len()))?;
        let mut batch = self.store.begin();
        let mut response = self.put_key(&mut batch, request);
        response.revision = self.finish(context, batch);
        Ok(KvResponse::Put(response))
    }

    fn delete(&mut self, context: &mut Context<'_>, request: &DeleteRangeRequest) -> KvOutput {
        Self::check_delete(request)?;
        let mut batch = self.store.begin();
        let range = KeyRange::new(&request.key, &request.range_end);
        let mut response = self.delete_keys(&mut batch, range, request.prev_kv);
        response.revision = self.finish(context, batch);
        Ok(KvResponse::DeleteRange(response))
    }

    fn compact(&mut self, context: &mut Context<'_>, revision: i64) -> KvOutput {
        if revision <= self.store.compact_revision() {
            return Err(KvError::Compacted {
                compact_revision: self.store.compact_revision(),
            });
        }
        if revision > self.store.revision() {
            return Err(KvError::FutureRevision {
                current_revision: self.store.revision(),
            });
        }
        self.store.compact(revision);
        let current = self.store.revision();
        for (session, response) in self.watches.cancel_compacted(revision, current) {
            context.publish(session, response);
        }
        Ok(KvResponse::Compact {
            revision: self.store.revision(),
        })
    }

    fn lease_grant(&mut self, context: &Context<'_>, ttl_seconds: i64, id: i64) -> KvOutput {
        if id < 0 {
            return Err(KvError::InvalidArgument {
                reason: "negative lease id".to_string(),
            });
        }
        if ttl_seconds > self.config.lease_ttl_seconds_max {
            return Err(KvError::LeaseTtlTooLarge {
                lease_ttl_seconds_max: self.config.lease_ttl_seconds_max,
            });
        }
        if id != 0 && self.leases.contains(id) {
            return Err(KvError::LeaseExists);
        }
        if self.leases.len() as u64 >= self.config.leases_max {
            return Err(KvError::TooManyLeases {
                leases_max: self.config.leases_max,
            });
        }
        // The machine chooses ids from the log index, so every replica chooses the same.
        let mut id = if id == 0 {
            i64::try_from(context.index()).unwrap_or(1).max(1)
        } else {
            id
        };
        while self.leases.contains(id) {
            id = id.checked_add(1).unwrap_or(1);
        }
        let ttl_seconds = ttl_seconds.max(self.config.lease_ttl_seconds_min);
        let lease = Lease {
            ttl_seconds,
            granted_ttl_seconds: ttl_seconds,
            expiry_ms: lease::expiry_ms(context.log_time_ms(), ttl_seconds),
            keys: Default::default(),
        };
        self.leases.insert(id, lease);
        Ok(KvResponse::LeaseGranted {
            revision: self.store.revision(),
            id,
            ttl_seconds,
        })
    }

    /// Revokes a lease, deleting its keys as one revision.
    fn revoke(&mut self, context: &mut Context<'_>, id: i64) -> Result<i64, KvError> {
        let lease = self.leases.remove(id).ok_or(KvError::LeaseNotFound)?;
        let mut batch = self.store.begin();
        for key in &lease.keys {
            self.store.delete_range(&mut batch, KeyRange::Single(key));
        }
        Ok(self.finish(context, batch))
    }

    fn watch(&mut self, context: &mut Context<'_>, request: &WatchRequest) -> KvOutput {
        let session = context.session().ok_or(KvError::NoSession)?;
        if self.watches.len() as u64 >= self.config.watches_max {
            return Err(KvError::TooManyWatches {
                watches_max: self.config.watches_max,
            });
        }
        if request.start_revision < 0 {
            return Err(KvError::InvalidArgument {
                reason: "negative start revision".to_string(),
            });
        }
        let current = self.store.revision();
        let start_revision = if request.start_revision == 0 {
            current + 1
        } else {
            request.start_revision
        };
        // As in etcd, history can be watched from the compact revision on; a delete made at
        // exactly that revision was dropped by compaction and is not replayed.
        if start_revision < self.store.compact_revision() {
            return Err(KvError::Compacted {
                compact_revision: self.store.compact_revision(),
            });
        }
        let watch = Watch {
            session,
            key: request.key.clone(),
            range_end: request.range_end.clone(),
            next_revision: start_revision,
            no_put: request.no_put,
            no_delete: request.no_delete,
            prev_kv: request.prev_kv,
        };
        let watch_id = self.watches.insert(None, watch, current);
        // The first part of the history goes out with the creation; the rest on later entries.
        self.catch_up(context);
        Ok(KvResponse::WatchCreated {
            revision: current,
            watch_id,
        })
    }

    fn lease_time_to_live(&self, context: &QueryContext, id: i64, keys: bool) -> KvOutput {
        let lease = self.leases.get(id).ok_or(KvError::LeaseNotFound)?;
        let remaining_ms = lease.expiry_ms.saturating_sub(context.log_time_ms);
        Ok(KvResponse::LeaseTimeToLive {
            revision: self.store.revision(),
            id,
            ttl_seconds: i64::try_from(remaining_ms.div_ceil(1_000)).unwrap_or(i64::MAX),
            granted_ttl_seconds: lease.granted_ttl_seconds,
            keys: if keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }
}

fn set_revisions(response: &mut TxnResponse, revision: i64) {
    response.revision = revision;
    for op in &mut response.responses {
        match op {
            ResponseOp::Range(range) => range.revision = revision,
            ResponseOp::Put(put) => put.revision = revision,
            ResponseOp::DeleteRange(delete) => delete.revision = revision,
            ResponseOp::Txn(nested) => set_revisions(nested, revision),
        }
    }
}

impl StateMachine for KvMachine {
    const TYPE_NAME: &'static str = "kv";
    type Command = KvCommand;
    type Query = KvQuery;
    type Output = KvOutput;
    type Event = WatchResponse;

    fn apply(&mut self, context: &mut Context<'_>, command: KvCommand) -> KvOutput {
        // History owed to watches goes out before anything this command changes.
        self.catch_up(context);
        match command {
            KvCommand::Range(request) => self.range(&request).map(KvResponse::Range),
            KvCommand::Put(request) => self.put(context, &request),
            KvCommand::DeleteRange(request) => self.delete(context, &request),
            KvCommand::Txn(request) => self.txn(context, &request),
            KvCommand::Compact { revision } => self.compact(context, revision),
            KvCommand::LeaseGrant { ttl_seconds, id } => self.lease_grant(context, ttl_seconds, id),
            KvCommand::LeaseRevoke { id } => self
                .revoke(context, id)
                .map(|revision| KvResponse::LeaseRevoked { revision }),
            KvCommand::LeaseKeepAlive { id } => {
                let ttl_seconds = self
                    .leases
                    .renew(id, context.log_time_ms())
                    .ok_or(KvError::LeaseNotFound)?;
                Ok(KvResponse::LeaseKeptAlive {
                    revision: self.store.revision(),
                    id,
                    ttl_seconds,
                })
            }
            KvCommand::Watch(request) => self.watch(context, &request),
            KvCommand::CancelWatch { watch_id } => {
                let owned = self.watches.owner(watch_id);
                if owned.is_none() || owned != context.session() {
                    return Err(KvError::WatchNotFound { watch_id });
                }
                self.watches.remove(watch_id);
                Ok(KvResponse::WatchCanceled {
                    revision: self.store.revision(),
                    watch_id,
                })
            }
        }
    }

    fn query(&self, context: &QueryContext, query: KvQuery) -> KvOutput {
        match query {
            KvQuery::Range(request) => self.range(&request).map(KvResponse::Range),
            KvQuery::LeaseTimeToLive { id, keys } => self.lease_time_to_live(context, id, keys),
            KvQuery::LeaseLeases => Ok(KvResponse::Leases {
                revision: self.store.revision(),
                ids: self.leases.ids(),
            }),
            KvQuery::Status => Ok(KvResponse::Status {
                revision: self.store.revision(),
                compact_revision: self.store.compact_revision(),
            }),
        }
    }

    fn session_closed(&mut self, _context: &mut Context<'_>, session: SessionId) {
        self.watches.remove_session(session);
    }

    fn time_advanced(&mut self, context: &mut Context<'_>) {
        self.catch_up(context);
        while let Some(id) = self.leases.first_due(context.log_time_ms()) {
            let revoked = self.revoke(context, id);
            assert!(revoked.is_ok(), "a due lease exists");
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.store.validate()?;
        self.leases.validate()?;
        self.watches.validate(self.store.revision())?;
        // A lease's key set and the keys' lease fields describe the same attachment.
        let mut attached = 0;
        for (id, lease) in self.leases.iter() {
            for key in &lease.keys {
                let holder = self.store.latest(key).map(|kv| kv.lease);
                if holder != Some(*id) {
                    return Err(format!("lease {id} lists a key that is not attached to it"));
                }
                attached += 1;
            }
        }
        let leased = self.store.live_leased_keys();
        if leased.len() != attached
            || leased.iter().any(|(key, id)| {
                self.leases
                    .get(*id)
                    .is_none_or(|lease| !lease.keys.contains(key))
            })
        {
            return Err("a live key names a lease that does not list it".to_string());
        }
        Ok(())
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        let (revision, compact_revision, key_count) = self.store.header();
        let header = SnapshotHeader {
            revision,
            compact_revision,
            key_count,
            lease_count: self.leases.len() as u64,
            next_watch_id: self.watches.next_id(),
            watch_count: self.watches.len() as u64,
        };
        codec::write_frame(writer, &header, "kv header")?;
        for lease in self.leases.iter() {
            codec::write_frame(writer, &lease, "kv lease")?;
        }
        for watch in self.watches.iter() {
            codec::write_frame(writer, &watch, "kv watch")?;
        }
        for key in self.store.histories_all() {
            codec::write_frame(writer, &key, "kv key")?;
        }
        Ok(())
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        let header: SnapshotHeader = codec::read_frame(reader, "kv header")?;
        let mut leases = Leases::default();
        for _ in 0..header.lease_count {
            let (id, lease): (i64, Lease) = codec::read_frame(reader, "kv lease")?;
            if leases.contains(id) {
                return Err(Error::SnapshotFormat {
                    reason: format!("lease {id} twice"),
                });
            }
            leases.insert(id, lease);
        }
        let mut watches = Watches::new(header.next_watch_id);
        for _ in 0..header.watch_count {
            let (id, watch): (i64, Watch) = codec::read_frame(reader, "kv watch")?;
            if watches.owner(id).is_some() {
                return Err(Error::SnapshotFormat {
                    reason: format!("watch {id} twice"),
                });
            }
            watches.insert(Some(id), watch, header.revision);
        }
        let mut keys = BTreeMap::new();
        for _ in 0..header.key_count {
            let (key, entries): (Vec<u8>, Vec<KeyEntry>) = codec::read_frame(reader, "kv key")?;
            keys.insert(key, entries);
        }
        self.store = Store::from_parts(header.revision, header.compact_revision, keys);
        self.leases = leases;
        self.watches = watches;
        Ok(())
    }
}
