//! The commands the writer applies inside a transaction: create, replace, patch, delete and Bulk.
//! Each does all its checks before its first write, so a rejected command leaves no partial
//! changes in the transaction it shares with the rest of its batch.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use redb::ReadableTable;
use serde_json::{Map, Value};

use super::Rejection;
use super::txn::{EventBody, TxnTables, event};
use super::{async_requests, remote_ids};
use crate::store::event::MemberRef;
use crate::store::tables::{self};
use crate::store::{
    BulkWrite, Cause, EventKind, Outcome, StoreError, StoredResource, Write, WriteContext,
};
use scim::filter::Limits;
use scim::patch::{self, MemberOp};
use scim::resource::{self, MemberInput, MemberView, Meta};
use scim::schema::{Registry, UniqueKey, validate};
use scim::{ResourceType, ScimError, etag};

pub(super) fn apply(
    t: &mut TxnTables<'_>,
    registry: &Registry,
    write: Write,
    ctx: &WriteContext,
) -> Result<Outcome, Rejection> {
    match write {
        Write::Create {
            rt,
            id,
            attributes,
            members,
        } => {
            let unique = registry.unique_keys(rt, &attributes);
            create(t, ctx, rt, id, attributes, members, &unique)
        }
        Write::Replace {
            rt,
            id,
            if_match,
            attributes,
            members,
        } => replace(
            t,
            registry,
            ctx,
            Addressed {
                rt,
                id,
                if_match: if_match.as_deref(),
            },
            attributes,
            members,
        ),
        Write::Patch {
            rt,
            id,
            if_match,
            operations,
            limits,
            with_members,
            time_limit,
        } => patch(
            t,
            registry,
            ctx,
            Addressed {
                rt,
                id,
                if_match: if_match.as_deref(),
            },
            (operations, &limits, time_limit),
            with_members,
        ),
        Write::Bulk {
            operations,
            fail_on_errors,
        } => bulk(t, registry, ctx, operations, fail_on_errors),
        Write::Delete { rt, id, if_match } => {
            delete(t, registry, ctx, rt, &id, if_match.as_deref())
        }
        Write::Import {
            rt,
            id,
            attributes,
            members,
            created,
        } => super::import::import(
            t,
            registry,
            ctx,
            super::import::Imported {
                rt,
                id,
                attributes,
                members,
                created,
            },
        ),
        Write::Checkpoint { name, position } => {
            t.checkpoints.insert(name.as_str(), position)?;
            Ok(Outcome::Checkpointed)
        }
        Write::Park {
            subscriber,
            id,
            parked,
        } => {
            let bytes = parked.encode()?;
            t.parked
                .insert((subscriber.as_str(), id.as_str()), bytes.as_slice())?;
            Ok(Outcome::Checkpointed)
        }
        Write::Unpark { subscriber, id } => {
            t.parked.remove((subscriber.as_str(), id.as_str()))?;
            Ok(Outcome::Checkpointed)
        }
        Write::RemoteIds {
            projection,
            rt,
            entries,
        } => {
            remote_ids::update(t, &projection, rt, entries)?;
            Ok(Outcome::Checkpointed)
        }
        Write::ClearRemoteIds { projection } => {
            remote_ids::clear(t, &projection)?;
            Ok(Outcome::Checkpointed)
        }
        Write::AsyncAccept {
            txn,
            request,
            max_pending,
        } => async_requests::accept(t, &txn, request, max_pending),
        Write::AsyncRun { txn, write, echoes } => {
            async_requests::run(t, registry, ctx, &txn, *write, &echoes)
        }
        Write::AsyncFinish { txn, operations } => {
            async_requests::finish_pending(t, &txn, operations)
        }
        Write::AsyncForget { before } => async_requests::forget(t, before),
    }
}

