//! The `scim` projection: every change forwarded to an upstream SCIM 2.0 server (RFC 7644), the
//! way the earlier server's `SCIM_FORWARD_URL` did.
//!
//! # Ids
//! The upstream assigns its own ids. The projection keeps scimd id ↔ upstream id in its
//! [`IdMap`] (durable, in scimd's store) and translates every reference: member values and the
//! enterprise `manager.value`. `externalId` is sent unchanged: it is the identity provider's.
//!
//! # Requests
//! - A resource the map does not know: `POST`. On 409 it is looked up (`userName eq` for Users,
//!   `displayName eq` for Groups); exactly one match is adopted (logged at WARN; the map records
//!   it and the resource is then replaced with scimd's document), otherwise, or with adoption off
//!   (`FORWARD_SCIM_ADOPT=false`), the change is parked. This also answers a crash between the
//!   upstream's create and the map's write: the redelivered create meets the 409 and adopts.
//! - A whole document of a known resource: `PUT` (RFC 7644 §3.5.1: only a replace says "and
//!   nothing else"; a PATCH cannot remove what it does not know the upstream holds).
//! - A group's membership delta: when the upstream's ServiceProviderConfig says `patch.supported`,
//!   `PATCH` with one `add` of the new members and a `remove` per member gone, in bodies of at most
//!   1,000 operations, never the member list; otherwise `GET` the group, apply the delta to its
//!   member list and `PUT` it.
//! - With `etag.supported`, writes carry `If-Match` with the ETag of the upstream's last answer for
//!   that resource; a 412 re-reads the resource and tries again.
//! - A delete: `DELETE`; 404 means done.
//! - A resource the map knows but the upstream answers 404 for (deleted there, or the upstream was
//!   emptied): a whole document is created again; a delta is parked, and `scimd projection retry
//!   scim` re-sends the group whole.
//! - Members whose resource is not upstream yet are left out and added once they are, in the
//!   same batch; those that never get there (their own change was parked) are added when they do.
//!
//! # Failures
//! Network errors, 5xx and 429 are retried (see [`client`]), then the batch is handed back as
//! [`ProjectionError::Unavailable`]: the runner retries it with backoff, and what was already
//! applied is not sent again within the same delivery. 401/403 are also `Unavailable` (a wrong
//! key parks nothing). Any other 4xx parks the change with the upstream's SCIM error.

pub mod client;
pub mod translate;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{Change, IdMap, Member, Projection, ProjectionError, ResourceKind};
use client::{Answer, Failure, Upstream};
use translate::Translation;

/// Resources of a batch sent at once.
const CONCURRENCY: usize = 16;
/// Writes tried again after a 412 before the batch is handed back as unavailable.
const PRECONDITION_TRIES: usize = 3;

/// How to reach the upstream.
#[derive(Debug, Clone)]
pub struct ScimSettings {
    /// Base URL of the upstream's SCIM endpoints (`https://host/scim/v2`).
    pub url: String,
    /// Its bearer token (never logged).
    pub key: String,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// PEM CA certificates to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Whether a 409 on create adopts the single matching upstream resource.
    pub adopt: bool,
}

/// What the upstream's ServiceProviderConfig says it supports (RFC 7643 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `patch.supported`.
    pub patch: bool,
    /// `etag.supported`.
    pub etag: bool,
}

/// A projection into an upstream SCIM server. See the [module documentation](self).
pub struct ScimProjection {
    upstream: Upstream,
    features: Features,
    adopt: bool,
    ids: Arc<dyn IdMap>,
    /// The upstream's last ETag per (kind, upstream id).
    etags: Mutex<HashMap<(ResourceKind, String), String>>,
    /// Changes applied since the last batch that succeeded whole: a batch handed back after a
    /// parked change is re-applied without them.
    done: Mutex<HashSet<DoneKey>>,
}

/// A change already applied: (kind, id, version; 0 for a delete, +1 offset marks a delta).
type DoneKey = (ResourceKind, String, u64, u8);

