//! `vpcnet-operator`: runs the Vpc, Subnet and Pod reconcilers against the
//! cluster and an OVN Northbound DB.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::Mutex;
use vpcnet_api::{
    IptablesDnatRule, IptablesEIP, IptablesFIPRule, IptablesSnatRule, Subnet, Vpc, VpcNatGateway,
};
use vpcnet_operator::context::{NatStores, wait_ready};
use vpcnet_operator::ipam::Ipam;
use vpcnet_operator::metrics::Metrics;
use vpcnet_operator::nat::{eip as nat_eip, gateway, rules};
use vpcnet_operator::ovn_view::OvnView;
use vpcnet_operator::{Context, Error, default_network, gc, leader, pod, subnet, vpc};

#[derive(Parser, Debug)]
#[command(version, about = "vpcnet operator: tenant VPCs on OVN")]
struct Args {
    /// OVN Northbound DB (`unix:/path` or `tcp:host:port`).
    #[arg(
        long,
        env = "OVN_NB_DB",
        default_value = "unix:/var/run/ovn/ovnnb_db.sock"
    )]
    ovn_nb: String,
    /// CIDR of the default subnet for pods of unclaimed namespaces.
    #[arg(long, env = "VPCNET_DEFAULT_CIDR", default_value = "10.16.0.0/16")]
    default_cidr: String,
    /// Gateway of the default subnet (default: its first address).
    #[arg(long, env = "VPCNET_DEFAULT_GATEWAY")]
    default_gateway: Option<String>,
    /// Do not create or use a default VPC and subnet.
    #[arg(long, env = "VPCNET_NO_DEFAULT_NETWORK")]
    no_default_network: bool,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "VPCNET_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: String,
    /// The operator's namespace; NAT gateway workloads run here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "vpcnet-system")]
    namespace: String,
    /// Image of the NAT gateway agent.
    #[arg(
        long,
        env = "VPCNET_NATGW_IMAGE",
        default_value = "docker.io/local/vpcnet-natgw:latest"
    )]
    natgw_image: String,
    /// Pull policy of the NAT gateway agent image.
    #[arg(long, env = "VPCNET_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    image_pull_policy: String,
    /// External subnet for gateways that name none.
    #[arg(
        long,
        env = "VPCNET_EXTERNAL_SUBNET",
        default_value = "ovn-vpc-external-network"
    )]
    external_subnet: String,
    /// This operator's name in the leader Lease (the pod's name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a leader's Lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Seconds between garbage collections of orphaned OVN rows.
    #[arg(long, default_value_t = 60)]
    gc_interval: u64,
}

fn error_policy<K>(kind: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |_obj, err, ctx| {
        tracing::warn!(kind, error = %err, "reconcile failed; retrying");
        ctx.metrics.failed(kind, err);
        Action::requeue(Duration::from_secs(
            if matches!(err, Error::Dependency(_)) {
                2
            } else {
                5
            },
        ))
    }
}

