//! The NAT service as the runtime sees it: its kinds and watches, its part
//! of the address rebuild, its garbage, and its controllers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Controller;
use ovn::Table;
use ovn::nb::LogicalRouterStaticRoute;
use vpcnet_api::{
    IptablesDnatRule, IptablesEIP, IptablesFIPRule, IptablesSnatRule, Subnet, Vpc, VpcNatGateway,
};
use vpcnet_ipam::Holder;
use vpcnet_runtime::driver::{drive, queue_of};
use vpcnet_runtime::kinds::Shared;
use vpcnet_runtime::rebuild::Found;
use vpcnet_runtime::service::{Ids, Service};
use vpcnet_runtime::{Result, Runtime};

use crate::context::{NatStores, Settings};
use crate::eip::EipReconciler;
use crate::gateway::GatewayReconciler;
use crate::rules::{NatRule, RuleReconciler};
use crate::{Ctx, route, watches};

/// The NAT service.
pub struct Nat {
    ctx: Arc<Ctx>,
    vpcs: Shared<Vpc>,
    subnets: Shared<Subnet>,
    gateways: Shared<VpcNatGateway>,
    eips: Shared<IptablesEIP>,
    snats: Shared<IptablesSnatRule>,
    dnats: Shared<IptablesDnatRule>,
    fips: Shared<IptablesFIPRule>,
    pods: Shared<Pod>,
    statefulsets: Shared<StatefulSet>,
    leases: Shared<k8s_openapi::api::coordination::v1::Lease>,
}

impl Nat {
    /// The service on `rt`.
    pub fn new(rt: &Arc<Runtime>, settings: Settings) -> Self {
        let k = &rt.kinds;
        let (vpcs, subnets, gateways) = (k.all::<Vpc>(), k.all::<Subnet>(), k.all());
        let (eips, snats, dnats, fips) = (k.all(), k.all(), k.all(), k.all());
        let ctx = Arc::new(Ctx {
            rt: rt.clone(),
            vpcs: vpcs.store(),
            subnets: subnets.store(),
            gateways: gateways.store(),
            nat: NatStores {
                eips: eips.store(),
                snats: snats.store(),
                dnats: dnats.store(),
                fips: fips.store(),
            },
            fairness: Default::default(),
            natgw_image: settings.natgw_image,
            image_pull_policy: settings.image_pull_policy,
            external_subnet: settings.external_subnet,
        });
        rt.metrics
            .register_collector(Box::new(crate::rule_counts::RuleCounts {
                gateways: gateways.store(),
                snats: snats.store(),
                dnats: dnats.store(),
                fips: fips.store(),
            }));
        Self {
            ctx,
            vpcs,
            subnets,
            gateways,
            eips,
            snats,
            dnats,
            fips,
            // Shared with the network service: one watch of pods.
            pods: k.all(),
            statefulsets: k.namespaced(&rt.namespace),
            leases: k.namespaced(&rt.namespace),
        }
    }

    /// A controller for one rule kind, re-run when its EIP changes.
    fn rule_controller<K: NatRule>(&self, rules: &Shared<K>) -> Controller<K> {
        let q = queue_of::<RuleReconciler<K>>(&self.ctx);
        Controller::for_shared_stream(q.objects(rules.objects()), rules.store())
            .watches_shared_stream(
                self.eips.objects(),
                q.mapper(watches::rules_of_eip(rules.store())),
            )
    }
}

