//! Verifying the policy-engine bundle a spec pins, before any step runs.
//!
//! A bundle given as a path is a local file: its digest can be checked up front, so `bmac
//! plan` and `bmac apply` refuse a changed or wrongly pinned bundle before anything is applied
//! — not only the engine's step (which verifies again when it runs) but every step beside it.
//! Invariants: nothing here writes or fetches; URL bundles are left to the provider that
//! downloads them (it verifies what it downloads); an unpinned bundle is refused by the
//! expansion itself; a bundle file that does not exist is left to the provider that installs
//! it (which refuses it), so a spec can be planned where the bundle is not needed — the
//! simulated cloud never reads it. Kept apart from [`crate::expand`] so that `destroy` (which expands the
//! spec too) still works after the bundle file changed.

use std::path::Path;

use crate::spec::{BundleSource, Spec};
use sha2::{Digest, Sha256};

use crate::error::{BundleError, CatalogueError};

/// Checks the spec's bundle file against its pinned `sha256`, resolving a relative path
/// against the spec file's directory (as [`crate::expand`] does).
pub fn verify_bundle(spec: &Spec) -> Result<(), CatalogueError> {
    let base = Path::new(spec.source().0)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    verify_bundle_in(spec, &base)
}

/// Checks the spec's bundle file, with relative paths resolved against `base`.
pub fn verify_bundle_in(spec: &Spec, base: &Path) -> Result<(), CatalogueError> {
    let Some(bundle) = spec.policy.as_ref().and_then(|p| p.bundle.as_ref()) else {
        return Ok(());
    };
    let (BundleSource::Path(path), Some(expected)) = (&bundle.value.source, &bundle.value.sha256)
    else {
        return Ok(());
    };
    let path = base.join(path);
    let fail = |problem: String, help: &str| {
        CatalogueError::Bundle(Box::new(BundleError {
            problem,
            help: help.to_owned(),
            src: spec.named_source(),
            span: bundle.span,
        }))
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(fail(
                format!("cannot read `{}`: {e}", path.display()),
                "check that the bundle file is readable by the user running bmac",
            ))
        }
    };
    let actual: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != expected.value.to_ascii_lowercase() {
        return Err(fail(
            format!(
                "`{}` has sha256 {actual}, but the spec pins {}; nothing was applied",
                path.display(),
                expected.value
            ),
            "if the bundle changed on purpose, pin its new digest (`sha256sum <bundle>`); \
             otherwise restore the file you pinned — bmac applies nothing from a bundle it \
             cannot verify",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::Diagnostic;

    const CLUSTER: &str = "[cluster]\nname = \"c\"\nprovider = \"kube\"\ncontext = \"x\"\n";
    const BUNDLE: &[u8] = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kyverno\n";

    fn spec(sha256: &str) -> Spec {
        let text = format!(
            "{CLUSTER}\n[policy]\nengine = \"kyverno\"\nbaseline = [\"require-non-root\"]\n\
             bundle = {{ path = \"bundle.yaml\", sha256 = \"{sha256}\" }}\n"
        );
        Spec::parse("bmac.toml", &text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn digest(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn a_matching_bundle_passes_and_a_changed_one_is_refused_naming_both_digests() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("bundle.yaml"), BUNDLE).expect("write");
        let good = digest(BUNDLE);
        verify_bundle_in(&spec(&good), dir.path()).expect("pinned digest matches");

        let wrong = "ab".repeat(32);
        let err = verify_bundle_in(&spec(&wrong), dir.path()).expect_err("wrong pin");
        let text = err.to_string();
        assert!(text.contains(&good) && text.contains(&wrong), "{text}");
        assert_eq!(
            err.code().map(|c| c.to_string()).as_deref(),
            Some("bmac::catalogue::bundle")
        );

        std::fs::write(dir.path().join("bundle.yaml"), b"tampered").expect("write");
        let err = verify_bundle_in(&spec(&good), dir.path()).expect_err("changed file");
        assert!(err.to_string().contains(&digest(b"tampered")), "{err}");
    }

    #[test]
    fn specs_without_a_bundle_file_pass_and_an_unreadable_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        verify_bundle_in(&spec(&"ab".repeat(32)), dir.path()).expect("left to the provider");
        std::fs::create_dir(dir.path().join("bundle.yaml")).expect("a directory, not a file");
        let err = verify_bundle_in(&spec(&"ab".repeat(32)), dir.path()).expect_err("unreadable");
        assert!(err.to_string().contains("cannot read"), "{err}");
        let plain = Spec::parse("bmac.toml", CLUSTER).unwrap_or_else(|e| panic!("{e:?}"));
        verify_bundle_in(&plain, dir.path()).expect("no policy section");
    }
}
