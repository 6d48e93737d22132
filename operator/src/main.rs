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
use vpcnet_runtime::{Result, Service};
use vpcnet_security::Security;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Container logs are files: colour codes only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = args::Args::parse();
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