fn bulk(
    t: &mut TxnTables<'_>,
    registry: &Registry,
    ctx: &WriteContext,
    operations: Vec<BulkWrite>,
    fail_on_errors: Option<usize>,
) -> Result<Outcome, Rejection> {
    let mut results: Vec<Option<Result<Outcome, ScimError>>> = Vec::with_capacity(operations.len());
    let mut failures = 0;
    for op in operations {
        if fail_on_errors.is_some_and(|limit| failures >= limit) {
            results.push(None);
            continue;
        }
        let failed_reference = op
            .after
            .iter()
            .any(|&j| !matches!(results.get(j), Some(Some(Ok(_)))));
        let result = match op.write {
            Err(refused) => Err(refused),
            Ok(_) if failed_reference => Err(ScimError::new(
                409,
                "the operation refers by bulkId to an operation of this request that failed",
            )),
            Ok(write) => {
                t.now = Utc::now();
                match apply(t, registry, write, ctx) {
                    Ok(outcome) => Ok(outcome),
                    Err(Rejection::Client(e)) => Err(e),
                    Err(storage) => return Err(storage),
                }
            }
        };
        failures += usize::from(result.is_err());
        results.push(Some(result));
    }
    Ok(Outcome::Bulk(results))
}

fn create(
    t: &mut TxnTables<'_>,
    ctx: &WriteContext,
    rt: ResourceType,
    id: String,
    attributes: Map<String, Value>,
    members: Option<Vec<MemberInput>>,
    unique: &[UniqueKey],
) -> Result<Outcome, Rejection> {
    check_unique(t, rt, &id, unique, &[])?;
    let members = match members {
        Some(list) => Some(resolve_members(t, &id, &list)?),
        None => None,
    };
    let resource = StoredResource {
        meta: Meta {
            created: t.now,
            last_modified: t.now,
            version: 1,
        },
        attributes,
    };
    t.put_resource(rt, &id, &resource)?;
    for key in unique {
        t.unique.insert(key.index_key(rt).as_str(), id.as_str())?;
    }
    let added = member_refs(members.as_deref());
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
            id: id.clone(),
            version: 1,
            kind: EventKind::Create,
            cause: None,
            changed,
            created: t.now,
            attributes: Some(resource.attributes.clone()),
            members_added: added,
            members_removed: Vec::new(),
        },
    );
    t.append(e)?;
    Ok(Outcome::Resource {
        id,
        resource,
        members,
    })
}

/// The existing resource a replace or a PATCH addresses, and the version `If-Match` expects of it.
struct Addressed<'a> {
    rt: ResourceType,
    id: String,
    if_match: Option<&'a str>,
}

fn replace(
    t: &mut TxnTables<'_>,
    registry: &Registry,
    ctx: &WriteContext,
    target: Addressed<'_>,
    mut attributes: Map<String, Value>,
    members: Option<Vec<MemberInput>>,
) -> Result<Outcome, Rejection> {
    let Addressed { rt, id, if_match } = target;
    let current = current(t, rt, &id, if_match)?;
    // RFC 7644 §3.5.1: immutable attributes keep their value (checked against the state this
    // transaction sees, so a concurrent write cannot slip a change past the check).
    validate::check_replace(registry, rt, &current.attributes, &mut attributes)?;
    let unique = &registry.unique_keys(rt, &attributes);
    let kept = &registry.unique_keys(rt, &current.attributes);
    check_unique(t, rt, &id, unique, kept)?;
    let members = match members {
        Some(list) => Some(resolve_members(t, &id, &list)?),
        None => None,
    };
    // A replace that leaves out `password` keeps it: the attribute is never returned, so a client
    // doing GET-modify-PUT cannot send it back (RFC 7643 §4.1.1: returned "never").
    if let Some(p) = current.attributes.get("password") {
        attributes.entry("password").or_insert_with(|| p.clone());
    }
    reindex(t, registry, rt, &id, &current.attributes, unique)?;
    let (added, removed) = match &members {
        Some(new) => {
            let before: HashSet<String> = tables::member_refs(&t.members, &id)?
                .into_iter()
                .map(|(m, _)| m)
                .collect();
            let after: HashSet<&str> = new.iter().map(|m| m.value.as_str()).collect();
            let added: Vec<MemberRef> = member_refs(Some(new))
                .into_iter()
                .filter(|m| !before.contains(&m.value))
                .collect();
            let mut removed = Vec::new();
            for (m, mt) in tables::member_refs(&t.members, &id)? {
                if !after.contains(m.as_str()) {
                    removed.push(MemberRef {
                        value: m,
                        member_type: mt,
                    });
                }
            }
            (added, removed)
        }
        None => (Vec::new(), Vec::new()),
    };
    let resource = new_version(
        t,
        ctx,
        NewVersion {
            rt,
            id: &id,
            kind: EventKind::Replace,
            current,
            attributes,
            added,
            removed,
        },
    )?;
    let members = match members {
        Some(_) => Some(tables::member_views(&t.members, &t.resources, &id)?),
        None => None,
    };
    Ok(Outcome::Resource {
        id,
        resource,
        members,
    })
}

