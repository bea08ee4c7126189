//! The command line every benchmark shares: clap parses it, and a run without the options that make
//! the benchmark do anything prints the usage and succeeds.
//!
//! `cargo test --all-targets` runs each benchmark with libtest's flags (`--test-threads=4`) and
//! nothing else: with none of its required options there is nothing to measure, whatever else was
//! passed, so it must not fail. `cargo bench` appends `--bench`, which is dropped before parsing.

// Each benchmark includes this module and uses only part of it.
#![allow(dead_code)]

pub mod server;

use std::process::ExitCode;

use clap::Parser;

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

/// A benchmark's `main`: parses the command line ([`parse`]) and runs `run` on a new tokio
/// runtime. Exit status 0 when it succeeds or there was nothing to do; 1, after printing the error
/// and its causes, when it fails.
pub fn main<A, F>(name: &str, needs_one_of: &[&str], run: impl FnOnce(A) -> F) -> ExitCode
where
    A: Parser,
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let Some(args) = parse::<A>(needs_one_of) else {
        return ExitCode::SUCCESS;
    };
    let outcome = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(args)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name} bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
