//! `for_spec`: the providers a spec's `[cluster] provider` asks for, the simulator configured
//! from `[sim]`, and clear errors for backends this build lacks.

use std::path::Path;

use bmac_providers::setup::{sim_config, sim_settings, SIM_CLOUD_FILE};
use bmac_providers::sim::FaultKind;
use bmac_providers::{for_config, for_spec, CloudConfig, Overrides, SetupError};
use bmac_steps::spec::Spec;
use miette::Diagnostic;

fn spec(provider_lines: &str, sim: &str) -> Spec {
    let text = format!("[cluster]\nname = \"t\"\n{provider_lines}\n{sim}\n");
    Spec::parse("bmac.toml", &text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn example(name: &str) -> Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    Spec::load(&path).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn a_sim_spec_gets_a_simulated_cloud_in_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    // Resolved from an empty environment: whatever `BMAC_SIM_*` this process has is ignored.
    let spec = example("quickstart.toml");
    let config = CloudConfig::resolve(&spec, dir.path(), [], &Overrides::default()).unwrap();
    let providers = for_config(&config).unwrap();
    for kind in bmac_steps::kinds::ALL.iter().chain(["custom_kind"].iter()) {
        assert_eq!(
            providers.for_kind(kind).map(|p| p.name()),
            Some("sim"),
            "{kind}"
        );
    }
    assert!(dir.path().join(SIM_CLOUD_FILE).exists());
}

#[test]
fn sim_settings_and_faults_come_from_the_spec() {
    let s = spec(
        "provider = \"sim\"",
        "[sim]\nseed = 9\nspeed = 0.5\nfaults = [\
         { kind = \"node_pool\", error = \"throttle\", rate = 0.5, times = 2 },\
         { kind = \"cluster\", error = \"server\", rate = 1.0 }]",
    );
    let dir = Path::new("/tmp/bmac-state");
    let config = sim_settings(&s, dir).unwrap();
    assert_eq!(config.seed, 9);
    assert_eq!(config.speed, 0.5);
    assert_eq!(
        config.cloud_path.as_deref(),
        Some(dir.join(SIM_CLOUD_FILE).as_path())
    );
    assert_eq!(config.faults.len(), 2);
    assert_eq!(config.faults[0].kind.as_deref(), Some("node_pool"));
    assert_eq!(config.faults[0].error, FaultKind::Throttle);
    assert_eq!(config.faults[0].rate, 0.5);
    assert_eq!(config.faults[0].times, Some(2));
    assert_eq!(config.faults[1].error, FaultKind::ServerError);
    assert_eq!(config.faults[1].times, None);
}

#[test]
fn a_fault_limited_to_one_step_is_refused_not_widened() {
    let s = spec(
        "provider = \"sim\"",
        "[sim]\nfaults = [{ kind = \"node_pool\", step = \"node_pool.system\", error = \"timeout\", rate = 1.0 }]",
    );
    let err = sim_config(&s, Path::new("/tmp/x")).unwrap_err();
    assert!(matches!(&err, SetupError::StepFault { step, .. } if step == "node_pool.system"));
    assert_eq!(
        err.code().map(|c| c.to_string()).as_deref(),
        Some("bmac::setup::step_fault")
    );
}

#[test]
fn cloud_providers_are_set_up_or_say_which_feature_to_enable() {
    let dir = tempfile::tempdir().unwrap();
    let clouds = [
        ("eks-baseline.toml", "eks", "aws", cfg!(feature = "aws")),
        ("gke-baseline.toml", "gke", "gcp", cfg!(feature = "gcp")),
    ];
    for (file, provider, feature, compiled) in clouds {
        if compiled {
            // The provider exists: cloud kinds go to it, in-cluster kinds to kube, and setting
            // them up calls nothing.
            let providers = for_spec(&example(file), dir.path()).unwrap();
            assert_eq!(providers.for_kind("cluster").unwrap().name(), feature);
            assert_eq!(providers.for_kind("node_pool").unwrap().name(), feature);
            assert_eq!(providers.for_kind("namespace").unwrap().name(), "kube");
            continue;
        }
        let err = for_spec(&example(file), dir.path()).unwrap_err();
        let code = err.code().map(|c| c.to_string()).unwrap_or_default();
        let help = err.help().map(|h| h.to_string()).unwrap_or_default();
        {
            assert!(
                matches!(&err, SetupError::FeatureMissing { provider: p, feature: f } if *p == provider && *f == feature),
                "{err:?}"
            );
            assert_eq!(code, "bmac::setup::feature_missing");
            assert_eq!(
                help,
                format!("this build of bmac has no `{feature}` provider; rebuild with `--features {feature}`")
            );
        }
    }
    // Nothing was created for a provider that could not be set up.
    assert!(!dir.path().join(SIM_CLOUD_FILE).exists());
}

#[cfg(not(feature = "kube"))]
#[test]
fn an_existing_cluster_needs_the_kube_feature() {
    let err = for_spec(&example("existing-cluster.toml"), Path::new("/tmp/x")).unwrap_err();
    assert!(matches!(
        err,
        SetupError::FeatureMissing {
            provider: "kube",
            feature: "kube"
        }
    ));
}
