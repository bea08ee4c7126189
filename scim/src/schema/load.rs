//! Building the registry: the schemas embedded in the binary, then those of `SCHEMA_PATH`.
//!
//! The caller reads `SCHEMA_PATH` (this crate does no I/O) and hands the texts over as
//! [`SchemaFiles`]; a broken file is an error naming the file and the reason, never a skip.

use std::collections::HashSet;

use serde::Deserialize;

use super::{AttributeType, Extension, Registry, ResourceSchemas, Schema, SchemaMode};
use crate::ResourceType;

/// Why the schemas could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A file is not a valid RFC 7643 §7 schema, or does not fit where it was found.
    #[error("schema {path}: {reason}")]
    Invalid {
        /// The file (or `built-in:NAME` for an embedded one).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

const CORE_USER: &str = include_str!("../schemas/core-user.json");
const CORE_GROUP: &str = include_str!("../schemas/core-group.json");
const RESOURCE_TYPES: &str = include_str!("../schemas/resource-types.json");
const BUILT_IN: [(&str, &str); 4] = [
    (
        "enterprise-user.json",
        include_str!("../schemas/enterprise-user.json"),
    ),
    ("sram-user.json", include_str!("../schemas/sram-user.json")),
    (
        "sram-group.json",
        include_str!("../schemas/sram-group.json"),
    ),
    (
        "vo-person-user.json",
        include_str!("../schemas/vo-person-user.json"),
    ),
];

/// The schema files of a `SCHEMA_PATH`, already read by the caller.
#[derive(Debug, Default)]
pub struct SchemaFiles {
    /// `core/User.json`, `core/Group.json` where present: each replaces a core schema (same URN).
    pub core: Vec<(ResourceType, SchemaFile)>,
    /// `extensions/User/*.json`, `extensions/Group/*.json`, in file-name order: each is added to
    /// its resource type, or replaces the built-in extension with the same URN.
    pub extensions: Vec<(ResourceType, SchemaFile)>,
}

/// One schema file: the name errors report (its path) and its text.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    /// Where the text came from, as errors name it.
    pub name: String,
    /// The file's content: an RFC 7643 §7 schema resource.
    pub text: String,
}

/// The parts of a ResourceType (RFC 7643 §6) the registry needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceTypeFile {
    name: String,
    #[serde(default)]
    description: String,
    schema: String,
    #[serde(default)]
    schema_extensions: Vec<ExtensionRef>,
}

#[derive(Deserialize)]
struct ExtensionRef {
    schema: String,
    #[serde(default)]
    required: bool,
}

impl Registry {
    /// The built-in schemas alone (no `SCHEMA_PATH`).
    pub fn built_in(mode: SchemaMode) -> Result<Registry, SchemaError> {
        Registry::load(&SchemaFiles::default(), mode)
    }

    /// The built-in schemas, extended or replaced by `files` (see [`SchemaFiles`]).
    pub fn load(files: &SchemaFiles, mode: SchemaMode) -> Result<Registry, SchemaError> {
        let mut builtin: Vec<Schema> = Vec::new();
        for (name, text) in BUILT_IN {
            builtin.push(parse(&format!("built-in:{name}"), text)?);
        }
        let types: Vec<ResourceTypeFile> =
            serde_json::from_str(RESOURCE_TYPES).map_err(|e| SchemaError::Invalid {
                path: "built-in:resource-types.json".into(),
                reason: e.to_string(),
            })?;
        let mut users = resource_schemas(
            ResourceType::User,
            parse("built-in:core-user.json", CORE_USER)?,
            &types,
            &builtin,
        )?;
        let mut groups = resource_schemas(
            ResourceType::Group,
            parse("built-in:core-group.json", CORE_GROUP)?,
            &types,
            &builtin,
        )?;
        for s in [&mut users, &mut groups] {
            overlay(files, s)?;
        }
        Ok(Registry {
            users,
            groups,
            mode,
            external_id_unique: false,
        })
    }
}

fn resource_schemas(
    rt: ResourceType,
    core: Schema,
    types: &[ResourceTypeFile],
    builtin: &[Schema],
) -> Result<ResourceSchemas, SchemaError> {
    let invalid = |reason: String| SchemaError::Invalid {
        path: "built-in:resource-types.json".into(),
        reason,
    };
    let t = types
        .iter()
        .find(|t| t.name == rt.name())
        .ok_or_else(|| invalid(format!("no {} resource type", rt.name())))?;
    if t.schema != core.id {
        return Err(invalid(format!("{} does not use {}", rt.name(), core.id)));
    }
    let mut extensions = Vec::new();
    for e in &t.schema_extensions {
        let schema = builtin
            .iter()
            .find(|s| s.id == e.schema)
            .ok_or_else(|| invalid(format!("no built-in schema {}", e.schema)))?;
        extensions.push(Extension {
            schema: schema.clone(),
            required: e.required,
        });
    }
    Ok(ResourceSchemas {
        rt,
        description: t.description.clone(),
        core,
        extensions,
        mapping: super::Mapping::default(),
    })
}

