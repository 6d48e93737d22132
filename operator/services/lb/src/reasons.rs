//! Why a Vip or a SwitchLBRule is not accepted (its `Ready` reason).

use vpcnet_runtime::reasons;
use vpcnet_runtime::refusal::Refusal;

reasons! {
    /// Reasons of Vips and SwitchLBRules.
    pub enum LbReason {
        /// The named subnet does not exist (or is an external network).
        SubnetNotFound,
        /// The subnet's VPC is not this namespace's.
        Forbidden,
        /// The requested address is outside the subnet.
        OutOfRange,
        /// The requested address is taken, or none is free.
        IPConflict,
        /// The subnet's address pool is not ready yet.
        SubnetNotReady,
        /// No VPC places this namespace's pods.
        NoVpc,
        /// A VIP inside one of the VPC's subnets that no Vip of the
        /// namespace reserves (a pod could be given it).
        VipNotReserved,
        /// An older rule of the VPC serves the same VIP, port and protocol.
        Conflict,
    }
}

/// A refusal of a Vip or SwitchLBRule.
pub type LbRefusal = Refusal<LbReason>;
