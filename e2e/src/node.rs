//! Commands in the box's node: its network and mount namespaces, entered
//! through the process that holds them (as `node_exec` in `e2e/box/lib.sh`).

use std::process::Command;

use crate::kubectl::Output;

/// The PID of the node's namespace holder, while the box runs a node.
pub fn holder_pid() -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(crate::box_dir().join("pids/node-holder.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

/// Runs `cmd` in the node's network + mount namespaces.
pub fn exec(cmd: &[&str]) -> Output {
    let pid = holder_pid().expect("the box's node is up (its namespace holder runs)");
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "-n", "--"])
        .args(cmd)
        .output()
        .expect("nsenter runs");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
