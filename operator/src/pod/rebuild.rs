//! Rebuilding address state at start. Nothing is allocated before this has
//! run, so a restart never hands out an address twice.
//!
//! Sources are taken in order of trust, and the first holder of an address
//! keeps it: OVN ports (written by us after our own placement checks),
//! gateways' external addresses (their status is the platform admin's and
//! ours), EIP addresses that carry our seal, and last the pod annotations,
//! honoured only where admission-time placement would have put the pod. A
//! tenant can write its pods' annotations and, with a broad role, its EIPs'
//! status; neither can take an address from anyone.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use vpcnet_api::seal::SealKey;
use vpcnet_api::{IptablesEIP, Subnet, VpcNatGateway};

use super::placement;
use crate::names::{self, annotations as ann};
use crate::{Context, Result};

/// What the rebuild found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Pools created.
    pub pools: usize,
    /// Addresses taken from OVN ports.
    pub from_ports: usize,
    /// External addresses taken from gateway and (sealed) EIP status.
    pub from_status: usize,
    /// Addresses taken from pod annotations only.
    pub from_pods: usize,
    /// Addresses claimed by two holders (kept by the first; logged).
    pub conflicts: usize,
    /// Claims refused: a pod annotation naming a subnet the pod may not
    /// use, or an EIP status without a valid seal.
    pub untrusted: usize,
}

/// Where a claim came from, in order of trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// A Logical_Switch_Port we wrote.
    Port,
    /// A gateway's or EIP's status we wrote (and sealed).
    Status,
    /// A pod's annotations.
    Pod,
}

/// One address to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Where it came from.
    pub source: Source,
    /// The subnet's pool.
    pub subnet: String,
    /// The IPAM holder.
    pub holder: String,
    /// The address.
    pub ip: Ipv4Addr,
}

/// What the claims are made from.
pub struct Found<'a> {
    /// Every Subnet.
    pub subnets: &'a [Arc<Subnet>],
    /// Every pod.
    pub pods: &'a [Pod],
    /// `owner -> external_ids` of our Logical_Switch_Ports.
    pub ports: &'a OwnedRows,
    /// Every IptablesEIP.
    pub eips: &'a [IptablesEIP],
    /// Every VpcNatGateway.
    pub gateways: &'a [VpcNatGateway],
    /// The operator's seal key.
    pub key: &'a SealKey,
    /// The operator's namespace (its pods may name any subnet).
    pub trusted_namespace: &'a str,
    /// The default subnet, if any.
    pub default_subnet: Option<&'a str>,
    /// The external subnet of gateways that name none.
    pub external_subnet: &'a str,
}

