//! A tenant as a real namespace user sees the cluster: a namespace, a
//! ServiceAccount in it bound to one of the built-in roles (`admin`, `edit`,
//! `view`), and a `kubectl` that authenticates with that ServiceAccount's
//! token — not with the box's cluster-admin certificate.
//!
//! ```no_run
//! use vpcnet_e2e::kubectl::Kubectl;
//! use vpcnet_e2e::tenant::Tenant;
//!
//! let admin = Kubectl::for_box();
//! let t = Tenant::create(&admin, "e2e-acme");
//! t.kubectl().ok(&["get", "iptableseips", "-n", t.ns()]);
//! let viewer = t.user("viewer", "view");
//! assert!(!viewer.run(&["delete", "iptableseips", "--all", "-n", t.ns()]).ok);
//! // Dropping `t` deletes the namespace (and with it its users).
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::cluster::Cleanup;
use crate::kubectl::Kubectl;

/// How long a minted token is valid; longer than any test or benchmark.
const TOKEN_DURATION: &str = "1h";

/// A tenant namespace and its admin. Dropping it deletes the namespace (and
/// with it every object and user in it) and the kubeconfig files written.
pub struct Tenant {
    ns: String,
    admin: Kubectl,
    k: Kubectl,
    kubeconfigs: Mutex<Vec<PathBuf>>,
    // Last: runs after `Drop for Tenant` removed the files.
    _cleanup: Cleanup,
}

impl Tenant {
    /// Namespace `ns` (deleted first if a previous run left it behind) with
    /// the ServiceAccount `tenant-admin` bound to the built-in `admin` role
    /// of that namespace. `admin` is the box's cluster-admin `kubectl`, used
    /// only for setup and cleanup.
    pub fn create(admin: &Kubectl, ns: &str) -> Self {
        let gone = admin.run(&[
            "delete",
            "namespace",
            ns,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ]);
        assert!(gone.ok, "deleting leftover namespace {ns}: {}", gone.stderr);
        admin.must_apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{app.kubernetes.io/part-of: vpcnet-e2e}}}}\n"
        ));
        let mut cleanup = Cleanup::new(admin);
        cleanup.add("namespace", None, ns);
        let mut t = Self {
            ns: ns.to_string(),
            admin: admin.clone(),
            k: admin.clone(),
            kubeconfigs: Mutex::new(Vec::new()),
            _cleanup: cleanup,
        };
        t.k = t.user("tenant-admin", "admin");
        t
    }

    /// The namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// `kubectl` as the namespace's admin ServiceAccount.
    pub fn kubectl(&self) -> &Kubectl {
        &self.k
    }

    /// The ServiceAccount user name of `sa` in this namespace, as the API
    /// server sees it (for `--as` and in Forbidden messages).
    pub fn username(&self, sa: &str) -> String {
        format!("system:serviceaccount:{}:{sa}", self.ns)
    }

    /// Another user of the namespace: ServiceAccount `sa` bound by a
    /// RoleBinding to the built-in ClusterRole `cluster_role` (`admin`,
    /// `edit` or `view`) in this namespace only. Returns once the API server
    /// authorizes it to list the namespace's EIPs (every one of those roles
    /// may; vpcnet's aggregated rules are in place by then).
    pub fn user(&self, sa: &str, cluster_role: &str) -> Kubectl {
        let ns = &self.ns;
        self.admin.must_apply(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: {ns}}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
             metadata: {{name: {sa}-{cluster_role}, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {cluster_role}}}\n\
             subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {ns}}}]\n"
        ));
        let token = self.admin.ok(&[
            "create",
            "token",
            sa,
            "-n",
            ns,
            &format!("--duration={TOKEN_DURATION}"),
        ]);
        let path = std::env::temp_dir().join(format!(
            "vpcnet-e2e-{ns}-{sa}-{}.kubeconfig",
            std::process::id()
        ));
        write_kubeconfig(&self.admin, &path, &format!("{ns}-{sa}"), token.trim());
        self.kubeconfigs.lock().unwrap().push(path.clone());
        let k = Kubectl::with_kubeconfig(path);
        self.admin.eventually(
            Duration::from_secs(30),
            &format!("{} to be allowed to list iptableseips", self.username(sa)),
            || {
                k.run(&["auth", "can-i", "list", "iptableseips.vpcnet.io", "-n", ns])
                    .stdout
                    .trim()
                    == "yes"
            },
        );
        k
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        for p in self.kubeconfigs.get_mut().unwrap().iter() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Writes (mode 0600) a kubeconfig for the box's API server (address and CA
/// of `admin`'s kubeconfig) authenticating with a bearer `token`.
fn write_kubeconfig(admin: &Kubectl, path: &Path, user: &str, token: &str) {
    let cluster = |field: &str| {
        admin
            .ok(&[
                "config",
                "view",
                "--raw",
                "--minify",
                "-o",
                &format!("jsonpath={{.clusters[0].cluster.{field}}}"),
            ])
            .trim()
            .to_string()
    };
    let server = cluster("server");
    let ca = match cluster("certificate-authority-data") {
        data if !data.is_empty() => format!("certificate-authority-data: {data}"),
        _ => format!(
            "certificate-authority: {}",
            cluster("certificate-authority")
        ),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: vpcnet-box\n  cluster:\n    server: {server}\n    {ca}\n\
         users:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: {user}\n  context: {{cluster: vpcnet-box, user: {user}}}\n\
         current-context: {user}\n"
    );
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The platform side of tenant `t` (as cluster-admin): a Vpc `t` listing
/// namespace `t` and its Subnet `t-net` of `cidr`, registered for cleanup.
pub fn platform(k: &Kubectl, c: &mut Cleanup, t: &str, cidr: &str) {
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {t}}}\nspec: {{namespaces: [{t}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {t}-net}}\nspec: {{vpc: {t}, cidrBlock: {cidr}, namespaces: [{t}]}}\n"
    ));
    c.add("vpc", None, t);
    c.add("subnet", None, &format!("{t}-net"));
}
