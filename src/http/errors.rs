//! Every failure as a SCIM error body (RFC 7644 §3.12), including the errors poem and
//! poem-openapi raise themselves (unknown route, wrong method, unparsable JSON, missing key).

use std::sync::Arc;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use super::responses::SCIM_JSON;
use scim::{ScimError, ScimType};

/// The largest request body accepted; larger ones (chunked included) get 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// Converts any error the inner endpoint returns into a SCIM error response.
pub async fn scim_errors<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let credentials = Credentials::of(&req);
    let resp = match next.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(err) => {
            let status = err.status();
            let detail = err.to_string();
            let resp = err.into_response();
            if is_scim(&resp) {
                resp
            } else {
                framework_error(status, &detail, credentials)
            }
        }
    };
    Ok(with_challenge(resp))
}

fn is_scim(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(SCIM_JSON))
}

/// 401 responses name the scheme to use (RFC 6750 §3).
pub(super) fn with_challenge(mut resp: Response) -> Response {
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// A SCIM error response.
pub fn scim_response(e: &ScimError) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type(SCIM_JSON)
        .body(e.to_body().to_string())
}

/// What a request presented to authenticate itself, for the text of a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credentials {
    /// Neither `Authorization` nor `X-API-Key`.
    Missing,
    /// `Authorization` with another scheme than Bearer, and no `X-API-Key`.
    NotBearer,
    /// A key, which the check then refused.
    Key,
}

impl Credentials {
    fn of(req: &Request) -> Credentials {
        let headers = req.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split_once(' ')
                    .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            });
        match (bearer, headers.contains_key("x-api-key")) {
            (Some(true), _) | (_, true) => Credentials::Key,
            (Some(false), false) => Credentials::NotBearer,
            (None, false) => Credentials::Missing,
        }
    }

    /// The 401's detail: which of the three went wrong, never anything about the keys themselves.
    fn detail(self) -> &'static str {
        match self {
            Credentials::Missing => {
                "authentication required: send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`"
            }
            Credentials::NotBearer => {
                "the Authorization header must be `Bearer <key>` with an API key (or send `X-API-Key: <key>`)"
            }
            Credentials::Key => {
                // Where the keys are configured is the operator's business, not the client's.
                "the API key sent is not valid"
            }
        }
    }
}

/// The SCIM error for a failure the framework detected before a handler ran.
fn framework_error(status: StatusCode, detail: &str, credentials: Credentials) -> Response {
    let e = match status {
        StatusCode::UNAUTHORIZED => ScimError::new(401, credentials.detail()),
        StatusCode::NOT_FOUND => ScimError::not_found("no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ScimError::new(405, "this endpoint does not support that method")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ScimError::new(
            415,
            "send the body as application/scim+json or application/json",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ScimError::new(
            413,
            format!("the request body is larger than {MAX_BODY} bytes"),
        ),
        s if s == StatusCode::BAD_REQUEST && detail.contains("payload") => ScimError::typed(
            400,
            ScimType::InvalidSyntax,
            format!("malformed request body: {detail}"),
        ),
        s if s.is_client_error() => ScimError::typed(
            s.as_u16(),
            ScimType::InvalidValue,
            format!("invalid request: {detail}"),
        ),
        s => {
            tracing::error!(status = s.as_u16(), detail, "unexpected server error");
            ScimError::new(s.as_u16(), "internal error")
        }
    };
    scim_response(&e)
}
