//! Each concern on its own: provider spellings (EKS, GKE, existing cluster), Pod Security
//! merging and exemptions, Gatekeeper policies, manifests and extra policies from files, and
//! the catalogue's own diagnostics.

use std::path::Path;

use bmac_core::step::Step;
use bmac_steps::config::{
    AddonConfig, EncryptionKeyConfig, IamRoleConfig, IdentityBindingConfig, ManifestConfig,
    NetworkConfig, NodePoolConfig, PodSecurityLabelsConfig, PolicyConfig, RegistryMirrorConfig,
    RegistryPolicyConfig, ServiceAccountConfig, StorageClassConfig,
};
use bmac_steps::spec::Spec;
use bmac_steps::{expand, expand_in, CatalogueError, Expansion};
use miette::Diagnostic;

fn example(name: &str) -> Expansion {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let spec = Spec::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
    expand(&spec).unwrap_or_else(|e| panic!("{e:?}"))
}

fn parse(text: &str) -> Spec {
    Spec::parse("bmac.toml", text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn step<'a>(e: &'a Expansion, id: &str) -> &'a Step {
    e.steps
        .iter()
        .find(|s| s.id.as_str() == id)
        .unwrap_or_else(|| {
            let ids: Vec<_> = e.steps.iter().map(|s| s.id.as_str()).collect();
            panic!("no step `{id}` in {ids:?}")
        })
}

fn input_refs(s: &Step) -> Vec<String> {
    s.inputs
        .iter()
        .map(|(name, r)| format!("{name}<-{r}"))
        .collect()
}

/// Whether a step's inputs are only the cluster-access ones every in-cluster step takes.
trait ClusterOnly {
    fn is_empty_or_cluster_only(&self) -> bool;
}

impl<V> ClusterOnly for std::collections::BTreeMap<String, V> {
    fn is_empty_or_cluster_only(&self) -> bool {
        self.keys()
            .all(|k| ["endpoint", "ca_data", "credentials"].contains(&k.as_str()))
    }
}

fn has_dep(e: &Expansion, id: &str, dep: &str) -> bool {
    step(e, id).dependencies().any(|d| d.as_str() == dep)
}

const SIM: &str = "[cluster]\nname = \"t\"\nprovider = \"sim\"\n";

#[test]
fn eks_spells_things_the_aws_way() {
    let e = example("eks-baseline.toml");
    let gp3: StorageClassConfig = step(&e, "storage_class.gp3").config_as().unwrap();
    assert_eq!(gp3.provisioner, "ebs.csi.aws.com");
    assert!(gp3.parameters["kmsKeyId"].starts_with("arn:aws:kms:"));
    // EKS Pod Identity by default: the account carries no annotation and waits for its
    // association, which waits for the agent add-on.
    let sa: ServiceAccountConfig = step(&e, "workload_identity.payments-api.service_account")
        .config_as()
        .unwrap();
    assert_eq!(sa.role_annotation, "");
    assert!(step(&e, "workload_identity.payments-api.service_account")
        .inputs
        .is_empty_or_cluster_only());
    let binding: IdentityBindingConfig = step(&e, "workload_identity.payments-api.binding")
        .config_as()
        .unwrap();
    assert_eq!(
        (binding.namespace.as_str(), binding.service_account.as_str()),
        ("payments", "api")
    );
    assert!(has_dep(
        &e,
        "workload_identity.payments-api.service_account",
        "workload_identity.payments-api.binding"
    ));
    assert!(has_dep(
        &e,
        "workload_identity.payments-api.binding",
        "cluster.pod_identity_agent"
    ));
    let role: IamRoleConfig = step(&e, "workload_identity.payments-api.role")
        .config_as()
        .unwrap();
    assert_eq!(
        role.existing.as_deref(),
        Some("arn:aws:iam::123456789012:role/payments-api")
    );
    // IRSA where the spec asks: the annotation, and a role trusting the cluster's OIDC
    // provider for this one account.
    let sa: ServiceAccountConfig = step(&e, "workload_identity.payments-worker.service_account")
        .config_as()
        .unwrap();
    assert_eq!(sa.role_annotation, "eks.amazonaws.com/role-arn");
    let created: IamRoleConfig = step(&e, "workload_identity.payments-worker.role")
        .config_as()
        .unwrap();
    assert_eq!(created.purpose.as_deref(), Some("irsa"));
    assert_eq!(created.existing, None);
    assert_eq!(created.permissions.len(), 3);
    assert_eq!(created.name, "bmac-prod-payments-worker");
    let inputs = input_refs(step(&e, "workload_identity.payments-worker.role"));
    for wanted in [
        "oidc_provider<-cluster.oidc.outputs.arn",
        "oidc_issuer<-cluster.outputs.oidc_issuer",
    ] {
        assert!(inputs.iter().any(|i| i == wanted), "{wanted} in {inputs:?}");
    }
    assert!(!e.steps.iter().any(|s| s
        .id
        .as_str()
        .starts_with("workload_identity.payments-worker.binding")));
    assert!(has_dep(
        &e,
        "policy.engine",
        "registries.mirror.registry-k8s-io"
    ));
    assert!(has_dep(
        &e,
        "policy.engine",
        "registries.mirror.public-ecr-aws"
    ));
}

