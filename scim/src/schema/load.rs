//! Loading the registry: the schemas embedded in the binary, then `SCHEMA_PATH`.
//!
//! This is the one place in `scim/` that reads files, and only at start-up: a missing or unreadable
//! `SCHEMA_PATH`, or a broken file in it, is an error naming the path and the reason, never a skip.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{AttributeType, Extension, Registry, ResourceSchemas, Schema, SchemaMode};
use crate::ResourceType;

/// Why the schemas could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A file or directory could not be read.
    #[error("SCHEMA_PATH {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a valid RFC 7643 §7 schema.
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
    /// The built-in schemas, extended or replaced by those under `schema_path`:
    /// `core/User.json`, `core/Group.json` (optional, replace a core schema), and
    /// `extensions/User/*.json`, `extensions/Group/*.json` (added to the resource type; one with the
    /// URN of a built-in extension replaces it).
    pub fn load(schema_path: Option<&Path>, mode: SchemaMode) -> Result<Registry, SchemaError> {
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
        if let Some(root) = schema_path {
            let meta = std::fs::metadata(root).map_err(|source| SchemaError::Io {
                path: root.to_owned(),
                source,
            })?;
            if !meta.is_dir() {
                return Err(SchemaError::Io {
                    path: root.to_owned(),
                    source: std::io::Error::other("not a directory"),
                });
            }
            check_layout(root)?;
            for s in [&mut users, &mut groups] {
                overlay(root, s)?;
            }
        }
        Ok(Registry {
            users,
            groups,
            mode,
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

/// Refuses entries under `core/` and `extensions/` that would otherwise be skipped silently (a typo
/// such as `extensions/Users/` must not make a schema vanish).
fn check_layout(root: &Path) -> Result<(), SchemaError> {
    let allowed: [(&str, [&str; 2]); 2] = [
        ("core", ["User.json", "Group.json"]),
        ("extensions", ["User", "Group"]),
    ];
    for (dir, names) in allowed {
        let dir = root.join(dir);
        if !dir.exists() {
            continue;
        }
        let io = |source| SchemaError::Io {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !names.contains(&name) {
                return Err(SchemaError::Invalid {
                    path: path.display().to_string(),
                    reason: format!(
                        "unexpected entry; {} may hold only {}",
                        dir.display(),
                        names.join(", ")
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Applies `SCHEMA_PATH/core/{Type}.json` and `SCHEMA_PATH/extensions/{Type}/*.json`.
fn overlay(root: &Path, s: &mut ResourceSchemas) -> Result<(), SchemaError> {
    let core_file = root.join("core").join(format!("{}.json", s.rt.name()));
    if core_file.exists() {
        let core = read(&core_file)?;
        if core.id != s.rt.core_schema() {
            return Err(SchemaError::Invalid {
                path: core_file.display().to_string(),
                reason: format!("id must be {}, not {}", s.rt.core_schema(), core.id),
            });
        }
        s.core = core;
    }
    let dir = root.join("extensions").join(s.rt.name());
    if !dir.exists() {
        return Ok(());
    }
    let io = |source| SchemaError::Io {
        path: dir.clone(),
        source,
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            files.push(path);
        }
    }
    files.sort();
    for file in files {
        let schema = read(&file)?;
        if !schema.id.to_ascii_lowercase().starts_with("urn:") || schema.id == s.core.id {
            return Err(SchemaError::Invalid {
                path: file.display().to_string(),
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

fn read(path: &Path) -> Result<Schema, SchemaError> {
    let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
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

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn schema_path_adds_extensions() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "extensions/User/acme.json",
            r#"{"id": "urn:acme:User", "attributes": [{"name": "badge", "type": "integer"}]}"#,
        );
        let r = Registry::load(Some(dir.path()), SchemaMode::Strict).unwrap();
        let u = r.schemas(ResourceType::User);
        assert_eq!(u.extensions.len(), 4);
        let badge = u.resolve("urn:acme:User:BADGE").unwrap().attribute.unwrap();
        assert_eq!(badge.kind, AttributeType::Integer);
        assert!(!badge.required, "RFC 7643 §2.2 defaults apply");
        let builtin = Registry::load(None, SchemaMode::Strict).unwrap();
        assert_eq!(
            builtin.uniqueness_fingerprint(),
            Registry::load(None, SchemaMode::Lenient)
                .unwrap()
                .uniqueness_fingerprint(),
            "only uniqueness rules count"
        );
        write(
            dir.path(),
            "extensions/User/acme.json",
            r#"{"id": "urn:acme:User", "attributes": [{"name": "badge", "uniqueness": "server"}]}"#,
        );
        let unique = Registry::load(Some(dir.path()), SchemaMode::Strict).unwrap();
        assert_ne!(
            builtin.uniqueness_fingerprint(),
            unique.uniqueness_fingerprint()
        );
    }

    #[test]
    fn a_missing_schema_path_names_the_path() {
        let err = Registry::load(Some(Path::new("/nonexistent/schemas")), SchemaMode::Strict)
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/schemas"), "{err}");
    }

    #[test]
    fn a_broken_file_names_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "extensions/Group/bad.json", "{\"id\": ");
        let err = Registry::load(Some(dir.path()), SchemaMode::Strict).unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
        write(
            dir.path(),
            "extensions/Group/bad.json",
            r#"{"id": "urn:x", "attributes": [{"name": "a", "type": "complex"}]}"#,
        );
        let err = Registry::load(Some(dir.path()), SchemaMode::Strict).unwrap_err();
        assert!(err.to_string().contains("no subAttributes"), "{err}");
    }

    #[test]
    fn a_misspelled_directory_is_an_error_not_a_skip() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "extensions/Users/acme.json",
            r#"{"id": "urn:acme:User", "attributes": []}"#,
        );
        let err = Registry::load(Some(dir.path()), SchemaMode::Strict).unwrap_err();
        assert!(err.to_string().contains("Users"), "{err}");
    }

    #[test]
    fn a_core_file_must_keep_the_core_urn() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "core/Group.json",
            r#"{"id": "urn:other", "attributes": []}"#,
        );
        let err = Registry::load(Some(dir.path()), SchemaMode::Strict).unwrap_err();
        assert!(err.to_string().contains("Group.json"), "{err}");
    }
}
