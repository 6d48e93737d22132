//! A NAT gateway as the tests see it: its pod and snapshot in the operator's
//! namespace (named by `vpcnet_api::contract::naming`), its nat table, and
//! the comment that tags each rule's lines.

use vpcnet_api::contract::{DEFAULT_NAMESPACE, naming};

use crate::kubectl::{Kubectl, Output};

/// Namespace the operator runs gateways in (the box deploys it there).
pub const GW_NS: &str = DEFAULT_NAMESPACE;

/// `iptables-save -t nat` in the gateway's pod (`ok` is false while the pod
/// cannot be reached).
pub fn nat_table(k: &Kubectl, gw: &str) -> Output {
    k.exec(
        GW_NS,
        &naming::natgw_pod(gw),
        &["iptables-save", "-t", "nat"],
    )
}

/// The comment on the lines of DNAT rule `ns/name`, quoted as iptables-save
/// prints it (so `d1` does not match `d10`).
pub fn dnat_comment(ns: &str, name: &str) -> String {
    format!("\"vpcnet:dnat/{ns}/{name}\"")
}
