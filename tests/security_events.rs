//! Security events against a running scimd: SETs pushed (RFC 8935) to a receiver of the test's
//! own that verifies every signature and every RFC 8417 / RFC 9967 rule, through a receiver
//! outage, a refused SET (parked, visible in /status, retried on command) and a replay that yields
//! the same `jti` sequence; the JWKS and ServiceProviderConfig's `securityEvents`; settings that
//! cannot work stop start-up.

mod common;

use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use common::sets::{Key, Mode, Receiver, verify};
use common::{Opts, Scimd, USER_SCHEMA};
use serde_json::{Value, json};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";
const ISSUER: &str = "https://idm.example.org";
const AUDIENCE: &str = "https://rp.example.org/Feeds/default";
const PUSH_TOKEN: &str = "receiver-token-7";
const WAIT: Duration = Duration::from_secs(30);

fn opts(receiver: &Receiver) -> Opts {
    Opts::default()
        .env("SET_ISSUER", ISSUER)
        .env("SET_AUDIENCE", AUDIENCE)
        .env("SET_PUSH_URL", &receiver.url)
        .env("SET_PUSH_TOKEN", PUSH_TOKEN)
        .env("SET_PUSH_ALLOW_HTTP", "true")
}

/// The `jti`s of the default feed up to the log's end: `default:{position}:0` for each event.
fn jtis(received: &[common::sets::Received]) -> Vec<String> {
    received.iter().map(|r| r.jti.clone()).collect()
}

fn user(name: &str, active: bool) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": name, "externalId": format!("ext-{name}"), "active": active})
}

async fn status_of_push(s: &Scimd) -> Value {
    s.client().get("/status").await.expect(200).json()["subscribers"]["set-push"].clone()
}

