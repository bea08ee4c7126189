//! What happens to a request before its handler runs, in this order: a body declared larger than
//! the limit is refused; the API key is checked, and the body of a request without a valid key is
//! never read; the body is read within its size limit and BODY_TIMEOUT; the whole request then
//! has REQUEST_TIMEOUT to be answered.
//!
//! Authenticating first means an anonymous client cannot make the server buffer a megabyte, nor
//! hold a connection open by trickling one in; the timeouts mean no client, keyed or not, can hold
//! a task forever (HEADER_TIMEOUT, for the head, is kept on the connection: `header_deadline`).

use std::sync::Arc;
use std::time::Duration;

use poem::error::ReadBodyError;
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
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Ok(with_challenge(too_large()));
    }
    let respond = async {
        if keys.presented(req.headers()).is_some() {
            match tokio::time::timeout(limits.body, req.take_body().into_bytes_limit(MAX_BODY))
                .await
            {
                Ok(Ok(bytes)) => req.set_body(bytes),
                Ok(Err(ReadBodyError::PayloadTooLarge)) => return Ok(with_challenge(too_large())),
                Ok(Err(e)) => {
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

fn too_large() -> Response {
    scim_response(&ScimError::new(
        413,
        format!("the request body is larger than {MAX_BODY} bytes"),
    ))
}
