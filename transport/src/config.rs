//! Every bound of the transport, checked by [`TransportConfig::validate`].

use std::time::Duration;

use crate::error::Error;

/// The transport's limits and timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// The largest encoded gRPC message sent or accepted (a batch of messages, or one
    /// snapshot chunk). Larger incoming messages are refused by the server.
    pub message_bytes_max: usize,
    /// The most messages queued towards one peer; further messages are dropped.
    pub peer_queue_messages_max: usize,
    /// The most messages in one batch on the stream.
    pub batch_messages_max: usize,
    /// The size of the chunks a snapshot is cut into.
    pub snapshot_chunk_bytes: usize,
    /// The largest snapshot a receiver accepts.
    pub snapshot_bytes_max: u64,
    /// How many snapshot transfers a receiver keeps partial data for.
    pub snapshot_transfers_max: usize,
    /// How many times a sender retries (resuming) a snapshot transfer.
    pub snapshot_attempts_max: u32,
    /// The first reconnect delay; doubled after each failure.
    pub reconnect_backoff_ms_min: u64,
    /// The longest reconnect delay.
    pub reconnect_backoff_ms_max: u64,
    /// How long a connection attempt may take.
    pub connect_timeout_ms: u64,
    /// How long a forwarded request may wait for the leader's answer (a proposal waits
    /// until it is applied on the leader).
    pub forward_timeout_ms: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            message_bytes_max: 16 * 1024 * 1024,
            peer_queue_messages_max: 4096,
            batch_messages_max: 256,
            snapshot_chunk_bytes: 1024 * 1024,
            snapshot_bytes_max: 4 * 1024 * 1024 * 1024,
            snapshot_transfers_max: 4,
            snapshot_attempts_max: 10,
            reconnect_backoff_ms_min: 10,
            reconnect_backoff_ms_max: 1000,
            connect_timeout_ms: 1000,
            forward_timeout_ms: 10_000,
        }
    }
}

impl TransportConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), Error> {
        fn check(ok: bool, field: &'static str, reason: &str) -> Result<(), Error> {
            if ok {
                Ok(())
            } else {
                Err(Error::Config {
                    field,
                    reason: reason.to_string(),
                })
            }
        }
        check(
            self.message_bytes_max >= 4096,
            "message_bytes_max",
            "must be >= 4096",
        )?;
        check(
            self.peer_queue_messages_max > 0,
            "peer_queue_messages_max",
            "must be > 0",
        )?;
        check(
            self.batch_messages_max > 0,
            "batch_messages_max",
            "must be > 0",
        )?;
        check(
            self.snapshot_chunk_bytes > 0
                && self.snapshot_chunk_bytes + 1024 <= self.message_bytes_max,
            "snapshot_chunk_bytes",
            "must be > 0 and leave 1 KiB of room under message_bytes_max",
        )?;
        check(
            self.snapshot_bytes_max > 0,
            "snapshot_bytes_max",
            "must be > 0",
        )?;
        check(
            self.snapshot_transfers_max > 0,
            "snapshot_transfers_max",
            "must be > 0",
        )?;
        check(
            self.snapshot_attempts_max > 0,
            "snapshot_attempts_max",
            "must be > 0",
        )?;
        check(
            self.reconnect_backoff_ms_min > 0
                && self.reconnect_backoff_ms_min <= self.reconnect_backoff_ms_max,
            "reconnect_backoff_ms_min",
            "must be > 0 and <= reconnect_backoff_ms_max",
        )?;
        check(
            self.connect_timeout_ms > 0,
            "connect_timeout_ms",
            "must be > 0",
        )?;
        check(
            self.forward_timeout_ms > 0,
            "forward_timeout_ms",
            "must be > 0",
        )?;
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn forward_timeout(&self) -> Duration {
        Duration::from_millis(self.forward_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_fields_are_named() {
        assert_eq!(TransportConfig::default().validate(), Ok(()));
        let config = TransportConfig {
            snapshot_chunk_bytes: 16 * 1024 * 1024,
            ..TransportConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(Error::Config {
                field: "snapshot_chunk_bytes",
                ..
            })
        ));
        let config = TransportConfig {
            reconnect_backoff_ms_min: 2000,
            ..TransportConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(Error::Config {
                field: "reconnect_backoff_ms_min",
                ..
            })
        ));
    }
}
