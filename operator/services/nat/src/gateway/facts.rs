//! Dereference: what a gateway names, read once at the start of its
//! reconcile. The caches serve what they can; the NetworkAttachmentDefinition
//! and the API server's endpoints are asked of the API server.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use vpcnet_api::{Subnet, Vpc, VpcNatGateway};

use crate::{Ctx, Result};

/// What a gateway's validation is judged against.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The gateway's VPC, if it exists.
    pub vpc: Option<Arc<Vpc>>,
    /// Every Subnet.
    pub subnets: Vec<Arc<Subnet>>,
    /// The external subnet the gateway attaches to (its first, else the
    /// cluster's default).
    pub external_subnet: String,
    /// Whether the NetworkAttachmentDefinition named by the external
    /// subnet's provider exists (`None`: the subnet or its provider is missing).
    pub nad_exists: Option<bool>,
    /// Its CNI configuration, when it exists.
    pub nad_config: Option<String>,
    /// The API server's real address and port.
    pub api_endpoint: Option<(String, i32)>,
}

/// `(namespace, name)` of the NetworkAttachmentDefinition a provider
/// (`name.namespace`) names.
pub fn nad_of(provider: &str) -> (String, String) {
    provider
        .split_once('.')
        .map(|(name, ns)| (ns.to_string(), name.to_string()))
        .unwrap_or_default()
}

/// Reads what `gw` names.
pub async fn dereference(gw: &VpcNatGateway, ctx: &Ctx) -> Result<Facts> {
    let subnets = ctx.subnets.state();
    let external_subnet = super::external_subnet(gw, &ctx.external_subnet);
    let provider = subnets
        .iter()
        .find(|s| s.name_any() == external_subnet)
        .and_then(|s| s.spec.provider.clone());
    let nad = match provider {
        Some(p) => Some(nad_get(&ctx.client, &nad_of(&p)).await?),
        None => None,
    };
    let nad_exists = nad.as_ref().map(Option::is_some);
    let nad_config = nad.flatten().and_then(|n| {
        n.data
            .get("spec")
            .and_then(|s| s.get("config"))
            .and_then(|c| c.as_str())
            .map(str::to_string)
    });
    Ok(Facts {
        vpc: ctx
            .vpcs
            .state()
            .into_iter()
            .find(|v| v.name_any() == gw.spec.vpc),
        subnets,
        external_subnet,
        nad_exists,
        nad_config,
        api_endpoint: vpcnet_runtime::api_server::endpoint(&ctx.client).await?,
    })
}

async fn nad_get(
    client: &kube::Client,
    (ns, name): &(String, String),
) -> Result<Option<DynamicObject>> {
    let gvk = GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    let nads: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions"),
    );
    match nads.get_opt(name).await {
        Ok(found) => Ok(found),
        // No such CRD (Multus missing) reads as "no such attachment".
        Err(kube::Error::Api(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
