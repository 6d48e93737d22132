//! The Kubernetes objects that run one VpcDns (pure): the zone ConfigMap,
//! a ServiceAccount whose Role reaches exactly that ConfigMap, the servers'
//! Deployment (placed on the VpcDns's subnet, spread over nodes), their
//! disruption budget and, in the default VPC, the Service holding the
//! resolver address. All are owned by the VpcDns.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, Container, ContainerPort, EnvVar, ExecAction, PodAffinityTerm,
    PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Service,
    ServiceAccount, ServicePort, ServiceSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use vpcnet_api::contract::dns::{DNS_PORT, METRICS_PORT, ZONE_KEY};
use vpcnet_api::contract::{annotations as ann, dns_env, labels, naming};

/// Everything the servers need, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsPlan {
    /// VpcDns name.
    pub name: String,
    /// The operator's namespace (the servers run there).
    pub namespace: String,
    /// Server image.
    pub image: String,
    /// Its pull policy.
    pub pull_policy: String,
    /// The subnet the servers' pods are placed on.
    pub subnet: String,
    /// Number of servers.
    pub replicas: i32,
    /// The resolver address.
    pub vip: IpAddr,
    /// Whether the VPC is the default one (its address is a Service).
    pub default_vpc: bool,
    /// The API server's real address: reached over the host-egress grant.
    pub api_endpoint: (String, i32),
    /// Upstreams, also reached over the grant.
    pub upstreams: Vec<SocketAddr>,
    /// The zone document.
    pub zone_json: String,
    /// Owner reference to the VpcDns.
    pub owner: OwnerReference,
}

/// The objects of one VpcDns.
pub struct DnsObjects {
    /// The zone ConfigMap.
    pub zone: ConfigMap,
    /// The servers' ServiceAccount.
    pub service_account: ServiceAccount,
    /// Reads exactly the zone ConfigMap.
    pub role: Role,
    /// Binds the ServiceAccount to that Role.
    pub role_binding: RoleBinding,
    /// The servers.
    pub deployment: Deployment,
    /// At most one server down at a time by eviction.
    pub disruption_budget: PodDisruptionBudget,
    /// The Service holding the resolver address (default VPC only).
    pub service: Option<Service>,
}

/// The labels of every object and pod of VpcDns `name`.
pub fn workload_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::APP_NAME.to_string(), labels::DNS_APP.to_string()),
        (labels::VPC_DNS.to_string(), name.to_string()),
    ])
}

