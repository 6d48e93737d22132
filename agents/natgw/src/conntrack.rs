//! Flushing conntrack entries of NAT mappings that went away, so existing
//! flows do not keep using a removed DNAT/SNAT.

use std::collections::BTreeSet;
use std::process::Command;

use crate::model::NatState;

/// `conntrack -D` argument lists for mappings in `old` that are not in `new`.
pub fn flush_args(old: &NatState, new: &NatState) -> Vec<Vec<String>> {
    let mut out: BTreeSet<Vec<String>> = BTreeSet::new();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for (g, members) in &old.dnats {
        if new.dnats.get(g) == Some(members) {
            continue;
        }
        let eip = g.eip.to_string();
        let p = g.proto.as_str();
        if g.ext.lo == g.ext.hi {
            out.insert(s(&[
                "-D",
                "-d",
                &eip,
                "-p",
                p,
                "--dport",
                &g.ext.lo.to_string(),
            ]));
        } else {
            out.insert(s(&["-D", "-d", &eip, "-p", p]));
        }
    }
    for f in &old.fips {
        if new.fips.contains(f) {
            continue;
        }
        out.insert(s(&["-D", "-d", &f.eip.to_string()]));
        out.insert(s(&[
            "-D",
            "-s",
            &f.internal.to_string(),
            "-q",
            &f.eip.to_string(),
        ]));
    }
    for sn in &old.snats {
        if new.snats.contains(sn) {
            continue;
        }
        out.insert(s(&[
            "-D",
            "-s",
            &sn.cidr.to_string(),
            "-q",
            &sn.eip.to_string(),
        ]));
    }
    out.into_iter().collect()
}

/// Runs the flushes. "0 flow entries" (exit 1) is not an error.
pub fn flush(args: &[Vec<String>]) -> Vec<String> {
    let mut errors = Vec::new();
    for a in args {
        match Command::new("conntrack").args(a).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                if !err.contains("flow entries have been deleted") {
                    errors.push(format!("conntrack {}: {}", a.join(" "), err.trim()));
                }
            }
            Err(e) => errors.push(format!("conntrack: {e}")),
        }
    }
    errors
}
