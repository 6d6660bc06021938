//! The kv machine's commands, queries, outputs, events and errors, shaped after etcd's v3
//! API so that the etcd frontend maps them field for field.

use serde::{Deserialize, Serialize};

/// A key with its value and metadata, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The revision of the put that created the key (in its current life).
    pub create_revision: i64,
    /// The revision of the last change to the key.
    pub mod_revision: i64,
    /// How many times the key was put since it was created (1 after creation).
    pub version: i64,
    /// The value (empty in keys-only ranges).
    pub value: Vec<u8>,
    /// The lease the key is attached to, or 0.
    pub lease: i64,
}

/// The order of a range's results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    /// Key order, unless another target is chosen (then ascending).
    #[default]
    None,
    /// Ascending by the target.
    Ascend,
    /// Descending by the target.
    Descend,
}

/// What a range sorts by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// Reads the keys in `[key, range_end)` (see [`crate::kv`] for the forms of `range_end`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    /// The first key, or the only key when `range_end` is empty.
    pub key: Vec<u8>,
    /// The end of the range (exclusive); empty for one key; `[0]` for "to the end".
    pub range_end: Vec<u8>,
    /// At most this many keys (0: no limit).
    pub limit: i64,
    /// The revision to read at (0: current).
    pub revision: i64,
    /// The result order.
    pub sort_order: SortOrder,
    /// The sort key.
    pub sort_target: SortTarget,
    /// Return keys and metadata without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Keep only keys with a mod revision at least this (0: no bound).
    pub min_mod_revision: i64,
    /// Keep only keys with a mod revision at most this (0: no bound).
    pub max_mod_revision: i64,
    /// Keep only keys with a create revision at least this (0: no bound).
    pub min_create_revision: i64,
    /// Keep only keys with a create revision at most this (0: no bound).
    pub max_create_revision: i64,
}

/// The result of a range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The store's revision when the range was served.
    pub revision: i64,
    /// The keys, sorted and limited.
    pub kvs: Vec<KeyValue>,
    /// Whether the limit cut off more keys.
    pub more: bool,
    /// How many keys the range holds (before the limit and the revision filters).
    pub count: i64,
}

/// Sets a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    /// The key (not empty).
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The lease to attach, or 0.
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist, `value` must be empty).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist, `lease` must be 0).
    pub ignore_lease: bool,
}

/// The result of a put.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// The store's revision after the put.
    pub revision: i64,
    /// The previous key-value, when asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// Deletes the keys in a range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    /// The first key, or the only key when `range_end` is empty.
    pub key: Vec<u8>,
    /// The end of the range, as in [`RangeRequest`].
    pub range_end: Vec<u8>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// The result of a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    /// The store's revision after the delete.
    pub revision: i64,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted key-values, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// What a compare looks at, with the operand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The version.
    Version(i64),
    /// The create revision.
    Create(i64),
    /// The mod revision.
    Mod(i64),
    /// The value (a missing key never matches).
    Value(Vec<u8>),
    /// The lease.
    Lease(i64),
}

/// How a compare relates the key's field to the operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    /// Equal.
    Equal,
    /// The field is greater.
    Greater,
    /// The field is less.
    Less,
    /// Not equal.
    NotEqual,
}

/// One condition of a transaction; over a range, every key must satisfy it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key (or first key).
    pub key: Vec<u8>,
    /// The end of the range, as in [`RangeRequest`]; empty for one key.
    pub range_end: Vec<u8>,
    /// The relation.
    pub result: CompareResult,
    /// The field and operand.
    pub target: CompareTarget,
}

/// One operation inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    /// A range.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested transaction (at most [`TXN_DEPTH_MAX`] deep).
    Txn(#[serde(deserialize_with = "deserialize_nested_txn")] TxnRequest),
}

/// The deepest nesting of transactions a command may carry. Decoding refuses deeper ones
/// (a `MalformedPayload` rejection), so that a hostile payload cannot exhaust the stack of
/// every replica at the same index.
pub const TXN_DEPTH_MAX: u32 = 64;

std::thread_local! {
    /// How many nested transactions the decoder on this thread is inside right now; it is
    /// zero again whenever a decode returns, so it carries no state between commands.
    static TXN_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn deserialize_nested_txn<'de, D>(deserializer: D) -> Result<TxnRequest, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let depth = TXN_DEPTH.with(|depth| {
        depth.set(depth.get() + 1);
        depth.get()
    });
    let result = if depth > TXN_DEPTH_MAX {
        Err(serde::de::Error::custom("transactions nested too deeply"))
    } else {
        TxnRequest::deserialize(deserializer)
    };
    TXN_DEPTH.with(|depth| depth.set(depth.get() - 1));
    result
}

/// The result of one operation inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    /// A range's result.
    Range(RangeResponse),
    /// A put's result.
    Put(PutResponse),
    /// A delete's result.
    DeleteRange(DeleteRangeResponse),
    /// A nested transaction's result.
    Txn(TxnResponse),
}

/// If every compare holds, run `success`, else `failure`; all writes form one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    /// The conditions.
    pub compare: Vec<Compare>,
    /// The operations when every condition holds.
    pub success: Vec<RequestOp>,
    /// The operations otherwise.
    pub failure: Vec<RequestOp>,
}

/// The result of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// The store's revision after the transaction.
    pub revision: i64,
    /// Whether the compares held.
    pub succeeded: bool,
    /// The results of the branch that ran, in order.
    pub responses: Vec<ResponseOp>,
}

/// Creates a watch for the calling session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// The key (or first key).
    pub key: Vec<u8>,
    /// The end of the range, as in [`RangeRequest`].
    pub range_end: Vec<u8>,
    /// The first revision to report (0: the next one); must be at least the compact revision.
    pub start_revision: i64,
    /// Do not report puts.
    pub no_put: bool,
    /// Do not report deletes.
    pub no_delete: bool,
    /// Report the key-value before each change.
    pub prev_kv: bool,
}

