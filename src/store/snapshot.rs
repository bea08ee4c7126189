//! Read-only views of the store: one redb read transaction, so every read through a [`Snapshot`]
//! sees the same committed state.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use redb::ReadTransaction;

use super::tables::{
    self, ASYNC_OUTCOMES, ASYNC_PENDING, ASYNC_REQUESTS, CHECKPOINTS, COUNTERS, EVENTS, MEMBER_OF,
    MEMBERS, PARKED, Parked, QUERY_INDEX, REMOTE_IDS, REMOTE_IDS_REVERSE, RESOURCES, SET_ACKS,
    STREAMS, UNIQUE,
};
use super::{AsyncRequest, Event, SetAcks, StoreError, StoredResource};
use scim::ResourceType;
use scim::filter::plan::Lookup;
use scim::resource::{self, GroupView, MemberView};

/// A poll receiver's acknowledgements of one feed: ((receiver, feed), what it acknowledged).
pub type ReceiverAcks = ((String, String), SetAcks);

/// A consistent, read-only view of the log and the read model.
pub struct Snapshot {
    txn: Arc<ReadTransaction>,
}

impl Snapshot {
    pub(crate) fn new(txn: Arc<ReadTransaction>) -> Snapshot {
        Snapshot { txn }
    }

    /// The resource with this id, if it exists.
    pub fn get(&self, rt: ResourceType, id: &str) -> Result<Option<StoredResource>, StoreError> {
        let table = self.txn.open_table(RESOURCES)?;
        tables::get_resource(&table, rt, id)
    }

    /// A group's members, each with its current display name.
    pub fn members(&self, group_id: &str) -> Result<Vec<MemberView>, StoreError> {
        let members = self.txn.open_table(MEMBERS)?;
        let resources = self.txn.open_table(RESOURCES)?;
        tables::member_views(&members, &resources, group_id)
    }

