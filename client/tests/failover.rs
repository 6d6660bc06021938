//! conclave-client through faults of real `conclave serve` processes: a leader killed with
//! SIGKILL while a lock is held, while commands are retried and while events flow; and a
//! client process stopped with SIGSTOP whose session expires and releases what it held.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use conclave_client::machines::tree::CreateMode;
use conclave_client::recipes::{ChildrenWatch, Lock};
use conclave_client::{ClientConfig, Consistency};
use support::{DEADLINE, ProcessCluster, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_across_a_leader_failover_keeps_exclusion_and_commands_apply_once() {
    let mut cluster = ProcessCluster::start().await;
    let client = cluster.client();
    let holder = client.open_session().await.unwrap();
    let contender = client.open_session().await.unwrap();

    let held = Lock::new(&holder, "locks", "job").acquire().await.unwrap();
    let granted = Arc::new(AtomicBool::new(false));
    let waiter = {
        let contender = contender.clone();
        let granted = granted.clone();
        tokio::spawn(async move {
            let guard = Lock::new(&contender, "locks", "job").acquire().await;
            granted.store(true, Ordering::SeqCst);
            guard
        })
    };

    // Increments before, during and after the failover: each applies exactly once.
    let counter = holder.counter("progress");
    let mut values = Vec::new();
    for round in 0..30 {
        if round == 10 {
            let leader = cluster.leader().await;
            cluster.kill(leader);
        }
        values.push(counter.add_and_get(1).await.unwrap());
    }
    assert_eq!(
        values,
        (1..=30).collect::<Vec<i64>>(),
        "no increment lost or doubled"
    );
    let new_leader = cluster.leader().await;
    assert!(cluster.nodes[&new_leader].child.is_some());

    // The holder's session survived the failover: the lock is still its own.
    assert!(
        !granted.load(Ordering::SeqCst),
        "the contender got a held lock"
    );
    assert!(!waiter.is_finished());
    let description = holder
        .locks("locks")
        .describe("job", Consistency::Linearizable)
        .await
        .unwrap();
    let conclave_client::machines::lock::LockResponse::Description {
        holders, waiters, ..
    } = description
    else {
        panic!("describe answers a description")
    };
    assert_eq!(
        holders
            .iter()
            .map(|(session, _)| *session)
            .collect::<Vec<_>>(),
        vec![holder.id()]
    );
    assert_eq!(waiters, vec![contender.id()]);

    let first_token = held.token();
    held.release().await.unwrap();
    let guard = within("grant after release", waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        guard.token() > first_token,
        "the fencing token grows across the failover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_leader_failover_in_order_without_duplicates() {
    let mut cluster = ProcessCluster::start().await;
    let client = cluster.client();
    let listener = client.open_session().await.unwrap();
    let writer = client.open_session().await.unwrap();

    let value = listener.value("feed");
    let mut events = value.events();
    value.listen().await.unwrap();
    let feed = writer.value("feed");
    for round in 0..30u32 {
        if round == 12 {
            let leader = cluster.leader().await;
            cluster.kill(leader);
        }
        feed.set(Some(round.to_be_bytes().to_vec())).await.unwrap();
    }
    let mut received = Vec::new();
    let mut last_index = 0;
    while received.len() < 30 {
        let (index, event) = within("event", events.next()).await.unwrap().unwrap();
        assert!(
            index > last_index,
            "events arrive in index order, each once"
        );
        last_index = index;
        let bytes: [u8; 4] = event.value.unwrap().try_into().unwrap();
        received.push(u32::from_be_bytes(bytes));
    }
    assert_eq!(received, (0..30).collect::<Vec<u32>>());
    // Nothing more (no duplicate) arrives after the last set.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), events.next())
            .await
            .is_err()
    );
}

/// The environment variable that turns this test binary into the stopped client.
const HELPER_ENDPOINTS: &str = "CONCLAVE_CLIENT_TEST_HELPER_ENDPOINTS";

/// The child: takes the lock, creates an ephemeral node, says so, and waits forever.
async fn hold_until_killed(endpoints: String) {
    let mut config = ClientConfig::new(endpoints.split(','));
    config.session_timeout_ms = 1_500;
    let session = conclave_client::Client::new(config)
        .unwrap()
        .open_session()
        .await
        .unwrap();
    let guard = Lock::new(&session, "locks", "stopped")
        .acquire()
        .await
        .unwrap();
    session
        .tree("tree")
        .create("/members/stopped", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    println!("READY {} {}", session.id(), guard.token());
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_client_loses_its_session_and_its_lock_and_ephemeral_go_to_others() {
    // The same test plays the child when the parent re-runs this binary with the variable.
    if let Ok(endpoints) = std::env::var(HELPER_ENDPOINTS) {
        hold_until_killed(endpoints).await;
        return;
    }
    let cluster = ProcessCluster::start().await;
    let client = cluster.client();
    let observer = client.open_session().await.unwrap();
    observer
        .tree("tree")
        .create("/members", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let mut members = ChildrenWatch::new(&observer, "tree", "/members")
        .await
        .unwrap();
    assert_eq!(members.next().await.unwrap(), Some(Vec::new()));

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_stopped_client_loses_its_session_and_its_lock_and_ephemeral_go_to_others",
            "--nocapture",
        ])
        .env(HELPER_ENDPOINTS, cluster.endpoints().join(","))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.starts_with("READY"))
    });
    let ready = within("the child holds the lock", ready)
        .await
        .unwrap()
        .unwrap();
    let fields: Vec<u64> = ready
        .split(' ')
        .skip(1)
        .map(|field| field.parse().unwrap())
        .collect();
    let (child_session, child_token) = (fields[0], fields[1]);
    assert_eq!(
        within("child's ephemeral", members.next()).await.unwrap(),
        Some(vec!["stopped".to_string()])
    );

    let stopped = Command::new("kill")
        .args(["-STOP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let started = tokio::time::Instant::now();

    // The lock goes to a waiter once the stopped client's session expires.
    let guard = within(
        "the lock after expiry",
        Lock::new(&observer, "locks", "stopped").acquire(),
    )
    .await
    .unwrap();
    assert!(guard.token() > child_token);
    assert!(
        started.elapsed() < DEADLINE,
        "released within the session timeout and an election's slack"
    );
    assert_eq!(
        within("ephemeral deleted", members.next()).await.unwrap(),
        Some(Vec::new())
    );
    let expired = observer
        .locks("locks")
        .describe("stopped", Consistency::Linearizable)
        .await
        .unwrap();
    assert!(
        !format!("{expired:?}").contains(&format!("({child_session}, ")),
        "the expired session holds nothing: {expired:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
