//! The `jumpcloud` projection: Users and Groups as JumpCloud system users and user groups, through
//! JumpCloud's REST API (`JUMPCLOUD_URL`, key `JUMPCLOUD_KEY`).
//!
//! # Ids
//! JumpCloud assigns its own ids (24-hex ObjectIds), so scimd keeps a durable [`IdMap`] of scimd
//! id ↔ JumpCloud id per resource type. Before a create the projection looks the resource up by
//! its unique name (`username` for users, `name` for groups): one found that no other scimd
//! resource maps to is adopted (a crash between the create and the map write, or a user that was
//! made in JumpCloud first), one that another scimd resource holds is refused (two `userName`s
//! that the local-part rule folds into one `username`).
//!
//! # Writes
//! - Users: `POST /api/systemusers` (answers 200) or `PUT /api/systemusers/{id}` (partial, so
//!   every managed field is always sent, see [`translate::user`]); then the SSH keys named
//!   `scimd:…` are made equal to the User's via `/api/systemusers/{id}/sshkeys` (keys added in
//!   JumpCloud under other names stay). `DELETE /api/systemusers/{id}`; 404 means gone.
//! - Groups: `POST /api/v2/usergroups` (201) or `PUT /api/v2/usergroups/{id}` (a full replace of
//!   `{"name"}`). A whole group ([`Change::Upsert`]: created, re-sent by `retry` or a replay)
//!   makes JumpCloud's direct user members equal to its User members (listed with
//!   `x-total-count` paging); a membership change ([`Change::Members`]) sends one
//!   `POST /api/v2/usergroups/{id}/members` `add` or `remove` per member, never the list, and
//!   takes 409 (already a member) and 404 (not a member) as done. Group members of a Group are
//!   not sent: JumpCloud user groups hold users only.
//! - Within a batch users go first, so that a group's new members exist in JumpCloud before they
//!   are added; resources are applied [`CONCURRENCY`] at a time.
//!
//! # Errors
//! 429, 5xx and network errors are retried by the [`client`]; when they persist, and on a
//! refused key (401/403), the batch is [`ProjectionError::Unavailable`] and the runner retries
//! it. A resource JumpCloud refuses (400, a `userName` or email it cannot take, a member whose
//! own change was parked) is [`ProjectionError::Rejected`] with the reason, and so parked. A
//! batch the runner re-applies after a park skips what already went through (by version).

pub mod client;
pub mod translate;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, stream};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Change, IdMap, Member, Projection, ProjectionError, ResourceKind};
use client::{Answer, CallError, Client};
use translate::Untranslatable;

/// Resources (and member operations of one group) applied at once.
pub const CONCURRENCY: usize = 8;
/// JumpCloud's largest page.
const PAGE: usize = 100;
/// Versions remembered as applied before the memory is cleared.
const APPLIED_MAX: usize = 200_000;

/// Where the projection writes.
#[derive(Clone)]
pub struct JumpCloudSettings {
    /// The API's root (`https://console.jumpcloud.com`); `/api/…` and `/api/v2/…` are appended.
    pub url: String,
    /// The API key, sent as `x-api-key`.
    pub key: String,
    /// `x-org-id`, for an administrator of several organisations.
    pub org_id: Option<String>,
}

impl std::fmt::Debug for JumpCloudSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JumpCloudSettings")
            .field("url", &self.url)
            .field("key", &"<hidden>")
            .field("org_id", &self.org_id)
            .finish()
    }
}

/// Why one change did not go through.
#[derive(Debug)]
enum Failure {
    /// Retry the batch later.
    Unavailable(String),
    /// Park the change with this reason.
    Refused(String),
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Failure {
        match e {
            CallError::Unavailable(reason) => Failure::Unavailable(reason),
            refused @ CallError::Refused { .. } => Failure::Refused(refused.to_string()),
        }
    }
}

impl From<Untranslatable> for Failure {
    fn from(e: Untranslatable) -> Failure {
        Failure::Refused(e.to_string())
    }
}

