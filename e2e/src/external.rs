//! The box's external host (netns `vpcnet-ext`, 172.16.3.2): the outside
//! world a NAT gateway's EIPs face.

use std::time::Duration;

/// The external host's network namespace.
pub const NETNS: &str = "vpcnet-ext";

/// `curl -s` of `url` from the external host, giving up after `max_time`:
/// the trimmed body, or curl's complaint.
pub fn from_outside(url: &str, max_time: Duration) -> Result<String, String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", NETNS, "curl", "-s", "--max-time"])
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
