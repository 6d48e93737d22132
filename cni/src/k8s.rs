//! The operator's allocation, read from the pod's annotations.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::config::PodRef;
use crate::error::CniError;

pub use vpcnet_api::contract::annotations::{
    ALLOCATED, CIDR, GATEWAY, HOST_EGRESS, IP_ADDRESS, LOGICAL_SWITCH, MAC_ADDRESS,
};

/// What the operator allocated for a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The pod's address with the subnet's prefix length.
    pub address: Ipv4Net,
    pub mac: [u8; 6],
    pub gateway: Ipv4Addr,
    pub logical_switch: String,
    /// The pod's [`HOST_EGRESS`] request, as written (see `egress`).
    pub host_egress: Option<String>,
}

impl Allocation {
    pub fn mac_string(&self) -> String {
        format_mac(&self.mac)
    }
}

pub fn format_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    // A unicast address (the group bit of the first octet clear).
    (mac[0] & 1 == 0 && mac != [0; 6]).then_some(mac)
}

/// The allocation in `annotations`: `Ok(None)` while [`ALLOCATED`]
/// is not `"true"`, an error when it is but the rest is unusable.
pub fn parse(
    pod: &PodRef,
    annotations: &BTreeMap<String, String>,
) -> Result<Option<Allocation>, CniError> {
    if annotations.get(ALLOCATED).map(String::as_str) != Some("true") {
        return Ok(None);
    }
    let bad = |reason: String| CniError::Annotations {
        pod: pod.to_string(),
        reason,
    };
    let get = |k: &str| {
        annotations
            .get(k)
            .ok_or_else(|| bad(format!("{k} is missing")))
    };
    let ip: Ipv4Addr = get(IP_ADDRESS)?.parse().map_err(|_| {
        bad(format!(
            "{IP_ADDRESS} {:?} is not an IPv4 address",
            annotations[IP_ADDRESS]
        ))
    })?;
    let cidr: Ipv4Net = get(CIDR)?.parse().map_err(|_| {
        bad(format!(
            "{CIDR} {:?} is not an IPv4 CIDR",
            annotations[CIDR]
        ))
    })?;
    let gateway: Ipv4Addr = get(GATEWAY)?.parse().map_err(|_| {
        bad(format!(
            "{GATEWAY} {:?} is not an IPv4 address",
            annotations[GATEWAY]
        ))
    })?;
    let mac = parse_mac(get(MAC_ADDRESS)?).ok_or_else(|| {
        bad(format!(
            "{MAC_ADDRESS} {:?} is not a unicast MAC address",
            annotations[MAC_ADDRESS]
        ))
    })?;
    let logical_switch = get(LOGICAL_SWITCH)?.clone();
    if !cidr.contains(&ip) || ip == cidr.network() || ip == cidr.broadcast() {
        return Err(bad(format!("address {ip} is not a host address of {cidr}")));
    }
    if !cidr.contains(&gateway) || gateway == ip {
        return Err(bad(format!(
            "gateway {gateway} is not another address of {cidr}"
        )));
    }
    let address = Ipv4Net::new(ip, cidr.prefix_len()).expect("prefix length from a valid CIDR");
    Ok(Some(Allocation {
        address,
        mac,
        gateway,
        logical_switch,
        host_egress: annotations.get(HOST_EGRESS).cloned(),
    }))
}

/// A client built from the kubeconfig at `path`.
pub async fn client(path: &Path) -> Result<kube::Client, CniError> {
    let kc = Kubeconfig::read_from(path)
        .map_err(|e| CniError::Config(format!("kubeconfig {}: {e}", path.display())))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| CniError::Config(format!("kubeconfig {}: {e}", path.display())))?;
    kube::Client::try_from(cfg).map_err(|e| CniError::Kube(e.to_string()))
}

async fn get_pod(api: &Api<Pod>, pod: &PodRef) -> Result<Pod, CniError> {
    match api.get_opt(&pod.name).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(CniError::Kube(format!("pod {pod} not found"))),
        Err(e) => Err(CniError::Kube(format!("get pod {pod}: {e}"))),
    }
}

fn annotations(p: &Pod) -> BTreeMap<String, String> {
    p.metadata.annotations.clone().unwrap_or_default()
}

