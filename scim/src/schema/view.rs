//! What a response shows of a resource: the `returned` characteristic (RFC 7643 §7) together with
//! the `attributes` and `excludedAttributes` query parameters (RFC 7644 §3.4.2.5, §3.9).
//!
//! - `never` (e.g. `password`) and writeOnly attributes are never shown; `always` (`id`, `schemas`)
//!   always is.
//! - `request` (e.g. voPerson `voPersonID`) only when `attributes` names it.
//! - `default`: shown unless `attributes` is given and does not name it (or its parent or one of its
//!   sub-attributes), or `excludedAttributes` names it.
//!
//! Paths use the attribute-path syntax (`name.givenName`, `urn:…:User:employeeNumber`, an extension
//! URN alone) and match case-insensitively. A name the schemas do not know is kept as written (in
//! lenient mode a resource may hold such attributes); a URN the resource type does not use selects
//! nothing.

use serde_json::{Map, Value};

use super::path::{common_attribute, is_urn};
use super::{Attribute, AttributeType, Location, Mutability, Registry, ResourceSchemas, Returned};
use crate::ResourceType;

/// One path of `attributes` / `excludedAttributes`, resolved; names compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selected {
    /// A schema URN alone: every attribute of that extension.
    Schema(String),
    /// An attribute or sub-attribute.
    At(Location),
}

/// The `attributes` and `excludedAttributes` of one request (RFC 7644 §3.4.2.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    attributes: Vec<String>,
    excluded: Vec<String>,
    /// Paths the client specified in a write (RFC 7643 §7: `returned: request` attributes are
    /// returned "in response to any PUT, POST, or PATCH operations if the attribute was specified").
    specified: Vec<String>,
}

impl View {
    /// From the raw, comma-separated query parameter values.
    pub fn new(attributes: Option<&str>, excluded: Option<&str>) -> View {
        let split = |s: Option<&str>| -> Vec<String> {
            s.unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        };
        View {
            attributes: split(attributes),
            excluded: split(excluded),
            specified: Vec::new(),
        }
    }

    /// This view, also showing the `returned: request` attributes among `paths` (those a
    /// write specified).
    pub fn with_specified(mut self, paths: Vec<String>) -> View {
        self.specified = paths;
        self
    }

    /// The request's `attributes`, `excludedAttributes` and specified paths, resolved against `s`.
    fn resolved(&self, s: &ResourceSchemas) -> [Vec<Selected>; 3] {
        let all = |paths: &[String]| paths.iter().filter_map(|p| resolve(s, p)).collect();
        [
            all(&self.attributes),
            all(&self.excluded),
            all(&self.specified),
        ]
    }

    /// Whether the core attribute `name` of `rt` can appear in the response at all: lets the caller
    /// skip computing it (a Group's members with `excludedAttributes=members`).
    pub fn shows(&self, registry: &Registry, rt: ResourceType, name: &str) -> bool {
        let s = registry.schemas(rt);
        let [attributes, excluded, specified] = self.resolved(s);
        let selection = Selection {
            attributes: &attributes,
            excluded: &excluded,
            specified: &specified,
            only: !self.attributes.is_empty(),
        };
        selection
            .attribute(None, name, s.core.attribute(name), Value::Null)
            .is_some()
    }

    /// Applies the view and the `returned` rules to a full representation of `rt`, and sets
    /// `schemas` to the core URN plus the extensions left in it.
    pub fn apply(&self, registry: &Registry, rt: ResourceType, doc: Value) -> Value {
        let Value::Object(doc) = doc else {
            return doc;
        };
        let s = registry.schemas(rt);
        let [attributes, excluded, specified] = self.resolved(s);
        let selection = Selection {
            attributes: &attributes,
            excluded: &excluded,
            specified: &specified,
            only: !self.attributes.is_empty(),
        };
        let mut out = Map::new();
        for (key, value) in doc {
            // `schemas` and `id` are `returned: always` (RFC 7643 §3.1).
            if common_attribute(&key).is_some_and(|a| a.returned == Returned::Always) {
                out.insert(key, value);
                continue;
            }
            if let Some(ext) = s.extension(&key) {
                let Value::Object(fields) = value else {
                    continue;
                };
                let ext_id = &ext.schema.id;
                let mut kept = Map::new();
                for (name, v) in fields {
                    let attr = ext.schema.attribute(&name);
                    if let Some(v) = selection.attribute(Some(ext_id), &name, attr, v) {
                        kept.insert(name, v);
                    }
                }
                if !kept.is_empty() {
                    out.insert(key, Value::Object(kept));
                }
                continue;
            }
            let attr = s.core.attribute(&key);
            if let Some(v) = selection.attribute(None, &key, attr, value) {
                out.insert(key, v);
            }
        }
        if let Some(Value::Array(schemas)) = out.get("schemas") {
            let kept: Vec<Value> = schemas
                .iter()
                .filter(|u| {
                    u.as_str()
                        .is_some_and(|u| u.eq_ignore_ascii_case(&s.core.id) || out.contains_key(u))
                })
                .cloned()
                .collect();
            out.insert("schemas".into(), Value::Array(kept));
        }
        Value::Object(out)
    }
}

