//! The status page: `GET BASE_PATH/status` from a browser (`Accept` preferring `text/html`) gets a
//! page served from the binary that asks for the API key, keeps it in the tab (sessionStorage,
//! never a cookie: no CSRF surface) and reads the JSON `/status` with it. Every other `Accept`
//! (`*/*`, JSON, SCIM JSON, none) reaches the JSON API, which needs a key.

use std::sync::Arc;

use poem::http::{Method, header};
use poem::{Endpoint, IntoResponse, PathPattern, Request, Response};

/// The page: HTML, CSS and script in one file, no data and nothing loaded from elsewhere.
const PAGE: &str = include_str!("status.html");

/// Serves the page for browser requests to `path` (BASE_PATH + `/status`), else passes on.
pub async fn serve<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    path: Arc<str>,
) -> poem::Result<Response> {
    if req.method() == Method::GET && req.uri().path() == &*path && prefers_html(&req) {
        let mut page = Response::builder()
            .content_type("text/html; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-store")
            .header(
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            )
            .header("Referrer-Policy", "no-referrer")
            .header("X-Content-Type-Options", "nosniff")
            .header(header::VARY, "Accept")
            .body(PAGE);
        // Counted in the metrics under its route, like the JSON answer.
        page.set_data(PathPattern(path.clone()));
        return Ok(page);
    }
    let is_status = req.uri().path() == &*path;
    let mut resp = next.call(req).await.map(IntoResponse::into_response)?;
    if is_status {
        // The same URL answers HTML or JSON by `Accept`: caches must key on it.
        resp.headers_mut()
            .insert(header::VARY, header::HeaderValue::from_static("Accept"));
    }
    Ok(resp)
}

/// Whether `Accept` names `text/html` (or `text/*`) with a higher quality than any JSON type it
/// names (`application/json`, `application/scim+json`, `application/*`, `*/*`). A tie is JSON.
fn prefers_html(req: &Request) -> bool {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (mut html, mut json) = (0.0f32, 0.0f32);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "text/html" | "text/*" => html = html.max(q),
            "application/json" | "application/scim+json" | "application/*" | "*/*" => {
                json = json.max(q)
            }
            _ => {}
        }
    }
    html > 0.0 && html > json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> bool {
        prefers_html(&Request::builder().header(header::ACCEPT, v).finish())
    }

    #[test]
    fn browsers_get_html_and_clients_json() {
        assert!(accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!accept("*/*"));
        assert!(!accept("application/json"));
        assert!(!accept("application/scim+json"));
        assert!(!accept("application/json, text/html"));
        assert!(!accept("text/html;q=0"));
        assert!(accept("application/json;q=0.5, text/html"));
        assert!(!prefers_html(&Request::builder().finish()));
    }
}
