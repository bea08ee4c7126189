//! The OpenAPI document as independent tools read it: openapi-spec-validator must find it valid
//! OpenAPI 3, and schemathesis, a property-based fuzzer driven only by the document, must find no
//! failure in a bounded run against a live scimd (creating, reading, replacing, patching and
//! deleting real resources), except the disagreements [`Justified`] names with their RFC citation.
//!
//! The tools come from the virtualenv of `scripts/python-tools` (`SCIMD_TEST_PYTOOLS`, else its
//! default place). Missing: a notice and a pass, except with `CI=true`, where it fails.
//!
//! The fuzzer runs with a fixed seed, so a failure reproduces with the same command (printed on
//! failure); its example database is kept under the cargo target directory, so a failure found
//! once is tried first on every later run until it is fixed and pinned by a test of its own.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{Value, json};
use tokio::process::Command;

/// The seed of every fuzzer run: a failure reproduces with it.
const SEED: &str = "16";
/// Test cases per operation and phase: with the stateful phase this keeps the run to about three
/// minutes on the CI machine (2 cores, debug build).
const MAX_EXAMPLES: &str = "25";

/// The virtualenv of scripts/python-tools, if its tools are there.
fn tools() -> Option<PathBuf> {
    let venv = std::env::var_os("SCIMD_TEST_PYTOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/scimd-python-tools"))
        })?;
    venv.join("bin/schemathesis").exists().then_some(venv)
}

/// The tools, or `None` after a notice; under `CI=true` their absence fails the test.
fn tools_or_skip(what: &str) -> Option<PathBuf> {
    let found = tools();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} is not installed and CI=true: run scripts/python-tools install"
        );
        eprintln!("NOTICE: skipping {what}: run scripts/python-tools install");
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_json_is_valid_openapi_3() {
    let Some(venv) = tools_or_skip("openapi-spec-validator") else {
        return;
    };
    let s = Scimd::start_default().await;
    let doc = s.client().get("/openapi.json").await.expect(200).json();
    let file = s.dir().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = Command::new(venv.join("bin/openapi-spec-validator"))
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The document describes this deployment: a SCHEMA_PATH extension's attributes are in the User
/// schemas, with their types.
#[tokio::test(flavor = "multi_thread")]
async fn the_document_types_schema_path_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let ext = dir.path().join("extensions/User");
    std::fs::create_dir_all(&ext).unwrap();
    std::fs::write(
        ext.join("acme.json"),
        json!({"id": "urn:acme:User", "name": "Acme", "attributes": [
            {"name": "badge", "type": "integer"},
            {"name": "wings", "type": "string", "multiValued": true}
        ]})
        .to_string(),
    )
    .unwrap();
    let s = Scimd::start(Opts::default().env("SCHEMA_PATH", dir.path().to_str().unwrap())).await;
    let doc = s.client().get("/openapi.json").await.expect(200).json();
    let user = &doc["components"]["schemas"]["UserWrite"];
    let acme = &user["properties"]["urn:acme:User"];
    assert_eq!(acme["properties"]["badge"]["type"], "integer", "{acme}");
    assert_eq!(user["required"], json!(["userName"]));
    let read = &doc["components"]["schemas"]["User"];
    assert_eq!(
        read["properties"]["urn:acme:User"]["properties"]["wings"]["type"],
        "array"
    );
    // Every route's body and answers are typed.
    let create = &doc["paths"]["/Users"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/scim+json"]["schema"]["$ref"],
        "#/components/schemas/UserWrite"
    );
    for status in ["201", "400", "401", "409", "413", "415", "503"] {
        assert!(
            create["responses"][status].is_object(),
            "POST /Users {status}"
        );
    }
    assert_eq!(
        doc["paths"]["/Groups/{id}"]["patch"]["requestBody"]["content"]["application/scim+json"]["schema"]
            ["$ref"],
        "#/components/schemas/GroupPatchOp"
    );
    assert!(
        doc["components"]["securitySchemes"]
            .as_object()
            .is_some_and(|s| s.values().any(|v| v["scheme"] == "bearer"))
    );
}

/// A fuzzer finding the RFCs allow: recognised by the check, the operation (`METHOD /path`, a
/// prefix) and a text of the answer (an empty check or operation matches any), each with the RFC
/// text that allows it. Anything else fails the
/// test. The document cannot say these (OpenAPI 3.0 has no `contains`, no grammar for a filter, no
/// notion of existing ids or of the current version).
struct Justified {
    check: &'static str,
    operation: &'static str,
    answer: &'static str,
    why: &'static str,
}

