//! Which subnet a pod belongs to and which address it asks for: pure
//! functions of the pod's namespace, annotations and the subnets.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use kube::ResourceExt;
use vpcnet_api::Subnet;

use crate::names::annotations as ann;

/// The address a pod asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Already allocated by us on this switch: keep it.
    Existing(Ipv4Addr),
    /// A fixed address requested by the user.
    Fixed(Ipv4Addr),
    /// The first free one of a workload's pool.
    Pool(Vec<Ipv4Addr>),
    /// Any free address.
    Any,
}

/// The subnet for a pod: the one its `vpcnet.io/subnet` annotation names
/// (honoured only for a subnet that lists the pod's namespace, or for pods of
/// the operator's own namespace, such as NAT gateways); else a subnet that
/// lists the namespace (the oldest if several do); else the default subnet.
pub fn choose_subnet_for(
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    trusted_namespace: &str,
    subnets: &[Arc<Subnet>],
    default: Option<&str>,
) -> Result<Option<Arc<Subnet>>, String> {
    if let Some(wanted) = annotations.get(ann::SUBNET) {
        let Some(s) = subnets
            .iter()
            .find(|s| s.name_any() == *wanted && s.spec.provider.is_none())
        else {
            return Err(format!(
                "annotation {} names subnet {wanted}, which does not exist",
                ann::SUBNET
            ));
        };
        if namespace == trusted_namespace || s.spec.namespaces.iter().any(|n| n == namespace) {
            return Ok(Some(s.clone()));
        }
        return Err(format!(
            "subnet {wanted} (annotation {}) does not list namespace {namespace}",
            ann::SUBNET
        ));
    }
    Ok(choose_subnet(namespace, subnets, default))
}

pub use vpcnet_api::subnet::choose_subnet;

/// The pod's annotations with Kube-OVN's spellings of our requests read as
/// ours ([`ann::KUBE_OVN_ALIASES`]); where both are set, ours win.
pub fn with_aliases(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = annotations.clone();
    for (theirs, ours) in ann::KUBE_OVN_ALIASES {
        if let Some(v) = annotations.get(*theirs) {
            out.entry(ours.to_string()).or_insert_with(|| v.clone());
        }
    }
    out
}

