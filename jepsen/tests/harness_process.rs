//! Process control against a stand-in node (a shell that prints its expanded command line
//! and sleeps): start with per-node ports, data dirs and proxy addresses, logs captured,
//! SIGSTOP / SIGCONT, kill -9 and restart.

use std::path::Path;
use std::time::{Duration, Instant};

use conclave_jepsen::harness::cluster::Cluster;
use conclave_jepsen::harness::process::CommandTemplate;

/// A stand-in node: prints what it was given, then sleeps until killed.
fn stand_in() -> CommandTemplate {
    CommandTemplate {
        words: vec![
            "sh".to_string(),
            "-c".to_string(),
            "echo node={id} data={data_dir} client={client_address} peer={peer_address} \
             peers={peers} cluster={cluster} clients={cluster_clients}; exec sleep 600"
                .to_string(),
        ],
    }
}

/// Waits until `condition` holds, or panics after a deadline.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The process state letter from /proc (R, S, T for stopped, ...), if the process exists.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(") ")?.1.chars().next()
}

fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_start_with_their_own_layout_and_peers_through_the_proxy() {
    let folder = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::prepare(3, stand_in(), folder.path())
        .await
        .unwrap();
    cluster.processes.start_all().unwrap();
    for id in cluster.ids() {
        let layout = cluster.processes.layout(id).unwrap().clone();
        assert!(layout.data_dir.is_dir());
        wait_until("the node's log line", || {
            !log_lines(&layout.log_path).is_empty()
        });
        let line = &log_lines(&layout.log_path)[0];
        assert!(line.starts_with(&format!("node={id} data={}", layout.data_dir.display())));
        assert!(line.contains(&format!("client={}", layout.client_listen)));
        // Every peer is reached through the proxy of this node's directed link to it.
        let peers: Vec<String> = cluster
            .ids()
            .into_iter()
            .filter(|&other| other != id)
            .map(|other| format!("{other}={}", cluster.proxy.address((id, other)).unwrap()))
            .collect();
        assert!(
            line.contains(&format!("peers={} ", peers.join(","))),
            "{line}"
        );
        assert!(
            line.contains(&format!("{id}={}", layout.peer_listen)),
            "{line}"
        );
        let client_proxy = cluster.client_address(id).unwrap();
        assert!(line.contains("clients=") && line.contains(&client_proxy.to_string()));
        assert_ne!(client_proxy, layout.client_listen);
    }
    let ports: std::collections::BTreeSet<u16> = cluster
        .ids()
        .into_iter()
        .flat_map(|id| {
            let layout = cluster.processes.layout(id).unwrap();
            [layout.client_listen.port(), layout.peer_listen.port()]
        })
        .collect();
    assert_eq!(ports.len(), 6, "every node listens on its own ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_kill_and_restart_act_on_the_real_process() {
    let folder = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::prepare(1, stand_in(), folder.path())
        .await
        .unwrap();
    let log_path = cluster.processes.layout(1).unwrap().log_path.clone();
    cluster.processes.start(1).unwrap();
    let pid = cluster.processes.pid(1).unwrap();
    wait_until("the first start's log line", || {
        log_lines(&log_path).len() == 1
    });

    cluster.processes.pause(1).unwrap();
    assert!(cluster.processes.is_paused(1));
    wait_until("the stopped state", || process_state(pid) == Some('T'));
    cluster.processes.resume(1).unwrap();
    wait_until("the running state", || {
        matches!(process_state(pid), Some('S' | 'R'))
    });

    // kill -9 of a paused process works too.
    cluster.processes.pause(1).unwrap();
    cluster.processes.kill(1).unwrap();
    assert!(!cluster.processes.is_running(1));
    assert_eq!(process_state(pid), None, "the killed process is reaped");

    cluster.processes.restart(1).unwrap();
    let new_pid = cluster.processes.pid(1).unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(cluster.processes.start_count(1), 2);
    wait_until("the second start's log line", || {
        log_lines(&log_path).len() == 2
    });

    drop(cluster);
    wait_until("the process to go with the cluster", || {
        process_state(new_pid).is_none()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_exits_by_itself_counts_as_down_and_a_bad_program_is_an_error() {
    let folder = tempfile::tempdir().unwrap();
    let quick = CommandTemplate::parse("true").unwrap();
    let mut cluster = Cluster::prepare(1, quick, folder.path()).await.unwrap();
    cluster.processes.start(1).unwrap();
    wait_until("the exit to be noticed", || {
        !cluster.processes.is_running(1)
    });

    let missing = CommandTemplate::parse("/nonexistent/conclave serve").unwrap();
    let folder = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::prepare(1, missing, folder.path()).await.unwrap();
    assert!(cluster.processes.start(1).is_err());
    assert!(CommandTemplate::parse("   ").is_err());
}
