//! `vpcnet-dns`: a VPC's DNS server (see the library docs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use vpcnet_api::contract::dns_env;
use vpcnet_dns::answer::Answerer;
use vpcnet_dns::forward::NetForwarder;
use vpcnet_dns::http;
use vpcnet_dns::metrics::Metrics;
use vpcnet_dns::server::{self, Handler};
use vpcnet_dns::watch::{self, ConfigMapRef};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A VPC's DNS server: answers for the VPC's namespaces, forwards the rest"
)]
struct Args {
    /// The zone ConfigMap, `<namespace>/<name>` (data key `zone.json`).
    #[arg(long, env = dns_env::ZONE, conflicts_with = "zone_file", required_unless_present = "zone_file")]
    zone: Option<ConfigMapRef>,
    /// Read the zone document from this file instead, reloading it when it
    /// changes (tests, debugging).
    #[arg(long)]
    zone_file: Option<PathBuf>,
    /// DNS address, UDP and TCP (port 0: any free port, printed on stdout).
    #[arg(long, env = dns_env::LISTEN, default_value = "0.0.0.0:53")]
    listen: SocketAddr,
    /// HTTP address of /metrics, /readyz and /healthz.
    #[arg(long, env = dns_env::METRICS, default_value = "0.0.0.0:9153")]
    metrics: SocketAddr,
    /// Milliseconds allowed to one upstream before the next is tried.
    #[arg(long, default_value_t = 1500)]
    upstream_timeout_ms: u64,
    /// Forwarded questions in flight at most; beyond, SERVFAIL at once.
    #[arg(long, default_value_t = vpcnet_dns::forward::DEFAULT_MAX_IN_FLIGHT)]
    max_forwards: usize,
    /// Answers the cache holds at most.
    #[arg(long, default_value_t = 10_000)]
    cache_size: usize,
    /// Seconds a cached answer lives at most.
    #[arg(long, default_value_t = 3600)]
    cache_max_ttl: u32,
    /// Largest UDP response, bytes (a larger answer is truncated).
    #[arg(long, default_value_t = server::DEFAULT_MAX_UDP_PAYLOAD)]
    max_udp_payload: u16,
    /// Milliseconds to keep answering after SIGTERM, not ready, while the
    /// load balancer stops sending queries here (the Deployment gives 10 s).
    #[arg(long, default_value_t = 5000)]
    lameduck_ms: u64,
    /// Milliseconds between checks of --zone-file.
    #[arg(long, default_value_t = 200)]
    zone_file_interval_ms: u64,
}

/// `vpcnet-dns probe [path] [port]`: asks this pod's own HTTP port for
/// `path` (default `/readyz`) and exits 0 on 200. The kubelet runs it as an
/// exec probe: it cannot reach a pod address inside a tenant VPC.
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
        let port = argv
            .get(3)
            .and_then(|p| p.parse().ok())
            .unwrap_or(vpcnet_api::contract::dns::METRICS_PORT);
        return Ok(probe(path, port));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            // hickory logs every request at info: only its warnings by default.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hickory_server=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    tokio::runtime::Runtime::new()?.block_on(run(args))?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let forwarder = NetForwarder::new(
        Duration::from_millis(args.upstream_timeout_ms),
        args.max_forwards,
        metrics.clone(),
    );
    let answerer = Arc::new(Answerer::new(
        forwarder,
        args.cache_size,
        args.cache_max_ttl,
        metrics.clone(),
    ));

    let (udp, tcp) = server::bind(args.listen).await?;
    let dns_addr = udp.local_addr()?;
    let http_listener = tokio::net::TcpListener::bind(args.metrics).await?;
    let http_addr = http_listener.local_addr()?;
    // One line for whoever started us with port 0 (tests, benchmarks).
    println!("vpcnet-dns: dns={dns_addr} metrics={http_addr}");
    tracing::info!(%dns_addr, %http_addr, "listening");

    let mut dns = server::server(
        Handler {
            answerer: answerer.clone(),
            metrics: metrics.clone(),
            max_udp_payload: args.max_udp_payload,
        },
        udp,
        tcp,
    );
    // The server's shutdown token ends the HTTP server too.
    let stop = dns.shutdown_token().clone();
    let a = answerer.clone();
    let draining = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(http::Shared {
        metrics: metrics.clone(),
        generation: Box::new(move || a.generation()),
        draining: draining.clone(),
    });
    let http_task = tokio::spawn(http::serve(http_listener, shared, stop.cancelled_owned()));

    let source = {
        let a = answerer.clone();
        match (args.zone, args.zone_file) {
            (_, Some(path)) => tokio::spawn(watch::file(
                path,
                Duration::from_millis(args.zone_file_interval_ms.max(10)),
                a,
            )),
            (Some(cm), None) => {
                let client = kube::Client::try_default().await?;
                tokio::spawn(watch::configmap(client, cm, a))
            }
            (None, None) => unreachable!("clap requires one"),
        }
    };

    // PID 1 of the container: without a handler SIGTERM is ignored and the
    // pod waits out its whole grace period.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let r = tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
        r = source => match r {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Err(anyhow::anyhow!("zone source ended")),
            Err(e) => Err(anyhow::anyhow!("zone source: {e}")),
        },
    };
    if let Ok(signal) = r {
        // Lame duck: /readyz fails so the pod leaves the load balancer,
        // while queries already on their way here are still answered.
        tracing::info!(lameduck_ms = args.lameduck_ms, "{signal}: draining");
        draining.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(args.lameduck_ms)).await;
    }
    // Stops accepting, lets the requests in flight finish.
    let drained = tokio::time::timeout(Duration::from_secs(5), dns.shutdown_gracefully()).await;
    if let Ok(Err(e)) = drained {
        tracing::warn!(%e, "dns shutdown");
    }
    let _ = http_task.await;
    r.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The variables the operator's Deployment sets are the ones read.
    #[test]
    fn reads_the_environment_the_operator_sets() {
        let read: Vec<String> = Args::command()
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        for want in [dns_env::ZONE, dns_env::LISTEN, dns_env::METRICS] {
            assert!(read.iter().any(|r| r == want), "{want} not read: {read:?}");
        }
    }

    #[test]
    fn zone_and_zone_file_exclude_each_other() {
        assert!(Args::try_parse_from(["x"]).is_err(), "one is required");
        assert!(Args::try_parse_from(["x", "--zone", "ns/cm", "--zone-file", "/f"]).is_err());
        let a = Args::try_parse_from(["x", "--zone", "ns/cm"]).unwrap();
        assert_eq!(a.zone.unwrap().name, "cm");
        assert_eq!(a.listen, "0.0.0.0:53".parse().unwrap());
        assert_eq!(a.metrics, "0.0.0.0:9153".parse().unwrap());
        assert!(Args::try_parse_from(["x", "--zone", "nocm"]).is_err());
    }
}
