//! What the operator, the CNI, the gateway agent and the tests agree on:
//! annotation and label keys, condition types, environment names and how
//! objects are named. Each has one definition here; a string spelled twice
//! in two components is a contract that can drift apart silently.

/// Pod annotations the operator writes and the CNI reads.
pub mod annotations {
    /// On a two-replica gateway's Lease, written by the agent that took it:
    /// why (`LeaseExpired`, `Released`, `Initial`).
    pub const FAILOVER_CAUSE: &str = "vpcnet.io/failover-cause";
    /// On that Lease: the pod that held it before.
    pub const PREVIOUS_HOLDER: &str = "vpcnet.io/previous-holder";
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
    /// pins only its MAC, not its address. Honoured in the operator's
    /// namespace only.
    pub const ROUTER: &str = "vpcnet.io/router";
    /// The subnet the address came from (or is asked from).
    pub const SUBNET: &str = "vpcnet.io/subnet";
    /// Pod template annotation of a gateway naming the seal key
    /// (`SealKey::id`): a new key rolls the pod.
    pub const SEAL_KEY_ID: &str = "vpcnet.io/seal-key-id";
    /// Multus' network-selection annotation.
    pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
    /// Written by the user: a comma-separated list of SecurityGroups of the
    /// pod's own namespace the pod is a member of.
    pub const SECURITY_GROUPS: &str = "vpcnet.io/security_groups";
    /// Kube-OVN's spelling of [`SECURITY_GROUPS`] (ours wins when a pod
    /// carries both).
    pub const KUBE_OVN_SECURITY_GROUPS: &str = "ovn.kubernetes.io/security_groups";
    /// Written by the operator on its own pods (the VPC DNS servers): a
    /// comma-separated list of `IPV4:PORT/PROTO` (`tcp` or `udp`) outside
    /// every VPC the pod may open connections to over its probe path, e.g.
    /// `10.255.0.1:36443/tcp,172.16.3.2:53/udp`. Honoured only for pods of
    /// the CNI's `hostEgressNamespace`; anywhere else ADD fails.
    pub const HOST_EGRESS: &str = "vpcnet.io/host-egress";

    /// Kube-OVN's pod annotations that mean the same request as one of ours,
    /// so workloads written for Kube-OVN keep their addresses and subnets:
    /// `(theirs, ours)`. Ours win when a pod carries both. (Kube-OVN's
    /// `logical_switch` names a subnet, the request ours spell `subnet`.)
    pub const KUBE_OVN_ALIASES: &[(&str, &str)] = &[
        ("ovn.kubernetes.io/ip_address", IP_ADDRESS),
        ("ovn.kubernetes.io/ip_pool", IP_POOL),
        ("ovn.kubernetes.io/logical_switch", SUBNET),
    ];
}

/// `external_ids` keys of OVN rows and OVS interfaces.
pub mod external_ids {
    /// `namespace/name` of the pod a port or interface belongs to.
    pub const POD: &str = "vpcnet.io/pod";
    /// The subnet of a pod's port.
    pub const SUBNET: &str = "vpcnet.io/subnet";
    /// The address of a pod's port.
    pub const IP: &str = "vpcnet.io/ip";
    /// The StatefulSet of a pod's port (its address outlives the pod).
    pub const STATEFULSET: &str = "vpcnet.io/statefulset";
    /// The container of an OVS interface (CNI).
    pub const CONTAINER_ID: &str = "vpcnet.io/container-id";
    /// The interface name inside the pod (CNI).
    pub const IFNAME: &str = "vpcnet.io/ifname";
    /// The CNI network name (CNI).
    pub const NETWORK: &str = "vpcnet.io/network";
    /// The namespace of a SecurityGroup's Port_Group (the domain within
    /// which its ACL slot is unique).
    pub const SG_NAMESPACE: &str = "vpcnet.io/sg-namespace";
    /// A SecurityGroup's ACL priority slot among its namespace's groups.
    pub const SG_SLOT: &str = "vpcnet.io/sg-slot";
}

