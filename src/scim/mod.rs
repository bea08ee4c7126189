//! The SCIM domain, pure: no I/O, no async. Everything here can be unit-tested in isolation.

pub mod error;
pub mod etag;
pub mod resource;

pub use error::{ScimError, ScimType};
pub use resource::ResourceType;
