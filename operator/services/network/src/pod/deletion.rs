//! Pod deletion: release the address and remove the port, except for a
//! StatefulSet pod its StatefulSet will recreate (it keeps its address).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use vpcnet_runtime::kinds::Change;

use crate::names;
use crate::{Ctx as Context, Result};

/// Whether a deleted pod's address is kept for its StatefulSet.
pub async fn retained_by_statefulset(
    ctx: &Context,
    ns: &str,
    pod: &str,
    owner_sts: Option<&str>,
) -> Result<bool> {
    let Some(sts) = owner_sts else {
        return Ok(false);
    };
    let Some(ordinal) = pod
        .strip_prefix(&format!("{sts}-"))
        .and_then(|o| o.parse::<i32>().ok())
    else {
        return Ok(false);
    };
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    Ok(match api.get_opt(sts).await? {
        Some(s) if s.metadata.deletion_timestamp.is_none() => {
            ordinal < s.spec.and_then(|sp| sp.replicas).unwrap_or(1)
        }
        _ => false,
    })
}

/// The StatefulSet controlling `pod`, if any.
pub fn statefulset_of(pod: &Pod) -> Option<String> {
    pod.owner_references()
        .iter()
        .find(|o| o.kind == "StatefulSet" && o.controller == Some(true))
        .map(|o| o.name.clone())
}

/// Frees what a gone pod held, unless its StatefulSet keeps it.
pub async fn release(ctx: &Context, ns: &str, name: &str, sts: Option<&str>) -> Result<bool> {
    if retained_by_statefulset(ctx, ns, name, sts).await? {
        tracing::debug!(namespace = ns, pod = name, "address kept for StatefulSet");
        return Ok(false);
    }
    ovn::owner::delete_owned(&ctx.nb, &ovn::Owner::new("Pod", ns, name)).await?;
    ctx.ipam
        .lock()
        .await
        .release_everywhere(&names::pod_holder(ns, name));
    tracing::info!(namespace = ns, pod = name, "released address and port");
    Ok(true)
}

/// Follows pod deletions until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let stop = ctx.shutting_down();
    let mut events = ctx.pods.changes().boxed();
    let work = async {
        while let Some(ev) = events.next().await {
            let Change::Deleted(pod) = ev else {
                continue;
            };
            forget(&ctx, &pod).await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = stop => {}
    }
}

async fn forget(ctx: &Context, pod: &Pod) {
    ctx.notices.forget(&super::notice::key(pod));
    if super::is_host_network(pod) {
        return;
    }
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let sts = statefulset_of(pod);
    if let Err(e) = release(ctx, &ns, &name, sts.as_deref()).await {
        // The periodic garbage collection retries what failed here.
        tracing::warn!(namespace = %ns, pod = %name, error = %e, "releasing a deleted pod failed");
    }
}
