//! The dns service: every VpcDns as `vpcnet-dns` servers inside its VPC.
//!
//! For each VpcDns the operator computes the zone of its VPC (the Services
//! and headless endpoints of the VPC's namespaces, nothing else) and writes
//! it into one ConfigMap that only that VpcDns's servers may read; it runs
//! the servers as a Deployment in the operator's namespace, placed on the
//! VpcDns's subnet; and it makes the VPC's resolver address (the kubelets'
//! `clusterDNS`, the same in every VPC) lead to those servers: in the
//! default VPC through a Service holding that address (programmed by the lb
//! service like any other), in a tenant VPC through Load_Balancer rows of
//! its own on the VPC's switches, because a ClusterIP exists once per
//! cluster.

pub mod backends;
pub mod context;
pub mod default_dns;
pub mod objects;
pub mod reasons;
pub mod reconcile;
pub mod rows;
pub mod service;
pub mod validate;
pub mod watches;
pub mod zone;

pub use context::{Ctx, Settings};
pub use service::Dns;
pub use vpcnet_runtime::{Error, Result};

/// The owner kind of the Load_Balancer rows this service writes.
pub const OWNER_KIND: &str = "VpcDns";
