//! The flusher against a real ovs-vswitchd: a userspace ("dummy") datapath
//! whose conntrack is filled by injected packets through `ct(commit,nat)`
//! flows, exactly the entries an OVN load balancer leaves. No packet leaves
//! the process: dummy ports are not attached to any network.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vpcnet_node::conntrack::parse_dump;
use vpcnet_node::flusher::pass;
use vpcnet_node::unixctl;
use vpcnet_node::vips::VipMap;
use vpcnet_test_support::{TempDir, tool};

/// A daemon we started, ended by its PID when the test ends (also on failure).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Switch {
    dir: TempDir,
    _db: Daemon,
    _vswitchd: Daemon,
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what} did not appear"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ovs(dir: &Path, bin: &str, args: &[&str]) {
    let out = Command::new(tool(bin))
        .args(args)
        .env("OVS_RUNDIR", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start() -> Switch {
    let dir = TempDir::new("vpcnet-node-");
    let d = dir.0.clone();
    let db = d.join("conf.db");
    let sock = format!("unix:{}", d.join("db.sock").display());
    ovs(
        &d,
        "ovsdb-tool",
        &[
            "create",
            db.to_str().unwrap(),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ],
    );
    let spawn = |bin: &str, args: Vec<String>| {
        Daemon(
            Command::new(tool(bin))
                .args(args)
                .env("OVS_RUNDIR", &d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let p = |name: &str| d.join(name).display().to_string();
    let db_daemon = spawn(
        "ovsdb-server",
        vec![
            format!("--remote=p{sock}"),
            format!("--unixctl={}", p("ovsdb-server.ctl")),
            format!("--log-file={}", p("ovsdb-server.log")),
            "--no-chdir".into(),
            db.display().to_string(),
        ],
    );
    wait_for("ovsdb socket", || d.join("db.sock").exists());
    ovs(
        &d,
        "ovs-vsctl",
        &[&format!("--db={sock}"), "--no-wait", "init"],
    );
    let vswitchd = spawn(
        "ovs-vswitchd",
        vec![
            sock.clone(),
            "--enable-dummy=override".into(),
            "--disable-system".into(),
            format!("--pidfile={}", p("ovs-vswitchd.pid")),
            format!("--log-file={}", p("ovs-vswitchd.log")),
            "--no-chdir".into(),
        ],
    );
    wait_for("vswitchd control socket", || {
        unixctl::socket_path(&d).is_ok_and(|s| s.exists())
    });
    ovs(
        &d,
        "ovs-vsctl",
        &[
            &format!("--db={sock}"),
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=dummy",
            "--",
            "add-port",
            "br0",
            "p1",
            "--",
            "set",
            "interface",
            "p1",
            "type=dummy",
            "ofport_request=1",
            "--",
            "add-port",
            "br0",
            "p2",
            "--",
            "set",
            "interface",
            "p2",
            "type=dummy",
            "ofport_request=2",
        ],
    );
    wait_for("br0 management socket", || d.join("br0.mgmt").exists());
    // Zone 3 plays a client port's zone: VIP 10.96.0.10:53 goes to backend
    // .5, except from source port 40002, which went to .6; zone 4 holds
    // plain traffic to a pod address, no load balancer.
    for flow in [
        "priority=10,udp,nw_dst=10.96.0.10,actions=ct(commit,zone=3,nat(dst=10.0.0.5:53)),output:2",
        "priority=20,udp,nw_dst=10.96.0.10,tp_src=40002,actions=ct(commit,zone=3,nat(dst=10.0.0.6:53)),output:2",
        "priority=10,udp,nw_dst=10.0.0.9,actions=ct(commit,zone=4),output:2",
    ] {
        ovs(&d, "ovs-ofctl", &["add-flow", "br0", flow]);
    }
    Switch {
        dir,
        _db: db_daemon,
        _vswitchd: vswitchd,
    }
}

async fn send(sw: &Switch, dst: &str, sport: u16) {
    let pkt = format!(
        "in_port(1),eth(src=50:54:00:00:00:01,dst=50:54:00:00:00:02),eth_type(0x0800),ipv4(src=10.0.0.2,dst={dst},proto=17,tos=0,ttl=64,frag=no),udp(src={sport},dst=53)"
    );
    unixctl::call(
        &sw.dir.0,
        "netdev-dummy/receive",
        &["p1".into(), pkt],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
}

async fn backends_left(sw: &Switch) -> BTreeSet<(u16, SocketAddr)> {
    let dump = unixctl::call(
        &sw.dir.0,
        "dpctl/dump-conntrack",
        &[],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    parse_dump(&dump)
        .into_iter()
        .map(|e| (e.orig_src.port(), e.reply_src))
        .collect()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn entries_of_a_backend_that_left_go_and_every_other_entry_stays() {
    let sw = start();
    send(&sw, "10.96.0.10", 40000).await;
    send(&sw, "10.96.0.10", 40001).await;
    send(&sw, "10.96.0.10", 40002).await;
    send(&sw, "10.0.0.9", 40003).await;
    assert_eq!(
        backends_left(&sw).await.len(),
        4,
        "the flows made one entry per flow"
    );

    // Backend .5 left the VIP; .6 is still there.
    let vips: VipMap = [(sa("10.96.0.10:53"), [sa("10.0.0.6:53")].into())].into();
    let p = pass(&sw.dir.0, &vips, &BTreeSet::new()).await.unwrap();
    assert_eq!((p.entries, p.flushed), (4, 2));
    assert_eq!(
        backends_left(&sw).await,
        [(40002, sa("10.0.0.6:53")), (40003, sa("10.0.0.9:53"))].into()
    );

    // A pass over an unchanged state deletes nothing.
    let p = pass(&sw.dir.0, &vips, &BTreeSet::new()).await.unwrap();
    assert_eq!((p.entries, p.flushed), (2, 0));

    // The Service is gone: its last translated entry goes, the plain one stays.
    let gone = [sa("10.96.0.10:53")].into();
    let p = pass(&sw.dir.0, &VipMap::new(), &gone).await.unwrap();
    assert_eq!(p.flushed, 1);
    assert_eq!(
        backends_left(&sw).await,
        [(40003, sa("10.0.0.9:53"))].into()
    );

    // The next packet of a flushed flow is load-balanced afresh.
    send(&sw, "10.96.0.10", 40000).await;
    assert!(
        backends_left(&sw)
            .await
            .contains(&(40000, sa("10.0.0.5:53")))
    );
}
