//! Which refusal each pod was last told about. Pods carry no condition of
//! ours to record a verdict in, so the operator remembers, per pod, the last
//! refusal it published as an Event: a reconcile that finds the same reason
//! and message again (a requeue, a kubelet status update) publishes nothing.
//!
//! The memory is per process: after a restart or a change of leader each
//! refused pod gets its Event once more. An entry goes when the pod gets its
//! address, when it is deleted, and at garbage collection for pods that are
//! gone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use vpcnet_runtime::refusal::Refusal;

use crate::reasons::PodReason;

/// The key of a pod: its UID (a recreated pod of the same name is another
/// pod and hears about its own refusal), else its namespace and name.
pub fn key(pod: &Pod) -> String {
    pod.uid()
        .unwrap_or_else(|| format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()))
}

/// The last refusal told to each pod.
#[derive(Debug, Default)]
pub struct Notices {
    told: Mutex<HashMap<String, Refusal<PodReason>>>,
}

impl Notices {
    /// Whether `refusal` is news for the pod `key` (its situation changed);
    /// if so it is remembered as told.
    pub fn is_news(&self, key: &str, refusal: &Refusal<PodReason>) -> bool {
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        if told.get(key) == Some(refusal) {
            return false;
        }
        told.insert(key.to_string(), refusal.clone());
        true
    }

    /// Forgets the pod `key`: it has its address, or it is gone.
    pub fn forget(&self, key: &str) {
        self.told
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Forgets every pod not in `alive`.
    pub fn retain(&self, alive: &BTreeSet<String>) {
        self.told
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| alive.contains(k));
    }

    /// How many pods are remembered.
    pub fn len(&self) -> usize {
        self.told.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no pod is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(reason: PodReason, msg: &str) -> Refusal<PodReason> {
        Refusal::new(reason, msg)
    }

    #[test]
    fn the_same_refusal_is_told_once_a_new_one_again() {
        let n = Notices::default();
        let full = r(
            PodReason::SubnetExhausted,
            "subnet a: subnet a has no free address",
        );
        assert!(n.is_news("uid-1", &full));
        assert!(!n.is_news("uid-1", &full), "a requeue is not news");
        assert!(n.is_news("uid-2", &full), "another pod is");
        let conflict = r(
            PodReason::IPConflict,
            "subnet a: 10.0.1.9 is already in use",
        );
        assert!(n.is_news("uid-1", &conflict), "a new reason is news");
        let other = r(
            PodReason::IPConflict,
            "subnet a: 10.0.1.10 is already in use",
        );
        assert!(n.is_news("uid-1", &other), "so is a new message");
        assert!(n.is_news("uid-1", &full), "and a return to the old one");
    }

    #[test]
    fn an_allocated_or_gone_pod_is_forgotten() {
        let n = Notices::default();
        let none = r(PodReason::NoSubnet, "no Subnet lists namespace t");
        assert!(n.is_news("uid-1", &none));
        n.forget("uid-1");
        assert!(n.is_news("uid-1", &none), "refused again after it worked");
        assert!(n.is_news("uid-2", &none));
        n.retain(&BTreeSet::from(["uid-2".to_string()]));
        assert_eq!(n.len(), 1);
        assert!(!n.is_news("uid-2", &none));
        n.retain(&BTreeSet::new());
        assert!(n.is_empty());
    }

    #[test]
    fn a_pod_is_known_by_its_uid() {
        let mut p = Pod::default();
        p.metadata.namespace = Some("t".into());
        p.metadata.name = Some("web-0".into());
        assert_eq!(key(&p), "t/web-0");
        p.metadata.uid = Some("6f1c".into());
        assert_eq!(key(&p), "6f1c");
    }
}
