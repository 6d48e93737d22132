//! The CNI operations.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rscni_plugin::async_cni::Cni;
use rscni_plugin::error::Error;
use rscni_plugin::types::{Args, CNIResult};

use crate::config::{PluginConfig, PodRef};
use crate::egress;
use crate::error::CniError;
use crate::k8s::{self, Allocation};
use crate::netns::{self, Netns};
use crate::ovs::{self, Attachment};
use crate::probe;
use crate::result::{self, Attached};
use crate::veth::{self, VethSpec};
use crate::{logging, ovs::DB};

pub struct VpcnetCni;

/// What every container-scoped operation needs.
struct Call {
    cfg: PluginConfig,
    network: String,
    container_id: String,
    ifname: String,
    netns: Option<PathBuf>,
    host_name: String,
}

impl Call {
    fn new(args: &Args) -> Result<Call, CniError> {
        let cfg = PluginConfig::from_netconf(args.config())?;
        logging::init(&cfg.log_file);
        let container_id = args
            .container_id()
            .map(|c| c.as_ref().to_string())
            .ok_or_else(|| CniError::Env("CNI_CONTAINERID is required".into()))?;
        let ifname = args
            .ifname()
            .map(|i| i.as_ref().to_string())
            .ok_or_else(|| CniError::Env("CNI_IFNAME is required".into()))?;
        let host_name = veth::host_ifname(&container_id, &ifname);
        Ok(Call {
            network: args.config().name.clone(),
            netns: args.netns().cloned(),
            cfg,
            container_id,
            ifname,
            host_name,
        })
    }

