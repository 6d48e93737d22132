//! Two replicas: which pod is active, as the agents' Lease says, and
//! whether that changed since the status last said (pure).

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use vpcnet_api::contract::annotations as ann;
use vpcnet_api::{ActiveReplica, Failover, VpcNatGatewayStatus};

/// The active replica: the Lease's holder, if that is one of `pods`. A
/// holder that is not (yet, or any more) a pod of the gateway is nobody.
pub fn active(namespace: &str, lease: Option<&Lease>, pods: &[Pod]) -> Option<ActiveReplica> {
    let spec = lease?.spec.as_ref()?;
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
    let pod = pods.iter().find(|p| p.name_any() == holder)?;
    Some(ActiveReplica {
        pod: format!("{namespace}/{holder}"),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        since: spec.acquire_time.as_ref().map(|t| t.0.to_string()),
    })
}

/// The failover that made `now` active, when the status showed another
/// pod (or a different term of the same one) before; `None` if it is the
/// one the status already shows.
pub fn failover(
    namespace: &str,
    previous: Option<&VpcNatGatewayStatus>,
    lease: Option<&Lease>,
    now: &ActiveReplica,
) -> Option<Failover> {
    let before = previous.and_then(|s| s.active.as_ref());
    if before.is_some_and(|b| b.pod == now.pod && b.since == now.since) {
        return None;
    }
    let notes = lease.map(|l| l.annotations());
    let note = |k: &str| notes.and_then(|a| a.get(k)).cloned();
    Some(Failover {
        time: now.since.clone().unwrap_or_default(),
        from: note(ann::PREVIOUS_HOLDER)
            .filter(|p| !p.is_empty())
            .map(|p| format!("{namespace}/{p}"))
            .or_else(|| before.map(|b| b.pod.clone())),
        to: now.pod.clone(),
        cause: note(ann::FAILOVER_CAUSE).unwrap_or_else(|| "Unknown".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use std::collections::BTreeMap;

    fn lease(holder: &str, at: &str, cause: &str, prev: &str) -> Lease {
        let mut l = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                acquire_time: Some(MicroTime(at.parse().unwrap())),
                ..Default::default()
            }),
            ..Default::default()
        };
        l.metadata.annotations = Some(BTreeMap::from([
            (ann::FAILOVER_CAUSE.to_string(), cause.to_string()),
            (ann::PREVIOUS_HOLDER.to_string(), prev.to_string()),
        ]));
        l
    }

    fn pod(name: &str, node: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: Some(node.into()),
            ..Default::default()
        });
        p
    }

    #[test]
    fn the_holder_is_active_and_a_new_holder_is_a_failover() {
        let pods = [pod("gw-0", "node-1"), pod("gw-1", "node-2")];
        let first = lease("gw-0", "2026-12-02T10:00:00Z", "Initial", "");
        let a = active("sys", Some(&first), &pods).unwrap();
        assert_eq!(a.pod, "sys/gw-0");
        assert_eq!(a.node.as_deref(), Some("node-1"));
        let f = failover("sys", None, Some(&first), &a).unwrap();
        assert_eq!((f.cause.as_str(), f.from.as_ref()), ("Initial", None));
        let shown = VpcNatGatewayStatus {
            active: Some(a.clone()),
            last_failover: Some(f),
            ..Default::default()
        };
        assert_eq!(failover("sys", Some(&shown), Some(&first), &a), None);
        let second = lease("gw-1", "2026-12-02T10:05:00Z", "LeaseExpired", "gw-0");
        let b = active("sys", Some(&second), &pods).unwrap();
        let f = failover("sys", Some(&shown), Some(&second), &b).unwrap();
        assert_eq!(f.from.as_deref(), Some("sys/gw-0"));
        assert_eq!(f.to, "sys/gw-1");
        assert_eq!(f.cause, "LeaseExpired");
        assert!(f.time.starts_with("2026-12-02T10:05:00"));
        // A holder that is no pod of the gateway (gone, or not yet seen).
        let stray = lease("gw-7", "2026-12-02T10:06:00Z", "Released", "gw-1");
        assert_eq!(active("sys", Some(&stray), &pods), None);
        assert_eq!(active("sys", None, &pods), None);
    }
}
