//! The network service as the runtime sees it: its kinds, its tables, its
//! part of the address rebuild and of the garbage collection, and its
//! controllers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use ovn::Table;
use ovn::nb::{
    LogicalRouter, LogicalRouterPolicy, LogicalRouterPort, LogicalRouterStaticRoute, LogicalSwitch,
    LogicalSwitchPort,
};
use vpcnet_api::{Subnet, Vpc};
use vpcnet_runtime::driver::{drive, queue_of};
use vpcnet_runtime::rebuild::Found;
use vpcnet_runtime::service::{Ids, Service};
use vpcnet_runtime::{Runtime, gc};

use crate::pod::{PodReconciler, rebuild as pod_rebuild};
use crate::subnet::SubnetReconciler;
use crate::vpc::VpcReconciler;
use crate::{Ctx, Result, default_network, gc as net_gc, pod, subnet};

/// The default network to create (and use for pods of unclaimed namespaces).
#[derive(Clone, Debug)]
pub struct DefaultNetwork {
    /// Its CIDR.
    pub cidr: String,
    /// Its gateway (default: the first address).
    pub gateway: Option<String>,
}

/// The network service.
pub struct Network {
    ctx: Arc<Ctx>,
}

impl Network {
    /// The service on `rt`; creates the default VPC and subnet first unless
    /// `default` is `None`.
    pub async fn new(rt: &Arc<Runtime>, default: Option<DefaultNetwork>) -> Result<Self> {
        let default_subnet = match default {
            Some(d) => {
                default_network::ensure(&rt.client, &d.cidr, d.gateway.as_deref()).await?;
                Some(default_network::DEFAULT_SUBNET.to_string())
            }
            None => None,
        };
        Ok(Self {
            ctx: Arc::new(Ctx {
                rt: rt.clone(),
                vpcs: rt.kinds.all(),
                subnets: rt.kinds.all(),
                pods: rt.kinds.all(),
                default_subnet,
                notices: Default::default(),
            }),
        })
    }
}

#[async_trait::async_trait]
impl Service for Network {
    fn name(&self) -> &'static str {
        "network"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            LogicalRouter::TABLE,
            LogicalRouterPort::TABLE,
            LogicalRouterStaticRoute::TABLE,
            LogicalRouterPolicy::TABLE,
            LogicalSwitch::TABLE,
            LogicalSwitchPort::TABLE,
        ]
    }

    fn owner_kinds(&self) -> &'static [&'static str] {
        net_gc::OWNER_KINDS
    }

    async fn rebuild(&self, rt: &Runtime, found: &mut Found) -> Result<()> {
        let subnets: Vec<Arc<Subnet>> = Api::<Subnet>::all(rt.client.clone())
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(Arc::new)
            .collect();
        let pods = Api::<Pod>::all(rt.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let ports = gc::owned_rows(&rt.nb, pod::PORT_TABLE).await?;
        found.pools.extend(pod_rebuild::pools(&subnets));
        let (claims, untrusted) = pod_rebuild::claims(&pod_rebuild::Found {
            subnets: &subnets,
            pods: &pods,
            ports: &ports,
            trusted_namespace: &rt.namespace,
            default_subnet: self.ctx.default_subnet.as_deref(),
        });
        found.claims.extend(claims);
        found.untrusted += untrusted;
        Ok(())
    }

    async fn collect(&self, _rt: &Runtime, owners: &BTreeMap<String, Ids>) -> Result<Vec<String>> {
        net_gc::collect(&self.ctx, owners).await
    }

    async fn run(self: Arc<Self>, _rt: Arc<Runtime>) {
        let ctx = self.ctx.clone();
        let q_vpc = queue_of::<VpcReconciler>(&ctx);
        let q_subnet = queue_of::<SubnetReconciler>(&ctx);
        let vpc_ctl =
            Controller::for_shared_stream(q_vpc.objects(ctx.vpcs.objects()), ctx.vpcs.store())
                .watches_shared_stream(
                    ctx.subnets.objects(),
                    q_vpc.mapper(|s: Arc<Subnet>| Some(ObjectRef::<Vpc>::new(s.vpc_name()))),
                );
        let subnets = ctx.subnets.store();
        let subnet_ctl = Controller::for_shared_stream(
            q_subnet.objects(ctx.subnets.objects()),
            ctx.subnets.store(),
        )
        .watches_shared_stream(
            ctx.vpcs.objects(),
            q_subnet.mapper(move |v: Arc<Vpc>| {
                let name = v.name_any();
                subnets
                    .state()
                    .iter()
                    .filter(|s| s.vpc_name() == name)
                    .map(|s| ObjectRef::from(s.as_ref()))
                    .collect::<Vec<_>>()
            }),
        )
        .reconcile_on(q_subnet.refs(subnet::usage::changes(ctx.clone(), Duration::from_secs(1))));
        let pods = {
            let ctx = ctx.clone();
            async move {
                // Pods are placed by namespace binding: never before every
                // Subnet is known.
                ctx.subnets.ready().await;
                let q = queue_of::<PodReconciler>(&ctx);
                let pod_ctl =
                    Controller::for_shared_stream(q.objects(ctx.pods.objects()), ctx.pods.store());
                tokio::join!(
                    drive::<PodReconciler>(pod_ctl, ctx.clone()),
                    pod::deletion::run(ctx.clone())
                );
            }
        };
        let subnets = {
            let ctx = ctx.clone();
            async move {
                // Subnets are judged against VPCs: start them once every VPC is known.
                ctx.vpcs.ready().await;
                drive::<SubnetReconciler>(subnet_ctl, ctx).await
            }
        };
        tokio::join!(drive::<VpcReconciler>(vpc_ctl, ctx.clone()), subnets, pods);
    }
}
