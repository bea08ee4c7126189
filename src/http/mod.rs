//! The HTTP front: routes (poem-openapi), authentication, SCIM error bodies for every failure
//! (the framework's own included), the 1 MiB body limit, request logging and graceful shutdown.

mod allow;
mod api;
mod auth;
mod base_url;
mod errors;
mod header_deadline;
mod intake;
mod metrics;
mod openapi;
mod prefer;
pub mod reach;
mod responses;
mod status_page;
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Route};
use poem_openapi::OpenApiService;

pub use auth::{ApiKeys, client_key};

use crate::config::ServeConfig;
use crate::service::{Service, Subscribers};

/// Builds the whole HTTP application: the SCIM API under BASE_PATH, `/health` and `/metrics` at the
/// root.
pub fn app(
    service: Arc<Service>,
    subscribers: Arc<Subscribers>,
    keys: Arc<ApiKeys>,
    config: &ServeConfig,
    store_id: String,
) -> impl Endpoint + use<> {
    let base_path = config.base_path();
    let explorer = Arc::new(api::Explorer::default());
    let liveness = service.clone();
    let scrape = metrics::Scrape {
        service: service.clone(),
        subscribers: subscribers.clone(),
        public: config.metrics_public,
    };
    let api = api::api(api::Parts {
        service: service.clone(),
        subscribers,
        base_path: base_path.clone(),
        public_url: config.public_url(),
        page_size: config.page_size,
        explorer: explorer.clone(),
        store_id,
    });
    let server = if base_path.is_empty() {
        "/".to_owned()
    } else {
        base_path.clone()
    };
    let openapi = OpenApiService::new(api, "scimd", env!("CARGO_PKG_VERSION"))
        .description(
            "SCIM 2.0 (RFC 7643/7644) provisioning server. Every write is an event in a durable, \
             append-only log. Authenticate with an API key as `Authorization: Bearer <key>` or \
             `X-API-Key: <key>`. Errors are SCIM error bodies (RFC 7644 §3.12).",
        )
        .server(server);
    let spec = openapi::typed(&openapi.spec(), service.registry());
    let _ = explorer
        .html
        .set(openapi::explorer_html(&openapi.swagger_ui_html(), &spec));
    let templates = Arc::new(metrics::Templates::new(&spec, &base_path));
    let allowed = Arc::new(allow::Allowed::new(
        &serde_json::from_str(&spec).unwrap_or_default(),
        &base_path,
        &[
            ("/", &["GET"]),
            ("/openapi.json", &["GET"]),
            ("/favicon.ico", &["GET"]),
        ],
        &[
            ("/metrics", &["GET"]),
            ("/.well-known/jwks.json", &["GET"]),
            ("/health", &["GET"]),
            ("/favicon.ico", &["GET"]),
        ],
    ));
    let _ = explorer.spec.set(spec);
    let keys_of = service.clone();
    let routes = Route::new().at("/metrics", scrape).at(
        "/.well-known/jwks.json",
        poem::get(poem::endpoint::make_sync(move |_| api::jwks(&keys_of))),
    );
    let routes = if base_path.is_empty() {
        routes.nest("/", openapi.into_endpoint())
    } else {
        let api = openapi.into_endpoint();
        routes
            // `get`: any other method is 405 (with `Allow`), as at BASE_PATH/health.
            .at(
                "/health",
                poem::get(poem::endpoint::make_sync(move |_| {
                    let (status, body) = api::liveness(&liveness);
                    (status, poem::web::Json(body))
                })),
            )
            // Browsers ask the origin's root for it, whatever BASE_PATH is.
            .at(
                "/favicon.ico",
                poem::get(poem::endpoint::make_sync(|_| api::favicon())),
            )
            .nest(&base_path, api)
    };
    let status_path: Arc<str> = format!("{base_path}/status").into();
    let limits = intake::Limits {
        body: Duration::from_secs(config.body_timeout),
        request: Duration::from_secs(config.request_timeout),
    };
    let intake_keys = keys.clone();
    routes
        .around(move |next, req| status_page::serve(next, req, status_path.clone()))
        .around(move |next, req| metrics::record(next, req, templates.clone()))
        .data(keys)
        .around(errors::scim_errors)
        .around(move |next, req| allow::on_405(next, req, allowed.clone()))
        .around(move |next, req| intake::intake(next, req, intake_keys.clone(), limits))
        .around(log_request)
        .around(one_trailing_slash)
}

