//! Reading the LDAP layouts back: every entry under the Users and Groups OUs as a SCIM document.
//!
//! - `device` (the earlier server's): the JSON in `info`, plus `id` from the RDN, `userName` from
//!   `uid` and `displayName`; a group's members from its `member` DNs.
//! - `inetorgperson`: the attributes the layout writes (`uid`, `displayName`, `givenName`, `sn`,
//!   `mail`, `title`, `employeeNumber`, `member`), since it keeps no JSON.
//!
//! A member DN under the Users OU is a User, under the Groups OU a Group; one elsewhere keeps its
//! RDN value without a type, and the empty DN (the `groupOfNames` placeholder) is no member.
//! Nothing is written: the OUs are not created.

use std::collections::HashMap;

use async_trait::async_trait;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, Scope, SearchEntry};
use serde_json::{Map, Value, json};

use super::{Layout, LdapSettings, NO_MEMBER, OPERATION_TIMEOUT, bind, describe, unavailable};
use crate::source::{Held, Source, check_document, unreadable};
use crate::{ProjectionError, ResourceKind};

/// The enterprise extension, where `employeeNumber` lives.
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The two OUs of a directory, read.
#[derive(Debug)]
pub struct LdapSource {
    settings: LdapSettings,
    ldap: Ldap,
}

impl LdapSource {
    /// Connects and binds as the projection does.
    ///
    /// # Errors
    /// As [`super::LdapProjection::connect`].
    pub async fn connect(settings: LdapSettings) -> Result<Self, ProjectionError> {
        let ldap = bind(&settings).await?;
        Ok(LdapSource { settings, ldap })
    }
}

#[async_trait]
impl Source for LdapSource {
    async fn read(&mut self, kind: ResourceKind) -> Result<Vec<Held>, ProjectionError> {
        let ou = self.settings.ou(kind);
        let adapters: Vec<Box<dyn Adapter<'_, &str, Vec<&str>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(500)),
        ];
        let mut ldap = self.ldap.clone();
        let mut stream = ldap
            .with_timeout(OPERATION_TIMEOUT)
            .streaming_search_with(adapters, &ou, Scope::OneLevel, "(objectClass=*)", vec!["*"])
            .await
            .map_err(|e| unavailable(&e))?;
        let mut entries = Vec::new();
        while let Some(entry) = stream.next().await.map_err(|e| unavailable(&e))? {
            entries.push(SearchEntry::construct(entry));
        }
        let result = stream.finish().await;
        match result.rc {
            0 => Ok(entries
                .into_iter()
                .map(|e| held(&self.settings, kind, e))
                .collect()),
            32 => Err(ProjectionError::Config(format!(
                "ldap: {ou} does not exist: {}",
                describe(result.rc, &result.text)
            ))),
            rc => Err(ProjectionError::Unavailable(format!(
                "ldap: searching {ou}: {}",
                describe(rc, &result.text)
            ))),
        }
    }
}

/// One entry as a resource.
fn held(settings: &LdapSettings, kind: ResourceKind, entry: SearchEntry) -> Held {
    let Some((id, _)) = split_rdn(&entry.dn) else {
        return unreadable(entry.dn, "the DN does not start with cn=<id>");
    };
    let attrs: HashMap<String, Vec<String>> = entry
        .attrs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let first = |name: &str| attrs.get(name).and_then(|v| v.first()).cloned();
    if let Some(reason) = other_layout(settings.layout, &attrs) {
        return unreadable(entry.dn, reason);
    }
    let mut doc = match settings.layout {
        Layout::Device => match first("info").map(|i| serde_json::from_str::<Value>(&i)) {
            Some(Ok(Value::Object(info))) => info,
            Some(Ok(_)) => return unreadable(entry.dn, "info is not a JSON object"),
            Some(Err(e)) => return unreadable(entry.dn, format!("info is not JSON: {e}")),
            None => Map::new(),
        },
        Layout::InetOrgPerson => inet_org_person(kind, &id, &attrs),
    };
    if kind == ResourceKind::User
        && let Some(uid) = first("uid")
    {
        doc.insert("userName".into(), json!(uid));
    }
    if let Some(name) = first("displayname") {
        doc.insert("displayName".into(), json!(name));
    }
    if kind == ResourceKind::Group {
        let members: Vec<Value> = attrs
            .get("member")
            .into_iter()
            .flatten()
            .filter(|dn| dn.as_str() != NO_MEMBER)
            .map(|dn| member(settings, dn))
            .collect();
        doc.insert("members".into(), Value::Array(members));
    }
    doc.remove("id");
    check_document(entry.dn, id, Value::Object(doc))
}

