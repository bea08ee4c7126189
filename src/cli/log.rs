//! `scimd log tail` and `scimd log verify`: read-only, beside a running server or on a stopped store.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::store::{StoreReader, verify};
use scim::schema::Registry;

/// The page cache `log tail` reads with (redb's default).
const TAIL_CACHE_BYTES: usize = 1024 * 1024 * 1024;

/// Prints events from position `from` on as JSON lines; with `follow`, keeps printing new ones.
pub async fn tail(data_path: &Path, from: u64, follow: bool) -> anyhow::Result<()> {
    let reader = StoreReader::open(data_path, TAIL_CACHE_BYTES)?;
    let mut next = from.max(1);
    let mut out = std::io::stdout().lock();
    loop {
        let events = reader.snapshot()?.events(next, 1000)?;
        for event in &events {
            serde_json::to_writer(&mut out, event)?;
            out.write_all(b"\n")?;
            next = event.position + 1;
        }
        out.flush()?;
        if events.is_empty() {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Checks the log and the read model; prints the report (JSON) and fails if anything is wrong.
/// Reads only, with a page cache of at most `cache_bytes` (`STORE_CACHE_MB`).
pub fn verify(data_path: &Path, registry: &Registry, cache_bytes: usize) -> anyhow::Result<()> {
    let reader = StoreReader::open(data_path, cache_bytes)?;
    let report = verify::verify(&reader.snapshot()?, registry)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if reader.repaired_copy() {
        eprintln!(
            "note: a crash left the store needing repair; verified a repaired copy, the store itself was not touched"
        );
    }
    match report.chain_from {
        Some(1) => eprintln!("hash chain: from the first event"),
        Some(p) => eprintln!(
            "hash chain: begins at position {p} (events before it were written before the chain existed and are not covered)"
        ),
        None => eprintln!("hash chain: no event carries it yet"),
    }
    if report.problem_count == 0 {
        eprintln!(
            "ok: {} events, {} users, {} groups, {} memberships; the log is whole and the read model equals the fold of the log",
            report.events, report.users, report.groups, report.memberships
        );
        Ok(())
    } else {
        for p in report.problems.iter().take(20) {
            eprintln!("problem: {p}");
        }
        anyhow::bail!("{} problem(s) found", report.problem_count)
    }
}
