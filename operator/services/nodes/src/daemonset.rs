//! The CNI DaemonSet (pure): on the host network of every node, tolerating
//! everything; an init container installs the plugin and its
//! configuration, `refresh` keeps the plugin's token and configuration
//! current, `conntrack` is the per-node agent.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, HostPathVolumeSource, ObjectFieldSelector, PodSpec,
    PodTemplateSpec, ResourceRequirements, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

/// The DaemonSet's (and its ServiceAccount's) name.
pub const NAME: &str = "vpcnet-cni";

/// How the operator was told to run the node components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The CNI image (`vpcnet-cni` and `vpcnet-node`).
    pub image: String,
    /// Its pull policy.
    pub pull_policy: String,
    /// Each node's probe addresses (README: "kubelet probes"); `None`: no
    /// probe path.
    pub probe_cidr: Option<String>,
    /// The kubelet's cgroup v2 path, the only one allowed to probe.
    pub kubelet_cgroup: Option<String>,
    /// The Northbound database as the nodes reach it.
    pub ovn_nb: String,
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn requests(cpu: &str, memory: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn host_path(name: &str, path: &str, type_: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: Some(type_.into()),
        }),
        ..Default::default()
    }
}

/// The labels of the DaemonSet and its pods.
pub fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), NAME.to_string()),
        (
            "app.kubernetes.io/part-of".to_string(),
            "vpcnet".to_string(),
        ),
    ])
}

/// The installer's environment: the probe path and the one namespace whose
/// pods may have host egress (always this DaemonSet's own, the operator's).
fn install_env(s: &Settings) -> Vec<EnvVar> {
    let mut e = Vec::new();
    if let Some(c) = &s.probe_cidr {
        e.push(env("PROBE_CIDR", c));
    }
    if let Some(c) = &s.kubelet_cgroup {
        e.push(env("PROBE_KUBELET_CGROUP", c));
    }
    e.push(EnvVar {
        name: "HOST_EGRESS_NAMESPACE".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.namespace".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    e
}

/// The DaemonSet in `namespace` (pure).
pub fn build(s: &Settings, namespace: &str) -> DaemonSet {
    let privileged = Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    });
    let cni_mounts = vec![
        mount("cni-bin", "/host/opt/cni/bin"),
        mount("cni-conf", "/host/etc/cni/net.d"),
    ];
    let installer = |name: &str, command: Vec<String>, resources| Container {
        name: name.into(),
        image: Some(s.image.clone()),
        image_pull_policy: Some(s.pull_policy.clone()),
        command: Some(command),
        security_context: privileged.clone(),
        env: Some(install_env(s)),
        resources,
        volume_mounts: Some(cni_mounts.clone()),
        ..Default::default()
    };
    let install = "/opt/vpcnet/bin/install-cni.sh".to_string();
    DaemonSet {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels()),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/name".to_string(),
                    NAME.to_string(),
                )])),
                ..Default::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(NAME.into()),
                    // Runs before pod networking exists.
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
                    priority_class_name: Some("system-node-critical".into()),
                    termination_grace_period_seconds: Some(5),
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }]),
                    init_containers: Some(vec![installer(
                        "install",
                        vec![install.clone(), "--once".into()],
                        Some(requests("5m", "8Mi")),
                    )]),
                    containers: vec![
                        // Keeps the plugin's token and configuration fresh.
                        installer("refresh", vec![install], Some(requests("5m", "8Mi"))),
                        // Deletes this node's conntrack entries of UDP
                        // load-balancer backends that left.
                        Container {
                            name: "conntrack".into(),
                            image: Some(s.image.clone()),
                            image_pull_policy: Some(s.pull_policy.clone()),
                            command: Some(vec!["/opt/vpcnet/bin/vpcnet-node".into()]),
                            env: Some(vec![
                                env("OVN_NB_DB", &s.ovn_nb),
                                env("OVS_RUNDIR", "/var/run/openvswitch"),
                            ]),
                            resources: Some(requests("5m", "16Mi")),
                            volume_mounts: Some(vec![
                                mount("ovn-run", "/var/run/ovn"),
                                mount("ovs-run", "/var/run/openvswitch"),
                            ]),
                            ..Default::default()
                        },
                    ],
                    volumes: Some(vec![
                        host_path("ovn-run", "/var/run/ovn", "Directory"),
                        host_path("ovs-run", "/var/run/openvswitch", "Directory"),
                        host_path("cni-bin", "/opt/cni/bin", "DirectoryOrCreate"),
                        host_path("cni-conf", "/etc/cni/net.d", "DirectoryOrCreate"),
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            image: "img:1".into(),
            pull_policy: "IfNotPresent".into(),
            probe_cidr: Some("100.64.0.0/24".into()),
            kubelet_cgroup: Some("kubelet.slice".into()),
            ovn_nb: "tcp:10.0.0.1:6641".into(),
        }
    }

    #[test]
    fn every_container_runs_the_one_image_with_requests_in_the_operators_namespace() {
        let ds = build(&settings(), "operators");
        assert_eq!(ds.metadata.namespace.as_deref(), Some("operators"));
        let pod = ds.spec.unwrap().template.spec.unwrap();
        let all: Vec<_> = pod
            .init_containers
            .iter()
            .flatten()
            .chain(&pod.containers)
            .collect();
        assert_eq!(all.len(), 3);
        for c in &all {
            assert_eq!(c.image.as_deref(), Some("img:1"), "{}", c.name);
            assert!(
                c.resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .is_some(),
                "{}",
                c.name
            );
        }
        let env_of = |name: &str| -> Vec<String> {
            all.iter()
                .find(|c| c.name == name)
                .unwrap()
                .env
                .iter()
                .flatten()
                .map(|e| {
                    format!(
                        "{}={}",
                        e.name,
                        e.value.clone().unwrap_or_else(|| "<from>".into())
                    )
                })
                .collect()
        };
        assert_eq!(
            env_of("install"),
            vec![
                "PROBE_CIDR=100.64.0.0/24",
                "PROBE_KUBELET_CGROUP=kubelet.slice",
                "HOST_EGRESS_NAMESPACE=<from>"
            ]
        );
        assert_eq!(
            env_of("refresh"),
            env_of("install"),
            "refresh rewrites the same configuration"
        );
        assert!(env_of("conntrack").contains(&"OVN_NB_DB=tcp:10.0.0.1:6641".to_string()));
        assert_eq!(pod.host_network, Some(true));
    }

    #[test]
    fn no_probe_range_means_no_probe_settings() {
        let mut s = settings();
        s.probe_cidr = None;
        s.kubelet_cgroup = None;
        let ds = build(&s, "x");
        let pod = ds.spec.unwrap().template.spec.unwrap();
        let env = pod.init_containers.unwrap()[0].env.clone().unwrap();
        assert_eq!(env.len(), 1, "only the host-egress namespace");
    }
}
