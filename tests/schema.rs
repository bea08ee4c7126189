//! The schema engine seen from outside: what the SCIM schemas make the API accept, reject, keep
//! unique and show, and what discovery says about them.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SRAM_USER: &str = "urn:mace:surf.nl:sram:scim:extension:User";
const SRAM_GROUP: &str = "urn:mace:surf.nl:sram:scim:extension:Group";
const VO: &str = "urn:temporaryNamespace:scim:schemas:voPerson:User";
const ACME: &str = "urn:example:acme:2.0:User";

/// A SCHEMA_PATH with one User extension using the types the built-in schemas lack.
fn acme_schema_path() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let ext = dir.path().join("extensions").join("User");
    std::fs::create_dir_all(&ext).unwrap();
    let schema = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": ACME,
        "name": "AcmeUser",
        "description": "Acme badges",
        "attributes": [
            {"name": "hiredAt", "type": "dateTime"},
            {"name": "salary", "type": "decimal"},
            {"name": "photo", "type": "binary"},
            {"name": "badge", "type": "string", "uniqueness": "server", "caseExact": true},
            {"name": "clearance", "type": "string", "required": true}
        ]
    });
    std::fs::write(ext.join("acme.json"), schema.to_string()).unwrap();
    dir
}

fn detail(body: &Value) -> String {
    body["detail"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn attribute_names_are_case_insensitive_and_output_uses_the_schema_spelling() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api
        .create_user(json!({
            "SCHEMAS": [USER_SCHEMA, ENTERPRISE.to_uppercase()],
            "USERNAME": "bjensen",
            "name": {"GIVENNAME": "Barbara"},
            "Emails": [{"VALUE": "b@example.org", "Type": "work"}],
            ENTERPRISE.to_uppercase(): {"EmployeeNumber": "701984"}
        }))
        .await;
    let id = id_of(&u);
    for doc in [u, api.user(&id).await] {
        assert_eq!(doc["userName"], "bjensen", "{doc}");
        assert_eq!(doc["name"]["givenName"], "Barbara", "{doc}");
        assert_eq!(doc["emails"][0]["value"], "b@example.org", "{doc}");
        assert_eq!(doc[ENTERPRISE]["employeeNumber"], "701984", "{doc}");
        assert_eq!(doc["schemas"], json!([USER_SCHEMA, ENTERPRISE]), "{doc}");
        assert!(doc.get("USERNAME").is_none(), "{doc}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn boolean_strings_from_entra_are_stored_as_booleans() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api
        .create_user(json!({"userName": "entra", "active": "False",
            "emails": [{"value": "e@example.org", "primary": "True"}]}))
        .await;
    let u = api.user(&id_of(&u)).await;
    assert_eq!(u["active"], json!(false), "{u}");
    assert_eq!(u["emails"][0]["primary"], json!(true), "{u}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_types_are_400_invalid_value_naming_the_attribute() {
    let dir = acme_schema_path();
    let s = Scimd::start(Opts::default().env("SCHEMA_PATH", dir.path().to_str().unwrap())).await;
    let api = s.client();
    let ok = json!({"clearance": "low"});
    let with = |field: &str, value: Value| {
        let mut ext = ok.clone();
        ext[field] = value;
        json!({"userName": format!("t-{field}"), ACME: ext})
    };
    for (body, name) in [
        (json!({"userName": "a", "active": "yes"}), "active"),
        (json!({"userName": "a", "nickName": 5}), "nickName"),
        (
            json!({"userName": "a", "profileUrl": "not a url"}),
            "profileUrl",
        ),
        (
            json!({"userName": "a", "x509Certificates": [{"value": "%%%"}]}),
            "x509Certificates.value",
        ),
        (
            json!({"userName": "a", SRAM_USER: {"sramInactiveDays": "ten"}}),
            "sramInactiveDays",
        ),
        (with("hiredAt", json!("yesterday")), "hiredAt"),
        (with("salary", json!("lots")), "salary"),
        (with("photo", json!("not base64!")), "photo"),
    ] {
        let r = api.post("/Users", &body).await;
        let err = r.expect_scim_error(400, Some("invalidValue"));
        assert!(detail(&err).contains(name), "{name}: {err}");
    }
    // The same types, well-formed, are accepted.
    let u = api
        .create_user(json!({"userName": "typed", ACME: {"clearance": "low",
            "hiredAt": "2024-05-01T12:00:00+02:00", "salary": 1234.5, "photo": "aGVsbG8="}}))
        .await;
    assert_eq!(u[ACME]["salary"], json!(1234.5), "{u}");
    assert_eq!(api.list("/Users").await["totalResults"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn required_attributes_are_enforced_on_create_and_replace() {
    let dir = acme_schema_path();
    let s = Scimd::start(Opts::default().env("SCHEMA_PATH", dir.path().to_str().unwrap())).await;
    let api = s.client();
    let err = api
        .post("/Users", &json!({"userName": "x", ACME: {"badge": "b1"}}))
        .await
        .expect_scim_error(400, Some("invalidValue"));
    assert!(detail(&err).contains("clearance"), "{err}");
    let err = api
        .post(
            "/Users",
            &json!({"userName": "x", VO: {"voPersonStatus": [{"type": "t"}]}}),
        )
        .await
        .expect_scim_error(400, Some("invalidValue"));
    assert!(detail(&err).contains("voPersonStatus.value"), "{err}");
    let u = api.create_user_named("x").await;
    let err = api
        .put(
            &format!("/Users/{}", id_of(&u)),
            &json!({"displayName": "no userName"}),
        )
        .await
        .expect_scim_error(400, Some("invalidValue"));
    assert!(detail(&err).contains("userName"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_attributes_in_input_are_ignored() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api
        .create_user(json!({"userName": "ro", "groups": [{"value": "forged"}],
            "meta": {"version": "W/\"99\""}}))
        .await;
    assert!(u.get("groups").is_none(), "{u}");
    assert_eq!(version_of(&u), "W/\"1\"");
    let g = api
        .create_group(json!({"displayName": "G",
            "members": [{"value": id_of(&u), "display": "Forged Name"}]}))
        .await;
    assert_eq!(g["members"][0]["display"], "ro", "{g}");
}

#[tokio::test(flavor = "multi_thread")]
async fn immutable_attributes_keep_their_value_and_a_change_is_400_mutability() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api
        .create_user(json!({"userName": "imm", VO: {"voPersonID": [{"value": "vo-1"}]}}))
        .await;
    let path = format!("/Users/{}", id_of(&u));
    // Left out on replace (it is returned only on request, so clients cannot echo it): kept.
    api.put(&path, &json!({"userName": "imm", "displayName": "I"}))
        .await
        .expect(200);
    let kept = api
        .get(&format!("{path}?attributes={VO}:voPersonID"))
        .await
        .expect(200)
        .json();
    assert_eq!(kept[VO]["voPersonID"][0]["value"], "vo-1", "{kept}");
    let err = api
        .put(
            &path,
            &json!({"userName": "imm", VO: {"voPersonID": [{"value": "vo-2"}]}}),
        )
        .await
        .expect_scim_error(400, Some("mutability"));
    assert!(detail(&err).contains("voPersonID"), "{err}");
    assert_eq!(version_of(&api.user(&id_of(&u)).await), "W/\"2\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_attributes_and_undeclared_extensions_are_400_naming_them() {
    let s = Scimd::start_default().await;
    let api = s.client();
    for (body, name) in [
        (
            json!({"userName": "u", "favouriteColour": "red"}),
            "favouriteColour",
        ),
        (
            json!({"userName": "u", "schemas": [USER_SCHEMA, "urn:example:unknown"]}),
            "urn:example:unknown",
        ),
        (
            json!({"userName": "u", "urn:example:unknown": {"a": 1}}),
            "urn:example:unknown",
        ),
        (
            json!({"userName": "u", ENTERPRISE: {"shoeSize": 42}}),
            "shoeSize",
        ),
        (
            json!({"userName": "u", "emails": [{"value": "a@b", "colour": "red"}]}),
            "emails.colour",
        ),
        // The Group extension is not a User extension.
        (
            json!({"userName": "u", SRAM_GROUP: {"urn": "x"}}),
            SRAM_GROUP,
        ),
    ] {
        let err = api
            .post("/Users", &body)
            .await
            .expect_scim_error(400, Some("invalidValue"));
        assert!(detail(&err).contains(name), "{name}: {err}");
    }
    assert_eq!(api.list("/Users").await["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn lenient_mode_keeps_undeclared_attributes_verbatim() {
    let s = Scimd::start(Opts::default().env("SCHEMA_MODE", "lenient")).await;
    let api = s.client();
    let u = api
        .create_user(json!({"userName": "legacy", "favouriteColour": "red",
            "schemas": [USER_SCHEMA, "urn:example:legacy"],
            "urn:example:legacy": {"anything": [1, 2]}}))
        .await;
    let u = api.user(&id_of(&u)).await;
    assert_eq!(u["favouriteColour"], "red", "{u}");
    assert_eq!(u["urn:example:legacy"], json!({"anything": [1, 2]}), "{u}");
    assert!(
        u["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!("urn:example:legacy")),
        "{u}"
    );
    // Declared attributes are still checked.
    api.post("/Users", &json!({"userName": "x", "active": 3}))
        .await
        .expect_scim_error(400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread")]
async fn schemas_lists_the_core_urn_and_the_extensions_present() {
    let s = Scimd::start_default().await;
    let api = s.client();
    // An extension sent without being listed in `schemas` is listed in the output.
    let u = api
        .create_user(json!({"schemas": [USER_SCHEMA, SRAM_USER], "userName": "s",
            ENTERPRISE: {"department": "R&D"}}))
        .await;
    assert_eq!(u["schemas"], json!([USER_SCHEMA, ENTERPRISE]), "{u}");
    let g = api
        .create_group(
            json!({"displayName": "CO", SRAM_GROUP: {"labels": ["a", "b"],
            "links": [{"name": "wiki", "value": "https://wiki.example.org"}]}}),
        )
        .await;
    assert_eq!(g["schemas"], json!([GROUP_SCHEMA, SRAM_GROUP]), "{g}");
    assert_eq!(g[SRAM_GROUP]["labels"], json!(["a", "b"]), "{g}");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_most_one_primary_value() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let err = api
        .post(
            "/Users",
            &json!({"userName": "p", "emails": [
                {"value": "a@example.org", "primary": true},
                {"value": "b@example.org", "primary": true}]}),
        )
        .await
        .expect_scim_error(400, Some("invalidValue"));
    assert!(detail(&err).contains("emails"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn uniqueness_comes_from_the_schemas_and_is_freed_on_change() {
    let dir = acme_schema_path();
    let s = Scimd::start(Opts::default().env("SCHEMA_PATH", dir.path().to_str().unwrap())).await;
    let api = s.client();
    let a = api
        .create_user(json!({"userName": "a",
            VO: {"voPersonID": [{"value": "VO-1"}], "voPersonToken": [{"value": "Tok"}]},
            ACME: {"clearance": "x", "badge": "B1"}}))
        .await;
    // voPersonID: global, caseExact false on its value.
    api.post(
        "/Users",
        &json!({"userName": "b", VO: {"voPersonID": [{"value": "vo-1"}]}}),
    )
    .await
    .expect_scim_error(409, Some("uniqueness"));
    // voPersonToken: server, caseExact true on its value.
    api.post(
        "/Users",
        &json!({"userName": "b", VO: {"voPersonToken": [{"value": "Tok"}]}}),
    )
    .await
    .expect_scim_error(409, Some("uniqueness"));
    api.create_user(json!({"userName": "b", VO: {"voPersonToken": [{"value": "tok"}]}}))
        .await;
    // An extension from SCHEMA_PATH, caseExact true.
    api.post(
        "/Users",
        &json!({"userName": "c", ACME: {"clearance": "x", "badge": "B1"}}),
    )
    .await
    .expect_scim_error(409, Some("uniqueness"));
    api.create_user(json!({"userName": "c", ACME: {"clearance": "x", "badge": "b1"}}))
        .await;
    // userName stays unique case-insensitively.
    api.post("/Users", &json!({"userName": "A"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
    // A replace that drops a unique value frees it; a delete frees the rest.
    api.put(
        &format!("/Users/{}", id_of(&a)),
        &json!({"userName": "a", ACME: {"clearance": "x"}}),
    )
    .await
    .expect(200);
    api.create_user(json!({"userName": "d", ACME: {"clearance": "x", "badge": "B1"}}))
        .await;
    api.delete(&format!("/Users/{}", id_of(&a)))
        .await
        .expect(204);
    api.create_user(json!({"userName": "e", VO: {"voPersonID": [{"value": "vo-1"}]}}))
        .await;
    let out = s.cli(&["log", "verify"]).await.success();
    assert!(out.stderr.contains("ok"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn returned_and_the_attributes_parameters_shape_every_response() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let body = json!({"userName": "r", "password": "S3cret!", "displayName": "R",
        "name": {"givenName": "Rita", "familyName": "Ray"},
        "emails": [{"value": "r@example.org", "type": "work"}],
        VO: {"voPersonID": [{"value": "vo-r"}], "voPersonStatus": [{"value": "active"}]}});
    // POST with attributes=
    let r = api
        .post("/Users?attributes=userName,name.familyName", &body)
        .await
        .expect(201);
    let u = r.json();
    let id = id_of(&u);
    assert_eq!(u["userName"], "r", "{u}");
    assert_eq!(u["name"], json!({"familyName": "Ray"}), "{u}");
    assert!(
        u.get("displayName").is_none() && u.get("emails").is_none(),
        "{u}"
    );
    assert_eq!(u["schemas"], json!([USER_SCHEMA]), "{u}");
    // Default GET: password never, voPersonID (returned: request) not unless asked.
    let u = api.user(&id).await;
    assert!(u.get("password").is_none(), "{u}");
    assert!(u[VO].get("voPersonID").is_none(), "{u}");
    assert_eq!(u[VO]["voPersonStatus"][0]["value"], "active", "{u}");
    // GET asking for the request-only attribute and for password: only the first appears.
    let u = api
        .get(&format!("/Users/{id}?attributes={VO}:voPersonID,password"))
        .await
        .expect(200)
        .json();
    assert_eq!(u[VO]["voPersonID"][0]["value"], "vo-r", "{u}");
    assert!(
        u.get("password").is_none() && u.get("userName").is_none(),
        "{u}"
    );
    assert_eq!(u["id"], json!(id), "id is always returned: {u}");
    // GET with excludedAttributes (sub-attribute and a whole extension); id cannot be excluded.
    let u = api
        .get(&format!(
            "/Users/{id}?excludedAttributes=emails.type,{VO},id"
        ))
        .await
        .expect(200)
        .json();
    assert_eq!(u["emails"], json!([{"value": "r@example.org"}]), "{u}");
    assert!(u.get(VO).is_none(), "{u}");
    assert_eq!(u["schemas"], json!([USER_SCHEMA]), "{u}");
    assert_eq!(u["id"], json!(id), "{u}");
    // PUT with excludedAttributes.
    let mut replace = body.clone();
    replace["displayName"] = json!("R2");
    let u = api
        .put(
            &format!("/Users/{id}?excludedAttributes=displayName"),
            &replace,
        )
        .await
        .expect(200)
        .json();
    assert!(u.get("displayName").is_none(), "{u}");
    assert_eq!(api.user(&id).await["displayName"], "R2");
    // List with attributes= and excludedAttributes=members on Groups.
    let l = api.list("/Users?attributes=userName").await;
    assert_eq!(
        l["Resources"][0],
        json!({"schemas": [USER_SCHEMA], "id": id, "userName": "r"})
    );
    api.create_group_with("G", &[&id]).await;
    let l = api.list("/Groups?excludedAttributes=members").await;
    assert!(l["Resources"][0].get("members").is_none(), "{l}");
    assert_eq!(l["Resources"][0]["displayName"], "G", "{l}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemas_and_resource_types_are_discoverable_without_a_key() {
    let dir = acme_schema_path();
    let s = Scimd::start(Opts::default().env("SCHEMA_PATH", dir.path().to_str().unwrap())).await;
    let anon = s.anonymous();
    let l = anon.get("/Schemas").await.expect(200).json();
    assert_eq!(l["schemas"], json!([LIST_SCHEMA]), "{l}");
    let ids: Vec<&str> = l["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    for id in [
        USER_SCHEMA,
        GROUP_SCHEMA,
        ENTERPRISE,
        SRAM_USER,
        SRAM_GROUP,
        VO,
        ACME,
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert_eq!(l["totalResults"], json!(ids.len()), "{l}");
    for r in l["Resources"].as_array().unwrap() {
        assert_eq!(r["meta"]["resourceType"], "Schema", "{r}");
        assert!(
            r["meta"]["location"]
                .as_str()
                .unwrap()
                .ends_with(r["id"].as_str().unwrap())
        );
    }
    let user = anon
        .get(&format!("/Schemas/{USER_SCHEMA}"))
        .await
        .expect(200)
        .json();
    let attrs = user["attributes"].as_array().unwrap();
    let password = attrs.iter().find(|a| a["name"] == "password").unwrap();
    assert_eq!(password["returned"], "never", "{password}");
    assert_eq!(password["mutability"], "writeOnly", "{password}");
    let user_name = attrs.iter().find(|a| a["name"] == "userName").unwrap();
    assert_eq!(user_name["uniqueness"], "server", "{user_name}");
    anon.get("/Schemas/urn:example:nope")
        .await
        .expect_scim_error(404, None);

    let l = anon.get("/ResourceTypes").await.expect(200).json();
    assert_eq!(l["totalResults"], 2, "{l}");
    let rt = anon.get("/ResourceTypes/User").await.expect(200).json();
    assert_eq!(rt["endpoint"], "/Users", "{rt}");
    assert_eq!(rt["schema"], USER_SCHEMA, "{rt}");
    assert_eq!(rt["meta"]["resourceType"], "ResourceType", "{rt}");
    let ext: Vec<Value> = rt["schemaExtensions"].as_array().unwrap().clone();
    for urn in [ENTERPRISE, SRAM_USER, VO, ACME] {
        assert!(
            ext.contains(&json!({"schema": urn, "required": false})),
            "{urn} missing: {rt}"
        );
    }
    let g = anon.get("/ResourceTypes/Group").await.expect(200).json();
    assert_eq!(
        g["schemaExtensions"],
        json!([{"schema": SRAM_GROUP, "required": false}])
    );
    anon.get("/ResourceTypes/Nope")
        .await
        .expect_scim_error(404, None);
    for path in ["/Schemas", "/ResourceTypes", "/ServiceProviderConfig"] {
        let r = send(anon.request_json(Method::POST, path, &json!({}))).await;
        assert_eq!(r.status, 405, "POST {path}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_schema_path_stops_start_up_naming_the_path_and_reason() {
    let s = Scimd::start_default().await;
    let out = s
        .cli(&["serve", "--schema-path", "/nonexistent/scimd-schemas"])
        .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("/nonexistent/scimd-schemas"), "{out:?}");
    let dir = tempfile::tempdir().unwrap();
    let ext = dir.path().join("extensions").join("Group");
    std::fs::create_dir_all(&ext).unwrap();
    std::fs::write(ext.join("broken.json"), "{\"id\": \"urn:x\", ").unwrap();
    let out = s
        .cli(&["serve", "--schema-path", dir.path().to_str().unwrap()])
        .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("broken.json"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_groups_are_computed_direct_and_indirect_and_survive_cycles() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("member").await);
    let inner = id_of(&api.create_group_with("Inner", &[&u]).await);
    let outer = id_of(&api.create_group_with("Outer", &[&inner]).await);
    // Close a cycle: Outer (which contains Inner) becomes a member of Inner.
    api.put(
        &format!("/Groups/{inner}"),
        &json!({"displayName": "Inner", "members": [{"value": u}, {"value": outer}]}),
    )
    .await
    .expect(200);
    let user = api.user(&u).await;
    let mut groups: Vec<Value> = user["groups"].as_array().expect("groups").clone();
    groups.sort_by_key(|g| g["display"].as_str().unwrap_or_default().to_owned());
    assert_eq!(groups.len(), 2, "{user}");
    assert_eq!(groups[0]["value"], json!(inner), "{user}");
    assert_eq!(groups[0]["type"], "direct", "{user}");
    assert_eq!(groups[0]["display"], "Inner", "{user}");
    assert!(
        groups[0]["$ref"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Groups/{inner}")),
        "{user}"
    );
    assert_eq!(groups[1]["value"], json!(outer), "{user}");
    assert_eq!(groups[1]["type"], "indirect", "{user}");
    // It is readOnly: a client cannot set it, and lists show it too.
    let put = api
        .put(
            &format!("/Users/{u}"),
            &json!({"userName": "member", "groups": [{"value": "forged"}]}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(put["groups"].as_array().unwrap().len(), 2, "{put}");
    let l = api.list("/Users").await;
    assert_eq!(
        l["Resources"][0]["groups"].as_array().unwrap().len(),
        2,
        "{l}"
    );
    let u2 = api.create_user_named("loner").await;
    assert!(u2.get("groups").is_none(), "{u2}");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_mapping_sets_the_target_from_the_source_on_every_write() {
    let mapping = json!({"userName": format!("{SRAM_USER}:eduPersonUniqueId")}).to_string();
    let s = Scimd::start(Opts::default().env("USER_MAPPING", &mapping)).await;
    let api = s.client();
    // userName is required, but the mapping supplies it.
    let u = api
        .create_user(json!({SRAM_USER: {"eduPersonUniqueId": "abc@sram.example.org"}}))
        .await;
    assert_eq!(u["userName"], "abc@sram.example.org", "{u}");
    let u = api
        .put(
            &format!("/Users/{}", id_of(&u)),
            &json!({"userName": "ignored", SRAM_USER: {"eduPersonUniqueId": "def@sram.example.org"}}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(u["userName"], "def@sram.example.org", "{u}");
    // An invalid mapping stops start-up, naming the setting.
    let out = s
        .cli(&[
            "serve",
            "--user-mapping",
            "{\"userName\": \"noSuchAttribute\"}",
        ])
        .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("USER_MAPPING"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newly_declared_unique_attribute_is_indexed_for_existing_resources_at_start_up() {
    // Stored verbatim while no schema declared it…
    let mut s = Scimd::start(Opts::default().env("SCHEMA_MODE", "lenient")).await;
    let api = s.client();
    let old = api
        .create_user(json!({"userName": "old", ACME: {"clearance": "x", "badge": "B1"}}))
        .await;
    // A second holder of the same value: the index can keep only one of them.
    let twin = api
        .create_user(json!({"userName": "twin", ACME: {"clearance": "x", "badge": "B1"}}))
        .await;
    s.stop().await;
    // …then SCHEMA_PATH declares `badge` unique: the existing value is enforced from the first write.
    let dir = acme_schema_path();
    s.opts = Opts::default().env("SCHEMA_PATH", dir.path().to_str().unwrap());
    s.start_again().await;
    let api = s.client();
    api.post(
        "/Users",
        &json!({"userName": "new", ACME: {"clearance": "x", "badge": "B1"}}),
    )
    .await
    .expect_scim_error(409, Some("uniqueness"));
    // Both holders stay writable while they keep the value (a replace that keeps it is no new
    // claim, and takes the index row from neither); a third is still refused.
    let same = |name: &str| json!({"userName": name, ACME: {"clearance": "x", "badge": "B1"}});
    api.put(&format!("/Users/{}", id_of(&old)), &same("old"))
        .await
        .expect(200);
    api.put(&format!("/Users/{}", id_of(&twin)), &same("twin"))
        .await
        .expect(200);
    api.post(
        "/Users",
        &json!({"userName": "new", ACME: {"clearance": "x", "badge": "B1"}}),
    )
    .await
    .expect_scim_error(409, Some("uniqueness"));
    let out = s.cli(&["log", "verify"]).await.success();
    assert!(out.stderr.contains("ok"), "{out:?}");
}
