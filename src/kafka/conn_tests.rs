//! Tests of the connection layer: framing, timeouts, keepalive.

use super::*;
use bytes::Buf;
use kafka_protocol::messages::MetadataRequest;

#[test]
fn request_frames_carry_length_key_version_and_correlation() {
    let frame = encode_request(&MetadataRequest::default(), 9, 42, &StrBytes::from_static_str("strait"))
        .expect("metadata encodes");
    let mut b = frame.clone();
    assert_eq!(b.get_i32() as usize, frame.len() - 4);
    assert_eq!(b.get_i16(), ApiKey::Metadata as i16);
    assert_eq!(b.get_i16(), 9);
    assert_eq!(b.get_i32(), 42);
}

/// A broker that answers ApiVersions (Metadata 0..12) and then never answers again.
async fn silent_broker() -> String {
    use super::super::test_broker::{api_versions, read_request};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        while let Some((api, version, header, _)) = read_request(&mut s).await {
            if api == ApiKey::ApiVersions {
                api_versions(&mut s, header.correlation_id, version, &[(ApiKey::Metadata, 0, 12)]).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn a_timed_out_request_closes_its_connection_and_fails_the_others() {
    let broker = silent_broker().await;
    let conn = Conn::connect(&broker, "strait-test", Duration::from_millis(300))
        .await
        .expect("connects");
    assert!(!conn.is_closed());
    let first = conn.enqueue(&MetadataRequest::default()).await.expect("queued");
    let second = conn.enqueue(&MetadataRequest::default()).await.expect("queued");
    let err = first.response().await.expect_err("no answer");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(conn.is_closed(), "a connection whose request timed out is not reused");
    let other = second.response().await.expect_err("failed with it");
    assert!(matches!(other, Error::ConnectionLost { .. }), "{other:?}");
    assert!(
        conn.enqueue(&MetadataRequest::default()).await.is_err(),
        "nothing more is sent on it"
    );
}

#[test]
fn keepalive_probes_an_idle_connection_and_unacknowledged_data_is_bounded() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    notice_dead_peers(socket2::SockRef::from(&socket)).expect("dead peer detection");
    assert!(socket.keepalive().expect("read back"));
    #[cfg(target_os = "linux")]
    {
        assert_eq!(socket.tcp_keepalive_time().expect("read back"), KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_user_timeout().expect("read back"), Some(UNACKED_MAX));
    }
}

#[tokio::test]
async fn oversized_frames_are_refused() {
    let mut data: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
    let err = read_frame(&mut data).await.expect_err("2 GiB frame refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[tokio::test(start_paused = true)]
async fn re_authentication_is_due_from_when_the_exchange_began_not_from_its_answer() {
    let started = tokio::time::Instant::now();
    // The answer took a second (a loaded broker): the broker's session began at most then.
    tokio::time::advance(Duration::from_secs(1)).await;
    let due = reauth_due(started, 3000).expect("a session lifetime");
    assert_eq!(
        due,
        started + Duration::from_millis(2550),
        "85% of the lifetime from the start"
    );
    assert!(
        due < tokio::time::Instant::now() + Duration::from_millis(2550),
        "not from the answer"
    );
    assert_eq!(reauth_due(started, 0), None, "no lifetime, no re-authentication");
    assert_eq!(reauth_due(started, -1), None);
}
