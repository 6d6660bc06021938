//! The native client API: the messages, the tonic clients and the servers generated from
//! `proto/client.proto` (package `conclave.client.v1`). The `.proto` file documents every
//! call, the error codes and the leader-hint metadata.

#![allow(missing_docs, clippy::all)]

tonic::include_proto!("conclave.client.v1");

/// The metadata key carrying the leader's node id when a node cannot serve a request.
pub const LEADER_ID_METADATA: &str = "conclave-leader-id";
/// The metadata key carrying the leader's client address (host:port), when known.
pub const LEADER_ADDRESS_METADATA: &str = "conclave-leader-address";
/// The metadata key carrying the [`ErrorCode`] name of a failure.
pub const ERROR_CODE_METADATA: &str = "conclave-error-code";
