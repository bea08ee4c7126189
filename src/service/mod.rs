//! The SCIM service: commands (create, replace, patch, delete; Bulk in `bulk`) turned into store
//! writes, single resources rendered from the read model, lists (in `list`), the log
//! subscribers' progress and controls (in `subscribers`), and `scimd import`'s documents (in
//! `import`), asynchronous requests and their executor (in `async_requests`). The HTTP layer
//! calls only this; it knows
//! nothing of redb or of the subscribers.

mod async_requests;
mod bulk;
mod cursor;
pub mod import;
mod list;
mod metrics;
mod password;
mod reads;
mod subscribers;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

pub use async_requests::{Answer, AsyncCall, AsyncSet, AsyncSettings, AsyncStatus, Submitted};
use cursor::Cursors;
pub use subscribers::Subscribers;

use crate::fanout::set::SecurityEvents;
use crate::store::{Outcome, Snapshot, Store, StoreError, StoredResource, Write};
/// Who asked for a write and under which transaction id: the HTTP layer builds one per request.
pub use crate::store::{WriteContext, WriterStatus};
use scim::filter::Limits;
use scim::patch;
use scim::resource::{self, GroupView, MemberView};
use scim::schema::{Registry, View};
use scim::{ResourceType, ScimError};

/// URN of the ListResponse message (RFC 7644 §3.4.2).
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Answers a failed store read: the client gets 503 (retry), and the cause, which the response
/// does not carry, is logged here where the service gives up on the request.
fn unavailable(e: StoreError) -> ScimError {
    tracing::error!(error = %e, "a store read failed; answering 503");
    e.into()
}

/// A single resource as the API returns it.
#[derive(Debug)]
pub struct ResourceDoc {
    /// The full JSON representation.
    pub doc: Value,
    /// Its version, for the ETag.
    pub version: u64,
    /// Its `meta.location`.
    pub location: String,
}

/// How much of the machine one request may take.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// PATCH_TIME_LIMIT_MS: the most writer time one PATCH may take (413 beyond).
    pub patch_time_limit: Duration,
    /// READ_THREADS: how many store reads run at once, off the async runtime.
    pub read_threads: usize,
    /// The ASYNC_* settings: asynchronous requests.
    pub asynchronous: AsyncSettings,
}

/// The SCIM service: validation, commands and queries over one [`Store`].
pub struct Service {
    store: Arc<Store>,
    registry: Arc<Registry>,
    page_size: usize,
    limits: Limits,
    cursors: Cursors,
    patch_time_limit: Duration,
    reads: reads::ReadPool,
    asynchronous: async_requests::AsyncRequests,
    /// The security event core, when SETs are on (ServiceProviderConfig, the JWKS).
    security_events: Option<Arc<SecurityEvents>>,
}

impl Service {
    /// A service over `store` that validates against `registry` and lists at most `page_size`
    /// resources per page, accepts filters within `limits` and keeps paging cursors valid for
    /// `cursor_ttl_secs` seconds. `tuning` bounds the writer time of a PATCH and the reads that
    /// run at once.
    pub fn new(
        store: Arc<Store>,
        registry: Arc<Registry>,
        page_size: usize,
        limits: Limits,
        cursor_ttl_secs: u64,
        tuning: Tuning,
    ) -> Service {
        Service {
            store,
            registry,
            page_size,
            limits,
            cursors: Cursors::new(cursor_ttl_secs),
            patch_time_limit: tuning.patch_time_limit,
            reads: reads::ReadPool::new(tuning.read_threads),
            asynchronous: async_requests::AsyncRequests::new(tuning.asynchronous),
            security_events: None,
        }
    }

    /// This service with the security event core (SETs on).
    pub fn with_security_events(mut self, core: Option<Arc<SecurityEvents>>) -> Service {
        self.security_events = core;
        self
    }

    /// The security event core, when SETs are on.
    pub fn security_events(&self) -> Option<&SecurityEvents> {
        self.security_events.as_deref()
    }

    /// Runs `read` (synchronous store work: a GET, a list, `/status`) off the async runtime, on
    /// the bounded read pool, so that an expensive query never stalls other requests.
    pub async fn read<T, F>(self: &Arc<Self>, read: F) -> Result<T, ScimError>
    where
        F: FnOnce(&Service) -> Result<T, ScimError> + Send + 'static,
        T: Send + 'static,
    {
        let service = self.clone();
        self.reads.run(move || read(&service)).await
    }

