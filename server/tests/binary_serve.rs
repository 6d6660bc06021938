//! `conclave serve` as real processes: configuration mistakes end with one line naming the
//! setting and exit code 2; a 3-node cluster answers the native gRPC API (sessions,
//! exactly-once commands, queries, events, clear errors for unknown machine types, wrong
//! types and oversized requests while the others keep being served), serves /metrics,
//! /health and /ready, and stops gracefully on SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use conclave_statemachines::codec;
use conclave_statemachines::counter::{CounterCommand, CounterOutput, CounterQuery};
use conclave_statemachines::lock::{LockCommand, LockEvent, LockOutput, LockResponse};
use conclave_transport::client_api as api;
use conclave_transport::client_api::client_client::ClientClient;
use conclave_transport::client_api::cluster_client::ClusterClient;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(30);
const REQUEST_BYTES_MAX: usize = 64 * 1024;

fn conclave() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conclave"))
}

/// A port nobody listens on right now (the OS picked it; it is free again once dropped).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `conclave serve` with `flags` and a valid base configuration, and returns what it
/// printed once it exited.
fn serve_with(directory: &Path, flags: &[(&str, &str)], environment: &[(&str, &str)]) -> Output {
    let peer = format!("127.0.0.1:{}", free_port());
    let client = format!("127.0.0.1:{}", free_port());
    let cluster = format!("1={peer}");
    let data_dir = directory.join("data").display().to_string();
    let mut base = vec![
        ("--node-id", "1"),
        ("--data-dir", data_dir.as_str()),
        ("--peer-listen", peer.as_str()),
        ("--client-listen", client.as_str()),
        ("--initial-cluster", cluster.as_str()),
        ("--config", "/dev/null"),
    ];
    base.retain(|(flag, _)| !flags.iter().any(|(given, _)| given == flag));
    let mut command = conclave();
    command.arg("serve");
    for (flag, value) in base.iter().chain(flags) {
        command.arg(flag).arg(value);
    }
    for (key, value) in environment {
        command.env(key, value);
    }
    // A mistake must stop the process at once; a process that starts serving instead is
    // killed by the timeout below and fails the assertions on its exit code.
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Flags or environment variables, as (name, value) pairs.
type Flags<'a> = Vec<(&'a str, &'a str)>;

#[test]
fn configuration_mistakes_end_with_one_line_naming_the_setting() {
    let directory = tempfile::tempdir().unwrap();
    let occupied = TcpListener::bind("127.0.0.1:0").unwrap();
    let occupied_address = occupied.local_addr().unwrap().to_string();
    let not_a_directory = directory.path().join("file");
    std::fs::write(&not_a_directory, b"a file").unwrap();
    let under_a_file = not_a_directory.join("data").display().to_string();
    let config_file = directory.path().join("conclave.toml");
    std::fs::write(&config_file, "node_id = 1\nsesions_max = 5\n").unwrap();
    let config_path = config_file.display().to_string();
    let cases: Vec<(Flags<'_>, Flags<'_>, &str)> = vec![
        (
            vec![("--initial-cluster", "1=127.0.0.1")],
            vec![],
            "initial_cluster",
        ),
        (
            vec![("--initial-cluster", "2=127.0.0.1:1")],
            vec![],
            "initial_cluster",
        ),
        (vec![("--node-id", "0")], vec![], "node_id"),
        (
            vec![("--client-listen", occupied_address.as_str())],
            vec![],
            "client_listen",
        ),
        (
            vec![("--data-dir", under_a_file.as_str())],
            vec![],
            "data_dir",
        ),
        (vec![("--sessions-max", "0")], vec![], "sessions_max"),
        (
            vec![("--request-bytes-max", "lots")],
            vec![],
            "request_bytes_max",
        ),
        (
            vec![],
            vec![("CONCLAVE_TICK_INTERVAL_MS", "0")],
            "tick_interval_ms",
        ),
        (
            vec![("--config", config_path.as_str())],
            vec![],
            "sesions_max",
        ),
    ];
    for (flags, environment, setting) in cases {
        let output = serve_with(directory.path(), &flags, &environment);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flags:?} {environment:?}: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{flags:?}: one line expected, got {stderr:?}"
        );
        assert!(
            lines[0].starts_with("conclave: ") && lines[0].contains(setting),
            "{flags:?}: {:?} should name {setting}",
            lines[0]
        );
    }
    drop(occupied);
}

/// One `conclave serve` child; killed if the test ends without stopping it.
struct Process {
    id: u64,
    child: Option<Child>,
    client: SocketAddr,
    http: SocketAddr,
    zookeeper: SocketAddr,
    etcd: SocketAddr,
}

