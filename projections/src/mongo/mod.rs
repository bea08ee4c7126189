//! The `mongo` projection: Users and Groups as documents of two MongoDB collections (in the tests:
//! nx-27017, a server speaking MongoDB's wire protocol).
//!
//! # Layout
//! Database `MONGO_DATABASE` (default `scim`), collections `USER_MODEL_NAME` / `GROUP_MODEL_NAME`
//! (default `Users` / `Groups`). Each document is the resource as `GET` returns it (without
//! `password` and `User.groups`), with
//! - `_id` = the resource id;
//! - `_version` = the resource version as a number (`meta.version` is an ETag string, which does
//!   not compare), the guard of every write;
//! - group `members` stored as `{value, type}` only (`display` and `$ref` are derivable), so a
//!   100,000-member group is about 6 MB. MongoDB caps a document at 16 MiB: a group reaches it at
//!   roughly 200,000 members (with UUID ids); a change that would exceed it is parked with an
//!   error that says so.
//!
//! # Writes
//! - An upsert replaces the whole document (removed attributes disappear), only where the stored
//!   `_version` is not newer: `replaceOne({_id, _version: {$lte: v}}, doc, upsert)`. Where a newer
//!   version is stored the upsert's insert fails on the `_id` (duplicate key), which means "already
//!   newer" and is success. A redelivered or older change therefore never overwrites a newer one.
//!   A document without `_version` (an earlier server's, with the same `_id`) is adopted: when
//!   the guarded upsert meets it (duplicate key), it is replaced where `_version` does not exist
//!   (a second, rare step: one `$or` filter would do, but nx-27017 evaluates `$or` with `$exists`
//!   wrongly on some documents). A membership delta for such a document is parked (retry writes
//!   the group whole).
//! - A membership delta ([`Change::Members`]) is `$pull` of the removed members' values, then one
//!   update with `$addToSet` (`$each`) of the added `{value, type}` and `$set` of `meta` and
//!   `_version` (and, when other attributes changed, `$set` of each of them and `$unset` of those
//!   gone): never a rewrite of the member list. Both carry the same version guard. A delta for a
//!   group that has no document is parked (its creation was itself parked).
//! - A delete is `deleteOne({_id})`.
//! - Changes to different resources of a batch run concurrently.
//!
//! # Checkpoint
//! Collection `scimd_checkpoint`, document `_id: "mongo:<users>,<groups>"`, field `position`,
//! written **after** each batch (not in a transaction: the servers this is tested against have no
//! multi-document transactions, and the version guard makes redoing a batch harmless). A new
//! database or new collection names start from position 0.
//!
//! # Errors
//! Network errors, server selection time-outs and retryable server errors are
//! [`ProjectionError::Unavailable`]; a document the server or the BSON encoder refuses (too
//! large, invalid field names) is [`ProjectionError::Rejected`]; a connection string that does not
//! parse or refused credentials are [`ProjectionError::Config`].

pub mod source;

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};
use serde_json::Value;

use crate::{Change, Member, Projection, ProjectionError, ResourceKind, by_resource};

/// How long to wait for a server, at connection and on each operation.
const SERVER_TIMEOUT: Duration = Duration::from_secs(5);
/// Resources of a batch applied at once.
const CONCURRENCY: usize = 16;
/// MongoDB's largest document (BSON bytes).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// The collection of checkpoints.
const CHECKPOINTS: &str = "scimd_checkpoint";

/// Where to write.
#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// The database (`MONGO_DATABASE`).
    pub database: String,
    /// The Users collection (`USER_MODEL_NAME`).
    pub users: String,
    /// The Groups collection (`GROUP_MODEL_NAME`).
    pub groups: String,
}

/// A projection into MongoDB. See the [module documentation](self).
#[derive(Debug)]
pub struct MongoProjection {
    settings: MongoSettings,
    db: Database,
}

