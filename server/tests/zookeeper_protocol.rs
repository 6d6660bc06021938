//! The ZooKeeper frontend over its raw wire protocol, against a 3-node in-process cluster
//! whose every node serves ZooKeeper on 127.0.0.1:0: the operations and their error codes,
//! watches, sessions (close, resume, wrong password, expiry), and bad input that must not
//! harm other clients.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conclave_consensus::{NodeId, Role};
use conclave_server::gateway::{Gateway, GatewayConfig};
use conclave_server::machines::{SessionApplication, SessionApplicationConfig};
use conclave_server::node::{Node, NodeConfig};
use conclave_server::zookeeper::jute::{Reader, Writer};
use conclave_server::zookeeper::protocol::{
    ConnectRequest, ConnectResponse, opcode, read_stat, write_acl, write_multi_header,
};
use conclave_server::zookeeper::{ZooKeeperConfig, serve};
use conclave_statemachines::tree::{Acl, Stat};
use conclave_transport::TransportConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(30);
const NO_NODE: i32 = -101;
const BAD_VERSION: i32 = -103;
const NODE_EXISTS: i32 = -110;
const NOT_EMPTY: i32 = -111;
const BAD_ARGUMENTS: i32 = -8;
const UNIMPLEMENTED: i32 = -6;
const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;

struct Cluster {
    _directory: tempfile::TempDir,
    gateways: BTreeMap<NodeId, Gateway>,
    endpoints: BTreeMap<NodeId, SocketAddr>,
    _stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Cluster {
    async fn start(config: ZooKeeperConfig) -> Cluster {
        let directory = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for id in [1, 2, 3] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addresses.insert(id, listener.local_addr().unwrap().to_string());
            listeners.insert(id, listener);
        }
        let mut gateways = BTreeMap::new();
        let mut endpoints = BTreeMap::new();
        let mut stops = Vec::new();
        for (id, listener) in listeners {
            let mut node_config = NodeConfig::new(id, directory.path().join(format!("node-{id}")));
            node_config.bootstrap_voters = vec![1, 2, 3];
            node_config.tick_interval_ms = 10;
            node_config.election_timeout_ticks = 15;
            node_config.heartbeat_interval_ticks = 3;
            node_config.time_tick_interval_ticks = 10;
            let application = SessionApplication::new(SessionApplicationConfig::default()).unwrap();
            let node = Node::start_grpc(
                node_config,
                Box::new(application.clone()),
                listener,
                &addresses,
                TransportConfig::default(),
            )
            .unwrap();
            let gateway =
                Gateway::new(Arc::new(node), application, GatewayConfig::default()).unwrap();
            let zookeeper = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            endpoints.insert(id, zookeeper.local_addr().unwrap());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            stops.push(stop);
            tokio::spawn(serve(
                gateway.clone(),
                zookeeper,
                config.clone(),
                async move {
                    let _ = stopped.await;
                },
            ));
            gateways.insert(id, gateway);
        }
        Cluster {
            _directory: directory,
            gateways,
            endpoints,
            _stops: stops,
        }
    }

    /// The ZooKeeper endpoint of the leader, once one is elected and every node knows it
    /// (a follower that does not know the leader yet cannot open sessions).
    async fn leader(&self) -> SocketAddr {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut leaders = Vec::new();
            let mut known = 0;
            for (id, gateway) in &self.gateways {
                let status = gateway.status().await.unwrap();
                if status.soft_state.role == Role::Leader {
                    leaders.push(*id);
                }
                known += usize::from(status.soft_state.leader.is_some());
            }
            if let [leader] = leaders[..]
                && known == self.gateways.len()
            {
                return self.endpoints[&leader];
            }
            assert!(Instant::now() < deadline, "no leader elected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    zxid: i64,
    event_type: i32,
    path: String,
}

#[derive(Debug)]
struct Reply {
    zxid: i64,
    err: i32,
    body: Vec<u8>,
}

/// A bare ZooKeeper client speaking the wire protocol through the frontend's own records.
struct Client {
    stream: TcpStream,
    xid: i32,
    session_id: i64,
    password: Vec<u8>,
    timeout_ms: i32,
    events: VecDeque<Event>,
}

async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let read = async {
        let length = stream.read_i32().await.ok()?;
        let mut frame = vec![0u8; length as usize];
        stream.read_exact(&mut frame).await.ok()?;
        Some(frame)
    };
    tokio::time::timeout(DEADLINE, read).await.ok().flatten()
}

impl Client {
    async fn connect(address: SocketAddr) -> Client {
        let (client, response) = Client::resume(address, 0, vec![0; 16], 0).await;
        assert!(response.session_id != 0, "a new session is granted");
        client.unwrap()
    }

