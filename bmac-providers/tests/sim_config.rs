//! Configuring the simulated cloud: fault-rule syntax, environment layering, validation.

use std::collections::HashMap;
use std::time::Duration;

use bmac_providers::sim::{FaultKind, FaultRule, SimConfig, SimError, SimProvider};
use miette::Diagnostic;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn fault_lists_parse() {
    let rules = FaultRule::parse_list("node_pool:throttle:0.5:2,*:server:0.1").unwrap();
    assert_eq!(
        rules,
        vec![
            FaultRule::new(Some("node_pool"), FaultKind::Throttle, 0.5).times(2),
            FaultRule::new(None, FaultKind::ServerError, 0.1),
        ]
    );
    let aliases = FaultRule::parse_list(" cluster : 5xx : 1 , x:TIMEOUT:0:0, y:400:0.25,").unwrap();
    assert_eq!(aliases[0].error, FaultKind::ServerError);
    assert_eq!(aliases[1].error, FaultKind::Timeout);
    assert_eq!(aliases[1].times, Some(0));
    assert_eq!(aliases[2].error, FaultKind::Permanent);
    assert!(FaultRule::parse_list("").unwrap().is_empty());
    let one: FaultRule = "iam_role:permanent:1".parse().unwrap();
    assert!(one.matches("iam_role") && !one.matches("cluster"));
    assert!(FaultRule::new(None, FaultKind::Throttle, 1.0).matches("anything"));
}

#[test]
fn bad_fault_lists_are_typed_errors_naming_the_entry() {
    for (input, position, problem) in [
        ("node_pool:throttle", 1, "expected 3 or 4"),
        ("a:server:0.1,x:boom:0.5", 2, "unknown error `boom`"),
        ("x:server:1.5", 1, "not between 0 and 1"),
        ("x:server:-0.1", 1, "not between 0 and 1"),
        ("x:server:NaN", 1, "not between 0 and 1"),
        ("x:server:abc", 1, "rate `abc` is not a number"),
        ("x:server:0.5:-1", 1, "times `-1`"),
        ("x:server:0.5:2:9", 1, "found 5"),
        (":server:0.5", 1, "kind ``"),
        ("a b:server:0.1", 1, "kind `a b`"),
    ] {
        let err = FaultRule::parse_list(input).unwrap_err();
        assert_eq!(err.position, position, "{input}");
        assert!(err.problem.contains(problem), "{input}: {}", err.problem);
        assert!(err.to_string().contains(&err.entry));
        assert_eq!(err.code().unwrap().to_string(), "bmac::sim::bad_fault");
        assert!(err.help().unwrap().to_string().contains("kind:error:rate"));
    }
}

#[test]
fn environment_layers_over_the_spec() {
    let spec = SimConfig {
        seed: 1,
        faults: FaultRule::parse_list("*:server:0.1").unwrap(),
        ..SimConfig::default()
    };
    let unchanged = spec.clone().with_vars(vars(&[])).unwrap();
    assert_eq!(unchanged, spec);

    let layered = spec
        .clone()
        .with_vars(vars(&[
            ("BMAC_SIM_FAULTS", "cluster:timeout:1:1"),
            ("BMAC_SIM_SEED", "99"),
            ("BMAC_SIM_SPEED", "0.5"),
            ("BMAC_SIM_CONSISTENCY_MS", "250"),
            ("BMAC_SIM_CLOUD", ".bmac/sim-cloud.log"),
        ]))
        .unwrap();
    assert_eq!(layered.seed, 99);
    assert_eq!(layered.speed, 0.5);
    assert_eq!(layered.consistency_delay, Duration::from_millis(250));
    assert_eq!(
        layered.faults,
        vec![FaultRule::new(Some("cluster"), FaultKind::Timeout, 1.0).times(1)]
    );
    assert_eq!(
        layered.cloud_path.as_deref(),
        Some(std::path::Path::new(".bmac/sim-cloud.log"))
    );

    let cleared = spec.with_vars(vars(&[("BMAC_SIM_FAULTS", "")])).unwrap();
    assert!(cleared.faults.is_empty());
}

#[test]
fn bad_environment_values_are_errors_not_panics() {
    let err = SimConfig::default()
        .with_vars(vars(&[("BMAC_SIM_SEED", "-3")]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            SimError::Env {
                var: "BMAC_SIM_SEED",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code().unwrap().to_string(), "bmac::sim::bad_env");

    let err = SimConfig::default()
        .with_vars(vars(&[("BMAC_SIM_SPEED", "fast")]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            SimError::Env {
                var: "BMAC_SIM_SPEED",
                ..
            }
        ),
        "{err:?}"
    );

    let err = SimConfig::default()
        .with_vars(vars(&[("BMAC_SIM_SPEED", "-1")]))
        .unwrap_err();
    assert!(matches!(err, SimError::Speed { .. }), "{err:?}");

    let err = SimConfig::default()
        .with_vars(vars(&[("BMAC_SIM_FAULTS", "cluster:explode:1")]))
        .unwrap_err();
    assert!(matches!(err, SimError::Fault(_)), "{err:?}");
    assert_eq!(err.code().unwrap().to_string(), "bmac::sim::bad_fault");

    let err = SimConfig::default()
        .with_vars(vars(&[("BMAC_SIM_CONSISTENCY_MS", "2s")]))
        .unwrap_err();
    assert!(matches!(err, SimError::Env { .. }), "{err:?}");
}

#[test]
fn providers_refuse_invalid_configs() {
    for speed in [-1.0, f64::NAN, f64::INFINITY] {
        let err = SimProvider::new(SimConfig {
            speed,
            ..SimConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, SimError::Speed { .. }), "{err:?}");
    }
    let err = SimProvider::new(SimConfig {
        faults: vec![FaultRule::new(None, FaultKind::Throttle, 2.0)],
        ..SimConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("*:throttle:2"), "{err}");
}

#[test]
fn defaults_make_the_quickstart_take_seconds() {
    let d = SimConfig::default();
    let cluster = d.scale(Duration::from_secs(600));
    assert!(
        cluster > Duration::ZERO && cluster < Duration::from_secs(10),
        "{cluster:?}"
    );
    assert!(d.faults.is_empty() && d.cloud_path.is_none());
}

#[test]
fn token_lifetime_and_rotation_come_from_the_environment() {
    let config = SimConfig::default()
        .with_vars(vars(&[
            ("BMAC_SIM_TOKEN_TTL_MS", "60000"),
            ("BMAC_SIM_TOKEN_USES", "1"),
        ]))
        .unwrap();
    assert_eq!(config.token_ttl, Duration::from_secs(60));
    assert_eq!(config.token_uses, Some(1));
    let defaults = SimConfig::default().with_vars(vars(&[])).unwrap();
    assert_eq!(defaults.token_ttl, Duration::from_secs(15 * 60));
    assert_eq!(defaults.token_uses, None);
    for (var, value) in [
        ("BMAC_SIM_TOKEN_USES", "0"),
        ("BMAC_SIM_TOKEN_USES", "often"),
        ("BMAC_SIM_TOKEN_TTL_MS", "1.5"),
    ] {
        let err = SimConfig::default()
            .with_vars(vars(&[(var, value)]))
            .unwrap_err();
        assert!(err.to_string().contains(var), "{err}");
    }
}
