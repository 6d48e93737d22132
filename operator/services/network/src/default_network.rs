//! The default VPC and subnet for pods of namespaces no Subnet claims,
//! created once at start unless disabled.

use kube::api::{Api, PostParams};
use vpcnet_api::{Subnet, SubnetSpec, Vpc, VpcSpec};

pub use vpcnet_api::contract::{DEFAULT_SUBNET, DEFAULT_VPC};

use crate::Result;

/// Creates the default Vpc and Subnet if they do not exist. An existing
/// object is left as the admin shaped it.
pub async fn ensure(client: &kube::Client, cidr: &str, gateway: Option<&str>) -> Result<()> {
    let vpcs: Api<Vpc> = Api::all(client.clone());
    if vpcs.get_opt(DEFAULT_VPC).await?.is_none() {
        vpcs.create(
            &PostParams::default(),
            &Vpc::new(DEFAULT_VPC, VpcSpec::default()),
        )
        .await?;
        tracing::info!(vpc = DEFAULT_VPC, "created the default VPC");
    }
    let subnets: Api<Subnet> = Api::all(client.clone());
    if subnets.get_opt(DEFAULT_SUBNET).await?.is_none() {
        let spec = SubnetSpec {
            vpc: Some(DEFAULT_VPC.into()),
            cidr_block: cidr.into(),
            gateway: gateway.map(str::to_string),
            ..Default::default()
        };
        subnets
            .create(&PostParams::default(), &Subnet::new(DEFAULT_SUBNET, spec))
            .await?;
        tracing::info!(subnet = DEFAULT_SUBNET, cidr, "created the default subnet");
    }
    Ok(())
}
