//! Two replicas share one pod template, so their `net1` cannot take its
//! address from the network-selection annotation (it would be the same in
//! both). Each gets it from its agent instead, through a copy of the
//! external subnet's NetworkAttachmentDefinition without IPAM, owned by
//! the gateway.

use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Multus' NetworkAttachmentDefinition (only its CNI configuration).
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema,
)]
#[kube(
    group = "k8s.cni.cncf.io",
    version = "v1",
    kind = "NetworkAttachmentDefinition",
    plural = "network-attachment-definitions",
    namespaced
)]
pub struct NetworkAttachmentDefinitionSpec {
    /// The CNI configuration (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

/// `config` without address management: no `ipam`, no `ips` capability,
/// in a single plugin or in each of a list's (pure). Errors: not JSON.
pub fn without_ipam(config: &str) -> Result<String, String> {
    let mut v: Value =
        serde_json::from_str(config).map_err(|e| format!("CNI configuration is not JSON: {e}"))?;
    fn strip(p: &mut Value) {
        if let Some(o) = p.as_object_mut() {
            o.remove("ipam");
            if let Some(c) = o.get_mut("capabilities").and_then(Value::as_object_mut) {
                c.remove("ips");
            }
        }
    }
    match v.get_mut("plugins").and_then(Value::as_array_mut) {
        Some(list) => list.iter_mut().for_each(strip),
        None => strip(&mut v),
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_has_no_address_management() {
        let one = without_ipam(
            r#"{"cniVersion":"1.0.0","type":"macvlan","master":"ext0","ipam":{"type":"static"},"capabilities":{"ips":true}}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&one).unwrap();
        assert_eq!(v["type"], "macvlan");
        assert_eq!(v["master"], "ext0");
        assert!(v.get("ipam").is_none() && v["capabilities"].get("ips").is_none());
        let list = without_ipam(
            r#"{"cniVersion":"1.0.0","plugins":[{"type":"macvlan","ipam":{"type":"static"}},{"type":"tuning"}]}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&list).unwrap();
        assert!(v["plugins"][0].get("ipam").is_none());
        assert_eq!(v["plugins"][1]["type"], "tuning");
        assert!(without_ipam("not json").is_err());
    }
}
