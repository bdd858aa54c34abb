//! [`HttpPost`]: the HTTP/1.1 client of the OAuth token endpoint, one connection per request
//! (a token is fetched once per lifetime), over TLS with the same roots as the brokers (the
//! system's, or `sasl.oauth_ca_file`), or plain `http://` where config allowed it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::oidc::FormPost;
use super::{BoxFuture, Error};
use crate::config::Secret;

/// The whole exchange (connect, TLS, request, answer) must finish within this.
const TIMEOUT: Duration = Duration::from_secs(15);
/// A token answer larger than this is refused.
const MAX_ANSWER: usize = 256 * 1024;

/// POSTs forms to one URL.
#[derive(Clone)]
pub struct HttpPost {
    uri: Uri,
    /// `host[:port]`, for the Host header.
    authority: String,
    /// The host to connect to, without IPv6 brackets.
    host: String,
    port: u16,
    /// TLS for `https://`: the connector and the name to verify.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for HttpPost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPost")
            .field("uri", &self.uri)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpPost {
    /// A client for `url` (checked by config validation), trusting the CAs in `ca_file` or, when
    /// empty, the system's roots; `cluster` names the keys in errors.
    pub fn new(cluster: &str, url: &str, ca_file: &str) -> Result<Self, Error> {
        let setup = |key: &str, path: &str, problem: String, source: Option<super::SharedError>| Error::EndpointSetup {
            key: format!("{cluster}.sasl.{key}"),
            path: path.to_owned(),
            problem,
            source,
        };
        let not_url = || {
            setup(
                "oauth_token_endpoint_url",
                url,
                "is not an http(s) URL with a host".into(),
                None,
            )
        };
        let uri: Uri = url.parse().map_err(|_| not_url())?;
        let https = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(not_url()),
        };
        let authority = uri.authority().ok_or_else(not_url)?.to_string();
        let host = uri
            .host()
            .ok_or_else(not_url)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let roots = crate::tls_roots::load_roots(ca_file).map_err(|(problem, source)| {
                setup("oauth_ca_file", ca_file, problem, source.map(super::SharedError::from))
            })?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| {
                    setup(
                        "oauth_ca_file",
                        ca_file,
                        "no TLS version available".into(),
                        Some(Arc::new(e) as super::SharedError),
                    )
                })?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(host.clone()).map_err(|_| not_url())?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            uri,
            authority,
            host,
            port,
            tls,
        })
    }

    /// Whether requests go over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    async fn exchange(&self, authorization: Secret, body: String) -> std::io::Result<(u16, Bytes)> {
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut auth = HeaderValue::from_str(authorization.expose()).map_err(std::io::Error::other)?;
        auth.set_sensitive(true);
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, &self.authority)
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(CONNECTION, "close")
            .body(Full::new(Bytes::from(body)))
            .map_err(std::io::Error::other)?;
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        match &self.tls {
            Some((connector, name)) => send(connector.connect(name.clone(), tcp).await?, request).await,
            None => send(tcp, request).await,
        }
    }
}

impl FormPost for HttpPost {
    fn post(&self, authorization: Secret, body: String) -> BoxFuture<'_, std::io::Result<(u16, Bytes)>> {
        Box::pin(async move {
            tokio::time::timeout(TIMEOUT, self.exchange(authorization, body))
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {} s", TIMEOUT.as_secs()),
                    )
                })?
        })
    }
}

/// Sends `request` over `io` and reads the whole answer.
async fn send<S>(io: S, request: Request<Full<Bytes>>) -> std::io::Result<(u16, Bytes)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    // The connection task ends when `sender` is dropped or the server closes.
    let driver = tokio::spawn(conn);
    let response = sender.send_request(request).await.map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| std::io::Error::other(format!("reading the answer: {e}")))?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_uses_tls_with_the_system_roots_or_the_ca_file() {
        let post = HttpPost::new(
            "source",
            "https://keycloak.example/realms/k/protocol/openid-connect/token",
            "",
        )
        .expect("system roots");
        assert!(post.is_tls());
        assert_eq!(post.port, 443);
        assert_eq!(post.authority, "keycloak.example");

        let dir = tempfile::tempdir().expect("temp dir");
        let ca = rcgen::generate_simple_self_signed(vec!["keycloak.example".to_owned()]).expect("self-signed");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.cert.pem()).expect("write");
        let post = HttpPost::new("source", "HTTPS://[::1]:8443/token", &ca_file.to_string_lossy()).expect("CA file");
        assert!(post.is_tls());
        assert_eq!((post.host.as_str(), post.port), ("::1", 8443));

        let plain = HttpPost::new("source", "http://127.0.0.1:8080/token", "").expect("http");
        assert!(!plain.is_tls());
        assert_eq!(plain.port, 8080);
    }

    #[test]
    fn an_unusable_ca_file_or_url_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        let err = HttpPost::new("target", "https://idp.example/token", &junk.to_string_lossy()).expect_err("junk CA");
        let msg = err.to_string();
        assert!(msg.starts_with("target.sasl.oauth_ca_file = "), "{msg}");
        assert!(err.is_refusal());
        let err = HttpPost::new("target", "ftp://idp.example/token", "").expect_err("not http");
        assert!(
            err.to_string().starts_with("target.sasl.oauth_token_endpoint_url"),
            "{err}"
        );
    }

    /// Serves one HTTPS answer on loopback with a certificate for `localhost`; returns the port
    /// and the certificate's PEM.
    async fn https_once(answer: &'static str) -> (u16, String) {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("self-signed");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der())),
            )
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    continue;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"grant_type=client_credentials") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        });
        (port, cert.cert.pem())
    }

    #[tokio::test]
    async fn a_post_over_tls_verifies_the_endpoint_against_the_ca_file() {
        let (port, pem) = https_once(r#"{"access_token":"t","expires_in":60}"#).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, pem).expect("write");
        let url = format!("https://localhost:{port}/token");
        let body = "grant_type=client_credentials".to_owned();

        let post = HttpPost::new("source", &url, &ca_file.to_string_lossy()).expect("client");
        let (status, answer) = post
            .post(Secret::new("Basic eDp5"), body.clone())
            .await
            .expect("answered over TLS");
        assert_eq!(
            (status, &answer[..]),
            (200, &br#"{"access_token":"t","expires_in":60}"#[..])
        );

        // The system roots do not know the endpoint's certificate: no request is sent.
        let untrusted = HttpPost::new("source", &url, "").expect("client");
        let err = untrusted
            .post(Secret::new("Basic eDp5"), body)
            .await
            .expect_err("untrusted");
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}
