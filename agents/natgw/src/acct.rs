//! `acct`: per-tenant accounting. Counting rules in the `filter` table
//! (chain `VPCNAT-ACCT`, jumped to from `FORWARD`) whose kernel counters
//! give the packets and bytes of every SNAT, DNAT and FIP object, and the
//! parsing of those counters into metrics. Pure: rendering and parsing only.
//!
//! Why not the NAT rules' own counters: a rule in the `nat` table sees only
//! the first packet of each connection (the others follow the conntrack
//! binding), so its counters count connections, not traffic. Why not
//! conntrack accounting (`nf_conntrack_acct`): its counters go with the
//! connection when it ends, so totals would need an event listener that
//! never misses a destroy. Instead every forwarded packet passes
//! `VPCNAT-ACCT`, whose rules match the connection's conntrack binding:
//!
//! - DNAT: `--ctstate DNAT` with the original destination (EIP, protocol,
//!   external port) and the reply source (internal address and port) the
//!   rule maps to. DNAT happens in `PREROUTING`, before `FORWARD`, so even a
//!   connection's first packet carries its binding. Original direction is
//!   `in` (towards the VPC), reply `out`.
//! - SNAT and the outbound half of a FIP: `--ctstate SNAT` with the
//!   original source (the rule's range) and the reply destination (the
//!   EIP); original direction is `out`, reply `in`. SNAT happens in
//!   `POSTROUTING`, after `FORWARD`, so the first packet of a connection is
//!   not yet bound when it is counted: a rule that mirrors the SNAT rule's
//!   own match (`-s <range> -o <external interface>`, first match in the
//!   same order) counts packets of new connections that carry no binding
//!   yet. A retransmitted first packet already carries the binding and is
//!   counted by the tuple rule: nothing is counted twice or missed.
//! - The inbound half of a FIP: as DNAT, without protocol or ports.
//!
//! Every counting rule ends in `-j RETURN`, so a packet is counted by the
//! first rule that matches, in the order the NAT rules are matched (DNAT
//! before FIP before SNAT; a hairpin connection, both DNAT'ed and SNAT'ed,
//! counts for its DNAT). DNAT counting rules live in chains mirroring the
//! `nat` table's port blocks (`VPCNAT-A-*` for `VPCNAT-D-*`), entered by one
//! jump per block, so a packet passes a few dozen rules however many DNAT
//! rules exist, and a change rewrites only its block.
//!
//! Counters survive re-applies: `iptables-restore --noflush` zeroes the
//! counters of every chain it declares (a test proves it), so before a
//! chain is rewritten its live counters are read and handed to the new
//! rules in the restore input (`[packets:bytes]`, `iptables-restore -c`),
//! per owner and direction. Packets counted between that read and the
//! restore (a few milliseconds) are lost.
//!
//! Every counting rule carries the comment `vpcnet:<in|out>/<kind>/<ns>/<name>`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::*;
use crate::render::{Line, Rendered};

/// The accounting chain in the `filter` table, jumped to from `FORWARD`.
pub const CHAIN_ACCT: &str = "VPCNAT-ACCT";
/// Prefix of the DNAT accounting chains, one per DNAT port block.
pub const ACCT_BUCKET_PREFIX: &str = "VPCNAT-A-";

/// Direction of traffic, seen from the VPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dir {
    /// Towards the VPC: packets to an EIP.
    In,
    /// From the VPC: packets leaving through an EIP.
    Out,
}

