//! Asynchronous requests (RFC 9967 §3, RFC 7240 `Prefer: respond-async`): a write accepted with a
//! 202 and run later, its outcome kept for its client as a `misc:asyncresp` SET.
//!
//! [`Service::submit`] checks what needs no store state (the body's shape: the schemas, a
//! PatchOp, a BulkRequest), then persists the request through the writer before it answers: a
//! 202 means the request is on disk. One executor task ([`Service::start_async`]) runs the
//! persisted requests one at a time in arrival order (so those of one resource run in the order
//! they arrived), through the same validation and the same writer commands as a synchronous
//! request, with `txn` = the Set-Txn on every event they produce. At start-up it resumes whatever
//! is still pending, so a request answered 202 completes even if scimd was killed right after.
//!
//! Guarantee: **exactly once.** The outcome is recorded in the same writer commit as the write's
//! events (`store/writer/async_requests.rs`), and a request found done is never run again; a crash
//! before that commit leaves the request pending and nothing of it written, so the executor runs
//! it again after the restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

use super::bulk::BulkEchoes;
use super::{ResourceDoc, Service, unavailable};
use crate::fanout::set::asyncresp;
use crate::store::fault;
use crate::store::{AsyncEcho, AsyncOperation, AsyncRequest, Outcome, Write, WriteContext};
use scim::bulk::{self, OperationResult};
use scim::schema::View;
use scim::{ResourceType, ScimError, patch, resource};

/// How many pending requests the executor reads at a time.
const PENDING_BATCH: usize = 64;

/// How long the executor waits after the store failed before it tries again.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// How often finished requests past their retention are dropped.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// The ASYNC_* settings.
#[derive(Debug, Clone, Copy)]
pub struct AsyncSettings {
    /// ASYNC_REQUESTS: whether `Prefer: respond-async` is honoured (else ignored, RFC 7240 §2).
    pub enabled: bool,
    /// ASYNC_MAX_PENDING: the most requests waiting to run (503 beyond).
    pub max_pending: u64,
    /// ASYNC_RETENTION_HOURS: how long an outcome is kept once decided.
    pub retention: Duration,
    /// The longest `wait` honoured: half of REQUEST_TIMEOUT, leaving the rest for the body and
    /// the answer.
    pub max_wait: Duration,
}

/// A write a client asked to run asynchronously, as it arrived.
#[derive(Debug, Clone)]
pub enum AsyncCall {
    /// POST `/Users` or `/Groups`.
    Create {
        /// The resource type.
        rt: ResourceType,
        /// The resource.
        body: Value,
    },
    /// PUT `/{type}/{id}`.
    Replace {
        /// The resource type.
        rt: ResourceType,
        /// The resource id.
        id: String,
        /// The resource.
        body: Value,
        /// `If-Match`.
        if_match: Option<String>,
    },
    /// PATCH `/{type}/{id}`.
    Patch {
        /// The resource type.
        rt: ResourceType,
        /// The resource id.
        id: String,
        /// The PatchOp.
        body: Value,
        /// `If-Match`.
        if_match: Option<String>,
    },
    /// DELETE `/{type}/{id}`.
    Delete {
        /// The resource type.
        rt: ResourceType,
        /// The resource id.
        id: String,
        /// `If-Match`.
        if_match: Option<String>,
    },
    /// POST `/Bulk`.
    Bulk {
        /// The BulkRequest.
        body: Value,
    },
}

/// What a request that asked for `respond-async` got.
#[derive(Debug)]
pub enum Submitted {
    /// Persisted; it runs later and its outcome is kept under this Set-Txn.
    Accepted(String),
    /// It finished within its `wait` preference: the answer a synchronous request gets.
    Answered(Result<Answer, ScimError>),
}

/// The synchronous answer of a request that finished within its `wait`.
#[derive(Debug)]
pub enum Answer {
    /// A create, replace or patch: the resource as the request's view shows it.
    Resource(ResourceDoc),
    /// A delete.
    Deleted,
    /// A Bulk: its BulkResponse.
    Bulk(Value),
}

/// An asynchronous request as its client may see it.
#[derive(Debug)]
pub enum AsyncStatus {
    /// Accepted, not run yet.
    Pending,
    /// A single request, or one Bulk operation asked for by `Set-Txn:index`, has run: its
    /// `misc:asyncresp` SET.
    One(AsyncSet),
    /// A Bulk has run: each operation's `misc:asyncresp` SET, by its `txn`.
    Several(Vec<(String, AsyncSet)>),
}

/// One `misc:asyncresp` SET.
#[derive(Debug)]
pub enum AsyncSet {
    /// Signed with the SET core's key: a compact JWS (`application/secevent+jwt`).
    Signed(String),
    /// SETs are off (no SET_SIGNING_* setting): the claims as JSON, with no `iss` or `aud`.
    Claims(Value),
}

