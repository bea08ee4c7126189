//! Each resource's history, folded on its own: the `streams` table lists its events in version
//! order, so one resource is in memory at a time. Its versions go up by exactly one from a create,
//! nothing follows a delete, a member it gains exists at that moment, and what the fold gives is
//! exactly its read-model row, its member rows and its index rows.

use std::collections::BTreeMap;

use redb::ReadOnlyTable;
use serde_json::{Map, Value};

use super::Checker;
use crate::store::tables::{EVENTS, MEMBERS, QUERY_INDEX, RESOURCES, STREAMS, UNIQUE};
use crate::store::{Event, EventKind, StoreError, StoredResource};
use scim::ResourceType;
use scim::filter::plan;
use scim::resource::Meta;

/// The tables one resource's check reads.
struct Tables {
    events: ReadOnlyTable<u64, &'static [u8]>,
    streams: ReadOnlyTable<(&'static str, u64), u64>,
    resources: ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    members: ReadOnlyTable<(&'static str, &'static str), &'static str>,
    unique: ReadOnlyTable<&'static str, &'static str>,
    query_index: ReadOnlyTable<(&'static str, &'static str), ()>,
}

/// One resource as its events so far make it.
struct Fold {
    rt: ResourceType,
    created_at: u64,
    deleted_at: Option<u64>,
    meta: Meta,
    attributes: Map<String, Value>,
    members: BTreeMap<String, ResourceType>,
}

pub(super) fn check(c: &mut Checker<'_>) -> Result<(), StoreError> {
    let t = Tables {
        events: c.txn.open_table(EVENTS)?,
        streams: c.txn.open_table(STREAMS)?,
        resources: c.txn.open_table(RESOURCES)?,
        members: c.txn.open_table(MEMBERS)?,
        unique: c.txn.open_table(UNIQUE)?,
        query_index: c.txn.open_table(QUERY_INDEX)?,
    };
    let mut current: Option<(String, Vec<(u64, u64)>)> = None;
    let mut rows = t.streams.range::<(&str, u64)>(..)?;
    loop {
        let row = match rows.next() {
            None => break,
            Some(Ok(row)) => row,
            Some(Err(e)) => {
                c.problem(
                    None,
                    Some("streams".into()),
                    format!("the streams table cannot be read from here on: {e}"),
                );
                break;
            }
        };
        let (id, version) = row.0.value();
        let position = row.1.value();
        match &mut current {
            Some((cur, versions)) if cur == id => versions.push((version, position)),
            _ => {
                if let Some((done, versions)) = current.take() {
                    resource(c, &t, &done, &versions)?;
                }
                current = Some((id.to_owned(), vec![(version, position)]));
            }
        }
    }
    if let Some((done, versions)) = current.take() {
        resource(c, &t, &done, &versions)?;
    }
    Ok(())
}

/// Folds one resource's events (`versions`: (version, position) in version order) and compares.
fn resource(
    c: &mut Checker<'_>,
    t: &Tables,
    id: &str,
    versions: &[(u64, u64)],
) -> Result<(), StoreError> {
    let mut fold: Option<Fold> = None;
    // A history that could not be followed is not compared with the read model (its problem is
    // already reported; a comparison would only repeat it).
    let mut followed = true;
    let mut next_version = 1u64;
    for &(version, position) in versions {
        let at = || Some(format!("resource {id}"));
        if version != next_version {
            c.problem(
                Some(position),
                at(),
                format!(
                    "versions go from {} to {version}; each event must add exactly one",
                    next_version.saturating_sub(1)
                ),
            );
        }
        next_version = version.saturating_add(1);
        let Some(event) = event_at(c, t, id, version, position)? else {
            followed = false;
            continue;
        };
        let at = || {
            Some(format!(
                "{} {}",
                event.resource_type.name(),
                event.resource_id
            ))
        };
        if let Some(f) = &fold
            && f.rt != event.resource_type
        {
            c.problem(
                Some(position),
                at(),
                format!(
                    "the event names type {}, its create {}",
                    event.resource_type.name(),
                    f.rt.name()
                ),
            );
        }
        match (event.kind, fold.as_mut()) {
            // An import creates the resource when the log has none of it, else replaces it whole.
            (EventKind::Create | EventKind::Import, None) => {
                fold = Some(Fold {
                    rt: event.resource_type,
                    created_at: position,
                    deleted_at: None,
                    meta: meta_of(&event),
                    attributes: Map::new(),
                    members: BTreeMap::new(),
                });
            }
            (EventKind::Create, Some(f)) => {
                c.problem(
                    Some(position),
                    at(),
                    format!(
                        "a create of an id that already exists (created at position {})",
                        f.created_at
                    ),
                );
                followed = false;
                continue;
            }
            (kind, None) => {
                c.problem(
                    Some(position),
                    at(),
                    format!("a {kind:?} before the resource was created"),
                );
                followed = false;
                continue;
            }
            (kind, Some(f)) => {
                if let Some(deleted) = f.deleted_at {
                    c.problem(
                        Some(position),
                        at(),
                        format!("a {kind:?} after the resource was deleted at position {deleted}"),
                    );
                }
            }
        }
        let Some(f) = fold.as_mut() else { continue };
        if event.kind == EventKind::Delete {
            f.deleted_at = Some(position);
        } else {
            if let Some(a) = &event.attributes {
                f.attributes = a.clone();
            } else if event.kind == EventKind::Create || f.rt == ResourceType::User {
                c.problem(
                    Some(position),
                    at(),
                    "the event carries no attributes where it must".into(),
                );
            }
            f.meta = meta_of(&event);
        }
        for m in &event.members_removed {
            f.members.remove(&m.value);
        }
        for m in &event.members_added {
            f.members.insert(m.value.clone(), m.member_type);
        }
        for m in &event.members_added {
            member_existed(c, t, &event, &m.value, m.member_type)?;
        }
    }
    let Some(f) = fold else { return Ok(()) };
    if followed {
        compare(c, t, id, &f)?;
    }
    Ok(())
}

/// The event a streams row points at, if it is there, decodes and is that resource's version.
fn event_at(
    c: &mut Checker<'_>,
    t: &Tables,
    id: &str,
    version: u64,
    position: u64,
) -> Result<Option<Event>, StoreError> {
    let at = || Some(format!("streams ({id}, {version})"));
    let Some(stored) = t.events.get(position)? else {
        c.problem(
            Some(position),
            at(),
            "the streams row points at a position that holds no event".into(),
        );
        return Ok(None);
    };
    // An event that does not decode is reported by the walk of the log.
    let Ok(event) = Event::decode(stored.value()) else {
        return Ok(None);
    };
    if event.resource_id != id || event.version != version {
        c.problem(
            Some(position),
            at(),
            format!(
                "the streams row points at an event of {} version {}",
                event.resource_id, event.version
            ),
        );
        return Ok(None);
    }
    Ok(Some(event))
}

fn meta_of(event: &Event) -> Meta {
    Meta {
        created: event.created,
        last_modified: event.timestamp,
        version: event.version,
    }
}

/// A member a group gains must exist, as the type recorded, when it is added.
fn member_existed(
    c: &mut Checker<'_>,
    t: &Tables,
    event: &Event,
    member: &str,
    member_type: ResourceType,
) -> Result<(), StoreError> {
    let position = event.position;
    let at = || Some(format!("Group {}", event.resource_id));
    let mut history = t.streams.range((member, 0u64)..=(member, u64::MAX))?;
    let first = match history.next() {
        Some(row) => row?.1.value(),
        None => {
            c.problem(
                Some(position),
                at(),
                format!("adds member {member}, which never existed"),
            );
            return Ok(());
        }
    };
    if first > position {
        c.problem(
            Some(position),
            at(),
            format!("adds member {member} before it was created (at position {first})"),
        );
        return Ok(());
    }
    if t.resources.get((member_type.name(), member))?.is_some() {
        return Ok(());
    }
    let other = match member_type {
        ResourceType::User => ResourceType::Group,
        ResourceType::Group => ResourceType::User,
    };
    if t.resources.get((other.name(), member))?.is_some() {
        c.problem(
            Some(position),
            at(),
            format!(
                "adds member {member} as a {}, but it is a {}",
                member_type.name(),
                other.name()
            ),
        );
        return Ok(());
    }
    let last = match history.next_back() {
        Some(row) => row?.1.value(),
        None => first,
    };
    if last < position {
        c.problem(
            Some(position),
            at(),
            format!("adds member {member}, which was deleted at position {last}"),
        );
    }
    Ok(())
}

/// The read-model row, member rows and index rows of one folded resource.
fn compare(c: &mut Checker<'_>, t: &Tables, id: &str, f: &Fold) -> Result<(), StoreError> {
    let at = || Some(format!("{} {id}", f.rt.name()));
    let row = t.resources.get((f.rt.name(), id))?;
    if f.deleted_at.is_some() {
        if row.is_some() {
            c.problem(
                f.deleted_at,
                at(),
                "still in the read model although the log deleted it here".into(),
            );
        }
        if let Some(row) = t.members.range((id, "")..)?.next()
            && row?.0.value().0 == id
        {
            c.problem(
                f.deleted_at,
                at(),
                "still has member rows although the log deleted it here".into(),
            );
        }
        return Ok(());
    }
    match f.rt {
        ResourceType::User => c.report.users += 1,
        ResourceType::Group => c.report.groups += 1,
    }
    let folded = StoredResource {
        meta: f.meta.clone(),
        attributes: f.attributes.clone(),
    };
    match row.map(|r| StoredResource::decode(r.value())) {
        None => c.problem(None, at(), "missing from the read model".into()),
        Some(Err(e)) => c.problem(None, at(), format!("its read-model row: {e}")),
        Some(Ok(stored)) if stored != folded => {
            let mut differ: Vec<String> = folded
                .attributes
                .iter()
                .filter(|(k, v)| stored.attributes.get(*k) != Some(v))
                .map(|(k, _)| k.clone())
                .chain(
                    stored
                        .attributes
                        .keys()
                        .filter(|k| !folded.attributes.contains_key(*k))
                        .cloned(),
                )
                .collect();
            if stored.meta != folded.meta {
                differ.push("meta".into());
            }
            c.problem(
                None,
                at(),
                format!(
                    "the read model differs from the log in: {}",
                    differ.join(", ")
                ),
            );
        }
        Some(Ok(_)) => {}
    }
    members(c, t, id, f)?;
    unique(c, t, id, f)?;
    if !c.expected.query_current {
        return Ok(());
    }
    for key in plan::index_keys(f.rt, &f.attributes, &f.meta) {
        c.expected.query_rows += 1;
        if t.query_index.get((key.as_str(), id))?.is_none() {
            c.problem(
                None,
                at(),
                format!("the query index misses its row {key:?}"),
            );
        }
    }
    Ok(())
}

/// The group's member rows are exactly the folded members.
fn members(c: &mut Checker<'_>, t: &Tables, id: &str, f: &Fold) -> Result<(), StoreError> {
    let mut actual: BTreeMap<String, String> = BTreeMap::new();
    for row in t.members.range((id, "")..)? {
        let (k, v) = row?;
        let (g, m) = k.value();
        if g != id {
            break;
        }
        actual.insert(m.to_owned(), v.value().to_owned());
    }
    c.expected.member_rows += f.members.len() as u64;
    c.report.memberships += f.members.len() as u64;
    let missing: Vec<&String> = f
        .members
        .keys()
        .filter(|m| !actual.contains_key(*m))
        .collect();
    let extra: Vec<&String> = actual
        .keys()
        .filter(|m| !f.members.contains_key(*m))
        .collect();
    let wrong_type: Vec<&String> = f
        .members
        .iter()
        .filter(|(m, rt)| actual.get(*m).is_some_and(|t| t != rt.name()))
        .map(|(m, _)| m)
        .collect();
    for (what, list) in [
        ("lacks members the log gives it", missing),
        ("has members the log does not give it", extra),
        ("records members under the wrong type", wrong_type),
    ] {
        if !list.is_empty() {
            let shown: Vec<&str> = list.iter().take(5).map(|s| s.as_str()).collect();
            c.problem(
                None,
                Some(format!("{} {id}", f.rt.name())),
                format!(
                    "the members table {what}: {} ({} in all)",
                    shown.join(", "),
                    list.len()
                ),
            );
        }
    }
    Ok(())
}

/// Every unique value of the resource is in the uniqueness index, held by it, or by another live
/// resource with the same value (tolerated: stored before the attribute was declared unique).
fn unique(c: &mut Checker<'_>, t: &Tables, id: &str, f: &Fold) -> Result<(), StoreError> {
    if !c.expected.unique_current {
        return Ok(());
    }
    for key in c.registry.unique_keys(f.rt, &f.attributes) {
        let index_key = key.index_key(f.rt);
        let owner = t
            .unique
            .get(index_key.as_str())?
            .map(|v| v.value().to_owned());
        match owner {
            Some(owner) if owner == id => c.expected.unique_rows += 1,
            Some(owner) if shares(c, t, &owner, &index_key)? => c.note(
                Some(format!("{} {id}", f.rt.name())),
                format!(
                    "shares its unique {} with {owner}, which holds the index row (stored before the attribute was unique; tolerated)",
                    key.attribute
                ),
            ),
            Some(owner) => c.problem(
                None,
                Some(format!("{} {id}", f.rt.name())),
                format!(
                    "its unique {} is held in the index by {owner}, which does not have it",
                    key.attribute
                ),
            ),
            None => c.problem(
                None,
                Some(format!("{} {id}", f.rt.name())),
                format!("the uniqueness index misses its {}", key.attribute),
            ),
        }
    }
    Ok(())
}

/// Whether the live resource `owner` has the unique value `index_key`.
fn shares(c: &Checker<'_>, t: &Tables, owner: &str, index_key: &str) -> Result<bool, StoreError> {
    for rt in ResourceType::ALL {
        if let Some(row) = t.resources.get((rt.name(), owner))?
            && let Ok(r) = StoredResource::decode(row.value())
        {
            return Ok(c
                .registry
                .unique_keys(rt, &r.attributes)
                .iter()
                .any(|k| k.index_key(rt) == index_key));
        }
    }
    Ok(false)
}
