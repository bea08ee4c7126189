//! Races: concurrent creates of the same unique values, concurrent conditional writes, and
//! membership racing with deletes. The store must serialise them: exactly one winner each time.

mod common;

use common::*;
use futures::future::join_all;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_of_the_same_user_name_yield_exactly_one_201() {
    let s = Scimd::start_default().await;
    let api = s.client();
    for round in 0..20usize {
        let n = 2 + round % 7; // 2..=8 concurrent requests
        let name = format!("race-{round}");
        let reqs = (0..n).map(|i| {
            let api = api.clone();
            // Vary the case: the collision is case-insensitive.
            let user_name = if i % 2 == 0 {
                name.clone()
            } else {
                name.to_uppercase()
            };
            tokio::spawn(async move {
                api.post(
                    "/Users",
                    &json!({"userName": user_name, "externalId": format!("{round}-{i}")}),
                )
                .await
            })
        });
        let results: Vec<Resp> = join_all(reqs)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let created: Vec<&Resp> = results.iter().filter(|r| r.status == 201).collect();
        assert_eq!(
            created.len(),
            1,
            "round {round}: expected exactly one 201 among {n}: {results:#?}"
        );
        for r in results.iter().filter(|r| r.status != 201) {
            r.expect_scim_error(409, Some("uniqueness"));
        }
    }
    let all = api.list_all("/Users").await;
    assert_eq!(all.len(), 20, "exactly one user per name");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_external_id_unique_concurrent_creates_of_the_same_external_id_yield_exactly_one_201()
{
    let s = Scimd::start(Opts::default().env("EXTERNAL_ID_UNIQUE", "true")).await;
    let api = s.client();
    for round in 0..10usize {
        let n = 2 + round % 5;
        let reqs = (0..n).map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                api.post(
                    "/Users",
                    &json!({"userName": format!("u-{round}-{i}"), "externalId": format!("ext-{round}")}),
                )
                .await
            })
        });
        let results: Vec<Resp> = join_all(reqs)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            results.iter().filter(|r| r.status == 201).count(),
            1,
            "round {round}: {results:#?}"
        );
        for r in results.iter().filter(|r| r.status != 201) {
            r.expect_scim_error(409, Some("uniqueness"));
        }
    }
    assert_eq!(api.list("/Users").await["totalResults"], 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_puts_with_the_same_if_match_have_exactly_one_winner() {
    let s = Scimd::start_default().await;
    let api = s.client();
    for round in 0..10usize {
        let u = api.create_user_named(&format!("cas-{round}")).await;
        let id = id_of(&u);
        let v = version_of(&u);
        let n = 2 + round % 5;
        let reqs = (0..n).map(|i| {
            let api = api.clone();
            let (id, v) = (id.clone(), v.clone());
            tokio::spawn(async move {
                common::send(
                    api.request_json(
                        Method::PUT,
                        &format!("/Users/{id}"),
                        &json!({"userName": format!("cas-{round}"), "title": format!("writer {i}")}),
                    )
                    .header("If-Match", v),
                )
                .await
            })
        });
        let results: Vec<Resp> = join_all(reqs)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let winners: Vec<&Resp> = results.iter().filter(|r| r.status == 200).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:#?}");
        for r in results.iter().filter(|r| r.status != 200) {
            r.expect_scim_error(412, None);
        }
        let now = api.user(&id).await;
        assert_eq!(
            now,
            winners[0].json(),
            "the stored user is the winner's write"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn many_concurrent_creates_all_succeed_and_are_all_listed() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let reqs = (0..300).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            api.post("/Users", &json!({"userName": format!("bulk{i}")}))
                .await
        })
    });
    let results: Vec<Resp> = join_all(reqs)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let mut ids = Vec::new();
    for r in &results {
        assert_eq!(r.status, 201, "{r:?}");
        ids.push(id_of(&r.json()));
    }
    let listed: Vec<String> = api.list_all("/Users").await.iter().map(id_of).collect();
    assert_eq!(sorted(&listed), sorted(&ids));
    let mut dedup = ids.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 300, "ids must be unique");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_created_while_its_member_is_deleted_never_keeps_the_deleted_member() {
    let s = Scimd::start_default().await;
    let api = s.client();
    for round in 0..15 {
        let u = id_of(&api.create_user_named(&format!("doomed-{round}")).await);
        let keep = id_of(&api.create_user_named(&format!("keeper-{round}")).await);
        let create = {
            let api = api.clone();
            let (u, keep) = (u.clone(), keep.clone());
            tokio::spawn(async move {
                api.post(
                    "/Groups",
                    &json!({"displayName": format!("G{round}"), "members": [{"value": u}, {"value": keep}]}),
                )
                .await
            })
        };
        let delete = {
            let api = api.clone();
            let u = u.clone();
            tokio::spawn(async move { api.delete(&format!("/Users/{u}")).await })
        };
        let (created, deleted) = (create.await.unwrap(), delete.await.unwrap());
        deleted.expect(204);
        match created.status {
            201 => {
                let gid = id_of(&created.json());
                let g = api.group(&gid).await;
                assert_eq!(
                    member_ids(&g),
                    vec![keep.clone()],
                    "round {round}: the deleted user must not stay a member: {g}"
                );
            }
            400 => {
                created.expect_scim_error(400, Some("invalidValue"));
            }
            _ => panic!("round {round}: unexpected {created:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deletes_of_one_user_yield_one_204_and_the_rest_404() {
    let s = Scimd::start_default().await;
    let api = s.client();
    for round in 0..10 {
        let u = id_of(&api.create_user_named(&format!("del-{round}")).await);
        let g = id_of(&api.create_group_with(&format!("G{round}"), &[&u]).await);
        let reqs = (0..4).map(|_| {
            let api = api.clone();
            let u = u.clone();
            tokio::spawn(async move { api.delete(&format!("/Users/{u}")).await })
        });
        let results: Vec<Resp> = join_all(reqs)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            results.iter().filter(|r| r.status == 204).count(),
            1,
            "round {round}: {results:#?}"
        );
        for r in results.iter().filter(|r| r.status != 204) {
            r.expect_scim_error(404, None);
        }
        let g = api.group(&g).await;
        assert!(member_ids(&g).is_empty(), "{g}");
        assert_eq!(
            version_number(&g["meta"]["version"]),
            2,
            "one cascade, one new version: {g}"
        );
    }
}