#[test]
fn an_eks_cluster_gets_its_network_roles_and_key_wired_in() {
    let e = example("eks-baseline.toml");
    // The network (bmac creates one: the example has no existing VPC), the control plane's
    // role and the Secrets key come before the cluster and flow into it as inputs.
    let cluster = step(&e, "cluster");
    let inputs: Vec<String> = cluster
        .inputs
        .iter()
        .map(|(name, r)| format!("{name}<-{r}"))
        .collect();
    for wanted in [
        "subnets<-network.outputs.subnets",
        "role<-cluster.role.outputs.arn",
        "key<-cluster.key.outputs.arn",
    ] {
        assert!(inputs.iter().any(|i| i == wanted), "{wanted} in {inputs:?}");
    }
    let role: IamRoleConfig = step(&e, "cluster.role").config_as().unwrap();
    assert_eq!(role.purpose.as_deref(), Some("cluster"));
    assert_eq!(role.name, "bmac-prod-cluster");
    let key: EncryptionKeyConfig = step(&e, "cluster.key").config_as().unwrap();
    assert!(key.rotation && key.existing.is_none());
    let network: NetworkConfig = step(&e, "network").config_as().unwrap();
    assert_eq!((network.zone_count, network.nat.as_str()), (3, "single"));
    // Each node pool gets its own node role and the private subnets.
    for pool in ["system", "general"] {
        let id = format!("node_pool.{pool}");
        let role: IamRoleConfig = step(&e, &format!("{id}.role")).config_as().unwrap();
        assert_eq!(role.purpose.as_deref(), Some("nodes"));
        let inputs: Vec<String> = step(&e, &id)
            .inputs
            .iter()
            .map(|(name, r)| format!("{name}<-{r}"))
            .collect();
        assert!(
            inputs.contains(&format!("role<-{id}.role.outputs.arn")),
            "{inputs:?}"
        );
        assert!(
            inputs.contains(&"subnets<-network.outputs.private_subnets".to_owned()),
            "{inputs:?}"
        );
    }
    // The simulator gets none of these unless the spec has a [network].
    let sim = expand(&Spec::parse("s.toml", SIM).unwrap()).unwrap();
    assert!(!sim
        .steps
        .iter()
        .any(|s| ["network", "cluster.role", "cluster.key"].contains(&s.id.as_str())));
    let with_network = format!("{SIM}[network]\ncidr = \"10.1.0.0/16\"\n");
    let sim = expand(&Spec::parse("s.toml", &with_network).unwrap()).unwrap();
    assert!(sim.steps.iter().any(|s| s.id.as_str() == "network"));
}

