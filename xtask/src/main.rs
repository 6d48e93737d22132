//! Developer and CI entry points: `cargo xtask <command>`.
//!
//! - `demo`            bring up the cluster-in-a-box and run the walk-through
//! - `test`            everything: fmt, clippy, CRD drift, unit/integration, e2e on the box
//! - `e2e`             the e2e suites on the running box, as `test` runs them (two lanes)
//! - `box up|down|env` start / stop the cluster-in-a-box, print how to use it
//! - `crds`            regenerate `crds/` from the Rust types
//! - `argocd`          regenerate `config/argocd/argocd-cm-patch.yaml` from `config/argocd/health.lua`
//! - `bundle`          regenerate the OLM bundle `bundle/` from `crds/`, `config/base/`, `config/olm/`, `config/samples/`
//! - `bundle validate` check `bundle/` with the operator-framework validators and `opm` (built once, cached)
//! - `olm-e2e`         install with the real OLM v1 (catalogd + operator-controller, built once) from a local catalog on the box, and run the seed walk-through (not in CI)
//! - `nb-model`        regenerate `ovn/src/nb_model.rs` from the OVN Northbound schema

mod argocd;
mod bundle;
mod e2e;
mod shell;
mod test;

use std::process::ExitCode;

use vpcnet_test_support::box_env;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["crds"] => write_crds(),
        ["argocd"] => argocd::write(&shell::repo_root()),
        ["bundle"] => bundle::write(&shell::repo_root()),
        ["bundle", "validate"] => shell::box_script("build-olm-validate.sh", &[])
            .and_then(|()| shell::box_script("build-opm.sh", &[]))
            .and_then(|()| bundle::validate(&shell::repo_root())),
        ["nb-model"] => write_nb_model(),
        ["box", "up"] => shell::box_up(),
        ["box", "down"] => shell::box_script("down.sh", &[]),
        ["box", "env"] => shell::box_script("env.sh", &[]),
        ["demo"] => demo(),
        ["olm-e2e"] => olm_e2e(),
        ["test"] => test::run(),
        ["e2e"] => e2e::run(),
        _ => {
            eprintln!(
                "usage: cargo xtask <demo | test | e2e | box up|down|env | crds | argocd | bundle [validate] | olm-e2e | nb-model>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_crds() -> Result<(), String> {
    let dir = shell::repo_root().join("crds");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let files = vpcnet_api::crds::rendered();
    for entry in std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".yaml") && !files.iter().any(|(n, _)| *n == name) {
            std::fs::remove_file(entry.path()).map_err(|e| e.to_string())?;
        }
    }
    for (name, body) in &files {
        std::fs::write(dir.join(name), body).map_err(|e| format!("writing {name}: {e}"))?;
    }
    println!("wrote {} CRDs to {}", files.len(), dir.display());
    Ok(())
}

fn write_nb_model() -> Result<(), String> {
    let path = ovn_codegen::write(&shell::repo_root().join("ovn"))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The walk-through of the reference scenario: VPC, subnet, external
/// network, NAT gateway, EIPs, SNAT, DNAT and a web server, then traffic in
/// both directions through the EIPs. The box keeps running afterwards.
/// OLM v1 on the box (started unless it is up), the bundle installed
/// through it (`e2e/tests/olm_v1.rs`); OLM v1 is stopped again, the box is
/// left up.
fn olm_e2e() -> Result<(), String> {
    println!("olm-e2e: building OLM v1, the registry and opm (once; ~15 min cold)");
    shell::box_script("build-olmv1.sh", &[])?;
    shell::box_script("build-opm.sh", &[])?;
    if !shell::box_dir().join("kubeconfig").exists() {
        println!("olm-e2e: starting the box");
        shell::box_up()?;
    }
    println!("olm-e2e: starting OLM v1 on the box");
    shell::box_script("olmv1.sh", &["up"])?;
    let test = shell::cargo(&[
        "test",
        "-p",
        "vpcnet-e2e",
        "--locked",
        "--test",
        "olm_v1",
        "--",
        "--ignored",
        "--nocapture",
    ]);
    let down = shell::box_script("olmv1.sh", &["down"]);
    test.and(down)
}

fn demo() -> Result<(), String> {
    shell::box_up()?;
    let root = shell::repo_root();
    let kubeconfig = shell::box_dir().join("kubeconfig");
    let binary = shell::box_dir().join("bin/kubectl");
    let kubectl = |args: &[&str]| {
        println!("$ kubectl {}", args.join(" "));
        shell::run(
            std::process::Command::new(&binary)
                .env("KUBECONFIG", &kubeconfig)
                .args(args),
        )
    };
    let samples = root.join("config/samples");
    for f in [
        "00-namespace.yaml",
        "01-vpc.yaml",
        "02-subnet.yaml",
        "03-external-subnet.yaml",
        "04-nat-gateway.yaml",
        "05-eips.yaml",
        "06-snat.yaml",
        "07-dnat.yaml",
    ] {
        kubectl(&["apply", "-f", &samples.join(f).to_string_lossy()])?;
    }
    kubectl(&[
        "apply",
        "-f",
        &root.join("config/demo/web.yaml").to_string_lossy(),
    ])?;
    kubectl(&[
        "wait",
        "-n",
        "sukai263",
        "--for=condition=Ready",
        "--timeout=180s",
        "pod/vpc-nginx",
    ])?;
    kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=180s",
        "vpcnatgateway/natgw",
    ])?;
    kubectl(&[
        "wait",
        "-n",
        "sukai263",
        "--for=condition=Ready",
        "--timeout=120s",
        "iptableseip/eips01",
        "iptableseip/eipd01",
        "iptablessnatrule/snat01",
        "iptablesdnatrule/dnat01",
    ])?;
    kubectl(&["get", "vpcnet", "-A"])?;

    let (ext_netns, ext_ip) = (box_env::ext_netns(), box_env::ext_host_ip());
    println!(
        "\n# From the external host ({ext_ip}) to the DNAT EIP 172.16.3.203:8888 -> vpc-nginx:80"
    );
    println!("$ ip netns exec {ext_netns} curl -s http://172.16.3.203:8888/");
    shell::run(std::process::Command::new("ip").args([
        "netns",
        "exec",
        ext_netns,
        "curl",
        "-s",
        "--max-time",
        "5",
        "http://172.16.3.203:8888/",
    ]))?;
    println!(
        "\n# From vpc-nginx out to the external host: the source it sees is the SNAT EIP 172.16.3.208"
    );
    kubectl(&[
        "exec",
        "-n",
        "sukai263",
        "vpc-nginx",
        "--",
        "curl",
        "-s",
        "--max-time",
        "5",
        &format!("http://{ext_ip}/"),
    ])?;
    println!(
        "\n\nThe cluster-in-a-box keeps running.\n  use it:  eval \"$(cargo xtask box env)\"; kubectl get vpcnet -A\n  stop it: cargo xtask box down"
    );
    Ok(())
}
