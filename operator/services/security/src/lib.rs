//! The security service: SecurityGroups as OVN Port_Groups and ACLs.
//!
//! Each SecurityGroup is one `Port_Group` whose ports are its member pods'
//! switch ports (added by reference: the network service owns the ports)
//! and whose ACLs are its rules, laid out in OVN's single priority space so
//! that no two of our ACLs that can meet a packet share a priority (see
//! [`layout`]). Every port in at least one group is also in its subnet's
//! base group: default deny, except its gateway and neighbour discovery.
//! A pod joins groups with the annotation `vpcnet.io/security_groups`; an
//! annotation naming a missing or foreign group changes nothing and says
//! so in an Event. A rule change rewrites only the ACLs that differ, in one
//! transaction planned against this service's own monitor of the rows.

pub mod base;
pub mod build;
pub mod context;
pub mod decide;
pub mod group;
pub mod layout;
pub mod member;
pub mod plan;
pub mod reasons;
pub mod service;
pub mod view;
pub mod watches;
pub mod write;

pub use context::Ctx;
pub use service::Security;
pub use vpcnet_runtime::{Error, Result};

/// The owner kind of a SecurityGroup's Port_Group and ACLs.
pub const GROUP_OWNER_KIND: &str = "SecurityGroup";

/// The owner kind of a subnet's base Port_Group and ACLs (cluster-scoped,
/// named by the subnet).
pub const BASE_OWNER_KIND: &str = "SecuritySubnet";

/// The owner kinds of the rows this service writes.
pub const OWNER_KINDS: &[&str] = &[GROUP_OWNER_KIND, BASE_OWNER_KIND];
