//! The records of ZooKeeper 3.8's client protocol that this frontend reads and writes
//! (`zookeeper.jute`), and the decoding of one request body by its opcode. PROTOCOL.md
//! lists them with their fields.

use conclave_statemachines::tree::{
    Acl, AddWatchMode, CreateMode, CreateRequest, Id, Op, ReadOp, Stat, WatcherType,
};

use super::ZooKeeperError;
use super::jute::{Reader, Writer};

/// `ZooDefs.OpCode` values this frontend knows.
pub mod opcode {
    /// A watch notification (only in replies, with xid -1).
    pub const NOTIFICATION: i32 = 0;
    /// `create`.
    pub const CREATE: i32 = 1;
    /// `delete`.
    pub const DELETE: i32 = 2;
    /// `exists`.
    pub const EXISTS: i32 = 3;
    /// `getData`.
    pub const GET_DATA: i32 = 4;
    /// `setData`.
    pub const SET_DATA: i32 = 5;
    /// `getACL`.
    pub const GET_ACL: i32 = 6;
    /// `setACL`.
    pub const SET_ACL: i32 = 7;
    /// `getChildren`.
    pub const GET_CHILDREN: i32 = 8;
    /// `sync`.
    pub const SYNC: i32 = 9;
    /// `ping`.
    pub const PING: i32 = 11;
    /// `getChildren2`.
    pub const GET_CHILDREN2: i32 = 12;
    /// `check` (a version check; standalone or inside a multi).
    pub const CHECK: i32 = 13;
    /// `multi`.
    pub const MULTI: i32 = 14;
    /// `create2`.
    pub const CREATE2: i32 = 15;
    /// `reconfig`.
    pub const RECONFIG: i32 = 16;
    /// `checkWatches`.
    pub const CHECK_WATCHES: i32 = 17;
    /// `removeWatches`.
    pub const REMOVE_WATCHES: i32 = 18;
    /// `createContainer`.
    pub const CREATE_CONTAINER: i32 = 19;
    /// `createTTL`.
    pub const CREATE_TTL: i32 = 21;
    /// `multiRead`.
    pub const MULTI_READ: i32 = 22;
    /// `auth`.
    pub const AUTH: i32 = 100;
    /// `setWatches`.
    pub const SET_WATCHES: i32 = 101;
    /// `getEphemerals`.
    pub const GET_EPHEMERALS: i32 = 103;
    /// `getAllChildrenNumber`.
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    /// `setWatches2`.
    pub const SET_WATCHES2: i32 = 105;
    /// `addWatch`.
    pub const ADD_WATCH: i32 = 106;
    /// `whoAmI`.
    pub const WHO_AM_I: i32 = 107;
    /// `closeSession`.
    pub const CLOSE_SESSION: i32 = -11;
    /// The type of a multi header that ends the list, or of an error result.
    pub const ERROR: i32 = -1;
}

/// Reserved xids (`ClientCnxn`).
pub mod xid {
    /// Watch notifications.
    pub const NOTIFICATION: i32 = -1;
    /// Pings.
    pub const PING: i32 = -2;
    /// Auth packets.
    pub const AUTH: i32 = -4;
    /// setWatches sent on reconnect.
    pub const SET_WATCHES: i32 = -8;
}

/// `KeeperException.Code` values the frontend itself answers with (the tree machine's own
/// come from `TreeError::code`).
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// An unexpected failure inside the server.
    pub const SYSTEM_ERROR: i32 = -1;
    /// The request could not be served now (no leader, a timeout); the client retries.
    pub const CONNECTION_LOSS: i32 = -4;
    /// A request body that does not decode.
    pub const MARSHALLING_ERROR: i32 = -5;
    /// An operation this server does not implement (unknown opcodes).
    pub const UNIMPLEMENTED: i32 = -6;
    /// Bad arguments.
    pub const BAD_ARGUMENTS: i32 = -8;
    /// The session is gone.
    pub const SESSION_EXPIRED: i32 = -112;
    /// Authentication failed.
    pub const AUTH_FAILED: i32 = -115;
    /// No such watcher.
    pub const NO_WATCHER: i32 = -121;
    /// Dynamic reconfiguration is disabled.
    pub const RECONFIG_DISABLED: i32 = -123;
}

