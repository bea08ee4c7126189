//! A member added to a large group costs the backend one small operation, not a rewrite: the
//! bytes the projection sends to slapd / the MongoDB-wire server for a one-member delta on a
//! 2,000-member group, counted by a TCP proxy in between, are a small fraction of the group.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Backend, Which, apply_ok, group, members_change, upsert, user};
use projections::ResourceKind::{Group, User};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const MEMBERS: usize = 2000;

/// A proxy on a free port to `target` (`host:port`), counting the bytes sent to the server.
async fn counting_proxy(target: String) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = counter.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        use tokio::io::AsyncReadExt;
                        match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                counter.fetch_add(n as u64, Ordering::Relaxed);
                                if sw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (port, sent)
}

/// `url` (`scheme://host:port/…`) pointing at the proxy instead, and the original `host:port`.
fn through_proxy(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    (
        format!("{scheme}://127.0.0.1:{port}/{path}"),
        authority.to_owned(),
    )
}

async fn one_member_add_is_small(which: Which, var: &str) {
    let Some(url) = common::server_url(which) else {
        return;
    };
    let (_, target) = through_proxy(&url, 0);
    let (port, sent) = counting_proxy(target).await;
    let (proxied, _) = through_proxy(&url, port);
    // SAFETY of the test: the variable is read once, by Backend::open below, in this process.
    unsafe { std::env::set_var(var, &proxied) };
    let Some(mut b) = Backend::open(which).await else {
        return;
    };
    let ids: Vec<String> = (0..=MEMBERS).map(|i| format!("u-{i:05}")).collect();
    let mut batch: Vec<_> = ids.iter().map(|id| upsert(User, user(id, id))).collect();
    let members: Vec<&str> = ids[..MEMBERS].iter().map(String::as_str).collect();
    batch.push(upsert(Group, group("g-big", "Big", &members)));
    let before = sent.load(Ordering::Relaxed);
    apply_ok(&mut b, &batch[MEMBERS + 1..], 1).await; // the group alone
    apply_ok(&mut b, &batch[..MEMBERS + 1], 2).await;
    let group_bytes = sent.load(Ordering::Relaxed) - before;

    let before = sent.load(Ordering::Relaxed);
    apply_ok(
        &mut b,
        &[members_change("g-big", 2, &[&ids[MEMBERS]], &[])],
        3,
    )
    .await;
    let delta_bytes = sent.load(Ordering::Relaxed) - before;
    eprintln!(
        "{which:?}: whole group + users {group_bytes} bytes; one-member add {delta_bytes} bytes"
    );
    assert!(
        delta_bytes < 4096,
        "{which:?}: a one-member add sent {delta_bytes} bytes (the group and its users: {group_bytes})"
    );
    assert_eq!(
        b.contents(Group).await["g-big"]["members"]
            .as_array()
            .map(Vec::len),
        Some(MEMBERS + 1)
    );
    b.cleanup().await;
}

#[tokio::test]
async fn a_member_added_to_a_large_ldap_group_is_one_small_modify() {
    one_member_add_is_small(Which::Ldap, "SCIMD_TEST_LDAP_URL").await;
}

#[tokio::test]
async fn a_member_added_to_a_large_mongo_group_is_one_small_update() {
    one_member_add_is_small(Which::Mongo, "SCIMD_TEST_MONGO_URL").await;
}