#[async_trait::async_trait]
impl Service for Nat {
    fn name(&self) -> &'static str {
        "nat"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[LogicalRouterStaticRoute::TABLE]
    }

    fn owner_kinds(&self) -> &'static [&'static str] {
        &[route::OWNER_KIND]
    }

    fn holder_kinds(&self) -> &'static [&'static str] {
        &["eip", "natgw"]
    }

    async fn rebuild(&self, rt: &Runtime, found: &mut Found) -> Result<()> {
        let eips = Api::<IptablesEIP>::all(rt.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let gateways = Api::<VpcNatGateway>::all(rt.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let (claims, untrusted) =
            crate::rebuild::claims(&gateways, &eips, &rt.seal, &self.ctx.external_subnet);
        found.claims.extend(claims);
        found.untrusted += untrusted;
        Ok(())
    }

    async fn collect(&self, rt: &Runtime, owners: &BTreeMap<String, Ids>) -> Result<Vec<String>> {
        let alive: BTreeSet<String> = Api::<VpcNatGateway>::all(rt.client.clone())
            .list(&ListParams::default())
            .await?
            .iter()
            .map(|g| ovn::Owner::cluster(route::OWNER_KIND, &g.name_any()).id())
            .collect();
        let mut out = Vec::new();
        for owner in owners.keys().filter(|o| !alive.contains(*o)) {
            let name = owner.rsplit('/').next().unwrap_or_default();
            route::withdraw(&self.ctx, name).await?;
            out.push(owner.clone());
        }
        Ok(out)
    }

    async fn orphaned_holders(&self, rt: &Runtime, holders: &[Holder]) -> Result<Vec<Holder>> {
        let eips: BTreeSet<Holder> = Api::<IptablesEIP>::all(rt.client.clone())
            .list(&ListParams::default())
            .await?
            .iter()
            .map(|e| crate::eip::holder(&e.namespace().unwrap_or_default(), &e.name_any()))
            .collect();
        let gateways: BTreeSet<Holder> = Api::<VpcNatGateway>::all(rt.client.clone())
            .list(&ListParams::default())
            .await?
            .iter()
            .flat_map(|g| {
                [
                    crate::gateway::external_holder(&g.name_any()),
                    crate::gateway::second_external_holder(&g.name_any()),
                ]
            })
            .collect();
        Ok(orphaned(holders, &eips, &gateways))
    }

    async fn run(self: Arc<Self>, rt: Arc<Runtime>) {
        let ctx = self.ctx.clone();
        let q_gw = queue_of::<GatewayReconciler>(&ctx);
        let q_eip = queue_of::<EipReconciler>(&ctx);
        let gw_ctl = Controller::for_shared_stream(
            q_gw.objects(self.gateways.objects()),
            self.gateways.store(),
        )
        .watches_shared_stream(
            self.statefulsets.objects(),
            q_gw.mapper(watches::gateway_of_workload),
        )
        .watches_shared_stream(
            self.pods.objects(),
            q_gw.mapper(watches::gateway_of_pod(rt.namespace.clone())),
        )
        .watches_shared_stream(
            self.leases.objects(),
            q_gw.mapper(watches::gateway_of_lease()),
        )
        .watches_shared_stream(
            self.subnets.objects(),
            q_gw.mapper(watches::on_subnet(self.gateways.store())),
        )
        .watches_shared_stream(
            self.vpcs.objects(),
            q_gw.mapper(watches::of_vpc(self.gateways.store())),
        )
        .watches_shared_stream(
            self.gateways.objects(),
            q_gw.mapper(watches::same_vpc(self.gateways.store())),
        );
        let eip_ctl =
            Controller::for_shared_stream(q_eip.objects(self.eips.objects()), self.eips.store())
                .watches_shared_stream(
                    self.snats.objects(),
                    q_eip.mapper(watches::eip_of::<IptablesSnatRule>),
                )
                .watches_shared_stream(
                    self.dnats.objects(),
                    q_eip.mapper(watches::eip_of::<IptablesDnatRule>),
                )
                .watches_shared_stream(
                    self.fips.objects(),
                    q_eip.mapper(watches::eip_of::<IptablesFIPRule>),
                );
        tokio::join!(
            drive::<GatewayReconciler>(gw_ctl, ctx.clone()),
            drive::<EipReconciler>(eip_ctl, ctx.clone()),
            drive::<RuleReconciler<IptablesSnatRule>>(
                self.rule_controller(&self.snats),
                ctx.clone()
            ),
            drive::<RuleReconciler<IptablesDnatRule>>(
                self.rule_controller(&self.dnats),
                ctx.clone()
            ),
            drive::<RuleReconciler<IptablesFIPRule>>(self.rule_controller(&self.fips), ctx.clone()),
        );
    }
}

/// The EIP and gateway holders among `holders` whose object is not in
/// `eips` / `gateways` (pure). Pods are released with their ports, so they
/// are not judged here.
pub fn orphaned(
    holders: &[Holder],
    eips: &BTreeSet<Holder>,
    gateways: &BTreeSet<Holder>,
) -> Vec<Holder> {
    holders
        .iter()
        .filter(|h| match h {
            Holder::Eip { .. } => !eips.contains(h),
            Holder::NatGateway { .. } => !gateways.contains(h),
            Holder::Pod { .. } | Holder::Vip { .. } => false,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_holds_of_vanished_eips_and_gateways_are_orphans() {
        let holders = vec![
            Holder::eip("a", "kept"),
            Holder::eip("a", "stripped"),
            Holder::nat_gateway("gw"),
            Holder::nat_gateway("gone"),
            Holder::pod("a", "web"),
        ];
        let orphans = orphaned(
            &holders,
            &BTreeSet::from([Holder::eip("a", "kept")]),
            &BTreeSet::from([Holder::nat_gateway("gw")]),
        );
        assert_eq!(
            orphans,
            vec![Holder::eip("a", "stripped"), Holder::nat_gateway("gone")]
        );
    }
}
