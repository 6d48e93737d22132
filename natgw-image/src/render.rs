//! `render`: the NAT state as `iptables-restore --noflush` input for the
//! agent's own chains. Pure and deterministic.

use std::fmt::Write;

use crate::model::*;

/// One rule line and the object that owns it (`None`: shared plumbing such
/// as the hairpin rule or a shared group's jump).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Owner, for error attribution.
    pub owner: Option<ObjKey>,
    /// The `-A CHAIN ...` text.
    pub text: String,
}

/// The owned chains and their rules, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    /// Chains declared (and so flushed) by the restore.
    pub chains: Vec<String>,
    /// Rule lines.
    pub lines: Vec<Line>,
}

impl Rendered {
    /// The restore input: `*nat`, the chain declarations, the rules, and
    /// `extra` lines (e.g. `-X` of chains no longer wanted), then `COMMIT`.
    pub fn to_restore(&self, extra: &[String]) -> String {
        let mut s = String::with_capacity(64 + self.lines.len() * 140);
        s.push_str("*nat\n");
        for c in &self.chains {
            let _ = writeln!(s, ":{c} - [0:0]");
        }
        for l in &self.lines {
            s.push_str(&l.text);
            s.push('\n');
        }
        for e in extra {
            s.push_str(e);
            s.push('\n');
        }
        s.push_str("COMMIT\n");
        s
    }

    /// 1-based line number, in `to_restore` output, of rule `i`.
    pub fn restore_line_of(&self, i: usize) -> usize {
        2 + self.chains.len() + i
    }
}

fn comment(tag: &str) -> String {
    format!("-m comment --comment \"vpcnet:{tag}\"")
}

/// Renders the whole state into lines.
pub fn render_lines(st: &NatState) -> Rendered {
    let mut r = Rendered {
        chains: vec![CHAIN_PRE.to_string(), CHAIN_POST.to_string()],
        lines: Vec::new(),
    };
    let mut shared_chains = Vec::new();
    let mut push = |owner: Option<&ObjKey>, text: String| {
        r.lines.push(Line {
            owner: owner.cloned(),
            text,
        })
    };

    // PREROUTING: DNAT groups (by EIP, protocol, port), then FIPs.
    for (g, members) in &st.dnats {
        let p = g.proto.as_str();
        let m = format!(
            "-d {}/32 -p {p} -m {p} --dport {}",
            g.eip,
            g.ext.match_form()
        );
        if members.len() == 1 {
            let d = &members[0];
            push(
                Some(&d.key),
                format!(
                    "-A {CHAIN_PRE} {m} {} -j DNAT --to-destination {}:{}",
                    comment(&d.key.to_string()),
                    d.internal,
                    d.int_port.nat_form()
                ),
            );
        } else {
            let chain = g.chain();
            push(
                None,
                format!(
                    "-A {CHAIN_PRE} {m} {} -j {chain}",
                    comment(&format!("dnat-shared/{}/{p}/{}", g.eip, g.ext))
                ),
            );
            shared_chains.push((chain, members));
        }
    }
    for f in &st.fips {
        push(
            Some(&f.key),
            format!(
                "-A {CHAIN_PRE} -d {}/32 {} -j DNAT --to-destination {}",
                f.eip,
                comment(&f.key.to_string()),
                f.internal
            ),
        );
    }

    // POSTROUTING: hairpin, FIP SNAT, SNAT longest prefix first.
    if let Some(facts) = &st.facts {
        for cidr in &facts.vpc_cidrs {
            push(
                None,
                format!(
                    "-A {CHAIN_POST} -s {cidr} -o {} -m conntrack --ctstate DNAT {} -j SNAT --to-source {}",
                    facts.lan_iface,
                    comment("hairpin"),
                    facts.lan_ip
                ),
            );
        }
    }
    let (ext_iface, random) = match &st.facts {
        Some(f) => (f.ext_iface.as_str(), f.random_fully),
        None => ("net1", false),
    };
    for f in &st.fips {
        push(
            Some(&f.key),
            format!(
                "-A {CHAIN_POST} -s {}/32 -o {ext_iface} {} -j SNAT --to-source {}",
                f.internal,
                comment(&f.key.to_string()),
                f.eip
            ),
        );
    }
    for s in &st.snats {
        push(
            Some(&s.key),
            format!(
                "-A {CHAIN_POST} -s {} -o {ext_iface} {} -j SNAT --to-source {}{}",
                s.cidr,
                comment(&s.key.to_string()),
                s.eip,
                if random { " --random-fully" } else { "" }
            ),
        );
    }

    // Shared DNAT groups: the i-th of n backends takes every (n-i)-th new
    // connection reaching it, the last takes the rest: an even spread.
    for (chain, members) in shared_chains {
        let n = members.len();
        for (i, d) in members.iter().enumerate() {
            let p = d.proto.as_str();
            let nth = if i + 1 < n {
                format!("-m statistic --mode nth --every {} --packet 0 ", n - i)
            } else {
                String::new()
            };
            push(
                Some(&d.key),
                format!(
                    "-A {chain} -p {p} {nth}{} -j DNAT --to-destination {}:{}",
                    comment(&d.key.to_string()),
                    d.internal,
                    d.int_port.nat_form()
                ),
            );
        }
        r.chains.push(chain);
    }
    r
}

/// The `iptables-restore --noflush` input for the state.
pub fn render(st: &NatState) -> String {
    render_lines(st).to_restore(&[])
}
