//! The `vpcnet.io/v1` API: one module per kind, plus the pieces they share.
//!
//! Field names follow the Kube-OVN shapes the product grew from, so a manifest
//! moves over by changing `apiVersion` (and, for tenant kinds, adding a
//! namespace). Everything that can be checked without a lookup is checked at
//! admission by the OpenAPI schema and CEL rules declared on these types; what
//! needs a lookup (does the VPC exist, is the EIP taken) is the operator's job
//! and ends in a `Ready=False` condition with a reason.

pub mod cel;
pub mod condition;
pub mod contract;
pub mod crds;
pub mod dnat;
pub mod dns_zone;
pub mod eip;
pub mod fip;
pub mod nat_gateway;
pub mod nat_rule_status;
pub mod seal;
pub mod security_group;
pub mod snat;
pub mod subnet;
pub mod switch_lb_rule;
pub mod vip;
pub mod vpc;
pub mod vpc_dns;

pub use dnat::{IptablesDnatRule, IptablesDnatRuleSpec, IptablesDnatRuleStatus};
pub use eip::{IptablesEIP, IptablesEIPSpec, IptablesEIPStatus};
pub use fip::{IptablesFIPRule, IptablesFIPRuleSpec, IptablesFIPRuleStatus};
pub use nat_gateway::{
    ActiveReplica, Failover, VpcNatGateway, VpcNatGatewaySpec, VpcNatGatewayStatus,
};
pub use security_group::{SecurityGroup, SecurityGroupSpec, SecurityGroupStatus};
pub use snat::{IptablesSnatRule, IptablesSnatRuleSpec, IptablesSnatRuleStatus};
pub use subnet::{Subnet, SubnetSpec, SubnetStatus};
pub use switch_lb_rule::{SwitchLBRule, SwitchLBRuleSpec, SwitchLBRuleStatus};
pub use vip::{Vip, VipSpec, VipStatus};
pub use vpc::{Vpc, VpcSpec, VpcStatus};
pub use vpc_dns::{VpcDns, VpcDnsSpec, VpcDnsStatus};

/// API group of every kind.
pub const GROUP: &str = "vpcnet.io";
/// The one served and stored version.
pub const VERSION: &str = "v1";
/// `kubectl get vpcnet` lists every kind of this category.
pub const CATEGORY: &str = "vpcnet";
