//! RFC 8936 poll delivery of security events, against a running scimd over HTTP: poll, acknowledge
//! and poll again; acknowledgements that survive a restart and SETs that come again after one; the
//! long poll; `maxEvents` and `moreAvailable`; `setErrs`; invalid polls; feeds discovery and the
//! group-as-feed feeds. Every SET is verified with the signing secret.

mod common;

use std::collections::{BTreeSet, HashSet};

use common::*;
use serde_json::{Value, json};

/// The HS256 secret the servers of these tests sign with.
const SECRET: &str = "poll-test-secret-0123456789abcdef";
/// Event URIs (RFC 9967 §7.4).
const CREATE: &str = "urn:ietf:params:scim:event:prov:create:notice";
const PATCH: &str = "urn:ietf:params:scim:event:prov:patch:notice";
const FEED_ADD: &str = "urn:ietf:params:scim:event:feed:add";
const FEED_REMOVE: &str = "urn:ietf:params:scim:event:feed:remove";

/// A server that signs SETs with [`SECRET`], with `extra` settings.
async fn server(extra: &[(&str, &str)]) -> Scimd {
    let mut opts = Opts::default()
        .public_url("https://scim.example.org")
        .env("SET_SIGNING_SECRET", SECRET);
    for (k, v) in extra {
        opts = opts.env(k, v);
    }
    Scimd::start(opts).await
}

/// The claims of a SET whose HS256 signature [`SECRET`] verifies, after checking its JOSE header.
#[track_caller]
fn verified(token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()).expect("an HS256 key"),
        &validation,
    )
    .unwrap_or_else(|e| panic!("a SET the secret does not verify ({e}): {token}"));
    assert_eq!(data.header.typ.as_deref(), Some("secevent+jwt"));
    data.claims
}

/// What a poll answered: each SET's claims by `jti` (in log order), and `moreAvailable`.
struct Polled {
    sets: Vec<(String, Value)>,
    more: bool,
}

impl Polled {
    fn jtis(&self) -> Vec<String> {
        self.sets.iter().map(|(j, _)| j.clone()).collect()
    }

    /// The subject (`sub_id.uri`) and event URIs of each SET, in log order.
    fn subjects(&self) -> Vec<(String, BTreeSet<String>)> {
        self.sets
            .iter()
            .map(|(_, c)| {
                let uris = c["events"].as_object().unwrap().keys().cloned().collect();
                (c["sub_id"]["uri"].as_str().unwrap().to_owned(), uris)
            })
            .collect()
    }
}

/// The log position in a `jti` (`{feed}:{position}:{index}`), for ordering; an asyncresp SET's
/// (`{feed}:{txn}`) has none and sorts last.
fn place(jti: &str) -> (u64, u64) {
    let mut parts = jti.rsplitn(3, ':');
    let index = parts.next().and_then(|i| i.parse().ok());
    let position = parts.next().and_then(|p| p.parse().ok());
    match (position, index) {
        (Some(position), Some(index)) => (position, index),
        _ => (u64::MAX, 0),
    }
}

/// POSTs `body` to `feed`'s poll URL, asserting 200, and verifies every SET.
async fn poll(api: &Api, feed: &str, body: Value) -> Polled {
    let r = api
        .post(&format!("/Events/Feeds/{feed}/poll"), &body)
        .await
        .expect(200);
    assert_eq!(r.content_type().as_deref(), Some("application/json"));
    let doc = r.json();
    let mut sets: Vec<(String, Value)> = doc["sets"]
        .as_object()
        .unwrap_or_else(|| panic!("no sets object: {doc}"))
        .iter()
        .map(|(jti, token)| {
            let claims = verified(token.as_str().unwrap());
            assert_eq!(
                claims["jti"],
                json!(jti),
                "the key of `sets` is the SET's jti"
            );
            (jti.clone(), claims)
        })
        .collect();
    sets.sort_by_key(|(jti, _)| place(jti));
    let more = doc
        .get("moreAvailable")
        .is_some_and(|m| m.as_bool().unwrap());
    Polled { sets, more }
}

/// A poll that answers at once.
async fn poll_now(api: &Api, feed: &str) -> Polled {
    poll(api, feed, json!({"returnImmediately": true})).await
}

