//! Connection-state sync between the two replicas with `conntrackd`
//! (Debian's, in the gateway image): FTFW over unicast UDP on the LAN leg
//! between the replicas' own LAN addresses. The standby keeps the active's
//! connections in conntrackd's external cache; on takeover they are
//! committed into its kernel, so established SNAT and DNAT connections keep
//! their mappings.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The UDP port the replicas sync on.
pub const SYNC_PORT: u16 = 3780;

/// Where the configuration and control socket live inside the pod.
pub const DIR: &str = "/run/vpcnet-conntrackd";

/// conntrackd's configuration for one replica (pure). Its own addresses
/// (LAN, external) carry only its own traffic (the sync itself, the API):
/// left out of the sync.
pub fn config(
    dir: &Path,
    lan_iface: &str,
    me: Ipv4Addr,
    peer: Ipv4Addr,
    own: &[Ipv4Addr],
) -> String {
    let mut ignore = String::from("      IPv4_address 127.0.0.1\n");
    for a in own {
        ignore.push_str(&format!("      IPv4_address {a}\n"));
    }
    let d = dir.display();
    format!(
        "Sync {{
  Mode FTFW {{
    DisableExternalCache Off
    ResendQueueSize 131072
  }}
  UDP {{
    IPv4_address {me}
    IPv4_Destination_Address {peer}
    Port {SYNC_PORT}
    Interface {lan_iface}
    SndSocketBuffer 1249280
    RcvSocketBuffer 1249280
    Checksum on
  }}
}}
General {{
  HashSize 32768
  HashLimit 131072
  LogFile off
  Syslog off
  LockFile {d}/lock
  UNIX {{
    Path {d}/ctl
  }}
  NetlinkBufferSize 2097152
  NetlinkBufferSizeMaxGrowth 8388608
  NetlinkEventsReliable On
  Filter From Userspace {{
    Protocol Accept {{
      TCP
      UDP
      ICMP
    }}
    Address Ignore {{
{ignore}    }}
  }}
}}
"
    )
}

/// The filter chain that lets only the other replica reach the sync port:
/// pods of the VPC share the LAN and must not feed connection state into
/// the standby. Not `VPCNAT-`: the NAT rules' drift check leaves it alone.
pub const GUARD_CHAIN: &str = "NATGWSYNC";

/// `iptables-restore --noflush` input of the guard chain (pure): the peer
/// passes, everyone else is dropped.
pub fn guard_rules(peer: Ipv4Addr) -> String {
    format!(
        "*filter\n:{GUARD_CHAIN} - [0:0]\n-A {GUARD_CHAIN} -s {peer}/32 -j RETURN\n-A {GUARD_CHAIN} -j DROP\nCOMMIT\n"
    )
}