#[tokio::main]
async fn main() -> anyhow_free::Result {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Container logs are files: colour codes only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();
    let client = kube::Client::try_default().await?;
    // Served while waiting for the lease too: a standby is alive, not ready.
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(vpcnet_operator::metrics::serve(
        args.metrics_addr.clone(),
        metrics.clone(),
        ready.clone(),
    ));
    // Nothing is read into memory or written before this process leads.
    let candidate = || {
        leader::Candidate::new(
            Api::namespaced(client.clone(), &args.namespace),
            leader::LEASE_NAME,
            &args.identity.clone().unwrap_or_else(fallback_identity),
            Duration::from_secs(args.lease_seconds),
        )
    };
    let mut lease = candidate();
    lease.acquire().await;
    // Renewed from now on, also while the state is rebuilt below.
    let holding = tokio::spawn(async move {
        let lost = lease.hold().await;
        // Another operator may be reconciling now: stop at once rather than
        // allocate beside it. The restart waits for the lease.
        tracing::error!(reason = %lost, "no longer leading; exiting");
        std::process::exit(1);
    });
    let seal = vpcnet_operator::seal_key::ensure(&client, &args.namespace).await?;
    let nb = ovn::Client::connect(&args.ovn_nb).await?;
    nb.check_schema(ovn::nb::schema()).await?;
    let ovn = OvnView::start(&nb).await?;

    let default_subnet = if args.no_default_network {
        None
    } else {
        default_network::ensure(&client, &args.default_cidr, args.default_gateway.as_deref())
            .await?;
        Some(default_network::DEFAULT_SUBNET.to_string())
    };

    let vpc_api: Api<Vpc> = Api::all(client.clone());
    let subnet_api: Api<Subnet> = Api::all(client.clone());
    let pod_api: Api<Pod> = Api::all(client.clone());
    let vpc_ctl = Controller::new(vpc_api.clone(), watcher::Config::default());
    let subnet_ctl = Controller::new(subnet_api.clone(), watcher::Config::default());
    let vpcs = vpc_ctl.store();
    let subnets = subnet_ctl.store();
    let gw_api: Api<VpcNatGateway> = Api::all(client.clone());
    let gw_ctl = Controller::new(gw_api.clone(), watcher::Config::default());
    let gateways = gw_ctl.store();
    let eip_api: Api<IptablesEIP> = Api::all(client.clone());
    let eip_ctl = Controller::new(eip_api.clone(), watcher::Config::default());
    let snat_ctl = Controller::new(
        Api::<IptablesSnatRule>::all(client.clone()),
        watcher::Config::default(),
    );
    let dnat_ctl = Controller::new(
        Api::<IptablesDnatRule>::all(client.clone()),
        watcher::Config::default(),
    );
    let fip_ctl = Controller::new(
        Api::<IptablesFIPRule>::all(client.clone()),
        watcher::Config::default(),
    );
    let nat = NatStores {
        eips: eip_ctl.store(),
        snats: snat_ctl.store(),
        dnats: dnat_ctl.store(),
        fips: fip_ctl.store(),
    };

    let ctx = Arc::new(Context {
        recorder: Context::recorder(&client),
        client: client.clone(),
        nb,
        ovn,
        ipam: Mutex::new(Ipam::default()),
        vpcs: vpcs.clone(),
        subnets: subnets.clone(),
        metrics: metrics.clone(),
        gateways: gateways.clone(),
        default_subnet,
        namespace: args.namespace.clone(),
        natgw_image: args.natgw_image.clone(),
        image_pull_policy: args.image_pull_policy.clone(),
        external_subnet: args.external_subnet.clone(),
        nat,
        fairness: Default::default(),
        seal,
    });

    // Addresses and orphans first: no allocation before the state is known.
    let rebuilt = pod::rebuild::rebuild(&ctx).await?;
    tracing::info!(?rebuilt, "address state rebuilt");
    let collected = gc::collect(&ctx).await?;
    tracing::info!(
        owners = collected.owners.len(),
        "startup garbage collection done"
    );

    let vpc_ctl = vpc_ctl
        .watches(
            subnet_api.clone(),
            watcher::Config::default(),
            |s: Subnet| Some(ObjectRef::<Vpc>::new(subnet::vpc_of(&s))),
        )
        .watches(
            gw_api.clone(),
            watcher::Config::default(),
            |g: VpcNatGateway| Some(ObjectRef::<Vpc>::new(&g.spec.vpc)),
        )
        .run(vpc::reconcile, error_policy::<Vpc>("Vpc"), ctx.clone())
        .for_each(|_| async {});
    let subnet_ctl = subnet_ctl
        .watches(vpc_api, watcher::Config::default(), {
            let subnets = subnets.clone();
            move |v: Vpc| {
                let name = kube::ResourceExt::name_any(&v);
                subnets
                    .state()
                    .iter()
                    .filter(|s| subnet::vpc_of(s) == name)
                    .map(|s| ObjectRef::from(s.as_ref()))
                    .collect::<Vec<_>>()
            }
        })
        .reconcile_on(subnet::usage::changes(ctx.clone(), Duration::from_secs(1)))
        .run(
            subnet::reconcile,
            error_policy::<Subnet>("Subnet"),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let gw_ctl = gw_ctl
        .owns(
            Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(
                client.clone(),
                &args.namespace,
            ),
            watcher::Config::default(),
        )
        .watches(
            Api::<Pod>::namespaced(client.clone(), &args.namespace),
            watcher::Config::default().labels("app.kubernetes.io/name=vpcnet-natgw"),
            |p: Pod| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("vpcnet.io/nat-gateway"))
                    .map(|g| ObjectRef::<VpcNatGateway>::new(g))
            },
        )
        .watches(subnet_api.clone(), watcher::Config::default(), {
            let gateways = gateways.clone();
            move |s: Subnet| {
                gateways
                    .state()
                    .iter()
                    .filter(|g| gateway::uses_subnet(g, &s))
                    .map(|g| ObjectRef::from(g.as_ref()))
                    .collect::<Vec<_>>()
            }
        })
        .run(
            gateway::reconcile,
            error_policy::<VpcNatGateway>("VpcNatGateway"),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let eip_ctl = eip_ctl
        .watches(
            Api::<IptablesSnatRule>::all(client.clone()),
            watcher::Config::default(),
            |r: IptablesSnatRule| eip_ref(&r, &r.spec.eip),
        )
        .watches(
            Api::<IptablesDnatRule>::all(client.clone()),
            watcher::Config::default(),
            |r: IptablesDnatRule| eip_ref(&r, &r.spec.eip),
        )
        .watches(
            Api::<IptablesFIPRule>::all(client.clone()),
            watcher::Config::default(),
            |r: IptablesFIPRule| eip_ref(&r, &r.spec.eip),
        )
        .watches(
            gw_api.clone(),
            watcher::Config::default(),
            |_g: VpcNatGateway| None::<ObjectRef<IptablesEIP>>,
        )
        .run(
            nat_eip::reconcile,
            error_policy::<IptablesEIP>("IptablesEIP"),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let snat_ctl = rule_controller::<IptablesSnatRule>(
        snat_ctl,
        eip_api.clone(),
        |r| r.spec.eip.clone(),
        ctx.clone(),
    );
    let dnat_ctl = rule_controller::<IptablesDnatRule>(
        dnat_ctl,
        eip_api.clone(),
        |r| r.spec.eip.clone(),
        ctx.clone(),
    );
    let fip_ctl = rule_controller::<IptablesFIPRule>(
        fip_ctl,
        eip_api.clone(),
        |r| r.spec.eip.clone(),
        ctx.clone(),
    );
    let gateways_ready = gateways.clone();
    let vpc_task = tokio::spawn(async move {
        // Default routes come from gateways: plan routes only once they are known.
        wait_ready(&gateways_ready).await;
        vpc_ctl.await
    });
    let nat_task = tokio::spawn(async move {
        tokio::join!(gw_ctl, eip_ctl, snat_ctl, dnat_ctl, fip_ctl);
    });
    // Subnets are judged against VPCs: start them once every VPC is known.
    wait_ready(&vpcs).await;
    let subnet_task = tokio::spawn(subnet_ctl);
    // Pods are placed by namespace binding: never before every Subnet is known.
    wait_ready(&subnets).await;
    let pod_ctl = Controller::new(pod_api, watcher::Config::default())
        .run(pod::reconcile, error_policy::<Pod>("Pod"), ctx.clone())
        .for_each(|_| async {});

    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!("operator running");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = vpc_task => tracing::error!(?r, "Vpc controller ended"),
        r = subnet_task => tracing::error!(?r, "Subnet controller ended"),
        r = nat_task => tracing::error!(?r, "NAT controllers ended"),
        _ = pod_ctl => tracing::error!("Pod controller ended"),
        _ = pod::deletion::run(ctx.clone()) => tracing::error!("pod deletion watcher ended"),
        _ = gc::run(ctx.clone(), Duration::from_secs(args.gc_interval)) => {},
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
        _ = terminate.recv() => tracing::info!("terminated; stopping"),
    }
    holding.abort();
    candidate().release().await;
    Ok(())
}