    /// How many direct members a group has (no display names read).
    pub fn member_count(&self, group_id: &str) -> Result<u64, StoreError> {
        let members = self.txn.open_table(MEMBERS)?;
        let mut n = 0;
        for row in members.range((group_id, "")..)? {
            if row?.0.value().0 != group_id {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Ids of the groups `member_id` belongs to directly.
    pub fn direct_groups_of(&self, member_id: &str) -> Result<Vec<String>, StoreError> {
        let table = self.txn.open_table(MEMBER_OF)?;
        tables::groups_of(&table, member_id)
    }

    /// The groups `member_id` belongs to (RFC 7643 §4.1.2 `User.groups`): directly, then indirectly
    /// through nested groups, each group once. A membership cycle ends the walk instead of looping.
    pub fn groups_of(&self, member_id: &str) -> Result<Vec<GroupView>, StoreError> {
        let member_of = self.txn.open_table(MEMBER_OF)?;
        let resources = self.txn.open_table(RESOURCES)?;
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        let mut frontier = tables::groups_of(&member_of, member_id)?;
        let mut direct = true;
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for group in frontier {
                if !seen.insert(group.clone()) {
                    continue;
                }
                let display = tables::get_resource(&resources, ResourceType::Group, &group)?
                    .and_then(|r| resource::display_name(&r.attributes));
                next.extend(tables::groups_of(&member_of, &group)?);
                out.push(GroupView {
                    value: group,
                    display,
                    direct,
                });
            }
            frontier = next;
            direct = false;
        }
        Ok(out)
    }

    /// How many resources of a type exist.
    pub fn count(&self, rt: ResourceType) -> Result<u64, StoreError> {
        let table = self.txn.open_table(COUNTERS)?;
        tables::counter(&table, tables::count_key(rt))
    }

    /// Up to `take` resources of a type after skipping `skip`, in id order.
    pub fn list(
        &self,
        rt: ResourceType,
        skip: u64,
        take: usize,
    ) -> Result<Vec<(String, StoredResource)>, StoreError> {
        let table = self.txn.open_table(RESOURCES)?;
        let mut out = Vec::with_capacity(take.min(1024));
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        for row in table.range((rt.name(), "")..)?.skip(skip) {
            if out.len() >= take {
                break;
            }
            let (k, v) = row?;
            let (t, id) = k.value();
            if t != rt.name() {
                break;
            }
            out.push((id.to_owned(), StoredResource::decode(v.value())?));
        }
        Ok(out)
    }

    /// Up to `take` resources of a type whose ids come after `after`, in id order (keyset paging).
    pub fn list_after(
        &self,
        rt: ResourceType,
        after: &str,
        take: usize,
    ) -> Result<Vec<(String, StoredResource)>, StoreError> {
        let table = self.txn.open_table(RESOURCES)?;
        let mut out = Vec::with_capacity(take.min(1024));
        for row in table.range((rt.name(), after)..)? {
            if out.len() >= take {
                break;
            }
            let (k, v) = row?;
            let (t, id) = k.value();
            if t != rt.name() {
                break;
            }
            if id == after {
                continue;
            }
            out.push((id.to_owned(), StoredResource::decode(v.value())?));
        }
        Ok(out)
    }

    /// Calls `visit` with every resource of a type, in id order.
    pub fn scan(
        &self,
        rt: ResourceType,
        mut visit: impl FnMut(&str, StoredResource) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let table = self.txn.open_table(RESOURCES)?;
        for row in table.range((rt.name(), "")..)? {
            let (k, v) = row?;
            let (t, id) = k.value();
            if t != rt.name() {
                break;
            }
            visit(id, StoredResource::decode(v.value())?)?;
        }
        Ok(())
    }

    /// The id holding a value in the uniqueness index, by its
    /// [`UniqueKey::index_key`](scim::schema::UniqueKey::index_key).
    pub fn unique_owner(&self, index_key: &str) -> Result<Option<String>, StoreError> {
        let table = self.txn.open_table(UNIQUE)?;
        Ok(table.get(index_key)?.map(|v| v.value().to_owned()))
    }

    /// The ids one index read yields, in id order (RFC 7644 §3.4.2.2 filters; see
    /// [`plan`](scim::filter::plan)).
    pub fn lookup(
        &self,
        rt: ResourceType,
        lookup: &Lookup,
    ) -> Result<BTreeSet<String>, StoreError> {
        let mut out = BTreeSet::new();
        match lookup {
            Lookup::Id(id) => {
                let table = self.txn.open_table(RESOURCES)?;
                if table.get((rt.name(), id.as_str()))?.is_some() {
                    out.insert(id.clone());
                }
            }
            Lookup::MemberOf(member) => {
                let table = self.txn.open_table(MEMBER_OF)?;
                out.extend(tables::groups_of(&table, &member.to_lowercase())?);
            }
            Lookup::Key { key, exact } => {
                let table = self.txn.open_table(QUERY_INDEX)?;
                for row in table.range((key.as_str(), "")..)? {
                    let (k, _) = row?;
                    let (row_key, id) = k.value();
                    let hit = if *exact {
                        row_key == key
                    } else {
                        row_key.starts_with(key.as_str())
                    };
                    if !hit {
                        break;
                    }
                    out.insert(id.to_owned());
                }
            }
            Lookup::Range {
                prefix,
                lower,
                upper,
            } => {
                let table = self.txn.open_table(QUERY_INDEX)?;
                let start = match lower {
                    Some((v, _)) => format!("{prefix}{v}"),
                    None => prefix.clone(),
                };
                for row in table.range((start.as_str(), "")..)? {
                    let (k, _) = row?;
                    let (row_key, id) = k.value();
                    let Some(value) = row_key.strip_prefix(prefix.as_str()) else {
                        break;
                    };
                    if let Some((v, inclusive)) = lower
                        && (value < v.as_str() || (!inclusive && value == v))
                    {
                        continue;
                    }
                    if let Some((v, inclusive)) = upper
                        && (value > v.as_str() || (!inclusive && value == v))
                    {
                        break;
                    }
                    out.insert(id.to_owned());
                }
            }
        }
        Ok(out)
    }

    /// The last committed log position (0 for an empty log).
    pub fn position(&self) -> Result<u64, StoreError> {
        let table = self.txn.open_table(COUNTERS)?;
        tables::counter(&table, tables::POSITION)
    }

    /// Up to `limit` events from position `from` on, in order.
    pub fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let table = self.txn.open_table(EVENTS)?;
        let mut out = Vec::with_capacity(limit.min(4096));
        for row in table.range(from..)? {
            if out.len() >= limit {
                break;
            }
            let (_, v) = row?;
            out.push(Event::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    /// The event at a position, if there is one.
    pub fn event(&self, position: u64) -> Result<Option<Event>, StoreError> {
        let table = self.txn.open_table(EVENTS)?;
        match table.get(position)? {
            Some(v) => Ok(Some(
                Event::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// Positions of a resource's events with versions in `versions`, in version order.
    pub fn stream(
        &self,
        id: &str,
        versions: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let table = self.txn.open_table(STREAMS)?;
        let mut out = Vec::new();
        for row in table.range((id, *versions.start())..=(id, *versions.end()))? {
            let (k, v) = row?;
            out.push((k.value().1, v.value()));
        }
        Ok(out)
    }

    /// The last version a resource's stream reached (its delete event's version if deleted).
    pub fn stream_head(&self, id: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let table = self.txn.open_table(STREAMS)?;
        let mut range = table.range((id, 0u64)..=(id, u64::MAX))?;
        match range.next_back() {
            Some(row) => {
                let (k, v) = row?;
                Ok(Some((k.value().1, v.value())))
            }
            None => Ok(None),
        }
    }

    /// The saved position of a log subscriber (0 if it never saved one).
    pub fn checkpoint(&self, name: &str) -> Result<u64, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS)?;
        Ok(table.get(name)?.map(|v| v.value()).unwrap_or(0))
    }

    /// The asynchronous request accepted under Set-Txn `txn`, if it is kept.
    pub fn async_request(&self, txn: &str) -> Result<Option<AsyncRequest>, StoreError> {
        let table = self.txn.open_table(ASYNC_REQUESTS)?;
        match table.get(txn)? {
            Some(v) => Ok(Some(AsyncRequest::decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` asynchronous requests still to run, with their Set-Txn, in arrival order.
    pub fn async_pending(&self, limit: usize) -> Result<Vec<(String, AsyncRequest)>, StoreError> {
        let pending = self.txn.open_table(ASYNC_PENDING)?;
        let txns = pending
            .range::<u64>(..)?
            .take(limit)
            .map(|row| row.map(|(_, txn)| txn.value().to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        self.async_requests(txns)
    }

    /// Up to `limit` finished asynchronous requests whose completion sequence is after `after`,
    /// with their Set-Txn, in completion order: the durable sequence of `misc:asyncresp` outcomes
    /// a SET feed reads beside the log (the sequence is [`AsyncOutcome::completion`]).
    ///
    /// [`AsyncOutcome::completion`]: super::AsyncOutcome::completion
    pub fn async_outcomes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(String, AsyncRequest)>, StoreError> {
        let outcomes = self.txn.open_table(ASYNC_OUTCOMES)?;
        let txns = outcomes
            .range(after.saturating_add(1)..)?
            .take(limit)
            .map(|row| row.map(|(_, txn)| txn.value().to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        self.async_requests(txns)
    }

    fn async_requests(&self, txns: Vec<String>) -> Result<Vec<(String, AsyncRequest)>, StoreError> {
        let mut out = Vec::with_capacity(txns.len());
        for txn in txns {
            let request = self.async_request(&txn)?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "asynchronous request {txn} is indexed but not kept"
                ))
            })?;
            out.push((txn, request));
        }
        Ok(out)
    }

    /// The changes a subscriber parked, by resource id.
    pub fn parked(&self, subscriber: &str) -> Result<Vec<(String, Parked)>, StoreError> {
        let table = self.txn.open_table(PARKED)?;
        let mut out = Vec::new();
        for row in table.range((subscriber, "")..)? {
            let (k, v) = row?;
            let (s, id) = k.value();
            if s != subscriber {
                break;
            }
            let parked = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Corrupt(format!("parked change does not decode: {e}")))?;
            out.push((id.to_owned(), parked));
        }
        Ok(out)
    }

    /// The ids a remote projection's backend assigned to `ids` (of type `rt`), in order; `None`
    /// where the map has no entry.
    pub fn remote_ids(
        &self,
        projection: &str,
        rt: ResourceType,
        ids: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        self.id_lookup(REMOTE_IDS, projection, rt, ids)
    }

    /// The scimd ids a remote projection's map gives for `remote_ids` (of type `rt`), in order.
    pub fn local_ids(
        &self,
        projection: &str,
        rt: ResourceType,
        remote_ids: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        self.id_lookup(REMOTE_IDS_REVERSE, projection, rt, remote_ids)
    }

    fn id_lookup(
        &self,
        table: redb::TableDefinition<(&str, &str, &str), &str>,
        projection: &str,
        rt: ResourceType,
        keys: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let table = match self.txn.open_table(table) {
            Ok(table) => table,
            // A store no writer has opened since the map was introduced: nothing is mapped.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; keys.len()]),
            Err(e) => return Err(e.into()),
        };
        keys.iter()
            .map(|key| {
                Ok(table
                    .get((projection, rt.name(), key.as_str()))?
                    .map(|v| v.value().to_owned()))
            })
            .collect()
    }

    /// Every `(id, remote id)` of a remote projection's map for type `rt`, in id order.
    pub fn remote_id_entries(
        &self,
        projection: &str,
        rt: ResourceType,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let table = match self.txn.open_table(REMOTE_IDS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in table.range((projection, rt.name(), "")..)? {
            let (k, v) = row?;
            let (p, kind, id) = k.value();
            if p != projection || kind != rt.name() {
                break;
            }
            out.push((id.to_owned(), v.value().to_owned()));
        }
        Ok(out)
    }

    /// What poll receiver `receiver` has acknowledged of SET feed `feed` (nothing, if it never
    /// acknowledged anything there).
    pub fn set_acks(&self, receiver: &str, feed: &str) -> Result<SetAcks, StoreError> {
        let table = match self.txn.open_table(SET_ACKS) {
            Ok(table) => table,
            // A store no writer has opened since poll delivery was introduced.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(SetAcks::default()),
            Err(e) => return Err(e.into()),
        };
        match table.get((receiver, feed))? {
            Some(v) => SetAcks::decode(v.value()),
            None => Ok(SetAcks::default()),
        }
    }

    /// Every poll receiver's acknowledgements, by (receiver, feed), in that order.
    pub fn all_set_acks(&self) -> Result<Vec<ReceiverAcks>, StoreError> {
        let table = match self.txn.open_table(SET_ACKS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in table.range::<(&str, &str)>(..)? {
            let (k, v) = row?;
            let (receiver, feed) = k.value();
            out.push((
                (receiver.to_owned(), feed.to_owned()),
                SetAcks::decode(v.value())?,
            ));
        }
        Ok(out)
    }

    pub(crate) fn txn(&self) -> &ReadTransaction {
        &self.txn
    }
}
