//! ZooKeeper's four-letter words, answered on the client port: a connection whose first
//! four bytes spell one gets a plain-text answer and is closed.

use std::sync::atomic::Ordering;

use conclave_consensus::Role;

use super::Shared;

/// The words served.
const WORDS: [&[u8; 4]; 8] = [
    b"ruok", b"srvr", b"stat", b"mntr", b"envi", b"isro", b"conf", b"cons",
];

/// The answer to `first` if it is a four-letter word.
pub(super) async fn answer(shared: &Shared, first: &[u8; 4]) -> Option<String> {
    if !WORDS.contains(&first) {
        return None;
    }
    let version = env!("CARGO_PKG_VERSION");
    let status = shared.gateway.status().await.ok();
    let mode = match status.as_ref().map(|status| status.soft_state.role) {
        Some(Role::Leader) => "leader",
        Some(_) => "follower",
        None => "unknown",
    };
    let zxid = status.as_ref().map_or(0, |status| status.applied);
    let connections = shared.connections().len();
    let received = shared.packets_received.load(Ordering::Relaxed);
    let sent = shared.packets_sent.load(Ordering::Relaxed);
    let config = &shared.config;
    let text = match first {
        b"ruok" => "imok".to_string(),
        b"isro" => "rw".to_string(),
        b"srvr" | b"stat" => format!(
            "Zookeeper version: conclave-{version}\nLatency min/avg/max: 0/0/0\n\
             Received: {received}\nSent: {sent}\nConnections: {connections}\n\
             Outstanding: 0\nZxid: 0x{zxid:x}\nMode: {mode}\n"
        ),
        b"mntr" => format!(
            "zk_version\tconclave-{version}\nzk_server_state\t{mode}\n\
             zk_packets_received\t{received}\nzk_packets_sent\t{sent}\n\
             zk_num_alive_connections\t{connections}\nzk_outstanding_requests\t0\n\
             zk_zxid\t{zxid}\n"
        ),
        b"envi" => format!(
            "Environment:\nzookeeper.version=conclave-{version}\nos.name={}\n",
            std::env::consts::OS
        ),
        b"conf" => format!(
            "clientPort={}\nminSessionTimeout={}\nmaxSessionTimeout={}\nserverId={}\n\
             jute.maxbuffer={}\n",
            shared.local_address.port(),
            config.session_timeout_ms_min,
            config.session_timeout_ms_max,
            shared.gateway.node().id(),
            config.frame_bytes_max,
        ),
        _ => {
            let mut text = String::new();
            for info in shared.connections().values() {
                text.push_str(&format!(
                    " {}[1](queued=0,recved={},sent={},sid=0x{:x})\n",
                    info.peer, info.received, info.sent, info.session_id
                ));
            }
            text
        }
    };
    Some(text)
}
