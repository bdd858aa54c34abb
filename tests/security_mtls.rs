//! Mutual TLS end to end through a test-only TLS terminator (Kafka's own
//! `ssl.client.auth=required` listener is tested in `kafka_security.rs`) in front of a
//! plaintext Apache Kafka target, which shows what strait presents: it requires a client
//! certificate signed by the throwaway CA (rustls `WebPkiClientVerifier`), records the subject
//! of every verified one, forwards frames to the broker verbatim and rewrites Metadata answers
//! so the broker's advertised address becomes its own (as common/sasl_gateway.rs does), so no
//! client can bypass it. The replica is read back with librdkafka directly on the target.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use common::frames::{read_frame, rewrite_metadata, write_frame};
use common::pki::Leaf;
use common::{Kafka, Strait, StraitCmd};

const CLIENT_CN: &str = "strait-mtls-client";

/// A throwaway CA, a server certificate for 127.0.0.1 and a client certificate.
struct Pki {
    pki: common::pki::Pki,
    server: Leaf,
    client: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let pki = common::pki::Pki::new("strait-mtls-ca");
        let usage =
            |u: ExtendedKeyUsagePurpose| move |p: &mut rcgen::CertificateParams| p.extended_key_usages = vec![u];
        let server = pki.leaf_with("terminator", &["127.0.0.1"], usage(ExtendedKeyUsagePurpose::ServerAuth));
        let client = pki.leaf_with(
            CLIENT_CN,
            &["strait.client"],
            usage(ExtendedKeyUsagePurpose::ClientAuth),
        );
        Pki { pki, server, client }
    }
}

/// What the terminator saw.
#[derive(Debug, Default)]
struct Seen {
    /// Subject (`CN=…`) and DER of every verified client certificate, one per connection.
    peers: Vec<(String, Vec<u8>)>,
    /// Why handshakes failed.
    refused: Vec<String>,
}

/// TLS in front of a plaintext broker, requiring a client certificate signed by the test CA.
struct Terminator {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Terminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Terminator {
    async fn start(pki: &Pki, broker: String) -> Terminator {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.pki.ca_der()).expect("ca root");
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .expect("client verifier");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![pki.server.der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server.key_der.clone())),
            )
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind terminator");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let (acceptor, seen, broker) = (acceptor.clone(), Arc::clone(&seen), broker.clone());
                    conns.spawn(async move {
                        let tls = match acceptor.accept(client).await {
                            Ok(tls) => tls,
                            Err(e) => {
                                seen.lock().expect("seen").refused.push(e.to_string());
                                return;
                            }
                        };
                        let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| {
                            let subject = subject(c).unwrap_or_else(|| "<unparsable subject>".into());
                            (subject, c.to_vec())
                        });
                        let Some(peer) = peer else {
                            // The verifier makes a certificate mandatory; this cannot pass.
                            seen.lock().expect("seen").refused.push("no client certificate".into());
                            return;
                        };
                        seen.lock().expect("seen").peers.push(peer);
                        let _ = forward(tls, &broker, port).await;
                    });
                }
            }
        });
        Terminator { port, seen, task }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// One client connection, sequential like a Kafka broker: a request, then its answer.
async fn forward<S: AsyncRead + AsyncWrite + Unpin>(mut client: S, broker: &str, port: u16) -> std::io::Result<()> {
    let mut broker = TcpStream::connect(broker).await?;
    broker.set_nodelay(true)?;
    loop {
        let frame = read_frame(&mut client).await?;
        if frame.len() < 4 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        write_frame(&mut broker, &frame).await?;
        let answer = read_frame(&mut broker).await?;
        let answer = if key == ApiKey::Metadata as i16 {
            rewrite_metadata(answer, version, port)?
        } else {
            answer
        };
        write_frame(&mut client, &answer).await?;
    }
}

