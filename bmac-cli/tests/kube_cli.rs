//! End-to-end tests of the real `bmac` binary against a real kube-apiserver (1.20, see
//! `scripts/kube-env.sh`), driving a copy of `examples/existing-cluster.toml`: apply, no-op
//! re-apply, a one-namespace change, drift put right, an interrupted apply resumed, destroy
//! leaving the cluster as found, a bundle with the wrong digest refused, and RBAC denials
//! reported as verb + resource.
//!
//! What bmac did is always read back from the server with kube-rs, never taken from bmac's
//! state or output; "no writes" is the API server's own `apiserver_request_total` counter.
//!
//! Run: `scripts/kube-env.sh start /tmp/k && . /tmp/k/env && BMAC_E2E=1 cargo test -p bmac-cli
//! --test kube_cli` (the `kube` feature is on by default). Without a server (and without `BMAC_E2E=1`) every test
//! prints a notice and returns.

#![cfg(feature = "kube")]

mod kube_support;

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube_support::lifecycle::{check_first_apply, hand_edit_enforce, interrupted_apply_resumes};
use kube_support::rbac::{assert_clear_denial, grant_read, revoke_grants};
use kube_support::workspace::{events_of, ids, outcome, replace_once, Workspace};
use kube_support::*;
use serde_json::{json, Value};

/// The example spec with this run's own names: namespace `apps-SFX` (and its workload
/// identity) and storage class `standard-SFX`.
fn own_names(text: String, sfx: &str) -> String {
    let text = replace_once(&text, "name = \"apps\"", &format!("name = \"apps-{sfx}\""));
    let text = replace_once(
        &text,
        "namespace = \"apps\"",
        &format!("namespace = \"apps-{sfx}\""),
    );
    replace_once(
        &text,
        "name = \"standard\"",
        &format!("name = \"standard-{sfx}\""),
    )
}

fn label<'a>(labels: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    labels.get(key).map(String::as_str)
}