    /// The schemas this service validates against.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// What the store's writer is doing (`/ready`, `/health`).
    pub fn writer_status(&self) -> WriterStatus {
        self.store.writer_status()
    }

    /// The last committed log position.
    pub fn position(&self) -> Result<u64, ScimError> {
        self.store
            .snapshot()
            .and_then(|s| s.position())
            .map_err(unavailable)
    }

    /// RFC 7644 §3.3: creates a resource; `base` is the URL prefix for `meta.location`; the
    /// response shows what `view` selects.
    pub async fn create(
        &self,
        rt: ResourceType,
        body: Value,
        ctx: WriteContext,
        base: &str,
        view: &View,
    ) -> Result<ResourceDoc, ScimError> {
        let write = self
            .create_write(rt, body, Uuid::new_v4().to_string())
            .await?;
        let outcome = self.store.write(write, ctx).await?;
        self.written(rt, outcome, base, view)
    }

    /// A create or replace body, validated, with its password (if any) hashed into the attributes.
    async fn input(
        &self,
        rt: ResourceType,
        body: Value,
    ) -> Result<resource::ResourceInput, ScimError> {
        let mut input = resource::parse_input(&self.registry, rt, body)?;
        if let Some(p) = input.password.take() {
            input
                .attributes
                .insert("password".into(), json!(password::hash(p).await?));
        }
        Ok(input)
    }

    /// The store write that creates `body` as a new `rt` with `id` (password hashed).
    async fn create_write(
        &self,
        rt: ResourceType,
        body: Value,
        id: String,
    ) -> Result<Write, ScimError> {
        let input = self.input(rt, body).await?;
        Ok(Write::Create {
            rt,
            id,
            attributes: input.attributes,
            members: input.members,
        })
    }

    /// RFC 7644 §3.5.1: replaces every attribute of a resource.
    #[allow(clippy::too_many_arguments)] // the request's parts, each used once
    pub async fn replace(
        &self,
        rt: ResourceType,
        id: &str,
        body: Value,
        if_match: Option<String>,
        ctx: WriteContext,
        base: &str,
        view: &View,
    ) -> Result<ResourceDoc, ScimError> {
        let write = self.replace_write(rt, id, body, if_match).await?;
        let outcome = self.store.write(write, ctx).await?;
        self.written(rt, outcome, base, view)
    }

    /// The store write that replaces resource `id` with `body` (password hashed).
    async fn replace_write(
        &self,
        rt: ResourceType,
        id: &str,
        body: Value,
        if_match: Option<String>,
    ) -> Result<Write, ScimError> {
        let input = self.input(rt, body).await?;
        Ok(Write::Replace {
            rt,
            id: id.to_owned(),
            if_match,
            attributes: input.attributes,
            // RFC 7644 §3.5.1: a replace sets every attribute it carries and clears the others,
            // so a Group PUT without `members` leaves the group empty.
            members: input
                .members
                .or_else(|| (rt == ResourceType::Group).then(Vec::new)),
        })
    }

    /// RFC 7644 §3.5.2: applies a PatchOp body to a resource, atomically, as one new version.
    /// `with_members` asks for a Group's members in the answer (read only then).
    #[allow(clippy::too_many_arguments)] // the request's parts, each used once
    pub async fn patch(
        &self,
        rt: ResourceType,
        id: &str,
        body: Value,
        if_match: Option<String>,
        ctx: WriteContext,
        base: &str,
        view: &View,
    ) -> Result<ResourceDoc, ScimError> {
        let operations = patch::parse(body)?;
        let view = &view
            .clone()
            .with_specified(patch::named_attributes(&operations));
        let with_members = rt == ResourceType::Group && view.shows(&self.registry, rt, "members");
        let write = self
            .patch_write(rt, id, operations, if_match, with_members)
            .await?;
        let outcome = self.store.write(write, ctx).await?;
        self.written(rt, outcome, base, view)
    }

    /// The store write that applies `operations` to resource `id` (passwords hashed first).
    async fn patch_write(
        &self,
        rt: ResourceType,
        id: &str,
        mut operations: Vec<patch::Operation>,
        if_match: Option<String>,
        with_members: bool,
    ) -> Result<Write, ScimError> {
        if rt == ResourceType::User {
            for secret in patch::passwords(&mut operations) {
                let clear = std::mem::take(secret);
                *secret = password::hash(clear).await?;
            }
        }
        Ok(Write::Patch {
            rt,
            id: id.to_owned(),
            if_match,
            operations,
            limits: self.limits,
            with_members,
            time_limit: self.patch_time_limit,
        })
    }