/// A resource's next version, as a replace or a PATCH makes it.
pub(super) struct NewVersion<'a> {
    pub(super) rt: ResourceType,
    pub(super) id: &'a str,
    pub(super) kind: EventKind,
    pub(super) current: StoredResource,
    pub(super) attributes: Map<String, Value>,
    pub(super) added: Vec<MemberRef>,
    pub(super) removed: Vec<MemberRef>,
}

/// Writes the next version of a resource (its checks already done): the membership changes, the
/// resource with `meta` moved on, and its event.
pub(super) fn new_version(
    t: &mut TxnTables<'_>,
    ctx: &WriteContext,
    v: NewVersion<'_>,
) -> Result<StoredResource, Rejection> {
    let NewVersion {
        rt,
        id,
        kind,
        current,
        attributes,
        added,
        removed,
    } = v;
    for m in &added {
        t.add_member(id, m)?;
    }
    for m in &removed {
        t.remove_member(id, &m.value)?;
    }
    let mut changed = changed_attributes(&current.attributes, &attributes);
    if !added.is_empty() || !removed.is_empty() {
        changed.push("members".into());
    }
    let version = current.meta.version + 1;
    let resource = StoredResource {
        meta: Meta {
            created: current.meta.created,
            last_modified: t.now,
            version,
        },
        attributes,
    };
    t.put_resource(rt, id, &resource)?;
    let e = event(
        t,
        ctx,
        EventBody {
            rt,
            id: id.to_owned(),
            version,
            kind,
            cause: None,
            changed,
            created: current.meta.created,
            attributes: Some(resource.attributes.clone()),
            members_added: added,
            members_removed: removed,
        },
    );
    t.append(e)?;
    Ok(resource)
}

/// Moves a resource's uniqueness index rows from its `before` attributes to `unique`.
pub(super) fn reindex(
    t: &mut TxnTables<'_>,
    registry: &Registry,
    rt: ResourceType,
    id: &str,
    before: &Map<String, Value>,
    unique: &[UniqueKey],
) -> Result<(), StoreError> {
    let before = registry.unique_keys(rt, before);
    for old in &before {
        if !unique.contains(old) {
            t.release(rt, old, id)?;
        }
    }
    for key in unique {
        let index_key = key.index_key(rt);
        // A kept value another resource holds (both had it before it was declared unique)
        // stays with that resource: keeping a value is no claim on it.
        if before.contains(key) && t.unique.get(index_key.as_str())?.is_some() {
            continue;
        }
        t.unique.insert(index_key.as_str(), id)?;
    }
    Ok(())
}

