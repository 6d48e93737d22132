//! A gateway's status (typed), from its verdict, its pod and its VPC.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use vpcnet_api::condition::{Conditioned, READY};
use vpcnet_api::contract::conditions::{ACCEPTED, DEFAULT_ROUTE};
use vpcnet_api::contract::naming;
use vpcnet_api::{Vpc, VpcNatGateway, VpcNatGatewayStatus};
use vpcnet_runtime::status::{self, condition};

use super::objects::GatewayPlan;
use super::validate::GatewayRefusal;

/// The condition types the operator writes on a gateway.
const OURS: [&str; 3] = [ACCEPTED, READY, DEFAULT_ROUTE];

/// The part of a gateway's status the operator owns.
pub fn owned_part(st: &VpcNatGatewayStatus) -> VpcNatGatewayStatus {
    VpcNatGatewayStatus {
        conditions: status::conditions_of(&st.conditions, &OURS),
        ..st.clone()
    }
}

/// Writes `desired` unless the gateway already shows it.
pub async fn report(
    api: &Api<VpcNatGateway>,
    gw: &VpcNatGateway,
    desired: VpcNatGatewayStatus,
) -> kube::Result<bool> {
    status::report_by(
        api,
        &gw.name_any(),
        gw.status.as_ref(),
        &desired,
        owned_part,
    )
    .await
}

/// A refused gateway's status: the verdict, nothing else.
pub fn refused(gw: &VpcNatGateway, r: &GatewayRefusal) -> VpcNatGatewayStatus {
    let generation = gw.meta().generation;
    VpcNatGatewayStatus {
        conditions: vec![
            r.condition(gw.conditions(), ACCEPTED, generation),
            r.condition(gw.conditions(), READY, generation),
        ],
        observed_generation: generation,
        ..Default::default()
    }
}

/// A gateway whose deletion waits: `Ready` says why; everything else as is.
pub fn waiting(gw: &VpcNatGateway, r: &GatewayRefusal) -> VpcNatGatewayStatus {
    let mut st = owned_part(&gw.status.clone().unwrap_or_default());
    vpcnet_api::condition::set(
        &mut st.conditions,
        r.condition(gw.conditions(), READY, gw.meta().generation),
    );
    st
}

/// Whether the gateway pod is Ready.
pub fn pod_ready(pod: Option<&Pod>) -> bool {
    pod.and_then(|p| p.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// An accepted gateway's status (pure).
pub fn running(
    gw: &VpcNatGateway,
    plan: &GatewayPlan,
    pod: Option<&Pod>,
    vpc: Option<&Vpc>,
) -> VpcNatGatewayStatus {
    let generation = gw.meta().generation;
    let previous = gw.conditions();
    // With 2 replicas `pod` is the active one.
    let pod_name = format!(
        "{}/{}",
        plan.namespace,
        pod.map(|p| p.name_any())
            .unwrap_or_else(|| naming::natgw_pod(&plan.name))
    );
    let ready = if pod_ready(pod) {
        condition(
            previous,
            READY,
            true,
            "Running",
            format!("gateway pod {pod_name} is ready"),
            generation,
        )
    } else if plan.is_ha() && pod.is_none() {
        condition(
            previous,
            READY,
            false,
            "NoActiveReplica",
            format!(
                "no replica holds the Lease {}/{} yet",
                plan.namespace,
                naming::natgw_lease(&plan.name)
            ),
            generation,
        )
    } else {
        condition(
            previous,
            READY,
            false,
            "PodNotReady",
            format!("waiting for gateway pod {pod_name} to become ready"),
            generation,
        )
    };
    let accepted = condition(
        previous,
        ACCEPTED,
        true,
        "Valid",
        format!(
            "LAN {} in subnet {}, external {} on {}/{}",
            plan.lan_ip, plan.subnet, plan.external_ip, plan.nad.0, plan.nad.1
        ),
        generation,
    );
    VpcNatGatewayStatus {
        conditions: vec![
            accepted,
            ready,
            default_route(gw, vpc, previous, generation),
        ],
        observed_generation: generation,
        pod: Some(pod_name),
        node: pod
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.node_name.clone()),
        external_ip: Some(plan.external_ip.addr().to_string()),
        external_ips: match plan.second_external_ip {
            Some(s) => vec![plan.external_ip.addr().to_string(), s.addr().to_string()],
            None => Vec::new(),
        },
        active: None,
        last_failover: None,
    }
}

/// Whether the VPC's default route points at this gateway.
fn default_route(
    gw: &VpcNatGateway,
    vpc: Option<&Vpc>,
    previous: &[Condition],
    generation: Option<i64>,
) -> Condition {
    let own = vpc.and_then(|v| {
        v.spec
            .static_routes
            .iter()
            .find(|r| r.cidr == crate::route::DEFAULT_PREFIX)
            .map(|r| r.next_hop_ip.clone())
    });
    match own {
        Some(hop) if hop != gw.spec.lan_ip => condition(
            previous,
            DEFAULT_ROUTE,
            false,
            "VpcRoutesElsewhere",
            format!(
                "VPC {} routes 0.0.0.0/0 to {hop} in its own staticRoutes; this gateway is not its default route",
                gw.spec.vpc
            ),
            generation,
        ),
        _ => condition(
            previous,
            DEFAULT_ROUTE,
            true,
            "Installed",
            format!("VPC {} routes 0.0.0.0/0 to {}", gw.spec.vpc, gw.spec.lan_ip),
            generation,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::validate::GatewayReason;
    use vpcnet_runtime::refusal::Refusal;

    #[test]
    fn a_waiting_deletion_changes_only_ready_and_a_refusal_only_the_verdict() {
        let mut gw = VpcNatGateway::new("g", Default::default());
        gw.metadata.generation = Some(2);
        gw.status = Some(VpcNatGatewayStatus {
            conditions: vec![
                vpcnet_api::condition::new(ACCEPTED, true, "Valid", "m", Some(2)),
                vpcnet_api::condition::new(READY, true, "Running", "m", Some(2)),
                vpcnet_api::condition::new("AgentOwn", true, "X", "m", Some(2)),
            ],
            observed_generation: Some(2),
            external_ip: Some("172.16.3.101".into()),
            ..Default::default()
        });
        let r = Refusal::new(GatewayReason::InUse, "waits");
        let w = waiting(&gw, &r);
        assert_eq!(w.external_ip.as_deref(), Some("172.16.3.101"));
        let find = |st: &VpcNatGatewayStatus, t: &str| {
            vpcnet_api::condition::find(&st.conditions, t).map(|c| c.reason.clone())
        };
        assert_eq!(find(&w, ACCEPTED).as_deref(), Some("Valid"));
        assert_eq!(find(&w, READY).as_deref(), Some("InUse"));
        assert_eq!(find(&w, "AgentOwn"), None, "not ours to write");
        let f = refused(&gw, &Refusal::new(GatewayReason::VpcNotFound, "gone"));
        assert_eq!(find(&f, ACCEPTED).as_deref(), Some("VpcNotFound"));
        assert_eq!(f.external_ip, None);
        assert!(!status::says_by(gw.status.as_ref(), &f, owned_part));
        assert!(status::says_by(
            gw.status.as_ref(),
            &owned_part(gw.status.as_ref().unwrap()),
            owned_part
        ));
    }
}
