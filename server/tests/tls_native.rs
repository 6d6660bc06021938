//! TLS for the native API on a 3-node in-process cluster, with a CA, server and client
//! certificates generated here (rcgen): a client with a certificate the CA signed is
//! served over TLS; a plain-text client and a TLS client without a certificate are not.
//! Peer traffic stays plain text (peer TLS is not built yet).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use conclave_server::config::ServerConfig;
use conclave_server::server::Server;
use conclave_server::tls::TlsFiles;
use conclave_transport::client_api as api;
use conclave_transport::client_api::client_client::ClientClient;
use conclave_transport::client_api::cluster_client::ClusterClient;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tokio::time::Instant;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const DEADLINE: Duration = Duration::from_secs(30);

/// PEM texts of a CA, a server certificate for "localhost" and a client certificate.
struct Material {
    ca: String,
    server_certificate: String,
    server_key: String,
    client_certificate: String,
    client_key: String,
}

fn generate() -> Material {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    Material {
        ca: ca.pem(),
        server_certificate: server.pem(),
        server_key: server_key.serialize_pem(),
        client_certificate: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn start(directory: &Path, material: &Material) -> Vec<Server> {
    let write = |name: &str, text: &str| {
        let path = directory.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let tls = TlsFiles {
        cert_file: write("server.pem", &material.server_certificate),
        key_file: write("server.key", &material.server_key),
        client_ca_file: Some(write("ca.pem", &material.ca)),
    };
    let ids = [1u64, 2, 3];
    let peers: BTreeMap<u64, SocketAddr> = ids.iter().map(|id| (*id, free_address())).collect();
    let mut servers = Vec::new();
    for id in ids {
        let mut config = ServerConfig::new(
            id,
            directory.join(format!("node-{id}")),
            peers[&id],
            free_address(),
            peers
                .iter()
                .map(|(id, address)| (*id, address.to_string()))
                .collect(),
        );
        config.node.tick_interval_ms = 10;
        config.node.election_timeout_ticks = 15;
        config.node.heartbeat_interval_ticks = 3;
        config.tls = Some(tls.clone());
        servers.push(Server::builder().config(config).start().await.unwrap());
    }
    servers
}

fn tls_channel(address: SocketAddr, material: &Material, with_identity: bool) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&material.ca))
        .domain_name("localhost");
    if with_identity {
        tls = tls.identity(Identity::from_pem(
            &material.client_certificate,
            &material.client_key,
        ));
    }
    Channel::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_api_serves_mutual_tls_only() {
    let directory = tempfile::tempdir().unwrap();
    let material = generate();
    let servers = start(directory.path(), &material).await;

    // Every node answers over TLS once a leader is elected.
    let deadline = Instant::now() + DEADLINE;
    let leader = loop {
        let mut leaders = Vec::new();
        for server in &servers {
            let channel = tls_channel(server.client_address(), &material, true);
            if let Ok(status) = ClusterClient::new(channel)
                .status(api::StatusRequest {})
                .await
            {
                leaders.push(status.into_inner().leader_id);
            }
        }
        if leaders.len() == 3 && leaders[0] != 0 && leaders.iter().all(|id| *id == leaders[0]) {
            break leaders[0];
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader over TLS: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let address = servers[leader as usize - 1].client_address();
    let mut client = ClientClient::new(tls_channel(address, &material, true));
    let opened = client
        .open_session(api::OpenSessionRequest { timeout_ms: 10_000 })
        .await
        .unwrap()
        .into_inner();
    assert!(opened.session > 0);

    // Without a client certificate the handshake is refused.
    let mut anonymous = ClientClient::new(tls_channel(address, &material, false));
    let refused = anonymous
        .open_session(api::OpenSessionRequest { timeout_ms: 10_000 })
        .await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );
    // Plain text is not served either.
    let plain = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_lazy();
    let refused = ClientClient::new(plain)
        .open_session(api::OpenSessionRequest { timeout_ms: 10_000 })
        .await;
    assert!(refused.is_err(), "a plain-text client was served");

    for server in servers {
        server.shutdown().await.unwrap();
    }
}
