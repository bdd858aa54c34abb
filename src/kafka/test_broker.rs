//! Pieces of a scripted broker for the wire layer's unit tests: read one request frame, write
//! an answer, answer ApiVersions.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The next request on `s`: its API, version, header and body; `None` once the client hangs up.
pub(super) async fn read_request(s: &mut TcpStream) -> Option<(ApiKey, i16, RequestHeader, Bytes)> {
    let len = s.read_i32().await.ok()?;
    let mut frame = vec![0u8; usize::try_from(len).ok()?];
    s.read_exact(&mut frame).await.ok()?;
    let mut frame = Bytes::from(frame);
    let api = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).ok()?;
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version)).ok()?;
    Some((api, version, header, frame))
}

/// A response frame: size, header of `header_version`, body.
pub(super) fn answer<R: Encodable>(correlation_id: i32, body: &R, version: i16, header_version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    frame
}

/// Writes an ApiVersions answer offering `apis` as (key, min, max), ApiVersions 0..3 besides.
pub(super) async fn api_versions(s: &mut TcpStream, correlation_id: i32, version: i16, apis: &[(ApiKey, i16, i16)]) {
    let keys = [(ApiKey::ApiVersions, 0, 3)]
        .iter()
        .chain(apis)
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    // ApiVersions answers always carry a v0 header.
    let frame = answer(
        correlation_id,
        &ApiVersionsResponse::default().with_api_keys(keys),
        version,
        0,
    );
    s.write_all(&frame).await.expect("write");
}

/// A broker on one connection: it answers ApiVersions (offering `api` at `min..=max`) and every
/// request of `api`, decoded, with what `handle` makes of it. Returns its address.
pub(super) async fn serve<Req, Resp, F, Fut>(api: ApiKey, min: i16, max: i16, mut handle: F) -> String
where
    Req: kafka_protocol::protocol::Decodable + Send,
    Resp: Encodable + kafka_protocol::protocol::HeaderVersion + Send,
    F: FnMut(i16, Req) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Resp> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        while let Some((asked, version, header, mut frame)) = read_request(&mut s).await {
            let id = header.correlation_id;
            if asked == ApiKey::ApiVersions {
                api_versions(&mut s, id, version, &[(api, min, max)]).await;
                continue;
            }
            let request = Req::decode(&mut frame, version).expect("a request of the served api");
            let body = handle(version, request).await;
            let out = answer(id, &body, version, Resp::header_version(version));
            s.write_all(&out).await.expect("write");
        }
    });
    addr
}
