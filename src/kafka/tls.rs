//! TLS to a broker with rustls: the client config built once per cluster from the `tls.*` keys,
//! the handshake on each new connection, and the translation of a refused handshake into a
//! reason and a fix an operator can act on.
//!
//! It owns certificates, keys and server names; it must not know about Kafka frames or SASL.

use std::path::Path;
use std::sync::Arc;

use super::pace::Socket;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::error::{Error, Result, SharedError};
use crate::config::TlsConfig;
use crate::tls_roots::{load_roots, read_certs};

/// TLS settings of one cluster, ready to use on every connection.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
    /// Where the roots came from, for messages: the CA file or "the system roots".
    roots: String,
    /// `source` or `target`, to name the keys in fixes.
    side: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the CA bundle, client certificate and key named by `config`. `side` is the config
    /// section ("source" / "target") the keys live in.
    pub(crate) fn from_config(side: &str, config: &TlsConfig) -> Result<Self> {
        let setup = |key: &str, path: &str, problem: String, source: Option<super::error::BoxError>| Error::TlsSetup {
            key: format!("{side}.tls.{key}"),
            path: path.to_owned(),
            problem,
            source: source.map(SharedError::from),
        };
        let roots = load_roots(&config.ca_file).map_err(|e| setup("ca_file", &config.ca_file, e.0, e.1))?;
        let roots_name = if config.ca_file.is_empty() {
            "the system roots".to_owned()
        } else {
            format!("the CAs in {}", config.ca_file)
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup("enabled", "", "no TLS version available".into(), Some(e.into())))?
            .with_root_certificates(roots);
        let client = if config.cert_file.is_empty() {
            builder.with_no_client_auth()
        } else {
            let chain = read_certs(&config.cert_file).map_err(|e| setup("cert_file", &config.cert_file, e.0, e.1))?;
            let key = PrivateKeyDer::from_pem_file(Path::new(&config.key_file)).map_err(|e| {
                setup(
                    "key_file",
                    &config.key_file,
                    "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
                    Some(e.into()),
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                setup(
                    "key_file",
                    &config.key_file,
                    format!("does not match the certificate in {side}.tls.cert_file, or its type is not supported"),
                    Some(e.into()),
                )
            })?
        };
        let server_name = if config.server_name.is_empty() {
            None
        } else {
            Some(ServerName::try_from(config.server_name.clone()).map_err(|e| {
                setup(
                    "server_name",
                    &config.server_name,
                    "is not a valid DNS name or IP address".into(),
                    Some(e.into()),
                )
            })?)
        };
        Ok(Self {
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
            roots: roots_name,
            side: side.to_owned(),
        })
    }

    /// The error for a handshake that did not finish within `timeout`.
    pub(crate) fn timed_out(&self, broker: &str, timeout: std::time::Duration) -> Error {
        Error::Tls {
            cluster: self.side.clone(),
            broker: broker.to_owned(),
            reason: format!("no TLS handshake within {} ms", timeout.as_millis()),
            fix: format!(
                "check that this port is the brokers' TLS listener, or set {}.tls.enabled = false",
                self.side
            ),
            source: Arc::new(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// In TLS 1.3 a broker checks the client certificate after the handshake has finished on
    /// strait's side, so a refusal (`CertificateRequired`, a bad certificate) arrives as an alert
    /// on the first read. Such a lost connection becomes the same typed TLS error, with its fix,
    /// as a refusal during the handshake; any other error is returned as it is.
    pub(crate) fn refused_after_handshake(&self, broker: &str, err: Error) -> Error {
        match err {
            Error::ConnectionLost {
                broker: lost,
                source: Some(io),
            } if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
                match self.server_name.clone().or_else(|| broker_name(broker)) {
                    Some(name) => {
                        let (reason, fix) = explain(&io, &name, &self.roots, &self.side);
                        Error::Tls {
                            cluster: self.side.clone(),
                            broker: broker.to_owned(),
                            reason,
                            fix,
                            source: io,
                        }
                    }
                    None => Error::ConnectionLost {
                        broker: lost,
                        source: Some(io),
                    },
                }
            }
            other => other,
        }
    }

    /// Runs the TLS handshake on a fresh TCP connection to `broker` (`host:port`).
    pub(crate) async fn handshake(&self, broker: &str, tcp: Socket) -> Result<TlsStream<Socket>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => broker_name(broker).ok_or_else(|| Error::Tls {
                cluster: self.side.clone(),
                broker: broker.to_owned(),
                reason: "its host is not a valid DNS name or IP address".into(),
                fix: format!("set {}.tls.server_name to the name in its certificate", self.side),
                source: Arc::new(std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad server name")),
            })?,
        };
        self.connector.connect(name.clone(), tcp).await.map_err(|source| {
            let (reason, fix) = explain(&source, &name, &self.roots, &self.side);
            Error::Tls {
                cluster: self.side.clone(),
                broker: broker.to_owned(),
                reason,
                fix,
                source: Arc::new(source),
            }
        })
    }
}

/// The server name to verify for `host:port`; brackets of an IPv6 literal removed.
fn broker_name(broker: &str) -> Option<ServerName<'static>> {
    let host = broker.rsplit_once(':').map_or(broker, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).ok()
}

