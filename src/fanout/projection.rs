//! The projection runner: drives one backend of the `projections` crate from the log.
//!
//! It reads events after its checkpoint in batches, coalesces the changes to each resource within a
//! batch into one (a burst of member adds to one group is one document write), applies them, and
//! then saves its checkpoint. A backend that is down is retried with capped backoff while the SCIM
//! API goes on; a change the backend refuses for good is parked (durably, shown in `/status`) and
//! the runner moves on. Backends that record their own position with their data (SQL) are trusted
//! over the store's checkpoint, so data and checkpoint never disagree.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use projections::{Change, Member, Projection, ProjectionError, ResourceKind};
use tokio::sync::{mpsc, oneshot};

use super::backends::Backend;
use super::id_map::StoreIdMap;
use super::status::{StatusBoard, SubscriberState};
use crate::metrics::METRICS;
use crate::store::{
    Event, EventKind, Members, Parked, Snapshot, Store, StoreError, Write, WriteContext,
};
use scim::{ResourceType, resource};

/// Events read per batch.
const BATCH: usize = 1000;
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// Requests to a running projection (from the admin endpoints).
#[derive(Debug)]
pub enum Control {
    /// Start over from position 0; `fresh` empties the backend first. `accepted` gets the position
    /// the rebuild must reach once the checkpoints are back at 0 (or why that failed).
    Rebuild {
        fresh: bool,
        accepted: oneshot::Sender<Result<u64, String>>,
    },
    /// Re-apply the parked changes.
    RetryParked,
}

/// Why the runner could not go on right now.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be read.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The backend failed.
    #[error("{0}")]
    Backend(#[from] ProjectionError),
    /// The checkpoint (or a parked change) could not be saved.
    #[error("saving the checkpoint failed: {0}")]
    Checkpoint(String),
}

impl RunError {
    /// The `kind` label of `scimd_subscriber_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::Store(_) => "store",
            RunError::Backend(ProjectionError::Unavailable(_)) => "unavailable",
            RunError::Backend(ProjectionError::Rejected { .. }) => "refused",
            RunError::Backend(ProjectionError::Config(_)) => "config",
            RunError::Checkpoint(_) => "checkpoint",
        }
    }
}

/// One projection, driven from the log.
pub struct Runner {
    backend: Backend,
    projection: Option<Box<dyn Projection>>,
    /// Whether a connection was ever opened (a later one counts as a reconnect).
    connected_before: bool,
    store: Arc<Store>,
    board: Arc<StatusBoard>,
    /// PUBLIC_URL + BASE_PATH, or empty for relative URLs.
    base: String,
}

impl Runner {
    /// A runner for `backend`; it connects on first use.
    pub fn new(
        backend: Backend,
        store: Arc<Store>,
        board: Arc<StatusBoard>,
        base: String,
    ) -> Runner {
        Runner {
            backend,
            projection: None,
            connected_before: false,
            store,
            board,
            base,
        }
    }

