//! IptablesEIP reconciler: ownership, an address from the external subnet,
//! and the list of rules using it. An EIP in use is not released.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use vpcnet_api::condition::Conditioned;
use vpcnet_api::seal::{Decision, SealKey};
use vpcnet_api::{IptablesEIP, IptablesEIPStatus, VpcNatGateway};
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::status;

use super::{ACCEPTED, ownership, rules};
use crate::reasons::{NatReason, NatRefusal};
use crate::{Ctx as Context, Error, Result};

/// The IPAM holder of an EIP.
pub fn holder(ns: &str, name: &str) -> vpcnet_ipam::Holder {
    vpcnet_ipam::Holder::eip(ns, name)
}

/// The external subnet an EIP takes its address from.
pub fn external_subnet(
    eip: &IptablesEIP,
    gateway: Option<&VpcNatGateway>,
    default: &str,
) -> String {
    match (&eip.spec.external_subnet, gateway) {
        (Some(s), _) => s.clone(),
        (None, Some(g)) => super::gateway::external_subnet(g, default),
        (None, None) => default.to_string(),
    }
}

/// How an IptablesEIP is reconciled.
pub struct EipReconciler;

#[async_trait::async_trait]
impl Reconcile for EipReconciler {
    type Object = IptablesEIP;
    type Context = Context;
    const KIND: &'static str = "IptablesEIP";

    async fn apply(eip: &IptablesEIP, ctx: &Context) -> Result<Action> {
        apply(eip, ctx, &api(eip, ctx)).await
    }

    async fn cleanup(eip: &IptablesEIP, ctx: &Context) -> Result<Action> {
        cleanup(eip, ctx, &api(eip, ctx)).await
    }
}

fn api(eip: &IptablesEIP, ctx: &Context) -> Api<IptablesEIP> {
    Api::namespaced(ctx.client.clone(), &eip.namespace().unwrap_or_default())
}

/// Checks that `subnet` may hold addresses of an EIP on `gateway`: an
/// external (provider) subnet the gateway is attached to. Any other subnet
/// is another network's address space (a tenant's own, or the default).
fn check_external_subnet(
    subnet: &str,
    gateway: &VpcNatGateway,
    default: &str,
    subnets: &[Arc<vpcnet_api::Subnet>],
) -> Result<(), NatRefusal> {
    let attached: Vec<String> = if gateway.spec.external_subnets.is_empty() {
        vec![default.to_string()]
    } else {
        gateway.spec.external_subnets.clone()
    };
    let is_external = subnets
        .iter()
        .any(|s| s.name_any() == subnet && s.spec.provider.is_some());
    if !attached.iter().any(|a| a == subnet) || !is_external {
        return Err(NatRefusal::new(
            NatReason::ExternalSubnetNotAttached,
            format!(
                "externalSubnet {subnet} is not an external network of gateway {}; use one of: {}",
                gateway.name_any(),
                attached.join(", ")
            ),
        ));
    }
    Ok(())
}

/// What an EIP's validation established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The external subnet its address comes from.
    pub subnet: String,
    /// The address asked for, if any.
    pub fixed: Option<Ipv4Addr>,
}

/// Validate (pure): the namespace may use the gateway, the subnet is one
/// of the gateway's external networks, a requested address is IPv4.
pub fn validate(
    eip: &IptablesEIP,
    gateway: Option<&VpcNatGateway>,
    vpcs: &[Arc<vpcnet_api::Vpc>],
    subnets: &[Arc<vpcnet_api::Subnet>],
    default_external: &str,
) -> Result<Wanted, NatRefusal> {
    let ns = eip.namespace().unwrap_or_default();
    ownership::check(&ns, gateway, &eip.spec.nat_gw_dp, vpcs)?;
    let subnet = external_subnet(eip, gateway, default_external);
    if let Some(gw) = gateway {
        check_external_subnet(&subnet, gw, default_external, subnets)?;
    }
    let fixed =
        match &eip.spec.v4ip {
            Some(v) => Some(v.parse().map_err(|_| {
                NatRefusal::new(NatReason::InvalidIP, format!("v4ip {v} is not IPv4"))
            })?),
            None => None,
        };
    Ok(Wanted { subnet, fixed })
}

