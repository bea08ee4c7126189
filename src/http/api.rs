//! The SCIM routes (RFC 7644 §3) as a poem-openapi API: the handlers parse the request, call the
//! service, and shape the response. Everything behind them is in `service/`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Html, Json, PlainText};
use poem_openapi::{ApiResponse, OpenApi, Tags};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::auth::ApiKeyAuth;
use super::base_url;
use super::errors::MAX_BODY;
use super::responses::{
    DeletedResponse, DocumentResponse, ErrorResponse, PatchedResponse, ResourceResponse,
};
use crate::fanout::projection::Control;
use crate::fanout::status::StatusBoard;
use crate::service::LIST_RESPONSE_SCHEMA;
use crate::service::{ListQuery, Service};
use crate::store::WriteContext;
use scim::bulk;
use scim::schema::{Registry, View};
use scim::{ResourceType, ScimError};

type Result<T> = std::result::Result<T, ErrorResponse>;

#[derive(Tags)]
enum Tag {
    /// RFC 7643 §4.1 User resources.
    Users,
    /// RFC 7643 §4.2 Group resources.
    Groups,
    /// RFC 7644 §3.7 Bulk operations on Users and Groups.
    Bulk,
    /// RFC 7644 §4 service provider discovery.
    Discovery,
    /// Health and operations.
    Operations,
}

/// The OpenAPI explorer page and document, filled in once the API description is built.
#[derive(Default)]
pub struct Explorer {
    /// Swagger UI HTML with the document inlined (no CDN).
    pub html: OnceLock<String>,
    /// The OpenAPI document (JSON).
    pub spec: OnceLock<String>,
}

/// The SCIM API.
pub struct ScimApi {
    /// The service the handlers call.
    pub service: Arc<Service>,
    /// Normalised BASE_PATH.
    pub base_path: String,
    /// Normalised PUBLIC_URL.
    pub public_url: Option<String>,
    /// PAGE_SIZE, as /ServiceProviderConfig states it.
    pub page_size: usize,
    /// The explorer, for the `/` and `/openapi.json` routes.
    pub explorer: Arc<Explorer>,
    /// Progress of the log subscribers, for `/status`.
    pub board: Arc<StatusBoard>,
    /// The running projections, for the admin routes.
    pub projections: Arc<BTreeMap<String, mpsc::Sender<Control>>>,
}

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

/// The OpenAPI document, already serialised.
#[derive(ApiResponse)]
enum SpecResponse {
    /// The document.
    #[oai(status = 200, content_type = "application/json")]
    Ok(PlainText<String>),
}

impl ScimApi {
    fn base(&self, req: &Request) -> String {
        base_url::for_request(req, self.public_url.as_deref(), &self.base_path)
    }

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

    async fn send_control(&self, name: &str, control: Control) -> Result<()> {
        let sender = self.projections.get(name).ok_or_else(|| {
            ScimError::not_found(format!("no projection named {name} is running"))
        })?;
        sender
            .send(control)
            .await
            .map_err(|_| ScimError::unavailable(format!("projection {name} has stopped")))?;
        Ok(())
    }

    fn registry(&self) -> &Registry {
        self.service.registry()
    }

    async fn create(
        &self,
        rt: ResourceType,
        auth: &ApiKeyAuth,
        req: &Request,
        body: Value,
        view: &View,
    ) -> Result<ResourceResponse> {
        let doc = self
            .service
            .create(rt, body, Self::ctx(auth, req), &self.base(req), view)
            .await?;
        Ok(ResourceResponse::created(doc))
    }

    fn get(
        &self,
        rt: ResourceType,
        req: &Request,
        id: &str,
        if_none_match: Option<&str>,
        view: &View,
    ) -> Result<ResourceResponse> {
        let doc = self.service.get(rt, id, &self.base(req), view)?;
        if if_none_match.is_some_and(|h| scim::etag::matches(h, doc.version)) {
            return Ok(ResourceResponse::NotModified(scim::etag::format(
                doc.version,
            )));
        }
        Ok(ResourceResponse::ok(doc))
    }

