//! The operator's one error type; every variant has a metric label.

use vpcnet_ipam::IpamError;

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
    /// Adding or removing the finalizer itself failed.
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

/// The reconcile's own error comes out as itself, so it is counted and
/// retried as what it is; only a failure of the finalizer bookkeeping is a
/// finalizer error.
impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner,
            F::AddFinalizer(k) | F::RemoveFinalizer(k) => Error::Finalizer(k.to_string()),
            other => Error::Finalizer(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::finalizer::Error as F;

    #[test]
    fn a_reconcile_error_inside_the_finalizer_keeps_its_kind() {
        let e: Error = F::ApplyFailed(Error::Dependency("subnet x".into())).into();
        assert!(matches!(e, Error::Dependency(ref m) if m == "subnet x"));
        assert_eq!(e.metric_label(), "dependency");
        let e: Error = F::CleanupFailed(Error::Dependency("eips".into())).into();
        assert_eq!(e.metric_label(), "dependency");
        let e: Error = F::<Error>::UnnamedObject.into();
        assert_eq!(e.metric_label(), "finalizer");
    }
}
