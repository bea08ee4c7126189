//! The schema registry (RFC 7643 §7): the core User and Group schemas and their extensions, built
//! into the binary and optionally extended or replaced from `SCHEMA_PATH`.
//!
//! Everything the server decides about an attribute (its type, whether it is required, read-only,
//! unique, returned) comes from here: [`validate`] normalises input, [`view`] shapes output, and
//! [`Registry::unique_keys`] feeds the store's uniqueness index.

mod load;
pub mod mapping;
pub mod path;
mod unique;
pub mod validate;
pub mod view;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ResourceType;

pub use load::{SchemaError, SchemaFile, SchemaFiles};
pub use mapping::Mapping;
pub use path::{AttrPath, Location};
pub use unique::UniqueKey;
pub use view::View;

/// URN of the schema that describes schemas (RFC 7643 §7).
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// URN of the schema that describes resource types (RFC 7643 §6).
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum AttributeType {
    /// A Unicode string (§2.3.1).
    #[default]
    String,
    /// `true` or `false` (§2.3.2).
    Boolean,
    /// A real number (§2.3.3).
    Decimal,
    /// A whole number (§2.3.4).
    Integer,
    /// An xsd:dateTime, RFC 3339 (§2.3.5).
    DateTime,
    /// Base64-encoded bytes (§2.3.6).
    Binary,
    /// A URI (§2.3.7).
    Reference,
    /// A value with sub-attributes (§2.3.8).
    Complex,
}

/// Whether and how a client may change an attribute (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Mutability {
    /// Set by the server only; ignored in input.
    ReadOnly,
    /// Freely writable.
    #[default]
    ReadWrite,
    /// Writable once; a change afterwards is a `mutability` error.
    Immutable,
    /// Writable, never returned.
    WriteOnly,
}

/// When an attribute appears in responses (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Returned {
    /// Always, even when excluded.
    Always,
    /// Never.
    Never,
    /// Unless `attributes` leaves it out or `excludedAttributes` names it.
    #[default]
    Default,
    /// Only when `attributes` names it.
    Request,
}

/// The scope in which an attribute's values are unique (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Uniqueness {
    /// No constraint.
    #[default]
    None,
    /// Unique among the resources of the same type.
    Server,
    /// Unique among all resources of this server.
    Global,
}

/// One attribute definition (RFC 7643 §7), defaults as in §2.2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attribute {
    /// The attribute's name, in the spelling output uses.
    pub name: String,
    /// Its data type.
    #[serde(rename = "type", default)]
    pub kind: AttributeType,
    /// Whether it holds an array of values.
    #[serde(default)]
    pub multi_valued: bool,
    /// What it means.
    #[serde(default)]
    pub description: String,
    /// Whether create and replace must carry it.
    #[serde(default)]
    pub required: bool,
    /// Whether its string values compare case-sensitively.
    #[serde(default)]
    pub case_exact: bool,
    /// Who may change it.
    #[serde(default)]
    pub mutability: Mutability,
    /// When it is returned.
    #[serde(default)]
    pub returned: Returned,
    /// Where its values must be unique.
    #[serde(default)]
    pub uniqueness: Uniqueness,
    /// For `complex`: its sub-attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_attributes: Vec<Attribute>,
    /// For `reference`: what it may refer to (`User`, `Group`, `external`, `uri`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_types: Vec<String>,
    /// Suggested values (not enforced, RFC 7643 §2.3.1 "MAY").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canonical_values: Vec<Value>,
}

impl Attribute {
    /// The sub-attribute called `name`, matched case-insensitively (RFC 7643 §2.1).
    pub fn sub_attribute(&self, name: &str) -> Option<&Attribute> {
        find(&self.sub_attributes, name)
    }
}

fn find<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
}

/// A schema resource (RFC 7643 §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    /// The schema's URN, also the key of an extension's attributes in a resource.
    pub id: String,
    /// A short name.
    #[serde(default)]
    pub name: String,
    /// What it describes.
    #[serde(default)]
    pub description: String,
    /// Its top-level attributes.
    pub attributes: Vec<Attribute>,
}

impl Schema {
    /// The top-level attribute called `name`, matched case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        find(&self.attributes, name)
    }
}

/// An extension schema of a resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct Extension {
    /// The extension's schema.
    pub schema: Schema,
    /// Whether every resource of the type must carry it.
    pub required: bool,
}

/// The schemas of one resource type: its core schema and its extensions.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSchemas {
    /// The resource type.
    pub rt: ResourceType,
    /// A human-readable description, for `/ResourceTypes`.
    pub description: String,
    /// The core schema.
    pub core: Schema,
    /// The extensions, in the order they were loaded.
    pub extensions: Vec<Extension>,
    /// Attributes set from other attributes on every write (`USER_MAPPING` / `GROUP_MAPPING`).
    pub mapping: Mapping,
}

impl ResourceSchemas {
    /// The extension whose URN is `urn`, matched case-insensitively.
    pub fn extension(&self, urn: &str) -> Option<&Extension> {
        self.extensions
            .iter()
            .find(|e| e.schema.id.eq_ignore_ascii_case(urn))
    }
}

