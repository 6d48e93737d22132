//! CoreDNS, the server vpcnet-dns is compared with: built once from its Go
//! module by `build-coredns.sh` (version pinned by `coredns/go.mod`), serving
//! the bench's Services with its `file` plugin from an RFC 1035 zone file for
//! the cluster domain, and forwarding every other name through `forward` and
//! `cache`, as a CoreDNS for one VPC would.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Service;
use crate::clients::ask;
use crate::common::scratch;

/// Builds CoreDNS (or finds it built): its path, or why there is none. The
/// script prints its progress on stderr.
pub fn build() -> Result<PathBuf, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/build-coredns.sh");
    let out = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("bash {script}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{script} failed ({})", out.status));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// What `coredns -version` says first (`CoreDNS-1.15.0`).
pub fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(String::from)
        })
        .unwrap_or_else(|| "CoreDNS (version unknown)".into())
}

/// The zone file of `domain`: SOA and NS as vpcnet-dns has them, and one A
/// record per Service, with vpcnet-dns's default TTL.
pub fn zone_file(domain: &str, services: &[Service], ttl: u32) -> String {
    let mut z = format!("$ORIGIN {domain}.\n$TTL {ttl}\n");
    writeln!(
        z,
        "@ IN SOA ns.dns hostmaster 1 7200 1800 86400 {ttl}\n@ IN NS ns.dns\nns.dns IN A 127.0.0.1"
    )
    .unwrap();
    for s in services {
        writeln!(z, "{}.{}.svc IN A {}", s.name, s.namespace, s.ip).unwrap();
    }
    z
}

/// `domain` from `zone` on `port`; with an upstream, every other name
/// forwarded to it through the cache.
fn corefile(domain: &str, port: u16, zone: &Path, upstream: Option<SocketAddr>) -> String {
    let mut c = format!(
        "{domain}:{port} {{\n    bind 127.0.0.1\n    file {} {domain}\n}}\n",
        zone.display()
    );
    if let Some(up) = upstream {
        writeln!(
            c,
            ".:{port} {{\n    bind 127.0.0.1\n    forward . {up}\n    cache\n}}"
        )
        .unwrap();
    }
    c
}

/// A loopback port free for both UDP and TCP (just now).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running CoreDNS with its own directory (Corefile, zone file, log),
/// killed when dropped.
pub struct CoreDns {
    child: Child,
    pub dns: SocketAddr,
    dir: PathBuf,
}

impl CoreDns {
    /// Starts `cmd` (the CoreDNS binary, or a wrapper running it) on
    /// `services` of `cluster.local`, forwarding the rest to `upstream`, and
    /// waits until it answers for the first Service.
    pub fn start(
        cmd: Command,
        services: &[Service],
        upstream: Option<SocketAddr>,
    ) -> Result<CoreDns, String> {
        let domain = "cluster.local";
        let dir = scratch();
        let zone = dir.join(format!("db.{domain}"));
        std::fs::write(&zone, zone_file(domain, services, 5)).unwrap();
        let port = free_port();
        let conf = dir.join("Corefile");
        std::fs::write(&conf, corefile(domain, port, &zone, upstream)).unwrap();
        let c = CoreDns::spawn(cmd, &conf, &dir)?;
        let d = CoreDns {
            child: c,
            dns: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let first = &services[0];
        d.wait_answer(&format!("{}.{}.svc.{domain}", first.name, first.namespace))?;
        Ok(d)
    }

    fn spawn(mut cmd: Command, conf: &Path, dir: &Path) -> Result<Child, String> {
        let log = std::fs::File::create(dir.join("log")).unwrap();
        cmd.arg("-conf")
            .arg(conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start CoreDNS: {e}"))
    }

    fn wait_answer(&self, name: &str) -> Result<(), String> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if ask(self.dns, name, Duration::from_millis(200)) == Some((0, 1)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "CoreDNS gave no answer for {name} in 20 s; log:\n{}",
            self.log()
        ))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for CoreDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
