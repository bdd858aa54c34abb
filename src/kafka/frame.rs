//! Kafka's wire framing, below the connection: a request's size-prefixed frame with its header,
//! a response frame read and decoded at a version, and the ApiVersions exchange that picks the
//! versions on a fresh socket.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::{BoxError, Error, Result, SharedError};
use super::versions::BrokerVersions;

/// Largest response frame accepted. Fetch answers are bounded by the request's max_bytes; this
/// only stops a corrupt length prefix from allocating gigabytes.
const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;
const UNSUPPORTED_VERSION: i16 = 35;

pub(super) fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
}

pub(super) async fn read_frame<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Bytes> {
    let len = reader.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_FRAME_BYTES)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("response frame length {len} out of range"),
            )
        })?;
    let mut buf = BytesMut::zeroed(len);
    reader.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}

pub(super) fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<Bytes> {
    let api = api_key::<R>();
    let encode_err = |source: anyhow::Error| Error::Encode {
        api,
        source: SharedError::from(BoxError::from(source)),
    };
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let body_len = request.compute_size(version).map_err(encode_err)?;
    let mut buf = BytesMut::with_capacity(4 + 64 + body_len);
    buf.put_i32(0);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(encode_err)?;
    request.encode(&mut buf, version).map_err(encode_err)?;
    let frame_len = i32::try_from(buf.len() - 4).map_err(|e| encode_err(e.into()))?;
    buf[0..4].copy_from_slice(&frame_len.to_be_bytes());
    Ok(buf.freeze())
}

pub(super) fn decode_response<T: Decodable + HeaderVersion>(
    mut frame: Bytes,
    version: i16,
    api: ApiKey,
    broker: &str,
) -> Result<T> {
    let decode_err = |source: anyhow::Error| Error::Decode {
        broker: broker.to_owned(),
        api,
        source: SharedError::from(BoxError::from(source)),
    };
    ResponseHeader::decode(&mut frame, T::header_version(version)).map_err(decode_err)?;
    T::decode(&mut frame, version).map_err(decode_err)
}

/// Exchanges ApiVersions on a fresh socket: v3 first; a broker that does not speak it answers
/// UNSUPPORTED_VERSION in the v0 layout, and strait retries with v0.
pub(super) async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    broker: &str,
    client_id: &StrBytes,
) -> Result<BrokerVersions> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("strait"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let mut last = None;
    for (correlation_id, version) in [(0, 3i16), (1, 0)] {
        let frame = encode_request(&request, version, correlation_id, client_id)?;
        let io_err = |source: std::io::Error| Error::ConnectionLost {
            broker: broker.to_owned(),
            source: Some(Arc::new(source)),
        };
        stream.write_all(&frame).await.map_err(io_err)?;
        stream.flush().await.map_err(io_err)?;
        let answer = read_frame(stream).await.map_err(io_err)?;
        let decoded = decode_response::<ApiVersionsResponse>(answer.clone(), version, ApiKey::ApiVersions, broker)
            .or_else(|e| decode_response::<ApiVersionsResponse>(answer, 0, ApiKey::ApiVersions, broker).map_err(|_| e));
        match decoded {
            Ok(resp) if resp.error_code == 0 => {
                return Ok(BrokerVersions::new(resp.api_keys.iter().map(|k| {
                    (
                        k.api_key,
                        VersionRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })))
            }
            Ok(resp) if resp.error_code == UNSUPPORTED_VERSION => {
                last = Some(Error::Request {
                    api: ApiKey::ApiVersions,
                    resource: format!("broker {broker}"),
                    code: kafka_protocol::error::ResponseError::UnsupportedVersion,
                    message: None,
                });
            }
            Ok(resp) => {
                return Err(Error::Request {
                    api: ApiKey::ApiVersions,
                    resource: format!("broker {broker}"),
                    code: kafka_protocol::error::ParseResponseErrorCode::err(resp.error_code)
                        .unwrap_or(kafka_protocol::error::ResponseError::UnknownServerError),
                    message: None,
                })
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::ConnectionLost {
        broker: broker.to_owned(),
        source: None,
    }))
}
