//! The cluster-in-a-box's constants, from `e2e/box/box.env`: the file the
//! box's scripts source, so a test and the box never disagree on where the
//! state lives, what the namespaces are called or which address the external
//! host has.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

/// `e2e/box/box.env` as compiled in (editing it rebuilds what reads it).
pub const SOURCE: &str = include_str!("../../e2e/box/box.env");

/// Environment variable that moves the box's state dir (as in `lib.sh`).
pub const BOX_DIR_ENV: &str = "VPCNET_BOX_DIR";

/// `KEY=VALUE` lines of `text`, skipping blank lines and `#` comments. A
/// value bash would read differently from this parser (quotes, spaces,
/// expansions, escapes) is an error, not a silent mismatch.
pub fn parse(text: &str) -> Result<BTreeMap<&str, &str>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("box.env line {}: {why}: {line}", i + 1);
        let (key, value) = line.split_once('=').ok_or_else(|| bad("not KEY=VALUE"))?;
        let key_ok = key.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !key_ok {
            return Err(bad("a key is upper case, digits and _"));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/:,@+-".contains(c))
        {
            return Err(bad("a value is a plain word (no quotes, spaces or $)"));
        }
        if out.insert(key, value).is_some() {
            return Err(bad("key set twice"));
        }
    }
    Ok(out)
}

fn values() -> &'static BTreeMap<&'static str, &'static str> {
    static VALUES: OnceLock<BTreeMap<&'static str, &'static str>> = OnceLock::new();
    VALUES.get_or_init(|| parse(SOURCE).unwrap_or_else(|e| panic!("{e}")))
}

/// The value of `key`; a key box.env does not set is a bug in the caller.
pub fn get(key: &str) -> &'static str {
    values()
        .get(key)
        .unwrap_or_else(|| panic!("e2e/box/box.env sets no {key}"))
}

/// Where the box keeps its state: `VPCNET_BOX_DIR`, else `BOX_DIR_DEFAULT`.
pub fn box_dir() -> PathBuf {
    std::env::var_os(BOX_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(get("BOX_DIR_DEFAULT")))
}

/// The box's admin kubeconfig.
pub fn kubeconfig() -> PathBuf {
    box_dir().join("kubeconfig")
}

/// Node `i`'s name (1-based), spelt as `use_node` in `e2e/box/lib.sh` does.
pub fn node_name(i: usize) -> String {
    format!("{}-{i}", get("NODE_NAME_PREFIX"))
}

/// The network namespace of the node called `node` (`node-<i>`).
pub fn node_netns(node: &str) -> String {
    let i = node
        .strip_prefix(get("NODE_NAME_PREFIX"))
        .and_then(|s| s.strip_prefix('-'))
        .unwrap_or_else(|| panic!("{node} is not a box node's name"));
    format!("{}-{i}", get("NODE_NETNS_PREFIX"))
}

/// How many nodes the running box has (`$BOX/nodes`, written by up.sh);
/// 1 when it records none.
pub fn nodes() -> usize {
    std::fs::read_to_string(box_dir().join("nodes"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1)
}

/// The external host's network namespace.
pub fn ext_netns() -> &'static str {
    get("EXT_NETNS")
}

/// The external host's address on the external network.
pub fn ext_host_ip() -> &'static str {
    get("EXT_HOST_IP")
}

/// The ports the external host answers on.
pub fn ext_ports() -> Vec<u16> {
    get("EXT_PORTS")
        .split(',')
        .map(|p| p.parse().expect("EXT_PORTS: comma-separated ports"))
        .collect()
}

/// The external host's log: one `client=<ip>:<port>` line per connection.
pub fn ext_access_log() -> PathBuf {
    box_dir().join(get("EXT_ACCESS_LOG"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_env_parses_and_has_what_the_tests_read() {
        let v = parse(SOURCE).unwrap();
        for key in [
            "BOX_DIR_DEFAULT",
            "NODE_NETNS_PREFIX",
            "NODE_NAME_PREFIX",
            "EXT_NETNS",
            "EXT_HOST_IP",
            "EXT_PORTS",
            "EXT_ACCESS_LOG",
        ] {
            assert!(v.contains_key(key), "box.env lacks {key}");
        }
        assert!(!ext_ports().is_empty());
        assert_eq!(node_netns(&node_name(2)), "vpcnet-node-2");
    }

    #[test]
    fn bash_reads_the_same_values() {
        let v = parse(SOURCE).unwrap();
        let keys: Vec<&str> = v.keys().copied().collect();
        let script = format!(
            "set -eu; source {}/../e2e/box/box.env; printf '%s\\n' {}",
            env!("CARGO_MANIFEST_DIR"),
            keys.iter()
                .map(|k| format!("\"${k}\""))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .env_clear()
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).unwrap();
        let want: Vec<&str> = keys.iter().map(|k| v[k]).collect();
        assert_eq!(got.lines().collect::<Vec<_>>(), want);
    }

    #[test]
    fn the_box_operator_settings_repeat_box_env() {
        let v = parse(SOURCE).unwrap();
        let yaml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/box/operator-box.yaml"
        ))
        .unwrap();
        for (name, key) in [
            ("VPCNET_PROBE_CIDR", "PROBE_CIDR"),
            ("VPCNET_PROBE_KUBELET_CGROUP", "KUBELET_CGROUP"),
            ("VPCNET_SERVICE_CIDR", "SERVICE_CIDR"),
            ("VPCNET_CLUSTER_DNS", "CLUSTER_DNS_IP"),
            ("VPCNET_DNS_UPSTREAMS", "EXT_HOST_IP"),
            ("OVN_NB_DB", "OVN_NB_DB_IN_NODE"),
        ] {
            let line = format!("{{name: {name}, value: \"{}\"}}", v[key]);
            assert!(
                yaml.contains(&line),
                "config/box/operator-box.yaml lacks {line}"
            );
        }
    }

    #[test]
    fn what_bash_would_read_otherwise_is_refused() {
        assert_eq!(parse("# c\n\nA=b/c:1,2\n").unwrap()["A"], "b/c:1,2");
        for bad in ["A=\"x\"", "A=$B", "A=a b", "a=x", "A", "A=x\nA=y", "A=~/x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
