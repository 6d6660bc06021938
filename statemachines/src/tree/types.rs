//! The tree machine's commands, queries, outputs, events and errors, shaped after
//! ZooKeeper 3.8's `zookeeper.jute` so that the ZooKeeper frontend maps them one to one.

use serde::{Deserialize, Serialize};

use crate::machine::SessionId;

/// Permission bits, as `ZooDefs.Perms`.
pub mod perms {
    /// May read data and list children.
    pub const READ: u32 = 1;
    /// May set data.
    pub const WRITE: u32 = 2;
    /// May create children.
    pub const CREATE: u32 = 4;
    /// May delete children.
    pub const DELETE: u32 = 8;
    /// May set the ACL.
    pub const ADMIN: u32 = 16;
    /// Every permission.
    pub const ALL: u32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// An identity: a scheme and an id within it (`world:anyone`, `digest:user:hash`,
/// `ip:10.0.0.0/8`, `auth:`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Id {
    /// `world`, `digest`, `ip` or `auth`.
    pub scheme: String,
    /// The id within the scheme.
    pub id: String,
}

impl Id {
    /// Builds an identity.
    pub fn new(scheme: &str, id: &str) -> Self {
        Id {
            scheme: scheme.to_string(),
            id: id.to_string(),
        }
    }

    /// `world:anyone`.
    pub fn anyone() -> Self {
        Id::new("world", "anyone")
    }
}

/// One access-control entry: permission bits for an identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Acl {
    /// A combination of [`perms`] bits.
    pub perms: u32,
    /// Who gets them.
    pub id: Id,
}

impl Acl {
    /// `world:anyone` with every permission (`ZooDefs.Ids.OPEN_ACL_UNSAFE`).
    pub fn open() -> Vec<Acl> {
        vec![Acl {
            perms: perms::ALL,
            id: Id::anyone(),
        }]
    }

    /// `world:anyone` with read only (`ZooDefs.Ids.READ_ACL_UNSAFE`).
    pub fn read_only() -> Vec<Acl> {
        vec![Acl {
            perms: perms::READ,
            id: Id::anyone(),
        }]
    }
}

/// A znode's metadata, with the fields and meaning of ZooKeeper's `Stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// The zxid (log index) of the create.
    pub czxid: i64,
    /// The zxid of the last data change.
    pub mzxid: i64,
    /// Log time of the create, in milliseconds.
    pub ctime: i64,
    /// Log time of the last data change, in milliseconds.
    pub mtime: i64,
    /// Number of data changes.
    pub version: i32,
    /// Number of child creations (a delete leaves it alone, as in ZooKeeper).
    pub cversion: i32,
    /// Number of ACL changes.
    pub aversion: i32,
    /// The owning session of an ephemeral, the container marker, or the TTL encoding.
    pub ephemeral_owner: i64,
    /// Length of the data in bytes.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// The zxid of the last child creation or deletion.
    pub pzxid: i64,
}

/// `ephemeralOwner` of a container node (`EphemeralType.CONTAINER_EPHEMERAL_OWNER`).
pub const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;
/// The high byte that marks a TTL node's `ephemeralOwner` (`EphemeralType.EXTENDED_MASK`).
pub const TTL_EPHEMERAL_OWNER_MASK: u64 = 0xff00_0000_0000_0000;
/// The largest TTL ZooKeeper can encode (`EphemeralType.TTL.maxValue()`), in milliseconds.
pub const TTL_MS_MAX: i64 = 0x0000_00ff_ffff_ffff;

/// What kind of node an `ephemeralOwner` value denotes (`EphemeralType.get`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralType {
    /// A persistent node (owner 0).
    Void,
    /// An ephemeral owned by a session.
    Normal(SessionId),
    /// A container.
    Container,
    /// A TTL node, with its TTL in milliseconds.
    Ttl(i64),
}

impl EphemeralType {
    /// Decodes an `ephemeralOwner` value.
    pub fn of(ephemeral_owner: i64) -> Self {
        if ephemeral_owner == 0 {
            EphemeralType::Void
        } else if ephemeral_owner == CONTAINER_EPHEMERAL_OWNER {
            EphemeralType::Container
        } else if (ephemeral_owner as u64) & TTL_EPHEMERAL_OWNER_MASK == TTL_EPHEMERAL_OWNER_MASK {
            EphemeralType::Ttl(((ephemeral_owner as u64) & !TTL_EPHEMERAL_OWNER_MASK) as i64)
        } else {
            EphemeralType::Normal(ephemeral_owner as u64)
        }
    }

