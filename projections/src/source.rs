//! The read side of the backends: what a backend holds, turned back into SCIM documents. `scimd
//! import` reads an earlier server's data this way (the layouts the projections write are the
//! earlier server's), and `scimd replay --fresh` looks here for rows the log cannot rebuild before
//! it empties a backend. Each backend's reader lives next to its writer (`file/source.rs`,
//! `sql/source.rs`, `ldap/source.rs`, `mongo/source.rs`) and undoes exactly what that writer does.

use async_trait::async_trait;
use serde_json::Value;

use crate::{ProjectionError, ResourceKind};

/// One resource a backend holds, as a SCIM document (with `id`, and `meta`/`schemas` where the
/// layout keeps them).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The resource id (the file name, the row's `id`, the document's `_id`, the entry's RDN).
    pub id: String,
    /// The document.
    pub document: Value,
}

/// A file, row, document or entry that is not a readable resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Where it is: a path, a table and id, a DN.
    pub location: String,
    /// Why it cannot be read.
    pub reason: String,
}

/// What reading one resource gave.
pub type Held = Result<Found, Unreadable>;

/// A backend read back.
#[async_trait]
pub trait Source: Send {
    /// Every resource of `kind` the backend holds, in no particular order.
    ///
    /// # Errors
    /// [`ProjectionError::Unavailable`] when the backend cannot be reached,
    /// [`ProjectionError::Config`] when the layout is not there (a missing table, OU or directory).
    async fn read(&mut self, kind: ResourceKind) -> Result<Vec<Held>, ProjectionError>;
}

/// `location` with the reason `reason`.
pub(crate) fn unreadable(location: impl Into<String>, reason: impl Into<String>) -> Held {
    Err(Unreadable {
        location: location.into(),
        reason: reason.into(),
    })
}

/// A document read as text: a JSON object whose `id`, if present, is `id`.
pub(crate) fn parse_document(location: String, id: String, text: &str) -> Held {
    match serde_json::from_str::<Value>(text) {
        Ok(document) => check_document(location, id, document),
        Err(e) => unreadable(location, format!("not JSON: {e}")),
    }
}

/// `document` for resource `id`: it must be a JSON object, and an `id` it holds must be `id`.
pub(crate) fn check_document(location: String, id: String, mut document: Value) -> Held {
    let Some(object) = document.as_object_mut() else {
        return unreadable(location, "not a JSON object");
    };
    match object.get("id") {
        Some(Value::String(inner)) if *inner != id => {
            return unreadable(
                location,
                format!("its id is {id:?} but the document says {inner:?}"),
            );
        }
        Some(Value::String(_)) => {}
        _ => {
            object.insert("id".into(), Value::String(id.clone()));
        }
    }
    Ok(Found { id, document })
}