#[tokio::test]
async fn pushed_sets_are_signed_follow_the_log_survive_an_outage_and_replay_with_the_same_jtis() {
    let receiver = Receiver::start().await;
    // The file projection runs beside the pusher (PROJECTIONS unset: its default), each with its
    // own checkpoint.
    let mut s = Scimd::start(
        opts(&receiver)
            .env("SET_SIGNING_SECRET", SECRET)
            .unset("PROJECTIONS"),
    )
    .await;
    let api = s.client();
    let key = Key::Secret(SECRET.as_bytes().to_vec());

    // Discovery: RFC 9967 §4 securityEvents; no public key to publish for HS256.
    let spc = api.get("/ServiceProviderConfig").await.expect(200).json();
    // `Prefer: respond-async` is honoured (ASYNC_REQUESTS defaults to true).
    assert_eq!(spc["securityEvents"]["asyncRequest"], "request");
    let uris = spc["securityEvents"]["eventUris"]
        .as_array()
        .expect("eventUris");
    assert!(uris.contains(&json!("urn:ietf:params:scim:event:prov:create:notice")));
    let jwks = reqwest::get(s.root_url("/.well-known/jwks.json"))
        .await
        .expect("jwks");
    assert_eq!(jwks.status(), 200);
    assert_eq!(
        jwks.json::<Value>().await.expect("json"),
        json!({"keys": []})
    );

    // One event of each kind: create (active), put (deactivated), patch, group with a member,
    // delete (which also takes the user out of the group: a server-made patch of the group).
    let alice = api.create_user(user("alice", true)).await;
    let id = alice["id"].as_str().expect("id").to_owned();
    api.put(&format!("/Users/{id}"), &user("alice", false))
        .await
        .expect(200);
    api.patch(
        &format!("/Users/{id}"),
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName", "value": "Alice"}]}),
    )
    .await
    .expect(200);
    let group = api.create_group_with("staff", &[&id]).await;
    api.delete(&format!("/Users/{id}")).await.expect(204);

    let got = receiver.wait_for(6, WAIT).await;
    assert_eq!(
        jtis(&got),
        (1..=6)
            .map(|p| format!("default:{p}:0"))
            .collect::<Vec<_>>(),
        "one SET per event, in log order"
    );
    let claims: Vec<Value> = got
        .iter()
        .map(|r| {
            assert_eq!(r.content_type, "application/secevent+jwt");
            assert_eq!(r.accept, "application/json");
            assert_eq!(r.authorization, format!("Bearer {PUSH_TOKEN}"));
            verify(&r.token, &key, ISSUER, Some(AUDIENCE))
        })
        .collect();
    let kinds: Vec<Vec<&str>> = claims
        .iter()
        .map(|c| {
            let mut k: Vec<&str> = c["events"]
                .as_object()
                .expect("events")
                .keys()
                .map(|u| u.trim_start_matches("urn:ietf:params:scim:event:"))
                .collect();
            k.sort_unstable();
            k
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            vec!["prov:activate", "prov:create:notice"],
            vec!["prov:deactivate", "prov:put:notice"],
            vec!["prov:patch:notice"],
            vec!["prov:create:notice"],
            vec!["prov:delete"],
            vec!["prov:patch:notice"],
        ]
    );
    assert_eq!(
        claims[0]["sub_id"],
        json!({"format": "scim", "uri": format!("/Users/{id}"), "id": id, "externalId": "ext-alice"})
    );
    assert_eq!(
        claims[3]["sub_id"]["uri"],
        format!("/Groups/{}", group["id"].as_str().expect("id"))
    );
    assert_eq!(
        claims[4]["txn"], claims[5]["txn"],
        "the delete and its cascade share a transaction"
    );

    // The receiver is down for N events, then up: all N arrive, in order, none twice.
    receiver.set_mode(Mode::Down);
    for i in 0..5 {
        api.create_user(user(&format!("u{i}"), true)).await;
    }
    let deadline = std::time::Instant::now() + WAIT;
    while status_of_push(&s).await["lastError"].is_null() {
        assert!(
            std::time::Instant::now() < deadline,
            "the outage shows in /status"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_of_push(&s).await["state"], "retrying");
    receiver.set_mode(Mode::Accept);
    let got = receiver.wait_for(11, WAIT).await;
    let all = jtis(&got);
    assert_eq!(
        all,
        (1..=11)
            .map(|p| format!("default:{p}:0"))
            .collect::<Vec<_>>()
    );

    // Replay: the checkpoint back at the start, the same jti sequence again.
    s.stop().await;
    let out = s
        .cli(&["replay", "--projection", "set-push"])
        .await
        .success();
    assert!(out.stderr.contains("checkpoint reset"), "{out:?}");
    receiver.clear();
    s.start_again().await;
    let again = receiver.wait_for(11, WAIT).await;
    assert_eq!(
        jtis(&again),
        all,
        "a replay re-sends the same jtis in the same order"
    );
    for r in &again {
        verify(&r.token, &key, ISSUER, Some(AUDIENCE));
    }
}

/// A PKCS#8 PEM EC P-256 private key.
fn ec_key_pem() -> String {
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("key");
    let der = key.to_pkcs8v1().expect("pkcs8");
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn es256_sets_verify_with_the_served_jwks_and_a_refused_set_is_parked_until_retried() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("set-key.pem");
    std::fs::write(&key_path, ec_key_pem()).expect("write key");
    let s = Scimd::start(
        opts(&receiver)
            .env("SET_SIGNING_KEY", key_path.to_str().expect("utf-8 path"))
            .env("EVENT_MODE", "full"),
    )
    .await;
    let api = s.client();
    let jwks = reqwest::get(s.root_url("/.well-known/jwks.json"))
        .await
        .expect("jwks");
    assert_eq!(
        jwks.headers()["content-type"].to_str().expect("ascii"),
        "application/jwk-set+json"
    );
    let jwks: jsonwebtoken::jwk::JwkSet = jwks.json().await.expect("a JWK set");
    assert_eq!(jwks.keys.len(), 1);
    assert!(
        !serde_json::to_string(&jwks)
            .expect("json")
            .contains("\"d\""),
        "public only"
    );
    let key = Key::Jwks(jwks);

    receiver.refuse("default:2:0");
    for name in ["a", "b", "c"] {
        api.create_user(user(name, true)).await;
    }
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(
        jtis(&got),
        ["default:1:0", "default:3:0"],
        "the SET after a refused one goes on"
    );
    assert_eq!(receiver.refused(), ["default:2:0"]);
    let first = verify(&got[0].token, &key, ISSUER, Some(AUDIENCE));
    let full = &first["events"]["urn:ietf:params:scim:event:prov:create:full"];
    assert_eq!(
        full["data"]["userName"], "a",
        "full: the resource after the change"
    );
    assert!(full["data"].get("password").is_none());

    // The checkpoint is saved after the SET that follows the parked one is delivered, so the
    // receiver may hold it a moment before /status shows the checkpoint past it.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = status_of_push(&s).await;
        if status["parked"] == 1 && status["checkpoint"] == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the parked SET shows in /status and the checkpoint passes it: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let verified = s.cli(&["log", "verify"]).await;
    assert!(
        verified.status.success(),
        "a SET parked under its jti is sound bookkeeping: {verified:?}"
    );

    receiver.accept_all();
    s.cli(&["projection", "retry", "set-push"]).await.success();
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(
        got[2].jti, "default:2:0",
        "the retry delivers the parked SET, same jti"
    );
    verify(&got[2].token, &key, ISSUER, Some(AUDIENCE));
    let deadline = std::time::Instant::now() + WAIT;
    while status_of_push(&s).await["parked"] != 0 {
        assert!(std::time::Instant::now() < deadline, "unparked in /status");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn settings_that_cannot_deliver_signed_sets_stop_start_up() {
    let s = Scimd::start_default().await;
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--set-signing-secret",
                SECRET,
                "--set-push-url",
                "http://127.0.0.1:9/events",
                "--set-issuer",
                ISSUER,
            ],
            "SET_PUSH_ALLOW_HTTP",
        ),
        (&["--set-signing-secret", SECRET], "SET_ISSUER"),
        (
            &["--set-signing-secret", "short", "--set-issuer", ISSUER],
            "SET_SIGNING_SECRET",
        ),
        (
            &["--set-push-url", "https://rp.example.org/events"],
            "SET_SIGNING",
        ),
        (
            &[
                "--set-signing-secret",
                SECRET,
                "--set-issuer",
                ISSUER,
                "--set-push-url",
                "https://rp.example.org/events",
                "--set-push-token",
                "s3cret\n",
            ],
            "SET_PUSH_TOKEN",
        ),
    ];
    for (flags, named) in cases {
        let mut args = vec!["serve"];
        args.extend_from_slice(flags);
        let out = s.cli(&args).await;
        assert!(!out.status.success(), "{out:?}");
        assert!(
            out.stderr.contains(named),
            "the error names {named}: {out:?}"
        );
        assert!(
            !out.stderr.contains("locked"),
            "refused before the store is opened: {out:?}"
        );
    }
    // SETs off: no securityEvents, no JWKS.
    let spc = s
        .client()
        .get("/ServiceProviderConfig")
        .await
        .expect(200)
        .json();
    assert!(spc.get("securityEvents").is_none());
    let jwks = reqwest::get(s.root_url("/.well-known/jwks.json"))
        .await
        .expect("answer");
    assert_eq!(jwks.status(), 404);
}