/// The resolved paths of one request, as the rules for one attribute read them.
struct Selection<'a> {
    attributes: &'a [Selected],
    excluded: &'a [Selected],
    specified: &'a [Selected],
    only: bool,
}

impl Selection<'_> {
    /// What is shown of one top-level attribute (`attr`: its definition, if declared).
    fn attribute(
        &self,
        ext: Option<&str>,
        name: &str,
        attr: Option<&Attribute>,
        value: Value,
    ) -> Option<Value> {
        let returned = attr.map_or(Returned::Default, shown_as);
        let same = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a.is_none() && b.is_none(),
        };
        // The selected location of this attribute, if `p` selects it or one of its sub-attributes.
        let on = |p: &'_ Selected| -> Option<Option<String>> {
            match p {
                Selected::At(l)
                    if same(l.extension.as_deref(), ext)
                        && l.attribute.eq_ignore_ascii_case(name) =>
                {
                    Some(l.sub.as_ref().map(|s| s.to_ascii_lowercase()))
                }
                _ => None,
            }
        };
        let whole_ext = |p: &Selected| matches!(p, Selected::Schema(urn) if same(Some(urn), ext));
        let named = self.attributes.iter().any(|p| on(p) == Some(None));
        let named_subs: Vec<String> = self.attributes.iter().filter_map(on).flatten().collect();
        let excluded_whole = self
            .excluded
            .iter()
            .any(|p| on(p) == Some(None) || whole_ext(p));
        let excluded_subs: Vec<String> = self.excluded.iter().filter_map(on).flatten().collect();
        let show = match returned {
            Returned::Never => false,
            Returned::Always => true,
            Returned::Request => {
                named
                    || !named_subs.is_empty()
                    || self
                        .specified
                        .iter()
                        .any(|p| on(p).is_some() || whole_ext(p))
            }
            Returned::Default if self.only => {
                named || !named_subs.is_empty() || self.attributes.iter().any(whole_ext)
            }
            Returned::Default => !excluded_whole,
        };
        if !show {
            return None;
        }
        let Some(attr) = attr.filter(|a| a.kind == AttributeType::Complex) else {
            return Some(value);
        };
        let only_subs = if named { &[][..] } else { &named_subs[..] };
        let filter = |v: Value| -> Option<Value> {
            let Value::Object(fields) = v else {
                return Some(v);
            };
            let kept: Map<String, Value> = fields
                .into_iter()
                .filter(|(k, _)| {
                    let sub = attr.sub_attribute(k);
                    let k = k.to_ascii_lowercase();
                    let asked = only_subs.contains(&k);
                    match sub.map_or(Returned::Default, shown_as) {
                        Returned::Never => false,
                        Returned::Always => true,
                        Returned::Request => asked,
                        Returned::Default => {
                            (only_subs.is_empty() || asked) && !excluded_subs.contains(&k)
                        }
                    }
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        };
        match value {
            // An empty list (a Group without members) stays as it is stored.
            Value::Array(items) if items.is_empty() => Some(Value::Array(items)),
            Value::Array(items) => {
                let items: Vec<Value> = items.into_iter().filter_map(filter).collect();
                (!items.is_empty()).then_some(Value::Array(items))
            }
            other => filter(other),
        }
    }
}

