//! `conclave dev`: a local 3-node cluster serves within 10 seconds of the command, answers
//! on every printed endpoint, and stops all its nodes cleanly on SIGTERM (as on Ctrl-C).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conclave_transport::client_api as api;
use conclave_transport::client_api::cluster_client::ClusterClient;

/// What the issue promises: serving within 10 seconds.
const SERVING_WITHIN: Duration = Duration::from_secs(10);
const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn dev_serves_within_ten_seconds_and_stops_cleanly() {
    let directory = tempfile::tempdir().unwrap();
    // A base port per test process, away from the default 7000 that a developer's own
    // `conclave dev` may hold.
    let base_port = 20_000 + (std::process::id() % 800) * 50;
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .arg("dev")
        .args(["--base-port", &base_port.to_string()])
        .arg("--data-dir")
        .arg(directory.path().join("dev"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut printed = Vec::new();
    loop {
        let remaining = SERVING_WITHIN.saturating_sub(started.elapsed());
        let line = match received.recv_timeout(remaining) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("not serving within {SERVING_WITHIN:?}; printed {printed:?}");
            }
        };
        let ready = line.contains("ready; press Ctrl-C");
        printed.push(line);
        if ready {
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed < SERVING_WITHIN, "ready after {elapsed:?}");
    // Every printed native endpoint answers and knows the leader.
    let endpoints: Vec<String> = printed
        .iter()
        .filter_map(|line| line.split("native gRPC ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|address| format!("http://{address}"))
        .collect();
    assert_eq!(endpoints.len(), 3, "{printed:?}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let leaders: Vec<u64> = runtime.block_on(async {
        let mut leaders = Vec::new();
        for endpoint in &endpoints {
            let mut cluster = ClusterClient::connect(endpoint.clone()).await.unwrap();
            let status = cluster
                .status(api::StatusRequest {})
                .await
                .unwrap()
                .into_inner();
            assert_eq!(status.members.len(), 3);
            leaders.push(status.leader_id);
        }
        leaders
    });
    assert!(leaders.iter().all(|leader| *leader != 0), "{leaders:?}");
    // The ZooKeeper frontend of every node answers a four-letter word, and the etcd
    // frontend accepts connections.
    let printed_addresses = |label: &str| -> Vec<String> {
        printed
            .iter()
            .filter_map(|line| line.split(label).nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .collect()
    };
    let zookeeper = printed_addresses(" zookeeper ");
    assert_eq!(zookeeper.len(), 3, "{printed:?}");
    for address in &zookeeper {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream.write_all(b"ruok").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "imok", "{address}");
    }
    let etcd = printed_addresses(" etcd ");
    assert_eq!(etcd.len(), 3, "{printed:?}");
    for address in &etcd {
        assert!(std::net::TcpStream::connect(address).is_ok(), "{address}");
    }

    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "conclave dev ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "conclave dev exited with {status}");
    // The reader ends when the process's stdout closes.
    let mut rest = Vec::new();
    while let Ok(line) = received.recv_timeout(DEADLINE) {
        rest.push(line);
    }
    assert!(
        rest.iter().any(|line| line == "conclave dev: stopped"),
        "{rest:?}"
    );
    // The nodes are gone: their client ports accept no connection any more.
    for endpoint in &endpoints {
        let address = endpoint.trim_start_matches("http://");
        assert!(
            std::net::TcpStream::connect(address).is_err(),
            "{address} still accepts connections"
        );
    }
}
