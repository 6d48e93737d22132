//! `cargo xtask test`: the whole suite, in the order CI runs it, with a
//! timing table at the end.

use std::time::Instant;

use crate::shell;

struct Phase {
    name: &'static str,
    secs: f64,
}

/// Runs every check; the box is always stopped again, also on failure.
pub fn run() -> Result<(), String> {
    let mut phases: Vec<Phase> = Vec::new();
    let mut timed = |name: &'static str, f: &dyn Fn() -> Result<(), String>| {
        let t = Instant::now();
        let r = f();
        phases.push(Phase {
            name,
            secs: t.elapsed().as_secs_f64(),
        });
        r
    };

    timed("install system packages", &|| {
        shell::box_script("install-deps.sh", &[])
    })?;
    timed("shellcheck (every script)", &shell::shellcheck)?;
    timed("build kubernetes (go, cached)", &|| {
        shell::box_script("build-k8s.sh", &[])
    })?;
    timed("build argocd-lua-health (go, cached)", &|| {
        shell::box_script("build-gopher-lua.sh", &[])
    })?;
    timed("build olm-validate (go, cached)", &|| {
        shell::box_script("build-olm-validate.sh", &[])
    })?;
    timed("build opm (go, cached)", &|| {
        shell::box_script("build-opm.sh", &[])
    })?;
    timed("cargo fmt --check", &|| {
        shell::cargo(&["fmt", "--all", "--check"])
    })?;
    timed("cargo build (all targets)", &|| {
        shell::cargo(&["build", "--workspace", "--all-targets", "--locked"])
    })?;
    timed("cargo clippy -D warnings", &|| {
        shell::cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])
    })?;
    // The checked-in OLM bundle: its own tests (drift, kinds), then the
    // operator-framework validators and opm; none of it needs the box.
    timed("OLM bundle (drift, validators)", &|| {
        shell::cargo(&["test", "-p", "xtask", "--locked", "bundle::"])?;
        crate::bundle::validate(&shell::repo_root())
    })?;
    // Integration tests of the CNI plugin and the NAT agent play the
    // operator themselves: they get a box with the control plane only. The
    // e2e suite then gets the whole box, operator and node included.
    let plane = timed("box up (control plane)", &|| {
        shell::start_box_control_plane()
    });
    let tests = plane
        .and_then(|()| {
            timed("unit + integration tests", &|| {
                shell::cargo(&["test", "--workspace", "--locked", "--exclude", "vpcnet-e2e"])
            })
        })
        // The box's images take the debug binaries built above (their
        // debug info stripped): a second, optimised build of the same code
        // would cost more than every test it serves; the demo and the
        // benchmarks use release builds.
        .and_then(|()| {
            timed("box up (node, images, config)", &|| {
                shell::start_box_from("debug")
            })
        })
        .and_then(|()| timed("e2e tests on the box", &crate::e2e::run));
    let down = timed("box down", &|| shell::box_script("down.sh", &[]));

    println!("\n{:<34} {:>9}", "phase", "seconds");
    let mut total = 0.0;
    for p in &phases {
        println!("{:<34} {:>9.1}", p.name, p.secs);
        total += p.secs;
    }
    println!("{:<34} {:>9.1}", "total", total);
    tests.and(down)
}
