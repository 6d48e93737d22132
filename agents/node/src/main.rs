//! `vpcnet-node`: the per-node agent (see the library docs for its job).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use vpcnet_node::flusher::{self, Config};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Flushes conntrack entries of UDP load-balancer backends that left"
)]
struct Args {
    /// The OVN Northbound database (`unix:<path>` or `tcp:<host>:<port>`).
    #[arg(long, env = "OVN_NB_DB")]
    nb: String,
    /// ovs-vswitchd's run directory (its pid file and control socket).
    #[arg(long, env = "OVS_RUNDIR", default_value = "/var/run/openvswitch")]
    ovs_rundir: PathBuf,
    /// Seconds between passes when nothing changes (repairs what a failed
    /// pass or a stopped agent left).
    #[arg(long, default_value_t = 60)]
    resync_secs: u64,
    /// Milliseconds to gather a burst of load-balancer changes into one pass.
    #[arg(long, default_value_t = 50)]
    debounce_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let nb = ovn::nb::connect(&args.nb).await?;
    let monitor = nb
        .monitor(ovn::nb::SCHEMA_NAME, vec![flusher::monitor_request()])
        .await?;
    tracing::info!(nb = %args.nb, rundir = %args.ovs_rundir.display(), "following UDP load balancers");
    let cfg = Config {
        ovs_rundir: args.ovs_rundir,
        resync: Duration::from_secs(args.resync_secs),
        debounce: Duration::from_millis(args.debounce_ms),
    };
    flusher::run(monitor, cfg, shutdown()).await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM (the kubelet) or Ctrl-C.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
