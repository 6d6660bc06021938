//! The gRPC statuses etcd answers, with the exact codes and message strings that etcd
//! clients match on (etcd's `rpctypes`).

use conclave_statemachines::SessionError;
use conclave_statemachines::kv::KvError;
use tonic::{Code, Status};

use crate::gateway::GatewayError;

/// etcd's message when no leader is known.
pub(crate) const NO_LEADER: &str = "etcdserver: no leader";
/// etcd's message when a request reached a member that cannot serve it as a follower.
pub(crate) const NOT_LEADER: &str = "etcdserver: not leader";
/// etcd's message for a request whose outcome is unknown.
pub(crate) const TIMEOUT: &str = "etcdserver: request timed out";
/// etcd's message when the server is stopping.
pub(crate) const STOPPED: &str = "etcdserver: server stopped";
/// etcd's message for an unknown member.
pub(crate) const MEMBER_NOT_FOUND: &str = "etcdserver: member not found";
/// etcd's message for a leader transfer to a member that cannot take it.
pub(crate) const BAD_LEADER_TRANSFEREE: &str = "etcdserver: bad leader transferee";
/// etcd's message for a request larger than `--max-request-bytes`.
pub(crate) const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";

/// The status etcd answers for a kv machine error (the machine's `Display` text is already
/// etcd's message where etcd has one).
pub fn status_of_kv_error(error: &KvError) -> Status {
    let code = match error {
        KvError::Compacted { .. } | KvError::FutureRevision { .. } => Code::OutOfRange,
        KvError::LeaseTtlTooLarge { .. } => Code::OutOfRange,
        KvError::LeaseNotFound | KvError::WatchNotFound { .. } => Code::NotFound,
        KvError::LeaseExists => Code::FailedPrecondition,
        KvError::NoSpace { .. } | KvError::TooManyLeases { .. } => Code::ResourceExhausted,
        KvError::TooManyWatches { .. } => Code::ResourceExhausted,
        KvError::DuplicateKey
        | KvError::TooManyOps { .. }
        | KvError::EmptyKey
        | KvError::KeyNotFound
        | KvError::ValueProvided
        | KvError::LeaseProvided
        | KvError::RequestTooLarge
        | KvError::InvalidArgument { .. } => Code::InvalidArgument,
        KvError::NoSession => Code::Internal,
    };
    Status::new(code, error.to_string())
}

/// The status for a gateway failure, as etcd reports the matching server condition.
pub(crate) fn status_of_gateway_error(error: &GatewayError) -> Status {
    match error {
        GatewayError::NoLeader => Status::unavailable(NO_LEADER),
        GatewayError::NotLeader { .. } => Status::unavailable(NOT_LEADER),
        GatewayError::Timeout => Status::unavailable(TIMEOUT),
        GatewayError::Stopped => Status::unavailable(STOPPED),
        GatewayError::Rejected(SessionError::MalformedPayload { .. }) => {
            Status::invalid_argument(format!("etcdserver: {error}"))
        }
        GatewayError::Rejected(other) => Status::unavailable(format!("etcdserver: {other}")),
        GatewayError::Config { .. } | GatewayError::Internal(_) => {
            Status::internal(format!("etcdserver: {error}"))
        }
    }
}