/// Wait up to `timeout` for the operator to mark the pod allocated: one GET,
/// then a watch on that pod from the version read (re-listed if the watch
/// ends), so the allocation is seen as soon as it is written.
pub async fn wait_allocated(
    client: kube::Client,
    pod: &PodRef,
    timeout: Duration,
) -> Result<Allocation, CniError> {
    let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
    let mut last_seen: BTreeMap<String, String> = BTreeMap::new();
    let waiting = async {
        loop {
            let p = get_pod(&api, pod).await?;
            last_seen = annotations(&p);
            if let Some(a) = parse(pod, &last_seen)? {
                return Ok(a);
            }
            let rv = p.metadata.resource_version.clone().unwrap_or_default();
            let wp = WatchParams::default()
                .fields(&format!("metadata.name={}", pod.name))
                .timeout(timeout.as_secs().clamp(1, 290) as u32);
            let mut stream = match api.watch(&wp, &rv).await {
                Ok(s) => s.boxed(),
                Err(e) => {
                    tracing::warn!(error = %e, "watch failed; polling");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(WatchEvent::Added(p) | WatchEvent::Modified(p)) => {
                        last_seen = annotations(&p);
                        if let Some(a) = parse(pod, &last_seen)? {
                            return Ok(a);
                        }
                    }
                    Ok(WatchEvent::Deleted(_)) => {
                        return Err(CniError::Kube(format!(
                            "pod {pod} was deleted while waiting for its allocation"
                        )));
                    }
                    Ok(WatchEvent::Bookmark(_)) => {}
                    Ok(WatchEvent::Error(e)) => {
                        tracing::debug!(error = ?e, "watch error event; re-reading the pod");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "watch stream error; re-reading the pod");
                        break;
                    }
                }
            }
        }
    };
    match tokio::time::timeout(timeout, waiting).await {
        Ok(r) => r,
        Err(_) => {
            let state = match last_seen.get(ALLOCATED) {
                None => format!("annotation {ALLOCATED} missing"),
                Some(v) => format!("annotation {ALLOCATED} is {v:?}"),
            };
            Err(CniError::NotAllocated {
                msg: format!(
                    "pod {pod} not allocated by vpcnet within {}s ({state})",
                    timeout.as_secs()
                ),
                details: format!(
                    "the vpcnet operator writes {IP_ADDRESS}, {MAC_ADDRESS}, {CIDR}, {GATEWAY}, {LOGICAL_SWITCH} and then {ALLOCATED}=\"true\" once the pod's namespace is bound to a Subnet; check that the operator runs and the namespace has a Subnet"
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodRef {
        PodRef {
            namespace: "ns".into(),
            name: "p".into(),
        }
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn full() -> Vec<(&'static str, &'static str)> {
        vec![
            (IP_ADDRESS, "10.0.1.5"),
            (MAC_ADDRESS, "0a:58:0a:00:01:05"),
            (CIDR, "10.0.1.0/24"),
            (GATEWAY, "10.0.1.1"),
            (LOGICAL_SWITCH, "sub1"),
            (ALLOCATED, "true"),
        ]
    }

    #[test]
    fn parses_a_complete_allocation() {
        let a = parse(&pod(), &ann(&full())).unwrap().unwrap();
        assert_eq!(a.address.to_string(), "10.0.1.5/24");
        assert_eq!(a.mac_string(), "0a:58:0a:00:01:05");
        assert_eq!(a.gateway, Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(a.logical_switch, "sub1");
        assert_eq!(a.host_egress, None);
        let mut v = ann(&full());
        v.insert(HOST_EGRESS.into(), "10.0.0.1:443/tcp".into());
        let a = parse(&pod(), &v).unwrap().unwrap();
        assert_eq!(a.host_egress.as_deref(), Some("10.0.0.1:443/tcp"));
    }

    #[test]
    fn not_allocated_until_the_flag_is_true() {
        let mut v = full();
        v.pop();
        assert_eq!(parse(&pod(), &ann(&v)).unwrap(), None);
        v.push((ALLOCATED, "false"));
        assert_eq!(parse(&pod(), &ann(&v)).unwrap(), None);
    }

    #[test]
    fn rejects_bad_values() {
        for (k, v, why) in [
            (IP_ADDRESS, "10.0.2.5", "not a host address"),
            (IP_ADDRESS, "10.0.1.0", "not a host address"),
            (IP_ADDRESS, "x", "not an IPv4"),
            (GATEWAY, "10.0.1.5", "gateway"),
            (GATEWAY, "10.9.1.1", "gateway"),
            (MAC_ADDRESS, "01:00:5e:00:00:01", "unicast"),
            (MAC_ADDRESS, "0a:58:0a:00:01", "unicast"),
            (CIDR, "10.0.1.0/33", "CIDR"),
        ] {
            let mut a = ann(&full());
            a.insert(k.into(), v.into());
            let e = parse(&pod(), &a).unwrap_err().to_string();
            assert!(e.contains(why), "{k}={v}: {e}");
        }
        let mut a = ann(&full());
        a.remove(LOGICAL_SWITCH);
        assert!(
            parse(&pod(), &a)
                .unwrap_err()
                .to_string()
                .contains("logical_switch is missing")
        );
    }
}
