//! The kubelet's path into a pod of any VPC: a probe address.
//!
//! The kubelet probes (`httpGet`, `tcpSocket`, `grpc`) dial `status.podIP`
//! from the node, and nothing in a probe names the pod; two pods of two
//! VPCs may share their VPC address on one node. So each pod also gets a
//! node-unique probe address P on a second veth (`probe0` in the pod, `vpp…`
//! on the node), and P is listed first in the result, which makes it the
//! pod's `status.podIP`; the VPC address stays in the pod's annotations.
//! On the node, only the kubelet's cgroup may open connections over these
//! veths; nothing is forwarded through them and nothing from a pod reaches
//! the node over them except replies, and the few destinations a pod of the
//! operator's own namespace is granted (`egress`: its chains, jumped to from
//! ours, are never flushed here).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ipnet::Ipv4Net;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::egress;
use crate::error::CniError;
use crate::netns::{self, Netns};
use crate::veth;

/// The pod's end of the probe veth.
pub const POD_IFNAME: &str = "probe0";
/// The node's link holding the probe source address.
pub const SOURCE_LINK: &str = "lo";
/// Prefix of the node's ends (an iptables interface wildcard matches them).
pub const HOST_PREFIX: &str = "vpp";
/// The node's chains, jumped to from INPUT, OUTPUT and FORWARD.
pub const CHAINS: [(&str, &str); 3] = [
    ("INPUT", "VPCNET-PROBE-IN"),
    ("OUTPUT", "VPCNET-PROBE-OUT"),
    ("FORWARD", "VPCNET-PROBE-FWD"),
];

/// The probe settings of the network configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// This node's probe addresses; the last one is the node's source.
    pub cidr: Ipv4Net,
    /// The kubelet's cgroup (v2 path), the only one allowed to connect.
    pub kubelet_cgroup: Option<String>,
    /// Where allocated probe addresses are recorded.
    pub state_dir: PathBuf,
}

impl ProbeConfig {
    /// The node's source address for probes: the last host of the range.
    pub fn source(&self) -> Ipv4Addr {
        let last = u32::from(self.cidr.broadcast());
        Ipv4Addr::from(last - 1)
    }
}

/// The node's end of a container's probe veth.
pub fn host_ifname(container_id: &str) -> String {
    let h = veth::host_ifname(container_id, POD_IFNAME);
    format!("{HOST_PREFIX}{}", &h[3..])
}

/// Takes a probe address for `container_id` (the one it already has, on a
/// repeated ADD): one file per address, created exclusively, holding the
/// container ID.
pub fn allocate(cfg: &ProbeConfig, container_id: &str) -> Result<Ipv4Addr, CniError> {
    let dir = &cfg.state_dir;
    fs::create_dir_all(dir).map_err(|e| state(dir, e))?;
    if let Some(ip) = held_by(dir, container_id)? {
        return Ok(ip);
    }
    let source = cfg.source();
    for ip in cfg.cidr.hosts().filter(|ip| *ip != source) {
        let path = dir.join(ip.to_string());
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(container_id.as_bytes())
                    .map_err(|e| state(&path, e))?;
                return Ok(ip);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(state(&path, e)),
        }
    }
    Err(CniError::Config(format!(
        "no free probe address left in {}",
        cfg.cidr
    )))
}

/// Frees `container_id`'s probe address; returns it.
pub fn release(cfg: &ProbeConfig, container_id: &str) -> Result<Option<Ipv4Addr>, CniError> {
    let dir = &cfg.state_dir;
    let held = held_by(dir, container_id)?;
    if let Some(ip) = held {
        let path = dir.join(ip.to_string());
        fs::remove_file(&path).map_err(|e| state(&path, e))?;
    }
    Ok(held)
}

fn held_by(dir: &Path, container_id: &str) -> Result<Option<Ipv4Addr>, CniError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(state(dir, e)),
    };
    for entry in entries.flatten() {
        let Ok(ip) = entry.file_name().to_string_lossy().parse::<Ipv4Addr>() else {
            continue;
        };
        if fs::read_to_string(entry.path()).is_ok_and(|c| c == container_id) {
            return Ok(Some(ip));
        }
    }
    Ok(None)
}

fn state(p: &Path, e: std::io::Error) -> CniError {
    CniError::Config(format!("probe address state {}: {e}", p.display()))
}

