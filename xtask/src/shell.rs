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

/// Cargo's target directory for this build.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The components that run as pods in the box, built for release so the
/// box's images carry exactly this tree's code.
pub const BOX_COMPONENTS: &[&str] = &["vpcnet-operator", "vpcnet-cni", "vpcnet-natgw"];

/// Builds the box's release binaries, then starts the box with them.
pub fn box_up() -> Result<(), String> {
    build_box_binaries()?;
    start_box()
}

/// `cargo build --release` of the components the box runs as pods.
pub fn build_box_binaries() -> Result<(), String> {
    let mut args = vec!["build", "--release", "--locked"];
    for c in BOX_COMPONENTS {
        args.extend(["-p", c]);
    }
    cargo(&args)
}

/// Starts the box with the release binaries already built.
pub fn start_box() -> Result<(), String> {
    let script = repo_root().join("e2e/box/up.sh");
    run(Command::new("bash")
        .arg(script)
        .env("VPCNET_BOX_TARGET", target_dir()))
}

/// Starts only the box's control plane (API server, etcd, controllers).
pub fn start_box_control_plane() -> Result<(), String> {
    let script = repo_root().join("e2e/box/up.sh");
    run(Command::new("bash")
        .arg(script)
        .env("VPCNET_BOX_NO_NODE", "1"))
}
