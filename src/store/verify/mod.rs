//! `scimd log verify`: checks that the log is whole and unaltered, that each resource's history
//! makes sense, and that the read model, its indexes and the subscribers' bookkeeping are exactly
//! what the log says.
//!
//! It streams: the log is read once in position order ([`events`]), then each resource's history is
//! folded on its own through the `streams` table and compared with its rows ([`resources`]); the
//! index tables are compared by counts, and walked only when a count differs ([`indexes`]); the
//! asynchronous requests' lists are checked against their rows ([`async_requests`]). Memory
//! is the store's page cache (`STORE_CACHE_MB`), one resource's fold at a time and 16 bytes per
//! event (the event ids seen, to find a duplicate), never the whole read model. Every problem is
//! reported with where it is (log position, table and key) and the run goes on; verify only reads.

mod async_requests;
mod events;
mod indexes;
mod resources;

use redb::ReadTransaction;
use serde::Serialize;

use super::{Snapshot, StoreError};
use scim::schema::Registry;

/// At most this many problems are listed in the report; all are counted.
const MAX_LISTED: usize = 1000;

/// What verification found. `problems` is empty for a healthy store.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Number of events read.
    pub events: u64,
    /// The last position.
    pub position: u64,
    /// Users that exist after the log.
    pub users: u64,
    /// Groups that exist after the log.
    pub groups: u64,
    /// Membership rows the log gives.
    pub memberships: u64,
    /// The first event that carries the hash chain (`None`: no event does yet). Events before it
    /// were written before the chain existed and are not covered by it.
    pub chain_from: Option<u64>,
    /// How many problems were found (the first [`MAX_LISTED`] are listed).
    pub problem_count: u64,
    /// Every inconsistency found (up to [`MAX_LISTED`]), each with where it is.
    pub problems: Vec<Problem>,
    /// States the server tolerates and verify does not count as problems (a unique value two
    /// resources shared before it was declared unique; indexes the next start rebuilds).
    pub notes: Vec<Problem>,
}

/// One finding, with where it is.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The log position it concerns, when it concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// The table and key, or the resource, it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// What is wrong, in words.
    pub problem: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.position {
            write!(f, "position {p}: ")?;
        }
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        f.write_str(&self.problem)
    }
}

/// The state of one run: the snapshot it reads and what it found so far.
struct Checker<'a> {
    txn: &'a ReadTransaction,
    registry: &'a Registry,
    report: Report,
    /// Rows the index tables must hold, counted while each resource is checked.
    expected: indexes::Expected,
}

impl Checker<'_> {
    fn problem(&mut self, position: Option<u64>, at: Option<String>, problem: String) {
        self.report.problem_count += 1;
        if self.report.problems.len() < MAX_LISTED {
            self.report.problems.push(Problem {
                position,
                at,
                problem,
            });
        }
    }

    fn note(&mut self, at: Option<String>, note: String) {
        if self.report.notes.len() < MAX_LISTED {
            self.report.notes.push(Problem {
                position: None,
                at,
                problem: note,
            });
        }
    }
}

/// Verifies the snapshot; `registry` says which values the uniqueness index must hold. An `Err`
/// only when the store cannot be read at all: what is wrong in it is in the report.
pub fn verify(snapshot: &Snapshot, registry: &Registry) -> Result<Report, StoreError> {
    let mut c = Checker {
        txn: snapshot.txn(),
        registry,
        report: Report::default(),
        expected: indexes::Expected::default(),
    };
    indexes::prepare(&mut c)?;
    events::check(&mut c)?;
    resources::check(&mut c)?;
    indexes::check(&mut c)?;
    async_requests::check(&mut c)?;
    Ok(c.report)
}