    fn list(
        &self,
        types: &[ResourceType],
        req: &Request,
        query: &ListQuery,
        view: &View,
    ) -> Result<DocumentResponse> {
        let body = self.service.list(types, query, &self.base(req), view)?;
        Ok(DocumentResponse::Ok(Json(body)))
    }

    /// RFC 7644 §3.4.3: a search with a SearchRequest body.
    fn search(
        &self,
        types: &[ResourceType],
        req: &Request,
        body: &Value,
    ) -> Result<DocumentResponse> {
        let search = SearchRequest::parse(body)?;
        let view = View::new(search.attributes.as_deref(), search.excluded.as_deref());
        self.list(types, req, &search.query, &view)
    }

    // One argument per part of the request; bundling them would only rename the problem.
    #[allow(clippy::too_many_arguments)]
    async fn replace(
        &self,
        rt: ResourceType,
        auth: &ApiKeyAuth,
        req: &Request,
        id: &str,
        if_match: Option<String>,
        body: Value,
        view: &View,
    ) -> Result<ResourceResponse> {
        let doc = self
            .service
            .replace(
                rt,
                id,
                body,
                if_match,
                Self::ctx(auth, req),
                &self.base(req),
                view,
            )
            .await?;
        Ok(ResourceResponse::ok(doc))
    }

    async fn delete(
        &self,
        rt: ResourceType,
        auth: &ApiKeyAuth,
        req: &Request,
        id: &str,
        if_match: Option<String>,
    ) -> Result<DeletedResponse> {
        self.service
            .delete(rt, id, if_match, Self::ctx(auth, req))
            .await?;
        Ok(DeletedResponse::NoContent)
    }
}

#[OpenApi]
impl ScimApi {
    /// Create a User (RFC 7644 §3.3), validated against the User schemas (see `/Schemas`):
    /// names are case-insensitive, types are checked, unknown attributes are rejected (unless
    /// SCHEMA_MODE=lenient), readOnly ones ignored. `userName` is required and unique
    /// case-insensitively; `externalId` is unique among Users; every attribute a schema declares
    /// unique is enforced. Errors: 400 `invalidValue`/`invalidSyntax`, 409 `uniqueness`, 413 for
    /// bodies over 1 MiB. `attributes` / `excludedAttributes` shape the response.
    #[oai(path = "/Users", method = "post", tag = "Tag::Users")]
    async fn create_user(
        &self,
        auth: ApiKeyAuth,
        req: &Request,
        #[oai(name = "attributes")] attributes: Query<Option<String>>,
        #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
        body: Json<Value>,
    ) -> Result<ResourceResponse> {
        let view = View::new(attributes.0.as_deref(), excluded.0.as_deref());
        self.create(ResourceType::User, &auth, req, body.0, &view)
            .await
    }

    /// List Users (RFC 7644 §3.4.2): `filter` (the full filter language, RFC 7644 §3.4.2.2; a
    /// malformed one is 400 `invalidFilter` naming the column), `sortBy` (any attribute path;
    /// multi-valued: the primary value, else the first) and `sortOrder` (`ascending` by default;
    /// resources without a value come last ascending, first descending; ties by id), paged by
    /// `startIndex` (1-based) and `count` (capped at PAGE_SIZE; 0 gives only `totalResults`).
    /// `attributes` / `excludedAttributes` (comma-separated attribute paths) select what each
    /// resource shows (RFC 7644 §3.4.2.5). Cursor paging (RFC 9865): `cursor` (empty for the first
    /// page) with `count` answers `nextCursor` while more remain; a cursor pages after the last
    /// resource it saw, so concurrent writes never make a walk skip or repeat a resource that exists
    /// throughout. An altered or unknown cursor is 400 `invalidCursor`, an old one 400
    /// `expiredCursor`; `cursor` with `startIndex` is 400 `invalidValue`.
    // poem-openapi takes one handler argument per query parameter.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/Users", method = "get", tag = "Tag::Users")]
    async fn list_users(
        &self,
        _auth: ApiKeyAuth,
        req: &Request,
        filter: Query<Option<String>>,
        #[oai(name = "sortBy")] sort_by: Query<Option<String>>,
        #[oai(name = "sortOrder")] sort_order: Query<Option<String>>,
        #[oai(name = "startIndex")] start_index: Query<Option<i64>>,
        count: Query<Option<i64>>,
        cursor: Query<Option<String>>,
        #[oai(name = "attributes")] attributes: Query<Option<String>>,
        #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
    ) -> Result<DocumentResponse> {
        let view = View::new(attributes.0.as_deref(), excluded.0.as_deref());
        let query = ListQuery {
            filter: filter.0,
            sort_by: sort_by.0,
            sort_order: sort_order.0,
            start_index: start_index.0,
            count: count.0,
            cursor: cursor.0,
        };
        self.list(&[ResourceType::User], req, &query, &view)
    }