/// `Watcher.Event.KeeperState.SyncConnected`, the state of every notification we send.
pub const STATE_SYNC_CONNECTED: i32 = 3;

/// `ConnectRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The client's protocol version (0).
    pub protocol_version: i32,
    /// The highest zxid the client has seen.
    pub last_zxid_seen: i64,
    /// The session timeout the client asks for, in milliseconds.
    pub timeout_ms: i32,
    /// 0 for a new session, else the session to resume.
    pub session_id: i64,
    /// The session's password (16 bytes) when resuming.
    pub password: Vec<u8>,
    /// Whether the client accepts a read-only server (absent in old clients).
    pub read_only: bool,
}

impl ConnectRequest {
    /// Decodes the first frame of a connection.
    pub fn decode(frame: &[u8]) -> Result<Self, ZooKeeperError> {
        let mut reader = Reader::new(frame);
        let request = ConnectRequest {
            protocol_version: reader.int()?,
            last_zxid_seen: reader.long()?,
            timeout_ms: reader.int()?,
            session_id: reader.long()?,
            password: reader.buffer()?,
            read_only: if reader.remaining() > 0 {
                reader.boolean()?
            } else {
                false
            },
        };
        Ok(request)
    }

    /// Encodes the request (for tests and tools).
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new();
        writer
            .int(self.protocol_version)
            .long(self.last_zxid_seen)
            .int(self.timeout_ms)
            .long(self.session_id)
            .buffer(&self.password)
            .boolean(self.read_only);
        writer.into_bytes()
    }
}

/// `ConnectResponse`; timeout 0 and session 0 say the session is expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    /// Always 0.
    pub protocol_version: i32,
    /// The negotiated timeout in milliseconds.
    pub timeout_ms: i32,
    /// The session id.
    pub session_id: i64,
    /// The session's password.
    pub password: Vec<u8>,
    /// Whether this server is read-only (never).
    pub read_only: bool,
}

impl ConnectResponse {
    /// The answer for an unknown, closed or expired session, or a wrong password.
    pub fn expired() -> Self {
        ConnectResponse {
            protocol_version: 0,
            timeout_ms: 0,
            session_id: 0,
            password: vec![0; 16],
            read_only: false,
        }
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new();
        writer
            .int(self.protocol_version)
            .int(self.timeout_ms)
            .long(self.session_id)
            .buffer(&self.password)
            .boolean(self.read_only);
        writer.into_bytes()
    }

    /// Decodes the record (for tests and tools).
    pub fn decode(frame: &[u8]) -> Result<Self, ZooKeeperError> {
        let mut reader = Reader::new(frame);
        Ok(ConnectResponse {
            protocol_version: reader.int()?,
            timeout_ms: reader.int()?,
            session_id: reader.long()?,
            password: reader.buffer()?,
            read_only: if reader.remaining() > 0 {
                reader.boolean()?
            } else {
                false
            },
        })
    }
}

/// The watches a client restores after reconnecting (`SetWatches` / `SetWatches2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetWatches {
    /// The last zxid the client saw: changes after it fire at once.
    pub relative_zxid: i64,
    /// One-shot data watches.
    pub data: Vec<String>,
    /// One-shot exists watches.
    pub exist: Vec<String>,
    /// One-shot child watches.
    pub child: Vec<String>,
    /// Persistent watches (`SetWatches2` only).
    pub persistent: Vec<String>,
    /// Persistent recursive watches (`SetWatches2` only).
    pub persistent_recursive: Vec<String>,
}

