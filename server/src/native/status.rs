//! How the native frontend reports failures: one gRPC status per [`GatewayError`] and per
//! [`SessionError`], with the `ErrorCode` name and the leader hint in the metadata (see
//! `transport/proto/client.proto`).

use conclave_consensus::NodeId;
use conclave_statemachines::SessionError;
use conclave_transport::client_api::{
    CommandError, ERROR_CODE_METADATA, ErrorCode, LEADER_ADDRESS_METADATA, LEADER_ID_METADATA,
};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::gateway::GatewayError;
use crate::native::AddressBook;

/// The error code and gRPC code of a session-layer refusal.
pub(crate) fn session_error_codes(error: &SessionError) -> (ErrorCode, Code) {
    match error {
        SessionError::UnknownSession { .. } => (ErrorCode::UnknownSession, Code::NotFound),
        SessionError::TimeoutOutOfBounds { .. } => {
            (ErrorCode::SessionTimeoutOutOfBounds, Code::InvalidArgument)
        }
        SessionError::TooManySessions { .. } => {
            (ErrorCode::TooManySessions, Code::ResourceExhausted)
        }
        SessionError::SequenceZero => (ErrorCode::SequenceZero, Code::InvalidArgument),
        SessionError::SequenceAcknowledged { .. } => {
            (ErrorCode::SequenceAcknowledged, Code::FailedPrecondition)
        }
        SessionError::SequenceTooFarAhead { .. } => {
            (ErrorCode::SequenceTooFarAhead, Code::FailedPrecondition)
        }
        SessionError::TooManyUnacknowledgedOutputs { .. } => (
            ErrorCode::TooManyUnacknowledgedOutputs,
            Code::ResourceExhausted,
        ),
        SessionError::UnknownMachineType { .. } => {
            (ErrorCode::UnknownMachineType, Code::InvalidArgument)
        }
        SessionError::MachineTypeMismatch { .. } => {
            (ErrorCode::MachineTypeMismatch, Code::FailedPrecondition)
        }
        SessionError::InvalidMachineName { .. } => {
            (ErrorCode::InvalidMachineName, Code::InvalidArgument)
        }
        SessionError::TooManyMachines { .. } => {
            (ErrorCode::TooManyMachines, Code::ResourceExhausted)
        }
        SessionError::MalformedEnvelope { .. } | SessionError::UnsupportedVersion { .. } => {
            (ErrorCode::MalformedEnvelope, Code::InvalidArgument)
        }
        SessionError::MalformedPayload { .. } => {
            (ErrorCode::MalformedPayload, Code::InvalidArgument)
        }
        SessionError::OutputEncode { .. } => (ErrorCode::OutputEncode, Code::Internal),
        SessionError::NotYetApplied { .. } => (ErrorCode::NotYetApplied, Code::Unavailable),
    }
}

/// The in-band error of a command that reached the log but was refused.
pub(crate) fn command_error(error: &SessionError) -> CommandError {
    let (code, _) = session_error_codes(error);
    CommandError {
        code: code as i32,
        message: error.to_string(),
    }
}

/// A status with `code`, `message` and the error code in the metadata.
pub(crate) fn status(code: Code, error_code: ErrorCode, message: impl Into<String>) -> Status {
    let mut status = Status::new(code, message.into());
    if let Ok(value) = MetadataValue::try_from(error_code.as_str_name()) {
        status.metadata_mut().insert(ERROR_CODE_METADATA, value);
    }
    status
}

/// A field of the request is invalid.
pub(crate) fn invalid_argument(message: impl Into<String>) -> Status {
    status(Code::InvalidArgument, ErrorCode::InvalidArgument, message)
}

/// The status of a gateway failure; a `NotLeader` carries the leader's id and client
/// address (when the address book knows it) so that the client can redirect.
pub(crate) fn gateway_status(error: GatewayError, addresses: &AddressBook) -> Status {
    match error {
        GatewayError::NoLeader => status(
            Code::Unavailable,
            ErrorCode::NoLeader,
            "no leader is known (an election is under way or there is no quorum); retry",
        ),
        GatewayError::NotLeader { leader } => {
            let message = match leader {
                Some(leader) => format!("this node is not the leader; the leader is node {leader}"),
                None => "this node is not the leader and knows no leader".to_string(),
            };
            let mut refused = status(Code::Unavailable, ErrorCode::NotLeader, message);
            if let Some(leader) = leader {
                add_leader_hint(&mut refused, leader, addresses);
            }
            refused
        }
        GatewayError::Timeout => status(
            Code::DeadlineExceeded,
            ErrorCode::Timeout,
            "the request timed out; it may or may not have taken effect (resend a command \
             with the same session and sequence to learn its result)",
        ),
        GatewayError::Rejected(error) => {
            let (error_code, code) = session_error_codes(&error);
            status(code, error_code, error.to_string())
        }
        GatewayError::Stopped => status(
            Code::Unavailable,
            ErrorCode::Stopped,
            "this node is shutting down; use another node",
        ),
        GatewayError::Config { field, reason } => status(
            Code::Internal,
            ErrorCode::Internal,
            format!("server misconfigured: {field}: {reason}"),
        ),
        GatewayError::Internal(reason) => status(
            Code::Internal,
            ErrorCode::Internal,
            format!("internal error: {reason}"),
        ),
    }
}

/// Puts the leader's id and, when known, its client address into `status`'s metadata.
pub(crate) fn add_leader_hint(status: &mut Status, leader: NodeId, addresses: &AddressBook) {
    if let Ok(value) = MetadataValue::try_from(leader.to_string()) {
        status.metadata_mut().insert(LEADER_ID_METADATA, value);
    }
    if let Some(address) = addresses.client_address(leader)
        && let Ok(value) = MetadataValue::try_from(address)
    {
        status.metadata_mut().insert(LEADER_ADDRESS_METADATA, value);
    }
}
