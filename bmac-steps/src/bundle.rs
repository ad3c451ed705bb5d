//! Release bundles a spec pins — the CNI's `[cni] bundle`, the policy engine's
//! `[policy.bundle]` and every `[[manifest]]` with a `bundle` — as the catalogue sees them
//! before any step runs.
//!
//! A bundle given as a path is a local file: its digest can be checked up front, so `bmac
//! plan` and `bmac apply` refuse a changed or wrongly pinned bundle before anything is applied
//! — not only the bundle's own step (which verifies again when it runs) but every step beside
//! it. A bundle given by URL is checked against the local [`BundleCache`] only: validation and
//! planning never download. When it is not cached, [`verify_bundles`] reports it as pending —
//! the provider downloads it and verifies it when the step is applied, before applying any of
//! it.
//!
//! Invariants: nothing here writes or fetches; an unpinned bundle is refused by the expansion
//! itself ([`pinned`]); a bundle file that does not exist is left to the provider that installs
//! it (which refuses it), so a spec can be planned where the bundle is not needed — the
//! simulated cloud never reads it. Kept apart from [`crate::expand`] so that `destroy` (which
//! expands the spec too) still works after the bundle file changed.

use std::path::Path;

use crate::bundle_cache::{normalise, sha256_hex, BundleCache};
use crate::spec::{Bundle, BundleSource, ManifestSource, Spanned, Spec};

use crate::config;
use crate::error::{BundleError, CatalogueError};

/// What [`verify_bundles`] found: every pinned file matches, and these URL bundles are not in
/// the cache yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleCheck {
    /// URLs that will be downloaded (and verified) when their step is applied.
    pub pending: Vec<String>,
}

/// Checks the spec's bundle files against their pinned `sha256`, resolving a relative path
/// against the spec file's directory (as [`crate::expand`] does).
pub fn verify_bundle(spec: &Spec) -> Result<(), CatalogueError> {
    let base = Path::new(spec.source().0)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    verify_bundle_in(spec, &base)
}

/// Checks the spec's bundle files, with relative paths resolved against `base`.
pub fn verify_bundle_in(spec: &Spec, base: &Path) -> Result<(), CatalogueError> {
    verify_bundles(spec, base, None).map(|_| ())
}

/// Checks every bundle the spec pins: files against their digest, URLs against `cache` (a URL
/// bundle not in it is [`BundleCheck::pending`]).
pub fn verify_bundles(
    spec: &Spec,
    base: &Path,
    cache: Option<&BundleCache>,
) -> Result<BundleCheck, CatalogueError> {
    let mut check = BundleCheck::default();
    for bundle in bundles(spec) {
        let Some(expected) = &bundle.value.sha256 else {
            continue;
        };
        match &bundle.value.source {
            BundleSource::Url(url) => {
                let cached = cache.and_then(|c| c.get(&expected.value).ok().flatten());
                if cached.is_none() {
                    check.pending.push(url.clone());
                }
            }
            BundleSource::Path(path) => verify_file(spec, bundle, &base.join(path), expected)?,
        }
    }
    Ok(check)
}

/// Every bundle the spec pins: the CNI's, the policy engine's, then manifests in spec order.
fn bundles(spec: &Spec) -> impl Iterator<Item = Spanned<&Bundle>> {
    let cni = spec
        .cni
        .iter()
        .filter_map(|c| c.bundle.as_ref())
        .map(|b| Spanned::new(&b.value, b.span));
    let engine = spec
        .policy
        .iter()
        .filter_map(|p| p.bundle.as_ref())
        .map(|b| Spanned::new(&b.value, b.span));
    let manifests = spec.manifests.iter().filter_map(|m| match &m.source {
        ManifestSource::Bundle(b) => Some(Spanned::new(b, m.source_span)),
        ManifestSource::Text(_) => None,
    });
    cni.chain(engine).chain(manifests)
}

fn verify_file(
    spec: &Spec,
    bundle: Spanned<&Bundle>,
    path: &Path,
    expected: &Spanned<String>,
) -> Result<(), CatalogueError> {
    let fail = |problem: String, help: &str| {
        CatalogueError::Bundle(Box::new(BundleError {
            problem,
            help: help.to_owned(),
            src: spec.named_source(),
            span: bundle.span,
        }))
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(fail(
                format!("cannot read `{}`: {e}", path.display()),
                "check that the bundle file is readable by the user running bmac",
            ))
        }
    };
    let actual = sha256_hex(&bytes);
    if actual != normalise(&expected.value) {
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

/// The bundle as a step's config records it: a URL as written, a path resolved against
/// `base`, and its digest — refused when the spec pins none.
pub(crate) fn pinned(
    spec: &Spec,
    base: &Path,
    b: &Bundle,
    span: miette::SourceSpan,
) -> Result<config::Bundle, CatalogueError> {
    let fail = |problem: String, help: &str| {
        CatalogueError::Bundle(Box::new(BundleError {
            problem,
            help: help.to_owned(),
            src: spec.named_source(),
            span,
        }))
    };
    let source = match &b.source {
        BundleSource::Url(url) => url.clone(),
        BundleSource::Path(path) => {
            let resolved = base.join(path);
            resolved
                .to_str()
                .ok_or_else(|| {
                    fail(
                        format!("the path `{}` is not valid UTF-8", resolved.display()),
                        "rename the bundle (or the directories above it) to a UTF-8 path",
                    )
                })?
                .to_owned()
        }
    };
    let sha256 = b.sha256.as_ref().ok_or_else(|| {
        fail(
            format!("`{source}` has no `sha256`"),
            "pin the bundle: add `sha256 = \"…\"` with the output of `sha256sum <bundle>`, so a \
             tampered or changed bundle is refused before anything is applied",
        )
    })?;
    Ok(config::Bundle {
        source,
        sha256: sha256.value.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::Diagnostic;
    use sha2::{Digest, Sha256};

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