/// Acknowledges `jtis` without asking for more.
async fn ack(api: &Api, feed: &str, jtis: &[String]) {
    let polled = poll(
        api,
        feed,
        json!({"ack": jtis, "maxEvents": 0, "returnImmediately": true}),
    )
    .await;
    assert!(polled.sets.is_empty());
}

fn user_uri(user: &Value) -> String {
    format!("/Users/{}", user["id"].as_str().unwrap())
}

#[tokio::test]
async fn acknowledged_sets_are_not_polled_again_and_delivered_ones_wait_for_their_ack() {
    let s = server(&[]).await;
    let api = s.client();
    let mut users = Vec::new();
    for name in ["ann", "bob", "cy"] {
        users.push(api.create_user_named(name).await);
    }
    let first = poll_now(&api, "default").await;
    assert_eq!(first.sets.len(), 3);
    assert!(!first.more);
    for ((_, claims), user) in first.sets.iter().zip(&users) {
        assert_eq!(claims["sub_id"]["uri"], json!(user_uri(user)));
        assert!(claims["events"].get(CREATE).is_some(), "{claims}");
        assert_eq!(claims["iss"], json!("https://scim.example.org"));
        assert!(claims.get("sub").is_none() && claims.get("exp").is_none());
    }
    // Delivered and not acknowledged: not sent again within SET_POLL_REDELIVER_SECONDS.
    let again = poll_now(&api, "default").await;
    assert!(again.sets.is_empty(), "{:?}", again.jtis());
    let after_ack = poll(
        &api,
        "default",
        json!({"ack": first.jtis(), "returnImmediately": true}),
    )
    .await;
    assert!(after_ack.sets.is_empty());
    let dan = api.create_user_named("dan").await;
    let next = poll_now(&api, "default").await;
    assert_eq!(
        next.subjects(),
        [(user_uri(&dan), BTreeSet::from([CREATE.to_owned()]))]
    );
    assert!(!first.jtis().contains(&next.jtis()[0]));
}

#[tokio::test]
async fn a_restart_sends_again_exactly_what_was_not_acknowledged() {
    let mut s = server(&[]).await;
    let api = s.client();
    for name in ["u1", "u2", "u3", "u4"] {
        api.create_user_named(name).await;
    }
    let polled = poll_now(&api, "default").await;
    let jtis = polled.jtis();
    assert_eq!(jtis.len(), 4);
    ack(&api, "default", &jtis[..2]).await;
    s.restart().await;
    let api = s.client();
    let after = poll_now(&api, "default").await;
    assert_eq!(
        after.jtis(),
        jtis[2..],
        "the unacknowledged SETs, once each, same jti"
    );
    assert_eq!(after.sets[0].1["sub_id"], polled.sets[2].1["sub_id"]);
    // Acknowledged by a server that never delivered them (it only reads their jti).
    s.restart().await;
    let api = s.client();
    ack(&api, "default", &jtis[2..]).await;
    assert!(poll_now(&api, "default").await.sets.is_empty());
    s.restart().await;
    assert!(poll_now(&s.client(), "default").await.sets.is_empty());
    // `log verify` reads the acknowledgements too, and finds nothing wrong.
    s.cli(&["log", "verify"]).await.success();
}

#[tokio::test]
async fn each_key_is_a_receiver_of_its_own() {
    let s = Scimd::start(
        Opts::default()
            .api_key("alpha=key-alpha-1234567890,beta=key-beta-1234567890")
            .public_url("https://scim.example.org")
            .env("SET_SIGNING_SECRET", SECRET),
    )
    .await;
    let alpha = s.client_with_key("key-alpha-1234567890");
    let beta = s.client_with_key("key-beta-1234567890");
    alpha.create_user_named("shared").await;
    let a = poll_now(&alpha, "default").await;
    ack(&alpha, "default", &a.jtis()).await;
    let b = poll_now(&beta, "default").await;
    assert_eq!(a.jtis(), b.jtis(), "beta's acknowledgements are its own");
    let status = alpha.get("/status").await.expect(200).json();
    let receivers: Vec<&str> = status["setPoll"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["receiver"].as_str().unwrap())
        .collect();
    assert_eq!(receivers, ["alpha"], "{status}");
    // The receivers' names are shown to keyed clients only (the browser page carries no data).
    s.anonymous().get("/status").await.expect(401);
    let page = send(
        s.anonymous()
            .request(reqwest::Method::GET, "/status")
            .header("Accept", "text/html"),
    )
    .await;
    assert!(!page.text.contains("alpha"), "{page:?}");
}

