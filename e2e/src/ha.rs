//! Two-replica NAT gateways as the failover suite and benchmark see them:
//! the gateway `e2e-ha` with a DNAT (TCP and UDP) and a SNAT EIP, probes
//! on the external host (`e2e/tools/netprobe.py`) or in pods whose lines
//! are collected as they come, the replicas' roles, the agent killed
//! through containerd.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vpcnet_api::condition;
use vpcnet_api::contract::naming;

use crate::cluster::Cleanup;
use crate::external;
use crate::kubectl::Kubectl;
use crate::natgw::GW_NS;
use crate::node;

/// The gateway's (and its tenant namespace's) name.
pub const T: &str = "e2e-ha";
/// The EIP of the DNAT rules (TCP 8888, UDP 9999 to the web pod's 8080).
pub const DNAT_EIP: &str = "172.16.3.244";
/// The EIP of the SNAT rule.
pub const SNAT_EIP: &str = "172.16.3.246";
/// The gateway's `lanIp`.
pub const LAN_IP: &str = "10.0.1.254";
/// The web pod's address.
pub const WEB_IP: &str = "10.0.1.20";
/// The external host's echo server's port.
pub const ECHO_PORT: u16 = 7700;
/// How long setting up may take.
pub const READY: Duration = Duration::from_secs(180);

/// A probe process (`e2e/tools/netprobe.py` on the external host, or one
/// in a pod) whose lines are collected as they come, with the time each
/// arrived; killed (by PID) when dropped.
pub struct Probe {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    pub fn spawn(mut cmd: Command) -> Probe {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("probe starts");
        let out = child.stdout.take().expect("piped");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Probe { child, lines }
    }

