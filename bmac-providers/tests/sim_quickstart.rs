//! End to end on the simulated cloud: `examples/quickstart.toml` expanded by the catalogue,
//! planned, run by the executor against the providers `for_spec` picks, journaled to a local
//! store — then re-planned (nothing to do), changed (exactly the changed step updates) and
//! destroyed (everything removed, dependents first).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bmac_core::plan::{Action, Planner};
use bmac_core::state::State;
use bmac_core::{Executor, LocalStore, Plan, StateStore};
use bmac_providers::setup::SIM_CLOUD_FILE;
use bmac_providers::{for_spec, SimCloud};
use bmac_steps::expand;
use bmac_steps::spec::Spec;
use serde_json::Value;

fn quickstart_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.toml")
}

fn quickstart(text: Option<String>) -> Spec {
    let path = quickstart_path();
    let text = text.unwrap_or_else(|| std::fs::read_to_string(&path).unwrap());
    Spec::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e:?}"))
}

async fn state(store: &LocalStore) -> State {
    store.load().await.unwrap().state
}

fn plan_for(spec: &Spec, state: &State) -> Plan {
    let e = expand(spec).unwrap();
    Planner::new(e.steps, state)
        .sources(e.sources)
        .plan()
        .unwrap()
}

/// One `bmac apply`: fresh providers over the persisted cloud, as a new process would have.
async fn run(
    spec: &Spec,
    dir: &Path,
    store: &LocalStore,
    plan: Plan,
) -> bmac_core::exec::RunReport {
    let providers = for_spec(spec, dir).unwrap();
    Executor::new(providers)
        .seed(7)
        .run(plan, store)
        .await
        .unwrap()
}

/// The op log's lines from byte `from` on, parsed.
fn ops_since(dir: &Path, from: usize) -> Vec<Value> {
    let log = std::fs::read_to_string(dir.join(SIM_CLOUD_FILE)).unwrap();
    log[from..]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn log_len(dir: &Path) -> usize {
    std::fs::metadata(dir.join(SIM_CLOUD_FILE)).unwrap().len() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_builds_converges_updates_and_destroys_on_the_sim() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("state")).unwrap();
    let spec = quickstart(None);
    let expansion = expand(&spec).unwrap();
    let n = expansion.steps.len();

    // Build everything.
    let plan = plan_for(&spec, &state(&store).await);
    assert_eq!(plan.summary().create, n);
    let report = run(&spec, dir.path(), &store, plan).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.counts.succeeded, n, "{report:?}");
    let cloud = SimCloud::open(dir.path().join(SIM_CLOUD_FILE)).unwrap();
    assert_eq!(cloud.len(), n);
    // Outputs flowed: the service account carries its role's ARN.
    let role = cloud.get("workload_identity.payments-api.role").unwrap();
    let sa = cloud
        .get("workload_identity.payments-api.service_account")
        .unwrap();
    let arn = role.outputs.get("arn").unwrap().value().unwrap().clone();
    assert_eq!(
        sa.outputs.get("annotations").unwrap().value().unwrap()["sim.bmac.invalid/role"],
        arn
    );
    drop(cloud);

    // Nothing changed: a re-plan is all no-ops, and running it writes nothing to the cloud.
    let plan = plan_for(&spec, &state(&store).await);
    assert!(!plan.has_changes(), "{:?}", plan.summary());
    assert_eq!(plan.summary().unchanged, n);
    let before = log_len(dir.path());
    let report = run(&spec, dir.path(), &store, plan).await;
    assert!(report.is_success(), "{report:?}");
    assert!(ops_since(dir.path(), before).is_empty());

    // Scale one pool: exactly that step updates, and only it changes in the cloud.
    let text = std::fs::read_to_string(quickstart_path()).unwrap();
    let scaled = text.replacen("max = 10\ndesired = 3", "max = 10\ndesired = 5", 1);
    assert_ne!(scaled, text, "the quickstart's workers pool moved");
    let spec = quickstart(Some(scaled));
    let plan = plan_for(&spec, &state(&store).await);
    let changed: Vec<(&str, &Action)> = plan
        .nodes()
        .iter()
        .filter(|n| n.action.is_change())
        .map(|n| (n.step.id.as_str(), &n.action))
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].0, "node_pool.workers");
    let Action::Update { fields, .. } = changed[0].1 else {
        panic!("not an update: {changed:?}");
    };
    assert_eq!(fields, &["/scaling/desired".to_owned()]);
    let before = log_len(dir.path());
    let report = run(&spec, dir.path(), &store, plan).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.counts.succeeded, 1, "{report:?}");
    let ops = ops_since(dir.path(), before);
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["op"], "put");
    assert_eq!(ops[0]["id"], "node_pool.workers");
    assert_eq!(ops[0]["config"]["scaling"]["desired"], 5);

    // Destroy: everything goes, each resource only after everything that depended on it.
    let plan = Planner::new(Vec::<bmac_core::Step>::new(), &state(&store).await)
        .destroy()
        .plan()
        .unwrap();
    assert_eq!(plan.summary().destroy, n);
    let before = log_len(dir.path());
    let report = run(&spec, dir.path(), &store, plan).await;
    assert!(report.is_success(), "{report:?}");
    let deleted: Vec<String> = ops_since(dir.path(), before)
        .into_iter()
        .filter(|op| op["op"] == "delete")
        .map(|op| op["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deleted.len(), n, "{deleted:?}");
    let at: HashMap<&str, usize> = deleted
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    for step in &expansion.steps {
        for dep in step.dependencies() {
            assert!(
                at[step.id.as_str()] < at[dep.as_str()],
                "{} was destroyed after {dep}, which it depends on",
                step.id
            );
        }
    }
    assert!(SimCloud::open(dir.path().join(SIM_CLOUD_FILE))
        .unwrap()
        .is_empty());
    assert!(state(&store)
        .await
        .applied(&"cluster".parse().unwrap())
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_cluster_change_runs_alone_while_the_cluster_is_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("state")).unwrap();
    let spec = quickstart(None);
    let plan = plan_for(&spec, &state(&store).await);
    assert!(run(&spec, dir.path(), &store, plan).await.is_success());

    // The namespace step takes the cluster's outputs as inputs (its credential source comes
    // from state; the token is minted at call time) while the cluster itself has nothing to do.
    let text = std::fs::read_to_string(quickstart_path()).unwrap();
    let relabelled = text.replacen(
        "labels = { team = \"web\" }",
        "labels = { team = \"web\", tier = \"frontend\" }",
        1,
    );
    assert_ne!(relabelled, text, "the quickstart's web namespace moved");
    let spec = quickstart(Some(relabelled));
    let plan = plan_for(&spec, &state(&store).await);
    let changed: Vec<&str> = plan
        .nodes()
        .iter()
        .filter(|n| n.action.is_change())
        .map(|n| n.step.id.as_str())
        .collect();
    assert_eq!(changed, ["namespace.web"]);
    let before = log_len(dir.path());
    let report = run(&spec, dir.path(), &store, plan).await;
    assert!(report.is_success(), "{report:?}");
    let ops = ops_since(dir.path(), before);
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["config"]["labels"]["tier"], "frontend");
}
