//! The SCIM 2.0 domain (RFC 7643, RFC 7644), pure: resources, schemas and their validation, the
//! filter language, the PATCH engine, BulkRequest and SearchRequest parsing, SCIM errors and ETags.
//!
//! No I/O and no async: even the schema files of `SCHEMA_PATH` are read by the caller and handed
//! over as text ([`schema::SchemaFiles`]). The crate depends on no framework (HTTP, storage, messaging, CLI): scimd's HTTP layer, store and
//! fan-out build on it, never the reverse, and Cargo enforces that. Everything here can be unit-tested
//! and fuzzed in isolation.
//!
//! # Modules
//!
//! - [`resource_type`]: the resource types served (`User`, `Group`); depends on nothing else here.
//! - [`schema`]: the registry of core and extension schemas (RFC 7643 §7), input validation,
//!   uniqueness keys, USER_MAPPING/GROUP_MAPPING, the `attributes=`/`excludedAttributes=`
//!   [`View`](schema::View), and [`schema::path`]: the one resolver of attribute paths.
//! - [`resource`]: a create/replace body split into what the server stores, hashes and resolves, and
//!   the representation the API returns.
//! - [`filter`]: the filter language (RFC 7644 §3.4.2.2): parse, bind to the schemas, evaluate, sort,
//!   and plan index reads.
//! - [`patch`]: PatchOp parsing and the PATCH engine (RFC 7644 §3.5.2).
//! - [`bulk`]: BulkRequest parsing and bulkId ordering (RFC 7644 §3.7).
//! - [`search`]: SearchRequest parsing and the list parameters (RFC 7644 §3.4.2, §3.4.3).
//! - [`error`], [`etag`]: SCIM error bodies (RFC 7644 §3.12) and resource versions.
//!
//! # Example
//!
//! A filter bound to the built-in User schemas and evaluated on a representation:
//!
//! ```
//! use scim::ResourceType;
//! use scim::filter::{Limits, parse};
//! use scim::schema::{Registry, SchemaMode};
//! use serde_json::json;
//!
//! let registry = Registry::built_in(SchemaMode::Strict)?;
//! let users = registry.schemas(ResourceType::User);
//! let bound = parse(r#"emails[type eq "work" and value ew "@example.org"]"#, &Limits::default())?
//!     .bind(users)?;
//! let bjensen = json!({"userName": "bjensen", "emails": [{"type": "work", "value": "b@example.org"}]});
//! assert!(bound.matches(&bjensen));
//!
//! // Every path, wherever a client writes one, resolves the same way.
//! let path = users.resolve("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName").unwrap();
//! assert_eq!(path.location().unwrap().to_string(), "name.givenName");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bulk;
pub mod error;
pub mod etag;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod resource_type;
pub mod schema;
pub mod search;

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
