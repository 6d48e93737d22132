//! The e2e suites (the test binaries of `vpcnet-e2e`) on the box, in the
//! order and with the overlap that keep them independent:
//!
//! 1. the suites that disturb the whole box (a node dies, the NB leader is
//!    killed, the box's operator is stopped) run alone, one after another;
//! 2. then the others, one after another, while a second lane runs the
//!    suites that start no pods of their own and so neither wait for nor
//!    load the kubelets much (admission, tenant RBAC, the GitOps check): they
//!    use their own namespaces, names and addresses, and take their time
//!    from what the first lane spends waiting.
//!
//! Each suite's output is printed whole when it ends, with its time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::shell;

/// Suites that disturb every other one while they run.
const ALONE: &[&str] = &["node_failure", "gateway_ha", "ovn_raft", "olm_install"];
/// Suites that run beside the rest.
const BESIDE: &[&str] = &["admission", "tenant_rbac", "gitops"];

/// Builds the e2e test binaries; `(name, executable)`, the library's unit
/// tests first, then the suites by name.
fn binaries() -> Result<Vec<(String, PathBuf)>, String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(shell::repo_root())
        .args([
            "test",
            "-p",
            "vpcnet-e2e",
            "--locked",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .output()
        .map_err(|e| format!("cargo test --no-run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the e2e suites failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut found = BTreeMap::new();
    let mut lib = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let name = msg["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kinds = msg["target"]["kind"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if kinds.iter().any(|k| k == "test") {
            found.insert(name, PathBuf::from(exe));
        } else if kinds.iter().any(|k| k == "lib") {
            lib = Some((format!("{name} (unit tests)"), PathBuf::from(exe)));
        }
    }
    Ok(lib.into_iter().chain(found).collect())
}

/// How one suite went.
struct Ran {
    name: String,
    ok: bool,
    secs: f64,
}

/// Runs one suite binary as `cargo test` would (in the package's directory,
/// one test at a time); prints its output when it ends.
fn run_suite(name: &str, exe: &PathBuf, lane: &str) -> Ran {
    let t = Instant::now();
    let e2e = shell::repo_root().join("e2e");
    let out = Command::new(exe)
        .current_dir(&e2e)
        .env("CARGO_MANIFEST_DIR", &e2e)
        .arg("--test-threads=1")
        .output();
    let secs = t.elapsed().as_secs_f64();
    let (ok, text) = match out {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("could not run {}: {e}", exe.display())),
    };
    println!(
        "==== e2e {name} ({lane}): {} in {secs:.1} s\n{text}",
        if ok { "passed" } else { "FAILED" }
    );
    Ran {
        name: name.to_string(),
        ok,
        secs,
    }
}

/// Runs every suite; fails naming those that failed.
pub fn run() -> Result<(), String> {
    let all = binaries()?;
    let pick = |names: &[&str]| -> Vec<(String, PathBuf)> {
        all.iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .cloned()
            .collect()
    };
    let (alone, beside) = (pick(ALONE), pick(BESIDE));
    let rest: Vec<(String, PathBuf)> = all
        .iter()
        .filter(|(n, _)| !ALONE.contains(&n.as_str()) && !BESIDE.contains(&n.as_str()))
        .cloned()
        .collect();
    for (want, got) in [(ALONE, &alone), (BESIDE, &beside)] {
        if got.len() != want.len() {
            return Err(format!("e2e suites {want:?}: found only {got:?}"));
        }
    }
    let mut ran: Vec<Ran> = alone
        .iter()
        .map(|(n, exe)| run_suite(n, exe, "alone"))
        .collect();
    let second = std::thread::spawn(move || {
        beside
            .iter()
            .map(|(n, exe)| run_suite(n, exe, "second lane"))
            .collect::<Vec<Ran>>()
    });
    ran.extend(rest.iter().map(|(n, exe)| run_suite(n, exe, "first lane")));
    ran.extend(second.join().map_err(|_| "the second e2e lane panicked")?);

    println!("\n{:<34} {:>9}", "e2e suite", "seconds");
    for r in &ran {
        println!(
            "{:<34} {:>9.1}{}",
            r.name,
            r.secs,
            if r.ok { "" } else { "  FAILED" }
        );
    }
    let failed: Vec<&str> = ran
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("e2e suites failed: {failed:?}"))
    }
}