/// One decoded request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `create`, `create2`, `createContainer`, `createTTL`; `with_stat` for all but
    /// `create`, whose answer is the path alone.
    Create {
        /// The create.
        request: CreateRequest,
        /// Whether the answer carries the stat (`Create2Response`).
        with_stat: bool,
    },
    /// `delete`.
    Delete {
        /// The node.
        path: String,
        /// The expected version or -1.
        version: i32,
    },
    /// `exists`.
    Exists {
        /// The node.
        path: String,
        /// Whether to leave a watch.
        watch: bool,
    },
    /// `getData`.
    GetData {
        /// The node.
        path: String,
        /// Whether to leave a watch.
        watch: bool,
    },
    /// `setData`.
    SetData {
        /// The node.
        path: String,
        /// The data.
        data: Vec<u8>,
        /// The expected version or -1.
        version: i32,
    },
    /// `getACL`.
    GetAcl {
        /// The node.
        path: String,
    },
    /// `setACL`.
    SetAcl {
        /// The node.
        path: String,
        /// The ACL.
        acl: Vec<Acl>,
        /// The expected aversion or -1.
        version: i32,
    },
    /// `getChildren` (`with_stat` false) and `getChildren2`.
    GetChildren {
        /// The node.
        path: String,
        /// Whether to leave a watch.
        watch: bool,
        /// Whether the answer carries the stat.
        with_stat: bool,
    },
    /// `sync`.
    Sync {
        /// Echoed back.
        path: String,
    },
    /// A standalone `check`.
    Check {
        /// The node.
        path: String,
        /// The expected version or -1.
        version: i32,
    },
    /// `multi`; `create_with_stat` says, per op, whether a create answers with its stat.
    Multi {
        /// The operations.
        ops: Vec<Op>,
        /// Per op: whether it is a create whose result carries the stat (create2 and the
        /// container and TTL creates).
        create_with_stat: Vec<bool>,
    },
    /// `multiRead`.
    MultiRead(Vec<ReadOp>),
    /// `removeWatches` (`check` false) and `checkWatches`.
    RemoveWatches {
        /// The node.
        path: String,
        /// Which watches.
        watcher_type: WatcherType,
        /// Whether only to check that such watches exist.
        check: bool,
    },
    /// `addWatch`.
    AddWatch {
        /// The node.
        path: String,
        /// The mode.
        mode: AddWatchMode,
    },
    /// `auth`.
    Auth {
        /// The scheme (`digest`).
        scheme: String,
        /// The credentials (`user:password`).
        credentials: Vec<u8>,
    },
    /// `setWatches` / `setWatches2`.
    SetWatches(SetWatches),
    /// `getEphemerals`.
    GetEphemerals {
        /// The prefix.
        prefix: String,
    },
    /// `getAllChildrenNumber`.
    GetAllChildrenNumber {
        /// The node.
        path: String,
    },
    /// `whoAmI`.
    WhoAmI,
    /// `reconfig` (refused: reconfiguration is disabled).
    Reconfig,
    /// `ping`.
    Ping,
    /// `closeSession`.
    CloseSession,
    /// An opcode this server does not know.
    Unknown(i32),
}

fn acl_list(reader: &mut Reader<'_>) -> Result<Vec<Acl>, ZooKeeperError> {
    let count = reader.count()?;
    let mut acl = Vec::with_capacity(count);
    for _ in 0..count {
        let perms = reader.int()?;
        let scheme = reader.string()?;
        let id = reader.string()?;
        acl.push(Acl {
            perms: perms as u32,
            id: Id { scheme, id },
        });
    }
    Ok(acl)
}

fn create_mode(flags: i32) -> Result<CreateMode, ZooKeeperError> {
    CreateMode::from_flag(flags).ok_or(ZooKeeperError::BadArguments)
}

/// Decodes a create body of `opcode` (create, create2, createContainer, createTTL).
fn create(opcode: i32, reader: &mut Reader<'_>) -> Result<CreateRequest, ZooKeeperError> {
    let path = reader.string()?;
    let data = reader.buffer()?;
    let acl = acl_list(reader)?;
    let flags = reader.int()?;
    let ttl_ms = if opcode == opcode::CREATE_TTL {
        reader.long()?
    } else {
        -1
    };
    let mode = create_mode(flags)?;
    // As PrepRequestProcessor: createContainer must say container, createTTL a TTL mode,
    // and the plain creates neither.
    let fits = match opcode {
        opcode::CREATE_CONTAINER => mode == CreateMode::Container,
        opcode::CREATE_TTL => mode.is_ttl(),
        _ => mode != CreateMode::Container && !mode.is_ttl(),
    };
    if !fits {
        return Err(ZooKeeperError::BadArguments);
    }
    Ok(CreateRequest {
        path,
        data,
        acl,
        mode,
        ttl_ms,
    })
}

