//! Applying, reading and removing arbitrary Kubernetes objects: the one place that talks to the
//! API server for in-cluster steps. Every kind (namespace, policy engine, manifest …) is
//! expressed as desired objects and goes through [`Session::apply`] and [`Session::remove`].
//!
//! Invariants and why:
//! - **Server-side apply** with a field manager (`bmac`, or `bmac-pod-security` for the
//!   PodSecurity labels, see `pod_security.rs`), never read-modify-write: the server merges
//!   bmac's fields with everyone else's and records ownership in `managedFields`.
//! - **Read before write.** The live object is read first; when applying would change nothing
//!   ([`fields::in_sync`]) no request is sent, so an unchanged re-apply makes zero writes.
//! - **Force only on what bmac created.** Objects bmac creates carry the annotation
//!   [`CREATED_BY`] (the step id). For those, apply uses `force = true`: bmac is the authority,
//!   and a field someone changed by hand is drift to undo. For objects that existed before
//!   (the `default` namespace, a namespace another tool made), apply does not force: if another
//!   manager owns a field bmac wants to set differently, the call fails with a clear conflict
//!   message instead of silently taking the field over. The one exception is
//!   [`Session::force_apply`], for the few fields of the VPC CNI's `aws-node` DaemonSet that a
//!   CNI vendor's EKS guide tells to set (`aws_node.rs`), as its `kubectl patch` would.
//! - **Remove only what bmac made.** An object created by *this* step is deleted (background
//!   propagation) and the call waits until it is gone (404) or the wait times out; an object
//!   bmac did not create is only "un-applied" — an apply of an empty body, which drops exactly
//!   the fields bmac owns and nothing another manager holds.
//! - Kinds are mapped to resources through API discovery, cached per connection; a kind not
//!   served yet (a CRD still being established) is a retryable error.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bmac_core::{ProviderError, StepId};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersion};
use kube::discovery::Scope;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::access::Connection;
use super::defaults;
use super::error::{map_error, Operation};
use super::fetch::BundleFetch;
use super::fields;

/// The field manager of every object bmac applies (except PodSecurity labels).
pub const FIELD_MANAGER: &str = "bmac";

/// Annotation bmac puts on objects it creates; the value is the creating step's id.
pub const CREATED_BY: &str = "bmac.dev/created-by";

/// The code of the retryable error for a kind the cluster does not serve (yet).
pub(crate) const NOT_SERVED: &str = "bmac::kube::not_served";

/// How long to wait for the server to finish something, and how often to look.
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    /// Give up after this long (a retryable error).
    pub timeout: Duration,
    /// Poll interval.
    pub interval: Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy {
            timeout: Duration::from_secs(120),
            interval: Duration::from_millis(200),
        }
    }
}

/// Kind → resource mappings learnt through one connection.
#[derive(Default)]
pub(crate) struct Discovery {
    kinds: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
}

/// Where one object lives: its resource, scope and name.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub resource: ApiResource,
    pub name: String,
    pub namespace: Option<String>,
}

impl Target {
    /// `apps/v1 Deployment kyverno/kyverno`, for messages and outputs.
    pub(crate) fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!(
                "{} {} {ns}/{}",
                self.resource.api_version, self.resource.kind, self.name
            ),
            None => format!(
                "{} {} {}",
                self.resource.api_version, self.resource.kind, self.name
            ),
        }
    }

    fn op(&self, verb: &'static str) -> Operation<'_> {
        Operation {
            verb,
            resource: &self.resource.plural,
            group: &self.resource.group,
            name: Some(&self.name),
            namespace: self.namespace.as_deref(),
        }
    }
}

/// Whether an apply may create the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Create it if missing, marking it as created by the step.
    Allow,
    /// The object must already exist (bmac only adds fields to it).
    Forbid,
}

