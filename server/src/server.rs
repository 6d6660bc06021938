//! [`Server`]: a whole Conclave node in one process — the Raft node over its log, the
//! session layer with the built-in machines and the users' machines, the gateway, the
//! native gRPC API, the HTTP operations endpoints — started by [`Server::builder`] and
//! stopped gracefully by [`Server::shutdown`].
//!
//! Start-up checks what the operator controls before anything runs: the configuration
//! ([`ServerConfig::validate`]), that the data directory can be created and written, and
//! that every listen address can be bound. Each failure is a [`ServerError`] whose one-line
//! message names the setting.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use conclave_statemachines::Registry;
use conclave_transport::TransportConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ConfigError, ServerConfig};
use crate::gateway::Gateway;
use crate::machines::{RegisterMachines, SessionApplication, SessionApplicationConfig};
use crate::native::{AddressBook, MemberAddresses, NativeService};
use crate::node::Node;
use crate::ops::Metrics;

/// Why a server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listen address could not be bound (in use, not local, no permission).
    #[error("invalid setting {setting}: cannot listen on {address}: {reason}")]
    Listen {
        /// The setting that gave the address.
        setting: &'static str,
        /// The address.
        address: SocketAddr,
        /// The operating system's reason.
        reason: String,
    },
    /// The data directory cannot be created or written.
    #[error("invalid setting data_dir: {path}: {reason}")]
    DataDir {
        /// The directory.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A frontend that the configuration asks for is not part of this build.
    #[error("invalid setting {setting}: {reason}")]
    Unsupported {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// The node, the session layer or the gateway failed to start or stop.
    #[error("{0}")]
    Node(String),
}

/// Builds a [`Server`]: its configuration and the users' machine types.
#[must_use]
pub struct ServerBuilder {
    config: Option<ServerConfig>,
    machines: Vec<RegisterMachines>,
    transport: TransportConfig,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("machines", &self.machines.len())
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// The configuration to run with (required).
    pub fn config(mut self, config: ServerConfig) -> ServerBuilder {
        self.config = Some(config);
        self
    }

    /// The peer transport's bounds (the defaults otherwise).
    pub fn transport(mut self, transport: TransportConfig) -> ServerBuilder {
        self.transport = transport;
        self
    }

    /// Registers users' machine types next to the built-ins: `register` receives the
    /// registry on the session layer's thread (machines need not be `Send`) and calls
    /// `registry.register(factory)` for each type. Every node of a cluster must register
    /// the same types.
    pub fn machines(
        mut self,
        register: impl FnOnce(&mut Registry) -> Result<(), conclave_statemachines::Error>
        + Send
        + 'static,
    ) -> ServerBuilder {
        self.machines.push(Box::new(register));
        self
    }

    /// Checks the configuration, the data directory and the listen addresses, then starts
    /// everything. Must be called inside a tokio runtime.
    pub async fn start(self) -> Result<Server, ServerError> {
        let config = self.config.ok_or_else(|| {
            ServerError::Node("Server::builder() needs .config(...) before .start()".to_string())
        })?;
        config.validate()?;
        check_data_dir(&config.node.data_directory)?;
        let tls = match &config.tls {
            Some(files) => Some(files.server_config()?),
            None => None,
        };
        let listeners = Listeners::bind(&config).await?;
        let machines = self.machines;
        let register: RegisterMachines = Box::new(move |registry: &mut Registry| {
            machines
                .into_iter()
                .try_for_each(|register| register(registry))
        });
        let application_config = SessionApplicationConfig {
            session: config.session.clone(),
            ..SessionApplicationConfig::default()
        };
        let application = SessionApplication::with_machines(application_config, register)
            .map_err(|error| ServerError::Node(format!("session layer: {error}")))?;
        let node = Node::start_grpc(
            config.node.clone(),
            Box::new(application.clone()),
            listeners.peer,
            &config.initial_cluster,
            self.transport,
        )
        .map_err(|error| ServerError::Node(format!("node: {error}")))?;
        let node = Arc::new(node);
        let gateway = Gateway::new(node.clone(), application.clone(), config.gateway.clone())
            .map_err(|error| ServerError::Node(format!("gateway: {error}")))?;
        let addresses = AddressBook::default();
        for (id, peer) in &config.initial_cluster {
            let client = config
                .initial_cluster_clients
                .get(id)
                .cloned()
                .unwrap_or_default();
            addresses.insert(
                *id,
                MemberAddresses {
                    peer: peer.clone(),
                    client,
                },
            );
        }
        let metrics = Metrics::default();
        let (stop, stopped) = watch::channel(false);
        let mut server = Server {
            id: config.node.id,
            node: Some(node),
            gateway: Some(gateway.clone()),
            metrics: metrics.clone(),
            addresses: addresses.clone(),
            client_address: listeners.client_address,
            http_address: listeners.http_address,
            peer_address: listeners.peer_address,
            stop,
            tasks: Vec::new(),
            shutdown_timeout: config.shutdown_timeout,
        };
        let service = NativeService::new(
            gateway.clone(),
            application.clone(),
            addresses,
            metrics.clone(),
            config.native.clone(),
        );
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listeners.client);
        let mut native = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            native = native.tls_config(tls.clone()).map_err(|error| {
                ServerError::Config(ConfigError::Invalid {
                    setting: "tls_cert_file".to_string(),
                    reason: format!("unusable certificate or key: {error}"),
                })
            })?;
        }
        let native = native
            .concurrency_limit_per_connection(config.native.requests_in_flight_per_connection_max)
            .add_service(service.client_server())
            .add_service(service.cluster_server())
            .serve_with_incoming_shutdown(incoming, wait_for_stop(stopped.clone()));
        server.tasks.push(tokio::spawn(async move {
            native
                .await
                .map_err(|error| format!("native gRPC server: {error}"))
        }));
        if let Some(listener) = listeners.zookeeper {
            let serving = crate::zookeeper::serve(
                gateway.clone(),
                listener,
                config.zookeeper.clone(),
                wait_for_stop(stopped.clone()),
            );
            server.tasks.push(tokio::spawn(async move {
                serving
                    .await
                    .map_err(|error| format!("zookeeper frontend: {error}"))
            }));
        }
        if let Some(listener) = listeners.etcd {
            let serving = crate::etcd::serve(
                gateway.clone(),
                listener,
                config.etcd.clone(),
                wait_for_stop(stopped.clone()),
            );
            server.tasks.push(tokio::spawn(async move {
                serving
                    .await
                    .map_err(|error| format!("etcd frontend: {error}"))
            }));
        }
        if let Some(listener) = listeners.http {
            let router = crate::ops::router(metrics.clone(), gateway.clone());
            let stopped = stopped.clone();
            server.tasks.push(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(wait_for_stop(stopped))
                    .await
                    .map_err(|error| format!("http server: {error}"))
            }));
        }
        server.tasks.push(tokio::spawn(sample_metrics(
            metrics,
            gateway,
            application,
            config.metrics_sample_interval,
            stopped,
        )));
        tracing::info!(
            node = config.node.id,
            client = %server.client_address,
            peer = %server.peer_address,
            http = ?server.http_address,
            "serving"
        );
        Ok(server)
    }
}

