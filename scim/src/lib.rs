//! The SCIM 2.0 domain (RFC 7643, RFC 7644), pure: resources, schemas and their validation, the
//! filter language, the PATCH engine, BulkRequest parsing, SCIM errors and ETags.
//!
//! No I/O and no async, except reading schema files once at start-up ([`schema::Registry::load`]).
//! The crate depends on no framework (HTTP, storage, messaging, CLI): scimd's HTTP layer, store and
//! fan-out build on it, never the reverse, and Cargo enforces that. Everything here can be unit-tested
//! and fuzzed in isolation.

pub mod bulk;
pub mod error;
pub mod etag;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod resource_type;
pub mod schema;

pub use error::{ScimError, ScimType};
pub use resource_type::ResourceType;

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
