//! An RFC 8935 push receiver as scimd's push subscriber sees it: where it is (https unless
//! allowed otherwise, checked at start-up), one SET per POST, and what its answer means.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;

use super::SetupError;
use projections::remote_http;

/// The media type of a SET (RFC 8417 §2.3).
pub const SET_MEDIA_TYPE: &str = "application/secevent+jwt";
/// How long one POST may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an error body read: RFC 8935 §2.3's `{"err", "description"}` is small.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// What the receiver made of one SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 202 (any 2xx): the receiver has it (RFC 8935 §2.2).
    Delivered,
    /// The receiver refused this SET for good (RFC 8935 §2.3/§2.4: `invalid_request`,
    /// `invalid_key`, `invalid_issuer`, `invalid_audience`, or a 400/413 without a code): it is
    /// parked, and later SETs go on.
    Refused {
        /// The RFC 8935 `err` code (`invalid_request` when the answer named none).
        err: String,
        /// The receiver's `description`, or the HTTP status.
        description: String,
    },
    /// The receiver could not take it now (network, 5xx, 429, 408, a redirect (not followed), and the credential errors
    /// `authentication_failed`/`access_denied` that a fix on either side clears): retried with
    /// backoff, nothing after it is sent meanwhile.
    Unavailable {
        /// What went wrong.
        reason: String,
        /// The receiver's `Retry-After`, capped at [`MAX_RETRY_AFTER`].
        retry_after: Option<Duration>,
    },
}

/// The RFC 8935 §2.3 error body.
#[derive(Deserialize)]
struct ErrorBody {
    err: String,
    #[serde(default)]
    description: String,
}

/// The push receiver: its URL, its bearer token, and the HTTP client that reaches it.
pub struct Receiver {
    client: reqwest::Client,
    url: reqwest::Url,
    token: Option<String>,
}

impl Receiver {
    /// The receiver at SET_PUSH_URL: an absolute `https` URL, or `http` when `allow_http`
    /// (SET_PUSH_ALLOW_HTTP) says so. A wrong URL is a start-up error.
    pub fn new(url: &str, token: Option<String>, allow_http: bool) -> Result<Receiver, SetupError> {
        let bad = |reason| SetupError::PushUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = reqwest::Url::parse(url.trim()).map_err(|_| bad("not an absolute URL"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => {
                return Err(bad(
                    "SETs carry personal data and must travel over TLS (RFC 8417 §5.1): use https, or set SET_PUSH_ALLOW_HTTP=true for a loopback test",
                ));
            }
            _ => return Err(bad("the scheme must be https")),
        }
        // No redirects: one could lead a SET, and the bearer token, off https or to another host.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|_| bad("no HTTP client could be built for it"))?;
        Ok(Receiver {
            client,
            url: parsed,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// POSTs one compact SET (RFC 8935 §2.1) and reads the answer.
    pub async fn push(&self, set: &str) -> Answer {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, SET_MEDIA_TYPE)
            .header(ACCEPT, "application/json")
            .body(set.to_owned());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return Answer::Unavailable {
                    reason: format!(
                        "the receiver cannot be reached: {}",
                        remote_http::without_url(&e)
                    ),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Answer::Delivered;
        }
        let retry_after = remote_http::retry_after(response.headers(), MAX_RETRY_AFTER);
        let code = status.as_u16();
        let body = remote_http::read(response, MAX_ERROR_BODY).await.ok();
        let error = body
            .as_deref()
            .and_then(|b| serde_json::from_slice::<ErrorBody>(b).ok());
        classify(code, error, retry_after)
    }
}

/// The meaning of a non-2xx answer with status `code` and, if it had one, its RFC 8935 body.
fn classify(code: u16, error: Option<ErrorBody>, retry_after: Option<Duration>) -> Answer {
    let unavailable = |reason: String| Answer::Unavailable {
        reason,
        retry_after,
    };
    match (code, error) {
        // RFC 8935 §2.4: credentials can be fixed (a new token, a refreshed key list), and every
        // SET would be refused meanwhile: wait rather than park them all.
        (400, Some(e)) if e.err == "authentication_failed" || e.err == "access_denied" => {
            unavailable(format!(
                "the receiver answered {}: {}",
                e.err, e.description
            ))
        }
        (400, Some(e)) => Answer::Refused {
            err: e.err,
            description: e.description,
        },
        (400 | 413, None) => Answer::Refused {
            err: "invalid_request".into(),
            description: format!("HTTP {code} without an RFC 8935 error body"),
        },
        (401 | 403, _) => unavailable(format!(
            "the receiver refused the credentials (HTTP {code}): check SET_PUSH_TOKEN"
        )),
        _ => unavailable(format!("the receiver answered HTTP {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(err: &str) -> Option<ErrorBody> {
        Some(ErrorBody {
            err: err.into(),
            description: "why".into(),
        })
    }

    #[test]
    fn only_errors_about_the_set_itself_park_it() {
        for err in [
            "invalid_request",
            "invalid_key",
            "invalid_issuer",
            "invalid_audience",
            "x_new",
        ] {
            assert!(
                matches!(classify(400, body(err), None), Answer::Refused { .. }),
                "{err}"
            );
        }
        for err in ["authentication_failed", "access_denied"] {
            assert!(
                matches!(classify(400, body(err), None), Answer::Unavailable { .. }),
                "{err}"
            );
        }
        assert!(matches!(classify(400, None, None), Answer::Refused { .. }));
        let later = Some(Duration::from_secs(3));
        for code in [401, 404, 408, 429, 500, 503] {
            assert_eq!(
                classify(code, None, later),
                Answer::Unavailable {
                    reason: match code {
                        401 =>
                            "the receiver refused the credentials (HTTP 401): check SET_PUSH_TOKEN"
                                .into(),
                        _ => format!("the receiver answered HTTP {code}"),
                    },
                    retry_after: later,
                }
            );
        }
    }

    #[test]
    fn a_push_url_must_be_https_unless_http_is_allowed() {
        assert!(Receiver::new("https://rp.example.org/events", None, false).is_ok());
        assert!(Receiver::new("http://127.0.0.1:9/events", None, false).is_err());
        assert!(Receiver::new("http://127.0.0.1:9/events", None, true).is_ok());
        assert!(Receiver::new("ftp://rp.example.org", None, true).is_err());
        assert!(Receiver::new("rp.example.org/events", None, true).is_err());
    }
}