    /// Connects with `session_id` and `password`; the client is None when the server
    /// closed without answering.
    async fn resume(
        address: SocketAddr,
        session_id: i64,
        password: Vec<u8>,
        last_zxid_seen: i64,
    ) -> (Option<Client>, ConnectResponse) {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen,
            timeout_ms: 4_000,
            session_id,
            password,
            read_only: false,
        };
        stream
            .write_all(&Writer::frame_of(&request.encode()))
            .await
            .unwrap();
        let Some(frame) = read_frame(&mut stream).await else {
            return (None, ConnectResponse::expired());
        };
        let response = ConnectResponse::decode(&frame).unwrap();
        let client = Client {
            stream,
            xid: 0,
            session_id: response.session_id,
            password: response.password.clone(),
            timeout_ms: response.timeout_ms,
            events: VecDeque::new(),
        };
        (Some(client), response)
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends a request and returns its reply; notifications read meanwhile are kept.
    async fn call(&mut self, op: i32, body: &[u8]) -> Reply {
        self.xid += 1;
        let xid = match op {
            opcode::PING => -2,
            opcode::AUTH => -4,
            opcode::SET_WATCHES | opcode::SET_WATCHES2 => -8,
            _ => self.xid,
        };
        let mut writer = Writer::new();
        writer.int(xid).int(op).raw(body);
        self.send_raw(&writer.into_frame()).await;
        self.reply(xid).await.expect("the server answered")
    }

    async fn reply(&mut self, xid: i32) -> Option<Reply> {
        loop {
            let frame = read_frame(&mut self.stream).await?;
            let mut reader = Reader::new(&frame);
            let reply_xid = reader.int().unwrap();
            let zxid = reader.long().unwrap();
            let err = reader.int().unwrap();
            if reply_xid == -1 {
                let event_type = reader.int().unwrap();
                let _state = reader.int().unwrap();
                let path = reader.string().unwrap();
                self.events.push_back(Event {
                    zxid,
                    event_type,
                    path,
                });
                continue;
            }
            assert_eq!(reply_xid, xid, "replies come in request order");
            return Some(Reply {
                zxid,
                err,
                body: frame[16..].to_vec(),
            });
        }
    }

