//! Why a VpcDns is not serving (the reason of its `Ready` condition).

use vpcnet_runtime::reasons;
use vpcnet_runtime::refusal::Refusal;

reasons! {
    /// Reasons of VpcDnses.
    pub enum DnsReason {
        /// `spec.vpc` names no VPC (or one being deleted).
        VpcNotFound,
        /// `spec.subnet` names no Subnet.
        SubnetNotFound,
        /// `spec.subnet` is a subnet of another VPC, or not a VPC subnet.
        SubnetNotInVpc,
        /// An older VpcDns already serves the VPC.
        VpcAlreadyServed,
        /// No resolver address: neither `spec.vip` nor the operator's cluster DNS address.
        NoVip,
        /// `spec.vip` lies inside one of the VPC's subnets (a pod could be given it).
        VipInSubnet,
        /// An upstream the servers cannot be granted a path to.
        UnsupportedUpstream,
        /// The resolver address is held by another Service of the cluster.
        VipTaken,
        /// No server is ready yet.
        NoReadyServers,
    }
}

/// A refusal of a VpcDns.
pub type DnsRefusal = Refusal<DnsReason>;

/// The `Ready` reason of a VpcDns with ready servers behind its address.
pub const SERVING: &str = "Serving";
