//! `vpcnet-natgw`: the agent inside a NAT gateway pod.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ipnet::Ipv4Net;
use vpcnet_api::contract::agent_env;
use vpcnet_natgw::apply::{ApplyConfig, Worker};
use vpcnet_natgw::desired::{Inputs, desired};
use vpcnet_natgw::http::{self, Shared};
use vpcnet_natgw::{drift, k8s};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Programs a VpcNatGateway's EIPs and SNAT/DNAT/FIP rules"
)]
struct Args {
    /// The VpcNatGateway this pod serves.
    #[arg(long, env = agent_env::GATEWAY)]
    gateway: String,
    /// iptables flavour: iptables, iptables-nft or iptables-legacy
    /// (`-restore` and `-save` are appended).
    #[arg(long, env = "VPCNET_IPTABLES", default_value = "iptables")]
    iptables: String,
    /// Interface inside the VPC.
    #[arg(long, default_value = "eth0")]
    lan_iface: String,
    /// Interface on the external network; EIPs are added here.
    #[arg(long, default_value = "net1")]
    ext_iface: String,
    /// SNAT `--random-fully`: auto (probe once), on or off.
    #[arg(long, default_value = "auto")]
    random_fully: String,
    /// The VPC's subnets (repeatable or comma-separated): hairpin source
    /// ranges and routes via the LAN leg; default: the LAN interface's subnet.
    #[arg(long = "vpc-cidr", env = agent_env::VPC_CIDRS, value_delimiter = ',')]
    vpc_cidrs: Vec<Ipv4Net>,
    /// The VPC router's address on the LAN subnet (routes to the VPC's other subnets).
    #[arg(long, env = agent_env::LAN_GATEWAY)]
    lan_gateway: Option<std::net::Ipv4Addr>,
    /// The external network's gateway: the pod's default route via the external leg.
    /// Empty means none (the operator passes "" when the subnet has no gateway).
    #[arg(long, env = agent_env::EXTERNAL_GATEWAY)]
    external_gateway: Option<String>,
    /// HTTP address for /healthz, /readyz and /metrics. Loopback by default:
    /// the kubelet probes by exec inside the pod, metrics are read through
    /// `kubectl port-forward`; on any other address the agent would answer
    /// on every EIP and on the VPC's LAN.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The operator's seal key (`vpcnet_api::seal`): only objects whose
    /// status carries a seal made with it are programmed.
    #[arg(long, env = agent_env::SEAL_KEY, hide_env_values = true)]
    seal_key: String,
    /// Seconds between drift checks.
    #[arg(long, default_value_t = 5.0)]
    drift_interval: f64,
    /// Milliseconds to gather a burst of changes into one apply.
    #[arg(long, default_value_t = 50)]
    debounce_ms: u64,
    /// Do the network work inside /var/run/netns/<name> (tests, development).
    #[arg(long)]
    netns: Option<String>,
    /// Take the objects from this JSON file (`{"eips":[..],"snats":[..],
    /// "dnats":[..],"fips":[..]}`) instead of the API.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// With --state-file: apply once, print the per-object results, exit.
    #[arg(long, requires = "state_file")]
    once: bool,
    /// ConfigMap (in --namespace) that keeps the last applied state, so a
    /// recreated pod restores its rules before listing the API.
    #[arg(long, env = agent_env::SNAPSHOT_CONFIGMAP)]
    snapshot_configmap: Option<String>,
    /// Namespace of the gateway pod (and of its snapshot ConfigMap).
    #[arg(long, env = agent_env::POD_NAMESPACE)]
    namespace: Option<String>,
    /// Skip setting net.ipv4.ip_forward=1.
    #[arg(long)]
    no_ip_forward: bool,
    /// Two replicas: the shared LAN address (`ip/prefix`) the active holds.
    #[arg(long, env = agent_env::LAN_VIP)]
    lan_vip: Option<ipnet::Ipv4Net>,
    /// Two replicas: the Lease (in --namespace) that decides which is active.
    #[arg(long, env = agent_env::LEASE, requires = "lan_vip")]
    lease: Option<String>,
    /// Two replicas: the Lease duration in milliseconds.
    #[arg(long, env = agent_env::LEASE_DURATION_MS, default_value_t = 1500)]
    lease_duration_ms: u64,
    /// Two replicas: each replica's own external address, by ordinal.
    #[arg(long, env = agent_env::EXTERNAL_IPS, value_delimiter = ',')]
    external_ips: Vec<ipnet::Ipv4Net>,
    /// This pod's name (the Lease holder identity).
    #[arg(long, env = agent_env::POD_NAME)]
    pod_name: Option<String>,
}

