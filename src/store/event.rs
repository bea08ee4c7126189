//! The event envelope: one immutable record per change, versioned so the format can evolve
//! without rewriting old logs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::StoreError;
use scim::ResourceType;

/// The envelope version this build writes. Readers accept every version up to this one.
pub const ENVELOPE_VERSION: u8 = 1;

/// The SCIM operation that caused an event. A change the server makes on its own (removing a deleted
/// resource from its groups) is a `Patch` with a [`Cause`]; a resource moved in from an earlier
/// server by `scimd import` is an `Import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Create,
    Replace,
    Patch,
    Delete,
    /// `scimd import`: the whole resource as an earlier server held it, with its id kept. Creates
    /// the resource (version 1) or replaces it (the next version) like a PUT; a Group's event
    /// carries the membership deltas against what the store held, as a replace does.
    Import,
}

/// Why the server changed a resource nobody wrote to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Cause {
    /// A member of this group was deleted.
    MemberDeleted {
        /// The deleted resource's type.
        resource_type: ResourceType,
        /// The deleted resource's id.
        id: String,
    },
}

/// One member of a group, as recorded in membership deltas.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberRef {
    /// The member's id.
    pub value: String,
    /// Whether the member is a User or a Group.
    #[serde(rename = "type")]
    pub member_type: ResourceType,
}

/// One event of the log. It carries everything needed to rebuild the read model without
/// recomputing anything: ids, timestamps and versions are recorded, never derived on replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Envelope version ([`ENVELOPE_VERSION`] when written by this build).
    pub v: u8,
    /// Global, gap-free position in commit order, starting at 1.
    pub position: u64,
    /// Unique id of the event; AMQP messages carry it as `message_id`.
    pub event_id: Uuid,
    /// The request (or server transaction) that produced this event.
    pub txn_id: String,
    /// Commit time; also the resource's `meta.lastModified` after this event.
    pub timestamp: DateTime<Utc>,
    /// Which API key made the change: its name, or a short hash of it. `server` for server-made changes.
    pub actor: String,
    /// The resource's type.
    pub resource_type: ResourceType,
    /// The resource's id.
    pub resource_id: String,
    /// The resource's version after this event (1 on create).
    pub version: u64,
    /// The operation that caused the event.
    pub kind: EventKind,
    /// Set when the server made the change on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// Top-level attribute names whose values changed.
    pub changed: Vec<String>,
    /// The resource's `meta.created`.
    pub created: DateTime<Utc>,
    /// Users: the full after-image (for `delete`: the before-image). Groups: every attribute except
    /// `members`; absent when only membership changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
    /// Groups: members added by this event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members_added: Vec<MemberRef>,
    /// Groups: members removed by this event (on `delete`: every member the group had).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members_removed: Vec<MemberRef>,
    /// The hash chain: SHA-256 (hex) of the previous event's stored bytes ([`GENESIS`] for the
    /// first event), so an event rewritten in place, even one that still decodes, breaks the chain
    /// at the event after it (`scimd log verify`). Events written before the chain existed have
    /// none: a store's chain begins at its first event written by a scimd that has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
}

/// The `prev` of the first event of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash the next event's `prev` carries: SHA-256 of an event's stored bytes, in hex.
pub fn chain_hash(stored: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(stored))
}

/// The first 8 bytes of a chain hash as a number: the `chain-head` counter, which lets verify
/// see a rewritten last event (no event after it carries its hash).
pub(crate) fn chain_head(hash: &str) -> u64 {
    let mut head = [0u8; 8];
    if let Ok(bytes) = hex::decode(hash.get(..16).unwrap_or_default()) {
        head.copy_from_slice(&bytes[..8.min(bytes.len())]);
    }
    u64::from_be_bytes(head)
}

/// Errors decoding a stored envelope.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a valid envelope.
    #[error("event does not decode: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Written by a newer scimd than this one.
    #[error("event envelope version {0} is newer than this scimd understands ({ENVELOPE_VERSION})")]
    TooNew(u8),
}

impl Event {
    /// Serialises the envelope for the events table. A failure is an error, never an empty event.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|source| StoreError::Encode {
            what: "an event",
            source,
        })
    }

    /// Parses an envelope read from the events table.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let event: Event = serde_json::from_slice(bytes)?;
        if event.v > ENVELOPE_VERSION {
            return Err(DecodeError::TooNew(event.v));
        }
        Ok(event)
    }
}
