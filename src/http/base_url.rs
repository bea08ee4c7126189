//! The absolute URL prefix of `meta.location` and `$ref` for a request.

use poem::Request;

/// The URL under which this request reached the SCIM routes, e.g. `https://idm.example.org/scim/v2`:
/// `PUBLIC_URL` when set; otherwise `X-Forwarded-Proto` / `X-Forwarded-Host` (set by a reverse proxy)
/// or the `Host` header. Header values that are not a plausible host are ignored, so a client cannot
/// inject text into the locations other clients see.
pub fn for_request(req: &Request, public_url: Option<&str>, base_path: &str) -> String {
    if let Some(url) = public_url {
        return format!("{url}{base_path}");
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = match header("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host = header("x-forwarded-host")
        .filter(|h| is_host(h))
        .or_else(|| header("host").filter(|h| is_host(h)))
        .map(str::to_owned)
        .or_else(|| req.local_addr().as_socket_addr().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{scheme}://{host}{base_path}")
}

fn is_host(h: &str) -> bool {
    h.len() <= 255
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
}