#[tokio::test]
async fn sets_are_pushed_with_amqp_and_a_projection_on_each_from_its_own_checkpoint() {
    let Some((broker, _shared)) = common::amqp::Broker::shared().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let queue_name = common::amqp::unique("sets");
    let mut queue = common::amqp::Queue::open(&broker.url, &queue_name).await;
    let s = Scimd::start(
        opts(&receiver)
            .env("SET_SIGNING_SECRET", SECRET)
            .env("AMQP", &broker.url)
            .env("QUEUE", &queue_name)
            .unset("PROJECTIONS"),
    )
    .await;
    let api = s.client();
    let a = api.create_user(user("a", true)).await;
    let g = api
        .create_group_with("g", &[a["id"].as_str().expect("id")])
        .await;
    api.delete(&format!("/Groups/{}", g["id"].as_str().expect("id")))
        .await
        .expect(204);

    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(jtis(&got), ["default:1:0", "default:2:0", "default:3:0"]);
    let key = Key::Secret(SECRET.as_bytes().to_vec());
    for r in &got {
        verify(&r.token, &key, ISSUER, Some(AUDIENCE));
    }
    assert_eq!(
        queue.take(3, WAIT).await.len(),
        3,
        "AMQP got every event too"
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = s.client().get("/status").await.expect(200).json();
        let at = |name: &str| status["subscribers"][name]["checkpoint"].as_u64();
        if [at("set-push"), at("amqp"), at("file")] == [Some(3); 3] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every subscriber reaches the end of the log: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    queue.delete().await;
}

/// The `misc:asyncresp` SETs among `received`: their `jti` is `default:{txn}`, not
/// `default:{position}:{index}`.
fn asyncresp_sets(received: &[common::sets::Received], key: &Key) -> Vec<Value> {
    received
        .iter()
        .filter(|r| {
            let mut parts = r.jti.rsplitn(3, ':');
            let (index, position) = (parts.next(), parts.next());
            !(index.is_some_and(|i| i.parse::<u64>().is_ok())
                && position.is_some_and(|p| p.parse::<u64>().is_ok()))
        })
        .map(|r| verify(&r.token, key, ISSUER, Some(AUDIENCE)))
        .collect()
}

#[tokio::test]
async fn an_async_requests_outcomes_are_pushed_as_asyncresp_sets_once_each() {
    const ASYNCRESP: &str = "urn:ietf:params:scim:event:misc:asyncresp";
    let receiver = Receiver::start().await;
    let mut s = Scimd::start(opts(&receiver).env("SET_SIGNING_SECRET", SECRET)).await;
    let api = s.client();
    let key = Key::Secret(SECRET.as_bytes().to_vec());
    let accepted = |r: common::Resp| {
        assert_eq!(r.status, 202, "{r:?}");
        r.header("set-txn").expect("Set-Txn")
    };
    let txn = accepted(
        common::send(
            api.request_json(reqwest::Method::POST, "/Users", &user("amy", true))
                .header("Prefer", "respond-async"),
        )
        .await,
    );
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": user("bob", true)},
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G",
                      "members": [{"value": "bulkId:b"}]}},
        ]
    });
    let bulk_txn = accepted(
        common::send(
            api.request_json(reqwest::Method::POST, "/Bulk", &bulk)
                .header("Prefer", "respond-async"),
        )
        .await,
    );
    // Three provisioning SETs (amy, bob, G) and three asyncresp ones (the POST, each operation).
    let got = receiver.wait_for(6, WAIT).await;
    let outcomes = asyncresp_sets(&got, &key);
    let txns: Vec<&str> = outcomes
        .iter()
        .map(|c| c["txn"].as_str().unwrap())
        .collect();
    let expected = [
        txn.clone(),
        format!("{bulk_txn}:0"),
        format!("{bulk_txn}:1"),
    ];
    let mut sorted = txns.clone();
    sorted.sort_unstable();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(sorted, want, "{outcomes:?}");
    for claims in &outcomes {
        let t = claims["txn"].as_str().unwrap();
        assert_eq!(claims["jti"], json!(format!("default:{t}")), "{claims}");
        let events = claims["events"].as_object().unwrap();
        assert_eq!(events.len(), 1, "{claims}");
        let op = &events[ASYNCRESP];
        assert_eq!(op["status"], json!("201"), "{claims}");
        assert!(op.get("bulkId").is_none(), "{claims}");
        let location = op["location"].as_str().unwrap();
        assert!(
            location.ends_with(claims["sub_id"]["uri"].as_str().unwrap()),
            "{claims}"
        );
    }
    let single = outcomes.iter().find(|c| c["txn"] == json!(txn)).unwrap();
    assert_eq!(single["events"][ASYNCRESP]["method"], json!("POST"));

    // Its own checkpoint: a write after the outcomes is pushed after their checkpoint is saved;
    // once /status shows the log checkpoint past it, a restart pushes only what comes next.
    s.client().create_user_named("dan").await;
    let got = receiver.wait_for(7, WAIT).await;
    let dan: u64 = got[6].jti.split(':').nth(1).unwrap().parse().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while status_of_push(&s).await["checkpoint"] != json!(dan) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            status_of_push(&s).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.restart().await;
    s.client().create_user_named("cleo").await;
    let got = receiver.wait_for(8, WAIT).await;
    assert_eq!(
        asyncresp_sets(&got, &key).len(),
        3,
        "no asyncresp SET pushed twice: {:?}",
        jtis(&got)
    );
    assert_eq!(
        got[7].jti,
        format!("default:{}:0", dan + 1),
        "{:?}",
        jtis(&got)
    );

    // An asyncresp SET the receiver refuses for good is parked and pushed again by a retry. The
    // receiver is down while the request is made, so that it knows the jti to refuse in time.
    receiver.set_mode(Mode::Down);
    let eve = accepted(
        common::send(
            s.client()
                .request_json(reqwest::Method::POST, "/Users", &user("eve", true))
                .header("Prefer", "respond-async"),
        )
        .await,
    );
    let eve_jti = format!("default:{eve}");
    receiver.refuse(&eve_jti);
    receiver.set_mode(Mode::Accept);
    receiver.wait_for(9, WAIT).await;
    let deadline = std::time::Instant::now() + WAIT;
    while status_of_push(&s).await["parked"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            status_of_push(&s).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.refused(), std::slice::from_ref(&eve_jti));
    receiver.accept_all();
    s.cli(&["projection", "retry", "set-push"]).await.success();
    let got = receiver.wait_for(10, WAIT).await;
    assert_eq!(
        got[9].jti, eve_jti,
        "the retry pushes the parked asyncresp SET, same jti"
    );
    let claims = verify(&got[9].token, &key, ISSUER, Some(AUDIENCE));
    assert_eq!(claims["txn"], json!(eve));
}