/// Every claim, most trusted first, and how many were refused (pure).
pub fn claims(f: &Found<'_>) -> (Vec<Claim>, usize) {
    let mut out = Vec::new();
    let mut untrusted = 0;
    for (owner, ids) in f.ports {
        let Some((ns, name)) = owner.strip_prefix("Pod/").and_then(|r| r.split_once('/')) else {
            continue;
        };
        if let (Some(subnet), Some(ip)) = (
            ids.get("vpcnet.io/subnet"),
            ids.get("vpcnet.io/ip").and_then(|i| i.parse().ok()),
        ) {
            out.push(Claim {
                source: Source::Port,
                subnet: subnet.clone(),
                holder: names::pod_holder(ns, name),
                ip,
            });
        }
    }
    for gw in f.gateways {
        let ext = crate::nat::gateway::external_subnet(gw, f.external_subnet);
        if let Some(ip) = gw
            .status
            .as_ref()
            .and_then(|s| s.external_ip.as_ref())
            .and_then(|i| i.parse().ok())
        {
            out.push(Claim {
                source: Source::Status,
                subnet: ext,
                holder: crate::nat::gateway::external_holder(&gw.name_any()),
                ip,
            });
        }
    }
    for eip in f.eips {
        if eip.status.as_ref().and_then(|s| s.ip.as_ref()).is_none() {
            continue;
        }
        let Some((ip, gw_name)) = crate::nat::sealed::eip(f.key, eip) else {
            tracing::warn!(namespace = %eip.namespace().unwrap_or_default(), eip = %eip.name_any(), "EIP status has an address without the operator's seal; ignored");
            untrusted += 1;
            continue;
        };
        let gw = f.gateways.iter().find(|g| g.name_any() == gw_name);
        out.push(Claim {
            source: Source::Status,
            subnet: crate::nat::eip::external_subnet(eip, gw, f.external_subnet),
            holder: crate::nat::eip::holder(&eip.namespace().unwrap_or_default(), &eip.name_any()),
            ip,
        });
    }
    for pod in f.pods {
        let a = pod.annotations();
        if a.get(ann::ALLOCATED).map(String::as_str) != Some("true") {
            continue;
        }
        let (Some(subnet), Some(ip)) = (
            a.get(ann::SUBNET),
            a.get(ann::IP_ADDRESS).and_then(|i| i.parse().ok()),
        ) else {
            continue;
        };
        let ns = pod.namespace().unwrap_or_default();
        // The same rule as placing a new pod: the subnet lists the
        // namespace (never a provider subnet), or it is where the pod goes.
        let allowed =
            placement::choose_subnet_for(&ns, a, f.trusted_namespace, f.subnets, f.default_subnet)
                .ok()
                .flatten()
                .is_some_and(|s| s.name_any() == *subnet);
        if !allowed {
            tracing::warn!(namespace = %ns, pod = %pod.name_any(), %subnet, %ip, "pod annotations claim an address in a subnet the pod may not use; ignored");
            untrusted += 1;
            continue;
        }
        out.push(Claim {
            source: Source::Pod,
            subnet: subnet.clone(),
            holder: names::pod_holder(&ns, &pod.name_any()),
            ip,
        });
    }
    // Stable: within a source, the order found.
    out.sort_by_key(|c| c.source);
    (out, untrusted)
}

/// Loads every pool and every holder.
pub async fn rebuild(ctx: &Context) -> Result<Rebuilt> {
    let mut out = Rebuilt::default();
    let subnets: Vec<Arc<Subnet>> = Api::<Subnet>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(Arc::new)
        .collect();
    let pods = Api::<Pod>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let ports = crate::gc::owned_rows(&ctx.nb, super::PORT_TABLE).await?;
    let eips = Api::<IptablesEIP>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let gateways = Api::<VpcNatGateway>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let mut ipam = ctx.ipam.lock().await;
    for s in &subnets {
        let gateway = match (&s.spec.gateway, s.spec.provider.is_some()) {
            (Some(g), _) => Some(g.clone()),
            (None, false) => s
                .spec
                .cidr_block
                .parse()
                .ok()
                .map(|c| crate::subnet::desired::default_gateway(&c).to_string()),
            (None, true) => None,
        };
        if ipam
            .upsert(
                &s.name_any(),
                &s.spec.cidr_block,
                gateway.as_deref(),
                &s.spec.exclude_ips,
            )
            .is_ok()
        {
            out.pools += 1;
        }
    }
    let (claims, untrusted) = claims(&Found {
        subnets: &subnets,
        pods: &pods,
        ports: &ports,
        eips: &eips,
        gateways: &gateways,
        key: &ctx.seal,
        trusted_namespace: &ctx.namespace,
        default_subnet: ctx.default_subnet.as_deref(),
        external_subnet: &ctx.external_subnet,
    });
    out.untrusted = untrusted;
    for c in claims {
        let Ok(pool) = ipam.pool_mut(&c.subnet) else {
            continue;
        };
        match pool.holder_of(c.ip) {
            Some(h) if h == c.holder => {}
            Some(other) => {
                tracing::error!(ip = %c.ip, holder = %c.holder, %other, source = ?c.source, "address claimed twice; keeping the more trusted, earlier holder");
                out.conflicts += 1;
            }
            None if pool.get(&c.holder).is_some() => {}
            None => {
                pool.force(&c.holder, c.ip);
                match c.source {
                    Source::Port => out.from_ports += 1,
                    Source::Status => out.from_status += 1,
                    Source::Pod => out.from_pods += 1,
                }
            }
        }
    }
    Ok(out)
}

