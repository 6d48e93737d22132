//! Where the API server really is: workloads inside a VPC cannot use the
//! `kubernetes` Service's address (no VPC translates it to the host), so
//! the operator hands them the address behind it.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};

/// The first address and port of the `default/kubernetes` Service's endpoints.
pub async fn endpoint(client: &kube::Client) -> kube::Result<Option<(String, i32)>> {
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
        .await?;
    Ok(slices.items.iter().find_map(|s| {
        let addr = s.endpoints.first()?.addresses.first()?.clone();
        let port = s.ports.as_ref()?.first()?.port?;
        Some((addr, port))
    }))
}
