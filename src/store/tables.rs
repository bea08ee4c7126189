//! The redb tables of the store and the reads shared by the writer task and readers.
//!
//! Layout (all in one file, all written in the same transaction):
//! - `events`: position → envelope (the log; append-only, gap-free, starting at 1)
//! - `resources`: (resource type, id) → [`StoredResource`] (the read model)
//! - `members`: (group id, member id) → member type; `member_of`: (member id, group id) → ()
//! - `streams`: (resource id, version) → position of the event that made that version
//! - `unique`: [`UniqueKey::index_key`](scim::schema::UniqueKey::index_key) → id
//! - `query_index`: ([`plan::index_keys`](scim::filter::plan::index_keys) row, id) → (): the
//!   filter indexes (userName, externalId, displayName, emails.value, meta.lastModified)
//! - `parked`: (subscriber, resource id) → [`Parked`]: changes a projection backend refused for good
//! - `counters`: `position`, `chain-head` and `count:{type}`; `checkpoints`: subscriber name → position
//! - `remote_ids`: (projection, resource type, id) → the id a remote backend assigned, and its
//!   reverse `remote_ids_reverse`: (projection, resource type, remote id) → id (see
//!   [`projections::IdMap`]); written only by the projection runners, never by an event
//! - `async_requests`: Set-Txn → [`AsyncRequest`](super::AsyncRequest); `async_pending`: arrival
//!   sequence → Set-Txn of those still to run; `async_outcomes`: completion sequence → Set-Txn of
//!   those that have run (see `async_request.rs`); never written by an event

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::StoreError;
use scim::ResourceType;
use scim::resource::{self, MemberView, Meta};

pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
pub(crate) const RESOURCES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("resources");
pub(crate) const MEMBERS: TableDefinition<(&str, &str), &str> = TableDefinition::new("members");
pub(crate) const MEMBER_OF: TableDefinition<(&str, &str), ()> = TableDefinition::new("member_of");
pub(crate) const STREAMS: TableDefinition<(&str, u64), u64> = TableDefinition::new("streams");
pub(crate) const UNIQUE: TableDefinition<&str, &str> = TableDefinition::new("unique");
pub(crate) const QUERY_INDEX: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("query_index");
pub(crate) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
pub(crate) const PARKED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("parked");
pub(crate) const CHECKPOINTS: TableDefinition<&str, u64> = TableDefinition::new("checkpoints");
pub(crate) const REMOTE_IDS: TableDefinition<(&str, &str, &str), &str> =
    TableDefinition::new("remote_ids");
pub(crate) const REMOTE_IDS_REVERSE: TableDefinition<(&str, &str, &str), &str> =
    TableDefinition::new("remote_ids_reverse");

pub(crate) const ASYNC_REQUESTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("async_requests");
pub(crate) const ASYNC_PENDING: TableDefinition<u64, &str> = TableDefinition::new("async_pending");
pub(crate) const ASYNC_OUTCOMES: TableDefinition<u64, &str> =
    TableDefinition::new("async_outcomes");

/// The counter holding the last arrival sequence given to an asynchronous request.
pub(crate) const ASYNC_ARRIVAL: &str = "async-arrival";

/// The counter holding the last completion sequence given to an asynchronous request's outcome.
pub(crate) const ASYNC_COMPLETION: &str = "async-completion";

/// The counter holding [`Registry::uniqueness_fingerprint`](scim::schema::Registry::uniqueness_fingerprint)
/// of the schemas the uniqueness index was built with.
pub(crate) const UNIQUE_SCHEMA: &str = "unique-schema";

/// The counter holding the layout version the query index was built with.
pub(crate) const QUERY_INDEX_VERSION: &str = "query-index-version";

/// The current layout of the query index; a store built with another is reindexed at start-up.
pub(crate) const QUERY_INDEX_LAYOUT: u64 = 1;

/// The counter holding the last committed position.
pub(crate) const POSITION: &str = "position";

/// The counter holding the first 8 bytes of the last event's chain hash (see `Event::prev`).
pub(crate) const CHAIN_HEAD: &str = "chain-head";

/// The counter of live resources of a type.
pub(crate) fn count_key(rt: ResourceType) -> &'static str {
    match rt {
        ResourceType::User => "count:User",
        ResourceType::Group => "count:Group",
    }
}

/// A resource in the read model: its attributes (Groups: without `members`) and its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResource {
    /// `meta` without `location`.
    pub meta: Meta,
    /// Every stored attribute, `password` (hashed) included.
    pub attributes: Map<String, Value>,
}

impl StoredResource {
    /// Serialises the resource for the resources table. A failure is an error, never empty bytes.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|source| StoreError::Encode {
            what: "a resource",
            source,
        })
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt(format!("resource does not decode: {e}")))
    }
}

/// A change a projection backend refused for good, kept until `scimd projection retry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    /// The resource's type.
    pub resource_type: ResourceType,
    /// The log position of the refused change.
    pub position: u64,
    /// The backend's reason.
    pub error: String,
}

impl Parked {
    /// Serialises the parked change for the parked table. A failure is an error, never empty bytes.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|source| StoreError::Encode {
            what: "a parked change",
            source,
        })
    }
}

pub(crate) fn get_resource(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    rt: ResourceType,
    id: &str,
) -> Result<Option<StoredResource>, StoreError> {
    match table.get((rt.name(), id))? {
        Some(v) => Ok(Some(StoredResource::decode(v.value())?)),
        None => Ok(None),
    }
}

/// Ids and types of a group's members, in id order.
pub(crate) fn member_refs(
    table: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    group_id: &str,
) -> Result<Vec<(String, ResourceType)>, StoreError> {
    let mut out = Vec::new();
    for row in table.range((group_id, "")..)? {
        let (k, v) = row?;
        let (g, m) = k.value();
        if g != group_id {
            break;
        }
        let rt = ResourceType::from_name(v.value())
            .ok_or_else(|| StoreError::Corrupt(format!("member {m} has an unknown type")))?;
        out.push((m.to_owned(), rt));
    }
    Ok(out)
}

/// Ids of the groups `member_id` belongs to directly.
pub(crate) fn groups_of(
    table: &impl ReadableTable<(&'static str, &'static str), ()>,
    member_id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for row in table.range((member_id, "")..)? {
        let (k, _) = row?;
        let (m, g) = k.value();
        if m != member_id {
            break;
        }
        out.push(g.to_owned());
    }
    Ok(out)
}

/// The members of a group as the API shows them, each with its current display name.
pub(crate) fn member_views(
    members: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    resources: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    group_id: &str,
) -> Result<Vec<MemberView>, StoreError> {
    member_refs(members, group_id)?
        .into_iter()
        .map(|(value, member_type)| {
            let display = get_resource(resources, member_type, &value)?
                .and_then(|r| resource::display_name(&r.attributes));
            Ok(MemberView {
                value,
                member_type,
                display,
            })
        })
        .collect()
}

pub(crate) fn counter(
    table: &impl ReadableTable<&'static str, u64>,
    key: &str,
) -> Result<u64, StoreError> {
    Ok(table.get(key)?.map(|v| v.value()).unwrap_or(0))
}
