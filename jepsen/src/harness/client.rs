//! A worker's connection to the cluster through the native gRPC API: one session, commands
//! resent with the same (session, sequence) until they get an answer or the operation's
//! deadline passes, so that a command's outcome is known whenever the cluster answers at all.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_transport::client_api::client_client::ClientClient;
use conclave_transport::client_api::command_response::Result as CommandResult;
use conclave_transport::client_api::{
    CommandRequest, Consistency, KeepAliveRequest, OpenSessionRequest, QueryRequest,
};
use tonic::transport::{Channel, Endpoint};

/// How long to wait between resends of a request that got no answer; short against an
/// election timeout so a new leader is found quickly.
const RESEND_INTERVAL: Duration = Duration::from_millis(50);

/// The answer to one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The machine's output.
    Output(Vec<u8>),
    /// The operation certainly did not take effect.
    Refused(String),
    /// No answer before the deadline: it may or may not have taken effect.
    Unknown(String),
}

/// A session on the cluster, owned by one worker.
pub struct NativeSession {
    addresses: Vec<SocketAddr>,
    address_index: usize,
    client: Option<ClientClient<Channel>>,
    session: u64,
    next_sequence: u64,
    session_timeout_ms: u64,
    last_keep_alive: Instant,
    operation_timeout: Duration,
}

impl NativeSession {
    /// A session that is not open yet; `addresses` are the nodes to try, the first one
    /// preferred.
    pub fn new(
        addresses: Vec<SocketAddr>,
        session_timeout_ms: u64,
        operation_timeout: Duration,
    ) -> Self {
        assert!(!addresses.is_empty(), "a session needs an address");
        Self {
            addresses,
            address_index: 0,
            client: None,
            session: 0,
            next_sequence: 1,
            session_timeout_ms,
            last_keep_alive: Instant::now(),
            operation_timeout,
        }
    }

    async fn connected(&mut self) -> Option<ClientClient<Channel>> {
        if let Some(client) = &self.client {
            return Some(client.clone());
        }
        let address = self.addresses[self.address_index % self.addresses.len()];
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .ok()?
            .connect_timeout(self.operation_timeout)
            .timeout(self.operation_timeout);
        let channel = endpoint.connect().await.ok()?;
        let client = ClientClient::new(channel);
        self.client = Some(client.clone());
        Some(client)
    }

    /// Forgets the connection and moves to the next node.
    fn rotate(&mut self) {
        self.client = None;
        self.address_index = (self.address_index + 1) % self.addresses.len();
    }

    /// Whether a session is open.
    pub fn is_open(&self) -> bool {
        self.session != 0
    }

    /// Opens a new session (dropping any previous one without closing it, as a crashed
    /// client would); false if the cluster did not answer before the deadline.
    pub async fn open(&mut self) -> bool {
        let deadline = Instant::now() + self.operation_timeout;
        self.session = 0;
        self.next_sequence = 1;
        while Instant::now() < deadline {
            if let Some(mut client) = self.connected().await {
                let request = OpenSessionRequest {
                    timeout_ms: self.session_timeout_ms,
                };
                if let Ok(response) = client.open_session(request).await {
                    self.session = response.into_inner().session;
                    self.last_keep_alive = Instant::now();
                    return self.session != 0;
                }
            }
            self.rotate();
            tokio::time::sleep(RESEND_INTERVAL).await;
        }
        false
    }

    /// Keeps the session alive and acknowledges outputs when a third of the timeout has
    /// passed since the last keep-alive. Failures are ignored: the next one retries.
    pub async fn keep_alive_if_due(&mut self) {
        let third = Duration::from_millis(self.session_timeout_ms / 3);
        if !self.is_open() || self.last_keep_alive.elapsed() < third {
            return;
        }
        if let Some(mut client) = self.connected().await {
            let request = KeepAliveRequest {
                session: self.session,
                command_sequence_acknowledged: self.next_sequence - 1,
                event_index_acknowledged: 0,
            };
            if client.keep_alive(request).await.is_ok() {
                self.last_keep_alive = Instant::now();
            }
        }
    }

    /// Applies a command exactly once: the same sequence is resent until an answer or the
    /// deadline. After `Unknown` the session must be reopened (its sequence is in limbo).
    pub async fn command(
        &mut self,
        machine_name: &str,
        machine_type: &str,
        payload: Vec<u8>,
    ) -> Answer {
        assert!(self.is_open(), "commands need an open session");
        let sequence = self.next_sequence;
        let payload = bytes::Bytes::from(payload);
        let deadline = Instant::now() + self.operation_timeout;
        let mut last_error = String::from("no attempt");
        while Instant::now() < deadline {
            if let Some(mut client) = self.connected().await {
                let request = CommandRequest {
                    session: self.session,
                    sequence,
                    machine_name: machine_name.to_string(),
                    machine_type: machine_type.to_string(),
                    payload: payload.clone(),
                };
                match client.command(request).await {
                    Ok(response) => {
                        self.next_sequence += 1;
                        return match response.into_inner().result {
                            Some(CommandResult::Output(output)) => Answer::Output(output.to_vec()),
                            Some(CommandResult::Error(error)) => Answer::Refused(error.message),
                            None => Answer::Refused("an empty response".to_string()),
                        };
                    }
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        // The session expired: whether the command applied is unknown.
                        self.session = 0;
                        return Answer::Unknown(status.message().to_string());
                    }
                    Err(status) => last_error = status.to_string(),
                }
            }
            self.rotate();
            tokio::time::sleep(RESEND_INTERVAL).await;
        }
        self.session = 0;
        Answer::Unknown(last_error)
    }

    /// A linearizable query, resent to other nodes until an answer or the deadline. A
    /// query changes nothing, so no answer is a refusal rather than an unknown outcome.
    pub async fn query(
        &mut self,
        machine_name: &str,
        machine_type: &str,
        payload: Vec<u8>,
    ) -> Answer {
        let payload = bytes::Bytes::from(payload);
        let deadline = Instant::now() + self.operation_timeout;
        let mut last_error = String::from("no attempt");
        while Instant::now() < deadline {
            if let Some(mut client) = self.connected().await {
                let request = QueryRequest {
                    session: self.session,
                    index_seen: 0,
                    machine_name: machine_name.to_string(),
                    machine_type: machine_type.to_string(),
                    payload: payload.clone(),
                    consistency: Consistency::Linearizable as i32,
                };
                match client.query(request).await {
                    Ok(response) => return Answer::Output(response.into_inner().output.to_vec()),
                    Err(status) => last_error = status.to_string(),
                }
            }
            self.rotate();
            tokio::time::sleep(RESEND_INTERVAL).await;
        }
        Answer::Refused(last_error)
    }
}
