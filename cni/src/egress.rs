//! The host egress grant: a few exact destinations outside every VPC (the
//! API server, upstream DNS resolvers) that pods of the operator's own
//! namespace may open connections to over their probe path.
//!
//! A pod asks with the annotation [`HOST_EGRESS`] (`IPV4:PORT/PROTO,...`);
//! only pods of the CNI's `hostEgressNamespace` get it, and only while the
//! probe path is on. Granted, the pod gets one route per destination via the
//! node's probe source on `probe0`, and the node accepts new connections
//! from exactly that veth and probe address to exactly those destinations,
//! in FORWARD (masqueraded) and in INPUT (the node's own addresses). The
//! per-pod rules live in chains of their own that the probe chains jump to
//! and never flush ([`FILTER_CHAINS`], [`NAT_CHAIN`]); each carries the
//! container ID as its comment, which is how DEL finds them.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::Stdio;

use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, RouteMessageBuilder};

pub use vpcnet_api::contract::annotations::HOST_EGRESS;

use crate::config::PodRef;
use crate::error::CniError;
use crate::netns::{self, Netns};
use crate::probe::{self, ProbeConfig};
use crate::veth;

/// The filter chains holding the per-pod accepts: `(probe chain jumping to
/// it, chain)`.
pub const FILTER_CHAINS: [(&str, &str); 2] = [
    ("VPCNET-PROBE-IN", "VPCNET-EGRESS-IN"),
    ("VPCNET-PROBE-FWD", "VPCNET-EGRESS-FWD"),
];
/// The nat chain holding the per-pod masquerades, jumped to from POSTROUTING.
pub const NAT_CHAIN: &str = "VPCNET-EGRESS-NAT";

/// Where the node says whether it forwards IPv4.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One destination of a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dest {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.ip, self.port, self.proto.as_str())
    }
}

fn parse_entry(entry: &str) -> Result<Dest, String> {
    let bad =
        |why: &str| format!("entry {entry:?}: {why} (expected IPV4:PORT/tcp or IPV4:PORT/udp)");
    let (addr, proto) = entry.split_once('/').ok_or_else(|| bad("no /PROTO"))?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return Err(bad("the protocol is neither tcp nor udp")),
    };
    let (ip, port) = addr.rsplit_once(':').ok_or_else(|| bad("no :PORT"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad("not an IPv4 address"))?;
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => return Err(bad("the port is not in 1..=65535")),
    };
    if ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_link_local()
    {
        return Err(bad("not a unicast address of another host"));
    }
    Ok(Dest { ip, port, proto })
}

/// Parses the annotation's value (pure): comma-separated entries, blanks
/// around them ignored, duplicates merged. Any bad entry is an error naming
/// it; an empty list is an error too.
pub fn parse(value: &str) -> Result<Vec<Dest>, String> {
    let mut out = BTreeSet::new();
    for entry in value.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(format!("empty entry in {value:?}"));
        }
        out.insert(parse_entry(entry)?);
    }
    Ok(out.into_iter().collect())
}

fn refused(pod: &PodRef, reason: String) -> CniError {
    CniError::HostEgress {
        pod: pod.to_string(),
        reason,
    }
}

/// What the pod is granted (pure): nothing without the annotation; with it,
/// its destinations, or an error saying why not: a pod outside
/// `trusted_namespace`, no `hostEgressNamespace` configured, the probe path
/// off, a bad entry, or a destination inside the probe range (another pod's
/// probe address).
pub fn decide(
    pod: &PodRef,
    annotation: Option<&str>,
    trusted_namespace: Option<&str>,
    probe_cidr: Option<Ipv4Net>,
) -> Result<Vec<Dest>, CniError> {
    let Some(value) = annotation else {
        return Ok(Vec::new());
    };
    let Some(trusted) = trusted_namespace.filter(|t| !t.is_empty()) else {
        return Err(refused(
            pod,
            "the network configuration sets no hostEgressNamespace, so no pod may have host egress"
                .into(),
        ));
    };
    if pod.namespace != trusted {
        return Err(refused(
            pod,
            format!("only pods of namespace {trusted:?} may have host egress"),
        ));
    }
    let Some(cidr) = probe_cidr else {
        return Err(refused(
            pod,
            "the probe path is off (no probeCidr), and host egress runs over it".into(),
        ));
    };
    let dests = parse(value).map_err(|e| refused(pod, e))?;
    if let Some(d) = dests.iter().find(|d| cidr.contains(&d.ip)) {
        return Err(refused(
            pod,
            format!("entry \"{d}\" is inside the probe range {cidr}"),
        ));
    }
    Ok(dests)
}

