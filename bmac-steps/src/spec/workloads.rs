//! Decoding the workload sections: `[[workload_identity]]`, `[[namespace]]` and
//! `[[manifest]]`.
//!
//! Namespace names must be DNS labels (Kubernetes' own rule), which also makes them valid
//! step-id segments. A workload identity without a `name` takes the id
//! `workload_identity.<namespace>-<service_account>`; when that is not a valid id (a service
//! account name with dots) a `name` is required.

use super::decode::{meta, Decoder};
use super::diag::{Problem, ProblemCode};
use super::model::*;
use super::model_security::*;
use super::parse::{dns_name, named_entry};
use super::security::{bundle, psa_override, text_source};
use super::tree::Node;
use bmac_core::step::StepId;

const IDENTITY_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "service_account",
    "role",
    "permissions",
    "mechanism",
    "depends_on",
];

pub(crate) fn workload_identity(d: &mut Decoder, node: &Node) -> Option<WorkloadIdentity> {
    let mut f = d.table(
        node,
        "workload_identity",
        "`[[workload_identity]]`",
        IDENTITY_FIELDS,
    )?;
    let name = d.str(&mut f, "name");
    let namespace = dns_name(d, &mut f, "namespace", "namespace");
    let service_account = d.req_str(&mut f, "service_account", "\"api\"");
    let role = d.nonempty_str(&mut f, "role");
    let permissions = d.str_list(&mut f, "permissions");
    let mechanism = d.choice(&mut f, "mechanism", Mechanism::NAMES, Mechanism::from_name);
    let access = match (role, permissions) {
        (Some(r), None) => Some(Access::Role(r)),
        (None, Some(p)) if !p.is_empty() => Some(Access::Permissions(p)),
        (None, Some(_)) => {
            d.invalid_at(
                f.key_span("permissions").unwrap_or(f.table_span()),
                "`permissions` must not be empty",
                "list the permissions the service account needs, or name a `role`",
            );
            None
        }
        (Some(r), Some(_)) => {
            let at = f.key_span("permissions").unwrap_or(f.table_span());
            d.push(
                Problem::new(
                    ProblemCode::Contradiction,
                    at,
                    "a workload identity has both `role` and `permissions`",
                    "bmac would create a role here",
                )
                .with_secondary(r.span, "but an existing role is named here")
                .with_help(
                    "keep `role` to bind an existing role, or `permissions` to let bmac create one",
                ),
            );
            None
        }
        (None, None) => {
            if f.key_span("role").is_none() {
                d.missing(
                    &f,
                    "role",
                    "\"arn:aws:iam::123456789012:role/app\"` or `permissions = [\"…\"]",
                );
            }
            None
        }
    };
    let id = match (&name, &namespace, &service_account) {
        (Some(n), _, _) => d.entry_id(Some("workload_identity"), n, "workload identity name"),
        (None, Some(ns), Some(sa)) => {
            let joined = Spanned::new(format!("{}-{}", ns.value, sa.value), sa.span);
            let id = StepId::new(format!("workload_identity.{}", joined.value))
                .ok()
                .filter(|_| !joined.value.contains('.'));
            if id.is_none() {
                d.push(
                    Problem::new(
                        ProblemCode::InvalidId,
                        sa.span,
                        format!(
                            "service account `{}` cannot form the entry id `workload_identity.{}`",
                            sa.value, joined.value
                        ),
                        "not usable in an id",
                    )
                    .with_help("give this workload identity a `name` (letters, digits, `_`, `-`)"),
                );
            }
            id
        }
        _ => None,
    };
    let deps = d.depends_on(&mut f);
    f.finish(d);
    Some(WorkloadIdentity {
        meta: meta(id?, deps),
        name: name.map(|n| n.value),
        namespace: namespace?,
        service_account: service_account?.value,
        access: access?,
        mechanism,
    })
}

const NAMESPACE_FIELDS: &[&str] = &["name", "labels", "pod_security", "exempt", "depends_on"];

pub(crate) fn namespace(d: &mut Decoder, node: &Node) -> Option<Namespace> {
    let mut f = d.table(node, "namespace", "`[[namespace]]`", NAMESPACE_FIELDS)?;
    let name = dns_name(d, &mut f, "name", "namespace");
    let labels = d.str_map(&mut f, "labels");
    let pod_security = f.get("pod_security").and_then(|n| {
        let context = format!(
            "the `pod_security` of namespace `{}`",
            name.as_ref().map_or("?", |n| n.value.as_str())
        );
        psa_override(d, n, context)
    });
    let exempt = d.bool_or(&mut f, "exempt", false);
    let deps = d.depends_on(&mut f);
    f.finish(d);
    let name = name?;
    let id = StepId::new(format!("namespace.{}", name.value)).ok()?;
    Some(Namespace {
        meta: meta(id, deps),
        name,
        labels,
        pod_security,
        exempt,
    })
}

const MANIFEST_FIELDS: &[&str] = &[
    "name",
    "file",
    "inline",
    "bundle",
    "namespace",
    "depends_on",
];

pub(crate) fn manifest(d: &mut Decoder, node: &Node) -> Option<Manifest> {
    let mut f = d.table(node, "manifest", "`[[manifest]]`", MANIFEST_FIELDS)?;
    let named = named_entry(d, &mut f, "manifest");
    let source = match f.get("bundle") {
        Some(n) => {
            let text = ["file", "inline"].into_iter().find_map(|k| f.key_span(k));
            let bundle = bundle(d, n, "a manifest's `bundle`");
            if let (Some(other), Some(b)) = (text, &bundle) {
                // Both keys are known here: mark them used, the contradiction is the problem.
                let _ = (f.get("file"), f.get("inline"));
                d.push(
                    Problem::new(
                        ProblemCode::Contradiction,
                        other,
                        "`[[manifest]]` has both a `bundle` and a `file`/`inline` text",
                        "second source",
                    )
                    .with_secondary(b.span, "first source")
                    .with_help("keep one: `bundle` for a pinned release, `file`/`inline` for objects you wrote"),
                );
                None
            } else {
                bundle.map(|b| (ManifestSource::Bundle(b.value), b.span))
            }
        }
        None => text_source(d, &mut f).map(|(t, span)| (ManifestSource::Text(t), span)),
    };
    let namespace = if f.key_span("namespace").is_some() {
        dns_name(d, &mut f, "namespace", "namespace")
    } else {
        None
    };
    let deps = d.depends_on(&mut f);
    f.finish(d);
    let (name, id) = named?;
    let (source, source_span) = source?;
    Some(Manifest {
        meta: meta(id, deps),
        name: name.value,
        source,
        source_span,
        namespace,
    })
}
