//! Why an object is not (fully) programmed: one type for every service. The
//! reason is an enum of the service's own, so a condition reason is never a
//! typo; the message says what is wrong and how to fix it.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;

use crate::Runtime;

/// A condition reason (CamelCase, as Kubernetes conditions want).
pub trait Reason: Copy + fmt::Debug + Send + Sync + 'static {
    /// The reason as written in a condition and an Event.
    fn as_str(self) -> &'static str;
}

/// Declares a service's reasons as an enum whose variants are written as
/// their own names.
#[macro_export]
macro_rules! reasons {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[$vm:meta])* $v:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis enum $name { $($(#[$vm])* $v),* }

        impl $crate::refusal::Reason for $name {
            fn as_str(self) -> &'static str {
                match self { $($name::$v => stringify!($v)),* }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::refusal::Reason::as_str(*self))
            }
        }
    };
}

/// A refusal: a reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal<R: Reason> {
    /// Why, for machines.
    pub reason: R,
    /// Why, for people: what is wrong and how to fix it.
    pub message: String,
}

impl<R: Reason> Refusal<R> {
    /// A refusal for `reason`.
    pub fn new(reason: R, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// The refusal as a condition of `type_`, carrying over the transition
    /// time of `previous` when unchanged.
    pub fn condition(
        &self,
        previous: &[Condition],
        type_: &str,
        generation: Option<i64>,
    ) -> Condition {
        crate::status::condition(
            previous,
            type_,
            false,
            self.reason.as_str(),
            self.message.clone(),
            generation,
        )
    }

    /// Publishes a Warning Event for the refusal unless `previous` already
    /// records it in the condition of `type_` for this generation: a
    /// reconcile repeats, the Event does not.
    pub async fn announce<K>(
        &self,
        rt: &Runtime,
        obj: &K,
        previous: &[Condition],
        type_: &str,
        action: &str,
    ) where
        K: Resource<DynamicType = ()>,
    {
        if crate::status::is_news(previous, type_, self.reason.as_str(), obj.meta().generation) {
            rt.event(
                obj,
                true,
                self.reason.as_str(),
                action,
                self.message.clone(),
            )
            .await;
        }
    }
}

impl<R: Reason> fmt::Display for Refusal<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::reasons! {
        /// Test reasons.
        enum Why {
            /// One.
            VpcNotFound,
            /// Two.
            Conflict,
        }
    }

    #[test]
    fn a_reason_is_written_as_its_name() {
        assert_eq!(Why::VpcNotFound.as_str(), "VpcNotFound");
        let r = Refusal::new(Why::Conflict, "taken");
        assert_eq!(r.to_string(), "Conflict: taken");
        let c = r.condition(&[], "Accepted", Some(3));
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.observed_generation),
            ("False", "Conflict", Some(3))
        );
    }
}

/// How a step of a reconcile ends short of success: the object is refused
/// (its own fault: a condition, an Event, no retry storm) or the step failed
/// (the world's fault: retried). One `?` serves both.
#[derive(Debug)]
pub enum Halt<R: Reason> {
    /// Refused, with a reason.
    Refused(Refusal<R>),
    /// Failed; retried.
    Failed(crate::Error),
}

impl<R: Reason> From<Refusal<R>> for Halt<R> {
    fn from(r: Refusal<R>) -> Self {
        Halt::Refused(r)
    }
}

impl<R: Reason, E: Into<crate::Error>> From<E> for Halt<R> {
    fn from(e: E) -> Self {
        Halt::Failed(e.into())
    }
}
