//! Open vSwitch conntrack entries as `dpctl/dump-conntrack` prints them, and
//! the `dpctl/flush-conntrack` arguments that delete exactly one of them.
//!
//! A line looks like
//! `udp,orig=(src=10.0.0.2,dst=10.96.0.10,sport=40000,dport=53),reply=(src=10.0.0.5,dst=10.0.0.2,sport=53,dport=40000),zone=3,mark=2`;
//! `zone=` is left out for zone 0, and other fields (`id=`, `labels=`,
//! `timeout=`, a TCP `protoinfo=(...)`) may follow.

use std::net::{IpAddr, SocketAddr};

/// One connection of the tracker, as far as the flush needs it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// IP protocol number (17 for UDP).
    pub proto: u8,
    /// Conntrack zone.
    pub zone: u16,
    /// Original direction: the client's address.
    pub orig_src: SocketAddr,
    /// Original direction: where the client sent to (the VIP).
    pub orig_dst: SocketAddr,
    /// Reply direction: who answers (the backend, after DNAT).
    pub reply_src: SocketAddr,
}

/// IP protocol number of UDP.
pub const UDP: u8 = 17;

fn proto_number(name: &str) -> Option<u8> {
    Some(match name {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => UDP,
        "sctp" => 132,
        "icmpv6" => 58,
        _ => return None,
    })
}

/// The `k=v` pairs of a parenthesised tuple that starts after `key` in `line`.
fn tuple<'a>(line: &'a str, key: &str) -> Option<Vec<(&'a str, &'a str)>> {
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    let end = rest.find(')')?;
    Some(
        rest[..end]
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .collect(),
    )
}

fn field<'a>(pairs: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn endpoint(pairs: &[(&str, &str)], addr: &str, port: &str) -> Option<SocketAddr> {
    let ip: IpAddr = field(pairs, addr)?.parse().ok()?;
    let port: u16 = field(pairs, port)?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Parses one line of `dpctl/dump-conntrack`; `None` for entries without
/// ports (ICMP) or lines it does not understand.
pub fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim();
    let proto = proto_number(line.split(',').next()?)?;
    let orig = tuple(line, "orig=(")?;
    let reply = tuple(line, "reply=(")?;
    // `zone=` appears after the reply tuple only; look there so a
    // `labels=` value cannot be mistaken for it.
    let after = &line[line.find("reply=(")?..];
    let after = &after[after.find(')')? + 1..];
    let zone = after
        .split(',')
        .find_map(|kv| kv.strip_prefix("zone="))
        .map_or(Some(0), |z| z.parse().ok())?;
    Some(Entry {
        proto,
        zone,
        orig_src: endpoint(&orig, "src", "sport")?,
        orig_dst: endpoint(&orig, "dst", "dport")?,
        reply_src: endpoint(&reply, "src", "sport")?,
    })
}

/// Every entry of a dump that `parse_line` understands.
pub fn parse_dump(dump: &str) -> Vec<Entry> {
    dump.lines().filter_map(parse_line).collect()
}

/// Arguments of `dpctl/flush-conntrack` that delete `e` and nothing else:
/// its zone and its whole original tuple.
pub fn flush_args(e: &Entry) -> Vec<String> {
    let (src, dst) = if e.orig_src.is_ipv4() {
        ("ct_nw_src", "ct_nw_dst")
    } else {
        ("ct_ipv6_src", "ct_ipv6_dst")
    };
    vec![
        format!("zone={}", e.zone),
        format!(
            "{src}={},{dst}={},ct_nw_proto={},ct_tp_src={},ct_tp_dst={}",
            e.orig_src.ip(),
            e.orig_dst.ip(),
            e.proto,
            e.orig_src.port(),
            e.orig_dst.port()
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_load_balanced_udp_entry_is_read_with_its_zone() {
        let e = parse_line(
            "udp,orig=(src=10.0.0.2,dst=10.96.0.10,sport=40000,dport=53),reply=(src=10.0.0.5,dst=10.0.0.2,sport=53,dport=40000),zone=3,mark=2,labels=0x2",
        )
        .unwrap();
        assert_eq!(
            e,
            Entry {
                proto: UDP,
                zone: 3,
                orig_src: sa("10.0.0.2:40000"),
                orig_dst: sa("10.96.0.10:53"),
                reply_src: sa("10.0.0.5:53"),
            }
        );
    }

    #[test]
    fn an_entry_without_a_zone_is_in_zone_zero() {
        let e = parse_line(
            "tcp,orig=(src=10.0.0.2,dst=10.0.0.9,sport=1,dport=80),reply=(src=10.0.0.9,dst=10.0.0.2,sport=80,dport=1),protoinfo=(state=ESTABLISHED)",
        )
        .unwrap();
        assert_eq!((e.proto, e.zone), (6, 0));
    }

    #[test]
    fn ipv6_entries_are_read() {
        let e = parse_line(
            "udp,orig=(src=fd00::2,dst=fd00:96::a,sport=5000,dport=53),reply=(src=fd00::5,dst=fd00::2,sport=53,dport=5000),zone=12",
        )
        .unwrap();
        assert_eq!(e.orig_dst, sa("[fd00:96::a]:53"));
        assert_eq!(e.reply_src, sa("[fd00::5]:53"));
        assert_eq!(
            flush_args(&e),
            [
                "zone=12",
                "ct_ipv6_src=fd00::2,ct_ipv6_dst=fd00:96::a,ct_nw_proto=17,ct_tp_src=5000,ct_tp_dst=53"
            ]
        );
    }

    #[test]
    fn icmp_and_garbage_lines_are_skipped() {
        let dump = "icmp,orig=(src=10.0.0.2,dst=10.0.0.1,id=7,type=8,code=0),reply=(src=10.0.0.1,dst=10.0.0.2,id=7,type=0,code=0),zone=3\n\nnot an entry\n";
        assert!(parse_dump(dump).is_empty());
    }

    #[test]
    fn the_flush_names_the_whole_original_tuple_and_zone() {
        let e = parse_line(
            "udp,orig=(src=10.0.0.2,dst=10.96.0.10,sport=40000,dport=53),reply=(src=10.0.0.5,dst=10.0.0.2,sport=53,dport=40000),zone=3",
        )
        .unwrap();
        assert_eq!(
            flush_args(&e),
            [
                "zone=3",
                "ct_nw_src=10.0.0.2,ct_nw_dst=10.96.0.10,ct_nw_proto=17,ct_tp_src=40000,ct_tp_dst=53"
            ]
        );
    }
}
