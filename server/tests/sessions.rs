//! The session layer and the built-in machines inside a 3-node in-process cluster: sessions,
//! exactly-once commands, expiry by log time on every replica, and recovery after restarts.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Cluster, DEADLINE, wait_for};
use conclave_consensus::NodeId;
use conclave_server::machines::{SessionApplication, SessionApplicationConfig};
use conclave_server::node::{Application, NodeError};
use conclave_statemachines::counter::{CounterCommand, CounterOutput, CounterQuery};
use conclave_statemachines::kv::{
    KvCommand, KvOutput, KvQuery, KvResponse, PutRequest, RangeRequest,
};
use conclave_statemachines::tree::{
    CreateMode, CreateRequest, TreeCommand, TreeOutput, TreeQuery, TreeResponse,
};
use conclave_statemachines::{
    Applied, ClientSession, CommandOutput, Entry, QueryRequest, Reply, SessionError, SessionId,
    codec,
};

/// Encodes a machine type in the machines' codec.
macro_rules! encoded {
    ($value:expr) => {
        codec::encode(&$value, "test").unwrap()
    };
}

const VOTERS: [NodeId; 3] = [1, 2, 3];

fn session_application() -> Box<dyn Application> {
    Box::new(SessionApplication::new(SessionApplicationConfig::default()).unwrap())
}

