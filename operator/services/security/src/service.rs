//! The security service as the runtime sees it: its kinds and watches, its
//! garbage, and its controllers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Controller;
use ovn::Table;
use ovn::nb::{Acl, PortGroup};
use tokio::sync::mpsc;
use vpcnet_api::{SecurityGroup, Subnet};
use vpcnet_runtime::driver::{drive, queue_of};
use vpcnet_runtime::kinds::{Change, Shared};
use vpcnet_runtime::rebuild::Found;
use vpcnet_runtime::service::{Ids, Service};
use vpcnet_runtime::{Result, Runtime};

use crate::base::{self, BaseReconciler};
use crate::group::{self, GroupReconciler};
use crate::member::MemberReconciler;
use crate::view::SgView;
use crate::{BASE_OWNER_KIND, Ctx, GROUP_OWNER_KIND, OWNER_KINDS, watches};

type Nudges<K> =
    std::sync::Mutex<Option<mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<K>>>>;

/// The security service.
pub struct Security {
    ctx: Arc<Ctx>,
    groups: Shared<SecurityGroup>,
    pods: Shared<Pod>,
    subnets: Shared<Subnet>,
    group_nudges: Nudges<SecurityGroup>,
    pod_nudges: Nudges<Pod>,
}

impl Security {
    /// The service on `rt`.
    pub async fn new(rt: &Arc<Runtime>) -> Result<Self> {
        let k = &rt.kinds;
        let (groups, pods, subnets) = (k.all::<SecurityGroup>(), k.all::<Pod>(), k.all::<Subnet>());
        let (group_tx, group_rx) = mpsc::unbounded_channel();
        let (pod_tx, pod_rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(Ctx {
            rt: rt.clone(),
            groups: groups.store(),
            pods: pods.store(),
            subnets: subnets.store(),
            view: SgView::start(&rt.nb).await?,
            group_nudge: group_tx,
            pod_nudge: pod_tx,
        });
        Ok(Self {
            ctx,
            groups,
            pods,
            subnets,
            group_nudges: std::sync::Mutex::new(Some(group_rx)),
            pod_nudges: std::sync::Mutex::new(Some(pod_rx)),
        })
    }

    /// Removes the base rows of deleted subnets as they go.
    async fn follow_deletions(&self) {
        let ctx = &self.ctx;
        self.subnets
            .changes()
            .filter_map(|c| async move {
                match c {
                    Change::Deleted(s) => Some(s.name_any()),
                    Change::Applied(_) => None,
                }
            })
            .take_until(ctx.shutting_down())
            .for_each(|name| async move {
                if let Err(e) = base::remove(ctx, &name).await {
                    tracing::warn!(subnet = %name, error = %e, "removing a base group failed; the garbage collection retries");
                }
            })
            .await;
    }
}

fn receiver<K>(
    n: &Nudges<K>,
) -> impl futures::Stream<Item = kube::runtime::reflector::ObjectRef<K>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Send + Sync + 'static,
{
    let rx = n.lock().expect("nudges").take();
    futures::stream::unfold(rx, |rx| async move {
        let mut rx = rx?;
        rx.recv().await.map(|r| (r, Some(rx)))
    })
}

#[async_trait::async_trait]
impl Service for Security {
    fn name(&self) -> &'static str {
        "security"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[PortGroup::TABLE, Acl::TABLE]
    }

    fn owner_kinds(&self) -> &'static [&'static str] {
        OWNER_KINDS
    }

    async fn rebuild(&self, _rt: &Runtime, _found: &mut Found) -> Result<()> {
        // Nothing allocated: groups hold no addresses.
        Ok(())
    }

    async fn collect(&self, rt: &Runtime, owners: &BTreeMap<String, Ids>) -> Result<Vec<String>> {
        let mut alive: BTreeSet<String> = Api::<SecurityGroup>::all(rt.client.clone())
            .list_metadata(&ListParams::default())
            .await?
            .iter()
            .map(|g| group::owner(&g.namespace().unwrap_or_default(), &g.name_any()).id())
            .collect();
        alive.extend(
            Api::<Subnet>::all(rt.client.clone())
                .list(&ListParams::default())
                .await?
                .iter()
                .filter(|s| base::gateway(s).is_some())
                .map(|s| base::owner(&s.name_any()).id()),
        );
        let mut out = Vec::new();
        for id in owners.keys().filter(|o| !alive.contains(*o)) {
            let mut parts = id.splitn(3, '/');
            let (Some(kind), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if kind != GROUP_OWNER_KIND && kind != BASE_OWNER_KIND {
                continue;
            }
            ovn::owner::delete_owned(&rt.nb, &ovn::Owner::new(kind, ns, name)).await?;
            out.push(id.clone());
        }
        Ok(out)
    }

    async fn run(self: Arc<Self>, _rt: Arc<Runtime>) {
        let ctx = self.ctx.clone();
        let q_group = queue_of::<GroupReconciler>(&ctx);
        let q_member = queue_of::<MemberReconciler>(&ctx);
        let q_base = queue_of::<BaseReconciler>(&ctx);
        let group_ctl = Controller::for_shared_stream(
            q_group.objects(self.groups.objects()),
            self.groups.store(),
        )
        .watches_shared_stream(
            self.groups.objects(),
            q_group.mapper(watches::groups_naming(self.groups.store())),
        )
        .reconcile_on(q_group.refs(receiver(&self.group_nudges)));
        let member_ctl =
            Controller::for_shared_stream(q_member.objects(self.pods.objects()), self.pods.store())
                .watches_shared_stream(
                    self.groups.objects(),
                    q_member.mapper(watches::pods_of_group(self.pods.store())),
                )
                .reconcile_on(q_member.refs(receiver(&self.pod_nudges)));
        let base_ctl = Controller::for_shared_stream(
            q_base.objects(self.subnets.objects()),
            self.subnets.store(),
        );
        tokio::join!(
            drive::<GroupReconciler>(group_ctl, ctx.clone()),
            drive::<MemberReconciler>(member_ctl, ctx.clone()),
            drive::<BaseReconciler>(base_ctl, ctx.clone()),
            self.follow_deletions(),
        );
    }
}