/// Why an entry was written in the other layout than `layout` reads (its attributes would be
/// lost without a word), if it was: a `device` entry keeps the resource in `info`, an
/// `inetOrgPerson` or `groupOfNames` entry in standard attributes.
fn other_layout(layout: Layout, attrs: &HashMap<String, Vec<String>>) -> Option<&'static str> {
    let classes: Vec<String> = attrs
        .get("objectclass")
        .into_iter()
        .flatten()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match layout {
        Layout::Device
            if !attrs.contains_key("info")
                && classes
                    .iter()
                    .any(|c| c == "inetorgperson" || c == "groupofnames") =>
        {
            Some(
                "an inetOrgPerson/groupOfNames entry, which LDAP_LAYOUT=device does not read; set LDAP_LAYOUT=inetorgperson",
            )
        }
        Layout::InetOrgPerson
            if attrs.contains_key("info") || classes.iter().any(|c| c == "device") =>
        {
            Some(
                "a device entry (the resource in info), which LDAP_LAYOUT=inetorgperson does not read; set LDAP_LAYOUT=device",
            )
        }
        _ => None,
    }
}

/// A member DN as `{value, type}`; a DN that does not start with `cn=<id>` stays whole as the value,
/// so that the import reports it as a member that points nowhere instead of dropping it.
fn member(settings: &LdapSettings, dn: &str) -> Value {
    let Some((value, rest)) = split_rdn(dn) else {
        return json!({"value": dn});
    };
    let under = |kind| {
        let ou = settings.ou(kind);
        normalise_dn(rest) == normalise_dn(&ou)
    };
    if under(ResourceKind::User) {
        json!({"value": value, "type": "User"})
    } else if under(ResourceKind::Group) {
        json!({"value": value, "type": "Group"})
    } else {
        json!({"value": value})
    }
}

/// The document of an `inetorgperson` entry (no JSON is kept in that layout).
fn inet_org_person(
    kind: ResourceKind,
    id: &str,
    attrs: &HashMap<String, Vec<String>>,
) -> Map<String, Value> {
    let first = |name: &str| attrs.get(name).and_then(|v| v.first()).cloned();
    let mut doc = Map::new();
    match kind {
        ResourceKind::Group => {
            doc.insert(
                "schemas".into(),
                json!(["urn:ietf:params:scim:schemas:core:2.0:Group"]),
            );
            // `cn` holds the id, then the display name.
            if let Some(name) = attrs
                .get("cn")
                .into_iter()
                .flatten()
                .find(|c| c.as_str() != id)
            {
                doc.insert("displayName".into(), json!(name));
            }
        }
        ResourceKind::User => {
            let mut schemas = vec![json!("urn:ietf:params:scim:schemas:core:2.0:User")];
            let mut name = Map::new();
            if let Some(given) = first("givenname") {
                name.insert("givenName".into(), json!(given));
            }
            // `sn` falls back to the userName (or the id) when there is no family name.
            if let Some(sn) = first("sn").filter(|sn| Some(sn) != first("uid").as_ref() && sn != id)
            {
                name.insert("familyName".into(), json!(sn));
            }
            if !name.is_empty() {
                doc.insert("name".into(), Value::Object(name));
            }
            let mails: Vec<Value> = attrs
                .get("mail")
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, m)| {
                    if i == 0 {
                        json!({"value": m, "primary": true})
                    } else {
                        json!({"value": m})
                    }
                })
                .collect();
            if !mails.is_empty() {
                doc.insert("emails".into(), Value::Array(mails));
            }
            if let Some(title) = first("title") {
                doc.insert("title".into(), json!(title));
            }
            if let Some(number) = first("employeenumber") {
                schemas.push(json!(ENTERPRISE));
                doc.insert(ENTERPRISE.into(), json!({"employeeNumber": number}));
            }
            doc.insert("schemas".into(), Value::Array(schemas));
        }
    }
    doc
}

