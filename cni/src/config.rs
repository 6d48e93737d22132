//! The plugin's network configuration (stdin) and the pod identity (CNI_ARGS).

use std::path::PathBuf;
use std::time::Duration;

use rscni_plugin::types::NetConf;
use serde::Deserialize;

use crate::error::CniError;

pub const DEFAULT_OVSDB: &str = "unix:/var/run/openvswitch/db.sock";
pub const DEFAULT_BRIDGE: &str = "br-int";
pub const DEFAULT_LOG_FILE: &str = "/var/log/vpcnet-cni.log";

/// The vpcnet-specific fields of the network configuration; the standard ones
/// (`cniVersion`, `name`, `type`, `prevResult`, ...) stay in [`NetConf`].
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PluginConfig {
    /// Path of the kubeconfig used to read the pod's annotations (required).
    pub kubeconfig: Option<PathBuf>,
    /// The local Open_vSwitch database.
    #[serde(default = "default_ovsdb")]
    pub ovsdb: String,
    /// The OVS integration bridge the host end is added to.
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// How long ADD waits for the operator's `vpcnet.io/allocated: "true"`.
    #[serde(default = "default_timeout")]
    pub annotation_timeout_seconds: u64,
    /// How long ADD waits for `external_ids:ovn-installed="true"`.
    #[serde(default = "default_timeout")]
    pub ovn_installed_timeout_seconds: u64,
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Keep TX checksum offload on the pod's interface. Off by default: the
    /// OVS userspace datapath drops TCP with offloaded checksums unless it
    /// runs with `other_config:userspace-tso-enable=true`.
    #[serde(default)]
    pub tx_checksum_offload: bool,
    /// Where the plugin logs (stdout is the CNI protocol).
    #[serde(default = "default_log_file")]
    pub log_file: PathBuf,
    /// Network namespace (a path such as `/var/run/netns/node`) holding the
    /// bridge's datapath, where the host end of the veth is created. Default:
    /// the plugin's own. For nodes whose ovs-vswitchd runs in a namespace.
    #[serde(default)]
    pub node_netns: Option<PathBuf>,
    /// This node's probe addresses (see `probe`): unset, pods get no probe
    /// path and the kubelet cannot probe pods of VPCs.
    #[serde(default)]
    pub probe_cidr: Option<ipnet::Ipv4Net>,
    /// The kubelet's cgroup (v2 path, e.g. `system.slice/kubelet.service`):
    /// the only one allowed to connect over the probe path. Unset, every
    /// process of the node may.
    #[serde(default)]
    pub probe_kubelet_cgroup: Option<String>,
    /// The one namespace whose pods may carry `vpcnet.io/host-egress` (the
    /// operator's own; see `egress`). Unset, no pod may.
    #[serde(default)]
    pub host_egress_namespace: Option<String>,
    /// Where allocated probe addresses are recorded.
    #[serde(default = "default_probe_state_dir")]
    pub probe_state_dir: PathBuf,
}

fn default_probe_state_dir() -> PathBuf {
    "/var/lib/cni/vpcnet-probe".into()
}

fn default_ovsdb() -> String {
    DEFAULT_OVSDB.into()
}
fn default_bridge() -> String {
    DEFAULT_BRIDGE.into()
}
fn default_timeout() -> u64 {
    30
}
fn default_mtu() -> u32 {
    1400
}
fn default_log_file() -> PathBuf {
    DEFAULT_LOG_FILE.into()
}

impl PluginConfig {
    /// The probe path's settings, if it is on.
    pub fn probe(&self) -> Option<crate::probe::ProbeConfig> {
        Some(crate::probe::ProbeConfig {
            cidr: self.probe_cidr?,
            kubelet_cgroup: self.probe_kubelet_cgroup.clone(),
            state_dir: self.probe_state_dir.clone(),
        })
    }

    /// Decode the custom fields of `conf`.
    pub fn from_netconf(conf: &NetConf) -> Result<Self, CniError> {
        let map: serde_json::Map<String, serde_json::Value> = conf
            .custom
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let c: PluginConfig = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| CniError::Config(format!("network configuration {:?}: {e}", conf.name)))?;
        if c.mtu < 576 || c.mtu > 65535 {
            return Err(CniError::Config(format!(
                "mtu {} is outside 576..=65535",
                c.mtu
            )));
        }
        if c.bridge.is_empty() {
            return Err(CniError::Config("bridge must not be empty".into()));
        }
        Ok(c)
    }

    /// The kubeconfig path, which ADD and CHECK need.
    pub fn kubeconfig(&self) -> Result<&PathBuf, CniError> {
        self.kubeconfig.as_ref().ok_or_else(|| {
            CniError::Config("field \"kubeconfig\" (path of a kubeconfig file) is required".into())
        })
    }

    pub fn annotation_timeout(&self) -> Duration {
        Duration::from_secs(self.annotation_timeout_seconds)
    }

    pub fn ovn_installed_timeout(&self) -> Duration {
        Duration::from_secs(self.ovn_installed_timeout_seconds)
    }
}

