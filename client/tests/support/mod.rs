//! A 3-node cluster of real `conclave serve` processes on loopback, for the client's
//! end-to-end tests: start, kill -9 and restart a node, and find the leader through the
//! client's own status call.
//!
//! The `conclave` binary is another crate's, so `CARGO_BIN_EXE_conclave` is not available
//! here: [`conclave_binary`] takes `CONCLAVE_BIN` if set, else the `conclave` next to this
//! test's own target directory, building it with cargo if it is not there yet.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use conclave_client::{Client, ClientConfig};
use conclave_transport::client_api::Role;
use tokio::time::Instant;

/// How long anything in these tests may take before it is a failure.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The path of the `conclave` binary (see the module documentation).
pub fn conclave_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("CONCLAVE_BIN") {
                return PathBuf::from(path);
            }
            // target/<profile>/deps/<test> -> target/<profile>/conclave
            let executable = std::env::current_exe().unwrap();
            let profile_directory = executable.parent().unwrap().parent().unwrap();
            let binary = profile_directory.join("conclave");
            if !binary.exists() {
                let status = Command::new(env!("CARGO"))
                    .args(["build", "-p", "conclave-server", "--bin", "conclave"])
                    .env("CARGO_TARGET_DIR", profile_directory.parent().unwrap())
                    .status()
                    .unwrap();
                assert!(status.success(), "building the conclave binary failed");
            }
            assert!(
                binary.exists(),
                "no conclave binary at {}",
                binary.display()
            );
            binary
        })
        .clone()
}

/// One node's process and addresses.
pub struct NodeProcess {
    pub child: Option<Child>,
    pub peer: String,
    pub client: String,
}

/// Three `conclave serve` processes; killed when dropped.
pub struct ProcessCluster {
    pub directory: tempfile::TempDir,
    pub nodes: BTreeMap<u64, NodeProcess>,
}

fn free_address() -> String {
    // The port is released before the server binds it; another process could take it in
    // between, which on a test machine's loopback is rare enough to accept.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

impl ProcessCluster {
    /// Starts three nodes and waits until one leads.
    pub async fn start() -> ProcessCluster {
        let directory = tempfile::tempdir().unwrap();
        let mut nodes = BTreeMap::new();
        for id in [1u64, 2, 3] {
            nodes.insert(
                id,
                NodeProcess {
                    child: None,
                    peer: free_address(),
                    client: free_address(),
                },
            );
        }
        let mut cluster = ProcessCluster { directory, nodes };
        for id in [1u64, 2, 3] {
            cluster.spawn(id);
        }
        cluster.leader().await;
        cluster
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.directory.path().join(format!("node-{id}"))
    }

    /// Starts node `id` (again) with its data directory and addresses.
    pub fn spawn(&mut self, id: u64) {
        let initial_cluster = self
            .nodes
            .iter()
            .map(|(id, node)| format!("{id}={}", node.peer))
            .collect::<Vec<_>>()
            .join(",");
        let initial_clients = self
            .nodes
            .iter()
            .map(|(id, node)| format!("{id}={}", node.client))
            .collect::<Vec<_>>()
            .join(",");
        let log =
            std::fs::File::create(self.directory.path().join(format!("node-{id}.log"))).unwrap();
        let node = &self.nodes[&id];
        let child = Command::new(conclave_binary())
            .arg("serve")
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--peer-listen", &node.peer])
            .args(["--client-listen", &node.client])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-clients", &initial_clients])
            .args(["--tick-interval-ms", "10"])
            .args(["--election-timeout-ticks", "15"])
            .args(["--heartbeat-interval-ticks", "3"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes.get_mut(&id).unwrap().child = Some(child);
    }

    /// Kills node `id` with SIGKILL and waits for it to exit.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes.get_mut(&id).unwrap().child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Every client address.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .values()
            .map(|node| node.client.clone())
            .collect()
    }

    /// A client configuration for every node, with short timeouts so failovers are quick.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.endpoints());
        config.attempt_timeout = Duration::from_secs(2);
        config.request_timeout = Duration::from_secs(30);
        config.session_timeout_ms = 3_000;
        config
    }

    pub fn client(&self) -> Client {
        Client::new(self.client_config()).unwrap()
    }

    /// Waits until a running node reports itself leader; returns its id.
    pub async fn leader(&self) -> u64 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            for (id, node) in &self.nodes {
                if node.child.is_none() {
                    continue;
                }
                let mut config = ClientConfig::new([node.client.clone()]);
                config.attempt_timeout = Duration::from_millis(500);
                config.request_timeout = Duration::from_millis(500);
                if let Ok(status) = Client::new(config).unwrap().status().await
                    && status.role == Role::Leader as i32
                {
                    return *id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader; logs in {:?}",
                self.directory.path()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Waits until `condition` holds, polling it, or fails with `what`.
pub async fn wait_until<F: FnMut() -> bool>(what: &str, mut condition: F) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `future` within the deadline, or fails with `what`.
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