fn watcher_type(value: i32) -> Result<WatcherType, ZooKeeperError> {
    match value {
        1 => Ok(WatcherType::Children),
        2 => Ok(WatcherType::Data),
        3 => Ok(WatcherType::Any),
        _ => Err(ZooKeeperError::BadArguments),
    }
}

/// Decodes a multi body: (header, op) pairs until a header with `done` set.
fn multi(reader: &mut Reader<'_>, ops_max: usize) -> Result<Request, ZooKeeperError> {
    let mut ops = Vec::new();
    let mut create_with_stat = Vec::new();
    loop {
        let opcode = reader.int()?;
        let done = reader.boolean()?;
        let _error = reader.int()?;
        if done {
            break;
        }
        if ops.len() >= ops_max {
            return Err(ZooKeeperError::BadArguments);
        }
        let op = match opcode {
            opcode::CREATE | opcode::CREATE2 | opcode::CREATE_CONTAINER | opcode::CREATE_TTL => {
                Op::Create(create(opcode, reader)?)
            }
            opcode::DELETE => Op::Delete {
                path: reader.string()?,
                version: reader.int()?,
            },
            opcode::SET_DATA => Op::SetData {
                path: reader.string()?,
                data: reader.buffer()?,
                version: reader.int()?,
            },
            opcode::CHECK => Op::Check {
                path: reader.string()?,
                version: reader.int()?,
            },
            _ => return Err(ZooKeeperError::BadArguments),
        };
        create_with_stat.push(opcode != opcode::CREATE && matches!(op, Op::Create(_)));
        ops.push(op);
    }
    Ok(Request::Multi {
        ops,
        create_with_stat,
    })
}

fn multi_read(reader: &mut Reader<'_>, ops_max: usize) -> Result<Request, ZooKeeperError> {
    let mut reads = Vec::new();
    loop {
        let opcode = reader.int()?;
        let done = reader.boolean()?;
        let _error = reader.int()?;
        if done {
            break;
        }
        if reads.len() >= ops_max {
            return Err(ZooKeeperError::BadArguments);
        }
        let path = reader.string()?;
        let _watch = reader.boolean()?;
        reads.push(match opcode {
            opcode::GET_DATA => ReadOp::GetData { path },
            opcode::GET_CHILDREN => ReadOp::GetChildren { path },
            _ => return Err(ZooKeeperError::BadArguments),
        });
    }
    Ok(Request::MultiRead(reads))
}