#[tokio::test]
async fn a_long_poll_answers_with_the_set_a_write_makes() {
    let s = server(&[("SET_POLL_WAIT_SECONDS", "50")]).await;
    let api = s.client();
    let waiting = tokio::spawn({
        let api = s.client();
        async move { poll(&api, "default", json!({})).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let user = api.create_user_named("late").await;
    let polled = waiting.await.unwrap();
    assert_eq!(
        polled.subjects(),
        [(user_uri(&user), BTreeSet::from([CREATE.to_owned()]))]
    );
}

#[tokio::test]
async fn an_empty_feed_answers_no_sets_at_once_or_after_the_long_poll() {
    let s = server(&[("SET_POLL_WAIT_SECONDS", "1")]).await;
    let api = s.client();
    let now = poll_now(&api, "default").await;
    assert!(now.sets.is_empty() && !now.more);
    let waited = poll(&api, "default", json!({})).await;
    assert!(waited.sets.is_empty() && !waited.more);
}

#[tokio::test]
async fn max_events_is_honoured_and_more_available_says_what_is_left() {
    let s = server(&[]).await;
    let api = s.client();
    for i in 0..5 {
        api.create_user_named(&format!("m{i}")).await;
    }
    let mut seen = Vec::new();
    let mut acks: Vec<String> = Vec::new();
    for (size, more) in [(2, true), (2, true), (1, false)] {
        let p = poll(
            &api,
            "default",
            json!({"maxEvents": 2, "returnImmediately": true, "ack": acks}),
        )
        .await;
        assert_eq!((p.sets.len(), p.more), (size, more));
        acks = p.jtis();
        seen.extend(p.jtis());
    }
    let distinct: BTreeSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), 5);
    // maxEvents 0 only acknowledges, but says that more wait.
    api.create_user_named("m5").await;
    let p = poll(
        &api,
        "default",
        json!({"maxEvents": 0, "returnImmediately": true, "ack": acks}),
    )
    .await;
    assert!(p.sets.is_empty() && p.more);
}

#[tokio::test]
async fn refused_sets_count_as_acknowledged_and_are_shown_in_status() {
    let s = server(&[]).await;
    let api = s.client();
    api.create_user_named("r1").await;
    api.create_user_named("r2").await;
    let p = poll_now(&api, "default").await;
    let jtis = p.jtis();
    let long = format!("no key for kid{}", "\nx".repeat(5000));
    let body = json!({
        "ack": [jtis[0]],
        "setErrs": {jtis[1].as_str(): {"err": "invalid_key", "description": long}},
        "returnImmediately": true,
    });
    assert!(poll(&api, "default", body).await.sets.is_empty());
    let status = api.get("/status").await.expect(200).json();
    let receiver = &status["setPoll"][0];
    assert_eq!(receiver["feed"], "default");
    assert_eq!(receiver["refused"], 1);
    assert_eq!(receiver["refusals"][0]["jti"], json!(jtis[1]));
    assert_eq!(receiver["refusals"][0]["err"], "invalid_key");
    let shown = receiver["refusals"][0]["description"].as_str().unwrap();
    assert!(
        shown.starts_with("no key for kid") && shown.chars().count() <= 300,
        "{shown}"
    );
    assert!(
        !shown.contains('\n'),
        "a receiver's text is stored without control characters"
    );
    assert!(s.log().contains("refused a SET"), "a refusal is logged");
    // A refusal alone acknowledges too: with redelivery due after a second, nothing comes back.
    drop(s);
    let s = server(&[("SET_POLL_REDELIVER_SECONDS", "1")]).await;
    let api = s.client();
    api.create_user_named("r3").await;
    let jti = poll_now(&api, "default").await.jtis().remove(0);
    let body = json!({"maxEvents": 0, "returnImmediately": true,
                      "setErrs": {jti.as_str(): {"err": "invalid_request", "description": ""}}});
    assert!(poll(&api, "default", body).await.sets.is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(poll_now(&api, "default").await.sets.is_empty());
}

#[tokio::test]
async fn an_invalid_poll_is_400_and_acknowledges_nothing() {
    let s = server(&[("SET_POLL_REDELIVER_SECONDS", "1")]).await;
    let api = s.client();
    api.create_user_named("x").await;
    let jtis = poll_now(&api, "default").await.jtis();
    for body in [
        json!({"ack": jtis, "maxEvents": -1}),
        json!({"ack": jtis, "returnImmediately": "yes"}),
        json!({"ack": jtis[0]}),
        json!({"ack": jtis, "setErrs": {"x": {"description": "no code"}}}),
        json!([{"ack": jtis}]),
    ] {
        api.post("/Events/Feeds/default/poll", &body)
            .await
            .expect_scim_error(400, Some("invalidSyntax"));
    }
    let r = send(
        api.request(reqwest::Method::POST, "/Events/Feeds/default/poll")
            .header("Content-Type", "application/json")
            .body("{\"ack\": ["),
    )
    .await;
    r.expect_scim_error(400, None);
    s.anonymous()
        .post("/Events/Feeds/default/poll", &json!({"ack": jtis}))
        .await
        .expect(401);
    // Not acknowledged: once due again, the SET comes back.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(poll_now(&api, "default").await.jtis(), jtis);
    // Unknown jtis are ignored (RFC 8936 §2.4), and change nothing either.
    let p = poll(
        &api,
        "default",
        json!({"ack": ["nope", "default:999999:0", "other:1:0", ""], "returnImmediately": true}),
    )
    .await;
    assert!(p.sets.is_empty());
    api.post("/Events/Feeds/nope/poll", &json!({}))
        .await
        .expect_scim_error(404, None);
}

#[tokio::test]
async fn feeds_are_listed_with_their_poll_urls_and_an_unknown_one_is_404() {
    let s = server(&[("SET_GROUP_AS_FEED", "true")]).await;
    let api = s.client();
    let u = api.create_user_named("member").await;
    let g = api
        .create_group_with("Staff", &[u["id"].as_str().unwrap()])
        .await;
    let gid = g["id"].as_str().unwrap();
    let list = api.get("/Events/Feeds").await.expect(200).json();
    assert_eq!(list["totalResults"], 2);
    let feeds = list["Resources"].as_array().unwrap();
    assert_eq!(feeds[0]["id"], "default");
    assert_eq!(
        feeds[0]["poll"],
        json!(
            s.url("/Events/Feeds/default/poll")
                .replace(&format!("http://{}", s.addr()), "https://scim.example.org")
        )
    );
    let feed = format!("group:{gid}");
    assert_eq!(feeds[1]["id"], json!(feed));
    assert_eq!(feeds[1]["subjects"], 1);
    assert_eq!(feeds[1]["displayName"], "Staff");
    let one = api
        .get(&format!("/Events/Feeds/{feed}"))
        .await
        .expect(200)
        .json();
    assert_eq!(one, feeds[1]);
    api.get("/Events/Feeds/no-such-feed")
        .await
        .expect_scim_error(404, None);
    // A group's bare id is not a feed: it could be `default`.
    api.get(&format!("/Events/Feeds/{gid}"))
        .await
        .expect_scim_error(404, None);
    let page = api
        .get("/Events/Feeds?startIndex=2&count=1")
        .await
        .expect(200)
        .json();
    assert_eq!(page["Resources"][0]["id"], json!(feed));
    let r = send(api.request(reqwest::Method::DELETE, "/Events/Feeds/default/poll")).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("POST"));
    // Without SETs configured there are no feeds.
    let off = Scimd::start_default().await;
    off.client()
        .get("/Events/Feeds")
        .await
        .expect_scim_error(404, None);
}

#[tokio::test]
async fn a_group_feed_hears_of_its_members_and_of_their_joining_and_leaving() {
    let s = server(&[("SET_GROUP_AS_FEED", "true")]).await;
    let api = s.client();
    let inside = api.create_user_named("inside").await;
    let outside = api.create_user_named("outside").await;
    let (iid, oid) = (
        inside["id"].as_str().unwrap(),
        outside["id"].as_str().unwrap(),
    );
    let g = api.create_group_with("Team", &[iid]).await;
    let gid = g["id"].as_str().unwrap();
    let rename = |name: &str| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "displayName", "value": name}]})
    };
    api.patch(&format!("/Users/{iid}"), &rename("In"))
        .await
        .expect(200);
    api.patch(&format!("/Users/{oid}"), &rename("Out"))
        .await
        .expect(200);
    let members = |op: &str, id: &str| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": op, "path": format!("members[value eq \"{id}\"]")}]})
    };
    api.patch(&format!("/Groups/{gid}"), &members("remove", iid))
        .await;
    api.patch(&format!("/Users/{iid}"), &rename("Gone"))
        .await
        .expect(200);
    let feed = format!("group:{gid}");
    let p = poll_now(&api, &feed).await;
    let uri = |u: &str| BTreeSet::from([u.to_owned()]);
    let inside_uri = format!("/Users/{iid}");
    let subjects: Vec<_> = p.subjects();
    assert_eq!(
        subjects,
        [
            (inside_uri.clone(), uri(FEED_ADD)),
            (inside_uri.clone(), uri(PATCH)),
            (inside_uri.clone(), uri(FEED_REMOVE)),
        ],
        "the outsider's change and the change after leaving are not on the group's feed"
    );
    for (jti, _) in &p.sets {
        assert!(jti.starts_with(&format!("{feed}:")), "{jti}");
    }
    // The same events are all on the default feed, under the default feed's jtis.
    let all = poll_now(&api, "default").await;
    assert!(all.sets.len() >= 6);
    let group_feed_txns: BTreeSet<String> = p
        .sets
        .iter()
        .map(|(_, c)| c["txn"].as_str().unwrap().to_owned())
        .collect();
    let on_default = all
        .sets
        .iter()
        .filter(|(_, c)| group_feed_txns.contains(c["txn"].as_str().unwrap()))
        .count();
    assert!(
        on_default >= 3,
        "the same transactions reach the default feed"
    );
}

