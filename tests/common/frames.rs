//! Kafka frame plumbing for the test-only proxies (SASL gateway, mTLS terminator): read and
//! write length-prefixed frames, and point a Metadata answer's brokers at the proxy.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, MetadataResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads one size-prefixed frame.
pub async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Bytes> {
    let len = s.read_i32().await?;
    let mut buf = BytesMut::zeroed(usize::try_from(len).map_err(|_| std::io::ErrorKind::InvalidData)?);
    s.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}

/// Writes one size-prefixed frame.
pub async fn write_frame<S: AsyncWrite + Unpin>(s: &mut S, body: &[u8]) -> std::io::Result<()> {
    let len = i32::try_from(body.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
    s.write_i32(len).await?;
    s.write_all(body).await?;
    s.flush().await
}

/// An InvalidData I/O error from any message.
pub fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// Points every broker advertised in a Metadata answer (header included) at 127.0.0.1:`port`.
pub fn rewrite_metadata(mut answer: Bytes, version: i16, port: u16) -> std::io::Result<Bytes> {
    let api = ApiKey::Metadata;
    let header = ResponseHeader::decode(&mut answer, api.response_header_version(version)).map_err(invalid)?;
    let mut resp = MetadataResponse::decode(&mut answer, version).map_err(invalid)?;
    for b in &mut resp.brokers {
        b.host = StrBytes::from_static_str("127.0.0.1");
        b.port = i32::from(port);
    }
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.response_header_version(version))
        .map_err(invalid)?;
    resp.encode(&mut buf, version).map_err(invalid)?;
    Ok(buf.freeze())
}