impl Request {
    /// Decodes the body of a request of type `opcode`; a multi may hold at most `ops_max`
    /// operations.
    pub fn decode(opcode: i32, body: &[u8], ops_max: usize) -> Result<Request, ZooKeeperError> {
        let reader = &mut Reader::new(body);
        let request = match opcode {
            opcode::CREATE | opcode::CREATE2 | opcode::CREATE_CONTAINER | opcode::CREATE_TTL => {
                Request::Create {
                    request: create(opcode, reader)?,
                    with_stat: opcode != opcode::CREATE,
                }
            }
            opcode::DELETE => Request::Delete {
                path: reader.string()?,
                version: reader.int()?,
            },
            opcode::EXISTS => Request::Exists {
                path: reader.string()?,
                watch: reader.boolean()?,
            },
            opcode::GET_DATA => Request::GetData {
                path: reader.string()?,
                watch: reader.boolean()?,
            },
            opcode::SET_DATA => Request::SetData {
                path: reader.string()?,
                data: reader.buffer()?,
                version: reader.int()?,
            },
            opcode::GET_ACL => Request::GetAcl {
                path: reader.string()?,
            },
            opcode::SET_ACL => Request::SetAcl {
                path: reader.string()?,
                acl: acl_list(reader)?,
                version: reader.int()?,
            },
            opcode::GET_CHILDREN | opcode::GET_CHILDREN2 => Request::GetChildren {
                path: reader.string()?,
                watch: reader.boolean()?,
                with_stat: opcode == opcode::GET_CHILDREN2,
            },
            opcode::SYNC => Request::Sync {
                path: reader.string()?,
            },
            opcode::CHECK => Request::Check {
                path: reader.string()?,
                version: reader.int()?,
            },
            opcode::MULTI => multi(reader, ops_max)?,
            opcode::MULTI_READ => multi_read(reader, ops_max)?,
            opcode::REMOVE_WATCHES | opcode::CHECK_WATCHES => Request::RemoveWatches {
                path: reader.string()?,
                watcher_type: watcher_type(reader.int()?)?,
                check: opcode == opcode::CHECK_WATCHES,
            },
            opcode::ADD_WATCH => {
                let path = reader.string()?;
                let mode = match reader.int()? {
                    0 => AddWatchMode::Persistent,
                    1 => AddWatchMode::PersistentRecursive,
                    _ => return Err(ZooKeeperError::BadArguments),
                };
                Request::AddWatch { path, mode }
            }
            opcode::AUTH => {
                let _type = reader.int()?;
                Request::Auth {
                    scheme: reader.string()?,
                    credentials: reader.buffer()?,
                }
            }
            opcode::SET_WATCHES | opcode::SET_WATCHES2 => {
                let mut watches = SetWatches {
                    relative_zxid: reader.long()?,
                    data: reader.strings()?,
                    exist: reader.strings()?,
                    child: reader.strings()?,
                    ..SetWatches::default()
                };
                if opcode == opcode::SET_WATCHES2 {
                    watches.persistent = reader.strings()?;
                    watches.persistent_recursive = reader.strings()?;
                }
                Request::SetWatches(watches)
            }
            opcode::GET_EPHEMERALS => Request::GetEphemerals {
                prefix: reader.string()?,
            },
            opcode::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber {
                path: reader.string()?,
            },
            opcode::WHO_AM_I => Request::WhoAmI,
            opcode::RECONFIG => Request::Reconfig,
            opcode::PING => Request::Ping,
            opcode::CLOSE_SESSION => Request::CloseSession,
            other => Request::Unknown(other),
        };
        Ok(request)
    }

    /// Whether the request changes the tree (its answer's zxid is its own index).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create { .. }
                | Request::Delete { .. }
                | Request::SetData { .. }
                | Request::SetAcl { .. }
                | Request::Multi { .. }
                | Request::Check { .. }
        )
    }
}

/// Appends a `Stat`.
pub fn write_stat(writer: &mut Writer, stat: &Stat) {
    writer
        .long(stat.czxid)
        .long(stat.mzxid)
        .long(stat.ctime)
        .long(stat.mtime)
        .int(stat.version)
        .int(stat.cversion)
        .int(stat.aversion)
        .long(stat.ephemeral_owner)
        .int(stat.data_length)
        .int(stat.num_children)
        .long(stat.pzxid);
}

/// Reads a `Stat` (for tests and tools).
pub fn read_stat(reader: &mut Reader<'_>) -> Result<Stat, ZooKeeperError> {
    Ok(Stat {
        czxid: reader.long()?,
        mzxid: reader.long()?,
        ctime: reader.long()?,
        mtime: reader.long()?,
        version: reader.int()?,
        cversion: reader.int()?,
        aversion: reader.int()?,
        ephemeral_owner: reader.long()?,
        data_length: reader.int()?,
        num_children: reader.int()?,
        pzxid: reader.long()?,
    })
}

/// Appends a vector of ACL entries.
pub fn write_acl(writer: &mut Writer, acl: &[Acl]) {
    writer.int(acl.len() as i32);
    for entry in acl {
        writer
            .int(entry.perms as i32)
            .string(&entry.id.scheme)
            .string(&entry.id.id);
    }
}

/// Appends a multi header.
pub fn write_multi_header(writer: &mut Writer, opcode: i32, done: bool, error: i32) {
    writer.int(opcode).boolean(done).int(error);
}

