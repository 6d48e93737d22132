//! The box's external host (netns `EXT_NETNS`, address `EXT_HOST_IP` of
//! `e2e/box/box.env`): the outside world a NAT gateway's EIPs face. It
//! answers every connection on its ports with
//! `client=<ip>:<port> server=external` and logs `client=<ip>:<port>`.

use std::path::PathBuf;
use std::time::Duration;

use crate::box_env;

/// The external host's network namespace.
pub fn netns() -> &'static str {
    box_env::ext_netns()
}

/// The external host's address.
pub fn host_ip() -> &'static str {
    box_env::ext_host_ip()
}

/// `http://<external host>/`, where a pod's egress goes in the tests.
pub fn host_url() -> String {
    format!("http://{}/", host_ip())
}

/// The external host's log of connections, one `client=<ip>:<port>` line each.
pub fn access_log() -> PathBuf {
    box_env::ext_access_log()
}

/// `curl -s` of `url` from the external host, giving up after `max_time`:
/// the trimmed body, or curl's complaint.
pub fn from_outside(url: &str, max_time: Duration) -> Result<String, String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", netns(), "curl", "-s", "--max-time"])
        .arg(max_time.as_secs().to_string())
        .arg(url)
        .output()
        .expect("ip netns exec");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into())
    }
}