/// A single trailing slash names the route itself (`GET /Users/?filter=…` is `GET /Users?filter=…`):
/// clients send it, and RFC 7644 §3.2's endpoints have no resource at the slashed path.
async fn one_trailing_slash<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') && !path.ends_with("//") {
        let trimmed = &path[..path.len() - 1];
        let target = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = target.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = poem::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// One line per request at INFO: method, path, status, latency. No query string (it may carry
/// personal data in filters) and no headers (they carry keys).
async fn log_request<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let result = next.call(req).await.map(IntoResponse::into_response);
    let status = match &result {
        Ok(resp) => resp.status(),
        Err(e) => e.status(),
    };
    tracing::info!(
        %method,
        path,
        status = status.as_u16(),
        // Three decimals (µs): the float's full expansion (0.12933199999999997) is noise in a log.
        latency_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0,
        "request"
    );
    result
}

/// Serves `app` on `config.listen` (with TLS when TLS_CERT and TLS_KEY are set) until SIGTERM or
/// Ctrl-C, then stops accepting, lets in-flight requests finish (up to 30 s) and returns. Once
/// listening, it publishes where it answers in `data_path` (see `reach`), with `store_id`.
pub async fn serve(
    app: impl Endpoint + 'static,
    config: &ServeConfig,
    data_path: &std::path::Path,
    store_id: &str,
) -> anyhow::Result<()> {
    let publish = |addrs: Vec<poem::web::LocalAddr>, scheme: &str| -> anyhow::Result<()> {
        let bound = addrs
            .iter()
            .find_map(|a| a.as_socket_addr().copied())
            .unwrap_or(config.listen);
        let reach = reach::Reach {
            url: format!(
                "{scheme}://{}{}",
                reach::connect_addr(bound),
                config.base_path()
            ),
            store_id: store_id.to_owned(),
            pid: std::process::id(),
        };
        reach::publish(data_path, &reach)?;
        tracing::info!(url = %reach.url, "listening; published in DATA_PATH/server.json");
        Ok(())
    };
    let grace = Some(Duration::from_secs(30));
    let header_timeout = Duration::from_secs(config.header_timeout);
    let listener = TcpListener::bind(config.listen);
    match config.tls_files()? {
        Some(files) => {
            let configs = tls::configs(tls::TlsFiles {
                cert: files.0,
                key: files.1,
            })?;
            let acceptor = listener.rustls(configs).into_acceptor().await?;
            publish(acceptor.local_addr(), "https")?;
            poem::Server::new_with_acceptor(header_deadline::HeaderDeadline::new(
                acceptor,
                header_timeout,
            ))
            .idle_timeout(IDLE_TIMEOUT)
            .run_with_graceful_shutdown(app, shutdown_signal(), grace)
            .await?
        }
        None => {
            let acceptor = listener.into_acceptor().await?;
            publish(acceptor.local_addr(), "http")?;
            poem::Server::new_with_acceptor(header_deadline::HeaderDeadline::new(
                acceptor,
                header_timeout,
            ))
            .idle_timeout(IDLE_TIMEOUT)
            .run_with_graceful_shutdown(app, shutdown_signal(), grace)
            .await?
        }
    }
    Ok(())
}

/// A connection that neither sends nor receives a byte this long is closed (once any request on
/// it is answered): longer than the usual load balancer's keep-alive, so the balancer, not
/// scimd, closes an idle connection it pools.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
