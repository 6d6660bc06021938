//! Endpoints, leader discovery and the retry loop every request goes through.
//!
//! The client talks to one endpoint at a time (the one it believes leads). A failure that
//! retrying may fix moves it: to the leader named in the `conclave-leader-address` hint when
//! the server gave one, otherwise to the next endpoint in the list. A request is retried until
//! it succeeds, fails for good, or the caller's deadline passes.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use conclave_transport::client_api::client_client::ClientClient;
use conclave_transport::client_api::cluster_client::ClusterClient;
use conclave_transport::client_api::{ERROR_CODE_METADATA, LEADER_ADDRESS_METADATA};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::config::ClientConfig;
use crate::error::ClientError;

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Try again (elsewhere, if the failure says so).
    Retry,
    /// The session is gone.
    SessionExpired,
    /// Give up with this error.
    Fail(ClientError),
}

/// The `conclave-error-code` of a status, if the server set one.
pub(crate) fn error_code(status: &Status) -> Option<String> {
    status
        .metadata()
        .get(ERROR_CODE_METADATA)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

/// Classifies a failed attempt.
pub(crate) fn verdict(status: &Status) -> Verdict {
    let code = error_code(status);
    match code.as_deref() {
        Some("UNKNOWN_SESSION") => return Verdict::SessionExpired,
        // A sequential read at a replica behind the client's view: it catches up soon.
        Some("NOT_YET_APPLIED") | Some("NO_LEADER") | Some("NOT_LEADER") | Some("TIMEOUT") => {
            return Verdict::Retry;
        }
        _ => {}
    }
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
            Verdict::Retry
        }
        // Transport failures (connection refused, reset) surface as Unknown without a
        // server-set code.
        Code::Unknown if code.is_none() => Verdict::Retry,
        Code::NotFound if code.is_none() => Verdict::SessionExpired,
        other => Verdict::Fail(ClientError::Server {
            code: code.unwrap_or_else(|| format!("{other:?}")),
            message: status.message().to_string(),
        }),
    }
}

struct Endpoints {
    addresses: Vec<String>,
    channels: Vec<Option<Channel>>,
    /// The endpoint requests go to.
    current: usize,
}

/// The endpoints of one client and which one it uses.
pub(crate) struct Connection {
    pub(crate) config: ClientConfig,
    endpoints: Mutex<Endpoints>,
}

