//! The load generators, the same for every server measured:
//! - `dnsperf` (Debian package): 4 clients, up to 64 queries outstanding:
//!   throughput; latencies from its `-v` lines;
//! - a built-in closed-loop client: 4 threads, one query in flight each, over
//!   UDP or TCP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::common::scratch;

const THREADS: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Dnsperf,
    Udp,
    Tcp,
}

/// What one client measured against one server.
pub struct Sample {
    pub qps: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub lost: u64,
}

impl Client {
    pub fn label(self) -> &'static str {
        match self {
            Client::Dnsperf => "dnsperf c4 q64",
            Client::Udp => "built-in UDP x4",
            Client::Tcp => "built-in TCP x4",
        }
    }

    /// `secs` seconds of A queries for `names` (round robin) at `server`.
    pub fn run(self, server: SocketAddr, names: &[String], secs: f64) -> Sample {
        match self {
            Client::Dnsperf => dnsperf(server, names, secs),
            Client::Udp => builtin(server, names, secs, false),
            Client::Tcp => builtin(server, names, secs, true),
        }
    }
}

/// An A query for `name` with RD set, as sent on the wire (id 0).
pub fn wire(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// One UDP query for `name`: (rcode, answer count) of the reply, if any
/// came within `timeout`.
pub fn ask(server: SocketAddr, name: &str, timeout: Duration) -> Option<(u8, u16)> {
    let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
    udp.connect(server).ok()?;
    udp.set_read_timeout(Some(timeout)).ok()?;
    udp.send(&wire(name)).ok()?;
    let mut buf = [0u8; 1500];
    let n = udp.recv(&mut buf).ok()?;
    (n >= 12).then(|| (buf[3] & 0x0f, u16::from_be_bytes([buf[6], buf[7]])))
}

fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// One client connection of the built-in client.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Conn {
    fn open(server: SocketAddr, tcp: bool) -> Conn {
        if tcp {
            let s = TcpStream::connect(server).unwrap();
            s.set_nodelay(true).unwrap();
            return Conn::Tcp(s);
        }
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.connect(server).unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        Conn::Udp(udp)
    }

    /// Sends `q` and waits for the reply with its id; false when none came
    /// (UDP: within a second).
    fn exchange(&mut self, q: &[u8], buf: &mut [u8]) -> bool {
        let id = &q[..2];
        match self {
            Conn::Tcp(s) => {
                let mut f = (q.len() as u16).to_be_bytes().to_vec();
                f.extend_from_slice(q);
                s.write_all(&f).unwrap();
                let mut l = [0u8; 2];
                s.read_exact(&mut l).unwrap();
                let n = u16::from_be_bytes(l) as usize;
                s.read_exact(&mut buf[..n]).unwrap();
                &buf[..2] == id
            }
            Conn::Udp(u) => {
                u.send(q).unwrap();
                loop {
                    match u.recv(buf) {
                        Ok(n) if n >= 2 && &buf[..2] == id => break true,
                        Ok(_) => continue,
                        Err(_) => break false,
                    }
                }
            }
        }
    }
}

/// One thread of the closed loop: (latencies in µs, queries lost).
fn closed_loop(
    server: SocketAddr,
    queries: &[Vec<u8>],
    tcp: bool,
    first: usize,
    deadline: Instant,
) -> (Vec<f64>, u64) {
    let mut conn = Conn::open(server, tcp);
    let mut buf = vec![0u8; 65535];
    let (mut lat, mut lost) = (Vec::new(), 0);
    let mut i = first;
    while Instant::now() < deadline {
        let mut q = queries[i % queries.len()].clone();
        q[..2].copy_from_slice(&(i as u16).to_be_bytes());
        i += 1;
        let start = Instant::now();
        if conn.exchange(&q, &mut buf) {
            lat.push(start.elapsed().as_secs_f64() * 1e6);
        } else {
            lost += 1;
        }
    }
    (lat, lost)
}

/// Closed loop: `THREADS` clients, one query in flight each.
fn builtin(server: SocketAddr, names: &[String], secs: f64, tcp: bool) -> Sample {
    let queries: Vec<Vec<u8>> = names.iter().map(|n| wire(n)).collect();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(secs);
    let results: Vec<(Vec<f64>, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let queries = &queries;
                s.spawn(move || closed_loop(server, queries, tcp, t * 7919, deadline))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let lost = results.iter().map(|r| r.1).sum();
    let all = sorted(results.into_iter().flat_map(|r| r.0).collect());
    Sample {
        qps: all.len() as f64 / elapsed,
        p50_us: pct(&all, 0.5),
        p99_us: pct(&all, 0.99),
        lost,
    }
}

/// `dnsperf`'s output for `secs` seconds of `names`.
fn dnsperf_output(server: SocketAddr, names: &[String], secs: f64) -> String {
    let dir = scratch();
    let f = dir.join("queries");
    let data: String = names.iter().map(|n| format!("{n} A\n")).collect();
    std::fs::write(&f, data).unwrap();
    let out = Command::new("dnsperf")
        .args(["-s", &server.ip().to_string()])
        .args(["-p", &server.port().to_string()])
        .args(["-d", f.to_str().unwrap(), "-l", &format!("{secs}")])
        .args(["-c", &THREADS.to_string(), "-q", "64", "-v"])
        .output()
        .expect("dnsperf");
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dnsperf(server: SocketAddr, names: &[String], secs: f64) -> Sample {
    let text = dnsperf_output(server, names, secs);
    // `-v`: one `> RCODE name type seconds` line per answer.
    let lat = sorted(
        text.lines()
            .filter(|l| l.starts_with("> "))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|s| s * 1e6)
            .collect(),
    );
    let field = |k: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
    };
    Sample {
        qps: field("Queries per second:"),
        p50_us: pct(&lat, 0.5),
        p99_us: pct(&lat, 0.99),
        lost: field("Queries lost:") as u64,
    }
}
