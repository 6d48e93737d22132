//! The client against a real three-member RAFT cluster of ovsdb-servers,
//! as OVN central runs in production: given every member, it keeps to the
//! leader, and when the leader is killed it follows the new one, resumes
//! its monitor from the last transaction (no full reload) and goes on
//! writing. Members talk RAFT over loopback TCP; clients use unix sockets.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{NB_SCHEMA, TempDir, free_port, run, tool};
use ovn::nb::{self, LogicalSwitch, logical_switch};
use ovn::{Client, ClientOptions, MonitorRequest, Txn};

struct Member {
    dir: TempDir,
    child: Option<Child>,
}

impl Member {
    fn sock(&self) -> String {
        format!("unix:{}", self.dir.0.join("nb.sock").display())
    }

    fn ctl(&self) -> String {
        self.dir.0.join("ctl").display().to_string()
    }

    fn spawn(&mut self) {
        let d = &self.dir.0;
        let child = Command::new(tool("ovsdb-server"))
            .arg(d.join("nb.db"))
            .arg(format!("--remote=punix:{}", d.join("nb.sock").display()))
            .arg(format!("--unixctl={}", self.ctl()))
            .arg(format!("--log-file={}", d.join("log").display()))
            .arg("--no-chdir")
            .env("OVS_RUNDIR", d)
            .env("OVS_LOGDIR", d)
            .env("OVS_DBDIR", d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ovsdb-server");
        self.child = Some(child);
        // Each member is up (its client socket accepts) before the next
        // starts, as a cluster is brought up member by member.
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(d.join("nb.sock")).is_err() {
            let st = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(st.is_none(), "ovsdb-server exited with {st:?}");
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "ovsdb-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `leader`, `follower` or `candidate`, from `cluster/status`.
    fn role(&self) -> Option<String> {
        let out = Command::new(tool("ovs-appctl"))
            .args(["-t", &self.ctl(), "cluster/status", nb::SCHEMA_NAME])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("Role: "))
            .map(str::to_string)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three members of one NB cluster, started and joined.
fn cluster() -> Vec<Member> {
    let raft: Vec<String> = (0..3)
        .map(|_| format!("tcp:127.0.0.1:{}", free_port()))
        .collect();
    let mut members: Vec<Member> = (0..3)
        .map(|i| Member {
            dir: TempDir::new(&format!("ovnraft{i}-")),
            child: None,
        })
        .collect();
    for (i, m) in members.iter().enumerate() {
        let db = m.dir.0.join("nb.db");
        let mut c = Command::new(tool("ovsdb-tool"));
        if i == 0 {
            c.arg("create-cluster")
                .arg(&db)
                .arg(NB_SCHEMA)
                .arg(&raft[0]);
        } else {
            c.arg("join-cluster")
                .arg(&db)
                .arg(nb::SCHEMA_NAME)
                .arg(&raft[i])
                .arg(&raft[0]);
        }
        run(&mut c);
    }
    for m in &mut members {
        m.spawn();
    }
    members
}

fn wait_leader(members: &[Member], not: Option<usize>) -> usize {
    let t0 = Instant::now();
    loop {
        for (i, m) in members.iter().enumerate() {
            if Some(i) != not && m.child.is_some() && m.role().as_deref() == Some("leader") {
                // Every live member has joined and agrees.
                let joined = members
                    .iter()
                    .enumerate()
                    .filter(|(j, m)| Some(*j) != not && m.child.is_some())
                    .all(|(_, m)| m.role().is_some_and(|r| r == "leader" || r == "follower"));
                if joined {
                    return i;
                }
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no leader elected: {:?}",
            members.iter().map(Member::role).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn add_switch(c: &Client, name: &str) {
    let mut t = Txn::nb();
    t.insert_row(&LogicalSwitch {
        name: name.into(),
        ..Default::default()
    });
    c.transact(t).await.expect("write through the leader");
}

#[tokio::test]
async fn the_client_keeps_to_the_leader_and_follows_a_new_one_after_a_kill() {
    let mut members = cluster();
    let leader = wait_leader(&members, None);
    // The leader last: the client must pass over both followers.
    let mut order: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    order.push(leader);
    let remotes = order
        .iter()
        .map(|&i| members[i].sock())
        .collect::<Vec<_>>()
        .join(",");
    let opts = ClientOptions {
        request_timeout: Duration::from_secs(10),
        inactivity_probe: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let c = Client::connect_with(&remotes, opts).await.unwrap();
    assert_eq!(
        c.remote(),
        members[leader].sock(),
        "connected to the leader"
    );

    let m = c
        .monitor(nb::SCHEMA_NAME, vec![MonitorRequest::of::<LogicalSwitch>()])
        .await
        .unwrap();
    add_switch(&c, "before").await;
    m.wait_until(Duration::from_secs(5), |t| {
        t.get(logical_switch::TABLE).is_some_and(|r| r.len() == 1)
    })
    .await
    .unwrap();
    assert_eq!((m.full_loads(), m.resumes()), (1, 0));

    members[leader].kill();
    let next = wait_leader(&members, Some(leader));
    let t0 = Instant::now();
    while c.remote() != members[next].sock() || !c.is_connected() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the client did not move to the new leader (on {})",
            c.remote()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    add_switch(&c, "after").await;
    m.wait_until(Duration::from_secs(5), |t| {
        t.get(logical_switch::TABLE).is_some_and(|r| r.len() == 2)
    })
    .await
    .unwrap();
    // Resumed from its last transaction on the new leader: no full reload.
    assert_eq!((m.full_loads(), m.resumes()), (1, 1));
}