    /// Encodes the `ephemeralOwner` of a TTL node.
    pub fn ttl_owner(ttl_ms: i64) -> i64 {
        ((ttl_ms as u64) | TTL_EPHEMERAL_OWNER_MASK) as i64
    }
}

/// `CreateMode`, with ZooKeeper's flag numbers in [`CreateMode::flag`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateMode {
    /// Flag 0.
    Persistent,
    /// Flag 1: owned by the creating session and deleted with it.
    Ephemeral,
    /// Flag 2: a 10-digit suffix from the parent's cversion is appended.
    PersistentSequential,
    /// Flag 3.
    EphemeralSequential,
    /// Flag 4: deleted once it has had children and has none left.
    Container,
    /// Flag 5: deleted once it has no children and has not changed for its TTL.
    PersistentWithTtl,
    /// Flag 6.
    PersistentSequentialWithTtl,
}

impl CreateMode {
    /// ZooKeeper's flag number.
    pub fn flag(self) -> i32 {
        self as i32
    }

    /// The mode for a flag number, as `CreateMode.fromFlag`.
    pub fn from_flag(flag: i32) -> Option<Self> {
        use CreateMode::*;
        [
            Persistent,
            Ephemeral,
            PersistentSequential,
            EphemeralSequential,
            Container,
            PersistentWithTtl,
            PersistentSequentialWithTtl,
        ]
        .get(usize::try_from(flag).ok()?)
        .copied()
    }

    /// Whether a sequence suffix is appended.
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }

    /// Whether the node is bound to the creating session.
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }

    /// Whether the node has a TTL.
    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        )
    }
}

/// A create request (`CreateRequest` / `CreateTTLRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// The path (for sequential modes, the prefix of the name).
    pub path: String,
    /// The data.
    pub data: Vec<u8>,
    /// The ACL (may use the `auth` scheme).
    pub acl: Vec<Acl>,
    /// The mode.
    pub mode: CreateMode,
    /// The TTL in milliseconds for TTL modes, -1 otherwise (as on the wire).
    pub ttl_ms: i64,
}

impl CreateRequest {
    /// A create with the open ACL and no TTL.
    pub fn new(path: &str, data: &[u8], mode: CreateMode) -> Self {
        CreateRequest {
            path: path.to_string(),
            data: data.to_vec(),
            acl: Acl::open(),
            mode,
            ttl_ms: -1,
        }
    }
}

/// One operation of a multi (`MultiOperationRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create a node.
    Create(CreateRequest),
    /// Delete a node if its version matches (-1: any).
    Delete {
        /// The node.
        path: String,
        /// The expected version, or -1.
        version: i32,
    },
    /// Set data if the version matches (-1: any).
    SetData {
        /// The node.
        path: String,
        /// The new data.
        data: Vec<u8>,
        /// The expected version, or -1.
        version: i32,
    },
    /// Fail the multi unless the node's version matches (-1: any).
    Check {
        /// The node.
        path: String,
        /// The expected version, or -1.
        version: i32,
    },
}

/// The kind of watch a `RemoveWatches` names (`WatcherType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatcherType {
    /// Child watches (one-shot child and persistent).
    Children,
    /// Data and exists watches (one-shot data and persistent).
    Data,
    /// Any watch.
    Any,
}

/// The mode of an `AddWatch` (`AddWatchMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AddWatchMode {
    /// Every event on the node itself, until removed.
    Persistent,
    /// Every event on the node and its descendants except child-list changes, until removed.
    PersistentRecursive,
}