/// Why a handshake failed and what to change, from rustls' typed error.
fn explain(err: &std::io::Error, name: &ServerName<'_>, roots: &str, side: &str) -> (String, String) {
    let tls = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
    let name = name.to_str();
    match tls {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => (
                format!("the broker's certificate is not signed by {roots}"),
                format!("set {side}.tls.ca_file to the PEM file of the CA that signed the brokers' certificates"),
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
                format!("the broker's certificate is not valid for the name {name:?}"),
                format!(
                    "connect by a name the certificate lists (bootstrap_servers and the brokers' advertised \
                     listeners), or set {side}.tls.server_name to one of them"
                ),
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
                "the broker's certificate has expired".to_owned(),
                "renew the broker's certificate (or check this machine's clock)".to_owned(),
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
                "the broker's certificate is not valid yet".to_owned(),
                "check this machine's clock, or the certificate's start date".to_owned(),
            ),
            CertificateError::Revoked => (
                "the broker's certificate is revoked".to_owned(),
                "give the broker a new certificate".to_owned(),
            ),
            other => (
                format!("the broker's certificate was refused ({other:?})"),
                format!("check the broker's certificate against {roots}"),
            ),
        },
        Some(rustls::Error::AlertReceived(alert)) => match alert {
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied => (
                format!("the broker refused strait's client certificate ({alert:?})"),
                format!("set {side}.tls.cert_file and {side}.tls.key_file to a client certificate the broker trusts"),
            ),
            other => (
                format!("the broker ended the handshake ({other:?})"),
                "check that the broker's TLS settings accept TLS 1.2 or 1.3".to_owned(),
            ),
        },
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateHandshakeMessage { .. }) => (
            "the broker does not speak TLS on this port".to_owned(),
            format!("use the brokers' TLS listener port, or set {side}.tls.enabled = false"),
        ),
        Some(other) => (
            format!("TLS error ({other})"),
            "check the broker's TLS listener".to_owned(),
        ),
        None if err.kind() == std::io::ErrorKind::UnexpectedEof => (
            "the broker closed the connection during the handshake".to_owned(),
            format!("check that this port is a TLS listener, or set {side}.tls.enabled = false"),
        ),
        None => (
            format!("the connection failed during the handshake ({})", err.kind()),
            "check the network path to the broker".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_names() {
        assert_eq!(
            broker_name("b-1.msk.example:9094").map(|n| n.to_str().into_owned()),
            Some("b-1.msk.example".into())
        );
        assert_eq!(
            broker_name("[::1]:9093").map(|n| n.to_str().into_owned()),
            Some("::1".into())
        );
        assert_eq!(
            broker_name("127.0.0.1:9093").map(|n| n.to_str().into_owned()),
            Some("127.0.0.1".into())
        );
    }

    #[test]
    fn unreadable_or_empty_pem_names_key_and_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let config = TlsConfig {
            enabled: true,
            ca_file: empty.to_string_lossy().into_owned(),
            ..TlsConfig::default()
        };
        let msg = Tls::from_config("target", &config).expect_err("no cert").to_string();
        assert!(msg.starts_with("target.tls.ca_file = "), "{msg}");
        assert!(msg.contains("holds no PEM certificate"), "{msg}");
    }

    #[test]
    fn classifies_typed_errors() {
        let name = ServerName::try_from("broker.test").expect("name");
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let cases = [
            (
                io(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)),
                "source.tls.ca_file",
            ),
            (
                io(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)),
                "source.tls.server_name",
            ),
            (
                io(rustls::Error::InvalidCertificate(CertificateError::Expired)),
                "renew",
            ),
            (
                io(rustls::Error::AlertReceived(AlertDescription::CertificateRequired)),
                "source.tls.cert_file",
            ),
        ];
        for (err, fix) in cases {
            let (_, got) = explain(&err, &name, "the system roots", "source");
            assert!(got.contains(fix), "{got}");
        }
    }
}
