//! The writer's side of asynchronous requests (see `store/async_request.rs`): accepting one,
//! running its write with its outcome recorded in the same transaction, and forgetting old ones.
//!
//! Guarantee kept here: **a request runs at most once, and once it has run its outcome is
//! durable.** The outcome row, the removal from `async_pending` and the write's events commit
//! together; a request found done is not run again. With the executor resuming every pending
//! request at start-up, a request answered 202 therefore runs exactly once, across crashes.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, ReadableTableMetadata};

use super::Rejection;
use super::commands::apply;
use super::txn::TxnTables;
use crate::store::tables::{self, ASYNC_ARRIVAL, ASYNC_COMPLETION};
use crate::store::{
    AsyncEcho, AsyncOperation, AsyncOutcome, AsyncRequest, Outcome, StoreError, Write, WriteContext,
};
use scim::ScimError;
use scim::bulk::{OperationResult, response_operation};
use scim::schema::Registry;

/// Persists `request` as pending under `txn`, unless `max_pending` already wait (503).
pub(super) fn accept(
    t: &mut TxnTables<'_>,
    txn: &str,
    mut request: Box<AsyncRequest>,
    max_pending: u64,
) -> Result<Outcome, Rejection> {
    if t.async_pending.len()? >= max_pending {
        return Err(Rejection::Client(ScimError::unavailable(format!(
            "{max_pending} asynchronous requests already wait to run (ASYNC_MAX_PENDING); retry later"
        ))));
    }
    if t.async_requests.get(txn)?.is_some() {
        return Err(Rejection::Client(ScimError::new(
            409,
            format!("an asynchronous request {txn} already exists"),
        )));
    }
    let arrival = tables::counter(&t.counters, ASYNC_ARRIVAL)? + 1;
    t.counters.insert(ASYNC_ARRIVAL, arrival)?;
    request.arrival = arrival;
    request.outcome = None;
    t.async_requests.insert(txn, request.encode()?.as_slice())?;
    t.async_pending.insert(arrival, txn)?;
    Ok(Outcome::Checkpointed)
}

/// Runs `write` for the pending request `txn` and records its outcome with it.
pub(super) fn run(
    t: &mut TxnTables<'_>,
    registry: &Registry,
    ctx: &WriteContext,
    txn: &str,
    write: Write,
    echoes: &[AsyncEcho],
) -> Result<Outcome, Rejection> {
    let Some(request) = load(t, txn)? else {
        return Err(Rejection::Client(ScimError::not_found(format!(
            "no asynchronous request {txn}"
        ))));
    };
    if request.outcome.is_some() {
        return Ok(Outcome::Checkpointed);
    }
    let ran = match apply(t, registry, write, ctx) {
        Ok(outcome) => Ok(outcome),
        // A rejected command wrote nothing: its outcome is recorded all the same.
        Err(Rejection::Client(e)) => Err(e),
        Err(storage) => return Err(storage),
    };
    finish(t, txn, request, operations(&ran, echoes))?;
    Ok(Outcome::Async(Box::new(ran)))
}

/// Records `operations` as the outcome of the pending request `txn`.
pub(super) fn finish_pending(
    t: &mut TxnTables<'_>,
    txn: &str,
    operations: Vec<AsyncOperation>,
) -> Result<Outcome, Rejection> {
    match load(t, txn)? {
        Some(request) if request.outcome.is_none() => {
            finish(t, txn, request, operations)?;
            Ok(Outcome::Checkpointed)
        }
        Some(_) => Ok(Outcome::Checkpointed),
        None => Err(Rejection::Client(ScimError::not_found(format!(
            "no asynchronous request {txn}"
        )))),
    }
}

/// Drops the requests whose outcome was decided before `before`, oldest first.
pub(super) fn forget(t: &mut TxnTables<'_>, before: DateTime<Utc>) -> Result<Outcome, Rejection> {
    let mut old = Vec::new();
    for row in t.async_outcomes.range::<u64>(..)? {
        let (completion, txn) = row?;
        let txn = txn.value().to_owned();
        let completed = load(t, &txn)?.and_then(|r| r.outcome).map(|o| o.completed);
        // Completion order is time order: the first one kept ends the walk.
        match completed {
            Some(at) if at >= before => break,
            _ => old.push((completion.value(), txn)),
        }
    }
    for (completion, txn) in old {
        t.async_outcomes.remove(completion)?;
        t.async_requests.remove(txn.as_str())?;
    }
    Ok(Outcome::Checkpointed)
}

fn load(t: &TxnTables<'_>, txn: &str) -> Result<Option<AsyncRequest>, StoreError> {
    match t.async_requests.get(txn)? {
        Some(v) => Ok(Some(AsyncRequest::decode(v.value())?)),
        None => Ok(None),
    }
}

/// Marks `request` done: the outcome in its row (its body, which may hold a password, dropped),
/// out of `async_pending`, into `async_outcomes` at the next completion sequence.
fn finish(
    t: &mut TxnTables<'_>,
    txn: &str,
    mut request: AsyncRequest,
    operations: Vec<AsyncOperation>,
) -> Result<(), StoreError> {
    let completion = tables::counter(&t.counters, ASYNC_COMPLETION)? + 1;
    t.counters.insert(ASYNC_COMPLETION, completion)?;
    t.async_pending.remove(request.arrival)?;
    request.body = None;
    request.outcome = Some(AsyncOutcome {
        completion,
        completed: t.now,
        operations,
    });
    t.async_requests.insert(txn, request.encode()?.as_slice())?;
    t.async_outcomes.insert(completion, txn)?;
    Ok(())
}

/// One bulk-response operation per echo: a single request's from its write's answer, a Bulk's
/// from each operation's (those never attempted have none).
fn operations(ran: &Result<Outcome, ScimError>, echoes: &[AsyncEcho]) -> Vec<AsyncOperation> {
    let one = |echo: &AsyncEcho, result: &Result<Outcome, ScimError>| {
        let result = match result {
            Ok(outcome) => {
                let (status, version) = outcome.bulk_status(&echo.method);
                OperationResult::Done { status, version }
            }
            Err(e) => OperationResult::Failed(e),
        };
        AsyncOperation {
            index: echo.index,
            response: response_operation(&echo.method, None, echo.location.as_deref(), result),
        }
    };
    let mut out: Vec<AsyncOperation> = match ran {
        Ok(Outcome::Bulk(results)) => echoes
            .iter()
            .zip(results)
            .filter_map(|(echo, result)| result.as_ref().map(|r| one(echo, r)))
            .collect(),
        _ => echoes.iter().map(|echo| one(echo, ran)).collect(),
    };
    out.sort_by_key(|op| op.index);
    out
}