/// The steps a human `bmac plan` lists as changing (`+`, `~`, `-/+`, `-` lines).
fn planned_changes(plan_stdout: &str) -> Vec<String> {
    plan_stdout
        .lines()
        .filter(|l| l.contains(" will be ") || l.contains(" must be replaced"))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_cluster_lifecycle() {
    let Some(c) = connect("existing_cluster_lifecycle").await else {
        return;
    };
    let t0 = Instant::now();
    ensure_no_kyverno(&c.admin).await;
    let sfx = suffix();
    let apps = format!("apps-{sfx}");
    let legacy = format!("legacy-{sfx}");

    // Someone else's namespace and labels, there before bmac.
    create_namespace(&c.admin, &legacy, &[("team", "legacy")]).await;
    let default_before = namespace_labels(&c.admin, "default")
        .await
        .expect("default");
    let system_before = namespace_labels(&c.admin, "kube-system")
        .await
        .expect("kube-system");

    let ws = Workspace::new(|text| {
        let text = own_names(text, &sfx);
        format!(
            "{text}\n[[namespace]]\nname = \"{legacy}\"\nlabels = {{ tier = \"legacy-apps\" }}\n\
             pod_security = {{ enforce = \"restricted\" }}\n"
        )
    });

    // 1. First apply creates every object; checked by reading them back.
    let first = ws
        .bmac(&["--output", "json", "apply", "--auto-approve"])
        .await;
    first.expect_code(0, "first apply");
    let events = first.events();
    assert_eq!(outcome(&events).as_deref(), Some("succeeded"));
    let expected_steps = [
        "cluster".to_owned(),
        "policy.engine".to_owned(),
        "pod_security.kube-system".to_owned(),
        format!("namespace.{legacy}"),
        format!("pod_security.{legacy}"),
        format!("namespace.{apps}"),
        format!("pod_security.{apps}"),
        format!("storage_class.standard-{sfx}"),
        format!("workload_identity.{apps}-api.service_account"),
        "policy.default-pod-security-labels".to_owned(),
        "policy.restrict-registries".to_owned(),
        "policy.require-non-root".to_owned(),
        "policy.disallow-host-namespaces".to_owned(),
        "policy.disallow-privileged".to_owned(),
    ];
    let succeeded = ids(&events, "step_succeeded");
    for step in &expected_steps {
        assert!(
            succeeded.contains(step),
            "{step} did not succeed: {events:?}"
        );
    }
    let t_first = t0.elapsed();
    check_first_apply(&c.admin, &sfx, &system_before).await;

    // 2. A second apply is all no-op, and the server sees zero write requests.
    let before = writes(&c.admin).await;
    let again = ws
        .bmac(&["--output", "json", "apply", "--auto-approve"])
        .await;
    again.expect_code(0, "second apply");
    let plan = ws.bmac(&["plan", "--detailed-exitcode"]).await;
    plan.expect_code(0, "plan after apply");
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    assert_eq!(
        writes(&c.admin).await - before,
        0,
        "re-applying an unchanged spec wrote to the API server"
    );
    assert!(
        ids(&again.events(), "step_started").is_empty(),
        "a no-op apply started steps: {}",
        again.stdout
    );

    // 3. One namespace's level changes: exactly that namespace is updated.
    ws.edit_spec(|t| {
        replace_once(
            &t,
            "labels = { owner = \"platform\" }",
            "labels = { owner = \"platform\" }\npod_security = { enforce = \"restricted\" }",
        )
    });
    let plan = ws.bmac(&["plan", "--detailed-exitcode"]).await;
    plan.expect_code(2, "plan with one level changed");
    assert_eq!(
        planned_changes(&plan.stdout),
        vec![format!("pod_security.{apps}")],
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("\"baseline\" → \"restricted\""),
        "the plan shows the level's old and new value:\n{}",
        plan.stdout
    );
    let versions_before = namespace_versions(&c.admin).await;
    let before = writes(&c.admin).await;
    let update = ws
        .bmac(&["--output", "json", "apply", "--auto-approve"])
        .await;
    update.expect_code(0, "apply of the level change");
    let update_writes = writes(&c.admin).await - before;
    assert_eq!(
        ids(&update.events(), "step_started")
            .into_iter()
            .collect::<Vec<_>>(),
        vec![format!("pod_security.{apps}")]
    );
    let versions_after = namespace_versions(&c.admin).await;
    let moved: Vec<&String> = versions_after
        .iter()
        .filter(|(name, rv)| versions_before.get(*name) != Some(rv))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(moved, vec![&apps], "only the changed namespace was written");
    assert_eq!(
        update_writes, 1,
        "one namespace's labels changed: one write request (its server-side apply)"
    );
    let restricted = psa_labels("restricted", "restricted", "restricted");
    assert_eq!(
        namespace_labels(&c.admin, &apps).await,
        Some(merged(&[("owner", "platform")], &restricted))
    );

    // 4. A label edited by hand shows in `bmac drift` and `apply` puts it back.
    hand_edit_enforce(&c.admin, &apps, "privileged").await;
    let drift = ws.bmac(&["--output", "json", "drift"]).await;
    drift.expect_code(2, "drift after a hand edit");
    let report: Value = serde_json::from_str(drift.stdout.trim()).expect("drift report JSON");
    let drifted: Vec<&Value> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["status"] == "drifted")
        .collect();
    assert_eq!(drifted.len(), 1, "{report}");
    assert_eq!(drifted[0]["id"], json!(format!("pod_security.{apps}")));
    let fields = drifted[0]["fields"].as_array().expect("fields");
    assert!(
        fields.iter().any(
            |f| f["field"].as_str().is_some_and(|p| p.contains("enforce"))
                && f["applied"] == json!("restricted")
                && f["actual"] == json!("privileged")
        ),
        "{report}"
    );
    let human = ws.bmac(&["drift"]).await;
    human.expect_code(2, "human drift");
    assert!(
        human.stdout.contains(&format!("pod_security.{apps}")) && human.stdout.contains("enforce"),
        "{}",
        human.stdout
    );
    ws.bmac(&["apply", "--auto-approve"])
        .await
        .expect_code(0, "apply restoring the hand edit");
    assert_eq!(
        namespace_labels(&c.admin, &apps)
            .await
            .as_ref()
            .and_then(|l| label(l, "pod-security.kubernetes.io/enforce").map(str::to_owned)),
        Some("restricted".to_owned())
    );
    ws.bmac(&["drift"])
        .await
        .expect_code(0, "drift after the restoring apply");
    let t_changes = t0.elapsed();

    // 5. An apply killed mid-run resumes without repeating finished steps.
    let burst = interrupted_apply_resumes(&c.admin, &ws, &sfx).await;
    let t_resume = t0.elapsed();

    // 6. Destroy leaves the cluster as it found it.
    let finalizer = NamespaceFinalizer::start(&c.admin);
    let destroy = ws
        .bmac(&["--output", "json", "destroy", "--auto-approve"])
        .await;
    drop(finalizer);
    destroy.expect_code(0, "destroy");
    assert_eq!(outcome(&destroy.events()).as_deref(), Some("succeeded"));
    for ns in burst.iter().chain([&apps, &"kyverno".to_owned()]) {
        assert!(
            namespace(&c.admin, ns).await.is_none(),
            "namespace {ns} bmac created is gone"
        );
    }
    assert_eq!(crd_established(&c.admin, KYVERNO_CRD).await, None);
    assert!(cluster_policies(&c.admin).await.is_empty());
    let roles: Api<ClusterRole> = Api::all(c.admin.clone());
    assert!(roles
        .get_opt("kyverno:admission-controller")
        .await
        .expect("GET clusterrole")
        .is_none());
    let classes: Api<StorageClass> = Api::all(c.admin.clone());
    assert!(classes
        .get_opt(&format!("standard-{sfx}"))
        .await
        .expect("GET storageclass")
        .is_none());
    assert_eq!(
        namespace_labels(&c.admin, &legacy).await,
        Some(BTreeMap::from([("team".to_owned(), "legacy".to_owned())])),
        "the pre-existing namespace stays, with its own label and without bmac's"
    );
    assert_eq!(
        namespace_labels(&c.admin, "default").await,
        Some(default_before)
    );
    assert_eq!(
        namespace_labels(&c.admin, "kube-system").await,
        Some(system_before)
    );
    let t_destroy = t0.elapsed();
    delete_namespaces(&c.admin, &[&legacy]).await;
    eprintln!(
        "timings (cumulative): first apply {t_first:?}, no-op + change + drift {t_changes:?}, \
         interrupted + resumed {t_resume:?}, destroy {t_destroy:?}"
    );
}

