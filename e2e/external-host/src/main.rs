//! The external host of the cluster-in-a-box (netns `EXT_NETNS` of
//! `e2e/box/box.env`): the outside world a NAT gateway's EIPs face.
//!
//! `vpcnet-external-host LOG ADDR PORT...` listens on ADDR at every PORT and
//! answers each TCP connection, HTTP or not, with an HTTP 200 whose body is
//! `client=<ip>:<port> server=external`, after appending `client=<ip>:<port>`
//! to LOG. The tests read the body to see which source address a connection
//! arrived from (an EIP after SNAT) and the log to see that it arrived at
//! all. It binds its sockets itself and never resolves names, so an answer
//! does not wait on DNS that the box does not have.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one connection may take to send its request and take the answer.
const TIMEOUT: Duration = Duration::from_secs(2);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (log_path, addr, ports) = match parse(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vpcnet-external-host: {e}\nusage: vpcnet-external-host LOG ADDR PORT...");
            std::process::exit(2);
        }
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap_or_else(|e| fail(&format!("opening {log_path}: {e}")));
    let log = Arc::new(Mutex::new(log));
    // Every socket is bound before the first answer: once the box sees the
    // ports listening, all of them are.
    let listeners: Vec<TcpListener> = ports
        .iter()
        .map(|&p| {
            TcpListener::bind(SocketAddr::new(addr, p))
                .unwrap_or_else(|e| fail(&format!("binding {addr}:{p}: {e}")))
        })
        .collect();
    eprintln!("listening on {addr} ports {ports:?}, log {log_path}");
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || serve(&l, &log))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn parse(args: &[String]) -> Result<(String, IpAddr, Vec<u16>), String> {
    let [log, addr, ports @ ..] = args else {
        return Err("missing arguments".into());
    };
    if ports.is_empty() {
        return Err("no port given".into());
    }
    let addr = addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
    let ports = ports
        .iter()
        .map(|p| p.parse().map_err(|e| format!("port {p:?}: {e}")))
        .collect::<Result<_, String>>()?;
    Ok((log.clone(), addr, ports))
}

fn fail(msg: &str) -> ! {
    eprintln!("vpcnet-external-host: {msg}");
    std::process::exit(1)
}

/// Accepts forever, one thread per connection.
fn serve(listener: &TcpListener, log: &Arc<Mutex<File>>) {
    loop {
        match listener.accept() {
            Ok((conn, peer)) => {
                let log = Arc::clone(log);
                std::thread::spawn(move || handle(conn, peer, &log));
            }
            // A connection that went away before it was accepted.
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn handle(mut conn: TcpStream, peer: SocketAddr, log: &Mutex<File>) {
    let client = format!("client={}:{}", peer.ip(), peer.port());
    {
        // One write per line under the lock: lines of concurrent
        // connections never interleave.
        let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(format!("{client}\n").as_bytes());
    }
    let _ = conn.set_read_timeout(Some(TIMEOUT));
    let _ = conn.set_write_timeout(Some(TIMEOUT));
    // The request, if any: the answer does not depend on it, but a client
    // that is still sending when the socket closes would see a reset.
    let mut buf = [0u8; 4096];
    let _ = conn.read(&mut buf);
    let body = format!("{client} server=external\n");
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_are_log_address_and_ports() {
        let (log, addr, ports) = parse(&args(&["/l", "172.16.3.2", "80", "8080"])).unwrap();
        assert_eq!(log, "/l");
        assert_eq!(addr.to_string(), "172.16.3.2");
        assert_eq!(ports, vec![80, 8080]);
        assert!(parse(&args(&["/l", "172.16.3.2"])).is_err());
        assert!(parse(&args(&["/l", "host", "80"])).is_err());
        assert!(parse(&args(&["/l", "127.0.0.1", "http"])).is_err());
    }

    #[test]
    fn answers_with_the_clients_address_and_logs_it() {
        let dir = std::env::temp_dir().join(format!("vpcnet-ext-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log_path = dir.join("access.log");
        let log = Arc::new(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .unwrap(),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let l = Arc::clone(&log);
        std::thread::spawn(move || serve(&listener, &l));

        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let me = c.local_addr().unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        let want_body = format!("client=127.0.0.1:{} server=external\n", me.port());
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(
            got.contains(&format!("Content-Length: {}\r\n", want_body.len())),
            "{got}"
        );
        assert!(got.ends_with(&format!("\r\n\r\n{want_body}")), "{got}");
        let logged = std::fs::read_to_string(&log_path).unwrap();
        assert!(
            logged
                .lines()
                .any(|l| l == format!("client=127.0.0.1:{}", me.port())),
            "{logged}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
