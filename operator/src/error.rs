//! The operator's one error type; every variant has a metric label.

use crate::ipam::IpamError;

/// What can go wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a call.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// OVN's Northbound DB refused or failed a transaction.
    #[error("OVN northbound: {0}")]
    Ovn(#[from] ovn::Error),
    /// No address could be given.
    #[error("address management: {0}")]
    Ipam(#[from] IpamError),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Something the object depends on is not there yet (retried).
    #[error("waiting for {0}")]
    Dependency(String),
}

/// Result of the operator's fallible steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Label for the `reconcile_errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Ovn(_) => "ovn",
            Error::Ipam(_) => "ipam",
            Error::Finalizer(_) => "finalizer",
            Error::Dependency(_) => "dependency",
        }
    }
}

impl<E: std::error::Error> From<kube::runtime::finalizer::Error<E>> for Error {
    fn from(e: kube::runtime::finalizer::Error<E>) -> Self {
        Error::Finalizer(e.to_string())
    }
}
