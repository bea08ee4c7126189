//! The log read once in position order: positions without gaps, every event decodes and says
//! where it is, the hash chain holds from where it begins, event ids are unique, and every event
//! has its `streams` row.

use std::collections::HashSet;

use super::Checker;
use crate::store::event::{GENESIS, chain_hash, chain_head};
use crate::store::tables::{CHAIN_HEAD, COUNTERS, EVENTS, STREAMS};
use crate::store::{Event, StoreError};

pub(super) fn check(c: &mut Checker<'_>) -> Result<(), StoreError> {
    let events = c.txn.open_table(EVENTS)?;
    let streams = c.txn.open_table(STREAMS)?;
    let mut expected = 1u64;
    // The chain hash of the event before the current one.
    let mut previous: Option<String> = None;
    let mut ids: HashSet<u128> = HashSet::new();
    let mut rows = events.range(0u64..)?;
    loop {
        let (key, value) = match rows.next() {
            None => break,
            Some(Ok(row)) => row,
            Some(Err(e)) => {
                c.problem(
                    Some(expected),
                    Some("events".into()),
                    format!("the events table cannot be read from here on: {e}"),
                );
                break;
            }
        };
        let position = key.value();
        let stored = value.value();
        if position != expected {
            c.problem(
                Some(position),
                Some("events".into()),
                format!(
                    "gap in the log: positions {expected}..{} are missing",
                    position.saturating_sub(1)
                ),
            );
        }
        expected = position.saturating_add(1);
        c.report.events += 1;
        c.report.position = position;
        match Event::decode(stored) {
            Ok(event) => {
                let want = if position == 1 {
                    Some(GENESIS.to_owned())
                } else {
                    previous.clone()
                };
                check_event(c, &streams, &mut ids, position, &event, want)?;
            }
            Err(e) => c.problem(Some(position), Some("events".into()), e.to_string()),
        }
        previous = Some(chain_hash(stored));
    }
    let counters = c.txn.open_table(COUNTERS)?;
    if let (Some(head), Some(last)) = (counters.get(CHAIN_HEAD)?, previous.as_deref())
        && c.report.chain_from.is_some()
        && head.value() != chain_head(last)
    {
        c.problem(
            Some(c.report.position),
            Some("events".into()),
            "the last event is not the one the chain head recorded at its commit: it was rewritten, or events after it were removed".into(),
        );
    }
    Ok(())
}

fn check_event(
    c: &mut Checker<'_>,
    streams: &redb::ReadOnlyTable<(&'static str, u64), u64>,
    ids: &mut HashSet<u128>,
    position: u64,
    event: &Event,
    want_prev: Option<String>,
) -> Result<(), StoreError> {
    let at = || {
        Some(format!(
            "{} {}",
            event.resource_type.name(),
            event.resource_id
        ))
    };
    if event.position != position {
        c.problem(
            Some(position),
            at(),
            format!("the event claims position {}", event.position),
        );
    }
    match (&event.prev, c.report.chain_from) {
        (Some(prev), chained) => {
            if chained.is_none() {
                c.report.chain_from = Some(position);
            }
            if let Some(want) = want_prev
                && *prev != want
            {
                c.problem(
                    Some(position),
                    at(),
                    format!(
                        "the hash chain breaks: this event does not carry the hash of event {}, which was rewritten or removed",
                        position.saturating_sub(1)
                    ),
                );
            }
        }
        (None, Some(from)) => c.problem(
            Some(position),
            at(),
            format!("the event carries no chain hash although the chain begins at {from}: it was rewritten"),
        ),
        (None, None) => {}
    }
    if !ids.insert(event.event_id.as_u128()) {
        c.problem(
            Some(position),
            at(),
            format!(
                "event id {} is used by an earlier event too",
                event.event_id
            ),
        );
    }
    match streams.get((event.resource_id.as_str(), event.version))? {
        Some(p) if p.value() == position => {}
        Some(p) => c.problem(
            Some(position),
            at(),
            format!(
                "the streams row of version {} points at position {}, not at this event",
                event.version,
                p.value()
            ),
        ),
        None => c.problem(
            Some(position),
            at(),
            format!("version {} has no streams row", event.version),
        ),
    }
    Ok(())
}