    /// The next notification, waiting for it with pings (which flush the connection).
    async fn event(&mut self) -> Event {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(event) = self.events.pop_front() {
                return event;
            }
            assert!(Instant::now() < deadline, "no notification came");
            self.call(opcode::PING, &[]).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn create(&mut self, path: &str, data: &[u8], flags: i32) -> Reply {
        let mut body = Writer::new();
        body.string(path).buffer(data);
        write_acl(&mut body, &Acl::open());
        body.int(flags);
        self.call(opcode::CREATE2, &body.into_bytes()).await
    }

    async fn path_call(&mut self, op: i32, path: &str, tail: impl FnOnce(&mut Writer)) -> Reply {
        let mut body = Writer::new();
        body.string(path);
        tail(&mut body);
        self.call(op, &body.into_bytes()).await
    }

    async fn get_data(&mut self, path: &str, watch: bool) -> Reply {
        self.path_call(opcode::GET_DATA, path, |body| {
            body.boolean(watch);
        })
        .await
    }

    async fn set_data(&mut self, path: &str, data: &[u8], version: i32) -> Reply {
        self.path_call(opcode::SET_DATA, path, |body| {
            body.buffer(data).int(version);
        })
        .await
    }

    async fn exists(&mut self, path: &str, watch: bool) -> Reply {
        self.path_call(opcode::EXISTS, path, |body| {
            body.boolean(watch);
        })
        .await
    }

    async fn delete(&mut self, path: &str, version: i32) -> Reply {
        self.path_call(opcode::DELETE, path, |body| {
            body.int(version);
        })
        .await
    }

    async fn children(&mut self, path: &str, watch: bool) -> (Vec<String>, Stat) {
        let reply = self
            .path_call(opcode::GET_CHILDREN2, path, |body| {
                body.boolean(watch);
            })
            .await;
        assert_eq!(reply.err, 0, "getChildren2 {path}");
        let mut reader = Reader::new(&reply.body);
        let children = reader.strings().unwrap();
        (children, read_stat(&mut reader).unwrap())
    }
}

fn data_and_stat(reply: &Reply) -> (Vec<u8>, Stat) {
    assert_eq!(reply.err, 0);
    let mut reader = Reader::new(&reply.body);
    let data = reader.buffer().unwrap();
    (data, read_stat(&mut reader).unwrap())
}

fn created(reply: &Reply) -> (String, Stat) {
    assert_eq!(reply.err, 0, "create failed");
    let mut reader = Reader::new(&reply.body);
    let path = reader.string().unwrap();
    (path, read_stat(&mut reader).unwrap())
}

fn test_config() -> ZooKeeperConfig {
    ZooKeeperConfig {
        session_timeout_ms_min: 1_000,
        frame_bytes_max: 64 * 1024,
        ..ZooKeeperConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_answer_with_zookeeper_results_and_codes() {
    let cluster = Cluster::start(test_config()).await;
    let mut client = Client::connect(cluster.leader().await).await;

    let (path, stat) = created(&client.create("/app", b"v0", 0).await);
    assert_eq!(path, "/app");
    assert_eq!((stat.version, stat.data_length), (0, 2));
    assert_eq!(stat.czxid, stat.mzxid);
    assert_eq!(client.create("/app", b"", 0).await.err, NODE_EXISTS);
    assert_eq!(client.create("/missing/x", b"", 0).await.err, NO_NODE);
    assert_eq!(client.create("no-slash", b"", 0).await.err, BAD_ARGUMENTS);
    assert_eq!(client.create("/app", b"", 42).await.err, BAD_ARGUMENTS);

    let set = client.set_data("/app", b"v1", 7).await;
    assert_eq!(set.err, BAD_VERSION);
    let set = client.set_data("/app", b"v1", 0).await;
    assert_eq!(set.err, 0);
    let after = read_stat(&mut Reader::new(&set.body)).unwrap();
    assert_eq!(after.version, 1);
    assert_eq!(after.mzxid, set.zxid, "a write's zxid is its entry's index");
    let (data, stat) = data_and_stat(&client.get_data("/app", false).await);
    assert_eq!((data.as_slice(), stat.version), (&b"v1"[..], 1));
    let read = client.get_data("/app", false).await;
    assert!(read.zxid >= set.zxid, "reads never go back in time");

    // Sequential children get a 10-digit suffix from the parent's cversion.
    let (first, _) = created(&client.create("/app/job-", b"", 2).await);
    let (second, _) = created(&client.create("/app/job-", b"", 3).await);
    assert_eq!(first, "/app/job-0000000000");
    assert_eq!(second, "/app/job-0000000001");
    let (ephemeral, stat) = created(&client.create("/app/e", b"", 1).await);
    assert_eq!(stat.ephemeral_owner, client.session_id);
    assert_eq!(
        client
            .create(&format!("{ephemeral}/child"), b"", 0)
            .await
            .err,
        NO_CHILDREN_FOR_EPHEMERALS
    );
    let (children, stat) = client.children("/app", false).await;
    assert_eq!(children, vec!["e", "job-0000000000", "job-0000000001"]);
    assert_eq!(stat.num_children, 3);
    let legacy = client
        .path_call(opcode::GET_CHILDREN, "/app", |body| {
            body.boolean(false);
        })
        .await;
    let mut reader = Reader::new(&legacy.body);
    assert_eq!(reader.strings().unwrap().len(), 3);
    assert_eq!(reader.remaining(), 0, "getChildren carries no stat");

    let ephemerals = client.path_call(opcode::GET_EPHEMERALS, "/", |_| {}).await;
    let mut reader = Reader::new(&ephemerals.body);
    assert_eq!(
        reader.strings().unwrap(),
        vec!["/app/e", "/app/job-0000000001"]
    );
    let count = client
        .path_call(opcode::GET_ALL_CHILDREN_NUMBER, "/app", |_| {})
        .await;
    assert_eq!(Reader::new(&count.body).int().unwrap(), 3);

    assert_eq!(client.exists("/nothing", false).await.err, NO_NODE);
    assert_eq!(client.exists("/app", false).await.err, 0);
    assert_eq!(client.delete("/app", -1).await.err, NOT_EMPTY);
    assert_eq!(client.delete("/app/e", 5).await.err, BAD_VERSION);
    assert_eq!(client.delete("/app/e", 0).await.err, 0);
    assert_eq!(client.delete("/app/e", -1).await.err, NO_NODE);

    let sync = client.path_call(opcode::SYNC, "/app", |_| {}).await;
    assert_eq!(Reader::new(&sync.body).string().unwrap(), "/app");
    assert!(sync.zxid > set.zxid);

    let acl = client.path_call(opcode::GET_ACL, "/app", |_| {}).await;
    let mut reader = Reader::new(&acl.body);
    assert_eq!(reader.count().unwrap(), 1);
    assert_eq!(reader.int().unwrap(), 31, "the open ACL grants everything");

    let reconfig = client.call(opcode::RECONFIG, &[]).await;
    assert_eq!(reconfig.err, -123);
    let unknown = client.call(4_242, b"whatever").await;
    assert_eq!(unknown.err, UNIMPLEMENTED);
    // The connection keeps serving after both.
    assert_eq!(client.exists("/app", false).await.err, 0);
}

/// One multi op: its type and a writer of its record.
type MultiOp = (i32, Box<dyn Fn(&mut Writer)>);

fn multi_body(ops: &[MultiOp]) -> Vec<u8> {
    let mut body = Writer::new();
    for (op, write) in ops {
        write_multi_header(&mut body, *op, false, -1);
        write(&mut body);
    }
    write_multi_header(&mut body, -1, true, -1);
    body.into_bytes()
}

fn create_op(path: &'static str) -> Box<dyn Fn(&mut Writer)> {
    Box::new(move |body: &mut Writer| {
        body.string(path).buffer(b"x");
        write_acl(body, &Acl::open());
        body.int(0);
    })
}

/// (type, err) of each result of a multi response.
fn multi_results(body: &[u8]) -> Vec<(i32, i32)> {
    let mut reader = Reader::new(body);
    let mut results = Vec::new();
    loop {
        let op = reader.int().unwrap();
        let done = reader.boolean().unwrap();
        let err = reader.int().unwrap();
        if done {
            return results;
        }
        match op {
            opcode::CREATE => {
                reader.string().unwrap();
            }
            opcode::SET_DATA => {
                read_stat(&mut reader).unwrap();
            }
            -1 => assert_eq!(reader.int().unwrap(), err),
            _ => {}
        }
        results.push((op, err));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_is_all_or_nothing_and_multi_read_answers_each_read() {
    let cluster = Cluster::start(test_config()).await;
    let mut client = Client::connect(cluster.leader().await).await;

    let ok = multi_body(&[
        (opcode::CREATE, create_op("/t")),
        (opcode::CREATE, create_op("/t/a")),
        (
            opcode::CHECK,
            Box::new(|body: &mut Writer| {
                body.string("/t").int(0);
            }),
        ),
        (
            opcode::SET_DATA,
            Box::new(|body: &mut Writer| {
                body.string("/t/a").buffer(b"y").int(0);
            }),
        ),
    ]);
    let reply = client.call(opcode::MULTI, &ok).await;
    assert_eq!(reply.err, 0);
    assert_eq!(
        multi_results(&reply.body),
        vec![
            (opcode::CREATE, 0),
            (opcode::CREATE, 0),
            (opcode::CHECK, 0),
            (opcode::SET_DATA, 0)
        ]
    );

    let failing = multi_body(&[
        (opcode::CREATE, create_op("/t/b")),
        (
            opcode::CHECK,
            Box::new(|body: &mut Writer| {
                body.string("/t").int(9);
            }),
        ),
        (opcode::CREATE, create_op("/t/c")),
    ]);
    let reply = client.call(opcode::MULTI, &failing).await;
    assert_eq!(
        reply.err, 0,
        "a failed multi reports its results, not a header error"
    );
    assert_eq!(
        multi_results(&reply.body),
        vec![(-1, 0), (-1, BAD_VERSION), (-1, -2)]
    );
    assert_eq!(
        client.exists("/t/b", false).await.err,
        NO_NODE,
        "nothing changed"
    );

    let mut reads = Writer::new();
    write_multi_header(&mut reads, opcode::GET_DATA, false, -1);
    reads.string("/t/a").boolean(false);
    write_multi_header(&mut reads, opcode::GET_CHILDREN, false, -1);
    reads.string("/missing").boolean(false);
    write_multi_header(&mut reads, opcode::GET_CHILDREN, false, -1);
    reads.string("/t").boolean(false);
    write_multi_header(&mut reads, -1, true, -1);
    let reply = client.call(opcode::MULTI_READ, &reads.into_bytes()).await;
    assert_eq!(reply.err, 0);
    let mut reader = Reader::new(&reply.body);
    assert_eq!(reader.int().unwrap(), opcode::GET_DATA);
    reader.boolean().unwrap();
    reader.int().unwrap();
    assert_eq!(reader.buffer().unwrap(), b"y");
    read_stat(&mut reader).unwrap();
    assert_eq!(
        (reader.int().unwrap(), reader.boolean().unwrap()),
        (-1, false)
    );
    assert_eq!(reader.int().unwrap(), NO_NODE);
    assert_eq!(reader.int().unwrap(), NO_NODE);
    assert_eq!(reader.int().unwrap(), opcode::GET_CHILDREN);
    reader.boolean().unwrap();
    reader.int().unwrap();
    assert_eq!(reader.strings().unwrap(), vec!["a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watches_notify_before_the_reply_that_shows_the_change() {
    let cluster = Cluster::start(test_config()).await;
    let leader = cluster.leader().await;
    let mut watcher = Client::connect(leader).await;
    let mut writer = Client::connect(leader).await;

    created(&writer.create("/w", b"0", 0).await);
    data_and_stat(&watcher.get_data("/w", true).await);
    assert_eq!(watcher.exists("/w/new", true).await.err, NO_NODE);
    watcher.children("/w", true).await;
    let set = writer.set_data("/w", b"1", -1).await;
    let event = watcher.event().await;
    assert_eq!(
        event,
        Event {
            zxid: set.zxid,
            event_type: 3,
            path: "/w".to_string()
        }
    );
    // One-shot: a second change does not notify the data watch again.
    writer.set_data("/w", b"2", -1).await;
    let create = writer.create("/w/new", b"", 0).await;
    let mut fired = [watcher.event().await, watcher.event().await];
    fired.sort_by_key(|event| event.event_type);
    assert_eq!(fired[0].event_type, 1, "exists watch: created");
    assert_eq!(fired[0].path, "/w/new");
    assert_eq!(fired[1].event_type, 4, "child watch: children changed");
    assert_eq!(fired[0].zxid, create.zxid);
    assert!(watcher.events.is_empty(), "no further notification");

    // A persistent recursive watch fires for every change below it until removed.
    let add = watcher
        .path_call(opcode::ADD_WATCH, "/w", |body| {
            body.int(1);
        })
        .await;
    assert_eq!(add.err, 0);
    writer.set_data("/w/new", b"x", -1).await;
    writer.set_data("/w/new", b"y", -1).await;
    assert_eq!(watcher.event().await.path, "/w/new");
    assert_eq!(watcher.event().await.path, "/w/new");
    let removed = watcher
        .path_call(opcode::REMOVE_WATCHES, "/w", |body| {
            body.int(3);
        })
        .await;
    assert_eq!(removed.err, 0);
    let again = watcher
        .path_call(opcode::REMOVE_WATCHES, "/w", |body| {
            body.int(3);
        })
        .await;
    assert_eq!(again.err, -121, "no watcher left");

    // setWatches after a reconnect fires what changed since the client's zxid.
    let seen = writer.set_data("/w", b"3", -1).await.zxid;
    writer.set_data("/w", b"4", -1).await;
    let mut restore = Writer::new();
    restore
        .long(seen)
        .strings(&["/w".to_string()])
        .strings(&["/w/new".to_string()])
        .strings(&[]);
    let reply = watcher
        .call(opcode::SET_WATCHES, &restore.into_bytes())
        .await;
    assert_eq!(reply.err, 0);
    let mut fired = [
        watcher.events.pop_front().unwrap(),
        watcher.events.pop_front().unwrap(),
    ];
    fired.sort_by_key(|event| event.event_type);
    assert_eq!((fired[0].event_type, fired[0].path.as_str()), (1, "/w/new"));
    assert_eq!((fired[1].event_type, fired[1].path.as_str()), (3, "/w"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_resume_close_and_expire_with_their_ephemerals() {
    let cluster = Cluster::start(test_config()).await;
    let leader = cluster.leader().await;
    let mut observer = Client::connect(leader).await;

    // Resume after a dropped connection: same session, its ephemeral still there.
    let mut owner = Client::connect(leader).await;
    assert_eq!(owner.timeout_ms, 4_000);
    created(&owner.create("/owned", b"", 1).await);
    let seen = owner.exists("/owned", false).await.zxid;
    let (session_id, password) = (owner.session_id, owner.password.clone());
    drop(owner);
    let (resumed, response) = Client::resume(leader, session_id, password.clone(), seen).await;
    assert_eq!(response.session_id, session_id);
    let mut owner = resumed.unwrap();
    assert_eq!(owner.exists("/owned", false).await.err, 0);

    // A wrong password gets the expired answer.
    let mut wrong = password.clone();
    wrong[0] ^= 1;
    let (_, response) = Client::resume(leader, session_id, wrong, 0).await;
    assert_eq!((response.session_id, response.timeout_ms), (0, 0));
    // A client that saw more than the server applied is refused.
    let (refused, _) = Client::resume(leader, session_id, password.clone(), i64::MAX).await;
    assert!(refused.is_none());

    // closeSession removes its ephemerals at once.
    let close = owner.call(opcode::CLOSE_SESSION, &[]).await;
    assert_eq!(close.err, 0);
    assert_eq!(observer.exists("/owned", false).await.err, NO_NODE);
    let (_, response) = Client::resume(leader, session_id, password, 0).await;
    assert_eq!(response.session_id, 0, "a closed session cannot be resumed");

    // A client that goes away loses its session and ephemerals after the timeout.
    let mut gone = Client::connect(leader).await;
    created(&gone.create("/gone", b"", 1).await);
    assert_eq!(observer.exists("/gone", true).await.err, 0);
    drop(gone);
    let event = observer.event().await;
    assert_eq!((event.event_type, event.path.as_str()), (2, "/gone"));
    assert_eq!(observer.exists("/gone", false).await.err, NO_NODE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_zookeepers_answer_and_harms_no_one_else() {
    let cluster = Cluster::start(test_config()).await;
    let leader = cluster.leader().await;
    let mut bystander = Client::connect(leader).await;
    created(&bystander.create("/safe", b"kept", 0).await);

    // An oversized frame closes that connection without an answer.
    let mut big = Client::connect(leader).await;
    big.send_raw(&(10 * 1024 * 1024i32).to_be_bytes()).await;
    assert!(big.reply(1).await.is_none(), "the connection is closed");

    // A negative length too.
    let mut negative = Client::connect(leader).await;
    negative.send_raw(&(-5i32).to_be_bytes()).await;
    assert!(negative.reply(1).await.is_none());

    // A body that does not decode: MARSHALLINGERROR, then closed.
    let mut malformed = Client::connect(leader).await;
    let mut frame = Writer::new();
    frame.int(1).int(opcode::CREATE).int(1_000);
    malformed.send_raw(&frame.into_frame()).await;
    let reply = malformed.reply(1).await.unwrap();
    assert_eq!(reply.err, -5);
    assert!(malformed.reply(2).await.is_none());

    // Garbage instead of a ConnectRequest: closed.
    let mut stream = TcpStream::connect(leader).await.unwrap();
    stream.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.unwrap();
    assert!(read_frame(&mut stream).await.is_none());

    // Four-letter words are answered on the same port.
    let mut stream = TcpStream::connect(leader).await.unwrap();
    stream.write_all(b"ruok").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, "imok");
    let mut stream = TcpStream::connect(leader).await.unwrap();
    stream.write_all(b"srvr").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.contains("Mode: leader"), "{answer}");

    // Auth with an unknown scheme fails and closes; the digest scheme works.
    let mut auth = Client::connect(leader).await;
    let mut body = Writer::new();
    body.int(0).string("kerberos").buffer(b"x");
    assert_eq!(auth.call(opcode::AUTH, &body.into_bytes()).await.err, -115);
    let mut auth = Client::connect(leader).await;
    let mut body = Writer::new();
    body.int(0).string("digest").buffer(b"alice:secret");
    assert_eq!(auth.call(opcode::AUTH, &body.into_bytes()).await.err, 0);
    let who = auth.call(opcode::WHO_AM_I, &[]).await;
    let mut reader = Reader::new(&who.body);
    assert_eq!(reader.count().unwrap(), 2);
    assert_eq!(reader.string().unwrap(), "ip");
    reader.string().unwrap();
    assert_eq!(
        (reader.string().unwrap(), reader.string().unwrap()),
        ("digest".to_string(), "alice".to_string())
    );

    // The bystander never noticed.
    let (data, _) = data_and_stat(&bystander.get_data("/safe", false).await);
    assert_eq!(data, b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_serve_sessions_writes_reads_and_watches() {
    let cluster = Cluster::start(test_config()).await;
    let leader = cluster.leader().await;
    let follower = *cluster
        .endpoints
        .values()
        .find(|endpoint| **endpoint != leader)
        .unwrap();
    let mut on_follower = Client::connect(follower).await;
    let mut on_leader = Client::connect(leader).await;

    // A write through a follower, then a read there: the read never goes back in time.
    let create = on_follower.create("/f", b"one", 0).await;
    let (_, stat) = created(&create);
    assert_eq!(stat.czxid, create.zxid);
    let (data, _) = data_and_stat(&on_follower.get_data("/f", true).await);
    assert_eq!(data, b"one");

    // A change made through the leader fires the follower session's watch.
    let set = on_leader.set_data("/f", b"two", 0).await;
    assert_eq!(set.err, 0);
    let event = on_follower.event().await;
    assert_eq!(
        event,
        Event {
            zxid: set.zxid,
            event_type: 3,
            path: "/f".to_string()
        }
    );
    // After sync, the follower's read shows the leader's write.
    let sync = on_follower.path_call(opcode::SYNC, "/f", |_| {}).await;
    assert!(sync.zxid >= set.zxid);
    let (data, stat) = data_and_stat(&on_follower.get_data("/f", false).await);
    assert_eq!((data.as_slice(), stat.version), (&b"two"[..], 1));

    // A follower's session owns ephemerals like any other.
    let (_, stat) = created(&on_follower.create("/f/e", b"", 1).await);
    assert_eq!(stat.ephemeral_owner, on_follower.session_id);
    assert_eq!(on_follower.call(opcode::CLOSE_SESSION, &[]).await.err, 0);
    assert_eq!(on_leader.exists("/f/e", false).await.err, NO_NODE);
}
