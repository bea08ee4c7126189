//! The tables of one write transaction, and the bookkeeping every command shares: appending
//! events, keeping the query index and the uniqueness rows in step with the resources.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, Table, WriteTransaction};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::store::WriteContext;
use crate::store::event::{ENVELOPE_VERSION, GENESIS, MemberRef, chain_hash, chain_head};
use crate::store::tables::{
    self, ASYNC_OUTCOMES, ASYNC_PENDING, ASYNC_REQUESTS, CHAIN_HEAD, CHECKPOINTS, COUNTERS, EVENTS,
    MEMBER_OF, MEMBERS, PARKED, POSITION, QUERY_INDEX, REMOTE_IDS, REMOTE_IDS_REVERSE, RESOURCES,
    STREAMS, UNIQUE,
};
use crate::store::{Cause, Event, EventKind, StoreError, StoredResource};
use scim::ResourceType;
use scim::filter::plan;
use scim::schema::UniqueKey;

/// The tables of one write transaction, opened once per batch.
pub(super) struct TxnTables<'txn> {
    pub(super) events: Table<'txn, u64, &'static [u8]>,
    pub(super) resources: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub(super) members: Table<'txn, (&'static str, &'static str), &'static str>,
    pub(super) member_of: Table<'txn, (&'static str, &'static str), ()>,
    pub(super) streams: Table<'txn, (&'static str, u64), u64>,
    pub(super) unique: Table<'txn, &'static str, &'static str>,
    pub(super) query_index: Table<'txn, (&'static str, &'static str), ()>,
    pub(super) counters: Table<'txn, &'static str, u64>,
    pub(super) checkpoints: Table<'txn, &'static str, u64>,
    pub(super) parked: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub(super) remote_ids: Table<'txn, (&'static str, &'static str, &'static str), &'static str>,
    pub(super) remote_ids_reverse:
        Table<'txn, (&'static str, &'static str, &'static str), &'static str>,
    pub(super) async_requests: Table<'txn, &'static str, &'static [u8]>,
    pub(super) async_pending: Table<'txn, u64, &'static str>,
    pub(super) async_outcomes: Table<'txn, u64, &'static str>,
    pub(super) position: u64,
    pub(super) now: DateTime<Utc>,
    /// The chain hash of the last event: the next event's `prev`.
    last_hash: String,
}

