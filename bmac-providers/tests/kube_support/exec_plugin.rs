//! An exec credential plugin for the test cluster, the way managed clusters' kubeconfigs
//! authenticate (`aws eks get-token`, `gke-gcloud-auth-plugin`, `kubelogin`): a shell script
//! that prints a `client.authentication.k8s.io/v1beta1` `ExecCredential` holding the test
//! cluster's admin token (read from the kube-env directory each time it runs, so the token is
//! in no file the test writes) with an `expirationTimestamp` an hour ahead, and a kubeconfig
//! whose user runs it. Every run appends a line to a file, so tests can count runs.
//! Included by `bmac-providers/tests/kube_support` and `bmac-cli/tests/kube_support`.

use std::path::{Path, PathBuf};

/// The context of the plugin's kubeconfig.
pub const EXEC_CONTEXT: &str = "bmac-exec";

/// The admin token of the kube-env cluster whose kubeconfig is `kubeconfig`
/// (`scripts/kube-env.sh` keeps it beside the kubeconfig).
pub fn admin_token(kubeconfig: &str) -> String {
    let path = token_file(kubeconfig);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

fn token_file(kubeconfig: &str) -> PathBuf {
    Path::new(kubeconfig)
        .parent()
        .expect("the kubeconfig is in the kube-env directory")
        .join("admin.token")
}

/// A plugin script and a kubeconfig using it, in a directory of the test's.
pub struct ExecPlugin {
    /// The script.
    pub script: PathBuf,
    /// A kubeconfig with one context, [`EXEC_CONTEXT`], whose user runs the script.
    pub kubeconfig: PathBuf,
    runs: PathBuf,
}

impl ExecPlugin {
    /// Writes the script and its kubeconfig into `dir`, for the cluster of the kube-env
    /// kubeconfig `admin_kubeconfig` (its server and CA).
    pub fn new(dir: &Path, admin_kubeconfig: &str) -> ExecPlugin {
        let runs = dir.join("plugin-runs");
        let script = dir.join("bmac-test-credential-plugin.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nset -e\necho run >> '{runs}'\ntoken=$(cat '{token}')\n\
                 expires=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)\n\
                 printf '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\
                 \"kind\":\"ExecCredential\",\"status\":{{\"token\":\"%s\",\
                 \"expirationTimestamp\":\"%s\"}}}}\\n' \"$token\" \"$expires\"\n",
                runs = runs.display(),
                token = token_file(admin_kubeconfig).display(),
            ),
        )
        .expect("write the plugin script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("make the plugin executable");

        let admin = kube::config::Kubeconfig::read_from(admin_kubeconfig).expect("kubeconfig");
        let cluster = admin.clusters[0].cluster.as_ref().expect("a cluster");
        let kubeconfig = dir.join("exec-kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    \
                 server: {server}\n    certificate-authority-data: {ca}\nusers:\n\
                 - name: plugin-user\n  user:\n    exec:\n      command: {script}\n      \
                 apiVersion: client.authentication.k8s.io/v1beta1\n      \
                 interactiveMode: IfAvailable\ncontexts:\n- name: {EXEC_CONTEXT}\n  context:\n    \
                 cluster: test\n    user: plugin-user\ncurrent-context: {EXEC_CONTEXT}\n",
                server = cluster.server.as_deref().expect("a server"),
                ca = cluster
                    .certificate_authority_data
                    .as_deref()
                    .expect("inline CA data"),
                script = script.display(),
            ),
        )
        .expect("write the plugin's kubeconfig");
        ExecPlugin {
            script,
            kubeconfig,
            runs,
        }
    }

    /// How many times the plugin has run.
    pub fn runs(&self) -> usize {
        std::fs::read_to_string(&self.runs)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// The kubeconfig's path as text.
    pub fn kubeconfig_path(&self) -> &str {
        self.kubeconfig.to_str().expect("a UTF-8 path")
    }
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if std::fs::read(&path)
                .expect("read a file")
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}
