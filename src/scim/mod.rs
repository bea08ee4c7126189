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
pub use resource::ResourceType;