#[test]
fn eks_installs_the_vpc_cni_the_ebs_csi_driver_and_the_pod_identity_agent_as_addons() {
    let e = example("eks-baseline.toml");
    let addon = |id: &str| -> AddonConfig { step(&e, id).config_as().unwrap() };
    let role = |id: &str| -> IamRoleConfig { step(&e, id).config_as().unwrap() };
    assert_eq!(step(&e, "cni").kind.name(), "addon");
    let cni = addon("cni");
    assert_eq!(cni.name, "vpc-cni");
    assert!(cni.preserve, "removing the CNI must not cut pod networking");
    assert_eq!(
        (cni.namespace.as_str(), cni.service_account.as_str()),
        ("kube-system", "aws-node")
    );
    assert_eq!(
        cni.configuration["env"]["ENABLE_PREFIX_DELEGATION"],
        serde_json::json!("true")
    );
    assert_eq!(role("cni.role").managed, ["AmazonEKS_CNI_Policy"]);
    assert!(input_refs(step(&e, "cni")).contains(&"role<-cni.role.outputs.arn".to_owned()));
    assert!(has_dep(&e, "cni", "cluster.pod_identity_agent"));
    assert!(has_dep(&e, "node_pool.system", "cni"));

    let agent = addon("cluster.pod_identity_agent");
    assert_eq!(agent.name, "eks-pod-identity-agent");
    assert!(agent.service_account.is_empty());
    assert!(has_dep(&e, "cluster.pod_identity_agent", "cluster"));

    let driver = addon("storage.driver");
    assert_eq!(driver.name, "aws-ebs-csi-driver");
    assert_eq!(driver.service_account, "ebs-csi-controller-sa");
    let driver_role = role("storage.driver.role");
    assert_eq!(
        driver_role.managed,
        ["service-role/AmazonEBSCSIDriverPolicy"]
    );
    // The class's customer-managed key: the driver's role may use exactly that key.
    assert!(driver_role
        .permissions
        .contains(&"kms:CreateGrant".to_owned()));
    assert_eq!(
        driver_role.resources,
        ["arn:aws:kms:eu-west-1:123456789012:key/3f6e2a1c-0b7d-4e8f-9a1b-2c3d4e5f6a7b"]
    );
    for pool in ["node_pool.system", "node_pool.general"] {
        assert!(has_dep(&e, "storage.driver", pool), "{pool}");
    }
    assert!(has_dep(&e, "storage_class.gp3", "storage.driver"));

    // Nothing of this on the simulator or an existing cluster.
    let sim = expand(&parse(&format!(
        "{SIM}[cni]\nplugin = \"default\"\n[[storage_class]]\nname = \"fast\"\ntype = \"ssd\"\n"
    )))
    .unwrap();
    assert!(!sim.steps.iter().any(|s| s.kind.name() == "addon"));
    assert_eq!(step(&sim, "cni").kind.name(), "cni");
}