impl ScimProjection {
    /// Builds the client and reads the upstream's ServiceProviderConfig.
    ///
    /// # Errors
    /// [`ProjectionError::Config`] for settings that cannot work (a header that is not one, an
    /// unreadable CA file); [`ProjectionError::Unavailable`] while the upstream does not answer.
    pub async fn connect(
        settings: ScimSettings,
        ids: Arc<dyn IdMap>,
    ) -> Result<ScimProjection, ProjectionError> {
        let upstream = Upstream::new(
            &settings.url,
            &settings.key,
            &settings.headers,
            settings.ca_file.as_deref(),
        )
        .map_err(|e| ProjectionError::Config(format!("scim projection: {e}")))?;
        let answer = upstream
            .send(Method::GET, "/ServiceProviderConfig", &[], None, None)
            .await
            .map_err(unavailable)?;
        let features = if answer.status.is_success() {
            let supported = |name: &str| {
                answer
                    .body
                    .pointer(&format!("/{name}/supported"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            };
            Features {
                patch: supported("patch"),
                etag: supported("etag"),
            }
        } else {
            match answer.refusal("GET /ServiceProviderConfig") {
                Failure::Unavailable(e) => return Err(ProjectionError::Unavailable(e)),
                Failure::Refused(e) => {
                    tracing::warn!(
                        error = e,
                        "upstream SCIM server has no ServiceProviderConfig: using PUT, no ETags"
                    );
                    Features {
                        patch: false,
                        etag: false,
                    }
                }
            }
        };
        tracing::info!(
            patch = features.patch,
            etag = features.etag,
            "scim projection connected"
        );
        Ok(ScimProjection {
            upstream,
            features,
            adopt: settings.adopt,
            ids,
            etags: Mutex::new(HashMap::new()),
            done: Mutex::new(HashSet::new()),
        })
    }

    /// What the upstream supports, as its ServiceProviderConfig said at connection.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Applies one change; returns the group members left out because they are not upstream yet.
    async fn apply_one(&self, change: &Change) -> Result<Vec<(ResourceKind, String)>, Failure> {
        let key = done_key(change);
        if self.done.lock().map(|d| d.contains(&key)).unwrap_or(false) {
            return Ok(Vec::new());
        }
        let missing = match change {
            Change::Upsert {
                kind, id, document, ..
            } => self.upsert(*kind, id, document).await?,
            Change::Delete { kind, id } => {
                self.delete(*kind, id).await?;
                Vec::new()
            }
            Change::Members {
                id,
                document,
                attributes_changed,
                added,
                removed,
                ..
            } => {
                let attributes = attributes_changed.then_some(document);
                self.members(id, document, attributes, added, removed)
                    .await?
            }
        };
        if let Ok(mut done) = self.done.lock() {
            done.insert(key);
        }
        Ok(missing)
    }

    async fn upsert(
        &self,
        kind: ResourceKind,
        id: &str,
        document: &Value,
    ) -> Result<Vec<(ResourceKind, String)>, Failure> {
        let translation = self
            .translation(&translate::references(kind, document))
            .await?;
        let (body, missing) = translate::body(kind, document, &translation);
        let remote = self.ids.remote_id(kind, id).await.map_err(failure)?;
        match remote {
            Some(remote) => {
                if !self.replace(kind, &remote, &body).await? {
                    tracing::info!(id, remote, "gone from the upstream: created again");
                    self.ids
                        .forget(kind, vec![id.to_owned()])
                        .await
                        .map_err(failure)?;
                    self.create(kind, id, &body).await?;
                }
            }
            None => self.create(kind, id, &body).await?,
        }
        Ok(missing)
    }

    /// POSTs a new resource and records its upstream id; a 409 adopts the one match.
    async fn create(&self, kind: ResourceKind, id: &str, body: &Value) -> Result<(), Failure> {
        let path = format!("/{}", kind.plural());
        let answer = self
            .upstream
            .send(Method::POST, &path, &[], Some(body), None)
            .await?;
        if answer.status.is_success() {
            let remote = answer
                .body
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Failure::Refused(format!(
                        "upstream answered {} to POST {path} without an id",
                        answer.status.as_u16()
                    ))
                })?
                .to_owned();
            self.remember_etag(kind, &remote, &answer);
            return self
                .ids
                .record(kind, vec![(id.to_owned(), remote)])
                .await
                .map_err(failure);
        }
        if answer.status != StatusCode::CONFLICT {
            return Err(answer.refusal(&format!("POST {path}")));
        }
        if !self.adopt {
            return Err(match answer.refusal(&format!("POST {path}")) {
                Failure::Refused(reason) => {
                    Failure::Refused(format!("{reason}; not adopted (FORWARD_SCIM_ADOPT=false)"))
                }
                other => other,
            });
        }
        let (attribute, value) = match kind {
            ResourceKind::User => ("userName", body.get("userName")),
            ResourceKind::Group => ("displayName", body.get("displayName")),
        };
        let value = value.and_then(Value::as_str).unwrap_or_default();
        let filter = format!("{attribute} eq {}", Value::String(value.to_owned()));
        let found = self
            .upstream
            .send(
                Method::GET,
                &path,
                &[("filter", filter.as_str()), ("count", "2")],
                None,
                None,
            )
            .await?;
        if !found.status.is_success() {
            return Err(found.refusal(&format!("GET {path}?filter={filter}")));
        }
        let resources = found
            .body
            .get("Resources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let total = found
            .body
            .get("totalResults")
            .and_then(Value::as_u64)
            .unwrap_or(resources.len() as u64);
        let remote = match (total, resources.first().and_then(|r| r.get("id"))) {
            (1, Some(Value::String(remote))) => remote.clone(),
            _ => {
                return Err(Failure::Refused(format!(
                    "upstream answered 409 to POST {path} and {total} resources match {filter}; \
                     adopting needs exactly one"
                )));
            }
        };
        tracing::warn!(
            id,
            remote,
            filter,
            "upstream already had the resource (409): adopted it"
        );
        self.ids
            .record(kind, vec![(id.to_owned(), remote.clone())])
            .await
            .map_err(failure)?;
        if self.replace(kind, &remote, body).await? {
            Ok(())
        } else {
            Err(Failure::Unavailable(format!(
                "the adopted {filter} vanished from the upstream"
            )))
        }
    }

    /// PUTs `body` over the upstream resource; `false` when the upstream has no such resource.
    async fn replace(
        &self,
        kind: ResourceKind,
        remote: &str,
        body: &Value,
    ) -> Result<bool, Failure> {
        let path = format!("/{}/{remote}", kind.plural());
        let mut body = body.clone();
        if let Value::Object(map) = &mut body {
            map.insert("id".into(), Value::String(remote.to_owned()));
        }
        let answer = self
            .write_with_etag(kind, remote, Method::PUT, &path, &body)
            .await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(answer.refusal(&format!("PUT {path}"))),
        }
    }