/// Commands of the kv machine (they go through the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// A range read through the log.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A transaction.
    Txn(TxnRequest),
    /// Forgets history before `revision`.
    Compact {
        /// The revision to compact to.
        revision: i64,
    },
    /// Grants a lease.
    LeaseGrant {
        /// The requested TTL in seconds (raised to the configured minimum).
        ttl_seconds: i64,
        /// The requested id, or 0 to let the machine choose.
        id: i64,
    },
    /// Revokes a lease, deleting its keys.
    LeaseRevoke {
        /// The lease.
        id: i64,
    },
    /// Renews a lease.
    LeaseKeepAlive {
        /// The lease.
        id: i64,
    },
    /// Creates a watch for the calling session.
    Watch(WatchRequest),
    /// Cancels a watch.
    CancelWatch {
        /// The watch.
        watch_id: i64,
    },
}

/// Queries of the kv machine (answered locally).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    /// A range.
    Range(RangeRequest),
    /// A lease's remaining time and, if asked, its keys.
    LeaseTimeToLive {
        /// The lease.
        id: i64,
        /// Whether to list the attached keys.
        keys: bool,
    },
    /// The ids of all leases.
    LeaseLeases,
    /// The current and compact revisions.
    Status,
}

/// A successful result of a kv command or query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// From a range.
    Range(RangeResponse),
    /// From a put.
    Put(PutResponse),
    /// From a delete.
    DeleteRange(DeleteRangeResponse),
    /// From a transaction.
    Txn(TxnResponse),
    /// From a compaction.
    Compact {
        /// The store's revision.
        revision: i64,
    },
    /// From a lease grant.
    LeaseGranted {
        /// The store's revision.
        revision: i64,
        /// The lease's id.
        id: i64,
        /// The granted TTL in seconds.
        ttl_seconds: i64,
    },
    /// From a lease revoke.
    LeaseRevoked {
        /// The store's revision after the keys were deleted.
        revision: i64,
    },
    /// From a lease keep-alive.
    LeaseKeptAlive {
        /// The store's revision.
        revision: i64,
        /// The lease.
        id: i64,
        /// The renewed TTL in seconds.
        ttl_seconds: i64,
    },
    /// From a time-to-live query.
    LeaseTimeToLive {
        /// The store's revision.
        revision: i64,
        /// The lease.
        id: i64,
        /// Seconds left, rounded up.
        ttl_seconds: i64,
        /// The TTL the lease was granted with.
        granted_ttl_seconds: i64,
        /// The attached keys (if asked for), in key order.
        keys: Vec<Vec<u8>>,
    },
    /// From a lease listing.
    Leases {
        /// The store's revision.
        revision: i64,
        /// The ids, ascending.
        ids: Vec<i64>,
    },
    /// A watch was created.
    WatchCreated {
        /// The store's revision.
        revision: i64,
        /// The watch's id.
        watch_id: i64,
    },
    /// A watch was canceled.
    WatchCanceled {
        /// The store's revision.
        revision: i64,
        /// The watch's id.
        watch_id: i64,
    },
    /// From a status query.
    Status {
        /// The current revision.
        revision: i64,
        /// The revision history was compacted to (0 if never).
        compact_revision: i64,
    },
}

/// The output of the kv machine.
pub type KvOutput = Result<KvResponse, KvError>;

/// Whether a watch event is a put or a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The key was put.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change reported by a watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key-value after the change (for a delete: the key and the deleting revision).
    pub kv: KeyValue,
    /// The key-value before the change, when the watch asked for it and there was one.
    pub prev_kv: Option<KeyValue>,
}

/// The event the kv machine publishes to a watching session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    /// The watch.
    pub watch_id: i64,
    /// The revision all these events belong to.
    pub revision: i64,
    /// Every matching change of that revision, in the order they were made.
    pub events: Vec<WatchEvent>,
    /// The watch ended: it fell behind the compact revision before catching up.
    pub canceled: bool,
    /// When canceled by compaction, the compact revision (else 0).
    pub compact_revision: i64,
}

/// Errors of the kv machine; the `Display` text is etcd's where etcd has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KvError {
    /// The revision was compacted away.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted {
        /// The revision compacted to.
        compact_revision: i64,
    },
    /// The revision is beyond the current one.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision {
        /// The current revision.
        current_revision: i64,
    },
    /// A transaction writes a key twice.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A transaction has too many operations in one list.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps {
        /// The configured bound.
        txn_ops_max: u64,
    },
    /// The key is empty.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// No lease with that id.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease with that id exists.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// The TTL is above the configured maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge {
        /// The configured bound.
        lease_ttl_seconds_max: i64,
    },
    /// The number of leases reached the configured bound.
    #[error("too many leases (at most {leases_max})")]
    TooManyLeases {
        /// The configured bound.
        leases_max: u64,
    },
    /// The retained history reached `history_bytes_max`: compact (and delete) to make room.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace {
        /// The configured bound.
        history_bytes_max: u64,
    },
    /// A key or value is longer than the configured bound.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// No watch with that id.
    #[error("watch {watch_id} not found")]
    WatchNotFound {
        /// The id.
        watch_id: i64,
    },
    /// The number of watches reached the configured bound.
    #[error("too many watches (at most {watches_max})")]
    TooManyWatches {
        /// The configured bound.
        watches_max: u64,
    },
    /// Watches belong to a session; the command had none.
    #[error("a watch needs a session")]
    NoSession,
    /// A negative revision, limit or id where only non-negative ones make sense.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What was wrong.
        reason: String,
    },
}
