//! `desired`: from the API objects of one gateway to the NAT state it should
//! have. Pure: no I/O, deterministic whatever the input order.
//!
//! Contract with the operator (`vpcnet_api::seal`): an EIP is programmed
//! once its status carries the operator's seal over its address on this
//! gateway; a rule once its status carries the seal over its current
//! generation, this gateway and its EIP's address, and its EIP is
//! programmed. Conditions and addresses without a valid seal count for
//! nothing: a tenant whose role reaches `/status` can write those. And only
//! objects of the namespaces the gateway's VPC lists are looked at, whatever
//! the operator said.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use vpcnet_api::condition::Conditioned;
use vpcnet_api::dnat::L4Protocol;
use vpcnet_api::nat_rule_status::NatRuleStatus;
use vpcnet_api::seal::{Decision, SealKey};
use vpcnet_api::{IptablesDnatRule, IptablesEIP, IptablesFIPRule, IptablesSnatRule};

use crate::model::*;

/// Condition type the operator sets on rules once they passed its checks.
pub use vpcnet_api::contract::conditions::ACCEPTED;

/// The API objects the agent sees (also the `--state-file` format).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Inputs {
    /// IptablesEIPs (any gateway; filtered here).
    #[serde(default)]
    pub eips: Vec<IptablesEIP>,
    /// IptablesSnatRules.
    #[serde(default)]
    pub snats: Vec<IptablesSnatRule>,
    /// IptablesDnatRules.
    #[serde(default)]
    pub dnats: Vec<IptablesDnatRule>,
    /// IptablesFIPRules.
    #[serde(default)]
    pub fips: Vec<IptablesFIPRule>,
    /// The namespaces of the gateway's VPC (its `spec.namespaces`).
    #[serde(default)]
    pub vpc_namespaces: Vec<String>,
}

/// Seals every EIP with an address and every rule with `Accepted=True` (its
/// `v4ip` defaulting to its EIP's address) as the operator would: for state
/// files, tests and benchmarks, which play the operator. Never applied to
/// what the API says.
pub fn seal_as_operator(inputs: &mut Inputs, key: &SealKey) {
    let mut ips: HashMap<(String, String), (String, String)> = HashMap::new();
    for e in &mut inputs.eips {
        let gw = e.spec.nat_gw_dp.clone();
        let ns = e.namespace().unwrap_or_default();
        let name = e.name_any();
        if e.metadata.uid.is_none() {
            e.metadata.uid = Some(format!("uid-eip-{ns}-{name}"));
        }
        let d = e
            .status
            .as_ref()
            .and_then(|s| s.ip.clone())
            .map(|ip| (Decision::eip(e, &gw, &ip), ip));
        if let (Some((d, ip)), Some(st)) = (d, e.status.as_mut()) {
            st.nat_gw_dp = Some(gw.clone());
            st.seal = Some(key.seal(&d));
            ips.insert((ns, name), (ip, gw));
        }
    }
    fn rule<K: kube::Resource<DynamicType = ()> + Conditioned>(
        r: &mut K,
        eip: &str,
        status: fn(&mut K) -> Option<&mut vpcnet_api::nat_rule_status::NatRuleStatus>,
        ips: &HashMap<(String, String), (String, String)>,
        key: &SealKey,
    ) {
        let ns = r.meta().namespace.clone().unwrap_or_default();
        if r.meta().uid.is_none() {
            let uid = format!(
                "uid-{}-{ns}-{}",
                K::kind(&()),
                r.meta().name.clone().unwrap_or_default()
            );
            r.meta_mut().uid = Some(uid);
        }
        let generation = r.meta().generation;
        let ok = r.conditions().iter().any(|c| {
            c.type_ == ACCEPTED
                && c.status == "True"
                && c.observed_generation.is_none_or(|g| Some(g) == generation)
        });
        let Some((ip, gw)) = ips.get(&(ns, eip.to_string())).cloned() else {
            return;
        };
        if !ok {
            return;
        }
        let v4ip = status(r).and_then(|s| s.v4ip.clone()).unwrap_or(ip);
        let seal = key.seal(&Decision::rule(r, &gw, &v4ip));
        if let Some(st) = status(r) {
            st.v4ip = Some(v4ip);
            st.nat_gw_dp = Some(gw);
            st.seal = Some(seal);
        }
    }
    for r in &mut inputs.snats {
        let eip = r.spec.eip.clone();
        rule(r, &eip, |r| r.status.as_mut(), &ips, key);
    }
    for r in &mut inputs.dnats {
        let eip = r.spec.eip.clone();
        rule(r, &eip, |r| r.status.as_mut(), &ips, key);
    }
    for r in &mut inputs.fips {
        let eip = r.spec.eip.clone();
        rule(r, &eip, |r| r.status.as_mut(), &ips, key);
    }
}

