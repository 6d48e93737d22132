//! The Kubernetes objects that run one gateway (pure): a one-pod
//! StatefulSet (eth0 at `lanIp` in the VPC, `net1` on the external network
//! through Multus) with the `vpcnet-natgw` agent, its own ServiceAccount
//! bound to the shared agent ClusterRole, and the snapshot ConfigMap with a
//! Role that reaches exactly that ConfigMap. All are owned by the gateway.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, Container, EnvVar, EnvVarSource, ExecAction, ObjectFieldSelector,
    PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SecretKeySelector, SecurityContext, ServiceAccount, Toleration,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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
    /// With two replicas: its configuration without IPAM.
    pub nad_without_ipam: Option<String>,
    /// net1 address with prefix (with two replicas: replica 0's).
    pub external_ip: Ipv4Net,
    /// With two replicas: replica 1's net1 address.
    pub second_external_ip: Option<Ipv4Net>,
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
    /// 1, or 2 (active and standby).
    pub replicas: i32,
    /// The LAN subnet's prefix length (of the shared address with 2 replicas).
    pub lan_prefix: u8,
    /// With 2 replicas: the Lease duration in milliseconds.
    pub lease_duration_ms: i32,
}

impl GatewayPlan {
    /// Whether an active and a standby run.
    pub fn is_ha(&self) -> bool {
        self.replicas == 2
    }