/// The bound listeners, so that a port in use is reported before anything starts.
struct Listeners {
    peer: TcpListener,
    peer_address: SocketAddr,
    client: TcpListener,
    client_address: SocketAddr,
    http: Option<TcpListener>,
    http_address: Option<SocketAddr>,
    zookeeper: Option<TcpListener>,
    etcd: Option<TcpListener>,
}

impl Listeners {
    async fn bind(config: &ServerConfig) -> Result<Listeners, ServerError> {
        let (peer, peer_address) = bind("peer_listen", config.peer_listen).await?;
        let (client, client_address) = bind("client_listen", config.client_listen).await?;
        let (http, http_address) = match config.http_listen {
            Some(address) => {
                let (listener, bound) = bind("http_listen", address).await?;
                (Some(listener), Some(bound))
            }
            None => (None, None),
        };
        let etcd = match config.etcd_listen {
            Some(address) => Some(bind("etcd_listen", address).await?.0),
            None => None,
        };
        let zookeeper = match config.zookeeper_listen {
            Some(address) => Some(bind("zookeeper_listen", address).await?.0),
            None => None,
        };
        Ok(Listeners {
            peer,
            peer_address,
            client,
            client_address,
            http,
            http_address,
            zookeeper,
            etcd,
        })
    }
}