/// One pod's grant, as the node's rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant<'a> {
    pub container_id: &'a str,
    /// The node's end of the pod's probe veth.
    pub host_ifname: &'a str,
    pub probe_ip: Ipv4Addr,
    pub dests: &'a [Dest],
}

fn check_comment(container_id: &str) -> Result<(), CniError> {
    let ok = !container_id.is_empty()
        && container_id.len() <= 200
        && container_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CniError::Env(format!(
            "container ID {container_id:?} is not [A-Za-z0-9_.-]+ (host egress rules are tagged with it)"
        )))
    }
}

fn matches(g: &Grant, d: &Dest) -> String {
    let p = d.proto.as_str();
    format!(
        "-s {}/32 -d {}/32 -p {p} -m {p} --dport {} -m comment --comment {}",
        g.probe_ip, d.ip, d.port, g.container_id
    )
}

/// The pod's filter rules (pure), `iptables -A` syntax: one accept per
/// destination in each of [`FILTER_CHAINS`], from its own veth only.
pub fn filter_rules(g: &Grant) -> Vec<String> {
    FILTER_CHAINS
        .iter()
        .flat_map(|(_, chain)| {
            g.dests.iter().map(move |d| {
                format!(
                    "-A {chain} -i {} {} -j ACCEPT",
                    g.host_ifname,
                    matches(g, d)
                )
            })
        })
        .collect()
}

/// The pod's nat rules (pure): forwarded connections leave with the node's
/// address.
pub fn nat_rules(g: &Grant) -> Vec<String> {
    g.dests
        .iter()
        .map(|d| format!("-A {NAT_CHAIN} {} -j MASQUERADE", matches(g, d)))
        .collect()
}

/// The rules of `container_id` in an `iptables -S` listing (pure).
pub fn owned(listing: &str, container_id: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| l.starts_with("-A "))
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.windows(2)
                .any(|p| p[0] == "--comment" && p[1].trim_matches('"') == container_id)
        })
        .map(str::to_string)
        .collect()
}

/// `iptables-restore --noflush` input (pure) deleting the `stale` rules
/// (as listed by `iptables -S`) and appending the `new` ones, per table.
/// No chain is declared: that would flush it.
pub fn restore_input(filter: (&[String], &[String]), nat: (&[String], &[String])) -> String {
    let mut r = String::new();
    for (table, (stale, new)) in [("filter", filter), ("nat", nat)] {
        if stale.is_empty() && new.is_empty() {
            continue;
        }
        r += &format!("*{table}\n");
        for s in stale {
            r += &format!("-D {}\n", s.strip_prefix("-A ").unwrap_or(s));
        }
        for n in new {
            r += n;
            r += "\n";
        }
        r += "COMMIT\n";
    }
    r
}

fn listing(node: Option<&Netns>, table: &str, chain: &str) -> Result<String, CniError> {
    let out = netns::command(node, "iptables")
        .args(["-w", "-t", table, "-S", chain])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| CniError::Config(format!("running iptables: {e}")))?;
    // A chain that does not exist holds no rule of anyone.
    Ok(if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::new()
    })
}

/// The container's rules now on the node: `(filter, nat)`.
fn installed(
    node: Option<&Netns>,
    container_id: &str,
) -> Result<(Vec<String>, Vec<String>), CniError> {
    let mut filter = Vec::new();
    for (_, chain) in FILTER_CHAINS {
        filter.extend(owned(&listing(node, "filter", chain)?, container_id));
    }
    let nat = owned(&listing(node, "nat", NAT_CHAIN)?, container_id);
    Ok((filter, nat))
}