impl MongoProjection {
    /// Connects with the connection string `uri` (`MONGO_DB`) and checks that the server answers.
    ///
    /// # Errors
    /// [`ProjectionError::Config`] for a connection string that does not parse, invalid names or
    /// refused credentials; [`ProjectionError::Unavailable`] while no server answers.
    pub async fn connect(uri: &str, settings: MongoSettings) -> Result<Self, ProjectionError> {
        for (what, name) in [
            ("MONGO_DATABASE", &settings.database),
            ("USER_MODEL_NAME", &settings.users),
            ("GROUP_MODEL_NAME", &settings.groups),
        ] {
            if name.is_empty() || name.contains(['$', '\0', '/', ' ', '.']) {
                return Err(ProjectionError::Config(format!(
                    "mongo projection: {what} {name:?} is not a usable name"
                )));
            }
        }
        if settings.users == settings.groups {
            return Err(ProjectionError::Config(format!(
                "mongo projection: Users and Groups need two collections, both are named {:?}",
                settings.users
            )));
        }
        // Never echo the URI: it may hold a password.
        let mut options = ClientOptions::parse(uri).await.map_err(|e| match *e.kind {
            ErrorKind::InvalidArgument { .. } => ProjectionError::Config(format!(
                "mongo projection: MONGO_DB is not a usable connection string: {}",
                redact(&e.to_string(), uri)
            )),
            _ => unavailable(&e, uri),
        })?;
        options.server_selection_timeout = Some(SERVER_TIMEOUT);
        options.connect_timeout = Some(SERVER_TIMEOUT);
        options.app_name = Some("scimd".into());
        let client = Client::with_options(options).map_err(|e| {
            ProjectionError::Config(format!("mongo projection: {}", redact(&e.to_string(), uri)))
        })?;
        let db = client.database(&settings.database);
        db.run_command(doc! {"ping": 1})
            .await
            .map_err(|e| match *e.kind {
                ErrorKind::Authentication { .. } => ProjectionError::Config(format!(
                    "mongo projection: credentials refused: {}",
                    redact(&e.to_string(), uri)
                )),
                _ => unavailable(&e, uri),
            })?;
        tracing::info!(
            database = settings.database,
            users = settings.users,
            groups = settings.groups,
            "mongo projection connected"
        );
        Ok(MongoProjection { settings, db })
    }

    /// The `_id` of this projection's document in `scimd_checkpoint`.
    pub fn checkpoint_id(&self) -> String {
        format!("mongo:{},{}", self.settings.users, self.settings.groups)
    }

    fn collection(&self, kind: ResourceKind) -> Collection<Document> {
        self.db.collection(match kind {
            ResourceKind::User => &self.settings.users,
            ResourceKind::Group => &self.settings.groups,
        })
    }