async fn bind(
    setting: &'static str,
    address: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ServerError> {
    let refuse = |error: std::io::Error| ServerError::Listen {
        setting,
        address,
        reason: error.to_string(),
    };
    let listener = TcpListener::bind(address).await.map_err(refuse)?;
    let bound = listener.local_addr().map_err(refuse)?;
    Ok((listener, bound))
}

/// Creates the data directory and proves it writable with a probe file.
fn check_data_dir(path: &Path) -> Result<(), ServerError> {
    let refuse = |error: std::io::Error| ServerError::DataDir {
        path: path.display().to_string(),
        reason: error.to_string(),
    };
    std::fs::create_dir_all(path).map_err(refuse)?;
    let probe = path.join(".conclave-write-probe");
    std::fs::write(&probe, b"probe").map_err(refuse)?;
    std::fs::remove_file(&probe).map_err(refuse)?;
    Ok(())
}

async fn wait_for_stop(mut stopped: watch::Receiver<bool>) {
    // An error means the server handle is gone, which also means stop.
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn sample_metrics(
    metrics: Metrics,
    gateway: Gateway,
    application: SessionApplication,
    interval: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stop = tokio::select! {
            _ = ticker.tick() => false,
            _ = stopped.changed() => true,
        };
        if stop || *stopped.borrow() {
            return Ok(());
        }
        metrics.sample(&gateway, &application).await;
    }
}

/// A running server. Dropping it stops the listeners and the node without waiting;
/// [`Server::shutdown`] waits.
pub struct Server {
    id: conclave_consensus::NodeId,
    node: Option<Arc<Node>>,
    gateway: Option<Gateway>,
    metrics: Metrics,
    addresses: AddressBook,
    client_address: SocketAddr,
    http_address: Option<SocketAddr>,
    peer_address: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
    shutdown_timeout: std::time::Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Server")
            .field("id", &self.id)
            .field("client_address", &self.client_address)
            .field("peer_address", &self.peer_address)
            .field("http_address", &self.http_address)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder; give it `.config(...)`, optionally `.machines(...)`, then `.start()`.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: None,
            machines: Vec::new(),
            transport: TransportConfig::default(),
        }
    }

    /// The address the native gRPC API listens on (the bound one, if the port was 0).
    pub fn client_address(&self) -> SocketAddr {
        self.client_address
    }

    /// The address the HTTP endpoints listen on, if served.
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.http_address
    }

    /// The address peers reach this node at.
    pub fn peer_address(&self) -> SocketAddr {
        self.peer_address
    }

    /// The gateway, for frontends and embedders.
    pub fn gateway(&self) -> Option<&Gateway> {
        self.gateway.as_ref()
    }

    /// The metrics every frontend records into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The members' addresses as this node knows them.
    pub fn addresses(&self) -> &AddressBook {
        &self.addresses
    }

    /// A future that resolves once a shutdown has begun (for frontends' `shutdown`
    /// arguments).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        wait_for_stop(self.stop.subscribe())
    }

    /// Stops accepting requests, lets the listeners finish the requests in flight, then
    /// stops the node and waits for it, all within `shutdown_timeout`.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let gateway = self.gateway.take();
        let node = self.node.take();
        let deadline = self.shutdown_timeout;
        let stopping = async move {
            let mut failures = Vec::new();
            for task in tasks {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => failures.push(error),
                    Err(error) => failures.push(format!("task: {error}")),
                }
            }
            drop(gateway);
            if let Some(node) = node {
                // Frontend tasks the gateway spawned (pooled sessions' keep-alives) may
                // still hold the node for a moment after their gateway dropped.
                match wait_for_sole_owner(node).await {
                    Ok(node) => {
                        if let Err(error) = node.stop().await {
                            failures.push(format!("node: {error}"));
                        }
                    }
                    // Dropping the last handle stops the driver without waiting; the log
                    // holds everything acknowledged, so no data is at risk.
                    Err(node) => drop(node),
                }
            }
            failures
        };
        match tokio::time::timeout(deadline, stopping).await {
            Ok(failures) if failures.is_empty() => Ok(()),
            Ok(failures) => Err(ServerError::Node(failures.join("; "))),
            Err(_) => Err(ServerError::Node(format!(
                "shutdown took longer than shutdown_timeout_ms ({} ms)",
                deadline.as_millis()
            ))),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Waits (briefly) until `node` has no other owner, so that it can be stopped and waited
/// for; gives it back shared if others still hold it.
async fn wait_for_sole_owner(mut node: Arc<Node>) -> Result<Node, Arc<Node>> {
    for _ in 0..50 {
        match Arc::try_unwrap(node) {
            Ok(node) => return Ok(node),
            Err(shared) => node = shared,
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Err(node)
}