    fn attachment(&self) -> Attachment<'_> {
        Attachment {
            network: &self.network,
            container_id: &self.container_id,
            ifname: &self.ifname,
        }
    }

    fn node_ns(&self) -> Result<Option<Netns>, CniError> {
        self.cfg
            .node_netns
            .as_ref()
            .map(|p| {
                Netns::open(p)
                    .map_err(|e| CniError::Config(format!("nodeNetns {}: {e}", p.display())))
            })
            .transpose()
    }

    fn pod_ns(&self) -> Result<(Netns, String), CniError> {
        let p = self
            .netns
            .as_ref()
            .ok_or_else(|| CniError::Env("CNI_NETNS is required".into()))?;
        let ns = Netns::open(p).map_err(|e| CniError::Netns {
            path: p.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok((ns, p.display().to_string()))
    }

    fn ovsdb_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> CniError + '_ {
    move |e| CniError::Netlink(format!("{what}: {e}"))
}

fn onoff(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn add(args: Args) -> Result<CNIResult, CniError> {
    let t0 = Instant::now();
    let call = Call::new(&args)?;
    let pod = PodRef::from_cni_args(args.args())?;
    let iface_id = pod.iface_id();
    tracing::info!(%pod, container_id = %call.container_id, ifname = %call.ifname, host = %call.host_name, "ADD");
    let (pod_ns, netns_path) = call.pod_ns()?;
    let node_ns = call.node_ns()?;
    let ovsdb = ovs::connect(&call.cfg.ovsdb, call.ovsdb_timeout()).await?;
    let probe = call.cfg.probe();

    let kube = k8s::client(call.cfg.kubeconfig()?).await?;
    let alloc = k8s::wait_allocated(kube, &pod, call.cfg.annotation_timeout()).await?;
    let t_ann = t0.elapsed();
    // Host egress is decided before anything is plugged: a refusal leaves
    // nothing behind. Only the primary interface has a probe path.
    let egress_dests = if call.ifname == PRIMARY_IFNAME {
        egress::decide(
            &pod,
            alloc.host_egress.as_deref(),
            call.cfg.host_egress_namespace.as_deref(),
            probe.as_ref().map(|p| p.cidr),
        )?
    } else {
        if alloc.host_egress.is_some() {
            tracing::info!(%pod, ifname = %call.ifname, "{} applies to {PRIMARY_IFNAME} only", egress::HOST_EGRESS);
        }
        Vec::new()
    };
    if !egress_dests.is_empty() && !egress::forwarding(node_ns.as_ref())? {
        return Err(CniError::HostEgress {
            pod: pod.to_string(),
            reason: "the node does not forward IPv4 (/proc/sys/net/ipv4/ip_forward is 0)".into(),
        });
    }

    let node = netns::rtnl(node_ns.as_ref()).map_err(io("netlink socket in the node namespace"))?;
    let podh = netns::rtnl(Some(&pod_ns)).map_err(io("netlink socket in the pod namespace"))?;
    let spec = VethSpec {
        host_name: &call.host_name,
        ifname: &call.ifname,
        mac: alloc.mac,
        address: alloc.address,
        gateway: alloc.gateway,
        mtu: call.cfg.mtu,
    };
    let plugged = async {
        let host_mac = veth::create(&node, &podh, &pod_ns, &spec).await?;
        if !call.cfg.tx_checksum_offload {
            netns::set_tx_checksum(&pod_ns, &call.ifname, false)
                .map_err(io("ethtool -K tx off"))?;
        }
        let t_veth = t0.elapsed();
        ovs::add_port(
            &ovsdb,
            &call.cfg.bridge,
            &call.host_name,
            &iface_id,
            &pod.to_string(),
            &alloc.mac_string(),
            &call.attachment(),
        )
        .await?;
        let t_ovs = t0.elapsed();
        ovs::wait_ovn_installed(
            &ovsdb,
            &call.host_name,
            &iface_id,
            call.cfg.ovn_installed_timeout(),
        )
        .await?;
        let t_inst = t0.elapsed();
        let probe_ip = match (&probe, call.ifname == PRIMARY_IFNAME) {
            (Some(p), true) => {
                let ip = probe::allocate(p, &call.container_id)?;
                probe::guard_node(p, node_ns.as_ref())?;
                let host = probe::host_ifname(&call.container_id);
                probe::plug(&node, &podh, &pod_ns, &host, ip, p.source()).await?;
                tracing::info!(%pod, probe = %ip, %host, "probe path plugged");
                // A repeated ADD first drops what an earlier one granted.
                egress::remove(node_ns.as_ref(), p, &call.container_id)?;
                if !egress_dests.is_empty() {
                    let grant = egress::Grant {
                        container_id: &call.container_id,
                        host_ifname: &host,
                        probe_ip: ip,
                        dests: &egress_dests,
                    };
                    egress::install(node_ns.as_ref(), p, &grant)?;
                    egress::routes(&podh, &grant, p.source()).await?;
                    let granted: Vec<String> =
                        egress_dests.iter().map(ToString::to_string).collect();
                    tracing::info!(%pod, ?granted, "host egress granted");
                }
                Some(ip)
            }
            _ => None,
        };
        tracing::info!(
            %pod,
            annotation_ms = ms(t_ann),
            veth_ms = ms(t_veth - t_ann),
            ovs_ms = ms(t_ovs - t_veth),
            ovn_installed_ms = ms(t_inst - t_ovs),
            total_ms = ms(t_inst),
            "ADD timings"
        );
        Ok::<_, CniError>((host_mac, probe_ip))
    }
    .await;
    let (host_mac, probe_ip) = match plugged {
        Ok(m) => m,
        Err(e) => {
            if let Some(p) = &probe {
                unplug_probe(p, &node, node_ns.as_ref(), &call.container_id).await;
            }
            // Leave nothing half-plugged behind; DEL would do the same.
            if let Err(ce) = ovs::del_port(&ovsdb, &call.host_name, &call.attachment()).await {
                tracing::warn!(error = %ce, "cleanup of the OVS port failed");
            }
            if let Err(ce) = veth::delete(&node, &call.host_name).await {
                tracing::warn!(error = %ce, "cleanup of the veth failed");
            }
            return Err(e);
        }
    };
    let attached = Attached {
        host_name: &call.host_name,
        host_mac: &k8s::format_mac(&host_mac),
        ifname: &call.ifname,
        netns: &netns_path,
        mtu: call.cfg.mtu,
    };
    Ok(result::build(
        args.config().prev_result.clone(),
        &attached,
        &alloc,
        probe_ip,
    ))
}

/// The interface the kubelet's `status.podIP` comes from: the only one that
/// gets a probe path.
const PRIMARY_IFNAME: &str = "eth0";

/// Removes a container's host egress rules and probe veth and frees its
/// probe address; logs what fails (DEL and a failed ADD both end here).
async fn unplug_probe(
    p: &probe::ProbeConfig,
    node: &rtnetlink::Handle,
    node_ns: Option<&Netns>,
    container_id: &str,
) {
    match egress::remove(node_ns, p, container_id) {
        Ok(0) => {}
        Ok(n) => tracing::info!(rules = n, "host egress rules removed"),
        Err(e) => tracing::warn!(error = %e, "removing the host egress rules failed"),
    }
    if let Err(e) = veth::delete(node, &probe::host_ifname(container_id)).await {
        tracing::warn!(error = %e, "removing the probe veth failed");
    }
    match probe::release(p, container_id) {
        Ok(Some(ip)) => tracing::info!(probe = %ip, "probe address freed"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "freeing the probe address failed"),
    }
}

async fn del(args: Args) -> Result<(), CniError> {
    let call = Call::new(&args)?;
    tracing::info!(container_id = %call.container_id, ifname = %call.ifname, host = %call.host_name, "DEL");
    let ovsdb = ovs::connect(&call.cfg.ovsdb, call.ovsdb_timeout()).await?;
    let ports = ovs::del_port(&ovsdb, &call.host_name, &call.attachment()).await?;
    let node_ns = call.node_ns()?;
    let node = netns::rtnl(node_ns.as_ref()).map_err(io("netlink socket in the node namespace"))?;
    let link = veth::delete(&node, &call.host_name).await?;
    if let Some(p) = call.cfg.probe()
        && call.ifname == PRIMARY_IFNAME
    {
        unplug_probe(&p, &node, node_ns.as_ref(), &call.container_id).await;
    }
    tracing::info!(ports, link, "DEL done");
    Ok(())
}

/// The allocation CHECK compares against: the recorded result if the runtime
/// passed one, else the pod's annotations.
async fn expected(
    call: &Call,
    args: &Args,
    netns: &str,
) -> Result<(ipnet::IpNet, Option<Allocation>), CniError> {
    if let Some(prev) = &args.config().prev_result
        && let Some(a) = result::recorded_address(prev, &call.ifname, netns)
    {
        return Ok((a, None));
    }
    let pod = PodRef::from_cni_args(args.args())?;
    let kube = k8s::client(call.cfg.kubeconfig()?).await?;
    let alloc = k8s::wait_allocated(kube, &pod, Duration::from_secs(5)).await?;
    Ok((ipnet::IpNet::V4(alloc.address), Some(alloc)))
}

async fn check(args: Args) -> Result<(), CniError> {
    let call = Call::new(&args)?;
    let (pod_ns, netns_path) = call.pod_ns()?;
    let (want, alloc) = expected(&call, &args, &netns_path).await?;
    let podh = netns::rtnl(Some(&pod_ns)).map_err(io("netlink socket in the pod namespace"))?;
    let link = veth::link(&podh, &call.ifname).await?.ok_or_else(|| {
        CniError::Check(format!(
            "interface {} not found in {netns_path}",
            call.ifname
        ))
    })?;
    if let Some(a) = &alloc
        && veth::mac_of(&link).as_deref() != Some(&a.mac[..])
    {
        return Err(CniError::Check(format!(
            "{} has MAC {:?}, expected {}",
            call.ifname,
            veth::mac_of(&link).map(|m| k8s::format_mac(&m)),
            a.mac_string()
        )));
    }
    let addrs = veth::ipv4_addresses(&podh, link.header.index).await?;
    if !addrs.iter().any(|a| ipnet::IpNet::V4(*a) == want) {
        return Err(CniError::Check(format!(
            "{} has addresses {addrs:?}, expected {want}",
            call.ifname
        )));
    }
    let tx = netns::tx_checksum(&pod_ns, &call.ifname).map_err(io("ethtool -k"))?;
    if tx != call.cfg.tx_checksum_offload {
        return Err(CniError::Check(format!(
            "{} has TX checksum offload {}, expected {}",
            call.ifname,
            onoff(tx),
            onoff(call.cfg.tx_checksum_offload)
        )));
    }
    let node_ns = call.node_ns()?;
    let node = netns::rtnl(node_ns.as_ref()).map_err(io("netlink socket in the node namespace"))?;
    if veth::link(&node, &call.host_name).await?.is_none() {
        return Err(CniError::Check(format!(
            "host interface {} not found",
            call.host_name
        )));
    }
    let ovsdb = ovs::connect(&call.cfg.ovsdb, call.ovsdb_timeout()).await?;
    let row = ovs::interface(&ovsdb, &call.host_name)
        .await?
        .ok_or_else(|| CniError::Check(format!("OVS interface {} not found", call.host_name)))?;
    let ids = ovs::external_ids(&row);
    if ids.get(ovs::CONTAINER_ID) != Some(&call.container_id) {
        return Err(CniError::Check(format!(
            "OVS interface {} belongs to container {:?}",
            call.host_name,
            ids.get(ovs::CONTAINER_ID)
        )));
    }
    if let Ok(pod) = PodRef::from_cni_args(args.args())
        && ids.get(ovs::IFACE_ID) != Some(&pod.iface_id())
    {
        return Err(CniError::Check(format!(
            "OVS interface {} has iface-id {:?}, expected {}",
            call.host_name,
            ids.get(ovs::IFACE_ID),
            pod.iface_id()
        )));
    }
    Ok(())
}

async fn status(args: Args) -> Result<(), CniError> {
    let cfg = PluginConfig::from_netconf(args.config())?;
    logging::init(&cfg.log_file);
    let unavailable = |e: CniError| {
        CniError::NotAvailable(format!(
            "Open_vSwitch database at {} does not answer: {e}",
            cfg.ovsdb
        ))
    };
    let c = ovs::connect(&cfg.ovsdb, Duration::from_secs(5))
        .await
        .map_err(unavailable)?;
    let dbs = c
        .list_dbs()
        .await
        .map_err(|e| unavailable(CniError::Ovs(e.to_string())))?;
    if !dbs.iter().any(|d| d == DB) {
        return Err(CniError::NotAvailable(format!(
            "{} serves {dbs:?}, not {DB}",
            cfg.ovsdb
        )));
    }
    Ok(())
}

async fn gc(args: Args) -> Result<(), CniError> {
    let cfg = PluginConfig::from_netconf(args.config())?;
    logging::init(&cfg.log_file);
    let network = args.config().name.clone();
    let valid: HashSet<(String, String)> = args
        .config()
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let c = ovs::connect(&cfg.ovsdb, Duration::from_secs(10)).await?;
    let removed = ovs::gc(&c, &network, &valid).await?;
    let node_ns = cfg
        .node_netns
        .as_ref()
        .map(|p| {
            Netns::open(p).map_err(|e| CniError::Config(format!("nodeNetns {}: {e}", p.display())))
        })
        .transpose()?;
    let node = netns::rtnl(node_ns.as_ref()).map_err(io("netlink socket in the node namespace"))?;
    for name in &removed {
        veth::delete(&node, name).await?;
    }
    tracing::info!(%network, valid = valid.len(), ?removed, "GC");
    Ok(())
}

fn report<T>(op: &str, r: Result<T, CniError>) -> Result<T, Error> {
    r.map_err(|e| {
        tracing::error!(op, code = e.code(), error = %e, "failed");
        e.into()
    })
}

#[async_trait::async_trait]
impl Cni for VpcnetCni {
    async fn add(&self, args: Args) -> Result<CNIResult, Error> {
        report("ADD", add(args).await)
    }
    async fn del(&self, args: Args) -> Result<(), Error> {
        report("DEL", del(args).await)
    }
    async fn check(&self, args: Args) -> Result<(), Error> {
        report("CHECK", check(args).await)
    }
    async fn status(&self, args: Args) -> Result<(), Error> {
        report("STATUS", status(args).await)
    }
    async fn gc(&self, args: Args) -> Result<(), Error> {
        report("GC", gc(args).await)
    }
}