    /// Sends a write with `If-Match` (when the upstream supports ETags and one is known); on 412
    /// re-reads the resource for its ETag and tries again.
    async fn write_with_etag(
        &self,
        kind: ResourceKind,
        remote: &str,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Answer, Failure> {
        for _ in 0..PRECONDITION_TRIES {
            let etag = self.etag(kind, remote);
            let answer = self
                .upstream
                .send(method.clone(), path, &[], Some(body), etag.as_deref())
                .await?;
            if answer.status == StatusCode::PRECONDITION_FAILED {
                let current = self
                    .upstream
                    .send(Method::GET, path, &[("attributes", "id")], None, None)
                    .await?;
                if current.status == StatusCode::NOT_FOUND {
                    return Ok(current);
                }
                self.forget_etag(kind, remote);
                self.remember_etag(kind, remote, &current);
                continue;
            }
            self.remember_etag(kind, remote, &answer);
            return Ok(answer);
        }
        Err(Failure::Unavailable(format!(
            "upstream answered 412 to {method} {path} {PRECONDITION_TRIES} times in a row"
        )))
    }

    async fn members(
        &self,
        id: &str,
        document: &Value,
        attributes: Option<&Value>,
        added: &[Member],
        removed: &[Member],
    ) -> Result<Vec<(ResourceKind, String)>, Failure> {
        let kind = ResourceKind::Group;
        let Some(remote) = self.ids.remote_id(kind, id).await.map_err(failure)? else {
            return Err(Failure::Refused(format!(
                "the upstream has no group for {id} (its creation was parked); \
                 `scimd projection retry scim` sends it whole"
            )));
        };
        let translation = self
            .translation(&translate::delta_references(added, removed))
            .await?;
        let mut missing = Vec::new();
        let mut add = Vec::new();
        for m in added {
            match translation.get(&(m.kind, m.value.clone())) {
                Some(r) => add.push((r.clone(), m.kind)),
                None => missing.push((m.kind, m.value.clone())),
            }
        }
        // A removed member with no upstream id is not upstream: nothing to remove.
        let remove: Vec<String> = removed
            .iter()
            .filter_map(|m| translation.get(&(m.kind, m.value.clone())).cloned())
            .collect();
        let path = format!("/Groups/{remote}");
        let gone = || {
            Failure::Refused(format!(
                "the upstream no longer has group {remote} (404); \
                 `scimd projection retry scim` creates it again"
            ))
        };
        if self.features.patch {
            for body in translate::member_patches(attributes, &add, &remove) {
                let answer = self
                    .write_with_etag(kind, &remote, Method::PATCH, &path, &body)
                    .await?;
                match answer.status {
                    s if s.is_success() => {}
                    StatusCode::NOT_FOUND => {
                        self.ids
                            .forget(kind, vec![id.to_owned()])
                            .await
                            .map_err(failure)?;
                        return Err(gone());
                    }
                    _ => return Err(answer.refusal(&format!("PATCH {path}"))),
                }
            }
            return Ok(missing);
        }
        for _ in 0..PRECONDITION_TRIES {
            let current = self
                .upstream
                .send(Method::GET, &path, &[], None, None)
                .await?;
            if current.status == StatusCode::NOT_FOUND {
                self.ids
                    .forget(kind, vec![id.to_owned()])
                    .await
                    .map_err(failure)?;
                return Err(gone());
            }
            if !current.status.is_success() {
                return Err(current.refusal(&format!("GET {path}")));
            }
            let members = current
                .body
                .get("members")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            // The group's other attributes: scimd's document, or (for members added late, which
            // come without one) the upstream's own.
            let base = if document.is_object() {
                document
            } else {
                &current.body
            };
            let (mut body, _) = translate::body(kind, base, &Translation::new());
            if let Value::Object(map) = &mut body {
                map.insert("id".into(), Value::String(remote.clone()));
                map.insert(
                    "members".into(),
                    Value::Array(translate::apply_delta(&members, &add, &remove)),
                );
            }
            let etag = current.etag.filter(|_| self.features.etag);
            let answer = self
                .upstream
                .send(Method::PUT, &path, &[], Some(&body), etag.as_deref())
                .await?;
            match answer.status {
                StatusCode::PRECONDITION_FAILED => continue,
                s if s.is_success() => {
                    self.remember_etag(kind, &remote, &answer);
                    return Ok(missing);
                }
                StatusCode::NOT_FOUND => return Err(gone()),
                _ => return Err(answer.refusal(&format!("PUT {path}"))),
            }
        }
        Err(Failure::Unavailable(format!(
            "upstream answered 412 to PUT {path} {PRECONDITION_TRIES} times in a row"
        )))
    }

    async fn delete(&self, kind: ResourceKind, id: &str) -> Result<(), Failure> {
        let Some(remote) = self.ids.remote_id(kind, id).await.map_err(failure)? else {
            return Ok(());
        };
        self.delete_remote(kind, &remote).await?;
        self.ids
            .forget(kind, vec![id.to_owned()])
            .await
            .map_err(failure)
    }

    async fn delete_remote(&self, kind: ResourceKind, remote: &str) -> Result<(), Failure> {
        let path = format!("/{}/{remote}", kind.plural());
        let answer = self
            .upstream
            .send(Method::DELETE, &path, &[], None, None)
            .await?;
        self.forget_etag(kind, remote);
        if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(answer.refusal(&format!("DELETE {path}")))
        }
    }