/// Labels on the objects the operator creates.
pub mod labels {
    /// `app.kubernetes.io/name`.
    pub const APP_NAME: &str = "app.kubernetes.io/name";
    /// The `APP_NAME` value of NAT gateway workloads.
    pub const NATGW_APP: &str = "vpcnet-natgw";
    /// The gateway a workload runs.
    pub const NAT_GATEWAY: &str = "vpcnet.io/nat-gateway";
    /// The `APP_NAME` value of DNS server workloads.
    pub const DNS_APP: &str = "vpcnet-dns";
    /// The VpcDns a DNS server pod serves.
    pub const VPC_DNS: &str = "vpcnet.io/vpc-dns";
    /// `Kind.namespace.name` of the object that wants a child (what
    /// `KubeApplier` deletes when it is no longer desired).
    pub const OWNER: &str = "vpcnet.io/owner";
}

/// Condition types beyond `Ready` (`crate::condition::READY`).
pub mod conditions {
    /// Written by the operator: checks passed, address assigned.
    pub const ACCEPTED: &str = "Accepted";
    /// Written by the gateway agent: live in the gateway.
    pub const PROGRAMMED: &str = "Programmed";
    /// Written by the operator on a gateway: the VPC routes through it.
    pub const DEFAULT_ROUTE: &str = "DefaultRoute";
}

/// Environment of the gateway agent, set by the operator's StatefulSet.
pub mod agent_env {
    /// The gateway's name.
    pub const GATEWAY: &str = "VPCNET_GATEWAY";
    /// The VPC router's address on the gateway's subnet.
    pub const LAN_GATEWAY: &str = "VPCNET_LAN_GATEWAY";
    /// The VPC's CIDRs, comma-separated.
    pub const VPC_CIDRS: &str = "VPCNET_VPC_CIDRS";
    /// The external network's gateway.
    pub const EXTERNAL_GATEWAY: &str = "VPCNET_EXTERNAL_GATEWAY";
    /// The ConfigMap the agent keeps its last applied state in.
    pub const SNAPSHOT_CONFIGMAP: &str = "VPCNET_SNAPSHOT_CONFIGMAP";
    /// The seal key (from the Secret `crate::seal::SECRET_NAME`).
    pub const SEAL_KEY: &str = "VPCNET_SEAL_KEY";
    /// The pod's name (downward API).
    pub const POD_NAME: &str = "POD_NAME";
    /// The pod's namespace (downward API).
    pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
    /// Two replicas: the shared LAN address (`lanIp/prefix`) the active holds.
    pub const LAN_VIP: &str = "VPCNET_LAN_VIP";
    /// Two replicas: each replica's own external address (`ip/prefix`), by
    /// ordinal, comma-separated: the agent puts its own on `net1`.
    pub const EXTERNAL_IPS: &str = "VPCNET_EXTERNAL_IPS";
    /// Two replicas: the Lease (in the pod's namespace) that says which is active.
    pub const LEASE: &str = "VPCNET_LEASE";
    /// Two replicas: the Lease's duration in milliseconds.
    pub const LEASE_DURATION_MS: &str = "VPCNET_LEASE_DURATION_MS";
}

/// The tenant DNS server (`vpcnet-dns`) and the zone ConfigMap the operator
/// writes for it (`crate::dns_zone`).
pub mod dns {
    /// Data key of the zone ConfigMap holding the `ZoneDocument` JSON.
    pub const ZONE_KEY: &str = "zone.json";
    /// Port of DNS over UDP and TCP.
    pub const DNS_PORT: u16 = 53;
    /// Port of `/metrics`, `/readyz` and `/healthz`.
    pub const METRICS_PORT: u16 = 9153;
}

/// Environment of the DNS server, set by the operator's Deployment.
pub mod dns_env {
    /// `<namespace>/<name>` of the zone ConfigMap.
    pub const ZONE: &str = "VPCNET_DNS_ZONE";
    /// DNS address (UDP and TCP), default `0.0.0.0:53`.
    pub const LISTEN: &str = "VPCNET_DNS_LISTEN";
    /// HTTP address of metrics and probes, default `0.0.0.0:9153`.
    pub const METRICS: &str = "VPCNET_DNS_METRICS";
}