/// Commands of the tree: the writes, and the reads that set watches (watches are state, so
/// they are set through the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeCommand {
    /// Create a node (`create2`/`createContainer`/`createTTL`; the output carries the stat).
    Create(CreateRequest),
    /// Delete a node.
    Delete {
        /// The node.
        path: String,
        /// The expected version, or -1.
        version: i32,
    },
    /// Set a node's data.
    SetData {
        /// The node.
        path: String,
        /// The new data.
        data: Vec<u8>,
        /// The expected version, or -1.
        version: i32,
    },
    /// Set a node's ACL.
    SetAcl {
        /// The node.
        path: String,
        /// The new ACL.
        acl: Vec<Acl>,
        /// The expected aversion, or -1.
        version: i32,
    },
    /// All-or-nothing operations.
    Multi(Vec<Op>),
    /// Records an identity the frontend authenticated for the calling session
    /// (`addAuth`): `digest:user:base64(sha1(user:password))`, or `ip:address`.
    AddAuth(Id),
    /// `getData`, optionally leaving a one-shot data watch.
    GetData {
        /// The node.
        path: String,
        /// Whether to set a watch.
        watch: bool,
    },
    /// `exists`, optionally leaving a one-shot watch even when the node is absent.
    Exists {
        /// The node.
        path: String,
        /// Whether to set a watch.
        watch: bool,
    },
    /// `getChildren2`, optionally leaving a one-shot child watch.
    GetChildren {
        /// The node.
        path: String,
        /// Whether to set a watch.
        watch: bool,
    },
    /// `addWatch`: a persistent or persistent-recursive watch.
    AddWatch {
        /// The node (need not exist).
        path: String,
        /// The mode.
        mode: AddWatchMode,
    },
    /// `removeWatches`: removes the calling session's watches of a type on a path.
    RemoveWatches {
        /// The node.
        path: String,
        /// Which watches.
        watcher_type: WatcherType,
    },
    /// `sync`: a no-op through the log, so a read after it sees everything before it.
    Sync {
        /// Echoed back.
        path: String,
    },
}

/// Reads answered from local state (no watches: those need the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeQuery {
    /// `getData` without a watch.
    GetData {
        /// The node.
        path: String,
    },
    /// `exists` without a watch.
    Exists {
        /// The node.
        path: String,
    },
    /// `getChildren2` without a watch.
    GetChildren {
        /// The node.
        path: String,
    },
    /// `getACL`.
    GetAcl {
        /// The node.
        path: String,
    },
    /// `getEphemerals`: the calling session's ephemeral paths that start with the prefix.
    GetEphemerals {
        /// A path prefix ("/" for all).
        prefix: String,
    },
    /// `getAllChildrenNumber`: the number of descendants of a node.
    GetAllChildrenNumber {
        /// The node.
        path: String,
    },
    /// `multiRead`: reads answered each on its own (not all-or-nothing), in order.
    MultiRead(Vec<ReadOp>),
}

/// One read of a `multiRead`. A flat enum, so a hostile payload cannot nest reads deeply
/// enough to exhaust the decoder's stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadOp {
    /// `getData`.
    GetData {
        /// The node.
        path: String,
    },
    /// `getChildren`.
    GetChildren {
        /// The node.
        path: String,
    },
}

/// The result of one multi operation (`OpResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// A create: the actual path and the stat.
    Create {
        /// The created path (with the sequence suffix).
        path: String,
        /// The new node's stat.
        stat: Stat,
    },
    /// A delete.
    Delete,
    /// A set: the new stat.
    SetData {
        /// The stat after the write.
        stat: Stat,
    },
    /// A check.
    Check,
    /// In a failed multi: [`TreeError::Ok`] for the ops before the failing one, its error
    /// for the failing one, [`TreeError::RuntimeInconsistency`] for those after it.
    Error(TreeError),
}

/// Successful outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeResponse {
    /// A create.
    Created {
        /// The created path.
        path: String,
        /// The new node's stat.
        stat: Stat,
    },
    /// A delete.
    Deleted,
    /// A stat (setData, setACL, exists of a present node).
    Stat(Stat),
    /// `exists` of an absent node (the watch, if asked, is set).
    Absent,
    /// Data and stat.
    Data {
        /// The data.
        data: Vec<u8>,
        /// The stat.
        stat: Stat,
    },
    /// Child names in order, and the parent's stat.
    Children {
        /// The names (not paths).
        children: Vec<String>,
        /// The node's stat.
        stat: Stat,
    },
    /// The ACL and the stat.
    Acl {
        /// The ACL.
        acl: Vec<Acl>,
        /// The stat.
        stat: Stat,
    },
    /// The results of a multi that committed.
    Multi(Vec<OpResult>),
    /// A multi that failed: nothing changed; the results say which op failed.
    MultiFailed(Vec<OpResult>),
    /// Paths (getEphemerals).
    Paths(Vec<String>),
    /// A count (getAllChildrenNumber).
    Count(u64),
    /// Done (addAuth, addWatch, removeWatches).
    Done,
    /// A sync, with its path.
    Synced(String),
    /// One answer per `MultiRead` query, in order.
    MultiRead(Vec<TreeOutput>),
}

