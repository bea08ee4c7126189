//! A resource as of one event of the log: the document a subscriber describes a change with (AMQP
//! messages) or writes as an after-image (projections).
//!
//! Users carry their full after-image in every event. Groups record membership as deltas (so adding
//! one member to a huge group costs O(1)), and carry their other attributes only when those
//! change. A group as of version `v` is therefore rebuilt from its current state (or, once deleted,
//! from its delete event) by undoing the deltas of its later events: no history table is kept
//! (docs/ARCHITECTURE.md, "The store and its guarantees").
//!
//! Guarantee kept here: a document's attributes, version and membership are those the resource had
//! right after the event, however many changes were committed since (every later delta is undone);
//! only member display names follow [`Members`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Event, EventKind, Snapshot, StoreError, StoredResource};
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

impl Snapshot {
    /// The resource as of `event` (for a delete: as it was just before), as a GET with every
    /// attribute requested returns it, except `password` (never returned). `base` prefixes
    /// `meta.location` and `$ref`: PUBLIC_URL plus BASE_PATH, or empty for relative URLs.
    ///
    /// A User event without its after-image, or a stream row naming an event the log lacks, is
    /// [`StoreError::Corrupt`]: an empty or partial document is never made up.
    pub fn as_of(
        &self,
        mut event: Event,
        base: &str,
        members: Members,
    ) -> Result<Value, StoreError> {
        let id = event.resource_id.as_str();
        let (attributes, views) = match event.resource_type {
            ResourceType::User => {
                let attributes = event.attributes.take().ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "the event at position {} for user {id} has no after-image",
                        event.position
                    ))
                })?;
                (attributes, None)
            }
            ResourceType::Group => {
                let attributes = match event.attributes.take() {
                    Some(a) => a,
                    None => self.group_attributes_before(id, event.version)?,
                };
                let views = match members {
                    Members::Omit => None,
                    Members::CurrentDisplay | Members::DisplayAsOfEvent => {
                        let list = if event.kind == EventKind::Delete {
                            event
                                .members_removed
                                .iter()
                                .map(|m| (m.value.clone(), m.member_type))
                                .collect()
                        } else {
                            self.group_members_at(id, event.version)?
                        };
                        let as_of =
                            (members == Members::DisplayAsOfEvent).then_some(event.position);
                        Some(self.member_views(list, as_of)?)
                    }
                };
                (attributes, views)
            }
        };
        self.render_as_of(&event, base, attributes, views.as_deref())
    }

    /// The document of `event`'s resource with the `attributes` and `members` it had as of the
    /// event, which the caller worked out (`as_of` does; the AMQP publisher keeps them from one
    /// message to the next). Only the meta is read here: for a delete, when the version before it
    /// was reached.
    pub fn render_as_of(
        &self,
        event: &Event,
        base: &str,
        attributes: Map<String, Value>,
        members: Option<&[MemberView]>,
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
            self.timestamp_of(id, version)?.unwrap_or(event.timestamp)
        } else {
            event.timestamp
        };
        let meta = Meta {
            created: event.created,
            last_modified,
            version,
        };
        Ok(resource::render(
            event.resource_type,
            id,
            attributes,
            &meta,
            members,
            base,
        ))
    }

    /// Whether `member_id` was a direct member of group `group_id` right after the event at log
    /// `position`: its membership now, with the deltas of the group's later events undone (newest
    /// first). Group-as-feed security events ask it to route a member's events to a group's feed.
    pub fn is_member_at(
        &self,
        group_id: &str,
        member_id: &str,
        position: u64,
    ) -> Result<bool, StoreError> {
        let mut member = self
            .direct_groups_of(member_id)?
            .iter()
            .any(|g| g == group_id);
        for (_, p) in self.stream(group_id, 1..=u64::MAX)?.iter().rev() {
            if *p <= position {
                break;
            }
            let e = self.streamed_event(group_id, *p)?;
            if e.members_added.iter().any(|m| m.value == member_id) {
                member = false;
            }
            if e.members_removed.iter().any(|m| m.value == member_id) {
                member = true;
            }
        }
        Ok(member)
    }

    /// The event a `streams` row points at; the log lacking it is corruption.
    fn streamed_event(&self, id: &str, position: u64) -> Result<Event, StoreError> {
        self.event(position)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the stream of {id} names position {position}, which the log does not hold"
            ))
        })
    }

    /// When a resource reached `version`, if its stream records that version.
    fn timestamp_of(&self, id: &str, version: u64) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.stream(id, version..=version)?.first() {
            Some((_, position)) => Ok(Some(self.streamed_event(id, *position)?.timestamp)),
            None => Ok(None),
        }
    }

    /// The attributes of a group at `version`: those of the latest event at or before it that
    /// carries them (membership-only events carry none).
    pub fn group_attributes_before(
        &self,
        id: &str,
        version: u64,
    ) -> Result<Map<String, Value>, StoreError> {
        for (_, position) in self.stream(id, 1..=version)?.iter().rev() {
            if let Some(a) = self.streamed_event(id, *position)?.attributes {
                return Ok(a);
            }
        }
        Err(StoreError::Corrupt(format!(
            "group {id} has no event with attributes up to version {version}"
        )))
    }

    /// A group's members at `version`: the current members (or those its delete event removed),
    /// with the deltas of every later event undone, newest first.
    pub fn group_members_at(
        &self,
        id: &str,
        version: u64,
    ) -> Result<BTreeMap<String, ResourceType>, StoreError> {
        let (mut members, at): (BTreeMap<String, ResourceType>, u64) =
            match self.get(ResourceType::Group, id)? {
                Some(current) => (
                    self.members(id)?
                        .into_iter()
                        .map(|m| (m.value, m.member_type))
                        .collect(),
                    current.meta.version,
                ),
                None => {
                    let Some((head, position)) = self.stream_head(id)? else {
                        return Ok(BTreeMap::new());
                    };
                    let removed = self.streamed_event(id, position)?.members_removed;
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
            for (_, position) in self.stream(id, version + 1..=at)?.iter().rev() {
                let e = self.streamed_event(id, *position)?;
                for m in e.members_added {
                    members.remove(&m.value);
                }
                for m in e.members_removed {
                    members.insert(m.value, m.member_type);
                }
            }
        }
        Ok(members)
    }

    /// `as_of`: the position whose member display names to show; `None` for the current ones.
    fn member_views(
        &self,
        members: BTreeMap<String, ResourceType>,
        as_of: Option<u64>,
    ) -> Result<Vec<MemberView>, StoreError> {
        members
            .into_iter()
            .map(|(value, member_type)| {
                let display = match as_of {
                    None => self
                        .get(member_type, &value)?
                        .and_then(|r| resource::display_name(&r.attributes)),
                    Some(position) => self.member_display_at(member_type, &value, position)?,
                };
                Ok(MemberView {
                    value,
                    member_type,
                    display,
                })
            })
            .collect()
    }

    /// The display name member `id` had as of log position `position` (`None` if it had none,
    /// or did not exist then).
    pub fn member_display_at(
        &self,
        member_type: ResourceType,
        id: &str,
        position: u64,
    ) -> Result<Option<String>, StoreError> {
        let current = self.get(member_type, id)?;
        self.display_at(id, current, position)
    }

    /// A member's display name as of log position `position`. Usually the member has not changed
    /// since, and its current state answers; otherwise its newest event at or before `position`
    /// that carries attributes does.
    fn display_at(
        &self,
        id: &str,
        current: Option<StoredResource>,
        position: u64,
    ) -> Result<Option<String>, StoreError> {
        if let Some(current) = &current {
            let v = current.meta.version;
            if self
                .stream(id, v..=v)?
                .first()
                .is_some_and(|(_, p)| *p <= position)
            {
                return Ok(resource::display_name(&current.attributes));
            }
        }
        for (_, p) in self.stream(id, 1..=u64::MAX)?.iter().rev() {
            if *p > position {
                continue;
            }
            let e = self.streamed_event(id, *p)?;
            if e.kind == EventKind::Delete {
                return Ok(None);
            }
            if let Some(a) = e.attributes {
                return Ok(resource::display_name(&a));
            }
        }
        Ok(None)
    }
}