const JUSTIFIED: &[Justified] = &[
    Justified {
        check: "not_a_server_error",
        operation: "",
        answer: "/Me is not supported",
        why: "RFC 7644 §3.11: a service provider that does not support /Me answers 501 Not Implemented",
    },
    Justified {
        check: "positive_data_acceptance",
        operation: "",
        answer: "If-Match does not match the current version",
        why: "RFC 9110 §13.1.1: If-Match naming another version MUST be answered 412 (Precondition Failed)",
    },
    Justified {
        check: "positive_data_acceptance",
        operation: "",
        answer: "\"invalidFilter\"",
        why: "RFC 7644 §3.4.2.2: a filter follows an ABNF grammar the document cannot express; one that does not parse is 400 invalidFilter",
    },
    Justified {
        check: "positive_data_acceptance",
        operation: "",
        answer: "refer to resources that do not exist",
        why: "RFC 7643 §4.2: members[].value is the id of an existing resource; a made-up id is 400 invalidValue",
    },
    Justified {
        check: "positive_data_acceptance",
        operation: "",
        answer: "schemas must include urn:ietf:params:scim:schemas:core:2.0:",
        why: "RFC 7643 §3: schemas MUST name the core schema; OpenAPI 3.0 has no `contains` to say so",
    },
    Justified {
        check: "positive_data_acceptance",
        operation: "PATCH ",
        answer: "schemas must be [",
        why: "RFC 7644 §3.5.2: the body MUST contain schemas with the PatchOp URN; OpenAPI 3.0 has no `contains` to say so",
    },
    Justified {
        check: "positive_data_acceptance",
        operation: "",
        answer: "use either cursor or startIndex",
        why: "RFC 9865 §2: cursor and startIndex exclude each other; the document cannot say that two optional members exclude each other",
    },
    Justified {
        check: "positive_data_acceptance",
        operation: "",
        answer: "\"invalidCursor\"",
        why: "RFC 9865 §2: a cursor is an opaque value the server issued; a made-up one is 400 invalidCursor",
    },
    Justified {
        check: "positive_data_acceptance",
        operation: "",
        answer: "values with primary true",
        why: "RFC 7643 §2.4: the primary value true MUST appear no more than once",
    },
    Justified {
        check: "positive_data_acceptance",
        operation: "",
        answer: "\"mutability\"",
        why: "RFC 7643 §7: an immutable attribute, once set, cannot be changed (or removed); the document cannot know what is set",
    },
    Justified {
        check: "negative_data_rejection",
        operation: "POST /Bulk",
        answer: "BulkResponse",
        why: "RFC 7644 §3.7.3: a BulkRequest answers 200 with each operation's own status; an invalid operation fails inside it",
    },
];

/// One failed check: its name, the operation, and the answer's body.
#[derive(Debug)]
struct Failure {
    check: String,
    operation: String,
    message: String,
    answer: String,
}

