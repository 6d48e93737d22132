//! Names of the OVN rows and annotations the operator writes. OVN may be
//! shared with other systems, so every row name carries our prefix.

/// Annotation keys written on pods (read by `vpcnet-cni`).
pub mod annotations {
    /// The pod's address (also: a user-requested fixed address before allocation).
    pub const IP_ADDRESS: &str = "vpcnet.io/ip_address";
    /// The pod's MAC address.
    pub const MAC_ADDRESS: &str = "vpcnet.io/mac_address";
    /// The subnet's CIDR.
    pub const CIDR: &str = "vpcnet.io/cidr";
    /// The subnet's gateway.
    pub const GATEWAY: &str = "vpcnet.io/gateway";
    /// The OVN logical switch the pod's port is on.
    pub const LOGICAL_SWITCH: &str = "vpcnet.io/logical_switch";
    /// `"true"` once all of the above and the OVN port exist.
    pub const ALLOCATED: &str = "vpcnet.io/allocated";
    /// A comma-separated list of addresses a workload's pods take from.
    pub const IP_POOL: &str = "vpcnet.io/ip_pool";
    /// `"true"` on a pod that routes for others (NAT gateways): its port
    /// pins only its MAC, not its address.
    pub const ROUTER: &str = "vpcnet.io/router";
    /// The subnet the address came from.
    pub const SUBNET: &str = "vpcnet.io/subnet";
}

/// Finalizer on Vpc and Subnet objects.
pub const FINALIZER: &str = "vpcnet.io/cleanup";

/// Field manager for server-side apply.
pub const MANAGER: &str = "vpcnet-operator";

/// The logical router of a VPC.
pub fn router(vpc: &str) -> String {
    format!("vpcnet-{vpc}")
}

/// The logical switch of a subnet.
pub fn switch(subnet: &str) -> String {
    format!("vpcnet-{subnet}")
}

/// The router's port onto a subnet. Router and switch ports share one name
/// space in OVN's southbound DB, so the two ends differ in more than order,
/// and `_` (never in a pod or namespace name) keeps both apart from pod ports.
pub fn router_port(subnet: &str) -> String {
    format!("vpcnet_lrp_{subnet}")
}

/// The switch's port peering with the router port.
pub fn switch_router_port(subnet: &str) -> String {
    format!("vpcnet_lsp_{subnet}")
}

/// A pod's logical switch port; the CNI sets the same as the OVS iface-id.
pub fn pod_port(namespace: &str, pod: &str) -> String {
    format!("{pod}.{namespace}")
}

/// The IPAM holder key of a pod.
pub fn pod_holder(namespace: &str, pod: &str) -> String {
    format!("pod/{namespace}/{pod}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_never_collide() {
        // A VPC and a subnet of the same name once gave both ends one name.
        assert_ne!(router_port("x"), switch_router_port("x"));
        assert_ne!(switch_router_port("a"), pod_port("b", "vpcnet_lsp_a"));
        assert!(!pod_port("ns", "p").contains('_'));
    }
}