/// Proposes `entry` through whichever node leads until one accepts it; returns the decoded
/// result of applying it.
async fn propose(cluster: &Cluster, entry: &Entry) -> Applied {
    let deadline = Instant::now() + DEADLINE;
    let bytes = Bytes::from(entry.encode());
    loop {
        if let Some(node) = cluster.leader().await.and_then(|id| cluster.nodes.get(&id)) {
            match node.propose(bytes.clone()).await {
                Ok(output) => return SessionApplication::decode_applied(&output).unwrap(),
                Err(NodeError::NotLeader { .. } | NodeError::Dropped | NodeError::Stopped) => {}
                Err(NodeError::Refused(_)) => {}
                Err(error) => panic!("propose {entry:?}: {error}"),
            }
        }
        assert!(Instant::now() < deadline, "{entry:?} never applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Proposes a command and returns its output (the command must not be buffered).
async fn command(cluster: &Cluster, entry: &Entry) -> (u64, CommandOutput) {
    let applied = propose(cluster, entry).await;
    let Reply::Output(output) = applied.reply else {
        panic!("{entry:?} answered {:?}", applied.reply)
    };
    (applied.index, output)
}

/// Asks node `id` a sequential query; `None` while the node has not applied `index_seen`.
async fn query(
    cluster: &Cluster,
    id: NodeId,
    request: &QueryRequest,
) -> Option<Result<Vec<u8>, SessionError>> {
    let node = cluster.nodes.get(&id)?;
    let (_, answer) = node.query_local(Bytes::from(request.encode())).await.ok()?;
    match SessionApplication::decode_query_answer(&answer).unwrap() {
        Err(SessionError::NotYetApplied { .. }) => None,
        other => Some(other),
    }
}

/// Asks node `id` until it has applied as far as the request's session has seen (a replica
/// that is behind answers `NotYetApplied`), then returns its answer.
async fn query_when_applied(
    cluster: &Cluster,
    id: NodeId,
    request: &QueryRequest,
) -> Result<Vec<u8>, SessionError> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(answer) = query(cluster, id, request).await {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never applied as far as the session has seen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn request(
    session: Option<SessionId>,
    index_seen: u64,
    name: &str,
    kind: &str,
    payload: Vec<u8>,
) -> QueryRequest {
    QueryRequest {
        session,
        index_seen,
        machine_name: name.to_string(),
        machine_type: kind.to_string(),
        payload,
    }
}

fn counter_query(session: SessionId, index_seen: u64) -> QueryRequest {
    let payload = codec::encode(&CounterQuery::Get, "query").unwrap();
    request(Some(session), index_seen, "visits", "counter", payload)
}

fn kv_get(session: SessionId, index_seen: u64, key: &[u8]) -> QueryRequest {
    let range = RangeRequest {
        key: key.to_vec(),
        ..RangeRequest::default()
    };
    let payload = codec::encode(&KvQuery::Range(range), "query").unwrap();
    request(Some(session), index_seen, "kv", "kv", payload)
}

fn exists(path: &str, index_seen: u64) -> QueryRequest {
    let payload = codec::encode(
        &TreeQuery::Exists {
            path: path.to_string(),
        },
        "query",
    )
    .unwrap();
    request(None, index_seen, "tree", "tree", payload)
}

/// Waits until every running node answers `request` with `expected`.
async fn wait_for_answer(
    cluster: &Cluster,
    what: &str,
    request: QueryRequest,
    expected: Result<Vec<u8>, SessionError>,
) {
    for id in cluster.nodes.keys().copied().collect::<Vec<_>>() {
        wait_for(&format!("{what} on node {id}"), || {
            let (request, expected) = (request.clone(), expected.clone());
            async move { query(cluster, id, &request).await == Some(expected) }
        })
        .await;
    }
}

async fn register(cluster: &Cluster, timeout_ms: u64) -> ClientSession {
    let applied = propose(cluster, &Entry::Register { timeout_ms }).await;
    let Reply::Registered {
        session,
        timeout_ms: granted,
    } = applied.reply
    else {
        panic!("register answered {:?}", applied.reply)
    };
    assert_eq!(granted, timeout_ms);
    ClientSession::new(session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_commands_expiry_and_restart_through_the_cluster() {
    // A low snapshot threshold makes the restart go through a snapshot plus a log suffix.
    let mut cluster = Cluster::start_with(&VOTERS, 5, session_application).await;
    cluster.wait_for_leader().await;

    // A long-lived session runs kv and counter commands.
    let mut client = register(&cluster, 600_000).await;
    let put = client.command(
        "kv",
        "kv",
        encoded!(KvCommand::Put(PutRequest {
            key: b"greeting".to_vec(),
            value: b"hello".to_vec(),
            ..PutRequest::default()
        })),
    );
    let (index, output) = command(&cluster, &put).await;
    assert!(client.answered(&output, index));
    let put_output: KvOutput = codec::decode(&output.result.unwrap(), "output").unwrap();
    assert!(
        matches!(put_output, Ok(KvResponse::Put(_))),
        "{put_output:?}"
    );

    // The same counter command proposed twice: the retry gets the cached answer and the
    // counter moves once.
    let add = client.command(
        "visits",
        "counter",
        encoded!(CounterCommand::AddAndGet { delta: 5 }),
    );
    let (first_index, first) = command(&cluster, &add).await;
    let (second_index, second) = command(&cluster, &add).await;
    assert!(second_index > first_index, "the retry is a new log entry");
    assert_eq!(second, first, "the retry answers the cached output");
    assert_eq!(
        codec::decode::<CounterOutput>(first.result.as_ref().unwrap(), "output").unwrap(),
        CounterOutput::Value(5)
    );
    assert!(client.answered(&first, first_index));
    assert!(!client.answered(&second, second_index));
    let five = Ok(encoded!(CounterOutput::Value(5)));
    wait_for_answer(
        &cluster,
        "counter at 5",
        counter_query(client.session(), second_index),
        five.clone(),
    )
    .await;
    let hello = query_when_applied(
        &cluster,
        1,
        &kv_get(client.session(), second_index, b"greeting"),
    )
    .await;
    let hello: KvOutput = codec::decode(&hello.unwrap(), "output").unwrap();
    let Ok(KvResponse::Range(range)) = hello else {
        panic!("{hello:?}")
    };
    assert_eq!(range.kvs.len(), 1);
    assert_eq!(range.kvs[0].value, b"hello");

    // A kv lease of the minimum TTL (2 s) with a key attached, never renewed: log time
    // alone must expire it and delete the key on every replica.
    let grant = client.command(
        "kv",
        "kv",
        encoded!(KvCommand::LeaseGrant {
            ttl_seconds: 2,
            id: 7
        }),
    );
    let (index, output) = command(&cluster, &grant).await;
    assert!(client.answered(&output, index));
    let granted: KvOutput = codec::decode(&output.result.unwrap(), "output").unwrap();
    assert!(
        matches!(granted, Ok(KvResponse::LeaseGranted { id: 7, .. })),
        "{granted:?}"
    );
    let leased_put = client.command(
        "kv",
        "kv",
        encoded!(KvCommand::Put(PutRequest {
            key: b"leased".to_vec(),
            value: b"v".to_vec(),
            lease: 7,
            ..PutRequest::default()
        })),
    );
    let (leased_index, output) = command(&cluster, &leased_put).await;
    assert!(client.answered(&output, leased_index));
    let held = query_when_applied(
        &cluster,
        1,
        &kv_get(client.session(), leased_index, b"leased"),
    )
    .await;
    let held: KvOutput = codec::decode(&held.unwrap(), "output").unwrap();
    assert!(
        matches!(&held, Ok(KvResponse::Range(range)) if range.kvs.len() == 1),
        "{held:?}"
    );

    // A short session owns an ephemeral node, then stops sending keep-alives: the leader's
    // tick entries advance log time until it expires on every replica.
    let mut short = register(&cluster, 1_000).await;
    let create = short.command(
        "tree",
        "tree",
        encoded!(TreeCommand::Create(CreateRequest::new(
            "/owned",
            b"x",
            CreateMode::Ephemeral,
        ))),
    );
    let (created_index, created) = command(&cluster, &create).await;
    let created: TreeOutput = codec::decode(&created.result.unwrap(), "output").unwrap();
    assert!(
        matches!(created, Ok(TreeResponse::Created { .. })),
        "{created:?}"
    );
    for id in VOTERS {
        wait_for(&format!("the ephemeral on node {id}"), || {
            let cluster = &cluster;
            async move {
                match query(cluster, id, &exists("/owned", created_index)).await {
                    Some(Ok(bytes)) => matches!(
                        codec::decode::<TreeOutput>(&bytes, "output").unwrap(),
                        Ok(TreeResponse::Stat(_))
                    ),
                    _ => false,
                }
            }
        })
        .await;
    }
    let absent = Ok(encoded!(TreeOutput::Ok(TreeResponse::Absent)));
    wait_for_answer(
        &cluster,
        "the ephemeral to go",
        exists("/owned", created_index),
        absent.clone(),
    )
    .await;
    let gone = request(
        Some(short.session()),
        created_index,
        "tree",
        "tree",
        encoded!(TreeQuery::Exists {
            path: "/".to_string(),
        }),
    );
    wait_for_answer(
        &cluster,
        "the short session to be unknown",
        gone,
        Err(SessionError::UnknownSession {
            session: short.session(),
        }),
    )
    .await;

    for id in VOTERS {
        wait_for(&format!("the leased key to go on node {id}"), || {
            let cluster = &cluster;
            let request = kv_get(client.session(), leased_index, b"leased");
            async move {
                match query(cluster, id, &request).await {
                    Some(Ok(bytes)) => matches!(
                        codec::decode::<KvOutput>(&bytes, "output").unwrap(),
                        Ok(KvResponse::Range(range)) if range.kvs.is_empty()
                    ),
                    _ => false,
                }
            }
        })
        .await;
    }

    // Every node restarts from its disk (snapshot plus replay): the long session, its
    // cached output and the machines' state survive, and the expiry stays done.
    for id in VOTERS {
        let snapshots = cluster.data_directory(id).join("snapshots");
        wait_for(&format!("a snapshot on node {id}"), || {
            let snapshots = snapshots.clone();
            async move {
                std::fs::read_dir(&snapshots).is_ok_and(|entries| {
                    entries
                        .flatten()
                        .any(|entry| entry.file_name().to_string_lossy().ends_with(".snap"))
                })
            }
        })
        .await;
    }
    for id in VOTERS {
        cluster.stop(id).await;
    }
    for id in VOTERS {
        cluster.restart(id, VOTERS.to_vec()).await;
    }
    cluster.wait_for_leader().await;
    wait_for_answer(
        &cluster,
        "counter at 5 after restart",
        counter_query(client.session(), second_index),
        five,
    )
    .await;
    wait_for_answer(
        &cluster,
        "the ephemeral still gone",
        exists("/owned", created_index),
        absent,
    )
    .await;
    let (retry_index, retried) = command(&cluster, &add).await;
    assert_eq!(retried, first, "the cached output survived the restart");
    let after = Ok(encoded!(CounterOutput::Value(5)));
    wait_for_answer(
        &cluster,
        "counter still 5",
        counter_query(client.session(), retry_index),
        after,
    )
    .await;
    let next = client.command(
        "visits",
        "counter",
        encoded!(CounterCommand::AddAndGet { delta: 1 }),
    );
    let (_, output) = command(&cluster, &next).await;
    assert_eq!(output.result, Ok(encoded!(CounterOutput::Value(6))));
    cluster.shutdown().await;
}
