//! Running child processes and locating the repository and the box.

use std::path::PathBuf;
use std::process::Command;

/// The repository root (the parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

/// Where the cluster-in-a-box keeps its state (same default as the scripts).
pub fn box_dir() -> PathBuf {
    std::env::var_os("VPCNET_BOX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/vpcnet-box"))
}

/// Runs a command inheriting stdio; a non-zero exit is an error naming it.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("starting {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

/// Runs one of the cluster-in-a-box scripts in `e2e/box/`.
pub fn box_script(name: &str, args: &[&str]) -> Result<(), String> {
    let script = repo_root().join("e2e/box").join(name);
    run(Command::new("bash").arg(script).args(args))
}

/// Runs `cargo` with the given arguments from the repository root.
pub fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).current_dir(repo_root()).args(args))
}
