//! The response types of the SCIM routes, as poem-openapi documents and sends them.

use poem::http::StatusCode;
use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;
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