/// One DER element: tag, contents, what follows.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The CN and O attributes of an X.509 certificate's subject, as `CN=…, O=…`.
fn subject(cert: &[u8]) -> Option<String> {
    let (_, cert, _) = der(cert)?;
    let (_, mut tbs, _) = der(cert)?;
    let mut fields = Vec::new();
    while let Some((tag, contents, rest)) = der(tbs) {
        fields.push((tag, contents));
        tbs = rest;
    }
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let mut rdns = fields.get(skip + 4)?.1;
    let mut parts = Vec::new();
    while let Some((_, set, rest)) = der(rdns) {
        rdns = rest;
        let (_, pair, _) = der(set)?;
        let (_, oid, value) = der(pair)?;
        let (_, value, _) = der(value)?;
        let name = match oid {
            [0x55, 0x04, 0x03] => "CN",
            [0x55, 0x04, 0x0a] => "O",
            _ => continue,
        };
        parts.push(format!("{name}={}", String::from_utf8_lossy(value)));
    }
    Some(parts.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_client_certificate_is_required_and_accepted() {
    let pki = Pki::new();
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let terminator = Terminator::start(&pki, target.bootstrap()).await;

    let topic = common::topic("mtls");
    common::create_topic(&source.bootstrap(), &topic, 2, &[]).await;
    let producer = common::producer(&source.bootstrap(), &[]);
    let mut sent = BTreeMap::new();
    for p in 0..2 {
        let recs = common::recent_records("mtls", p, 60);
        common::send_all(&producer, &topic, p, &recs).await;
        sent.insert(p, recs);
    }
    drop(producer);

    // (1) With the client certificate: source (plaintext) -> terminator (mTLS) -> target.
    let mut config = common::config(&source.bootstrap(), &terminator.bootstrap(), &topic);
    config.target.tls.enabled = true;
    config.target.tls.ca_file = pki.pki.ca_file();
    config.target.tls.cert_file = pki.client.cert.clone();
    config.target.tls.key_file = pki.client.key.clone();
    let strait = Strait::start(config);
    let expected: BTreeMap<i32, usize> = sent.iter().map(|(p, r)| (*p, r.len())).collect();
    let got = common::consume_async(&target.bootstrap(), &topic, &expected, Duration::from_secs(60)).await;
    strait.stop().await;
    for (p, recs) in &sent {
        common::assert_no_loss_in_order(*p, recs, &got[p]);
    }

    // (2) Every connection that reached the broker carried the verified client certificate.
    {
        let seen = terminator.seen.lock().expect("seen");
        assert!(!seen.peers.is_empty(), "no verified client connection: {seen:?}");
        for (subject, der) in &seen.peers {
            assert_eq!(subject, &format!("CN={CLIENT_CN}"), "peer subject");
            assert_eq!(der.as_slice(), pki.client.der.as_ref(), "peer certificate");
        }
        assert!(seen.refused.is_empty(), "handshakes refused: {:?}", seen.refused);
    }

    // (3) Without a client certificate the terminator refuses the handshake and `check` fails
    // fast, naming the target cluster and TLS.
    let env = vec![
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.bootstrap()),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", terminator.bootstrap()),
        ("STRAIT_TARGET__TLS__ENABLED", "true".to_owned()),
        ("STRAIT_TARGET__TLS__CA_FILE", pki.pki.ca_file()),
        ("STRAIT_TOPICS__INCLUDE", topic.clone()),
    ];
    let peers_before = terminator.seen.lock().expect("seen").peers.len();
    let out = tokio::task::spawn_blocking(move || {
        StraitCmd::new(&["check"])
            .envs(&env)
            .output_within(Duration::from_secs(30))
    })
    .await
    .expect("strait check");
    let (msg, took) = (out.text(), out.took);
    assert!(matches!(out.code(), Some(69 | 77)), "exit {:?}: {msg}", out.code());
    assert!(took < Duration::from_secs(15), "took {took:?}: {msg}");
    for needle in ["target cluster", "TLS"] {
        assert!(msg.contains(needle), "lacks {needle:?}: {msg}");
    }
    let seen = terminator.seen.lock().expect("seen");
    assert_eq!(
        seen.peers.len(),
        peers_before,
        "a connection without a certificate got through"
    );
    assert!(!seen.refused.is_empty(), "the terminator refused no handshake");
    eprintln!("strait check without a client certificate ({took:?}): {msg}");
    eprintln!("terminator refused: {:?}", seen.refused);
}