/// The executor's state shared with the request handlers.
pub(super) struct AsyncRequests {
    settings: AsyncSettings,
    wake: Notify,
    waiters: Mutex<HashMap<String, Waiter>>,
}

/// A handler waiting (`wait=N`) for the request it accepted.
struct Waiter {
    view: View,
    reply: oneshot::Sender<Result<Answer, ScimError>>,
}

impl AsyncRequests {
    pub(super) fn new(settings: AsyncSettings) -> Self {
        AsyncRequests {
            settings,
            wake: Notify::new(),
            waiters: Mutex::new(HashMap::new()),
        }
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
        // The map holds no invariant a panicking holder could have broken half-way.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How the synchronous answer of a request that finished within `wait` is made.
enum Render {
    /// The resource, through the view.
    Resource(ResourceType, View),
    /// 204.
    Deleted,
    /// The BulkResponse.
    Bulk(BulkEchoes),
}

/// A persisted request made into its writer command.
struct Built {
    write: Write,
    echoes: Vec<AsyncEcho>,
    render: Render,
}

impl Service {
    /// Whether `Prefer: respond-async` is honoured (ASYNC_REQUESTS).
    pub fn async_enabled(&self) -> bool {
        self.asynchronous.settings.enabled
    }

    /// Accepts `call` for asynchronous execution (RFC 9967 §3) for the key `actor`: its shape is
    /// checked first (a failure is the synchronous 4xx it would be anyway and persists nothing),
    /// then it is persisted. `base` prefixes the locations of its outcome. With `wait` (RFC 7240
    /// §4.3, capped by the settings' `max_wait`), a request done in time is answered as a
    /// synchronous one would be, `view` shaping the resource it returns.
    pub async fn submit(
        &self,
        call: AsyncCall,
        actor: String,
        base: &str,
        wait: Option<Duration>,
        view: View,
    ) -> Result<Submitted, ScimError> {
        let request = self.accepted(call, actor, base)?;
        let txn = Uuid::new_v4().to_string();
        let wait = wait.map(|w| w.min(self.asynchronous.settings.max_wait));
        let answer = match wait {
            Some(w) if !w.is_zero() => {
                let (reply, answer) = oneshot::channel();
                self.asynchronous
                    .waiters()
                    .insert(txn.clone(), Waiter { view, reply });
                Some((answer, w))
            }
            _ => None,
        };
        let ctx = WriteContext {
            actor: request.actor.clone(),
            txn_id: txn.clone(),
        };
        let accept = Write::AsyncAccept {
            txn: txn.clone(),
            request: Box::new(request),
            max_pending: self.asynchronous.settings.max_pending,
        };
        if let Err(e) = self.store.write(accept, ctx).await {
            self.asynchronous.waiters().remove(&txn);
            return Err(e);
        }
        self.asynchronous.wake.notify_one();
        let Some((answer, wait)) = answer else {
            return Ok(Submitted::Accepted(txn));
        };
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(answer)) => Ok(Submitted::Answered(answer)),
            // Not done in time (or the executor gave up on this turn): it stays accepted.
            _ => {
                self.asynchronous.waiters().remove(&txn);
                Ok(Submitted::Accepted(txn))
            }
        }
    }

    /// The request to persist for `call`, once its shape is known to be right.
    fn accepted(
        &self,
        call: AsyncCall,
        actor: String,
        base: &str,
    ) -> Result<AsyncRequest, ScimError> {
        let (method, rt, id, if_match, body) = match call {
            AsyncCall::Create { rt, body } => {
                resource::parse_input(&self.registry, rt, body.clone())?;
                ("POST", Some(rt), None, None, Some(body))
            }
            AsyncCall::Replace {
                rt,
                id,
                body,
                if_match,
            } => {
                resource::parse_input(&self.registry, rt, body.clone())?;
                ("PUT", Some(rt), Some(id), if_match, Some(body))
            }
            AsyncCall::Patch {
                rt,
                id,
                body,
                if_match,
            } => {
                patch::parse(body.clone())?;
                ("PATCH", Some(rt), Some(id), if_match, Some(body))
            }
            AsyncCall::Delete { rt, id, if_match } => {
                ("DELETE", Some(rt), Some(id), if_match, None)
            }
            AsyncCall::Bulk { body } => {
                bulk::parse(body.clone())?;
                ("POST", None, None, None, Some(body))
            }
        };
        Ok(AsyncRequest {
            actor,
            method: method.to_owned(),
            resource_type: rt,
            id,
            if_match,
            body,
            base: base.to_owned(),
            received: Utc::now(),
            arrival: 0,
            outcome: None,
        })
    }