/// Allocate: the EIP's address (the only IPAM step).
pub fn allocate(
    ipam: &mut vpcnet_ipam::Ipam,
    eip: &IptablesEIP,
    w: &Wanted,
) -> Result<Ipv4Addr, NatRefusal> {
    let ns = eip.namespace().unwrap_or_default();
    let pool = ipam.pool_mut(&w.subnet).map_err(|_| {
        NatRefusal::new(
            NatReason::ExternalSubnetNotFound,
            format!(
                "external subnet {} does not exist or is not ready",
                w.subnet
            ),
        )
    })?;
    let holder = holder(&ns, &eip.name_any());
    let got = match w.fixed {
        Some(ip) => pool.allocate_fixed(&holder, ip),
        None => pool.allocate(&holder),
    };
    got.map_err(|e| {
        // Who holds it is another tenant's business: the log has it.
        if let vpcnet_ipam::IpamError::InUse { ip, holder: other } = &e {
            tracing::info!(%ip, holder = %other, "requested EIP address is held");
        }
        NatRefusal::new(
            NatReason::IPConflict,
            format!("external subnet {}: {}", w.subnet, e.for_namespace(&ns)),
        )
    })
}

/// The part of an EIP's status the operator owns (the agent owns
/// `Programmed` and its seal).
pub fn owned_part(st: &IptablesEIPStatus) -> IptablesEIPStatus {
    IptablesEIPStatus {
        conditions: crate::operator_conditions(&st.conditions),
        programmed_seal: None,
        ..st.clone()
    }
}

/// The EIP's status for `decision` (pure).
pub fn eip_status(
    eip: &IptablesEIP,
    decision: &Result<Ipv4Addr, NatRefusal>,
    users: Vec<String>,
    key: &SealKey,
) -> IptablesEIPStatus {
    let generation = eip.meta().generation;
    let previous = eip.conditions();
    let gw_name = &eip.spec.nat_gw_dp;
    let accepted = match decision {
        Ok(ip) => status::condition(
            previous,
            ACCEPTED,
            true,
            "Allocated",
            format!("{ip} on gateway {gw_name}"),
            generation,
        ),
        Err(r) => r.condition(previous, ACCEPTED, generation),
    };
    let ip = decision.as_ref().ok().map(|ip| ip.to_string());
    let programmed = ip.as_deref().is_some_and(|ip| {
        super::sealed::programmed(
            key,
            eip,
            eip.status.as_ref().and_then(|s| s.programmed_seal.as_ref()),
            gw_name,
            ip,
        )
    });
    let ready = super::ready(previous, &accepted, generation, programmed);
    let mut st = IptablesEIPStatus {
        conditions: vec![accepted, ready],
        observed_generation: generation,
        nat: users,
        ..Default::default()
    };
    if let Some(ip) = ip {
        st.seal = Some(key.seal(&Decision::eip(eip, gw_name, &ip)));
        st.nat_gw_dp = Some(gw_name.clone());
        st.ip = Some(ip);
    }
    st
}

async fn apply(eip: &IptablesEIP, ctx: &Context, api: &Api<IptablesEIP>) -> Result<Action> {
    let ns = eip.namespace().unwrap_or_default();
    let name = eip.name_any();
    let gateway = ctx
        .gateways
        .get(&ObjectRef::<VpcNatGateway>::new(&eip.spec.nat_gw_dp));
    ctx.nat.ready().await;
    let users: Vec<String> = rules::users_of(&ctx.nat, rules::Users::Sealed(&ctx.seal), &ns, &name)
        .into_iter()
        .map(|u| u.key)
        .collect();
    let decision = validate(
        eip,
        gateway.as_deref(),
        &ctx.vpcs.state(),
        &ctx.subnets.state(),
        &ctx.external_subnet,
    );
    let decision = match decision {
        Ok(w) => allocate(&mut *ctx.ipam.lock().await, eip, &w),
        Err(r) => Err(r),
    };
    if let Err(r) = &decision {
        r.announce(&ctx.rt, eip, eip.conditions(), ACCEPTED, "Allocate")
            .await;
    }
    let st = eip_status(eip, &decision, users, &ctx.seal);
    // Re-run for every change of a rule naming it: write only news.
    status::report_by(api, &name, eip.status.as_ref(), &st, owned_part).await?;
    Ok(Action::requeue(Duration::from_secs(if decision.is_ok() {
        300
    } else {
        15
    })))
}

