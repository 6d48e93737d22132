//! The Kubernetes objects that run one gateway (pure): a one-pod
//! StatefulSet (eth0 at `lanIp` in the VPC, `net1` on the external network
//! through Multus) with the `vpcnet-natgw` agent, its own ServiceAccount
//! bound to the shared agent ClusterRole, and the snapshot ConfigMap with a
//! Role that reaches exactly that ConfigMap. All are owned by the gateway.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, EnvVarSource, ExecAction, ObjectFieldSelector, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SecretKeySelector, SecurityContext,
    ServiceAccount, Toleration,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::json;
use vpcnet_api::contract::{agent_env, annotations as ann, labels, naming};

/// The ClusterRole (shipped in `config/`) every gateway's agent is bound to.
pub const AGENT_CLUSTER_ROLE: &str = "vpcnet-natgw";

/// Everything the gateway pod needs, validated and allocated.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayPlan {
    /// Gateway name.
    pub name: String,
    /// Namespace the workload runs in (the operator's).
    pub namespace: String,
    /// Agent image.
    pub image: String,
    /// Image pull policy.
    pub pull_policy: String,
    /// VPC subnet of eth0.
    pub subnet: String,
    /// eth0 address.
    pub lan_ip: Ipv4Addr,
    /// The VPC router's address on that subnet.
    pub lan_gateway: Ipv4Addr,
    /// All CIDRs of the VPC (routed via eth0).
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// NetworkAttachmentDefinition `(namespace, name)` for net1.
    pub nad: (String, String),
    /// net1 address with prefix.
    pub external_ip: Ipv4Net,
    /// External network's gateway (the gateway pod's default route).
    pub external_gateway: Option<Ipv4Addr>,
    /// Node selector.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations (from the spec).
    pub tolerations: Vec<Toleration>,
    /// Owner reference to the VpcNatGateway.
    pub owner: OwnerReference,
    /// The API server's real address: the agent reaches it through its
    /// external leg, where Service IPs are not translated.
    pub api_endpoint: Option<(String, i32)>,
    /// Names the seal key the agent gets: a new key rolls the pod.
    pub seal_key_id: String,
}

/// The objects that run one gateway.
pub struct GatewayObjects {
    /// The agent's ServiceAccount.
    pub service_account: ServiceAccount,
    /// Binds it to the shared agent ClusterRole (read rules, write their status).
    pub cluster_binding: ClusterRoleBinding,
    /// The agent's snapshot ConfigMap (created empty; the agent fills it).
    pub snapshot: ConfigMap,
    /// Lets the agent get and patch exactly that ConfigMap.
    pub snapshot_role: Role,
    /// Binds the ServiceAccount to that Role.
    pub snapshot_binding: RoleBinding,
    /// The one-pod StatefulSet.
    pub statefulset: StatefulSet,
}

/// The labels of every object and pod of gateway `name`.
pub fn workload_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::APP_NAME.to_string(), labels::NATGW_APP.to_string()),
        (labels::NAT_GATEWAY.to_string(), name.to_string()),
    ])
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn probe(path: &str, period: i32, failures: Option<i32>) -> Probe {
    // Exec probes: the kubelet cannot reach addresses inside a tenant VPC,
    // so the agent asks itself on localhost.
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["vpcnet-natgw".into(), "probe".into(), path.into()]),
        }),
        period_seconds: Some(period),
        failure_threshold: failures,
        ..Default::default()
    }
}

