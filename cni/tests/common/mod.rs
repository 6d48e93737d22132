//! Real parts for the plugin's integration tests: network namespaces, an OVN
//! sandbox (NB, SB, northd, conf.db, ovs-vswitchd + ovn-controller inside a
//! "node" namespace), the box's API server, and the plugin binary. Every
//! daemon is killed by PID and every namespace deleted on drop.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use vpcnet_test_support::{TempDir, run, tool, unique};

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_vpcnet-cni");

pub fn sh(args: &[&str]) -> String {
    run(Command::new(tool(args[0])).args(&args[1..]))
}

/// A network namespace `ip netns add`ed now and deleted on drop.
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn new(prefix: &str) -> Ns {
        let name = unique(prefix);
        sh(&["ip", "netns", "add", &name]);
        sh(&[
            "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
        ]);
        Ns { name }
    }
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }
    /// `ip netns exec <ns> args...`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tool("ip"));
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }
    pub fn exec(&self, args: &[&str]) -> String {
        run(&mut self.cmd(args))
    }
    pub fn delete(&mut self) {
        if !self.name.is_empty() {
            let _ = Command::new(tool("ip"))
                .args(["netns", "del", &self.name])
                .status();
            self.name.clear();
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        self.delete();
    }
}

/// A child killed (SIGTERM, then SIGKILL) and reaped on drop.
pub struct Daemon {
    pub name: &'static str,
    pub child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The OVN sandbox. Field order is drop order: daemons first, then the node
/// namespace (taking the datapath's tap devices with it), then the files.
pub struct Ovn {
    daemons: Vec<Daemon>,
    pub node: Ns,
    pub dir: TempDir,
}

impl Ovn {
    fn env(&self, c: &mut Command) {
        for v in [
            "OVS_RUNDIR",
            "OVS_LOGDIR",
            "OVS_DBDIR",
            "OVS_SYSCONFDIR",
            "OVN_RUNDIR",
            "OVN_LOGDIR",
            "OVN_DBDIR",
            "OVN_SYSCONFDIR",
        ] {
            c.env(v, &self.dir.0);
        }
    }
    pub fn p(&self, f: &str) -> PathBuf {
        self.dir.0.join(f)
    }
    pub fn sock(&self, db: &str) -> String {
        format!("unix:{}", self.p(&format!("{db}.sock")).display())
    }

    fn spawn(&mut self, name: &'static str, in_node: bool, exe: &str, args: &[String]) {
        let mut c = if in_node {
            let mut c = Command::new(tool("ip"));
            c.args(["netns", "exec", &self.node.name]).arg(tool(exe));
            c
        } else {
            Command::new(tool(exe))
        };
        self.env(&mut c);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = c.spawn().unwrap_or_else(|e| panic!("spawn {exe}: {e}"));
        self.daemons.push(Daemon { name, child });
    }