    /// Get a User (RFC 7644 §3.4.1). `If-None-Match` with the current ETag answers 304.
    /// `attributes` / `excludedAttributes` select what it shows.
    #[oai(path = "/Users/:id", method = "get", tag = "Tag::Users")]
    async fn get_user(
        &self,
        _auth: ApiKeyAuth,
        req: &Request,
        id: Path<String>,
        #[oai(name = "If-None-Match")] if_none_match: Header<Option<String>>,
        #[oai(name = "attributes")] attributes: Query<Option<String>>,
        #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
    ) -> Result<ResourceResponse> {
        let view = View::new(attributes.0.as_deref(), excluded.0.as_deref());
        self.get(
            ResourceType::User,
            req,
            &id.0,
            if_none_match.0.as_deref(),
            &view,
        )
    }

    /// Replace a User (RFC 7644 §3.5.1). `If-Match` with another version answers 412 and changes nothing.
    /// A `password` left out is kept, and so is an immutable attribute; changing an immutable
    /// attribute that has a value is 400 `mutability`.
    // poem-openapi takes one handler argument per header, query parameter and body.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/Users/:id", method = "put", tag = "Tag::Users")]
    async fn replace_user(
        &self,
        auth: ApiKeyAuth,
        req: &Request,
        id: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        #[oai(name = "attributes")] attributes: Query<Option<String>>,
        #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
        body: Json<Value>,
    ) -> Result<ResourceResponse> {
        let view = View::new(attributes.0.as_deref(), excluded.0.as_deref());
        self.replace(
            ResourceType::User,
            &auth,
            req,
            &id.0,
            if_match.0,
            body.0,
            &view,
        )
        .await
    }

