//! The asynchronous requests' tables (see `store/async_request.rs`): every request decodes, a
//! pending one is listed in `async_pending` under its arrival, a finished one in `async_outcomes`
//! under its completion, and neither list names a request that is not there in that state.

use redb::TableError;

use super::Checker;
use crate::store::tables::{
    self, ASYNC_ARRIVAL, ASYNC_COMPLETION, ASYNC_OUTCOMES, ASYNC_PENDING, ASYNC_REQUESTS, COUNTERS,
};
use crate::store::{AsyncRequest, StoreError};

pub(super) fn check(c: &mut Checker<'_>) -> Result<(), StoreError> {
    // A store no scimd with asynchronous requests has served yet has none of these tables.
    let requests = match c.txn.open_table(ASYNC_REQUESTS) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(redb::Error::from(e).into()),
    };
    let pending = c.txn.open_table(ASYNC_PENDING)?;
    let outcomes = c.txn.open_table(ASYNC_OUTCOMES)?;
    let counters = c.txn.open_table(COUNTERS)?;
    let last_arrival = tables::counter(&counters, ASYNC_ARRIVAL)?;
    let last_completion = tables::counter(&counters, ASYNC_COMPLETION)?;
    for row in requests.range::<&str>(..)? {
        let (k, v) = row?;
        let txn = k.value();
        let at = Some(format!("async_requests {txn}"));
        let request = match AsyncRequest::decode(v.value()) {
            Ok(r) => r,
            Err(e) => {
                c.problem(None, at, e.to_string());
                continue;
            }
        };
        let (table, key, last) = match &request.outcome {
            None => (&pending, request.arrival, last_arrival),
            Some(o) => (&outcomes, o.completion, last_completion),
        };
        let listed = table.get(key)?.map(|v| v.value() == txn);
        if listed != Some(true) || key > last {
            c.problem(
                None,
                at,
                format!(
                    "{} under {key} in async_{}, which does not list it there (or is beyond its counter {last})",
                    if request.outcome.is_some() { "finished" } else { "pending" },
                    if request.outcome.is_some() { "outcomes" } else { "pending" },
                ),
            );
        }
    }
    for (name, table, done) in [
        ("async_pending", &pending, false),
        ("async_outcomes", &outcomes, true),
    ] {
        for row in table.range::<u64>(..)? {
            let (k, v) = row?;
            let state = requests
                .get(v.value())?
                .and_then(|r| AsyncRequest::decode(r.value()).ok())
                .map(|r| r.outcome.is_some());
            if state != Some(done) {
                c.problem(
                    None,
                    Some(format!("{name} {}", k.value())),
                    format!("names request {} that is not kept in that state", v.value()),
                );
            }
        }
    }
    Ok(())
}
