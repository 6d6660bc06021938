//! The gateway that every frontend uses, on a 3-node in-process cluster over gRPC: managed
//! and pooled sessions, exactly-once commands, buffered commands released by a later entry,
//! queries at each consistency, and event delivery (backlog, order, expiry).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conclave_consensus::{NodeId, Role};
use conclave_server::gateway::{Consistency, Gateway, GatewayConfig, GatewayError, SessionEvent};
use conclave_server::machines::{SessionApplication, SessionApplicationConfig};
use conclave_server::node::{Node, NodeConfig};
use conclave_statemachines::counter::{CounterCommand, CounterOutput, CounterQuery};
use conclave_statemachines::lock::{LockCommand, LockEvent, LockOutput, LockResponse};
use conclave_statemachines::{Entry, QueryRequest, SessionError, codec};
use conclave_transport::TransportConfig;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(30);

struct Cluster {
    _directory: tempfile::TempDir,
    gateways: BTreeMap<NodeId, Gateway>,
}

impl Cluster {
    /// Starts three nodes; an idle leader appends a tick every `time_tick_interval_ticks`.
    async fn start(time_tick_interval_ticks: u64) -> Cluster {
        let directory = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for id in [1, 2, 3] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addresses.insert(id, listener.local_addr().unwrap().to_string());
            listeners.insert(id, listener);
        }
        let mut gateways = BTreeMap::new();
        for (id, listener) in listeners {
            let mut config = NodeConfig::new(id, directory.path().join(format!("node-{id}")));
            config.bootstrap_voters = vec![1, 2, 3];
            config.tick_interval_ms = 10;
            config.election_timeout_ticks = 15;
            config.heartbeat_interval_ticks = 3;
            config.time_tick_interval_ticks = time_tick_interval_ticks;
            let application = SessionApplication::new(SessionApplicationConfig::default()).unwrap();
            let node = Node::start_grpc(
                config,
                Box::new(application.clone()),
                listener,
                &addresses,
                TransportConfig::default(),
            )
            .unwrap();
            let gateway_config = GatewayConfig {
                managed_session_timeout_ms: 1_000,
                ..GatewayConfig::default()
            };
            let gateway = Gateway::new(Arc::new(node), application, gateway_config).unwrap();
            gateways.insert(id, gateway);
        }
        Cluster {
            _directory: directory,
            gateways,
        }
    }

    async fn leader(&self) -> (NodeId, Gateway) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            for (id, gateway) in &self.gateways {
                if gateway.status().await.unwrap().soft_state.role == Role::Leader {
                    return (*id, gateway.clone());
                }
            }
            assert!(Instant::now() < deadline, "no leader elected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn encoded<T: serde::Serialize>(value: &T) -> Vec<u8> {
    codec::encode(value, "test").unwrap()
}

fn counter_value(output: &[u8]) -> i64 {
    match codec::decode::<CounterOutput>(output, "test").unwrap() {
        CounterOutput::Value(value) => value,
        other => panic!("{other:?}"),
    }
}

