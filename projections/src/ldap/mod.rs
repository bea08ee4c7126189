//! The `ldap` projection: Users and Groups as entries of an LDAPv3 directory (OpenLDAP in the
//! tests), laid out as the earlier server did so that readers of that tree keep working.
//!
//! # Layout
//! Under the base DN (`LDAP_BASENAME`): `ou=<USER_MODEL_NAME>` and `ou=<GROUP_MODEL_NAME>`
//! (`organizationalUnit`, created when missing), and in them one entry per resource named
//! `cn=<id>`. The DN never changes: a rename (`userName`, `displayName`) rewrites attributes only.
//!
//! `LDAP_LAYOUT=device` (the default, the earlier server's):
//! - Users: `objectClass: device, extensibleObject`; `uid` = `userName`; `displayName`; `email` =
//!   every `emails[].value`, the primary first; `sshPublicKey` = each `x509Certificates[].value`
//!   that decodes (base64) to an OpenSSH key line, and each voPerson `voPersonSshPublicKey`;
//!   `info` = the rest of the resource (all but `id`, `userName`, `displayName`) as JSON.
//! - Groups: `objectClass: device, extensibleObject`; `displayName`; `member` = the members' DNs;
//!   `info` = the rest (all but `id`, `displayName` and `members`) as JSON, so a member change
//!   stays one small `modify`.
//!
//! `LDAP_LAYOUT=inetorgperson` (for applications that query with ordinary filters such as
//! `(&(objectClass=inetOrgPerson)(uid=bjensen))`):
//! - Users: `objectClass: inetOrgPerson` (plus `ldapPublicKey` when there are SSH keys); `cn` =
//!   id, then `displayName`; `sn` = `name.familyName` (else `userName`, as `sn` is required);
//!   `givenName`; `displayName`; `mail` (primary first); `uid`; `employeeNumber` (enterprise
//!   extension); `title`; `sshPublicKey`. No JSON: attributes without a standard home are not
//!   kept.
//! - Groups: `objectClass: groupOfNames`; `cn` = id, then `displayName`; `member`. `groupOfNames`
//!   requires at least one `member`: an empty group holds the single value `""` (the empty DN,
//!   [`NO_MEMBER`]), which names no entry; it is removed when a real member arrives.
//!
//! # Changes
//! - Upserts `add` the entry, or when it exists `modify`-replace every attribute of the layout
//!   (removing those the document no longer has). Group upserts replace `member` whole.
//! - Membership deltas ([`Change::Members`]: this backend [takes them](Projection::member_deltas))
//!   are one `modify` of the group: `add`/`delete` of `member` values plus a replace of `info`
//!   (and `displayName` when it changed). It is sent with the Permissive Modify control
//!   (1.2.840.113556.1.4.1413, OpenLDAP and Active Directory), so adding a present member and
//!   deleting an absent one succeed; a server without it answers `attributeOrValueExists` /
//!   `noSuchAttribute`, and the values are then applied one by one, ignoring those answers.
//! - Deletes remove the entry (`noSuchObject`: already done) and the entry's DN from every group
//!   that lists it (a `(member=<dn>)` search under the Groups OU; index `member` for speed).
//! - Changes to different resources of a batch run concurrently on one connection.
//! - The runner keeps the checkpoint (`records_position` is false): every change is idempotent,
//!   so a redelivered batch does no harm.
//!
//! # Errors
//! - Connection refused, lost or timed out, `busy`, `unavailable`, `other`:
//!   [`ProjectionError::Unavailable`] (the runner reconnects and retries with backoff).
//! - A schema or naming violation (`objectClassViolation`, `invalidAttributeSyntax`,
//!   `undefinedAttributeType`, `constraintViolation`, `namingViolation`, …) or missing access
//!   rights: [`ProjectionError::Rejected`] naming the LDAP result code, its name and the server's
//!   message (the change is parked). So is a membership delta for a group entry that does not
//!   exist (its creation was itself parked).
//! - Refused credentials or a base DN that does not exist: [`ProjectionError::Config`].
//!
//! The bind password is never logged or shown (`Debug` of [`LdapSettings`] hides it).

