//! The resource types scimd serves (RFC 7643 §4). A leaf of the crate: the schema registry, the
//! resources and every other module name them, and this module depends on none of them.

use serde::{Deserialize, Serialize};

/// The resource types scimd serves (RFC 7643 §4 and §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    /// `urn:ietf:params:scim:schemas:core:2.0:User`, served at `/Users`.
    User,
    /// `urn:ietf:params:scim:schemas:core:2.0:Group`, served at `/Groups`.
    Group,
}

impl ResourceType {
    /// Every resource type, in the order discovery lists them.
    pub const ALL: [ResourceType; 2] = [ResourceType::User, ResourceType::Group];

    /// The resource type's name, as in `meta.resourceType`.
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::User => "User",
            ResourceType::Group => "Group",
        }
    }

    /// The endpoint path segment: `Users` or `Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceType::User => "Users",
            ResourceType::Group => "Groups",
        }
    }

    /// The core schema URN (RFC 7643 §8.7.1).
    pub fn core_schema(self) -> &'static str {
        match self {
            ResourceType::User => "urn:ietf:params:scim:schemas:core:2.0:User",
            ResourceType::Group => "urn:ietf:params:scim:schemas:core:2.0:Group",
        }
    }

    /// Parses a `meta.resourceType` name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "User" => Some(ResourceType::User),
            "Group" => Some(ResourceType::Group),
            _ => None,
        }
    }
}