#[test]
fn eks_nodes_pull_through_the_caches_their_roles_may_fill() {
    let e = example("eks-baseline.toml");
    // One pull-through cache per mirror, docker.io's with its secret's ARN.
    let hub: RegistryMirrorConfig = step(&e, "registries.mirror.docker-io").config_as().unwrap();
    assert!(hub.pull_through_cache);
    assert!(hub
        .credential
        .as_deref()
        .is_some_and(|arn| arn.contains(":secret:ecr-pullthroughcache/")));
    let k8s: RegistryMirrorConfig = step(&e, "registries.mirror.registry-k8s-io")
        .config_as()
        .unwrap();
    assert_eq!(k8s.credential, None);
    // The registry policy grants every node role, after the caches exist.
    let policy = step(&e, "registries.policy");
    assert_eq!(policy.kind.name(), "registry_policy");
    let config: RegistryPolicyConfig = policy.config_as().unwrap();
    assert_eq!(config.cluster, "prod");
    assert_eq!(config.mirrors.len(), 3);
    let inputs: Vec<String> = policy
        .inputs
        .iter()
        .map(|(name, r)| format!("{name}<-{r}"))
        .collect();
    for pool in ["system", "general"] {
        let wanted = format!("node_role.{pool}<-node_pool.{pool}.role.outputs.arn");
        assert!(inputs.contains(&wanted), "{wanted} in {inputs:?}");
    }
    assert!(has_dep(
        &e,
        "registries.policy",
        "registries.mirror.docker-io"
    ));
    // Node pools follow the cluster's version, carry the mirrors and come after the caches
    // and the policy.
    for pool in ["node_pool.system", "node_pool.general"] {
        let config: NodePoolConfig = step(&e, pool).config_as().unwrap();
        assert_eq!(config.version.as_deref(), Some("1.30"));
        let upstreams: Vec<&str> = config.mirrors.iter().map(|m| m.upstream.as_str()).collect();
        assert_eq!(
            upstreams,
            ["public.ecr.aws", "docker.io", "registry.k8s.io"]
        );
        for dep in [
            "registries.mirror.docker-io",
            "registries.mirror.public-ecr-aws",
            "registries.policy",
        ] {
            assert!(has_dep(&e, pool, dep), "{pool} after {dep}");
        }
    }
    // Without pull-through caches there is nothing to grant; the simulator's node pools carry
    // no mirrors.
    let existing = "[cluster]\nname = \"p\"\nprovider = \"eks\"\nregion = \"eu-west-1\"\n[[node_pool]]\nname = \"a\"\nmin = 1\nmax = 2\ninstance_types = [\"m6i.large\"]\n[registries]\nallowed = [\"*\"]\n[registries.mirrors]\n\"docker.io\" = \"mirror.example.com/hub\"\n";
    let e = expand(&parse(existing)).unwrap();
    assert!(!e.steps.iter().any(|s| s.id.as_str() == "registries.policy"));
    let pool: NodePoolConfig = step(&e, "node_pool.a").config_as().unwrap();
    assert_eq!(pool.mirrors.len(), 1);
    assert!(has_dep(&e, "node_pool.a", "registries.mirror.docker-io"));
    let sim = expand(&parse(&existing.replace("\"eks\"", "\"sim\""))).unwrap();
    let pool: NodePoolConfig = step(&sim, "node_pool.a").config_as().unwrap();
    assert!(pool.mirrors.is_empty());
}

#[test]
fn gke_gets_gatekeeper_templates_and_gke_spellings() {
    let e = example("gke-baseline.toml");
    let ssd: StorageClassConfig = step(&e, "storage_class.ssd").config_as().unwrap();
    assert_eq!(ssd.provisioner, "pd.csi.storage.gke.io");
    assert!(ssd.parameters.contains_key("disk-encryption-kms-key"));
    let sa: ServiceAccountConfig = step(&e, "workload_identity.shop-checkout.service_account")
        .config_as()
        .unwrap();
    assert_eq!(sa.role_annotation, "iam.gke.io/gcp-service-account");
    let privileged: PolicyConfig = step(&e, "policy.disallow-privileged").config_as().unwrap();
    assert_eq!(privileged.engine, "gatekeeper");
    let kinds: Vec<&str> = privileged
        .objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ConstraintTemplate", "BmacDisallowPrivileged"]);
    let excluded = &privileged.objects[1]["spec"]["match"]["excludedNamespaces"];
    assert!(excluded
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "gatekeeper-system"));
    let registries: PolicyConfig = step(&e, "policy.restrict-registries").config_as().unwrap();
    let allowed = registries.objects[1]["spec"]["parameters"]["registries"]
        .as_array()
        .unwrap();
    assert!(allowed
        .iter()
        .any(|r| r == "europe-docker.pkg.dev/acme-prod/docker-hub"));
}

