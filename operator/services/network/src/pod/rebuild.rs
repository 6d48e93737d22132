//! The network service's part of the address state at start: a pool per
//! Subnet, the addresses of the pod ports we wrote (most trusted), and the
//! addresses in pod annotations, honoured only where admission-time
//! placement would have put the pod. A tenant can write its pods'
//! annotations; that must never take an address from anyone.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use vpcnet_api::Subnet;
use vpcnet_api::contract::external_ids;
use vpcnet_runtime::rebuild::{Claim, PoolSpec, Source};

use super::placement;
use crate::names::{self, annotations as ann};

/// `owner id -> external_ids` of rows.
pub type OwnedRows = Vec<(String, BTreeMap<String, String>)>;

/// What the claims are made from.
pub struct Found<'a> {
    /// Every Subnet.
    pub subnets: &'a [Arc<Subnet>],
    /// Every pod.
    pub pods: &'a [Pod],
    /// `owner -> external_ids` of our Logical_Switch_Ports.
    pub ports: &'a OwnedRows,
    /// The operator's namespace (its pods may name any subnet).
    pub trusted_namespace: &'a str,
    /// The default subnet, if any.
    pub default_subnet: Option<&'a str>,
}

/// The pool of every Subnet (pure).
pub fn pools(subnets: &[Arc<Subnet>]) -> Vec<PoolSpec> {
    subnets
        .iter()
        .map(|s| {
            let gateway = match (&s.spec.gateway, s.spec.provider.is_some()) {
                (Some(g), _) => Some(g.clone()),
                (None, false) => s
                    .spec
                    .cidr_block
                    .parse()
                    .ok()
                    .map(|c| vpcnet_api::subnet::default_gateway(&c).to_string()),
                (None, true) => None,
            };
            PoolSpec {
                subnet: s.name_any(),
                cidr: s.spec.cidr_block.clone(),
                gateway,
                exclude: s.spec.exclude_ips.clone(),
            }
        })
        .collect()
}

/// Every claim of a port or a pod, and how many were refused (pure).
pub fn claims(f: &Found<'_>) -> (Vec<Claim>, usize) {
    let mut out = Vec::new();
    let mut untrusted = 0;
    for (owner, ids) in f.ports {
        let Some((ns, name)) = owner.strip_prefix("Pod/").and_then(|r| r.split_once('/')) else {
            continue;
        };
        if let (Some(subnet), Some(ip)) = (
            ids.get(external_ids::SUBNET),
            ids.get(external_ids::IP).and_then(|i| i.parse().ok()),
        ) {
            out.push(Claim {
                source: Source::Port,
                subnet: subnet.clone(),
                holder: names::pod_holder(ns, name),
                ip,
            });
        }
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
        let a = placement::with_aliases(a);
        let allowed =
            placement::choose_subnet_for(&ns, &a, f.trusted_namespace, f.subnets, f.default_subnet)
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
    (out, untrusted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcnet_api::SubnetSpec;

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

    #[test]
    fn forged_annotations_never_outrank_what_the_operator_wrote() {
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
        let (claims, untrusted) = claims(&Found {
            subnets: &subnets,
            pods: &pods,
            ports: &ports,
            trusted_namespace: "vpcnet-system",
            default_subnet: None,
        });
        assert_eq!(untrusted, 2, "{claims:?}");
        let held: Vec<(&str, String, String)> = claims
            .iter()
            .map(|c| (c.subnet.as_str(), c.holder.to_string(), c.ip.to_string()))
            .collect();
        assert_eq!(
            held,
            vec![
                ("b", "pod/b/web".to_string(), "10.0.1.7".to_string()),
                ("a", "pod/a/honest".to_string(), "10.0.1.9".to_string()),
            ]
        );
    }
}
