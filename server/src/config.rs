//! The server's configuration: every setting by name, from `conclave.toml`, `CONCLAVE_*`
//! environment variables and command-line flags (in increasing precedence), checked by
//! [`ServerConfig::validate`] so that every mistake is one line naming the setting.
//!
//! Settings are gathered as text under their names first ([`Settings`]), then parsed into
//! a [`ServerConfig`]; the names are the same in the file, as flags (`--data-dir` for
//! `data_dir`) and in the environment (`CONCLAVE_DATA_DIR`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use conclave_consensus::NodeId;
use conclave_statemachines::SessionConfig;

use crate::gateway::GatewayConfig;
use crate::native::NativeConfig;
use crate::node::NodeConfig;

/// A configuration mistake; its message is one line that names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A setting has a value that does not parse or is out of range.
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        /// The setting's name (as in conclave.toml).
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A required setting is missing.
    #[error("missing setting {setting}: {reason}")]
    Missing {
        /// The setting's name.
        setting: String,
        /// How to give it.
        reason: String,
    },
    /// The configuration file names a setting that does not exist, or cannot be read.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(setting: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            setting: setting.to_string(),
            reason: reason.into(),
        }
    }
}

/// Every setting's name, with its description for the README and `--help`.
pub const SETTINGS: &[(&str, &str)] = &[
    ("node_id", "this node's id (non-zero); required"),
    (
        "data_dir",
        "where the log, meta file and snapshots live; required",
    ),
    (
        "peer_listen",
        "address for peer (Raft) traffic, e.g. 127.0.0.1:7001; required",
    ),
    (
        "client_listen",
        "address for the native gRPC API, e.g. 127.0.0.1:7011; required",
    ),
    (
        "http_listen",
        "address for /metrics, /health and /ready (optional)",
    ),
    ("etcd_listen", "address for the etcd v3 frontend (optional)"),
    (
        "zookeeper_listen",
        "address for the ZooKeeper frontend (optional)",
    ),
    (
        "initial_cluster",
        "peer addresses of the first members: 1=127.0.0.1:7001,2=...; required, must name node_id",
    ),
    (
        "initial_cluster_clients",
        "client addresses of the first members, same form (optional; used for leader hints)",
    ),
    ("tick_interval_ms", "length of one Raft tick (default 20)"),
    (
        "election_timeout_ticks",
        "minimum election timeout in ticks (default 10)",
    ),
    (
        "heartbeat_interval_ticks",
        "heartbeat interval in ticks (default 2)",
    ),
    (
        "snapshot_entries_threshold",
        "snapshot after this many applied entries (default 10000)",
    ),
    (
        "snapshot_bytes_threshold",
        "or after this many applied bytes (default 67108864)",
    ),
    (
        "session_timeout_ms_min",
        "smallest session timeout a client may ask for (default 100)",
    ),
    (
        "session_timeout_ms_max",
        "largest session timeout (default 3600000)",
    ),
    ("sessions_max", "most open sessions (default 65536)"),
    (
        "request_timeout_ms",
        "how long one request may take (default 10000)",
    ),
    (
        "request_bytes_max",
        "largest native request message (default 4194304)",
    ),
    (
        "requests_in_flight_per_connection_max",
        "most concurrent native requests per connection (default 256)",
    ),
    (
        "metrics_sample_interval_ms",
        "how often node metrics are sampled (default 1000)",
    ),
    (
        "shutdown_timeout_ms",
        "how long a graceful shutdown may take (default 10000)",
    ),
    (
        "log_level",
        "error, warn, info, debug or trace (default info)",
    ),
    (
        "tls_cert_file",
        "PEM certificate chain: the native API serves TLS (optional)",
    ),
    (
        "tls_key_file",
        "PEM private key of tls_cert_file (required with it)",
    ),
    (
        "tls_client_ca_file",
        "PEM CA: native clients must present a certificate it signed (mutual TLS, optional)",
    ),
];