async fn cleanup(eip: &IptablesEIP, ctx: &Context, api: &Api<IptablesEIP>) -> Result<Action> {
    let ns = eip.namespace().unwrap_or_default();
    let name = eip.name_any();
    let users: Vec<String> = rules::accepted_users_live(&ctx.client, &ctx.seal, &ns, &name)
        .await?
        .into_iter()
        .map(|u| u.key)
        .collect();
    if !users.is_empty() {
        // Releasing an address rules still point at would hand it to the
        // next tenant while traffic for it still arrives.
        let r = NatRefusal::new(
            NatReason::InUse,
            format!(
                "deletion waits until these rules are deleted: {}",
                users.join(", ")
            ),
        );
        // A deletion that waits changes nothing else: the address, its
        // gateway and seal are applied again, or server-side apply would
        // drop them and take the EIP (and every rule on it) down.
        let mut st = owned_part(&eip.status.clone().unwrap_or_default());
        st.nat = users;
        vpcnet_api::condition::set(
            &mut st.conditions,
            r.condition(
                eip.conditions(),
                vpcnet_api::condition::READY,
                eip.meta().generation,
            ),
        );
        status::report_by(api, &name, eip.status.as_ref(), &st, owned_part).await?;
        r.announce(
            &ctx.rt,
            eip,
            eip.conditions(),
            vpcnet_api::condition::READY,
            "Delete",
        )
        .await;
        return Err(Error::Dependency(r.message));
    }
    ctx.ipam
        .lock()
        .await
        .release_everywhere(&holder(&ns, &name));
    tracing::info!("released EIP");
    Ok(Action::await_change())
}

#[cfg(test)]
mod decision_tests {
    use vpcnet_api::{IptablesEIPSpec, SubnetSpec, VpcNatGatewaySpec, VpcSpec};
    use vpcnet_ipam::Ipam;

    use super::*;

    fn eip(ns: &str, v4ip: Option<&str>, subnet: Option<&str>) -> IptablesEIP {
        let mut e = IptablesEIP::new(
            "e",
            IptablesEIPSpec {
                nat_gw_dp: "g".into(),
                v4ip: v4ip.map(str::to_string),
                external_subnet: subnet.map(str::to_string),
            },
        );
        e.metadata.namespace = Some(ns.into());
        e
    }

    #[test]
    fn an_eip_gets_an_address_of_its_gateways_external_network_only() {
        let gw = VpcNatGateway::new(
            "g",
            VpcNatGatewaySpec {
                vpc: "v".into(),
                ..Default::default()
            },
        );
        let vpcs = vec![Arc::new(vpcnet_api::Vpc::new(
            "v",
            VpcSpec {
                namespaces: vec!["a".into()],
                ..Default::default()
            },
        ))];
        let sub = |name: &str, cidr: &str, provider: bool| {
            Arc::new(vpcnet_api::Subnet::new(
                name,
                SubnetSpec {
                    cidr_block: cidr.into(),
                    provider: provider.then(|| "nad.vpcnet-system".to_string()),
                    ..Default::default()
                },
            ))
        };
        let subnets = vec![
            sub("ext", "172.16.3.0/24", true),
            sub("tenant", "10.0.1.0/24", false),
        ];
        let v =
            |e: &IptablesEIP| validate(e, Some(&gw), &vpcs, &subnets, "ext").map_err(|r| r.reason);
        assert_eq!(
            v(&eip("a", None, None)),
            Ok(Wanted {
                subnet: "ext".into(),
                fixed: None
            })
        );
        assert_eq!(v(&eip("b", None, None)), Err(NatReason::Forbidden));
        assert_eq!(
            v(&eip("a", None, Some("tenant"))),
            Err(NatReason::ExternalSubnetNotAttached)
        );
        assert_eq!(
            v(&eip("a", Some("fe80::1"), None)),
            Err(NatReason::InvalidIP)
        );

        let mut ipam = Ipam::default();
        ipam.upsert("ext", "172.16.3.0/24", Some("172.16.3.2"), &[])
            .unwrap();
        let fixed = eip("a", Some("172.16.3.50"), None);
        let w = validate(&fixed, Some(&gw), &vpcs, &subnets, "ext").unwrap();
        assert_eq!(
            allocate(&mut ipam, &fixed, &w).unwrap().to_string(),
            "172.16.3.50"
        );
        let mut rival = eip("a", Some("172.16.3.50"), None);
        rival.metadata.name = Some("rival".into());
        let r = allocate(&mut ipam, &rival, &w).unwrap_err();
        assert_eq!(r.reason, NatReason::IPConflict);
        assert!(
            r.message.contains("by eip e of this namespace"),
            "{}",
            r.message
        );
        let mut stranger = rival.clone();
        stranger.metadata.namespace = Some("b".into());
        let r = allocate(&mut ipam, &stranger, &w).unwrap_err();
        assert!(
            !r.message.contains(" e "),
            "another tenant's holder is not named: {}",
            r.message
        );
    }
}
