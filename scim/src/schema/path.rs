//! Attribute paths (RFC 7644 §3.10): the one place that resolves `name`, `name.sub`, `urn:…:name`,
//! `urn:…:name.sub` or an extension URN alone against a resource type's schemas, and that knows the
//! common attributes (`id`, `externalId`, `schemas`, `meta`, RFC 7643 §3.1) which no schema lists.
//!
//! [`ResourceSchemas::resolve`] yields an [`AttrPath`], which borrows the attribute definitions;
//! [`AttrPath::location`] keeps only where the value lives, as an owned [`Location`]. The filter
//! (its paths and `sortBy`), the PATCH engine, the `attributes=`/`excludedAttributes=`
//! [`View`](super::View) and the [`Mapping`](super::Mapping) all resolve through here.

use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::{Attribute, Mutability, ResourceSchemas, Schema};
use crate::get_ci;

/// How every schema URN, and so every URN-qualified path, begins (case-insensitively).
pub const URN_PREFIX: &str = "urn:";

/// Whether `text` starts with [`URN_PREFIX`], i.e. names its schema.
pub fn is_urn(text: &str) -> bool {
    text.get(..URN_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(URN_PREFIX))
}

/// The common attributes of every resource (RFC 7643 §3.1), which no schema lists: `id` and `meta`
/// (assigned by the server), `externalId` (the client's), `schemas`.
pub fn common_attributes() -> &'static [Attribute] {
    static COMMON: OnceLock<Vec<Attribute>> = OnceLock::new();
    COMMON.get_or_init(|| {
        serde_json::from_value(json!([
            {"name": "id", "caseExact": true, "mutability": "readOnly", "returned": "always"},
            {"name": "externalId", "caseExact": true},
            {"name": "schemas", "type": "reference", "multiValued": true,
             "mutability": "readOnly", "returned": "always"},
            {"name": "meta", "type": "complex", "mutability": "readOnly", "subAttributes": [
                {"name": "resourceType", "caseExact": true, "mutability": "readOnly"},
                {"name": "created", "type": "dateTime", "mutability": "readOnly"},
                {"name": "lastModified", "type": "dateTime", "mutability": "readOnly"},
                {"name": "version", "caseExact": true, "mutability": "readOnly"},
                {"name": "location", "type": "reference", "caseExact": true, "mutability": "readOnly"}
            ]}
        ]))
        .expect("a literal of this crate; common_attributes_are_well_formed proves it parses")
    })
}

/// The common attribute called `name` (case-insensitively), if it is one.
pub fn common_attribute(name: &str) -> Option<&'static Attribute> {
    super::find(common_attributes(), name)
}

/// Whether `name` is a common attribute only the server sets (`id`, `meta`, `schemas`): a client
/// may echo it from a representation, and it is then ignored.
pub fn server_assigned(name: &str) -> bool {
    common_attribute(name).is_some_and(|a| a.mutability == Mutability::ReadOnly)
}

/// An attribute path resolved against a resource type's schemas, borrowing their definitions.
#[derive(Debug, Clone, Copy)]
pub struct AttrPath<'s> {
    /// The extension schema holding the attribute (`None`: the core schema or a common attribute);
    /// for a path that names a schema alone, that schema, the core schema included.
    pub extension: Option<&'s Schema>,
    /// The top-level attribute (`None`: the path names a schema alone).
    pub attribute: Option<&'s Attribute>,
    /// The sub-attribute, if the path names one.
    pub sub: Option<&'s Attribute>,
}

impl<'s> AttrPath<'s> {
    /// The attribute the path ends at: its sub-attribute, else its attribute.
    pub fn leaf(&self) -> Option<&'s Attribute> {
        self.sub.or(self.attribute)
    }

    /// Whether the path names one of the [`common_attributes`].
    pub fn is_common(&self) -> bool {
        self.extension.is_none()
            && self
                .attribute
                .is_some_and(|a| common_attributes().iter().any(|c| std::ptr::eq(a, c)))
    }

    /// Where the path's value lives in a resource; `None` for a path naming a schema.
    pub fn location(&self) -> Option<Location> {
        Some(Location {
            extension: self.extension.map(|e| e.id.clone()),
            attribute: self.attribute?.name.clone(),
            sub: self.sub.map(|a| a.name.clone()),
        })
    }
}

