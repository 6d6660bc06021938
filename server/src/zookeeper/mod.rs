//! The ZooKeeper frontend: ZooKeeper 3.8's client wire protocol (PROTOCOL.md beside this
//! file) served over TCP on top of the [`Gateway`] and the tree machine.
//!
//! Each ZooKeeper session is a [`crate::gateway::ManagedSession`] whose timeout is the
//! negotiated one; its id is the Conclave session id (the log index that registered it), so
//! ephemeral owners and zxids (log indexes) mean the same thing on every replica. A
//! connection handles its requests one at a time, so replies leave in request order and
//! writes apply in request order. Reads without a watch are sequential queries served by the
//! local replica, never older than what the session has seen; reads that leave a watch, and
//! `sync`, go through the log. Watch events become notifications (xid -1), written before
//! the reply of a request whose zxid is at least theirs.
//!
//! When a connection ends without `closeSession`, its session stays for its timeout on this
//! server, waiting for the client to reconnect (`ConnectRequest` with the session id and
//! password); after that it is closed, and its ephemerals go, as when a ZooKeeper session
//! expires.
//!
//! Entry point: [`serve`].

mod connection;
mod four_letter;
pub mod jute;
pub mod protocol;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use conclave_statemachines::tree::Id;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::gateway::{Gateway, GatewayError, ManagedSession};

/// The frontend's bounds and names; checked by [`ZooKeeperConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZooKeeperConfig {
    /// The name of the tree machine instance the frontend serves.
    pub tree_machine_name: String,
    /// The shortest session timeout granted (ZooKeeper: 2 ticks), in milliseconds.
    pub session_timeout_ms_min: u64,
    /// The longest session timeout granted (ZooKeeper: 20 ticks), in milliseconds.
    pub session_timeout_ms_max: u64,
    /// The largest frame accepted (ZooKeeper's `jute.maxbuffer`); a larger one closes the
    /// connection, as ZooKeeper does.
    pub frame_bytes_max: usize,
    /// Most operations in one multi or multiRead.
    pub multi_ops_max: usize,
    /// Most connections served at once; more are closed when accepted.
    pub connections_max: usize,
    /// Frames read ahead of the one being handled, per connection.
    pub requests_queued_max: usize,
    /// How long a new connection may take to send its `ConnectRequest`.
    pub connect_timeout: Duration,
    /// The key of the session passwords. Every server of a cluster must use the same one;
    /// change it from the default in production, since a password is a keyed hash of the
    /// session id.
    pub password_secret: u64,
}

impl Default for ZooKeeperConfig {
    fn default() -> Self {
        ZooKeeperConfig {
            tree_machine_name: "zookeeper".to_string(),
            session_timeout_ms_min: 4_000,
            session_timeout_ms_max: 40_000,
            frame_bytes_max: 1024 * 1024,
            multi_ops_max: 1_000,
            connections_max: 1_024,
            requests_queued_max: 64,
            connect_timeout: Duration::from_secs(10),
            password_secret: 0x636f_6e63_6c61_7665,
        }
    }
}

impl ZooKeeperConfig {
    /// Refuses bounds that cannot work.
    pub fn validate(&self) -> Result<(), ZooKeeperError> {
        let refuse = |field: &'static str, reason: &str| {
            Err(ZooKeeperError::Config {
                field,
                reason: reason.to_string(),
            })
        };
        if self.tree_machine_name.is_empty() {
            return refuse("tree_machine_name", "must not be empty");
        }
        // The gateway sends keep-alives every third of the timeout; below 300 ms that is
        // under 100 ms, which the gateway refuses too.
        if self.session_timeout_ms_min < 300 {
            return refuse("session_timeout_ms_min", "must be at least 300");
        }
        if self.session_timeout_ms_max < self.session_timeout_ms_min {
            return refuse(
                "session_timeout_ms_max",
                "must be at least session_timeout_ms_min",
            );
        }
        if self.session_timeout_ms_max > i32::MAX as u64 {
            return refuse("session_timeout_ms_max", "must fit the wire's 32 bits");
        }
        // A frame must at least hold a request header and a short path.
        if self.frame_bytes_max < 1024 || self.frame_bytes_max > i32::MAX as usize {
            return refuse("frame_bytes_max", "must be between 1 KiB and 2 GiB");
        }
        if self.multi_ops_max == 0 {
            return refuse("multi_ops_max", "must be at least 1");
        }
        if self.connections_max == 0 {
            return refuse("connections_max", "must be at least 1");
        }
        if self.requests_queued_max == 0 {
            return refuse("requests_queued_max", "must be at least 1");
        }
        if self.connect_timeout.is_zero() {
            return refuse("connect_timeout", "must be positive");
        }
        Ok(())
    }

    /// The timeout granted for a requested one: clamped into the configured bounds.
    pub fn negotiate_timeout_ms(&self, requested_ms: i32) -> u64 {
        (requested_ms.max(0) as u64).clamp(self.session_timeout_ms_min, self.session_timeout_ms_max)
    }
}

