//! Release bundles and the manifests users write for them: a `[[manifest]]` with a pinned
//! `bundle` and a `namespace`, what the plan-time bundle check says about URLs (the cache, never
//! the network), and the order the catalogue gives bundle steps and the Pod Security labels of
//! the namespaces they create.

use bmac_core::step::Step;
use bmac_steps::config::{Bundle, ManifestConfig};
use bmac_steps::spec::{ManifestSource, Problem, Spec};
use bmac_steps::{expand_in, verify_bundles, BundleCache, Expansion};

const KUBE: &str = "[cluster]\nname = \"t\"\nprovider = \"kube\"\ncontext = \"x\"\n";
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn parse(text: &str) -> Spec {
    Spec::parse("bmac.toml", text).unwrap_or_else(|e| panic!("{:?}", miette::Report::new(e)))
}

fn problems(text: &str) -> Vec<Problem> {
    match Spec::parse("bmac.toml", text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(e) => e.problems().to_vec(),
    }
}

fn expand(text: &str) -> Expansion {
    expand_in(&parse(text), std::path::Path::new("/specs"))
        .unwrap_or_else(|e| panic!("{:?}", miette::Report::new(e)))
}

fn step<'a>(e: &'a Expansion, id: &str) -> &'a Step {
    e.steps
        .iter()
        .find(|s| s.id.as_str() == id)
        .unwrap_or_else(|| panic!("no step `{id}`"))
}

fn deps(e: &Expansion, id: &str) -> Vec<String> {
    step(e, id).dependencies().map(|d| d.to_string()).collect()
}

fn argocd(namespace_declared: bool) -> String {
    let ns = if namespace_declared {
        "[[namespace]]\nname = \"argocd\"\n"
    } else {
        ""
    };
    format!(
        "{KUBE}{ns}[pod_security]\nenforce = \"baseline\"\noverrides = {{ argocd = {{ enforce = \"privileged\" }} }}\n\
         [[manifest]]\nname = \"argocd\"\nnamespace = \"argocd\"\n\
         bundle = {{ url = \"https://releases.example.invalid/argocd/install.yaml\", sha256 = \"{SHA}\" }}\n"
    )
}

#[test]
fn a_manifest_bundle_is_recorded_as_its_url_digest_and_namespace_not_its_objects() {
    let spec = parse(&argocd(true));
    let m = &spec.manifests[0];
    assert!(
        matches!(&m.source, ManifestSource::Bundle(b) if b.sha256.as_ref().is_some_and(|s| s.value == SHA))
    );
    assert_eq!(
        m.namespace.as_ref().map(|n| n.value.as_str()),
        Some("argocd")
    );
    let e = expand(&argocd(true));
    let cfg: ManifestConfig = step(&e, "manifest.argocd").config_as().unwrap();
    assert!(cfg.objects.is_empty(), "plans never download a bundle");
    assert_eq!(
        cfg.bundle,
        Some(Bundle {
            source: "https://releases.example.invalid/argocd/install.yaml".into(),
            sha256: SHA.into()
        })
    );
    assert_eq!(cfg.namespace.as_deref(), Some("argocd"));
}

#[test]
fn a_declared_namespace_is_created_and_labelled_before_the_bundle_installs_into_it() {
    let e = expand(&argocd(true));
    let d = deps(&e, "manifest.argocd");
    assert!(d.contains(&"namespace.argocd".to_owned()), "{d:?}");
    assert!(d.contains(&"pod_security.argocd".to_owned()), "{d:?}");
    assert!(!deps(&e, "pod_security.argocd").contains(&"manifest.argocd".to_owned()));
}

#[test]
fn labels_of_a_namespace_a_bundle_creates_come_after_the_bundle() {
    // Not declared: the bundle creates `argocd`, so its labels wait for the bundle (an override
    // for it is valid because the manifest installs into it).
    let e = expand(&argocd(false));
    assert!(deps(&e, "pod_security.argocd").contains(&"manifest.argocd".to_owned()));
    assert!(!deps(&e, "manifest.argocd").contains(&"pod_security.argocd".to_owned()));

    // Objects written in the spec that include the Namespace: the same rule.
    let text = format!(
        "{KUBE}[pod_security]\nexempt = [\"flux-system\"]\n[[manifest]]\nname = \"flux\"\n\
         inline = \"\"\"\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-system\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: source-controller\n  namespace: flux-system\n\"\"\"\n"
    );
    let e = expand(&text);
    assert!(deps(&e, "pod_security.flux-system").contains(&"manifest.flux".to_owned()));
    assert!(!deps(&e, "manifest.flux").contains(&"pod_security.flux-system".to_owned()));
}

