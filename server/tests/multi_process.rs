//! Two of three nodes run as separate processes (this test binary re-run as a child); one
//! follower process is killed with SIGKILL under load and restarted from its directory. The
//! in-process leader keeps committing with the other follower, the restarted one catches
//! up, and no acknowledged write is lost.

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use conclave_consensus::Role;
use conclave_server::node::{MapApplication, Node, NodeConfig};
use conclave_transport::TransportConfig;

const CHILD_VARIABLE: &str = "CONCLAVE_NODE_CHILD";
const DEADLINE: Duration = Duration::from_secs(30);
const TEST_NAME: &str = "a_follower_process_killed_under_load_restarts_and_catches_up";

fn config(id: u64, directory: &str, election_timeout_ticks: u64) -> NodeConfig {
    let mut config = NodeConfig::new(id, directory);
    config.bootstrap_voters = vec![1, 2, 3];
    config.tick_interval_ms = 10;
    config.election_timeout_ticks = election_timeout_ticks;
    config.heartbeat_interval_ticks = 3;
    config
}

fn parse_peers(text: &str) -> BTreeMap<u64, String> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(id, address)| (id.parse().unwrap(), address.to_string()))
        .collect()
}

/// The child's life: run one node until killed.
fn run_child(setting: &str) -> ! {
    let mut parts = setting.splitn(3, ';');
    let id: u64 = parts.next().unwrap().parse().unwrap();
    let directory = parts.next().unwrap().to_string();
    let peers = parse_peers(parts.next().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let started = Instant::now();
        let listener = loop {
            match tokio::net::TcpListener::bind(&peers[&id]).await {
                Ok(listener) => break listener,
                Err(_) if started.elapsed() < DEADLINE => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(error) => panic!("bind {}: {error}", peers[&id]),
            }
        };
        // Followers wait longer before campaigning so that the in-process node leads.
        let config = config(id, &directory, 60);
        let application = Box::new(MapApplication::default());
        let _node = Node::start_grpc(
            config,
            application,
            listener,
            &peers,
            TransportConfig::default(),
        )
        .unwrap();
        // Exit when the parent test process is gone, so that no child outlives a failure.
        let parent = std::os::unix::process::parent_id();
        while std::os::unix::process::parent_id() == parent {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::process::exit(0);
    });
    unreachable!("the child runs until killed")
}

fn spawn_child(id: u64, directory: &std::path::Path, peers: &str) -> Child {
    let setting = format!(
        "{id};{};{peers}",
        directory.join(format!("node-{id}")).display()
    );
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_VARIABLE, setting)
        .spawn()
        .unwrap()
}

/// The child processes, killed when dropped (also when an assertion fails).
struct Children(BTreeMap<u64, Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in self.0.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

async fn wait_for_matched(leader: &Node, follower: u64, index: u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = leader.status().await.unwrap();
        if status
            .progress
            .get(&follower)
            .is_some_and(|p| p.matched >= index)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "follower {follower} never reached {index}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn write_some(leader: &Node, next: &mut u64, count: u64, acknowledged: &mut Vec<u64>) {
    for _ in 0..count {
        let command = MapApplication::set_command(format!("k{next}").as_bytes(), b"v");
        let result = tokio::time::timeout(DEADLINE, leader.propose(command)).await;
        assert!(
            matches!(result, Ok(Ok(_))),
            "write {next} failed: {result:?}"
        );
        acknowledged.push(*next);
        *next += 1;
    }
}

#[test]
fn a_follower_process_killed_under_load_restarts_and_catches_up() {
    if let Ok(setting) = std::env::var(CHILD_VARIABLE) {
        run_child(&setting);
    }
    let directory = tempfile::tempdir().unwrap();
    let addresses: BTreeMap<u64, String> = (1..=3).map(|id| (id, free_address())).collect();
    let peers = addresses
        .iter()
        .map(|(id, address)| format!("{id}={address}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Children(
        [2, 3]
            .into_iter()
            .map(|id| (id, spawn_child(id, directory.path(), &peers)))
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addresses[&1]).await.unwrap();
        let directory_one = directory.path().join("node-1");
        let leader = Node::start_grpc(
            config(1, directory_one.to_str().unwrap(), 15),
            Box::new(MapApplication::default()),
            listener,
            &addresses,
            TransportConfig::default(),
        )
        .unwrap();
        let deadline = Instant::now() + DEADLINE;
        while leader.status().await.unwrap().soft_state.role != Role::Leader {
            assert!(Instant::now() < deadline, "node 1 did not become leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut acknowledged = Vec::new();
        let mut next = 0;
        write_some(&leader, &mut next, 200, &mut acknowledged).await;
        let mut killed = children.0.remove(&2).unwrap();
        killed.kill().unwrap();
        killed.wait().unwrap();
        // Node 3 alone completes the quorum.
        write_some(&leader, &mut next, 200, &mut acknowledged).await;
        children
            .0
            .insert(2, spawn_child(2, directory.path(), &peers));
        write_some(&leader, &mut next, 100, &mut acknowledged).await;
        let last_index = leader.status().await.unwrap().last_index;
        wait_for_matched(&leader, 2, last_index).await;
        for i in &acknowledged {
            let found = leader.read(Bytes::from(format!("k{i}"))).await.unwrap();
            assert_eq!(found, "v", "acknowledged write {i} lost");
        }
        leader.stop().await.unwrap();
    });
    drop(children);
}