/// Why the frontend failed, or why a request was refused while decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZooKeeperError {
    /// A configuration field is out of range.
    #[error("invalid zookeeper config field {field}: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A frame or record that does not decode.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A frame longer than `frame_bytes_max` (or with a negative length).
    #[error("frame of {length} bytes exceeds the bound of {frame_bytes_max}")]
    FrameTooLarge {
        /// The announced length.
        length: i64,
        /// The bound.
        frame_bytes_max: usize,
    },
    /// A request whose fields decode but make no sense (an unknown create flag, watcher
    /// type or multi op): answered with `BADARGUMENTS`.
    #[error("bad arguments")]
    BadArguments,
    /// Accepting connections failed.
    #[error("accept failed: {0}")]
    Accept(String),
    /// The gateway failed.
    #[error("gateway: {0}")]
    Gateway(#[from] GatewayError),
}

/// One session this server holds, attached to a connection or waiting for its client to
/// reconnect.
struct SessionEntry {
    session: Arc<ManagedSession>,
    /// Bumped at every attachment, so a stale connection or reaper recognises it lost.
    generation: u64,
    attached: bool,
    /// Tells the attached connection that a newer one took the session over.
    replaced: Arc<Notify>,
    /// Identities added with `auth` (scheme, user), for `whoAmI`.
    identities: Vec<Id>,
}

/// A connection as the four-letter words list it.
#[derive(Debug, Clone)]
struct ConnectionInfo {
    peer: SocketAddr,
    session_id: i64,
    received: u64,
    sent: u64,
}

/// What every connection of one [`serve`] shares.
struct Shared {
    gateway: Gateway,
    config: ZooKeeperConfig,
    local_address: SocketAddr,
    sessions: StdMutex<HashMap<i64, SessionEntry>>,
    connections: StdMutex<BTreeMap<u64, ConnectionInfo>>,
    connection_next: AtomicU64,
    generation_next: AtomicU64,
    packets_received: AtomicU64,
    packets_sent: AtomicU64,
}

impl Shared {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<i64, SessionEntry>> {
        // A poisoned lock means a panic while holding it, a bug; the map stays consistent.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ConnectionInfo>> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The 16-byte password of a session: a keyed hash of its id, so any server with the
    /// same secret can check it without shared state.
    fn password(&self, session_id: i64) -> Vec<u8> {
        let first = mix(self.config.password_secret ^ session_id as u64);
        let second = mix(first ^ self.config.password_secret.rotate_left(29));
        let mut password = first.to_be_bytes().to_vec();
        password.extend_from_slice(&second.to_be_bytes());
        password
    }
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Serves ZooKeeper clients on `listener` until `shutdown` completes, then stops accepting
/// and ends every connection. Sessions are not closed at shutdown: clients reconnect to
/// another server (or to this one once restarted, within their timeout) and resume them.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    config: ZooKeeperConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ZooKeeperError> {
    config.validate()?;
    let local_address = listener
        .local_addr()
        .map_err(|error| ZooKeeperError::Accept(error.to_string()))?;
    let permits = Arc::new(Semaphore::new(config.connections_max));
    let shared = Arc::new(Shared {
        gateway,
        config,
        local_address,
        sessions: StdMutex::new(HashMap::new()),
        connections: StdMutex::new(BTreeMap::new()),
        connection_next: AtomicU64::new(1),
        generation_next: AtomicU64::new(1),
        packets_received: AtomicU64::new(0),
        packets_sent: AtomicU64::new(0),
    });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    // A connection that failed while being accepted (reset, out of file
                    // descriptors) harms no one else: keep accepting.
                    Err(error) => {
                        tracing::warn!(%error, "zookeeper accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "zookeeper connection refused: connections_max reached");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let id = shared.connection_next.fetch_add(1, Ordering::Relaxed);
                connections.spawn(async move {
                    connection::run(shared.clone(), id, stream, peer).await;
                    shared.connections().remove(&id);
                    drop(permit);
                });
            }
        }
    };
    connections.shutdown().await;
    shared.sessions().clear();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_bounds_are_checked() {
        assert_eq!(ZooKeeperConfig::default().validate(), Ok(()));
        let config = ZooKeeperConfig {
            session_timeout_ms_max: 100,
            ..ZooKeeperConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ZooKeeperError::Config {
                field: "session_timeout_ms_max",
                ..
            })
        ));
        let config = ZooKeeperConfig {
            frame_bytes_max: 10,
            ..ZooKeeperConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn timeouts_are_clamped() {
        let config = ZooKeeperConfig::default();
        assert_eq!(config.negotiate_timeout_ms(1), 4_000);
        assert_eq!(config.negotiate_timeout_ms(-5), 4_000);
        assert_eq!(config.negotiate_timeout_ms(10_000), 10_000);
        assert_eq!(config.negotiate_timeout_ms(i32::MAX), 40_000);
    }

    #[test]
    fn passwords_depend_on_the_session_and_the_secret() {
        let a = mix(1);
        let b = mix(2);
        assert_ne!(a, b);
        assert_ne!(mix(0), 0);
    }
}
