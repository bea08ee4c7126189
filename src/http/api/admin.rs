//! Health, readiness and operations: `/health`, `/ready`, `/status` and the projection controls
//! `scimd replay` and `scimd projection retry` call while the server holds the store.

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::{Value, json};

use super::{Result, Shared, Tag};
use crate::http::auth::ApiKeyAuth;
use crate::http::responses::DocumentResponse;
use crate::service::{Service, Subscribers, WriterStatus};
use poem::http::StatusCode;

/// The result of `GET /health`.
#[derive(ApiResponse)]
enum HealthResponse {
    /// scimd is up.
    #[oai(status = 200)]
    Ok(Json<Value>),
    /// The store cannot be read.
    #[oai(status = 503)]
    Unavailable(Json<Value>),
}

/// The operations routes.
pub struct AdminApi {
    pub(super) shared: Arc<Shared>,
    /// Progress and controls of the log subscribers.
    pub(super) subscribers: Arc<Subscribers>,
    /// The id of the store served, so that operator commands can check they reached the server
    /// of their DATA_PATH (`http::reach`).
    pub(super) store_id: String,
}

#[OpenApi]
impl AdminApi {
    /// The store's id, the log position, the number of Users and Groups, the last events (position, kind,
    /// resource, key name, time) and, for each log subscriber (AMQP publisher, projections), its
    /// checkpoint, lag (events not yet handled), state, last error and parked changes (count and
    /// the first 100 with their error). A browser (`Accept` preferring `text/html`) gets the status
    /// page instead, which reads this document with the key it asks for.
    #[oai(path = "/status", method = "get", tag = "Tag::Operations")]
    async fn status(&self, _auth: ApiKeyAuth) -> Result<DocumentResponse> {
        let subscribers = self.subscribers.clone();
        let mut status = self
            .shared
            .service
            .read(move |s| s.status(&subscribers))
            .await
            .inspect_err(|e| tracing::error!(error = %e, "GET /status failed"))?;
        status["storeId"] = json!(self.store_id);
        Ok(DocumentResponse::Ok(Json(status)))
    }

    /// Rebuild a projection from position 0 while scimd runs (`scimd replay` calls this when the
    /// server holds the store). `fresh=true` empties the backend first. Answers the log position
    /// the rebuild must reach; follow it in `/status`.
    #[oai(
        path = "/admin/projections/:name/rebuild",
        method = "post",
        tag = "Tag::Operations"
    )]
    async fn rebuild_projection(
        &self,
        _auth: ApiKeyAuth,
        name: Path<String>,
        fresh: Query<Option<bool>>,
    ) -> Result<DocumentResponse> {
        let target = self
            .subscribers
            .rebuild(&name.0, fresh.0.unwrap_or(false))
            .await?;
        Ok(DocumentResponse::Ok(Json(
            json!({"projection": name.0, "target": target}),
        )))
    }

    /// Re-apply a projection's parked changes (`scimd projection retry` calls this when the server
    /// holds the store).
    #[oai(
        path = "/admin/projections/:name/retry",
        method = "post",
        tag = "Tag::Operations"
    )]
    async fn retry_projection(
        &self,
        _auth: ApiKeyAuth,
        name: Path<String>,
    ) -> Result<DocumentResponse> {
        self.subscribers.retry_parked(&name.0).await?;
        Ok(DocumentResponse::Ok(Json(json!({"projection": name.0}))))
    }

    /// Liveness: `{"status":"OK"}` while the process can serve requests; 503 when the store's
    /// writer is gone for good (it kept panicking) or stalled on one batch for longer than
    /// `WRITER_STALL_TIMEOUT`: only a restart of the process helps then. No key needed.
    #[oai(path = "/health", method = "get", tag = "Tag::Operations")]
    async fn health(&self) -> HealthResponse {
        match liveness(&self.shared.service) {
            (StatusCode::OK, body) => HealthResponse::Ok(Json(body)),
            (_, body) => HealthResponse::Unavailable(Json(body)),
        }
    }

    /// Readiness: 200 when the store can be read and its writer takes writes, else 503 (the
    /// store is being reopened after a fault, or the writer is stalled or gone). No key needed.
    #[oai(path = "/ready", method = "get", tag = "Tag::Operations")]
    async fn ready(&self) -> HealthResponse {
        // One small read, kept off the read pool: a pool busy with expensive queries must not
        // make a load balancer take this node out.
        let writer = self.shared.service.writer_status();
        match self.shared.service.position() {
            Ok(position) if writer.ready() => {
                HealthResponse::Ok(Json(json!({"status": "OK", "position": position})))
            }
            _ => HealthResponse::Unavailable(Json(
                json!({"status": "unavailable", "writer": describe(writer)}),
            )),
        }
    }
}

/// `/health`'s status and body, also served at the root when BASE_PATH is set.
pub(crate) fn liveness(service: &Service) -> (StatusCode, Value) {
    let writer = service.writer_status();
    if writer.alive() {
        (StatusCode::OK, json!({"status": "OK"}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "writer": describe(writer)}),
        )
    }
}

/// The writer's state in words, for the probes' bodies.
fn describe(writer: WriterStatus) -> String {
    match writer {
        WriterStatus::Running => "running".into(),
        WriterStatus::Restarting => "reopening the store".into(),
        WriterStatus::Stalled(busy) => format!("stalled on one batch for {} s", busy.as_secs()),
        WriterStatus::Dead => "stopped after repeated panics; restart scimd".into(),
        WriterStatus::Stopped => "shut down".into(),
    }
}
