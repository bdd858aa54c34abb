//! A test-only SASL gateway: a TCP proxy in front of a broker that has no OAUTHBEARER. It does
//! the server half of SaslHandshake / SaslAuthenticate itself, the way an MSK broker does for
//! IAM tokens: it decodes the token (base64url of a SigV4 presigned URL), checks the action,
//! the credential scope, the date and expiry, and recomputes the signature with the test
//! credentials (hmac + sha2 here, independent of the signer's aws-sigv4). It answers with a
//! short session lifetime and closes a connection that sends anything but SASL after its
//! session ended (as Kafka does), so a client that does not re-authenticate in time is caught.
//! Every other frame goes to the broker verbatim, except Metadata answers, whose broker
//! addresses are rewritten to the gateway's so the client cannot bypass it.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};

use crate::common::frames::{invalid, read_frame, rewrite_metadata, write_frame};

/// What the gateway accepts and how it answers.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The broker behind the gateway.
    pub broker: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The session token temporary credentials must carry (`X-Amz-Security-Token`).
    pub session_token: Option<String>,
    /// Session lifetime sent in SaslAuthenticate (KIP-368).
    pub session_lifetime_ms: i64,
    /// Refuse tokens signed longer ago than this (an MSK token lives 900 s; tests shorten it).
    pub token_max_age: Duration,
}

/// What the gateway saw.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub authentications: AtomicUsize,
    pub reauthentications: AtomicUsize,
    pub rejected: AtomicUsize,
    /// Connections closed because a request came after the session ended.
    pub expired: AtomicUsize,
    pub forwarded: AtomicUsize,
    /// Every token presented, to check that none reaches a log.
    pub tokens: Mutex<Vec<String>>,
    /// Why tokens were refused.
    pub reasons: Mutex<Vec<String>>,
}