/// RFC 7644 §3.5.2: applies the operations to the state this transaction sees, so concurrent
/// PATCHes cannot lose each other's changes. Membership changes touch only the members named
/// (one members-table lookup each) and the event carries only the delta.
fn patch(
    t: &mut TxnTables<'_>,
    registry: &Registry,
    ctx: &WriteContext,
    target: Addressed<'_>,
    (operations, limits, time_limit): (Vec<patch::Operation>, &Limits, Duration),
    with_members: bool,
) -> Result<Outcome, Rejection> {
    let Addressed { rt, id, if_match } = target;
    let deadline = Instant::now() + time_limit;
    let mut within = || {
        if Instant::now() <= deadline {
            return Ok(());
        }
        Err(ScimError::new(
            413,
            format!(
                "this PATCH needs more than {} ms of the store's writer (PATCH_TIME_LIMIT_MS); \
                 send its operations in several smaller requests",
                time_limit.as_millis()
            ),
        ))
    };
    let current = current(t, rt, &id, if_match)?;
    let patched = patch::apply_within(
        registry,
        rt,
        &current.attributes,
        operations,
        limits,
        &mut within,
    )?;
    let attributes = patched.attributes;
    let unique = &registry.unique_keys(rt, &attributes);
    let kept = &registry.unique_keys(rt, &current.attributes);
    check_unique(t, rt, &id, unique, kept)?;
    let (added, removed) = member_changes(t, &id, patched.members, &mut within)?;
    let members = |t: &TxnTables<'_>| -> Result<_, StoreError> {
        Ok(if with_members && rt == ResourceType::Group {
            Some(tables::member_views(&t.members, &t.resources, &id)?)
        } else {
            None
        })
    };
    // A PATCH that changes nothing (removing a non-member, re-adding a value already there) is
    // answered with the current version and appends no event: a new version would make clients
    // refetch, and subscribers (AMQP, projections) redo work for a change that did not happen.
    if attributes == current.attributes && added.is_empty() && removed.is_empty() {
        let members = members(t)?;
        return Ok(Outcome::Resource {
            id,
            resource: current,
            members,
        });
    }
    reindex(t, registry, rt, &id, &current.attributes, unique)?;
    let resource = new_version(
        t,
        ctx,
        NewVersion {
            rt,
            id: &id,
            kind: EventKind::Patch,
            current,
            attributes,
            added,
            removed,
        },
    )?;
    let members = members(t)?;
    Ok(Outcome::Resource {
        id,
        resource,
        members,
    })
}

/// The members a PATCH adds and removes: each touched member is looked up in the members table,
/// so the cost follows the operations, not the group's size. Only `replace` of the whole list and
/// a `remove` filter on something other than `value` read every member, and a run of such filters
/// reads the list once: whether a filter matches a member does not depend on the other members,
/// so consecutive filters remove exactly what one pass testing each member against all of them
/// removes. `within` is asked as the pass goes (the PATCH's writer time limit).
fn member_changes(
    t: &TxnTables<'_>,
    group: &str,
    ops: Vec<MemberOp>,
    within: &mut dyn FnMut() -> Result<(), ScimError>,
) -> Result<(Vec<MemberRef>, Vec<MemberRef>), Rejection> {
    let mut touched = Touched::default();
    let mut ops = ops.into_iter().peekable();
    while let Some(op) = ops.next() {
        match op {
            MemberOp::Add(list) => {
                for v in resolve_members(t, group, &list)? {
                    touched.set(v.value.clone(), Some(v));
                }
            }
            MemberOp::Remove(ids) => {
                for id in ids {
                    touched.set(id, None);
                }
            }
            MemberOp::Replace(list) => {
                for (m, _) in tables::member_refs(&t.members, group)? {
                    touched.set(m, None);
                }
                for v in touched.state.values_mut() {
                    *v = None;
                }
                for v in resolve_members(t, group, &list)? {
                    touched.set(v.value.clone(), Some(v));
                }
            }
            MemberOp::RemoveWhere(first) => {
                let mut filters = vec![first];
                while let Some(MemberOp::RemoveWhere(_)) = ops.peek() {
                    if let Some(MemberOp::RemoveWhere(next)) = ops.next() {
                        filters.push(next);
                    }
                }
                let mut current = tables::member_views(&t.members, &t.resources, group)?;
                current.retain(|m| !touched.state.contains_key(&m.value));
                current.extend(touched.state.values().flatten().cloned());
                for (n, m) in current.into_iter().enumerate() {
                    if n % 64 == 0 {
                        within()?;
                    }
                    let doc = serde_json::json!({
                        "value": m.value,
                        "type": m.member_type.name(),
                        "display": m.display,
                    });
                    if filters.iter().any(|f| f.matches(&doc)) {
                        touched.set(m.value, None);
                    }
                }
            }
        }
    }
    let Touched { order, mut state } = touched;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for id in order {
        let before =
            match t.members.get((group, id.as_str()))? {
                Some(v) => Some(ResourceType::from_name(v.value()).ok_or_else(|| {
                    StoreError::Corrupt(format!("member {id} has an unknown type"))
                })?),
                None => None,
            };
        match (before, state.remove(&id).flatten()) {
            (None, Some(v)) => added.push(v.member_ref()),
            (Some(member_type), None) => removed.push(MemberRef {
                value: id,
                member_type,
            }),
            _ => {}
        }
    }
    Ok((added, removed))
}

