//! Why an EIP or a NAT rule is not accepted (its `Accepted` reason).

use vpcnet_runtime::reasons;
use vpcnet_runtime::refusal::Refusal;

reasons! {
    /// Reasons of EIPs and SNAT/DNAT/FIP rules.
    pub enum NatReason {
        /// The named gateway does not exist.
        GatewayNotFound,
        /// The gateway's VPC does not exist.
        VpcNotFound,
        /// The VPC does not list the object's namespace.
        Forbidden,
        /// The EIP names an external subnet its gateway is not on.
        ExternalSubnetNotAttached,
        /// The external subnet is missing (or its pool is not ready).
        ExternalSubnetNotFound,
        /// `v4ip` is not an IPv4 address.
        InvalidIP,
        /// The requested address is taken, or none is free.
        IPConflict,
        /// Deletion waits for the rules on the EIP.
        InUse,
        /// The rule's EIP does not exist.
        EipNotFound,
        /// The rule's EIP has no address yet.
        EipNotReady,
        /// The rule's inside address is not a workload address of the VPC.
        OutsideVpc,
        /// The rule conflicts with an older rule on the same EIP.
        Conflict,
    }
}

/// A refusal of an EIP or rule.
pub type NatRefusal = Refusal<NatReason>;
