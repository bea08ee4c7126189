//! `GET /Events/Async/{txn}`: the outcome of an asynchronous request (RFC 9967 §3), at the
//! `Location` its 202 named.
//!
//! Why this path: RFC 9967 leaves the URL to the server and asks only that it require client
//! authentication (§5); it sits beside the SET feeds under `/Events`, and `{txn}` is the `Set-Txn`
//! the 202 carried (or `Set-Txn:index` for one Bulk operation), the same `txn` the SET holds.

use std::sync::Arc;

use poem_openapi::OpenApi;
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, PlainText};
use serde_json::{Map, Value, json};

use super::{Result, Shared, Tag};
use crate::http::auth::ApiKeyAuth;
use crate::http::responses::AsyncOutcomeResponse;
use crate::service::{AsyncSet, AsyncStatus};

/// Seconds a client is asked to wait before it asks again for a pending outcome.
const RETRY_AFTER_SECS: u64 = 1;

/// The route of asynchronous outcomes.
pub struct AsyncOutcomesApi(pub(super) Arc<Shared>);

#[OpenApi]
impl AsyncOutcomesApi {
    /// The outcome of an asynchronous request (`Prefer: respond-async`, RFC 9967 §3), for the API
    /// key that made it (any other key, or an unknown or expired `txn`, gets 404): 202 with
    /// `Retry-After` while it waits to run, then 200 with its `misc:asyncresp` SET, whose event
    /// is one bulk-response operation (RFC 7644 §3.7.3: `method`, `status`, `location`,
    /// `version`, `response` with the SCIM error when it failed), as a compact JWS
    /// (`application/secevent+jwt`), or its claims as JSON while SETs are off. For a Bulk, `{"sets": {…}}`
    /// holds one SET per operation attempted, keyed by `Set-Txn:index`; `/Events/Async/{Set-Txn}:{index}`
    /// answers one of them. Outcomes are kept ASYNC_RETENTION_HOURS after they are decided.
    #[oai(path = "/Events/Async/:txn", method = "get", tag = "Tag::Events")]
    async fn outcome(&self, auth: ApiKeyAuth, txn: Path<String>) -> Result<AsyncOutcomeResponse> {
        let actor = auth.actor().0.clone();
        let txn = txn.0;
        let status = self
            .0
            .service
            .read(move |s| s.async_status(&txn, &actor))
            .await?;
        Ok(match status {
            AsyncStatus::Pending => AsyncOutcomeResponse::Pending(RETRY_AFTER_SECS),
            AsyncStatus::One(AsyncSet::Signed(jws)) => AsyncOutcomeResponse::Set(PlainText(jws)),
            AsyncStatus::One(AsyncSet::Claims(claims)) => AsyncOutcomeResponse::Json(Json(claims)),
            AsyncStatus::Several(sets) => {
                let sets: Map<String, Value> = sets
                    .into_iter()
                    .map(|(txn, set)| match set {
                        AsyncSet::Signed(jws) => (txn, Value::String(jws)),
                        AsyncSet::Claims(claims) => (txn, claims),
                    })
                    .collect();
                AsyncOutcomeResponse::Json(Json(json!({ "sets": sets })))
            }
        })
    }
}
