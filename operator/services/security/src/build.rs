//! The OVN rows of a SecurityGroup and of a subnet's base group (pure).
//!
//! A group is one `Port_Group` (its ports are written by the membership
//! reconciler, never here) and its rules as ACLs on it: ingress rules are
//! `to-lport` ACLs matching `outport == @pg`, egress rules `from-lport`
//! ACLs matching `inport == @pg`. Rules of one direction, priority and
//! verdict are one ACL, their matches or-ed (see [`crate::layout`]); a
//! remote group is named by the address sets OVN keeps for its Port_Group
//! (`$<pg>_ip4`, `$<pg>_ip6`), so no address list of ours can go stale.
//! Each ACL carries a `vpcnet.io/key` naming its bucket, so a changed rule
//! is an update of that one row.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use ovn::nb::acl::{Action, Direction};
use ovn::nb::{Acl, PortGroup};
use ovn::owner::KEY_KEY;
use vpcnet_api::contract::external_ids::{SG_NAMESPACE, SG_SLOT};
use vpcnet_api::contract::naming;
use vpcnet_api::security_group::{
    IpVersion, RemoteType, SecurityGroupSpec, SgPolicy, SgProtocol, SgRule,
};

use crate::layout;

/// Which way a rule looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Way {
    /// Traffic entering a member.
    Ingress,
    /// Traffic leaving a member.
    Egress,
}

impl Way {
    fn direction(self) -> Direction {
        match self {
            Way::Ingress => Direction::ToLport,
            Way::Egress => Direction::FromLport,
        }
    }

    /// The match on the group's ports.
    fn port(self, pg: &str) -> String {
        match self {
            Way::Ingress => format!("outport == @{pg}"),
            Way::Egress => format!("inport == @{pg}"),
        }
    }

    /// The address field of the remote end.
    fn remote_field(self) -> &'static str {
        match self {
            Way::Ingress => "src",
            Way::Egress => "dst",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Way::Ingress => "in",
            Way::Egress => "out",
        }
    }
}

/// A rule that cannot be written as a match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRule(pub String);

/// The rows of one group, its ports aside.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRows {
    /// The Port_Group: name and `external_ids` only.
    pub port_group: PortGroup,
    /// Its ACLs, keyed by `vpcnet.io/key`.
    pub acls: Vec<Acl>,
}

fn l3(v: IpVersion) -> (&'static str, &'static str, &'static str) {
    match v {
        IpVersion::Ipv4 => ("ip4", "icmp4", "_ip4"),
        IpVersion::Ipv6 => ("ip6", "icmp6", "_ip6"),
    }
}

/// The remote address of a rule as OVN writes it, `None` for "anywhere"
/// (a `/0`): host bits cleared, as OVN refuses a masked value with any.
fn remote_address(rule: &SgRule) -> Result<Option<String>, BadRule> {
    let raw = rule.remote_address.as_deref().unwrap_or_default();
    let net: IpNet = match raw.parse::<IpNet>() {
        Ok(n) => n.trunc(),
        Err(_) => match raw.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => {
                return Err(BadRule(format!(
                    "remoteAddress {raw:?} is not an address or CIDR"
                )));
            }
        },
    };
    let v6 = matches!(net, IpNet::V6(_));
    if v6 != (rule.ip_version == IpVersion::Ipv6) {
        return Err(BadRule(format!(
            "remoteAddress {raw} is not of ipVersion {:?}",
            rule.ip_version
        )));
    }
    Ok(match net.prefix_len() {
        0 => None,
        p if p == net.max_prefix_len() => Some(net.addr().to_string()),
        _ => Some(net.to_string()),
    })
}