/// How input that the schemas do not declare is treated (`SCHEMA_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaMode {
    /// Unknown attributes and undeclared extension URNs are a 400 `invalidValue`.
    #[default]
    Strict,
    /// They are kept verbatim (for migrations from schemaless stores).
    Lenient,
}

/// A `SCHEMA_MODE` value that is neither `strict` nor `lenient`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a schema mode (strict, lenient)")]
pub struct UnknownSchemaMode(pub String);

impl std::str::FromStr for SchemaMode {
    type Err = UnknownSchemaMode;

    fn from_str(s: &str) -> Result<SchemaMode, UnknownSchemaMode> {
        match s.trim() {
            m if m.eq_ignore_ascii_case("strict") => Ok(SchemaMode::Strict),
            m if m.eq_ignore_ascii_case("lenient") => Ok(SchemaMode::Lenient),
            other => Err(UnknownSchemaMode(other.to_owned())),
        }
    }
}

/// Every schema the server knows, per resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    users: ResourceSchemas,
    groups: ResourceSchemas,
    mode: SchemaMode,
    /// `EXTERNAL_ID_UNIQUE`: whether `externalId` is unique per resource type.
    external_id_unique: bool,
}

impl Registry {
    /// The schemas of `rt`.
    pub fn schemas(&self, rt: ResourceType) -> &ResourceSchemas {
        match rt {
            ResourceType::User => &self.users,
            ResourceType::Group => &self.groups,
        }
    }

    /// Adds `USER_MAPPING` / `GROUP_MAPPING` (JSON objects `{"target": "source"}`); an invalid one
    /// is an error naming the setting.
    pub fn with_mappings(
        mut self,
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Registry, SchemaError> {
        if let Some(json) = user {
            self.users.mapping = Mapping::parse(&self.users, "USER_MAPPING", json)?;
        }
        if let Some(json) = group {
            self.groups.mapping = Mapping::parse(&self.groups, "GROUP_MAPPING", json)?;
        }
        Ok(self)
    }

    /// How undeclared input is treated.
    pub fn mode(&self) -> SchemaMode {
        self.mode
    }

    /// `EXTERNAL_ID_UNIQUE`: makes `externalId` unique per resource type. RFC 7643 §3.1 scopes
    /// `externalId` to the provisioning client and does not make it unique, and several clients may
    /// feed one server, so by default it is not (it stays indexed for `eq`).
    pub fn with_external_id_unique(mut self, unique: bool) -> Registry {
        self.external_id_unique = unique;
        self
    }

    /// Whether `externalId` is unique per resource type ([`Registry::with_external_id_unique`]).
    pub fn external_id_unique(&self) -> bool {
        self.external_id_unique
    }

    /// Every schema, each once: core User, core Group, then the extensions.
    pub fn all_schemas(&self) -> Vec<&Schema> {
        let mut out: Vec<&Schema> = vec![&self.users.core, &self.groups.core];
        for e in self.users.extensions.iter().chain(&self.groups.extensions) {
            if !out.iter().any(|s| s.id == e.schema.id) {
                out.push(&e.schema);
            }
        }
        out
    }

    /// The schema with URN `id` (case-insensitive).
    pub fn schema(&self, id: &str) -> Option<&Schema> {
        self.all_schemas()
            .into_iter()
            .find(|s| s.id.eq_ignore_ascii_case(id))
    }

    /// RFC 7643 §7: a schema as `/Schemas` shows it; `base` prefixes `meta.location`. Fails only
    /// if the schema cannot be serialised, which the caller reports instead of serving an empty one.
    pub fn schema_document(schema: &Schema, base: &str) -> Result<Value, serde_json::Error> {
        let mut doc = serde_json::to_value(schema)?;
        doc["schemas"] = json!([SCHEMA_SCHEMA]);
        doc["meta"] = json!({
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{}", schema.id),
        });
        Ok(doc)
    }

    /// RFC 7643 §6: a resource type as `/ResourceTypes` shows it.
    pub fn resource_type_document(&self, rt: ResourceType, base: &str) -> Value {
        let s = self.schemas(rt);
        let extensions: Vec<Value> = s
            .extensions
            .iter()
            .map(|e| json!({"schema": e.schema.id, "required": e.required}))
            .collect();
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": rt.name(),
            "name": rt.name(),
            "endpoint": format!("/{}", rt.endpoint()),
            "description": s.description,
            "schema": s.core.id,
            "schemaExtensions": extensions,
            "meta": {
                "resourceType": "ResourceType",
                "location": format!("{base}/ResourceTypes/{}", rt.name()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Registry {
        Registry::built_in(SchemaMode::Strict).unwrap()
    }

    #[test]
    fn builtin_schemas_cover_core_and_every_extension() {
        let r = builtin();
        let ids: Vec<&str> = r.all_schemas().iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids.len(), 6, "{ids:?}");
        assert!(ids.contains(&"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
        assert!(ids.contains(&"urn:mace:surf.nl:sram:scim:extension:Group"));
        let user = r.schemas(ResourceType::User);
        assert_eq!(user.extensions.len(), 3);
        assert!(user.core.attribute("x509certificates").is_some());
    }
}