/// The gateway's objects (pure).
pub fn build(plan: &GatewayPlan) -> GatewayObjects {
    let wl = naming::natgw_workload(&plan.name);
    let snap = naming::natgw_snapshot(&plan.name);
    let labels = workload_labels(&plan.name);
    let meta = |name: &str, ns: Option<&str>| ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(str::to_string),
        labels: Some(labels.clone()),
        owner_references: Some(vec![plan.owner.clone()]),
        ..Default::default()
    };
    let ns = Some(plan.namespace.as_str());
    // Both bindings grant to the gateway's own ServiceAccount.
    let subjects = Some(vec![Subject {
        kind: "ServiceAccount".into(),
        name: wl.clone(),
        namespace: Some(plan.namespace.clone()),
        ..Default::default()
    }]);
    let networks = json!([{
        "name": plan.nad.1, "namespace": plan.nad.0, "interface": "net1", "ips": [plan.external_ip.to_string()],
    }]);
    let cidrs: Vec<String> = plan.vpc_cidrs.iter().map(|c| c.to_string()).collect();
    let mut envs = vec![
        env(agent_env::GATEWAY, &plan.name),
        env(agent_env::LAN_GATEWAY, plan.lan_gateway.to_string()),
        env(agent_env::VPC_CIDRS, cidrs.join(",")),
        env(
            agent_env::EXTERNAL_GATEWAY,
            plan.external_gateway
                .map(|g| g.to_string())
                .unwrap_or_default(),
        ),
        field(agent_env::POD_NAME, "metadata.name"),
        field(agent_env::POD_NAMESPACE, "metadata.namespace"),
        env(agent_env::SNAPSHOT_CONFIGMAP, &snap),
        EnvVar {
            name: agent_env::SEAL_KEY.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: vpcnet_api::seal::SECRET_NAME.into(),
                    key: vpcnet_api::seal::SECRET_KEY.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    if let Some((host, port)) = &plan.api_endpoint {
        envs.push(env("KUBERNETES_SERVICE_HOST", host));
        envs.push(env("KUBERNETES_SERVICE_PORT", port.to_string()));
    }
    let statefulset = StatefulSet {
        metadata: meta(&wl, ns),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(wl.clone()),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(BTreeMap::from([
                        (ann::MULTUS_NETWORKS.to_string(), networks.to_string()),
                        (ann::SUBNET.to_string(), plan.subnet.clone()),
                        (ann::IP_ADDRESS.to_string(), plan.lan_ip.to_string()),
                        (ann::ROUTER.to_string(), "true".to_string()),
                        (ann::SEAL_KEY_ID.to_string(), plan.seal_key_id.clone()),
                    ])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(wl.clone()),
                    termination_grace_period_seconds: Some(5),
                    node_selector: Some(plan.node_selector.clone()),
                    tolerations: Some(plan.tolerations.clone()),
                    containers: vec![Container {
                        name: "natgw".into(),
                        image: Some(plan.image.clone()),
                        image_pull_policy: Some(plan.pull_policy.clone()),
                        env: Some(envs),
                        security_context: Some(SecurityContext {
                            privileged: Some(true),
                            ..Default::default()
                        }),
                        readiness_probe: Some(probe("/readyz", 2, None)),
                        liveness_probe: Some(probe("/healthz", 10, Some(6))),
                        // What one agent and its iptables work need at rest;
                        // no limit: a burst of rules must not be throttled.
                        resources: Some(ResourceRequirements {
                            requests: Some(BTreeMap::from([
                                ("cpu".to_string(), Quantity("50m".into())),
                                ("memory".to_string(), Quantity("64Mi".into())),
                            ])),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    GatewayObjects {
        service_account: ServiceAccount {
            metadata: meta(&wl, ns),
            ..Default::default()
        },
        cluster_binding: ClusterRoleBinding {
            metadata: meta(&wl, None),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: AGENT_CLUSTER_ROLE.into(),
            },
            subjects: subjects.clone(),
        },
        // Only metadata: the agent's binaryData stays its own.
        snapshot: ConfigMap {
            metadata: meta(&snap, ns),
            ..Default::default()
        },
        snapshot_role: Role {
            metadata: meta(&wl, ns),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                resource_names: Some(vec![snap.clone()]),
                verbs: vec!["get".into(), "patch".into()],
                ..Default::default()
            }]),
        },
        snapshot_binding: RoleBinding {
            metadata: meta(&wl, ns),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: wl.clone(),
            },
            subjects,
        },
        statefulset,
    }
}

/// `key: value` selector strings as a map.
pub fn node_selector(selector: &[String]) -> BTreeMap<String, String> {
    selector
        .iter()
        .filter_map(|s| {
            s.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn value<T: serde::Serialize>(o: &T) -> Value {
        serde_json::to_value(o).unwrap()
    }

    /// The built objects as the API server receives them.
    struct Values {
        snapshot: Value,
        snapshot_role: Value,
        snapshot_binding: Value,
        service_account: Value,
        statefulset: Value,
    }

    fn plan() -> GatewayPlan {
        GatewayPlan {
            name: "natgw".into(),
            namespace: "vpcnet-system".into(),
            image: "docker.io/local/vpcnet-natgw:latest".into(),
            pull_policy: "Never".into(),
            subnet: "vmservers".into(),
            lan_ip: "10.0.1.254".parse().unwrap(),
            lan_gateway: "10.0.1.1".parse().unwrap(),
            vpc_cidrs: vec!["10.0.1.0/24".parse().unwrap()],
            nad: ("vpcnet-system".into(), "ovn-vpc-external-network".into()),
            external_ip: "172.16.3.101/24".parse().unwrap(),
            external_gateway: Some("172.16.3.2".parse().unwrap()),
            node_selector: node_selector(&["kubernetes.io/os: linux".into()]),
            tolerations: vec![],
            owner: OwnerReference {
                kind: "VpcNatGateway".into(),
                name: "natgw".into(),
                uid: "u".into(),
                ..Default::default()
            },
            api_endpoint: Some(("10.255.0.1".into(), 36443)),
            seal_key_id: "k1".into(),
        }
    }

    #[test]
    fn statefulset_carries_both_legs_and_the_agent() {
        let objs = build(&plan());
        let (sa, crb, sts) = (
            &value(&objs.service_account),
            &value(&objs.cluster_binding),
            &value(&objs.statefulset),
        );
        assert_eq!(sa["metadata"]["name"], "vpc-nat-gw-natgw");
        assert_eq!(crb["roleRef"]["name"], AGENT_CLUSTER_ROLE);
        assert_eq!(crb["subjects"][0]["namespace"], "vpcnet-system");
        let tpl = &sts["spec"]["template"];
        let nets: Value = serde_json::from_str(
            tpl["metadata"]["annotations"][ann::MULTUS_NETWORKS]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(nets[0]["ips"][0], "172.16.3.101/24");
        assert_eq!(nets[0]["interface"], "net1");
        assert_eq!(
            tpl["metadata"]["annotations"][ann::IP_ADDRESS],
            "10.0.1.254"
        );
        assert_eq!(tpl["metadata"]["annotations"][ann::SUBNET], "vmservers");
        assert_eq!(tpl["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
        assert_eq!(tpl["spec"]["serviceAccountName"], "vpc-nat-gw-natgw");
        let env = tpl["spec"]["containers"][0]["env"].as_array().unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "VPCNET_GATEWAY" && e["value"] == "natgw")
        );
        assert!(
            env.iter()
                .any(|e| e["name"] == "VPCNET_EXTERNAL_GATEWAY" && e["value"] == "172.16.3.2")
        );
        assert_eq!(
            sts["metadata"]["ownerReferences"][0]["kind"],
            "VpcNatGateway"
        );
    }

    #[test]
    fn the_agent_may_touch_only_its_own_snapshot() {
        let built = build(&plan());
        let objs = Values {
            snapshot: value(&built.snapshot),
            snapshot_role: value(&built.snapshot_role),
            snapshot_binding: value(&built.snapshot_binding),
            service_account: value(&built.service_account),
            statefulset: value(&built.statefulset),
        };
        let cm = "vpc-nat-gw-natgw-snapshot";
        assert_eq!(objs.snapshot["metadata"]["name"], cm);
        assert!(objs.snapshot.get("data").is_none() && objs.snapshot.get("binaryData").is_none());
        assert_eq!(
            objs.snapshot["metadata"]["ownerReferences"][0]["kind"],
            "VpcNatGateway"
        );
        let rules = objs.snapshot_role["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0]["resources"], json!(["configmaps"]));
        assert_eq!(rules[0]["resourceNames"], json!([cm]));
        assert_eq!(rules[0]["verbs"], json!(["get", "patch"]));
        assert_eq!(
            objs.snapshot_binding["roleRef"]["name"],
            objs.snapshot_role["metadata"]["name"]
        );
        assert_eq!(
            objs.snapshot_binding["subjects"][0]["name"],
            objs.service_account["metadata"]["name"]
        );
        let env = objs.statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "VPCNET_SNAPSHOT_CONFIGMAP" && e["value"] == cm)
        );
    }
}
