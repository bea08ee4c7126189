//! The writer's side of `scimd import`: a resource moved in from an earlier server, created with
//! its id (and `meta.created`) kept, or replaced whole when the store already holds it. One event
//! of kind `import` either way, with the checks every write gets: uniqueness in the transaction,
//! members that exist. Unlike a client's write, a member that does not exist leaves the member
//! out instead of refusing the group, and the outcome names it (the importer reports it).

use chrono::{DateTime, Utc};
use redb::ReadableTable;
use serde_json::{Map, Value};

use super::Rejection;
use super::commands::{NewVersion, check_unique, new_version, reindex};
use super::txn::{EventBody, TxnTables, event};
use crate::store::event::MemberRef;
use crate::store::tables;
use crate::store::{EventKind, Outcome, StoredResource, WriteContext};
use scim::ResourceType;
use scim::resource::{MemberInput, Meta};
use scim::schema::Registry;
use scim::{ScimError, ScimType};

/// What [`import`] writes: the [`crate::store::Write::Import`] fields.
pub(super) struct Imported {
    pub(super) rt: ResourceType,
    pub(super) id: String,
    pub(super) attributes: Map<String, Value>,
    pub(super) members: Option<Vec<MemberInput>>,
    pub(super) created: Option<DateTime<Utc>>,
}

/// Creates or replaces the resource. Every check comes before the first write, as for every
/// command (a refused import leaves nothing in the shared transaction).
pub(super) fn import(
    t: &mut TxnTables<'_>,
    registry: &Registry,
    ctx: &WriteContext,
    imported: Imported,
) -> Result<Outcome, Rejection> {
    let Imported {
        rt,
        id,
        mut attributes,
        members,
        created,
    } = imported;
    let unique = registry.unique_keys(rt, &attributes);
    check_unique(t, rt, &id, &unique, &[])?;
    let (members, left_out) = match members {
        Some(list) => {
            let (found, missing) = existing_members(t, &id, &list)?;
            (Some(found), missing)
        }
        None => (None, Vec::new()),
    };
    let Some(current) = tables::get_resource(&t.resources, rt, &id)? else {
        // A deleted resource's versions stay in `streams` and the log: an id is never reused, or the
        // new version 1 would overwrite the old history's row.
        if let Some(other) = other_type_holding(t, rt, &id)? {
            return Err(ScimError::typed(
                409,
                ScimType::Uniqueness,
                format!(
                    "{} {id} cannot be imported: the store holds a {} with this id, and an id names \
                     one resource of either type; give one of them a new id in the source",
                    rt.name(),
                    other.name()
                ),
            )
            .into());
        }
        if t.streams.get((id.as_str(), 1))?.is_some() {
            return Err(ScimError::typed(
                409,
                ScimType::Uniqueness,
                format!(
                    "{} {id} was deleted in this log and ids are not reused; give the resource a new id \
                     in the source, or leave it out",
                    rt.name()
                ),
            )
            .into());
        }
        let created = created.filter(|c| *c <= t.now).unwrap_or(t.now);
        let resource = StoredResource {
            meta: Meta {
                created,
                last_modified: t.now,
                version: 1,
            },
            attributes,
        };
        t.put_resource(rt, &id, &resource)?;
        for key in &unique {
            t.unique.insert(key.index_key(rt).as_str(), id.as_str())?;
        }
        let added = members.unwrap_or_default();
        for m in &added {
            t.add_member(&id, m)?;
        }
        t.bump_count(rt, 1)?;
        let mut changed: Vec<String> = resource.attributes.keys().cloned().collect();
        if !added.is_empty() {
            changed.push("members".into());
        }
        let e = event(
            t,
            ctx,
            EventBody {
                rt,
                id,
                version: 1,
                kind: EventKind::Import,
                cause: None,
                changed,
                created,
                attributes: Some(resource.attributes),
                members_added: added,
                members_removed: Vec::new(),
            },
        );
        t.append(e)?;
        return Ok(Outcome::Imported { left_out });
    };
    // A source without a password keeps the one the store holds (as a PUT does: it is never
    // returned, so no earlier layout holds it).
    if let Some(p) = current.attributes.get("password") {
        attributes.entry("password").or_insert_with(|| p.clone());
    }
    reindex(t, registry, rt, &id, &current.attributes, &unique)?;
    let (added, removed) = match &members {
        Some(new) => {
            let before = tables::member_refs(&t.members, &id)?;
            let added = new
                .iter()
                .filter(|m| !before.iter().any(|(b, _)| *b == m.value))
                .cloned()
                .collect();
            let removed = before
                .into_iter()
                .filter(|(b, _)| !new.iter().any(|m| m.value == *b))
                .map(|(value, member_type)| MemberRef { value, member_type })
                .collect();
            (added, removed)
        }
        None => (Vec::new(), Vec::new()),
    };
    new_version(
        t,
        ctx,
        NewVersion {
            rt,
            id: &id,
            kind: EventKind::Import,
            current,
            attributes,
            added,
            removed,
        },
    )?;
    Ok(Outcome::Imported { left_out })
}

/// The members of `group_id` that exist (with their types, duplicates dropped), and the ids of
/// those that do not or that name the group itself.
fn existing_members(
    t: &TxnTables<'_>,
    group_id: &str,
    members: &[MemberInput],
) -> Result<(Vec<MemberRef>, Vec<String>), Rejection> {
    let mut found: Vec<MemberRef> = Vec::with_capacity(members.len());
    let mut missing = Vec::new();
    for m in members {
        if m.value == group_id {
            missing.push(m.value.clone());
            continue;
        }
        // An id names one resource of either type, so the type the earlier server wrote is a hint
        // tried first, not a condition: a member it typed wrongly is kept with its real type.
        let candidates: &[ResourceType] = match m.member_type {
            Some(ResourceType::Group) => &[ResourceType::Group, ResourceType::User],
            _ => &ResourceType::ALL,
        };
        let mut kind = None;
        for rt in candidates {
            if tables::get_resource(&t.resources, *rt, &m.value)?.is_some() {
                kind = Some(*rt);
                break;
            }
        }
        match kind {
            Some(member_type) if !found.iter().any(|f| f.value == m.value) => {
                found.push(MemberRef {
                    value: m.value.clone(),
                    member_type,
                });
            }
            Some(_) => {}
            None => missing.push(m.value.clone()),
        }
    }
    Ok((found, missing))
}

/// The other resource type when the store holds a resource of it with `id` (ids share one stream
/// namespace: a User and a Group cannot have the same id).
fn other_type_holding(
    t: &TxnTables<'_>,
    rt: ResourceType,
    id: &str,
) -> Result<Option<ResourceType>, Rejection> {
    let other = match rt {
        ResourceType::User => ResourceType::Group,
        ResourceType::Group => ResourceType::User,
    };
    Ok(tables::get_resource(&t.resources, other, id)?.map(|_| other))
}
