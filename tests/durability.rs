//! Durability shown, not inferred: scimd runs under `strace -f`, and for every 2xx answer to a
//! write, the store file's `fdatasync` (or `fsync`) must have returned after the request was read
//! and before the first byte of the answer was written to the socket. Lowering redb's durability,
//! or answering before the commit, fails this test; a SIGKILL test cannot tell (the page cache
//! survives it).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::faults::tool;
use common::*;
use futures::future::join_all;
use serde_json::json;

/// What one line of strace's output says, as far as this test cares.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A sync of the store file returned 0.
    Synced,
    /// A request was read from this connection (the method is known from its first bytes).
    Request { conn: String, write: bool },
    /// An answer with this status started on this connection.
    Answer { conn: String, status: u16 },
}

/// The connection label `-yy` prints for a socket fd (`TCP:[a:p->b:q]`), if the line has one.
fn connection(line: &str) -> Option<String> {
    let start = line.find("<TCP:[")? + 1;
    let end = start + line[start..].find("]>")? + 1;
    Some(line[start..end].to_owned())
}

/// Reads strace's lines in order; `pending` remembers calls interrupted by another thread's line.
fn parse(text: &str) -> Vec<Seen> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut seen = Vec::new();
    for raw in text.lines() {
        // strace pads the pid to five columns: "7244  read(" has two spaces, "12345 read(" one.
        let (pid, rest) = raw.split_once(' ').unwrap_or(("", raw));
        let rest = rest.trim_start();
        let line = if let Some(start) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_owned(), start.to_owned());
            // A write's data is printed when it starts: that is when the answer starts.
            if let (Some(conn), Some(status)) = (connection(start), answer_status(start)) {
                seen.push(Seen::Answer { conn, status });
            }
            continue;
        } else if rest.starts_with("<... ") {
            let Some(start) = pending.remove(pid) else {
                continue;
            };
            let tail = rest.split_once("resumed>").map(|(_, t)| t).unwrap_or("");
            format!("{start}{tail}")
        } else {
            let line = rest.to_owned();
            if let (Some(conn), Some(status)) = (connection(&line), answer_status(&line)) {
                seen.push(Seen::Answer { conn, status });
                continue;
            }
            line
        };
        let ok = !line.contains(" = -1 ");
        if (line.starts_with("fdatasync(") || line.starts_with("fsync("))
            && line.contains("scimd.redb")
            && line.trim_end().ends_with(" = 0")
        {
            seen.push(Seen::Synced);
        } else if ok
            && (line.starts_with("read(")
                || line.starts_with("recvfrom(")
                || line.starts_with("recvmsg("))
            && let Some(conn) = connection(&line)
            && let Some(data) = line.split_once(", \"").map(|(_, d)| d)
        {
            let method = data.split(' ').next().unwrap_or("");
            if ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&method) {
                seen.push(Seen::Request {
                    conn,
                    write: method != "GET" && method != "HEAD",
                });
            }
        }
    }
    seen
}

/// The status of an HTTP answer a write/writev/sendto/sendmsg line starts, if it is one.
fn answer_status(line: &str) -> Option<u16> {
    if !["write(", "writev(", "sendto(", "sendmsg("]
        .iter()
        .any(|c| line.starts_with(c))
    {
        return None;
    }
    let at = line.find("\"HTTP/1.1 ")? + "\"HTTP/1.1 ".len();
    line.get(at..at + 3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_2xx_to_a_write_follows_an_fdatasync_of_the_store_file() {
    let Some(strace) = tool("strace", "strace") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("strace.txt");
    let opts = Opts::default().loglevel("warn").wrapper(&[
        &strace.to_string_lossy(),
        "-f",
        "-qq",
        "-yy",
        "-s",
        "40",
        "-e",
        "trace=fdatasync,fsync,read,recvfrom,recvmsg,write,writev,sendto,sendmsg",
        "-e",
        "signal=none",
        "-o",
        &trace.to_string_lossy(),
    ]);
    let mut s = Scimd::start(opts).await;
    let api = s.client();
    // Writes of every kind, eight clients at a time, so that batches hold several commands.
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut writes = 0;
                for i in 0..4 {
                    let u = api
                        .create_user(json!({"userName": format!("d{c}-{i}")}))
                        .await;
                    let id = id_of(&u);
                    api.put(
                        &format!("/Users/{id}"),
                        &json!({"userName": format!("d{c}-{i}"), "title": "t"}),
                    )
                    .await
                    .expect(200);
                    let patch = json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "title", "value": "p"}]
                    });
                    api.patch(&format!("/Users/{id}"), &patch).await.expect(200);
                    api.delete(&format!("/Users/{id}")).await.expect(204);
                    writes += 4;
                }
                writes
            })
        })
        .collect();
    let writes: usize = join_all(clients)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    // Stop scimd itself (strace exits with it), so that the trace is complete.
    let tracer = s.pid();
    let children = std::fs::read_to_string(format!("/proc/{tracer}/task/{tracer}/children"))
        .unwrap_or_default();
    let scimd: i32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("scimd runs under strace");
    // SAFETY: kill(2) on the process strace started for this test.
    unsafe {
        libc::kill(scimd, libc::SIGTERM);
    }
    for _ in 0..300 {
        if !std::path::Path::new(&format!("/proc/{scimd}")).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop_status().await;

    let text = std::fs::read_to_string(&trace).expect("strace output");
    let seen = parse(&text);
    if let Err(failure) = check(&seen, writes) {
        let mut dir = dir;
        dir.disable_cleanup(true);
        panic!("{failure} (the trace is kept in {})", trace.display());
    }
}

/// Every 2xx answer to a write on a connection comes after a store sync that returned after the
/// write was read; and the trace shows at least `writes` such answers (or the parsing is broken).
fn check(seen: &[Seen], writes: usize) -> Result<(), String> {
    // For each connection: whether a write request was read and no store sync has returned since.
    let mut unsynced: HashMap<String, bool> = HashMap::new();
    let mut checked = 0;
    for (i, event) in seen.iter().enumerate() {
        match event {
            Seen::Synced => unsynced.values_mut().for_each(|v| *v = false),
            Seen::Request { conn, write } => {
                unsynced.insert(conn.clone(), *write);
            }
            Seen::Answer { conn, status } if (200..300).contains(status) => {
                if let Some(waiting) = unsynced.remove(conn) {
                    if waiting {
                        return Err(format!(
                            "a {status} to a write was sent on {conn} before the store file was \
                             synced (event {i} of the trace)"
                        ));
                    }
                    checked += 1;
                }
            }
            Seen::Answer { .. } => {}
        }
    }
    let syncs = seen.iter().filter(|e| **e == Seen::Synced).count();
    if checked < writes {
        return Err(format!(
            "the trace must show every acknowledged write ({writes}), found {checked} answers \
             to writes and {syncs} syncs"
        ));
    }
    Ok(())
}
