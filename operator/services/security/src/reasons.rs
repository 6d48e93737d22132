//! Why a SecurityGroup is not programmed, or a pod's groups are not taken
//! (the `Ready` reason of a group; the reason of an Event on a pod).

use vpcnet_runtime::reasons;
use vpcnet_runtime::refusal::Refusal;

reasons! {
    /// Reasons of SecurityGroups and of pods' memberships.
    pub enum SgReason {
        /// A rule's `remoteSecurityGroup` names no live group of the namespace.
        RemoteGroupNotFound,
        /// A rule cannot be written as an OVN match.
        InvalidRule,
        /// The namespace has as many groups as the priority layout has slots.
        TooManyGroups,
        /// The group is being deleted but pods or other groups still use it.
        InUse,
        /// A pod's annotation names a group that does not exist (or is being deleted).
        SecurityGroupNotFound,
        /// A pod's annotation names a group of another namespace.
        ForeignSecurityGroup,
        /// A pod's annotation is not a comma-separated list of group names.
        InvalidAnnotation,
    }
}

/// A refusal of a group or of a pod's groups.
pub type SgRefusal = Refusal<SgReason>;

/// The `Ready` reason of a programmed group.
pub const PROGRAMMED: &str = "Programmed";
