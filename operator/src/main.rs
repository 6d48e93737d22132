//! `vpcnet-operator`: the shared runtime with every service registered.
//! Adding a service is one line in `services` below.

mod args;

use std::sync::Arc;

use clap::Parser;
use vpcnet_dns_service::Dns;
use vpcnet_lb::Lb;
use vpcnet_nat::Nat;
use vpcnet_network::Network;
use vpcnet_nodes::Nodes;
use vpcnet_runtime::run::lead;
use vpcnet_runtime::{Result, Service, telemetry};
use vpcnet_security::Security;

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse();
    let telemetry = telemetry::init(args.otlp_endpoint.as_deref())?;
    let result = operate(args).await;
    // The last reconciles' spans, after the graceful shutdown.
    telemetry.shutdown().await;
    Ok(result?)
}

async fn operate(args: args::Args) -> Result<()> {
    let leading = lead(args.options()).await?;
    let rt = &leading.rt;
    let mut services: Vec<Arc<dyn Service>> = vec![
        Arc::new(Network::new(rt, args.default_network()).await?),
        Arc::new(Lb::new(rt, args.default_subnet()).await?),
        Arc::new(Security::new(rt).await?),
        Arc::new(Dns::new(rt, args.dns())),
        Arc::new(Nat::new(rt, args.nat())),
    ];
    if let Some(nodes) = args.nodes() {
        services.push(Arc::new(Nodes::new(rt, nodes)));
    }
    leading.run(services).await
}