mod layout;
pub mod source;

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};

pub use layout::{Layout, NO_MEMBER};

use crate::{Change, Member, Projection, ProjectionError, ResourceKind, by_resource};

/// How long to wait for the connection and the bind.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one LDAP operation may take before it counts as unavailable.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Resources of a batch applied at once (LDAP multiplexes operations on one connection).
const CONCURRENCY: usize = 16;
/// The Permissive Modify control: add-present and delete-absent values succeed.
const PERMISSIVE_MODIFY: &str = "1.2.840.113556.1.4.1413";

/// Where and how to connect, and the layout to write.
#[derive(Clone)]
pub struct LdapSettings {
    /// `ldap://host[:port]` or `ldaps://host[:port]` (`LDAP_HOSTNAME`; a bare host means `ldap://`).
    pub url: String,
    /// The base DN (`LDAP_BASENAME`).
    pub base: String,
    /// The DN to bind as (`LDAP_USERNAME`).
    pub bind_dn: String,
    /// The bind password (`LDAP_PASSWORD`); empty: an anonymous bind.
    pub password: String,
    /// Whether to upgrade an `ldap://` connection with StartTLS (`LDAP_STARTTLS`).
    pub starttls: bool,
    /// The entry layout (`LDAP_LAYOUT`).
    pub layout: Layout,
    /// The OU of Users (`USER_MODEL_NAME`).
    pub users_ou: String,
    /// The OU of Groups (`GROUP_MODEL_NAME`).
    pub groups_ou: String,
}

impl fmt::Debug for LdapSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapSettings")
            .field("url", &self.url)
            .field("base", &self.base)
            .field("bind_dn", &self.bind_dn)
            .field("password", &"<hidden>")
            .field("starttls", &self.starttls)
            .field("layout", &self.layout)
            .field("users_ou", &self.users_ou)
            .field("groups_ou", &self.groups_ou)
            .finish()
    }
}

impl LdapSettings {
    /// `LDAP_HOSTNAME` as a URL: `ldap://` and `ldaps://` URLs as they are, a bare `host[:port]`
    /// as `ldap://host[:port]`.
    ///
    /// # Errors
    /// [`ProjectionError::Config`] for an empty value or another scheme.
    pub fn url_of(hostname: &str) -> Result<String, ProjectionError> {
        let hostname = hostname.trim();
        if hostname.is_empty() {
            return Err(ProjectionError::Config("LDAP_HOSTNAME is empty".into()));
        }
        match hostname.split_once("://") {
            None => Ok(format!("ldap://{hostname}")),
            Some((scheme, _))
                if ["ldap", "ldaps"].contains(&scheme.to_ascii_lowercase().as_str()) =>
            {
                Ok(hostname.to_owned())
            }
            Some((scheme, _)) => Err(ProjectionError::Config(format!(
                "LDAP_HOSTNAME: scheme {scheme:?} is not ldap:// or ldaps://"
            ))),
        }
    }

    /// The DN of the entry of resource `id` of `kind`.
    pub fn dn(&self, kind: ResourceKind, id: &str) -> String {
        format!("cn={},{}", ldap3::dn_escape(id), self.ou(kind))
    }

    /// The DN of the OU of `kind`.
    pub fn ou(&self, kind: ResourceKind) -> String {
        let name = match kind {
            ResourceKind::User => &self.users_ou,
            ResourceKind::Group => &self.groups_ou,
        };
        format!("ou={},{}", ldap3::dn_escape(name.as_str()), self.base)
    }
}

/// A projection into an LDAP directory. See the [module documentation](self).
#[derive(Debug)]
pub struct LdapProjection {
    settings: LdapSettings,
    ldap: Ldap,
}