/// Installs the guard for `peer`: the chain, and the jump from INPUT for
/// the sync port on `lan_iface` (`iptables` is the flavour's base name).
pub fn guard(iptables: &str, lan_iface: &str, peer: Ipv4Addr) -> Result<(), String> {
    use std::io::Write;
    let mut c = Command::new(format!("{iptables}-restore"))
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{iptables}-restore: {e}"))?;
    c.stdin
        .take()
        .expect("piped")
        .write_all(guard_rules(peer).as_bytes())
        .map_err(|e| e.to_string())?;
    let out = c.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{iptables}-restore (sync guard): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let port = SYNC_PORT.to_string();
    let rule = [
        "INPUT",
        "-i",
        lan_iface,
        "-p",
        "udp",
        "--dport",
        &port,
        "-j",
        GUARD_CHAIN,
    ];
    let present = Command::new(iptables)
        .args(["-w", "-C"])
        .args(rule)
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        let out = Command::new(iptables)
            .args(["-w", "-I"])
            .args(rule)
            .output()
            .map_err(|e| format!("{iptables}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{iptables} -I INPUT (sync guard): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// A running conntrackd and the peer it syncs with.
pub struct Conntrackd {
    dir: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
    peer: Option<Ipv4Addr>,
}

impl Default for Conntrackd {
    fn default() -> Self {
        Self::new(Path::new(DIR))
    }
}

impl Conntrackd {
    /// Nothing running yet; files under `dir`.
    pub fn new(dir: &Path) -> Self {
        Conntrackd {
            dir: dir.to_path_buf(),
            conf: dir.join("conntrackd.conf"),
            child: None,
            peer: None,
        }
    }

    /// Whether conntrackd runs.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Runs conntrackd syncing with `peer` (restarting it for a new peer,
    /// or if it died). Errors: it is not installed or would not start.
    pub fn ensure(
        &mut self,
        lan_iface: &str,
        me: Ipv4Addr,
        peer: Ipv4Addr,
        own: &[Ipv4Addr],
    ) -> Result<bool, String> {
        if self.peer == Some(peer) && self.running() {
            return Ok(false);
        }
        self.stop();
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        // A lock or socket left by a conntrackd of an earlier agent of this pod.
        let _ = std::fs::remove_file(self.dir.join("lock"));
        let _ = std::fs::remove_file(self.dir.join("ctl"));
        std::fs::write(&self.conf, config(&self.dir, lan_iface, me, peer, own))
            .map_err(|e| format!("{}: {e}", self.conf.display()))?;
        let child = Command::new("conntrackd")
            .arg("-C")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("conntrackd: {e}"))?;
        self.child = Some(child);
        self.peer = Some(peer);
        Ok(true)
    }

    /// Stops it (by its PID: it is this agent's child).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.peer = None;
    }

    /// Runs `conntrackd -C <conf> <flag>`: `-c` commits the external cache
    /// into the kernel, `-f` flushes the caches, `-R` resyncs the internal
    /// cache with the kernel, `-B` sends a bulk update, `-n` asks the peer
    /// for one.
    /// Bounded by [`CONTROL_LIMIT`]: a conntrackd waiting on a peer that
    /// is gone must not hold up a failover.
    pub fn control(&self, flag: &str) -> Result<(), String> {
        if self.child.is_none() {
            return Err("conntrackd is not running".into());
        }
        control(&self.conf, flag)
    }

    /// The configuration file (for commands run elsewhere).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// On takeover: the active's connections into this kernel (before the
    /// addresses come up, so the first packet finds its mapping).
    pub fn commit(&self) -> Vec<String> {
        if self.child.is_none() {
            return vec![
                "no connection state to commit: conntrackd is not running (no peer yet)".into(),
            ];
        }
        self.control("-c").err().into_iter().collect()
    }

    /// After takeover, off the election's path: this replica's caches
    /// start over from its kernel and the peer gets them.
    pub fn after_takeover(&self) {
        if self.child.is_none() {
            return;
        }
        let conf = self.conf.clone();
        std::thread::spawn(move || {
            for f in ["-f", "-R", "-B"] {
                if let Err(e) = control(&conf, f) {
                    tracing::debug!("{e}");
                }
            }
        });
    }

    /// On becoming the standby: ask the active for its connections.
    pub fn stand_by(&self) {
        if self.child.is_none() {
            return;
        }
        let conf = self.conf.clone();
        std::thread::spawn(move || {
            if let Err(e) = control(&conf, "-n") {
                tracing::debug!("{e}");
            }
        });
    }
}

/// How long a control command may take.
pub const CONTROL_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// `conntrackd -C <conf> <flag>`, killed (by its PID) after [`CONTROL_LIMIT`].
fn control(conf: &Path, flag: &str) -> Result<(), String> {
    let mut c = Command::new("conntrackd")
        .arg("-C")
        .arg(conf)
        .arg(flag)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("conntrackd {flag}: {e}"))?;
    let t0 = std::time::Instant::now();
    loop {
        match c.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("conntrackd {flag}: {st}")),
            Ok(None) if t0.elapsed() >= CONTROL_LIMIT => {
                let _ = c.kill();
                let _ = c.wait();
                return Err(format!(
                    "conntrackd {flag}: no answer within {} ms",
                    CONTROL_LIMIT.as_millis()
                ));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(e) => return Err(format!("conntrackd {flag}: {e}")),
        }
    }
}

impl Drop for Conntrackd {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_with_the_peer_on_the_lan_leg_and_ignores_its_own_addresses() {
        let c = config(
            Path::new("/run/x"),
            "eth0",
            "10.0.1.5".parse().unwrap(),
            "10.0.1.6".parse().unwrap(),
            &["10.0.1.5".parse().unwrap(), "172.16.3.101".parse().unwrap()],
        );
        assert!(c.contains("IPv4_address 10.0.1.5\n    IPv4_Destination_Address 10.0.1.6"));
        assert!(c.contains("Interface eth0"));
        assert!(c.contains("Port 3780"));
        assert!(c.contains("DisableExternalCache Off"));
        assert!(c.contains("      IPv4_address 172.16.3.101\n"));
        assert!(c.contains("Path /run/x/ctl"));
        let g = guard_rules("10.0.1.6".parse().unwrap());
        assert!(g.contains("-A NATGWSYNC -s 10.0.1.6/32 -j RETURN\n-A NATGWSYNC -j DROP\n"));
        assert!(!GUARD_CHAIN.starts_with(crate::model::CHAIN_PREFIX));
        let opens = c.matches('{').count();
        assert_eq!(opens, c.matches('}').count(), "balanced:\n{c}");
    }
}
