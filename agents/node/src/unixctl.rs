//! `ovs-appctl` without the binary: one JSON-RPC request per connection to
//! ovs-vswitchd's control socket (`<rundir>/ovs-vswitchd.<pid>.ctl`), so the
//! agent's image needs no Open vSwitch package and follows a restarted
//! vswitchd (a new pid, a new socket) by itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// What can go wrong talking to vswitchd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pid file or the socket is missing or unreadable.
    #[error("ovs-vswitchd control socket {path}: {source}")]
    Socket {
        /// Pid file or socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No complete reply within the timeout.
    #[error("ovs-vswitchd did not answer {method} within {0:?}", .timeout)]
    Timeout {
        /// The command.
        method: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The reply was not JSON-RPC.
    #[error("ovs-vswitchd's reply to {method} is not JSON-RPC: {reason}")]
    Protocol {
        /// The command.
        method: String,
        /// What was wrong.
        reason: String,
    },
    /// The command ran and failed.
    #[error("{method}: {message}")]
    Command {
        /// The command.
        method: String,
        /// vswitchd's error text.
        message: String,
    },
}

/// The control socket of the ovs-vswitchd of `rundir`: the one named after
/// the pid in its pid file (the default), else `ovs-vswitchd.ctl` (a
/// vswitchd started with `--unixctl=<rundir>/ovs-vswitchd.ctl` and no pid
/// file, as the cluster-in-a-box does).
pub fn socket_path(rundir: &Path) -> Result<PathBuf, Error> {
    let pidfile = rundir.join("ovs-vswitchd.pid");
    match std::fs::read_to_string(&pidfile) {
        Ok(pid) => Ok(rundir.join(format!("ovs-vswitchd.{}.ctl", pid.trim()))),
        Err(source) => {
            let fixed = rundir.join("ovs-vswitchd.ctl");
            if fixed.exists() {
                Ok(fixed)
            } else {
                Err(Error::Socket {
                    path: pidfile,
                    source,
                })
            }
        }
    }
}

/// Runs `method` with `args` and returns its text output.
pub async fn call(
    rundir: &Path,
    method: &str,
    args: &[String],
    timeout: Duration,
) -> Result<String, Error> {
    let path = socket_path(rundir)?;
    let fut = async {
        let mut s = UnixStream::connect(&path)
            .await
            .map_err(|source| Error::Socket {
                path: path.clone(),
                source,
            })?;
        let req = json!({"method": method, "params": args, "id": 0});
        let io = |source| Error::Socket {
            path: path.clone(),
            source,
        };
        s.write_all(req.to_string().as_bytes()).await.map_err(io)?;
        // The reply is one JSON object; read until it parses whole.
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = s.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(Error::Protocol {
                    method: method.into(),
                    reason: "connection closed before a complete reply".into(),
                });
            }
            buf.extend_from_slice(&chunk[..n]);
            match serde_json::from_slice::<Value>(&buf) {
                Ok(v) => return reply(method, v),
                Err(e) if e.is_eof() => continue,
                Err(e) => {
                    return Err(Error::Protocol {
                        method: method.into(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    };
    // Boxed: the reply buffer and the JSON parser stay off the caller's stack.
    tokio::time::timeout(timeout, Box::pin(fut))
        .await
        .map_err(|_| Error::Timeout {
            method: method.into(),
            timeout,
        })?
}

/// The text of a JSON-RPC reply, or its error.
fn reply(method: &str, v: Value) -> Result<String, Error> {
    match v.get("error") {
        Some(Value::Null) | None => {}
        Some(e) => {
            return Err(Error::Command {
                method: method.into(),
                message: e.as_str().map_or_else(|| e.to_string(), str::to_owned),
            });
        }
    }
    match v.get("result") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) | None => Ok(String::new()),
        Some(other) => Err(Error::Protocol {
            method: method.into(),
            reason: format!("result is not text: {other}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_its_text_or_its_error() {
        assert_eq!(
            reply("x", json!({"id": 0, "error": null, "result": "ok\n"})).unwrap(),
            "ok\n"
        );
        let err = reply(
            "dpctl/flush-conntrack",
            json!({"id": 0, "error": "bad tuple\n"}),
        );
        assert!(matches!(err, Err(Error::Command { message, .. }) if message == "bad tuple\n"));
    }

    #[test]
    fn a_fixed_control_socket_is_used_when_there_is_no_pid_file() {
        let dir = std::env::temp_dir().join(format!("vpcnet-node-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ovs-vswitchd.ctl"), "").unwrap();
        assert_eq!(socket_path(&dir).unwrap(), dir.join("ovs-vswitchd.ctl"));
        std::fs::write(dir.join("ovs-vswitchd.pid"), "42\n").unwrap();
        assert_eq!(socket_path(&dir).unwrap(), dir.join("ovs-vswitchd.42.ctl"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_vswitchd_is_an_error_naming_the_pid_file() {
        let dir = std::env::temp_dir().join(format!("vpcnet-node-test-{}", std::process::id()));
        let err = call(&dir, "version", &[], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ovs-vswitchd.pid"), "{err}");
    }
}
