//! The typed statuses the Vpc and Subnet reconcilers write, for
//! [`vpcnet_runtime::status::report`]. Both the trait and the API's status
//! types are foreign to this crate, so each status is wrapped in a newtype
//! that serializes exactly as the status it wraps.
//!
//! The operator is the only writer of Vpc and Subnet status: it owns every
//! field, and of the conditions only the types it writes (`Ready`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::Serialize;
use vpcnet_api::condition::READY;
use vpcnet_api::{Subnet, SubnetStatus, Vpc, VpcStatus};
use vpcnet_runtime::status::OwnedStatus;

/// The condition types the network service writes on Vpcs and Subnets.
pub const OWNED_CONDITIONS: &[&str] = &[READY];

fn owned(conditions: &[Condition]) -> Vec<Condition> {
    vpcnet_runtime::status::conditions_of(conditions, OWNED_CONDITIONS)
}

/// A Vpc's status as the Vpc reconciler writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct VpcReport(pub VpcStatus);

impl VpcReport {
    /// The status `vpc` shows now, if any.
    pub fn current(vpc: &Vpc) -> Option<Self> {
        vpc.status.clone().map(Self)
    }
}

impl OwnedStatus for VpcReport {
    fn owned_part(&self) -> Self {
        Self(VpcStatus {
            conditions: owned(&self.0.conditions),
            ..self.0.clone()
        })
    }
}

/// A Subnet's status as the Subnet reconciler writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct SubnetReport(pub SubnetStatus);

impl SubnetReport {
    /// The status `subnet` shows now, if any.
    pub fn current(subnet: &Subnet) -> Option<Self> {
        subnet.status.clone().map(Self)
    }
}

impl OwnedStatus for SubnetReport {
    fn owned_part(&self) -> Self {
        Self(SubnetStatus {
            conditions: owned(&self.0.conditions),
            ..self.0.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vpcnet_runtime::status::says;

    fn cond(t: &str, reason: &str) -> Condition {
        vpcnet_api::condition::new(t, true, reason, "m", Some(4))
    }

    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn a_subnet_report_has_the_keys_the_json_status_had() {
        let c = cond(READY, "Programmed");
        let typed = SubnetReport(SubnetStatus {
            conditions: vec![c.clone()],
            observed_generation: Some(4),
            v4_using_ips: Some(3),
            v4_available_ips: Some(250),
            logical_switch: Some("vpcnet-vmservers".into()),
        });
        // What the reconciler wrote before the typed status.
        let old = json!({
            "conditions": [c],
            "observedGeneration": 4,
            "v4usingIPs": 3u64,
            "v4availableIPs": 250u64,
            "logicalSwitch": "vpcnet-vmservers",
        });
        let new = serde_json::to_value(&typed).unwrap();
        assert_eq!(
            keys(&new),
            [
                "conditions",
                "logicalSwitch",
                "observedGeneration",
                "v4availableIPs",
                "v4usingIPs"
            ]
        );
        assert_eq!(new, old);
        // A provider subnet has no switch; a refusal only the verdict.
        let provider = SubnetReport(SubnetStatus {
            logical_switch: None,
            ..typed.0.clone()
        });
        assert!(
            serde_json::to_value(&provider)
                .unwrap()
                .get("logicalSwitch")
                .is_none()
        );
        let refused = SubnetReport(SubnetStatus {
            conditions: vec![c.clone()],
            observed_generation: Some(4),
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_value(&refused).unwrap(),
            json!({"conditions": [c], "observedGeneration": 4})
        );
    }

    #[test]
    fn a_vpc_report_has_the_keys_the_json_status_had() {
        let c = cond(READY, "Programmed");
        let typed = VpcReport(VpcStatus {
            conditions: vec![c.clone()],
            observed_generation: Some(4),
            router: Some("vpcnet-mail263".into()),
            subnets: vec!["a".into(), "b".into()],
            default_gateway: None,
        });
        assert_eq!(
            serde_json::to_value(&typed).unwrap(),
            json!({
                "conditions": [c],
                "observedGeneration": 4,
                "router": "vpcnet-mail263",
                "subnets": ["a", "b"],
            })
        );
        // The one difference from the old `json!`: the API type leaves an
        // empty list out, so a VPC without subnets shows no `subnets` (the
        // printer column says `<none>`, not `[]`).
        let lonely = VpcReport(VpcStatus {
            subnets: vec![],
            ..typed.0.clone()
        });
        assert!(
            serde_json::to_value(&lonely)
                .unwrap()
                .get("subnets")
                .is_none()
        );
    }

    #[test]
    fn another_writers_condition_is_not_news() {
        let current = SubnetReport(SubnetStatus {
            conditions: vec![cond("Scheduled", "Elsewhere"), cond(READY, "Programmed")],
            observed_generation: Some(4),
            v4_using_ips: Some(1),
            v4_available_ips: Some(252),
            logical_switch: Some("ls".into()),
        });
        let mut desired = SubnetReport(SubnetStatus {
            conditions: vec![cond(READY, "Programmed")],
            ..current.0.clone()
        });
        assert!(says(Some(&current), &desired));
        desired.0.v4_using_ips = Some(2);
        assert!(!says(Some(&current), &desired), "a count moved");
        assert!(!says(None, &desired), "no status yet");
    }
}