#[tokio::test]
async fn a_long_poll_answers_when_the_server_shuts_down() {
    let mut s = server(&[("SET_POLL_WAIT_SECONDS", "50")]).await;
    let waiting = tokio::spawn({
        let api = s.client();
        async move {
            api.post("/Events/Feeds/default/poll", &json!({}))
                .await
                .expect(200)
                .json()
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    s.stop().await;
    let answer = waiting.await.unwrap();
    assert_eq!(answer["sets"], json!({}), "{answer}");
}

#[tokio::test]
async fn odd_poll_bodies_are_400_and_change_nothing() {
    let s = server(&[]).await;
    let api = s.client();
    api.create_user_named("odd").await;
    let jtis = poll_now(&api, "default").await.jtis();
    for body in [
        json!(null),
        json!("ack"),
        json!(7),
        json!({"ack": jtis, "maxEvents": 1e30}),
        json!({"ack": jtis, "maxEvents": null}),
        json!({"ack": [jtis[0], null]}),
        json!({"ack": jtis, "setErrs": {"x": {"err": "invalid_key", "description": 5}}}),
        json!({"ack": jtis, "setErrs": {"x": {"err": 1, "description": "d"}}}),
        json!({"ack": jtis, "setErrs": {"x": null}}),
        json!({"ack": vec!["default:1:0"; 10_001]}),
    ] {
        api.post("/Events/Feeds/default/poll", &body)
            .await
            .expect_scim_error(400, Some("invalidSyntax"));
    }
    // Not JSON by its content type: a SCIM error, never a 500.
    let r = send(
        api.request(reqwest::Method::POST, "/Events/Feeds/default/poll")
            .header("Content-Type", "text/plain")
            .body(json!({"ack": jtis}).to_string()),
    )
    .await;
    assert!(
        matches!(r.status, 400 | 415),
        "a poll that is not JSON: {r:?}"
    );
    r.expect_scim_error(r.status, None);
    // Nothing was acknowledged: once due again (after a restart here), the SET comes back.
    let mut s = s;
    s.kill().await;
    s.start_again().await;
    assert_eq!(poll_now(&s.client(), "default").await.jtis(), jtis);
}

/// A random pattern of acknowledgements, out of order and across crashes (SIGKILL right after
/// the answer): every SET is delivered, none acknowledged is delivered again, and none is lost.
#[tokio::test]
async fn random_acknowledgements_across_crashes_lose_nothing_and_repeat_nothing_acknowledged() {
    use rand::seq::SliceRandom;
    let mut s = server(&[]).await;
    let mut rng = rand::rng();
    let mut made = 0;
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for round in 0..6 {
        let api = s.client();
        for _ in 0..8 {
            api.create_user_named(&format!("r{made}")).await;
            made += 1;
        }
        let polled = poll(
            &api,
            "default",
            json!({"returnImmediately": true, "maxEvents": 5}),
        )
        .await;
        for jti in polled.jtis() {
            assert!(
                !acked.contains(&jti),
                "round {round}: {jti} was acknowledged, yet sent again"
            );
            seen.insert(jti);
        }
        // Acknowledge a random half of what was seen and not acknowledged, shuffled.
        let mut open: Vec<String> = seen.difference(&acked).cloned().collect();
        open.shuffle(&mut rng);
        open.truncate(open.len().div_ceil(2));
        ack(&api, "default", &open).await;
        acked.extend(open);
        s.kill().await;
        s.start_again().await;
    }
    // Drain: after the last crash every unacknowledged SET comes, once, then nothing.
    let api = s.client();
    loop {
        let polled = poll(
            &api,
            "default",
            json!({"returnImmediately": true, "maxEvents": 7}),
        )
        .await;
        if polled.sets.is_empty() {
            break;
        }
        for jti in polled.jtis() {
            assert!(
                !acked.contains(&jti),
                "{jti} was acknowledged, yet sent again"
            );
            seen.insert(jti);
        }
        let mut all = polled.jtis();
        all.shuffle(&mut rng);
        ack(&api, "default", &all).await;
        acked.extend(all);
    }
    assert_eq!(seen.len(), made, "every create's SET was delivered");
    assert_eq!(acked, seen);
    s.kill().await;
    s.start_again().await;
    assert!(poll_now(&s.client(), "default").await.sets.is_empty());
}

/// 200 long polls open at once (200 receivers) hold no read slot or writer while they wait:
/// health, reads and writes are answered meanwhile, and the write's SET goes to each of them.
#[tokio::test]
async fn many_long_polls_starve_nothing_and_end_with_the_server() {
    let keys: Vec<String> = (0..200)
        .map(|i| format!("key-many-{i:04}-1234567890"))
        .collect();
    let named: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("r{i}={k}"))
        .collect();
    let mut s = Scimd::start(
        Opts::default()
            .api_key(&format!("{},{}", common::DEFAULT_KEY, named.join(",")))
            .public_url("https://scim.example.org")
            .env("SET_SIGNING_SECRET", SECRET)
            .env("SET_POLL_WAIT_SECONDS", "50"),
    )
    .await;
    let polls: Vec<_> = keys
        .iter()
        .map(|key| {
            let api = s.client_with_key(key);
            tokio::spawn(async move {
                api.post("/Events/Feeds/default/poll", &json!({}))
                    .await
                    .expect(200)
                    .json()
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let api = s.client();
    api.get("/health").await.expect(200);
    api.get("/Users").await.expect(200);
    let user = api.create_user_named("while-polling").await;
    api.get(&user_uri(&user)).await.expect(200);
    for p in polls {
        let answer = p.await.unwrap();
        let sets = answer["sets"].as_object().unwrap();
        assert_eq!(sets.len(), 1, "each receiver is sent the SET: {answer}");
        for token in sets.values() {
            verified(token.as_str().unwrap());
        }
    }
    s.stop().await;
}

/// A long poll whose client went away (the server may not notice) sends nothing into the void
/// once the receiver polls again: the next SET goes to the new poll, not to the dead connection
/// (where it would wait out SET_POLL_REDELIVER_SECONDS).
#[tokio::test]
async fn a_long_poll_whose_client_went_away_takes_no_set_once_the_receiver_polls_again() {
    let s = server(&[("SET_POLL_WAIT_SECONDS", "50")]).await;
    let api = s.client();
    for round in 0..5 {
        let (client, req) = api
            .request(reqwest::Method::POST, "/Events/Feeds/default/poll")
            .header("Content-Type", "application/json")
            .body("{}")
            .timeout(std::time::Duration::from_millis(300))
            .build_split();
        let hung_up = client.execute(req.expect("a request")).await;
        assert!(hung_up.is_err(), "the long poll answered: {hung_up:?}");
        let again = tokio::spawn({
            let api = s.client();
            async move { poll(&api, "default", json!({})).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        api.create_user_named(&format!("after-hang-up-{round}"))
            .await;
        let polled = again.await.unwrap();
        assert_eq!(
            polled.sets.len(),
            1,
            "round {round}: the SET was taken by a dead long poll"
        );
        ack(&api, "default", &polled.jtis()).await;
    }
}

/// A group feed while its group changes under a waiting long poll: a nested group is no subject
/// (members are direct), a member's delete is heard, and the group's own delete answers the
/// waiting poll (200, never a 5xx); the feed is then gone (404).
#[tokio::test]
async fn a_group_feed_polled_while_its_member_and_then_the_group_are_deleted() {
    let s = server(&[
        ("SET_GROUP_AS_FEED", "true"),
        ("SET_POLL_WAIT_SECONDS", "50"),
    ])
    .await;
    let api = s.client();
    let member = api.create_user_named("member").await;
    let mid = member["id"].as_str().unwrap().to_owned();
    let inner_user = api.create_user_named("nested-only").await;
    let inner = api
        .create_group_with("Inner", &[inner_user["id"].as_str().unwrap()])
        .await;
    let outer = api
        .create_group_with("Outer", &[&mid, inner["id"].as_str().unwrap()])
        .await;
    let gid = outer["id"].as_str().unwrap().to_owned();
    let feed = format!("group:{gid}");
    let first = poll_now(&api, &feed).await;
    ack(&api, &feed, &first.jtis()).await;
    let subjects: BTreeSet<String> = first.subjects().into_iter().map(|(s, _)| s).collect();
    assert!(
        !subjects.contains(&user_uri(&inner_user)),
        "a nested group's member is not a subject: {subjects:?}"
    );
    let waiting = tokio::spawn({
        let (api, feed) = (s.client(), feed.clone());
        async move { poll(&api, &feed, json!({})).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    api.delete(&format!("/Users/{mid}")).await.expect(204);
    let p = waiting.await.unwrap();
    assert!(
        p.subjects()
            .iter()
            .any(|(s, e)| *s == format!("/Users/{mid}") && e.iter().any(|u| u.contains("delete"))),
        "the member's delete is heard: {:?}",
        p.subjects()
    );
    ack(&api, &feed, &p.jtis()).await;
    let waiting = tokio::spawn({
        let (api, feed) = (s.client(), feed.clone());
        async move {
            api.post(&format!("/Events/Feeds/{feed}/poll"), &json!({}))
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    api.delete(&format!("/Groups/{gid}")).await.expect(204);
    let r = waiting.await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    api.post(
        &format!("/Events/Feeds/{feed}/poll"),
        &json!({"returnImmediately": true}),
    )
    .await
    .expect_scim_error(404, None);
}

/// An acknowledge-only poll (`maxEvents: 0`) without `returnImmediately` is still a long poll
/// (RFC 8936 §2.4.2: "a long poll will still occur until an event is ready to be returned, even
/// though no events will be returned"): its acks are saved, it waits, and a write answers it with no
/// SET and `moreAvailable: true`.
#[tokio::test]
async fn an_acknowledge_only_poll_still_long_polls_until_a_set_is_ready() {
    let s = server(&[("SET_POLL_WAIT_SECONDS", "55")]).await;
    let api = s.client();
    api.create_user_named("acked").await;
    let jtis = poll_now(&api, "default").await.jtis();
    let waiting = {
        let api = s.client();
        tokio::spawn(
            async move { poll(&api, "default", json!({"ack": jtis, "maxEvents": 0})).await },
        )
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "an acknowledge-only poll answered before any SET was ready"
    );
    api.create_user_named("ready").await;
    let answered = waiting.await.unwrap();
    assert!(
        answered.sets.is_empty() && answered.more,
        "{:?}",
        answered.more
    );
    let next = poll_now(&api, "default").await;
    assert_eq!(
        next.sets.len(),
        1,
        "the acknowledged SET came back or the new one is missing"
    );
}

/// Two live pollers sharing a key on a feed: the newer poll takes the SET, and the older one
/// keeps waiting (it is not ended at once, which would make the two end each other in a loop);
/// it answers with nothing when its wait ends, here by the shutdown.
#[tokio::test]
async fn an_older_long_poll_of_the_same_receiver_waits_and_takes_nothing() {
    let mut s = server(&[("SET_POLL_WAIT_SECONDS", "50")]).await;
    let long_poll = || {
        let api = s.client();
        tokio::spawn(async move { poll(&api, "default", json!({})).await })
    };
    let older = long_poll();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let newer = long_poll();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    s.client().create_user_named("for-the-newer").await;
    assert_eq!(newer.await.unwrap().sets.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!older.is_finished(), "the older poll was ended at once");
    s.stop().await;
    assert!(older.await.unwrap().sets.is_empty());
}

/// Hostile feed names and paging: a SCIM error or an empty page, never a 5xx.
#[tokio::test]
async fn odd_feed_names_and_paging_are_answered_without_a_server_error() {
    let s = server(&[("SET_GROUP_AS_FEED", "true")]).await;
    let api = s.client();
    api.create_group_with("G", &[]).await;
    let long = "x".repeat(4000);
    for feed in [
        "%00",
        "a%3Ab%3A1%3A0",
        "..%2F..",
        long.as_str(),
        "default%20",
    ] {
        api.post(&format!("/Events/Feeds/{feed}/poll"), &json!({}))
            .await
            .expect_scim_error(404, None);
    }
    for query in [
        "startIndex=9223372036854775807",
        "startIndex=-5&count=-5",
        "count=9223372036854775807",
        "startIndex=2&count=1",
    ] {
        let r = api.get(&format!("/Events/Feeds?{query}")).await.expect(200);
        assert!(
            r.json()["Resources"].as_array().unwrap().len() <= 2,
            "{query}"
        );
    }
}

#[tokio::test]
async fn an_async_requests_outcomes_are_polled_on_the_default_feed_until_acknowledged() {
    const ASYNCRESP: &str = "urn:ietf:params:scim:event:misc:asyncresp";
    let mut s = server(&[]).await;
    let api = s.client();
    api.create_user_named("taken").await;
    let accepted = |r: Resp| {
        assert_eq!(r.status, 202, "{r:?}");
        r.header("set-txn").expect("Set-Txn")
    };
    let txn = accepted(
        send(
            api.request_json(
                reqwest::Method::POST,
                "/Users",
                &json!({"schemas": [USER_SCHEMA], "userName": "amy"}),
            )
            .header("Prefer", "respond-async"),
        )
        .await,
    );
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"schemas": [USER_SCHEMA], "userName": "bob"}},
            {"method": "POST", "path": "/Users", "bulkId": "t", "data": {"schemas": [USER_SCHEMA], "userName": "taken"}},
        ]
    });
    let bulk_txn = accepted(
        send(
            api.request_json(reqwest::Method::POST, "/Bulk", &bulk)
                .header("Prefer", "respond-async"),
        )
        .await,
    );
    let expected = BTreeSet::from([
        format!("default:{txn}"),
        format!("default:{bulk_txn}:0"),
        format!("default:{bulk_txn}:1"),
    ]);
    // Each poll sends what it has not sent yet: gather until the three outcomes are in.
    let mut seen: Vec<(String, Value)> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !expected.iter().all(|j| seen.iter().any(|(s, _)| s == j)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            seen.iter().map(|(j, _)| j).collect::<Vec<_>>()
        );
        seen.extend(poll(&api, "default", json!({"maxEvents": 100})).await.sets);
    }
    let outcomes: Vec<&(String, Value)> =
        seen.iter().filter(|(j, _)| expected.contains(j)).collect();
    assert_eq!(outcomes.len(), 3, "each once: {seen:?}");
    for (jti, claims) in &outcomes {
        assert_eq!(jti, &format!("default:{}", claims["txn"].as_str().unwrap()));
        let op = &claims["events"][ASYNCRESP];
        let want = if claims["txn"] == json!(format!("{bulk_txn}:1")) {
            "409"
        } else {
            "201"
        };
        assert_eq!(op["status"], json!(want), "{claims}");
    }
    let others: Vec<String> = seen
        .iter()
        .map(|(j, _)| j.clone())
        .filter(|j| !expected.contains(j))
        .collect();
    ack(&api, "default", &others).await;
    ack(&api, "default", &[format!("default:{txn}")]).await;

    // A restart sends again exactly the outcomes not acknowledged, with the same jti.
    s.restart().await;
    let api = s.client();
    let after = poll_now(&api, "default").await;
    assert_eq!(
        after.jtis(),
        vec![
            format!("default:{bulk_txn}:0"),
            format!("default:{bulk_txn}:1")
        ]
    );
    // Acknowledged by a server that never delivered them (it reads their jti).
    s.restart().await;
    let api = s.client();
    ack(&api, "default", &after.jtis()).await;
    assert!(poll_now(&api, "default").await.sets.is_empty());
    s.restart().await;
    assert!(poll_now(&s.client(), "default").await.sets.is_empty());
}