/// The match of one rule, the group's port match aside.
pub fn rule_match(ns: &str, rule: &SgRule, way: Way) -> Result<String, BadRule> {
    let (ip, icmp, set) = l3(rule.ip_version);
    let mut parts = vec![ip.to_string()];
    let field = format!("{ip}.{}", way.remote_field());
    match rule.remote_type {
        RemoteType::Address => {
            if let Some(a) = remote_address(rule)? {
                parts.push(format!("{field} == {a}"));
            }
        }
        RemoteType::SecurityGroup => {
            let Some(g) = rule.remote_security_group.as_deref() else {
                return Err(BadRule("remoteSecurityGroup is missing".into()));
            };
            let pg = naming::security_group_port_group(ns, g);
            parts.push(format!("{field} == ${pg}{set}"));
        }
    }
    match rule.protocol {
        SgProtocol::All => {}
        SgProtocol::Icmp => parts.push(icmp.into()),
        SgProtocol::Tcp | SgProtocol::Udp => {
            let l4 = if rule.protocol == SgProtocol::Tcp {
                "tcp"
            } else {
                "udp"
            };
            parts.push(l4.into());
            match port_range(rule)? {
                None => {}
                Some((a, b)) if a == b => parts.push(format!("{l4}.dst == {a}")),
                Some((a, b)) => parts.push(format!("{l4}.dst >= {a} && {l4}.dst <= {b}")),
            }
        }
    }
    Ok(parts.join(" && "))
}

/// The ports a rule names: `portRangeMin` alone is that one port,
/// `portRangeMax` alone is 1..max; `None` for every port.
fn port_range(rule: &SgRule) -> Result<Option<(i32, i32)>, BadRule> {
    let (a, b) = match (rule.port_range_min, rule.port_range_max) {
        (None, None) => return Ok(None),
        (Some(a), None) => (a, a),
        (None, Some(b)) => (1, b),
        (Some(a), Some(b)) => (a, b),
    };
    if !(1..=65535).contains(&a) || !(1..=65535).contains(&b) || a > b {
        return Err(BadRule(format!("port range {a}-{b} is not within 1-65535")));
    }
    Ok(((a, b) != (1, 65535)).then_some((a, b)))
}

fn acl(way: Way, key: String, priority: i64, action: Action, r#match: String) -> Acl {
    Acl {
        action,
        direction: way.direction(),
        external_ids: BTreeMap::from([(KEY_KEY.to_string(), key)]),
        r#match,
        priority,
        ..Default::default()
    }
}

fn verdict(p: SgPolicy) -> (&'static str, Action) {
    match p {
        // Stateful: the replies of an allowed connection pass.
        SgPolicy::Allow => ("allow", Action::AllowRelated),
        SgPolicy::Drop => ("drop", Action::Drop),
    }
}