/// The host-egress grant of the servers: the API server over TCP, each
/// upstream over UDP and TCP.
pub fn egress_grant(api: &(String, i32), upstreams: &[SocketAddr]) -> String {
    let mut grants = vec![format!("{}:{}/tcp", api.0, api.1)];
    for u in upstreams {
        grants.push(format!("{u}/udp"));
        grants.push(format!("{u}/tcp"));
    }
    grants.join(",")
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    // Exec probes: the server checks itself on localhost.
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["vpcnet-dns".into(), "probe".into(), path.into()]),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn port(name: &str, port: u16, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port.into(),
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

/// The objects (pure).
pub fn build(plan: &DnsPlan) -> DnsObjects {
    let wl = naming::dns_workload(&plan.name);
    let zone = naming::dns_zone(&plan.name);
    let labels = workload_labels(&plan.name);
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some(plan.namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![plan.owner.clone()]),
        ..Default::default()
    };
    let selector = LabelSelector {
        match_labels: Some(labels.clone()),
        ..Default::default()
    };
    let (api_host, api_port) = &plan.api_endpoint;
    let container = Container {
        name: "dns".into(),
        image: Some(plan.image.clone()),
        image_pull_policy: Some(plan.pull_policy.clone()),
        env: Some(vec![
            env(dns_env::ZONE, format!("{}/{zone}", plan.namespace)),
            env("KUBERNETES_SERVICE_HOST", api_host),
            env("KUBERNETES_SERVICE_PORT", api_port.to_string()),
        ]),
        ports: Some(vec![
            port("dns", DNS_PORT, "UDP"),
            port("dns-tcp", DNS_PORT, "TCP"),
            port("metrics", METRICS_PORT, "TCP"),
        ]),
        readiness_probe: Some(probe("/readyz", 1, 1)),
        liveness_probe: Some(probe("/healthz", 10, 6)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("50m".into())),
                ("memory".to_string(), Quantity("32Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("256Mi".into()),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta(&wl),
        spec: Some(DeploymentSpec {
            replicas: Some(plan.replicas),
            selector: selector.clone(),
            // A new server is ready before an old one goes.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(BTreeMap::from([
                        (ann::SUBNET.to_string(), plan.subnet.clone()),
                        (
                            ann::HOST_EGRESS.to_string(),
                            egress_grant(&plan.api_endpoint, &plan.upstreams),
                        ),
                    ])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(wl.clone()),
                    // The servers resolve nothing themselves; never through
                    // the address they serve.
                    dns_policy: Some("Default".into()),
                    termination_grace_period_seconds: Some(10),
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(vec![
                                WeightedPodAffinityTerm {
                                    weight: 100,
                                    pod_affinity_term: PodAffinityTerm {
                                        label_selector: Some(selector.clone()),
                                        topology_key: "kubernetes.io/hostname".into(),
                                        ..Default::default()
                                    },
                                },
                            ]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let subjects = Some(vec![Subject {
        kind: "ServiceAccount".into(),
        name: wl.clone(),
        namespace: Some(plan.namespace.clone()),
        ..Default::default()
    }]);
    let service = plan.default_vpc.then(|| Service {
        metadata: meta(&wl),
        spec: Some(ServiceSpec {
            cluster_ip: Some(plan.vip.to_string()),
            cluster_ips: Some(vec![plan.vip.to_string()]),
            selector: Some(labels.clone()),
            ports: Some(vec![
                ServicePort {
                    name: Some("dns".into()),
                    port: DNS_PORT.into(),
                    protocol: Some("UDP".into()),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("dns-tcp".into()),
                    port: DNS_PORT.into(),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    });
    DnsObjects {
        zone: ConfigMap {
            metadata: meta(&zone),
            data: Some(BTreeMap::from([(
                ZONE_KEY.to_string(),
                plan.zone_json.clone(),
            )])),
            ..Default::default()
        },
        service_account: ServiceAccount {
            metadata: meta(&wl),
            ..Default::default()
        },
        role: Role {
            metadata: meta(&wl),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                resource_names: Some(vec![zone.clone()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            }]),
        },
        role_binding: RoleBinding {
            metadata: meta(&wl),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: wl.clone(),
            },
            subjects,
        },
        disruption_budget: PodDisruptionBudget {
            metadata: meta(&wl),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(selector),
                ..Default::default()
            }),
            ..Default::default()
        },
        deployment,
        service,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(default_vpc: bool) -> DnsPlan {
        DnsPlan {
            name: "a".into(),
            namespace: "vpcnet-system".into(),
            image: "img".into(),
            pull_policy: "IfNotPresent".into(),
            subnet: "a1".into(),
            replicas: 2,
            vip: "10.96.0.10".parse().unwrap(),
            default_vpc,
            api_endpoint: ("10.255.0.1".into(), 36443),
            upstreams: vec!["172.16.3.2:53".parse().unwrap()],
            zone_json: "{}".into(),
            owner: OwnerReference::default(),
        }
    }

    #[test]
    fn the_servers_read_only_their_zone_and_reach_only_the_api_and_upstreams() {
        let o = build(&plan(false));
        let rule = &o.role.rules.as_ref().unwrap()[0];
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["vpc-dns-a-zone".to_string()][..])
        );
        assert_eq!(rule.verbs, vec!["get", "list", "watch"]);
        let t = o.deployment.spec.as_ref().unwrap().template.clone();
        let a = t.metadata.unwrap().annotations.unwrap();
        assert_eq!(
            a[ann::HOST_EGRESS],
            "10.255.0.1:36443/tcp,172.16.3.2:53/udp,172.16.3.2:53/tcp"
        );
        assert_eq!(a[ann::SUBNET], "a1");
        let c = &t.spec.unwrap().containers[0];
        let envs: BTreeMap<_, _> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(envs[dns_env::ZONE], "vpcnet-system/vpc-dns-a-zone");
        assert_eq!(envs["KUBERNETES_SERVICE_HOST"], "10.255.0.1");
        assert!(c.resources.as_ref().unwrap().requests.is_some());
        assert!(
            o.service.is_none(),
            "a tenant VPC's address is our own rows"
        );
        let s = build(&plan(true))
            .service
            .expect("default VPC: a Service holds the address");
        assert_eq!(s.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.10"));
    }
}