    pub fn outside(args: &[&str]) -> Probe {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", external::netns(), "python3"])
            .arg(crate::repo_root().join("e2e/tools/netprobe.py"))
            .args(args);
        Probe::spawn(c)
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for the process to end: its exit code and its lines.
    pub fn finish(mut self, limit: Duration) -> (Option<i32>, Vec<String>) {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                return (st.code(), self.lines());
            }
            if t0.elapsed() > limit {
                return (None, self.lines());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn node_ctl(args: &[&str]) {
    let st = Command::new("bash")
        .arg(crate::repo_root().join("e2e/box/node-ctl.sh"))
        .args(args)
        .status()
        .expect("bash runs");
    assert!(st.success(), "node-ctl.sh {args:?}");
}

/// Recovers a failed node however the test ends.
pub struct Recover(pub Option<String>);

impl Drop for Recover {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            node_ctl(&["recover", &n]);
        }
    }
}

pub fn replica(i: u32) -> String {
    naming::natgw_replica(T, i)
}

/// The Lease holder (a pod name), or "".
pub fn holder(k: &Kubectl) -> String {
    k.field(
        "lease",
        Some(GW_NS),
        &naming::natgw_lease(T),
        "{.spec.holderIdentity}",
    )
}

/// What a replica's agent says it is: active, standby, or "" (unreachable).
pub fn role(k: &Kubectl, pod: &str) -> String {
    let out = k.exec(GW_NS, pod, &["vpcnet-natgw", "probe", "/role"]);
    if out.ok {
        out.stdout.trim().to_string()
    } else {
        String::new()
    }
}

/// The IPv4 addresses in a replica's network namespace.
pub fn addresses(k: &Kubectl, pod: &str) -> String {
    let out = k.exec(GW_NS, pod, &["ip", "-4", "-o", "addr", "show"]);
    if out.ok { out.stdout } else { String::new() }
}

pub fn holds_eip(k: &Kubectl, pod: &str) -> bool {
    addresses(k, pod).contains(&format!(" {DNAT_EIP}/"))
}

pub fn container_id(k: &Kubectl, pod: &str) -> String {
    k.field(
        "pod",
        Some(GW_NS),
        pod,
        "{.status.containerStatuses[0].containerID}",
    )
    .trim_start_matches("containerd://")
    .to_string()
}

/// SIGKILL to the agent (the container's only process), through the
/// node's containerd, as a crash would.
pub fn kill_agent(k: &Kubectl, pod: &str) {
    let node = node::of_pod(k, GW_NS, pod);
    let id = container_id(k, pod);
    assert!(!id.is_empty(), "container of {pod}");
    let out = node::exec_on(
        &node,
        &["ctr", "-n", "k8s.io", "task", "kill", "-s", "SIGKILL", &id],
    );
    assert!(out.ok, "killing {pod}'s agent: {}", out.stderr);
}

pub fn other(pod: &str) -> String {
    if pod == replica(0) {
        replica(1)
    } else {
        replica(0)
    }
}

/// Both replicas up and one active: (active, standby).
pub fn settled(k: &Kubectl, limit: Duration) -> (String, String) {
    let mut found = None;
    k.eventually(limit, "one active and one standby replica", || {
        let h = holder(k);
        if h != replica(0) && h != replica(1) {
            return false;
        }
        let ok = role(k, &h) == "active" && role(k, &other(&h)) == "standby";
        if ok {
            found = Some((h.clone(), other(&h)));
        }
        ok
    });
    found.expect("settled")
}

/// Times (unix ms) of the `ok` lines of a probe.
pub fn ok_times(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let t = w.next()?.parse().ok()?;
            (w.next() == Some("ok")).then_some(t)
        })
        .collect()
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The first answer at or after `since` (unix ms), waiting up to `limit`.
pub fn first_answer_after(p: &Probe, since: u64, limit: Duration) -> Option<u64> {
    let t0 = Instant::now();
    loop {
        if let Some(t) = ok_times(&p.lines()).into_iter().find(|t| *t >= since) {
            return Some(t);
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ARP watch's probes that two MACs answered.
pub fn double_answers(lines: &[String]) -> Vec<String> {
    lines.iter().filter(|l| l.contains(',')).cloned().collect()
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn neighbour(ip: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", external::netns(), "neigh", "show", ip])
        .output()
        .expect("ip neigh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn setup(k: &Kubectl, c: &mut Cleanup, replicas: u32) {
    let samples = crate::repo_root().join("config/samples/03-external-subnet.yaml");
    assert!(k.apply(&samples).ok);
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {T}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {T}}}\nspec: {{namespaces: [{T}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {T}}}\nspec: {{vpc: {T}, cidrBlock: 10.0.1.0/24, namespaces: [{T}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {{name: {T}}}\nspec: {{vpc: {T}, subnet: {T}, lanIp: {LAN_IP}, replicas: {replicas}, externalSubnets: [ovn-vpc-external-network]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: eipd, namespace: {T}}}\nspec: {{natGwDp: {T}, v4ip: {DNAT_EIP}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: eips, namespace: {T}}}\nspec: {{natGwDp: {T}, v4ip: {SNAT_EIP}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: web, namespace: {T}}}\nspec: {{eip: eipd, externalPort: '8888', internalIp: {WEB_IP}, internalPort: '8080', protocol: tcp}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: ping, namespace: {T}}}\nspec: {{eip: eipd, externalPort: '9999', internalIp: {WEB_IP}, internalPort: '8080', protocol: udp}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesSnatRule\nmetadata: {{name: out, namespace: {T}}}\nspec: {{eip: eips, internalCIDR: 10.0.1.0/24}}\n"
    ));
    for (kind, name) in [
        ("vpc", T),
        ("subnet", T),
        ("vpc-nat-gw", T),
        ("namespace", T),
    ] {
        c.add(kind, None, name);
    }
    k.wait_condition("vpc-nat-gw", None, &[T], condition::READY, READY);
    for (kind, name) in [
        ("eip", "eipd"),
        ("eip", "eips"),
        ("dnat", "web"),
        ("dnat", "ping"),
        ("snat", "out"),
    ] {
        k.wait_condition(kind, Some(T), &[name], condition::READY, READY);
    }
}

/// When the Lease was last taken (unix ms), from its `acquireTime`.
pub fn acquired_ms(k: &Kubectl) -> Option<u64> {
    let t = k.field(
        "lease",
        Some(GW_NS),
        &naming::natgw_lease(T),
        "{.spec.acquireTime}",
    );
    let ts: k8s_openapi::jiff::Timestamp = t.trim().parse().ok()?;
    u64::try_from(ts.as_millisecond()).ok()
}

/// One failover as the probes saw it.
#[derive(Clone, Copy, Debug)]
pub struct Failover {
    /// From the disruption to the first answer through the new active.
    pub takeover_s: f64,
    /// The longest time without an answer around it.
    pub silence_s: f64,
}

/// Disrupts the active with `disrupt`, waits for the other replica to
/// take the Lease, and times it with the UDP pings `pings`.
pub fn fail_over(k: &Kubectl, pings: &Probe, disrupt: impl FnOnce(&str)) -> Failover {
    let (active, standby) = settled(k, Duration::from_secs(60));
    let before = acquired_ms(k);
    let at = unix_ms();
    disrupt(&active);
    k.eventually(
        Duration::from_secs(30),
        "the other replica took the Lease",
        || holder(k) == standby && acquired_ms(k) != before,
    );
    let took = acquired_ms(k).expect("acquireTime");
    let first = first_answer_after(pings, took, Duration::from_secs(10))
        .expect("an answer through the new active");
    let oks: Vec<u64> = ok_times(&pings.lines())
        .into_iter()
        .filter(|t| *t + 200 >= at && *t <= first)
        .collect();
    let silence = oks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    Failover {
        takeover_s: (first.saturating_sub(at)) as f64 / 1000.0,
        silence_s: silence as f64 / 1000.0,
    }
}

/// On a failing test: both agents' logs and the Lease, for the record.
pub struct DumpOnPanic(pub Kubectl);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for i in 0..2 {
            let out = self.0.run(&["-n", GW_NS, "logs", &replica(i), "--tail=40"]);
            eprintln!("--- {} ---\n{}{}", replica(i), out.stdout, out.stderr);
        }
        let l = self.0.run(&[
            "-n",
            GW_NS,
            "get",
            "lease",
            &naming::natgw_lease(T),
            "-o",
            "yaml",
        ]);
        eprintln!("--- lease ---\n{}", l.stdout);
    }
}

/// The longest time without an answer among the pings between `from` and
/// `to` (unix ms), counted from the last answer before `from`.
pub fn silence_s(pings: &Probe, from: u64, to: u64) -> f64 {
    let oks = ok_times(&pings.lines());
    let start = oks
        .iter()
        .rev()
        .find(|t| **t < from)
        .copied()
        .unwrap_or(from);
    let inside: Vec<u64> = std::iter::once(start)
        .chain(oks.into_iter().filter(|t| *t >= from && *t <= to))
        .collect();
    let mut longest = inside.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    // Still silent at the end.
    if let Some(last) = inside.last() {
        longest = longest.max(to.saturating_sub(*last));
    }
    longest as f64 / 1000.0
}

/// Waits until the pings are answered again for `steady` after `since`.
pub fn answered_again(pings: &Probe, since: u64, steady: Duration, limit: Duration) {
    let t0 = Instant::now();
    loop {
        let now = unix_ms();
        let recent = ok_times(&pings.lines())
            .into_iter()
            .filter(|t| *t >= since && *t + steady.as_millis() as u64 >= now)
            .count();
        if now > since + steady.as_millis() as u64 && recent * 20 >= steady.as_millis() as usize / 2
        {
            return;
        }
        assert!(t0.elapsed() < limit, "no steady answers within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
