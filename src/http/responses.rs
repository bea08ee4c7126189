//! The response types of the SCIM routes, as poem-openapi documents and sends them.

use poem::http::StatusCode;
use poem_openapi::ApiResponse;
use poem_openapi::payload::{Json, PlainText};
use serde_json::Value;

use crate::service::ResourceDoc;
use scim::ScimError;

/// The answer to a PATCH (RFC 7644 §3.5.2).
#[derive(ApiResponse)]
pub enum PatchedResponse {
    /// The resource as it is now.
    #[oai(status = 200, content_type = "application/scim+json")]
    Ok(Json<Value>, #[oai(header = "ETag")] String),
    /// Applied; a Group answers without its (possibly huge) representation unless asked for one.
    #[oai(status = 204)]
    NoContent(#[oai(header = "ETag")] String),
    /// Accepted for asynchronous execution (`Prefer: respond-async`, RFC 9967 §3): no body;
    /// `Set-Txn` names the request, `Location` is where its outcome is fetched.
    #[oai(status = 202)]
    Accepted(
        #[oai(header = "Set-Txn")] String,
        #[oai(header = "Preference-Applied")] String,
        #[oai(header = "Location")] String,
    ),
}

/// The SCIM media type (RFC 7644 §8.1).
pub const SCIM_JSON: &str = "application/scim+json";

/// A single resource.
#[derive(ApiResponse)]
pub enum ResourceResponse {
    /// The resource.
    #[oai(status = 200, content_type = "application/scim+json")]
    Ok(Json<Value>, #[oai(header = "ETag")] String),
    /// The resource was created; `Location` is its URL.
    #[oai(status = 201, content_type = "application/scim+json")]
    Created(
        Json<Value>,
        #[oai(header = "ETag")] String,
        #[oai(header = "Location")] String,
    ),
    /// `If-None-Match` matched the current version.
    #[oai(status = 304)]
    NotModified(#[oai(header = "ETag")] String),
    /// Accepted for asynchronous execution (`Prefer: respond-async`, RFC 9967 §3): no body;
    /// `Set-Txn` names the request, `Location` is where its outcome is fetched.
    #[oai(status = 202)]
    Accepted(
        #[oai(header = "Set-Txn")] String,
        #[oai(header = "Preference-Applied")] String,
        #[oai(header = "Location")] String,
    ),
}

impl ResourceResponse {
    /// 200 with the resource and its ETag.
    pub fn ok(doc: ResourceDoc) -> Self {
        ResourceResponse::Ok(Json(doc.doc), scim::etag::format(doc.version))
    }

    /// 201 with the resource, its ETag and Location.
    pub fn created(doc: ResourceDoc) -> Self {
        ResourceResponse::Created(Json(doc.doc), scim::etag::format(doc.version), doc.location)
    }
}

/// A resource was deleted.
#[derive(ApiResponse)]
pub enum DeletedResponse {
    /// Deleted (RFC 7644 §3.6).
    #[oai(status = 204)]
    NoContent,
    /// Accepted for asynchronous execution (`Prefer: respond-async`, RFC 9967 §3): no body;
    /// `Set-Txn` names the request, `Location` is where its outcome is fetched.
    #[oai(status = 202)]
    Accepted(
        #[oai(header = "Set-Txn")] String,
        #[oai(header = "Preference-Applied")] String,
        #[oai(header = "Location")] String,
    ),
}

/// The answer to a BulkRequest (RFC 7644 §3.7).
#[derive(ApiResponse)]
pub enum BulkResponse {
    /// The BulkResponse, each operation with its own status.
    #[oai(status = 200, content_type = "application/scim+json")]
    Ok(Json<Value>),
    /// Accepted for asynchronous execution (`Prefer: respond-async`, RFC 9967 §3): no body;
    /// `Set-Txn` names the request, `Location` is where its outcome is fetched.
    #[oai(status = 202)]
    Accepted(
        #[oai(header = "Set-Txn")] String,
        #[oai(header = "Preference-Applied")] String,
        #[oai(header = "Location")] String,
    ),
}

/// The outcome of an asynchronous request (RFC 9967 §3), for the key that asked for it.
#[derive(ApiResponse)]
pub enum AsyncOutcomeResponse {
    /// Done: its `misc:asyncresp` SET, a compact JWS.
    #[oai(status = 200, content_type = "application/secevent+jwt")]
    Set(PlainText<String>),
    /// Done: a Bulk's SETs, `{"sets": {"Set-Txn:index": SET}}` (the shape of an RFC 8936 poll
    /// answer); or, while SETs are off (no SET_SIGNING_* setting), the SET's claims as JSON.
    #[oai(status = 200, content_type = "application/json")]
    Json(Json<Value>),
    /// Accepted and not run yet: ask again after `Retry-After` seconds.
    #[oai(status = 202)]
    Pending(#[oai(header = "Retry-After")] u64),
}

/// A JSON document: ListResponse, ServiceProviderConfig, status.
#[derive(ApiResponse)]
pub enum DocumentResponse {
    /// The document.
    #[oai(status = 200, content_type = "application/scim+json")]
    Ok(Json<Value>),
}

/// A SCIM error (RFC 7644 §3.12): `{"schemas": [...Error], "status": "409", "scimType": "uniqueness", "detail": "..."}`.
#[derive(ApiResponse)]
pub enum ErrorResponse {
    /// The request was wrong; nothing was changed.
    #[oai(status_range = "4XX", content_type = "application/scim+json")]
    Client(StatusCode, Json<Value>),
    /// The server could not complete the request (503: retry).
    #[oai(status_range = "5XX", content_type = "application/scim+json")]
    Server(StatusCode, Json<Value>),
}

impl From<ScimError> for ErrorResponse {
    fn from(e: ScimError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = Json(e.to_body());
        if status.is_server_error() {
            ErrorResponse::Server(status, body)
        } else {
            ErrorResponse::Client(status, body)
        }
    }
}
