//! The dns service as the runtime sees it: its kinds and watches, its
//! garbage, and its controller.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Controller;
use ovn::Table;
use ovn::nb::LoadBalancer;
use vpcnet_api::{Subnet, Vpc, VpcDns};
use vpcnet_runtime::driver::{drive, queue_of};
use vpcnet_runtime::kinds::Shared;
use vpcnet_runtime::rebuild::Found;
use vpcnet_runtime::service::{Ids, Service};
use vpcnet_runtime::{Result, Runtime};

use crate::reconcile::DnsReconciler;
use crate::{Ctx, OWNER_KIND, Settings, default_dns, rows, watches};

/// The dns service.
pub struct Dns {
    ctx: Arc<Ctx>,
    dnses: Shared<VpcDns>,
    subnets: Shared<Subnet>,
    namespaces: Shared<Namespace>,
    services: Shared<KubeService>,
    slices: Shared<EndpointSlice>,
    pods: Shared<Pod>,
    deployments: Shared<Deployment>,
}

impl Dns {
    /// The service on `rt`.
    pub fn new(rt: &Arc<Runtime>, settings: Settings) -> Self {
        let k = &rt.kinds;
        let dnses = k.all::<VpcDns>();
        let vpcs = k.all::<Vpc>();
        let subnets = k.all::<Subnet>();
        let namespaces = k.all::<Namespace>();
        let services = k.all::<KubeService>();
        let slices = k.all::<EndpointSlice>();
        // Shared with the other services: one watch of pods.
        let pods = k.all::<Pod>();
        let deployments = k.namespaced::<Deployment>(&rt.namespace);
        let ctx = Arc::new(Ctx {
            rt: rt.clone(),
            settings,
            dnses: dnses.store(),
            vpcs: vpcs.store(),
            subnets: subnets.store(),
            namespaces: namespaces.store(),
            services: services.store(),
            slices: slices.store(),
            pods: pods.store(),
            deployments: deployments.store(),
        });
        Self {
            ctx,
            dnses,
            subnets,
            namespaces,
            services,
            slices,
            pods,
            deployments,
        }
    }
}

#[async_trait::async_trait]
impl Service for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[LoadBalancer::TABLE]
    }

    fn owner_kinds(&self) -> &'static [&'static str] {
        &[OWNER_KIND]
    }

    async fn rebuild(&self, _rt: &Runtime, _found: &mut Found) -> Result<()> {
        // Nothing allocated: the servers' pods get their addresses as pods.
        Ok(())
    }

    async fn collect(&self, rt: &Runtime, owners: &BTreeMap<String, Ids>) -> Result<Vec<String>> {
        let alive: BTreeSet<String> = Api::<VpcDns>::all(rt.client.clone())
            .list_metadata(&ListParams::default())
            .await?
            .iter()
            .map(|d| rows::owner(&d.name_any()).id())
            .collect();
        let mut out = Vec::new();
        for id in owners.keys().filter(|o| !alive.contains(*o)) {
            let Some(name) = id
                .strip_prefix(OWNER_KIND)
                .and_then(|r| r.strip_prefix("//"))
            else {
                continue;
            };
            ovn::owner::delete_owned(&rt.nb, &rows::owner(name)).await?;
            out.push(id.clone());
        }
        Ok(out)
    }

    async fn run(self: Arc<Self>, rt: Arc<Runtime>) {
        let ctx = self.ctx.clone();
        if let (Some(subnet), Some(_)) = (&ctx.settings.default_subnet, ctx.settings.cluster_dns)
            && let Err(e) = default_dns::ensure(&rt.client, subnet).await
        {
            tracing::warn!(error = %e, "creating the default VpcDns failed; create it by hand or restart the operator");
        }
        let (dnses, subnets, default) = (
            self.dnses.store(),
            self.subnets.store(),
            ctx.settings.default_subnet.clone(),
        );
        let q = queue_of::<DnsReconciler>(&ctx);
        let ctl =
            Controller::for_shared_stream(q.objects(self.dnses.objects()), self.dnses.store())
                .watches_shared_stream(
                    self.dnses.objects(),
                    q.mapper(watches::every(self.dnses.store())),
                )
                .watches_shared_stream(
                    self.subnets.objects(),
                    q.mapper(watches::every(self.dnses.store())),
                )
                .watches_shared_stream(
                    self.namespaces.objects(),
                    q.mapper(watches::every(self.dnses.store())),
                )
                .watches_shared_stream(
                    self.services.objects(),
                    q.mapper(watches::by_namespace::<KubeService>(
                        dnses.clone(),
                        subnets.clone(),
                        default.clone(),
                    )),
                )
                .watches_shared_stream(
                    self.slices.objects(),
                    q.mapper(watches::by_namespace::<EndpointSlice>(
                        dnses, subnets, default,
                    )),
                )
                .watches_shared_stream(self.pods.objects(), q.mapper(watches::by_label))
                .watches_shared_stream(self.deployments.objects(), q.mapper(watches::by_label));
        drive::<DnsReconciler>(ctl, ctx).await;
    }
}
