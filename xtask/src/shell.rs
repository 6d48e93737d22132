//! Running child processes and locating the repository and the box.

use std::path::PathBuf;
use std::process::Command;

use vpcnet_test_support::box_env;

/// The repository root (the parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

/// Where the cluster-in-a-box keeps its state (`VPCNET_BOX_DIR`, else
/// box.env's default, as in the scripts).
pub fn box_dir() -> PathBuf {
    box_env::box_dir()
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

/// Every shell script of the repository (`*.sh`, and files whose `#!` line
/// names sh or bash, such as `.ci/run`), sorted; build output is skipped.
pub fn shell_scripts() -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        if dir.join("CACHEDIR.TAG").exists() {
            return Ok(()); // a cargo target dir
        }
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if name != ".git" && name != "target" && !name.starts_with("target-") {
                    walk(&path, out)?;
                }
            } else if kind.is_file() && (name.ends_with(".sh") || has_shell_shebang(&path)) {
                out.push(path);
            }
        }
        Ok(())
    }
    fn has_shell_shebang(path: &std::path::Path) -> bool {
        use std::io::{BufRead, BufReader, Read};
        let Ok(f) = std::fs::File::open(path) else {
            return false;
        };
        let mut first = String::new();
        if BufReader::new(f).take(200).read_line(&mut first).is_err() {
            return false;
        }
        first.starts_with("#!")
            && first
                .split(|c: char| c == '/' || c.is_whitespace())
                .any(|w| w == "sh" || w == "bash")
    }
    let mut out = Vec::new();
    walk(&repo_root(), &mut out)?;
    out.sort();
    Ok(out)
}

/// `shellcheck` (settings in `.shellcheckrc`) on every shell script.
pub fn shellcheck() -> Result<(), String> {
    let scripts = shell_scripts()?;
    let root = repo_root();
    let rel: Vec<PathBuf> = scripts
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap_or(p).to_path_buf())
        .collect();
    run(Command::new("shellcheck").current_dir(&root).args(&rel))
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

/// The components that run as pods in the box, built from this tree so the
/// box's images carry exactly its code.
pub const BOX_COMPONENTS: &[&str] = &[
    "vpcnet-operator",
    "vpcnet-cni",
    "vpcnet-node",
    "vpcnet-natgw",
    "vpcnet-dns",
];

/// What the box runs outside pods from the same target dir: the external
/// host's server (`e2e/box/external.sh`).
pub const BOX_HOST_BINARIES: &[&str] = &["vpcnet-external-host"];

/// Builds the box's release binaries, then starts the box with them.
pub fn box_up() -> Result<(), String> {
    build_box_binaries()?;
    start_box()
}

/// `cargo build --release` of the components the box runs as pods and of
/// its own host-side binaries.
pub fn build_box_binaries() -> Result<(), String> {
    let mut args = vec!["build", "--release", "--locked"];
    for c in BOX_COMPONENTS.iter().chain(BOX_HOST_BINARIES) {
        args.extend(["-p", c]);
    }
    cargo(&args)
}

/// Starts the box with the release binaries already built.
pub fn start_box() -> Result<(), String> {
    start_box_from("release")
}

/// Starts the box with the binaries already built in cargo profile
/// directory `profile` (`release`, or `debug` for the test suite, which has
/// just built every target there).
pub fn start_box_from(profile: &str) -> Result<(), String> {
    let script = repo_root().join("e2e/box/up.sh");
    run(Command::new("bash")
        .arg(script)
        .env("VPCNET_BOX_TARGET", target_dir())
        .env("VPCNET_BOX_PROFILE", profile))
}

/// Starts only the box's control plane (API server, etcd, controllers).
pub fn start_box_control_plane() -> Result<(), String> {
    let script = repo_root().join("e2e/box/up.sh");
    run(Command::new("bash")
        .arg(script)
        .env("VPCNET_BOX_NO_NODE", "1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_shellcheck_sees_include_every_kind() {
        let root = repo_root();
        let found: Vec<String> = shell_scripts()
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        for want in [
            ".ci/run",
            "e2e/box/up.sh",
            "e2e/box/lib.sh",
            "config/cni/install-cni.sh",
        ] {
            assert!(found.iter().any(|f| f == want), "{want} not in {found:?}");
        }
        assert!(
            !found
                .iter()
                .any(|f| f.ends_with(".rs") || f.ends_with(".env")),
            "{found:?}"
        );
    }
}
