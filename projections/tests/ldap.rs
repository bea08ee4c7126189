//! What only the LDAP backend does: the `inetorgperson` layout against a real slapd
//! (`SCIMD_TEST_LDAP_URL`): standard object classes found with ordinary filters, and the
//! placeholder member an empty `groupOfNames` needs.

mod common;

use common::{ldap_client, ldap_settings, members_change, server_url, unique_suffix, upsert, user};
use projections::ldap::{Layout, LdapProjection, NO_MEMBER};
use projections::{Projection, ResourceKind};
use serde_json::json;

/// The values of `attr` of the entry `dn`.
async fn values(ldap: &mut ldap3::Ldap, dn: &str, attr: &str) -> Vec<String> {
    let (entries, _) = ldap
        .search(dn, ldap3::Scope::Base, "(objectClass=*)", vec![attr])
        .await
        .and_then(|r| r.success())
        .expect("search");
    let mut out: Vec<String> = entries
        .into_iter()
        .flat_map(|e| {
            ldap3::SearchEntry::construct(e)
                .attrs
                .remove(attr)
                .unwrap_or_default()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_inetorgperson_layout_answers_ordinary_filters_and_keeps_group_of_names_valid() {
    let Some(url) = server_url(common::Which::Ldap) else {
        return;
    };
    let settings = ldap_settings(&url, &unique_suffix(), Layout::InetOrgPerson);
    let mut projection = LdapProjection::connect(settings.clone())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let mut ldap = ldap_client(&settings).await;

    let mut bjensen = user("u-1", "bjensen");
    bjensen["displayName"] = json!("Barbara Jensen");
    bjensen["name"] = json!({"givenName": "Barbara", "familyName": "Jensen"});
    bjensen["title"] = json!("Tour Guide");
    bjensen["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] =
        json!({"employeeNumber": "701984"});
    let team = common::group("g-1", "Team", &[]);
    projection
        .apply(
            &[
                upsert(ResourceKind::User, bjensen),
                upsert(ResourceKind::Group, team),
            ],
            1,
        )
        .await
        .unwrap_or_else(|e| panic!("apply: {e}"));

    let users_ou = settings.ou(ResourceKind::User);
    let (found, _) = ldap
        .search(
            &users_ou,
            ldap3::Scope::OneLevel,
            "(&(objectClass=inetOrgPerson)(uid=bjensen))",
            vec!["sn", "givenName", "mail", "employeeNumber", "title", "cn"],
        )
        .await
        .and_then(|r| r.success())
        .expect("search");
    assert_eq!(found.len(), 1, "the ordinary filter finds bjensen");
    let entry = ldap3::SearchEntry::construct(found.into_iter().next().expect("entry"));
    assert_eq!(entry.attrs["sn"], ["Jensen"]);
    assert_eq!(entry.attrs["givenName"], ["Barbara"]);
    assert_eq!(entry.attrs["mail"], ["bjensen@example.org"]);
    assert_eq!(entry.attrs["employeeNumber"], ["701984"]);
    assert_eq!(entry.attrs["title"], ["Tour Guide"]);

    // An empty groupOfNames holds the placeholder; a real member replaces it, and it comes back
    // when the last member leaves.
    let group_dn = settings.dn(ResourceKind::Group, "g-1");
    let member_dn = settings.dn(ResourceKind::User, "u-1");
    assert_eq!(values(&mut ldap, &group_dn, "member").await, [NO_MEMBER]);
    projection
        .apply(&[members_change("g-1", 2, &["u-1"], &[])], 2)
        .await
        .unwrap_or_else(|e| panic!("add: {e}"));
    assert_eq!(
        values(&mut ldap, &group_dn, "member").await,
        std::slice::from_ref(&member_dn)
    );
    projection
        .apply(&[members_change("g-1", 3, &[], &["u-1"])], 3)
        .await
        .unwrap_or_else(|e| panic!("remove: {e}"));
    assert_eq!(values(&mut ldap, &group_dn, "member").await, [NO_MEMBER]);

    projection.reset().await.expect("reset");
    for kind in [ResourceKind::User, ResourceKind::Group] {
        let _ = ldap.delete(&settings.ou(kind)).await;
    }
}
