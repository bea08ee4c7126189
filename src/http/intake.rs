//! What happens to a request before its handler runs, in this order: a body declared larger than
//! the limit is refused; the API key is checked, and the body of a request without a valid key is
//! never read; the body is read within its size limit and BODY_TIMEOUT; the whole request then
//! has REQUEST_TIMEOUT to be answered.
//!
//! Authenticating first means an anonymous client cannot make the server buffer a megabyte, nor
//! hold a connection open by trickling one in; the timeouts mean no client, keyed or not, can hold
//! a task forever (HEADER_TIMEOUT, for the head, is kept on the connection: `header_deadline`).
//!
//! A keyed body over the limit is read on and thrown away (up to [`DRAIN_LIMIT`], within
//! BODY_TIMEOUT) before the 413 goes out: hyper closes a connection whose request body was not read,
//! and closing a socket with unread bytes sends a TCP reset that can destroy the 413 before the
//! client reads it, so the client would see a broken connection instead of a SCIM error.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use poem::http::header;
use poem::{Body, Endpoint, IntoResponse, Request, Response};

use super::auth::ApiKeys;
use super::errors::{MAX_BODY, scim_response, with_challenge};
use scim::ScimError;

/// The limits every request is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// BODY_TIMEOUT: from the end of the head to the last byte of the body.
    pub body: Duration,
    /// REQUEST_TIMEOUT: from the end of the head to the response.
    pub request: Duration,
}

/// Refuses oversized bodies, reads the body only of authenticated requests (within MAX_BODY and
/// BODY_TIMEOUT), and answers 503 when the request is not done within REQUEST_TIMEOUT.
pub async fn intake<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    keys: Arc<ApiKeys>,
    limits: Limits,
) -> poem::Result<Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let keyed = keys.presented(req.headers()).is_some();
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        if keyed && declared.is_some_and(|n| n <= DRAIN_LIMIT as u64) {
            let _ = tokio::time::timeout(limits.body, read_body(req.take_body(), 0)).await;
        }
        return Ok(with_challenge(too_large()));
    }
    let respond = async {
        if keyed {
            match tokio::time::timeout(limits.body, read_body(req.take_body(), MAX_BODY)).await {
                Ok(Ok(bytes)) => req.set_body(bytes),
                Ok(Err(BodyError::TooLarge)) => return Ok(with_challenge(too_large())),
                Ok(Err(BodyError::Io(e))) => {
                    return Ok(scim_response(&ScimError::invalid_syntax(format!(
                        "the request body could not be read: {e}"
                    ))));
                }
                Err(_) => {
                    return Ok(scim_response(&ScimError::new(
                        408,
                        format!(
                            "the request body did not arrive within {} s (BODY_TIMEOUT)",
                            limits.body.as_secs()
                        ),
                    )));
                }
            }
        } else {
            // Routes that take no key take no body; the others answer 401 without reading it.
            req.set_body(Body::empty());
        }
        next.call(req).await.map(IntoResponse::into_response)
    };
    match tokio::time::timeout(limits.request, respond).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::warn!(
                timeout_s = limits.request.as_secs(),
                "a request was not answered within REQUEST_TIMEOUT; answering 503"
            );
            Ok(scim_response(&ScimError::unavailable(format!(
                "the request was not answered within {} s (REQUEST_TIMEOUT); a write it asked for \
                 may or may not have been applied, retry it",
                limits.request.as_secs()
            ))))
        }
    }
}

/// How much of a keyed body beyond [`MAX_BODY`] is read and discarded so that its 413 arrives; a
/// larger body gets its 413 at once, and its client may see the connection reset instead.
pub const DRAIN_LIMIT: usize = 8 * MAX_BODY;

/// Why a body was not read.
enum BodyError {
    /// Longer than the limit (what followed was discarded up to [`DRAIN_LIMIT`]).
    TooLarge,
    /// The connection failed or the chunked encoding was broken.
    Io(std::io::Error),
}

/// Reads a body of at most `limit` bytes. Beyond the limit, reading goes on into nothing until the
/// body ends or [`DRAIN_LIMIT`] bytes have passed, then answers `TooLarge`.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut stream = std::pin::pin!(body.into_bytes_stream());
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Io)?;
        seen = seen.saturating_add(chunk.len());
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else {
            kept = Vec::new();
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    if seen > limit {
        Err(BodyError::TooLarge)
    } else {
        Ok(kept)
    }
}

fn too_large() -> Response {
    scim_response(&ScimError::new(
        413,
        format!("the request body is larger than {MAX_BODY} bytes"),
    ))
}
