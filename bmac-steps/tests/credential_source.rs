//! The `credentials` a cluster step hands its in-cluster steps: a [`CredentialSource`], stored
//! in state and hashed into fingerprints as plain JSON. Its wire form is what state files,
//! plan files and embedders see, so it is pinned here.

use bmac_steps::config::ExecEnvVar;
use bmac_steps::CredentialSource;
use serde_json::json;

#[test]
fn sources_serialise_internally_tagged_by_type() {
    let cases = [
        (
            CredentialSource::kubeconfig(None, "prod"),
            json!({"type": "kubeconfig", "context": "prod"}),
        ),
        (
            CredentialSource::kubeconfig(Some("~/.kube/prod".into()), "prod"),
            json!({"type": "kubeconfig", "path": "~/.kube/prod", "context": "prod"}),
        ),
        (
            CredentialSource::Exec {
                command: "aws".into(),
                args: vec!["eks".into(), "get-token".into()],
                env: vec![ExecEnvVar {
                    name: "AWS_PROFILE".into(),
                    value: "ci".into(),
                }],
                api_version: "client.authentication.k8s.io/v1beta1".into(),
                provide_cluster_info: false,
                install_hint: None,
            },
            json!({"type": "exec", "command": "aws", "args": ["eks", "get-token"],
                   "env": [{"name": "AWS_PROFILE", "value": "ci"}],
                   "api_version": "client.authentication.k8s.io/v1beta1"}),
        ),
        (
            CredentialSource::Sim {
                cluster_id: "sim-0123456789ab".into(),
            },
            json!({"type": "sim", "cluster_id": "sim-0123456789ab"}),
        ),
        (
            CredentialSource::Eks {
                cluster: "shop".into(),
                region: "eu-west-1".into(),
            },
            json!({"type": "eks", "cluster": "shop", "region": "eu-west-1"}),
        ),
        (
            CredentialSource::Gke {
                project: "p".into(),
                location: "europe-west1".into(),
                cluster: "shop".into(),
            },
            json!({"type": "gke", "project": "p", "location": "europe-west1", "cluster": "shop"}),
        ),
        (
            CredentialSource::Aks {
                subscription_id: "sub".into(),
                resource_group: "rg".into(),
                cluster: "shop".into(),
            },
            json!({"type": "aks", "subscription_id": "sub", "resource_group": "rg",
                   "cluster": "shop"}),
        ),
    ];
    for (source, wire) in cases {
        assert_eq!(source.to_value(), wire, "{source}");
        assert_eq!(wire["type"], json!(source.type_name()));
        let back: CredentialSource = serde_json::from_value(wire).expect("round trip");
        assert_eq!(back, source);
    }
}

#[test]
fn an_exec_source_reads_with_only_its_required_fields() {
    let source: CredentialSource = serde_json::from_value(json!({
        "type": "exec", "command": "kubelogin",
        "api_version": "client.authentication.k8s.io/v1"
    }))
    .expect("minimal exec source");
    let CredentialSource::Exec {
        args,
        env,
        provide_cluster_info,
        ..
    } = &source
    else {
        panic!("not an exec source: {source:?}");
    };
    assert!(args.is_empty() && env.is_empty() && !provide_cluster_info);
    assert_eq!(source.to_string(), "exec plugin \"kubelogin\"");
}

#[test]
fn an_unknown_source_type_is_a_clear_error() {
    let err = serde_json::from_value::<CredentialSource>(json!({"type": "vault", "path": "x"}))
        .expect_err("unknown type");
    let text = err.to_string();
    assert!(text.contains("unknown variant `vault`"), "{text}");
    assert!(
        text.contains("`kubeconfig`") && text.contains("`eks`"),
        "{text}"
    );
    let err = serde_json::from_value::<CredentialSource>(json!({"context": "prod"}))
        .expect_err("no type");
    assert!(err.to_string().contains("missing field `type`"), "{err}");
    let err = serde_json::from_value::<CredentialSource>(json!({"type": "kubeconfig"}))
        .expect_err("no context");
    assert!(err.to_string().contains("missing field `context`"), "{err}");
}

#[test]
fn a_source_is_described_without_secrets_for_messages() {
    let shown = [
        CredentialSource::kubeconfig(Some("/k/config".into()), "admin").to_string(),
        CredentialSource::Eks {
            cluster: "shop".into(),
            region: "us-east-1".into(),
        }
        .to_string(),
    ];
    assert_eq!(
        shown,
        [
            "kubeconfig context \"admin\" (/k/config)",
            "EKS cluster \"shop\" in us-east-1"
        ]
    );
}
