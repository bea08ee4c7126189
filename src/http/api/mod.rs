//! The SCIM routes (RFC 7644 §3) as poem-openapi APIs, one per job: `resources` (Users, Groups,
//! search, Bulk, `/Me`), `discovery` (ServiceProviderConfig, Schemas, ResourceTypes, the OpenAPI
//! explorer), `async_outcomes` (the outcomes of asynchronous requests) and `admin` (health, readiness, status, projection controls). The handlers parse
//! the request, call the service, and shape the response; everything behind them is in `service/`.

mod admin;
mod async_outcomes;
mod discovery;
mod resources;

use std::sync::Arc;
use std::time::Duration;

use poem::Request;
use poem_openapi::Tags;

pub(crate) use admin::liveness;
pub use discovery::{Explorer, favicon, jwks};

use super::auth::ApiKeyAuth;
use super::base_url;
use super::prefer::Preferences;
use super::responses::ErrorResponse;
use crate::service::{AsyncCall, Service, Submitted, Subscribers, WriteContext};
use scim::schema::View;

/// What a handler answers: its response, or a SCIM error.
type Result<T> = std::result::Result<T, ErrorResponse>;

/// The groups of operations in the OpenAPI document.
#[derive(Tags)]
enum Tag {
    /// RFC 7643 §4.1 User resources.
    Users,
    /// RFC 7643 §4.2 Group resources.
    Groups,
    /// RFC 7644 §3.4.3 searches across Users and Groups.
    Search,
    /// RFC 7644 §3.7 Bulk operations on Users and Groups.
    Bulk,
    /// RFC 7644 §4 service provider discovery.
    Discovery,
    /// RFC 9967 §3 outcomes of asynchronous requests.
    Events,
    /// Health and operations.
    Operations,
}

/// Every route, as one API for `OpenApiService` (poem-openapi lists a tuple's members in order).
pub type Api = (
    resources::UsersApi,
    resources::GroupsApi,
    resources::RootApi,
    async_outcomes::AsyncOutcomesApi,
    discovery::DiscoveryApi,
    admin::AdminApi,
);

/// What the routes are built from.
pub struct Parts {
    /// The service the handlers call.
    pub service: Arc<Service>,
    /// The log subscribers, for `/status` and the admin routes.
    pub subscribers: Arc<Subscribers>,
    /// Normalised BASE_PATH.
    pub base_path: String,
    /// Normalised PUBLIC_URL.
    pub public_url: Option<String>,
    /// PAGE_SIZE, as /ServiceProviderConfig states it.
    pub page_size: usize,
    /// The explorer, for the `/` and `/openapi.json` routes.
    pub explorer: Arc<Explorer>,
    /// The id of the store this server serves, shown in `/status` (see `http::reach`).
    pub store_id: String,
}

/// Every route of the SCIM API.
pub fn api(parts: Parts) -> Api {
    let shared = Arc::new(Shared {
        service: parts.service,
        base_path: parts.base_path,
        public_url: parts.public_url,
    });
    (
        resources::UsersApi(shared.clone()),
        resources::GroupsApi(shared.clone()),
        resources::RootApi(shared.clone()),
        async_outcomes::AsyncOutcomesApi(shared.clone()),
        discovery::DiscoveryApi {
            shared: shared.clone(),
            page_size: parts.page_size,
            explorer: parts.explorer,
        },
        admin::AdminApi {
            shared,
            subscribers: parts.subscribers,
            store_id: parts.store_id,
        },
    )
}

/// What every group of routes needs: the service, and what URLs in responses start with.
struct Shared {
    service: Arc<Service>,
    base_path: String,
    public_url: Option<String>,
}

impl Shared {
    /// For a request that asked for `respond-async` (RFC 7240 §4.1) while ASYNC_REQUESTS is on:
    /// its `wait` preference, if any. `None`: answer it synchronously.
    fn respond_async(&self, req: &Request) -> Option<Option<Duration>> {
        let prefs = Preferences::of(req.headers());
        (prefs.respond_async && self.service.async_enabled()).then_some(prefs.wait)
    }

    /// Hands `call` to the service for asynchronous execution on behalf of `auth`'s key.
    async fn submit(
        &self,
        call: AsyncCall,
        auth: &ApiKeyAuth,
        req: &Request,
        wait: Option<Duration>,
        view: &View,
    ) -> Result<Submitted> {
        let actor = auth.actor().0.clone();
        Ok(self
            .service
            .submit(call, actor, &self.base(req), wait, view.clone())
            .await?)
    }

    /// Where the outcome of the asynchronous request `txn` is fetched (see `async_outcomes`).
    fn async_location(&self, req: &Request, txn: &str) -> String {
        format!("{}/Events/Async/{txn}", self.base(req))
    }

    /// The URL prefix of `meta.location` and `$ref` for this request.
    fn base(&self, req: &Request) -> String {
        base_url::for_request(req, self.public_url.as_deref(), &self.base_path)
    }

    /// Who writes (the key's actor) and the transaction id: `X-Request-Id` when it is given and
    /// at most 128 bytes, else a new UUID.
    fn ctx(auth: &ApiKeyAuth, req: &Request) -> WriteContext {
        let txn_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        WriteContext {
            actor: auth.actor().0.clone(),
            txn_id,
        }
    }
}
