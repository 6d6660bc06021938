//! An in-process 3-node Conclave cluster whose every node serves etcd's v3 API, for trying
//! etcd clients against it (server/interop/etcd.sh runs etcdctl).
//!
//! ```text
//! cargo run -p conclave-server --example etcd_cluster -- [ENDPOINTS_FILE]
//! ```
//!
//! Prints one line `etcd <node id> http://<host:port> <role>` per node once a leader is
//! elected (and writes the same lines to ENDPOINTS_FILE when given), then serves until stdin
//! closes or the process is stopped. Data lives in a temporary directory removed at exit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conclave_consensus::{NodeId, Role};
use conclave_server::etcd::{EtcdConfig, serve};
use conclave_server::gateway::{Gateway, GatewayConfig};
use conclave_server::machines::{SessionApplication, SessionApplicationConfig};
use conclave_server::node::{Node, NodeConfig};
use conclave_transport::TransportConfig;
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints_file = std::env::args().nth(1);
    let directory = tempfile::tempdir()?;
    let mut listeners = BTreeMap::new();
    let mut addresses = BTreeMap::new();
    let mut etcd_listeners = BTreeMap::new();
    let mut client_urls: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    for id in [1u64, 2, 3] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        addresses.insert(id, listener.local_addr()?.to_string());
        listeners.insert(id, listener);
        let etcd = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        client_urls.insert(id, vec![format!("http://{}", etcd.local_addr()?)]);
        etcd_listeners.insert(id, etcd);
    }
    let peer_urls: BTreeMap<NodeId, Vec<String>> = addresses
        .iter()
        .map(|(id, address)| (*id, vec![format!("http://{address}")]))
        .collect();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut gateways = BTreeMap::new();
    let mut servers = Vec::new();
    for (id, listener) in listeners {
        let mut node_config = NodeConfig::new(id, directory.path().join(format!("node-{id}")));
        node_config.bootstrap_voters = vec![1, 2, 3];
        node_config.tick_interval_ms = 10;
        node_config.election_timeout_ticks = 30;
        node_config.heartbeat_interval_ticks = 5;
        node_config.time_tick_interval_ticks = 10;
        let application = SessionApplication::new(SessionApplicationConfig::default())?;
        let node = Node::start_grpc(
            node_config,
            Box::new(application.clone()),
            listener,
            &addresses,
            TransportConfig::default(),
        )?;
        let gateway = Gateway::new(Arc::new(node), application, GatewayConfig::default())?;
        let config = EtcdConfig {
            member_name: format!("conclave-{id}"),
            member_client_urls: client_urls.clone(),
            member_peer_urls: peer_urls.clone(),
            ..EtcdConfig::default()
        };
        let Some(etcd) = etcd_listeners.remove(&id) else {
            return Err("a node without an etcd listener".into());
        };
        let mut stopped = stopped.clone();
        servers.push(tokio::spawn(serve(
            gateway.clone(),
            etcd,
            config,
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            },
        )));
        gateways.insert(id, gateway);
    }
    let leader = wait_for_leader(&gateways).await?;
    let mut lines = Vec::new();
    for (id, urls) in &client_urls {
        let role = if *id == leader { "leader" } else { "follower" };
        lines.push(format!("etcd {id} {} {role}", urls.join(",")));
    }
    let text = lines.join("\n") + "\n";
    if let Some(path) = endpoints_file {
        std::fs::write(path, &text)?;
    }
    print!("{text}");
    // Serve until stdin closes (or the process is killed).
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    let _ = stop.send(true);
    for server in servers {
        server.await??;
    }
    drop(gateways);
    Ok(())
}

async fn wait_for_leader(
    gateways: &BTreeMap<NodeId, Gateway>,
) -> Result<NodeId, Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        for (id, gateway) in gateways {
            if gateway.status().await?.soft_state.role == Role::Leader {
                return Ok(*id);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("no leader elected within 30 s".into())
}