#[test]
fn a_gke_cluster_gets_a_vpc_native_network_a_key_node_accounts_and_bound_identities() {
    let text = "[cluster]\nname = \"prod\"\nprovider = \"gke\"\nregion = \"europe-west1\"\nproject = \"acme-prod\"\n\
        [[node_pool]]\nname = \"general-purpose-workers\"\ninstance_types = [\"e2-standard-4\"]\nmin = 1\nmax = 3\n\
        [cni]\nplugin = \"cilium\"\n\
        [[namespace]]\nname = \"shop\"\n\
        [[workload_identity]]\nnamespace = \"shop\"\nservice_account = \"checkout\"\npermissions = [\"roles/storage.objectViewer\"]\n";
    let e = expand(&parse(text)).unwrap();
    // No [network]: bmac makes a VPC-native one, with GKE's ranges.
    let net: NetworkConfig = step(&e, "network").config_as().unwrap();
    assert_eq!(net.cidr, "10.0.0.0/20");
    let ranges = net.secondary.expect("secondary ranges");
    assert_eq!(
        (ranges.pods_cidr.as_str(), ranges.services_cidr.as_str()),
        ("10.16.0.0/14", "10.20.0.0/20")
    );
    // The Secrets key is a key ring and key; no cluster role on GKE.
    let key: EncryptionKeyConfig = step(&e, "cluster.key").config_as().unwrap();
    assert_eq!(key.alias, "bmac-prod/secrets");
    assert!(e.steps.iter().all(|s| s.id.as_str() != "cluster.role"));
    let cluster = step(&e, "cluster");
    let inputs = input_refs(cluster);
    assert!(
        inputs.contains(&"subnets<-network.outputs.subnets".to_owned()),
        "{inputs:?}"
    );
    assert!(
        inputs.contains(&"key<-cluster.key.outputs.arn".to_owned()),
        "{inputs:?}"
    );
    // Cilium is Dataplane V2, a setting of the cluster fixed at creation: no `cni` step.
    let config: bmac_steps::config::ClusterConfig = cluster.config_as().unwrap();
    assert_eq!(config.datapath.as_deref(), Some("cilium"));
    assert_eq!(config.account.as_deref(), Some("acme-prod"));
    assert!(cluster.kind.replace_on().any(|p| p == "/datapath"));
    assert!(e.steps.iter().all(|s| s.id.as_str() != "cni"));
    // Each pool acts as its own Google service account, its id within Google's 30 characters.
    let role: IamRoleConfig = step(&e, "node_pool.general-purpose-workers.role")
        .config_as()
        .unwrap();
    assert!(
        role.name.len() <= 30 && role.name.starts_with("bmac-prod-general-purpose"),
        "{}",
        role.name
    );
    assert!(has_dep(&e, "node_pool.general-purpose-workers", "cluster"));
    // Workload identity: the service account, the pool member's binding, then the annotated
    // Kubernetes account.
    let binding = step(&e, "workload_identity.shop-checkout.binding");
    let _: IdentityBindingConfig = binding.config_as().unwrap();
    assert!(input_refs(binding)
        .contains(&"role<-workload_identity.shop-checkout.role.outputs.arn".to_owned()));
    assert!(has_dep(
        &e,
        "workload_identity.shop-checkout.binding",
        "cluster"
    ));
    let sa_step = step(&e, "workload_identity.shop-checkout.service_account");
    let sa: ServiceAccountConfig = sa_step.config_as().unwrap();
    assert_eq!(sa.role_annotation, "iam.gke.io/gcp-service-account");
    assert!(input_refs(sa_step)
        .contains(&"role<-workload_identity.shop-checkout.role.outputs.arn".to_owned()));
    assert!(has_dep(
        &e,
        "workload_identity.shop-checkout.service_account",
        "workload_identity.shop-checkout.binding"
    ));
    let wi: IamRoleConfig = step(&e, "workload_identity.shop-checkout.role")
        .config_as()
        .unwrap();
    assert_eq!(wi.name, "bmac-prod-shop-checkout");
    assert!(step(&e, "workload_identity.shop-checkout.role")
        .inputs
        .is_empty());
}

#[test]
fn gcp_account_ids_fit_google_rules_and_stay_distinct() {
    use bmac_steps::spelling::gcp_account_id;
    assert_eq!(gcp_account_id("bmac-prod-checkout"), "bmac-prod-checkout");
    assert_eq!(gcp_account_id("a"), "a-sa-sa");
    let long_a = gcp_account_id("bmac-production-cluster-general-purpose");
    let long_b = gcp_account_id("bmac-production-cluster-general-purpose-2");
    assert!(long_a.len() <= 30 && long_b.len() <= 30);
    assert_ne!(long_a, long_b);
    assert_eq!(
        long_a,
        gcp_account_id("bmac-production-cluster-general-purpose")
    );
    assert_eq!(gcp_account_id("Shop_API"), "shop-api");
}