/// When an attribute is shown; writeOnly ones never are (RFC 7643 §7), whatever `returned` says.
fn shown_as(attr: &Attribute) -> Returned {
    if attr.mutability == Mutability::WriteOnly {
        Returned::Never
    } else {
        attr.returned
    }
}

/// Resolves one path; names outside the schemas (lenient extras) are kept as written, and URNs the
/// type does not use are dropped.
fn resolve(s: &ResourceSchemas, path: &str) -> Option<Selected> {
    if let Some(p) = s.resolve(path) {
        return match (p.location(), p.extension) {
            (Some(at), _) => Some(Selected::At(at)),
            (None, Some(schema)) => Some(Selected::Schema(schema.id.clone())),
            (None, None) => None,
        };
    }
    if is_urn(path) {
        return None;
    }
    let (attribute, sub) = match path.split_once('.') {
        Some((a, s)) => (a.to_owned(), Some(s.to_owned())),
        None => (path.to_owned(), None),
    };
    Some(Selected::At(Location {
        extension: None,
        attribute,
        sub,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::SchemaMode;
    use super::*;

    const VO: &str = "urn:temporaryNamespace:scim:schemas:voPerson:User";
    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn doc() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", VO, ENT],
            "id": "1",
            "userName": "b",
            "password": "hash",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "a@b", "type": "work"}],
            "meta": {"resourceType": "User"},
            VO: {"voPersonID": [{"value": "v"}], "voPersonStatus": [{"value": "ok"}]},
            ENT: {"employeeNumber": "42"},
        })
    }

    fn apply(attributes: Option<&str>, excluded: Option<&str>) -> Value {
        let r = Registry::built_in(SchemaMode::Strict).unwrap();
        View::new(attributes, excluded).apply(&r, ResourceType::User, doc())
    }

    #[test]
    fn write_only_attributes_are_never_shown() {
        let r = Registry::built_in(SchemaMode::Strict).unwrap();
        let mut attr = r.schemas(ResourceType::User).core.attributes[0].clone();
        attr.mutability = Mutability::WriteOnly;
        attr.returned = Returned::Always;
        assert_eq!(shown_as(&attr), Returned::Never);
    }

    #[test]
    fn shows_tells_whether_an_attribute_can_appear() {
        let r = Registry::built_in(SchemaMode::Strict).unwrap();
        let g = ResourceType::Group;
        assert!(View::new(None, None).shows(&r, g, "members"));
        assert!(!View::new(None, Some("MEMBERS")).shows(&r, g, "members"));
        assert!(!View::new(Some("displayName"), None).shows(&r, g, "members"));
        assert!(View::new(Some("members.value"), None).shows(&r, g, "members"));
    }

    #[test]
    fn default_view_hides_never_and_request() {
        let d = apply(None, None);
        assert!(d.get("password").is_none());
        assert!(d[VO].get("voPersonID").is_none());
        assert_eq!(d[VO]["voPersonStatus"][0]["value"], "ok");
        assert_eq!(d["meta"]["resourceType"], "User");
    }

    #[test]
    fn attributes_keeps_only_what_is_named_plus_always() {
        let d = apply(Some("USERNAME,name.familyName"), None);
        assert_eq!(d["userName"], "b");
        assert_eq!(d["id"], "1");
        assert_eq!(d["name"], json!({"familyName": "Jensen"}));
        assert!(d.get("emails").is_none());
        assert!(d.get(VO).is_none());
        assert_eq!(
            d["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
        );
    }

    #[test]
    fn request_attributes_appear_when_named() {
        let d = apply(Some(&format!("{VO}:voPersonID")), None);
        assert_eq!(d[VO]["voPersonID"][0]["value"], "v");
        assert!(d[VO].get("voPersonStatus").is_none());
        let d = apply(Some(ENT), None);
        assert_eq!(d[ENT]["employeeNumber"], "42");
    }

    #[test]
    fn excluded_attributes_are_removed_but_not_always_ones() {
        let d = apply(
            None,
            Some("emails.type,name,id,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
        );
        assert_eq!(d["emails"], json!([{"value": "a@b"}]));
        assert!(d.get("name").is_none());
        assert_eq!(d["id"], "1");
        assert!(d.get(ENT).is_none());
        assert!(!d["schemas"].as_array().unwrap().contains(&json!(ENT)));
    }
}