    async fn apply_one(&self, index: usize, change: &Change) -> Result<(), ProjectionError> {
        let fail = |e: MongoError| classify(index, &e);
        let coll = self.collection(change.kind());
        match change {
            Change::Upsert {
                id,
                version,
                document,
                ..
            } => {
                let version = version_of(*version)?;
                let doc = stored_document(index, id, version, document)?;
                match coll.replace_one(guard(id, version), doc).upsert(true).await {
                    Ok(_) => Ok(()),
                    // A newer version is stored, or a document scimd did not write.
                    Err(e) if duplicate_key(&e) => {
                        let doc = stored_document(index, id, version, document)?;
                        coll.replace_one(doc! {"_id": id, "_version": {"$exists": false}}, doc)
                            .await
                            .map(drop)
                            .map_err(fail)
                    }
                    Err(e) => Err(fail(e)),
                }
            }
            Change::Delete { id, .. } => coll
                .delete_one(doc! {"_id": id})
                .await
                .map(drop)
                .map_err(fail),
            Change::Members {
                id,
                version,
                document,
                attributes_changed,
                added,
                removed,
            } => {
                let version = version_of(*version)?;
                let guard = guard(id, version);
                if !removed.is_empty() {
                    let values: Vec<&str> = removed.iter().map(|m| m.value.as_str()).collect();
                    coll.update_one(
                        guard.clone(),
                        doc! {"$pull": {"members": {"value": {"$in": values}}}},
                    )
                    .await
                    .map_err(fail)?;
                }
                let new = to_document(index, document)?;
                let mut set = Document::new();
                let mut unset = Document::new();
                if *attributes_changed {
                    let old = coll
                        .find_one(doc! {"_id": id})
                        .projection(doc! {"members": 0})
                        .await
                        .map_err(fail)?;
                    let mut keys = new.keys().chain(old.iter().flat_map(|d| d.keys()));
                    if keys.any(|k| !is_plain_field(k)) {
                        return replace_group(&coll, index, id, version, new, added).await;
                    }
                    for key in old.iter().flat_map(|d| d.keys()) {
                        let ours = ["_id", "_version", "members"].contains(&key.as_str());
                        if !ours && !new.contains_key(key) {
                            unset.insert(key.clone(), "");
                        }
                    }
                    for (key, value) in &new {
                        if key != "members" {
                            set.insert(key.clone(), value.clone());
                        }
                    }
                } else if let Some(meta) = new.get("meta") {
                    set.insert("meta", meta.clone());
                }
                set.insert("_version", version);
                let mut update = doc! {"$set": set};
                if !unset.is_empty() {
                    update.insert("$unset", unset);
                }
                if !added.is_empty() {
                    let each: Vec<Bson> = added.iter().map(member).collect();
                    update.insert("$addToSet", doc! {"members": {"$each": each}});
                }
                let result = coll.update_one(guard, update).await.map_err(fail)?;
                if result.matched_count == 0 {
                    let stored = coll
                        .find_one(doc! {"_id": id})
                        .projection(doc! {"_version": 1})
                        .await
                        .map_err(fail)?;
                    match stored {
                        None => {
                            return Err(ProjectionError::Rejected {
                                index,
                                reason: format!(
                                    "group {id} has no document, so its membership change cannot \
                                     be applied (was its creation parked?)"
                                ),
                            });
                        }
                        Some(stored) if !stored.contains_key("_version") => {
                            return Err(ProjectionError::Rejected {
                                index,
                                reason: format!(
                                    "group {id}'s document was not written by scimd (it has no \
                                     _version), so a membership change cannot be applied to it; \
                                     `scimd projection retry mongo` writes the group whole"
                                ),
                            });
                        }
                        Some(_) => {}
                    }
                }
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Projection for MongoProjection {
    fn name(&self) -> &str {
        "mongo"
    }

    fn member_deltas(&self) -> bool {
        true
    }

    fn records_position(&self) -> bool {
        true
    }

    async fn apply(&mut self, changes: &[Change], position: u64) -> Result<(), ProjectionError> {
        let this = &*self;
        let results: Vec<Result<(), ProjectionError>> = futures::stream::iter(by_resource(changes))
            .map(|indexes| async move {
                for index in indexes {
                    this.apply_one(index, &changes[index]).await?;
                }
                Ok(())
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        first_error(results)?;
        let position = i64::try_from(position).map_err(|_| {
            ProjectionError::Config(format!(
                "mongo projection: position {position} is too large"
            ))
        })?;
        self.db
            .collection::<Document>(CHECKPOINTS)
            .update_one(
                doc! {"_id": self.checkpoint_id()},
                doc! {"$set": {"position": position}},
            )
            .upsert(true)
            .await
            .map(drop)
            .map_err(|e| unavailable(&e, ""))
    }

    async fn stored_position(&mut self) -> Result<Option<u64>, ProjectionError> {
        let stored = self
            .db
            .collection::<Document>(CHECKPOINTS)
            .find_one(doc! {"_id": self.checkpoint_id()})
            .await
            .map_err(|e| unavailable(&e, ""))?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let position = match stored.get("position") {
            Some(Bson::Int64(p)) => u64::try_from(*p).ok(),
            Some(Bson::Int32(p)) => u64::try_from(*p).ok(),
            _ => None,
        };
        position.map(Some).ok_or_else(|| {
            ProjectionError::Config(format!(
                "mongo projection: the checkpoint document {} holds no position",
                self.checkpoint_id()
            ))
        })
    }

    async fn reset(&mut self) -> Result<(), ProjectionError> {
        for kind in [ResourceKind::User, ResourceKind::Group] {
            self.collection(kind)
                .delete_many(doc! {})
                .await
                .map_err(|e| unavailable(&e, ""))?;
        }
        self.db
            .collection::<Document>(CHECKPOINTS)
            .delete_one(doc! {"_id": self.checkpoint_id()})
            .await
            .map(drop)
            .map_err(|e| unavailable(&e, ""))
    }
}

/// A member as stored: `{value, type}`.
/// Whether `key` can name a top-level field in `$set`/`$unset`: MongoDB reads a `.` as a path into
/// a sub-document and a leading `$` as an operator, so such a key (a versioned extension URN like
/// `urn:…:2.0:Group`, a lenient attribute) must be written by replacing the whole document.
fn is_plain_field(key: &str) -> bool {
    !key.contains('.') && !key.starts_with('$')
}

/// A membership change that also changes attributes whose names `$set` cannot address: the group's
/// document is replaced whole (guarded by `_version` like every write), its members being the
/// stored ones (the removed ones already pulled) plus `added`. Rare, and it costs a rewrite.
async fn replace_group(
    coll: &Collection<Document>,
    index: usize,
    id: &str,
    version: i64,
    mut new: Document,
    added: &[Member],
) -> Result<(), ProjectionError> {
    let old = coll
        .find_one(doc! {"_id": id})
        .projection(doc! {"members": 1})
        .await
        .map_err(|e| classify(index, &e))?;
    let Some(old) = old else {
        return Err(ProjectionError::Rejected {
            index,
            reason: format!(
                "group {id} has no document, so its membership change cannot be applied (was its \
                 creation parked?)"
            ),
        });
    };
    let mut members: Vec<Bson> = match old.get("members") {
        Some(Bson::Array(list)) => list.clone(),
        _ => Vec::new(),
    };
    for m in added {
        let present = members.iter().any(|b| {
            b.as_document()
                .and_then(|d| d.get_str("value").ok())
                .is_some_and(|v| v == m.value)
        });
        if !present {
            members.push(member(m));
        }
    }
    new.insert("_id", id);
    new.insert("_version", version);
    new.insert("members", members);
    match coll.replace_one(guard(id, version), new).await {
        Ok(_) => Ok(()),
        Err(e) if duplicate_key(&e) => Ok(()),
        Err(e) => Err(classify(index, &e)),
    }
}

/// The filter of a write of `version` to document `id`: the stored version is not newer.
fn guard(id: &str, version: i64) -> Document {
    doc! {"_id": id, "_version": {"$lte": version}}
}

fn member(m: &Member) -> Bson {
    let kind = match m.kind {
        ResourceKind::User => "User",
        ResourceKind::Group => "Group",
    };
    Bson::Document(doc! {"value": &m.value, "type": kind})
}

fn version_of(version: u64) -> Result<i64, ProjectionError> {
    i64::try_from(version).map_err(|_| {
        ProjectionError::Config(format!("mongo projection: version {version} is too large"))
    })
}

/// `document` as BSON.
fn to_document(index: usize, document: &Value) -> Result<Document, ProjectionError> {
    bson::to_document(document).map_err(|e| ProjectionError::Rejected {
        index,
        reason: format!("the document cannot be stored as BSON: {e}"),
    })
}

/// The stored form of an upsert: the document with `_id`, `_version` and members as
/// `{value, type}`; refused when over [`MAX_DOCUMENT_BYTES`].
fn stored_document(
    index: usize,
    id: &str,
    version: i64,
    document: &Value,
) -> Result<Document, ProjectionError> {
    let mut doc = doc! {"_id": id, "_version": version};
    for (key, value) in to_document(index, document)? {
        if key == "members" {
            let members: Vec<Bson> = document
                .get("members")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    let value = m.get("value")?.as_str()?.to_owned();
                    let kind = match m.get("type").and_then(Value::as_str) {
                        Some("Group") => ResourceKind::Group,
                        _ => ResourceKind::User,
                    };
                    Some(member(&Member { value, kind }))
                })
                .collect();
            doc.insert("members", members);
        } else if key != "_id" && key != "_version" {
            doc.insert(key, value);
        }
    }
    let size = bson::to_vec(&doc)
        .map_err(|e| ProjectionError::Rejected {
            index,
            reason: format!("the document cannot be stored as BSON: {e}"),
        })?
        .len();
    if size > MAX_DOCUMENT_BYTES {
        let members = doc.get_array("members").map_or(0, Vec::len);
        return Err(ProjectionError::Rejected {
            index,
            reason: format!(
                "{id}: the document would be {size} bytes, over MongoDB's limit of {MAX_DOCUMENT_BYTES} \
                 bytes ({members} members)"
            ),
        });
    }
    Ok(doc)
}

/// The error to report for a batch: any that is not a rejection first, else the rejection of the
/// earliest change.
fn first_error(results: Vec<Result<(), ProjectionError>>) -> Result<(), ProjectionError> {
    let mut rejected: Option<(usize, String)> = None;
    for result in results {
        match result {
            Ok(()) => {}
            Err(ProjectionError::Rejected { index, reason }) => {
                if rejected.as_ref().is_none_or(|(other, _)| index < *other) {
                    rejected = Some((index, reason));
                }
            }
            Err(e) => return Err(e),
        }
    }
    match rejected {
        Some((index, reason)) => Err(ProjectionError::Rejected { index, reason }),
        None => Ok(()),
    }
}

/// E11000: the insert of an upsert met an `_id` that exists (with a newer `_version`).
fn duplicate_key(error: &MongoError) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(e) => e.code == 11000,
        _ => error.to_string().contains("E11000"),
    }
}

/// Server error codes that may pass: shutdowns, elections, network, time limits.
const TRANSIENT: &[i32] = &[
    6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

/// Maps an error of a write of the change at `index`.
fn classify(index: usize, error: &MongoError) -> ProjectionError {
    let refused = |code: i32, message: &str| ProjectionError::Rejected {
        index,
        reason: format!("MongoDB error {code}: {message}"),
    };
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) if !TRANSIENT.contains(&e.code) => {
            refused(e.code, &e.message)
        }
        ErrorKind::Command(e)
            if !TRANSIENT.contains(&e.code) && !error.contains_label("RetryableWriteError") =>
        {
            refused(e.code, &e.message)
        }
        ErrorKind::BsonSerialization(_) | ErrorKind::InvalidArgument { .. } => {
            ProjectionError::Rejected {
                index,
                reason: format!("the document cannot be written: {error}"),
            }
        }
        _ => unavailable(error, ""),
    }
}

fn unavailable(error: &MongoError, uri: &str) -> ProjectionError {
    ProjectionError::Unavailable(format!(
        "mongo projection: {}",
        redact(&error.to_string(), uri)
    ))
}

/// `message` without the connection string's password, should an error quote it.
fn redact(message: &str, uri: &str) -> String {
    let password = uri
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => message.replace(p, "***"),
        None => message.to_owned(),
    }
}

