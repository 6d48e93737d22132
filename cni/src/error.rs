//! The plugin's errors and their CNI error codes (`code`, `msg`, `details`).

use rscni_plugin::error::Error;

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("invalid network configuration: {0}")]
    Config(String),
    #[error("invalid environment: {0}")]
    Env(String),
    #[error("network namespace {path}: {reason}")]
    Netns { path: String, reason: String },
    #[error("kubernetes API: {0}")]
    Kube(String),
    /// The operator did not (yet) allocate the pod.
    #[error("{msg}")]
    NotAllocated { msg: String, details: String },
    #[error("invalid vpcnet annotations on pod {pod}: {reason}")]
    Annotations { pod: String, reason: String },
    /// The pod asks for host egress and may not have it, or asks wrongly.
    #[error(
        "{} refused for pod {pod}: {reason}",
        vpcnet_api::contract::annotations::HOST_EGRESS
    )]
    HostEgress { pod: String, reason: String },
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("Open_vSwitch database: {0}")]
    Ovs(String),
    #[error("{msg}")]
    OvnNotInstalled { msg: String, details: String },
    #[error("check failed: {0}")]
    Check(String),
    #[error("{0}")]
    NotAvailable(String),
}

impl CniError {
    /// The CNI error code: spec codes where one fits, 100+ for ours.
    pub fn code(&self) -> u32 {
        match self {
            CniError::Config(_) => 7,
            CniError::Env(_) => 4,
            CniError::Netns { .. } => 8,
            CniError::NotAvailable(_) => 50,
            CniError::Kube(_) => 100,
            CniError::NotAllocated { .. } => 101,
            CniError::Annotations { .. } => 102,
            CniError::Netlink(_) => 103,
            CniError::Ovs(_) => 104,
            CniError::OvnNotInstalled { .. } => 105,
            CniError::Check(_) => 106,
            CniError::HostEgress { .. } => 107,
        }
    }
}

impl From<CniError> for Error {
    fn from(e: CniError) -> Self {
        let code = e.code();
        match e {
            CniError::Config(d) => Error::InvalidNetworkConfig(d),
            CniError::Env(d) => Error::InvalidEnvValue(d),
            CniError::NotAvailable(d) => Error::PluginNotAvailable(d),
            e @ CniError::Netns { .. } => Error::InvalidNetNS(e.to_string()),
            CniError::NotAllocated { msg, details }
            | CniError::OvnNotInstalled { msg, details } => Error::Custom(code, msg, details),
            other => {
                let msg = match &other {
                    CniError::Kube(_) => "kubernetes API request failed",
                    CniError::Annotations { .. } => "invalid vpcnet pod annotations",
                    CniError::HostEgress { .. } => "host egress refused",
                    CniError::Netlink(_) => "network interface setup failed",
                    CniError::Ovs(_) => "Open_vSwitch database request failed",
                    _ => "check failed",
                };
                Error::Custom(code, msg.into(), other.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_wire_fields() {
        let e: Error = CniError::NotAllocated {
            msg: "pod a/b not allocated".into(),
            details: "d".into(),
        }
        .into();
        assert_eq!(
            (u32::from(&e), e.msg(), e.details()),
            (101, "pod a/b not allocated", "d")
        );
        let e: Error = CniError::Config("x".into()).into();
        assert_eq!(u32::from(&e), 7);
        let e: Error = CniError::Ovs("gone".into()).into();
        assert_eq!(
            (u32::from(&e), e.details()),
            (104, "Open_vSwitch database: gone")
        );
        let e: Error = CniError::HostEgress {
            pod: "t/p".into(),
            reason: "no".into(),
        }
        .into();
        assert_eq!(
            (u32::from(&e), e.msg(), e.details()),
            (
                107,
                "host egress refused",
                "vpcnet.io/host-egress refused for pod t/p: no"
            )
        );
        let e: Error = CniError::NotAvailable("down".into()).into();
        assert_eq!(u32::from(&e), 50);
    }
}
