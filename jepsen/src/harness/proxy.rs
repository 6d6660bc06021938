//! The fault-injecting TCP proxy: one listener per directed link, so that partitions work
//! without privileges.
//!
//! Node `i` reaches peer `j` through the listener of link `i -> j`, and clients reach node
//! `j` through the listener of link `CLIENTS -> j`. Cutting a link resets the connections
//! it carries (`SO_LINGER` 0, so the peer sees a reset rather than a clean end) and resets
//! every new connection at once; healing lets new connections through again. A gRPC
//! channel reconnects by itself after a heal, as a real network would let it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::HarnessError;
use super::partition::Partition;

/// The pseudo node id of the clients' side of client links.
pub const CLIENTS: u64 = 0;

/// The size of one forwarding buffer.
const BUFFER_BYTES: usize = 16 * 1024;

/// A directed link: traffic sent by `from` to `to`.
pub type Link = (u64, u64);

struct LinkState {
    listen_address: SocketAddr,
    cut: watch::Sender<bool>,
    bytes_forwarded: Arc<AtomicU64>,
    accept_task: JoinHandle<()>,
}

/// The proxies of every link of a cluster. Dropping it stops every listener.
pub struct Proxy {
    links: BTreeMap<Link, LinkState>,
}

impl Proxy {
    /// Starts one listener on 127.0.0.1 for each `(link, target)`: connections to it are
    /// forwarded to `target`. Must be called inside a tokio runtime.
    pub async fn start(links: &[(Link, SocketAddr)]) -> Result<Self, HarnessError> {
        let mut states = BTreeMap::new();
        for &(link, target) in links {
            assert!(link.0 != link.1, "a node does not proxy to itself");
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|error| HarnessError::io("binding a proxy listener", error))?;
            let listen_address = listener
                .local_addr()
                .map_err(|error| HarnessError::io("reading a proxy address", error))?;
            let (cut, _) = watch::channel(false);
            let bytes_forwarded = Arc::new(AtomicU64::new(0));
            let accept_task = tokio::spawn(accept_loop(
                listener,
                target,
                cut.clone(),
                Arc::clone(&bytes_forwarded),
            ));
            let state = LinkState {
                listen_address,
                cut,
                bytes_forwarded,
                accept_task,
            };
            if states.insert(link, state).is_some() {
                return Err(HarnessError::Config(format!("link {link:?} given twice")));
            }
        }
        Ok(Self { links: states })
    }

    /// The address to connect to for traffic on `link`.
    pub fn address(&self, link: Link) -> Option<SocketAddr> {
        self.links.get(&link).map(|state| state.listen_address)
    }

    /// Every proxied link.
    pub fn links(&self) -> impl Iterator<Item = Link> + '_ {
        self.links.keys().copied()
    }

    /// Bytes carried so far on `link`, both directions together.
    pub fn bytes_forwarded(&self, link: Link) -> u64 {
        self.links
            .get(&link)
            .map_or(0, |state| state.bytes_forwarded.load(Ordering::Relaxed))
    }

    /// Cuts or heals one link; an unknown link is an error.
    pub fn set_cut(&self, link: Link, cut: bool) -> Result<(), HarnessError> {
        let state = self
            .links
            .get(&link)
            .ok_or_else(|| HarnessError::Config(format!("no proxy for link {link:?}")))?;
        state.cut.send_replace(cut);
        Ok(())
    }

    /// Whether `link` is cut now.
    pub fn is_cut(&self, link: Link) -> bool {
        self.links
            .get(&link)
            .is_some_and(|state| *state.cut.borrow())
    }

    /// Makes the peer links match `partition` exactly: its links cut, every other peer
    /// link healed. Client links are left as they are.
    pub fn apply(&self, partition: &Partition) {
        for (&link, state) in &self.links {
            if link.0 != CLIENTS {
                state.cut.send_replace(partition.cut.contains(&link));
            }
        }
    }

    /// Like [`Proxy::apply`], and also cuts the client links to the partition's minority
    /// nodes (clients stand with the majority), healing the other client links.
    pub fn apply_with_clients(&self, partition: &Partition, nodes: &[u64]) {
        self.apply(partition);
        let minority = partition.minority_nodes(nodes);
        for (&link, state) in &self.links {
            if link.0 == CLIENTS {
                state.cut.send_replace(minority.contains(&link.1));
            }
        }
    }

    /// Heals every link, peer and client.
    pub fn heal_all(&self) {
        for state in self.links.values() {
            state.cut.send_replace(false);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for state in self.links.values() {
            // Closing every connection with the listener keeps a finished test from
            // leaving half-open sockets in the nodes.
            state.cut.send_replace(true);
            state.accept_task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    cut: watch::Sender<bool>,
    bytes_forwarded: Arc<AtomicU64>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // Out of descriptors or similar: keep serving rather than silently healing
            // nothing; the next accept usually succeeds.
            tokio::task::yield_now().await;
            continue;
        };
        if *cut.borrow() {
            reset(inbound);
            continue;
        }
        let cut_receiver = cut.subscribe();
        tokio::spawn(forward(
            inbound,
            target,
            cut_receiver,
            Arc::clone(&bytes_forwarded),
        ));
    }
}

async fn forward(
    mut inbound: TcpStream,
    target: SocketAddr,
    mut cut: watch::Receiver<bool>,
    bytes_forwarded: Arc<AtomicU64>,
) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        // The target is down (killed or not started): the client sees a reset, as it
        // would when connecting to a closed port.
        reset(inbound);
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    // One task owns both sockets (no split halves, whose drop would send a clean FIN
    // before the reset), and copies whichever side has bytes.
    let mut upstream_buffer = vec![0_u8; BUFFER_BYTES];
    let mut downstream_buffer = vec![0_u8; BUFFER_BYTES];
    let mut upstream_open = true;
    let mut downstream_open = true;
    while upstream_open || downstream_open {
        let step = tokio::select! {
            read = inbound.read(&mut upstream_buffer), if upstream_open => Step::Upstream(read),
            read = outbound.read(&mut downstream_buffer), if downstream_open => Step::Downstream(read),
            _ = cut.wait_for(|cut| *cut) => Step::Cut,
        };
        let copied = match step {
            Step::Cut => break,
            Step::Upstream(read) => {
                copy(read, &upstream_buffer, &mut outbound, &mut upstream_open).await
            }
            Step::Downstream(read) => {
                copy(read, &downstream_buffer, &mut inbound, &mut downstream_open).await
            }
        };
        match copied {
            Some(count) => {
                bytes_forwarded.fetch_add(count as u64, Ordering::Relaxed);
            }
            None => break,
        }
    }
    if upstream_open || downstream_open {
        // A cut or an error: both sides see a reset. After a clean end of both directions
        // the sockets just close, so no byte still in a send buffer is discarded.
        reset(inbound);
        reset(outbound);
    }
}

enum Step {
    Upstream(std::io::Result<usize>),
    Downstream(std::io::Result<usize>),
    Cut,
}

/// Writes what one read got to the other side; at end of stream, passes the half-close on.
/// `None` on an error, which ends the connection.
async fn copy(
    read: std::io::Result<usize>,
    buffer: &[u8],
    writer: &mut TcpStream,
    open: &mut bool,
) -> Option<usize> {
    match read {
        Ok(0) => {
            *open = false;
            writer.shutdown().await.ok()?;
            Some(0)
        }
        Ok(count) => {
            writer.write_all(&buffer[..count]).await.ok()?;
            Some(count)
        }
        Err(_) => None,
    }
}

fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