    fn name(&self) -> &'static str {
        self.backend.name()
    }

    /// Follows the log forever, obeying `control`.
    pub async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        let mut committed = self.store.committed();
        let mut backoff = MIN_BACKOFF;
        let mut checkpoint = None;
        let mut rebuilding_until = None;
        loop {
            while let Ok(request) = control.try_recv() {
                match self.handle(request).await {
                    Ok(Some(target)) => {
                        checkpoint = Some(0);
                        rebuilding_until = Some(target);
                    }
                    Ok(None) => {}
                    Err(e) => self.report(
                        checkpoint.unwrap_or(0),
                        SubscriberState::Retrying,
                        Some(e.to_string()),
                    ),
                }
            }
            let result = async {
                let from = match checkpoint {
                    Some(c) => c,
                    None => self.initial_checkpoint().await?,
                };
                self.step(from).await.map(|to| (from, to))
            }
            .await;
            match result {
                Ok((from, to)) => {
                    backoff = MIN_BACKOFF;
                    checkpoint = Some(to);
                    let state = match rebuilding_until {
                        Some(target) if to < target => SubscriberState::Rebuilding,
                        _ => {
                            rebuilding_until = None;
                            SubscriberState::Running
                        }
                    };
                    self.report(to, state, None);
                    if to == from {
                        tokio::select! {
                            changed = committed.changed() => if changed.is_err() { return },
                            request = control.recv() => match request {
                                Some(request) => match self.handle(request).await {
                                    Ok(Some(target)) => {
                                        checkpoint = Some(0);
                                        rebuilding_until = Some(target);
                                    }
                                    Ok(None) => {}
                                    Err(e) => self.report(to, SubscriberState::Retrying, Some(e.to_string())),
                                },
                                None => return,
                            },
                        }
                    }
                }
                Err(e) => {
                    if matches!(
                        e,
                        RunError::Backend(ProjectionError::Unavailable(_))
                            | RunError::Backend(ProjectionError::Config(_))
                    ) {
                        self.projection = None;
                    }
                    METRICS.subscriber_error(self.name(), e.kind());
                    self.report(
                        checkpoint.unwrap_or(0),
                        SubscriberState::Retrying,
                        Some(e.to_string()),
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Handles a control request; a rebuild returns the position it must reach.
    async fn handle(&mut self, request: Control) -> Result<Option<u64>, RunError> {
        match request {
            Control::Rebuild { fresh, accepted } => {
                let result = async {
                    let target = self.store.snapshot()?.position()?;
                    self.restart_from_zero(fresh).await?;
                    Ok::<_, RunError>(target)
                }
                .await;
                let _ = accepted.send(result.as_ref().map(|t| *t).map_err(ToString::to_string));
                let target = result?;
                self.report(0, SubscriberState::Rebuilding, None);
                Ok(Some(target))
            }
            Control::RetryParked => {
                self.retry_parked().await?;
                Ok(None)
            }
        }
    }

    /// Sets both checkpoints (the backend's own, where it keeps one, and the store's) to 0, after
    /// emptying the backend when `fresh`; a restart in the middle of a rebuild then resumes it.
    /// An emptied remote backend's id map is dropped with it: its ids name nothing any more.
    async fn restart_from_zero(&mut self, fresh: bool) -> Result<(), RunError> {
        let projection = self.connected().await?;
        if fresh {
            projection.reset().await?;
            self.write(Write::ClearRemoteIds {
                projection: self.name().into(),
            })
            .await?;
        }
        let projection = self.connected().await?;
        projection.apply(&[], 0).await?;
        self.save_checkpoint(0).await
    }

    fn report(&self, checkpoint: u64, state: SubscriberState, error: Option<String>) {
        self.board.report(self.name(), checkpoint, state, error);
        if let Ok(parked) = self.store.snapshot().and_then(|s| s.parked(self.name())) {
            self.board.set_parked(self.name(), parked.len() as u64);
        }
    }

    async fn connected(&mut self) -> Result<&mut Box<dyn Projection>, ProjectionError> {
        if self.projection.is_none() {
            let ids = Arc::new(StoreIdMap::new(self.store.clone(), self.name()));
            self.projection = Some(self.backend.connect(ids).await?);
            if self.connected_before {
                METRICS.reconnects.with_label_values(&[self.name()]).inc();
            }
            self.connected_before = true;
        }
        self.projection
            .as_mut()
            .ok_or_else(|| ProjectionError::Unavailable("not connected".into()))
    }

    /// Where to start: the backend's own recorded position when it keeps one (a new database or new
    /// tables start at 0, whatever the store remembers), else the store's checkpoint.
    async fn initial_checkpoint(&mut self) -> Result<u64, RunError> {
        let projection = self.connected().await?;
        if projection.records_position() {
            Ok(projection.stored_position().await?.unwrap_or(0))
        } else {
            Ok(self.store.snapshot()?.checkpoint(self.name())?)
        }
    }

    /// Applies the next batch after `from`; returns the new checkpoint (`from` if there was nothing).
    async fn step(&mut self, from: u64) -> Result<u64, RunError> {
        let (mut changes, mut positions, to) = {
            let snapshot = self.store.snapshot()?;
            let events = snapshot.events(from + 1, BATCH)?;
            let Some(last) = events.last().map(|e| e.position) else {
                return Ok(from);
            };
            let deltas = self.connected().await?.member_deltas();
            let (changes, positions) = coalesce(&snapshot, events, &self.base, deltas)?;
            (changes, positions, last)
        };
        loop {
            let result = self.connected().await?.apply(&changes, to).await;
            match result {
                Ok(()) => break,
                Err(ProjectionError::Rejected { index, reason }) if index < changes.len() => {
                    let change = changes.remove(index);
                    let position = positions.remove(index);
                    self.park(&change, position, reason).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.save_checkpoint(to).await?;
        Ok(to)
    }

    async fn save_checkpoint(&self, position: u64) -> Result<(), RunError> {
        self.write(Write::Checkpoint {
            name: self.name().into(),
            position,
        })
        .await
    }

    async fn park(&self, change: &Change, position: u64, error: String) -> Result<(), RunError> {
        tracing::warn!(
            projection = self.name(),
            id = change.id(),
            position,
            error,
            "change parked"
        );
        METRICS.subscriber_error(self.name(), "refused");
        let resource_type = match change.kind() {
            ResourceKind::User => ResourceType::User,
            ResourceKind::Group => ResourceType::Group,
        };
        self.write(Write::Park {
            subscriber: self.name().into(),
            id: change.id().into(),
            parked: Parked {
                resource_type,
                position,
                error,
            },
        })
        .await
    }

    async fn write(&self, write: Write) -> Result<(), RunError> {
        let ctx = WriteContext {
            actor: "server".into(),
            txn_id: format!("projection-{}", self.name()),
        };
        self.store
            .write(write, ctx)
            .await
            .map(|_| ())
            .map_err(|e| RunError::Checkpoint(e.detail))
    }

    /// Re-applies each parked change with the resource's current state; those the backend now
    /// accepts are unparked, the others stay parked with the new error.
    pub async fn retry_parked(&mut self) -> Result<usize, RunError> {
        let (parked, changes) = {
            let snapshot = self.store.snapshot()?;
            let parked = snapshot.parked(self.name())?;
            let mut changes = Vec::with_capacity(parked.len());
            for (id, p) in &parked {
                changes.push(current_change(&snapshot, p.resource_type, id, &self.base)?);
            }
            (parked, changes)
        };
        // The position each retried change is applied with, which a backend that keeps its own
        // (SQL) records with it: the position that backend already holds. After a crash between
        // its commit and the store's checkpoint, the store's is behind, and using it would move
        // the backend's position backwards (and make the runner redo, or a new database claim,
        // what it does not hold).
        let position = self.initial_checkpoint().await?;
        let mut fixed = 0;
        for ((id, p), change) in parked.into_iter().zip(changes) {
            let result = self
                .connected()
                .await?
                .apply(std::slice::from_ref(&change), position)
                .await;
            match result {
                Ok(()) => {
                    self.write(Write::Unpark {
                        subscriber: self.name().into(),
                        id,
                    })
                    .await?;
                    fixed += 1;
                }
                Err(ProjectionError::Rejected { reason, .. }) => {
                    self.park(&change, p.position, reason).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(fixed)
    }

    /// Rebuilds the backend from position 0 up to the current end of the log, for
    /// `scimd replay` with the server stopped; `progress` gets each new checkpoint.
    pub async fn replay(
        &mut self,
        fresh: bool,
        progress: impl Fn(u64),
    ) -> Result<u64, anyhow::Error> {
        let target = self.store.snapshot()?.position()?;
        self.restart_from_zero(fresh).await?;
        let mut at = 0;
        while at < target {
            at = self.step(at).await?;
            progress(at);
        }
        Ok(target)
    }
}

/// One change per resource touched by `events`, in the order of each resource's last event, with
/// the log position of that event. Groups that contain a resource whose display name changed are
/// re-projected too: their documents show each member's current `display`.
///
/// With `deltas` (a backend that takes member deltas), a group that only went through replaces and
/// PATCHes in the batch becomes one [`Change::Members`] with the folded deltas, and renamed members
/// re-project nothing (such backends do not show `display`).
fn coalesce(
    snapshot: &Snapshot,
    events: Vec<Event>,
    base: &str,
    deltas: bool,
) -> Result<(Vec<Change>, Vec<u64>), StoreError> {
    let mut folds: HashMap<String, MemberFold> = HashMap::new();
    if deltas {
        for e in &events {
            if e.resource_type == ResourceType::Group {
                folds.entry(e.resource_id.clone()).or_default().add(e);
            }
        }
    }
    let mut renamed: Vec<(String, u64)> = Vec::new();
    for e in events.iter().filter(|_| !deltas) {
        let renames = matches!(
            e.kind,
            EventKind::Replace | EventKind::Patch | EventKind::Import
        ) && e
            .changed
            .iter()
            .any(|c| c == "displayName" || c == "userName");
        if renames {
            for group in snapshot.direct_groups_of(&e.resource_id)? {
                renamed.push((group, e.position));
            }
        }
    }
    let mut last: HashMap<(ResourceType, String), Event> = HashMap::new();
    for e in events {
        last.insert((e.resource_type, e.resource_id.clone()), e);
    }
    let mut latest: Vec<Event> = last.into_values().collect();
    latest.sort_by_key(|e| e.position);
    let mut changes = Vec::with_capacity(latest.len() + renamed.len());
    let mut positions = Vec::with_capacity(latest.len() + renamed.len());
    let mut seen: HashSet<String> = HashSet::new();
    for e in latest {
        let kind = kind_of(e.resource_type);
        let position = e.position;
        seen.insert(e.resource_id.clone());
        let fold = folds.remove(&e.resource_id).filter(|f| !f.whole);
        let change = if e.kind == EventKind::Delete {
            Change::Delete {
                kind,
                id: e.resource_id,
            }
        } else if let Some(fold) = fold {
            fold.into_change(snapshot, e, base)?
        } else {
            Change::Upsert {
                kind,
                id: e.resource_id.clone(),
                version: e.version,
                document: snapshot.as_of(e, base, Members::CurrentDisplay)?,
            }
        };
        changes.push(change);
        positions.push(position);
    }
    for (group, position) in renamed {
        if seen.insert(group.clone()) {
            changes.push(current_change(snapshot, ResourceType::Group, &group, base)?);
            positions.push(position);
        }
    }
    Ok((changes, positions))
}

/// The membership deltas of one group's events in a batch, folded: each member's last operation.
#[derive(Debug, Default)]
struct MemberFold {
    /// A create in the batch: the group goes out whole.
    whole: bool,
    /// Whether an event changed attributes other than members.
    attributes_changed: bool,
    /// Member id → (type, whether its last operation added it), in first-seen order.
    last: Vec<(String, ResourceType, bool)>,
    index: HashMap<String, usize>,
}

impl MemberFold {
    fn add(&mut self, e: &Event) {
        match e.kind {
            // An import sends the group whole: it may replace every attribute and member.
            EventKind::Create | EventKind::Delete | EventKind::Import => self.whole = true,
            EventKind::Replace | EventKind::Patch => {
                self.attributes_changed |= e.changed.iter().any(|c| c != "members");
            }
        }
        let ops = e
            .members_removed
            .iter()
            .map(|m| (m, false))
            .chain(e.members_added.iter().map(|m| (m, true)));
        for (m, added) in ops {
            match self.index.get(&m.value) {
                Some(&i) => self.last[i].2 = added,
                None => {
                    self.index.insert(m.value.clone(), self.last.len());
                    self.last.push((m.value.clone(), m.member_type, added));
                }
            }
        }
    }

    /// The [`Change::Members`] of the group as of `last` (its last event of the batch).
    fn into_change(
        self,
        snapshot: &Snapshot,
        last: Event,
        base: &str,
    ) -> Result<Change, StoreError> {
        let id = last.resource_id.clone();
        let version = last.version;
        // The group without members as of `last`: the stored group when `last` is its current
        // version (the usual case, and cheap), else rebuilt from the log.
        let document = match snapshot.get(ResourceType::Group, &id)? {
            Some(stored) if stored.meta.version == version => resource::render(
                ResourceType::Group,
                &id,
                stored.attributes,
                &stored.meta,
                None,
                base,
            ),
            _ => snapshot.as_of(last, base, Members::Omit)?,
        };
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for (value, rt, was_added) in self.last {
            let member = Member {
                value,
                kind: kind_of(rt),
            };
            if was_added {
                added.push(member);
            } else {
                removed.push(member);
            }
        }
        Ok(Change::Members {
            id,
            version,
            document,
            attributes_changed: self.attributes_changed,
            added,
            removed,
        })
    }
}

/// The change that brings a backend to the resource's current state.
fn current_change(
    snapshot: &Snapshot,
    rt: ResourceType,
    id: &str,
    base: &str,
) -> Result<Change, StoreError> {
    let kind = kind_of(rt);
    Ok(match snapshot.get(rt, id)? {
        Some(stored) => {
            let members = match rt {
                ResourceType::Group => Some(snapshot.members(id)?),
                ResourceType::User => None,
            };
            Change::Upsert {
                kind,
                id: id.to_owned(),
                version: stored.meta.version,
                document: resource::render(
                    rt,
                    id,
                    stored.attributes,
                    &stored.meta,
                    members.as_deref(),
                    base,
                ),
            }
        }
        None => Change::Delete {
            kind,
            id: id.to_owned(),
        },
    })
}

fn kind_of(rt: ResourceType) -> ResourceKind {
    match rt {
        ResourceType::User => ResourceKind::User,
        ResourceType::Group => ResourceKind::Group,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group event with the given kind and member deltas (`+id` added, `-id` removed).
    fn event(kind: &str, version: u64, changed: &[&str], deltas: &[&str]) -> Event {
        let member = |id: &str| serde_json::json!({"value": id, "type": "User"});
        let added: Vec<_> = deltas
            .iter()
            .filter_map(|d| d.strip_prefix('+'))
            .map(member)
            .collect();
        let removed: Vec<_> = deltas
            .iter()
            .filter_map(|d| d.strip_prefix('-'))
            .map(member)
            .collect();
        serde_json::from_value(serde_json::json!({
            "v": 1, "position": version, "event_id": uuid::Uuid::new_v4(), "txn_id": "t",
            "timestamp": "2026-01-01T00:00:00Z", "actor": "a", "resource_type": "Group",
            "resource_id": "g", "version": version, "kind": kind, "changed": changed,
            "created": "2026-01-01T00:00:00Z",
            "members_added": added, "members_removed": removed,
        }))
        .expect("event")
    }

    fn folded(events: &[Event]) -> (bool, bool, Vec<(String, bool)>) {
        let mut fold = MemberFold::default();
        for e in events {
            fold.add(e);
        }
        let last = fold.last.iter().map(|(v, _, a)| (v.clone(), *a)).collect();
        (fold.whole, fold.attributes_changed, last)
    }

    #[test]
    fn an_add_then_a_remove_of_one_member_folds_into_one_remove() {
        let (whole, attributes, last) = folded(&[
            event("patch", 2, &["members"], &["+a", "+b"]),
            event("patch", 3, &["members"], &["-a"]),
            event("patch", 4, &["members"], &["-c"]),
            event("patch", 5, &["members"], &["+c"]),
        ]);
        assert!(!whole && !attributes);
        assert_eq!(
            last,
            vec![("a".into(), false), ("b".into(), true), ("c".into(), true)]
        );
    }

    #[test]
    fn a_create_in_the_batch_sends_the_group_whole_and_a_rename_flags_the_attributes() {
        let (whole, _, _) = folded(&[
            event("create", 1, &["displayName", "members"], &["+a"]),
            event("patch", 2, &["members"], &["+b"]),
        ]);
        assert!(whole, "deltas after a create fold into its upsert");
        let (whole, attributes, last) = folded(&[event(
            "replace",
            7,
            &["displayName", "members"],
            &["+x", "-y"],
        )]);
        assert!(!whole && attributes);
        assert_eq!(last, vec![("y".into(), false), ("x".into(), true)]);
    }
}