    /// With two replicas, their own LAN addresses: the two host addresses
    /// nearest below `lanIp` (above, if there are none below), the pods'
    /// `ip_pool`. Fixed, so a pod recreated under the same name (which
    /// keeps its address otherwise, even `lanIp` from one replica) moves to
    /// one of them.
    pub fn replica_lan_ips(&self) -> Vec<Ipv4Addr> {
        let net = Ipv4Net::new(self.lan_ip, self.lan_prefix)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| Ipv4Net::from(self.lan_ip));
        let lan = u32::from(self.lan_ip);
        let usable = |a: u32| {
            let ip = Ipv4Addr::from(a);
            net.contains(&ip)
                && ip != net.network()
                && ip != net.broadcast()
                && ip != self.lan_gateway
                && ip != self.lan_ip
        };
        let below = (1..=4).filter_map(|d| lan.checked_sub(d));
        let above = (1..=4).filter_map(|d| lan.checked_add(d));
        below
            .chain(above)
            .filter(|a| usable(*a))
            .take(2)
            .map(Ipv4Addr::from)
            .collect()
    }
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
    /// The StatefulSet (one pod, or an active and a standby).
    pub statefulset: StatefulSet,
    /// With 2 replicas: the Lease the agents hold to be active (created
    /// empty; the agents fill its spec) ...
    pub lease: Option<Lease>,
    /// ... a disruption budget that lets a drain take one at a time ...
    pub disruption_budget: Option<PodDisruptionBudget>,
    /// ... and net1's attachment without IPAM (see `attachment`).
    pub attachment: Option<super::attachment::NetworkAttachmentDefinition>,
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
    // One template for both replicas: with two, net1 comes without an
    // address and each agent adds its own (VPCNET_EXTERNAL_IPS).
    let networks = if plan.is_ha() {
        json!([{"name": naming::natgw_attachment(&plan.name), "namespace": plan.namespace, "interface": "net1"}])
    } else {
        json!([{
            "name": plan.nad.1, "namespace": plan.nad.0, "interface": "net1", "ips": [plan.external_ip.to_string()],
        }])
    };
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
    let lease = naming::natgw_lease(&plan.name);
    let mut annotations = BTreeMap::from([
        (ann::MULTUS_NETWORKS.to_string(), networks.to_string()),
        (ann::SUBNET.to_string(), plan.subnet.clone()),
        (ann::ROUTER.to_string(), "true".to_string()),
        (ann::SEAL_KEY_ID.to_string(), plan.seal_key_id.clone()),
    ]);
    let mut affinity = None;
    if plan.is_ha() {
        // Each replica's own LAN address comes from the pool; `lanIp` is
        // the active's, added by its agent (the VPC routes to it).
        envs.push(env(
            agent_env::LAN_VIP,
            format!("{}/{}", plan.lan_ip, plan.lan_prefix),
        ));
        envs.push(env(agent_env::LEASE, &lease));
        let own: Vec<String> = std::iter::once(plan.external_ip)
            .chain(plan.second_external_ip)
            .map(|n| n.to_string())
            .collect();
        envs.push(env(agent_env::EXTERNAL_IPS, own.join(",")));
        envs.push(env(
            agent_env::LEASE_DURATION_MS,
            plan.lease_duration_ms.to_string(),
        ));
        // Never both on one node: a node's death must leave one.
        affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(labels.clone()),
                        ..Default::default()
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let own: Vec<String> = plan
            .replica_lan_ips()
            .iter()
            .map(|a| a.to_string())
            .collect();
        annotations.insert(ann::IP_POOL.to_string(), own.join(","));
    } else {
        annotations.insert(ann::IP_ADDRESS.to_string(), plan.lan_ip.to_string());
    }
    let statefulset = StatefulSet {
        metadata: meta(&wl, ns),
        spec: Some(StatefulSetSpec {
            replicas: Some(plan.replicas),
            service_name: Some(wl.clone()),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(wl.clone()),
                    termination_grace_period_seconds: Some(5),
                    node_selector: Some(plan.node_selector.clone()),
                    tolerations: Some(plan.tolerations.clone()),
                    affinity,
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
            rules: Some(agent_rules(plan, &snap, &lease)),
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
        lease: plan.is_ha().then(|| Lease {
            metadata: meta(&lease, ns),
            spec: None,
        }),
        attachment: plan
            .nad_without_ipam
            .clone()
            .filter(|_| plan.is_ha())
            .map(|config| super::attachment::NetworkAttachmentDefinition {
                metadata: meta(&naming::natgw_attachment(&plan.name), ns),
                spec: super::attachment::NetworkAttachmentDefinitionSpec {
                    config: Some(config),
                },
            }),
        disruption_budget: plan.is_ha().then(|| PodDisruptionBudget {
            metadata: meta(&lease, ns),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// What the agent may do in the gateway's namespace: get and patch its
/// snapshot; with 2 replicas also hold its Lease and read the two pods
/// (each syncs connection state with the other's LAN address).
fn agent_rules(plan: &GatewayPlan, snapshot: &str, lease: &str) -> Vec<PolicyRule> {
    let rule = |group: &str, resource: &str, names: Vec<String>, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(vec![resource.to_string()]),
        resource_names: Some(names),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    };
    let mut rules = vec![rule(
        "",
        "configmaps",
        vec![snapshot.to_string()],
        &["get", "patch"],
    )];
    if plan.is_ha() {
        rules.push(rule(
            "coordination.k8s.io",
            "leases",
            vec![lease.to_string()],
            &["get", "update"],
        ));
        rules.push(rule(
            "",
            "pods",
            (0..2)
                .map(|i| naming::natgw_replica(&plan.name, i))
                .collect(),
            &["get"],
        ));
    }
    rules
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
            nad_without_ipam: None,
            external_ip: "172.16.3.101/24".parse().unwrap(),
            second_external_ip: None,
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
            replicas: 1,
            lan_prefix: 24,
            lease_duration_ms: 1500,
        }
    }

    #[test]
    fn two_replicas_share_the_lan_address_through_a_lease() {
        let one = build(&plan());
        assert!(one.lease.is_none() && one.disruption_budget.is_none());
        let ha = build(&GatewayPlan {
            replicas: 2,
            second_external_ip: Some("172.16.3.102/24".parse().unwrap()),
            nad_without_ipam: Some(r#"{"type":"macvlan"}"#.into()),
            ..plan()
        });
        let sts = value(&ha.statefulset);
        assert_eq!(sts["spec"]["replicas"], 2);
        let tpl = &sts["spec"]["template"];
        assert!(
            tpl["metadata"]["annotations"]
                .get(ann::IP_ADDRESS)
                .is_none(),
            "each replica has its own address"
        );
        assert_eq!(
            tpl["metadata"]["annotations"][ann::IP_POOL],
            "10.0.1.253,10.0.1.252"
        );
        let low = GatewayPlan {
            replicas: 2,
            lan_ip: "10.0.1.2".parse().unwrap(),
            ..plan()
        };
        assert_eq!(
            low.replica_lan_ips(),
            vec![
                "10.0.1.3".parse::<Ipv4Addr>().unwrap(),
                "10.0.1.4".parse().unwrap()
            ],
            "neither the network address nor the router's"
        );
        let env = tpl["spec"]["containers"][0]["env"].as_array().unwrap();
        let get = |n: &str| {
            env.iter()
                .find(|e| e["name"] == n)
                .map(|e| e["value"].clone())
        };
        assert_eq!(get(agent_env::LAN_VIP), Some(json!("10.0.1.254/24")));
        assert_eq!(
            get(agent_env::LEASE),
            Some(json!("vpc-nat-gw-natgw-active"))
        );
        assert_eq!(get(agent_env::LEASE_DURATION_MS), Some(json!("1500")));
        assert_eq!(
            get(agent_env::EXTERNAL_IPS),
            Some(json!("172.16.3.101/24,172.16.3.102/24"))
        );
        let nets: Value = serde_json::from_str(
            tpl["metadata"]["annotations"][ann::MULTUS_NETWORKS]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert!(
            nets[0].get("ips").is_none(),
            "each agent adds its own: {nets}"
        );
        assert_eq!(nets[0]["name"], "vpc-nat-gw-natgw-ext");
        let nad = value(ha.attachment.as_ref().unwrap());
        assert_eq!(nad["metadata"]["name"], "vpc-nat-gw-natgw-ext");
        assert_eq!(nad["spec"]["config"], r#"{"type":"macvlan"}"#);
        assert!(one.attachment.is_none());
        let anti = &tpl["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            [0];
        assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(
            anti["labelSelector"]["matchLabels"][labels::NAT_GATEWAY],
            "natgw"
        );
        let lease = value(ha.lease.as_ref().unwrap());
        assert_eq!(lease["metadata"]["name"], "vpc-nat-gw-natgw-active");
        assert!(lease.get("spec").is_none(), "the agents own the spec");
        let pdb = value(ha.disruption_budget.as_ref().unwrap());
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        let rules = value(&ha.snapshot_role)["rules"].clone();
        assert_eq!(rules[1]["resources"], json!(["leases"]));
        assert_eq!(
            rules[1]["resourceNames"],
            json!(["vpc-nat-gw-natgw-active"])
        );
        assert_eq!(rules[1]["verbs"], json!(["get", "update"]));
        assert_eq!(
            rules[2]["resourceNames"],
            json!(["vpc-nat-gw-natgw-0", "vpc-nat-gw-natgw-1"])
        );
        assert_eq!(
            value(&one.snapshot_role)["rules"].as_array().unwrap().len(),
            1
        );
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