#[test]
fn an_existing_cluster_has_no_node_pools_to_wait_for() {
    let e = example("existing-cluster.toml");
    assert!(e.steps.iter().all(|s| s.kind.name() != "node_pool"));
    // With no nodes to wait for, the engine waits only for the cluster.
    let engine = step(&e, "policy.engine");
    let deps: Vec<&str> = engine.dependencies().map(|d| d.as_str()).collect();
    assert_eq!(deps, ["cluster"]);
}

#[test]
fn pod_security_merges_defaults_overrides_and_exemptions() {
    let text = format!(
        "{SIM}\n[pod_security]\nenforce = \"baseline\"\naudit = \"restricted\"\nwarn = \"restricted\"\n\
         exempt = [\"kube-system\"]\n\n[pod_security.overrides.payments]\nenforce = \"restricted\"\n\n\
         [pod_security.overrides.kube-public]\nwarn = \"baseline\"\n\n\
         [[namespace]]\nname = \"payments\"\n\n[[namespace]]\nname = \"legacy\"\nexempt = true\n\n\
         [[namespace]]\nname = \"web\"\npod_security = {{ audit = \"baseline\", audit_version = \"v1.30\" }}\n"
    );
    let e = expand(&parse(&text)).unwrap();
    let labels = |id: &str| -> PodSecurityLabelsConfig { step(&e, id).config_as().unwrap() };
    let payments = labels("pod_security.payments");
    assert_eq!(payments.enforce.level, "restricted");
    assert_eq!(payments.audit.level, "restricted");
    let web = labels("pod_security.web");
    assert_eq!(web.enforce.level, "baseline");
    assert_eq!(
        (web.audit.level.as_str(), web.audit.version.as_str()),
        ("baseline", "v1.30")
    );
    for exempt in ["pod_security.legacy", "pod_security.kube-system"] {
        let l = labels(exempt);
        assert_eq!(
            [l.enforce.level, l.audit.level, l.warn.level],
            ["privileged", "privileged", "privileged"],
            "{exempt}"
        );
    }
    assert_eq!(labels("pod_security.kube-public").warn.level, "baseline");
    assert!(has_dep(&e, "pod_security.payments", "namespace.payments"));
    assert!(!step(&e, "pod_security.kube-system")
        .dependencies()
        .any(|d| d.as_str().starts_with("namespace.")));
    assert_eq!(
        labels("pod_security.payments").labels()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn without_pod_security_only_namespaces_that_ask_get_labels() {
    let text = format!(
        "{SIM}\n[[namespace]]\nname = \"plain\"\n\n[[namespace]]\nname = \"strict\"\n\
         pod_security = {{ enforce = \"restricted\" }}\n"
    );
    let e = expand(&parse(&text)).unwrap();
    assert!(e
        .steps
        .iter()
        .all(|s| s.id.as_str() != "pod_security.plain"));
    let strict: PodSecurityLabelsConfig = step(&e, "pod_security.strict").config_as().unwrap();
    assert_eq!(strict.enforce.level, "restricted");
    // The rest are the documented defaults.
    assert_eq!(strict.warn.level, "restricted");
}

#[test]
fn manifests_and_extra_policies_come_from_files_next_to_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("k8s")).unwrap();
    std::fs::write(
        dir.path().join("k8s/app.yaml"),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app, namespace: shop}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app, namespace: shop}\nspec: {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("k8s/policy.json"),
        r#"{"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "require-labels"}, "spec": {"rules": []}}"#,
    )
    .unwrap();
    let text = format!(
        "{SIM}\n[policy]\nengine = \"kyverno\"\nbaseline = [\"require-non-root\"]\n\
         extra = [{{ name = \"require-labels\", file = \"k8s/policy.json\" }}, \
         {{ name = \"inline-one\", inline = \"apiVersion: kyverno.io/v1\\nkind: ClusterPolicy\\nmetadata: {{name: inline-one}}\\n\" }}]\n\n\
         [[namespace]]\nname = \"shop\"\n\n[[manifest]]\nname = \"app\"\nfile = \"k8s/app.yaml\"\n"
    );
    let spec_path = dir.path().join("bmac.toml");
    std::fs::write(&spec_path, &text).unwrap();
    let e = expand(&Spec::load(&spec_path).unwrap()).unwrap();
    let app: ManifestConfig = step(&e, "manifest.app").config_as().unwrap();
    let kinds: Vec<&str> = app
        .objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ServiceAccount", "Deployment"]);
    assert!(has_dep(&e, "manifest.app", "namespace.shop"));
    for policy in [
        "policy.require-non-root",
        "policy.require-labels",
        "policy.inline-one",
    ] {
        assert!(has_dep(&e, "manifest.app", policy), "{policy}");
        assert!(has_dep(&e, policy, "policy.engine"));
    }
    let extra: PolicyConfig = step(&e, "policy.require-labels").config_as().unwrap();
    assert_eq!(extra.objects[0]["metadata"]["name"], "require-labels");
    // Without a [registries] section the engine has no mirrors to wait for.
    assert!(!step(&e, "policy.engine")
        .dependencies()
        .any(|d| d.as_str().starts_with("registries.")));
}