/// The value of a DN's first RDN when it is `cn=…` (escapes undone, RFC 4514 §3), and the rest of
/// the DN after its comma.
fn split_rdn(dn: &str) -> Option<(String, &str)> {
    let (attribute, _) = dn.split_once('=')?;
    if !attribute.trim().eq_ignore_ascii_case("cn") {
        return None;
    }
    let value_start = dn.find('=')? + 1;
    let bytes = dn.as_bytes();
    let mut value: Vec<u8> = Vec::new();
    let mut i = value_start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let hex = dn
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        value.push(byte);
                        i += 3;
                    }
                    None => {
                        value.push(*bytes.get(i + 1)?);
                        i += 2;
                    }
                }
            }
            b',' => break,
            b => {
                value.push(b);
                i += 1;
            }
        }
    }
    let rest = dn.get(i + 1..).unwrap_or("");
    Some((String::from_utf8(value).ok()?, rest))
}

/// A DN for comparison: no spaces around separators, lower case.
fn normalise_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(layout: Layout) -> LdapSettings {
        LdapSettings {
            url: "ldap://localhost".into(),
            base: "dc=example,dc=org".into(),
            bind_dn: String::new(),
            password: String::new(),
            starttls: false,
            layout,
            users_ou: "Users".into(),
            groups_ou: "Groups".into(),
        }
    }

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|x| (*x).to_owned()).collect()))
                .collect(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn an_entry_of_the_other_layout_is_unreadable_not_emptied() {
        let person = entry(
            "cn=u1,ou=Users,dc=example,dc=org",
            &[
                ("objectClass", &["inetOrgPerson"]),
                ("uid", &["bjensen"]),
                ("mail", &["b@example.com"]),
            ],
        );
        let got = held(&settings(Layout::Device), ResourceKind::User, person);
        assert!(
            got.as_ref()
                .is_err_and(|e| e.reason.contains("LDAP_LAYOUT=inetorgperson")),
            "{got:?}"
        );
        let device = entry(
            "cn=u1,ou=Users,dc=example,dc=org",
            &[
                ("objectClass", &["device", "extensibleObject"]),
                ("uid", &["bjensen"]),
                ("info", &[r#"{"title":"Boss"}"#]),
            ],
        );
        let got = held(&settings(Layout::InetOrgPerson), ResourceKind::User, device);
        assert!(
            got.as_ref()
                .is_err_and(|e| e.reason.contains("LDAP_LAYOUT=device")),
            "{got:?}"
        );
    }

    #[test]
    fn a_member_dn_not_named_by_cn_is_kept_to_be_reported() {
        let group = entry(
            "cn=g1,ou=Groups,dc=example,dc=org",
            &[
                ("objectClass", &["groupOfNames"]),
                ("cn", &["g1", "Staff"]),
                (
                    "member",
                    &[
                        "uid=bob,ou=people,dc=example,dc=org",
                        "cn=u1,ou=Users,dc=example,dc=org",
                    ],
                ),
            ],
        );
        let got = held(&settings(Layout::InetOrgPerson), ResourceKind::Group, group);
        let members = got.expect("readable").document["members"].clone();
        assert_eq!(
            members,
            json!([
                {"value": "uid=bob,ou=people,dc=example,dc=org"},
                {"value": "u1", "type": "User"}
            ])
        );
    }

    #[test]
    fn rdn_values_lose_their_escapes() {
        assert_eq!(
            split_rdn("cn=a\\,b\\2Cc,ou=Users,dc=x"),
            Some(("a,b,c".to_owned(), "ou=Users,dc=x"))
        );
        assert_eq!(
            split_rdn("CN=2819c223,ou=Groups,dc=x"),
            Some(("2819c223".to_owned(), "ou=Groups,dc=x"))
        );
        assert_eq!(split_rdn("uid=x,ou=Users"), None);
        assert_eq!(
            normalise_dn("ou=Users, dc=Example,dc=org"),
            "ou=users,dc=example,dc=org"
        );
    }
}