impl ResourceSchemas {
    /// Resolves an attribute path (RFC 7644 §3.10): `name`, `name.sub`, `urn:…:name`,
    /// `urn:…:name.sub`, or an extension URN alone; the common attributes by name or behind the
    /// core schema's URN. Names match case-insensitively; `None` when the type does not define it.
    pub fn resolve(&self, path: &str) -> Option<AttrPath<'_>> {
        let (schema, rest) = self.split_urn(path)?;
        let core = schema.id == self.core.id;
        let Some(rest) = rest else {
            return Some(AttrPath {
                extension: Some(schema),
                attribute: None,
                sub: None,
            });
        };
        let (name, sub) = match rest.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (rest, None),
        };
        let attribute = match common_attribute(name).filter(|_| core) {
            Some(common) => common,
            None => schema.attribute(name)?,
        };
        let sub = match sub {
            Some(s) => Some(attribute.sub_attribute(s)?),
            None => None,
        };
        Some(AttrPath {
            extension: (!core).then_some(schema),
            attribute: Some(attribute),
            sub,
        })
    }

    /// Some clients write an extension attribute with a dot after the URN
    /// (`urn:mace:surf.nl:sram:scim:extension:User.eduPersonUniqueId`): the path with that dot read
    /// as the `:` of RFC 7644 §3.10. Accepted in filters and `sortBy`.
    pub fn undotted(&self, path: &str) -> String {
        if is_urn(path) {
            for schema in self.by_longest_urn() {
                let n = schema.id.len();
                if path
                    .get(..n)
                    .is_some_and(|p| p.eq_ignore_ascii_case(&schema.id))
                    && path.get(n..n + 1) == Some(".")
                {
                    return format!("{}:{}", schema.id, &path[n + 1..]);
                }
            }
        }
        path.to_owned()
    }

    /// The core schema and the extensions, longest URN first, so that `urn:x:User:v2:attr` is not
    /// read as `urn:x:User` + `v2:attr`.
    fn by_longest_urn(&self) -> Vec<&Schema> {
        let mut schemas: Vec<&Schema> = std::iter::once(&self.core)
            .chain(self.extensions.iter().map(|e| &e.schema))
            .collect();
        schemas.sort_by_key(|s| std::cmp::Reverse(s.id.len()));
        schemas
    }

    /// Splits a path into the schema it belongs to and the rest (`None`: the schema itself).
    fn split_urn<'a>(&self, path: &'a str) -> Option<(&Schema, Option<&'a str>)> {
        if !is_urn(path) {
            return Some((&self.core, Some(path)));
        }
        for schema in self.by_longest_urn() {
            let n = schema.id.len();
            let (Some(prefix), tail) = (path.get(..n), path.get(n..).unwrap_or_default()) else {
                continue;
            };
            if !prefix.eq_ignore_ascii_case(&schema.id) {
                continue;
            }
            if tail.is_empty() {
                return Some((schema, None));
            }
            if let Some(rest) = tail.strip_prefix(':') {
                return Some((schema, Some(rest)));
            }
        }
        None
    }
}

/// Where an attribute's value lives in a resource: `[URN,] attribute [, sub-attribute]`, each in the
/// schema's spelling. What an [`AttrPath`] leaves once the definitions are no longer needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The extension schema URN, the key of the extension's object (`None`: top level).
    pub extension: Option<String>,
    /// The top-level attribute.
    pub attribute: String,
    /// The sub-attribute.
    pub sub: Option<String>,
}