fn restore(node: Option<&Netns>, input: &str) -> Result<(), CniError> {
    if input.is_empty() {
        return Ok(());
    }
    let mut child = netns::command(node, "iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::Config(format!("running iptables-restore: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .map_err(|e| CniError::Config(format!("writing to iptables-restore: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::Config(format!("iptables-restore: {e}")))?;
    if !out.status.success() {
        return Err(CniError::Config(format!(
            "updating the host egress rules failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Whether the node forwards IPv4 (`/proc/sys/net/ipv4/ip_forward`, read
/// inside the node's namespace).
pub fn forwarding(node: Option<&Netns>) -> Result<bool, CniError> {
    let read = || std::fs::read_to_string(IP_FORWARD);
    let v = match node {
        Some(ns) => ns.enter(read).and_then(|r| r),
        None => read(),
    }
    .map_err(|e| CniError::Config(format!("reading {IP_FORWARD}: {e}")))?;
    Ok(v.trim() != "0")
}

/// Replaces the container's rules on the node by those of `g` (the probe
/// chains and ours exist: `probe::guard_node` ran).
pub fn install(node: Option<&Netns>, cfg: &ProbeConfig, g: &Grant) -> Result<(), CniError> {
    check_comment(g.container_id)?;
    let _lock = probe::lock(cfg)?;
    let (f_old, n_old) = installed(node, g.container_id)?;
    let (f_new, n_new) = (filter_rules(g), nat_rules(g));
    restore(node, &restore_input((&f_old, &f_new), (&n_old, &n_new)))
}

/// Removes every rule of `container_id` from the node; returns how many.
pub fn remove(
    node: Option<&Netns>,
    cfg: &ProbeConfig,
    container_id: &str,
) -> Result<usize, CniError> {
    if check_comment(container_id).is_err() {
        // Never installed any.
        return Ok(0);
    }
    let _lock = probe::lock(cfg)?;
    let (f_old, n_old) = installed(node, container_id)?;
    restore(node, &restore_input((&f_old, &[]), (&n_old, &[])))?;
    Ok(f_old.len() + n_old.len())
}

/// The pod's routes: each destination via the node's probe source on
/// `probe0`, from the pod's probe address.
pub async fn routes(pod: &Handle, g: &Grant<'_>, source: Ipv4Addr) -> Result<(), CniError> {
    let link = veth::link(pod, probe::POD_IFNAME).await?.ok_or_else(|| {
        CniError::Netlink(format!("{} not in the pod's namespace", probe::POD_IFNAME))
    })?;
    let ips: BTreeSet<Ipv4Addr> = g.dests.iter().map(|d| d.ip).collect();
    for ip in ips {
        let r = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(ip, 32)
            .gateway(source)
            .output_interface(link.header.index)
            .pref_source(g.probe_ip)
            .scope(RouteScope::Universe)
            .build();
        pod.route().add(r).replace().execute().await.map_err(|e| {
            CniError::Netlink(format!(
                "route {ip}/32 via {source} dev {}: {e}",
                probe::POD_IFNAME
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ip: &str, port: u16, proto: Proto) -> Dest {
        Dest {
            ip: ip.parse().unwrap(),
            port,
            proto,
        }
    }

    fn pod(ns: &str) -> PodRef {
        PodRef {
            namespace: ns.into(),
            name: "dns-0".into(),
        }
    }

    #[test]
    fn parses_good_lists() {
        assert_eq!(
            parse("10.255.0.1:36443/tcp,172.16.3.2:53/udp,172.16.3.2:53/tcp").unwrap(),
            vec![
                d("10.255.0.1", 36443, Proto::Tcp),
                d("172.16.3.2", 53, Proto::Tcp),
                d("172.16.3.2", 53, Proto::Udp),
            ]
        );
        assert_eq!(
            parse(" 8.8.8.8:53/udp , 8.8.8.8:53/udp").unwrap(),
            vec![d("8.8.8.8", 53, Proto::Udp)],
            "blanks ignored, duplicates merged"
        );
        assert_eq!(
            d("1.2.3.4", 65535, Proto::Tcp).to_string(),
            "1.2.3.4:65535/tcp"
        );
    }

    #[test]
    fn bad_entries_are_named() {
        for (value, entry, why) in [
            ("10.0.0.1:53", "10.0.0.1:53", "no /PROTO"),
            (
                "10.0.0.1:53/sctp",
                "10.0.0.1:53/sctp",
                "neither tcp nor udp",
            ),
            ("10.0.0.1:53/TCP", "10.0.0.1:53/TCP", "neither tcp nor udp"),
            ("10.0.0.1/tcp", "10.0.0.1/tcp", "no :PORT"),
            ("10.0.0.1:0/tcp", "10.0.0.1:0/tcp", "1..=65535"),
            ("10.0.0.1:65536/tcp", "10.0.0.1:65536/tcp", "1..=65535"),
            ("10.0.0.1:+53/tcp", "10.0.0.1:+53/tcp", "1..=65535"),
            ("10.0.0.1:/tcp", "10.0.0.1:/tcp", "1..=65535"),
            ("dns.local:53/udp", "dns.local:53/udp", "not an IPv4"),
            ("[fd00::1]:53/udp", "[fd00::1]:53/udp", "not an IPv4"),
            ("10.0.0.256:53/udp", "10.0.0.256:53/udp", "not an IPv4"),
            ("10.0.0.0/8", "10.0.0.0/8", "neither tcp nor udp"),
            ("127.0.0.1:53/udp", "127.0.0.1:53/udp", "unicast"),
            ("0.0.0.0:53/udp", "0.0.0.0:53/udp", "unicast"),
            ("224.0.0.1:53/udp", "224.0.0.1:53/udp", "unicast"),
            (
                "255.255.255.255:53/udp",
                "255.255.255.255:53/udp",
                "unicast",
            ),
            (
                "169.254.169.254:80/tcp",
                "169.254.169.254:80/tcp",
                "unicast",
            ),
            ("8.8.8.8:53/udp,bogus", "bogus", "no /PROTO"),
        ] {
            let e = parse(value).unwrap_err();
            assert!(e.contains(&format!("{entry:?}")), "{value}: {e}");
            assert!(e.contains(why), "{value}: {e}");
        }
        assert!(parse("").unwrap_err().contains("empty entry"));
        assert!(
            parse("8.8.8.8:53/udp,")
                .unwrap_err()
                .contains("empty entry")
        );
    }

    #[test]
    fn only_the_trusted_namespace_with_the_probe_path_is_granted() {
        let cidr: Option<Ipv4Net> = Some("100.64.0.0/24".parse().unwrap());
        let v = Some("10.255.0.1:36443/tcp");
        assert_eq!(
            decide(&pod("vpcnet-system"), v, Some("vpcnet-system"), cidr).unwrap(),
            vec![d("10.255.0.1", 36443, Proto::Tcp)]
        );
        assert!(
            decide(&pod("tenant"), None, Some("vpcnet-system"), cidr)
                .unwrap()
                .is_empty(),
            "no annotation, nothing asked, nothing refused"
        );
        for (ns, trusted, cidr, why) in [
            (
                "tenant",
                Some("vpcnet-system"),
                cidr,
                "only pods of namespace \"vpcnet-system\"",
            ),
            ("vpcnet-system", None, cidr, "no hostEgressNamespace"),
            ("vpcnet-system", Some(""), cidr, "no hostEgressNamespace"),
            (
                "vpcnet-system",
                Some("vpcnet-system"),
                None,
                "probe path is off",
            ),
        ] {
            let e = decide(&pod(ns), v, trusted, cidr).unwrap_err();
            let s = e.to_string();
            assert!(s.contains(HOST_EGRESS) && s.contains(why), "{s}");
            assert!(s.contains(&format!("{ns}/dns-0")), "{s}");
        }
        // A foreign pod is refused whatever its value says.
        let e = decide(&pod("tenant"), Some("junk"), Some("vpcnet-system"), cidr).unwrap_err();
        assert!(e.to_string().contains("only pods of namespace"), "{e}");
        let e = decide(
            &pod("vpcnet-system"),
            Some("junk"),
            Some("vpcnet-system"),
            cidr,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"junk\""), "{e}");
        let e = decide(
            &pod("vpcnet-system"),
            Some("100.64.0.7:80/tcp"),
            Some("vpcnet-system"),
            cidr,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("100.64.0.7:80/tcp") && e.contains("probe range"),
            "{e}"
        );
    }

    fn grant(dests: &[Dest]) -> Grant<'_> {
        Grant {
            container_id: "cid0123",
            host_ifname: "vpp0123456789a",
            probe_ip: "100.64.0.3".parse().unwrap(),
            dests,
        }
    }

    #[test]
    fn rules_name_the_veth_the_source_each_destination_and_the_container() {
        let dests = [
            d("10.255.0.1", 36443, Proto::Tcp),
            d("172.16.3.2", 53, Proto::Udp),
        ];
        let g = grant(&dests);
        assert_eq!(
            filter_rules(&g),
            vec![
                "-A VPCNET-EGRESS-IN -i vpp0123456789a -s 100.64.0.3/32 -d 10.255.0.1/32 -p tcp -m tcp --dport 36443 -m comment --comment cid0123 -j ACCEPT",
                "-A VPCNET-EGRESS-IN -i vpp0123456789a -s 100.64.0.3/32 -d 172.16.3.2/32 -p udp -m udp --dport 53 -m comment --comment cid0123 -j ACCEPT",
                "-A VPCNET-EGRESS-FWD -i vpp0123456789a -s 100.64.0.3/32 -d 10.255.0.1/32 -p tcp -m tcp --dport 36443 -m comment --comment cid0123 -j ACCEPT",
                "-A VPCNET-EGRESS-FWD -i vpp0123456789a -s 100.64.0.3/32 -d 172.16.3.2/32 -p udp -m udp --dport 53 -m comment --comment cid0123 -j ACCEPT",
            ]
        );
        assert_eq!(
            nat_rules(&g),
            vec![
                "-A VPCNET-EGRESS-NAT -s 100.64.0.3/32 -d 10.255.0.1/32 -p tcp -m tcp --dport 36443 -m comment --comment cid0123 -j MASQUERADE",
                "-A VPCNET-EGRESS-NAT -s 100.64.0.3/32 -d 172.16.3.2/32 -p udp -m udp --dport 53 -m comment --comment cid0123 -j MASQUERADE",
            ]
        );
    }

    #[test]
    fn a_container_finds_and_replaces_exactly_its_own_rules() {
        // As `iptables -S` prints them (its option order, not ours).
        let listing = "-N VPCNET-EGRESS-FWD\n\
            -A VPCNET-EGRESS-FWD -s 100.64.0.3/32 -d 10.0.0.1/32 -i vppa -p tcp -m tcp --dport 443 -m comment --comment cid0123 -j ACCEPT\n\
            -A VPCNET-EGRESS-FWD -s 100.64.0.4/32 -d 10.0.0.1/32 -i vppb -p tcp -m tcp --dport 443 -m comment --comment cid01234 -j ACCEPT\n\
            -A VPCNET-EGRESS-FWD -s 100.64.0.5/32 -d 10.0.0.1/32 -i vppc -p tcp -m tcp --dport 443 -m comment --comment \"cid0123\" -j ACCEPT\n";
        let mine = owned(listing, "cid0123");
        assert_eq!(mine.len(), 2, "{mine:?}");
        assert!(mine.iter().all(|l| !l.contains("cid01234")));
        let dests = [d("10.0.0.1", 443, Proto::Tcp)];
        let g = grant(&dests);
        let input = restore_input((&mine, &filter_rules(&g)), (&[], &nat_rules(&g)));
        let lines: Vec<&str> = input.lines().collect();
        assert_eq!(lines[0], "*filter");
        assert!(
            lines[1].starts_with("-D VPCNET-EGRESS-FWD -s 100.64.0.3/32"),
            "{input}"
        );
        assert!(
            lines[3].starts_with("-A VPCNET-EGRESS-IN"),
            "deletes first: {input}"
        );
        assert_eq!(lines[5], "COMMIT");
        assert_eq!(lines[6], "*nat");
        assert!(input.ends_with("MASQUERADE\nCOMMIT\n"), "{input}");
        assert!(
            !input.contains("\n:"),
            "no chain is declared (flushed): {input}"
        );
        assert_eq!(restore_input((&[], &[]), (&[], &[])), "");
    }

    #[test]
    fn container_ids_must_be_plain_to_tag_rules() {
        assert!(check_comment("0123abcdef_x.y-z").is_ok());
        for bad in ["", "a b", "a\"b", "a\nb", &"x".repeat(201)] {
            assert!(check_comment(bad).is_err(), "{bad:?}");
        }
    }
}
