//! Commands (create, replace, delete) turned into store writes, and queries answered from the
//! read model. The HTTP layer calls only this; it knows nothing of redb.

mod password;

use std::sync::Arc;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::scim::resource::{self, GroupView, MemberView};
use crate::scim::schema::{Projection, Registry};
use crate::scim::{ResourceType, ScimError};
use crate::store::{Outcome, Snapshot, Store, StoredResource, Write, WriteContext};

/// URN of the ListResponse message (RFC 7644 §3.4.2).
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

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

/// The SCIM service: validation, commands and queries over one [`Store`].
pub struct Service {
    store: Arc<Store>,
    registry: Arc<Registry>,
    page_size: usize,
}

impl Service {
    /// A service over `store` that validates against `registry` and lists at most `page_size`
    /// resources per page.
    pub fn new(store: Arc<Store>, registry: Arc<Registry>, page_size: usize) -> Service {
        Service {
            store,
            registry,
            page_size,
        }
    }

    /// The schemas this service validates against.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The store this service writes to.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The last committed log position.
    pub fn position(&self) -> Result<u64, ScimError> {
        Ok(self.store.snapshot()?.position()?)
    }

    /// RFC 7644 §3.3: creates a resource; `base` is the URL prefix for `meta.location`; the
    /// response shows what `view` selects.
    pub async fn create(
        &self,
        rt: ResourceType,
        body: Value,
        ctx: WriteContext,
        base: &str,
        view: &Projection,
    ) -> Result<ResourceDoc, ScimError> {
        let mut input = resource::parse_input(&self.registry, rt, body)?;
        if let Some(p) = input.password.take() {
            input
                .attributes
                .insert("password".into(), json!(password::hash(p).await?));
        }
        let write = Write::Create {
            rt,
            id: Uuid::new_v4().to_string(),
            attributes: input.attributes,
            members: input.members,
        };
        let outcome = self.store.write(write, ctx).await?;
        self.written(rt, outcome, base, view)
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
        view: &Projection,
    ) -> Result<ResourceDoc, ScimError> {
        let mut input = resource::parse_input(&self.registry, rt, body)?;
        if let Some(p) = input.password.take() {
            input
                .attributes
                .insert("password".into(), json!(password::hash(p).await?));
        }
        let write = Write::Replace {
            rt,
            id: id.to_owned(),
            if_match,
            attributes: input.attributes,
            // RFC 7644 §3.5.1: a replace sets every attribute it carries and clears the others,
            // so a Group PUT without `members` leaves the group empty.
            members: input
                .members
                .or_else(|| (rt == ResourceType::Group).then(Vec::new)),
        };
        let outcome = self.store.write(write, ctx).await?;
        self.written(rt, outcome, base, view)
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
        view: &Projection,
    ) -> Result<ResourceDoc, ScimError> {
        let snapshot = self.store.snapshot()?;
        let stored = snapshot
            .get(rt, id)?
            .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", rt.name())))?;
        let (members, groups) = self.related(&snapshot, rt, id, view)?;
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

    /// RFC 7644 §3.4.2: a page of resources. `start_index` is 1-based (values < 1 count as 1);
    /// `count` is capped at the page size; `count` 0 returns only `totalResults`.
    pub fn list(
        &self,
        rt: ResourceType,
        start_index: Option<i64>,
        count: Option<i64>,
        base: &str,
        view: &Projection,
    ) -> Result<Value, ScimError> {
        let start = start_index.unwrap_or(1).max(1);
        let count = count
            .map_or(self.page_size, |c| {
                usize::try_from(c.max(0)).unwrap_or(usize::MAX)
            })
            .min(self.page_size);
        let snapshot = self.store.snapshot()?;
        let total = snapshot.count(rt)?;
        let skip = u64::try_from(start - 1).unwrap_or(0);
        let page = if count == 0 {
            Vec::new()
        } else {
            snapshot.list(rt, skip, count)?
        };
        let mut resources = Vec::with_capacity(page.len());
        for (id, stored) in page {
            let (members, groups) = self.related(&snapshot, rt, &id, view)?;
            let related = Related {
                members: members.as_deref(),
                groups: groups.as_deref(),
            };
            resources.push(self.doc(rt, &id, stored, related, base, view).doc);
        }
        let mut body = json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": resources.len(),
        });
        if count > 0 {
            body["Resources"] = Value::Array(resources);
        }
        Ok(body)
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
        view: &Projection,
    ) -> ResourceDoc {
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
        ResourceDoc {
            version: stored.meta.version,
            doc: view.apply(&self.registry, rt, full),
            location: resource::location(base, rt, id),
        }
    }

    fn written(
        &self,
        rt: ResourceType,
        outcome: Outcome,
        base: &str,
        view: &Projection,
    ) -> Result<ResourceDoc, ScimError> {
        match outcome {
            Outcome::Resource {
                id,
                resource,
                members,
            } => {
                let groups = match rt {
                    ResourceType::User if view.shows(&self.registry, rt, "groups") => {
                        Some(self.store.snapshot()?.groups_of(&id)?)
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
            Outcome::Deleted | Outcome::Checkpointed => Err(ScimError::unavailable(
                "the store gave an unexpected answer; retry the request",
            )),
        }
    }
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
        view: &Projection,
    ) -> Result<RelatedLists, ScimError> {
        let wanted = |name: &str| view.shows(&self.registry, rt, name);
        Ok(match rt {
            ResourceType::Group if wanted("members") => (Some(snapshot.members(id)?), None),
            ResourceType::User if wanted("groups") => (None, Some(snapshot.groups_of(id)?)),
            _ => (None, None),
        })
    }
}
