//! Admission against the real API server of the cluster-in-a-box: every
//! sample is accepted and listed; every manifest of the bad-input corpus is
//! refused with a message that names the field and the problem.

use vpcnet_e2e::corpus;
use vpcnet_e2e::kubectl::Kubectl;

fn samples_dir() -> std::path::PathBuf {
    vpcnet_e2e::repo_root().join("config/samples")
}

/// Applies every sample; they are deleted again when the guard drops, so
/// later suites find their addresses free.
fn apply_samples(k: &Kubectl) -> SamplesApplied {
    let out = k.apply(&samples_dir());
    assert!(out.ok, "samples must apply cleanly: {}", out.stderr);
    SamplesApplied(k.clone())
}

struct SamplesApplied(Kubectl);

impl Drop for SamplesApplied {
    fn drop(&mut self) {
        let dir = samples_dir();
        let out = self.0.run(&[
            "delete",
            "-f",
            &dir.to_string_lossy(),
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ]);
        if !out.ok {
            eprintln!("deleting the samples: {}", out.stderr);
        }
    }
}

#[test]
fn every_crd_is_established() {
    let k = Kubectl::for_box();
    let names = k.ok(&["get", "crd", "-o", "name"]);
    let ours: Vec<&str> = names
        .lines()
        .filter(|l| l.ends_with(".vpcnet.io"))
        .collect();
    assert_eq!(ours.len(), 11, "expected 11 vpcnet.io CRDs, got {ours:?}");
    let mut args = vec!["wait", "--for", "condition=Established", "--timeout=30s"];
    args.extend(ours.iter().copied());
    k.ok(&args);
}

#[test]
fn samples_apply_and_are_listed_by_category() {
    let k = Kubectl::for_box();
    let _samples = apply_samples(&k);
    let listed = k.ok(&["get", "vpcnet", "-A"]);
    for name in [
        "vpc.vpcnet.io/mail263",
        "subnet.vpcnet.io/vmservers",
        "subnet.vpcnet.io/ovn-vpc-external-network",
        "vpcnatgateway.vpcnet.io/natgw",
        "vpcdns.vpcnet.io/mail263-dns",
        "iptableseip.vpcnet.io/eips01",
        "iptableseip.vpcnet.io/eipd01",
        "iptablessnatrule.vpcnet.io/snat01",
        "iptablesdnatrule.vpcnet.io/dnat01",
        "iptablesfiprule.vpcnet.io/fip01",
        "switchlbrule.vpcnet.io/web",
        "vip.vpcnet.io/web-vip",
        "securitygroup.vpcnet.io/sg1",
    ] {
        assert!(
            listed.contains(name),
            "`kubectl get vpcnet -A` lacks {name}:\n{listed}"
        );
    }
}

#[test]
fn printer_columns_answer_is_it_working_and_where() {
    let k = Kubectl::for_box();
    let _samples = apply_samples(&k);
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "subnet",
            &[
                "READY",
                "VPC",
                "CIDR",
                "GATEWAY",
                "USED",
                "AVAILABLE",
                "AGE",
            ],
            &["vmservers", "mail263", "10.0.1.0/24", "10.0.1.1"],
        ),
        (
            "vpc-nat-gw",
            &["READY", "VPC", "SUBNET", "LANIP", "EXTERNALIP", "NODE"],
            &["natgw", "10.0.1.254"],
        ),
        (
            "vpc",
            &["READY", "ROUTER", "NAMESPACES", "SUBNETS"],
            &["mail263", "sukai263"],
        ),
    ];
    for (kind, headers, cells) in cases {
        let table = k.ok(&["get", kind]);
        let header = table.lines().next().unwrap_or_default();
        for h in *headers {
            assert!(
                header.contains(h),
                "`kubectl get {kind}` header lacks {h}: {header}"
            );
        }
        for c in *cells {
            assert!(
                table.contains(c),
                "`kubectl get {kind}` lacks {c}:\n{table}"
            );
        }
    }
    let namespaced: &[(&str, &[&str], &[&str])] = &[
        (
            "eip",
            &["READY", "IP", "GATEWAY", "USED-BY"],
            &["eips01", "natgw"],
        ),
        (
            "dnat",
            &[
                "READY",
                "EIP",
                "V4IP",
                "PROTOCOL",
                "EXTERNALPORT",
                "INTERNALIP",
                "INTERNALPORT",
            ],
            &["dnat01", "eipd01", "8888", "10.0.1.2", "80", "tcp"],
        ),
        (
            "snat",
            &["READY", "EIP", "INTERNALCIDR"],
            &["snat01", "eips01", "10.0.1.0/24"],
        ),
        (
            "fip",
            &["READY", "EIP", "INTERNALIP"],
            &["fip01", "10.0.1.3"],
        ),
        (
            "slr",
            &["READY", "VIP", "PORTS"],
            &["web", "10.0.1.100", "80"],
        ),
        (
            "vip",
            &["READY", "SUBNET", "V4IP", "MAC"],
            &["web-vip", "vmservers"],
        ),
        ("sg", &["READY", "PORTGROUP", "MEMBERS"], &["sg1"]),
    ];
    for (kind, headers, cells) in namespaced {
        let table = k.ok(&["get", kind, "-n", "sukai263"]);
        let header = table.lines().next().unwrap_or_default();
        for h in *headers {
            assert!(
                header.contains(h),
                "`kubectl get {kind}` header lacks {h}: {header}"
            );
        }
        for c in *cells {
            assert!(
                table.contains(c),
                "`kubectl get {kind}` lacks {c}:\n{table}"
            );
        }
    }
}

#[test]
fn explain_teaches_the_api() {
    let k = Kubectl::for_box();
    let text = k.ok(&["explain", "subnets.spec.excludeIps"]);
    assert!(
        text.contains("ranges"),
        "explain shows the field doc:\n{text}"
    );
    let text = k.ok(&["explain", "iptablesdnatrules.spec"]);
    for field in [
        "eip",
        "externalPort",
        "internalIp",
        "internalPort",
        "protocol",
    ] {
        assert!(text.contains(field), "explain lists {field}:\n{text}");
    }
}

#[test]
fn bad_input_corpus_is_rejected_at_admission() {
    let k = Kubectl::for_box();
    let _samples = apply_samples(&k);
    let cases = corpus::load(&vpcnet_e2e::repo_root().join("e2e/corpus/invalid"));
    assert!(
        cases.len() >= 25,
        "the corpus holds at least 25 manifests, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        if let Some(setup) = &case.setup {
            let out = k.apply(&samples_dir().join(setup));
            assert!(
                out.ok,
                "setup {setup} for {}: {}",
                case.path.display(),
                out.stderr
            );
        }
        let out = k.apply(&case.path);
        let name = case.path.file_name().unwrap().to_string_lossy().to_string();
        if out.ok {
            failures.push(format!("{name}: accepted, but must be rejected"));
            // Leave nothing behind that later cases or tests could trip over.
            if case.setup.is_none() {
                k.run(&[
                    "delete",
                    "-f",
                    &case.path.to_string_lossy(),
                    "--ignore-not-found",
                ]);
            }
            continue;
        }
        let missing: Vec<&String> = case
            .expect
            .iter()
            .filter(|e| !out.stderr.contains(e.as_str()))
            .collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{name}: message lacks {missing:?}:\n    {}",
                out.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
