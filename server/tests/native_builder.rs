//! The framework path: `Server::builder()` registers a user's machine next to the built-ins
//! on an in-process 3-node cluster; native clients use it like a built-in, followers name
//! or forward to the leader, leadership moves with TransferLeader, the Snapshot call
//! streams a checked backup, and shutdown stops every server.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use conclave_server::config::ServerConfig;
use conclave_server::server::Server;
use conclave_statemachines::{ApplyContext, Error, QueryContext, StateMachine, codec};
use conclave_transport::client_api as api;
use conclave_transport::client_api::client_client::ClientClient;
use conclave_transport::client_api::cluster_client::ClusterClient;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(30);

/// A user's machine: remembers the largest number it was offered.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Maximum {
    largest: u64,
}

impl StateMachine for Maximum {
    const TYPE_NAME: &'static str = "maximum";
    type Command = u64;
    type Query = ();
    type Output = u64;
    type Event = ();

    fn apply(&mut self, _context: &mut ApplyContext<'_, ()>, offered: u64) -> u64 {
        self.largest = self.largest.max(offered);
        self.largest
    }

    fn query(&self, _context: &QueryContext, _query: ()) -> u64 {
        self.largest
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        codec::write_frame(writer, self, "maximum")
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        *self = codec::read_frame(reader, "maximum")?;
        Ok(())
    }
}

fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn start() -> (tempfile::TempDir, Vec<Server>) {
    let directory = tempfile::tempdir().unwrap();
    let ids = [1u64, 2, 3];
    let peers: BTreeMap<u64, std::net::SocketAddr> =
        ids.iter().map(|id| (*id, free_address())).collect();
    let clients: BTreeMap<u64, std::net::SocketAddr> =
        ids.iter().map(|id| (*id, free_address())).collect();
    let mut servers = Vec::new();
    for id in ids {
        let mut config = ServerConfig::new(
            id,
            directory.path().join(format!("node-{id}")),
            peers[&id],
            clients[&id],
            peers
                .iter()
                .map(|(id, address)| (*id, address.to_string()))
                .collect(),
        );
        config.initial_cluster_clients = clients
            .iter()
            .map(|(id, address)| (*id, address.to_string()))
            .collect();
        config.node.tick_interval_ms = 10;
        config.node.election_timeout_ticks = 15;
        config.node.heartbeat_interval_ticks = 3;
        let server = Server::builder()
            .config(config)
            .machines(|registry| registry.register(Maximum::default))
            .start()
            .await
            .unwrap();
        servers.push(server);
    }
    (directory, servers)
}

async fn status(server: &Server) -> api::StatusResponse {
    let mut cluster = ClusterClient::connect(format!("http://{}", server.client_address()))
        .await
        .unwrap();
    cluster
        .status(api::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Waits until every server names the same leader, other than `not`.
async fn leader(servers: &[Server], not: u64) -> u64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut leaders = Vec::new();
        for server in servers {
            leaders.push(status(server).await.leader_id);
        }
        if leaders[0] != 0 && leaders[0] != not && leaders.iter().all(|id| *id == leaders[0]) {
            return leaders[0];
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn command(session: u64, sequence: u64, offered: u64) -> api::CommandRequest {
    api::CommandRequest {
        session,
        sequence,
        machine_name: "max".to_string(),
        machine_type: "maximum".to_string(),
        payload: codec::encode(&offered, "test").unwrap().into(),
    }
}

fn output(response: api::CommandResponse) -> u64 {
    match response.result {
        Some(api::command_response::Result::Output(bytes)) => {
            codec::decode(&bytes, "test").unwrap()
        }
        other => panic!("expected an output, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_machine_serves_next_to_the_builtins() {
    let (_directory, servers) = start().await;
    let leader_id = leader(&servers, 0).await;
    let leader_server = &servers[leader_id as usize - 1];
    let mut client = ClientClient::connect(format!("http://{}", leader_server.client_address()))
        .await
        .unwrap();
    let session = client
        .open_session(api::OpenSessionRequest { timeout_ms: 10_000 })
        .await
        .unwrap()
        .into_inner()
        .session;
    assert_eq!(
        output(
            client
                .command(command(session, 1, 7))
                .await
                .unwrap()
                .into_inner()
        ),
        7
    );
    assert_eq!(
        output(
            client
                .command(command(session, 2, 3))
                .await
                .unwrap()
                .into_inner()
        ),
        7
    );
    let last = client
        .command(command(session, 3, 9))
        .await
        .unwrap()
        .into_inner();
    let last_index = last.index;
    assert_eq!(output(last), 9);

    // Every replica has the machine: a sequential read on each answers 9 once it applied
    // what the session saw.
    for server in &servers {
        let mut replica = ClientClient::connect(format!("http://{}", server.client_address()))
            .await
            .unwrap();
        let answer = replica
            .query(api::QueryRequest {
                session,
                index_seen: last_index,
                machine_name: "max".to_string(),
                machine_type: "maximum".to_string(),
                payload: codec::encode(&(), "test").unwrap().into(),
                consistency: api::Consistency::Sequential as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(codec::decode::<u64>(&answer.output, "test").unwrap(), 9);
    }

    // A backup is one consistent state, in chunks whose size and checksum agree.
    let mut cluster = ClusterClient::connect(format!("http://{}", leader_server.client_address()))
        .await
        .unwrap();
    let mut chunks = cluster
        .snapshot(api::SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut backup = Vec::new();
    let mut last_chunk = None;
    while let Some(chunk) = chunks.message().await.unwrap() {
        assert_eq!(chunk.offset, backup.len() as u64);
        backup.extend_from_slice(&chunk.data);
        if chunk.last {
            last_chunk = Some(chunk);
        }
    }
    let last_chunk = last_chunk.expect("a last chunk");
    assert!(last_chunk.index >= last_index);
    assert_eq!(last_chunk.size_bytes, backup.len() as u64);
    assert_eq!(last_chunk.crc32, crc32fast::hash(&backup));

    // Leadership moves where it is asked to, and every node learns it.
    let target = leader_id % 3 + 1;
    cluster
        .transfer_leader(api::TransferLeaderRequest { id: target })
        .await
        .unwrap();
    let moved = leader(&servers, leader_id).await;
    assert_eq!(moved, target);
    let report = status(&servers[target as usize - 1]).await;
    assert_eq!(report.role, api::Role::Leader as i32);
    assert_eq!(
        report.leader_client_address,
        servers[target as usize - 1].client_address().to_string()
    );

    // Membership administration is refused clearly for a bad id.
    let refused = cluster
        .promote(api::PromoteRequest { id: 0 })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    for server in servers {
        server.shutdown().await.unwrap();
    }
}
