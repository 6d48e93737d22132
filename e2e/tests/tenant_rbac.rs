//! Tenant RBAC (config/base/tenant-rbac.yaml) as a namespace user meets it,
//! through a ServiceAccount token and not the box's cluster-admin: `admin`
//! of a namespace manages its EIPs and NAT rules but cannot write their
//! status, cannot create the platform's cluster-scoped kinds and cannot see
//! other namespaces; `view` reads only; a ResourceQuota caps the EIPs.
//!
//! Only API access is tested: without a VPC the operator refuses the objects
//! (Ready=False), which does not matter here.

use std::time::Duration;

use vpcnet_e2e::kubectl::{Kubectl, Output};
use vpcnet_e2e::tenant::Tenant;

/// One EIP, SNAT, DNAT and FIP rule of a namespace, as `(resource, name, manifest)`.
fn nat_objects(ns: &str) -> Vec<(&'static str, &'static str, String)> {
    let obj = |kind: &str, name: &str, spec: &str| {
        format!(
            "apiVersion: vpcnet.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
        )
    };
    vec![
        (
            "iptableseips",
            "eip1",
            obj("IptablesEIP", "eip1", "{natGwDp: rbac-gw}"),
        ),
        (
            "iptablessnatrules",
            "snat1",
            obj(
                "IptablesSnatRule",
                "snat1",
                "{eip: eip1, internalCIDR: 10.0.1.0/24}",
            ),
        ),
        (
            "iptablesdnatrules",
            "dnat1",
            obj(
                "IptablesDnatRule",
                "dnat1",
                "{eip: eip1, externalPort: \"8888\", internalIp: 10.0.1.2, internalPort: \"80\", protocol: tcp}",
            ),
        ),
        (
            "iptablesfiprules",
            "fip1",
            obj(
                "IptablesFIPRule",
                "fip1",
                "{eip: eip1, internalIp: 10.0.1.3}",
            ),
        ),
    ]
}

fn eip(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{natGwDp: rbac-gw}}\n"
    )
}

/// The request failed with a 403 from the API server.
#[track_caller]
fn assert_forbidden(out: &Output, what: &str) {
    assert!(
        !out.ok && out.stderr.contains("Forbidden"),
        "{what} must be Forbidden, got ok={} stdout={} stderr={}",
        out.ok,
        out.stdout,
        out.stderr
    );
}

#[test]
fn namespace_admin_manages_nat_objects_but_not_their_status() {
    let admin = Kubectl::for_box();
    let t = Tenant::create(&admin, "e2e-rbac-admin");
    let (k, ns) = (t.kubectl(), t.ns());

    for (resource, name, yaml) in nat_objects(ns) {
        let out = k.apply_yaml(&yaml);
        assert!(
            out.ok,
            "tenant admin creates {resource}/{name}: {}",
            out.stderr
        );
        k.ok(&["get", resource, name, "-n", ns]);

        // The status subresource is the operator's and the agents' alone.
        let patch = k.run(&[
            "patch",
            resource,
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"observedGeneration":1}}"#,
        ]);
        assert_forbidden(&patch, &format!("patching {resource}/{name}/status"));
        assert!(
            patch.stderr.contains(&format!("{resource}/status")),
            "the refusal names the status subresource: {}",
            patch.stderr
        );
    }

    // A status written through the main resource is dropped by the server.
    let out = k.run(&[
        "patch",
        "iptableseips",
        "eip1",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"status":{"ip":"198.51.100.66"}}"#,
    ]);
    assert!(
        out.ok,
        "a patch of the main resource is allowed: {}",
        out.stderr
    );
    let ip = k.ok(&[
        "get",
        "iptableseips",
        "eip1",
        "-n",
        ns,
        "-o",
        "jsonpath={.status.ip}",
    ]);
    assert_ne!(
        ip.trim(),
        "198.51.100.66",
        "status is not writable via spec"
    );

    // Update and delete, one by one and as a collection.
    let out = k.run(&["label", "iptablesdnatrules", "dnat1", "-n", ns, "team=web"]);
    assert!(out.ok, "tenant admin labels its DNAT rule: {}", out.stderr);
    for (resource, name) in [
        ("iptablesdnatrules", "dnat1"),
        ("iptablessnatrules", "snat1"),
    ] {
        let out = k.run(&["delete", resource, name, "-n", ns, "--wait=false"]);
        assert!(
            out.ok,
            "tenant admin deletes {resource}/{name}: {}",
            out.stderr
        );
    }
    let out = k.run(&["delete", "iptableseips", "--all", "-n", ns, "--wait=false"]);
    assert!(out.ok, "tenant admin deletes all its EIPs: {}", out.stderr);
    let out = k.run(&[
        "delete",
        "--raw",
        &format!("/apis/vpcnet.io/v1/namespaces/{ns}/iptablesfiprules"),
    ]);
    assert!(out.ok, "deletecollection is allowed: {}", out.stderr);
}

