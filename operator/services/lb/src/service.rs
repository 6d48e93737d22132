//! The lb service as the runtime sees it: its kinds and watches, its
//! garbage, and its controllers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service as KubeService;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Controller;
use ovn::Table;
use ovn::nb::LoadBalancer;
use vpcnet_api::contract::naming::LB_GROUP_PREFIX;
use vpcnet_api::{Subnet, SwitchLBRule, Vip, Vpc};
use vpcnet_ipam::Holder;
use vpcnet_runtime::driver::{drive, queue_of};
use vpcnet_runtime::kinds::{Change, Shared};
use vpcnet_runtime::rebuild::{Claim, Found, Source};
use vpcnet_runtime::service::{Ids, Service};
use vpcnet_runtime::{Result, Runtime};

use crate::group::GroupReconciler;
use crate::service_lb::ServiceReconciler;
use crate::slr::SlrReconciler;
use crate::view::LbView;
use crate::vip::VipReconciler;
use crate::vip::decide as vip_decide;
use crate::{Ctx, OWNER_KINDS, group, service_lb, watches};

/// Deletions handled at once.
const DELETIONS_IN_FLIGHT: usize = 16;

/// How often groups of vanished VPCs are looked for.
const SWEEP: Duration = Duration::from_secs(60);

/// The lb service.
pub struct Lb {
    ctx: Arc<Ctx>,
    vpcs: Shared<Vpc>,
    subnets: Shared<Subnet>,
    services: Shared<KubeService>,
    slices: Shared<EndpointSlice>,
    vips: Shared<Vip>,
    rules: Shared<SwitchLBRule>,
}

impl Lb {
    /// The service on `rt`; `default_subnet` as the network service places
    /// pods of unclaimed namespaces.
    pub async fn new(rt: &Arc<Runtime>, default_subnet: Option<String>) -> Result<Self> {
        let k = &rt.kinds;
        let (vpcs, subnets) = (k.all::<Vpc>(), k.all::<Subnet>());
        let (services, slices) = (k.all::<KubeService>(), k.all::<EndpointSlice>());
        let (vips, rules) = (k.all::<Vip>(), k.all::<SwitchLBRule>());
        let ctx = Arc::new(Ctx {
            rt: rt.clone(),
            vpcs: vpcs.store(),
            subnets: subnets.store(),
            services: services.store(),
            slices: slices.store(),
            vips: vips.store(),
            rules: rules.store(),
            // Shared with the other services: one watch of pods.
            pods: k.all::<k8s_openapi::api::core::v1::Pod>().store(),
            default_subnet,
            view: LbView::start(&rt.nb).await?,
        });
        Ok(Self {
            ctx,
            vpcs,
            subnets,
            services,
            slices,
            vips,
            rules,
        })
    }

    /// Removes what deleted Services and VPCs leave, as they go.
    async fn follow_deletions(&self) {
        let services = self.services.changes().filter_map(|c| async move {
            match c {
                Change::Deleted(s) => Some(Gone::Service(
                    s.namespace().unwrap_or_default(),
                    s.name_any(),
                )),
                Change::Applied(_) => None,
            }
        });
        let vpcs = self.vpcs.changes().filter_map(|c| async move {
            match c {
                Change::Deleted(v) => Some(Gone::Vpc(v.name_any())),
                Change::Applied(_) => None,
            }
        });
        // Several at a time: a namespace deleted with a thousand Services
        // should not wait for the garbage collection.
        let ctx = &self.ctx;
        futures::stream::select(services, vpcs)
            .take_until(ctx.shutting_down())
            .for_each_concurrent(DELETIONS_IN_FLIGHT, |g| async move {
                let res = match &g {
                    Gone::Service(ns, name) => service_lb::remove(ctx, ns, name).await.map(|_| ()),
                    Gone::Vpc(vpc) => group::remove(ctx, vpc).await,
                };
                if let Err(e) = res {
                    tracing::warn!(gone = ?g, error = %e, "removing load balancers failed; the garbage collection retries");
                }
            })
            .await;
    }

    /// Deletes groups of VPCs that are gone, now and every [`SWEEP`].
    async fn sweep(&self) {
        let ctx = &self.ctx;
        let mut tick = tokio::time::interval(SWEEP);
        let shutdown = ctx.shutting_down();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            vpcnet_runtime::kinds::wait_ready(&ctx.vpcs).await;
            let alive: BTreeSet<String> = ctx.vpcs.state().iter().map(|v| v.name_any()).collect();
            for g in ctx.view.groups() {
                let vpc = g.name.trim_start_matches(LB_GROUP_PREFIX);
                if !alive.contains(vpc)
                    && let Err(e) = group::remove(ctx, vpc).await
                {
                    tracing::warn!(group = %g.name, error = %e, "removing an orphaned group failed");
                }
            }
        }
    }
}

