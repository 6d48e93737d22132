//! A thin wrapper over the `kubectl` binary pointed at the box.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Output of one `kubectl` run.
#[derive(Debug)]
pub struct Output {
    /// Exit status was zero.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// `kubectl` bound to one kubeconfig.
#[derive(Clone, Debug)]
pub struct Kubectl {
    kubeconfig: PathBuf,
    binary: PathBuf,
}

/// The box's own kubectl (same release as the cluster), else the one on PATH.
fn kubectl_binary() -> PathBuf {
    let boxed = crate::box_dir().join("bin/kubectl");
    if boxed.exists() {
        boxed
    } else {
        PathBuf::from("kubectl")
    }
}

impl Kubectl {
    /// The box's admin kubeconfig. Panics with instructions when the box is
    /// not up: an e2e test without a cluster must fail, not pass vacuously.
    pub fn for_box() -> Self {
        let kubeconfig = std::env::var_os("KUBECONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::box_dir().join("kubeconfig"));
        assert!(
            kubeconfig.exists(),
            "no kubeconfig at {}: start the cluster-in-a-box with `cargo xtask box up`",
            kubeconfig.display()
        );
        let k = Self {
            kubeconfig,
            binary: kubectl_binary(),
        };
        let probe = k.run(&["get", "--raw", "/readyz"]);
        assert!(
            probe.ok,
            "the box's API server is not ready: {}",
            probe.stderr
        );
        k
    }

    /// `kubectl` with another kubeconfig (e.g. a tenant's, see
    /// [`crate::tenant`]); no readiness probe, the file is used as is.
    pub fn with_kubeconfig(kubeconfig: impl Into<PathBuf>) -> Self {
        Self {
            kubeconfig: kubeconfig.into(),
            binary: kubectl_binary(),
        }
    }

    /// The kubectl binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The kubeconfig in use.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Runs `kubectl <args>`.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(&self.binary)
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.binary.display()));
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `kubectl <args>` and panics with its stderr unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.ok, "kubectl {} failed: {}", args.join(" "), out.stderr);
        out.stdout
    }

    /// `kubectl apply -f <path>`.
    pub fn apply(&self, path: &Path) -> Output {
        self.run(&["apply", "-f", &path.to_string_lossy()])
    }
}