fn skip(reason: &str, message: impl Into<String>) -> Skip {
    Skip {
        reason: reason.to_string(),
        message: message.into(),
    }
}

/// `Err(skip)` unless the operator sealed the rule's current generation on
/// `gateway` (the condition is quoted only to explain a refusal).
fn sealed<K: kube::Resource<DynamicType = ()>>(
    key: &SealKey,
    gateway: &str,
    rule: &K,
    conds: &[Condition],
    status: Option<&NatRuleStatus>,
) -> Result<(), Skip> {
    let st = status.ok_or_else(|| skip("NotAccepted", "waiting for the operator's verdict"))?;
    let verified = match (&st.v4ip, &st.nat_gw_dp, &st.seal) {
        (Some(ip), Some(gw), Some(seal)) => {
            gw == gateway && key.verify(&Decision::rule(rule, gw, ip), seal)
        }
        _ => false,
    };
    if verified {
        return Ok(());
    }
    Err(match conds.iter().find(|c| c.type_ == ACCEPTED) {
        Some(c) if c.status != "True" => skip(
            "NotAccepted",
            format!("Accepted is {}: {}", c.status, c.message),
        ),
        _ => skip(
            "NotAccepted",
            "no verdict of the operator for this generation (status carries no valid seal)",
        ),
    })
}

/// Common gate for rules: accepted, EIP of this gateway programmed, v4ip agrees.
/// `Ok(None)`: the rule belongs to another gateway (or to no known EIP).
fn rule_eip<K: kube::Resource<DynamicType = ()>>(
    eips: &HashMap<(String, String), Result<Ipv4Addr, ()>>,
    key: &SealKey,
    gateway: &str,
    rule: &K,
    eip: &str,
    conds: &[Condition],
    status: Option<&NatRuleStatus>,
) -> Result<Option<Ipv4Addr>, Skip> {
    let ns = rule.meta().namespace.clone().unwrap_or_default();
    let Some(found) = eips.get(&(ns, eip.to_string())) else {
        return Ok(None);
    };
    let Ok(ip) = found else {
        return Err(skip(
            "EipPending",
            format!("EIP {eip} is not programmed yet"),
        ));
    };
    sealed(key, gateway, rule, conds, status)?;
    if let Some(v) = status.and_then(|s| s.v4ip.as_ref())
        && v.parse::<Ipv4Addr>().ok() != Some(*ip)
    {
        return Err(skip(
            "EipPending",
            format!("status.v4ip {v} differs from EIP {eip}'s status.ip {ip}"),
        ));
    }
    Ok(Some(*ip))
}