/// What the pod's annotations ask for, for a pod placed on switch `ls`.
pub fn request(annotations: &BTreeMap<String, String>, ls: &str) -> Result<Request, String> {
    let allocated = annotations.get(ann::ALLOCATED).is_some_and(|v| v == "true");
    let ip = annotations.get(ann::IP_ADDRESS);
    if allocated
        && annotations.get(ann::LOGICAL_SWITCH).map(String::as_str) == Some(ls)
        && let Some(ip) = ip.and_then(|v| v.parse().ok())
    {
        return Ok(Request::Existing(ip));
    }
    if !allocated && let Some(v) = ip {
        return v.trim().parse().map(Request::Fixed).map_err(|_| {
            format!(
                "annotation {} = {v:?} is not an IPv4 address",
                ann::IP_ADDRESS
            )
        });
    }
    if let Some(pool) = annotations.get(ann::IP_POOL) {
        let parsed: Result<Vec<Ipv4Addr>, _> = pool
            .split(',')
            .map(|a| a.trim().parse::<Ipv4Addr>())
            .collect();
        return parsed.map(Request::Pool).map_err(|_| {
            format!(
                "annotation {} = {pool:?} must be a comma-separated list of IPv4 addresses",
                ann::IP_POOL
            )
        });
    }
    Ok(Request::Any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcnet_api::SubnetSpec;

    fn subnet(name: &str, namespaces: &[&str]) -> Arc<Subnet> {
        Arc::new(Subnet::new(
            name,
            SubnetSpec {
                cidr_block: "10.0.1.0/24".into(),
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        ))
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kube_ovn_annotations_ask_for_the_same_as_ours_and_ours_win() {
        let theirs = with_aliases(&ann(&[
            ("ovn.kubernetes.io/ip_address", "10.0.1.9"),
            ("ovn.kubernetes.io/logical_switch", "a"),
        ]));
        assert_eq!(
            request(&theirs, "ls").unwrap(),
            Request::Fixed("10.0.1.9".parse().unwrap())
        );
        let subnets = vec![subnet("ovn-default", &[]), subnet("a", &["tenant-a"])];
        let chosen = choose_subnet_for(
            "tenant-a",
            &theirs,
            "vpcnet-system",
            &subnets,
            Some("ovn-default"),
        );
        assert_eq!(chosen.unwrap().unwrap().name_any(), "a");
        // The same rule as ours: a subnet that does not list the namespace
        // is refused, whichever spelling names it.
        assert!(choose_subnet_for("tenant-b", &theirs, "vpcnet-system", &subnets, None).is_err());

        let pool = with_aliases(&ann(&[(
            "ovn.kubernetes.io/ip_pool",
            "10.0.1.20,10.0.1.21",
        )]));
        assert!(matches!(request(&pool, "ls").unwrap(), Request::Pool(p) if p.len() == 2));

        let both = with_aliases(&ann(&[
            ("ovn.kubernetes.io/ip_address", "10.0.1.9"),
            (ann::IP_ADDRESS, "10.0.1.10"),
        ]));
        assert_eq!(
            request(&both, "ls").unwrap(),
            Request::Fixed("10.0.1.10".parse().unwrap())
        );
    }

    #[test]
    fn namespace_binding_then_default() {
        let subnets = vec![
            subnet("ovn-default", &[]),
            subnet("a", &["tenant-a"]),
            subnet("b", &["tenant-b"]),
        ];
        assert_eq!(
            choose_subnet("tenant-a", &subnets, Some("ovn-default"))
                .unwrap()
                .name_any(),
            "a"
        );
        assert_eq!(
            choose_subnet("other", &subnets, Some("ovn-default"))
                .unwrap()
                .name_any(),
            "ovn-default"
        );
        assert!(choose_subnet("other", &subnets, None).is_none());
    }

    #[test]
    fn subnet_annotation_is_honoured_only_where_allowed() {
        let subnets = vec![subnet("ovn-default", &[]), subnet("a", &["tenant-a"])];
        let want_a = ann(&[(ann::SUBNET, "a")]);
        assert_eq!(
            choose_subnet_for("tenant-a", &want_a, "vpcnet-system", &subnets, None)
                .unwrap()
                .unwrap()
                .name_any(),
            "a"
        );
        assert_eq!(
            choose_subnet_for("vpcnet-system", &want_a, "vpcnet-system", &subnets, None)
                .unwrap()
                .unwrap()
                .name_any(),
            "a"
        );
        assert!(
            choose_subnet_for("tenant-b", &want_a, "vpcnet-system", &subnets, None)
                .unwrap_err()
                .contains("tenant-b")
        );
        assert!(
            choose_subnet_for(
                "tenant-a",
                &ann(&[(ann::SUBNET, "nope")]),
                "x",
                &subnets,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn requests_from_annotations() {
        assert_eq!(request(&ann(&[]), "ls").unwrap(), Request::Any);
        assert_eq!(
            request(&ann(&[(ann::IP_ADDRESS, "10.0.1.9")]), "ls").unwrap(),
            Request::Fixed("10.0.1.9".parse().unwrap())
        );
        assert!(
            request(&ann(&[(ann::IP_ADDRESS, "10.0.1.x")]), "ls")
                .unwrap_err()
                .contains(ann::IP_ADDRESS)
        );
        assert_eq!(
            request(
                &ann(&[
                    (ann::IP_ADDRESS, "10.0.1.9"),
                    (ann::ALLOCATED, "true"),
                    (ann::LOGICAL_SWITCH, "ls")
                ]),
                "ls"
            )
            .unwrap(),
            Request::Existing("10.0.1.9".parse().unwrap())
        );
        // Allocated on another switch (the namespace moved): allocate anew.
        assert_eq!(
            request(
                &ann(&[
                    (ann::IP_ADDRESS, "10.0.1.9"),
                    (ann::ALLOCATED, "true"),
                    (ann::LOGICAL_SWITCH, "old")
                ]),
                "ls"
            )
            .unwrap(),
            Request::Any
        );
        assert_eq!(
            request(&ann(&[(ann::IP_POOL, "10.0.1.20, 10.0.1.21")]), "ls").unwrap(),
            Request::Pool(vec![
                "10.0.1.20".parse().unwrap(),
                "10.0.1.21".parse().unwrap()
            ])
        );
        assert!(request(&ann(&[(ann::IP_POOL, "10.0.1.20,nope")]), "ls").is_err());
    }
}
