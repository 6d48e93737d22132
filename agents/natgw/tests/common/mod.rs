//! Shared test helpers: API object builders and a netns topology.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::ObjectMeta;
use vpcnet_api::dnat::L4Protocol;
use vpcnet_api::*;

pub const GW: &str = "gw1";

/// The seal key the tests play the operator with.
pub fn key() -> vpcnet_api::seal::SealKey {
    vpcnet_api::seal::SealKey::new(KEY_TEXT.as_bytes()).unwrap()
}

/// The same key as the agent takes it from its environment.
pub const KEY_TEXT: &str = "0123456789abcdef0123456789abcdef";

/// `inputs` as the operator would have left them: every EIP with an address
/// and every accepted rule sealed, and namespace `t` in the gateway's VPC.
pub fn sealed(inputs: &vpcnet_natgw::desired::Inputs) -> vpcnet_natgw::desired::Inputs {
    let mut i = inputs.clone();
    vpcnet_natgw::desired::seal_as_operator(&mut i, &key());
    if i.vpc_namespaces.is_empty() {
        i.vpc_namespaces = vec!["t".into()];
    }
    i
}

/// `desired` over `sealed(inputs)`.
pub fn desired_sealed(
    facts: Option<vpcnet_natgw::model::GatewayFacts>,
    gw: &str,
    inputs: &vpcnet_natgw::desired::Inputs,
) -> vpcnet_natgw::model::NatState {
    vpcnet_natgw::desired::desired(facts, gw, &sealed(inputs), &key())
}

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        generation: Some(1),
        ..Default::default()
    }
}

pub fn accepted(ok: bool) -> Vec<Condition> {
    vec![Condition {
        type_: vpcnet_api::contract::conditions::ACCEPTED.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: "Ok".into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }]
}

pub fn eip(ns: &str, name: &str, gw: &str, ip: Option<&str>) -> IptablesEIP {
    let mut e = IptablesEIP::new(
        name,
        IptablesEIPSpec {
            nat_gw_dp: gw.into(),
            ..Default::default()
        },
    );
    e.metadata = meta(ns, name);
    e.status = Some(IptablesEIPStatus {
        ip: ip.map(String::from),
        ..Default::default()
    });
    e
}

pub fn snat(ns: &str, name: &str, eip: &str, cidr: &str, ok: bool) -> IptablesSnatRule {
    let mut r = IptablesSnatRule::new(
        name,
        IptablesSnatRuleSpec {
            eip: eip.into(),
            internal_cidr: cidr.into(),
        },
    );
    r.metadata = meta(ns, name);
    r.status = Some(IptablesSnatRuleStatus {
        conditions: accepted(ok),
        ..Default::default()
    });
    r
}

pub fn fip(ns: &str, name: &str, eip: &str, ip: &str) -> IptablesFIPRule {
    let mut r = IptablesFIPRule::new(
        name,
        IptablesFIPRuleSpec {
            eip: eip.into(),
            internal_ip: ip.into(),
        },
    );
    r.metadata = meta(ns, name);
    r.status = Some(IptablesFIPRuleStatus {
        conditions: accepted(true),
        ..Default::default()
    });
    r
}

#[allow(clippy::too_many_arguments)]
pub fn dnat(
    ns: &str,
    name: &str,
    eip: &str,
    ext: &str,
    ip: &str,
    int: Option<&str>,
    udp: bool,
    shared: bool,
) -> IptablesDnatRule {
    let mut r = IptablesDnatRule::new(
        name,
        IptablesDnatRuleSpec {
            eip: eip.into(),
            external_port: ext.into(),
            protocol: if udp {
                L4Protocol::Udp
            } else {
                L4Protocol::Tcp
            },
            internal_ip: ip.into(),
            internal_port: int.map(String::from),
            shared,
        },
    );
    r.metadata = meta(ns, name);
    r.status = Some(IptablesDnatRuleStatus {
        conditions: accepted(true),
        ..Default::default()
    });
    r
}

