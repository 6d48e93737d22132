//! `desired`: from the API objects of one gateway to the NAT state it should
//! have. Pure: no I/O, deterministic whatever the input order.
//!
//! Contract with the operator: an EIP is programmed once `status.ip` is set;
//! a rule once its `Accepted` condition is `True` (for the current
//! generation when the condition records one) and its EIP is programmed. A
//! rule's `status.v4ip`, when set, must equal its EIP's `status.ip`.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use vpcnet_api::condition::Conditioned;
use vpcnet_api::dnat::L4Protocol;
use vpcnet_api::{IptablesDnatRule, IptablesEIP, IptablesFIPRule, IptablesSnatRule};

use crate::model::*;

/// Condition type the operator sets on rules once they passed its checks.
pub const ACCEPTED: &str = "Accepted";

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
}

fn skip(reason: &str, message: impl Into<String>) -> Skip {
    Skip {
        reason: reason.to_string(),
        message: message.into(),
    }
}

/// `Err(skip)` unless `Accepted` is True for the object's generation.
fn accepted(conds: &[Condition], generation: Option<i64>) -> Result<(), Skip> {
    let c = conds.iter().find(|c| c.type_ == ACCEPTED);
    match c {
        None => Err(skip("NotAccepted", "waiting for the Accepted condition")),
        Some(c) if c.status != "True" => Err(skip(
            "NotAccepted",
            format!("Accepted is {}: {}", c.status, c.message),
        )),
        Some(c) => match (c.observed_generation, generation) {
            (Some(seen), Some(current)) if seen != current => Err(skip(
                "NotAccepted",
                format!("Accepted is for generation {seen}, object is at {current}"),
            )),
            _ => Ok(()),
        },
    }
}

/// Common gate for rules: accepted, EIP of this gateway programmed, v4ip agrees.
/// `Ok(None)`: the rule belongs to another gateway (or to no known EIP).
fn rule_eip(
    eips: &HashMap<(String, String), Result<Ipv4Addr, ()>>,
    ns: &str,
    eip: &str,
    conds: &[Condition],
    generation: Option<i64>,
    v4ip: Option<&String>,
) -> Result<Option<Ipv4Addr>, Skip> {
    let Some(found) = eips.get(&(ns.to_string(), eip.to_string())) else {
        return Ok(None);
    };
    accepted(conds, generation)?;
    let Ok(ip) = found else {
        return Err(skip(
            "EipPending",
            format!("EIP {eip} has no status.ip yet"),
        ));
    };
    if let Some(v) = v4ip
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
pub fn desired(facts: Option<GatewayFacts>, gateway: &str, inputs: &Inputs) -> NatState {
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
        let ip = e.status.as_ref().and_then(|s| s.ip.as_deref());
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
            Some(Ok(a)) => {
                if let Some(other) = st.eips.get(&a) {
                    st.skipped.insert(
                        key,
                        skip(
                            "Conflict",
                            format!("address {a} is already held by {other}"),
                        ),
                    );
                    Err(())
                } else {
                    st.eips.insert(a, key);
                    Ok(a)
                }
            }
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
            &ns,
            &r.spec.eip,
            r.conditions(),
            r.metadata.generation,
            status.and_then(|s| s.v4ip.as_ref()),
        );
        match gate {
            Ok(None) => {}
            Err(s) => {
                st.skipped.insert(key, s);
            }
            Ok(Some(eip)) => match parse_cidr(&r.spec.internal_cidr) {
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
            &ns,
            &r.spec.eip,
            r.conditions(),
            r.metadata.generation,
            status.and_then(|s| s.v4ip.as_ref()),
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
            &ns,
            &r.spec.eip,
            r.conditions(),
            r.metadata.generation,
            status.and_then(|s| s.v4ip.as_ref()),
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
