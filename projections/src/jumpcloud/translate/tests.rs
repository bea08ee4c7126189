use base64::Engine;
use serde_json::json;

use super::*;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn names(attrs: &[Value]) -> Vec<(&str, &str)> {
    attrs
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["value"].as_str().unwrap()))
        .collect()
}

#[test]
fn a_upn_becomes_its_local_part_and_a_plain_name_stays() {
    assert_eq!(username("alice@corp.example").unwrap(), "alice");
    assert_eq!(username("bob.smith-2_x").unwrap(), "bob.smith-2_x");
    assert_eq!(username(" carol ").unwrap(), "carol");
}

#[test]
fn a_username_jumpcloud_refuses_is_refused_with_the_broken_rule() {
    let long = "a".repeat(31);
    for (input, why) in [
        ("@corp.example", "is empty"),
        ("1alice", "does not start with a letter"),
        ("al ice", "holds a character"),
        ("jöns", "holds a character"),
        (long.as_str(), "longer than 30"),
    ] {
        let err = username(input).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(why), "{input}: {text}");
        assert!(
            text.contains(input),
            "{input}: the reason names the userName: {text}"
        );
    }
    assert_eq!(username(&"a".repeat(30)).unwrap().len(), 30);
}

#[test]
fn the_email_is_the_primary_then_another_address_then_the_username() {
    let doc = json!({"userName": "alice@corp.example", "emails": [
        {"value": "not an address"},
        {"value": "a2@corp.example", "type": "home"},
        {"value": "a1@corp.example", "primary": true},
    ]});
    let u = user(&doc).unwrap();
    assert_eq!(u.email, "a1@corp.example");
    assert_eq!(u.body["alternateEmail"], "a2@corp.example");
    let u = user(&json!({"userName": "alice@corp.example"})).unwrap();
    assert_eq!(
        (u.username.as_str(), u.email.as_str()),
        ("alice", "alice@corp.example")
    );
    assert_eq!(u.body["alternateEmail"], "");
}

#[test]
fn a_user_without_any_address_is_refused() {
    let err = user(&json!({"userName": "alice", "emails": [{"value": "x"}]})).unwrap_err();
    assert_eq!(err, Untranslatable::NoEmail("alice".into()));
    assert!(err.to_string().contains("requires an email"));
}

#[test]
fn active_gives_state_and_suspended_together() {
    let on = user(&json!({"userName": "a@b.example"})).unwrap().body;
    assert_eq!(
        (on["state"].clone(), on["suspended"].clone()),
        (json!("ACTIVATED"), json!(false))
    );
    let off = user(&json!({"userName": "a@b.example", "active": false}))
        .unwrap()
        .body;
    assert_eq!(
        (off["state"].clone(), off["suspended"].clone()),
        (json!("SUSPENDED"), json!(true))
    );
    assert!(
        off.get("activated").is_none(),
        "activated is the password status"
    );
}

#[test]
fn names_are_sent_and_missing_ones_are_cleared() {
    let doc = json!({"userName": "a@b.example", "displayName": "Alice A",
        "name": {"givenName": "Alice", "familyName": "Ames", "honorificPrefix": "Dr."}});
    let body = user(&doc).unwrap().body;
    assert_eq!(body["firstname"], "Alice");
    assert_eq!(body["lastname"], "Ames");
    assert_eq!(body["middlename"], "");
    assert_eq!(body["displayname"], "Alice A");
    assert_eq!(
        names(body["attributes"].as_array().unwrap()),
        [("nameHonorificPrefix", "Dr.")]
    );
}

#[test]
fn the_rest_goes_under_attributes_with_clean_names_and_cut_values() {
    let doc = json!({
        "userName": "a@b.example", "id": "x", "meta": {"version": "W/\"1\""},
        "schemas": ["s"], "externalId": "ext-1", "title": "Boss", "nickName": null,
        "phoneNumbers": [{"value": "+31 20", "type": "work"}],
        "x-odd_name": "v", "title2": "clash",
        "very_long_attribute_name_that_goes_on_and_on": "l".repeat(2000),
        ENTERPRISE: {"employeeNumber": "42", "title": "again",
                     "manager": {"value": "m1", "$ref": "../Users/m1"}},
    });
    let attrs = attributes(doc.as_object().unwrap());
    let got = names(&attrs);
    assert_eq!(
        got.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [
            "externalId",
            "phoneNumbers",
            "title",
            "title2",
            "verylongattributenamethatgoeson",
            "xoddname",
            "employeeNumber",
            "managerRef",
            "managerValue",
            "title3",
        ]
    );
    for (name, _) in &got {
        assert!(
            name.len() < 32 && name.chars().all(|c| c.is_ascii_alphanumeric()),
            "{name}"
        );
    }
    let phones: Value = serde_json::from_str(got[1].1).unwrap();
    assert_eq!(
        phones,
        json!([{"type": "work", "value": "+31 20"}]),
        "compact JSON"
    );
    assert_eq!(got[4].1.len(), VALUE_MAX);
    assert_eq!(got[9].1, "again");
}

#[test]
fn ssh_keys_come_from_certificates_that_decode_to_openssh_lines() {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let doc = json!({"x509Certificates": [
        {"value": b64("ssh-ed25519 AAAAC3Nza alice@laptop\n")},
        {"value": b64("ssh-rsa AAAAB3Nza")},
        {"value": b64("ssh-ed25519 AAAAC3Nza alice@laptop")},
        {"value": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"},
        {"value": "%%% not base64"},
    ]});
    let keys = ssh_keys(doc.as_object().unwrap());
    assert_eq!(
        keys,
        [
            SshKey {
                name: "scimd:alice@laptop".into(),
                public_key: "ssh-ed25519 AAAAC3Nza alice@laptop".into()
            },
            SshKey {
                name: "scimd:key2".into(),
                public_key: "ssh-rsa AAAAB3Nza".into()
            },
        ]
    );
}

#[test]
fn a_group_is_its_name_and_needs_one() {
    assert_eq!(
        group(&json!({"displayName": "Ops"})).unwrap(),
        json!({"name": "Ops"})
    );
    assert_eq!(
        group(&json!({"displayName": " "})).unwrap_err(),
        Untranslatable::NoGroupName
    );
}
