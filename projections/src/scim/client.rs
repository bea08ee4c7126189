//! The HTTP side of the upstream projection: one request to the upstream SCIM server with its
//! retries, and what an answer means.
//!
//! Network errors, 5xx and 429 are retried here a few times with exponential backoff (a 429's or
//! 503's `Retry-After` in seconds is honoured, up to [`MAX_RETRY_AFTER`]); if the upstream is still
//! failing the request ends as [`Failure::Unavailable`] and scimd's runner retries the batch later
//! with its own backoff. Every other answer goes back to the caller, who knows what a 404, 409 or
//! 412 means for its request. The key is sent as `Authorization: Bearer …` and never logged.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Attempts of one request before the batch is handed back to the runner as unavailable.
const ATTEMPTS: u32 = 5;
/// The first wait between attempts; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request to the upstream did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// The upstream is unreachable, overloaded or failing, or refuses scimd's key: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The upstream refused the request for good: the change is parked with this reason.
    #[error("{0}")]
    Refused(String),
}

/// An answer other than a network failure, 5xx or 429.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `ETag` header, or `meta.version` of the body.
    pub etag: Option<String>,
    /// The JSON body (`Null` when empty or not JSON).
    pub body: Value,
}

impl Answer {
    /// A refusal that names the request and carries the upstream's SCIM error (RFC 7644 §3.12):
    /// status, `scimType` and `detail`. 401 and 403 mean the key is wrong, which no retry of the
    /// change fixes but a corrected setting does: they are [`Failure::Unavailable`], so nothing is
    /// parked for them.
    pub fn refusal(&self, what: &str) -> Failure {
        let mut reason = format!("upstream answered {} to {what}", self.status.as_u16());
        if let Some(t) = self.body.get("scimType").and_then(Value::as_str) {
            reason.push_str(&format!(" ({t})"));
        }
        if let Some(d) = self.body.get("detail").and_then(Value::as_str) {
            reason.push_str(&format!(": {d}"));
        }
        match self.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::Unavailable(format!(
                "{reason} (check FORWARD_SCIM_KEY and FORWARD_SCIM_HEADERS)"
            )),
            _ => Failure::Refused(reason),
        }
    }
}

/// Where the upstream is and how to reach it.
#[derive(Debug, Clone)]
pub struct Upstream {
    http: reqwest::Client,
    /// The base URL without a trailing slash (`https://host/scim/v2`).
    base: String,
}

impl Upstream {
    /// A client for `base`, authenticating with `key`, sending `headers` with every request and
    /// trusting the CA certificates of `ca_file` (PEM) besides the system's.
    pub fn new(
        base: &str,
        key: &str,
        headers: &[(String, String)],
        ca_file: Option<&Path>,
    ) -> Result<Upstream, String> {
        let mut defaults = HeaderMap::new();
        let mut bearer = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| "FORWARD_SCIM_KEY holds characters a header cannot carry".to_string())?;
        bearer.set_sensitive(true);
        defaults.insert(reqwest::header::AUTHORIZATION, bearer);
        defaults.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/scim+json, application/json"),
        );
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("FORWARD_SCIM_HEADERS: `{name}` is not a header name"))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                format!("FORWARD_SCIM_HEADERS: the value of `{name}` is not a header value")
            })?;
            value.set_sensitive(true);
            defaults.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(defaults)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("FORWARD_SCIM_CA_FILE {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "FORWARD_SCIM_CA_FILE {}: not PEM certificates: {e}",
                    path.display()
                )
            })?;
            if certs.is_empty() {
                return Err(format!(
                    "FORWARD_SCIM_CA_FILE {}: holds no certificate",
                    path.display()
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Upstream {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// Sends one request, retrying network errors, 5xx and 429 (see the module documentation).
    /// `path` starts with `/`; `query` pairs are URL-encoded.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Answer, Failure> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method} {path}");
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut request = self.http.request(method.clone(), &url);
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/scim+json")
                    .body(body.to_string());
            }
            if let Some(etag) = if_match {
                request = request.header(reqwest::header::IF_MATCH, etag);
            }
            let wait = match request.send().await {
                Err(e) => {
                    last = format!("{what}: {}", without_url(&e));
                    backoff
                }
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        let retry_after = retry_after(response.headers());
                        last = format!("upstream answered {} to {what}", status.as_u16());
                        retry_after.unwrap_or(backoff)
                    } else {
                        let etag = response
                            .headers()
                            .get(reqwest::header::ETAG)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let bytes = response.bytes().await.map_err(|e| {
                            Failure::Unavailable(format!("{what}: {}", without_url(&e)))
                        })?;
                        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        let etag = etag.or_else(|| {
                            body.pointer("/meta/version")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        });
                        return Ok(Answer { status, etag, body });
                    }
                }
            };
            if attempt < ATTEMPTS {
                tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %last, "upstream request retried");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_RETRY_AFTER);
            }
        }
        Err(Failure::Unavailable(last))
    }
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3), capped at [`MAX_RETRY_AFTER`]. The HTTP-date form
/// is not read: the usual backoff applies then.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// A reqwest error without the URL (which holds nothing secret, but is long and repeated in the
/// request description anyway).
fn without_url(e: &reqwest::Error) -> String {
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

    #[test]
    fn retry_after_in_seconds_is_honoured_and_capped() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("86400"),
        );
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn a_refusal_carries_the_upstreams_scim_error_and_a_wrong_key_parks_nothing() {
        let answer = Answer {
            status: StatusCode::BAD_REQUEST,
            etag: None,
            body: serde_json::json!({"status": "400", "scimType": "invalidValue", "detail": "userName is required"}),
        };
        assert_eq!(
            answer.refusal("POST /Users"),
            Failure::Refused(
                "upstream answered 400 to POST /Users (invalidValue): userName is required".into()
            )
        );
        let answer = Answer {
            status: StatusCode::UNAUTHORIZED,
            etag: None,
            body: Value::Null,
        };
        assert!(matches!(
            answer.refusal("POST /Users"),
            Failure::Unavailable(_)
        ));
    }
}
