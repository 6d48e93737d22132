//! A real `vpcnet-dns` process on loopback, and a real client (`dig`).
//! Every process started here is killed when its handle drops, a failing
//! test included.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running server with its own directory (zone file, log).
pub struct Dns {
    child: Option<Child>,
    pub dns: SocketAddr,
    pub http: SocketAddr,
    pub dir: PathBuf,
}

pub fn scratch() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "vpcnet-dns-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `json` to `path` atomically (a reader never sees half a file).
pub fn write_zone(path: &Path, json: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl Dns {
    /// Starts a server on a free port with `zone` (JSON) as its zone file
    /// (none yet if empty).
    pub fn start(zone: &str, extra: &[&str]) -> Dns {
        let dir = scratch();
        let zone_path = dir.join("zone.json");
        if !zone.is_empty() {
            write_zone(&zone_path, zone);
        }
        let mut args = vec![
            "--zone-file".to_string(),
            zone_path.display().to_string(),
            "--zone-file-interval-ms".into(),
            "50".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Dns::spawn(dir, &args, &[])
    }

    /// Starts a server on free ports in `dir` with `args` and `env`.
    pub fn spawn(dir: PathBuf, args: &[String], env: &[(&str, &str)]) -> Dns {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpcnet-dns"));
        // The tests' own environment never chooses the zone.
        cmd.args(args)
            .env_remove("VPCNET_DNS_ZONE")
            .envs(env.iter().copied());
        Dns::from_command(cmd, dir)
    }

    /// Starts `cmd` (the server binary, or a wrapper running it) on free
    /// ports, its log in `dir`.
    pub fn from_command(mut cmd: Command, dir: PathBuf) -> Dns {
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start vpcnet-dns");
        // The first stdout line names the ports it took.
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut d = Dns {
            child: Some(child),
            dns: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
            dir,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no address line; log:\n{}", d.log()));
        let field = |k: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or_else(|| panic!("{k} in {line:?}"))
                .parse()
                .unwrap()
        };
        d.dns = field("dns=");
        d.http = field("metrics=");
        d
    }

    /// Starts a server and waits until its zone is loaded.
    pub fn ready(zone: &str, extra: &[&str]) -> Dns {
        let d = Dns::start(zone, extra);
        d.wait_ready();
        d
    }

    pub fn zone_path(&self) -> PathBuf {
        self.dir.join("zone.json")
    }

    pub fn wait_ready(&self) {
        let t = Instant::now();
        while self.http_get("/readyz").0 != 200 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "not ready; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// (status, body) of an HTTP GET on the metrics port.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect_timeout(&self.http, Duration::from_secs(2)) else {
            return (0, String::new());
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// The value of one sample of `/metrics` (`name{labels}` as printed), or 0.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .find_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                (k == sample).then(|| v.parse().ok())?
            })
            .unwrap_or(0.0)
    }

    /// `dig @server -p port <args>` with one try and a short timeout.
    pub fn dig(&self, args: &[&str]) -> String {
        dig_at(self.dns, args)
    }

    /// `dig +short`, lines sorted.
    pub fn short(&self, args: &[&str]) -> Vec<String> {
        let mut a = vec!["+short"];
        a.extend_from_slice(args);
        let mut v: Vec<String> = self.dig(&a).lines().map(String::from).collect();
        v.sort();
        v
    }

    /// The `status:` of the answer.
    pub fn status(&self, args: &[&str]) -> String {
        status_of(&self.dig(args))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.signal_term();
        self.wait_exit(within)
    }

    /// Sends SIGTERM.
    pub fn signal_term(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for the exit status (and kills after `within`).
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let t = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if t.elapsed() > within {
                let _ = c.kill();
                let _ = c.wait();
                panic!("still running {within:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- vpcnet-dns log ({}):\n{}",
                self.dir.display(),
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn dig_at(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("dig: {e}: install it with `apt-get install bind9-dnsutils` (e2e/box/install-deps.sh)")
        });
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn status_of(dig_out: &str) -> String {
    dig_out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("NO ANSWER")
        .to_string()
}

/// The `flags:` of the answer header.
pub fn flags_of(dig_out: &str) -> Vec<String> {
    dig_out
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .map(|f| {
            f.split(';')
                .next()
                .unwrap()
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}
