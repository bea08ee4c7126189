//! The resource routes: Users and Groups (RFC 7644 §3.3–§3.6), searches (§3.4.3), Bulk (§3.7)
//! and `/Me` (§3.11).

use std::sync::Arc;

use poem::Request;
use poem_openapi::OpenApi;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use serde_json::Value;

use super::{Result, Shared, Tag};
use crate::http::auth::ApiKeyAuth;
use crate::http::responses::{
    BulkResponse, DeletedResponse, DocumentResponse, ErrorResponse, PatchedResponse,
    ResourceResponse,
};
use crate::service::{Answer, AsyncCall, ResourceDoc, Submitted};
use scim::schema::View;
use scim::search::{ListQuery, SearchRequest};
use scim::{ResourceType, ScimError};

/// The 202 of a request accepted for asynchronous execution, as the `Accepted` variant of the
/// route's response type `$response`.
macro_rules! accepted {
    ($response:ident, $shared:expr, $req:expr, $txn:expr) => {{
        let location = $shared.async_location($req, &$txn);
        $response::Accepted($txn, "respond-async".to_owned(), location)
    }};
}

/// Defines `$api`, the routes of one resource type: `$prefix` (create, list), `$prefix/:id`
/// (get, replace, delete, patch) and `$prefix/.search`, all tagged `$tag`.
///
/// Users and Groups differ only in their type and in their documentation, which the caller gives
/// for each operation: poem-openapi takes paths, tags and an operation's description from
/// literals in the handler's attributes and doc comment, so one generic handler cannot describe
/// two types; a macro writes the pair from one definition instead.
macro_rules! resource_routes {
    (
        $(#[doc = $doc:tt])*
        $api:ident { type: $rt:ident, path: $prefix:tt, tag: $tag:tt }
        $(#[doc = $create:tt])* create;
        $(#[doc = $list:tt])* list;
        $(#[doc = $get:tt])* get;
        $(#[doc = $replace:tt])* replace;
        $(#[doc = $delete:tt])* delete;
        $(#[doc = $patch:tt])* patch;
        $(#[doc = $search:tt])* search;
    ) => {
        $(#[doc = $doc])*
        pub struct $api(pub(super) Arc<Shared>);

        #[OpenApi(prefix_path = $prefix)]
        impl $api {
            $(#[doc = $create])*
            #[oai(path = "/", method = "post", tag = $tag)]
            async fn create(
                &self,
                auth: ApiKeyAuth,
                req: &Request,
                #[oai(name = "attributes")] attributes: Query<Option<String>>,
                #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
                body: Json<Value>,
            ) -> Result<ResourceResponse> {
                let view = view(&attributes, &excluded);
                create(&self.0, ResourceType::$rt, &auth, req, body.0, &view).await
            }

            $(#[doc = $list])*
            // poem-openapi takes one handler argument per query parameter.
            #[allow(clippy::too_many_arguments)]
            #[oai(path = "/", method = "get", tag = $tag)]
            async fn list(
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
                let query = ListQuery {
                    filter: filter.0,
                    sort_by: sort_by.0,
                    sort_order: sort_order.0,
                    start_index: start_index.0,
                    count: count.0,
                    cursor: cursor.0,
                };
                let view = view(&attributes, &excluded);
                list(&self.0, &[ResourceType::$rt], req, &query, &view).await
            }

            $(#[doc = $get])*
            #[oai(path = "/:id", method = "get", tag = $tag)]
            async fn get(
                &self,
                _auth: ApiKeyAuth,
                req: &Request,
                id: Path<String>,
                #[oai(name = "If-None-Match")] if_none_match: Header<Option<String>>,
                #[oai(name = "attributes")] attributes: Query<Option<String>>,
                #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
            ) -> Result<ResourceResponse> {
                let view = view(&attributes, &excluded);
                get(&self.0, ResourceType::$rt, req, &id.0, if_none_match.0.as_deref(), &view).await
            }

            $(#[doc = $replace])*
            // poem-openapi takes one handler argument per header, query parameter and body.
            #[allow(clippy::too_many_arguments)]
            #[oai(path = "/:id", method = "put", tag = $tag)]
            async fn replace(
                &self,
                auth: ApiKeyAuth,
                req: &Request,
                id: Path<String>,
                #[oai(name = "If-Match")] if_match: Header<Option<String>>,
                #[oai(name = "attributes")] attributes: Query<Option<String>>,
                #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
                body: Json<Value>,
            ) -> Result<ResourceResponse> {
                let view = view(&attributes, &excluded);
                let written = Written { auth: &auth, req, id: &id.0, if_match: if_match.0, body: body.0 };
                replace(&self.0, ResourceType::$rt, written, &view).await
            }

            $(#[doc = $delete])*
            #[oai(path = "/:id", method = "delete", tag = $tag)]
            async fn delete(
                &self,
                auth: ApiKeyAuth,
                req: &Request,
                id: Path<String>,
                #[oai(name = "If-Match")] if_match: Header<Option<String>>,
            ) -> Result<DeletedResponse> {
                delete(&self.0, ResourceType::$rt, &auth, req, &id.0, if_match.0).await
            }

            $(#[doc = $patch])*
            // poem-openapi takes one handler argument per header, query parameter and body.
            #[allow(clippy::too_many_arguments)]
            #[oai(path = "/:id", method = "patch", tag = $tag)]
            async fn patch(
                &self,
                auth: ApiKeyAuth,
                req: &Request,
                id: Path<String>,
                #[oai(name = "If-Match")] if_match: Header<Option<String>>,
                #[oai(name = "attributes")] attributes: Query<Option<String>>,
                #[oai(name = "excludedAttributes")] excluded: Query<Option<String>>,
                body: Json<Value>,
            ) -> Result<PatchedResponse> {
                let written = Written { auth: &auth, req, id: &id.0, if_match: if_match.0, body: body.0 };
                patch(&self.0, ResourceType::$rt, written, attributes.0, excluded.0).await
            }

            $(#[doc = $search])*
            #[oai(path = "/.search", method = "post", tag = $tag)]
            async fn search(
                &self,
                _auth: ApiKeyAuth,
                req: &Request,
                body: Json<Value>,
            ) -> Result<DocumentResponse> {
                search(&self.0, &[ResourceType::$rt], req, &body.0).await
            }
        }
    };
}

resource_routes! {
    /// The User routes (RFC 7643 §4.1).
    UsersApi { type: User, path: "/Users", tag: "Tag::Users" }

    /// Create a User (RFC 7644 §3.3), validated against the User schemas (see `/Schemas`):
    /// names are case-insensitive, types are checked, unknown attributes are rejected (unless
    /// SCHEMA_MODE=lenient), readOnly ones ignored. `userName` is required and unique
    /// case-insensitively; `externalId` is unique among Users; every attribute a schema declares
    /// unique is enforced. Errors: 400 `invalidValue`/`invalidSyntax`, 409 `uniqueness`, 413 for
    /// bodies over 1 MiB. `attributes` / `excludedAttributes` shape the response.
    create;

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
    list;

    /// Get a User (RFC 7644 §3.4.1). `If-None-Match` with the current ETag answers 304.
    /// `attributes` / `excludedAttributes` select what it shows.
    get;

    /// Replace a User (RFC 7644 §3.5.1). `If-Match` with another version answers 412 and changes nothing.
    /// A `password` left out is kept, and so is an immutable attribute; changing an immutable
    /// attribute that has a value is 400 `mutability`.
    replace;

    /// Delete a User (RFC 7644 §3.6); it leaves every group it was in, and those groups get a new version.
    delete;

    /// Modify a User with a PatchOp (RFC 7644 §3.5.2): `add`, `replace`, `remove`, all applied or
    /// none, as one new version. `If-Match` with another version answers 412. Answers 200 with the
    /// User (`attributes`/`excludedAttributes` apply). See the README for the client habits accepted.
    patch;

    /// Search Users with POST (RFC 7644 §3.4.3): a SearchRequest body, as for `POST /.search`.
    search;
}

resource_routes! {
    /// The Group routes (RFC 7643 §4.2).
    GroupsApi { type: Group, path: "/Groups", tag: "Tag::Groups" }

    /// Create a Group (RFC 7644 §3.3). `displayName` is required. Each `members[].value` must be the id
    /// of an existing User or Group (400 `invalidValue` naming the missing ids); the server fills
    /// `type`, `$ref` and `display`.
    create;

    /// List Groups (RFC 7644 §3.4.2), filtered, sorted and paged like `GET /Users`
    /// (`members[value eq "<id>"]` finds the groups a resource is a direct member of);
    /// `excludedAttributes=members` leaves out member lists.
    list;

    /// Get a Group with its members (RFC 7644 §3.4.1).
    get;

    /// Replace a Group (RFC 7644 §3.5.1), members included: a body without `members` empties the group.
    replace;

    /// Delete a Group (RFC 7644 §3.6); it leaves every group it was a member of.
    delete;

    /// Modify a Group with a PatchOp (RFC 7644 §3.5.2); member changes cost the same on a group of
    /// any size. Answers 204 No Content, or 200 with the Group when `attributes` or
    /// `excludedAttributes` is given. `If-Match` with another version answers 412.
    patch;

    /// Search Groups with POST (RFC 7644 §3.4.3): a SearchRequest body, as for `POST /.search`.
    search;
}

/// The routes that span both resource types: `/.search`, `/Bulk`, and `/Me`.
pub struct RootApi(pub(super) Arc<Shared>);

#[OpenApi]
impl RootApi {
    /// Search Users and Groups together with POST (RFC 7644 §3.4.3). The SearchRequest body has
    /// `filter`, `sortBy`, `sortOrder`, `startIndex`, `count`, `cursor` (RFC 9865), `attributes` and
    /// `excludedAttributes` (arrays or comma-separated strings), with the meaning they have in
    /// `GET /Users`. An attribute one type does not define has no value there, so one filter spans
    /// both types.
    #[oai(path = "/.search", method = "post", tag = "Tag::Search")]
    async fn search_root(
        &self,
        _auth: ApiKeyAuth,
        req: &Request,
        body: Json<Value>,
    ) -> Result<DocumentResponse> {
        search(&self.0, &ResourceType::ALL, req, &body.0).await
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
    ) -> Result<BulkResponse> {
        let shared = &self.0;
        if let Some(wait) = shared.respond_async(req) {
            let call = AsyncCall::Bulk { body: body.0 };
            return match shared
                .submit(call, &auth, req, wait, &View::default())
                .await?
            {
                Submitted::Accepted(txn) => Ok(accepted!(BulkResponse, shared, req, txn)),
                Submitted::Answered(Ok(Answer::Bulk(answer))) => Ok(BulkResponse::Ok(Json(answer))),
                Submitted::Answered(other) => Err(unexpected(other)),
            };
        }
        let answer = shared
            .service
            .bulk(body.0, Shared::ctx(&auth, req), &shared.base(req))
            .await?;
        Ok(BulkResponse::Ok(Json(answer)))
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
}

/// The answer to every `/Me` request.
fn no_me() -> ErrorResponse {
    ScimError::new(
        501,
        "/Me is not supported: an API key authenticates a client, not a User (RFC 7644 §3.11)",
    )
    .into()
}

/// What `attributes` and `excludedAttributes` select (RFC 7644 §3.4.2.5).
fn view(attributes: &Query<Option<String>>, excluded: &Query<Option<String>>) -> View {
    View::new(attributes.0.as_deref(), excluded.0.as_deref())
}

/// The parts of a request that replaces or modifies one resource.
struct Written<'r> {
    auth: &'r ApiKeyAuth,
    req: &'r Request,
    id: &'r str,
    if_match: Option<String>,
    body: Value,
}

/// RFC 7644 §3.3: 201 with the new resource.
async fn create(
    shared: &Shared,
    rt: ResourceType,
    auth: &ApiKeyAuth,
    req: &Request,
    body: Value,
    view: &View,
) -> Result<ResourceResponse> {
    if let Some(wait) = shared.respond_async(req) {
        let call = AsyncCall::Create { rt, body };
        return match shared.submit(call, auth, req, wait, view).await? {
            Submitted::Accepted(txn) => Ok(accepted!(ResourceResponse, shared, req, txn)),
            Submitted::Answered(Ok(Answer::Resource(doc))) => Ok(ResourceResponse::created(doc)),
            Submitted::Answered(other) => Err(unexpected(other)),
        };
    }
    let doc = shared
        .service
        .create(rt, body, Shared::ctx(auth, req), &shared.base(req), view)
        .await?;
    Ok(ResourceResponse::created(doc))
}

/// RFC 7644 §3.4.1: the resource, or 304 when `If-None-Match` names its current version.
async fn get(
    shared: &Shared,
    rt: ResourceType,
    req: &Request,
    id: &str,
    if_none_match: Option<&str>,
    view: &View,
) -> Result<ResourceResponse> {
    let (id, base, view) = (id.to_owned(), shared.base(req), view.clone());
    let doc = shared
        .service
        .read(move |s| s.get(rt, &id, &base, &view))
        .await?;
    if if_none_match.is_some_and(|h| scim::etag::matches(h, doc.version)) {
        return Ok(ResourceResponse::NotModified(scim::etag::format(
            doc.version,
        )));
    }
    Ok(ResourceResponse::ok(doc))
}

/// RFC 7644 §3.4.2: a ListResponse of the resources of `types` that `query` selects.
async fn list(
    shared: &Shared,
    types: &[ResourceType],
    req: &Request,
    query: &ListQuery,
    view: &View,
) -> Result<DocumentResponse> {
    let (types, query, base, view) = (
        types.to_vec(),
        query.clone(),
        shared.base(req),
        view.clone(),
    );
    let body = shared
        .service
        .read(move |s| s.list(&types, &query, &base, &view))
        .await?;
    Ok(DocumentResponse::Ok(Json(body)))
}

/// RFC 7644 §3.4.3: a search with a SearchRequest body.
async fn search(
    shared: &Shared,
    types: &[ResourceType],
    req: &Request,
    body: &Value,
) -> Result<DocumentResponse> {
    let search = SearchRequest::parse(body)?;
    let view = View::new(
        search.attributes.as_deref(),
        search.excluded_attributes.as_deref(),
    );
    list(shared, types, req, &search.query, &view).await
}

/// RFC 7644 §3.5.1: 200 with the replaced resource.
async fn replace(
    shared: &Shared,
    rt: ResourceType,
    w: Written<'_>,
    view: &View,
) -> Result<ResourceResponse> {
    if let Some(wait) = shared.respond_async(w.req) {
        let call = AsyncCall::Replace {
            rt,
            id: w.id.to_owned(),
            body: w.body,
            if_match: w.if_match,
        };
        return match shared.submit(call, w.auth, w.req, wait, view).await? {
            Submitted::Accepted(txn) => Ok(accepted!(ResourceResponse, shared, w.req, txn)),
            Submitted::Answered(Ok(Answer::Resource(doc))) => Ok(ResourceResponse::ok(doc)),
            Submitted::Answered(other) => Err(unexpected(other)),
        };
    }
    let doc = shared
        .service
        .replace(
            rt,
            w.id,
            w.body,
            w.if_match,
            Shared::ctx(w.auth, w.req),
            &shared.base(w.req),
            view,
        )
        .await?;
    Ok(ResourceResponse::ok(doc))
}

/// RFC 7644 §3.6: 204.
async fn delete(
    shared: &Shared,
    rt: ResourceType,
    auth: &ApiKeyAuth,
    req: &Request,
    id: &str,
    if_match: Option<String>,
) -> Result<DeletedResponse> {
    if let Some(wait) = shared.respond_async(req) {
        let call = AsyncCall::Delete {
            rt,
            id: id.to_owned(),
            if_match,
        };
        return match shared
            .submit(call, auth, req, wait, &View::default())
            .await?
        {
            Submitted::Accepted(txn) => Ok(accepted!(DeletedResponse, shared, req, txn)),
            Submitted::Answered(Ok(Answer::Deleted)) => Ok(DeletedResponse::NoContent),
            Submitted::Answered(other) => Err(unexpected(other)),
        };
    }
    shared
        .service
        .delete(rt, id, if_match, Shared::ctx(auth, req))
        .await?;
    Ok(DeletedResponse::NoContent)
}

/// RFC 7644 §3.5.2: 200 with the modified resource, except that a Group answers 204 without it
/// unless `attributes` or `excludedAttributes` asks for one.
async fn patch(
    shared: &Shared,
    rt: ResourceType,
    w: Written<'_>,
    attributes: Option<String>,
    excluded: Option<String>,
) -> Result<PatchedResponse> {
    let terse = rt == ResourceType::Group && attributes.is_none() && excluded.is_none();
    // A 204 carries no representation, so a Group's member list (100,000 entries, perhaps) is not
    // read at all: that keeps a one-member PATCH O(1) on a group of any size.
    let view = if terse {
        View::new(None, Some("members"))
    } else {
        View::new(attributes.as_deref(), excluded.as_deref())
    };
    if let Some(wait) = shared.respond_async(w.req) {
        let call = AsyncCall::Patch {
            rt,
            id: w.id.to_owned(),
            body: w.body,
            if_match: w.if_match,
        };
        return match shared.submit(call, w.auth, w.req, wait, &view).await? {
            Submitted::Accepted(txn) => Ok(accepted!(PatchedResponse, shared, w.req, txn)),
            Submitted::Answered(Ok(Answer::Resource(doc))) => Ok(patched(doc, terse)),
            Submitted::Answered(other) => Err(unexpected(other)),
        };
    }
    let doc = shared
        .service
        .patch(
            rt,
            w.id,
            w.body,
            w.if_match,
            Shared::ctx(w.auth, w.req),
            &shared.base(w.req),
            &view,
        )
        .await?;
    Ok(patched(doc, terse))
}

/// 200 with the patched resource and its ETag, or 204 with the ETag alone.
fn patched(doc: ResourceDoc, terse: bool) -> PatchedResponse {
    let etag = scim::etag::format(doc.version);
    if terse {
        PatchedResponse::NoContent(etag)
    } else {
        PatchedResponse::Ok(Json(doc.doc), etag)
    }
}

/// The answer of a request run within its `wait` that does not fit its route: a bug, said as a
/// 503 (retry) rather than a wrong answer; a refusal stays the refusal it is.
fn unexpected(answer: std::result::Result<Answer, ScimError>) -> ErrorResponse {
    match answer {
        Err(e) => e.into(),
        Ok(_) => ScimError::unavailable("the request gave an unexpected answer; retry it").into(),
    }
}