/// What [`Session::apply`] did.
#[derive(Debug)]
pub(crate) struct Applied {
    pub target: Target,
    /// The object as the server holds it after the call.
    pub live: Value,
    /// Whether this step created the object (now or on an earlier run).
    pub created_by_step: bool,
}

/// One provider call's view of a cluster.
pub(crate) struct Session<'a> {
    pub conn: Connection,
    pub wait: WaitPolicy,
    pub cancel: &'a CancellationToken,
    pub step: &'a StepId,
    /// How release bundles are read, downloaded and cached.
    pub bundles: &'a BundleFetch,
}

impl Session<'_> {
    /// Resolves an object's apiVersion/kind to its resource and fills in its namespace
    /// (`default` for namespaced objects that name none).
    pub(crate) async fn target(&self, object: &Value) -> Result<Target, ProviderError> {
        self.target_in(object, None).await
    }

    /// As [`Session::target`], with namespaced objects that name no namespace placed in
    /// `namespace` when given (as `kubectl apply -n`).
    pub(crate) async fn target_in(
        &self,
        object: &Value,
        namespace: Option<&str>,
    ) -> Result<Target, ProviderError> {
        let text = |p: &str| object.pointer(p).and_then(Value::as_str);
        let (Some(api_version), Some(kind), Some(name)) =
            (text("/apiVersion"), text("/kind"), text("/metadata/name"))
        else {
            return Err(ProviderError::permanent(format!(
                "step {}: every object needs `apiVersion`, `kind` and `metadata.name`",
                self.step
            )));
        };
        let (resource, namespaced) = self.resolve(api_version, kind).await?;
        let namespace = namespaced.then(|| {
            text("/metadata/namespace")
                .or(namespace)
                .unwrap_or("default")
                .to_owned()
        });
        Ok(Target {
            resource,
            name: name.to_owned(),
            namespace,
        })
    }

    async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), ProviderError> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(found) = self.discovery_lock().get(&key) {
            return Ok(found.clone());
        }
        let gv: GroupVersion = api_version.parse().map_err(|_| {
            ProviderError::permanent(format!("invalid apiVersion {api_version:?} of a {kind}"))
        })?;
        let gvk = gv.with_kind(kind);
        let not_served = || {
            ProviderError::retryable(format!(
                "the cluster does not serve kind {kind} ({api_version}) yet; if a \
                 CustomResourceDefinition provides it, its step must run first"
            ))
            .with_code(NOT_SERVED)
        };
        let (resource, caps) = match kube::discovery::pinned_kind(&self.conn.client, &gvk).await {
            Ok(found) => found,
            Err(kube::Error::Discovery(_)) => return Err(not_served()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Err(not_served()),
            Err(e) => {
                let op = Operation {
                    verb: "get",
                    resource: "API discovery",
                    group: &gvk.group,
                    name: Some(api_version),
                    namespace: None,
                };
                return Err(map_error(e, &op));
            }
        };
        let found = (resource, matches!(caps.scope, Scope::Namespaced));
        self.discovery_lock().insert(key, found.clone());
        Ok(found)
    }

    fn discovery_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), (ApiResource, bool)>> {
        self.conn
            .discovery
            .kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn api(&self, t: &Target) -> Api<DynamicObject> {
        match &t.namespace {
            Some(ns) => Api::namespaced_with(self.conn.client.clone(), ns, &t.resource),
            None => Api::all_with(self.conn.client.clone(), &t.resource),
        }
    }

    /// The live object, or `None` when it does not exist.
    pub(crate) async fn get(&self, t: &Target) -> Result<Option<Value>, ProviderError> {
        let found = self
            .api(t)
            .get_opt(&t.name)
            .await
            .map_err(|e| map_error(e, &t.op("get")))?;
        found.map(to_value).transpose()
    }

    /// Server-side applies `desired` (see the module docs for when it writes and forces).
    pub(crate) async fn apply(
        &self,
        desired: &Value,
        manager: &str,
        create: Create,
    ) -> Result<Applied, ProviderError> {
        self.apply_in(desired, None, manager, create).await
    }

    /// As [`Session::apply`], placing a namespaced object that names no namespace in
    /// `namespace` (see [`Session::target_in`]).
    pub(crate) async fn apply_in(
        &self,
        desired: &Value,
        namespace: Option<&str>,
        manager: &str,
        create: Create,
    ) -> Result<Applied, ProviderError> {
        let target = self.target_in(desired, namespace).await?;
        let live = self.get(&target).await?;
        let owner = live.as_ref().and_then(created_by).map(str::to_owned);
        let (created_by_step, force) = match (&live, owner) {
            (None, _) if create == Create::Forbid => {
                return Err(ProviderError::permanent(format!(
                    "{} does not exist; step {} only adds fields to an existing object",
                    target.describe(),
                    self.step
                )))
            }
            (None, _) => (true, true),
            (Some(_), Some(owner)) => (owner == self.step.as_str(), true),
            (Some(_), None) => (false, false),
        };
        let body = self.body(desired, &target, created_by_step && create == Create::Allow);
        if let Some(live) = live {
            if fields::in_sync(&body, &live, manager) {
                // Nothing would change: no write request.
                return Ok(Applied {
                    target,
                    live,
                    created_by_step,
                });
            }
        }
        Ok(Applied {
            live: self.send(&target, &body, manager, force).await?,
            target,
            created_by_step,
        })
    }

    /// Server-side applies `desired` — a few fields of an existing object bmac did not create —
    /// with `force`, taking exactly those fields over from whichever manager holds them (what
    /// `kubectl patch` or `kubectl set env` does). Removing them later is
    /// [`Session::remove`]'s release of bmac's fields.
    pub(crate) async fn force_apply(
        &self,
        target: &Target,
        desired: &Value,
        manager: &str,
    ) -> Result<Value, ProviderError> {
        let body = self.body(desired, target, false);
        self.send(target, &body, manager, true).await
    }

    async fn send(
        &self,
        target: &Target,
        body: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, ProviderError> {
        let mut params = PatchParams::apply(manager);
        params.force = force;
        let applied = self
            .api(target)
            .patch(&target.name, &params, &Patch::Apply(body))
            .await
            .map_err(|e| map_error(e, &target.op("patch")))?;
        to_value(applied)
    }

    /// Whether applying `desired` to `live` would change nothing (the same test apply makes).
    pub(crate) fn in_sync(
        &self,
        desired: &Value,
        target: &Target,
        live: &Value,
        manager: &str,
    ) -> bool {
        let mark = created_by(live) == Some(self.step.as_str());
        fields::in_sync(&self.body(desired, target, mark), live, manager)
    }

    /// The apply body: `desired` with its namespace settled, the list-map keys the server
    /// defaults filled in (`defaults.rs`) and, when bmac creates (or created) the object, the
    /// [`CREATED_BY`] annotation.
    fn body(&self, desired: &Value, target: &Target, mark_created: bool) -> Value {
        let mut body = desired.clone();
        defaults::fill_list_keys(&mut body);
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            match &target.namespace {
                Some(ns) => {
                    meta.insert("namespace".into(), json!(ns));
                }
                None => {
                    meta.remove("namespace");
                }
            }
            if mark_created {
                let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
                if let Some(a) = annotations.as_object_mut() {
                    a.insert(CREATED_BY.into(), json!(self.step.as_str()));
                }
            }
        }
        body
    }

    /// Undoes what this step did to `desired`'s object: deletes it when this step created it
    /// (waiting until it is gone), otherwise drops only the fields `manager` owns on it — or,
    /// when the object would be invalid without them, leaves it in place untouched.
    /// Returns a description of what was done, or `None` when nothing was needed.
    pub(crate) async fn remove(
        &self,
        desired: &Value,
        manager: &str,
    ) -> Result<Option<String>, ProviderError> {
        let target = match self.target(desired).await {
            Ok(t) => t,
            // A kind no longer served (its CRD is gone) has no objects left to remove.
            Err(e) if e.is_retryable() && e.message.contains("does not serve kind") => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let Some(live) = self.get(&target).await? else {
            return Ok(None);
        };
        if created_by(&live) == Some(self.step.as_str()) {
            self.delete(&target, &live).await?;
            return Ok(Some(format!("deleted {}", target.describe())));
        }
        if fields::managed_fields(&live, manager).is_none() {
            return Ok(None);
        }
        let body = self.body(&identity(desired), &target, false);
        match self
            .api(&target)
            .patch(
                &target.name,
                &PatchParams::apply(manager),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(_) => Ok(Some(format!(
                "released bmac's fields of {}",
                target.describe()
            ))),
            // The object existed before bmac and cannot be valid without fields only bmac
            // set (a Deployment's containers): it is not bmac's to delete, nor to break.
            Err(kube::Error::Api(s)) if s.code == 422 => Ok(Some(format!(
                "left {} in place: it existed before bmac, and removing bmac's fields would make it invalid",
                target.describe()
            ))),
            Err(e) => Err(map_error(e, &target.op("patch"))),
        }
    }

    /// Deletes the object `live` (background propagation) and waits until it is gone.
    pub(crate) async fn delete(&self, target: &Target, live: &Value) -> Result<(), ProviderError> {
        match self
            .api(target)
            .delete(&target.name, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(map_error(e, &target.op("delete"))),
        }
        let uid = live.pointer("/metadata/uid").cloned();
        self.wait_for(target, "to be deleted", |now| match now {
            None => true,
            Some(obj) => obj.pointer("/metadata/uid").cloned() != uid,
        })
        .await
    }

    /// Polls `target` until `done` holds for what the server returns, or the wait times out
    /// (retryable) or the run is cancelled.
    pub(crate) async fn wait_for(
        &self,
        target: &Target,
        what: &str,
        done: impl Fn(Option<&Value>) -> bool,
    ) -> Result<(), ProviderError> {
        let deadline = tokio::time::Instant::now() + self.wait.timeout;
        loop {
            let now = self.get(target).await?;
            if done(now.as_ref()) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let finalizers = now
                    .as_ref()
                    .and_then(|o| o.pointer("/metadata/finalizers"))
                    .map(|f| format!(" (finalizers still set: {f})"))
                    .unwrap_or_default();
                return Err(ProviderError::retryable(format!(
                    "timed out after {:?} waiting for {} {what}{finalizers}",
                    self.wait.timeout,
                    target.describe()
                )));
            }
            tokio::select! {
                () = self.cancel.cancelled() => {
                    return Err(ProviderError::retryable(format!(
                        "cancelled while waiting for {} {what}", target.describe()
                    )));
                }
                () = tokio::time::sleep(self.wait.interval) => {}
            }
        }
    }
}

/// The step id in an object's [`CREATED_BY`] annotation.
pub(crate) fn created_by(live: &Value) -> Option<&str> {
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(CREATED_BY))
        .and_then(Value::as_str)
}

/// Just the identity of an object: apiVersion, kind, name and namespace.
pub(crate) fn identity(object: &Value) -> Value {
    let mut meta =
        json!({ "name": object.pointer("/metadata/name").cloned().unwrap_or(Value::Null) });
    if let Some(ns) = object.pointer("/metadata/namespace") {
        meta["namespace"] = ns.clone();
    }
    json!({
        "apiVersion": object.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": object.get("kind").cloned().unwrap_or(Value::Null),
        "metadata": meta,
    })
}

fn to_value(o: DynamicObject) -> Result<Value, ProviderError> {
    serde_json::to_value(o).map_err(|e| {
        ProviderError::permanent(format!(
            "cannot read an object the API server returned: {e}"
        ))
    })
}