impl Connection {
    pub(crate) fn new(config: ClientConfig) -> Result<Self, ClientError> {
        config.validate()?;
        let count = config.endpoints.len();
        Ok(Connection {
            endpoints: Mutex::new(Endpoints {
                addresses: config.endpoints.clone(),
                channels: vec![None; count],
                current: 0,
            }),
            config,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Endpoints> {
        // A panic while holding this lock cannot leave the table inconsistent (every update
        // is a single assignment), so a poisoned lock is still usable.
        self.endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The endpoint in use and a channel to it (created lazily: it connects on first use).
    pub(crate) fn current(&self) -> Result<(usize, Channel), ClientError> {
        let mut endpoints = self.lock();
        let current = endpoints.current;
        if let Some(channel) = &endpoints.channels[current] {
            return Ok((current, channel.clone()));
        }
        let address = &endpoints.addresses[current];
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|error| ClientError::Config {
                field: "endpoints",
                reason: format!("{address:?}: {error}"),
            })?
            .connect_timeout(self.config.attempt_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        endpoints.channels[current] = Some(channel.clone());
        Ok((current, channel))
    }

    /// The address requests go to now.
    pub(crate) fn current_address(&self) -> String {
        let endpoints = self.lock();
        endpoints.addresses[endpoints.current].clone()
    }

    /// Moves away from endpoint `tried` after a failure: to the hinted leader, or onwards.
    pub(crate) fn failed(&self, tried: usize, status: Option<&Status>) {
        let hint = status.and_then(|status| {
            status
                .metadata()
                .get(LEADER_ADDRESS_METADATA)
                .and_then(|value| value.to_str().ok())
                .filter(|address| !address.is_empty())
                .map(str::to_string)
        });
        let mut endpoints = self.lock();
        if endpoints.current != tried {
            // Another request moved already.
            return;
        }
        if let Some(address) = hint {
            match endpoints
                .addresses
                .iter()
                .position(|known| *known == address)
            {
                Some(position) if position != tried => {
                    endpoints.current = position;
                    return;
                }
                Some(_) => {}
                None => {
                    endpoints.addresses.push(address);
                    endpoints.channels.push(None);
                    endpoints.current = endpoints.addresses.len() - 1;
                    return;
                }
            }
        }
        endpoints.current = (tried + 1) % endpoints.addresses.len();
    }

    /// The backoff after `failures` failed attempts.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .config
            .retry_backoff
            .saturating_mul(1u32 << failures.min(16));
        doubled.min(self.config.retry_backoff_max)
    }

    /// Runs `attempt` against the current endpoint until it succeeds, fails for good, or
    /// `deadline` passes. `attempt` gets the native client and the cluster client.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(ClientClient<Channel>, ClusterClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut failures = 0u32;
        loop {
            let (tried, channel) = self.current()?;
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout);
            }
            let budget = self.config.attempt_timeout.min(deadline - now);
            let future = attempt(
                ClientClient::new(channel.clone()),
                ClusterClient::new(channel),
            );
            let last_error = match tokio::time::timeout(budget, future).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(status)) => match verdict(&status) {
                    Verdict::Retry => {
                        self.failed(tried, Some(&status));
                        status.to_string()
                    }
                    Verdict::SessionExpired => {
                        return Err(ClientError::SessionExpired { session: 0 });
                    }
                    Verdict::Fail(error) => return Err(error),
                },
                Err(_elapsed) => {
                    self.failed(tried, None);
                    "attempt timed out".to_string()
                }
            };
            tracing::debug!(endpoint = tried, %last_error, "retrying");
            let pause = self.backoff(failures);
            failures = failures.saturating_add(1);
            if Instant::now() + pause >= deadline {
                return Err(ClientError::Unavailable { last_error });
            }
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_with(code: Code, error_code: &str, leader: Option<&str>) -> Status {
        let mut status = Status::new(code, "x");
        status
            .metadata_mut()
            .insert(ERROR_CODE_METADATA, error_code.parse().unwrap());
        if let Some(leader) = leader {
            status
                .metadata_mut()
                .insert(LEADER_ADDRESS_METADATA, leader.parse().unwrap());
        }
        status
    }

    #[test]
    fn classifies_failures() {
        assert_eq!(
            verdict(&status_with(Code::Unavailable, "NOT_LEADER", None)),
            Verdict::Retry
        );
        assert_eq!(
            verdict(&status_with(Code::NotFound, "UNKNOWN_SESSION", None)),
            Verdict::SessionExpired
        );
        assert_eq!(
            verdict(&Status::unknown("connection reset")),
            Verdict::Retry
        );
        assert!(matches!(
            verdict(&status_with(Code::InvalidArgument, "INVALID_MACHINE_NAME", None)),
            Verdict::Fail(ClientError::Server { code, .. }) if code == "INVALID_MACHINE_NAME"
        ));
        assert!(matches!(
            verdict(&status_with(
                Code::ResourceExhausted,
                "RESOURCE_EXHAUSTED",
                None
            )),
            Verdict::Fail(_)
        ));
    }

    #[tokio::test]
    async fn follows_leader_hints_and_otherwise_rotates() {
        let connection = Connection::new(ClientConfig::new(["a:1", "b:2", "c:3"])).unwrap();
        assert_eq!(connection.current_address(), "a:1");
        connection.failed(0, None);
        assert_eq!(connection.current_address(), "b:2");
        connection.failed(
            1,
            Some(&status_with(Code::Unavailable, "NOT_LEADER", Some("c:3"))),
        );
        assert_eq!(connection.current_address(), "c:3");
        // A stale failure report (from before the move) does not move it again.
        connection.failed(1, None);
        assert_eq!(connection.current_address(), "c:3");
        connection.failed(
            2,
            Some(&status_with(Code::Unavailable, "NOT_LEADER", Some("d:4"))),
        );
        assert_eq!(
            connection.current_address(),
            "d:4",
            "an unknown leader is learned"
        );
        connection.failed(3, None);
        assert_eq!(connection.current_address(), "a:1");
    }

    #[test]
    fn backoff_doubles_up_to_the_bound() {
        let connection = Connection::new(ClientConfig::new(["a:1"])).unwrap();
        assert_eq!(connection.backoff(0), Duration::from_millis(20));
        assert_eq!(connection.backoff(1), Duration::from_millis(40));
        assert_eq!(connection.backoff(30), Duration::from_millis(500));
    }
}