    /// Delete a User (RFC 7644 §3.6); it leaves every group it was in, and those groups get a new version.
    #[oai(path = "/Users/:id", method = "delete", tag = "Tag::Users")]
    async fn delete_user(
        &self,
        auth: ApiKeyAuth,
        req: &Request,
        id: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<DeletedResponse> {
        self.delete(ResourceType::User, &auth, req, &id.0, if_match.0)
            .await
    }

    /// Modify a User with a PatchOp (RFC 7644 §3.5.2): `add`, `replace`, `remove`, all applied or
    /// none, as one new version. `If-Match` with another version answers 412. Answers 200 with the
    /// User (`attributes`/`excludedAttributes` apply). See the README for the client habits accepted.
    // poem-openapi takes one handler argument per header, query parameter and body.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/Users/:id", method = "patch", tag = "Tag::Users")]
    async fn patch_user(
        &self,
        auth: ApiKeyAuth,
        req: &Request,
        id: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        #[oai(name = "attributes")] attributes: Query<Option<String>>,
        #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
        body: Json<Value>,
    ) -> Result<PatchedResponse> {
        let view = View::new(attributes.0.as_deref(), excluded.0.as_deref());
        let doc = self
            .service
            .patch(
                ResourceType::User,
                &id.0,
                body.0,
                if_match.0,
                Self::ctx(&auth, req),
                &self.base(req),
                &view,
            )
            .await?;
        let etag = scim::etag::format(doc.version);
        Ok(PatchedResponse::Ok(Json(doc.doc), etag))
    }

    /// Create a Group (RFC 7644 §3.3). `displayName` is required. Each `members[].value` must be the id
    /// of an existing User or Group (400 `invalidValue` naming the missing ids); the server fills
    /// `type`, `$ref` and `display`.
    #[oai(path = "/Groups", method = "post", tag = "Tag::Groups")]
    async fn create_group(
        &self,
        auth: ApiKeyAuth,
        req: &Request,
        #[oai(name = "attributes")] attributes: Query<Option<String>>,
        #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
        body: Json<Value>,
    ) -> Result<ResourceResponse> {
        let view = View::new(attributes.0.as_deref(), excluded.0.as_deref());
        self.create(ResourceType::Group, &auth, req, body.0, &view)
            .await
    }

    /// List Groups (RFC 7644 §3.4.2), filtered, sorted and paged like `GET /Users`
    /// (`members[value eq "<id>"]` finds the groups a resource is a direct member of);
    /// `excludedAttributes=members` leaves out member lists.
    // poem-openapi takes one handler argument per query parameter.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/Groups", method = "get", tag = "Tag::Groups")]
    async fn list_groups(
        &self,
        _auth: ApiKeyAuth,
        req: &Request,
        filter: Query<Option<String>>,
        #[oai(name = "sortBy")] sort_by: Query<Option<String>>,
        #[oai(name = "sortOrder")] sort_order: Query<Option<String>>,
        #[oai(name = "startIndex")] start_index: Query<Option<i64>>,
        count: Query<Option<i64>>,
        cursor: Query<Option<String>>,
        #[oai(name = "attributes")] attributes: Query<Option<String>>,
        #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
    ) -> Result<DocumentResponse> {
        let view = View::new(attributes.0.as_deref(), excluded.0.as_deref());
        let query = ListQuery {
            filter: filter.0,
            sort_by: sort_by.0,
            sort_order: sort_order.0,
            start_index: start_index.0,
            count: count.0,
            cursor: cursor.0,
        };
        self.list(&[ResourceType::Group], req, &query, &view)
    }

    /// Get a Group with its members (RFC 7644 §3.4.1).
    #[oai(path = "/Groups/:id", method = "get", tag = "Tag::Groups")]
    async fn get_group(
        &self,
        _auth: ApiKeyAuth,
        req: &Request,
        id: Path<String>,
        #[oai(name = "If-None-Match")] if_none_match: Header<Option<String>>,
        #[oai(name = "attributes")] attributes: Query<Option<String>>,
        #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
    ) -> Result<ResourceResponse> {
        let view = View::new(attributes.0.as_deref(), excluded.0.as_deref());
        self.get(
            ResourceType::Group,
            req,
            &id.0,
            if_none_match.0.as_deref(),
            &view,
        )
    }

    /// Replace a Group (RFC 7644 §3.5.1), members included: a body without `members` empties the group.
    // poem-openapi takes one handler argument per header, query parameter and body.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/Groups/:id", method = "put", tag = "Tag::Groups")]
    async fn replace_group(
        &self,
        auth: ApiKeyAuth,
        req: &Request,
        id: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        #[oai(name = "attributes")] attributes: Query<Option<String>>,
        #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
        body: Json<Value>,
    ) -> Result<ResourceResponse> {
        let view = View::new(attributes.0.as_deref(), excluded.0.as_deref());
        self.replace(
            ResourceType::Group,
            &auth,
            req,
            &id.0,
            if_match.0,
            body.0,
            &view,
        )
        .await
    }

    /// Delete a Group (RFC 7644 §3.6); it leaves every group it was a member of.
    #[oai(path = "/Groups/:id", method = "delete", tag = "Tag::Groups")]
    async fn delete_group(
        &self,
        auth: ApiKeyAuth,
        req: &Request,
        id: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<DeletedResponse> {
        self.delete(ResourceType::Group, &auth, req, &id.0, if_match.0)
            .await
    }

    /// Modify a Group with a PatchOp (RFC 7644 §3.5.2); member changes cost the same on a group of
    /// any size. Answers 204 No Content, or 200 with the Group when `attributes` or
    /// `excludedAttributes` is given. `If-Match` with another version answers 412.
    // poem-openapi takes one handler argument per header, query parameter and body.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/Groups/:id", method = "patch", tag = "Tag::Groups")]
    async fn patch_group(
        &self,
        auth: ApiKeyAuth,
        req: &Request,
        id: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        #[oai(name = "attributes")] attributes: Query<Option<String>>,
        #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
        body: Json<Value>,
    ) -> Result<PatchedResponse> {
        let asked = attributes.0.is_some() || excluded.0.is_some();
        // A 204 carries no representation, so the member list (100,000 entries, perhaps) is not
        // read at all: that keeps a one-member PATCH O(1) on a group of any size.
        let view = if asked {
            View::new(attributes.0.as_deref(), excluded.0.as_deref())
        } else {
            View::new(None, Some("members"))
        };
        let doc = self
            .service
            .patch(
                ResourceType::Group,
                &id.0,
                body.0,
                if_match.0,
                Self::ctx(&auth, req),
                &self.base(req),
                &view,
            )
            .await?;
        let etag = scim::etag::format(doc.version);
        Ok(if asked {
            PatchedResponse::Ok(Json(doc.doc), etag)
        } else {
            PatchedResponse::NoContent(etag)
        })
    }

    /// Search Users and Groups together with POST (RFC 7644 §3.4.3). The SearchRequest body has
    /// `filter`, `sortBy`, `sortOrder`, `startIndex`, `count`, `cursor` (RFC 9865), `attributes` and
    /// `excludedAttributes` (arrays or comma-separated strings), with the meaning they have in
    /// `GET /Users`. An attribute one type does not define has no value there, so one filter spans
    /// both types.
    #[oai(path = "/.search", method = "post", tag = "Tag::Discovery")]
    async fn search_root(
        &self,
        _auth: ApiKeyAuth,
        req: &Request,
        body: Json<Value>,
    ) -> Result<DocumentResponse> {
        self.search(&ResourceType::ALL, req, &body.0)
    }

    /// Search Users with POST (RFC 7644 §3.4.3): a SearchRequest body, as for `POST /.search`.
    #[oai(path = "/Users/.search", method = "post", tag = "Tag::Users")]
    async fn search_users(
        &self,
        _auth: ApiKeyAuth,
        req: &Request,
        body: Json<Value>,
    ) -> Result<DocumentResponse> {
        self.search(&[ResourceType::User], req, &body.0)
    }

    /// Search Groups with POST (RFC 7644 §3.4.3): a SearchRequest body, as for `POST /.search`.
    #[oai(path = "/Groups/.search", method = "post", tag = "Tag::Groups")]
    async fn search_groups(
        &self,
        _auth: ApiKeyAuth,
        req: &Request,
        body: Json<Value>,
    ) -> Result<DocumentResponse> {
        self.search(&[ResourceType::Group], req, &body.0)
    }

    /// Bulk operations (RFC 7644 §3.7): POST, PUT, PATCH and DELETE of Users and Groups, with
    /// `bulkId` references, `failOnErrors` and `version` (as If-Match). At most 1,000 operations and
    /// 1 MiB (413 beyond). Answers a BulkResponse with each operation's own status.
    #[oai(path = "/Bulk", method = "post", tag = "Tag::Bulk")]
    async fn bulk(
        &self,
        auth: ApiKeyAuth,
        req: &Request,
        body: Json<Value>,
    ) -> Result<DocumentResponse> {
        let answer = self
            .service
            .bulk(body.0, Self::ctx(&auth, req), &self.base(req))
            .await?;
        Ok(DocumentResponse::Ok(Json(answer)))
    }

    /// `/Me` (RFC 7644 §3.11): 501. An API key authenticates a client, not a User, so there is no
    /// "me" to alias; the RFC asks for 501 from a server without the feature.
    #[oai(path = "/Me", method = "get", tag = "Tag::Users")]
    async fn get_me(&self, _auth: ApiKeyAuth) -> Result<DocumentResponse> {
        Err(no_me())
    }

    /// `/Me`: 501, as for GET.
    #[oai(path = "/Me", method = "post", tag = "Tag::Users")]
    async fn post_me(&self, _auth: ApiKeyAuth) -> Result<DocumentResponse> {
        Err(no_me())
    }

    /// `/Me`: 501, as for GET.
    #[oai(path = "/Me", method = "put", tag = "Tag::Users")]
    async fn put_me(&self, _auth: ApiKeyAuth) -> Result<DocumentResponse> {
        Err(no_me())
    }

    /// `/Me`: 501, as for GET.
    #[oai(path = "/Me", method = "patch", tag = "Tag::Users")]
    async fn patch_me(&self, _auth: ApiKeyAuth) -> Result<DocumentResponse> {
        Err(no_me())
    }

    /// `/Me`: 501, as for GET.
    #[oai(path = "/Me", method = "delete", tag = "Tag::Users")]
    async fn delete_me(&self, _auth: ApiKeyAuth) -> Result<DocumentResponse> {
        Err(no_me())
    }

    /// What this server supports (RFC 7643 §5), stated exactly: features not built yet say
    /// `supported: false`. Readable without a key, like the earlier server's discovery endpoints.
    #[oai(
        path = "/ServiceProviderConfig",
        method = "get",
        tag = "Tag::Discovery"
    )]
    async fn service_provider_config(&self, req: &Request) -> Result<DocumentResponse> {
        let location = format!("{}/ServiceProviderConfig", self.base(req));
        Ok(DocumentResponse::Ok(Json(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": format!("{}/", self.base(req)),
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
                "cursorTimeout": self.service.cursor_timeout(),
            },
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "API key",
                "description": "An API key from API_KEY, as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
                "primary": true
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": location}
        }))))
    }

    /// The schemas this server uses (RFC 7644 §4, RFC 7643 §7), as a ListResponse. No key needed.
    #[oai(path = "/Schemas", method = "get", tag = "Tag::Discovery")]
    async fn schemas(&self, req: &Request) -> Result<DocumentResponse> {
        let base = self.base(req);
        let docs: Vec<Value> = self
            .registry()
            .all_schemas()
            .into_iter()
            .map(|s| Registry::schema_document(s, &base))
            .collect();
        Ok(DocumentResponse::Ok(Json(list_response(docs))))
    }

    /// One schema by its URN (case-insensitive). No key needed.
    #[oai(path = "/Schemas/:id", method = "get", tag = "Tag::Discovery")]
    async fn schema(&self, req: &Request, id: Path<String>) -> Result<DocumentResponse> {
        let schema = self
            .registry()
            .schema(&id.0)
            .ok_or_else(|| ScimError::not_found(format!("no schema {}", id.0)))?;
        Ok(DocumentResponse::Ok(Json(Registry::schema_document(
            schema,
            &self.base(req),
        ))))
    }

    /// The resource types (RFC 7643 §6) with their extensions, as a ListResponse. No key needed.
    #[oai(path = "/ResourceTypes", method = "get", tag = "Tag::Discovery")]
    async fn resource_types(&self, req: &Request) -> Result<DocumentResponse> {
        let base = self.base(req);
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
            self.registry().resource_type_document(rt, &self.base(req)),
        )))
    }

    /// The log position and, for each log subscriber (AMQP publisher, projections), its checkpoint,
    /// lag (events not yet handled), state, parked changes and last error.
    #[oai(path = "/status", method = "get", tag = "Tag::Operations")]
    async fn status(&self, _auth: ApiKeyAuth) -> Result<DocumentResponse> {
        let position = self.service.position()?;
        let subscribers: serde_json::Map<String, Value> = self
            .board
            .all()
            .into_iter()
            .map(|(name, s)| {
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                v["lag"] = json!(position.saturating_sub(s.checkpoint));
                (name, v)
            })
            .collect();
        Ok(DocumentResponse::Ok(Json(json!({
            "position": position,
            "subscribers": subscribers,
        }))))
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
        let (accepted, answer) = tokio::sync::oneshot::channel();
        self.send_control(
            &name.0,
            Control::Rebuild {
                fresh: fresh.0.unwrap_or(false),
                accepted,
            },
        )
        .await?;
        // Answer once the runner has reset its checkpoints, so `/status` already shows the rebuild.
        let target = answer
            .await
            .map_err(|_| ScimError::unavailable(format!("projection {} has stopped", name.0)))?
            .map_err(|e| ScimError::unavailable(format!("the rebuild could not start: {e}")))?;
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
        self.send_control(&name.0, Control::RetryParked).await?;
        Ok(DocumentResponse::Ok(Json(json!({"projection": name.0}))))
    }

    /// Liveness: `{"status":"OK"}` while the process serves requests. No key needed.
    #[oai(path = "/health", method = "get", tag = "Tag::Operations")]
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(Json(json!({"status": "OK"})))
    }

    /// Readiness: 200 when the store can be read, else 503. No key needed.
    #[oai(path = "/ready", method = "get", tag = "Tag::Operations")]
    async fn ready(&self) -> HealthResponse {
        match self.service.store().snapshot().and_then(|s| s.position()) {
            Ok(position) => HealthResponse::Ok(Json(json!({"status": "OK", "position": position}))),
            Err(_) => HealthResponse::Unavailable(Json(json!({"status": "unavailable"}))),
        }
    }

    /// The OpenAPI explorer (Swagger UI, served from the binary).
    #[oai(path = "/", method = "get", hidden)]
    async fn explorer(&self) -> Html<String> {
        Html(self.explorer.html.get().cloned().unwrap_or_default())
    }

    /// This API's OpenAPI document.
    #[oai(path = "/openapi.json", method = "get", hidden)]
    async fn openapi_json(&self) -> SpecResponse {
        SpecResponse::Ok(PlainText(
            self.explorer.spec.get().cloned().unwrap_or_default(),
        ))
    }
}