/// A reply frame: the header, then the body (empty on error, as ZooKeeper sends).
pub fn reply_frame(xid: i32, zxid: i64, error: i32, body: &[u8]) -> Vec<u8> {
    let mut writer = Writer::new();
    writer.int(xid).long(zxid).int(error).raw(body);
    writer.into_frame()
}

/// A watch notification frame (`WatcherEvent` behind header xid -1).
pub fn notification_frame(zxid: i64, event_type: i32, path: &str) -> Vec<u8> {
    let mut writer = Writer::new();
    writer
        .int(xid::NOTIFICATION)
        .long(zxid)
        .int(code::OK)
        .int(event_type)
        .int(STATE_SYNC_CONNECTED)
        .string(path);
    writer.into_frame()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_body(path: &str, flags: i32, ttl: Option<i64>) -> Vec<u8> {
        let mut writer = Writer::new();
        writer.string(path).buffer(b"d");
        write_acl(&mut writer, &Acl::open());
        writer.int(flags);
        if let Some(ttl) = ttl {
            writer.long(ttl);
        }
        writer.into_bytes()
    }

    #[test]
    fn connect_request_round_trips_with_and_without_read_only() {
        let request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 42,
            timeout_ms: 5_000,
            session_id: 7,
            password: vec![1; 16],
            read_only: true,
        };
        let bytes = request.encode();
        assert_eq!(ConnectRequest::decode(&bytes).unwrap(), request);
        let old_client = ConnectRequest::decode(&bytes[..bytes.len() - 1]).unwrap();
        assert!(!old_client.read_only);
    }

    #[test]
    fn creates_check_their_mode_against_their_opcode() {
        let body = create_body("/a", 4, None);
        let decoded = Request::decode(opcode::CREATE_CONTAINER, &body, 10).unwrap();
        assert!(matches!(
            decoded,
            Request::Create {
                with_stat: true,
                ..
            }
        ));
        assert_eq!(
            Request::decode(opcode::CREATE, &body, 10),
            Err(ZooKeeperError::BadArguments)
        );
        let ttl = create_body("/a", 5, Some(1_000));
        match Request::decode(opcode::CREATE_TTL, &ttl, 10).unwrap() {
            Request::Create { request, .. } => assert_eq!(request.ttl_ms, 1_000),
            other => panic!("{other:?}"),
        }
        let bad_flag = create_body("/a", 9, None);
        assert_eq!(
            Request::decode(opcode::CREATE, &bad_flag, 10),
            Err(ZooKeeperError::BadArguments)
        );
    }

    #[test]
    fn multi_decodes_until_done_and_respects_its_bound() {
        let mut writer = Writer::new();
        write_multi_header(&mut writer, opcode::CREATE2, false, -1);
        writer.raw(&create_body("/a", 0, None));
        write_multi_header(&mut writer, opcode::CHECK, false, -1);
        writer.string("/a").int(0);
        write_multi_header(&mut writer, opcode::ERROR, true, -1);
        let body = writer.into_bytes();
        match Request::decode(opcode::MULTI, &body, 10).unwrap() {
            Request::Multi {
                ops,
                create_with_stat,
            } => {
                assert_eq!(ops.len(), 2);
                assert_eq!(create_with_stat, vec![true, false]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Request::decode(opcode::MULTI, &body, 1),
            Err(ZooKeeperError::BadArguments)
        );
        assert!(matches!(
            Request::decode(opcode::MULTI, &body[..body.len() - 3], 10),
            Err(ZooKeeperError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_opcodes_decode_as_unknown() {
        assert_eq!(
            Request::decode(9_999, &[], 10).unwrap(),
            Request::Unknown(9_999)
        );
    }

    #[test]
    fn stat_round_trips() {
        let stat = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let mut writer = Writer::new();
        write_stat(&mut writer, &stat);
        let bytes = writer.into_bytes();
        assert_eq!(bytes.len(), 68);
        assert_eq!(read_stat(&mut Reader::new(&bytes)).unwrap(), stat);
    }
}
