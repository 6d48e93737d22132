//! The layout's rules, checked from `cargo metadata`: dependencies run one
//! way (services -> runtime -> api/ovn/ipam), no service depends on another,
//! and the binary stays a thin list of services.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `package name -> (manifest path, names of its normal dependencies)`.
fn workspace() -> BTreeMap<String, (String, Vec<String>)> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("name").to_string())
                .collect();
            (
                p["name"].as_str().expect("name").to_string(),
                (p["manifest_path"].as_str().expect("path").to_string(), deps),
            )
        })
        .collect()
}

fn is_service(manifest: &str) -> bool {
    Path::new(manifest)
        .parent()
        .and_then(Path::parent)
        .is_some_and(|d| d.ends_with("operator/services"))
}

#[test]
fn no_service_depends_on_another_and_the_runtime_on_none() {
    let ws = workspace();
    let services: Vec<&String> = ws
        .iter()
        .filter(|(_, (m, _))| is_service(m))
        .map(|(n, _)| n)
        .collect();
    assert!(
        services.len() >= 2,
        "the network and NAT services live under operator/services: {services:?}"
    );
    for (name, (manifest, deps)) in &ws {
        if is_service(manifest) {
            for d in deps {
                assert!(
                    !services.contains(&d),
                    "service {name} depends on service {d}: services share facts only through the API or OVN row ownership"
                );
            }
            assert!(
                deps.iter().any(|d| d == "vpcnet-runtime"),
                "service {name} is built on the runtime"
            );
        }
    }
    let (_, runtime_deps) = &ws["vpcnet-runtime"];
    for d in runtime_deps {
        assert!(
            !services.contains(&d) && d != "vpcnet-operator",
            "the runtime depends on {d}; dependencies run services -> runtime"
        );
    }
    let (_, ipam_deps) = &ws["vpcnet-ipam"];
    assert!(
        !ipam_deps.iter().any(|d| d == "kube" || d == "k8s-openapi"),
        "IPAM is pure: {ipam_deps:?}"
    );
}

#[test]
fn the_binary_is_a_thin_list_of_services() {
    let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs");
    let lines = std::fs::read_to_string(&main)
        .expect("main.rs")
        .lines()
        .count();
    assert!(
        lines <= 120,
        "operator/src/main.rs has {lines} lines; keep it under 120 (logic belongs in the runtime or a service)"
    );
}