/// Computes the NAT state of gateway `gateway`.
pub fn desired(
    facts: Option<GatewayFacts>,
    gateway: &str,
    inputs: &Inputs,
    seal_key: &SealKey,
) -> NatState {
    let mut st = NatState {
        facts,
        ..NatState::default()
    };
    // EIPs of this gateway: (ns, name) -> Ok(ip) | Err(()) when pending.
    let mut eips: HashMap<(String, String), Result<Ipv4Addr, ()>> = HashMap::new();
    let mut sorted_eips: Vec<&IptablesEIP> = inputs
        .eips
        .iter()
        .filter(|e| e.spec.nat_gw_dp == gateway)
        .collect();
    sorted_eips.sort_by_key(|e| (e.namespace().unwrap_or_default(), e.name_any()));
    for e in sorted_eips {
        let ns = e.namespace().unwrap_or_default();
        let key = ObjKey::new(Kind::Eip, &ns, &e.name_any());
        if !inputs.vpc_namespaces.contains(&ns) {
            // Not a namespace of this VPC: none of its rules are looked at.
            st.skipped.insert(
                key,
                skip(
                    "Forbidden",
                    format!("namespace {ns} is not a namespace of this gateway's VPC"),
                ),
            );
            continue;
        }
        let status = e.status.as_ref();
        let ip = status.and_then(|s| s.ip.as_deref());
        let vouched = match (
            ip,
            status.and_then(|s| s.nat_gw_dp.as_deref()),
            status.and_then(|s| s.seal.as_deref()),
        ) {
            (Some(ip), Some(gw), Some(seal)) => {
                gw == gateway && seal_key.verify(&Decision::eip(e, gw, ip), seal)
            }
            _ => false,
        };
        if ip.is_some() && !vouched {
            st.skipped.insert(
                key,
                skip(
                    "NotAccepted",
                    "status.ip carries no valid seal of the operator",
                ),
            );
            eips.insert((ns, e.name_any()), Err(()));
            continue;
        }
        let parsed = match ip.map(|s| s.parse::<Ipv4Addr>()) {
            None => {
                st.skipped
                    .insert(key, skip("EipPending", "waiting for status.ip"));
                Err(())
            }
            Some(Err(_)) => {
                st.skipped.insert(
                    key,
                    skip(
                        "Invalid",
                        format!("status.ip {:?} is not IPv4", ip.unwrap_or("")),
                    ),
                );
                Err(())
            }
            Some(Ok(a)) => match st.eips.entry(a) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    st.skipped.insert(
                        key,
                        skip(
                            "Conflict",
                            format!("address {a} is already in use on this gateway"),
                        ),
                    );
                    Err(())
                }
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(key);
                    Ok(a)
                }
            },
        };
        eips.insert((ns, e.name_any()), parsed);
    }

    // SNAT.
    for r in &inputs.snats {
        let ns = r.namespace().unwrap_or_default();
        let key = ObjKey::new(Kind::Snat, &ns, &r.name_any());
        let status = r.status.as_ref();
        let gate = rule_eip(
            &eips,
            seal_key,
            gateway,
            r,
            &r.spec.eip,
            r.conditions(),
            status,
        );
        match gate {
            Ok(None) => {}
            Err(s) => {
                st.skipped.insert(key, s);
            }
            Ok(Some(eip)) => match parse_cidr(&r.spec.internal_cidr) {
                // Only the VPC's own sources are translated: a catch-all
                // would take the gateway's own traffic too.
                Some(cidr)
                    if st
                        .facts
                        .as_ref()
                        .is_some_and(|f| !f.vpc_cidrs.iter().any(|c| c.contains(&cidr))) =>
                {
                    st.skipped.insert(
                        key,
                        skip(
                            "OutsideVpc",
                            format!(
                                "internalCIDR {} is not inside a subnet of this gateway's VPC",
                                r.spec.internal_cidr
                            ),
                        ),
                    );
                }
                Some(cidr) => st.snats.push(Snat { key, cidr, eip }),
                None => {
                    st.skipped.insert(
                        key,
                        skip(
                            "Invalid",
                            format!("internalCIDR {:?}", r.spec.internal_cidr),
                        ),
                    );
                }
            },
        }
    }
    // Longest prefix first, then by range and owner: stable.
    st.snats.sort_by(|a, b| {
        b.cidr
            .prefix_len()
            .cmp(&a.cidr.prefix_len())
            .then(a.cidr.network().cmp(&b.cidr.network()))
            .then(a.key.cmp(&b.key))
    });

    // FIP.
    let mut fips: BTreeMap<Ipv4Addr, Vec<Fip>> = BTreeMap::new();
    for r in &inputs.fips {
        let ns = r.namespace().unwrap_or_default();
        let key = ObjKey::new(Kind::Fip, &ns, &r.name_any());
        let status = r.status.as_ref();
        match rule_eip(
            &eips,
            seal_key,
            gateway,
            r,
            &r.spec.eip,
            r.conditions(),
            status,
        ) {
            Ok(None) => {}
            Err(s) => {
                st.skipped.insert(key, s);
            }
            Ok(Some(eip)) => match r.spec.internal_ip.parse::<Ipv4Addr>() {
                Ok(internal) => fips
                    .entry(eip)
                    .or_default()
                    .push(Fip { key, eip, internal }),
                Err(_) => {
                    st.skipped.insert(
                        key,
                        skip("Invalid", format!("internalIp {:?}", r.spec.internal_ip)),
                    );
                }
            },
        }
    }
    for (eip, mut list) in fips {
        list.sort_by(|a, b| a.key.cmp(&b.key));
        let mut it = list.into_iter();
        let first = it.next().expect("non-empty");
        for other in it {
            st.skipped.insert(
                other.key.clone(),
                skip(
                    "Conflict",
                    format!("EIP {eip} is already a FIP of {}", first.key),
                ),
            );
        }
        st.fips.push(first);
    }

    // DNAT.
    let mut groups: BTreeMap<DnatGroup, Vec<(Dnat, bool)>> = BTreeMap::new();
    for r in &inputs.dnats {
        let ns = r.namespace().unwrap_or_default();
        let key = ObjKey::new(Kind::Dnat, &ns, &r.name_any());
        let status = r.status.as_ref();
        let eip = match rule_eip(
            &eips,
            seal_key,
            gateway,
            r,
            &r.spec.eip,
            r.conditions(),
            status,
        ) {
            Ok(None) => continue,
            Err(s) => {
                st.skipped.insert(key, s);
                continue;
            }
            Ok(Some(eip)) => eip,
        };
        if st.fips.iter().any(|f| f.eip == eip) {
            st.skipped
                .insert(key, skip("Conflict", format!("EIP {eip} is used by a FIP")));
            continue;
        }
        let ext = PortRange::parse(&r.spec.external_port);
        let int = r
            .spec
            .internal_port
            .as_deref()
            .map(PortRange::parse)
            .unwrap_or(ext);
        let internal = r.spec.internal_ip.parse::<Ipv4Addr>().ok();
        let (Some(ext), Some(int_port), Some(internal)) = (ext, int, internal) else {
            st.skipped.insert(
                key,
                skip(
                    "Invalid",
                    format!(
                        "externalPort {:?}, internalPort {:?}, internalIp {:?}",
                        r.spec.external_port, r.spec.internal_port, r.spec.internal_ip
                    ),
                ),
            );
            continue;
        };
        if int_port.len() != 1 && int_port.len() != ext.len() {
            st.skipped.insert(
                key,
                skip(
                    "Invalid",
                    "internalPort range must be as long as externalPort's",
                ),
            );
            continue;
        }
        let proto = match r.spec.protocol {
            L4Protocol::Tcp => Proto::Tcp,
            L4Protocol::Udp => Proto::Udp,
        };
        let group = DnatGroup { eip, proto, ext };
        groups.entry(group).or_default().push((
            Dnat {
                key,
                eip,
                proto,
                ext,
                internal,
                int_port,
            },
            r.spec.shared,
        ));
    }
    for (group, mut members) in groups {
        members.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        let all_shared = members.iter().all(|(_, shared)| *shared);
        if all_shared || members.len() == 1 {
            st.dnats
                .insert(group, members.into_iter().map(|(d, _)| d).collect());
        } else {
            // Exclusive conflict the operator should have rejected: the first
            // (by namespace/name) wins, so the outcome does not flap.
            let mut it = members.into_iter();
            let (first, _) = it.next().expect("non-empty");
            for (other, _) in it {
                st.skipped.insert(
                    other.key,
                    skip(
                        "Conflict",
                        format!(
                            "{}:{}/{} is already forwarded by {}",
                            group.eip,
                            group.proto.as_str(),
                            group.ext,
                            first.key
                        ),
                    ),
                );
            }
            st.dnats.insert(group, vec![first]);
        }
    }
    st
}

/// `10.0.1.0/24` or a bare address (a /32). Host bits must be zero.
fn parse_cidr(s: &str) -> Option<Ipv4Net> {
    if let Ok(a) = s.parse::<Ipv4Addr>() {
        return Ipv4Net::new(a, 32).ok();
    }
    let n = s.parse::<Ipv4Net>().ok()?;
    (n.trunc() == n).then_some(n)
}
