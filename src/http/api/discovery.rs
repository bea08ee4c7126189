//! Service provider discovery (RFC 7644 §4): ServiceProviderConfig, Schemas and ResourceTypes,
//! readable without a key, and the OpenAPI explorer and document.

use std::sync::{Arc, OnceLock};

use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::{Binary, Html, Json, PlainText};
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::{Value, json};

use super::{Result, Shared, Tag};
use crate::http::errors::MAX_BODY;
use crate::http::responses::{DocumentResponse, ErrorResponse};
use crate::service::LIST_RESPONSE_SCHEMA;
use scim::bulk;
use scim::schema::Registry;
use scim::{ResourceType, ScimError};

/// The OpenAPI explorer page and document, filled in once the API description is built.
#[derive(Default)]
pub struct Explorer {
    /// Swagger UI HTML with the document inlined (no CDN).
    pub html: OnceLock<String>,
    /// The OpenAPI document (JSON).
    pub spec: OnceLock<String>,
}

/// The OpenAPI document, already serialised.
#[derive(ApiResponse)]
enum SpecResponse {
    /// The document.
    #[oai(status = 200, content_type = "application/json")]
    Ok(PlainText<String>),
}

/// The explorer's icon (a 32×32 PNG in an ICO).
#[derive(ApiResponse)]
pub enum FaviconResponse {
    /// The icon.
    #[oai(status = 200, content_type = "image/x-icon")]
    Ok(Binary<&'static [u8]>),
}

/// The explorer's icon, for `BASE_PATH/favicon.ico` and the root `/favicon.ico`.
pub fn favicon() -> FaviconResponse {
    FaviconResponse::Ok(Binary(include_bytes!("../favicon.ico")))
}

/// `GET /.well-known/jwks.json`: the public key SETs are signed with (RFC 7517 JWK Set, media type
/// `application/jwk-set+json`), readable without a key, at the origin's root whatever BASE_PATH is.
/// HS256 and unsigned SETs have no public key: an empty set. SETs off: 404.
pub fn jwks(service: &crate::service::Service) -> poem::Response {
    match service.security_events() {
        Some(events) => poem::Response::builder()
            .content_type("application/jwk-set+json")
            .body(events.signer.jwks().to_string()),
        None => crate::http::errors::scim_response(&ScimError::not_found(
            "security events are off (no SET_SIGNING_* setting): there is no key to publish",
        )),
    }
}

/// The discovery routes.
pub struct DiscoveryApi {
    pub(super) shared: Arc<Shared>,
    /// PAGE_SIZE, as /ServiceProviderConfig states it.
    pub(super) page_size: usize,
    /// The explorer, for the `/` and `/openapi.json` routes.
    pub(super) explorer: Arc<Explorer>,
}

impl DiscoveryApi {
    fn registry(&self) -> &Registry {
        self.shared.service.registry()
    }
}

#[OpenApi]
impl DiscoveryApi {
    /// What this server supports (RFC 7643 §5), stated exactly: features not built yet say
    /// `supported: false`. Readable without a key, like the earlier server's discovery endpoints.
    #[oai(
        path = "/ServiceProviderConfig",
        method = "get",
        tag = "Tag::Discovery"
    )]
    async fn service_provider_config(&self, req: &Request) -> Result<DocumentResponse> {
        let base = self.shared.base(req);
        let location = format!("{base}/ServiceProviderConfig");
        let mut doc = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": format!("{base}/"),
            "patch": {"supported": true},
            "bulk": {
                "supported": true,
                "maxOperations": bulk::MAX_OPERATIONS,
                "maxPayloadSize": MAX_BODY,
            },
            "filter": {"supported": true, "maxResults": self.page_size},
            "changePassword": {"supported": true},
            "sort": {"supported": true},
            "pagination": {
                "cursor": true,
                "index": true,
                "defaultPaginationMethod": "index",
                "defaultPageSize": self.page_size,
                "maxPageSize": self.page_size,
                "cursorTimeout": self.shared.service.cursor_timeout(),
            },
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "API key",
                "description": "An API key from API_KEY, as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
                "primary": true
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": location}
        });
        // RFC 9967 §4: present only when SETs are configured; absent means not supported.
        if let Some(events) = self.shared.service.security_events() {
            let async_requests = self.shared.service.async_enabled();
            doc["securityEvents"] = events.service_provider_config(async_requests);
        }
        Ok(DocumentResponse::Ok(Json(doc)))
    }

    /// The schemas this server uses (RFC 7644 §4, RFC 7643 §7), as a ListResponse. No key needed.
    #[oai(path = "/Schemas", method = "get", tag = "Tag::Discovery")]
    async fn schemas(&self, req: &Request) -> Result<DocumentResponse> {
        let base = self.shared.base(req);
        let docs = self
            .registry()
            .all_schemas()
            .into_iter()
            .map(|s| Registry::schema_document(s, &base).map_err(unserialisable))
            .collect::<std::result::Result<Vec<Value>, ScimError>>()?;
        Ok(DocumentResponse::Ok(Json(list_response(docs))))
    }

    /// One schema by its URN (case-insensitive). No key needed.
    #[oai(path = "/Schemas/:id", method = "get", tag = "Tag::Discovery")]
    async fn schema(&self, req: &Request, id: Path<String>) -> Result<DocumentResponse> {
        let schema = self
            .registry()
            .schema(&id.0)
            .ok_or_else(|| ScimError::not_found(format!("no schema {}", id.0)))?;
        let doc =
            Registry::schema_document(schema, &self.shared.base(req)).map_err(unserialisable)?;
        Ok(DocumentResponse::Ok(Json(doc)))
    }

    /// The resource types (RFC 7643 §6) with their extensions, as a ListResponse. No key needed.
    #[oai(path = "/ResourceTypes", method = "get", tag = "Tag::Discovery")]
    async fn resource_types(&self, req: &Request) -> Result<DocumentResponse> {
        let base = self.shared.base(req);
        let docs: Vec<Value> = ResourceType::ALL
            .iter()
            .map(|rt| self.registry().resource_type_document(*rt, &base))
            .collect();
        Ok(DocumentResponse::Ok(Json(list_response(docs))))
    }

    /// One resource type by name (`User`, `Group`). No key needed.
    #[oai(path = "/ResourceTypes/:id", method = "get", tag = "Tag::Discovery")]
    async fn resource_type(&self, req: &Request, id: Path<String>) -> Result<DocumentResponse> {
        let rt = ResourceType::ALL
            .into_iter()
            .find(|rt| rt.name().eq_ignore_ascii_case(&id.0))
            .ok_or_else(|| ScimError::not_found(format!("no resource type {}", id.0)))?;
        Ok(DocumentResponse::Ok(Json(
            self.registry()
                .resource_type_document(rt, &self.shared.base(req)),
        )))
    }

    /// The OpenAPI explorer (Swagger UI, served from the binary).
    #[oai(path = "/", method = "get", hidden)]
    async fn explorer(&self) -> Result<Html<String>> {
        built(&self.explorer.html).map(Html)
    }

    /// The explorer's icon.
    #[oai(path = "/favicon.ico", method = "get", hidden)]
    async fn favicon(&self) -> FaviconResponse {
        favicon()
    }

    /// This API's OpenAPI document.
    #[oai(path = "/openapi.json", method = "get", hidden)]
    async fn openapi_json(&self) -> Result<SpecResponse> {
        built(&self.explorer.spec).map(|spec| SpecResponse::Ok(PlainText(spec)))
    }
}

/// A part of the explorer. Both are set before scimd serves a request; should one ever be missing,
/// the answer is a 500, never an empty page.
fn built(part: &OnceLock<String>) -> Result<String> {
    part.get().cloned().ok_or_else(|| {
        tracing::error!("the OpenAPI document was not built before serving");
        ErrorResponse::from(ScimError::new(500, "the OpenAPI document is not available"))
    })
}

/// A ListResponse (RFC 7644 §3.4.2) holding every one of `resources`.
fn list_response(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// A schema that cannot be serialised is a server fault: logged here, answered 500, never served as
/// an empty document.
fn unserialisable(e: serde_json::Error) -> ScimError {
    tracing::error!(error = %e, "a schema could not be serialised for /Schemas");
    ScimError::new(500, "a schema could not be serialised")
}
