//! A resource's document as of one event of the log, for subscribers that must describe each
//! change (AMQP messages) or write after-images (projections).
//!
//! Users carry their full after-image in every event. Groups record membership as deltas, so a
//! group as of version `v` is rebuilt from its current state (or, once deleted, from its delete
//! event) by undoing the deltas of its later events — no history table (DESIGN.md).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::scim::ResourceType;
use crate::scim::resource::{self, MemberView, Meta};
use crate::store::{Event, EventKind, Snapshot, StoreError};

/// The resource as of `event` (for a delete: as it was just before), as a GET with every attribute
/// requested returns it, except `password` (never returned). `base` prefixes `meta.location` and
/// `$ref`: PUBLIC_URL plus BASE_PATH, or empty for relative URLs.
pub fn as_of(snapshot: &Snapshot, event: Event, base: &str) -> Result<Value, StoreError> {
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
            let members = if deleted {
                event
                    .members_removed
                    .iter()
                    .map(|m| (m.value.clone(), m.member_type))
                    .collect()
            } else {
                group_members_at(snapshot, id, event.version)?
            };
            (attributes, Some(member_views(snapshot, members)?))
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

fn member_views(
    snapshot: &Snapshot,
    members: BTreeMap<String, ResourceType>,
) -> Result<Vec<MemberView>, StoreError> {
    members
        .into_iter()
        .map(|(value, member_type)| {
            let display = snapshot
                .get(member_type, &value)?
                .and_then(|r| resource::display_name(&r.attributes));
            Ok(MemberView {
                value,
                member_type,
                display,
            })
        })
        .collect()
}
