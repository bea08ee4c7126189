//! The group documents of AMQP messages, kept from one message to the next of a publishing
//! session, so that a group event costs its delta and not the group's size.
//!
//! Worked out from the store alone, a group message reads the group's attributes back through its
//! stream (membership-only events carry none) and, with `AMQP_GROUP_MEMBERS=full`, its member list
//! and every member resource (for the display name as of the event): a single-member change to a
//! 100,000-member group decoded 100,000 resources. The publisher sends the log in order and this
//! cache sees every event it sends, so it keeps, exactly as of the last event seen:
//! - each group's attributes and (in `full` mode) its member list, moved on by each of its events'
//!   deltas;
//! - the display name of every member it has looked up, replaced by each later event of that member
//!   that carries attributes (a rename) or deletes it, so a renamed member's new name is in the very
//!   next message that lists it.
//!
//! Whatever it does not hold is read from the store as of the event, as before. An event that does
//! not directly follow the last one seen (a new session resumes from the checkpoint; a parked
//! message is published again) finds the cache emptied first: it is never consulted across a gap.
//! Its size is bounded by [`MAX_ENTRIES`] (member entries plus display names); beyond, it is emptied
//! and fills again.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::config::GroupMembers;
use crate::store::{Event, EventKind, Members, Snapshot, StoreError};
use scim::ResourceType;
use scim::resource::{self, MemberView};

/// Most entries held: members of cached groups plus display names (about 100 bytes each, so at
/// most ≈ 50 MB). A group of more than about half of this is looked up in the store every time.
pub const MAX_ENTRIES: usize = 500_000;

/// A group as of the last event seen.
struct CachedGroup {
    version: u64,
    attributes: Map<String, Value>,
    /// Only in `full` mode.
    members: Option<BTreeMap<String, ResourceType>>,
}

impl CachedGroup {
    fn entries(&self) -> usize {
        1 + self.members.as_ref().map_or(0, BTreeMap::len)
    }
}

/// The resources of one session's messages (see the module documentation).
pub struct GroupDocuments {
    mode: GroupMembers,
    /// The position of the last event seen: everything held is as of it.
    through: u64,
    groups: HashMap<String, CachedGroup>,
    /// Entries of `groups`, members included.
    group_entries: usize,
    /// Member id → its display name as of `through` (`None`: it has none, or is deleted).
    displays: HashMap<String, Option<String>>,
}

impl GroupDocuments {
    /// An empty cache for messages in `mode`.
    pub fn new(mode: GroupMembers) -> GroupDocuments {
        GroupDocuments {
            mode,
            through: 0,
            groups: HashMap::new(),
            group_entries: 0,
            displays: HashMap::new(),
        }
    }

    /// How group messages show their members.
    pub fn mode(&self) -> GroupMembers {
        self.mode
    }

    /// The `resource` of `event`'s message: the resource as of the event, as
    /// [`Snapshot::as_of`] makes it (group members with their display names as of the event in
    /// `full` mode, no members in `changes` mode).
    pub fn resource(
        &mut self,
        snapshot: &Snapshot,
        event: &Event,
        base: &str,
    ) -> Result<Value, StoreError> {
        self.follow(event);
        let document = match event.resource_type {
            ResourceType::User => snapshot.as_of(event.clone(), base, Members::Omit),
            ResourceType::Group => self.group(snapshot, event, base),
        };
        if self.group_entries + self.displays.len() > MAX_ENTRIES {
            self.clear();
        }
        document
    }

    /// Moves what is held on to `event`: a gap empties the cache, a rename or a delete replaces
    /// the display name held for the resource.
    fn follow(&mut self, event: &Event) {
        if event.position != self.through + 1 {
            self.clear();
        }
        self.through = event.position;
        if let Some(display) = self.displays.get_mut(&event.resource_id) {
            if event.kind == EventKind::Delete {
                *display = None;
            } else if let Some(attributes) = &event.attributes {
                *display = resource::display_name(attributes);
            }
        }
    }

    fn clear(&mut self) {
        self.groups.clear();
        self.group_entries = 0;
        self.displays.clear();
    }

    /// A group's document, from what is held when it holds the version just before the event.
    fn group(
        &mut self,
        snapshot: &Snapshot,
        event: &Event,
        base: &str,
    ) -> Result<Value, StoreError> {
        let id = event.resource_id.as_str();
        let previous = self
            .groups
            .remove(id)
            .inspect(|g| self.group_entries -= g.entries())
            .filter(|g| g.version + 1 == event.version);
        let attributes = match (&event.attributes, &previous) {
            (Some(a), _) => a.clone(),
            (None, Some(g)) => g.attributes.clone(),
            (None, None) => snapshot.group_attributes_before(id, event.version)?,
        };
        let deleted = event.kind == EventKind::Delete;
        let members = match self.mode {
            GroupMembers::Changes => None,
            GroupMembers::Full if deleted => Some(
                event
                    .members_removed
                    .iter()
                    .map(|m| (m.value.clone(), m.member_type))
                    .collect(),
            ),
            GroupMembers::Full => match previous.and_then(|g| g.members) {
                Some(mut members) => {
                    for m in &event.members_removed {
                        members.remove(&m.value);
                    }
                    for m in &event.members_added {
                        members.insert(m.value.clone(), m.member_type);
                    }
                    Some(members)
                }
                None => Some(snapshot.group_members_at(id, event.version)?),
            },
        };
        let views = match &members {
            Some(members) => Some(self.views(snapshot, members, event.position)?),
            None => None,
        };
        let document = snapshot.render_as_of(event, base, attributes.clone(), views.as_deref())?;
        if !deleted {
            let group = CachedGroup {
                version: event.version,
                attributes,
                members,
            };
            self.group_entries += group.entries();
            self.groups.insert(id.to_owned(), group);
        }
        Ok(document)
    }

    /// `members` with their display names as of `position` (the last event seen).
    fn views(
        &mut self,
        snapshot: &Snapshot,
        members: &BTreeMap<String, ResourceType>,
        position: u64,
    ) -> Result<Vec<MemberView>, StoreError> {
        let mut views = Vec::with_capacity(members.len());
        for (value, member_type) in members {
            let display = match self.displays.get(value) {
                Some(display) => display.clone(),
                None => {
                    let display = snapshot.member_display_at(*member_type, value, position)?;
                    self.displays.insert(value.clone(), display.clone());
                    display
                }
            };
            views.push(MemberView {
                value: value.clone(),
                member_type: *member_type,
                display,
            });
        }
        Ok(views)
    }
}
