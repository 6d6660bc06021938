//! conclave-transport: how Conclave nodes talk to each other.
//!
//! The peer protocol lives in `proto/peer.proto` and is compiled at build time without a
//! system protoc (protox parses it, tonic-prost-build generates the code). This crate owns:
//!
//! - [`convert`]: the mapping between the protobuf messages and
//!   [`conclave_consensus::Message`]; entry payloads are `bytes::Bytes` on both sides and
//!   move across without a copy. Anything the core could not have produced (an unknown
//!   kind, a zero node id, a message for another node) is refused with [`Error`].
//! - [`Transport`]: the small trait the node sends through. Received messages go to an
//!   [`Inbox`] (a bounded tokio channel) given at construction.
//! - [`MemoryNetwork`]: an in-process network behind the same trait for tests, with
//!   partitions.
//! - [`GrpcTransport`] and [`serve`]: the tonic client and server. One long-lived client
//!   stream per peer carries pipelined appends, votes, heartbeats and timeout-now; snapshots
//!   go as a chunked stream that resumes from the offset the receiver already holds. The
//!   client reuses one HTTP/2 connection per peer and reconnects with exponential backoff;
//!   every size and queue is bounded by [`TransportConfig`].
//! - [`forward`]: a client request that reached a follower, sent to the leader with
//!   [`Transport::forward`] and carried out there by a [`ForwardHandler`] (the unary
//!   `Raft.Forward` call over gRPC; a direct call on the in-memory network).
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod client_api;
mod config;
pub mod convert;
mod error;
pub mod forward;
mod grpc;
mod memory;

/// The code generated from `proto/peer.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("conclave.peer.v1");
}

pub use config::TransportConfig;
pub use error::Error;
pub use forward::{ForwardError, ForwardFuture, ForwardHandler, ForwardRequest, Forwarded};
pub use grpc::{GrpcTransport, serve, serve_with_forwarding};
pub use memory::{MemoryNetwork, MemoryTransport};

use std::sync::Arc;

use conclave_consensus::{Message, NodeId};

/// Where a node's transport delivers the messages it receives. Bounded: when the node falls
/// behind, further messages are dropped, which Raft tolerates (it retries on its own timers).
pub type Inbox = tokio::sync::mpsc::Sender<Message>;

/// Sends Raft messages to peers. Implementations never block the caller: a message is
/// queued for its receiver (`message.to`) or dropped when that queue is full or the peer is
/// unknown, because Raft retransmits whatever it needs.
pub trait Transport: Send + Sync + 'static {
    /// Queues `message` for `message.to`.
    fn send(&self, message: Message);
    /// Adds a peer, or changes the address it is reached at.
    fn add_peer(&self, id: NodeId, address: String);
    /// Forgets a peer and closes its connection.
    fn remove_peer(&self, id: NodeId);
    /// Sends a client request to node `to` (the leader) to be carried out there. A
    /// transport that cannot forward answers [`ForwardError::Unreachable`].
    fn forward(&self, to: NodeId, request: ForwardRequest) -> ForwardFuture {
        let _ = request;
        Box::pin(async move {
            Err(ForwardError::Unreachable(format!(
                "this transport cannot forward to node {to}"
            )))
        })
    }
    /// Sets who carries out the requests other nodes forward to this one, for transports
    /// whose receiving side is not a server started separately (the in-memory network).
    /// The gRPC transport ignores it: its handler is given to [`serve_with_forwarding`].
    fn set_forward_handler(&self, handler: Arc<dyn ForwardHandler>) {
        let _ = handler;
    }
}