impl LdapProjection {
    /// Connects, binds and creates the two OUs when missing.
    ///
    /// # Errors
    /// [`ProjectionError::Unavailable`] while the server cannot be reached;
    /// [`ProjectionError::Config`] for a bad URL, refused credentials or a missing base DN.
    pub async fn connect(settings: LdapSettings) -> Result<Self, ProjectionError> {
        let ldap = bind(&settings).await?;
        let mut projection = LdapProjection { settings, ldap };
        projection.create_ous().await?;
        tracing::info!(
            url = projection.settings.url,
            base = projection.settings.base,
            layout = ?projection.settings.layout,
            "ldap projection connected"
        );
        Ok(projection)
    }

    /// The settings this projection was connected with.
    pub fn settings(&self) -> &LdapSettings {
        &self.settings
    }

    /// Adds `ou=Users` and `ou=Groups` under the base unless they exist.
    async fn create_ous(&mut self) -> Result<(), ProjectionError> {
        for (kind, name) in [
            (ResourceKind::User, self.settings.users_ou.clone()),
            (ResourceKind::Group, self.settings.groups_ou.clone()),
        ] {
            let dn = self.settings.ou(kind);
            let attrs = vec![
                (
                    b"objectClass".to_vec(),
                    set([b"organizationalUnit".to_vec()]),
                ),
                (b"ou".to_vec(), set([name.into_bytes()])),
            ];
            match self
                .ldap
                .clone()
                .with_timeout(OPERATION_TIMEOUT)
                .add(&dn, attrs)
                .await
            {
                Ok(r) if r.rc == 0 || r.rc == 68 => {}
                Ok(r) if r.rc == 32 => {
                    return Err(ProjectionError::Config(format!(
                        "ldap projection: the base DN {:?} does not exist: {}",
                        self.settings.base,
                        describe(r.rc, &r.text)
                    )));
                }
                Ok(r) => {
                    return Err(ProjectionError::Config(format!(
                        "ldap projection: cannot create {dn}: {}",
                        describe(r.rc, &r.text)
                    )));
                }
                Err(e) => return Err(unavailable(&e)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Projection for LdapProjection {
    fn name(&self) -> &str {
        "ldap"
    }

    fn member_deltas(&self) -> bool {
        true
    }

    async fn apply(&mut self, changes: &[Change], _position: u64) -> Result<(), ProjectionError> {
        let resources = by_resource(changes);
        let settings = &self.settings;
        let ldap = &self.ldap;
        let results: Vec<Result<(), ProjectionError>> = futures::stream::iter(resources)
            .map(|indexes| async move {
                let mut writer = Writer {
                    settings,
                    ldap: ldap.clone(),
                };
                for index in indexes {
                    writer.apply(index, &changes[index]).await?;
                }
                Ok(())
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        first_error(results)
    }

    async fn stored_position(&mut self) -> Result<Option<u64>, ProjectionError> {
        Ok(None)
    }

    async fn reset(&mut self) -> Result<(), ProjectionError> {
        self.create_ous().await?;
        for kind in [ResourceKind::User, ResourceKind::Group] {
            let ou = self.settings.ou(kind);
            let dns = search_dns(&mut self.ldap, &ou, "(objectClass=*)")
                .await
                .map_err(|e| unavailable(&e))?;
            let ldap = &self.ldap;
            let results: Vec<Result<(), ProjectionError>> = futures::stream::iter(dns)
                .map(|dn| async move {
                    match ldap
                        .clone()
                        .with_timeout(OPERATION_TIMEOUT)
                        .delete(&dn)
                        .await
                    {
                        Ok(r) if r.rc == 0 || r.rc == 32 => Ok(()),
                        Ok(r) => Err(ProjectionError::Unavailable(format!(
                            "ldap projection: deleting {dn}: {}",
                            describe(r.rc, &r.text)
                        ))),
                        Err(e) => Err(unavailable(&e)),
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            first_error(results)?;
        }
        Ok(())
    }
}

/// Connects to `settings.url` and binds.
///
/// # Errors
/// [`ProjectionError::Unavailable`] while the server cannot be reached; [`ProjectionError::Config`]
/// for a bad URL or refused credentials.
async fn bind(settings: &LdapSettings) -> Result<Ldap, ProjectionError> {
    let conn_settings = LdapConnSettings::new()
        .set_conn_timeout(CONNECT_TIMEOUT)
        .set_starttls(settings.starttls);
    let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &settings.url)
        .await
        .map_err(|e| match e {
            LdapError::UrlParsing { .. } | LdapError::UnknownScheme(_) => {
                ProjectionError::Config(format!("ldap projection: LDAP_HOSTNAME: {e}"))
            }
            e => ProjectionError::Unavailable(format!("ldap projection: {}: {e}", settings.url)),
        })?;
    ldap3::drive!(conn);
    let bound = ldap
        .with_timeout(CONNECT_TIMEOUT)
        .simple_bind(&settings.bind_dn, &settings.password)
        .await
        .and_then(|r| r.success());
    match bound {
        Ok(_) => {}
        Err(LdapError::LdapResult { result }) if result.rc == 49 || result.rc == 34 => {
            return Err(ProjectionError::Config(format!(
                "ldap projection: bind as {:?} refused: {}",
                settings.bind_dn,
                describe(result.rc, &result.text)
            )));
        }
        Err(e) => return Err(unavailable(&e)),
    }
    Ok(ldap)
}

/// The error to report for a batch: any that is not a rejection first (the batch is retried
/// whole), else the rejection of the earliest change.
fn first_error(results: Vec<Result<(), ProjectionError>>) -> Result<(), ProjectionError> {
    let mut rejected: Option<ProjectionError> = None;
    for result in results {
        match result {
            Ok(()) => {}
            Err(ProjectionError::Rejected { index, reason }) => {
                let earlier = match &rejected {
                    Some(ProjectionError::Rejected { index: other, .. }) => index < *other,
                    _ => true,
                };
                if earlier {
                    rejected = Some(ProjectionError::Rejected { index, reason });
                }
            }
            Err(e) => return Err(e),
        }
    }
    rejected.map_or(Ok(()), Err)
}

/// Applies the changes of one resource.
struct Writer<'a> {
    settings: &'a LdapSettings,
    ldap: Ldap,
}

impl Writer<'_> {
    async fn apply(&mut self, index: usize, change: &Change) -> Result<(), ProjectionError> {
        match change {
            Change::Upsert {
                kind, id, document, ..
            } => self.upsert(index, *kind, id, document).await,
            Change::Delete { kind, id } => self.delete(index, *kind, id).await,
            Change::Members {
                id,
                document,
                attributes_changed,
                added,
                removed,
                ..
            } => {
                self.members(index, id, document, *attributes_changed, added, removed)
                    .await
            }
        }
    }

    fn member_dns(&self, members: &[Member]) -> Vec<String> {
        members
            .iter()
            .map(|m| self.settings.dn(m.kind, &m.value))
            .collect()
    }

    async fn upsert(
        &mut self,
        index: usize,
        kind: ResourceKind,
        id: &str,
        document: &serde_json::Value,
    ) -> Result<(), ProjectionError> {
        let dn = self.settings.dn(kind, id);
        let layout = self.settings.layout;
        let members = (kind == ResourceKind::Group).then(|| {
            let list: Vec<Member> = document
                .get("members")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    let value = m.get("value")?.as_str()?.to_owned();
                    let kind = match m.get("type").and_then(serde_json::Value::as_str) {
                        Some("Group") => ResourceKind::Group,
                        _ => ResourceKind::User,
                    };
                    Some(Member { value, kind })
                })
                .collect();
            self.member_dns(&list)
        });
        // `email`/`mail` keep their order only when added one request after the other: the
        // primary goes with the entry, the rest in a second step.
        let mut attrs = layout::attributes(layout, kind, id, document, members.clone());
        let rest = split_secondary_mail(&mut attrs);
        let add: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = attrs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.as_bytes().to_vec(), v.iter().cloned().collect()))
            .collect();
        let mut retried = false;
        loop {
            let result = self
                .ldap
                .with_timeout(OPERATION_TIMEOUT)
                .add(&dn, add.clone())
                .await;
            let result = result.map_err(|e| unavailable(&e))?;
            match result.rc {
                0 => {
                    if let Some((name, values)) = rest {
                        let mods = vec![Mod::Add(
                            name.as_bytes().to_vec(),
                            values.into_iter().collect(),
                        )];
                        self.modify(index, &dn, mods).await?;
                    }
                    return Ok(());
                }
                68 => break,
                32 if !retried => {
                    // The OU went away (removed by hand): create it and try once more.
                    retried = true;
                    let mut again = LdapProjection {
                        settings: self.settings.clone(),
                        ldap: self.ldap.clone(),
                    };
                    again.create_ous().await?;
                }
                rc => return Err(refusal(index, &dn, rc, &result.text)),
            }
        }
        // The entry exists: replace every attribute of the layout.
        let mut attrs = layout::rewrite(layout, kind, id, document, members);
        let rest = split_secondary_mail(&mut attrs);
        let mut mods: Vec<Mod<Vec<u8>>> = attrs
            .into_iter()
            .map(|(n, v)| Mod::Replace(n.as_bytes().to_vec(), v.into_iter().collect()))
            .collect();
        if let Some((name, values)) = rest {
            mods.push(Mod::Add(
                name.as_bytes().to_vec(),
                values.into_iter().collect(),
            ));
        }
        self.modify(index, &dn, mods).await
    }

    async fn delete(
        &mut self,
        index: usize,
        kind: ResourceKind,
        id: &str,
    ) -> Result<(), ProjectionError> {
        let dn = self.settings.dn(kind, id);
        let result = self
            .ldap
            .with_timeout(OPERATION_TIMEOUT)
            .delete(&dn)
            .await
            .map_err(|e| unavailable(&e))?;
        if result.rc != 0 && result.rc != 32 {
            return Err(refusal(index, &dn, result.rc, &result.text));
        }
        // Referential integrity: no group keeps listing the deleted entry.
        let filter = format!("(member={})", ldap3::ldap_escape(dn.as_str()));
        let groups = search_dns(
            &mut self.ldap,
            &self.settings.ou(ResourceKind::Group),
            &filter,
        )
        .await
        .map_err(|e| unavailable(&e))?;
        for group in groups {
            let mods = vec![Mod::Delete(
                b"member".to_vec(),
                set([dn.clone().into_bytes()]),
            )];
            self.modify_members(index, &group, Vec::new(), mods, true)
                .await?;
        }
        Ok(())
    }

    async fn members(
        &mut self,
        index: usize,
        id: &str,
        document: &serde_json::Value,
        attributes_changed: bool,
        added: &[Member],
        removed: &[Member],
    ) -> Result<(), ProjectionError> {
        let dn = self.settings.dn(ResourceKind::Group, id);
        let layout = self.settings.layout;
        let mut attribute_mods: Vec<Mod<Vec<u8>>> = Vec::new();
        if layout == Layout::Device || attributes_changed {
            for (name, values) in layout::rewrite(layout, ResourceKind::Group, id, document, None) {
                if name == "objectClass" || (name == "cn" && layout == Layout::Device) {
                    continue;
                }
                attribute_mods.push(Mod::Replace(
                    name.as_bytes().to_vec(),
                    values.into_iter().collect(),
                ));
            }
        }
        let mut member_mods: Vec<Mod<Vec<u8>>> = Vec::new();
        let added = self.member_dns(added);
        let removed = self.member_dns(removed);
        if !added.is_empty() {
            member_mods.push(Mod::Add(
                b"member".to_vec(),
                added.into_iter().map(String::into_bytes).collect(),
            ));
            if layout == Layout::InetOrgPerson {
                member_mods.push(Mod::Delete(
                    b"member".to_vec(),
                    set([NO_MEMBER.as_bytes().to_vec()]),
                ));
            }
        }
        if !removed.is_empty() {
            member_mods.push(Mod::Delete(
                b"member".to_vec(),
                removed.into_iter().map(String::into_bytes).collect(),
            ));
        }
        if attribute_mods.is_empty() && member_mods.is_empty() {
            return Ok(());
        }
        match self
            .modify_members(index, &dn, attribute_mods, member_mods, false)
            .await
        {
            Err(ProjectionError::Rejected { reason, .. })
                if reason.starts_with("LDAP result 32 ") =>
            {
                Err(ProjectionError::Rejected {
                    index,
                    reason: format!(
                        "the group entry {dn} does not exist, so its membership change cannot be \
                         applied (was its creation parked?): {reason}"
                    ),
                })
            }
            other => other,
        }
    }

    /// One `modify` of a group: attribute replaces, then member adds/deletes, with the Permissive
    /// Modify control. Without that control's effect the member values are applied one by one;
    /// a `groupOfNames` left without members gets the placeholder. `missing_ok`: a group entry
    /// that is gone is fine (deletes).
    async fn modify_members(
        &mut self,
        index: usize,
        dn: &str,
        attribute_mods: Vec<Mod<Vec<u8>>>,
        member_mods: Vec<Mod<Vec<u8>>>,
        missing_ok: bool,
    ) -> Result<(), ProjectionError> {
        let mods: Vec<Mod<Vec<u8>>> = attribute_mods.iter().chain(&member_mods).cloned().collect();
        let rc = self.modify_rc(dn, mods.clone()).await?;
        match rc {
            (0, _) => Ok(()),
            (32, _) if missing_ok => Ok(()),
            (16 | 20, _) => {
                // No permissive modify: apply each value on its own, skipping those in place.
                if !attribute_mods.is_empty() {
                    self.modify(index, dn, attribute_mods).await?;
                }
                for m in member_mods {
                    for single in singles(m) {
                        match self.modify_rc(dn, vec![single.clone()]).await? {
                            (0 | 16 | 20, _) => {}
                            (65, _) if self.settings.layout == Layout::InetOrgPerson => {
                                self.with_placeholder(index, dn, vec![single]).await?;
                            }
                            (rc, text) => return Err(refusal(index, dn, rc, &text)),
                        }
                    }
                }
                Ok(())
            }
            (65, _) if self.settings.layout == Layout::InetOrgPerson => {
                // The group would be left without members.
                self.with_placeholder(index, dn, mods).await
            }
            (rc, text) => Err(refusal(index, dn, rc, &text)),
        }
    }

    /// `mods` with the placeholder member added first.
    async fn with_placeholder(
        &mut self,
        index: usize,
        dn: &str,
        mods: Vec<Mod<Vec<u8>>>,
    ) -> Result<(), ProjectionError> {
        let mut with = vec![Mod::Add(
            b"member".to_vec(),
            set([NO_MEMBER.as_bytes().to_vec()]),
        )];
        with.extend(mods);
        match self.modify_rc(dn, with).await? {
            (0 | 20, _) => Ok(()),
            (rc, text) => Err(refusal(index, dn, rc, &text)),
        }
    }

    /// A `modify` that must succeed.
    async fn modify(
        &mut self,
        index: usize,
        dn: &str,
        mods: Vec<Mod<Vec<u8>>>,
    ) -> Result<(), ProjectionError> {
        match self.modify_rc(dn, mods).await? {
            (0, _) => Ok(()),
            (rc, text) => Err(refusal(index, dn, rc, &text)),
        }
    }

    /// A `modify` with the Permissive Modify control; the result code and text, or Unavailable.
    async fn modify_rc(
        &mut self,
        dn: &str,
        mods: Vec<Mod<Vec<u8>>>,
    ) -> Result<(u32, String), ProjectionError> {
        let permissive = RawControl {
            ctype: PERMISSIVE_MODIFY.into(),
            crit: false,
            val: None,
        };
        let result = self
            .ldap
            .with_controls(vec![permissive])
            .with_timeout(OPERATION_TIMEOUT)
            .modify(dn, mods)
            .await
            .map_err(|e| unavailable(&e))?;
        if matches!(result.rc, 51 | 52 | 80 | 3) {
            return Err(ProjectionError::Unavailable(format!(
                "ldap projection: {dn}: {}",
                describe(result.rc, &result.text)
            )));
        }
        Ok((result.rc, result.text))
    }
}

/// One `Mod` per value of a member add or delete.
fn singles(m: Mod<Vec<u8>>) -> Vec<Mod<Vec<u8>>> {
    match m {
        Mod::Add(name, values) => values
            .into_iter()
            .map(|v| Mod::Add(name.clone(), set([v])))
            .collect(),
        Mod::Delete(name, values) => values
            .into_iter()
            .map(|v| Mod::Delete(name.clone(), set([v])))
            .collect(),
        other => vec![other],
    }
}

/// Moves every `email`/`mail` value but the first out of `attrs`: sets have no order, so the
/// primary address is written before the others.
fn split_secondary_mail(attrs: &mut [layout::Attribute]) -> Option<(&'static str, Vec<Vec<u8>>)> {
    let (name, values) = attrs
        .iter_mut()
        .find(|(n, v)| (*n == "email" || *n == "mail") && v.len() > 1)?;
    Some((*name, values.split_off(1)))
}

fn set<const N: usize>(values: [Vec<u8>; N]) -> HashSet<Vec<u8>> {
    values.into_iter().collect()
}

/// The DNs of the entries below `base` (one level) matching `filter`, in pages of 500.
async fn search_dns(ldap: &mut Ldap, base: &str, filter: &str) -> Result<Vec<String>, LdapError> {
    let adapters: Vec<Box<dyn Adapter<'_, &str, Vec<&str>>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(500)),
    ];
    let mut stream = ldap
        .with_timeout(OPERATION_TIMEOUT)
        .streaming_search_with(adapters, base, Scope::OneLevel, filter, vec!["1.1"])
        .await?;
    let mut dns = Vec::new();
    while let Some(entry) = stream.next().await? {
        dns.push(SearchEntry::construct(entry).dn);
    }
    let result = stream.finish().await;
    match result.rc {
        0 | 32 => Ok(dns),
        _ => Err(LdapError::LdapResult { result }),
    }
}

/// Result codes that mean the change itself is refused for good.
fn permanent(rc: u32) -> bool {
    matches!(rc, 16..=21 | 32 | 34 | 50 | 53 | 64..=69)
}

/// A result code that is not success, for the change at `index` on `dn`.
fn refusal(index: usize, dn: &str, rc: u32, text: &str) -> ProjectionError {
    if permanent(rc) {
        ProjectionError::Rejected {
            index,
            reason: format!("{} (on {dn})", describe(rc, text)),
        }
    } else {
        ProjectionError::Unavailable(format!("ldap projection: {dn}: {}", describe(rc, text)))
    }
}

/// A client-side failure: the connection, a time-out, the protocol.
fn unavailable(error: &LdapError) -> ProjectionError {
    ProjectionError::Unavailable(format!("ldap projection: {error}"))
}

/// `LDAP result 21 (invalidAttributeSyntax): <server text>`.
fn describe(rc: u32, text: &str) -> String {
    let name = match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        80 => "other",
        _ => "result",
    };
    let text = text.trim();
    if text.is_empty() {
        format!("LDAP result {rc} ({name})")
    } else {
        format!("LDAP result {rc} ({name}): {text}")
    }
}