#[test]
fn namespace_admin_stays_out_of_the_platform_and_other_namespaces() {
    let admin = Kubectl::for_box();
    let t = Tenant::create(&admin, "e2e-rbac-a");
    let other = Tenant::create(&admin, "e2e-rbac-b");
    let k = t.kubectl();

    for (kind, yaml) in [
        (
            "Vpc",
            "apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {name: e2e-rbac-a}\nspec: {namespaces: [e2e-rbac-a]}\n",
        ),
        (
            "Subnet",
            "apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {name: e2e-rbac-a}\nspec: {vpc: e2e-rbac-a, cidrBlock: 10.0.1.0/24, namespaces: [e2e-rbac-a]}\n",
        ),
        (
            "VpcNatGateway",
            "apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {name: e2e-rbac-a}\nspec: {vpc: e2e-rbac-a, subnet: e2e-rbac-a, lanIp: 10.0.1.254}\n",
        ),
    ] {
        assert_forbidden(&k.apply_yaml(yaml), &format!("creating a {kind}"));
    }
    assert_forbidden(&k.run(&["get", "vpcs"]), "listing Vpcs");

    // Tenant B's EIP is invisible and untouchable for tenant A.
    let b = other.ns();
    other.kubectl().must_apply(&eip(b, "b-eip"));
    assert_forbidden(
        &k.run(&["get", "iptableseips", "b-eip", "-n", b]),
        "reading another namespace's EIP",
    );
    assert_forbidden(
        &k.run(&["get", "iptableseips", "-n", b]),
        "listing another namespace's EIPs",
    );
    assert_forbidden(
        &k.run(&["get", "iptableseips", "-A"]),
        "listing EIPs cluster-wide",
    );
    assert_forbidden(
        &k.apply_yaml(&eip(b, "a-eip")),
        "creating in another namespace",
    );
    assert_forbidden(
        &k.run(&["label", "iptableseips", "b-eip", "-n", b, "owner=a"]),
        "updating another namespace's EIP",
    );
    assert_forbidden(
        &k.run(&["delete", "iptableseips", "b-eip", "-n", b]),
        "deleting another namespace's EIP",
    );
    other
        .kubectl()
        .ok(&["get", "iptableseips", "b-eip", "-n", b]);
}

#[test]
fn namespace_viewer_reads_but_cannot_write() {
    let admin = Kubectl::for_box();
    let t = Tenant::create(&admin, "e2e-rbac-view");
    let ns = t.ns();
    t.kubectl().must_apply(&eip(ns, "eip1"));
    let viewer = t.user("viewer", "view");

    let got = viewer.ok(&["get", "iptableseips", "eip1", "-n", ns, "-o", "name"]);
    assert_eq!(got.trim(), "iptableseip.vpcnet.io/eip1");
    let listed = viewer.ok(&["get", "iptableseips", "-n", ns, "-o", "name"]);
    assert!(listed.contains("eip1"), "{listed}");
    // Status comes with the object.
    viewer.ok(&[
        "get",
        "iptableseips",
        "eip1",
        "-n",
        ns,
        "-o",
        "jsonpath={.status}",
    ]);

    assert_forbidden(
        &viewer.apply_yaml(&eip(ns, "eip2")),
        "a viewer creating an EIP",
    );
    assert_forbidden(
        &viewer.run(&["label", "iptableseips", "eip1", "-n", ns, "x=y"]),
        "a viewer updating an EIP",
    );
    assert_forbidden(
        &viewer.run(&["delete", "iptableseips", "eip1", "-n", ns]),
        "a viewer deleting an EIP",
    );
    assert_forbidden(
        &viewer.run(&[
            "patch",
            "iptableseips",
            "eip1",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"observedGeneration":1}}"#,
        ]),
        "a viewer patching status",
    );
}

#[test]
fn resource_quota_caps_a_namespaces_eips() {
    let admin = Kubectl::for_box();
    let t = Tenant::create(&admin, "e2e-rbac-quota");
    let (k, ns) = (t.kubectl(), t.ns());
    admin.must_apply(&format!(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {{name: vpcnet-eips, namespace: {ns}}}\n\
         spec:\n  hard:\n    count/iptableseips.vpcnet.io: \"2\"\n"
    ));
    // Admission enforces a quota once the controller has computed its usage.
    admin.eventually(Duration::from_secs(60), "the quota's status", || {
        admin
            .run(&[
                "get",
                "resourcequota",
                "vpcnet-eips",
                "-n",
                ns,
                "-o",
                "jsonpath={.status.hard}",
            ])
            .stdout
            .contains(r#""count/iptableseips.vpcnet.io":"2""#)
    });

    for name in ["q1", "q2"] {
        let out = k.apply_yaml(&eip(ns, name));
        assert!(out.ok, "EIP {name} is within the quota: {}", out.stderr);
    }
    let third = k.apply_yaml(&eip(ns, "q3"));
    assert!(
        !third.ok && third.stderr.contains("exceeded quota"),
        "a third EIP exceeds the quota: ok={} {}",
        third.ok,
        third.stderr
    );
    assert!(
        third.stderr.contains("count/iptableseips.vpcnet.io"),
        "{}",
        third.stderr
    );
    assert!(!k.run(&["get", "iptableseips", "q3", "-n", ns]).ok);
}