impl From<ProjectionError> for Failure {
    fn from(e: ProjectionError) -> Failure {
        match e {
            ProjectionError::Rejected { reason, .. } => Failure::Refused(reason),
            other => Failure::Unavailable(other.to_string()),
        }
    }
}

/// A projection into a JumpCloud organisation. See the [module documentation](self).
pub struct JumpCloudProjection {
    client: Client,
    ids: Arc<dyn IdMap>,
    /// The version last applied per resource, and whether it went whole (an upsert), so that a
    /// batch re-applied after a park does not send again what already went through. A group's
    /// delta does not stand for its whole upsert of the same version (which `retry` sends to add
    /// the members a parked delta left out).
    applied: HashMap<(ResourceKind, String), (u64, bool)>,
}

impl JumpCloudProjection {
    /// A projection writing to `settings.url`, keeping its ids in `ids`; checks the key with one
    /// small list request.
    ///
    /// # Errors
    /// [`ProjectionError::Config`] for a URL that is not `http(s)://` or a key that cannot be a
    /// header; [`ProjectionError::Unavailable`] while JumpCloud is unreachable or refuses the key.
    pub async fn connect(
        settings: &JumpCloudSettings,
        ids: Arc<dyn IdMap>,
    ) -> Result<Self, ProjectionError> {
        let url = settings.url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ProjectionError::Config(format!(
                "jumpcloud projection: JUMPCLOUD_URL {url:?} is not an http(s):// URL"
            )));
        }
        let client = Client::new(url, &settings.key, settings.org_id.as_deref())
            .map_err(ProjectionError::Config)?;
        client
            .call(
                Method::GET,
                "/api/systemusers",
                &[("limit", "1"), ("fields", "username")],
                None,
                &[],
            )
            .await
            .map_err(|e| ProjectionError::Unavailable(e.to_string()))?;
        tracing::info!(url, "jumpcloud projection connected");
        Ok(JumpCloudProjection {
            client,
            ids,
            applied: HashMap::new(),
        })
    }

    async fn apply_one(&self, change: &Change) -> Result<(), Failure> {
        match change {
            Change::Upsert {
                kind: ResourceKind::User,
                id,
                document,
                ..
            } => self.upsert_user(id, document).await,
            Change::Upsert {
                kind: ResourceKind::Group,
                id,
                document,
                ..
            } => self.upsert_group(id, document).await,
            Change::Delete { kind, id } => self.delete(*kind, id).await,
            Change::Members {
                id,
                document,
                attributes_changed,
                added,
                removed,
                ..
            } => {
                self.group_members(id, document, *attributes_changed, added, removed)
                    .await
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Users
    // -----------------------------------------------------------------------------------------

    async fn upsert_user(&self, id: &str, document: &Value) -> Result<(), Failure> {
        let user = translate::user(document)?;
        let mut answer = None;
        if let Some(remote) = self.ids.remote_id(ResourceKind::User, id).await? {
            let path = format!("/api/systemusers/{remote}");
            let a = self
                .client
                .call(Method::PUT, &path, &[], Some(&user.body), &[404])
                .await?;
            if a.status == 404 {
                // Deleted in JumpCloud behind scimd's back: create it again.
                self.ids
                    .forget(ResourceKind::User, vec![id.to_owned()])
                    .await?;
            } else {
                answer = Some((remote, a.body));
            }
        }
        let (remote, body) = match answer {
            Some(found) => found,
            None => self.create_user(id, &user).await?,
        };
        self.sync_ssh_keys(&remote, &body, &user.ssh_keys).await
    }

    /// Finds the user by `username` (adopting it) or creates it, and records its id.
    async fn create_user(
        &self,
        id: &str,
        user: &translate::SystemUser,
    ) -> Result<(String, Value), Failure> {
        let filter = format!("username:$eq:{}", user.username);
        let found = self
            .client
            .call(
                Method::GET,
                "/api/systemusers",
                &[("filter", &filter), ("limit", "2")],
                None,
                &[],
            )
            .await?;
        let existing = found
            .body
            .get("results")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|u| u.get("_id").or_else(|| u.get("id")))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(remote) = existing {
            self.adoptable(ResourceKind::User, id, &remote, &user.username)
                .await?;
            tracing::warn!(
                id,
                remote,
                username = user.username,
                "jumpcloud: adopted the existing JumpCloud user of this username"
            );
            self.ids
                .record(ResourceKind::User, vec![(id.to_owned(), remote.clone())])
                .await?;
            let a = self
                .client
                .call(
                    Method::PUT,
                    &format!("/api/systemusers/{remote}"),
                    &[],
                    Some(&user.body),
                    &[],
                )
                .await?;
            return Ok((remote, a.body));
        }
        let a = self
            .client
            .call(Method::POST, "/api/systemusers", &[], Some(&user.body), &[])
            .await?;
        let remote = remote_id(&a, "_id")?;
        self.ids
            .record(ResourceKind::User, vec![(id.to_owned(), remote.clone())])
            .await?;
        Ok((remote, a.body))
    }

    /// Refuses to adopt `remote` for `id` when another scimd resource already maps to it.
    async fn adoptable(
        &self,
        kind: ResourceKind,
        id: &str,
        remote: &str,
        name: &str,
    ) -> Result<(), Failure> {
        let holders = self.ids.local_ids(kind, &[remote.to_owned()]).await?;
        match holders.into_iter().next().flatten() {
            Some(other) if other != id => Err(Failure::Refused(format!(
                "the JumpCloud {} {name:?} ({remote}) already stands for the scimd {} {other}",
                match kind {
                    ResourceKind::User => "username",
                    ResourceKind::Group => "group",
                },
                match kind {
                    ResourceKind::User => "User",
                    ResourceKind::Group => "Group",
                }
            ))),
            _ => Ok(()),
        }
    }

    /// Makes the user's `scimd:` SSH keys equal to `wanted`; `body` is the user JumpCloud
    /// answered with (its `ssh_keys`).
    async fn sync_ssh_keys(
        &self,
        remote: &str,
        body: &Value,
        wanted: &[translate::SshKey],
    ) -> Result<(), Failure> {
        let path = format!("/api/systemusers/{remote}/sshkeys");
        let held = match body.get("ssh_keys").and_then(Value::as_array) {
            Some(keys) => keys.clone(),
            None if wanted.is_empty() => return Ok(()),
            None => match self
                .client
                .call(Method::GET, &path, &[], None, &[])
                .await?
                .body
            {
                Value::Array(keys) => keys,
                _ => Vec::new(),
            },
        };
        let held_lines: HashSet<&str> = held
            .iter()
            .filter_map(|k| k.get("public_key").and_then(Value::as_str))
            .map(str::trim)
            .collect();
        for key in &held {
            let ours = key
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.starts_with(translate::SSH_KEY_PREFIX));
            let line = key.get("public_key").and_then(Value::as_str).unwrap_or("");
            let key_id = key
                .get("_id")
                .or_else(|| key.get("id"))
                .and_then(Value::as_str);
            if let Some(key_id) = key_id.filter(|_| ours)
                && !wanted.iter().any(|w| w.public_key == line.trim())
            {
                self.client
                    .call(
                        Method::DELETE,
                        &format!("{path}/{key_id}"),
                        &[],
                        None,
                        &[404],
                    )
                    .await?;
            }
        }
        for key in wanted {
            if !held_lines.contains(key.public_key.as_str()) {
                let body = json!({"name": key.name, "public_key": key.public_key});
                self.client
                    .call(Method::POST, &path, &[], Some(&body), &[])
                    .await?;
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Groups
    // -----------------------------------------------------------------------------------------

    /// The JumpCloud id of the group, after its name is set: updated when mapped, else found
    /// by name (adopted) or created.
    async fn ensure_group(&self, id: &str, body: &Value) -> Result<String, Failure> {
        if let Some(remote) = self.ids.remote_id(ResourceKind::Group, id).await? {
            let path = format!("/api/v2/usergroups/{remote}");
            let a = self
                .client
                .call(Method::PUT, &path, &[], Some(body), &[404])
                .await?;
            if a.status != 404 {
                return Ok(remote);
            }
            self.ids
                .forget(ResourceKind::Group, vec![id.to_owned()])
                .await?;
        }
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        let filter = format!("name:eq:{name}");
        let found = self
            .client
            .call(
                Method::GET,
                "/api/v2/usergroups",
                &[("filter", &filter), ("limit", "2")],
                None,
                &[],
            )
            .await?;
        let existing = found
            .body
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|g| g.get("id").and_then(Value::as_str))
            .map(str::to_owned);
        if let Some(remote) = existing {
            self.adoptable(ResourceKind::Group, id, &remote, name)
                .await?;
            tracing::warn!(
                id,
                remote,
                name,
                "jumpcloud: adopted the existing JumpCloud group of this name"
            );
            self.ids
                .record(ResourceKind::Group, vec![(id.to_owned(), remote.clone())])
                .await?;
            return Ok(remote);
        }
        let a = self
            .client
            .call(Method::POST, "/api/v2/usergroups", &[], Some(body), &[])
            .await?;
        let remote = remote_id(&a, "id")?;
        self.ids
            .record(ResourceKind::Group, vec![(id.to_owned(), remote.clone())])
            .await?;
        Ok(remote)
    }

    async fn upsert_group(&self, id: &str, document: &Value) -> Result<(), Failure> {
        let body = translate::group(document)?;
        let remote = self.ensure_group(id, &body).await?;
        let wanted: Vec<String> = document
            .get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|m| m.get("type").and_then(Value::as_str) != Some("Group"))
            .filter_map(|m| m.get("value").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        let (wanted, missing) = self.users_in_jumpcloud(&wanted).await?;
        let held = self.members_of(&remote).await?;
        let add: Vec<&String> = wanted.iter().filter(|w| !held.contains(*w)).collect();
        let wanted: HashSet<&String> = wanted.iter().collect();
        let remove: Vec<&String> = held.iter().filter(|h| !wanted.contains(h)).collect();
        self.member_ops(&remote, "add", &add).await?;
        self.member_ops(&remote, "remove", &remove).await?;
        missing_members(&missing)
    }

    async fn group_members(
        &self,
        id: &str,
        document: &Value,
        attributes_changed: bool,
        added: &[Member],
        removed: &[Member],
    ) -> Result<(), Failure> {
        let Some(remote) = self.ids.remote_id(ResourceKind::Group, id).await? else {
            return Err(Failure::Refused(
                "the group is not in JumpCloud (its creation was parked); \
                 `scimd projection retry jumpcloud` sends it whole"
                    .into(),
            ));
        };
        if attributes_changed {
            let body = translate::group(document)?;
            self.client
                .call(
                    Method::PUT,
                    &format!("/api/v2/usergroups/{remote}"),
                    &[],
                    Some(&body),
                    &[],
                )
                .await?;
        }
        let users = |members: &[Member]| -> Vec<String> {
            members
                .iter()
                .filter(|m| m.kind == ResourceKind::User)
                .map(|m| m.value.clone())
                .collect()
        };
        let (add, missing) = self.users_in_jumpcloud(&users(added)).await?;
        let (remove, _) = self.users_in_jumpcloud(&users(removed)).await?;
        self.member_ops(&remote, "add", &add.iter().collect::<Vec<_>>())
            .await?;
        self.member_ops(&remote, "remove", &remove.iter().collect::<Vec<_>>())
            .await?;
        missing_members(&missing)
    }

    /// The JumpCloud ids of these scimd Users, and the scimd ids that have none.
    async fn users_in_jumpcloud(
        &self,
        ids: &[String],
    ) -> Result<(Vec<String>, Vec<String>), Failure> {
        if ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let remote = self.ids.remote_ids(ResourceKind::User, ids).await?;
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (id, remote) in ids.iter().zip(remote) {
            match remote {
                Some(r) => found.push(r),
                None => missing.push(id.clone()),
            }
        }
        Ok((found, missing))
    }

    /// The direct user members of a JumpCloud group, every page.
    async fn members_of(&self, remote: &str) -> Result<Vec<String>, Failure> {
        let path = format!("/api/v2/usergroups/{remote}/members");
        let mut out = Vec::new();
        let mut edges = 0;
        loop {
            let skip = edges.to_string();
            let limit = PAGE.to_string();
            let a = self
                .client
                .call(
                    Method::GET,
                    &path,
                    &[("limit", &limit), ("skip", &skip)],
                    None,
                    &[],
                )
                .await?;
            let page = a.body.as_array().cloned().unwrap_or_default();
            let n = page.len();
            out.extend(page.iter().filter_map(|edge| {
                let to = edge.get("to")?;
                (to.get("type").and_then(Value::as_str) == Some("user"))
                    .then(|| to.get("id").and_then(Value::as_str).map(str::to_owned))
                    .flatten()
            }));
            edges += n;
            let total = a.total.map_or(usize::MAX, |t| t as usize);
            if n < PAGE || edges >= total {
                return Ok(out);
            }
        }
    }

    /// `op` (`add` or `remove`) of each user, [`CONCURRENCY`] at a time; a 409 to an add and a
    /// 404 to a remove mean it was already so.
    async fn member_ops(&self, remote: &str, op: &str, users: &[&String]) -> Result<(), Failure> {
        let path = format!("/api/v2/usergroups/{remote}/members");
        let done_already: &[u16] = if op == "add" { &[409] } else { &[404] };
        let bodies: Vec<Value> = users
            .iter()
            .map(|user| json!({"op": op, "type": "user", "id": user}))
            .collect();
        let (client, path) = (&self.client, &path);
        let results: Vec<Result<Answer, CallError>> = stream::iter(bodies)
            .map(move |body| async move {
                client
                    .call(Method::POST, path, &[], Some(&body), done_already)
                    .await
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for result in results {
            result?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Deletes
    // -----------------------------------------------------------------------------------------

    async fn delete(&self, kind: ResourceKind, id: &str) -> Result<(), Failure> {
        let Some(remote) = self.ids.remote_id(kind, id).await? else {
            return Ok(());
        };
        self.delete_remote(kind, &remote).await?;
        self.ids.forget(kind, vec![id.to_owned()]).await?;
        Ok(())
    }

    async fn delete_remote(&self, kind: ResourceKind, remote: &str) -> Result<(), Failure> {
        let path = match kind {
            ResourceKind::User => format!("/api/systemusers/{remote}"),
            ResourceKind::Group => format!("/api/v2/usergroups/{remote}"),
        };
        self.client
            .call(Method::DELETE, &path, &[], None, &[404])
            .await?;
        Ok(())
    }

    /// Applies the changes at `indexes` concurrently; the failures with their indexes.
    async fn apply_all(&self, changes: &[Change], indexes: &[usize]) -> Vec<(usize, Failure)> {
        let applied = &self.applied;
        let results: Vec<(usize, Result<(), Failure>)> = stream::iter(indexes.iter().copied())
            .filter(|&i| {
                let skip = match &changes[i] {
                    Change::Upsert {
                        kind, id, version, ..
                    } => applied.get(&(*kind, id.clone())) == Some(&(*version, true)),
                    Change::Members { id, version, .. } => applied
                        .get(&(ResourceKind::Group, id.clone()))
                        .is_some_and(|(v, _)| v == version),
                    Change::Delete { .. } => false,
                };
                std::future::ready(!skip)
            })
            .map(|i| async move { (i, self.apply_one(&changes[i]).await) })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results
            .into_iter()
            .filter_map(|(i, r)| r.err().map(|e| (i, e)))
            .collect()
    }

    fn remember(&mut self, change: &Change) {
        if self.applied.len() >= APPLIED_MAX {
            self.applied.clear();
        }
        match change {
            Change::Upsert {
                kind, id, version, ..
            } => {
                self.applied.insert((*kind, id.clone()), (*version, true));
            }
            Change::Members { id, version, .. } => {
                self.applied
                    .insert((ResourceKind::Group, id.clone()), (*version, false));
            }
            Change::Delete { kind, id } => {
                self.applied.remove(&(*kind, id.clone()));
            }
        }
    }
}

/// The id JumpCloud gave a created resource (`_id` in v1, `id` in v2).
fn remote_id(answer: &Answer, key: &str) -> Result<String, Failure> {
    answer
        .body
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::Unavailable(format!(
                "JumpCloud answered a create with no `{key}`: {}",
                answer.body
            ))
        })
}

fn missing_members(missing: &[String]) -> Result<(), Failure> {
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
    Err(Failure::Refused(format!(
        "{} member(s) are not in JumpCloud (their own changes are parked): {}{}; \
         the other members were sent",
        missing.len(),
        shown.join(", "),
        if missing.len() > shown.len() {
            ", …"
        } else {
            ""
        }
    )))
}

#[async_trait]
impl Projection for JumpCloudProjection {
    fn name(&self) -> &str {
        "jumpcloud"
    }

    async fn apply(&mut self, changes: &[Change], position: u64) -> Result<(), ProjectionError> {
        if changes.is_empty() && position == 0 {
            // A rebuild starts: send everything again.
            self.applied.clear();
        }
        let (users, groups): (Vec<usize>, Vec<usize>) =
            (0..changes.len()).partition(|&i| changes[i].kind() == ResourceKind::User);
        let mut failures = Vec::new();
        for phase in [users, groups] {
            let failed = self.apply_all(changes, &phase).await;
            let failed_at: HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();
            for &i in phase.iter().filter(|i| !failed_at.contains(i)) {
                self.remember(&changes[i]);
            }
            failures.extend(failed);
        }
        if let Some((_, Failure::Unavailable(reason))) = failures
            .iter()
            .find(|(_, f)| matches!(f, Failure::Unavailable(_)))
        {
            return Err(ProjectionError::Unavailable(reason.clone()));
        }
        match failures.into_iter().min_by_key(|(i, _)| *i) {
            Some((index, Failure::Refused(reason))) => {
                Err(ProjectionError::Rejected { index, reason })
            }
            Some((_, Failure::Unavailable(reason))) => Err(ProjectionError::Unavailable(reason)),
            None => Ok(()),
        }
    }

    fn member_deltas(&self) -> bool {
        true
    }

    async fn stored_position(&mut self) -> Result<Option<u64>, ProjectionError> {
        Ok(None)
    }

    /// Deletes from JumpCloud every group and user the id map names (what this projection made or
    /// adopted; nothing else in the organisation is touched). scimd then drops the map.
    async fn reset(&mut self) -> Result<(), ProjectionError> {
        self.applied.clear();
        let this = &*self;
        for kind in [ResourceKind::Group, ResourceKind::User] {
            let entries = this.ids.entries(kind).await?;
            let results: Vec<Result<(), Failure>> = stream::iter(entries)
                .map(move |(_, remote)| async move { this.delete_remote(kind, &remote).await })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for result in results {
                match result {
                    Ok(()) => {}
                    Err(Failure::Unavailable(reason)) => {
                        return Err(ProjectionError::Unavailable(reason));
                    }
                    Err(Failure::Refused(reason)) => {
                        return Err(ProjectionError::Unavailable(format!(
                            "emptying JumpCloud: {reason}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}
