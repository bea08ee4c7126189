//! The command line every benchmark shares: clap parses it, and a run without the options that make
//! the benchmark do anything prints the usage and succeeds.
//!
//! `cargo test --all-targets` runs each benchmark with libtest's flags (`--test-threads=4`) and
//! nothing else: with none of its required options there is nothing to measure, whatever else was
//! passed, so it must not fail. `cargo bench` appends `--bench`, which is dropped before parsing.

// Each benchmark includes this module and uses only part of it.
#![allow(dead_code)]

use clap::Parser;

pub mod server;

/// The parsed command line, or `None` (after printing the usage, or the help for `--help`) when
/// none of `needs_one_of` was given. Other errors print clap's message and exit with status 2.
pub fn parse<A: Parser>(needs_one_of: &[&str]) -> Option<A> {
    let argv: Vec<String> = std::env::args()
        .enumerate()
        .filter(|(i, a)| *i == 0 || a != "--bench")
        .map(|(_, a)| a)
        .collect();
    let given = |flag: &str| {
        argv.iter()
            .skip(1)
            .any(|a| a == flag || a.strip_prefix(flag).is_some_and(|v| v.starts_with('=')))
    };
    if needs_one_of.iter().any(|f| given(f)) {
        return Some(A::parse_from(argv));
    }
    let mut command = A::command();
    if given("--help") || given("-h") {
        println!("{}", command.render_long_help());
    } else {
        println!(
            "{}\n(without {}: nothing to do; --help lists the options)",
            command.render_usage(),
            needs_one_of.join(" or ")
        );
    }
    None
}

/// A SCIM base URL as given, without trailing slashes (paths are appended to it).
pub fn base_url(s: &str) -> Result<String, String> {
    Ok(s.trim_end_matches('/').to_string())
}

/// A number greater than zero.
pub fn positive(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|n| *n > 0.0 && n.is_finite())
        .ok_or_else(|| format!("not a positive number: {s}"))
}