/// The output of every command and query.
pub type TreeOutput = Result<TreeResponse, TreeError>;

/// A failure, one to one with ZooKeeper's `KeeperException.Code` ([`TreeError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TreeError {
    /// Code 0; appears only as a multi result of an op before the failing one.
    #[error("ok")]
    Ok,
    /// Code -2: a multi op after the failing one.
    #[error("runtime inconsistency")]
    RuntimeInconsistency,
    /// Code -6: TTL nodes are disabled by configuration.
    #[error("unimplemented")]
    Unimplemented,
    /// Code -8: bad path, bad TTL, a system node, or data over the configured bound.
    #[error("bad arguments: {path}")]
    BadArguments {
        /// The path of the request.
        path: String,
    },
    /// Code -101.
    #[error("no node: {path}")]
    NoNode {
        /// The missing path.
        path: String,
    },
    /// Code -102.
    #[error("not authenticated")]
    NoAuth,
    /// Code -103.
    #[error("bad version: {path}")]
    BadVersion {
        /// The path.
        path: String,
    },
    /// Code -108.
    #[error("ephemerals cannot have children: {path}")]
    NoChildrenForEphemerals {
        /// The path that was to be created.
        path: String,
    },
    /// Code -110.
    #[error("node exists: {path}")]
    NodeExists {
        /// The path.
        path: String,
    },
    /// Code -111.
    #[error("directory not empty: {path}")]
    NotEmpty {
        /// The path.
        path: String,
    },
    /// Code -112: an ephemeral create or a watch from a command without a session.
    #[error("session expired")]
    SessionExpired,
    /// Code -114.
    #[error("invalid ACL: {path}")]
    InvalidAcl {
        /// The path.
        path: String,
    },
    /// Code -115: an identity the machine cannot accept.
    #[error("auth failed")]
    AuthFailed,
    /// Code -121: removeWatches found nothing to remove.
    #[error("no watcher: {path}")]
    NoWatcher {
        /// The path.
        path: String,
    },
    /// Code -125: a configured count bound (nodes, watches, identities) is reached.
    #[error("quota exceeded: {path}")]
    QuotaExceeded {
        /// The path.
        path: String,
    },
}

impl TreeError {
    /// ZooKeeper's `KeeperException.Code` value.
    pub fn code(&self) -> i32 {
        match self {
            TreeError::Ok => 0,
            TreeError::RuntimeInconsistency => -2,
            TreeError::Unimplemented => -6,
            TreeError::BadArguments { .. } => -8,
            TreeError::NoNode { .. } => -101,
            TreeError::NoAuth => -102,
            TreeError::BadVersion { .. } => -103,
            TreeError::NoChildrenForEphemerals { .. } => -108,
            TreeError::NodeExists { .. } => -110,
            TreeError::NotEmpty { .. } => -111,
            TreeError::SessionExpired => -112,
            TreeError::InvalidAcl { .. } => -114,
            TreeError::AuthFailed => -115,
            TreeError::NoWatcher { .. } => -121,
            TreeError::QuotaExceeded { .. } => -125,
        }
    }
}

/// `Watcher.Event.EventType`, with ZooKeeper's numbers in [`EventType::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// 1.
    NodeCreated,
    /// 2.
    NodeDeleted,
    /// 3.
    NodeDataChanged,
    /// 4.
    NodeChildrenChanged,
}

impl EventType {
    /// ZooKeeper's number.
    pub fn code(self) -> i32 {
        self as i32 + 1
    }
}

/// A watch notification (`WatcherEvent`); the zxid is the index of the event batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedEvent {
    /// What happened.
    pub event_type: EventType,
    /// Where.
    pub path: String,
}