pub struct Gateway {
    pub port: u16,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    pub async fn start(config: GatewayConfig) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
        let port = listener.local_addr().expect("addr").port();
        let stats = Arc::new(Stats::default());
        let config = Arc::new(config);
        let task = tokio::spawn({
            let stats = Arc::clone(&stats);
            async move {
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    stats.connections.fetch_add(1, Ordering::SeqCst);
                    let (config, stats) = (Arc::clone(&config), Arc::clone(&stats));
                    conns.spawn(async move {
                        let _ = serve(client, port, &config, &stats).await;
                    });
                }
            }
        });
        Gateway { port, stats, task }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn respond<T: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &T) -> Bytes {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.response_header_version(version))
        .expect("encode response header");
    body.encode(&mut buf, version).expect("encode response");
    buf.freeze()
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// One client connection: sequential, like a Kafka broker (one request at a time, in order).
async fn serve(mut client: TcpStream, port: u16, config: &GatewayConfig, stats: &Stats) -> std::io::Result<()> {
    let mut broker = TcpStream::connect(&config.broker).await?;
    client.set_nodelay(true)?;
    broker.set_nodelay(true)?;
    let mut handshaken = false;
    let mut session_ends: Option<i64> = None; // unix ms
    let mut challenged = false;
    loop {
        let frame = read_frame(&mut client).await?;
        let mut peek = frame.clone();
        let key = peek.get_i16();
        let version = peek.get_i16();
        let correlation_id = peek.get_i32();
        let api = ApiKey::try_from(key).map_err(|_| std::io::ErrorKind::InvalidData)?;
        let mut body = frame.clone();
        match api {
            ApiKey::SaslHandshake => {
                RequestHeader::decode(&mut body, api.request_header_version(version)).map_err(invalid)?;
                let req = SaslHandshakeRequest::decode(&mut body, version).map_err(invalid)?;
                let ok = req.mechanism.as_str() == "OAUTHBEARER";
                handshaken = ok;
                let resp = SaslHandshakeResponse::default()
                    .with_error_code(if ok { 0 } else { 33 })
                    .with_mechanisms(vec![StrBytes::from_static_str("OAUTHBEARER")]);
                write_frame(&mut client, &respond(api, version, correlation_id, &resp)).await?;
            }
            ApiKey::SaslAuthenticate => {
                RequestHeader::decode(&mut body, api.request_header_version(version)).map_err(invalid)?;
                let req = SaslAuthenticateRequest::decode(&mut body, version).map_err(invalid)?;
                if !handshaken {
                    return Ok(());
                }
                if challenged {
                    // The client acknowledged the error challenge: now the refusal (RFC 7628).
                    let resp = SaslAuthenticateResponse::default()
                        .with_error_code(58)
                        .with_error_message(Some(StrBytes::from_static_str("Authentication failed: invalid token")));
                    write_frame(&mut client, &respond(api, version, correlation_id, &resp)).await?;
                    return Ok(());
                }
                match verify(&req.auth_bytes, config, stats) {
                    Ok(()) => {
                        if session_ends.is_some() {
                            stats.reauthentications.fetch_add(1, Ordering::SeqCst);
                        } else {
                            stats.authentications.fetch_add(1, Ordering::SeqCst);
                        }
                        handshaken = false;
                        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
                        session_ends = Some(now_ms + config.session_lifetime_ms);
                        let resp = SaslAuthenticateResponse::default()
                            .with_error_code(0)
                            .with_session_lifetime_ms(config.session_lifetime_ms);
                        write_frame(&mut client, &respond(api, version, correlation_id, &resp)).await?;
                    }
                    Err(reason) => {
                        stats.rejected.fetch_add(1, Ordering::SeqCst);
                        stats.reasons.lock().expect("reasons").push(reason);
                        challenged = true;
                        let resp = SaslAuthenticateResponse::default()
                            .with_error_code(0)
                            .with_auth_bytes(Bytes::from_static(br#"{"status":"invalid_token"}"#));
                        write_frame(&mut client, &respond(api, version, correlation_id, &resp)).await?;
                    }
                }
            }
            _ => {
                if api != ApiKey::ApiVersions {
                    let Some(ends) = session_ends else {
                        return Ok(());
                    };
                    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
                    if now_ms > ends || handshaken {
                        stats.expired.fetch_add(1, Ordering::SeqCst);
                        return Ok(());
                    }
                }
                stats.forwarded.fetch_add(1, Ordering::SeqCst);
                write_frame(&mut broker, &frame).await?;
                let answer = read_frame(&mut broker).await?;
                let answer = if api == ApiKey::Metadata {
                    rewrite_metadata(answer, version, port)?
                } else {
                    answer
                };
                write_frame(&mut client, &answer).await?;
            }
        }
    }
}

/// Checks an OAUTHBEARER client message carrying an MSK IAM token.
fn verify(message: &[u8], config: &GatewayConfig, stats: &Stats) -> Result<(), String> {
    let text = std::str::from_utf8(message).map_err(|_| "message is not UTF-8".to_owned())?;
    let rest = text.strip_prefix("n,,\x01").ok_or("no gs2 header")?;
    let rest = rest.strip_suffix("\x01\x01").ok_or("no closing separators")?;
    let token = rest
        .split('\x01')
        .find_map(|kv| kv.strip_prefix("auth=Bearer "))
        .ok_or("no auth=Bearer")?;
    stats.tokens.lock().expect("tokens").push(token.to_owned());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|e| format!("token is not base64url: {e}"))?;
    let url = url::Url::parse(std::str::from_utf8(&raw).map_err(|_| "token is not UTF-8")?)
        .map_err(|e| format!("token is not a URL: {e}"))?;
    let host = format!("kafka.{}.amazonaws.com", config.region);
    if url.scheme() != "https" || url.host_str() != Some(host.as_str()) || url.path() != "/" {
        return Err(format!("wrong endpoint {}", url.origin().ascii_serialization()));
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .ok_or(format!("no {k}"))
    };
    if get("Action")? != "kafka-cluster:Connect" {
        return Err("wrong Action".into());
    }
    if get("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
        return Err("wrong X-Amz-Algorithm".into());
    }
    if get("X-Amz-SignedHeaders")? != "host" {
        return Err("wrong X-Amz-SignedHeaders".into());
    }
    let date = get("X-Amz-Date")?;
    let signed_at = parse_amz_date(date).ok_or("bad X-Amz-Date")?;
    let day = &date[..8];
    let scope = format!("{day}/{}/kafka-cluster/aws4_request", config.region);
    let credential = get("X-Amz-Credential")?;
    if credential != format!("{}/{scope}", config.access_key_id) {
        return Err(format!("wrong X-Amz-Credential {credential}"));
    }
    if let Some(want) = &config.session_token {
        if get("X-Amz-Security-Token")? != want {
            return Err("wrong X-Amz-Security-Token".into());
        }
    }
    let expires: i64 = get("X-Amz-Expires")?.parse().map_err(|_| "bad X-Amz-Expires")?;
    let now = now_secs();
    if now > signed_at + expires {
        return Err("token expired".into());
    }
    if now - signed_at > config.token_max_age.as_secs() as i64 {
        return Err(format!("token signed {} s ago", now - signed_at));
    }
    if signed_at > now + 300 {
        return Err("token from the future".into());
    }

    // SigV4 presigned GET: the canonical query is every parameter but the signature (and the
    // User-Agent the signer appends after signing), encoded and sorted.
    let mut query: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "X-Amz-Signature" && k != "User-Agent")
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical = format!("GET\n/\n{query}\nhost:{host}\n\nhost\n{}", hex(&Sha256::digest(b"")));
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{}", config.secret_access_key).as_bytes(), day.as_bytes());
    for part in [config.region.as_bytes(), b"kafka-cluster", b"aws4_request"] {
        key = hmac(&key, part);
    }
    let expected = hex(&hmac(&key, to_sign.as_bytes()));
    if get("X-Amz-Signature")? != expected {
        return Err("signature mismatch".into());
    }
    Ok(())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn uri_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `20261126T135700Z` as unix seconds.
fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || &s[8..9] != "T" || &s[15..] != "Z" {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}
