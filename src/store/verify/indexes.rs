//! The tables beside the log, once every resource has been checked: counters, the index tables
//! (by their row counts, walked only when a count differs, to name the rows that should not be
//! there), the member → groups index, checkpoints and parked changes.

use redb::ReadableTableMetadata;

use super::Checker;
use crate::store::tables::{
    self, CHECKPOINTS, COUNTERS, EVENTS, MEMBER_OF, MEMBERS, PARKED, POSITION, QUERY_INDEX,
    QUERY_INDEX_LAYOUT, QUERY_INDEX_VERSION, RESOURCES, STREAMS, UNIQUE, UNIQUE_SCHEMA,
};
use crate::store::{Event, Parked, StoreError, StoredResource};
use scim::ResourceType;
use scim::filter::plan;

/// Rows the index tables must hold, counted while the resources are checked.
#[derive(Debug, Default)]
pub(super) struct Expected {
    pub(super) member_rows: u64,
    pub(super) unique_rows: u64,
    pub(super) query_rows: u64,
    /// The uniqueness index was built under the schemas verify runs with.
    pub(super) unique_current: bool,
    /// The query index has the layout this build reads.
    pub(super) query_current: bool,
}

/// Decides which indexes can be compared: one built under other schemas or another layout is
/// rebuilt by the next `scimd serve`, so it is noted, not reported.
pub(super) fn prepare(c: &mut Checker<'_>) -> Result<(), StoreError> {
    let counters = c.txn.open_table(COUNTERS)?;
    c.expected.unique_current =
        tables::counter(&counters, UNIQUE_SCHEMA)? == c.registry.uniqueness_fingerprint();
    c.expected.query_current =
        tables::counter(&counters, QUERY_INDEX_VERSION)? == QUERY_INDEX_LAYOUT;
    if !c.expected.unique_current {
        c.note(
            Some("unique".into()),
            "the uniqueness index was built under other schemas (SCHEMA_PATH or scimd changed); the next start rebuilds it, so it is not compared".into(),
        );
    }
    if !c.expected.query_current {
        c.note(
            Some("query_index".into()),
            "the query index has an older layout; the next start rebuilds it, so it is not compared".into(),
        );
    }
    Ok(())
}

pub(super) fn check(c: &mut Checker<'_>) -> Result<(), StoreError> {
    counters(c)?;
    resources(c)?;
    unique(c)?;
    query_index(c)?;
    members(c)?;
    bookkeeping(c)
}

fn counters(c: &mut Checker<'_>) -> Result<(), StoreError> {
    let counters = c.txn.open_table(COUNTERS)?;
    let recorded = tables::counter(&counters, POSITION)?;
    if recorded != c.report.position {
        c.problem(
            Some(c.report.position),
            Some("counters position".into()),
            format!("the recorded position is {recorded}, the last event is at this one"),
        );
    }
    for (rt, live) in [
        (ResourceType::User, c.report.users),
        (ResourceType::Group, c.report.groups),
    ] {
        let counted = tables::counter(&counters, tables::count_key(rt))?;
        if counted != live {
            c.problem(
                None,
                Some(format!("counters {}", tables::count_key(rt))),
                format!("the count is {counted}, the log leaves {live}"),
            );
        }
    }
    Ok(())
}

/// Resource rows the log does not account for (only looked for when the count differs).
fn resources(c: &mut Checker<'_>) -> Result<(), StoreError> {
    let table = c.txn.open_table(RESOURCES)?;
    let live = c.report.users + c.report.groups;
    if table.len()? == live {
        return Ok(());
    }
    let streams = c.txn.open_table(STREAMS)?;
    let events = c.txn.open_table(EVENTS)?;
    for row in table.range::<(&str, &str)>(..)? {
        let (k, _) = row?;
        let (t, id) = k.value();
        let at = Some(format!("resources ({t}, {id})"));
        let head = streams.range((id, 0u64)..=(id, u64::MAX))?.next_back();
        let Some(head) = head else {
            c.problem(None, at, "a resource the log never wrote".into());
            continue;
        };
        let position = head?.1.value();
        let deleted = events
            .get(position)?
            .and_then(|e| Event::decode(e.value()).ok())
            .is_some_and(|e| e.kind == crate::store::EventKind::Delete);
        if deleted || ResourceType::from_name(t).is_none() {
            c.problem(
                Some(position),
                at,
                "a resource the log deleted, or of an unknown type".into(),
            );
        }
    }
    Ok(())
}

/// The live resource `id` (either type), decoded.
fn live(
    table: &redb::ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    id: &str,
) -> Result<Option<(ResourceType, StoredResource)>, StoreError> {
    for rt in ResourceType::ALL {
        if let Some(row) = table.get((rt.name(), id))? {
            return Ok(StoredResource::decode(row.value()).ok().map(|r| (rt, r)));
        }
    }
    Ok(None)
}

