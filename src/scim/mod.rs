//! The SCIM domain, pure: no I/O, no async (except reading the schema files once at start-up).
//! Everything here can be unit-tested in isolation.

pub mod bulk;
pub mod error;
pub mod etag;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimType};

use serde_json::{Map, Value};

/// `map[name]`, the name matched exactly or else case-insensitively: attribute names are
/// case-insensitive (RFC 7643 §2.1), and so are the keys of SCIM messages (PatchOp, BulkRequest).
pub(crate) fn get_ci<'m>(map: &'m Map<String, Value>, name: &str) -> Option<&'m Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}
pub use resource::ResourceType;
