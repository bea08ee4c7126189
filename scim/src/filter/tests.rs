//! The filter table: filter, resource, expected outcome.

use serde_json::{Value, json};

use super::{Limits, parse};
use crate::ResourceType;
use crate::schema::{Attribute, Registry, ResourceSchemas, SchemaMode};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SRAM: &str = "urn:mace:surf.nl:sram:scim:extension:User";

/// The built-in User schemas plus a few typed attributes the built-in ones lack.
fn schemas() -> ResourceSchemas {
    let registry = Registry::built_in(SchemaMode::Strict).unwrap();
    let mut s = registry.schemas(ResourceType::User).clone();
    let extra: Vec<Attribute> = serde_json::from_value(json!([
        {"name": "age", "type": "integer"},
        {"name": "score", "type": "decimal"},
        {"name": "birth", "type": "dateTime"},
        {"name": "code", "caseExact": true},
        {"name": "tags", "multiValued": true}
    ]))
    .unwrap();
    s.core.attributes.extend(extra);
    s
}

fn bjensen() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT, SRAM],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "bjensen-X",
        "userName": "BJensen",
        "displayName": "Babs Jensen",
        "title": "",
        "nickName": null,
        "name": {"familyName": "Jensen", "givenName": "Barbara", "formatted": "Ms. Barbara J Jensen III"},
        "active": true,
        "age": 42,
        "score": 1.5e22,
        "birth": "1980-06-15T10:00:00+02:00",
        "code": "AbC",
        "tags": ["red", "Green"],
        "phoneNumbers": [],
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "meta": {
            "resourceType": "User",
            "created": "2010-01-23T04:56:22.000Z",
            "lastModified": "2011-05-13T04:42:34.000Z",
            "version": "W/\"3\""
        },
        ENT: {"employeeNumber": "701984", "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}},
        SRAM: {"eduPersonUniqueId": "bj@surf.nl"}
    })
}