    /// The upstream ids of `references` that have one.
    async fn translation(
        &self,
        references: &[(ResourceKind, String)],
    ) -> Result<Translation, Failure> {
        let mut out = Translation::new();
        for kind in [ResourceKind::User, ResourceKind::Group] {
            let ids: Vec<String> = references
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, id)| id.clone())
                .collect();
            if ids.is_empty() {
                continue;
            }
            let remote = self.ids.remote_ids(kind, &ids).await.map_err(failure)?;
            for (id, remote) in ids.into_iter().zip(remote) {
                if let Some(remote) = remote {
                    out.insert((kind, id), remote);
                }
            }
        }
        Ok(out)
    }

    fn etag(&self, kind: ResourceKind, remote: &str) -> Option<String> {
        if !self.features.etag {
            return None;
        }
        let etags = self.etags.lock().ok()?;
        etags.get(&(kind, remote.to_owned())).cloned()
    }

    fn remember_etag(&self, kind: ResourceKind, remote: &str, answer: &Answer) {
        if let (true, Some(etag)) = (self.features.etag, &answer.etag)
            && let Ok(mut etags) = self.etags.lock()
        {
            etags.insert((kind, remote.to_owned()), etag.clone());
        }
    }

    fn forget_etag(&self, kind: ResourceKind, remote: &str) {
        if let Ok(mut etags) = self.etags.lock() {
            etags.remove(&(kind, remote.to_owned()));
        }
    }

    /// Adds to each group the members that were left out because they were not upstream yet and
    /// now are (created later in the same batch).
    async fn add_late_members(
        &self,
        late: Vec<(String, Vec<(ResourceKind, String)>)>,
    ) -> Result<(), (String, Failure)> {
        for (group, missing) in late {
            let added: Vec<Member> = missing
                .into_iter()
                .map(|(kind, value)| Member { value, kind })
                .collect();
            let translation = self
                .translation(&translate::delta_references(&added, &[]))
                .await
                .map_err(|e| (group.clone(), e))?;
            let now_there: Vec<Member> = added
                .into_iter()
                .filter(|m| translation.contains_key(&(m.kind, m.value.clone())))
                .collect();
            if now_there.is_empty() {
                continue;
            }
            self.members(&group, &Value::Null, None, &now_there, &[])
                .await
                .map_err(|e| (group.clone(), e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Projection for ScimProjection {
    fn name(&self) -> &str {
        "scim"
    }

    /// Users first, then groups (whose members must exist upstream), then deletes (groups before
    /// users); within each phase, resources concurrently.
    async fn apply(&mut self, changes: &[Change], _position: u64) -> Result<(), ProjectionError> {
        let phase = |i: usize| match &changes[i] {
            Change::Upsert {
                kind: ResourceKind::User,
                ..
            } => 0,
            Change::Upsert { .. } | Change::Members { .. } => 1,
            Change::Delete {
                kind: ResourceKind::Group,
                ..
            } => 2,
            Change::Delete { .. } => 3,
        };
        let mut refused: Option<(usize, String)> = None;
        let mut late: Vec<(String, Vec<(ResourceKind, String)>)> = Vec::new();
        for p in 0..4 {
            let indexes: Vec<usize> = (0..changes.len()).filter(|&i| phase(i) == p).collect();
            let this = &*self;
            let results: Vec<(usize, Result<Vec<(ResourceKind, String)>, Failure>)> =
                futures::stream::iter(indexes)
                    .map(|i| async move { (i, this.apply_one(&changes[i]).await) })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
            for (i, result) in results {
                match result {
                    Ok(missing)
                        if !missing.is_empty() && changes[i].kind() == ResourceKind::Group =>
                    {
                        late.push((changes[i].id().to_owned(), missing));
                    }
                    Ok(_) => {}
                    Err(Failure::Unavailable(e)) => return Err(ProjectionError::Unavailable(e)),
                    Err(Failure::Refused(reason)) => {
                        if refused.as_ref().is_none_or(|(j, _)| i < *j) {
                            refused = Some((i, reason));
                        }
                    }
                }
            }
            if p == 1 && !late.is_empty() {
                match self.add_late_members(std::mem::take(&mut late)).await {
                    Ok(()) => {}
                    Err((_, Failure::Unavailable(e))) => {
                        return Err(ProjectionError::Unavailable(e));
                    }
                    Err((group, Failure::Refused(reason))) => {
                        tracing::warn!(group, reason, "late members not added");
                    }
                }
            }
        }
        match refused {
            Some((index, reason)) => Err(ProjectionError::Rejected { index, reason }),
            None => {
                if let Ok(mut done) = self.done.lock() {
                    done.clear();
                }
                Ok(())
            }
        }
    }

    fn member_deltas(&self) -> bool {
        true
    }

    async fn stored_position(&mut self) -> Result<Option<u64>, ProjectionError> {
        Ok(None)
    }

    /// Deletes every upstream resource the id map knows (groups first); scimd drops the map
    /// afterwards. Resources the upstream holds that scimd did not create are left alone.
    async fn reset(&mut self) -> Result<(), ProjectionError> {
        for kind in [ResourceKind::Group, ResourceKind::User] {
            let entries = self.ids.entries(kind).await?;
            let this = &*self;
            let results: Vec<Result<(), Failure>> = futures::stream::iter(entries)
                .map(|(_, remote)| async move { this.delete_remote(kind, &remote).await })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for result in results {
                result.map_err(|e| ProjectionError::Unavailable(e.to_string()))?;
            }
        }
        if let Ok(mut done) = self.done.lock() {
            done.clear();
        }
        Ok(())
    }
}

fn done_key(change: &Change) -> DoneKey {
    match change {
        Change::Upsert {
            kind, id, version, ..
        } => (*kind, id.clone(), *version, 0),
        Change::Members { id, version, .. } => (ResourceKind::Group, id.clone(), *version, 1),
        Change::Delete { kind, id } => (*kind, id.clone(), 0, 2),
    }
}

fn failure(e: ProjectionError) -> Failure {
    match e {
        ProjectionError::Rejected { reason, .. } => Failure::Refused(reason),
        other => Failure::Unavailable(other.to_string()),
    }
}

fn unavailable(e: Failure) -> ProjectionError {
    ProjectionError::Unavailable(e.to_string())
}
