//! Commands in one of the box's nodes: its network and mount namespaces,
//! entered through the process that holds them (as `node_exec` in
//! `e2e/box/lib.sh`).

use std::process::Command;

use crate::box_env;
use crate::kubectl::{Kubectl, Output};

/// The first node's name (`node-1`): where a test without a node of its
/// own looks.
pub fn first() -> String {
    box_env::node_name(1)
}

/// The names of the box's nodes, `node-1` first.
pub fn all() -> Vec<String> {
    (1..=box_env::nodes()).map(box_env::node_name).collect()
}

/// The node a pod runs on.
pub fn of_pod(k: &Kubectl, ns: &str, pod: &str) -> String {
    let node = k.ok(&[
        "-n",
        ns,
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.spec.nodeName}",
    ]);
    assert!(!node.trim().is_empty(), "pod {ns}/{pod} is not scheduled");
    node.trim().to_string()
}

/// The PID of the first node's namespace holder, while the box runs it.
pub fn holder_pid() -> Option<u32> {
    holder_pid_of(&first())
}

/// The PID of `node`'s namespace holder, while the box runs it.
pub fn holder_pid_of(node: &str) -> Option<u32> {
    let pid: u32 =
        std::fs::read_to_string(crate::box_dir().join(format!("pids/node-holder@{node}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

/// Runs `cmd` in the first node's network + mount namespaces.
pub fn exec(cmd: &[&str]) -> Output {
    exec_on(&first(), cmd)
}

/// Runs `cmd` in `node`'s network + mount namespaces.
pub fn exec_on(node: &str, cmd: &[&str]) -> Output {
    let pid = holder_pid_of(node)
        .unwrap_or_else(|| panic!("the box's {node} is up (its namespace holder runs)"));
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