/// Applies the `core/{Type}.json` and `extensions/{Type}/*.json` files of `s`'s resource type.
fn overlay(files: &SchemaFiles, s: &mut ResourceSchemas) -> Result<(), SchemaError> {
    for (_, file) in files.core.iter().filter(|(rt, _)| *rt == s.rt) {
        let core = parse(&file.name, &file.text)?;
        if core.id != s.rt.core_schema() {
            return Err(SchemaError::Invalid {
                path: file.name.clone(),
                reason: format!("id must be {}, not {}", s.rt.core_schema(), core.id),
            });
        }
        s.core = core;
    }
    for (_, file) in files.extensions.iter().filter(|(rt, _)| *rt == s.rt) {
        let schema = parse(&file.name, &file.text)?;
        if !schema.id.to_ascii_lowercase().starts_with("urn:") || schema.id == s.core.id {
            return Err(SchemaError::Invalid {
                path: file.name.clone(),
                reason: format!("id must be an extension URN, not {}", schema.id),
            });
        }
        match s
            .extensions
            .iter_mut()
            .find(|e| e.schema.id.eq_ignore_ascii_case(&schema.id))
        {
            Some(existing) => existing.schema = schema,
            None => s.extensions.push(Extension {
                schema,
                required: false,
            }),
        }
    }
    Ok(())
}

/// Parses and checks one schema resource.
fn parse(path: &str, text: &str) -> Result<Schema, SchemaError> {
    let invalid = |reason: String| SchemaError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let schema: Schema = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if schema.id.trim().is_empty() {
        return Err(invalid("id is empty".into()));
    }
    check_attributes(&schema.attributes, "", 0).map_err(invalid)?;
    Ok(schema)
}

fn check_attributes(
    attributes: &[super::Attribute],
    parent: &str,
    depth: usize,
) -> Result<(), String> {
    let mut seen = HashSet::new();
    for a in attributes {
        let name = format!("{parent}{}", a.name);
        if a.name.is_empty() || a.name.contains(['.', ':', ' ']) {
            return Err(format!("attribute name \"{name}\" is not valid"));
        }
        if !seen.insert(a.name.to_ascii_lowercase()) {
            return Err(format!("attribute {name} is declared twice"));
        }
        match (a.kind, a.sub_attributes.is_empty()) {
            (AttributeType::Complex, true) => {
                return Err(format!("complex attribute {name} has no subAttributes"));
            }
            (AttributeType::Complex, false) if depth > 0 => {
                return Err(format!(
                    "{name}: a sub-attribute cannot be complex (RFC 7643 §2.3.8)"
                ));
            }
            (AttributeType::Complex, false) => {
                check_attributes(&a.sub_attributes, &format!("{name}."), depth + 1)?;
            }
            (_, false) => return Err(format!("{name} is not complex but has subAttributes")),
            (_, true) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> SchemaFile {
        SchemaFile {
            name: name.into(),
            text: text.into(),
        }
    }

    fn extension(rt: ResourceType, name: &str, text: &str) -> SchemaFiles {
        SchemaFiles {
            core: Vec::new(),
            extensions: vec![(rt, file(name, text))],
        }
    }

    #[test]
    fn schema_path_adds_extensions() {
        let files = extension(
            ResourceType::User,
            "extensions/User/acme.json",
            r#"{"id": "urn:acme:User", "attributes": [{"name": "badge", "type": "integer"}]}"#,
        );
        let r = Registry::load(&files, SchemaMode::Strict).unwrap();
        let u = r.schemas(ResourceType::User);
        assert_eq!(u.extensions.len(), 4);
        let badge = u.resolve("urn:acme:User:BADGE").unwrap().attribute.unwrap();
        assert_eq!(badge.kind, AttributeType::Integer);
        assert!(!badge.required, "RFC 7643 §2.2 defaults apply");
        let builtin = Registry::built_in(SchemaMode::Strict).unwrap();
        assert_eq!(
            builtin.uniqueness_fingerprint(),
            Registry::built_in(SchemaMode::Lenient)
                .unwrap()
                .uniqueness_fingerprint(),
            "only uniqueness rules count"
        );
        let files = extension(
            ResourceType::User,
            "extensions/User/acme.json",
            r#"{"id": "urn:acme:User", "attributes": [{"name": "badge", "uniqueness": "server"}]}"#,
        );
        let unique = Registry::load(&files, SchemaMode::Strict).unwrap();
        assert_ne!(
            builtin.uniqueness_fingerprint(),
            unique.uniqueness_fingerprint()
        );
    }

    #[test]
    fn a_broken_file_names_the_file_and_the_reason() {
        let files = extension(
            ResourceType::Group,
            "extensions/Group/bad.json",
            "{\"id\": ",
        );
        let err = Registry::load(&files, SchemaMode::Strict).unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
        let files = extension(
            ResourceType::Group,
            "extensions/Group/bad.json",
            r#"{"id": "urn:x", "attributes": [{"name": "a", "type": "complex"}]}"#,
        );
        let err = Registry::load(&files, SchemaMode::Strict).unwrap_err();
        assert!(err.to_string().contains("no subAttributes"), "{err}");
    }

    #[test]
    fn a_core_file_must_keep_the_core_urn() {
        let files = SchemaFiles {
            core: vec![(
                ResourceType::Group,
                file(
                    "core/Group.json",
                    r#"{"id": "urn:other", "attributes": []}"#,
                ),
            )],
            extensions: Vec::new(),
        };
        let err = Registry::load(&files, SchemaMode::Strict).unwrap_err();
        assert!(err.to_string().contains("Group.json"), "{err}");
    }
}