/// The addresses of Vips whose status carries the operator's seal, and how
/// many Vips claimed one without it (pure).
pub fn vip_claims(vips: &[Vip], key: &vpcnet_api::seal::SealKey) -> (Vec<Claim>, usize) {
    let mut out = Vec::new();
    let mut untrusted = 0;
    for vip in vips {
        if vip.status.as_ref().and_then(|s| s.v4ip.as_ref()).is_none() {
            continue;
        }
        let Some(ip) = vip_decide::sealed(key, vip) else {
            tracing::warn!(namespace = %vip.namespace().unwrap_or_default(), vip = %vip.name_any(), "Vip status has an address without the operator's seal; ignored");
            untrusted += 1;
            continue;
        };
        out.push(Claim {
            source: Source::Status,
            subnet: vip.spec.subnet.clone(),
            holder: vip_decide::holder(&vip.namespace().unwrap_or_default(), &vip.name_any()),
            ip,
        });
    }
    (out, untrusted)
}

#[derive(Debug)]
enum Gone {
    Service(String, String),
    Vpc(String),
}

#[async_trait::async_trait]
impl Service for Lb {
    fn name(&self) -> &'static str {
        "lb"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[LoadBalancer::TABLE]
    }

    fn owner_kinds(&self) -> &'static [&'static str] {
        OWNER_KINDS
    }

    fn holder_kinds(&self) -> &'static [&'static str] {
        &["vip"]
    }

    async fn rebuild(&self, rt: &Runtime, found: &mut Found) -> Result<()> {
        let vips = Api::<Vip>::all(rt.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let (claims, untrusted) = vip_claims(&vips, &rt.seal);
        found.claims.extend(claims);
        found.untrusted += untrusted;
        Ok(())
    }

    async fn orphaned_holders(&self, rt: &Runtime, holders: &[Holder]) -> Result<Vec<Holder>> {
        let alive: BTreeSet<Holder> = Api::<Vip>::all(rt.client.clone())
            .list_metadata(&ListParams::default())
            .await?
            .iter()
            .map(|v| vip_decide::holder(&v.namespace().unwrap_or_default(), &v.name_any()))
            .collect();
        Ok(holders
            .iter()
            .filter(|h| matches!(h, Holder::Vip { .. }) && !alive.contains(*h))
            .cloned()
            .collect())
    }

    async fn collect(&self, rt: &Runtime, owners: &BTreeMap<String, Ids>) -> Result<Vec<String>> {
        let mut alive: BTreeSet<String> = Api::<KubeService>::all(rt.client.clone())
            .list_metadata(&ListParams::default())
            .await?
            .iter()
            .map(|s| service_lb::owner(&s.namespace().unwrap_or_default(), &s.name_any()).id())
            .collect();
        alive.extend(
            Api::<SwitchLBRule>::all(rt.client.clone())
                .list_metadata(&ListParams::default())
                .await?
                .iter()
                .map(|r| crate::slr::owner(&r.namespace().unwrap_or_default(), &r.name_any()).id()),
        );
        let mut out = Vec::new();
        for id in owners.keys().filter(|o| !alive.contains(*o)) {
            let mut parts = id.splitn(3, '/');
            let (Some(kind), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            ovn::owner::delete_owned(&rt.nb, &ovn::Owner::new(kind, ns, name)).await?;
            out.push(id.clone());
        }
        Ok(out)
    }

    async fn run(self: Arc<Self>, _rt: Arc<Runtime>) {
        let ctx = self.ctx.clone();
        let q_svc = queue_of::<ServiceReconciler>(&ctx);
        let q_group = queue_of::<GroupReconciler>(&ctx);
        let q_vip = queue_of::<VipReconciler>(&ctx);
        let q_rule = queue_of::<SlrReconciler>(&ctx);
        let svc_ctl = Controller::for_shared_stream(
            q_svc.objects(self.services.objects()),
            self.services.store(),
        )
        .watches_shared_stream(
            self.slices.objects(),
            q_svc.mapper(watches::service_of_slice),
        )
        .watches_shared_stream(
            self.subnets.objects(),
            q_svc.mapper(watches::services_on_subnet(self.services.store())),
        );
        let group_ctl =
            Controller::for_shared_stream(q_group.objects(self.vpcs.objects()), self.vpcs.store())
                .watches_shared_stream(
                    self.subnets.objects(),
                    q_group.mapper(watches::vpc_of_subnet),
                );
        let vip_ctl =
            Controller::for_shared_stream(q_vip.objects(self.vips.objects()), self.vips.store())
                .watches_shared_stream(
                    self.subnets.objects(),
                    q_vip.mapper(watches::vips_on_subnet(self.vips.store())),
                );
        let rule_ctl =
            Controller::for_shared_stream(q_rule.objects(self.rules.objects()), self.rules.store())
                .watches_shared_stream(self.slices.objects(), q_rule.mapper(watches::rule_of_slice))
                .watches_shared_stream(
                    self.vips.objects(),
                    q_rule.mapper(watches::rules_of_vip(self.rules.store())),
                )
                .watches_shared_stream(
                    self.subnets.objects(),
                    q_rule.mapper(watches::rules_on_subnet(self.rules.store())),
                )
                .watches_shared_stream(
                    self.rules.objects(),
                    q_rule.mapper(watches::rules_on_same_vip(self.rules.store())),
                );
        tokio::join!(
            drive::<ServiceReconciler>(svc_ctl, ctx.clone()),
            drive::<SlrReconciler>(rule_ctl, ctx.clone()),
            drive::<VipReconciler>(vip_ctl, ctx.clone()),
            drive::<GroupReconciler>(group_ctl, ctx.clone()),
            self.follow_deletions(),
            self.sweep(),
        );
    }
}
