//! `scimd log tail` and `scimd log verify`: read-only, beside a running server or on a stopped store.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::store::{StoreReader, verify};
use scim::schema::Registry;

/// Prints events from position `from` on as JSON lines; with `follow`, keeps printing new ones.
pub async fn tail(data_path: &Path, from: u64, follow: bool) -> anyhow::Result<()> {
    let reader = StoreReader::open(data_path)?;
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

/// Checks the log and the read model; prints the report and fails if anything is wrong.
pub fn verify(data_path: &Path, registry: &Registry) -> anyhow::Result<()> {
    let reader = StoreReader::open(data_path)?;
    let report = verify::verify(&reader.snapshot()?, registry)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.problems.is_empty() {
        eprintln!(
            "ok: {} events, {} users, {} groups, {} memberships; the read model equals the fold of the log",
            report.events, report.users, report.groups, report.memberships
        );
        Ok(())
    } else {
        anyhow::bail!("{} problem(s) found", report.problems.len())
    }
}
