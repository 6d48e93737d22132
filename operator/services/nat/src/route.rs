//! The VPC's default route through a NAT gateway: one
//! `Logical_Router_Static_Route` on the VPC's router, owned by the gateway
//! that is the next hop (the oldest accepted gateway of the VPC, unless the
//! VPC routes `0.0.0.0/0` itself). The Vpc reconciler does not know NAT
//! exists; the router's other routes are the Vpc's own rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use ovn::nb::logical_router_static_route::Policy;
use ovn::nb::{LogicalRouter, LogicalRouterStaticRoute, logical_router};
use ovn::owner::KEY_KEY;
use ovn::{Desired, Owner, Table};
use vpcnet_api::VpcNatGateway;
use vpcnet_api::contract::naming;

use crate::{Ctx, Error, Result};

/// The prefix a gateway routes.
pub const DEFAULT_PREFIX: &str = "0.0.0.0/0";

/// The owner kind of a gateway's rows.
pub const OWNER_KIND: &str = "VpcNatGateway";

/// A route a gateway wants on its VPC's router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Prefix.
    pub cidr: String,
    /// Next hop.
    pub next_hop: String,
}

/// The OVN owner of gateway `name`'s rows.
pub fn owner(name: &str, vpc: &str) -> Owner {
    Owner::cluster(OWNER_KIND, name).with_vpc(vpc)
}

/// The route row (pure).
pub fn row(route: &Route) -> LogicalRouterStaticRoute {
    let policy = Policy::DstIp;
    LogicalRouterStaticRoute {
        ip_prefix: route.cidr.clone(),
        nexthop: route.next_hop.clone(),
        policy: Some(policy),
        external_ids: BTreeMap::from([(
            KEY_KEY.to_string(),
            format!("route/{policy}/{}/{}", route.cidr, route.next_hop),
        )]),
        ..Default::default()
    }
}

/// Whether `gw` (with the verdict `accepted` just reached) is its VPC's
/// next hop, given the other gateways in the cache (pure).
pub fn holds(
    gw: &VpcNatGateway,
    accepted: bool,
    spec: &vpcnet_api::VpcSpec,
    cached: &[Arc<VpcNatGateway>],
) -> bool {
    if !accepted {
        return false;
    }
    // The cache may not show the verdict just written: judge this gateway
    // as it now is.
    let mut me = gw.clone();
    let st = me.status.get_or_insert_with(Default::default);
    vpcnet_api::condition::set(
        &mut st.conditions,
        vpcnet_api::condition::new(crate::ACCEPTED, true, "Valid", "", gw.metadata.generation),
    );
    let mut all: Vec<Arc<VpcNatGateway>> = cached
        .iter()
        .filter(|g| g.name_any() != gw.name_any())
        .cloned()
        .collect();
    all.push(Arc::new(me));
    crate::gateway::route_holder(&gw.spec.vpc, spec, &all)
        .is_some_and(|h| h.name_any() == gw.name_any())
}

/// Installs or removes `gw`'s default route as `accepted` and the other
/// gateways of its VPC decide.
pub async fn converge(ctx: &Ctx, gw: &VpcNatGateway, accepted: bool) -> Result<()> {
    let name = gw.name_any();
    let vpc = ctx
        .vpcs
        .state()
        .into_iter()
        .find(|v| v.name_any() == gw.spec.vpc);
    let holds = vpc
        .as_ref()
        .is_some_and(|v| holds(gw, accepted, &v.spec, &ctx.gateways.state()));
    if !holds {
        return withdraw(ctx, &name).await;
    }
    let router_name = naming::router(&gw.spec.vpc);
    let router = ctx.ovn.router(&router_name).ok_or_else(|| {
        Error::Dependency(format!(
            "logical router {router_name} of VPC {}",
            gw.spec.vpc
        ))
    })?;
    let route = Route {
        cidr: DEFAULT_PREFIX.into(),
        next_hop: gw.spec.lan_ip.clone(),
    };
    let report = ovn::owner::ensure_owned(
        &ctx.nb,
        &owner(&name, &gw.spec.vpc),
        vec![Desired::new(&row(&route)).child_of(
            LogicalRouter::TABLE,
            logical_router::STATIC_ROUTES,
            router,
        )],
    )
    .await?;
    if report.created + report.updated + report.deleted > 0 {
        tracing::info!(gateway = %name, vpc = %gw.spec.vpc, next_hop = %route.next_hop, "installed the VPC's default route");
    }
    Ok(())
}

/// Removes gateway `name`'s default route, if it has one.
pub async fn withdraw(ctx: &Ctx, name: &str) -> Result<()> {
    let deleted = ovn::owner::delete_owned(&ctx.nb, &Owner::cluster(OWNER_KIND, name)).await?;
    if deleted > 0 {
        tracing::info!(gateway = %name, "withdrew the VPC's default route");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(name: &str, lan: &str, created: i64) -> VpcNatGateway {
        let mut g = VpcNatGateway::new(
            name,
            vpcnet_api::VpcNatGatewaySpec {
                vpc: "v".into(),
                subnet: "s".into(),
                lan_ip: lan.into(),
                ..Default::default()
            },
        );
        g.metadata.generation = Some(1);
        g.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
        ));
        g
    }

    #[test]
    fn the_oldest_accepted_gateway_holds_the_route_as_soon_as_it_is_accepted() {
        let spec = vpcnet_api::VpcSpec::default();
        let old = gw("old", "10.0.1.254", 100);
        let young = gw("young", "10.0.1.253", 200);
        // Neither shows a verdict in the cache yet.
        let cached = vec![Arc::new(old.clone()), Arc::new(young.clone())];
        assert!(
            holds(&old, true, &spec, &cached),
            "judged by its own verdict"
        );
        assert!(
            !holds(&old, false, &spec, &cached),
            "a refused gateway never holds it"
        );
        // The young one holds it while the old one is not accepted...
        assert!(holds(&young, true, &spec, &cached));
        // ...and gives it up once the cache shows the old one accepted.
        let mut accepted_old = old.clone();
        accepted_old.status = Some(vpcnet_api::VpcNatGatewayStatus {
            conditions: vec![vpcnet_api::condition::new(
                crate::ACCEPTED,
                true,
                "Valid",
                "",
                Some(1),
            )],
            ..Default::default()
        });
        let cached = vec![Arc::new(accepted_old), Arc::new(young.clone())];
        assert!(!holds(&young, true, &spec, &cached));
    }

    #[test]
    fn a_vpc_with_its_own_default_route_gets_none_from_a_gateway() {
        let spec = vpcnet_api::VpcSpec {
            static_routes: vec![vpcnet_api::vpc::StaticRoute {
                cidr: DEFAULT_PREFIX.into(),
                next_hop_ip: "10.0.1.9".into(),
                policy: Default::default(),
            }],
            ..Default::default()
        };
        assert!(!holds(&gw("g", "10.0.1.254", 1), true, &spec, &[]));
    }

    #[test]
    fn the_row_is_a_destination_route_keyed_by_prefix_and_hop() {
        let r = row(&Route {
            cidr: DEFAULT_PREFIX.into(),
            next_hop: "10.0.1.254".into(),
        });
        assert_eq!(r.policy, Some(Policy::DstIp));
        assert_eq!(r.external_ids[KEY_KEY], "route/dst-ip/0.0.0.0/0/10.0.1.254");
    }
}