/// The example's pinned digest.
fn example_digest(spec: &str) -> String {
    let start = spec.find("sha256 = \"").expect("the example pins a digest") + 10;
    spec[start..start + 64].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_with_wrong_digest_is_refused_before_anything_is_applied() {
    let Some(c) = connect("bundle_with_wrong_digest_is_refused_before_anything_is_applied").await
    else {
        return;
    };
    ensure_no_kyverno(&c.admin).await;
    let sfx = suffix();
    let apps = format!("apps-{sfx}");
    let wrong = "0123456789abcdef".repeat(4);
    let mut good = String::new();
    let ws = Workspace::new(|text| {
        good = example_digest(&text);
        let text = own_names(text, &sfx);
        replace_once(&text, &good, &wrong)
    });
    let before = writes(&c.admin).await;

    // The spec pins a digest the bundle does not have.
    for args in [
        &["apply", "--auto-approve"][..],
        &["--output", "json", "apply", "--auto-approve"],
        &["plan"],
    ] {
        let run = ws.bmac(args).await;
        run.expect_code(3, &format!("bmac {args:?} with a wrong digest"));
        assert!(
            run.stderr.contains(&wrong) && run.stderr.contains(&good),
            "the error names the expected and the actual digest:\n{}",
            run.stderr
        );
        assert!(
            events_of(&run.stdout)
                .iter()
                .all(|e| e["event"] != "step_started"),
            "no step started: {}",
            run.stdout
        );
    }

    // The spec's digest is right but the file was changed after it was pinned.
    ws.edit_spec(|t| replace_once(&t, &wrong, &good));
    let bundle = ws.path().join("bundles/kyverno.yaml");
    let mut bytes = std::fs::read(&bundle).expect("bundle");
    bytes.extend_from_slice(b"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: planted\n");
    std::fs::write(&bundle, bytes).expect("tamper with the bundle");
    let run = ws.bmac(&["apply", "--auto-approve"]).await;
    run.expect_code(3, "apply with a tampered bundle");
    // Digests are the 64-hex-digit words of the report (which wraps lines between words).
    let digests: Vec<&str> = run
        .stderr
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .collect();
    assert!(
        digests.contains(&good.as_str()) && digests.iter().any(|d| *d != good),
        "the error names the tampered file's digest and the pinned one:\n{}",
        run.stderr
    );

    assert_eq!(
        writes(&c.admin).await - before,
        0,
        "a refused bundle still led to write requests"
    );
    for ns in [apps.as_str(), "kyverno", "planted"] {
        assert!(namespace(&c.admin, ns).await.is_none(), "{ns} was created");
    }
    assert_eq!(crd_established(&c.admin, KYVERNO_CRD).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_rights_are_reported_as_verb_and_resource() {
    let Some(c) = connect("missing_rights_are_reported_as_verb_and_resource").await else {
        return;
    };
    revoke_grants(&c.admin).await;
    let sfx = suffix();
    let apps = format!("apps-{sfx}");
    let ws = Workspace::new(|text| {
        let text = own_names(text, &sfx);
        replace_once(
            &text,
            "context = \"bmac-admin\"",
            "context = \"bmac-limited\"",
        )
    });

    // No rights at all: the first thing refused is reading. (`--keep-going` so every step
    // that can start does, whichever fails first.)
    let json_run = ws
        .bmac(&[
            "--output",
            "json",
            "apply",
            "--auto-approve",
            "--keep-going",
        ])
        .await;
    json_run.expect_code(1, "apply without rights");
    let events = json_run.events();
    assert_eq!(outcome(&events).as_deref(), Some("failed"));
    let failed: BTreeMap<String, String> = events
        .iter()
        .filter(|e| e["event"] == "step_failed")
        .map(|e| {
            let id = e["id"].as_str().unwrap_or_default().to_owned();
            (id, error_text(&e["error"]))
        })
        .collect();
    let ns_error = failed
        .get(&format!("namespace.{apps}"))
        .unwrap_or_else(|| panic!("namespace step did not fail: {events:?}"));
    assert!(
        ns_error.contains(&format!("cannot get namespaces \"{apps}\""))
            && ns_error.contains("bmac-limited"),
        "{ns_error}"
    );
    for error in failed.values() {
        assert!(error.contains("permission denied: cannot "), "{error}");
        assert_clear_denial(error);
    }
    let human = ws.bmac(&["apply", "--auto-approve", "--keep-going"]).await;
    human.expect_code(1, "human apply without rights");
    assert!(
        human.stderr.contains("cannot get namespaces"),
        "{}",
        human.stderr
    );
    assert_clear_denial(&human.stderr);
    assert_clear_denial(&human.stdout);

    // Read-only rights: now the write is what is refused, and named.
    grant_read(
        &c.admin,
        &c.kubeconfig,
        &format!("bmac-kube-cli-read-{sfx}"),
    )
    .await;
    let run = ws
        .bmac(&[
            "--output",
            "json",
            "apply",
            "--auto-approve",
            "--keep-going",
        ])
        .await;
    revoke_grants(&c.admin).await;
    run.expect_code(1, "apply with read-only rights");
    let events = run.events();
    let ns_error = events
        .iter()
        .find(|e| e["event"] == "step_failed" && e["id"] == json!(format!("namespace.{apps}")))
        .map(|e| error_text(&e["error"]))
        .unwrap_or_else(|| panic!("namespace step did not fail: {events:?}"));
    assert!(
        ns_error.contains(&format!("cannot patch namespaces \"{apps}\""))
            && ns_error.contains("grant the `patch` verb on `namespaces`"),
        "{ns_error}"
    );
    assert_clear_denial(&ns_error);
    assert!(namespace(&c.admin, &apps).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_plugin_kubeconfig_works_and_its_token_stays_out_of_the_state() {
    let Some(c) =
        connect("an_exec_plugin_kubeconfig_works_and_its_token_stays_out_of_the_state").await
    else {
        return;
    };
    ensure_no_kyverno(&c.admin).await;
    let sfx = suffix();
    let apps = format!("apps-{sfx}");
    let plugin_dir = tempfile::tempdir().expect("tempdir");
    let plugin = ExecPlugin::new(plugin_dir.path(), &c.kubeconfig);
    let ws = Workspace::new(|text| {
        let text = own_names(text, &sfx);
        replace_once(
            &text,
            "context = \"bmac-admin\"",
            &format!(
                "kubeconfig = \"{}\"\ncontext = \"{EXEC_CONTEXT}\"",
                plugin.kubeconfig_path()
            ),
        )
    });

    // 1. The apply authenticates through the plugin and builds everything.
    let first = ws
        .bmac(&["--output", "json", "apply", "--auto-approve"])
        .await;
    first.expect_code(0, "apply through an exec plugin");
    assert_eq!(outcome(&first.events()).as_deref(), Some("succeeded"));
    assert_eq!(
        namespace_labels(&c.admin, &apps).await,
        Some(merged(
            &[("owner", "platform")],
            &psa_labels("baseline", "restricted", "restricted")
        ))
    );
    assert_eq!(crd_established(&c.admin, KYVERNO_CRD).await, Some(true));
    assert!(plugin.runs() >= 1, "the plugin was run");

    // 2. Applying again changes nothing: no step starts, the server sees no write.
    let before = writes(&c.admin).await;
    let again = ws
        .bmac(&["--output", "json", "apply", "--auto-approve"])
        .await;
    again.expect_code(0, "second apply");
    assert!(
        ids(&again.events(), "step_started").is_empty(),
        "{}",
        again.stdout
    );
    let plan = ws.bmac(&["plan", "--detailed-exitcode"]).await;
    plan.expect_code(0, "plan after apply");
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    assert_eq!(writes(&c.admin).await - before, 0);

    // 3. The token is in no file bmac wrote and in nothing it printed.
    let token = admin_token(&c.kubeconfig);
    let state = ws.path().join(".bmac");
    assert!(
        state.is_dir(),
        "bmac keeps its state in {}",
        state.display()
    );
    assert_eq!(
        files_containing(&state, &token),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(
        !files_containing(&state, EXEC_CONTEXT).is_empty(),
        "the state records the source (the context), not the token"
    );
    for run in [&first, &again, &plan] {
        assert!(!run.stdout.contains(&token) && !run.stderr.contains(&token));
    }

    // 4. A destroy in a fresh process rebuilds its clients from the recorded source.
    let runs = plugin.runs();
    let finalizer = NamespaceFinalizer::start(&c.admin);
    let destroy = ws
        .bmac(&["--output", "json", "destroy", "--auto-approve"])
        .await;
    drop(finalizer);
    destroy.expect_code(0, "destroy through an exec plugin");
    assert!(namespace(&c.admin, &apps).await.is_none());
    assert_eq!(crd_established(&c.admin, KYVERNO_CRD).await, None);
    assert!(plugin.runs() > runs, "the destroy minted its own token");
    assert_eq!(
        files_containing(ws.path(), &token),
        Vec::<std::path::PathBuf>::new()
    );
}

/// A `step_failed` event's structured error as one line: the message, then its causes.
fn error_text(error: &serde_json::Value) -> String {
    let mut text = error["message"].as_str().unwrap_or_default().to_owned();
    for cause in error["causes"].as_array().into_iter().flatten() {
        text.push_str(": ");
        text.push_str(cause.as_str().unwrap_or_default());
    }
    text
}