/// `owner id -> external_ids` of rows (re-exported for the rebuild's use).
pub type OwnedRows = Vec<(String, BTreeMap<String, String>)>;

#[cfg(test)]
mod tests {
    use super::*;
    use vpcnet_api::seal::Decision;
    use vpcnet_api::{IptablesEIPSpec, IptablesEIPStatus, SubnetSpec};

    fn subnet(name: &str, cidr: &str, namespaces: &[&str], provider: bool) -> Arc<Subnet> {
        Arc::new(Subnet::new(
            name,
            SubnetSpec {
                cidr_block: cidr.into(),
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                provider: provider.then(|| "ext.vpcnet-system".to_string()),
                ..Default::default()
            },
        ))
    }

    fn forged_pod(ns: &str, name: &str, subnet: &str, ip: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some(ns.into());
        p.metadata.annotations = Some(BTreeMap::from([
            (ann::ALLOCATED.to_string(), "true".to_string()),
            (ann::SUBNET.to_string(), subnet.to_string()),
            (ann::IP_ADDRESS.to_string(), ip.to_string()),
        ]));
        p
    }

    fn eip(ns: &str, name: &str, ip: &str, key: Option<&SealKey>) -> IptablesEIP {
        let mut e = IptablesEIP::new(
            name,
            IptablesEIPSpec {
                nat_gw_dp: "gw-b".into(),
                ..Default::default()
            },
        );
        e.metadata.namespace = Some(ns.into());
        e.metadata.uid = Some(format!("{ns}-{name}"));
        let seal = key.map(|k| k.seal(&Decision::eip(&e, "gw-b", ip)));
        e.status = Some(IptablesEIPStatus {
            ip: Some(ip.into()),
            nat_gw_dp: Some("gw-b".into()),
            seal,
            ..Default::default()
        });
        e
    }

    #[test]
    fn forged_annotations_never_outrank_what_the_operator_wrote() {
        let key = SealKey::new(&[9u8; 32]).unwrap();
        let subnets = vec![
            subnet("ext", "172.16.3.0/24", &[], true),
            subnet("a", "10.0.1.0/24", &["a"], false),
            subnet("b", "10.0.1.0/24", &["b"], false),
        ];
        let pods = vec![
            // Tenant a asks for b's EIP address and for b's pod address.
            forged_pod("a", "steal-eip", "ext", "172.16.3.50"),
            forged_pod("a", "steal-pod", "b", "10.0.1.7"),
            // An honest pod of a whose port is missing (crash mid-way).
            forged_pod("a", "honest", "a", "10.0.1.9"),
        ];
        let ports: OwnedRows = vec![(
            "Pod/b/web".into(),
            BTreeMap::from([
                ("vpcnet.io/subnet".into(), "b".into()),
                ("vpcnet.io/ip".into(), "10.0.1.7".into()),
            ]),
        )];
        let eips = vec![
            eip("b", "eb", "172.16.3.50", Some(&key)),
            // a writes an address into its own EIP's status: no seal.
            eip("a", "ea", "172.16.3.51", None),
        ];
        let (claims, untrusted) = claims(&Found {
            subnets: &subnets,
            pods: &pods,
            ports: &ports,
            eips: &eips,
            gateways: &[],
            key: &key,
            trusted_namespace: "vpcnet-system",
            default_subnet: None,
            external_subnet: "ext",
        });
        assert_eq!(untrusted, 3, "{claims:?}");
        let held: Vec<(&str, &str, String)> = claims
            .iter()
            .map(|c| (c.subnet.as_str(), c.holder.as_str(), c.ip.to_string()))
            .collect();
        let pod_b = names::pod_holder("b", "web");
        let pod_honest = names::pod_holder("a", "honest");
        assert_eq!(
            held,
            vec![
                ("b", pod_b.as_str(), "10.0.1.7".to_string()),
                ("ext", "eip/b/eb", "172.16.3.50".to_string()),
                ("a", pod_honest.as_str(), "10.0.1.9".to_string()),
            ]
        );
    }
}
