//! A NAT gateway as the tests see it: its pod and snapshot in the operator's
//! namespace, its nat table, and the comment that tags each rule's lines.

use crate::kubectl::{Kubectl, Output};

/// Namespace the operator runs gateways in.
pub const GW_NS: &str = "vpcnet-system";

/// The pod of gateway `gw` (its StatefulSet has one replica).
pub fn gateway_pod(gw: &str) -> String {
    format!("vpc-nat-gw-{gw}-0")
}

/// The ConfigMap in which gateway `gw`'s agent keeps its last applied state.
pub fn snapshot_configmap(gw: &str) -> String {
    format!("vpc-nat-gw-{gw}-snapshot")
}

/// `iptables-save -t nat` in the gateway's pod (`ok` is false while the pod
/// cannot be reached).
pub fn nat_table(k: &Kubectl, gw: &str) -> Output {
    k.exec(GW_NS, &gateway_pod(gw), &["iptables-save", "-t", "nat"])
}

/// The comment on the lines of DNAT rule `ns/name`, quoted as iptables-save
/// prints it (so `d1` does not match `d10`).
pub fn dnat_comment(ns: &str, name: &str) -> String {
    format!("\"vpcnet:dnat/{ns}/{name}\"")
}
