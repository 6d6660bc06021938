//! The bounds of a [`crate::Client`], each a named and validated field.

use std::time::Duration;

use crate::error::ClientError;

/// How a client reaches the cluster and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Client addresses (`host:port`) of some or all nodes; leader hints add the others.
    pub endpoints: Vec<String>,
    /// How long one attempt of one request may take before it is retried elsewhere.
    pub attempt_timeout: Duration,
    /// How long a caller waits for a request (all its attempts) before `Timeout`.
    pub request_timeout: Duration,
    /// The wait between attempts; doubled per failure up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// The longest wait between attempts.
    pub retry_backoff_max: Duration,
    /// The session timeout asked of the server, in log-time milliseconds.
    pub session_timeout_ms: u64,
    /// How many events one listener may leave unread before the session's event delivery
    /// waits for it (events are never dropped).
    pub listener_events_buffered_max: usize,
}

impl ClientConfig {
    /// A configuration with the defaults and these endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            attempt_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(20),
            retry_backoff_max: Duration::from_millis(500),
            session_timeout_ms: 10_000,
            listener_events_buffered_max: 1_024,
        }
    }

    /// Refuses bounds that cannot work.
    pub fn validate(&self) -> Result<(), ClientError> {
        let refuse = |field: &'static str, reason: &str| {
            Err(ClientError::Config {
                field,
                reason: reason.to_string(),
            })
        };
        if self.endpoints.is_empty() {
            return refuse("endpoints", "must name at least one host:port");
        }
        if let Some(bad) = self
            .endpoints
            .iter()
            .find(|endpoint| endpoint.is_empty() || endpoint.contains('/'))
        {
            return refuse("endpoints", &format!("{bad:?} is not host:port"));
        }
        if self.attempt_timeout.is_zero() || self.attempt_timeout > self.request_timeout {
            return refuse(
                "attempt_timeout",
                "must be positive and at most request_timeout",
            );
        }
        if self.retry_backoff.is_zero() || self.retry_backoff > self.retry_backoff_max {
            return refuse(
                "retry_backoff",
                "must be positive and at most retry_backoff_max",
            );
        }
        if self.session_timeout_ms < 300 {
            return refuse(
                "session_timeout_ms",
                "must be at least 300 (keep-alives go out every third of it)",
            );
        }
        if self.listener_events_buffered_max == 0 {
            return refuse("listener_events_buffered_max", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_each_impossible_bound_by_name() {
        assert!(ClientConfig::new(["127.0.0.1:1"]).validate().is_ok());
        type Change = Box<dyn Fn(&mut ClientConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("endpoints", Box::new(|c| c.endpoints.clear())),
            (
                "endpoints",
                Box::new(|c| c.endpoints = vec!["http://x".into()]),
            ),
            (
                "attempt_timeout",
                Box::new(|c| c.attempt_timeout = Duration::ZERO),
            ),
            (
                "attempt_timeout",
                Box::new(|c| c.attempt_timeout = Duration::from_secs(99)),
            ),
            (
                "retry_backoff",
                Box::new(|c| c.retry_backoff = Duration::from_secs(9)),
            ),
            (
                "session_timeout_ms",
                Box::new(|c| c.session_timeout_ms = 10),
            ),
            (
                "listener_events_buffered_max",
                Box::new(|c| c.listener_events_buffered_max = 0),
            ),
        ];
        for (field, change) in cases {
            let mut config = ClientConfig::new(["127.0.0.1:1"]);
            change(&mut config);
            match config.validate() {
                Err(ClientError::Config { field: refused, .. }) => assert_eq!(refused, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
