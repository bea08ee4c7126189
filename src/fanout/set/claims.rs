//! Events of the log → SETs (RFC 8417 envelope, RFC 9967 SCIM profile): which SETs one event
//! yields for one feed, in a fixed order, and what each says.
//!
//! One SET has one subject (RFC 9967 §2.1); several event URIs in one SET are aspects of one state
//! change of that subject (`prov:patch` and `prov:activate` when `active` flips). The log holds
//! after-images, not requests, so `full` carries the resource after the change (RFC 9967 §2.4's
//! definition), not the PUT or PATCH request its examples show.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::SetConfig;
use super::feed::{FeedId, Jti};
use crate::config::EventMode;
use crate::store::{Cause, Event, EventKind, MemberRef, Members, Snapshot, StoreError};
use scim::ResourceType;

/// The RFC 9967 §7.4 event URIs scimd emits.
pub mod uri {
    /// A subject joined the feed (§2.3.1).
    pub const FEED_ADD: &str = "urn:ietf:params:scim:event:feed:add";
    /// A subject left the feed (§2.3.2).
    pub const FEED_REMOVE: &str = "urn:ietf:params:scim:event:feed:remove";
    /// A resource was created; `data` holds it (§2.4.1).
    pub const CREATE_FULL: &str = "urn:ietf:params:scim:event:prov:create:full";
    /// A resource was created; `attributes` names what it holds (§2.4.1).
    pub const CREATE_NOTICE: &str = "urn:ietf:params:scim:event:prov:create:notice";
    /// A resource was patched; `data` holds it after the change (§2.4.2).
    pub const PATCH_FULL: &str = "urn:ietf:params:scim:event:prov:patch:full";
    /// A resource was patched; `attributes` names what changed (§2.4.2).
    pub const PATCH_NOTICE: &str = "urn:ietf:params:scim:event:prov:patch:notice";
    /// A resource was replaced; `data` holds it after the change (§2.4.3).
    pub const PUT_FULL: &str = "urn:ietf:params:scim:event:prov:put:full";
    /// A resource was replaced; `attributes` names what changed (§2.4.3).
    pub const PUT_NOTICE: &str = "urn:ietf:params:scim:event:prov:put:notice";
    /// A resource was deleted (§2.4.4).
    pub const DELETE: &str = "urn:ietf:params:scim:event:prov:delete";
    /// A User's `active` became true (§2.4.5).
    pub const ACTIVATE: &str = "urn:ietf:params:scim:event:prov:activate";
    /// A User's `active` became false or was removed (§2.4.6).
    pub const DEACTIVATE: &str = "urn:ietf:params:scim:event:prov:deactivate";
    /// The outcome of an asynchronous request (§2.5.1.3), made in `asyncresp.rs`.
    pub const ASYNC_RESPONSE: &str = "urn:ietf:params:scim:event:misc:asyncresp";
}

/// The event URIs a server with this configuration can emit, for ServiceProviderConfig's
/// `securityEvents.eventUris` (RFC 9967 §4).
pub fn event_uris(cfg: &SetConfig) -> Vec<&'static str> {
    let mut uris = match cfg.mode {
        EventMode::Notice => vec![uri::CREATE_NOTICE, uri::PATCH_NOTICE, uri::PUT_NOTICE],
        EventMode::Full => vec![uri::CREATE_FULL, uri::PATCH_FULL, uri::PUT_FULL],
    };
    uris.extend([uri::DELETE, uri::ACTIVATE, uri::DEACTIVATE]);
    if cfg.group_as_feed {
        uris.extend([uri::FEED_ADD, uri::FEED_REMOVE]);
    }
    uris
}

/// A SET's subject (RFC 9967 §2.1): format `scim`, the resource's path relative to the SCIM base
/// URI, its id and, when known, its `externalId`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubjectId {
    /// Always `scim`.
    pub format: &'static str,
    /// `/Users/{id}` or `/Groups/{id}`.
    pub uri: String,
    /// The resource's id.
    pub id: String,
    /// The resource's `externalId`, when it has one.
    #[serde(rename = "externalId", skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

impl SubjectId {
    fn of(resource_type: ResourceType, id: &str, external_id: Option<String>) -> SubjectId {
        SubjectId {
            format: "scim",
            uri: format!("/{}/{id}", resource_type.endpoint()),
            id: id.to_owned(),
            external_id,
        }
    }
}

/// One SET's claims, all but `iat` (the signing time, added by [`super::Signer::sign`]).
/// No `sub` (RFC 9967 §2.1 forbids it) and no `exp` (RFC 8417 §2.2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetClaims {
    /// SET_ISSUER, else PUBLIC_URL.
    pub iss: String,
    /// SET_AUDIENCE: one value as a string, several as an array; absent when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Value>,
    /// `{feed}:{position}:{index}` ([`Jti`]).
    pub jti: String,
    /// The event's transaction id: every SET of one request shares it.
    pub txn: String,
    /// The event's commit time (NumericDate).
    pub toe: i64,
    /// The one subject of the SET.
    pub sub_id: SubjectId,
    /// Event URI → payload.
    pub events: Map<String, Value>,
}

/// Why the SETs of an event could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClaimsError {
    /// Reading the store (the resource as of the event, a group's membership) failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The SETs `event` yields for `feed`, in a fixed order: the index in the returned list is the