fn expand_err(text: &str) -> CatalogueError {
    let spec = parse(text);
    let dir = tempfile::tempdir().unwrap();
    expand_in(&spec, dir.path()).expect_err("the expansion fails")
}

fn labelled<'a>(err: &CatalogueError, text: &'a str) -> &'a str {
    let label = err.labels().and_then(|mut l| l.next()).expect("a label");
    &text[label.offset()..label.offset() + label.len()]
}

#[test]
fn a_missing_manifest_file_points_at_its_name() {
    let text = format!("{SIM}\n[[manifest]]\nname = \"app\"\nfile = \"nowhere/app.yaml\"\n");
    let err = expand_err(&text);
    assert!(matches!(err, CatalogueError::ReadObjects(_)), "{err:?}");
    assert_eq!(
        err.code().map(|c| c.to_string()).as_deref(),
        Some("bmac::catalogue::read_objects")
    );
    assert_eq!(labelled(&err, &text), "\"nowhere/app.yaml\"");
    assert!(err.to_string().contains("nowhere/app.yaml"));
    assert!(err.help().is_some());
}

#[test]
fn text_that_is_not_yaml_or_not_objects_is_refused() {
    let text = format!("{SIM}\n[[manifest]]\nname = \"bad\"\ninline = \"a: [unclosed\"\n");
    let err = expand_err(&text);
    assert!(matches!(err, CatalogueError::ParseObjects(_)), "{err:?}");
    assert_eq!(
        err.code().map(|c| c.to_string()).as_deref(),
        Some("bmac::catalogue::parse_objects")
    );
    assert_eq!(labelled(&err, &text), "\"a: [unclosed\"");

    let text = format!(
        "{SIM}\n[[manifest]]\nname = \"nameless\"\ninline = \"apiVersion: v1\\nkind: ConfigMap\\n\"\n"
    );
    let err = expand_err(&text);
    assert!(matches!(err, CatalogueError::InvalidObject(_)), "{err:?}");
    assert!(err.to_string().contains("has no `metadata.name`"), "{err}");
}

#[test]
fn an_unpinned_bundle_is_refused() {
    let text = format!(
        "{SIM}\n[policy]\nengine = \"kyverno\"\nbaseline = [\"require-non-root\"]\n\
         bundle = {{ path = \"kyverno.yaml\" }}\n"
    );
    let err = expand_err(&text);
    assert!(matches!(err, CatalogueError::Bundle(_)), "{err:?}");
    assert_eq!(
        err.code().map(|c| c.to_string()).as_deref(),
        Some("bmac::catalogue::bundle")
    );
    assert!(err.help().unwrap().to_string().contains("sha256"));
}

#[test]
fn audit_without_an_archive_or_alarm_is_just_logging() {
    let text = format!("{SIM}\n[audit]\nlog_types = [\"audit\"]\nretention_days = 14\n");
    let e = expand(&parse(&text)).unwrap();
    let audit: Vec<&str> = e
        .steps
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| id.starts_with("audit."))
        .collect();
    assert_eq!(audit, ["audit.logging"]);
    assert_eq!(step(&e, "audit.logging").config["retention_days"], 14);
    assert_eq!(step(&e, "audit.logging").config["cluster"], "t");
}
