//! `GET /metrics` (Prometheus text format, at the root like `/health`) and the middleware that
//! counts and times every request by its route template.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use poem::PathPattern;
use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response};

use super::auth::ApiKeys;
use crate::metrics::METRICS;
use crate::service::{Service, Subscribers};

/// The `GET /metrics` endpoint.
pub struct Scrape {
    /// Reads the store's state for the gauges.
    pub service: Arc<Service>,
    /// The subscribers' progress.
    pub subscribers: Arc<Subscribers>,
    /// METRICS_PUBLIC: no key needed.
    pub public: bool,
}

impl Endpoint for Scrape {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.method() != poem::http::Method::GET {
            return Err(poem::Error::from_status(StatusCode::METHOD_NOT_ALLOWED));
        }
        if !self.public && !authorized(&req) {
            return Err(poem::Error::from_status(StatusCode::UNAUTHORIZED));
        }
        let service = self.service.clone();
        let subscribers = self.subscribers.clone();
        // Reading the store may touch the disk: off the async workers.
        let text = tokio::task::spawn_blocking(move || service.metrics(&subscribers))
            .await
            .map_err(|_| poem::Error::from_status(StatusCode::SERVICE_UNAVAILABLE))?;
        match text {
            Ok(text) => Ok(Response::builder()
                .content_type("text/plain; version=0.0.4; charset=utf-8")
                .body(text)),
            Err(e) => {
                tracing::error!(error = %e, "GET /metrics failed");
                Ok(super::errors::scim_response(&e))
            }
        }
    }
}

/// Whether the request carries a valid API key (`Authorization: Bearer` or `X-API-Key`), as the
/// API routes accept it.
fn authorized(req: &Request) -> bool {
    let Some(keys) = req.data::<Arc<ApiKeys>>() else {
        return false;
    };
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &poem::http::HeaderValue| v.to_str().ok())
    };
    let bearer = header(poem::http::header::AUTHORIZATION).and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer
        .or_else(|| header(poem::http::header::HeaderName::from_static("x-api-key")))
        .and_then(|key| keys.check(key))
        .is_some()
}

/// Route templates in the OpenAPI spelling, by poem's pattern: poem-openapi registers
/// `/Users/{id}` as `/Users/:param0`, which says nothing on a dashboard.
pub struct Templates {
    base_path: String,
    by_pattern: HashMap<String, String>,
}

impl Templates {
    /// The templates of every path of `spec` (the OpenAPI document as JSON), served under
    /// `base_path`.
    pub fn new(spec: &str, base_path: &str) -> Templates {
        let mut by_pattern = HashMap::new();
        if let Ok(spec) = serde_json::from_str::<serde_json::Value>(spec)
            && let Some(paths) = spec.get("paths").and_then(|p| p.as_object())
        {
            for path in paths.keys() {
                by_pattern.insert(numbered(path), path.clone());
            }
        }
        Templates {
            base_path: base_path.to_owned(),
            by_pattern,
        }
    }

    /// The template of poem's `pattern`.
    fn of(&self, pattern: &str) -> String {
        let braced = numbered(pattern);
        let relative = braced
            .strip_prefix(self.base_path.as_str())
            .unwrap_or(&braced);
        match self.by_pattern.get(relative) {
            Some(t) => format!("{}{t}", self.base_path),
            None => braced,
        }
    }
}

/// `pattern` with its parameters, `:x` or `{x}`, renamed `{param0}`, `{param1}`… in order.
fn numbered(pattern: &str) -> String {
    let mut n = 0;
    pattern
        .split('/')
        .map(|seg| {
            let is_param = seg.starts_with(':') || (seg.starts_with('{') && seg.ends_with('}'));
            if is_param {
                n += 1;
                format!("{{param{}}}", n - 1)
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The method as a label: one of the methods HTTP defines, else `other`. A client may send any
/// token as a method, before any key is checked; each one a label would be a new series.
fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Counts and times every request by route template (`/Users/{id}`, never the raw path: ids
/// would make a series per resource), method and status. Requests no route matches share the
/// template `unmatched`.
pub async fn record<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    templates: Arc<Templates>,
) -> poem::Result<Response> {
    let method = method_label(req.method());
    let started = Instant::now();
    let result = next.call(req).await.map(IntoResponse::into_response);
    let (status, pattern) = match &result {
        Ok(resp) => (resp.status(), resp.data::<PathPattern>()),
        Err(e) => (e.status(), e.data::<PathPattern>()),
    };
    let route = pattern.map_or_else(|| "unmatched".to_owned(), |p| templates.of(&p.0));
    METRICS
        .http_requests
        .with_label_values(&[route.as_str(), method, status.as_str()])
        .inc();
    METRICS
        .http_duration
        .with_label_values(&[route.as_str(), method])
        .observe(started.elapsed().as_secs_f64());
    result
}

#[cfg(test)]
mod tests {
    use super::Templates;

    #[test]
    fn poem_patterns_become_the_openapi_templates() {
        let spec = r#"{"paths": {"/Users/{id}": {}, "/admin/projections/{name}/retry": {}}}"#;
        let t = Templates::new(spec, "/scim/v2");
        assert_eq!(t.of("/scim/v2/Users/:param0"), "/scim/v2/Users/{id}");
        assert_eq!(
            t.of("/scim/v2/admin/projections/:param0/retry"),
            "/scim/v2/admin/projections/{name}/retry"
        );
        assert_eq!(t.of("/metrics"), "/metrics");
        assert_eq!(Templates::new(spec, "").of("/Users/:param0"), "/Users/{id}");
    }
}
