//! The AMQP fan-out's delivery guarantees, from outside: per resource, messages arrive in increasing
//! version order under concurrent writes, and none is lost through a broker outage, a full queue
//! that refuses messages, a broker that never answers, a scimd killed mid-stream or a restart
//! (which resumes at its checkpoint and repeats nothing).
//!
//! A real `scimd serve` publishes to a real RabbitMQ; every message is read back from the queue with
//! lapin and checked against the log (`scimd log tail`). One test needs no broker and always runs:
//! it plays a broker that accepts and never answers. The outage test stops and starts the whole
//! broker (see [`common::amqp`]).

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::amqp::*;
use common::*;
use futures::{StreamExt, stream};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Ordering
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_to_the_same_resources_arrive_in_increasing_version_order() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("ordering");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(id_of(
            &api.create_user(user_body(&format!("amqp.order.{i}"), "v0"))
                .await,
        ));
    }
    let mut groups = Vec::new();
    for (i, user) in users.iter().enumerate().take(2) {
        groups.push(id_of(
            &api.create_group_with(&format!("order {i}"), &[user]).await,
        ));
    }
    const WRITES: usize = 400;
    let statuses: Vec<(usize, u16)> = stream::iter(0..WRITES)
        .map(|i| {
            let api = api.clone();
            let users = users.clone();
            let groups = groups.clone();
            async move {
                // Three writes in five on a user, two on a group whose membership changes each time.
                let r = if i % 5 < 3 {
                    let u = i % users.len();
                    api.put(&format!("/Users/{}", users[u]), &user_body(&format!("amqp.order.{u}"), &format!("v{i}")))
                        .await
                } else {
                    let g = i % groups.len();
                    let members: Vec<Value> = users
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| (i >> k) & 1 == 1)
                        .map(|(_, id)| json!({"value": id}))
                        .collect();
                    api.put(
                        &format!("/Groups/{}", groups[g]),
                        &json!({"schemas": [GROUP_SCHEMA], "displayName": format!("order {g}"), "members": members}),
                    )
                    .await
                };
                (i, r.status)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed: Vec<_> = statuses.iter().filter(|(_, st)| *st != 200).collect();
    assert!(failed.is_empty(), "every PUT must succeed: {failed:?}");

    wait_published(&api, RECOVERY).await;
    let events = log_events(&s).await;
    assert_eq!(events.len(), 4 + 2 + WRITES);
    let mut msgs = q.take_all_of(&event_ids(&events), DELIVERY).await;
    msgs.extend(q.drain(Duration::from_secs(1)).await);
    let duplicates = assert_every_event_exactly_or_again(&events, &msgs);
    assert_ordered_per_resource(&msgs);
    eprintln!(
        "{} messages for {} events ({duplicates} duplicates)",
        msgs.len(),
        events.len()
    );

    // Each message describes its own version: a user's after-image, a group's members as of it
    // (folded from the log's deltas).
    let mut members_at: HashMap<(String, u64), BTreeSet<String>> = HashMap::new();
    let mut current: HashMap<String, BTreeSet<String>> = HashMap::new();
    for e in events.iter().filter(|e| e.resource_type == "Group") {
        let set = current.entry(e.resource_id.clone()).or_default();
        for m in &e.members_added {
            set.insert(m.value.clone());
        }
        for m in &e.members_removed {
            set.remove(&m.value);
        }
        members_at.insert((e.resource_id.clone(), e.version), set.clone());
    }
    for m in &msgs {
        let e = by_message(&events, m);
        assert_eq!(
            version_number(&m.resource()["meta"]["version"]),
            e.version,
            "{m:?}"
        );
        if e.resource_type == "User" {
            let attrs = e.attributes.as_ref().expect("user events carry attributes");
            assert_eq!(m.resource()["displayName"], attrs["displayName"], "{m:?}");
        } else {
            let expected = &members_at[&(e.resource_id.clone(), e.version)];
            let got: BTreeSet<String> = member_ids(m.resource()).into_iter().collect();
            assert_eq!(
                &got, expected,
                "members of group {} v{}: {m:?}",
                e.resource_id, e.version
            );
        }
    }
    q.delete().await;
}

// ---------------------------------------------------------------------------------------------
// Failures: broker outage, scimd crash, restart
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_delays_messages_but_writes_succeed_and_none_is_lost() {
    let Some((broker, _exclusive)) = Broker::exclusive().await else {
        return;
    };
    let queue = unique("outage");
    let mut q = Queue::open(&broker.url, &queue).await;
    let mut s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(id_of(
            &api.create_user(user_body(&format!("amqp.outage.{i}"), "before"))
                .await,
        ));
    }
    let g = id_of(
        &api.create_group_with("outage", &[&users[0], &users[5]])
            .await,
    );
    let before = q.take(7, DELIVERY).await;
    wait_published(&api, DELIVERY).await;
    q.close().await;

    // A client keeps writing, about 50 writes/s, through the whole outage: the broker goes down while
    // the publisher is busy (confirms in flight) and comes back while writes still arrive.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (api, users, g, stop) = (api.clone(), users.clone(), g.clone(), stop.clone());
        tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = if i % 10 == 9 {
                    api.post(
                        "/Users",
                        &user_body(&format!("amqp.outage.new.{i}"), "during"),
                    )
                    .await
                } else if i % 10 == 4 {
                    let members: Vec<Value> = users[..5]
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| (i / 10 + k).is_multiple_of(2))
                        .map(|(_, id)| json!({"value": id}))
                        .collect();
                    api.put(
                        &format!("/Groups/{g}"),
                        &json!({"schemas": [GROUP_SCHEMA], "displayName": "outage", "members": members}),
                    )
                    .await
                } else {
                    let u = i % 5;
                    api.put(
                        &format!("/Users/{}", users[u]),
                        &user_body(&format!("amqp.outage.{u}"), &format!("during {i}")),
                    )
                    .await
                };
                results.push((i, r.status, started.elapsed()));
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            results
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.stop().await;

    // The publisher reports that it is retrying, with the error, and lags.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let down = loop {
        let st = amqp_status(&api).await;
        if st["state"] == json!("retrying")
            && st["lastError"].as_str().is_some_and(|e| !e.is_empty())
            && st["lag"].as_u64().is_some_and(|lag| lag > 0)
        {
            break st;
        }
        seen.push(st);
        assert!(
            Instant::now() < deadline,
            "/status never showed the publisher retrying with an error and a lag: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("while the broker was down: {down}");
    assert_eq!(
        down["lag"].as_u64(),
        Some(down["position"].as_u64().unwrap() - down["checkpoint"].as_u64().unwrap()),
        "{down}"
    );
    // A delete with a cascade, while the broker is down.
    api.delete(&format!("/Users/{}", users[5]))
        .await
        .expect(204);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = amqp_status(&api).await;
    assert!(
        still["lag"].as_u64() > down["lag"].as_u64(),
        "the lag grows while the broker is down: {down} then {still}"
    );

    broker.start().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let results = writer.await.unwrap();
    let failed: Vec<_> = results
        .iter()
        .filter(|(_, st, _)| !(200..300).contains(st))
        .collect();
    assert!(
        failed.is_empty(),
        "writes must succeed while the broker is down: {failed:?}"
    );
    let slowest = results.iter().map(|(_, _, t)| *t).max().unwrap();
    assert!(
        slowest < Duration::from_secs(5),
        "a write took {slowest:?}: writes must not wait for the broker"
    );
    let up = wait_published(&api, RECOVERY).await;
    eprintln!(
        "{} writes during the outage, slowest {slowest:?}; after the broker came back: {up}",
        results.len()
    );

    let events = log_events(&s).await;
    assert_eq!(up["position"].as_u64(), Some(events.len() as u64));
    let mut q = Queue::open(&broker.url, &queue).await;
    let later: HashSet<String> = event_ids(&events[7..]);
    let mut msgs = before.clone();
    msgs.extend(q.take_all_of(&later, DELIVERY).await);
    msgs.extend(q.drain(Duration::from_secs(1)).await);
    let duplicates = assert_every_event_exactly_or_again(&events, &msgs);
    assert_ordered_per_resource(&msgs);
    eprintln!(
        "{} messages for {} events ({duplicates} duplicates)",
        msgs.len(),
        events.len()
    );
    q.close().await;

    // Again, and this time scimd is restarted while the broker is down: it stops promptly and
    // cleanly, and the new process resumes from the checkpoint once the broker is back.
    broker.stop().await;
    for i in 0..20 {
        api.create_user(user_body(&format!("amqp.outage.restart.{i}"), "down"))
            .await;
    }
    let stopping = Instant::now();
    s.restart().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "a restart with the broker down took {:?}",
        stopping.elapsed()
    );
    let api = s.client();
    for i in 20..30 {
        api.create_user(user_body(&format!("amqp.outage.restart.{i}"), "down"))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let down = loop {
        let st = amqp_status(&api).await;
        if st["state"] == json!("retrying") && st["lastError"].is_string() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "not retrying after the restart: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        down["checkpoint"].as_u64(),
        Some(events.len() as u64),
        "the restarted publisher starts at its checkpoint: {down}"
    );
    broker.start().await;
    wait_published(&api, RECOVERY).await;
    let all_events = log_events(&s).await;
    assert_eq!(all_events.len(), events.len() + 30);
    let mut q = Queue::open(&broker.url, &queue).await;
    let new = event_ids(&all_events[events.len()..]);
    let mut again = q.take_all_of(&new, DELIVERY).await;
    again.extend(q.drain(Duration::from_secs(1)).await);
    let old: Vec<&Msg> = again.iter().filter(|m| !new.contains(m.id())).collect();
    assert!(
        old.is_empty(),
        "messages confirmed before the restart were published again: {old:#?}"
    );
    let duplicates = assert_every_event_exactly_or_again(&all_events[events.len()..], &again);
    assert_eq!(duplicates, 0, "{again:#?}");
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_that_rejects_messages_delays_them_but_every_one_gets_through() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    // At most 5 ready messages; beyond, RabbitMQ refuses new ones with a nack (`reject-publish`).
    // Whatever the broker accepted must count as published (checkpoint), or the publisher would
    // resend the same first messages forever while the rest never get in.
    let queue = unique("nack");
    let policy = queue.clone();
    let connection = connect(&broker.url).await;
    let channel = connection.create_channel().await.expect("create channel");
    channel
        .queue_declare(
            queue.as_str().into(),
            durable_queue(),
            FieldTable::default(),
        )
        .await
        .expect("declare queue");
    broker
        .ctl(&[
            "set_policy",
            "--apply-to",
            "queues",
            &policy,
            &format!("^{}$", queue.replace('.', "\\.")),
            r#"{"max-length": 5, "overflow": "reject-publish"}"#,
        ])
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !broker
        .ctl(&["list_queues", "name", "policy"])
        .await
        .lines()
        .any(|l| l.starts_with(&queue) && l.contains(&policy))
    {
        assert!(
            Instant::now() < deadline,
            "the policy never applied to {queue}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    for i in 0..20 {
        api.create_user(user_body(&format!("amqp.nack.{i}"), "n"))
            .await;
    }
    // With nobody consuming, 5 get in and the publisher reports the refusals.
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let st = amqp_status(&api).await;
        if st["lastError"].is_string() && st["lag"].as_u64() > Some(0) {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "no error reported while the queue refuses messages: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("while the queue was full: {refused}");

    // A slow consumer (one message at a time): every event gets through, 5 at a time at most.
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("basic.qos");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let events = log_events(&s).await;
    let mut missing = event_ids(&events);
    let mut msgs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(delivery))) = tokio::time::timeout(left, consumer.next()).await else {
            let st = amqp_status(&api).await;
            let ids: Vec<&str> = msgs.iter().map(Msg::id).collect();
            panic!(
                "{} of {} events never got through a queue that only takes 5 at a time; {} messages \
                 received ({} distinct); /status: {st}\nmessage ids in order: {ids:#?}",
                missing.len(),
                events.len(),
                msgs.len(),
                ids.iter().collect::<HashSet<_>>().len()
            );
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        let m = Msg::from_delivery(&delivery);
        missing.remove(m.id());
        msgs.push(m);
    }
    wait_published(&api, RECOVERY).await;
    let duplicates = assert_every_event_exactly_or_again(&events, &msgs);
    assert_ordered_per_resource(&msgs);
    eprintln!(
        "{} messages for {} events ({duplicates} duplicates)",
        msgs.len(),
        events.len()
    );
    broker.ctl(&["clear_policy", &policy]).await;
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "bye".into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_accepts_connections_but_never_answers_is_reported_and_retried() {
    // Needs no RabbitMQ: a TCP listener that accepts and then says nothing, like a broker whose VM
    // froze or a load balancer in front of a dead node. The publisher must not wait forever on the
    // AMQP handshake: it reports an error in /status and tries again.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let hold = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                open.push(socket);
            }
        })
    };
    let s = Scimd::start(
        Opts::default()
            .env("AMQP", &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
            .env("QUEUE", "never"),
    )
    .await;
    let api = s.client();
    api.create_user(user_body("amqp.blackhole", "B")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last;
    loop {
        last = amqp_status(&api).await;
        if last["state"] == json!("retrying")
            && last["lastError"].as_str().is_some_and(|e| !e.is_empty())
            && accepted.load(Ordering::SeqCst) >= 2
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 60 s against a broker that never answers, the publisher still waits on its first \
             connection ({} accepted) and /status shows no error: {last}",
            accepted.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("{last}");
    assert_eq!(last["lag"], json!(1), "{last}");
    hold.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scimd_killed_mid_stream_loses_no_message_and_only_repeats_earlier_ones() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("crash");
    let mut q = Queue::open(&broker.url, &queue).await;
    let mut s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();

    // A burst of creates; the consumer runs alongside and scimd is killed once it is well underway.
    const BURST: usize = 1500;
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            stream::iter(0..BURST)
                .map(|i| {
                    let api = api.clone();
                    async move {
                        let r = api
                            .request_json(
                                Method::POST,
                                "/Users",
                                &user_body(&format!("amqp.crash.{i}"), "burst"),
                            )
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await
                            .ok()?;
                        (r.status().as_u16() == 201).then_some(())?;
                        let v: Value = r.json().await.ok()?;
                        Some(id_of(&v))
                    }
                })
                .buffer_unordered(16)
                .filter_map(|x| async move { x })
                .collect::<Vec<String>>()
                .await
        })
    };
    let mut msgs = Vec::new();
    while msgs.len() < 200 {
        match q.next(DELIVERY).await {
            Some(m) => msgs.push(m),
            None => panic!(
                "only {} messages within {DELIVERY:?} of the burst",
                msgs.len()
            ),
        }
    }
    s.kill().await;
    let created = writer.await.unwrap();
    eprintln!(
        "killed scimd after {} consumed messages; {} of {BURST} creates were answered 201",
        msgs.len(),
        created.len()
    );
    assert!(
        created.len() < BURST,
        "the kill came after the burst: make it longer"
    );

    s.start_again().await;
    let api = s.client();
    for i in 0..20 {
        api.create_user(user_body(&format!("amqp.crash.after.{i}"), "after"))
            .await;
    }
    wait_published(&api, RECOVERY).await;
    let events = log_events(&s).await;
    let consumed: HashSet<String> = msgs.iter().map(|m| m.id().to_string()).collect();
    let rest: HashSet<String> = event_ids(&events).difference(&consumed).cloned().collect();
    msgs.extend(q.take_all_of(&rest, DELIVERY).await);
    msgs.extend(q.drain(Duration::from_secs(1)).await);
    let duplicates = assert_every_event_exactly_or_again(&events, &msgs);
    // Every 201 is in the log (and so was published).
    let logged: HashSet<&str> = events.iter().map(|e| e.resource_id.as_str()).collect();
    for id in &created {
        assert!(
            logged.contains(id.as_str()),
            "user {id} was answered 201 but is not in the log"
        );
    }
    // A duplicate repeats a message seen before: same message_id, same content (checked here).
    assert_ordered_per_resource(&msgs);
    eprintln!(
        "{} messages for {} events ({duplicates} duplicates)",
        msgs.len(),
        events.len()
    );
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_scimd_continues_from_its_checkpoint_without_publishing_anything_twice() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("restart");
    let mut q = Queue::open(&broker.url, &queue).await;
    let mut s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(id_of(
            &api.create_user(user_body(&format!("amqp.restart.{i}"), "one"))
                .await,
        ));
    }
    wait_published(&api, DELIVERY).await;
    let first = q.take(30, DELIVERY).await;

    s.restart().await;
    let api = s.client();
    // Before any new write, the publisher resumes at its durable checkpoint.
    let st = wait_published(&api, DELIVERY).await;
    assert_eq!(st["checkpoint"], json!(30), "{st}");
    q.assert_quiet(Duration::from_secs(2)).await;
    for (i, id) in ids.iter().enumerate().take(10) {
        api.put(
            &format!("/Users/{id}"),
            &user_body(&format!("amqp.restart.{i}"), "two"),
        )
        .await
        .expect(200);
    }
    wait_published(&api, DELIVERY).await;
    let second = q.take(10, DELIVERY).await;
    q.assert_quiet(Duration::from_secs(2)).await;
    let events = log_events(&s).await;
    let mut all = first.clone();
    all.extend(second.iter().cloned());
    let duplicates = assert_every_event_exactly_or_again(&events, &all);
    assert_eq!(duplicates, 0, "a clean restart must not republish anything");
    for m in &second {
        assert!(
            m.position() > 30 && m.operation() == "Update" && m.version() == 2,
            "{m:?}"
        );
        assert!(!m.redelivered, "{m:?}");
    }
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_queue_loses_no_later_message() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("deleted");
    let first = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    for i in 0..20 {
        api.create_user(user_body(&format!("amqp.deleted.before.{i}"), "b"))
            .await;
    }
    let before = wait_published(&api, RECOVERY).await["position"]
        .as_u64()
        .unwrap();
    // The queue goes away (an operator, a policy): the broker would confirm every message sent to
    // it now and drop it, unless it is published mandatory and its return counts as a failure.
    first.delete().await;
    let statuses: Vec<u16> = stream::iter(0..200)
        .map(|i| {
            let api = api.clone();
            async move {
                api.post(
                    "/Users",
                    &user_body(&format!("amqp.deleted.after.{i}"), "a"),
                )
                .await
                .status
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|&c| c == 201), "{statuses:?}");
    let later: Vec<LogEvent> = log_events(&s)
        .await
        .into_iter()
        .filter(|e| e.position > before)
        .collect();
    assert_eq!(later.len(), 200);
    // The publisher declares the queue again when it reconnects; every later event arrives there.
    let mut again = Queue::open(&broker.url, &queue).await;
    let msgs = again.take_all_of(&event_ids(&later), RECOVERY).await;
    assert_ordered_per_resource(&msgs);
    wait_published(&api, RECOVERY).await;
    again.delete().await;
}