impl Failure {
    /// The justification of a failure, if it is one the RFCs allow.
    fn justification(&self) -> Option<&'static str> {
        JUSTIFIED
            .iter()
            .find(|j| {
                (j.check.is_empty() || self.check == j.check)
                    && self.operation.starts_with(j.operation)
                    && self.answer.contains(j.answer)
            })
            .map(|j| j.why)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_failure_driven_by_the_typed_document() {
    let Some(venv) = tools_or_skip("schemathesis") else {
        return;
    };
    let s = Scimd::start_default().await;
    let reports = s.dir().join("schemathesis");
    let database = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-examples");
    let args = [
        "run".to_owned(),
        s.url("/openapi.json"),
        "--checks".into(),
        "all".into(),
        "--seed".into(),
        SEED.into(),
        "--max-examples".into(),
        MAX_EXAMPLES.into(),
        "--workers".into(),
        "1".into(),
        "--header".into(),
        format!("Authorization: Bearer {}", s.key),
        "--generation-database".into(),
        database.to_string_lossy().into_owned(),
        "--report".into(),
        "ndjson".into(),
        "--report-dir".into(),
        reports.to_string_lossy().into_owned(),
        "--no-color".into(),
        "--suppress-health-check".into(),
        "all".into(),
    ];
    // Its working directory holds its cache of failures found (`.schemathesis/`), replayed first
    // on the next run: kept beside the example database, out of the source tree.
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    std::fs::create_dir_all(&work).expect("create the schemathesis directory");
    let child = Command::new(venv.join("bin/schemathesis"))
        .args(&args)
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn schemathesis");
    // A guard against a hang, not a speed requirement.
    let out = tokio::time::timeout(Duration::from_secs(900), child.wait_with_output())
        .await
        .expect("schemathesis did not finish within 15 min")
        .expect("wait for schemathesis");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let failures = failures(&reports);
    let unexplained: Vec<&Failure> = failures
        .iter()
        .filter(|f| f.justification().is_none())
        .collect();
    // Justified failures are always there (/Me), so the exit status alone cannot tell a run that
    // also had errors (a request that timed out, a connection refused) from a clean one.
    let problems = run_problems(&reports);
    assert!(
        problems.is_empty(),
        "schemathesis did not run cleanly:\n{}\n\nreport:\n{report}\n\nreproduce: schemathesis {}",
        problems.join("\n"),
        args.join(" ")
    );
    assert!(
        unexplained.is_empty() && (out.status.success() || !failures.is_empty()),
        "schemathesis ({}) found failures:\n{}\n\nreport:\n{report}\n\nreproduce: schemathesis {}",
        out.status,
        unexplained
            .iter()
            .map(|f| format!(
                "{} on {}: {}\n  answer: {}",
                f.check, f.operation, f.message, f.answer
            ))
            .collect::<Vec<_>>()
            .join("\n"),
        args.join(" ")
    );
    for f in &failures {
        eprintln!(
            "justified: {} on {}: {}",
            f.check,
            f.operation,
            f.justification().unwrap_or_default()
        );
    }
    let users = s.client().list("/Users").await;
    assert!(
        users["totalResults"].as_u64().is_some_and(|n| n > 0),
        "the fuzzer never created a User: the document does not let it write real resources\n{report}"
    );
}

/// What went wrong with the run itself in schemathesis's NDJSON event stream: errors (a network
/// error, a timeout, a response it could not read), an interruption, or no end at all.
fn run_problems(reports: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut finished = false;
    let texts = std::fs::read_dir(reports)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok());
    for text in texts {
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            finished |= event.get("EngineFinished").is_some();
            for kind in ["NonFatalError", "FatalError", "Interrupted"] {
                if let Some(e) = event.get(kind) {
                    out.push(format!("{kind}: {e}"));
                }
            }
        }
    }
    if !finished {
        out.push("no EngineFinished event: the run did not end normally".into());
    }
    out
}

/// A run with errors is not a pass, however justified its failures are.
#[test]
fn a_run_with_errors_or_without_an_end_is_a_problem() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-problems");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the report directory");
    let report = dir.join("run.ndjson");
    let clean = "{\"EngineStarted\":{}}\n{\"EngineFinished\":{}}\n";
    std::fs::write(&report, clean).expect("write the report");
    assert_eq!(run_problems(&dir), Vec::<String>::new());
    let error =
        "{\"NonFatalError\":{\"label\":\"GET /Users\",\"info\":{\"title\":\"Network Error\"}}}\n";
    std::fs::write(&report, format!("{error}{clean}")).expect("write the report");
    assert_eq!(run_problems(&dir).len(), 1, "{:?}", run_problems(&dir));
    std::fs::write(&report, "{\"EngineStarted\":{}}\n").expect("write the report");
    assert_eq!(run_problems(&dir).len(), 1, "{:?}", run_problems(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The failed checks in schemathesis's NDJSON event stream, with the answer each one saw.
fn failures(reports: &std::path::Path) -> Vec<Failure> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(reports) else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let recorder = &event["ScenarioFinished"]["recorder"];
            let Some(checks) = recorder["checks"].as_object() else {
                continue;
            };
            for (case, results) in checks {
                for check in results.as_array().into_iter().flatten() {
                    if check["status"] != "failure" {
                        continue;
                    }
                    let failure = &check["failure_info"]["failure"];
                    let content = &recorder["interactions"][case]["response"]["content"]["$base64"];
                    let answer = content
                        .as_str()
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    out.push(Failure {
                        check: check["name"].as_str().unwrap_or_default().to_owned(),
                        operation: failure["operation"].as_str().unwrap_or_default().to_owned(),
                        message: failure["message"].as_str().unwrap_or_default().to_owned(),
                        answer,
                    });
                }
            }
        }
    }
    out
}
