//! The nodes service as the runtime sees it: no OVN rows, no addresses;
//! one loop that keeps the CNI DaemonSet as desired.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use vpcnet_api::contract::OPERATOR_MANAGER;
use vpcnet_runtime::kinds::Shared;
use vpcnet_runtime::rebuild::Found;
use vpcnet_runtime::service::{Ids, Service};
use vpcnet_runtime::{Result, Runtime};

use crate::daemonset::{self, NAME, Settings};

/// How often the DaemonSet is re-applied even when no change was seen.
const RESYNC: Duration = Duration::from_secs(60);
/// Changes within this window are one re-apply.
const GATHER: Duration = Duration::from_millis(500);

/// The nodes service.
pub struct Nodes {
    settings: Settings,
    daemonsets: Shared<DaemonSet>,
}

impl Nodes {
    /// The service on `rt`.
    pub fn new(rt: &Arc<Runtime>, settings: Settings) -> Self {
        Self {
            settings,
            daemonsets: rt.kinds.namespaced::<DaemonSet>(&rt.namespace),
        }
    }
}

/// Applies the DaemonSet (server-side, taking back any field someone else
/// changed).
async fn apply(rt: &Runtime, settings: &Settings) -> kube::Result<()> {
    let api: Api<DaemonSet> = Api::namespaced(rt.client.clone(), &rt.namespace);
    let mut body = serde_json::to_value(daemonset::build(settings, &rt.namespace))
        .map_err(kube::Error::SerdeError)?;
    body["apiVersion"] = "apps/v1".into();
    body["kind"] = "DaemonSet".into();
    api.patch(
        NAME,
        &PatchParams::apply(OPERATOR_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Service for Nodes {
    fn name(&self) -> &'static str {
        "nodes"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn owner_kinds(&self) -> &'static [&'static str] {
        &[]
    }

    async fn rebuild(&self, _rt: &Runtime, _found: &mut Found) -> Result<()> {
        Ok(())
    }

    async fn collect(&self, _rt: &Runtime, _owners: &BTreeMap<String, Ids>) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    async fn run(self: Arc<Self>, rt: Arc<Runtime>) {
        let mut changes = self
            .daemonsets
            .changes()
            .filter(|c| futures::future::ready(c.object().name_any() == NAME))
            .boxed();
        let mut shutdown = rt.shutting_down();
        let mut failing = false;
        loop {
            match apply(&rt, &self.settings).await {
                Ok(()) if failing => {
                    tracing::info!(daemonset = NAME, "CNI DaemonSet applied again");
                    failing = false;
                }
                Ok(()) => tracing::debug!(daemonset = NAME, "CNI DaemonSet applied"),
                Err(e) => {
                    tracing::error!(daemonset = NAME, error = %e, "applying the CNI DaemonSet failed; retrying");
                    failing = true;
                }
            }
            let wait = if failing {
                Duration::from_secs(5)
            } else {
                RESYNC
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
                c = changes.next() => {
                    if c.is_none() {
                        return;
                    }
                    // A burst of status updates is one re-apply.
                    tokio::time::sleep(GATHER).await;
                }
            }
        }
    }
}
