//! No client can hold the server's attention for free: the body of a request without a valid key is
//! never read, and a head (HEADER_TIMEOUT), a body (BODY_TIMEOUT) or a whole request
//! (REQUEST_TIMEOUT) that does not arrive or finish in time ends with a close, a 408 or a 503.
//! The timeouts are set to one second here; each test waits for the server's reaction (with a
//! generous bound that only a server without the limit reaches), never times it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for a reaction the server owes within about one second.
const PATIENCE: Duration = Duration::from_secs(20);

/// What came back on a connection: a complete response, or the server closed it without one.
#[derive(Debug)]
enum Reaction {
    Answered(RawResp),
    Closed,
}

/// Reads from `conn` until a complete response arrives or the server closes the connection;
/// panics if neither happens within [`PATIENCE`] (the server is still waiting on the client).
async fn reaction(conn: &mut TcpStream) -> Reaction {
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(r) = parse_raw_response(&buf, false) {
            return Reaction::Answered(r);
        }
        match tokio::time::timeout_at(deadline, conn.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return match parse_raw_response(&buf, true) {
                    Some(r) => Reaction::Answered(r),
                    None => Reaction::Closed,
                };
            }
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
            Err(_) => panic!(
                "the server neither answered nor closed the connection within {PATIENCE:?}; got: {}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
}

async fn connect(s: &Scimd) -> TcpStream {
    TcpStream::connect(s.addr()).await.expect("connect")
}

fn timeouts() -> Opts {
    Opts::default()
        .env("HEADER_TIMEOUT", "1")
        .env("BODY_TIMEOUT", "1")
        .env("REQUEST_TIMEOUT", "30")
}

fn user_post_head(s: &Scimd, auth: &str, length: usize) -> String {
    format!(
        "POST /Users HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/scim+json\r\nContent-Length: {length}\r\n\r\n",
        s.addr()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_body_of_a_request_without_a_valid_key_is_never_read() {
    let s = Scimd::start(Opts::default().env("BODY_TIMEOUT", "3600")).await;
    for auth in [
        String::new(),
        "Authorization: Bearer wrong-key\r\n".to_owned(),
    ] {
        let mut conn = connect(&s).await;
        // The head promises a body that never comes: a server that reads it first waits forever.
        conn.write_all(user_post_head(&s, &auth, 100_000).as_bytes())
            .await
            .unwrap();
        match reaction(&mut conn).await {
            Reaction::Answered(r) => {
                assert_eq!(r.status, 401, "{r:?}");
                assert_eq!(r.header("WWW-Authenticate").as_deref(), Some("Bearer"));
                assert_eq!(r.json()["status"], "401");
            }
            other => panic!("expected 401, got {other:?}"),
        }
    }
    assert_eq!(s.client().list("/Users").await["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_stops_arriving_is_408_and_creates_nothing() {
    let s = Scimd::start(timeouts()).await;
    let mut conn = connect(&s).await;
    let auth = format!("Authorization: Bearer {}\r\n", s.key);
    conn.write_all(user_post_head(&s, &auth, 100).as_bytes())
        .await
        .unwrap();
    conn.write_all(b"{\"userName\":").await.unwrap();
    match reaction(&mut conn).await {
        Reaction::Answered(r) => {
            assert_eq!(r.status, 408, "{r:?}");
            let body = r.json();
            assert_eq!(body["schemas"], json!([ERROR_SCHEMA]));
            assert!(
                body["detail"].as_str().unwrap().contains("BODY_TIMEOUT"),
                "{body}"
            );
        }
        other => panic!("expected 408, got {other:?}"),
    }
    assert_eq!(s.client().list("/Users").await["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_that_stops_arriving_closes_the_connection() {
    let s = Scimd::start(timeouts()).await;
    let mut conn = connect(&s).await;
    conn.write_all(format!("GET /Users HTTP/1.1\r\nHost: {}\r\n", s.addr()).as_bytes())
        .await
        .unwrap();
    match reaction(&mut conn).await {
        Reaction::Closed => {}
        Reaction::Answered(r) => panic!("expected the connection closed, got {r:?}"),
    }
    // A connection that never sends a byte is closed too.
    let mut silent = connect(&s).await;
    assert!(matches!(reaction(&mut silent).await, Reaction::Closed));
    // The server still serves everyone else.
    s.client().get("/Users").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout() {
    let s = Scimd::start(timeouts()).await;
    let mut conn = connect(&s).await;
    let get = format!(
        "GET /Users HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
        s.addr(),
        s.key
    );
    for _ in 0..2 {
        conn.write_all(get.as_bytes()).await.unwrap();
        match reaction(&mut conn).await {
            Reaction::Answered(r) => assert_eq!(r.status, 200, "{r:?}"),
            other => panic!("expected 200, got {other:?}"),
        }
        // Longer than HEADER_TIMEOUT between two requests: only a started head is timed.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_not_answered_within_the_request_timeout_is_503() {
    let s = Scimd::start(
        Opts::default()
            .env("BODY_TIMEOUT", "3600")
            .env("REQUEST_TIMEOUT", "1"),
    )
    .await;
    let mut conn = connect(&s).await;
    let auth = format!("Authorization: Bearer {}\r\n", s.key);
    conn.write_all(user_post_head(&s, &auth, 100).as_bytes())
        .await
        .unwrap();
    match reaction(&mut conn).await {
        Reaction::Answered(r) => {
            assert_eq!(r.status, 503, "{r:?}");
            assert!(
                r.json()["detail"]
                    .as_str()
                    .unwrap()
                    .contains("REQUEST_TIMEOUT"),
                "{r:?}"
            );
        }
        other => panic!("expected 503, got {other:?}"),
    }
}