fn nl(what: impl std::fmt::Display, e: rtnetlink::Error) -> CniError {
    CniError::Netlink(format!("{what}: {e}"))
}

/// Plugs the probe veth: `probe0` with `ip`/32 in the pod and a route to
/// the node's source; on the node, a route to `ip` with that source.
pub async fn plug(
    node: &Handle,
    pod: &Handle,
    pod_ns: &Netns,
    host_name: &str,
    ip: Ipv4Addr,
    source: Ipv4Addr,
) -> Result<(), CniError> {
    veth::delete(node, host_name).await?;
    let peer = LinkUnspec::new_with_name(POD_IFNAME)
        .setns_by_fd(pod_ns.fd())
        .build();
    let msg = LinkVeth::new(host_name, POD_IFNAME)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    node.link()
        .add(msg)
        .execute()
        .await
        .map_err(|e| nl(format_args!("create probe veth {host_name}"), e))?;
    let host = veth::link(node, host_name)
        .await?
        .ok_or_else(|| CniError::Netlink(format!("probe veth {host_name} vanished")))?;
    let inner = veth::link(pod, POD_IFNAME)
        .await?
        .ok_or_else(|| CniError::Netlink(format!("{POD_IFNAME} not in the pod's namespace")))?;
    let (hidx, pidx) = (host.header.index, inner.header.index);
    pod.link()
        .set(LinkUnspec::new_with_index(pidx).up().build())
        .execute()
        .await
        .map_err(|e| nl(format_args!("set {POD_IFNAME} up"), e))?;
    pod.address()
        .add(pidx, IpAddr::V4(ip), 32)
        .execute()
        .await
        .map_err(|e| nl(format_args!("add {ip}/32 to {POD_IFNAME}"), e))?;
    let back = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(source, 32)
        .output_interface(pidx)
        .scope(RouteScope::Link)
        .build();
    pod.route()
        .add(back)
        .execute()
        .await
        .map_err(|e| nl(format_args!("route {source} via {POD_IFNAME}"), e))?;
    node.link()
        .set(LinkUnspec::new_with_index(hidx).up().build())
        .execute()
        .await
        .map_err(|e| nl(format_args!("set {host_name} up"), e))?;
    ensure_source(node, source).await?;
    let to_pod = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(ip, 32)
        .output_interface(hidx)
        .pref_source(source)
        .scope(RouteScope::Link)
        .build();
    node.route()
        .add(to_pod)
        .execute()
        .await
        .map_err(|e| nl(format_args!("route {ip} via {host_name}"), e))?;
    Ok(())
}

/// The node's source address for probes, on its loopback (as a /32: some
/// kernels have no dummy links).
async fn ensure_source(node: &Handle, source: Ipv4Addr) -> Result<(), CniError> {
    let lo = veth::link(node, SOURCE_LINK)
        .await?
        .ok_or_else(|| CniError::Netlink(format!("no {SOURCE_LINK} in the node's namespace")))?;
    let have = veth::ipv4_addresses(node, lo.header.index).await?;
    if !have.iter().any(|a| a.addr() == source) {
        let add = node
            .address()
            .add(lo.header.index, IpAddr::V4(source), 32)
            .execute()
            .await;
        if let Err(e) = add
            && !matches!(&e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
        {
            return Err(nl(format_args!("add {source} to {SOURCE_LINK}"), e));
        }
    }
    Ok(())
}

/// The node's filter rules for the probe veths, as `iptables-restore
/// --noflush` input (pure): declaring the chains flushes and refills them,
/// so every ADD may write them again. The per-pod host egress chains
/// (`egress::FILTER_CHAINS`) are jumped to, never declared here.
pub fn rules(kubelet_cgroup: Option<&str>) -> String {
    let any = format!("{HOST_PREFIX}+");
    let [(_, inp), (_, out), (_, fwd)] = CHAINS;
    let [(_, egress_in), (_, egress_fwd)] = egress::FILTER_CHAINS;
    let mut r = format!("*filter\n:{inp} - [0:0]\n:{out} - [0:0]\n:{fwd} - [0:0]\n");
    // Pods answer the kubelet's connections; beyond that only what a pod
    // was granted (host egress) reaches the node.
    r += &format!("-A {inp} -i {any} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n");
    r += &format!("-A {inp} -i {any} -j {egress_in}\n");
    r += &format!("-A {inp} -i {any} -j DROP\n");
    // Replies of the node to connections a pod opened (host egress to a
    // local address) pass whatever process sends them.
    r += &format!(
        "-A {out} -o {any} -m conntrack --ctstate ESTABLISHED,RELATED --ctdir REPLY -j ACCEPT\n"
    );
    match kubelet_cgroup {
        Some(cg) => {
            r += &format!("-A {out} -o {any} -m cgroup --path {cg} -j ACCEPT\n");
            r += &format!("-A {out} -o {any} -p tcp -j REJECT --reject-with tcp-reset\n");
            r += &format!("-A {out} -o {any} -j DROP\n");
        }
        None => r += &format!("-A {out} -o {any} -j ACCEPT\n"),
    }
    // A pod never reaches another pod through the node, and nothing else
    // but replies to what it was granted (host egress).
    r += &format!(
        "-A {fwd} -o {any} -m conntrack --ctstate ESTABLISHED,RELATED --ctdir REPLY -j ACCEPT\n"
    );
    r += &format!("-A {fwd} -o {any} -j DROP\n");
    r += &format!("-A {fwd} -i {any} -j {egress_fwd}\n");
    r += &format!("-A {fwd} -i {any} -j DROP\n");
    r += "COMMIT\n";
    r
}

fn iptables(node: Option<&Netns>, args: &[&str]) -> Result<bool, CniError> {
    let out = netns::command(node, "iptables")
        .arg("-w")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| CniError::Config(format!("running iptables: {e}")))?;
    Ok(out.status.success())
}