/// The EIP a rule in the same namespace names.
fn eip_ref<K: kube::Resource>(rule: &K, eip: &str) -> Option<ObjectRef<IptablesEIP>> {
    Some(ObjectRef::new(eip).within(rule.meta().namespace.as_deref().unwrap_or_default()))
}

/// A controller for one NAT rule kind, re-run when its EIP changes. An
/// EIP's `status.nat` changes with every rule that joins it; accepted rules
/// do not depend on that list (the older of two conflicting rules wins), so
/// such a change re-runs only the rules still waiting or refused. A change
/// of the EIP itself (spec, address, verdict, deletion) re-runs them all.
fn rule_controller<K>(
    ctl: Controller<K>,
    eips: Api<IptablesEIP>,
    eip_of: fn(&K) -> String,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    K: rules::NatRule + kube::Resource<DynamicType = ()>,
{
    let store = ctl.store();
    let seen: std::sync::Mutex<std::collections::HashMap<(String, String), u64>> =
        Default::default();
    ctl.watches(eips, watcher::Config::default(), move |e: IptablesEIP| {
        let ns = e.metadata.namespace.clone().unwrap_or_default();
        let name = e.metadata.name.clone().unwrap_or_default();
        let fp = eip_fingerprint(&e);
        let changed = seen
            .lock()
            .map(|mut m| m.insert((ns.clone(), name.clone()), fp) != Some(fp))
            .unwrap_or(true);
        store
            .state()
            .iter()
            .filter(|r| r.meta().namespace.as_deref() == Some(ns.as_str()) && eip_of(r) == name)
            .filter(|r| changed || !rules::is_accepted(r.as_ref()))
            .map(|r| ObjectRef::from(r.as_ref()))
            .collect::<Vec<_>>()
    })
    .run(rules::reconcile::<K>, error_policy::<K>(K::SHORT), ctx)
    .for_each(|_| async {})
}

/// What rules depend on in their EIP: spec, address, gateway, verdict and
/// whether it is being deleted (not its list of users).
fn eip_fingerprint(e: &IptablesEIP) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&e.spec)
        .unwrap_or_default()
        .hash(&mut h);
    e.metadata.deletion_timestamp.is_some().hash(&mut h);
    if let Some(st) = &e.status {
        st.ip.hash(&mut h);
        st.nat_gw_dp.hash(&mut h);
        for c in &st.conditions {
            (&c.type_, &c.status, c.observed_generation).hash(&mut h);
        }
    }
    h.finish()
}

/// A `main` result that prints the error chain without an extra crate.
mod anyhow_free {
    /// Any error, printed with `Display` on exit.
    pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;
}

/// The Lease identity outside a pod: host name and process id, so two
/// operators on one host still differ.
fn fallback_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}
