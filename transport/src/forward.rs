//! Forwarding: a client request that reached a follower is carried out by the leader.
//!
//! The follower sends a [`ForwardRequest`] with [`Transport::forward`](crate::Transport);
//! the leader's [`ForwardHandler`] carries it out locally (never forwarding again) and
//! answers with a [`Forwarded`] or a [`ForwardError`]. Over gRPC this is the unary
//! `Raft.Forward` call of `proto/peer.proto`.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use conclave_consensus::NodeId;

use crate::proto;

/// What a follower asks the leader to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardRequest {
    /// Replicate this command and answer with the application's output.
    Propose(Bytes),
    /// Confirm leadership with a quorum and answer with the commit index to read at.
    ReadIndex,
}

/// The leader's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    /// The application's output for a proposed command.
    Output(Bytes),
    /// The index a read may be served at once applied.
    ReadIndex(u64),
}

/// Why a forwarded request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The receiver is not the leader; `leader` is the one it knows of.
    #[error("forwarded to a node that is not the leader (known leader: {leader:?})")]
    NotLeader {
        /// The leader the receiver knows of, if any.
        leader: Option<NodeId>,
    },
    /// The proposal's entry was replaced or covered by a snapshot: its outcome is unknown.
    #[error("forwarded proposal dropped")]
    Dropped,
    /// The leader's core refused the request.
    #[error("refused by the leader: {0}")]
    Refused(String),
    /// The leader stopped before answering: the outcome is unknown.
    #[error("the leader stopped")]
    Stopped,
    /// The request could not reach the leader, or its answer could not come back: the
    /// outcome is unknown.
    #[error("forwarding failed: {0}")]
    Unreachable(String),
}

/// The future a forwarded request resolves to.
pub type ForwardFuture = Pin<Box<dyn Future<Output = Result<Forwarded, ForwardError>> + Send>>;

/// Carries out requests other nodes forward to this one.
pub trait ForwardHandler: Send + Sync + 'static {
    /// Carries out `request`, sent by node `from`, on this node only.
    fn handle(&self, from: NodeId, request: ForwardRequest) -> ForwardFuture;
}

/// Encodes a request for the wire.
pub fn request_to_proto(
    from: NodeId,
    to: NodeId,
    request: ForwardRequest,
) -> proto::ForwardRequest {
    let (kind, command) = match request {
        ForwardRequest::Propose(command) => (proto::ForwardKind::Propose, command),
        ForwardRequest::ReadIndex => (proto::ForwardKind::ReadIndex, Bytes::new()),
    };
    proto::ForwardRequest {
        from,
        to,
        kind: kind as i32,
        command,
    }
}

/// Decodes a request; `None` for a kind this version does not know.
pub fn request_from_proto(request: proto::ForwardRequest) -> Option<ForwardRequest> {
    match proto::ForwardKind::try_from(request.kind).ok()? {
        proto::ForwardKind::Propose => Some(ForwardRequest::Propose(request.command)),
        proto::ForwardKind::ReadIndex => Some(ForwardRequest::ReadIndex),
        proto::ForwardKind::Unspecified => None,
    }
}

/// Encodes an answer for the wire.
pub fn response_to_proto(result: Result<Forwarded, ForwardError>) -> proto::ForwardResponse {
    let mut response = proto::ForwardResponse::default();
    let kind = match result {
        Ok(Forwarded::Output(output)) => {
            response.output = output;
            proto::ForwardErrorKind::Unspecified
        }
        Ok(Forwarded::ReadIndex(index)) => {
            response.read_index = index;
            proto::ForwardErrorKind::Unspecified
        }
        Err(ForwardError::NotLeader { leader }) => {
            response.leader = leader.unwrap_or(0);
            proto::ForwardErrorKind::NotLeader
        }
        Err(ForwardError::Dropped) => proto::ForwardErrorKind::Dropped,
        Err(ForwardError::Refused(reason)) => {
            response.reason = reason;
            proto::ForwardErrorKind::Refused
        }
        // The receiver could not reach itself only if it is going away.
        Err(ForwardError::Stopped | ForwardError::Unreachable(_)) => {
            proto::ForwardErrorKind::Stopped
        }
    };
    response.error = kind as i32;
    response
}

/// Decodes an answer to `request`.
pub fn response_from_proto(
    request: &ForwardRequest,
    response: proto::ForwardResponse,
) -> Result<Forwarded, ForwardError> {
    match proto::ForwardErrorKind::try_from(response.error) {
        Ok(proto::ForwardErrorKind::Unspecified) => Ok(match request {
            ForwardRequest::Propose(_) => Forwarded::Output(response.output),
            ForwardRequest::ReadIndex => Forwarded::ReadIndex(response.read_index),
        }),
        Ok(proto::ForwardErrorKind::NotLeader) => Err(ForwardError::NotLeader {
            leader: (response.leader != 0).then_some(response.leader),
        }),
        Ok(proto::ForwardErrorKind::Dropped) => Err(ForwardError::Dropped),
        Ok(proto::ForwardErrorKind::Refused) => Err(ForwardError::Refused(response.reason)),
        Ok(proto::ForwardErrorKind::Stopped) => Err(ForwardError::Stopped),
        Err(_) => Err(ForwardError::Unreachable(format!(
            "unknown forward error kind {}",
            response.error
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip() {
        let requests = [
            ForwardRequest::Propose(Bytes::from_static(b"command")),
            ForwardRequest::ReadIndex,
        ];
        for request in requests {
            let wire = request_to_proto(2, 1, request.clone());
            assert_eq!((wire.from, wire.to), (2, 1));
            assert_eq!(request_from_proto(wire), Some(request));
        }
        let unknown = proto::ForwardRequest {
            kind: 99,
            ..proto::ForwardRequest::default()
        };
        assert_eq!(request_from_proto(unknown), None);
        let propose = ForwardRequest::Propose(Bytes::new());
        let answers = [
            (
                propose.clone(),
                Ok(Forwarded::Output(Bytes::from_static(b"out"))),
            ),
            (ForwardRequest::ReadIndex, Ok(Forwarded::ReadIndex(42))),
            (
                propose.clone(),
                Err(ForwardError::NotLeader { leader: Some(3) }),
            ),
            (
                propose.clone(),
                Err(ForwardError::NotLeader { leader: None }),
            ),
            (propose.clone(), Err(ForwardError::Dropped)),
            (propose.clone(), Err(ForwardError::Refused("busy".into()))),
            (propose.clone(), Err(ForwardError::Stopped)),
        ];
        for (request, answer) in answers {
            let wire = response_to_proto(answer.clone());
            assert_eq!(response_from_proto(&request, wire), answer);
        }
        let strange = proto::ForwardResponse {
            error: 77,
            ..proto::ForwardResponse::default()
        };
        assert!(matches!(
            response_from_proto(&propose, strange),
            Err(ForwardError::Unreachable(_))
        ));
    }
}