/// Finalizer on every kind the operator cleans up after.
pub const FINALIZER: &str = "vpcnet.io/cleanup";

/// Field manager of the operator's server-side applies.
pub const OPERATOR_MANAGER: &str = "vpcnet-operator";

/// The VPC of subnets that name none (and of the default subnet).
pub const DEFAULT_VPC: &str = "ovn-cluster";

/// The subnet for pods of namespaces no Subnet claims.
pub const DEFAULT_SUBNET: &str = "ovn-default";

/// The namespace the operator and the gateways run in unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "vpcnet-system";

/// Names of things derived from the names of objects.
pub mod naming {
    /// The StatefulSet, ServiceAccount and bindings of NAT gateway `gw`.
    pub fn natgw_workload(gw: &str) -> String {
        format!("vpc-nat-gw-{gw}")
    }

    /// The Deployment, ServiceAccount, Role, RoleBinding, disruption budget
    /// (and, in the default VPC, the Service holding the cluster DNS
    /// address) of VpcDns `name`.
    pub fn dns_workload(name: &str) -> String {
        format!("vpc-dns-{name}")
    }

    /// The ConfigMap holding VpcDns `name`'s zone document.
    pub fn dns_zone(name: &str) -> String {
        format!("vpc-dns-{name}-zone")
    }

    /// The Load_Balancer row of VpcDns `name`'s address for one protocol
    /// (tenant VPCs; in the default VPC the lb service programs its Service).
    pub fn dns_lb(name: &str, protocol: &str) -> String {
        format!("vpcnet-dns:{name}:{protocol}")
    }

    /// The first (with one replica the only) pod of NAT gateway `gw`'s StatefulSet.
    pub fn natgw_pod(gw: &str) -> String {
        natgw_replica(gw, 0)
    }

    /// Pod `ordinal` of NAT gateway `gw`'s StatefulSet.
    pub fn natgw_replica(gw: &str, ordinal: u32) -> String {
        format!("{}-{ordinal}", natgw_workload(gw))
    }

    /// The copy of the external NetworkAttachmentDefinition (without IPAM)
    /// that two-replica gateway `gw`'s pods attach `net1` with.
    pub fn natgw_attachment(gw: &str) -> String {
        format!("{}-ext", natgw_workload(gw))
    }

    /// The Lease the replicas of two-replica gateway `gw` hold to be active
    /// (also the name of its PodDisruptionBudget).
    pub fn natgw_lease(gw: &str) -> String {
        format!("{}-active", natgw_workload(gw))
    }

    /// The ConfigMap in which gateway `gw`'s agent keeps its last applied state.
    pub fn natgw_snapshot(gw: &str) -> String {
        format!("{}-snapshot", natgw_workload(gw))
    }

    /// The logical router of a VPC. OVN may be shared with other systems, so
    /// every row name carries our prefix.
    pub fn router(vpc: &str) -> String {
        format!("vpcnet-{vpc}")
    }

    /// The logical switch of a subnet.
    pub fn switch(subnet: &str) -> String {
        format!("vpcnet-{subnet}")
    }

    /// The router's port onto a subnet. Router and switch ports share one
    /// name space in OVN's southbound DB, so the two ends differ in more than
    /// order, and `_` (never in a pod or namespace name) keeps both apart
    /// from pod ports.
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

    /// The Load_Balancer_Group of a VPC, referenced once by each of its
    /// switches and by its router. The table has no `external_ids`, so the
    /// name is the ownership: [`LB_GROUP_PREFIX`] marks ours.
    pub fn lb_group(vpc: &str) -> String {
        format!("{LB_GROUP_PREFIX}{vpc}")
    }

    /// The prefix of every VPC's Load_Balancer_Group name.
    pub const LB_GROUP_PREFIX: &str = "vpcnet-lbg-";

    /// The headless Service (and, for fixed endpoints, the EndpointSlice)
    /// through which SwitchLBRule `rule` tracks its backends.
    pub fn slr_service(rule: &str) -> String {
        format!("{SLR_SERVICE_PREFIX}{rule}")
    }

