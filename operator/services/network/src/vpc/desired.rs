//! The OVN rows a Vpc wants: its logical router, static routes and policies.

use std::collections::BTreeMap;

use ovn::nb::{
    LogicalRouter, LogicalRouterPolicy, LogicalRouterStaticRoute, logical_router,
    logical_router_policy, logical_router_static_route,
};
use ovn::owner::KEY_KEY;
use ovn::{Desired, Table, Uuid};
use vpcnet_api::VpcSpec;
use vpcnet_api::vpc::{PolicyAction, RoutePolicy};

use crate::names;

const ROUTER: &str = "router";

/// Desired rows for VPC `name`.
pub fn desired(name: &str, spec: &VpcSpec) -> Vec<Desired> {
    let router = LogicalRouter {
        name: names::router(name),
        external_ids: BTreeMap::from([("vpcnet.io/vpc".to_string(), name.to_string())]),
        ..Default::default()
    };
    let mut rows = vec![Desired::new(&router).named(ROUTER)];
    let routes = spec
        .static_routes
        .iter()
        .map(|r| (r.cidr.as_str(), r.next_hop_ip.as_str(), r.policy));
    for (cidr, next_hop, policy) in routes {
        let policy = match policy {
            RoutePolicy::Dst => logical_router_static_route::Policy::DstIp,
            RoutePolicy::Src => logical_router_static_route::Policy::SrcIp,
        };
        let route = LogicalRouterStaticRoute {
            ip_prefix: cidr.to_string(),
            nexthop: next_hop.to_string(),
            policy: Some(policy),
            external_ids: BTreeMap::from([(
                KEY_KEY.to_string(),
                format!("route/{policy}/{cidr}/{next_hop}"),
            )]),
            ..Default::default()
        };
        rows.push(Desired::new(&route).child_of(
            LogicalRouter::TABLE,
            logical_router::STATIC_ROUTES,
            Uuid::named(ROUTER),
        ));
    }
    for p in &spec.policy_routes {
        let action = match p.action {
            PolicyAction::Allow => logical_router_policy::Action::Allow,
            PolicyAction::Drop => logical_router_policy::Action::Drop,
            PolicyAction::Reroute => logical_router_policy::Action::Reroute,
        };
        let policy = LogicalRouterPolicy {
            priority: i64::from(p.priority),
            r#match: p.match_.clone(),
            action,
            nexthop: p.next_hop_ip.clone(),
            external_ids: BTreeMap::from([(
                KEY_KEY.to_string(),
                format!("policy/{}/{}", p.priority, p.match_),
            )]),
            ..Default::default()
        };
        rows.push(Desired::new(&policy).child_of(
            LogicalRouter::TABLE,
            logical_router::POLICIES,
            Uuid::named(ROUTER),
        ));
    }
    rows
}

/// Two static routes with the same prefix and policy conflict (OVN would
/// pick one arbitrarily); returns the first such prefix. (A NAT gateway
/// adds its default route only to a VPC whose spec has none.)
pub fn duplicate_route(spec: &VpcSpec) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    let all = spec
        .static_routes
        .iter()
        .map(|r| (r.cidr.clone(), r.policy));
    for key in all {
        if !seen.insert(key.clone()) {
            return Some(key.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcnet_api::vpc::{PolicyRoute, StaticRoute};

    fn spec() -> VpcSpec {
        VpcSpec {
            namespaces: vec!["t".into()],
            static_routes: vec![StaticRoute {
                cidr: "0.0.0.0/0".into(),
                next_hop_ip: "10.0.1.254".into(),
                policy: RoutePolicy::Dst,
            }],
            policy_routes: vec![PolicyRoute {
                priority: 100,
                match_: "ip4.src == 10.0.1.0/24".into(),
                action: PolicyAction::Reroute,
                next_hop_ip: Some("10.0.1.253".into()),
            }],
        }
    }

    #[test]
    fn router_routes_and_policies() {
        let rows = desired("mail263", &spec());
        assert_eq!(rows.len(), 3);
        let dbg = format!("{rows:?}");
        assert!(dbg.contains("vpcnet-mail263"));
        let dst_ip = logical_router_static_route::Policy::DstIp.as_str();
        assert!(dbg.contains("0.0.0.0/0") && dbg.contains(dst_ip) && dbg.contains("10.0.1.254"));
        let reroute = logical_router_policy::Action::Reroute.as_str();
        assert!(dbg.contains(reroute) && dbg.contains("10.0.1.253"));
    }

    #[test]
    fn duplicate_routes_are_found() {
        let mut twice = spec();
        twice.static_routes.push(StaticRoute {
            cidr: "0.0.0.0/0".into(),
            next_hop_ip: "10.0.1.250".into(),
            policy: RoutePolicy::Dst,
        });
        assert_eq!(duplicate_route(&twice).as_deref(), Some("0.0.0.0/0"));
        assert_eq!(duplicate_route(&spec()), None);
        assert_eq!(
            desired("v", &VpcSpec::default()).len(),
            1,
            "just the router"
        );
    }
}