/// Top-level keys of stored documents that are not part of the resource.
pub const BOOKKEEPING_FIELDS: [&str; 2] = ["_id", "_version"];

/// The resource a stored document holds: without `_id` and `_version` (for readers and tests).
pub fn resource_of(stored: &Value) -> Value {
    let mut resource = stored.clone();
    if let Some(map) = resource.as_object_mut() {
        for key in BOOKKEEPING_FIELDS {
            map.remove(key);
        }
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_stored_as_value_and_type_only() {
        let group = json!({"id": "g", "displayName": "G", "members": [
            {"value": "u1", "type": "User", "display": "One", "$ref": "/Users/u1"},
            {"value": "g2", "type": "Group"}
        ]});
        let stored = stored_document(0, "g", 3, &group).expect("stored");
        assert_eq!(stored.get_str("_id").ok(), Some("g"));
        assert_eq!(stored.get_i64("_version").ok(), Some(3));
        let members = stored.get_array("members").expect("members");
        assert_eq!(
            members[0],
            Bson::Document(doc! {"value": "u1", "type": "User"})
        );
        assert_eq!(
            members[1],
            Bson::Document(doc! {"value": "g2", "type": "Group"})
        );
    }

    #[test]
    fn a_document_over_16_mib_is_refused_with_a_clear_error() {
        let members: Vec<Value> = (0..250_000)
            .map(|i| json!({"value": format!("{i:036}"), "type": "User"}))
            .collect();
        let group = json!({"id": "g", "displayName": "G", "members": members});
        match stored_document(7, "g", 1, &group) {
            Err(ProjectionError::Rejected { index, reason }) => {
                assert_eq!(index, 7);
                assert!(reason.contains("over MongoDB's limit"), "{reason}");
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn passwords_in_connection_strings_are_redacted() {
        assert_eq!(
            redact(
                "cannot reach mongodb://u:s3cret@h",
                "mongodb://u:s3cret@h/db"
            ),
            "cannot reach mongodb://u:***@h"
        );
    }
}