/// The node's lock over the probe and host egress rules (released on drop).
pub fn lock(cfg: &ProbeConfig) -> Result<std::fs::File, CniError> {
    fs::create_dir_all(&cfg.state_dir).map_err(|e| state(&cfg.state_dir, e))?;
    let lock_path = cfg.state_dir.join(".lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| state(&lock_path, e))?;
    // SAFETY: flock on a file descriptor we own; released when `lock` drops.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
        return Err(state(&lock_path, std::io::Error::last_os_error()));
    }
    Ok(lock)
}

/// Installs [`rules`] and the jumps to them in the node's namespace (`node`,
/// or the plugin's own), under [`lock`] so concurrent ADDs add each jump
/// once. The host egress chains are created empty if absent, never flushed.
pub fn guard_node(cfg: &ProbeConfig, node: Option<&Netns>) -> Result<(), CniError> {
    let _lock = lock(cfg)?;
    let [(_, egress_in), (_, egress_fwd)] = egress::FILTER_CHAINS;
    for (table, chain) in [
        ("filter", egress_in),
        ("filter", egress_fwd),
        ("nat", egress::NAT_CHAIN),
    ] {
        if !iptables(node, &["-t", table, "-S", chain])?
            && !iptables(node, &["-t", table, "-N", chain])?
        {
            return Err(CniError::Config(format!(
                "creating the chain {chain} (table {table}) failed"
            )));
        }
    }
    let mut child = netns::command(node, "iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::Config(format!("running iptables-restore: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(rules(cfg.kubelet_cgroup.as_deref()).as_bytes())
        .map_err(|e| CniError::Config(format!("writing to iptables-restore: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::Config(format!("iptables-restore: {e}")))?;
    if !out.status.success() {
        return Err(CniError::Config(format!(
            "installing the probe rules failed (is probeKubeletCgroup {:?} the kubelet's cgroup v2 path?): {}",
            cfg.kubelet_cgroup,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let jumps = CHAINS
        .iter()
        .map(|(hook, chain)| ("filter", *hook, *chain))
        .chain([("nat", "POSTROUTING", egress::NAT_CHAIN)]);
    for (table, hook, chain) in jumps {
        if !iptables(node, &["-t", table, "-C", hook, "-j", chain])?
            && !iptables(node, &["-t", table, "-I", hook, "1", "-j", chain])?
        {
            return Err(CniError::Config(format!(
                "inserting the jump {hook} -> {chain} (table {table}) failed"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> ProbeConfig {
        ProbeConfig {
            cidr: "100.64.0.0/29".parse().unwrap(),
            kubelet_cgroup: Some("vpcnet-kubelet".into()),
            state_dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn addresses_are_per_container_reused_on_retry_and_freed() {
        let tmp = vpcnet_test_support::TempDir::new("probe-alloc-");
        let dir = tmp.0.clone();
        let c = cfg(&dir);
        assert_eq!(c.source(), "100.64.0.6".parse::<Ipv4Addr>().unwrap());
        let a = allocate(&c, "ctr-a").unwrap();
        let b = allocate(&c, "ctr-b").unwrap();
        assert_ne!(a, b);
        assert_eq!(
            allocate(&c, "ctr-a").unwrap(),
            a,
            "a repeated ADD keeps its address"
        );
        assert_eq!(release(&c, "ctr-a").unwrap(), Some(a));
        assert_eq!(release(&c, "ctr-a").unwrap(), None);
        // The range has 6 hosts, one of them the source: 5 pods fit.
        for i in 0..4 {
            allocate(&c, &format!("ctr-{i}")).unwrap();
        }
        assert!(allocate(&c, "one-too-many").is_err());
        let all: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
        assert!(
            all.iter().all(|e| e.file_name() != "100.64.0.6"),
            "never the source"
        );
    }

    #[test]
    fn only_the_kubelet_may_connect_and_nothing_is_forwarded() {
        let r = rules(Some("vpcnet-kubelet"));
        assert!(
            r.contains("-A VPCNET-PROBE-OUT -o vpp+ -m cgroup --path vpcnet-kubelet -j ACCEPT")
        );
        assert!(r.contains("-A VPCNET-PROBE-OUT -o vpp+ -j DROP"));
        assert!(r.contains("-A VPCNET-PROBE-IN -i vpp+ -j DROP"));
        assert!(r.contains("-A VPCNET-PROBE-FWD -i vpp+ -j DROP"));
        assert!(r.ends_with("COMMIT\n"));
        let idx = |s: &str| r.find(s).unwrap();
        assert!(idx("--ctstate ESTABLISHED") < idx("-A VPCNET-PROBE-IN -i vpp+ -j DROP"));
    }

    #[test]
    fn host_egress_chains_are_jumped_to_and_only_replies_come_back() {
        let r = rules(Some("vpcnet-kubelet"));
        let idx = |s: &str| {
            r.find(s)
                .unwrap_or_else(|| panic!("{s:?} missing from\n{r}"))
        };
        // Ours are jumped to before the drops, never declared (flushed).
        assert!(
            idx("-A VPCNET-PROBE-IN -i vpp+ -j VPCNET-EGRESS-IN\n")
                < idx("-A VPCNET-PROBE-IN -i vpp+ -j DROP")
        );
        assert!(
            idx("-A VPCNET-PROBE-FWD -i vpp+ -j VPCNET-EGRESS-FWD\n")
                < idx("-A VPCNET-PROBE-FWD -i vpp+ -j DROP")
        );
        assert!(!r.contains(":VPCNET-EGRESS"), "{r}");
        // Replies into pods pass before anything to a pod is dropped, and
        // nothing is forwarded to a pod before that drop.
        let fwd_reply = idx(
            "-A VPCNET-PROBE-FWD -o vpp+ -m conntrack --ctstate ESTABLISHED,RELATED --ctdir REPLY -j ACCEPT",
        );
        assert!(fwd_reply < idx("-A VPCNET-PROBE-FWD -o vpp+ -j DROP"));
        assert!(idx("-A VPCNET-PROBE-FWD -o vpp+ -j DROP") < idx("-j VPCNET-EGRESS-FWD"));
        // The node's replies to a pod's granted connection pass whatever
        // process sends them; new connections still need the kubelet's cgroup.
        assert!(
            idx(
                "-A VPCNET-PROBE-OUT -o vpp+ -m conntrack --ctstate ESTABLISHED,RELATED --ctdir REPLY -j ACCEPT"
            ) < idx("-A VPCNET-PROBE-OUT -o vpp+ -m cgroup")
        );
    }

    #[test]
    fn host_ends_carry_their_own_prefix() {
        let h = host_ifname("0123456789abcdef");
        assert!(h.starts_with(HOST_PREFIX) && h.len() == 14, "{h}");
        assert_ne!(&h[3..], &veth::host_ifname("0123456789abcdef", "eth0")[3..]);
    }
}