/// A ListResponse (RFC 7644 §3.4.2) holding every one of `resources`.
/// The answer to every `/Me` request.
fn no_me() -> ErrorResponse {
    ScimError::new(
        501,
        "/Me is not supported: an API key authenticates a client, not a User (RFC 7644 §3.11)",
    )
    .into()
}

fn list_response(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// RFC 7644 §3.4.3: the body of a search request.
struct SearchRequest {
    query: ListQuery,
    attributes: Option<String>,
    excluded: Option<String>,
}

impl SearchRequest {
    /// Reads the members this server uses; a member of the wrong type is 400 `invalidSyntax`.
    fn parse(body: &Value) -> std::result::Result<SearchRequest, ScimError> {
        let Value::Object(map) = body else {
            return Err(ScimError::invalid_syntax(
                "a SearchRequest must be a JSON object",
            ));
        };
        let member = |name: &str| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
                .filter(|v| !v.is_null())
        };
        let text = |name: &str| -> std::result::Result<Option<String>, ScimError> {
            match member(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::invalid_syntax(format!(
                    "{name} must be a string"
                ))),
            }
        };
        let number = |name: &str| -> std::result::Result<Option<i64>, ScimError> {
            match member(name) {
                None => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::invalid_syntax(format!("{name} must be an integer"))),
            }
        };
        let paths = |name: &str| -> std::result::Result<Option<String>, ScimError> {
            match member(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_owned).ok_or_else(|| {
                            ScimError::invalid_syntax(format!("{name} must hold strings"))
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map(|v| Some(v.join(","))),
                Some(_) => Err(ScimError::invalid_syntax(format!(
                    "{name} must be an array of attribute paths"
                ))),
            }
        };
        Ok(SearchRequest {
            query: ListQuery {
                filter: text("filter")?,
                sort_by: text("sortBy")?,
                sort_order: text("sortOrder")?,
                start_index: number("startIndex")?,
                count: number("count")?,
                cursor: text("cursor")?,
            },
            attributes: paths("attributes")?,
            excluded: paths("excludedAttributes")?,
        })
    }
}