    /// The asynchronous request `txn` (a Set-Txn, or a Bulk operation's `Set-Txn:index`) as the key
    /// `actor` may see it: 404 when it is unknown, past its retention, or another key's (the
    /// same answer, so a key learns nothing of others' requests).
    pub fn async_status(&self, txn: &str, actor: &str) -> Result<AsyncStatus, ScimError> {
        let snapshot = self.store.snapshot().map_err(unavailable)?;
        let not_found = || ScimError::not_found(format!("no asynchronous request {txn}"));
        let (set_txn, index, request) = match snapshot.async_request(txn).map_err(unavailable)? {
            Some(request) => (txn, None, request),
            None => {
                let (set_txn, index) = txn.rsplit_once(':').ok_or_else(not_found)?;
                // Only the index's own spelling: `:00` or `:+1` would name the same SET at a
                // second URL.
                let index: usize = index
                    .parse()
                    .ok()
                    .filter(|i: &usize| i.to_string() == index)
                    .ok_or_else(not_found)?;
                let request = snapshot
                    .async_request(set_txn)
                    .map_err(unavailable)?
                    .filter(|r| r.resource_type.is_none())
                    .ok_or_else(not_found)?;
                (set_txn, Some(index), request)
            }
        };
        if request.actor != actor {
            return Err(not_found());
        }
        if request.outcome.is_none() {
            return Ok(AsyncStatus::Pending);
        }
        let core = self.security_events.as_deref();
        let mut sets = Vec::new();
        for (op_txn, claims) in
            asyncresp::claims_of(set_txn, &request, None, core.map(|c| &c.config))
        {
            if index.is_some_and(|i| op_txn != format!("{set_txn}:{i}")) {
                continue;
            }
            let set = match core {
                Some(core) => AsyncSet::Signed(core.signer.sign_claims(claims).map_err(|e| {
                    tracing::error!(error = %e, "cannot sign an asynchronous outcome");
                    ScimError::unavailable("the outcome could not be signed; retry the request")
                })?),
                None => AsyncSet::Claims(Value::Object(claims)),
            };
            sets.push((op_txn, set));
        }
        if request.resource_type.is_none() && index.is_none() {
            return Ok(AsyncStatus::Several(sets));
        }
        // A Bulk operation never attempted (failOnErrors reached) has no outcome.
        let (_, set) = sets.pop().ok_or_else(not_found)?;
        Ok(AsyncStatus::One(set))
    }

    /// Starts the executor: it resumes the requests still pending and runs each new one as it is
    /// accepted; it also drops outcomes past ASYNC_RETENTION_HOURS. It runs even with
    /// ASYNC_REQUESTS=false, so that requests accepted before the setting changed still complete.
    pub fn start_async(self: &Arc<Self>) {
        let service = self.clone();
        // Supervised: a panic would otherwise end the only executor silently, and every request
        // answered 202 afterwards would stay pending.
        tokio::spawn(async move {
            loop {
                match tokio::spawn(service.clone().execute()).await {
                    Err(e) if e.is_panic() => {
                        tracing::error!(
                            "the asynchronous-request executor panicked; restarting it"
                        );
                        tokio::time::sleep(RETRY_DELAY).await;
                    }
                    _ => return,
                }
            }
        });
    }

    async fn execute(self: Arc<Self>) {
        let mut next_forget = Instant::now();
        loop {
            if Instant::now() >= next_forget {
                self.forget().await;
                next_forget = Instant::now() + FORGET_EVERY;
            }
            let pending = self
                .store
                .snapshot()
                .and_then(|s| s.async_pending(PENDING_BATCH));
            let pending = match pending {
                Ok(pending) => pending,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the pending asynchronous requests; retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                    continue;
                }
            };
            if pending.is_empty() {
                tokio::select! {
                    () = self.asynchronous.wake.notified() => {}
                    () = tokio::time::sleep(FORGET_EVERY) => {}
                }
                continue;
            }
            for (txn, request) in pending {
                while fault::fails(fault::ASYNC_HOLD) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert!(
                    !fault::fails(fault::ASYNC_PANIC),
                    "fault point scimd/async/panic"
                );
                if let Err(e) = self.run_async(&txn, request).await {
                    // The store could not take it: it stays pending and runs again, in order.
                    tracing::warn!(txn = %txn, error = %e.detail, "an asynchronous request could not run; retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                    break;
                }
            }
        }
    }

    /// Drops the outcomes decided longer ago than the retention.
    async fn forget(&self) {
        // A retention reaching before the calendar's start (ASYNC_RETENTION_HOURS in the
        // billions: "keep forever") forgets nothing; subtracting it would panic and end the
        // executor, leaving every accepted request pending.
        let before = chrono::Duration::from_std(self.asynchronous.settings.retention)
            .ok()
            .and_then(|retention| Utc::now().checked_sub_signed(retention));
        let Some(before) = before else {
            return;
        };
        let ctx = WriteContext {
            actor: "scimd".into(),
            txn_id: Uuid::new_v4().to_string(),
        };
        let write = Write::AsyncForget { before };
        if let Err(e) = self.store.write(write, ctx).await {
            tracing::warn!(error = %e.detail, "cannot drop old asynchronous outcomes; trying again later");
        }
    }

