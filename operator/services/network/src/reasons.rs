//! Every reason the network service writes, in a condition or an Event: one
//! enum per kind, so a reason is never a typo. Each variant is written as its
//! own name; the strings are part of what users and alerts see, so they do
//! not change (see the test below).

vpcnet_runtime::reasons! {
    /// Why a Vpc's `Ready` condition says what it says.
    pub enum VpcReason {
        /// The logical router, its routes and policies are programmed.
        Programmed,
        /// Two static routes have the same prefix and policy.
        DuplicateRoute,
        /// Deletion waits until the VPC's subnets are deleted.
        InUse,
    }
}

vpcnet_runtime::reasons! {
    /// Why a Subnet's `Ready` condition says what it says.
    pub enum SubnetReason {
        /// The logical switch is attached to the VPC's router.
        Programmed,
        /// A provider (external) subnet: only its addresses are managed.
        IpamOnly,
        /// The cidrBlock is not IPv4.
        Unsupported,
        /// The subnet's VPC does not exist.
        VpcNotFound,
        /// The gateway is not an IPv4 address.
        InvalidGateway,
        /// An older subnet of the same VPC overlaps this one.
        CidrOverlap,
        /// The address pool cannot be built (CIDR, gateway or excludeIps).
        InvalidAddresses,
    }
}

vpcnet_runtime::reasons! {
    /// Why a pod got no address or port (an Event on the pod: pods carry no
    /// condition of ours).
    pub enum PodReason {
        /// No Subnet lists the namespace and there is no default subnet.
        NoSubnet,
        /// The pod's subnet annotation names a subnet it may not use.
        SubnetForbidden,
        /// An address annotation does not parse.
        InvalidAnnotation,
        /// The requested address is taken or reserved.
        IPConflict,
        /// The subnet (or the pod's ip_pool) has no free address.
        SubnetExhausted,
        /// The requested address is unusable (e.g. outside the subnet).
        InvalidIP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcnet_runtime::refusal::Reason;

    #[test]
    fn reasons_are_the_strings_written_before_the_enums() {
        let vpc = [
            VpcReason::Programmed,
            VpcReason::DuplicateRoute,
            VpcReason::InUse,
        ]
        .map(Reason::as_str);
        assert_eq!(vpc, ["Programmed", "DuplicateRoute", "InUse"]);
        let subnet = [
            SubnetReason::Programmed,
            SubnetReason::IpamOnly,
            SubnetReason::Unsupported,
            SubnetReason::VpcNotFound,
            SubnetReason::InvalidGateway,
            SubnetReason::CidrOverlap,
            SubnetReason::InvalidAddresses,
        ]
        .map(Reason::as_str);
        assert_eq!(
            subnet,
            [
                "Programmed",
                "IpamOnly",
                "Unsupported",
                "VpcNotFound",
                "InvalidGateway",
                "CidrOverlap",
                "InvalidAddresses"
            ]
        );
        let pod = [
            PodReason::NoSubnet,
            PodReason::SubnetForbidden,
            PodReason::InvalidAnnotation,
            PodReason::IPConflict,
            PodReason::SubnetExhausted,
            PodReason::InvalidIP,
        ]
        .map(Reason::as_str);
        assert_eq!(
            pod,
            [
                "NoSubnet",
                "SubnetForbidden",
                "InvalidAnnotation",
                "IPConflict",
                "SubnetExhausted",
                "InvalidIP"
            ]
        );
    }
}
