//! What the cloud providers (AWS, Google Cloud) really share, written once: routing each step
//! to the [`Handler`] of its kind ([`Handlers`]), reading a step's typed config with an error
//! that names the step ([`config`]), and waiting on long operations with progress ([`wait`]).
//!
//! What differs per cloud stays in its room: the SDK clients a handler is given (the `C` of
//! [`Handler<C>`]), the error classification of each SDK, and the concurrency groups.

pub mod wait;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Outputs, ProviderError, Step};

/// How one step kind is built on a cloud whose SDK clients are `C`.
#[async_trait]
pub trait Handler<C>: Send + Sync {
    /// How long an apply usually takes.
    fn expected(&self) -> Duration {
        Duration::from_secs(10)
    }
    /// The longest one call may take.
    fn max(&self) -> Duration {
        Duration::from_secs(15 * 60)
    }
    /// Whether its updates count against the cluster's one-update-at-a-time group.
    fn cluster_update(&self) -> bool {
        false
    }
    /// Creates or updates; returns the outputs.
    async fn apply(&self, clients: &C, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError>;
    /// What exists now.
    async fn observe(
        &self,
        clients: &C,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError>;
    /// Removes what apply made (gone already is success).
    async fn destroy(&self, clients: &C, req: &DestroyRequest<'_>) -> Result<(), ProviderError>;
}

/// The handlers of one cloud, by step kind.
pub struct Handlers<C> {
    /// The cloud's name in messages (`AWS`, `Google Cloud`) and error codes (`aws`, `gcp`).
    cloud: (&'static str, &'static str),
    map: HashMap<&'static str, Arc<dyn Handler<C>>>,
}

impl<C> std::fmt::Debug for Handlers<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<_> = self.map.keys().collect();
        kinds.sort();
        f.debug_list().entries(kinds).finish()
    }
}

impl<C> Handlers<C> {
    /// No handlers yet, for the cloud named `name` in messages and `code` in error codes.
    pub fn new(name: &'static str, code: &'static str) -> Self {
        Handlers {
            cloud: (name, code),
            map: HashMap::new(),
        }
    }

    /// Routes steps of `kind` to `handler`.
    pub fn with(mut self, kind: &'static str, handler: impl Handler<C> + 'static) -> Self {
        self.map.insert(kind, Arc::new(handler));
        self
    }

    /// The handler of `step`'s kind, if the cloud builds it.
    pub fn find(&self, step: &Step) -> Option<&Arc<dyn Handler<C>>> {
        self.map.get(step.kind.name())
    }

    /// The handler of `step`'s kind, or a permanent error naming the kind and the step.
    pub fn get(&self, step: &Step) -> Result<&Arc<dyn Handler<C>>, ProviderError> {
        let (name, code) = self.cloud;
        self.find(step).ok_or_else(|| {
            ProviderError::permanent(format!(
                "the {name} provider does not build steps of kind `{}` ({})",
                step.kind.name(),
                step.id
            ))
            .with_code(format!("bmac::{code}::unknown_kind"))
        })
    }
}

/// A step's typed config, or a permanent error naming the step and the cloud that read it.
pub(crate) fn config<T: serde::de::DeserializeOwned>(
    cloud: (&str, &str),
    step: &Step,
) -> Result<T, ProviderError> {
    step.config_as().map_err(|e| {
        ProviderError::permanent(format!(
            "{}: the {} config is not what the {} provider expects: {e}",
            step.id,
            step.kind.name(),
            cloud.0
        ))
        .with_code(format!("bmac::{}::config", cloud.1))
    })
}

/// An error and its sources as one line, each cause once (`dispatch failure: io error: …`).
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A string input, or a permanent error naming it.
pub(crate) fn input_str<'a>(
    inputs: &'a bmac_core::Inputs,
    name: &str,
) -> Result<&'a str, ProviderError> {
    inputs
        .str(name)
        .ok_or_else(|| ProviderError::permanent(format!("input `{name}` is missing")))
}

/// A list-of-strings input, or a permanent error naming it.
pub(crate) fn input_list(
    inputs: &bmac_core::Inputs,
    name: &str,
) -> Result<Vec<String>, ProviderError> {
    inputs
        .get(name)
        .and_then(|v| v.value())
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .ok_or_else(|| ProviderError::permanent(format!("input `{name}` is missing")))
}

/// Moves a future to the heap: `sdk_call.send().boxed().await`.
///
/// The SDKs' request futures are large in debug builds (the Google clients' take 50–60 KiB of
/// stack each), and a handler that awaits several of them inline — each its own slot in the
/// handler's state — overflows a 2 MiB thread stack. Boxed, the handler holds a pointer.
pub(crate) trait Boxed: std::future::Future + Send + Sized {
    /// This future, boxed.
    fn boxed<'a>(
        self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'a>>
    where
        Self: 'a,
    {
        Box::pin(self)
    }
}

impl<F: std::future::Future + Send> Boxed for F {}

/// Reports that destroy keeps the audit archive bucket `name` (and why): one bmac did not
/// create, or one it did without `force_destroy`.
pub(crate) fn kept_bucket(ctx: &bmac_core::provider::StepContext, name: &str, created: bool) {
    let why = if created {
        "set `force_destroy = true` in [audit] to delete it with its records"
    } else {
        "bmac did not create it"
    };
    ctx.progress(format!(
        "kept bucket {name} and the audit records in it: {why}"
    ));
}

/// Where containerd sends pulls for a mirror (`HOST` or `HOST/PATH`), and whether the URL
/// carries the registry's API root: a mirror below a path (an ECR cache `HOST/PREFIX`, an
/// Artifact Registry repository `HOST/PROJECT/REPO`) is `https://HOST/v2/PATH` with containerd's
/// `override_path`, the form containerd needs for a registry below a path.
pub(crate) fn containerd_host(mirror: &str) -> (String, bool) {
    let (host, path) = mirror.split_once('/').unwrap_or((mirror, ""));
    match path.trim_matches('/') {
        "" => (format!("https://{host}"), false),
        path => (format!("https://{host}/v2/{path}"), true),
    }
}