#[test]
fn the_policy_engines_namespace_is_labelled_after_the_engine_installs_it() {
    for (engine, ns) in [("kyverno", "kyverno"), ("gatekeeper", "gatekeeper-system")] {
        let text = format!(
            "{KUBE}[pod_security]\nexempt = [\"{ns}\"]\n[policy]\nengine = \"{engine}\"\nbaseline = [\"require-non-root\"]\n\
             bundle = {{ path = \"b.yaml\", sha256 = \"{SHA}\" }}\n"
        );
        let e = expand(&text);
        assert!(
            deps(&e, &format!("pod_security.{ns}")).contains(&"policy.engine".to_owned()),
            "{engine}"
        );
    }
}

#[test]
fn namespace_must_be_a_dns_label_and_a_bundle_excludes_file_and_inline() {
    let p = problems(&format!(
        "{KUBE}[[manifest]]\nname = \"m\"\nnamespace = \"Not_A_Label\"\ninline = \"{{}}\"\n"
    ));
    assert!(
        p.iter().any(|p| p.message.contains("not a valid name")),
        "{p:?}"
    );
    let p = problems(&format!(
        "{KUBE}[[manifest]]\nname = \"m\"\nfile = \"x.yaml\"\nbundle = {{ path = \"b.yaml\", sha256 = \"{SHA}\" }}\n"
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].message.contains("both a `bundle`"), "{p:?}");
}

#[test]
fn plans_check_url_bundles_against_the_cache_only() {
    let spec = parse(&argocd(true));
    let dir = tempfile::tempdir().unwrap();
    let cache = BundleCache::new(dir.path());
    // Not cached: pending (the provider downloads it when the step is applied).
    let check = verify_bundles(&spec, dir.path(), Some(&cache)).unwrap();
    assert_eq!(
        check.pending,
        ["https://releases.example.invalid/argocd/install.yaml"]
    );
    // Cached under its digest: nothing pending, and no network was needed for either answer.
    let bytes = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: argocd}\n";
    let digest = bmac_steps::bundle_cache::sha256_hex(bytes);
    let spec = parse(&argocd(true).replace(SHA, &digest));
    cache.put(bytes).unwrap();
    let check = verify_bundles(&spec, dir.path(), Some(&cache)).unwrap();
    assert!(check.pending.is_empty(), "{check:?}");
}

#[test]
fn a_manifest_bundle_file_is_verified_before_anything_is_planned() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flux.yaml"), b"changed").unwrap();
    let spec = parse(&format!(
        "{KUBE}[[manifest]]\nname = \"flux\"\nbundle = {{ path = \"flux.yaml\", sha256 = \"{SHA}\" }}\n"
    ));
    let err = verify_bundles(&spec, dir.path(), None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(SHA) && text.contains("nothing was applied"),
        "{text}"
    );
}

#[test]
fn a_cni_bundle_is_checked_with_the_others_before_anything_is_planned() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cilium.yaml"), b"changed").unwrap();
    let spec = parse(&format!(
        "{KUBE}[cni]\nplugin = \"cilium\"\nbundle = {{ path = \"cilium.yaml\", sha256 = \"{SHA}\" }}\n"
    ));
    let err = verify_bundles(&spec, dir.path(), None).unwrap_err();
    assert!(err.to_string().contains(SHA), "{err}");
    // By URL: pending until the step downloads it.
    let spec = parse(&format!(
        "{KUBE}[cni]\nplugin = \"calico\"\nbundle = {{ url = \"https://releases.example.invalid/calico.yaml\", sha256 = \"{SHA}\" }}\n"
    ));
    let cache = BundleCache::new(dir.path());
    let check = verify_bundles(&spec, dir.path(), Some(&cache)).unwrap();
    assert_eq!(
        check.pending,
        ["https://releases.example.invalid/calico.yaml"]
    );
}