impl Location {
    /// The attribute's value in `doc`, keys matched case-insensitively.
    pub fn top<'a>(&self, doc: &'a Map<String, Value>) -> Option<&'a Value> {
        let container = match &self.extension {
            Some(urn) => get_ci(doc, urn)?.as_object()?,
            None => doc,
        };
        get_ci(container, &self.attribute)
    }

    /// The value at this location in `doc` (for a sub-attribute, of a single-valued complex
    /// attribute), keys matched exactly: for attributes the server itself normalised.
    pub fn get<'a>(&self, doc: &'a Map<String, Value>) -> Option<&'a Value> {
        let container = match &self.extension {
            Some(urn) => doc.get(urn)?.as_object()?,
            None => doc,
        };
        let v = container.get(&self.attribute)?;
        match &self.sub {
            Some(sub) => v.as_object()?.get(sub),
            None => Some(v),
        }
    }

    /// Sets the value at this location in `doc`, creating the objects on the way.
    pub fn set(&self, doc: &mut Map<String, Value>, value: Value) {
        let mut container = doc;
        if let Some(urn) = &self.extension {
            let slot = container
                .entry(urn.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(obj) = slot else { return };
            container = obj;
        }
        match &self.sub {
            None => {
                container.insert(self.attribute.clone(), value);
            }
            Some(sub) => {
                let slot = container
                    .entry(self.attribute.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(obj) = slot {
                    obj.insert(sub.clone(), value);
                }
            }
        }
    }
}

/// The path as RFC 7644 §3.10 writes it: `urn:…:attribute.sub`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.extension {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attribute)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Registry, SchemaMode};
    use crate::ResourceType;

    use super::*;

    fn users() -> ResourceSchemas {
        Registry::built_in(SchemaMode::Strict)
            .unwrap()
            .schemas(ResourceType::User)
            .clone()
    }

    #[test]
    fn common_attributes_are_well_formed() {
        let names: Vec<&str> = common_attributes()
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["id", "externalId", "schemas", "meta"]);
        assert!(
            common_attribute("META")
                .unwrap()
                .sub_attribute("lastmodified")
                .is_some()
        );
    }

    #[test]
    fn attributes_resolve_case_insensitively_and_by_urn() {
        let u = users();
        let p = u.resolve("USERNAME").unwrap();
        assert_eq!(p.attribute.unwrap().name, "userName");
        assert!(p.extension.is_none());
        let p = u.resolve("name.GIVENNAME").unwrap();
        assert_eq!(p.sub.unwrap().name, "givenName");
        let p = u
            .resolve("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
            .unwrap();
        assert_eq!(p.attribute.unwrap().name, "manager");
        assert_eq!(p.sub.unwrap().name, "value");
        let p = u
            .resolve("urn:ietf:params:scim:schemas:core:2.0:User:userName")
            .unwrap();
        assert!(p.extension.is_none());
        let p = u
            .resolve("urn:mace:surf.nl:sram:scim:extension:user")
            .unwrap();
        assert!(p.attribute.is_none());
        assert!(u.resolve("nope").is_none());
        assert!(u.resolve("urn:x:y:userName").is_none());
    }

    #[test]
    fn common_attributes_resolve_by_name_or_behind_the_core_urn_only() {
        let u = users();
        let p = u.resolve("Meta.LastModified").unwrap();
        assert!(p.is_common());
        assert_eq!(p.location().unwrap().to_string(), "meta.lastModified");
        let p = u
            .resolve("urn:ietf:params:scim:schemas:core:2.0:User:externalid")
            .unwrap();
        assert!(p.is_common());
        assert!(!u.resolve("userName").unwrap().is_common());
        assert!(u.resolve("meta.nope").is_none());
        assert!(
            u.resolve("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:id")
                .is_none()
        );
    }

    #[test]
    fn the_dotted_urn_form_reads_as_the_colon_form() {
        let u = users();
        let sram = "urn:mace:surf.nl:sram:scim:extension:User";
        assert_eq!(
            u.undotted(&format!("{sram}.eduPersonUniqueId")),
            format!("{sram}:eduPersonUniqueId")
        );
        assert_eq!(u.undotted("name.givenName"), "name.givenName");
    }

    #[test]
    fn a_location_reads_and_writes_where_the_path_points() {
        let u = users();
        let loc = u
            .resolve("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
            .and_then(|p| p.location())
            .unwrap();
        let mut doc = Map::new();
        loc.set(&mut doc, json!("m1"));
        assert_eq!(loc.get(&doc), Some(&json!("m1")));
        assert_eq!(
            loc.to_string(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"
        );
    }
}
