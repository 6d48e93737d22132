//! A gateway pod on a lost node. The gateway is a one-pod StatefulSet,
//! which never starts a second pod while the first still exists; and a pod
//! on a node that stopped answering is never confirmed gone, because only
//! its kubelet could confirm it. Left alone, a tenant's NAT would stay down
//! until the node came back. So once Kubernetes itself judges the node lost
//! (the node lifecycle controller's `unreachable` NoExecute taint, set when
//! the kubelet has been silent for the node-monitor grace period) or the
//! node object is gone, the operator deletes the pod without waiting for
//! the kubelet, and the StatefulSet starts its successor on a live node,
//! which restores every rule from the gateway's snapshot.
//!
//! A node that is merely slow keeps its gateway: `not-ready` (a kubelet
//! that still reports, but unhealthy) is not enough.

use k8s_openapi::api::core::v1::{Node, Pod};

/// The taint the node lifecycle controller puts on a node it has lost.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Why `pod` is to be deleted without its kubelet, if it is: `node` is the
/// object of the node it is bound to (`None`: no such node).
pub fn lost_node_reason(pod: &Pod, node: Option<&Node>) -> Option<String> {
    let bound = pod.spec.as_ref()?.node_name.as_deref()?;
    let Some(node) = node else {
        return Some(format!("its node {bound} no longer exists"));
    };
    let unreachable = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.key == UNREACHABLE_TAINT && t.effect == "NoExecute")
        });
    unreachable
        .then(|| format!("its node {bound} is unreachable (tainted {UNREACHABLE_TAINT}:NoExecute)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, Taint};

    fn pod(node: Option<&str>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(taints: &[(&str, &str)]) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_an_unreachable_or_missing_node_loses_its_gateway() {
        let p = pod(Some("node-2"));
        assert!(lost_node_reason(&p, Some(&node(&[]))).is_none());
        assert!(
            lost_node_reason(
                &p,
                Some(&node(&[("node.kubernetes.io/not-ready", "NoExecute")]))
            )
            .is_none(),
            "a kubelet that still reports keeps its gateway"
        );
        assert!(
            lost_node_reason(&p, Some(&node(&[(UNREACHABLE_TAINT, "NoSchedule")]))).is_none(),
            "the NoSchedule half alone is not the controller's verdict"
        );
        let r = lost_node_reason(&p, Some(&node(&[(UNREACHABLE_TAINT, "NoExecute")]))).unwrap();
        assert!(r.contains("node-2") && r.contains("unreachable"), "{r}");
        assert!(
            lost_node_reason(&p, None)
                .unwrap()
                .contains("no longer exists")
        );
        assert!(
            lost_node_reason(&pod(None), None).is_none(),
            "an unscheduled pod is not on a lost node"
        );
    }
}