    /// RFC 7644 §3.6: deletes a resource (and removes it from every group).
    pub async fn delete(
        &self,
        rt: ResourceType,
        id: &str,
        if_match: Option<String>,
        ctx: WriteContext,
    ) -> Result<(), ScimError> {
        let write = Write::Delete {
            rt,
            id: id.to_owned(),
            if_match,
        };
        self.store.write(write, ctx).await.map(|_| ())
    }

    /// RFC 7644 §3.4.1: one resource by id, showing what `view` selects.
    pub fn get(
        &self,
        rt: ResourceType,
        id: &str,
        base: &str,
        view: &View,
    ) -> Result<ResourceDoc, ScimError> {
        let snapshot = self.store.snapshot().map_err(unavailable)?;
        let stored = snapshot
            .get(rt, id)
            .map_err(unavailable)?
            .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", rt.name())))?;
        let (members, groups) = self.related(&snapshot, rt, id, view).map_err(unavailable)?;
        Ok(self.doc(
            rt,
            id,
            stored,
            Related {
                members: members.as_deref(),
                groups: groups.as_deref(),
            },
            base,
            view,
        ))
    }
}

impl Service {
    /// The representation of a stored resource, with `returned` and `view` applied.
    fn doc(
        &self,
        rt: ResourceType,
        id: &str,
        stored: StoredResource,
        related: Related<'_>,
        base: &str,
        view: &View,
    ) -> ResourceDoc {
        let version = stored.meta.version;
        let full = represent(rt, id, stored, related, base);
        ResourceDoc {
            version,
            doc: view.apply(&self.registry, rt, full),
            location: resource::location(base, rt, id),
        }
    }

    fn written(
        &self,
        rt: ResourceType,
        outcome: Outcome,
        base: &str,
        view: &View,
    ) -> Result<ResourceDoc, ScimError> {
        match outcome {
            Outcome::Resource {
                id,
                resource,
                members,
            } => {
                let groups = match rt {
                    ResourceType::User if view.shows(&self.registry, rt, "groups") => {
                        let groups = self.store.snapshot().and_then(|s| s.groups_of(&id));
                        Some(groups.map_err(unavailable)?)
                    }
                    _ => None,
                };
                let related = Related {
                    members: members.as_deref(),
                    groups: groups.as_deref(),
                };
                Ok(self.doc(rt, &id, resource, related, base, view))
            }
            // The writer answers a create or replace with the resource; anything else is a bug there.
            Outcome::Deleted
            | Outcome::Checkpointed
            | Outcome::Imported { .. }
            | Outcome::Bulk(_)
            | Outcome::Async(_) => Err(ScimError::unavailable(
                "the store gave an unexpected answer; retry the request",
            )),
        }
    }
}

/// The full representation of a stored resource (before `returned` rules and the view), with the
/// members and groups the read model relates to it.
fn represent(
    rt: ResourceType,
    id: &str,
    stored: StoredResource,
    related: Related<'_>,
    base: &str,
) -> Value {
    let mut full = resource::render(
        rt,
        id,
        stored.attributes,
        &stored.meta,
        related.members,
        base,
    );
    if let (Some(groups), Value::Object(doc)) = (related.groups, &mut full)
        && !groups.is_empty()
    {
        doc.insert("groups".into(), resource::groups_value(groups, base));
    }
    full
}

/// What a representation shows besides the stored attributes.
#[derive(Clone, Copy)]
struct Related<'a> {
    /// A Group's members.
    members: Option<&'a [MemberView]>,
    /// A User's groups, direct and indirect.
    groups: Option<&'a [GroupView]>,
}

/// What [`Service::related`] reads: a Group's members, a User's groups.
type RelatedLists = (Option<Vec<MemberView>>, Option<Vec<GroupView>>);

impl Service {
    /// Members (for a Group) or groups (for a User) of a resource, read from `snapshot`; not read
    /// at all when `view` leaves them out (Entra lists Groups with `excludedAttributes=members`).
    fn related(
        &self,
        snapshot: &Snapshot,
        rt: ResourceType,
        id: &str,
        view: &View,
    ) -> Result<RelatedLists, StoreError> {
        let wanted = |name: &str| view.shows(&self.registry, rt, name);
        Ok(match rt {
            ResourceType::Group if wanted("members") => (Some(snapshot.members(id)?), None),
            ResourceType::User if wanted("groups") => (None, Some(snapshot.groups_of(id)?)),
            _ => (None, None),
        })
    }
}
