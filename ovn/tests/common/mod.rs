//! A private ovsdb-server per test, serving Debian's OVN_Northbound schema
//! (checked in as `schema/ovn-nb.ovsschema`), killed by PID on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use vpcnet_test_support::{TempDir, free_port, run, tool};

pub const NB_SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/ovn-nb.ovsschema");

pub struct Server {
    pub child: Option<Child>,
    pub dir: TempDir,
    pub db: PathBuf,
    pub sock: PathBuf,
    pub clustered: bool,
}

fn ovs_env(cmd: &mut Command, dir: &Path) {
    for var in [
        "OVS_RUNDIR",
        "OVS_LOGDIR",
        "OVS_DBDIR",
        "OVS_SYSCONFDIR",
        "OVN_RUNDIR",
        "OVN_LOGDIR",
        "OVN_DBDIR",
        "OVN_SYSCONFDIR",
    ] {
        cmd.env(var, dir);
    }
}

impl Server {
    /// A standalone NB database.
    pub fn start() -> Self {
        Self::start_with(NB_SCHEMA, false)
    }

    /// A one-member clustered NB database: only clustered databases keep the
    /// transaction history that lets `monitor_cond_since` resume.
    pub fn start_clustered() -> Self {
        Self::start_with(NB_SCHEMA, true)
    }

    pub fn start_with(schema: &str, clustered: bool) -> Self {
        let dir = TempDir::new("ovnt-");
        let db = dir.0.join("nb.db");
        let mut c = Command::new(tool("ovsdb-tool"));
        ovs_env(&mut c, &dir.0);
        if clustered {
            c.arg("create-cluster")
                .arg(&db)
                .arg(schema)
                .arg(format!("tcp:127.0.0.1:{}", free_port()));
        } else {
            c.arg("create").arg(&db).arg(schema);
        }
        run(&mut c);
        let sock = dir.0.join("nb.sock");
        let mut s = Server {
            child: None,
            dir,
            db,
            sock,
            clustered,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let d = &self.dir.0;
        let _ = std::fs::remove_file(&self.sock);
        let mut c = Command::new(tool("ovsdb-server"));
        ovs_env(&mut c, d);
        c.arg(&self.db)
            .arg(format!("--remote=punix:{}", self.sock.display()))
            .arg(format!("--unixctl={}", d.join("ctl").display()))
            .arg(format!("--log-file={}", d.join("log").display()))
            .arg("--no-chdir")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(c.spawn().expect("spawn ovsdb-server"));
        let t0 = Instant::now();
        // The socket file appears at bind(), a moment before listen(): wait
        // until a connection is accepted.
        while std::os::unix::net::UnixStream::connect(&self.sock).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ovsdb-server exited with {st}: {}", self.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "ovsdb-server did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // A clustered server listens before it has elected itself leader.
        if self.clustered {
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("log")).unwrap_or_default()
    }

    pub fn target(&self) -> String {
        format!("unix:{}", self.sock.display())
    }

    /// SIGKILL the server (no clean shutdown) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restart on the same socket with a fresh database of another schema.
    pub fn restart_with_schema(&mut self, schema: &str) {
        self.kill();
        let _ = std::fs::remove_file(&self.db);
        let mut c = Command::new(tool("ovsdb-tool"));
        ovs_env(&mut c, &self.dir.0);
        run(c.arg("create").arg(&self.db).arg(schema));
        self.clustered = false;
        self.spawn();
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) exactly this server process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        run(Command::new("kill").arg(format!("-{sig}")).arg(pid));
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Run the real `ovn-nbctl` against this server.
    pub fn nbctl(&self, args: &[&str]) -> String {
        let mut c = Command::new(tool("ovn-nbctl"));
        ovs_env(&mut c, &self.dir.0);
        c.arg(format!("--db={}", self.target()))
            .arg("--no-leader-only")
            .args(args);
        run(&mut c)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn client(s: &Server) -> ovn::Client {
    ovn::Client::connect(&s.target())
        .await
        .expect("connect to the test ovsdb-server")
}