/// Runs a command, panicking with its stderr on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip netns exec <ns> <args...>`.
pub fn nsx(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Three namespaces: `gw` (eth0 10.0.1.254/24 towards `pod` 10.0.1.2/24,
/// net1 172.16.3.101/24 towards `ext` 172.16.3.2/24). The pod's default
/// route is the gateway. Deleted on drop.
pub struct Topo {
    pub gw: String,
    pub pod: String,
    pub ext: String,
}

impl Topo {
    pub fn new() -> Topo {
        for tool in [
            "ip",
            "iptables-nft-restore",
            "iptables-legacy-restore",
            "conntrack",
            "python3",
        ] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .unwrap()
                    .status
                    .success(),
                "required tool {tool} not found"
            );
        }
        let id = format!(
            "{}{}",
            std::process::id() % 100000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let t = Topo {
            gw: format!("ngw-{id}"),
            pod: format!("npod-{id}"),
            ext: format!("next-{id}"),
        };
        for n in [&t.gw, &t.pod, &t.ext] {
            sh(&["ip", "netns", "add", n]);
            nsx(n, &["ip", "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "-n", &t.gw, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
            "netns", &t.pod,
        ]);
        sh(&[
            "ip", "-n", &t.gw, "link", "add", "net1", "type", "veth", "peer", "name", "eth0",
            "netns", &t.ext,
        ]);
        nsx(
            &t.gw,
            &["ip", "addr", "add", "10.0.1.254/24", "dev", "eth0"],
        );
        nsx(
            &t.gw,
            &["ip", "addr", "add", "172.16.3.101/24", "dev", "net1"],
        );
        nsx(&t.gw, &["ip", "link", "set", "eth0", "up"]);
        nsx(&t.gw, &["ip", "link", "set", "net1", "up"]);
        nsx(&t.pod, &["ip", "addr", "add", "10.0.1.2/24", "dev", "eth0"]);
        nsx(&t.pod, &["ip", "addr", "add", "10.0.1.3/24", "dev", "eth0"]);
        nsx(&t.pod, &["ip", "link", "set", "eth0", "up"]);
        nsx(
            &t.pod,
            &["ip", "route", "add", "default", "via", "10.0.1.254"],
        );
        nsx(
            &t.ext,
            &["ip", "addr", "add", "172.16.3.2/24", "dev", "eth0"],
        );
        nsx(&t.ext, &["ip", "link", "set", "eth0", "up"]);
        nsx(
            &t.ext,
            &["sysctl", "-qw", "net.ipv4.conf.eth0.arp_accept=1"],
        );
        t
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for n in [&self.gw, &self.pod, &self.ext] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A TCP listener in `ns` on `addr:port` that accepts `count` connections
/// and prints each peer as `ip:port` per line.
pub struct Listener {
    child: Option<std::process::Child>,
}

impl Listener {
    pub fn start(ns: &str, addr: &str, port: u16, count: usize) -> Listener {
        let code = format!(
            "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{addr}',{port}))\ns.listen(16)\nprint('ready',flush=True)\nfor _ in range({count}):\n  c,p=s.accept()\n  c.sendall(b'hi')\n  print(p[0],flush=True)\n  c.close()\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", &code])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        use std::io::BufRead;
        let mut r = std::io::BufReader::new(child.stdout.as_mut().unwrap());
        r.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Listener { child: Some(child) }
    }

    /// Waits for the listener to finish and returns the peer addresses seen.
    pub fn peers(mut self) -> Vec<String> {
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| *l != "ready")
            .map(String::from)
            .collect()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Connects from `ns` to `addr:port` (optionally from `src`), returns what the server sent.
pub fn connect(ns: &str, addr: &str, port: u16, src: Option<&str>) -> Result<String, String> {
    let bind = src
        .map(|s| format!("c.bind(('{s}',0))\n"))
        .unwrap_or_default();
    let code = format!(
        "import socket\nc=socket.socket()\nc.settimeout(3)\n{bind}c.connect(('{addr}',{port}))\nprint(c.recv(10).decode())\n"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &code])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