    fn wait_for(&mut self, what: &str, mut ok: impl FnMut(&Ovn) -> bool) {
        let t0 = Instant::now();
        loop {
            if ok(self) {
                return;
            }
            for d in &mut self.daemons {
                if let Ok(Some(st)) = d.child.try_wait() {
                    panic!(
                        "{} exited with {st} while waiting for {what}; logs in {}",
                        d.name,
                        self.dir.0.display()
                    );
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}; logs in {}",
                self.dir.0.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn vsctl(&self, args: &[&str]) -> String {
        let mut c = Command::new(tool("ovs-vsctl"));
        self.env(&mut c);
        c.arg(format!("--db={}", self.sock("conf")))
            .arg("--timeout=20")
            .args(args);
        run(&mut c)
    }

    pub fn nbctl(&self, args: &[&str]) -> String {
        let mut c = Command::new(tool("ovn-nbctl"));
        self.env(&mut c);
        c.arg(format!("--db={}", self.sock("nb"))).args(args);
        run(&mut c)
    }

    fn ovsdb_server(&mut self, db: &str, schema: &str) {
        let file = self.p(&format!("{db}.db"));
        let mut c = Command::new(tool("ovsdb-tool"));
        self.env(&mut c);
        run(c.arg("create").arg(&file).arg(schema));
        let args = vec![
            file.display().to_string(),
            format!("--remote=punix:{}", self.p(&format!("{db}.sock")).display()),
            format!("--unixctl={}", self.p(&format!("{db}.ctl")).display()),
            format!("--log-file={}", self.p(&format!("{db}.log")).display()),
            "--no-chdir".into(),
        ];
        let leaked: &'static str = Box::leak(format!("ovsdb-server({db})").into_boxed_str());
        self.spawn(leaked, false, "ovsdb-server", &args);
        let sock = self.p(&format!("{db}.sock"));
        self.wait_for(&format!("{db}.sock"), |_| sock.exists());
    }

    /// Start everything; returns once br-int exists and ovn-controller has
    /// registered its chassis.
    pub fn start() -> Ovn {
        for t in [
            "ovsdb-tool",
            "ovsdb-server",
            "ovn-northd",
            "ovs-vswitchd",
            "ovn-controller",
            "ovs-vsctl",
            "ovn-sbctl",
        ] {
            tool(t);
        }
        let mut o = Ovn {
            daemons: Vec::new(),
            node: Ns::new("node-"),
            dir: TempDir::new("cnit-"),
        };
        o.ovsdb_server("nb", "/usr/share/ovn/ovn-nb.ovsschema");
        o.ovsdb_server("sb", "/usr/share/ovn/ovn-sb.ovsschema");
        o.ovsdb_server("conf", "/usr/share/openvswitch/vswitch.ovsschema");
        let (nb, sb) = (o.sock("nb"), o.sock("sb"));
        o.spawn(
            "ovn-northd",
            false,
            "ovn-northd",
            &[
                format!("--ovnnb-db={nb}"),
                format!("--ovnsb-db={sb}"),
                format!("--unixctl={}", o.p("northd.ctl").display()),
                format!("--log-file={}", o.p("northd.log").display()),
                "--no-chdir".into(),
            ],
        );
        let system_id = unique("chassis-");
        o.vsctl(&["--no-wait", "init"]);
        o.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            &format!("external_ids:system-id={system_id}"),
            &format!("external_ids:ovn-remote={sb}"),
            "external_ids:ovn-encap-type=geneve",
            "external_ids:ovn-encap-ip=127.0.0.1",
            "external_ids:ovn-bridge-datapath-type=netdev",
            "other_config:userspace-tso-enable=true",
        ]);
        o.vsctl(&[
            "--no-wait",
            "add-br",
            "br-int",
            "--",
            "set",
            "Bridge",
            "br-int",
            "datapath_type=netdev",
            "fail-mode=secure",
            "other-config:disable-in-band=true",
        ]);
        let conf = o.sock("conf");
        o.spawn(
            "ovs-vswitchd",
            true,
            "ovs-vswitchd",
            &[
                conf.clone(),
                format!("--unixctl={}", o.p("vswitchd.ctl").display()),
                format!("--log-file={}", o.p("vswitchd.log").display()),
                "--no-chdir".into(),
            ],
        );
        o.spawn(
            "ovn-controller",
            true,
            "ovn-controller",
            &[
                conf,
                format!("--log-file={}", o.p("controller.log").display()),
                "--no-chdir".into(),
            ],
        );
        // Wait until vswitchd applied the config and the chassis is in the SB.
        o.wait_for("ovs-vswitchd to create br-int", |o| {
            let mut c = Command::new(tool("ovs-vsctl"));
            o.env(&mut c);
            c.arg(format!("--db={}", o.sock("conf"))).args([
                "--timeout=2",
                "get",
                "Interface",
                "br-int",
                "ofport",
            ]);
            c.output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "65534")
        });
        let sbs = o.sock("sb");
        let dir = o.dir.0.clone();
        o.wait_for("ovn-controller to register its chassis", move |_| {
            let mut c = Command::new(tool("ovn-sbctl"));
            c.env("OVN_RUNDIR", &dir).arg(format!("--db={sbs}")).args([
                "--bare",
                "--columns=name",
                "list",
                "Chassis",
            ]);
            c.output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(&system_id))
        });
        o
    }

    pub async fn nb_client(&self) -> ovn::Client {
        ovn::Client::connect(&self.sock("nb"))
            .await
            .expect("connect NB")
    }
}

/// The box's kubeconfig: the running box, or a freshly started one (left up
/// for others). Waits for any up/down in progress first.
pub fn kubeconfig() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let box_dir = vpcnet_test_support::box_env::box_dir();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/box");
    let lock = format!("{}.lock", box_dir.display());
    let _ = Command::new(tool("flock"))
        .args(["-w", "600", &lock, "true"])
        .status();
    let up = Command::new("bash")
        .arg(scripts.join("env.sh"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !up {
        eprintln!("cluster-in-a-box is not up: starting it with e2e/box/up.sh (left running)");
        let st = Command::new("bash")
            .arg(scripts.join("up.sh"))
            .stdout(Stdio::inherit())
            .status()
            .expect("run up.sh");
        assert!(
            st.success(),
            "e2e/box/up.sh failed: the plugin tests need a real API server"
        );
    }
    box_dir.join("kubeconfig")
}

pub async fn kube_client(path: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(path).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(cfg).expect("client")
}

/// One run of the plugin binary.
pub struct Invocation {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Invocation {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "plugin stdout is not JSON ({e}): {:?} stderr {:?}",
                self.stdout, self.stderr
            )
        })
    }
    pub fn ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "plugin failed: {} {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Run `vpcnet-cni` with `CNI_COMMAND=cmd`, the given CNI variables and
/// `conf` on stdin.
pub fn cni(
    cmd: &str,
    container_id: &str,
    netns: Option<&str>,
    cni_args: &str,
    conf: &serde_json::Value,
) -> Invocation {
    let mut c = Command::new(PLUGIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .env("CNI_ARGS", cni_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(n) = netns {
        c.env("CNI_NETNS", n);
    }
    let t0 = Instant::now();
    let mut child = c.spawn().expect("spawn vpcnet-cni");
    // A plugin may exit without reading stdin (VERSION needs none); like the
    // runtime's libcni, a closed pipe is not a failure of the invocation.
    match child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Invocation {
        status,
        stdout: String::from_utf8_lossy(&stdout).into(),
        stderr: String::from_utf8_lossy(&stderr).into(),
        elapsed: t0.elapsed(),
    }
}