impl Dir {
    /// `in` / `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// The comment of a counting rule: `vpcnet:<dir>/<kind>/<ns>/<name>`.
pub fn acct_comment(dir: Dir, key: &ObjKey) -> String {
    format!("vpcnet:{}/{key}", dir.as_str())
}

/// Parses `acct_comment` output (without quotes).
pub fn parse_acct_comment(c: &str) -> Option<(Dir, ObjKey)> {
    let rest = c.strip_prefix("vpcnet:")?;
    let (dir, rest) = rest.split_once('/')?;
    let dir = match dir {
        "in" => Dir::In,
        "out" => Dir::Out,
        _ => return None,
    };
    let mut parts = rest.splitn(3, '/');
    let kind = Kind::parse(parts.next()?)?;
    let ns = parts.next()?;
    let name = parts.next()?;
    if kind == Kind::Eip || ns.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    Some((dir, ObjKey::new(kind, ns, name)))
}

/// The accounting chain of a DNAT port block.
pub fn bucket_chain(b: &DnatBucket) -> String {
    b.chain().replacen(BUCKET_PREFIX, ACCT_BUCKET_PREFIX, 1)
}

/// The `nat` port-block chain an accounting chain mirrors.
pub fn nat_block_of(acct_chain: &str) -> Option<String> {
    acct_chain
        .strip_prefix(ACCT_BUCKET_PREFIX)
        .map(|s| format!("{BUCKET_PREFIX}{s}"))
}

/// Whether `chain` is a DNAT accounting chain.
pub fn is_acct_bucket(chain: &str) -> bool {
    chain.starts_with(ACCT_BUCKET_PREFIX)
}

/// An address or range as `iptables-save` prints conntrack options: a
/// single address without `/32`.
fn net(n: &Ipv4Net) -> String {
    if n.prefix_len() == 32 {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

fn proto_num(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

fn ctdir(d: bool) -> &'static str {
    if d { "ORIGINAL" } else { "REPLY" }
}

fn port_match(p: PortRange) -> String {
    p.match_form()
}

/// Renders the accounting chains. `bucket_wanted(chain)` selects the DNAT
/// accounting chains whose rules are rendered (the others are declared and
/// jumped to only); `skip(owner)` leaves an owner's rules out. The option
/// order is the one `iptables-save` prints, so the rules read back as
/// rendered.
pub fn render_acct(
    st: &NatState,
    bucket_wanted: &dyn Fn(&str) -> bool,
    skip: &dyn Fn(&ObjKey) -> bool,
) -> Rendered {
    let mut r = Rendered {
        chains: vec![CHAIN_ACCT.to_string()],
        lines: Vec::new(),
    };
    let ret = |chain: &str, owner: &ObjKey, dir: Dir, matches: String| Line {
        owner: Some(owner.clone()),
        text: format!(
            "-A {chain} {matches} -m comment --comment \"{}\" -j RETURN",
            acct_comment(dir, owner)
        ),
    };
    let mut buckets: Vec<(String, bool, Vec<Line>)> = Vec::new();
    let mut acct: Vec<Line> = Vec::new();
    let mut open: Option<DnatBucket> = None;
    for (g, members) in &st.dnats {
        let p = proto_num(g.proto);
        let bucket = DnatBucket::of(g);
        let chain = match bucket {
            Some(b) => {
                if open != Some(b) {
                    let name = bucket_chain(&b);
                    acct.push(Line {
                        owner: None,
                        text: format!(
                            "-A {CHAIN_ACCT} -m conntrack --ctstate DNAT --ctproto {p} --ctorigdst {} --ctorigdstport {} -m comment --comment \"vpcnet:acct-bucket\" -j {name}",
                            b.eip,
                            port_match(b.ports())
                        ),
                    });
                    buckets.push((name.clone(), bucket_wanted(&name), Vec::new()));
                    open = Some(b);
                }
                let (name, wanted, _) = buckets.last().expect("pushed above");
                if !wanted {
                    continue;
                }
                name.clone()
            }
            None => CHAIN_ACCT.to_string(),
        };
        for d in members {
            if skip(&d.key) {
                continue;
            }
            for (orig, dir) in [(true, Dir::In), (false, Dir::Out)] {
                let l = ret(
                    &chain,
                    &d.key,
                    dir,
                    format!(
                        "-m conntrack --ctstate DNAT --ctproto {p} --ctorigdst {} --ctreplsrc {} --ctorigdstport {} --ctreplsrcport {} --ctdir {}",
                        g.eip,
                        d.internal,
                        port_match(g.ext),
                        port_match(d.int_port),
                        ctdir(orig)
                    ),
                );
                match bucket {
                    Some(_) => buckets.last_mut().expect("pushed above").2.push(l),
                    None => acct.push(l),
                }
            }
        }
    }
    let fips: Vec<&Fip> = st.fips.iter().filter(|f| !skip(&f.key)).collect();
    let snats: Vec<&Snat> = st.snats.iter().filter(|s| !skip(&s.key)).collect();
    for f in &fips {
        for (orig, dir) in [(true, Dir::In), (false, Dir::Out)] {
            acct.push(ret(
                CHAIN_ACCT,
                &f.key,
                dir,
                format!(
                    "-m conntrack --ctstate DNAT --ctorigdst {} --ctreplsrc {} --ctdir {}",
                    f.eip,
                    f.internal,
                    ctdir(orig)
                ),
            ));
        }
    }
    // The first packet of an outbound connection, before POSTROUTING binds
    // it: the SNAT rules' own matches, in their order.
    let ext = st.facts.as_ref().map_or("net1", |f| f.ext_iface.as_str());
    let first = "-m conntrack --ctstate NEW -m conntrack ! --ctstate SNAT,DNAT";
    for f in &fips {
        acct.push(ret(
            CHAIN_ACCT,
            &f.key,
            Dir::Out,
            format!("-s {}/32 -o {ext} {first}", f.internal),
        ));
    }
    for s in &snats {
        acct.push(ret(
            CHAIN_ACCT,
            &s.key,
            Dir::Out,
            format!("-s {} -o {ext} {first}", s.cidr),
        ));
    }
    let bound = |src: &Ipv4Net, eip: Ipv4Addr, owner: &ObjKey, acct: &mut Vec<Line>| {
        for (orig, dir) in [(true, Dir::Out), (false, Dir::In)] {
            acct.push(ret(
                CHAIN_ACCT,
                owner,
                dir,
                format!(
                    "-m conntrack --ctstate SNAT --ctorigsrc {} --ctrepldst {eip} --ctdir {}",
                    net(src),
                    ctdir(orig)
                ),
            ));
        }
    };
    for f in &fips {
        bound(
            &Ipv4Net::new(f.internal, 32).expect("/32"),
            f.eip,
            &f.key,
            &mut acct,
        );
    }
    for s in &snats {
        bound(&s.cidr, s.eip, &s.key, &mut acct);
    }
    r.lines = acct;
    for (name, _, lines) in buckets {
        r.chains.push(name);
        r.lines.extend(lines);
    }
    r
}

/// Counters read from `iptables-save -c`, per rule comment.
pub type Carry = BTreeMap<String, (u64, u64)>;

/// `[packets:bytes] -A CHAIN ...` -> (packets, bytes, `-A CHAIN ...`).
fn split_counters(l: &str) -> Option<(u64, u64, &str)> {
    let rest = l.strip_prefix('[')?;
    let (c, rule) = rest.split_once("] ")?;
    let (p, b) = c.split_once(':')?;
    Some((p.parse().ok()?, b.parse().ok()?, rule))
}

/// The comment of a rule line (`--comment "x"` or `--comment x`).
fn comment_of(rule: &str) -> Option<&str> {
    let rest = rule.split_once("--comment ")?.1;
    if let Some(q) = rest.strip_prefix('"') {
        q.split_once('"').map(|(c, _)| c)
    } else {
        rest.split_whitespace().next()
    }
}

/// The counters of the counting rules in `chains` of a `filter` table dump,
/// summed per comment (owner and direction).
pub fn carry_from(save: &str, chains: &BTreeSet<String>) -> Carry {
    let mut out = Carry::new();
    for (chain, p, b, comment) in counted_lines(save) {
        if chains.contains(chain) {
            let e = out.entry(comment.to_string()).or_default();
            e.0 += p;
            e.1 += b;
        }
    }
    out
}

/// Every counting rule (one with an accounting comment) of the `filter`
/// table in an `iptables-save -c` dump: chain, packets, bytes, comment.
fn counted_lines(save: &str) -> Vec<(&str, u64, u64, &str)> {
    let mut out = Vec::new();
    let mut in_filter = false;
    for l in save.lines() {
        if l.starts_with('*') {
            in_filter = l == "*filter";
            continue;
        }
        if !in_filter {
            continue;
        }
        let Some((p, b, rule)) = split_counters(l) else {
            continue;
        };
        let Some(rest) = rule.strip_prefix("-A ") else {
            continue;
        };
        let chain = rest.split_whitespace().next().unwrap_or_default();
        if !chain.starts_with(CHAIN_PREFIX) {
            continue;
        }
        if let Some(c) = comment_of(rule).filter(|c| parse_acct_comment(c).is_some()) {
            out.push((chain, p, b, c));
        }
    }
    out
}

/// `iptables -S <chain> -v` output (`-A CHAIN ... -c packets bytes -j X`)
/// in the form of `iptables-save -c -t filter` (`[packets:bytes] -A ...`).
pub fn listing_to_save(listing: &str) -> String {
    let mut s = String::from("*filter\n");
    for l in listing.lines().filter(|l| l.starts_with("-A ")) {
        let parsed = l.rfind(" -c ").and_then(|i| {
            let mut rest = l[i + 4..].splitn(3, ' ');
            let p: u64 = rest.next()?.parse().ok()?;
            let b: u64 = rest.next()?.parse().ok()?;
            let tail = rest.next().map(|t| format!(" {t}")).unwrap_or_default();
            Some(format!("[{p}:{b}] {}{tail}", &l[..i]))
        });
        if let Some(line) = parsed {
            s.push_str(&line);
            s.push('\n');
        }
    }
    s.push_str("COMMIT\n");
    s
}

/// The `iptables-restore -c --noflush` input for `r` in the `filter` table:
/// each owner's counters from `carry` go to its first rule of the same
/// comment (and are taken out of `carry`); `extra` lines (`-X`) follow.
pub fn restore_input(r: &Rendered, carry: &mut Carry, extra: &[String]) -> String {
    let mut s = String::with_capacity(64 + r.lines.len() * 200);
    s.push_str("*filter\n");
    for c in &r.chains {
        let _ = writeln!(s, ":{c} - [0:0]");
    }
    for l in &r.lines {
        let (p, b) = comment_of(&l.text)
            .and_then(|c| carry.remove(c))
            .unwrap_or((0, 0));
        let _ = writeln!(s, "[{p}:{b}] {}", l.text);
    }
    for e in extra {
        s.push_str(e);
        s.push('\n');
    }
    s.push_str("COMMIT\n");
    s
}

/// Counters of rules that are gone, per EIP object and direction: an EIP's
/// totals must not drop when one of its rules is deleted or moves to
/// another EIP. Kept by the agent (lost when it restarts).
pub type Retired = BTreeMap<(ObjKey, Dir), (u64, u64)>;

/// Moves out of `carry` the counters that may not go to the new rules:
/// those of owners whose EIP differs in `new` (a new `eip` label is a new
/// series, from zero) or that are not in `new` at all, when `all` every
/// one. Without an `old` state (the agent's first apply) the owners in
/// `new` keep theirs. They are added to their old EIP in `retired` (dropped when the old
/// state does not know the owner).
pub fn retire(
    carry: &mut Carry,
    old: Option<&NatState>,
    new: &NatState,
    all: bool,
    retired: &mut Retired,
) {
    let new_rules = rule_eips(new);
    let old_rules = old.map(rule_eips).unwrap_or_default();
    carry.retain(|c, (p, b)| {
        let Some((dir, key)) = parse_acct_comment(c) else {
            return false;
        };
        let was = old_rules.get(&key).copied();
        let keep = match (was, new_rules.get(&key)) {
            (Some(w), Some(n)) => w == *n,
            // The first apply of a restarted agent: what it last applied is
            // unknown, the owner's EIP is taken to be the same.
            (None, Some(_)) => old.is_none(),
            _ => false,
        };
        if !all && keep {
            return true;
        }
        if let Some(eip_key) = was.and_then(|ip| old.and_then(|o| o.eips.get(&ip))) {
            let e = retired.entry((eip_key.clone(), dir)).or_default();
            e.0 += *p;
            e.1 += *b;
        }
        false
    });
    let live: BTreeSet<&ObjKey> = new.eips.values().collect();
    retired.retain(|(k, _), _| live.contains(k));
}

/// Packets and bytes of one rule object in one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCount {
    /// The rule object.
    pub key: ObjKey,
    /// Its EIP.
    pub eip: Ipv4Addr,
    /// Direction.
    pub dir: Dir,
    /// Packets.
    pub packets: u64,
    /// Bytes (IP header included).
    pub bytes: u64,
}

/// Packets and bytes of one EIP in one direction: the sum of its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EipCount {
    /// The IptablesEIP object.
    pub key: ObjKey,
    /// Its address.
    pub eip: Ipv4Addr,
    /// Direction.
    pub dir: Dir,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Everything one scrape reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Per rule object and direction, for every counting rule present.
    pub rules: Vec<RuleCount>,
    /// Per EIP of the state and direction (zero when nothing counted).
    pub eips: Vec<EipCount>,
}

/// The EIP of every rule object of `st`.
pub fn rule_eips(st: &NatState) -> BTreeMap<ObjKey, Ipv4Addr> {
    let mut m = BTreeMap::new();
    for s in &st.snats {
        m.insert(s.key.clone(), s.eip);
    }
    for f in &st.fips {
        m.insert(f.key.clone(), f.eip);
    }
    for d in st.dnats.values().flatten() {
        m.insert(d.key.clone(), d.eip);
    }
    m
}

/// The counters of an `iptables-save -c -t filter` dump, per rule object of
/// `st` and direction, and their sums per EIP with the `retired` counts of
/// rules gone. Rules not in `st` (none, after an apply) are left out; so is
/// an object with no counting rule present.
pub fn tally(save: &str, st: &NatState, retired: &Retired) -> Tally {
    let eips = rule_eips(st);
    let mut rules: BTreeMap<(ObjKey, Dir), (u64, u64)> = BTreeMap::new();
    for (_, p, b, c) in counted_lines(save) {
        let Some((dir, key)) = parse_acct_comment(c) else {
            continue;
        };
        if !eips.contains_key(&key) {
            continue;
        }
        let e = rules.entry((key, dir)).or_default();
        e.0 += p;
        e.1 += b;
    }
    let mut per_eip: BTreeMap<(Ipv4Addr, Dir), (u64, u64)> = BTreeMap::new();
    for ip in st.eips.keys() {
        for d in [Dir::In, Dir::Out] {
            per_eip.insert((*ip, d), (0, 0));
        }
    }
    for ((key, dir), (p, b)) in retired {
        if let Some(ip) = st.eips.iter().find(|(_, k)| *k == key).map(|(ip, _)| *ip)
            && let Some(e) = per_eip.get_mut(&(ip, *dir))
        {
            e.0 += p;
            e.1 += b;
        }
    }
    let mut t = Tally::default();
    for ((key, dir), (p, b)) in rules {
        let eip = eips[&key];
        if let Some(e) = per_eip.get_mut(&(eip, dir)) {
            e.0 += p;
            e.1 += b;
        }
        t.rules.push(RuleCount {
            key,
            eip,
            dir,
            packets: p,
            bytes: b,
        });
    }
    for ((eip, dir), (p, b)) in per_eip {
        t.eips.push(EipCount {
            key: st.eips[&eip].clone(),
            eip,
            dir,
            packets: p,
            bytes: b,
        });
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(kind: Kind, n: &str) -> ObjKey {
        ObjKey::new(kind, "t", n)
    }

    fn state() -> NatState {
        let e1: Ipv4Addr = "172.16.3.10".parse().unwrap();
        let e2: Ipv4Addr = "172.16.3.11".parse().unwrap();
        let mut st = NatState::default();
        st.eips.insert(e1, k(Kind::Eip, "e1"));
        st.eips.insert(e2, k(Kind::Eip, "e2"));
        st.snats.push(Snat {
            key: k(Kind::Snat, "s1"),
            cidr: "10.0.1.0/24".parse().unwrap(),
            eip: e1,
        });
        st.fips.push(Fip {
            key: k(Kind::Fip, "f1"),
            eip: e1,
            internal: "10.0.1.9".parse().unwrap(),
        });
        let g = DnatGroup {
            eip: e2,
            proto: Proto::Tcp,
            ext: PortRange::parse("8888").unwrap(),
        };
        st.dnats.insert(
            g,
            vec![Dnat {
                key: k(Kind::Dnat, "web"),
                eip: e2,
                proto: Proto::Tcp,
                ext: g.ext,
                internal: "10.0.1.2".parse().unwrap(),
                int_port: PortRange::parse("80").unwrap(),
            }],
        );
        let g2 = DnatGroup {
            eip: e2,
            proto: Proto::Udp,
            ext: PortRange::parse("250-260").unwrap(),
        };
        st.dnats.insert(
            g2,
            vec![Dnat {
                key: k(Kind::Dnat, "range"),
                eip: e2,
                proto: Proto::Udp,
                ext: g2.ext,
                internal: "10.0.1.3".parse().unwrap(),
                int_port: PortRange::parse("250-260").unwrap(),
            }],
        );
        st
    }

    #[test]
    fn comments_round_trip() {
        let key = k(Kind::Dnat, "web");
        let c = acct_comment(Dir::In, &key);
        assert_eq!(c, "vpcnet:in/dnat/t/web");
        assert_eq!(parse_acct_comment(&c), Some((Dir::In, key)));
        for bad in [
            "vpcnet:jump",
            "vpcnet:dnat/t/web",
            "vpcnet:in/eip/t/e1",
            "vpcnet:in/dnat/t",
            "vpcnet:up/dnat/t/web",
            "vpcnet:acct-bucket",
        ] {
            assert_eq!(parse_acct_comment(bad), None, "{bad}");
        }
    }

    #[test]
    fn renders_every_owner_in_match_order() {
        let r = render_acct(&state(), &|_| true, &|_| false);
        let texts: Vec<&str> = r.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(r.chains, vec!["VPCNAT-ACCT", "VPCNAT-A-AC10030B-T-22"]);
        assert_eq!(
            texts,
            vec![
                "-A VPCNAT-ACCT -m conntrack --ctstate DNAT --ctproto 6 --ctorigdst 172.16.3.11 --ctorigdstport 8704:8959 -m comment --comment \"vpcnet:acct-bucket\" -j VPCNAT-A-AC10030B-T-22",
                "-A VPCNAT-ACCT -m conntrack --ctstate DNAT --ctproto 17 --ctorigdst 172.16.3.11 --ctreplsrc 10.0.1.3 --ctorigdstport 250:260 --ctreplsrcport 250:260 --ctdir ORIGINAL -m comment --comment \"vpcnet:in/dnat/t/range\" -j RETURN",
                "-A VPCNAT-ACCT -m conntrack --ctstate DNAT --ctproto 17 --ctorigdst 172.16.3.11 --ctreplsrc 10.0.1.3 --ctorigdstport 250:260 --ctreplsrcport 250:260 --ctdir REPLY -m comment --comment \"vpcnet:out/dnat/t/range\" -j RETURN",
                "-A VPCNAT-ACCT -m conntrack --ctstate DNAT --ctorigdst 172.16.3.10 --ctreplsrc 10.0.1.9 --ctdir ORIGINAL -m comment --comment \"vpcnet:in/fip/t/f1\" -j RETURN",
                "-A VPCNAT-ACCT -m conntrack --ctstate DNAT --ctorigdst 172.16.3.10 --ctreplsrc 10.0.1.9 --ctdir REPLY -m comment --comment \"vpcnet:out/fip/t/f1\" -j RETURN",
                "-A VPCNAT-ACCT -s 10.0.1.9/32 -o net1 -m conntrack --ctstate NEW -m conntrack ! --ctstate SNAT,DNAT -m comment --comment \"vpcnet:out/fip/t/f1\" -j RETURN",
                "-A VPCNAT-ACCT -s 10.0.1.0/24 -o net1 -m conntrack --ctstate NEW -m conntrack ! --ctstate SNAT,DNAT -m comment --comment \"vpcnet:out/snat/t/s1\" -j RETURN",
                "-A VPCNAT-ACCT -m conntrack --ctstate SNAT --ctorigsrc 10.0.1.9 --ctrepldst 172.16.3.10 --ctdir ORIGINAL -m comment --comment \"vpcnet:out/fip/t/f1\" -j RETURN",
                "-A VPCNAT-ACCT -m conntrack --ctstate SNAT --ctorigsrc 10.0.1.9 --ctrepldst 172.16.3.10 --ctdir REPLY -m comment --comment \"vpcnet:in/fip/t/f1\" -j RETURN",
                "-A VPCNAT-ACCT -m conntrack --ctstate SNAT --ctorigsrc 10.0.1.0/24 --ctrepldst 172.16.3.10 --ctdir ORIGINAL -m comment --comment \"vpcnet:out/snat/t/s1\" -j RETURN",
                "-A VPCNAT-ACCT -m conntrack --ctstate SNAT --ctorigsrc 10.0.1.0/24 --ctrepldst 172.16.3.10 --ctdir REPLY -m comment --comment \"vpcnet:in/snat/t/s1\" -j RETURN",
                "-A VPCNAT-A-AC10030B-T-22 -m conntrack --ctstate DNAT --ctproto 6 --ctorigdst 172.16.3.11 --ctreplsrc 10.0.1.2 --ctorigdstport 8888 --ctreplsrcport 80 --ctdir ORIGINAL -m comment --comment \"vpcnet:in/dnat/t/web\" -j RETURN",
                "-A VPCNAT-A-AC10030B-T-22 -m conntrack --ctstate DNAT --ctproto 6 --ctorigdst 172.16.3.11 --ctreplsrc 10.0.1.2 --ctorigdstport 8888 --ctreplsrcport 80 --ctdir REPLY -m comment --comment \"vpcnet:out/dnat/t/web\" -j RETURN",
            ]
        );
        assert_eq!(
            nat_block_of("VPCNAT-A-AC10030B-T-22").as_deref(),
            Some("VPCNAT-D-AC10030B-T-22")
        );
        assert!(nat_block_of(CHAIN_ACCT).is_none());
        // A block not wanted is declared and jumped to, its rules left out;
        // a skipped owner has no rules.
        let r = render_acct(&state(), &|_| false, &|o| o.name == "s1");
        assert_eq!(r.chains.len(), 2);
        assert!(
            !r.lines
                .iter()
                .any(|l| l.chain() == "VPCNAT-A-AC10030B-T-22")
        );
        assert!(!r.lines.iter().any(|l| l.text.contains("snat/t/s1")));
        assert!(r.lines.iter().any(|l| l.text.contains("-j VPCNAT-A-")));
    }

    const SAVE: &str = "# Generated by iptables-save v1.8.9
*nat
:VPCNAT-POSTROUTING - [0:0]
[9:900] -A VPCNAT-POSTROUTING -s 10.0.1.0/24 -o net1 -m comment --comment \"vpcnet:snat/t/s1\" -j SNAT --to-source 172.16.3.10
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:VPCNAT-ACCT - [0:0]
:VPCNAT-A-AC10030B-T-22 - [0:0]
[30:2000] -A FORWARD -m comment --comment \"vpcnet:jump\" -j VPCNAT-ACCT
[10:1000] -A VPCNAT-ACCT -m conntrack --ctstate DNAT --ctproto 6 --ctorigdst 172.16.3.11 --ctorigdstport 8704:8959 -m comment --comment \"vpcnet:acct-bucket\" -j VPCNAT-A-AC10030B-T-22
[1:60] -A VPCNAT-ACCT -s 10.0.1.0/24 -o net1 -m conntrack --ctstate NEW -m conntrack ! --ctstate SNAT,DNAT -m comment --comment \"vpcnet:out/snat/t/s1\" -j RETURN
[4:400] -A VPCNAT-ACCT -m conntrack --ctstate SNAT --ctorigsrc 10.0.1.0/24 --ctrepldst 172.16.3.10 --ctdir ORIGINAL -m comment --comment \"vpcnet:out/snat/t/s1\" -j RETURN
[5:5000] -A VPCNAT-ACCT -m conntrack --ctstate SNAT --ctorigsrc 10.0.1.0/24 --ctrepldst 172.16.3.10 --ctdir REPLY -m comment --comment vpcnet:in/snat/t/s1 -j RETURN
[7:700] -A VPCNAT-ACCT -m comment --comment \"vpcnet:in/snat/t/gone\" -j RETURN
[6:600] -A VPCNAT-A-AC10030B-T-22 -m conntrack --ctstate DNAT --ctdir ORIGINAL -m comment --comment \"vpcnet:in/dnat/t/web\" -j RETURN
[3:300] -A VPCNAT-A-AC10030B-T-22 -m conntrack --ctstate DNAT --ctdir REPLY -m comment --comment \"vpcnet:out/dnat/t/web\" -j RETURN
[8:8] -A OTHER -m comment --comment \"vpcnet:in/dnat/t/web\" -j RETURN
COMMIT
";

    #[test]
    fn tallies_per_rule_and_eip() {
        let t = tally(SAVE, &state(), &Retired::new());
        let rules: Vec<(String, &str, u64, u64)> = t
            .rules
            .iter()
            .map(|r| (r.key.to_string(), r.dir.as_str(), r.packets, r.bytes))
            .collect();
        // Nat counters, rules of other chains and of objects not in the
        // state do not count; the first-packet rule adds to its SNAT's `out`.
        assert_eq!(
            rules,
            vec![
                ("snat/t/s1".to_string(), "in", 5, 5000),
                ("snat/t/s1".to_string(), "out", 5, 460),
                ("dnat/t/web".to_string(), "in", 6, 600),
                ("dnat/t/web".to_string(), "out", 3, 300),
            ]
        );
        assert_eq!(t.rules[0].eip.to_string(), "172.16.3.10");
        assert_eq!(t.rules[2].eip.to_string(), "172.16.3.11");
        let eips: Vec<(String, String, &str, u64, u64)> = t
            .eips
            .iter()
            .map(|e| {
                (
                    e.key.name.clone(),
                    e.eip.to_string(),
                    e.dir.as_str(),
                    e.packets,
                    e.bytes,
                )
            })
            .collect();
        assert_eq!(
            eips,
            vec![
                ("e1".into(), "172.16.3.10".into(), "in", 5, 5000),
                ("e1".into(), "172.16.3.10".into(), "out", 5, 460),
                ("e2".into(), "172.16.3.11".into(), "in", 6, 600),
                ("e2".into(), "172.16.3.11".into(), "out", 3, 300),
            ]
        );
        // Rules of the state with no counting rule present have no series;
        // EIPs always have theirs.
        let t = tally("*filter\nCOMMIT\n", &state(), &Retired::new());
        assert!(t.rules.is_empty());
        assert_eq!(t.eips.len(), 4);
        assert!(t.eips.iter().all(|e| e.packets == 0 && e.bytes == 0));
        // The counts of rules gone stay in their EIP's totals.
        let retired: Retired = [((k(Kind::Eip, "e2"), Dir::In), (2, 200))].into();
        let t = tally(SAVE, &state(), &retired);
        assert_eq!((t.eips[2].packets, t.eips[2].bytes), (8, 800));
        assert_eq!((t.eips[3].packets, t.eips[3].bytes), (3, 300));
    }

    #[test]
    fn counters_carried_into_the_new_rules() {
        let chains: BTreeSet<String> = [CHAIN_ACCT.to_string()].into();
        let mut carry = carry_from(SAVE, &chains);
        assert_eq!(carry["vpcnet:out/snat/t/s1"], (5, 460));
        assert_eq!(carry["vpcnet:in/snat/t/s1"], (5, 5000));
        assert!(!carry.contains_key("vpcnet:in/dnat/t/web"), "other chain");
        assert!(!carry.contains_key("vpcnet:acct-bucket"));
        let r = render_acct(&state(), &|_| true, &|_| false);
        let acct_only = r.only(&chains);
        let input = restore_input(&acct_only, &mut carry, &["-X VPCNAT-OLD".into()]);
        let lines: Vec<&str> = input.lines().collect();
        assert_eq!(lines[0], "*filter");
        assert_eq!(lines[1], ":VPCNAT-ACCT - [0:0]");
        assert_eq!(*lines.last().unwrap(), "COMMIT");
        assert_eq!(lines[lines.len() - 2], "-X VPCNAT-OLD");
        // The first rule of each owner and direction takes the sum, the
        // others start at zero.
        let with = |c: &str| -> Vec<&str> {
            lines
                .iter()
                .filter(|l| l.contains(&format!("\"{c}\"")))
                .map(|l| l.split(' ').next().unwrap())
                .collect()
        };
        assert_eq!(with("vpcnet:out/snat/t/s1"), vec!["[5:460]", "[0:0]"]);
        assert_eq!(with("vpcnet:in/snat/t/s1"), vec!["[5:5000]"]);
        assert_eq!(with("vpcnet:acct-bucket"), vec!["[0:0]"]);
        // What is left belongs to owners gone.
        assert_eq!(
            carry.keys().collect::<Vec<_>>(),
            vec!["vpcnet:in/snat/t/gone"]
        );
    }

    #[test]
    fn chain_listing_as_save() {
        let listing = "-N VPCNAT-ACCT
-A VPCNAT-ACCT -m conntrack --ctstate DNAT --ctdir REPLY -m comment --comment \"vpcnet:out/dnat/t/web\" -c 5 77 -j RETURN
-A VPCNAT-ACCT -m comment --comment \"vpcnet:in/dnat/t/web\" -c 1 2
-A VPCNAT-ACCT -j RETURN
";
        let save = listing_to_save(listing);
        assert_eq!(
            save,
            "*filter
[5:77] -A VPCNAT-ACCT -m conntrack --ctstate DNAT --ctdir REPLY -m comment --comment \"vpcnet:out/dnat/t/web\" -j RETURN
[1:2] -A VPCNAT-ACCT -m comment --comment \"vpcnet:in/dnat/t/web\"
COMMIT
"
        );
        let carry = carry_from(&save, &[CHAIN_ACCT.to_string()].into());
        assert_eq!(carry["vpcnet:out/dnat/t/web"], (5, 77));
    }

    #[test]
    fn retiring_keeps_eip_totals() {
        let old = state();
        let mut gone = old.clone();
        gone.snats.push(Snat {
            key: k(Kind::Snat, "gone"),
            cidr: "10.0.2.0/24".parse().unwrap(),
            eip: "172.16.3.11".parse().unwrap(),
        });
        let mut new = old.clone();
        // s1 moves to e2; web stays; gone is gone.
        new.snats[0].eip = "172.16.3.11".parse().unwrap();
        let mut carry: Carry = [
            ("vpcnet:out/snat/t/s1".to_string(), (5, 500)),
            ("vpcnet:in/dnat/t/web".to_string(), (6, 600)),
            ("vpcnet:in/snat/t/gone".to_string(), (7, 700)),
            ("vpcnet:in/snat/t/unknown".to_string(), (1, 1)),
        ]
        .into();
        let mut retired = Retired::new();
        retire(&mut carry, Some(&gone), &new, false, &mut retired);
        assert_eq!(
            carry.keys().collect::<Vec<_>>(),
            vec!["vpcnet:in/dnat/t/web"]
        );
        assert_eq!(
            retired,
            [
                ((k(Kind::Eip, "e1"), Dir::Out), (5, 500)),
                ((k(Kind::Eip, "e2"), Dir::In), (7, 700)),
            ]
            .into()
        );
        // Leftovers after the restore (`all`) retire too; an EIP gone takes
        // its retired counts with it.
        new.eips.remove(&"172.16.3.10".parse().unwrap());
        retire(&mut carry, Some(&new), &new, true, &mut retired);
        assert!(carry.is_empty());
        // A restarted agent's first apply: owners still there keep theirs.
        let mut carry: Carry = [
            ("vpcnet:in/dnat/t/web".to_string(), (6, 600)),
            ("vpcnet:in/snat/t/gone".to_string(), (7, 700)),
        ]
        .into();
        let mut none = Retired::new();
        retire(&mut carry, None, &new, false, &mut none);
        assert_eq!(
            carry.keys().collect::<Vec<_>>(),
            vec!["vpcnet:in/dnat/t/web"]
        );
        assert!(none.is_empty());
        assert_eq!(
            retired,
            [((k(Kind::Eip, "e2"), Dir::In), (13, 1300))].into()
        );
    }
}