fn counter_query(index_seen: u64) -> QueryRequest {
    QueryRequest {
        session: None,
        index_seen,
        machine_name: "hits".to_string(),
        machine_type: "counter".to_string(),
        payload: encoded(&CounterQuery::Get),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pooled_commands_apply_exactly_once_and_queries_see_them() {
    let cluster = Cluster::start(10).await;
    let (leader, gateway) = cluster.leader().await;
    let add = encoded(&CounterCommand::AddAndGet { delta: 1 });
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let gateway = gateway.clone();
        let add = add.clone();
        tasks.push(tokio::spawn(async move {
            gateway
                .command_without_session("hits", "counter", add)
                .await
                .unwrap()
        }));
    }
    let mut values = Vec::new();
    let mut index_last = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        index_last = index_last.max(answer.index);
        values.push(counter_value(&answer.result.unwrap()));
    }
    values.sort_unstable();
    assert_eq!(values, (1..=200).collect::<Vec<i64>>(), "each add once");

    let linearizable = gateway
        .query(&counter_query(0), Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(counter_value(&linearizable.output), 200);
    // A follower answers a sequential query only once it applied what the caller saw.
    let follower = cluster.gateways.keys().find(|id| **id != leader).unwrap();
    let sequential = cluster.gateways[follower]
        .query(&counter_query(index_last), Consistency::Sequential)
        .await
        .unwrap();
    assert!(sequential.index_applied.unwrap() >= index_last);
    assert_eq!(counter_value(&sequential.output), 200);

    // Refusals reach the caller typed, and the gateway keeps serving.
    let wrong_type = gateway
        .command_without_session(
            "hits",
            "lock",
            encoded(&LockCommand::Unlock { name: "x".into() }),
        )
        .await
        .unwrap();
    assert!(matches!(
        wrong_type.result,
        Err(SessionError::MachineTypeMismatch { .. })
    ));
    let after = gateway
        .command_without_session("hits", "counter", add)
        .await
        .unwrap();
    assert_eq!(counter_value(&after.result.unwrap()), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buffered_command_is_answered_when_the_gap_is_filled() {
    // No ticks: after the session opens, only this test's commands move the log.
    let cluster = Cluster::start(100_000).await;
    let (_, gateway) = cluster.leader().await;
    let (session, _) = gateway.open_session(60_000).await.unwrap();
    let command = |sequence: u64, delta: i64| Entry::Command {
        session,
        sequence,
        machine_name: "hits".to_string(),
        machine_type: "counter".to_string(),
        payload: encoded(&CounterCommand::AddAndGet { delta }),
    };
    let last_index_before = gateway.status().await.unwrap().last_index;
    // Sequence 2 arrives first: the layer buffers it until sequence 1 fills the gap.
    let second = {
        let gateway = gateway.clone();
        let entry = command(2, 10);
        tokio::spawn(async move { gateway.command(&entry).await })
    };
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = gateway.status().await.unwrap();
        if status.last_index > last_index_before && status.applied >= status.last_index {
            break;
        }
        assert!(Instant::now() < deadline, "sequence 2 never applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!second.is_finished(), "sequence 2 waits for sequence 1");
    let first = gateway.command(&command(1, 1)).await.unwrap();
    assert_eq!(counter_value(&first.result.unwrap()), 1);
    let second = second.await.unwrap().unwrap();
    assert_eq!(
        counter_value(&second.result.unwrap()),
        11,
        "applied after 1"
    );
    // A resend of an applied sequence is answered from the cache, not applied again.
    let again = gateway.command(&command(2, 10)).await.unwrap();
    assert_eq!(counter_value(&again.result.unwrap()), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_arrive_in_order_and_expiry_releases_locks() {
    let cluster = Cluster::start(10).await;
    let (leader, gateway) = cluster.leader().await;
    let lock = |wait_ms| {
        encoded(&LockCommand::Lock {
            name: "jobs".to_string(),
            reentrant: false,
            wait_ms,
        })
    };
    let holder = gateway.open_managed_session(1_000).await.unwrap();
    let answer = holder.command("locks", "lock", lock(None)).await.unwrap();
    let output: LockOutput = codec::decode(&answer.result.unwrap(), "test").unwrap();
    let Ok(LockResponse::Acquired { token: first_token }) = output else {
        panic!("{output:?}")
    };

    // The waiter subscribes through a follower's gateway: every replica routes events.
    let follower = *cluster.gateways.keys().find(|id| **id != leader).unwrap();
    let waiter = gateway.open_managed_session(5_000).await.unwrap();
    let answer = waiter.command("locks", "lock", lock(None)).await.unwrap();
    let output: LockOutput = codec::decode(&answer.result.unwrap(), "test").unwrap();
    assert_eq!(output, Ok(LockResponse::Queued { position: 0 }));
    let mut waiter_events = cluster.gateways[&follower]
        .subscribe(waiter.id())
        .await
        .unwrap();
    let mut holder_events = gateway.subscribe(holder.id()).await.unwrap();

    // The holder stops keeping its session alive: it expires, its lock goes to the waiter
    // with a larger fencing token, and its subscriber hears of the expiry.
    let holder_id = holder.id();
    drop(holder);
    let event = tokio::time::timeout(DEADLINE, waiter_events.recv())
        .await
        .expect("the waiter is granted the lock")
        .unwrap();
    let SessionEvent::Batch(batch) = event else {
        panic!("{event:?}")
    };
    assert_eq!(batch.session, waiter.id());
    let granted: LockEvent = codec::decode(&batch.events[0].payload, "test").unwrap();
    let LockEvent::Acquired { token, .. } = granted else {
        panic!("{granted:?}")
    };
    assert!(token > first_token, "fencing tokens grow");
    let expired = tokio::time::timeout(DEADLINE, holder_events.recv())
        .await
        .expect("the holder's subscriber hears of the expiry");
    assert_eq!(expired, Some(SessionEvent::Expired));

    // A command on the expired session is refused with a typed error.
    let stale = Entry::Command {
        session: holder_id,
        sequence: 2,
        machine_name: "locks".to_string(),
        machine_type: "lock".to_string(),
        payload: encoded(&LockCommand::Unlock {
            name: "jobs".to_string(),
        }),
    };
    assert_eq!(
        gateway.command(&stale).await,
        Err(GatewayError::Rejected(SessionError::UnknownSession {
            session: holder_id
        }))
    );

    // Subscribing again resends the unacknowledged batch (nothing was acknowledged yet).
    let mut again = gateway.subscribe(waiter.id()).await.unwrap();
    let resent = tokio::time::timeout(DEADLINE, again.recv()).await.unwrap();
    assert_eq!(resent, Some(SessionEvent::Batch(batch)));
}

#[tokio::test]
async fn invalid_bounds_are_refused() {
    let config = GatewayConfig {
        pool_sessions: 0,
        ..GatewayConfig::default()
    };
    assert!(matches!(
        config.validate(),
        Err(GatewayError::Config {
            field: "pool_sessions",
            ..
        })
    ));
    let config = GatewayConfig {
        retry_backoff: Duration::from_secs(60),
        ..GatewayConfig::default()
    };
    assert!(config.validate().is_err());
}
