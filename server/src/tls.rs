//! TLS (rustls, through tonic's `tls-ring`) for the native client API: the server's
//! certificate and key, and optionally a CA whose certificates clients must present
//! (mutual TLS). Files are read at start-up, so a missing or unreadable file is a
//! configuration mistake that names its setting.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::ConfigError;

/// Where the TLS material of a listener lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM.
    pub cert_file: PathBuf,
    /// The server's private key, PEM.
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by this CA (PEM).
    pub client_ca_file: Option<PathBuf>,
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(path).map_err(|error| ConfigError::Invalid {
        setting: setting.to_string(),
        reason: format!("cannot read {}: {error}", path.display()),
    })?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(ConfigError::Invalid {
            setting: setting.to_string(),
            reason: format!("{} holds no PEM block", path.display()),
        });
    }
    Ok(bytes)
}

impl TlsFiles {
    /// Reads the files into tonic's server configuration.
    pub fn server_config(&self) -> Result<ServerTlsConfig, ConfigError> {
        let certificate = read("tls_cert_file", &self.cert_file)?;
        let key = read("tls_key_file", &self.key_file)?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(certificate, key));
        if let Some(path) = &self.client_ca_file {
            let ca = read("tls_client_ca_file", path)?;
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        Ok(config)
    }
}
