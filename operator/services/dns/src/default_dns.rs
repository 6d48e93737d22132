//! The default VPC's VpcDns, created by the operator (as the default subnet
//! is) so that the cluster has DNS out of the box. Created once when
//! missing; an existing one is never overwritten (an admin may tune it).

use kube::api::{Api, PostParams};
use vpcnet_api::contract::{DEFAULT_VPC, OPERATOR_MANAGER};
use vpcnet_api::{VpcDns, VpcDnsSpec};

use crate::Result;

/// The default VpcDns's name: the default VPC's.
pub const NAME: &str = DEFAULT_VPC;

/// The VpcDns serving the default VPC from `subnet` (pure).
pub fn desired(subnet: &str) -> VpcDns {
    VpcDns::new(
        NAME,
        VpcDnsSpec {
            vpc: DEFAULT_VPC.into(),
            subnet: subnet.into(),
            replicas: 2,
            ..Default::default()
        },
    )
}

/// Creates the default VpcDns unless a VpcDns of that name exists.
pub async fn ensure(client: &kube::Client, subnet: &str) -> Result<()> {
    let api: Api<VpcDns> = Api::all(client.clone());
    if api.get_opt(NAME).await?.is_some() {
        return Ok(());
    }
    let pp = PostParams {
        field_manager: Some(OPERATOR_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&pp, &desired(subnet)).await {
        Ok(_) => {
            tracing::info!(name = NAME, subnet, "created the default VPC's VpcDns");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