/// The final state of each member a PATCH touched (`None`: not a member), in touch order.
#[derive(Default)]
struct Touched {
    order: Vec<String>,
    state: HashMap<String, Option<MemberView>>,
}

impl Touched {
    fn set(&mut self, id: String, v: Option<MemberView>) {
        if !self.state.contains_key(&id) {
            self.order.push(id.clone());
        }
        self.state.insert(id, v);
    }
}

fn delete(
    t: &mut TxnTables<'_>,
    registry: &Registry,
    ctx: &WriteContext,
    rt: ResourceType,
    id: &str,
    if_match: Option<&str>,
) -> Result<Outcome, Rejection> {
    let current = current(t, rt, id, if_match)?;
    for key in registry.unique_keys(rt, &current.attributes) {
        t.release(rt, &key, id)?;
    }
    t.remove_resource(rt, id)?;
    t.bump_count(rt, -1)?;
    let mut removed = Vec::new();
    if rt == ResourceType::Group {
        for (m, member_type) in tables::member_refs(&t.members, id)? {
            t.remove_member(id, &m)?;
            removed.push(MemberRef {
                value: m,
                member_type,
            });
        }
    }
    let e = event(
        t,
        ctx,
        EventBody {
            rt,
            id: id.to_owned(),
            version: current.meta.version + 1,
            kind: EventKind::Delete,
            cause: None,
            changed: Vec::new(),
            created: current.meta.created,
            attributes: Some(current.attributes),
            members_added: Vec::new(),
            members_removed: removed,
        },
    );
    t.append(e)?;
    // Cascade: the deleted resource leaves every group it was in, and each of those groups gets a
    // new version and its own event, in this same transaction: no committed state has a group
    // naming a member that does not exist, and subscribers see every group that changed
    // (docs/ARCHITECTURE.md, "The flow of one write").
    for group_id in tables::groups_of(&t.member_of, id)? {
        t.remove_member(&group_id, id)?;
        let Some(mut group) = tables::get_resource(&t.resources, ResourceType::Group, &group_id)?
        else {
            return Err(StoreError::Corrupt(format!(
                "membership row names group {group_id}, which does not exist"
            ))
            .into());
        };
        group.meta.version += 1;
        group.meta.last_modified = t.now;
        t.put_resource(ResourceType::Group, &group_id, &group)?;
        let e = event(
            t,
            ctx,
            EventBody {
                rt: ResourceType::Group,
                id: group_id,
                version: group.meta.version,
                kind: EventKind::Patch,
                cause: Some(Cause::MemberDeleted {
                    resource_type: rt,
                    id: id.to_owned(),
                }),
                changed: vec!["members".into()],
                created: group.meta.created,
                attributes: None,
                members_added: Vec::new(),
                members_removed: vec![MemberRef {
                    value: id.to_owned(),
                    member_type: rt,
                }],
            },
        );
        t.append(e)?;
    }
    Ok(Outcome::Deleted)
}

