//! The lb service: every VPC's load balancers in OVN.
//!
//! Each Kubernetes Service in a namespace of a VPC gets one `Load_Balancer`
//! row per protocol (`clusterIP:port -> ready endpoints`, refusing
//! connections while a port has none), owned by the Service through
//! `external_ids` and a member of the VPC's `Load_Balancer_Group`, which
//! each of the VPC's switches and its router refer to once. ClusterIPs so
//! work inside every VPC with no kube-proxy, and only there. A tenant's
//! SwitchLBRule is a headless Service of its own plus the same machinery at
//! the tenant's VIP; a Vip reserves an address for it (or anything else).

pub mod build;
pub mod context;
pub mod group;
pub mod placement;
pub mod plan;
pub mod reasons;
pub mod service;
pub mod service_lb;
pub mod slr;
pub mod view;
pub mod vip;
pub mod watches;
pub mod write;

pub use context::Ctx;
pub use service::Lb;
pub use vpcnet_runtime::{Error, Result};

/// The owner kinds of the load balancers this service writes.
pub const OWNER_KINDS: &[&str] = &[service_lb::OWNER_KIND, slr::OWNER_KIND];