/// Settings as text by name, before parsing; later sources override earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Settings {
    /// Reads a `conclave.toml`: a flat table of the settings in [`SETTINGS`].
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let file_error = |reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|error| file_error(error.to_string()))?;
        Settings::from_toml(&text).map_err(|error| match error {
            ConfigError::File { reason, .. } => file_error(reason),
            other => other,
        })
    }

    /// Parses the text of a `conclave.toml`.
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let file_error = |reason: String| ConfigError::File {
            path: "conclave.toml".to_string(),
            reason,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|error: toml::de::Error| file_error(one_line(&error.to_string())))?;
        let mut settings = Settings::default();
        for (name, value) in table {
            if !SETTINGS.iter().any(|(known, _)| *known == name) {
                return Err(file_error(format!("unknown setting {name}")));
            }
            let text = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(number) => number.to_string(),
                toml::Value::Boolean(flag) => flag.to_string(),
                other => {
                    return Err(ConfigError::invalid(
                        &name,
                        format!("expected a string or a number, found {}", other.type_str()),
                    ));
                }
            };
            settings.values.insert(name, text);
        }
        Ok(settings)
    }

    /// Sets `name` to `value` (over any earlier source).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_string(), value.into());
    }

    /// Overrides these settings with every one that `other` holds.
    pub fn merge(&mut self, other: Settings) {
        self.values.extend(other.values);
    }

    /// The settings given as `CONCLAVE_<NAME>` variables of `environment`.
    pub fn from_environment(environment: impl IntoIterator<Item = (String, String)>) -> Settings {
        let mut settings = Settings::default();
        for (key, value) in environment {
            let Some(name) = key.strip_prefix("CONCLAVE_") else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            if SETTINGS.iter().any(|(known, _)| *known == name) {
                settings.values.insert(name, value);
            }
        }
        settings
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn parse<T: FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.text(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|error| ConfigError::invalid(name, format!("{text:?}: {error}"))),
        }
    }

    fn required<T: FromStr>(&self, name: &str) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let text = self.text(name).ok_or_else(|| ConfigError::Missing {
            setting: name.to_string(),
            reason: format!(
                "set it in conclave.toml, as --{} or as CONCLAVE_{}",
                name.replace('_', "-"),
                name.to_ascii_uppercase()
            ),
        })?;
        text.trim()
            .parse()
            .map_err(|error| ConfigError::invalid(name, format!("{text:?}: {error}")))
    }

    fn address(&self, name: &str) -> Result<Option<SocketAddr>, ConfigError> {
        match self.text(name) {
            None => Ok(None),
            Some(text) if text.trim().is_empty() => Ok(None),
            Some(text) => parse_address(name, text).map(Some),
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_address(name: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        ConfigError::invalid(
            name,
            format!("{text:?} is not an ip:port address (e.g. 127.0.0.1:7001)"),
        )
    })
}

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002`: ids non-zero and distinct, addresses
/// `ip:port` and distinct.
pub fn parse_cluster(name: &str, text: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut members = BTreeMap::new();
    for member in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let (id, address) = member
            .split_once('=')
            .ok_or_else(|| ConfigError::invalid(name, format!("{member:?} is not id=ip:port")))?;
        let id: NodeId = id.trim().parse().map_err(|_| {
            ConfigError::invalid(
                name,
                format!("{member:?}: the id must be a positive integer"),
            )
        })?;
        if id == 0 {
            return Err(ConfigError::invalid(name, "node id 0 is not allowed"));
        }
        let address = parse_address(name, address)?.to_string();
        if members.values().any(|known| *known == address) {
            return Err(ConfigError::invalid(
                name,
                format!("address {address} appears twice"),
            ));
        }
        if members.insert(id, address).is_some() {
            return Err(ConfigError::invalid(
                name,
                format!("node {id} appears twice"),
            ));
        }
    }
    if members.is_empty() {
        return Err(ConfigError::invalid(
            name,
            "names no member (use 1=127.0.0.1:7001,...)",
        ));
    }
    Ok(members)
}

/// Everything `conclave serve` runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The node's own configuration (id, data directory, ticks, snapshot policy, bounds).
    pub node: NodeConfig,
    /// Where peers reach this node.
    pub peer_listen: SocketAddr,
    /// The native gRPC API.
    pub client_listen: SocketAddr,
    /// `/metrics`, `/health` and `/ready`, if served.
    pub http_listen: Option<SocketAddr>,
    /// The etcd v3 frontend, if served.
    pub etcd_listen: Option<SocketAddr>,
    /// The ZooKeeper frontend, if served.
    pub zookeeper_listen: Option<SocketAddr>,
    /// The first members' peer addresses (including this node).
    pub initial_cluster: BTreeMap<NodeId, String>,
    /// The first members' client addresses, for leader hints (may be empty).
    pub initial_cluster_clients: BTreeMap<NodeId, String>,
    /// The session layer's bounds.
    pub session: SessionConfig,
    /// The gateway's bounds.
    pub gateway: GatewayConfig,
    /// The native frontend's bounds.
    pub native: NativeConfig,
    /// How often the node's metrics are sampled.
    pub metrics_sample_interval: Duration,
    /// How long a graceful shutdown may take before the process exits anyway.
    pub shutdown_timeout: Duration,
    /// The tracing level.
    pub log_level: tracing::Level,
    /// TLS for the native API, if any.
    pub tls: Option<crate::tls::TlsFiles>,
    /// The ZooKeeper frontend's bounds (served when `zookeeper_listen` is set).
    pub zookeeper: crate::zookeeper::ZooKeeperConfig,
    /// The etcd frontend's bounds (served when `etcd_listen` is set).
    pub etcd: crate::etcd::EtcdConfig,
}

impl ServerConfig {
    /// A configuration for node `id` with defaults for everything but the addresses.
    pub fn new(
        id: NodeId,
        data_dir: impl Into<PathBuf>,
        peer_listen: SocketAddr,
        client_listen: SocketAddr,
        initial_cluster: BTreeMap<NodeId, String>,
    ) -> ServerConfig {
        let mut node = NodeConfig::new(id, data_dir);
        node.bootstrap_voters = initial_cluster.keys().copied().collect();
        ServerConfig {
            node,
            peer_listen,
            client_listen,
            http_listen: None,
            etcd_listen: None,
            zookeeper_listen: None,
            initial_cluster,
            initial_cluster_clients: BTreeMap::new(),
            session: SessionConfig::default(),
            gateway: GatewayConfig::default(),
            native: NativeConfig::default(),
            metrics_sample_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(10),
            log_level: tracing::Level::INFO,
            tls: None,
            zookeeper: crate::zookeeper::ZooKeeperConfig::default(),
            etcd: crate::etcd::EtcdConfig::default(),
        }
    }

    /// Parses and validates `settings`.
    pub fn from_settings(settings: &Settings) -> Result<ServerConfig, ConfigError> {
        let id: NodeId = settings.required("node_id")?;
        let data_dir: PathBuf = settings.required("data_dir")?;
        let peer_listen =
            parse_address("peer_listen", &settings.required::<String>("peer_listen")?)?;
        let client_listen = parse_address(
            "client_listen",
            &settings.required::<String>("client_listen")?,
        )?;
        let initial_cluster = parse_cluster(
            "initial_cluster",
            &settings.required::<String>("initial_cluster")?,
        )?;
        let mut config =
            ServerConfig::new(id, data_dir, peer_listen, client_listen, initial_cluster);
        config.http_listen = settings.address("http_listen")?;
        config.etcd_listen = settings.address("etcd_listen")?;
        config.zookeeper_listen = settings.address("zookeeper_listen")?;
        if let Some(text) = settings.text("initial_cluster_clients") {
            config.initial_cluster_clients = parse_cluster("initial_cluster_clients", text)?;
        }
        let node = &mut config.node;
        node.tick_interval_ms = settings.parse("tick_interval_ms", node.tick_interval_ms)?;
        node.election_timeout_ticks =
            settings.parse("election_timeout_ticks", node.election_timeout_ticks)?;
        node.heartbeat_interval_ticks =
            settings.parse("heartbeat_interval_ticks", node.heartbeat_interval_ticks)?;
        node.snapshot_entries_threshold = settings.parse(
            "snapshot_entries_threshold",
            node.snapshot_entries_threshold,
        )?;
        node.snapshot_bytes_threshold =
            settings.parse("snapshot_bytes_threshold", node.snapshot_bytes_threshold)?;
        let session = &mut config.session;
        session.session_timeout_ms_min =
            settings.parse("session_timeout_ms_min", session.session_timeout_ms_min)?;
        session.session_timeout_ms_max =
            settings.parse("session_timeout_ms_max", session.session_timeout_ms_max)?;
        session.sessions_max = settings.parse("sessions_max", session.sessions_max)?;
        let request_timeout_ms: u64 = settings.parse("request_timeout_ms", 10_000)?;
        config.gateway.request_timeout = Duration::from_millis(request_timeout_ms);
        let native = &mut config.native;
        native.request_bytes_max = settings.parse("request_bytes_max", native.request_bytes_max)?;
        native.requests_in_flight_per_connection_max = settings.parse(
            "requests_in_flight_per_connection_max",
            native.requests_in_flight_per_connection_max,
        )?;
        let sample_ms: u64 = settings.parse("metrics_sample_interval_ms", 1_000)?;
        config.metrics_sample_interval = Duration::from_millis(sample_ms);
        let shutdown_ms: u64 = settings.parse("shutdown_timeout_ms", 10_000)?;
        config.shutdown_timeout = Duration::from_millis(shutdown_ms);
        config.log_level = settings.parse("log_level", tracing::Level::INFO)?;
        config.tls = tls_files(settings)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting, and the ones that depend on each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let id = self.node.id;
        if id == 0 {
            return Err(ConfigError::invalid("node_id", "must be non-zero"));
        }
        match self.initial_cluster.get(&id) {
            None => {
                return Err(ConfigError::invalid(
                    "initial_cluster",
                    format!("does not name this node (node_id {id})"),
                ));
            }
            Some(address)
                if parse_address("initial_cluster", address)?.port() != self.peer_listen.port() =>
            {
                return Err(ConfigError::invalid(
                    "initial_cluster",
                    format!(
                        "gives node {id} the address {address}, but peer_listen is {}",
                        self.peer_listen
                    ),
                ));
            }
            Some(_) => {}
        }
        let mut listens = vec![
            ("peer_listen", self.peer_listen),
            ("client_listen", self.client_listen),
        ];
        for (name, address) in [
            ("http_listen", self.http_listen),
            ("etcd_listen", self.etcd_listen),
            ("zookeeper_listen", self.zookeeper_listen),
        ] {
            if let Some(address) = address {
                listens.push((name, address));
            }
        }
        for (index, (name, address)) in listens.iter().enumerate() {
            if address.port() == 0 {
                continue;
            }
            if let Some((other, _)) = listens[..index].iter().find(|(_, other)| other == address) {
                return Err(ConfigError::invalid(
                    name,
                    format!("{address} is already used by {other}"),
                ));
            }
        }
        self.node.validate().map_err(|error| match error {
            crate::node::NodeError::Config { field, reason } => {
                ConfigError::invalid(setting_of_node_field(field), reason)
            }
            other => ConfigError::invalid("node", other.to_string()),
        })?;
        self.session.validate().map_err(|error| match error {
            conclave_statemachines::Error::Config { field, reason } => {
                ConfigError::invalid(field, reason)
            }
            other => ConfigError::invalid("session", other.to_string()),
        })?;
        self.gateway.validate().map_err(|error| match error {
            crate::gateway::GatewayError::Config { field, reason } => {
                let setting = if field == "request_timeout" {
                    "request_timeout_ms"
                } else {
                    field
                };
                ConfigError::invalid(setting, reason)
            }
            other => ConfigError::invalid("gateway", other.to_string()),
        })?;
        let positive = [
            ("request_bytes_max", self.native.request_bytes_max),
            (
                "requests_in_flight_per_connection_max",
                self.native.requests_in_flight_per_connection_max,
            ),
            (
                "event_batches_buffered_max",
                self.native.event_batches_buffered_max,
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::invalid(name, "must be at least 1"));
            }
        }
        if self.metrics_sample_interval.is_zero() {
            return Err(ConfigError::invalid(
                "metrics_sample_interval_ms",
                "must be at least 1",
            ));
        }
        if let Err(error) = self.etcd.validate() {
            return Err(ConfigError::invalid("etcd", error.to_string()));
        }
        if let Err(error) = self.zookeeper.validate() {
            return Err(ConfigError::invalid("zookeeper", error.to_string()));
        }
        if self.shutdown_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "shutdown_timeout_ms",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// The TLS files, when `tls_cert_file` is set: the key must come with it, and a client CA
/// without a certificate is refused rather than ignored.
fn tls_files(settings: &Settings) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    let text = |name: &str| settings.text(name).filter(|text| !text.trim().is_empty());
    let Some(cert_file) = text("tls_cert_file") else {
        for name in ["tls_key_file", "tls_client_ca_file"] {
            if text(name).is_some() {
                return Err(ConfigError::invalid(name, "needs tls_cert_file as well"));
            }
        }
        return Ok(None);
    };
    let key_file = text("tls_key_file").ok_or_else(|| ConfigError::Missing {
        setting: "tls_key_file".to_string(),
        reason: "tls_cert_file needs its private key".to_string(),
    })?;
    Ok(Some(crate::tls::TlsFiles {
        cert_file: cert_file.into(),
        key_file: key_file.into(),
        client_ca_file: text("tls_client_ca_file").map(PathBuf::from),
    }))
}

/// The setting that carries a [`NodeConfig`] field.
fn setting_of_node_field(field: &'static str) -> &'static str {
    match field {
        "id" => "node_id",
        "bootstrap_voters" => "initial_cluster",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Settings {
        let mut settings = Settings::default();
        settings.set("node_id", "1");
        settings.set("data_dir", "/tmp/conclave-test");
        settings.set("peer_listen", "127.0.0.1:7001");
        settings.set("client_listen", "127.0.0.1:7011");
        settings.set("initial_cluster", "1=127.0.0.1:7001,2=127.0.0.1:7002");
        settings
    }

    fn setting_of(error: ConfigError) -> String {
        match error {
            ConfigError::Invalid { setting, .. } | ConfigError::Missing { setting, .. } => setting,
            ConfigError::File { reason, .. } => reason,
        }
    }

    #[test]
    fn a_minimal_configuration_gets_defaults() {
        let config = ServerConfig::from_settings(&minimal()).unwrap();
        assert_eq!(config.node.id, 1);
        assert_eq!(config.node.bootstrap_voters, vec![1, 2]);
        assert_eq!(config.initial_cluster.len(), 2);
        assert_eq!(config.http_listen, None);
        assert_eq!(config.gateway.request_timeout, Duration::from_secs(10));
    }

    #[test]
    fn each_mistake_names_its_setting() {
        let cases = [
            ("node_id", "zero", "node_id"),
            ("node_id", "0", "node_id"),
            (
                "initial_cluster",
                "1=127.0.0.1:7001,1=127.0.0.1:7002",
                "initial_cluster",
            ),
            ("initial_cluster", "1:127.0.0.1:7001", "initial_cluster"),
            ("initial_cluster", "2=127.0.0.1:7002", "initial_cluster"),
            ("initial_cluster", "1=127.0.0.1:9999", "initial_cluster"),
            ("client_listen", "127.0.0.1:7001", "client_listen"),
            ("http_listen", "localhost", "http_listen"),
            ("tick_interval_ms", "0", "tick_interval_ms"),
            ("session_timeout_ms_min", "-5", "session_timeout_ms_min"),
            ("session_timeout_ms_max", "1", "session_timeout_ms_max"),
            ("request_timeout_ms", "0", "request_timeout_ms"),
            ("request_bytes_max", "0", "request_bytes_max"),
            ("log_level", "loud", "log_level"),
            ("tls_cert_file", "/tmp/cert.pem", "tls_key_file"),
            ("tls_client_ca_file", "/tmp/ca.pem", "tls_client_ca_file"),
        ];
        for (name, value, expected) in cases {
            let mut settings = minimal();
            settings.set(name, value);
            let error = ServerConfig::from_settings(&settings).unwrap_err();
            assert!(!error.to_string().contains('\n'), "{error}");
            assert_eq!(
                setting_of(error.clone()),
                expected,
                "{name}={value}: {error}"
            );
        }
    }

    #[test]
    fn a_missing_setting_says_how_to_give_it() {
        let mut settings = Settings::default();
        settings.set("node_id", "1");
        let error = ServerConfig::from_settings(&settings).unwrap_err();
        assert_eq!(
            error.to_string(),
            "missing setting data_dir: set it in conclave.toml, as --data-dir or as \
             CONCLAVE_DATA_DIR"
        );
    }

    #[test]
    fn file_environment_and_flags_override_in_that_order() {
        let mut settings = Settings::from_toml(
            "node_id = 1\ndata_dir = \"/tmp/a\"\npeer_listen = \"127.0.0.1:7001\"\n\
             client_listen = \"127.0.0.1:7011\"\ninitial_cluster = \"1=127.0.0.1:7001\"\n\
             tick_interval_ms = 30\nsessions_max = 7\n",
        )
        .unwrap();
        settings.merge(Settings::from_environment([
            ("CONCLAVE_TICK_INTERVAL_MS".to_string(), "40".to_string()),
            ("CONCLAVE_SESSIONS_MAX".to_string(), "8".to_string()),
            ("OTHER".to_string(), "ignored".to_string()),
        ]));
        let mut flags = Settings::default();
        flags.set("sessions_max", "9");
        settings.merge(flags);
        let config = ServerConfig::from_settings(&settings).unwrap();
        assert_eq!(config.node.tick_interval_ms, 40);
        assert_eq!(config.session.sessions_max, 9);
    }

    #[test]
    fn the_example_file_is_a_valid_configuration() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conclave.example.toml");
        let config = ServerConfig::from_settings(&Settings::from_file(&path).unwrap()).unwrap();
        assert_eq!(config.node.bootstrap_voters, vec![1, 2, 3]);
        assert_eq!(config.initial_cluster_clients.len(), 3);
        assert!(config.http_listen.is_some());
    }

    #[test]
    fn the_file_refuses_unknown_settings_and_bad_syntax() {
        let unknown = Settings::from_toml("node_idd = 1\n").unwrap_err();
        assert_eq!(setting_of(unknown), "unknown setting node_idd");
        let broken = Settings::from_toml("node_id = = 1\n").unwrap_err();
        assert!(!broken.to_string().contains('\n'), "{broken}");
    }
}