/// An address, or nothing for an empty value (the operator passes "" when
/// the external subnet has no gateway).
fn parse_optional_ip(s: &str) -> Result<Option<std::net::Ipv4Addr>, String> {
    if s.trim().is_empty() {
        Ok(None)
    } else {
        s.trim().parse().map(Some).map_err(|e| format!("{s}: {e}"))
    }
}

/// `vpcnet-natgw probe <path>`: asks the agent in this pod for `<path>` on
/// its own HTTP port, prints the answer and exits 0 on 200 (also how
/// `/role` and `/handover` are reached from outside the pod). The kubelet runs it as an exec
/// probe, since it cannot reach addresses inside a tenant VPC.
fn probe(path: &str, port: u16) -> std::process::ExitCode {
    use std::io::{Read, Write};
    let answer = (|| -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            Duration::from_secs(2),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })();
    match answer {
        Ok(a) if a.starts_with("HTTP/1.0 200") || a.starts_with("HTTP/1.1 200") => {
            // The body, for paths that answer something (`/role`).
            if let Some((_, body)) = a.split_once("\r\n\r\n") {
                println!("{}", body.trim());
            }
            std::process::ExitCode::SUCCESS
        }
        Ok(a) => {
            eprintln!("{}", a.lines().next().unwrap_or("no answer"));
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("probe") {
        let path = argv.get(2).map(String::as_str).unwrap_or("/readyz");
        let port = argv.get(3).and_then(|p| p.parse().ok()).unwrap_or(8080);
        return Ok(probe(path, port));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Container logs are files: colour codes only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let seal_key = vpcnet_api::seal::SealKey::new(args.seal_key.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", agent_env::SEAL_KEY))?;
    let ha_timing = vpcnet_natgw::ha::elector::Timing::from_duration(Duration::from_millis(
        args.lease_duration_ms.max(100),
    ));
    let ha = args.lan_vip.is_some() && args.lease.is_some();
    let cfg = ApplyConfig {
        iptables: args.iptables.clone(),
        lan_iface: args.lan_iface.clone(),
        ext_iface: args.ext_iface.clone(),
        random_fully: args.random_fully.clone(),
        vpc_cidrs: args.vpc_cidrs.clone(),
        ip_forward: !args.no_ip_forward,
        lan_vip: args.lan_vip.filter(|_| ha).map(|v| v.addr()),
        addr_lifetime: ha.then(|| ha_timing.addr_lifetime_secs()),
    };
    let worker = Arc::new(Worker::spawn(args.netns.clone(), cfg).map_err(anyhow::Error::msg)?);
    if ha {
        // Its own external address: one pod template serves both replicas,
        // so net1 comes without one.
        let ordinal = args
            .pod_name
            .as_deref()
            .and_then(|p| p.rsplit_once('-'))
            .and_then(|(_, o)| o.parse::<usize>().ok());
        if let Some(own) = ordinal.and_then(|o| args.external_ips.get(o).copied()) {
            let ext = args.ext_iface.clone();
            let added = worker
                .call_blocking(move |a| {
                    a.netlink(async |h| vpcnet_natgw::addrs::ensure_primary(h, &ext, own).await)
                })
                .map_err(|e| anyhow::anyhow!("{}: {e}", args.ext_iface))?;
            if added {
                tracing::info!(%own, "own external address added");
            }
        }
        // Addresses an agent of this pod left before it died: this one
        // starts as the standby.
        let rep = worker.call_blocking(|a| a.set_role(false));
        tracing::info!(removed = ?rep.removed, "two replicas: starting as the standby");
    }
    let gw = args.gateway.clone();
    let facts = worker
        .call_blocking(move |a| a.facts(&gw))
        .map_err(anyhow::Error::msg)?;
    tracing::info!(?facts, "gateway facts");
    let plan = vpcnet_natgw::routes::Plan {
        external_gateway: match args.external_gateway.as_deref() {
            Some(g) => parse_optional_ip(g).map_err(anyhow::Error::msg)?,
            None => None,
        },
        ext_iface: args.ext_iface.clone(),
        lan_gateway: args.lan_gateway,
        lan_iface: args.lan_iface.clone(),
        vpc_cidrs: args.vpc_cidrs.clone(),
    };
    let lan_net = plan
        .vpc_cidrs
        .iter()
        .copied()
        .find(|c| c.contains(&facts.lan_ip));
    worker
        .call_blocking(move |_| vpcnet_natgw::routes::ensure(&plan, lan_net))
        .map_err(anyhow::Error::msg)?;
    for w in worker.call_blocking(|a| a.announce_external_leg()) {
        tracing::warn!("{w}");
    }

    if args.once {
        let path = args.state_file.as_ref().expect("clap requires it");
        let inputs: Inputs = serde_json::from_slice(&std::fs::read(path)?)?;
        let st = desired(Some(facts), &args.gateway, &inputs, &seal_key);
        let st2 = st.clone();
        let rep = worker.call_blocking(move |a| a.apply(&st2, false));
        let mut out = serde_json::Map::new();
        let mut ok = rep.error.is_none();
        for (k, r) in &rep.results {
            ok &= r.is_ok();
            out.insert(
                k.to_string(),
                match r {
                    Ok(()) => serde_json::json!({"programmed": true}),
                    Err(e) => serde_json::json!({"programmed": false, "reason": "ApplyFailed", "message": e}),
                },
            );
        }
        for (k, s) in &st.skipped {
            out.insert(
                k.to_string(),
                serde_json::json!({"programmed": false, "reason": s.reason, "message": s.message}),
            );
        }
        println!("{}", serde_json::Value::Object(out));
        std::process::exit(if ok { 0 } else { 1 });
    }

    let rt = tokio::runtime::Runtime::new()?;
    let ha_slot: Arc<std::sync::OnceLock<(kube::Client, vpcnet_natgw::ha::HaConfig)>> =
        Arc::default();
    let on_term = (ha_slot.clone(), worker.clone());
    let agent = async move {
        let shared = Arc::new(Shared::default());
        let _ = shared.worker.set(worker.clone());
        let listen = args.listen;
        let s = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = http::serve(listen, s).await {
                tracing::error!("http on {listen}: {e}");
            }
        });
        // Drift repair.
        let (w, s) = (worker.clone(), shared.clone());
        let every = Duration::from_secs_f64(args.drift_interval.max(0.1));
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                t.tick().await;
                match w.call(drift::check).await {
                    Ok(r) if r.repaired_rules || !r.readded_addrs.is_empty() => {
                        tracing::info!(?r, "drift repaired");
                        s.metrics.drift_repairs.inc();
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("drift check: {e}"),
                }
            }
        });
        if let Some(path) = &args.state_file {
            let inputs: Inputs = serde_json::from_slice(&std::fs::read(path)?)?;
            let st = desired(Some(facts.clone()), &args.gateway, &inputs, &seal_key);
            let rep = worker.call(move |a| a.apply(&st, false)).await;
            if rep.error.is_none() {
                shared
                    .ready
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            shared.metrics.applies.inc();
            tracing::info!(results = ?rep.results, error = ?rep.error, "applied state file");
            std::future::pending::<()>().await;
        }
        let client = kube::Client::try_default().await?;
        if ha {
            let cfg = vpcnet_natgw::ha::HaConfig {
                namespace: args.namespace.clone().unwrap_or_default(),
                lease: args.lease.clone().unwrap_or_default(),
                me: args.pod_name.clone().unwrap_or_default(),
                peer: args.pod_name.as_deref().and_then(vpcnet_natgw::ha::peer_of),
                duration: ha_timing.duration,
                lan_iface: args.lan_iface.clone(),
                lan_ip: facts.lan_ip,
                iptables: args.iptables.clone(),
            };
            let _ = ha_slot.set((client.clone(), cfg.clone()));
            tokio::spawn(vpcnet_natgw::ha::run(
                client.clone(),
                cfg,
                worker.clone(),
                shared.clone(),
            ));
        }
        let snapshots = match (&args.snapshot_configmap, &args.namespace) {
            (Some(name), Some(ns)) if !name.is_empty() => {
                Some(vpcnet_natgw::snapshot_store::SnapshotStore::new(
                    client.clone(),
                    ns,
                    name,
                    &args.gateway,
                ))
            }
            _ => None,
        };
        k8s::run(
            client,
            k8s::Serving {
                gateway: args.gateway.clone(),
                seal_key,
            },
            facts,
            worker,
            shared,
            Duration::from_millis(args.debounce_ms),
            snapshots,
        )
        .await
    };
    rt.block_on(async move {
        // PID 1 of the container: without a handler SIGTERM is ignored and
        // a replaced gateway waits out the whole grace period. The rules
        // need no teardown: they go with the pod's network namespace.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = agent => r,
            _ = term.recv() => {
                tracing::info!("SIGTERM: exiting");
                if let Some((client, cfg)) = on_term.0.get() {
                    vpcnet_natgw::ha::shut_down(client.clone(), cfg, &on_term.1).await;
                }
                Ok(())
            }
        }
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every variable the operator's StatefulSet sets for the agent is one
    /// the agent reads (`POD_NAME` aside: the agent has no use for it).
    #[test]
    fn reads_the_environment_the_operator_sets() {
        let cmd = Args::command();
        let read: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        for want in [
            agent_env::GATEWAY,
            agent_env::LAN_GATEWAY,
            agent_env::VPC_CIDRS,
            agent_env::EXTERNAL_GATEWAY,
            agent_env::SNAPSHOT_CONFIGMAP,
            agent_env::SEAL_KEY,
            agent_env::POD_NAMESPACE,
        ] {
            assert!(read.iter().any(|r| r == want), "{want} not read: {read:?}");
        }
    }
}
