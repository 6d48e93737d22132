//! Helpers the integration tests of `ovn`, `cni` and `agents/natgw` share.
//! Those tests run real OVS/OVN daemons and iproute2, so a missing tool is a
//! loud failure that says what to install, never a skipped test.
//! [`box_env`] is the cluster-in-a-box's constants for every crate whose
//! tests use the box (and for `e2e` and `xtask`).

pub mod box_env;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The Debian packages that hold every tool the tests look for.
pub const PACKAGES: &str = "openvswitch-switch ovn-central ovn-host iproute2 iputils-ping";

/// A short name unique to this process and call (fits an interface or
/// namespace name when `prefix` is short).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}{:x}{}{:x}",
        std::process::id() % 0xffff,
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 0xfff
    )
}

/// The path of binary `name` from `PATH` or the sbin directories, or a
/// panic naming the packages to install.
pub fn tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]) {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` not found: these tests run the real tools; apt-get install -y {PACKAGES}");
}

/// Runs `cmd` and returns its stdout; a failure panics with both outputs.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server the
/// test starts next.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` from a server on 127.0.0.1:`port`: the whole response, status
/// line first.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A scratch directory removed on drop, but kept (and named) when the test
/// is failing, so its daemons' logs can be read.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_within_a_process() {
        let a = unique("t-");
        let b = unique("t-");
        assert_ne!(a, b);
        assert!(a.starts_with("t-"));
    }

    #[test]
    fn a_scratch_dir_is_gone_after_a_passing_test() {
        let d = TempDir::new("tst-");
        let path = d.0.clone();
        assert!(path.is_dir());
        drop(d);
        assert!(!path.exists());
    }

    #[test]
    fn http_get_reads_the_whole_response() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let (mut c, _) = listener.accept().unwrap();
            let mut first = String::new();
            std::io::BufReader::new(&c).read_line(&mut first).unwrap();
            write!(c, "HTTP/1.1 200 OK\r\n\r\n{first}").unwrap();
        });
        let out = http_get(port, "/readyz").unwrap();
        server.join().unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\n\r\nGET /readyz HTTP/1.1\r\n");
        assert!(http_get(free_port(), "/").is_err(), "nobody listens there");
    }

    #[test]
    fn run_returns_stdout_and_panics_on_failure() {
        assert_eq!(run(Command::new(tool("echo")).arg("hi")), "hi\n");
        let failed = std::panic::catch_unwind(|| run(&mut Command::new(tool("false"))));
        assert!(failed.is_err());
    }
}
