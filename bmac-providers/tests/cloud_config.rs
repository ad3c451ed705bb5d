//! [`CloudConfig`]: region, profile and endpoint overrides resolved once from the spec, an
//! environment given as a map, and flags — with bad endpoints refused and no secret captured.

use std::path::Path;

use bmac_providers::{CloudConfig, Overrides, SetupError};
use bmac_steps::spec::Spec;
use miette::Diagnostic;

fn spec(lines: &str) -> Spec {
    let text = format!("[cluster]\nname = \"t\"\n{lines}\n");
    Spec::parse("bmac.toml", &text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn resolve(
    spec: &Spec,
    pairs: &[(&str, &str)],
    overrides: &Overrides,
) -> Result<CloudConfig, SetupError> {
    CloudConfig::resolve(spec, Path::new("/tmp/bmac-state"), env(pairs), overrides)
}

fn eks() -> Spec {
    spec("provider = \"eks\"\nregion = \"eu-west-1\"\nversion = \"1.31\"")
}

#[test]
fn the_specs_region_wins_and_the_environment_fills_in() {
    let from_spec = resolve(
        &eks(),
        &[("AWS_REGION", "us-east-1")],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(from_spec.region.as_deref(), Some("eu-west-1"));
    let sim = spec("provider = \"sim\"");
    let from_env = resolve(
        &sim,
        &[
            ("AWS_DEFAULT_REGION", "ap-south-1"),
            ("AWS_REGION", "us-east-2"),
        ],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(from_env.region.as_deref(), Some("us-east-2"));
    let none = resolve(&sim, &[], &Overrides::default()).unwrap();
    assert_eq!(none.region, None);
}

#[test]
fn the_profile_comes_from_the_flag_else_the_clouds_own_variable() {
    let vars = [
        ("AWS_PROFILE", "ci"),
        ("CLOUDSDK_ACTIVE_CONFIG_NAME", "gcloud-ci"),
    ];
    assert_eq!(
        resolve(&eks(), &vars, &Overrides::default())
            .unwrap()
            .profile
            .as_deref(),
        Some("ci")
    );
    let flag = Overrides {
        profile: Some("admin".into()),
        ..Overrides::default()
    };
    assert_eq!(
        resolve(&eks(), &vars, &flag).unwrap().profile.as_deref(),
        Some("admin")
    );
    // The simulator has no credentials chain: an AWS profile in the environment is not its.
    let sim = spec("provider = \"sim\"");
    assert_eq!(
        resolve(&sim, &vars, &Overrides::default()).unwrap().profile,
        None
    );
}

#[test]
fn endpoints_come_from_the_sdks_variables_and_flags_win() {
    let vars = [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ("AWS_ENDPOINT_URL_EKS", "http://127.0.0.1:5001"),
        (
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER",
            "http://127.0.0.1:8090/",
        ),
        ("STORAGE_EMULATOR_HOST", "127.0.0.1:4443"),
    ];
    let flags = Overrides {
        endpoints: vec![Overrides::parse_endpoint("S3=http://localhost:9000").unwrap()],
        ..Overrides::default()
    };
    let config = resolve(&eks(), &vars, &flags).unwrap();
    assert_eq!(config.endpoint("eks"), Some("http://127.0.0.1:5001"));
    assert_eq!(config.endpoint("s3"), Some("http://localhost:9000"));
    assert_eq!(
        config.endpoint("sts"),
        Some("http://127.0.0.1:5000"),
        "AWS_ENDPOINT_URL is every service's fallback"
    );
    assert_eq!(
        config.endpoints.get("container"),
        None,
        "Google's variables are not AWS's"
    );
    let gke = spec("provider = \"gke\"\nregion = \"europe-west1\"\nproject = \"acme-prod\"");
    let config = resolve(&gke, &vars, &Overrides::default()).unwrap();
    assert_eq!(config.endpoint("container"), Some("http://127.0.0.1:8090/"));
    assert_eq!(config.endpoint("storage"), Some("http://127.0.0.1:4443"));
    assert_eq!(
        config.endpoint("eks"),
        None,
        "AWS's variables are not Google's"
    );

    let flag_over_env = Overrides {
        endpoints: vec![("eks".into(), "http://127.0.0.1:6000".into())],
        ..Overrides::default()
    };
    let config = resolve(&eks(), &vars, &flag_over_env).unwrap();
    assert_eq!(config.endpoint("eks"), Some("http://127.0.0.1:6000"));
}

#[test]
fn a_bad_endpoint_is_an_error_naming_where_it_was_set() {
    for (pairs, flags, origin) in [
        (
            vec![("AWS_ENDPOINT_URL_EKS", "127.0.0.1:5000")],
            vec![],
            "$AWS_ENDPOINT_URL_EKS",
        ),
        (
            vec![],
            vec![(
                "s3".to_owned(),
                "http://key:secret@127.0.0.1:9000".to_owned(),
            )],
            "--endpoint s3=",
        ),
        (
            vec![],
            vec![("sts".to_owned(), "https://".to_owned())],
            "--endpoint sts=",
        ),
    ] {
        let overrides = Overrides {
            endpoints: flags,
            ..Overrides::default()
        };
        let err = resolve(&eks(), &pairs, &overrides).unwrap_err();
        assert!(matches!(err, SetupError::Endpoint { .. }), "{err:?}");
        assert!(err.to_string().contains(origin), "{err}");
        assert_eq!(
            err.code().map(|c| c.to_string()).as_deref(),
            Some("bmac::setup::endpoint")
        );
        assert!(err.help().is_some());
    }
    assert!(Overrides::parse_endpoint("eks").is_err());
    assert!(Overrides::parse_endpoint("=http://x").is_err());
    assert!(Overrides::parse_endpoint("e ks=http://x").is_err());
}

#[test]
fn no_secret_is_captured() {
    let vars = [
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
        ("AWS_SESSION_TOKEN", "FwoGZXIvYXdzE"),
        ("AZURE_CLIENT_SECRET", "azsecret"),
        ("AWS_PROFILE", "ci"),
        ("HOME", "/root"),
    ];
    let config = resolve(&eks(), &vars, &Overrides::default()).unwrap();
    // HOME is captured (not a secret): it locates the bundle cache.
    assert_eq!(
        config.vars.keys().collect::<Vec<_>>(),
        ["AWS_PROFILE", "HOME"]
    );
    let shown = format!("{config:?}");
    for secret in ["AKIAEXAMPLE", "wJalrXUtnFEMI", "FwoGZXIvYXdzE", "azsecret"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn the_simulators_knobs_come_from_the_given_environment_only() {
    let sim = spec("provider = \"sim\"\n[sim]\nseed = 4\nspeed = 0.5");
    let config = resolve(
        &sim,
        &[("BMAC_SIM_SPEED", "0.25"), ("BMAC_SIM_TOKEN_USES", "1")],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(config.sim.seed, 4);
    assert_eq!(config.sim.speed, 0.25);
    assert_eq!(config.sim.token_uses, Some(1));
    assert_eq!(
        config.sim.cloud_path.as_deref(),
        Some(Path::new("/tmp/bmac-state/sim-cloud.log"))
    );
    let bad = resolve(&sim, &[("BMAC_SIM_SEED", "many")], &Overrides::default()).unwrap_err();
    assert!(bad.to_string().contains("BMAC_SIM_SEED"), "{bad}");
}

#[test]
fn a_service_both_clouds_name_goes_to_the_clusters_own_cloud() {
    let vars = [
        ("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:5000"),
        (
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM",
            "http://127.0.0.1:8091/",
        ),
    ];
    let eks = resolve(&eks(), &vars, &Overrides::default()).unwrap();
    assert_eq!(eks.endpoint("iam"), Some("http://127.0.0.1:5000"));
    let gke = spec("provider = \"gke\"\nregion = \"europe-west1\"\nproject = \"acme-prod\"");
    let gke = resolve(&gke, &vars, &Overrides::default()).unwrap();
    assert_eq!(gke.endpoint("iam"), Some("http://127.0.0.1:8091/"));
    assert_eq!(
        gke.account.as_deref(),
        Some("acme-prod"),
        "a GKE cluster's account is its project"
    );
}