    /// Runs one persisted request and records its outcome; `Err` only when the store could not
    /// take it (it stays pending then).
    async fn run_async(&self, txn: &str, request: AsyncRequest) -> Result<(), ScimError> {
        let waiter = self.asynchronous.waiters().remove(txn);
        let ctx = WriteContext {
            actor: request.actor.clone(),
            txn_id: txn.to_owned(),
        };
        let base = request.base.clone();
        let view = waiter.as_ref().map(|w| w.view.clone());
        let built = match self.built(request, view).await {
            Ok(built) => built,
            Err((e, echo)) => {
                // Refused before it reached the store: the same refusal a synchronous request
                // gets, recorded as its outcome.
                let response = bulk::response_operation(
                    &echo.method,
                    None,
                    echo.location.as_deref(),
                    OperationResult::Failed(&e),
                );
                let write = Write::AsyncFinish {
                    txn: txn.to_owned(),
                    operations: vec![AsyncOperation {
                        index: None,
                        response,
                    }],
                };
                self.store.write(write, ctx).await?;
                if let Some(w) = waiter {
                    let _ = w.reply.send(Err(e));
                }
                return Ok(());
            }
        };
        let write = Write::AsyncRun {
            txn: txn.to_owned(),
            write: Box::new(built.write),
            echoes: built.echoes,
        };
        let outcome = self.store.write(write, ctx).await?;
        if let (Some(w), Outcome::Async(ran)) = (waiter, outcome) {
            let answer = (*ran).and_then(|outcome| match built.render {
                Render::Resource(rt, view) => self
                    .written(rt, outcome, &base, &view)
                    .map(Answer::Resource),
                Render::Deleted => Ok(Answer::Deleted),
                Render::Bulk(echoes) => echoes.answer(outcome, &base).map(Answer::Bulk),
            });
            let _ = w.reply.send(answer);
        }
        Ok(())
    }

    /// The writer command of a persisted request, validated and with passwords hashed as for a
    /// synchronous one; `view` is the waiting handler's (if any). A refusal comes with the echo
    /// its outcome needs.
    async fn built(
        &self,
        request: AsyncRequest,
        view: Option<View>,
    ) -> Result<Built, (ScimError, AsyncEcho)> {
        let AsyncRequest {
            method,
            resource_type,
            id,
            if_match,
            body,
            base,
            ..
        } = request;
        let Some(rt) = resource_type else {
            let echo = AsyncEcho {
                index: None,
                method: method.clone(),
                location: None,
            };
            let body = body.unwrap_or(Value::Null);
            let parsed = bulk::parse(body).map_err(|e| (e, echo))?;
            let (write, echoes) = self.bulk_write_of(parsed).await;
            return Ok(Built {
                write,
                echoes: echoes.async_echoes(&base),
                render: Render::Bulk(echoes),
            });
        };
        let id = id.unwrap_or_else(|| Uuid::new_v4().to_string());
        let echo = AsyncEcho {
            index: None,
            method: method.clone(),
            location: Some(resource::location(&base, rt, &id)),
        };
        let body = || body.clone().unwrap_or(Value::Null);
        // Without a waiting handler nobody reads the answer: a Group's members are not read.
        let waiting = view.is_some();
        let view = view.unwrap_or_default();
        let built = match method.as_str() {
            "POST" => self
                .create_write(rt, body(), id.clone())
                .await
                .map(|w| (w, Render::Resource(rt, view))),
            "PUT" => self
                .replace_write(rt, &id, body(), if_match)
                .await
                .map(|w| (w, Render::Resource(rt, view))),
            "PATCH" => match patch::parse(body()) {
                Ok(operations) => {
                    let view = view.with_specified(patch::named_attributes(&operations));
                    let with_members = waiting
                        && rt == ResourceType::Group
                        && view.shows(&self.registry, rt, "members");
                    self.patch_write(rt, &id, operations, if_match, with_members)
                        .await
                        .map(|w| (w, Render::Resource(rt, view)))
                }
                Err(e) => Err(e),
            },
            _ => Ok((
                Write::Delete {
                    rt,
                    id: id.clone(),
                    if_match,
                },
                Render::Deleted,
            )),
        };
        match built {
            Ok((write, render)) => Ok(Built {
                write,
                echoes: vec![echo],
                render,
            }),
            Err(e) => Err((e, echo)),
        }
    }
}
