//! `render`: the NAT state as `iptables-restore --noflush` input for the
//! agent's own chains. Pure and deterministic.

use std::collections::{BTreeMap, BTreeSet};
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

impl Line {
    /// The chain this line appends to.
    pub fn chain(&self) -> &str {
        self.text
            .strip_prefix("-A ")
            .and_then(|r| r.split(' ').next())
            .unwrap_or_default()
    }
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

    /// Each declared chain's rule text, to tell which chains a change touches.
    pub fn chain_texts(&self) -> BTreeMap<String, String> {
        self.chain_texts_where(|_| true)
    }

    /// `chain_texts` of the chains `keep` selects only (the others' lines
    /// are not copied).
    pub fn chain_texts_where(&self, keep: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = self
            .chains
            .iter()
            .filter(|c| keep(c))
            .map(|c| (c.clone(), String::new()))
            .collect();
        for l in &self.lines {
            if let Some(t) = m.get_mut(l.chain()) {
                t.push_str(&l.text);
                t.push('\n');
            }
        }
        m
    }

    /// The same rendering restricted to `chains` (declarations and lines),
    /// order kept.
    pub fn only(&self, chains: &BTreeSet<String>) -> Rendered {
        Rendered {
            chains: self
                .chains
                .iter()
                .filter(|c| chains.contains(*c))
                .cloned()
                .collect(),
            lines: self
                .lines
                .iter()
                .filter(|l| chains.contains(l.chain()))
                .cloned()
                .collect(),
        }
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
    render_lines_with(st, &|_| true)
}

/// Renders the state, but the rules of a DNAT port-block chain only when
/// `block_wanted(chain)`: the other blocks are declared and jumped to, but
/// their lines left out (the caller knows they did not change).
pub fn render_lines_with(st: &NatState, block_wanted: &dyn Fn(&str) -> bool) -> Rendered {
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

    // PREROUTING: DNAT groups (by EIP, protocol, port) in their bucket
    // chains, each bucket entered by one jump; then FIPs.
    let mut buckets: Vec<(String, Vec<Line>)> = Vec::new();
    // The block being filled and whether its rules are rendered.
    let mut open: Option<(DnatBucket, bool)> = None;
    for (g, members) in &st.dnats {
        let p = g.proto.as_str();
        let bucket = DnatBucket::of(g);
        let chain = match bucket {
            Some(b) => {
                if open.is_none_or(|(ob, _)| ob != b) {
                    let name = b.chain();
                    push(
                        None,
                        format!(
                            "-A {CHAIN_PRE} -d {}/32 -p {p} -m {p} --dport {} {} -j {name}",
                            b.eip,
                            b.ports().match_form(),
                            comment("dnat-bucket")
                        ),
                    );
                    open = Some((b, block_wanted(&name)));
                    buckets.push((name, Vec::new()));
                }
                if open.is_some_and(|(_, wanted)| !wanted) {
                    // A shared group's chain is still declared: the block
                    // that is not rewritten keeps jumping to it.
                    if members.len() > 1 {
                        shared_chains.push((g.chain(), members));
                    }
                    continue;
                }
                buckets.last().expect("pushed above").0.clone()
            }
            None => CHAIN_PRE.to_string(),
        };
        let m = format!(
            "-d {}/32 -p {p} -m {p} --dport {}",
            g.eip,
            g.ext.match_form()
        );
        let line = if members.len() == 1 {
            let d = &members[0];
            Line {
                owner: Some(d.key.clone()),
                text: format!(
                    "-A {chain} {m} {} -j DNAT --to-destination {}:{}",
                    comment(&d.key.to_string()),
                    d.internal,
                    d.int_port.nat_form()
                ),
            }
        } else {
            let shared = g.chain();
            shared_chains.push((shared.clone(), members));
            Line {
                owner: None,
                text: format!(
                    "-A {chain} {m} {} -j {shared}",
                    comment(&format!("dnat-shared/{}/{p}/{}", g.eip, g.ext))
                ),
            }
        };
        match bucket {
            Some(_) => buckets.last_mut().expect("pushed above").1.push(line),
            None => push(line.owner.as_ref(), line.text),
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

    // POSTROUTING: the gateway's own traffic (its API connections) is never
    // translated; then hairpin, FIP SNAT, SNAT longest prefix first.
    push(
        None,
        format!(
            "-A {CHAIN_POST} -m addrtype --src-type LOCAL {} -j RETURN",
            comment("own-traffic")
        ),
    );
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

    for (chain, lines) in buckets {
        r.chains.push(chain);
        for l in lines {
            push(l.owner.as_ref(), l.text);
        }
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

/// The DNAT port-block chains whose rules differ between `old` and `new`
/// (including blocks that appear or disappear).
pub fn changed_blocks(old: &NatState, new: &NatState) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut note = |g: &DnatGroup| {
        if let Some(b) = DnatBucket::of(g) {
            out.insert(b.chain());
        }
    };
    for (g, m) in &new.dnats {
        if old.dnats.get(g) != Some(m) {
            note(g);
        }
    }
    for g in old.dnats.keys() {
        if !new.dnats.contains_key(g) {
            note(g);
        }
    }
    out
}

/// Whether `chain` is a DNAT port-block chain.
pub fn is_block_chain(chain: &str) -> bool {
    chain.starts_with(BUCKET_PREFIX)
}

/// The `iptables-restore --noflush` input for the state.
pub fn render(st: &NatState) -> String {
    render_lines(st).to_restore(&[])
}