/// The rows of group `ns/name` with `spec` in priority slot `slot`.
pub fn group_rows(
    ns: &str,
    name: &str,
    spec: &SecurityGroupSpec,
    slot: u16,
) -> Result<GroupRows, BadRule> {
    let pg = naming::security_group_port_group(ns, name);
    let mut buckets: BTreeMap<(Way, u16, &'static str), (Action, Vec<String>)> = BTreeMap::new();
    for (way, rules) in [
        (Way::Ingress, &spec.ingress_rules),
        (Way::Egress, &spec.egress_rules),
    ] {
        for rule in rules {
            let m = rule_match(ns, rule, way)?;
            let (word, action) = verdict(rule.policy);
            let b = buckets
                .entry((way, layout::clamp(rule.priority), word))
                .or_insert((action, Vec::new()));
            if !b.1.contains(&m) {
                b.1.push(m);
            }
        }
    }
    let mut acls = Vec::new();
    for ((way, p, word), (action, matches)) in buckets {
        let policy = if action == Action::Drop {
            SgPolicy::Drop
        } else {
            SgPolicy::Allow
        };
        let body = if matches.len() == 1 {
            matches[0].clone()
        } else {
            format!("(({}))", matches.join(") || ("))
        };
        acls.push(acl(
            way,
            format!("{}/{p}/{word}", way.key()),
            layout::rule_priority(p, policy, slot),
            action,
            format!("{} && {body}", way.port(&pg)),
        ));
    }
    if spec.allow_same_group_traffic {
        for way in [Way::Ingress, Way::Egress] {
            let f = way.remote_field();
            acls.push(acl(
                way,
                format!("{}/same", way.key()),
                layout::same_group_priority(slot),
                Action::AllowRelated,
                format!(
                    "{} && (ip4.{f} == ${pg}_ip4 || ip6.{f} == ${pg}_ip6)",
                    way.port(&pg)
                ),
            ));
        }
    }
    let port_group = PortGroup {
        name: pg,
        external_ids: BTreeMap::from([
            (SG_NAMESPACE.to_string(), ns.to_string()),
            (SG_SLOT.to_string(), slot.to_string()),
        ]),
        ..Default::default()
    };
    Ok(GroupRows { port_group, acls })
}

/// The groups of the same namespace `spec`'s rules name as remote groups.
pub fn remote_groups(spec: &SecurityGroupSpec) -> BTreeSet<String> {
    spec.ingress_rules
        .iter()
        .chain(&spec.egress_rules)
        .filter(|r| r.remote_type == RemoteType::SecurityGroup)
        .filter_map(|r| r.remote_security_group.clone())
        .collect()
}

/// The rows of subnet `subnet`'s base group (gateway `gateway`): every
/// member of any group on the subnet is in it. A member may always talk
/// to its own gateway (the router answers pings itself, and its reply is
/// not seen as related at the pod's ACL stage) and use neighbour
/// discovery; everything else its groups do not allow is dropped.
pub fn base_rows(subnet: &str, gateway: IpAddr) -> GroupRows {
    let pg = naming::security_base_port_group(subnet);
    let ip = if gateway.is_ipv4() { "ip4" } else { "ip6" };
    let mut acls = Vec::new();
    for way in [Way::Ingress, Way::Egress] {
        let port = way.port(&pg);
        let k = way.key();
        acls.push(acl(
            way,
            format!("{k}/gateway"),
            layout::BASE_GATEWAY,
            Action::AllowRelated,
            format!("{port} && {ip}.{} == {gateway}", way.remote_field()),
        ));
        acls.push(acl(
            way,
            format!("{k}/nd"),
            layout::BASE_ND,
            Action::Allow,
            format!("{port} && (nd || nd_rs || nd_ra)"),
        ));
        acls.push(acl(
            way,
            format!("{k}/default"),
            layout::DEFAULT_DROP,
            Action::Drop,
            format!("{port} && ip"),
        ));
    }
    GroupRows {
        port_group: PortGroup {
            name: pg,
            ..Default::default()
        },
        acls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: SgProtocol, priority: i32, policy: SgPolicy) -> SgRule {
        SgRule {
            protocol,
            priority,
            policy,
            remote_type: RemoteType::Address,
            remote_address: Some("0.0.0.0/0".into()),
            ..Default::default()
        }
    }

    fn tcp(port: i32, from: &str, priority: i32, policy: SgPolicy) -> SgRule {
        SgRule {
            port_range_min: Some(port),
            port_range_max: Some(port),
            remote_address: Some(from.into()),
            ..rule(SgProtocol::Tcp, priority, policy)
        }
    }

    fn from_group(g: &str, port: i32) -> SgRule {
        SgRule {
            remote_type: RemoteType::SecurityGroup,
            remote_address: None,
            remote_security_group: Some(g.into()),
            port_range_min: Some(port),
            ..rule(SgProtocol::Tcp, 50, SgPolicy::Allow)
        }
    }

    fn key(a: &Acl) -> &str {
        &a.external_ids[KEY_KEY]
    }

    #[test]
    fn an_ingress_port_rule_is_a_stateful_to_lport_acl_on_the_groups_ports() {
        let spec = SecurityGroupSpec {
            ingress_rules: vec![tcp(80, "0.0.0.0/0", 10, SgPolicy::Allow)],
            ..Default::default()
        };
        let rows = group_rows("t", "sg-web", &spec, 0).unwrap();
        assert_eq!(rows.port_group.name, "vpcnet_sg_t_ssg_hweb");
        assert_eq!(rows.acls.len(), 1);
        let a = &rows.acls[0];
        assert_eq!(
            a.r#match,
            "outport == @vpcnet_sg_t_ssg_hweb && ip4 && tcp && tcp.dst == 80"
        );
        assert_eq!(
            (a.direction, a.action, a.priority),
            (
                Direction::ToLport,
                Action::AllowRelated,
                layout::rule_priority(10, SgPolicy::Allow, 0)
            )
        );
        assert_eq!(key(a), "in/10/allow");
    }

    #[test]
    fn a_remote_group_is_its_port_groups_address_set_and_egress_matches_the_destination() {
        let spec = SecurityGroupSpec {
            ingress_rules: vec![from_group("sg-web", 3306)],
            egress_rules: vec![SgRule {
                remote_address: Some("10.0.9.7/16".into()),
                ..rule(SgProtocol::Icmp, 5, SgPolicy::Drop)
            }],
            ..Default::default()
        };
        let rows = group_rows("t", "sg-db", &spec, 3).unwrap();
        let by: BTreeMap<&str, &Acl> = rows.acls.iter().map(|a| (key(a), a)).collect();
        assert_eq!(
            by["in/50/allow"].r#match,
            "outport == @vpcnet_sg_t_ssg_hdb && ip4 && ip4.src == $vpcnet_sg_t_ssg_hweb_ip4 && tcp && tcp.dst == 3306"
        );
        let e = by["out/5/drop"];
        assert_eq!(
            e.r#match,
            "inport == @vpcnet_sg_t_ssg_hdb && ip4 && ip4.dst == 10.0.0.0/16 && icmp4"
        );
        assert_eq!(
            (e.direction, e.action),
            (Direction::FromLport, Action::Drop)
        );
        assert_eq!(e.priority, layout::rule_priority(5, SgPolicy::Drop, 3));
        assert_eq!(rows.port_group.external_ids[SG_SLOT], "3");
        assert_eq!(remote_groups(&spec), BTreeSet::from(["sg-web".to_string()]));
    }

    #[test]
    fn rules_of_one_priority_and_verdict_are_one_acl_and_ranges_and_v6_are_spelled_out() {
        let spec = SecurityGroupSpec {
            ingress_rules: vec![
                tcp(80, "10.1.0.0/24", 20, SgPolicy::Allow),
                SgRule {
                    ip_version: IpVersion::Ipv6,
                    remote_address: Some("fd00::/64".into()),
                    port_range_min: Some(1000),
                    port_range_max: Some(2000),
                    ..rule(SgProtocol::Udp, 20, SgPolicy::Allow)
                },
                tcp(80, "10.1.0.0/24", 20, SgPolicy::Allow),
                tcp(80, "10.1.0.0/24", 20, SgPolicy::Drop),
            ],
            ..Default::default()
        };
        let rows = group_rows("t", "g", &spec, 0).unwrap();
        let keys: Vec<&str> = rows.acls.iter().map(key).collect();
        assert_eq!(keys, vec!["in/20/allow", "in/20/drop"]);
        assert_eq!(
            rows.acls[0].r#match,
            "outport == @vpcnet_sg_t_sg && ((ip4 && ip4.src == 10.1.0.0/24 && tcp && tcp.dst == 80) || \
             (ip6 && ip6.src == fd00::/64 && udp && udp.dst >= 1000 && udp.dst <= 2000))"
        );
        let prios: BTreeSet<i64> = rows.acls.iter().map(|a| a.priority).collect();
        assert_eq!(
            prios.len(),
            rows.acls.len(),
            "no two ACLs of a group share a priority"
        );
    }

    #[test]
    fn same_group_traffic_is_allowed_both_ways_after_every_rule() {
        let spec = SecurityGroupSpec {
            allow_same_group_traffic: true,
            ..Default::default()
        };
        let rows = group_rows("t", "g", &spec, 1).unwrap();
        let same: Vec<&Acl> = rows.acls.iter().collect();
        assert_eq!(same.len(), 2);
        assert_eq!(
            same[0].r#match,
            "outport == @vpcnet_sg_t_sg && (ip4.src == $vpcnet_sg_t_sg_ip4 || ip6.src == $vpcnet_sg_t_sg_ip6)"
        );
        assert!(
            same.iter()
                .all(|a| a.priority == layout::same_group_priority(1))
        );
    }

    #[test]
    fn anywhere_and_all_ports_add_no_condition_and_bad_ranges_are_refused() {
        let all = rule(SgProtocol::All, 1, SgPolicy::Allow);
        assert_eq!(rule_match("t", &all, Way::Egress).unwrap(), "ip4");
        let full = SgRule {
            port_range_min: Some(1),
            port_range_max: Some(65535),
            ..rule(SgProtocol::Tcp, 1, SgPolicy::Allow)
        };
        assert_eq!(rule_match("t", &full, Way::Ingress).unwrap(), "ip4 && tcp");
        let bad = SgRule {
            port_range_min: Some(9),
            port_range_max: Some(2),
            ..rule(SgProtocol::Tcp, 1, SgPolicy::Allow)
        };
        assert!(rule_match("t", &bad, Way::Ingress).is_err());
        let wrong_family = SgRule {
            ip_version: IpVersion::Ipv6,
            ..rule(SgProtocol::All, 1, SgPolicy::Allow)
        };
        assert!(rule_match("t", &wrong_family, Way::Ingress).is_err());
    }

    #[test]
    fn the_base_group_lets_a_member_live_and_drops_the_rest() {
        let rows = base_rows("t-net", "10.0.1.1".parse().unwrap());
        assert_eq!(rows.port_group.name, "vpcnet_sgb_t_hnet");
        let by: BTreeMap<&str, &Acl> = rows.acls.iter().map(|a| (key(a), a)).collect();
        assert_eq!(
            by["out/gateway"].r#match,
            "inport == @vpcnet_sgb_t_hnet && ip4.dst == 10.0.1.1"
        );
        assert_eq!(
            by["in/gateway"].r#match,
            "outport == @vpcnet_sgb_t_hnet && ip4.src == 10.0.1.1"
        );
        assert_eq!(by["in/default"].action, Action::Drop);
        assert_eq!(by["in/default"].priority, layout::DEFAULT_DROP);
        assert!(by["in/nd"].priority > layout::rule_priority(1, SgPolicy::Drop, 0));
    }

    #[test]
    fn no_two_acls_of_a_namespaces_groups_share_a_priority_in_one_direction() {
        // Groups of one namespace may share a pod: each takes its own slot
        // and every ACL of any of them (and of the base group) must be
        // alone at its priority within its direction. Every group has rules
        // at the same priorities with both verdicts, the worst case.
        let spec = SecurityGroupSpec {
            allow_same_group_traffic: true,
            ingress_rules: (1..=200)
                .flat_map(|p| {
                    [
                        tcp(80, "0.0.0.0/0", p, SgPolicy::Allow),
                        tcp(81, "10.0.0.0/8", p, SgPolicy::Drop),
                        tcp(82, "10.0.0.0/8", p, SgPolicy::Allow),
                    ]
                })
                .collect(),
            egress_rules: vec![
                rule(SgProtocol::All, 1, SgPolicy::Allow),
                rule(SgProtocol::Icmp, 1, SgPolicy::Drop),
                rule(SgProtocol::All, 200, SgPolicy::Drop),
            ],
        };
        let mut seen: BTreeMap<(String, i64), String> = BTreeMap::new();
        let mut check = |rows: &GroupRows| {
            for a in &rows.acls {
                let k = (format!("{:?}", a.direction), a.priority);
                if let Some(other) = seen.insert(k.clone(), a.r#match.clone()) {
                    panic!("{k:?} holds both {other} and {}", a.r#match);
                }
            }
        };
        check(&base_rows("t-net", "10.0.1.1".parse().unwrap()));
        for slot in 0..layout::SLOTS {
            check(&group_rows("t", &format!("g{slot}"), &spec, slot).unwrap());
        }
        assert!(seen.len() > 64 * 400);
    }
}
