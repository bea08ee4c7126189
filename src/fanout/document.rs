//! A resource's document as of one event of the log, for subscribers that must describe each
//! change (AMQP messages) or write after-images (projections).
//!
//! Users carry their full after-image in every event. Groups record membership as deltas, so a
//! group as of version `v` is rebuilt from its current state (or, once deleted, from its delete
//! event) by undoing the deltas of its later events — no history table (DESIGN.md).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::store::{Event, EventKind, Snapshot, StoreError, StoredResource};
use scim::ResourceType;
use scim::resource::{self, MemberView, Meta};

/// How a group document shows its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Members {
    /// No `members` at all (AMQP `changes` mode: the work of listing them is skipped).
    Omit,
    /// Members as of the event, each with its current display name. Projections use this: they
    /// re-project a group when a member's display name changes.
    CurrentDisplay,
    /// Members and their display names both as of the event (AMQP messages).
    DisplayAsOfEvent,
}

/// The resource as of `event` (for a delete: as it was just before), as a GET with every attribute
/// requested returns it, except `password` (never returned). `base` prefixes `meta.location` and
/// `$ref`: PUBLIC_URL plus BASE_PATH, or empty for relative URLs.
pub fn as_of(
    snapshot: &Snapshot,
    event: Event,
    base: &str,
    members: Members,
) -> Result<Value, StoreError> {
    let id = event.resource_id.as_str();
    let deleted = event.kind == EventKind::Delete;
    // The version the document shows: a delete shows the version before it.
    let version = if deleted {
        event.version - 1
    } else {
        event.version
    };
    let last_modified = if deleted {
        timestamp_of(snapshot, id, version)?.unwrap_or(event.timestamp)
    } else {
        event.timestamp
    };
    let meta = Meta {
        created: event.created,
        last_modified,
        version,
    };
    let (attributes, members) = match event.resource_type {
        ResourceType::User => (event.attributes.unwrap_or_default(), None),
        ResourceType::Group => {
            let attributes = match event.attributes {
                Some(a) => a,
                None => group_attributes_before(snapshot, id, event.version)?,
            };
            let views = match members {
                Members::Omit => None,
                Members::CurrentDisplay | Members::DisplayAsOfEvent => {
                    let list = if deleted {
                        event
                            .members_removed
                            .iter()
                            .map(|m| (m.value.clone(), m.member_type))
                            .collect()
                    } else {
                        group_members_at(snapshot, id, event.version)?
                    };
                    let as_of = (members == Members::DisplayAsOfEvent).then_some(event.position);
                    Some(member_views(snapshot, list, as_of)?)
                }
            };
            (attributes, views)
        }
    };
    Ok(resource::render(
        event.resource_type,
        id,
        attributes,
        &meta,
        members.as_deref(),
        base,
    ))
}

fn timestamp_of(
    snapshot: &Snapshot,
    id: &str,
    version: u64,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    for (_, position) in snapshot.stream(id, version..=version)? {
        if let Some(e) = snapshot.event(position)? {
            return Ok(Some(e.timestamp));
        }
    }
    Ok(None)
}

/// The attributes of a group at `version`: those of the latest event at or before it that carries
/// them (membership-only events carry none).
fn group_attributes_before(
    snapshot: &Snapshot,
    id: &str,
    version: u64,
) -> Result<Map<String, Value>, StoreError> {
    let stream = snapshot.stream(id, 1..=version)?;
    for (_, position) in stream.iter().rev() {
        if let Some(Event {
            attributes: Some(a),
            ..
        }) = snapshot.event(*position)?
        {
            return Ok(a);
        }
    }
    Err(StoreError::Corrupt(format!(
        "group {id} has no event with attributes up to version {version}"
    )))
}

/// A group's members at `version`: the current members (or those its delete event removed), with
/// the deltas of every later event undone, newest first.
fn group_members_at(
    snapshot: &Snapshot,
    id: &str,
    version: u64,
) -> Result<BTreeMap<String, ResourceType>, StoreError> {
    let (mut members, at): (BTreeMap<String, ResourceType>, u64) =
        match snapshot.get(ResourceType::Group, id)? {
            Some(current) => (
                snapshot
                    .members(id)?
                    .into_iter()
                    .map(|m| (m.value, m.member_type))
                    .collect(),
                current.meta.version,
            ),
            None => {
                let Some((head, position)) = snapshot.stream_head(id)? else {
                    return Ok(BTreeMap::new());
                };
                let removed = snapshot
                    .event(position)?
                    .map(|e| e.members_removed)
                    .unwrap_or_default();
                (
                    removed
                        .into_iter()
                        .map(|m| (m.value, m.member_type))
                        .collect(),
                    head.saturating_sub(1),
                )
            }
        };
    if at > version {
        for (_, position) in snapshot.stream(id, version + 1..=at)?.iter().rev() {
            if let Some(e) = snapshot.event(*position)? {
                for m in e.members_added {
                    members.remove(&m.value);
                }
                for m in e.members_removed {
                    members.insert(m.value, m.member_type);
                }
            }
        }
    }
    Ok(members)
}

/// `as_of`: the position whose member display names to show; `None` for the current ones.
fn member_views(
    snapshot: &Snapshot,
    members: BTreeMap<String, ResourceType>,
    as_of: Option<u64>,
) -> Result<Vec<MemberView>, StoreError> {
    members
        .into_iter()
        .map(|(value, member_type)| {
            let current = snapshot.get(member_type, &value)?;
            let display = match as_of {
                None => current.and_then(|r| resource::display_name(&r.attributes)),
                Some(position) => display_at(snapshot, &value, current, position)?,
            };
            Ok(MemberView {
                value,
                member_type,
                display,
            })
        })
        .collect()
}

/// A member's display name as of log position `position`. Usually the member has not changed
/// since, and its current state answers; otherwise its newest event at or before `position` that
/// carries attributes does.
fn display_at(
    snapshot: &Snapshot,
    id: &str,
    current: Option<StoredResource>,
    position: u64,
) -> Result<Option<String>, StoreError> {
    if let Some(current) = &current {
        let v = current.meta.version;
        if snapshot
            .stream(id, v..=v)?
            .first()
            .is_some_and(|(_, p)| *p <= position)
        {
            return Ok(resource::display_name(&current.attributes));
        }
    }
    for (_, p) in snapshot.stream(id, 1..=u64::MAX)?.iter().rev() {
        if *p > position {
            continue;
        }
        match snapshot.event(*p)? {
            Some(e) if e.kind == EventKind::Delete => return Ok(None),
            Some(Event {
                attributes: Some(a),
                ..
            }) => return Ok(resource::display_name(&a)),
            _ => {}
        }
    }
    Ok(None)
}
