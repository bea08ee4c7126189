//! The HTTP side of the JumpCloud projection: one call to JumpCloud's API, retried while it may
//! pass.
//!
//! JumpCloud documents 429 but neither its limits nor a `Retry-After`; its own CLI retries 429 and
//! 5xx with exponential backoff. So does this client, on 429 (honouring `Retry-After` when one is
//! sent), 5xx and network errors, up to [`ATTEMPTS`] times before it reports the service
//! unavailable (the projection runner then retries the batch with its own backoff). A 401 or 403
//! (a wrong key) is reported unavailable at once: the change is not at fault. Any other answer the
//! caller did not ask for is a refusal with JumpCloud's `message`. The `x-api-key` header is marked
//! sensitive and never logged.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::remote_http::{BodyError, MAX_BODY, retry_after, without_url};

/// Tries of one call before it counts as unavailable.
pub const ATTEMPTS: u32 = 6;
/// The first wait after a 429, a 5xx or a network error; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `Retry-After` obeyed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call did not give an answer the caller can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// JumpCloud was unreachable, throttled or failing through every try, or refused the key.
    #[error("{0}")]
    Unavailable(String),
    /// JumpCloud refused the request (a 4xx the caller did not expect).
    #[error("JumpCloud answered {status} to {what}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Method and path.
        what: String,
        /// JumpCloud's `message`, or the body.
        message: String,
    },
}

/// A useful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body (`Null` when empty).
    pub body: Value,
    /// `x-total-count`, which JumpCloud's v2 lists send.
    pub total: Option<u64>,
}

/// A client of one JumpCloud organisation.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    root: String,
}

impl Client {
    /// A client of the API under `root` (`https://console.jumpcloud.com`), sending `key` as
    /// `x-api-key` and `org`, when given, as `x-org-id`.
    pub fn new(root: &str, key: &str, org: Option<&str>) -> Result<Client, String> {
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(key.trim())
            .map_err(|_| "JUMPCLOUD_KEY holds characters a header cannot carry".to_owned())?;
        key.set_sensitive(true);
        headers.insert("x-api-key", key);
        if let Some(org) = org.map(str::trim).filter(|o| !o.is_empty()) {
            let org = HeaderValue::from_str(org)
                .map_err(|_| "JUMPCLOUD_ORG_ID holds characters a header cannot carry")?;
            headers.insert("x-org-id", org);
        }
        headers.insert("accept", HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("scimd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("JumpCloud client: {e}"))?;
        Ok(Client {
            http,
            root: root.trim().trim_end_matches('/').to_owned(),
        })
    }

    /// `method path?query` with `body` as JSON. Answers with a 2xx status or one of `expected`
    /// are returned; see the [module documentation](self) for the rest.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        expected: &[u16],
    ) -> Result<Answer, CallError> {
        let what = format!("{method} {path}");
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.root))
                .query(query);
            if let Some(body) = body {
                request = request.json(body);
            }
            let wait = match request.send().await {
                Err(e) => {
                    last = format!("JumpCloud unreachable on {what}: {}", without_url(&e));
                    backoff
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers(), MAX_RETRY_AFTER);
                    let total = response
                        .headers()
                        .get("x-total-count")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok());
                    let code = status.as_u16();
                    let text = match crate::remote_http::read(response, MAX_BODY).await {
                        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        Err(too_large @ BodyError::TooLarge(_)) => {
                            return Err(CallError::Refused {
                                status: code,
                                what,
                                message: too_large.to_string(),
                            });
                        }
                        Err(BodyError::Broken(e)) => {
                            last = format!(
                                "JumpCloud's answer to {what} broke off: {}",
                                without_url(&e)
                            );
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            continue;
                        }
                    };
                    if status.is_success() || expected.contains(&code) {
                        let body = if text.trim().is_empty() {
                            Value::Null
                        } else {
                            serde_json::from_str(&text).unwrap_or(Value::String(text))
                        };
                        return Ok(Answer {
                            status: code,
                            body,
                            total,
                        });
                    }
                    let message = message(&text);
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        return Err(CallError::Unavailable(format!(
                            "JumpCloud refused the API key ({code} on {what}): {message}"
                        )));
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        last = format!("JumpCloud throttled {what} (429)");
                        retry_after.map_or(backoff, |r| r.max(backoff))
                    } else if status.is_server_error() {
                        last = format!("JumpCloud failed on {what} ({code}): {message}");
                        backoff
                    } else {
                        return Err(CallError::Refused {
                            status: code,
                            what,
                            message,
                        });
                    }
                }
            };
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, reason = %last, "JumpCloud call retried");
            if attempt < ATTEMPTS {
                tokio::time::sleep(jitter(wait)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        Err(CallError::Unavailable(last))
    }
}

/// Up to a tenth more, so that many clients throttled together do not come back together.
fn jitter(wait: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    wait + wait.mul_f64(f64::from(nanos % 100) / 1000.0)
}

/// JumpCloud's error `message`, read leniently (its CLI shows the raw body; so does this, cut).
fn message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_read_from_either_error_shape() {
        assert_eq!(
            message(r#"{"message":"User already exists"}"#),
            "User already exists"
        );
        assert_eq!(
            message(r#"{"code":400,"message":"bad","status":"INVALID_ARGUMENT","details":[]}"#),
            "bad"
        );
        assert_eq!(message("plain text"), "plain text");
    }

    #[test]
    fn retry_after_is_seconds_and_capped() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(
            retry_after(&h, MAX_RETRY_AFTER),
            Some(Duration::from_secs(3))
        );
        h.insert("retry-after", HeaderValue::from_static("100000"));
        assert_eq!(retry_after(&h, MAX_RETRY_AFTER), Some(MAX_RETRY_AFTER));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h, MAX_RETRY_AFTER), None);
    }

    #[test]
    fn the_key_never_shows_in_the_client_debug_output() {
        let client = Client::new("http://127.0.0.1:1", "secret-key-123", None).unwrap();
        assert!(!format!("{client:?}").contains("secret-key-123"));
    }
}