/// Puts the broker's max_message_size back to its default when dropped.
struct DefaultMaxMessageSize;

impl Drop for DefaultMaxMessageSize {
    fn drop(&mut self) {
        if let Ok(prefix) = std::env::var("SCIMD_TEST_RABBITMQCTL") {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{prefix} eval 'application:unset_env(rabbit, max_message_size).'"
                ))
                .output();
        }
    }
}

/// Waits until `/status` shows `parked` AMQP messages, the publisher caught up past them.
async fn wait_parked(api: &Api, parked: u64) -> Value {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let st = amqp_status(api).await;
        if st["parked"] == json!(parked) && st["checkpoint"] == st["position"] {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "the AMQP publisher never showed {parked} parked message(s) and caught up: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_the_broker_refuses_for_good_is_parked_and_published_by_retry() {
    // Exclusive: the broker's max_message_size is lowered for every channel opened meanwhile.
    let Some((broker, _exclusive)) = Broker::exclusive().await else {
        return;
    };
    // RabbitMQ reads it whenever a channel opens. The guard restores it even if the test fails.
    broker
        .ctl(&[
            "eval",
            "application:set_env(rabbit, max_message_size, 65536).",
        ])
        .await;
    let _restore = DefaultMaxMessageSize;
    let queue = unique("oversize");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let before = id_of(&api.create_user(user_body("amqp.size.before", "b")).await);
    let mut body = user_body("amqp.size.big", "big");
    body["title"] = json!("x".repeat(100_000));
    let big = id_of(&api.create_user(body).await);
    let after = id_of(&api.create_user(user_body("amqp.size.after", "a")).await);

    // The big message is refused (the broker closes the channel over it) again and again: it is
    // parked, and the publisher goes on with the later ones instead of blocking on it.
    let st = wait_parked(&api, 1).await;
    let got: Vec<String> = q
        .take(2, RECOVERY)
        .await
        .iter()
        .map(|m| m.scim_id())
        .collect();
    assert_eq!(got, vec![before.clone(), after.clone()], "{st}");
    q.assert_quiet(Duration::from_secs(1)).await;

    // The operator raises the limit and retries: the parked message is published and unparked.
    broker
        .ctl(&["eval", "application:unset_env(rabbit, max_message_size)."])
        .await;
    let out = tokio::process::Command::new(BIN)
        .args(["projection", "retry", "amqp"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_PATH", s.data_path())
        .env("API_KEY", DEFAULT_KEY)
        .env("AMQP", &broker.url)
        .env("QUEUE", &queue)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = q
        .next(RECOVERY)
        .await
        .expect("the parked message, published again");
    assert_eq!(m.scim_id(), big);
    assert_eq!(m.resource()["title"].as_str().map(str::len), Some(100_000));
    wait_parked(&api, 0).await;
    wait_published(&api, RECOVERY).await;
    q.delete().await;
}
