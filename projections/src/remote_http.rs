//! What the HTTP clients of the remote backends (upstream SCIM, JumpCloud) share in reading an
//! answer: its body without trusting its size, its `Retry-After`, and its error without the URL.
//!
//! An upstream SCIM server or JumpCloud that answers with an endless or enormous body (a broken
//! proxy, a misrouted download) must not grow scimd's memory without bound: the remote clients read
//! at most [`MAX_BODY`] bytes and report anything larger as an error, which parks the change with
//! that reason instead.

/// The largest answer read: far above a SCIM resource or a JumpCloud page, including a group of a
/// hundred thousand members.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Why an answer's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the limit (declared by `Content-Length` or as it streamed in).
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The connection broke off or timed out while the body was read.
    #[error(transparent)]
    Broken(#[from] reqwest::Error),
}

/// The body of `response`, or [`BodyError::TooLarge`] as soon as it exceeds `limit` bytes.
pub async fn read(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|declared| declared > limit as u64)
    {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3), capped at `cap`. The HTTP-date form is not read:
/// the caller's own backoff applies then.
pub fn retry_after(
    headers: &reqwest::header::HeaderMap,
    cap: std::time::Duration,
) -> Option<std::time::Duration> {
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(std::time::Duration::from_secs(seconds).min(cap))
}

/// A request's error with its causes but without the URL, which may carry a tenant name or a
/// query the logs should not repeat on every retry.
pub fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" ({url})"), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one answer with `head` (status line and headers) and `body` on a loopback port.
    async fn serve_once(head: &'static str, body: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_whether_declared_or_streamed() {
        let declared = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-length: 5000\r\nconnection: close\r\n\r\n",
            vec![b'x'; 5000],
        )
        .await;
        let response = reqwest::get(&declared).await.unwrap();
        assert!(matches!(
            read(response, 1000).await,
            Err(BodyError::TooLarge(1000))
        ));

        let streamed = serve_once(
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
            vec![b'x'; 5000],
        )
        .await;
        let response = reqwest::get(&streamed).await.unwrap();
        assert!(matches!(
            read(response, 1000).await,
            Err(BodyError::TooLarge(1000))
        ));

        let small = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n",
            b"{}".to_vec(),
        )
        .await;
        let response = reqwest::get(&small).await.unwrap();
        assert_eq!(read(response, 1000).await.unwrap(), b"{}");
    }
}