/// The current state of a resource that must exist and, if `If-Match` was sent, match it.
fn current(
    t: &TxnTables<'_>,
    rt: ResourceType,
    id: &str,
    if_match: Option<&str>,
) -> Result<StoredResource, Rejection> {
    let Some(current) = tables::get_resource(&t.resources, rt, id)? else {
        return Err(ScimError::not_found(format!("{} {id} not found", rt.name())).into());
    };
    if let Some(header) = if_match
        && !etag::matches(header, current.meta.version)
    {
        return Err(ScimError::precondition_failed(current.meta.version).into());
    }
    Ok(current)
}

/// 409 `uniqueness` when another resource holds one of the `unique` values, except those in
/// `kept` (the resource's values before this write): a value two resources already shared
/// when it was declared unique stays writable by both, as long as they keep it.
pub(super) fn check_unique(
    t: &TxnTables<'_>,
    rt: ResourceType,
    id: &str,
    unique: &[UniqueKey],
    kept: &[UniqueKey],
) -> Result<(), Rejection> {
    for key in unique.iter().filter(|k| !kept.contains(k)) {
        if let Some(owner) = t.unique.get(key.index_key(rt).as_str())?
            && owner.value() != id
        {
            let other = if key.global { "resource" } else { rt.name() };
            return Err(ScimError::uniqueness(format!(
                "{} \"{}\" is already used by another {other}",
                key.attribute, key.normalised
            ))
            .into());
        }
    }
    Ok(())
}

/// Checks that every member exists and returns them with their types and display names.
fn resolve_members(
    t: &TxnTables<'_>,
    group_id: &str,
    members: &[MemberInput],
) -> Result<Vec<MemberView>, Rejection> {
    let mut missing = Vec::new();
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        if m.value == group_id {
            return Err(ScimError::invalid_value("a group cannot be a member of itself").into());
        }
        let candidates: &[ResourceType] = match m.member_type {
            Some(ResourceType::User) => &[ResourceType::User],
            Some(ResourceType::Group) => &[ResourceType::Group],
            None => &ResourceType::ALL,
        };
        let mut found = None;
        for rt in candidates {
            if let Some(r) = tables::get_resource(&t.resources, *rt, &m.value)? {
                found = Some((*rt, r));
                break;
            }
        }
        match found {
            Some((member_type, r)) => out.push(MemberView {
                value: m.value.clone(),
                member_type,
                display: resource::display_name(&r.attributes),
            }),
            None => missing.push(m.value.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(ScimError::invalid_value(format!(
            "members refer to resources that do not exist: {}",
            missing.join(", ")
        ))
        .into());
    }
    Ok(out)
}

fn member_refs<M: AsMemberRef>(members: Option<&[M]>) -> Vec<MemberRef> {
    members
        .unwrap_or_default()
        .iter()
        .map(AsMemberRef::member_ref)
        .collect()
}

trait AsMemberRef {
    fn member_ref(&self) -> MemberRef;
}

impl AsMemberRef for MemberView {
    fn member_ref(&self) -> MemberRef {
        MemberRef {
            value: self.value.clone(),
            member_type: self.member_type,
        }
    }
}

/// Top-level attribute names whose values differ between two versions.
pub(super) fn changed_attributes(
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> Vec<String> {
    let mut changed: Vec<String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    changed.extend(before.keys().filter(|k| !after.contains_key(*k)).cloned());
    changed
}