/// The pod a CNI call is for, from `CNI_ARGS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

impl PodRef {
    /// Parse `K8S_POD_NAMESPACE` and `K8S_POD_NAME` out of
    /// `CNI_ARGS` (`KEY=VALUE;KEY=VALUE`).
    pub fn from_cni_args(args: Option<&str>) -> Result<Self, CniError> {
        let mut ns = None;
        let mut name = None;
        for kv in args.unwrap_or_default().split(';') {
            match kv.split_once('=') {
                Some(("K8S_POD_NAMESPACE", v)) if !v.is_empty() => ns = Some(v.to_string()),
                Some(("K8S_POD_NAME", v)) if !v.is_empty() => name = Some(v.to_string()),
                _ => {}
            }
        }
        match (ns, name) {
            (Some(namespace), Some(name)) => Ok(PodRef { namespace, name }),
            _ => Err(CniError::Env(format!(
                "CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME (got {:?})",
                args.unwrap_or_default()
            ))),
        }
    }

    /// The OVN Logical_Switch_Port name the operator creates
    /// (`vpcnet_api::contract::naming::pod_port`).
    pub fn iface_id(&self) -> String {
        vpcnet_api::contract::naming::pod_port(&self.namespace, &self.name)
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netconf(extra: serde_json::Value) -> NetConf {
        let mut v =
            serde_json::json!({"cniVersion": "1.0.0", "name": "vpcnet", "type": "vpcnet-cni"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults() {
        let c = PluginConfig::from_netconf(&netconf(serde_json::json!({"kubeconfig": "/etc/k"})))
            .unwrap();
        assert_eq!(
            c.kubeconfig.as_deref(),
            Some(std::path::Path::new("/etc/k"))
        );
        assert_eq!(c.ovsdb, DEFAULT_OVSDB);
        assert_eq!(c.bridge, "br-int");
        assert_eq!(
            (
                c.annotation_timeout_seconds,
                c.ovn_installed_timeout_seconds,
                c.mtu
            ),
            (30, 30, 1400)
        );
        assert!(!c.tx_checksum_offload);
        assert_eq!(c.log_file, PathBuf::from(DEFAULT_LOG_FILE));
        assert_eq!(c.node_netns, None);
        assert_eq!(c.host_egress_namespace, None);
    }

    #[test]
    fn explicit_fields_and_errors() {
        let c = PluginConfig::from_netconf(&netconf(serde_json::json!({
            "kubeconfig": "/k", "ovsdb": "unix:/x.sock", "bridge": "br0", "annotationTimeoutSeconds": 2,
            "ovnInstalledTimeoutSeconds": 3, "mtu": 9000, "txChecksumOffload": true, "logFile": "/tmp/l",
            "nodeNetns": "/var/run/netns/n", "hostEgressNamespace": "vpcnet-system"
        })))
        .unwrap();
        assert_eq!(c.host_egress_namespace.as_deref(), Some("vpcnet-system"));
        assert_eq!(
            (c.ovsdb.as_str(), c.bridge.as_str(), c.mtu),
            ("unix:/x.sock", "br0", 9000)
        );
        assert_eq!(
            (
                c.annotation_timeout().as_secs(),
                c.ovn_installed_timeout().as_secs()
            ),
            (2, 3)
        );
        assert!(c.tx_checksum_offload);
        assert!(PluginConfig::from_netconf(&netconf(serde_json::json!({"mtu": 10}))).is_err());
        assert!(PluginConfig::from_netconf(&netconf(serde_json::json!({"mtu": "x"}))).is_err());
        let no_kc = PluginConfig::from_netconf(&netconf(serde_json::json!({}))).unwrap();
        assert!(
            no_kc
                .kubeconfig()
                .unwrap_err()
                .to_string()
                .contains("kubeconfig")
        );
    }

    #[test]
    fn cni_args() {
        let p = PodRef::from_cni_args(Some(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-0;K8S_POD_UID=u",
        ))
        .unwrap();
        assert_eq!(
            p,
            PodRef {
                namespace: "ns1".into(),
                name: "web-0".into()
            }
        );
        assert_eq!(p.iface_id(), "web-0.ns1");
        assert_eq!(p.to_string(), "ns1/web-0");
        assert!(PodRef::from_cni_args(Some("K8S_POD_NAME=x")).is_err());
        assert!(PodRef::from_cni_args(None).is_err());
    }
}
