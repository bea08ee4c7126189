//! `scimd import`'s service side: a document an earlier server held, validated like the body of a
//! create (strict or lenient as configured, `password` hashed), compared with what the store holds
//! (so a second import writes only what changed), and written as `import` events through the
//! store's writer, a Bulk-sized batch at a time (one transaction, one fsync).

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::password;
use crate::store::{BulkWrite, Outcome, Snapshot, Store, StoreError, Write, WriteContext};
use scim::resource::{self, ResourceInput};
use scim::schema::Registry;
use scim::{ResourceType, ScimError, ScimType};

/// The longest id accepted: the SQL projection's `VARCHAR(255)`.
const MAX_ID_LENGTH: usize = 255;

/// What importing one document amounts to.
#[derive(Debug)]
pub enum Prepared {
    /// The store holds the same attributes (and members): nothing to write.
    Unchanged,
    /// The write to make, and the members that are neither in the store nor among the resources
    /// being imported (the writer leaves them out).
    Write {
        /// A [`Write::Import`].
        write: Write,
        /// Member ids that point nowhere.
        dangling: Vec<String>,
    },
}

/// Validates `document` as resource `id` of type `rt` and compares it with `snapshot`. Members
/// count as existing when the store holds them or their id is in `pending` (being imported in
/// this run). `meta.created` is kept when it is an RFC 3339 time; every other part of `meta`, and
/// `id`, are the server's.
///
/// # Errors
/// The SCIM error a create of the same body would get (400 `invalidValue` naming the attribute,
/// and so on), 400 for an id no backend can hold, 503 when the store cannot be read.
pub async fn prepare(
    registry: &Registry,
    snapshot: &Snapshot,
    rt: ResourceType,
    id: &str,
    document: Value,
    pending: &HashSet<String>,
) -> Result<Prepared, ScimError> {
    check_id(id)?;
    check_id_free(snapshot, rt, id)?;
    let created = document
        .pointer("/meta/created")
        .and_then(Value::as_str)
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .map(|c| c.with_timezone(&Utc));
    let mut input = resource::parse_input(registry, rt, document)?;
    let read = |e: StoreError| -> ScimError { e.into() };
    let mut dangling = Vec::new();
    for m in input.members.iter().flatten() {
        let known = m.value == id
            || pending.contains(&m.value)
            || snapshot
                .get(ResourceType::User, &m.value)
                .map_err(read)?
                .is_some()
            || snapshot
                .get(ResourceType::Group, &m.value)
                .map_err(read)?
                .is_some();
        if !known {
            dangling.push(m.value.clone());
        }
    }
    if m_self(&input, id) {
        dangling.push(id.to_owned());
    }
    if unchanged(snapshot, rt, id, &input, &dangling).await? {
        return Ok(Prepared::Unchanged);
    }
    if let Some(p) = input.password.take() {
        input
            .attributes
            .insert("password".into(), json!(password::hash(p).await?));
    }
    Ok(Prepared::Write {
        write: Write::Import {
            rt,
            id: id.to_owned(),
            attributes: input.attributes,
            members: input.members,
            created,
        },
        dangling,
    })
}

/// Writes `writes` as one Bulk command: one transaction and one fsync; each succeeds or fails on
/// its own (a uniqueness conflict refuses that resource only). The outcomes are in order.
///
/// # Errors
/// 503 when the store cannot confirm the batch (it may or may not be written: run the import again).
pub async fn write_batch(
    store: &Store,
    writes: Vec<Write>,
    ctx: WriteContext,
) -> Result<Vec<Result<Outcome, ScimError>>, ScimError> {
    let operations = writes
        .into_iter()
        .map(|write| BulkWrite {
            write: Ok(write),
            after: Vec::new(),
        })
        .collect();
    let outcome = store
        .write(
            Write::Bulk {
                operations,
                fail_on_errors: None,
            },
            ctx,
        )
        .await?;
    let Outcome::Bulk(results) = outcome else {
        return Err(ScimError::unavailable(
            "the store gave an unexpected answer; run the import again",
        ));
    };
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ScimError::unavailable("not attempted"))))
        .collect())
}