impl<'txn> TxnTables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        let counters = txn.open_table(COUNTERS)?;
        let position = tables::counter(&counters, POSITION)?;
        let events = txn.open_table(EVENTS)?;
        let last_hash = match events.last()? {
            Some((_, stored)) => chain_hash(stored.value()),
            None => GENESIS.to_owned(),
        };
        Ok(TxnTables {
            events,
            resources: txn.open_table(RESOURCES)?,
            members: txn.open_table(MEMBERS)?,
            member_of: txn.open_table(MEMBER_OF)?,
            streams: txn.open_table(STREAMS)?,
            unique: txn.open_table(UNIQUE)?,
            query_index: txn.open_table(QUERY_INDEX)?,
            counters,
            checkpoints: txn.open_table(CHECKPOINTS)?,
            parked: txn.open_table(PARKED)?,
            remote_ids: txn.open_table(REMOTE_IDS)?,
            remote_ids_reverse: txn.open_table(REMOTE_IDS_REVERSE)?,
            async_requests: txn.open_table(ASYNC_REQUESTS)?,
            async_pending: txn.open_table(ASYNC_PENDING)?,
            async_outcomes: txn.open_table(ASYNC_OUTCOMES)?,
            position,
            now: Utc::now(),
            last_hash,
        })
    }

    /// Records the batch's position and chain head; the last step before the commit.
    pub(super) fn finish(&mut self) -> Result<(), StoreError> {
        self.counters.insert(POSITION, self.position)?;
        self.counters
            .insert(CHAIN_HEAD, chain_head(&self.last_hash))?;
        Ok(())
    }

    /// Appends an event at the next position and returns that position.
    ///
    /// Each event carries the chain hash of the one before it (`Event::prev`).
    ///
    /// Keeps the log gap-free: positions go up by one per event in the order the writer applies
    /// commands, and since a batch commits whole or not at all, no committed log skips one. The
    /// `streams` row goes in with the event, so a resource's versions always find their events.
    pub(super) fn append(&mut self, mut event: Event) -> Result<u64, StoreError> {
        self.position += 1;
        event.position = self.position;
        event.prev = Some(std::mem::take(&mut self.last_hash));
        let stored = event.encode()?;
        self.last_hash = chain_hash(&stored);
        self.events.insert(self.position, stored.as_slice())?;
        self.streams
            .insert((event.resource_id.as_str(), event.version), self.position)?;
        Ok(self.position)
    }

    /// Writes a resource and keeps its query index rows in step.
    pub(super) fn put_resource(
        &mut self,
        rt: ResourceType,
        id: &str,
        r: &StoredResource,
    ) -> Result<(), StoreError> {
        self.unindex(rt, id)?;
        self.resources
            .insert((rt.name(), id), r.encode()?.as_slice())?;
        for key in plan::index_keys(rt, &r.attributes, &r.meta) {
            self.query_index.insert((key.as_str(), id), ())?;
        }
        Ok(())
    }

    /// Removes a resource and its query index rows.
    pub(super) fn remove_resource(&mut self, rt: ResourceType, id: &str) -> Result<(), StoreError> {
        self.unindex(rt, id)?;
        self.resources.remove((rt.name(), id))?;
        Ok(())
    }

    /// Removes the query index rows of the stored version of a resource.
    pub(super) fn unindex(&mut self, rt: ResourceType, id: &str) -> Result<(), StoreError> {
        if let Some(old) = tables::get_resource(&self.resources, rt, id)? {
            for key in plan::index_keys(rt, &old.attributes, &old.meta) {
                self.query_index.remove((key.as_str(), id))?;
            }
        }
        Ok(())
    }

    /// Removes a uniqueness index row if `id` owns it. A value shared since before it was declared
    /// unique (see `reindex::reindex_unique`) belongs to another resource, whose row must stay.
    pub(super) fn release(
        &mut self,
        rt: ResourceType,
        key: &UniqueKey,
        id: &str,
    ) -> Result<(), StoreError> {
        let index_key = key.index_key(rt);
        let owned = self
            .unique
            .get(index_key.as_str())?
            .is_some_and(|owner| owner.value() == id);
        if owned {
            self.unique.remove(index_key.as_str())?;
        }
        Ok(())
    }

    pub(super) fn bump_count(&mut self, rt: ResourceType, delta: i64) -> Result<(), StoreError> {
        let key = tables::count_key(rt);
        let n = tables::counter(&self.counters, key)?;
        self.counters.insert(key, n.saturating_add_signed(delta))?;
        Ok(())
    }

    pub(super) fn add_member(&mut self, group: &str, m: &MemberRef) -> Result<(), StoreError> {
        self.members
            .insert((group, m.value.as_str()), m.member_type.name())?;
        self.member_of.insert((m.value.as_str(), group), ())?;
        Ok(())
    }

    pub(super) fn remove_member(&mut self, group: &str, member: &str) -> Result<(), StoreError> {
        self.members.remove((group, member))?;
        self.member_of.remove((member, group))?;
        Ok(())
    }
}

/// The fields of an event that vary per command.
pub(super) struct EventBody {
    pub(super) rt: ResourceType,
    pub(super) id: String,
    pub(super) version: u64,
    pub(super) kind: EventKind,
    pub(super) cause: Option<Cause>,
    pub(super) changed: Vec<String>,
    pub(super) created: DateTime<Utc>,
    pub(super) attributes: Option<Map<String, Value>>,
    pub(super) members_added: Vec<MemberRef>,
    pub(super) members_removed: Vec<MemberRef>,
}

pub(super) fn event(t: &TxnTables<'_>, ctx: &WriteContext, body: EventBody) -> Event {
    Event {
        v: ENVELOPE_VERSION,
        position: 0,
        event_id: Uuid::new_v4(),
        txn_id: ctx.txn_id.clone(),
        timestamp: t.now,
        actor: ctx.actor.clone(),
        resource_type: body.rt,
        resource_id: body.id,
        version: body.version,
        kind: body.kind,
        cause: body.cause,
        changed: body.changed,
        created: body.created,
        attributes: body.attributes,
        members_added: body.members_added,
        members_removed: body.members_removed,
        prev: None,
    }
}