fn unique(c: &mut Checker<'_>) -> Result<(), StoreError> {
    let table = c.txn.open_table(UNIQUE)?;
    if !c.expected.unique_current || table.len()? == c.expected.unique_rows {
        return Ok(());
    }
    let resources = c.txn.open_table(RESOURCES)?;
    for row in table.range::<&str>(..)? {
        let (k, v) = row?;
        let (key, owner) = (k.value(), v.value());
        let holds = live(&resources, owner)?.is_some_and(|(rt, r)| {
            c.registry
                .unique_keys(rt, &r.attributes)
                .iter()
                .any(|u| u.index_key(rt) == key)
        });
        if !holds {
            c.problem(
                None,
                Some(format!("unique row of {owner}")),
                "the uniqueness index holds a value its owner does not have (or an owner that does not exist)".into(),
            );
        }
    }
    Ok(())
}

fn query_index(c: &mut Checker<'_>) -> Result<(), StoreError> {
    let table = c.txn.open_table(QUERY_INDEX)?;
    if !c.expected.query_current || table.len()? == c.expected.query_rows {
        return Ok(());
    }
    let resources = c.txn.open_table(RESOURCES)?;
    for row in table.range::<(&str, &str)>(..)? {
        let (k, _) = row?;
        let (key, id) = k.value();
        let holds = live(&resources, id)?.is_some_and(|(rt, r)| {
            plan::index_keys(rt, &r.attributes, &r.meta)
                .iter()
                .any(|i| i == key)
        });
        if !holds {
            c.problem(
                None,
                Some(format!("query_index ({key:?}, {id})")),
                "a row the resource does not give (or of a resource that does not exist)".into(),
            );
        }
    }
    Ok(())
}

/// Member rows of groups the log does not have (looked for when the count differs), and the
/// member → groups index against the member rows.
fn members(c: &mut Checker<'_>) -> Result<(), StoreError> {
    let members = c.txn.open_table(MEMBERS)?;
    let rows = members.len()?;
    if rows != c.expected.member_rows {
        let resources = c.txn.open_table(RESOURCES)?;
        let mut last_group = String::new();
        for row in members.range::<(&str, &str)>(..)? {
            let (k, _) = row?;
            let (g, _) = k.value();
            if g == last_group {
                continue;
            }
            last_group = g.to_owned();
            if resources.get((ResourceType::Group.name(), g))?.is_none() {
                c.problem(
                    None,
                    Some(format!("members of {g}")),
                    "member rows of a group that does not exist".into(),
                );
            }
        }
    }
    let member_of = c.txn.open_table(MEMBER_OF)?;
    let mut reverse = 0u64;
    for row in member_of.range::<(&str, &str)>(..)? {
        let (k, _) = row?;
        let (m, g) = k.value();
        reverse += 1;
        if members.get((g, m))?.is_none() {
            c.problem(
                None,
                Some(format!("member_of ({m}, {g})")),
                "the member → groups index names a membership the members table lacks".into(),
            );
        }
    }
    if reverse != rows {
        c.problem(
            None,
            Some("member_of".into()),
            format!("the member → groups index has {reverse} rows, the members table {rows}"),
        );
    }
    Ok(())
}

/// Checkpoints are within the log; parked changes decode and point at an event of their resource
/// (or, keyed by a SET's `jti`, at the event of that position).
fn bookkeeping(c: &mut Checker<'_>) -> Result<(), StoreError> {
    let position = c.report.position;
    let checkpoints = c.txn.open_table(CHECKPOINTS)?;
    for row in checkpoints.range::<&str>(..)? {
        let (k, v) = row?;
        if v.value() > position {
            c.problem(
                Some(v.value()),
                Some(format!("checkpoint {}", k.value())),
                format!("beyond the end of the log ({position})"),
            );
        }
    }
    let parked = c.txn.open_table(PARKED)?;
    let events = c.txn.open_table(EVENTS)?;
    for row in parked.range::<(&str, &str)>(..)? {
        let (k, v) = row?;
        let (subscriber, id) = k.value();
        let at = Some(format!("parked ({subscriber}, {id})"));
        let p: Parked = match serde_json::from_slice(v.value()) {
            Ok(p) => p,
            Err(e) => {
                c.problem(None, at, format!("does not decode: {e}"));
                continue;
            }
        };
        let event = events
            .get(p.position)?
            .and_then(|e| Event::decode(e.value()).ok());
        // A parked change is keyed by its resource's id, or, for the SET pusher, which may park
        // several SETs of one resource, by the SET's `jti` (`{feed}:{position}:{index}`).
        let keyed_by_position =
            |e: &Event| id.rsplit(':').nth(1) == Some(e.position.to_string().as_str());
        match event {
            Some(e)
                if (e.resource_id == id || keyed_by_position(&e))
                    && e.resource_type == p.resource_type => {}
            _ => c.problem(
                Some(p.position),
                at,
                "the parked change does not point at an event of its resource".into(),
            ),
        }
    }
    Ok(())
}
