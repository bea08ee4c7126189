//! Uniqueness (RFC 7643 §7 `uniqueness`): which values of a resource must be unique, as the keys of
//! the store's uniqueness index.

use serde_json::{Map, Value};

use super::{Attribute, AttributeType, Registry, Uniqueness};
use crate::ResourceType;

/// A value that must be unique (RFC 7643 §7 `uniqueness`), as the store's index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    /// The attribute: its name for core attributes (`userName`, `externalId`), `URN:name` for
    /// extension attributes.
    pub attribute: String,
    /// The value as indexed: lower-cased for caseExact false attributes.
    pub normalised: String,
    /// `uniqueness: global`: unique among all resources, not only those of one type.
    pub global: bool,
}

impl UniqueKey {
    /// The index key: scope (the resource type, or `*` for global uniqueness), attribute and
    /// normalised value, separated by U+001F.
    pub fn index_key(&self, rt: ResourceType) -> String {
        let scope = if self.global { "*" } else { rt.name() };
        format!("{scope}\u{1f}{}\u{1f}{}", self.attribute, self.normalised)
    }
}

impl Registry {
    /// A fingerprint of everything that decides which index keys [`Registry::unique_keys`] produces
    /// (which attributes are unique, in what scope, case-exact or not). The store rebuilds its
    /// uniqueness index when it changes, e.g. after SCHEMA_PATH declares a new unique attribute.
    pub fn uniqueness_fingerprint(&self) -> u64 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        // Version 1 always indexed externalId; a store built by it is reindexed when it is not unique.
        if self.external_id_unique {
            h.update(b"v1 externalId per type, caseExact\n");
        } else {
            h.update(b"v2 externalId not unique\n");
        }
        for s in [&self.users, &self.groups] {
            let scoped = std::iter::once((None, &s.core))
                .chain(s.extensions.iter().map(|e| (Some(&e.schema.id), &e.schema)));
            for (urn, schema) in scoped {
                for a in &schema.attributes {
                    if a.uniqueness == Uniqueness::None {
                        continue;
                    }
                    let value = a.sub_attribute("value");
                    h.update(format!(
                        "{}|{}|{}|{:?}|{:?}|{}|{}\n",
                        s.rt.name(),
                        urn.map_or("", String::as_str),
                        a.name,
                        a.uniqueness,
                        a.kind,
                        a.case_exact,
                        value.is_some_and(|v| v.case_exact),
                    ));
                }
            }
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    /// The values of `attributes` that must be unique (RFC 7643 §7 `uniqueness`), for the store's
    /// index. `externalId` is unique per resource type (case-exact) only with
    /// [`Registry::with_external_id_unique`].
    /// A multi-valued attribute contributes each value; a complex one its `value` sub-attribute.
    /// `caseExact: false` values are indexed lower-cased, so `BJensen` and `bjensen` collide.
    pub fn unique_keys(&self, rt: ResourceType, attributes: &Map<String, Value>) -> Vec<UniqueKey> {
        let s = self.schemas(rt);
        let mut keys: Vec<UniqueKey> = Vec::new();
        let mut push = |key: UniqueKey| {
            if !keys.contains(&key) {
                keys.push(key);
            }
        };
        for attr in &s.core.attributes {
            if let Some(v) = attributes.get(&attr.name) {
                for key in attribute_keys(attr.name.clone(), attr, v) {
                    push(key);
                }
            }
        }
        for e in &s.extensions {
            let Some(Value::Object(ext)) = attributes.get(&e.schema.id) else {
                continue;
            };
            for attr in &e.schema.attributes {
                if let Some(v) = ext.get(&attr.name) {
                    for key in attribute_keys(format!("{}:{}", e.schema.id, attr.name), attr, v) {
                        push(key);
                    }
                }
            }
        }
        if let Some(Value::String(ext)) = attributes.get("externalId")
            && self.external_id_unique
        {
            push(UniqueKey {
                attribute: "externalId".into(),
                normalised: ext.clone(),
                global: false,
            });
        }
        keys
    }
}

/// The index keys of one attribute's value(s).
fn attribute_keys(label: String, attr: &Attribute, value: &Value) -> Vec<UniqueKey> {
    if attr.uniqueness == Uniqueness::None {
        return Vec::new();
    }
    let (case_exact, values): (bool, Vec<&Value>) = match value {
        Value::Array(items) => (attr.case_exact, items.iter().collect()),
        other => (attr.case_exact, vec![other]),
    };
    let case_exact = if attr.kind == AttributeType::Complex {
        attr.sub_attribute("value")
            .map_or(case_exact, |v| v.case_exact)
    } else {
        case_exact
    };
    values
        .into_iter()
        .filter_map(|v| match v {
            Value::Object(o) if attr.kind == AttributeType::Complex => o.get("value"),
            other => Some(other),
        })
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
        .map(|s| UniqueKey {
            attribute: label.clone(),
            normalised: if case_exact { s } else { s.to_lowercase() },
            global: attr.uniqueness == Uniqueness::Global,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::SchemaMode;

    fn builtin() -> Registry {
        Registry::built_in(SchemaMode::Strict).unwrap()
    }

    #[test]
    fn unique_keys_follow_uniqueness_and_case_exactness() {
        let r = builtin().with_external_id_unique(true);
        let vo = "urn:temporaryNamespace:scim:schemas:voPerson:User";
        let attrs = json!({
            "userName": "BJensen",
            "externalId": "X1",
            vo: {"voPersonID": [{"value": "ID-1"}, {"value": "ID-2"}], "voPersonToken": [{"value": "Tok"}]}
        });
        let keys = r.unique_keys(ResourceType::User, attrs.as_object().unwrap());
        let found: Vec<(String, String, bool)> = keys
            .iter()
            .map(|k| (k.attribute.clone(), k.normalised.clone(), k.global))
            .collect();
        assert!(found.contains(&("userName".into(), "bjensen".into(), false)));
        assert!(found.contains(&("externalId".into(), "X1".into(), false)));
        assert!(found.contains(&(format!("{vo}:voPersonID"), "id-1".into(), true)));
        assert!(found.contains(&(format!("{vo}:voPersonID"), "id-2".into(), true)));
        assert!(found.contains(&(format!("{vo}:voPersonToken"), "Tok".into(), false)));
        assert_eq!(keys.len(), 5);
    }

    #[test]
    fn external_id_is_unique_only_when_asked_and_the_fingerprint_says_which() {
        let attrs = json!({"userName": "a", "externalId": "X1"});
        let plain = builtin();
        let keys = plain.unique_keys(ResourceType::User, attrs.as_object().unwrap());
        assert!(keys.iter().all(|k| k.attribute != "externalId"), "{keys:?}");
        let unique = builtin().with_external_id_unique(true);
        let keys = unique.unique_keys(ResourceType::User, attrs.as_object().unwrap());
        assert!(keys.iter().any(|k| k.attribute == "externalId"), "{keys:?}");
        assert_ne!(
            plain.uniqueness_fingerprint(),
            unique.uniqueness_fingerprint()
        );
    }
}
