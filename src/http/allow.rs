//! RFC 9110 §15.5.6: a 405 response MUST carry `Allow`, listing the methods the resource supports.
//! The methods come from the OpenAPI document (every documented route) plus the few routes it
//! leaves out (the explorer, `/metrics`, the favicon), so the header never drifts from the routes.

use std::collections::BTreeMap;
use std::sync::Arc;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::Value;

/// The methods of every route, by path template (`/Users/{id}`), relative to BASE_PATH.
pub struct Allowed {
    base_path: String,
    /// Template segments (`None`: a parameter) and the methods, in the order `Allow` lists them.
    routes: Vec<(Vec<Option<String>>, Vec<String>)>,
    /// Routes served at the root whatever BASE_PATH is.
    root: BTreeMap<String, Vec<String>>,
}

/// The order methods are listed in.
const ORDER: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Allowed {
    /// The routes of `spec` (the OpenAPI document as JSON) served under `base_path`, plus
    /// `extra` (path and methods of the routes the document hides), plus `root` (routes served at
    /// the root, not under BASE_PATH).
    pub fn new(
        spec: &Value,
        base_path: &str,
        extra: &[(&str, &[&str])],
        root: &[(&str, &[&str])],
    ) -> Allowed {
        let mut by_path: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(paths) = spec.get("paths").and_then(Value::as_object) {
            for (path, item) in paths {
                let methods = item
                    .as_object()
                    .map(|ops| ops.keys().map(|m| m.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                by_path.insert(path.clone(), methods);
            }
        }
        for (path, methods) in extra {
            by_path
                .entry((*path).to_owned())
                .or_default()
                .extend(methods.iter().map(|m| (*m).to_owned()));
        }
        let routes = by_path
            .into_iter()
            .map(|(path, methods)| (segments(&path), ordered(methods)))
            .collect();
        let root = root
            .iter()
            .map(|(p, m)| {
                let methods = m.iter().map(|m| (*m).to_owned()).collect();
                ((*p).to_owned(), ordered(methods))
            })
            .collect();
        Allowed {
            base_path: base_path.to_owned(),
            routes,
            root,
        }
    }

    /// The `Allow` value for a request path, if a route serves that path.
    pub fn methods(&self, path: &str) -> Option<String> {
        if let Some(methods) = self.root.get(path) {
            return Some(methods.join(", "));
        }
        let relative = path.strip_prefix(self.base_path.as_str())?;
        let relative = if relative.is_empty() { "/" } else { relative };
        let wanted: Vec<&str> = relative.split('/').collect();
        let matches = |template: &[Option<String>]| {
            template.len() == wanted.len()
                && template.iter().zip(&wanted).all(|(t, w)| match t {
                    Some(literal) => literal == w,
                    None => !w.is_empty(),
                })
        };
        // `/Users/.search` before `/Users/{id}`: the template with the most literal segments wins.
        self.routes
            .iter()
            .filter(|(template, _)| matches(template))
            .max_by_key(|(template, _)| template.iter().filter(|t| t.is_some()).count())
            .map(|(_, methods)| methods.join(", "))
    }
}

/// `/Users/{id}` as `["", "Users", None]`.
fn segments(template: &str) -> Vec<Option<String>> {
    template
        .split('/')
        .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_owned()))
        .collect()
}

/// `methods` in the order of [`ORDER`], HEAD added wherever GET is (poem answers HEAD for GET).
fn ordered(mut methods: Vec<String>) -> Vec<String> {
    if methods.iter().any(|m| m == "GET") {
        methods.push("HEAD".into());
    }
    methods.sort_by_key(|m| ORDER.iter().position(|o| o == m).unwrap_or(ORDER.len()));
    methods.dedup();
    methods
}

/// Adds `Allow` to every 405 answer.
pub async fn on_405<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    allowed: Arc<Allowed>,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let mut resp = next.call(req).await?.into_response();
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(methods) = allowed.methods(&path)
        && let Ok(v) = HeaderValue::from_str(&methods)
    {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Allowed;

    #[test]
    fn templates_match_their_paths_and_list_methods_in_order() {
        let spec = json!({"paths": {
            "/Users": {"post": {}, "get": {}},
            "/Users/{id}": {"get": {}, "put": {}, "patch": {}, "delete": {}},
            "/Users/.search": {"post": {}},
        }});
        let a = Allowed::new(
            &spec,
            "/scim",
            &[("/", &["GET"])],
            &[("/metrics", &["GET"])],
        );
        assert_eq!(a.methods("/scim/Users").as_deref(), Some("GET, HEAD, POST"));
        assert_eq!(
            a.methods("/scim/Users/abc").as_deref(),
            Some("GET, HEAD, PUT, PATCH, DELETE")
        );
        assert_eq!(a.methods("/scim/Users/.search").as_deref(), Some("POST"));
        assert_eq!(a.methods("/scim").as_deref(), Some("GET, HEAD"));
        assert_eq!(a.methods("/metrics").as_deref(), Some("GET, HEAD"));
        assert_eq!(a.methods("/scim/Nope"), None);
        assert_eq!(a.methods("/scim/Users/"), None);
    }
}