/// SET's index within the event, part of its `jti`. The default feed gets one SET per event; a
/// group's feed gets `feed:add`/`feed:remove` for each member the event adds or removes (added
/// first, each in the event's order) and the SET of any event about one of its members.
pub fn sets_of(
    event: &Event,
    snap: &Snapshot,
    feed: &FeedId,
    cfg: &SetConfig,
) -> Result<Vec<SetClaims>, ClaimsError> {
    let subjects = match feed.group_id() {
        None => vec![provisioning(event, snap, cfg)?],
        Some(_) if !cfg.group_as_feed => Vec::new(),
        Some(_)
            if event.resource_type == ResourceType::Group
                && *feed == FeedId::group(&event.resource_id) =>
        {
            membership(event, snap)?
        }
        // A member's delete comes before the events that take it out of its groups, so at its
        // position it is still a member and the group's feed hears of the delete.
        Some(group) if snap.is_member_at(group, &event.resource_id, event.position)? => {
            vec![provisioning(event, snap, cfg)?]
        }
        Some(_) => Vec::new(),
    };
    let aud = audience(&cfg.audience);
    Ok(subjects
        .into_iter()
        .enumerate()
        .map(|(index, (sub_id, events))| SetClaims {
            iss: cfg.issuer.clone(),
            aud: aud.clone(),
            jti: Jti {
                feed: feed.clone(),
                position: event.position,
                index,
            }
            .to_string(),
            txn: event.txn_id.clone(),
            toe: event.timestamp.timestamp(),
            sub_id,
            events,
        })
        .collect())
}

/// `aud` of SET_AUDIENCE's values: one as a string, several as an array, none absent.
pub(super) fn audience(audience: &[String]) -> Option<Value> {
    match audience {
        [] => None,
        [one] => Some(json!(one)),
        many => Some(json!(many)),
    }
}

/// One subject and the events of its SET.
type Subject = (SubjectId, Map<String, Value>);

/// The SET of the change `event` made to its resource.
fn provisioning(event: &Event, snap: &Snapshot, cfg: &SetConfig) -> Result<Subject, ClaimsError> {
    let external_id = match &event.attributes {
        Some(attributes) => external_id(attributes),
        // A membership-only group event carries no attributes: the group's current externalId.
        None => snap
            .get(event.resource_type, &event.resource_id)?
            .and_then(|r| external_id(&r.attributes)),
    };
    let subject = SubjectId::of(event.resource_type, &event.resource_id, external_id);
    let mut events = Map::new();
    let (full, notice) = match event.kind {
        EventKind::Delete => {
            events.insert(uri::DELETE.into(), json!({}));
            return Ok((subject, events));
        }
        EventKind::Create => (uri::CREATE_FULL, uri::CREATE_NOTICE),
        // An import made the resource (version 1) or replaced it whole, as a PUT does.
        EventKind::Import if event.version == 1 => (uri::CREATE_FULL, uri::CREATE_NOTICE),
        EventKind::Import | EventKind::Replace => (uri::PUT_FULL, uri::PUT_NOTICE),
        // Server-made changes (a deleted member leaving its groups) are patches of the group.
        EventKind::Patch => (uri::PATCH_FULL, uri::PATCH_NOTICE),
    };
    let version = scim::etag::format(event.version);
    let payload = match cfg.mode {
        EventMode::Notice => (
            notice,
            json!({"attributes": event.changed, "version": version}),
        ),
        EventMode::Full => {
            let data = snap.as_of(event.clone(), &cfg.base, Members::DisplayAsOfEvent)?;
            (full, json!({"data": data, "version": version}))
        }
    };
    events.insert(payload.0.into(), payload.1);
    if let Some(flip) = active_flip(event) {
        events.insert(flip.into(), json!({}));
    }
    Ok((subject, events))
}

/// `prov:activate` or `prov:deactivate` when this event changed a User's `active` (a create
/// counts when it makes an active User): the same state change as the create/put/patch, so the
/// same SET (RFC 9967 §2.1).
fn active_flip(event: &Event) -> Option<&'static str> {
    if event.resource_type != ResourceType::User
        || !event
            .changed
            .iter()
            .any(|c| c.eq_ignore_ascii_case("active"))
    {
        return None;
    }
    let active = event
        .attributes
        .as_ref()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("active"))
        .is_some_and(|(_, v)| v == &Value::Bool(true));
    match (active, event.kind) {
        (true, _) => Some(uri::ACTIVATE),
        // A User created inactive (or without `active`) was never active: nothing turned off.
        (false, EventKind::Create) => None,
        (false, EventKind::Import) if event.version == 1 => None,
        (false, _) => Some(uri::DEACTIVATE),
    }
}

/// The `feed:add`/`feed:remove` SETs of a group's own event, for its feed: members added, then
/// members removed. A member removed because it was deleted gets none: its `prov:delete` already
/// told the feed, and RFC 9967 §2.4.4 forbids a `feed:remove` beside it.
fn membership(event: &Event, snap: &Snapshot) -> Result<Vec<Subject>, ClaimsError> {
    let deleted = event
        .cause
        .as_ref()
        .map(|Cause::MemberDeleted { id, .. }| id.as_str());
    let mut out = Vec::new();
    for m in &event.members_added {
        out.push(member_event(snap, m, uri::FEED_ADD)?);
    }
    for m in event
        .members_removed
        .iter()
        .filter(|m| Some(m.value.as_str()) != deleted)
    {
        out.push(member_event(snap, m, uri::FEED_REMOVE)?);
    }
    Ok(out)
}

fn member_event(snap: &Snapshot, m: &MemberRef, event_uri: &str) -> Result<Subject, ClaimsError> {
    // The member's current externalId: "when known" (RFC 9967 §2.1); it rarely changes.
    let external_id = snap
        .get(m.member_type, &m.value)?
        .and_then(|r| external_id(&r.attributes));
    let mut events = Map::new();
    events.insert(event_uri.into(), json!({}));
    Ok((SubjectId::of(m.member_type, &m.value, external_id), events))
}

fn external_id(attributes: &Map<String, Value>) -> Option<String> {
    attributes
        .get("externalId")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