impl Process {
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {} ignored SIGTERM",
                self.id
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_cluster(directory: &Path) -> Vec<Process> {
    let ids = [1u64, 2, 3];
    let peers: Vec<String> = ids
        .iter()
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let clients: Vec<SocketAddr> = ids
        .iter()
        .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
        .collect();
    let join = |addresses: &[String]| {
        ids.iter()
            .zip(addresses)
            .map(|(id, address)| format!("{id}={address}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let cluster = join(&peers);
    let client_strings: Vec<String> = clients.iter().map(ToString::to_string).collect();
    let cluster_clients = join(&client_strings);
    let mut processes = Vec::new();
    for (position, id) in ids.iter().enumerate() {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let zookeeper: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let etcd: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = conclave()
            .arg("serve")
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(directory.join(format!("node-{id}")))
            .args(["--peer-listen", &peers[position]])
            .args(["--client-listen", &client_strings[position]])
            .args(["--http-listen", &http.to_string()])
            .args(["--zookeeper-listen", &zookeeper.to_string()])
            .args(["--etcd-listen", &etcd.to_string()])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-clients", &cluster_clients])
            .args(["--tick-interval-ms", "10"])
            .args(["--election-timeout-ticks", "15"])
            .args(["--heartbeat-interval-ticks", "3"])
            .args(["--request-bytes-max", &REQUEST_BYTES_MAX.to_string()])
            .args(["--metrics-sample-interval-ms", "50"])
            .args(["--log-level", "warn"])
            .args(["--config", "/dev/null"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        processes.push(Process {
            id: *id,
            child: Some(child),
            client: clients[position],
            http,
            zookeeper,
            etcd,
        });
    }
    processes
}

async fn connect(address: SocketAddr) -> Channel {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => return channel,
            Err(error) => {
                assert!(Instant::now() < deadline, "cannot reach {address}: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Waits until every node knows the same leader; returns its position in `processes`.
async fn leader(processes: &[Process]) -> usize {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut leaders = Vec::new();
        for process in processes {
            let mut cluster = ClusterClient::new(connect(process.client).await);
            if let Ok(status) = cluster.status(api::StatusRequest {}).await {
                leaders.push(status.into_inner().leader_id);
            }
        }
        if leaders.len() == processes.len()
            && leaders[0] != 0
            && leaders.iter().all(|leader| *leader == leaders[0])
        {
            return processes
                .iter()
                .position(|process| process.id == leaders[0])
                .unwrap();
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    codec::encode(value, "test").unwrap()
}

fn command(
    session: u64,
    sequence: u64,
    name: &str,
    kind: &str,
    payload: Vec<u8>,
) -> api::CommandRequest {
    api::CommandRequest {
        session,
        sequence,
        machine_name: name.to_string(),
        machine_type: kind.to_string(),
        payload: payload.into(),
    }
}

fn output_of(response: &api::CommandResponse) -> &[u8] {
    match &response.result {
        Some(api::command_response::Result::Output(output)) => output,
        other => panic!("expected an output, got {other:?}"),
    }
}

fn error_of(response: &api::CommandResponse) -> (api::ErrorCode, String) {
    match &response.result {
        Some(api::command_response::Result::Error(error)) => (
            api::ErrorCode::try_from(error.code).unwrap(),
            error.message.clone(),
        ),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn error_code(status: &tonic::Status) -> String {
    status
        .metadata()
        .get(api::ERROR_CODE_METADATA)
        .map(|value| value.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_serves_native_clients_and_stops_on_sigterm() {
    let directory = tempfile::tempdir().unwrap();
    let mut processes = start_cluster(directory.path());
    let leader_position = leader(&processes).await;
    let leader_address = processes[leader_position].client;
    let follower_position = (leader_position + 1) % processes.len();
    let mut client = ClientClient::new(connect(leader_address).await);

    // Sessions and exactly-once commands.
    let opened = client
        .open_session(api::OpenSessionRequest { timeout_ms: 10_000 })
        .await
        .unwrap()
        .into_inner();
    assert!(opened.session > 0);
    assert_eq!(opened.timeout_ms, 10_000);
    let session = opened.session;
    let add = command(
        session,
        1,
        "hits",
        "counter",
        encode(&CounterCommand::AddAndGet { delta: 5 }),
    );
    let first = client.command(add.clone()).await.unwrap().into_inner();
    let value: CounterOutput = codec::decode(output_of(&first), "test").unwrap();
    assert_eq!(value, CounterOutput::Value(5));
    let retried = client.command(add).await.unwrap().into_inner();
    // The resend is answered from the session layer's cache (the entry that carried it has
    // an index of its own); the query below shows the counter moved once.
    assert_eq!(
        output_of(&retried),
        output_of(&first),
        "answered from the cache"
    );

    // Queries: linearizable on the leader, sequential on a follower after what was seen.
    let query = |consistency: api::Consistency| api::QueryRequest {
        session,
        index_seen: first.index,
        machine_name: "hits".to_string(),
        machine_type: "counter".to_string(),
        payload: encode(&CounterQuery::Get).into(),
        consistency: consistency as i32,
    };
    let read = client
        .query(query(api::Consistency::Linearizable))
        .await
        .unwrap()
        .into_inner();
    let value: CounterOutput = codec::decode(&read.output, "test").unwrap();
    assert_eq!(value, CounterOutput::Value(5));
    let mut follower = ClientClient::new(connect(processes[follower_position].client).await);
    let read = follower
        .query(query(api::Consistency::Sequential))
        .await
        .unwrap()
        .into_inner();
    assert!(read.index_applied >= first.index);
    let value: CounterOutput = codec::decode(&read.output, "test").unwrap();
    assert_eq!(value, CounterOutput::Value(5));

    // Refusals are clear, and consume the sequence (a retry gets the same answer).
    let unknown = client
        .command(command(session, 2, "x", "no-such-type", vec![1, 2, 3]))
        .await
        .unwrap()
        .into_inner();
    let (code, message) = error_of(&unknown);
    assert_eq!(code, api::ErrorCode::UnknownMachineType);
    assert!(message.contains("no-such-type"), "{message}");
    let mismatch = client
        .command(command(session, 3, "hits", "value", vec![0]))
        .await
        .unwrap()
        .into_inner();
    let (code, message) = error_of(&mismatch);
    assert_eq!(code, api::ErrorCode::MachineTypeMismatch);
    assert!(message.contains("counter"), "{message}");
    let refused = client
        .query(api::QueryRequest {
            machine_name: "nothing".to_string(),
            machine_type: "no-such-type".to_string(),
            ..query(api::Consistency::Linearizable)
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(error_code(&refused), "UNKNOWN_MACHINE_TYPE");
    let zero = client
        .command(command(session, 0, "hits", "counter", vec![]))
        .await
        .unwrap_err();
    assert_eq!(zero.code(), Code::InvalidArgument);
    assert!(zero.message().contains("sequence"), "{}", zero.message());
    let unknown_session = client
        .command(command(session + 1_000_000, 1, "hits", "counter", vec![]))
        .await
        .unwrap_err();
    assert_eq!(
        unknown_session.code(),
        Code::NotFound,
        "{unknown_session:?}"
    );
    assert_eq!(error_code(&unknown_session), "UNKNOWN_SESSION");

    // An oversized request is refused before it is decoded; the connection and the
    // server go on serving.
    let oversized = client
        .command(command(
            session,
            4,
            "hits",
            "counter",
            vec![0; REQUEST_BYTES_MAX + 1],
        ))
        .await
        .unwrap_err();
    assert_eq!(oversized.code(), Code::OutOfRange, "{oversized:?}");
    assert!(
        oversized.message().contains("too large"),
        "{}",
        oversized.message()
    );
    let next = client
        .command(command(
            session,
            4,
            "hits",
            "counter",
            encode(&CounterCommand::AddAndGet { delta: 1 }),
        ))
        .await
        .unwrap()
        .into_inner();
    let value: CounterOutput = codec::decode(output_of(&next), "test").unwrap();
    assert_eq!(value, CounterOutput::Value(6));

    // Events: a queued lock request is granted when the holder unlocks.
    let other = client
        .open_session(api::OpenSessionRequest { timeout_ms: 10_000 })
        .await
        .unwrap()
        .into_inner()
        .session;
    let lock = |wait_ms| {
        encode(&LockCommand::Lock {
            name: "l".into(),
            reentrant: false,
            wait_ms,
        })
    };
    let held = client
        .command(command(session, 5, "locks", "lock", lock(Some(0))))
        .await
        .unwrap()
        .into_inner();
    let held: LockOutput = codec::decode(output_of(&held), "test").unwrap();
    assert!(
        matches!(held, Ok(LockResponse::Acquired { .. })),
        "{held:?}"
    );
    let queued = client
        .command(command(other, 1, "locks", "lock", lock(None)))
        .await
        .unwrap()
        .into_inner();
    let queued: LockOutput = codec::decode(output_of(&queued), "test").unwrap();
    assert_eq!(queued, Ok(LockResponse::Queued { position: 0 }));
    let mut events = client
        .events(api::EventsRequest {
            session: other,
            event_index_acknowledged: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let unlock = encode(&LockCommand::Unlock { name: "l".into() });
    let unlocked = client
        .command(command(session, 6, "locks", "lock", unlock))
        .await
        .unwrap()
        .into_inner();
    let item = tokio::time::timeout(DEADLINE, events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(api::events_response::Item::Batch(batch)) = item.item else {
        panic!("expected a batch, got {item:?}");
    };
    assert_eq!(batch.index, unlocked.index);
    let granted: LockEvent = codec::decode(&batch.events[0].payload, "test").unwrap();
    assert!(
        matches!(granted, LockEvent::Acquired { ref name, .. } if name == "l"),
        "{granted:?}"
    );
    // Closing the session ends its stream with `expired`.
    client
        .close_session(api::CloseSessionRequest { session: other })
        .await
        .unwrap();
    let item = tokio::time::timeout(DEADLINE, events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(item.item, Some(api::events_response::Item::Expired(_))),
        "{item:?}"
    );

    // A follower forwards commands and linearizable reads to the leader.
    let through_follower = follower
        .command(command(
            session,
            7,
            "hits",
            "counter",
            encode(&CounterCommand::AddAndGet { delta: 1 }),
        ))
        .await
        .unwrap()
        .into_inner();
    let value: CounterOutput = codec::decode(output_of(&through_follower), "test").unwrap();
    assert_eq!(value, CounterOutput::Value(7));
    let read = follower
        .query(query(api::Consistency::Linearizable))
        .await
        .unwrap()
        .into_inner();
    let value: CounterOutput = codec::decode(&read.output, "test").unwrap();
    assert_eq!(value, CounterOutput::Value(7));
    let mut cluster = ClusterClient::new(connect(processes[follower_position].client).await);
    let status = cluster
        .status(api::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.role, api::Role::Follower as i32);
    assert_eq!(status.leader_client_address, leader_address.to_string());
    // Membership changes are not forwarded: a follower names the leader instead.
    let refused = cluster
        .promote(api::PromoteRequest {
            id: processes[follower_position].id,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(error_code(&refused), "NOT_LEADER");
    let hint = refused
        .metadata()
        .get(api::LEADER_ADDRESS_METADATA)
        .unwrap();
    assert_eq!(hint.to_str().unwrap(), leader_address.to_string());
    let hint = refused.metadata().get(api::LEADER_ID_METADATA).unwrap();
    assert_eq!(
        hint.to_str().unwrap(),
        processes[leader_position].id.to_string()
    );
    assert_eq!(status.members.len(), 3);
    assert!(
        status
            .members
            .iter()
            .all(|member| member.role == api::MemberRole::Voter as i32)
    );

    // Operations endpoints.
    let http = processes[leader_position].http;
    let (code, body) = http_get(http, "/health");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(http, "/ready");
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (code, body) = tokio::task::spawn_blocking(move || http_get(http, "/metrics"))
            .await
            .unwrap();
        assert_eq!(code, 200);
        let sampled = body.lines().any(|line| line == "conclave_raft_is_leader 1")
            && body.lines().any(|line| line == "conclave_sessions_open 1");
        if sampled {
            assert!(body.contains("conclave_raft_term "), "{body}");
            assert!(body.contains("conclave_raft_apply_lag_entries "), "{body}");
            assert!(
                body.contains("conclave_requests_total{frontend=\"native\",method=\"command\"}"),
                "{body}"
            );
            assert!(body.contains("conclave_request_latency_seconds_bucket{frontend=\"native\",method=\"command\",le=\"+Inf\"}"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed the leader and one session: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The ZooKeeper frontend is wired in: it answers a four-letter word.
    let zookeeper = processes[leader_position].zookeeper;
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(zookeeper).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(b"ruok").unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert_eq!(answer, "imok");
    // So is the etcd frontend: a put is read back.
    let etcd = processes[leader_position].etcd;
    let mut etcd = etcd_client::Client::connect([format!("http://{etcd}")], None)
        .await
        .unwrap();
    etcd.put("greeting", "hello", None).await.unwrap();
    let read = etcd.get("greeting", None).await.unwrap();
    assert_eq!(read.kvs()[0].value(), b"hello");
    drop(etcd);

    // SIGTERM stops every node gracefully (exit code 0).
    drop((client, follower, cluster));
    for process in &mut processes {
        let status = process.terminate();
        assert!(status.success(), "node {} exited with {status}", process.id);
    }
}