/// Refuses `id` when the store holds it as a resource of the other type (ids share one namespace)
/// or when the log deleted it (ids are not reused). The writer refuses both the same way; checked
/// here too so that a dry run reports them.
fn check_id_free(snapshot: &Snapshot, rt: ResourceType, id: &str) -> Result<(), ScimError> {
    let other = match rt {
        ResourceType::User => ResourceType::Group,
        ResourceType::Group => ResourceType::User,
    };
    if snapshot.get(other, id).map_err(ScimError::from)?.is_some() {
        return Err(ScimError::typed(
            409,
            ScimType::Uniqueness,
            format!(
                "{} {id} cannot be imported: the store holds a {} with this id, and an id names \
                 one resource of either type; give one of them a new id in the source",
                rt.name(),
                other.name()
            ),
        ));
    }
    if snapshot.get(rt, id).map_err(ScimError::from)?.is_none()
        && snapshot.stream_head(id).map_err(ScimError::from)?.is_some()
    {
        return Err(ScimError::typed(
            409,
            ScimType::Uniqueness,
            format!(
                "{} {id} was deleted in this log and ids are not reused; give the resource a new id \
                 in the source, or leave it out",
                rt.name()
            ),
        ));
    }
    Ok(())
}

/// For a dry run, the uniqueness check the writer makes: `attributes` of resource `id` must not
/// hold a unique value the store gives another resource, or one `claimed` (index key → id) by a
/// resource met earlier in this run. When it passes, its values are claimed and those its stored
/// version held and it gives up are released (`None`), as the writer's reindex frees them.
///
/// # Errors
/// 409 `uniqueness`, worded as the writer words it; 503 when the store cannot be read.
pub fn check_unique_dry(
    registry: &Registry,
    snapshot: &Snapshot,
    rt: ResourceType,
    id: &str,
    attributes: &Map<String, Value>,
    claimed: &mut HashMap<String, Option<String>>,
) -> Result<(), ScimError> {
    let keys = registry.unique_keys(rt, attributes);
    for key in &keys {
        let index_key = key.index_key(rt);
        let owner = match claimed.get(&index_key) {
            Some(owner) => owner.clone(),
            None => snapshot.unique_owner(&index_key).map_err(ScimError::from)?,
        };
        if owner.is_some_and(|o| o != id) {
            let other = if key.global { "resource" } else { rt.name() };
            return Err(ScimError::uniqueness(format!(
                "{} \"{}\" is already used by another {other}",
                key.attribute, key.normalised
            )));
        }
    }
    if let Some(stored) = snapshot.get(rt, id).map_err(ScimError::from)? {
        for key in registry.unique_keys(rt, &stored.attributes) {
            if !keys.contains(&key) {
                claimed.insert(key.index_key(rt), None);
            }
        }
    }
    for key in keys {
        claimed.insert(key.index_key(rt), Some(id.to_owned()));
    }
    Ok(())
}

/// Ids every backend can hold: not empty, at most 255 bytes, no `/` and no leading `.` (a file
/// name and a URL path segment), no control characters.
fn check_id(id: &str) -> Result<(), ScimError> {
    let problem = if id.is_empty() {
        Some("is empty")
    } else if id.len() > MAX_ID_LENGTH {
        Some("is longer than 255 bytes")
    } else if id.contains('/') {
        Some("contains '/'")
    } else if id.starts_with('.') {
        // `.` and `..` name directories (and a URL path drops them); the file layout's reader
        // skips dot files as temporary ones, so its rows would look stray to `replay --fresh`.
        Some("starts with '.'")
    } else if id.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    };
    match problem {
        Some(p) => Err(ScimError::invalid_value(format!(
            "the id {id:?} {p}, so no backend can hold it"
        ))),
        None => Ok(()),
    }
}

/// Whether a group names itself as a member (left out, like a member that does not exist).
fn m_self(input: &ResourceInput, id: &str) -> bool {
    input.members.iter().flatten().any(|m| m.value == id)
}

/// Whether the store already holds `input` as resource `id`: the same attributes (a password
/// compared with the stored hash), and for a group the same members once those that point nowhere
/// are left out.
async fn unchanged(
    snapshot: &Snapshot,
    rt: ResourceType,
    id: &str,
    input: &ResourceInput,
    dangling: &[String],
) -> Result<bool, ScimError> {
    let read = |e: StoreError| -> ScimError { e.into() };
    let Some(stored) = snapshot.get(rt, id).map_err(read)? else {
        return Ok(false);
    };
    let mut attributes = stored.attributes;
    let hash = attributes.remove("password");
    if attributes != input.attributes {
        return Ok(false);
    }
    if let Some(members) = &input.members {
        let wanted: BTreeSet<&str> = members
            .iter()
            .map(|m| m.value.as_str())
            .filter(|v| !dangling.iter().any(|d| d == v))
            .collect();
        let held = snapshot.members(id).map_err(read)?;
        let held: BTreeSet<&str> = held.iter().map(|m| m.value.as_str()).collect();
        if wanted != held {
            return Ok(false);
        }
    }
    Ok(match (&input.password, hash) {
        (None, _) => true,
        (Some(clear), Some(Value::String(hash))) => password::verify(clear.clone(), hash).await,
        (Some(_), _) => false,
    })
}