/// `Some(bool)`: matches or not; `None`: refused as invalidFilter.
const CASES: &[(&str, Option<bool>)] = &[
    // eq, case-insensitive by default, case-exact when the schema says so
    (r#"userName eq "bjensen""#, Some(true)),
    (r#"USERNAME EQ "BJENSEN""#, Some(true)),
    (r#"userName eq "bjensen2""#, Some(false)),
    (r#"code eq "AbC""#, Some(true)),
    (r#"code eq "abc""#, Some(false)),
    (
        r#"id eq "2819c223-7f76-453a-919d-413861904646""#,
        Some(true),
    ),
    (
        r#"id eq "2819C223-7F76-453A-919D-413861904646""#,
        Some(false),
    ),
    (r#"externalId eq "bjensen-X""#, Some(true)),
    (r#"externalId eq "bjensen-x""#, Some(false)),
    (r#"displayName eq "babs jensen""#, Some(true)),
    // ne
    (r#"userName ne "bjensen""#, Some(false)),
    (r#"userName ne "other""#, Some(true)),
    (r#"nickName ne "x""#, Some(true)),
    (r#"undefinedAttr ne "x""#, Some(true)),
    // co sw ew
    (r#"userName co "jen""#, Some(true)),
    (r#"userName co "JEN""#, Some(true)),
    (r#"userName co "xyz""#, Some(false)),
    (r#"userName sw "bj""#, Some(true)),
    (r#"userName sw "je""#, Some(false)),
    (r#"userName ew "SEN""#, Some(true)),
    (r#"userName ew "bj""#, Some(false)),
    (r#"code co "bC""#, Some(true)),
    (r#"code co "bc""#, Some(false)),
    (r#"userName co """#, Some(true)),
    // gt ge lt le on strings
    (r#"userName gt "a""#, Some(true)),
    (r#"userName gt "c""#, Some(false)),
    (r#"userName ge "bjensen""#, Some(true)),
    (r#"userName lt "bjensen""#, Some(false)),
    (r#"userName le "BJENSEN""#, Some(true)),
    (r#"userName lt "z""#, Some(true)),
    // pr
    (r#"userName pr"#, Some(true)),
    (r#"title pr"#, Some(false)),
    (r#"nickName pr"#, Some(false)),
    (r#"phoneNumbers pr"#, Some(false)),
    (r#"emails pr"#, Some(true)),
    (r#"name pr"#, Some(true)),
    (r#"name.middleName pr"#, Some(false)),
    (r#"undefinedAttr pr"#, Some(false)),
    (r#"meta.lastModified pr"#, Some(true)),
    (r#"addresses pr"#, Some(false)),
    // sub-attributes
    (r#"name.familyName eq "jensen""#, Some(true)),
    (r#"name.FAMILYNAME co "ens""#, Some(true)),
    (r#"name.givenName sw "Bab""#, Some(false)),
    (r#"name.nope eq "x""#, Some(false)),
    // multi-valued: any element
    (r#"emails.value eq "babs@jensen.org""#, Some(true)),
    (r#"emails.value ew "@example.com""#, Some(true)),
    (r#"emails.value eq "nobody@example.com""#, Some(false)),
    (r#"emails.type eq "home""#, Some(true)),
    (r#"emails.value ne "babs@jensen.org""#, Some(false)),
    (r#"emails co "example.com""#, Some(true)),
    (r#"emails eq "BABS@JENSEN.ORG""#, Some(true)),
    (r#"tags eq "green""#, Some(true)),
    (r#"tags eq "blue""#, Some(false)),
    (r#"emails.primary eq true"#, Some(true)),
    // value paths
    (
        r#"emails[type eq "work" and value co "@example.com"]"#,
        Some(true),
    ),
    (
        r#"emails[type eq "home" and value co "@example.com"]"#,
        Some(false),
    ),
    (r#"emails[type eq "work" or value eq "x"]"#, Some(true)),
    (r#"emails[not (type eq "work")]"#, Some(true)),
    (r#"emails[primary eq true]"#, Some(true)),
    (r#"emails[primary eq false]"#, Some(false)),
    (r#"emails[display pr]"#, Some(false)),
    (r#"emails[value pr] and userName eq "bjensen""#, Some(true)),
    (r#"phoneNumbers[value pr]"#, Some(false)),
    (
        r#"emails[type eq "work"] and emails[type eq "home"]"#,
        Some(true),
    ),
    (r#"emails[nope eq "x"]"#, Some(false)),
    // logic and precedence
    (r#"userName eq "bjensen" and active eq true"#, Some(true)),
    (r#"userName eq "bjensen" and active eq false"#, Some(false)),
    (r#"userName eq "x" or active eq true"#, Some(true)),
    (r#"userName eq "x" or userName eq "y""#, Some(false)),
    (
        r#"userName eq "x" and title pr or active eq true"#,
        Some(true),
    ),
    (
        r#"active eq true or userName eq "x" and title pr"#,
        Some(true),
    ),
    (
        r#"(active eq true or userName eq "x") and title pr"#,
        Some(false),
    ),
    (r#"not (userName eq "bjensen")"#, Some(false)),
    (r#"not (userName eq "x") and not (title pr)"#, Some(true)),
    (r#"((userName eq "bjensen"))"#, Some(true)),
    (
        r#"userName eq "x" AND active eq true OR displayName co "babs""#,
        Some(true),
    ),
    // booleans
    (r#"active eq true"#, Some(true)),
    (r#"active ne true"#, Some(false)),
    (r#"active eq false"#, Some(false)),
    (r#"active gt true"#, None),
    (r#"active co true"#, None),
    (r#"active eq "true""#, None),
    // numbers
    (r#"age eq 42"#, Some(true)),
    (r#"age eq 42.0"#, Some(true)),
    (r#"age eq 4.2e1"#, Some(true)),
    (r#"age gt 41.999"#, Some(true)),
    (r#"age ge 43"#, Some(false)),
    (r#"age lt 1e100"#, Some(true)),
    (r#"age le -5"#, Some(false)),
    (r#"age ne 42"#, Some(false)),
    (r#"score gt 12345678901234567890"#, Some(true)),
    (
        r#"score lt 1234567890123456789012345678901234567890"#,
        Some(true),
    ),
    (r#"age eq "42""#, None),
    (r#"age co 4"#, None),
    (r#"age sw "4""#, None),
    // dateTime by instant
    (r#"birth eq "1980-06-15T08:00:00Z""#, Some(true)),
    (r#"birth gt "1980-06-15T09:00:00+02:00""#, Some(true)),
    (r#"birth lt "1980-06-15T07:59:59Z""#, Some(false)),
    (r#"meta.lastModified gt "2011-05-13T04:42:33Z""#, Some(true)),
    (
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        Some(false),
    ),
    (
        r#"meta.lastModified ge "2011-05-13T06:42:34+02:00""#,
        Some(true),
    ),
    (r#"meta.created lt "2011-01-01T00:00:00Z""#, Some(true)),
    (r#"meta.lastModified gt "yesterday""#, None),
    (r#"meta.lastModified gt 2011"#, None),
    (r#"meta.created co "2010""#, None),
    (r#"meta.resourceType eq "User""#, Some(true)),
    (r#"meta.resourceType eq "user""#, Some(false)),
    // null
    (r#"nickName eq null"#, Some(true)),
    (r#"userName eq null"#, Some(false)),
    (r#"userName ne null"#, Some(true)),
    (r#"title eq null"#, Some(true)),
    (r#"undefinedAttr eq null"#, Some(true)),
    (r#"undefinedAttr ne null"#, Some(false)),
    (r#"userName gt null"#, None),
    // URN-prefixed paths, both forms
    (
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
        Some(true),
    ),
    (
        r#"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:EMPLOYEENUMBER sw "70""#,
        Some(true),
    ),
    (
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#,
        Some(false),
    ),
    (
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value pr"#,
        Some(true),
    ),
    (
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#,
        Some(true),
    ),
    (
        r#"urn:mace:surf.nl:sram:scim:extension:User.eduPersonUniqueId eq "bj@surf.nl""#,
        Some(true),
    ),
    (
        r#"urn:mace:surf.nl:sram:scim:extension:User:eduPersonUniqueId eq "BJ@SURF.NL""#,
        Some(true),
    ),
    (
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bjensen""#,
        Some(true),
    ),
    (
        r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName eq "jensen""#,
        Some(true),
    ),
    (
        r#"urn:ietf:params:scim:schemas:core:2.0:User:meta.lastModified pr"#,
        Some(true),
    ),
    (r#"urn:x:unknown:attr eq "x""#, Some(false)),
    (
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User pr"#,
        None,
    ),
    // schemas
    (
        r#"schemas eq "urn:mace:surf.nl:sram:scim:extension:user""#,
        Some(true),
    ),
    // string escapes
    (r#"displayName eq "Babs\u0020Jensen""#, Some(true)),
    (r#"displayName eq "Babs Jensen\"""#, Some(false)),
    (r#"displayName eq "\ud83d\ude00""#, Some(false)),
    // complex without value sub-attribute
    (r#"name eq "x""#, None),
    // syntax errors
    (r#""#, None),
    (r#"   "#, None),
    (r#"userName"#, None),
    (r#"userName eq"#, None),
    (r#"userName eq "x"#, None),
    (r#"userName xx "x""#, None),
    (r#"userName eq bjensen"#, None),
    (r#"userName eq "x" and"#, None),
    (r#"userName eq "x" or or userName eq "y""#, None),
    (r#"(userName eq "x""#, None),
    (r#"userName eq "x")"#, None),
    (r#"not userName eq "x""#, None),
    (r#"emails[type eq "work""#, None),
    (r#"emails[type eq "work"]]"#, None),
    (r#"emails[addresses[type eq "x"]]"#, None),
    (r#"emails[name.familyName eq "x"]"#, None),
    (r#"userName[value eq "x"]"#, None),
    (r#"userName eq "\x""#, None),
    (r#"userName eq 01"#, None),
    (r#"userName eq True"#, None),
    (r#"1userName eq "x""#, None),
    (r#"user@Name eq "x""#, None),
    (r#"userName eq "x" userName eq "y""#, None),
    (r#"[userName eq "x"]"#, None),
    (r#"userName eq "x" and ()"#, None),
];

#[test]
fn the_filter_table_holds() {
    let s = schemas();
    let doc = bjensen();
    let limits = Limits::default();
    let mut failures = Vec::new();
    for (filter, expected) in CASES {
        let got = parse(filter, &limits)
            .and_then(|f| f.bind(&s))
            .map(|b| b.matches(&doc))
            .ok();
        if got != *expected {
            failures.push(format!("{filter}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(CASES.len() >= 100, "{} cases", CASES.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_say_where_and_why() {
    let limits = Limits::default();
    let e = parse(r#"userName xx "x""#, &limits).unwrap_err();
    assert_eq!(e.column, 10);
    assert!(e.reason.contains("not an operator"), "{e}");
    let e = parse(r#"userName eq "x" and"#, &limits).unwrap_err();
    assert_eq!(e.column, 20);
    let e = parse(r#"active gt true"#, &limits)
        .unwrap()
        .bind(&schemas())
        .unwrap_err();
    assert_eq!(e.column, 8);
    assert!(e.reason.contains("boolean"), "{e}");
}

#[test]
fn limits_refuse_long_deep_and_wide_filters() {
    let limits = Limits {
        max_length: 100,
        max_depth: 3,
        max_terms: 3,
    };
    let long = format!(r#"userName eq "{}""#, "x".repeat(200));
    assert!(
        parse(&long, &limits)
            .unwrap_err()
            .reason
            .contains("at most 100")
    );
    let deep = r#"((((userName pr))))"#;
    assert!(parse(deep, &limits).unwrap_err().reason.contains("nesting"));
    assert!(parse(r#"(((userName pr)))"#, &limits).is_ok());
    let wide = r#"a pr or b pr or c pr or d pr"#;
    assert!(
        parse(wide, &limits)
            .unwrap_err()
            .reason
            .contains("more than 3")
    );
}

#[test]
fn hostile_filters_fail_fast_without_panicking() {
    let limits = Limits::default();
    let s = schemas();
    let inputs = [
        "(".repeat(100_000),
        "not (".repeat(5000),
        "\"".repeat(3000),
        format!("userName eq {}", "9".repeat(3000)),
        "a[b[c[d]]]".into(),
        "é ü 日本 eq \"x\"".into(),
        "userName eq \"\u{0}\"".into(),
        "userName eq 1e999999999999999999999999".into(),
    ];
    for input in inputs {
        let _ = parse(&input, &limits).and_then(|f| f.bind(&s));
    }
}

#[test]
fn sort_keys_take_the_primary_value_else_the_first() {
    let s = schemas();
    let doc = bjensen();
    let key = |p: &str| super::BoundPath::for_sort(&s, p).and_then(|t| t.sort_key(&doc));
    assert_eq!(
        key("emails.value"),
        Some(super::SortKey::Str("bjensen@example.com".into()))
    );
    assert_eq!(
        key("emails"),
        Some(super::SortKey::Str("bjensen@example.com".into()))
    );
    assert_eq!(key("tags"), Some(super::SortKey::Str("red".into())));
    assert_eq!(key("userName"), Some(super::SortKey::Str("bjensen".into())));
    assert!(key("nickName").is_none());
    assert!(key("nope").is_none());
    assert!(key(&format!("{ENT}:employeeNumber")).is_some());
}