    /// The prefix of a SwitchLBRule's Service name.
    pub const SLR_SERVICE_PREFIX: &str = "slr-";

    /// The Load_Balancer row of a SwitchLBRule's ports of one protocol.
    pub fn slr_lb(namespace: &str, rule: &str, protocol: &str) -> String {
        format!("vpcnet-slr:{namespace}/{rule}:{protocol}")
    }

    /// The Port_Group of SecurityGroup `namespace/name`. Port_Group names
    /// (and the address sets `$<name>_ip4` OVN derives from them) allow
    /// only letters, digits and `_`, so the two names are spelled with
    /// `-` as `_h`, `.` as `_d` and joined by `_s`: reversible, so two
    /// groups never share a Port_Group.
    pub fn security_group_port_group(namespace: &str, name: &str) -> String {
        format!(
            "{SG_PORT_GROUP_PREFIX}{}_s{}",
            port_group_spelling(namespace),
            port_group_spelling(name)
        )
    }

    /// The prefix of every SecurityGroup's Port_Group name.
    pub const SG_PORT_GROUP_PREFIX: &str = "vpcnet_sg_";

    /// The Port_Group holding every port of subnet `subnet` that is in at
    /// least one SecurityGroup: its default deny and what a pod needs to
    /// live (its gateway, neighbour discovery).
    pub fn security_base_port_group(subnet: &str) -> String {
        format!("{SG_BASE_PORT_GROUP_PREFIX}{}", port_group_spelling(subnet))
    }

    /// The prefix of every subnet's base Port_Group name.
    pub const SG_BASE_PORT_GROUP_PREFIX: &str = "vpcnet_sgb_";

    /// `name` in the characters a Port_Group name allows, reversibly:
    /// letters and digits stay, `-` is `_h`, `.` is `_d`, anything else
    /// `_x<hex>_`; no spelling contains `_s`.
    fn port_group_spelling(name: &str) -> String {
        let mut out = String::with_capacity(name.len());
        for c in name.chars() {
            match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' => out.push(c),
                '-' => out.push_str("_h"),
                '.' => out.push_str("_d"),
                _ => out.push_str(&format!("_x{:x}_", c as u32)),
            }
        }
        out
    }

    /// The Load_Balancer row of a Service's ports of one protocol (a label
    /// for people; the row's owner is in its `external_ids`).
    pub fn service_lb(namespace: &str, service: &str, protocol: &str) -> String {
        format!("vpcnet-svc:{namespace}/{service}:{protocol}")
    }
}

#[cfg(test)]
mod tests {
    use super::naming::*;

    #[test]
    fn port_names_never_collide() {
        // A VPC and a subnet of the same name once gave both ends one name.
        assert_ne!(router_port("x"), switch_router_port("x"));
        assert_ne!(switch_router_port("a"), pod_port("b", "vpcnet_lsp_a"));
        assert!(!pod_port("ns", "p").contains('_'));
    }

    #[test]
    fn security_group_port_groups_are_valid_names_and_never_collide() {
        let names = [
            ("a-b", "c"),
            ("a", "b-c"),
            ("a", "b.c"),
            ("a", "b_hc"),
            ("ab", "c"),
            ("a", "bc"),
            ("a_s", "b"),
        ];
        let pgs: std::collections::BTreeSet<String> = names
            .iter()
            .map(|(ns, n)| security_group_port_group(ns, n))
            .collect();
        assert_eq!(pgs.len(), names.len(), "{pgs:?}");
        for pg in pgs.iter().chain([&security_base_port_group("net-1.a")]) {
            assert!(
                pg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{pg}"
            );
        }
        assert_eq!(
            security_group_port_group("t-1", "sg.web"),
            "vpcnet_sg_t_h1_ssg_dweb"
        );
        assert_ne!(
            security_base_port_group("x"),
            security_group_port_group("x", "")
        );
    }

    #[test]
    fn a_gateway_pod_is_its_workload_with_ordinal_zero() {
        assert_eq!(natgw_pod("g"), "vpc-nat-gw-g-0");
        assert_eq!(natgw_snapshot("g"), "vpc-nat-gw-g-snapshot");
    }
}
