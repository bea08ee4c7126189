//! The emulator's HTTP side: authentication, injected failures, routing, query strings and the
//! error shapes of `REFERENCE.md` §4.

use std::sync::{Arc, Mutex};

use poem::http::{Method, StatusCode};
use poem::{Request, Response};
use serde_json::{Value, json};

use super::{State, groups, users};

/// What a handler answers: a status, a JSON body (or none), `x-total-count`.
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub total: Option<usize>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            total: None,
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            total: None,
        }
    }

    /// A v2 list page with its total.
    pub fn page(items: Vec<Value>, total: usize) -> Reply {
        Reply {
            status: 200,
            body: Some(Value::Array(items)),
            total: Some(total),
        }
    }
}

/// `{"code","message","status"}`.
pub fn error(code: u16, message: &str) -> Reply {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        _ => "UNAVAILABLE",
    };
    Reply::json(
        code,
        json!({"code": code, "message": message, "status": status}),
    )
}

/// A 400 with google.rpc-style details naming the field (ErrorDetails).
pub fn invalid(field: &str, description: &str) -> Reply {
    Reply::json(
        400,
        json!({
            "code": 400,
            "message": format!("{field}: {description}"),
            "status": "INVALID_ARGUMENT",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolationsList": [{"field": field, "description": description}],
            }],
        }),
    )
}

/// A request as the handlers see it.
pub struct Call<'a> {
    pub method: &'a Method,
    pub segments: Vec<&'a str>,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Call<'_> {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (repeated `filter=`) and of `name[0]`, `name[1]` ….
    pub fn params(&self, name: &str) -> Vec<&str> {
        let indexed = format!("{name}[");
        self.query
            .iter()
            .filter(|(k, _)| {
                k == name
                    || (k.starts_with(&indexed)
                        && k[indexed.len()..].starts_with(|c: char| c.is_ascii_digit()))
            })
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `limit` (default 10, at most 100) and `skip` (default 0), or the 400 for bad ones.
    pub fn paging(&self) -> Result<(usize, usize), Reply> {
        let limit = match self.param("limit") {
            None => 10,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= 100 => n,
                _ => return Err(invalid("limit", "must be an integer from 0 to 100")),
            },
        };
        let skip = match self.param("skip") {
            None => 0,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| invalid("skip", "must be an integer of at least 0"))?,
        };
        Ok((limit, skip))
    }

    /// The body as a JSON object, or the 400.
    pub fn object(&self) -> Result<&serde_json::Map<String, Value>, Reply> {
        self.body
            .as_ref()
            .and_then(Value::as_object)
            .ok_or_else(|| error(400, "the body must be a JSON object"))
    }
}

/// Answers one request.
pub async fn respond(state: &Arc<Mutex<State>>, key: &str, mut req: Request) -> Response {
    let bytes = req.take_body().into_vec().await.unwrap_or_default();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let given_key = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.log.push(format!("{method} {path}"));
    let reply = (|| {
        if s.fail_next > 0 {
            s.fail_next -= 1;
            s.failed += 1;
            let status = s.fail_status;
            return (error(status, "Internal error, try again"), None);
        }
        if let Some(every) = s.throttle_every
            && every > 0
            && (s.log.len() as u64).is_multiple_of(every)
        {
            s.throttled += 1;
            return (error(429, "Too Many Requests"), s.retry_after);
        }
        if given_key.as_deref() != Some(key) {
            return (error(401, "Unauthorized"), None);
        }
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => Some(v),
                Err(e) => return (error(400, &format!("the body is not JSON: {e}")), None),
            }
        };
        let call = Call {
            method: &method,
            segments: path.trim_matches('/').split('/').collect(),
            query,
            body,
        };
        let reply = match call.segments.as_slice() {
            ["api", "systemusers", ..] => users::route(&mut s, &call),
            ["api", "v2", "usergroups", ..] => groups::route(&mut s, &call),
            _ => None,
        };
        (reply.unwrap_or_else(|| error(404, "Not Found")), None)
    })();
    drop(s);
    let (reply, retry_after) = reply;
    let mut response = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    if let Some(seconds) = retry_after {
        response = response.header("Retry-After", seconds.to_string());
    }
    if let Some(total) = reply.total {
        response = response.header("x-total-count", total.to_string());
    }
    match reply.body {
        Some(body) => response
            .content_type("application/json; charset=utf-8")
            .body(body.to_string()),
        None => response.finish(),
    }
}

/// `a=1&b=x+y&c=%24eq`: pairs, `+` and percent escapes decoded.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A filter term `field:op:value` (v1 ops start with `$`), split at the first two colons.
pub fn filter_term(term: &str) -> Option<(&str, &str, &str)> {
    let (field, rest) = term.split_once(':')?;
    let (op, value) = rest.split_once(':')?;
    Some((field, op.trim_start_matches('$'), value))
}

/// Whether `item`'s `field` compares to `value` by `op` (`eq`, `ne`); `None` for other ops.
pub fn matches(item: &Value, field: &str, op: &str, value: &str) -> Option<bool> {
    let held = match item.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    match op {
        "eq" => Some(held == value),
        "ne" => Some(held != value),
        _ => None,
    }
}
