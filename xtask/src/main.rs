//! Developer and CI entry points: `cargo xtask <command>`.
//!
//! - `demo`            bring up the cluster-in-a-box and run the walk-through
//! - `test`            everything: fmt, clippy, CRD drift, unit/integration, e2e on the box
//! - `box up|down|env` start / stop the cluster-in-a-box, print how to use it
//! - `crds`            regenerate `crds/` from the Rust types

mod shell;
mod test;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["crds"] => write_crds(),
        ["box", "up"] => shell::box_up(),
        ["box", "down"] => shell::box_script("down.sh", &[]),
        ["box", "env"] => shell::box_script("env.sh", &[]),
        ["demo"] => demo(),
        ["test"] => test::run(),
        _ => {
            eprintln!("usage: cargo xtask <demo | test | box up|down|env | crds>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_crds() -> Result<(), String> {
    let dir = shell::repo_root().join("crds");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let files = vpcnet_api::crds::rendered();
    for entry in std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".yaml") && !files.iter().any(|(n, _)| *n == name) {
            std::fs::remove_file(entry.path()).map_err(|e| e.to_string())?;
        }
    }
    for (name, body) in &files {
        std::fs::write(dir.join(name), body).map_err(|e| format!("writing {name}: {e}"))?;
    }
    println!("wrote {} CRDs to {}", files.len(), dir.display());
    Ok(())
}

/// The walk-through: a running box with the sample objects applied, listed.
fn demo() -> Result<(), String> {
    shell::box_up()?;
    let root = shell::repo_root();
    let kubeconfig = shell::box_dir().join("kubeconfig");
    let binary = shell::box_dir().join("bin/kubectl");
    let kubectl = |args: &[&str]| {
        shell::run(
            std::process::Command::new(&binary)
                .env("KUBECONFIG", &kubeconfig)
                .args(args),
        )
    };
    kubectl(&[
        "apply",
        "-f",
        &root.join("config/samples").to_string_lossy(),
    ])?;
    println!("\n$ kubectl get vpcnet -A");
    kubectl(&["get", "vpcnet", "-A"])?;
    println!(
        "\nThe cluster-in-a-box keeps running.\n  use it:  eval \"$(cargo xtask box env)\"; kubectl get vpcnet -A\n  stop it: cargo xtask box down"
    );
    Ok(())
}
