//! `registry_mirror` on Google Cloud: an Artifact Registry remote repository per mirrored
//! upstream registry.
//!
//! A mirror `LOCATION-docker.pkg.dev/PROJECT/REPO` of an upstream (validated before any call,
//! see `bmac_steps::spec`) is the Docker-format repository `REPO` in mode `REMOTE_REPOSITORY`
//! of that project and location: Docker Hub through Artifact Registry's `DOCKER_HUB` preset,
//! every other upstream as a custom remote (`https://UPSTREAM`). The first pull of an image
//! through it fetches the image from the upstream and caches it; the node pools' service
//! accounts hold `roles/artifactregistry.reader` (GKE's node roles), which is what reading a
//! remote repository needs — there is no registry policy to write on GKE. Nodes pull through
//! the repositories because their node pools point containerd at them
//! ([`super::node_pool`]); the allow-list policy is unchanged.
//!
//! Create is `repositories.create`, a long-running operation, checkpointed and waited on like
//! every Google operation here ([`super::operation`]); `ALREADY_EXISTS` is adoption after
//! observing the repository: it must be a Docker remote repository of the same upstream —
//! Artifact Registry cannot change a remote repository's upstream, and replacing someone's
//! repository is not bmac's call, so anything else is a permanent error naming both. Labels
//! (`bmac-cluster`, `bmac-step`) mark what bmac made: destroy (`repositories.delete`, an
//! operation) deletes a repository it made, with its cached images, and keeps one it adopted.
//!
//! A mirror that is not a pull-through cache (`pull_through_cache = false`) exists already:
//! bmac calls nothing for it and only reports its URL. Upstream credentials (a Secret Manager
//! secret version and a user name) are not wired yet: the spec's validation refuses them on GKE.

use async_trait::async_trait;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{RegistryMirrorConfig, OUTPUT_MIRROR_URL};
use google_cloud_artifactregistry_v1::model::remote_repository_config::docker_repository::{
    CustomRepository, PublicRepository,
};
use google_cloud_artifactregistry_v1::model::remote_repository_config::{
    DockerRepository, RemoteSource,
};
use google_cloud_artifactregistry_v1::model::{repository, RemoteRepositoryConfig, Repository};
use serde_json::json;

use super::error::{created, found, Created};
use super::operation::{self, Op};
use super::{labels, Clients, Handler};
use crate::cloud::Boxed;

/// The `registry_mirror` handler.
pub struct Mirror;

/// The remote repository a mirror is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Remote {
    /// `projects/P/locations/L/repositories/R`.
    name: String,
    /// `projects/P/locations/L`.
    parent: String,
    /// `R`.
    id: String,
    /// `LOCATION-docker.pkg.dev/PROJECT/REPO`.
    mirror: String,
    /// The upstream as the repository names it.
    upstream: Upstream,
}

/// Where a remote repository fetches from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Upstream {
    /// Artifact Registry's Docker Hub preset.
    DockerHub,
    /// A custom remote, by URI.
    Custom(String),
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::DockerHub => f.write_str("Docker Hub"),
            Upstream::Custom(uri) => f.write_str(uri),
        }
    }
}

impl Remote {
    fn of(c: &RegistryMirrorConfig) -> Result<Remote, ProviderError> {
        let parts: Vec<&str> = c.mirror.split('/').collect();
        let location = parts
            .first()
            .and_then(|h| h.strip_suffix("-docker.pkg.dev"));
        let (Some(location), [_, project, id]) = (location, parts.as_slice()) else {
            return Err(ProviderError::permanent(format!(
                "the mirror {} of {} is not an Artifact Registry repository \
                 (LOCATION-docker.pkg.dev/PROJECT/REPO)",
                c.mirror, c.upstream
            ))
            .with_code("bmac::gcp::mirror"));
        };
        let parent = format!("projects/{project}/locations/{location}");
        let upstream = match bmac_steps::spec::registry_host(&c.upstream) {
            "docker.io" => Upstream::DockerHub,
            _ => Upstream::Custom(format!("https://{}", c.upstream)),
        };
        Ok(Remote {
            name: format!("{parent}/repositories/{id}"),
            parent,
            id: (*id).to_owned(),
            mirror: c.mirror.clone(),
            upstream,
        })
    }

    fn body(&self, gcp: &Clients, step: &str, upstream: &str) -> Repository {
        let docker = match &self.upstream {
            Upstream::DockerHub => {
                DockerRepository::new().set_public_repository(PublicRepository::DockerHub)
            }
            Upstream::Custom(uri) => {
                DockerRepository::new().set_custom_repository(CustomRepository::new().set_uri(uri))
            }
        };
        Repository::new()
            .set_format(repository::Format::Docker)
            .set_mode(repository::Mode::RemoteRepository)
            .set_description(format!(
                "bmac: pull-through cache of {upstream} for cluster {}",
                gcp.cluster
            ))
            .set_labels(labels::of(&gcp.cluster, step))
            .set_remote_repository_config(
                RemoteRepositoryConfig::new()
                    .set_description(format!("{upstream} (cached by bmac)"))
                    .set_docker_repository(docker),
            )
    }

    fn outputs(&self) -> Outputs {
        Outputs::new()
            .with(OUTPUT_MIRROR_URL, format!("https://{}", self.mirror))
            .with("repository", self.name.as_str())
    }

    /// What `r` fetches from, if it is a Docker remote repository.
    fn upstream_of(r: &Repository) -> Option<Upstream> {
        if r.format != repository::Format::Docker || r.mode != repository::Mode::RemoteRepository {
            return None;
        }
        let remote = r.remote_repository_config()?;
        let docker = match remote.remote_source.as_ref()? {
            RemoteSource::DockerRepository(d) => d,
            _ => return None,
        };
        if docker.public_repository() == Some(&PublicRepository::DockerHub) {
            return Some(Upstream::DockerHub);
        }
        docker
            .custom_repository()
            .map(|c| Upstream::Custom(c.uri.trim_end_matches('/').to_owned()))
    }

    /// A permanent error unless `r` is this mirror's remote repository.
    fn check(&self, r: &Repository) -> Result<(), ProviderError> {
        match Remote::upstream_of(r) {
            Some(u) if u == self.upstream => Ok(()),
            found => Err(ProviderError::permanent(format!(
                "the repository {} exists but is not a Docker remote repository of {}{}: \
                 Artifact Registry cannot change that, and bmac does not replace a repository \
                 it did not make — pick another mirror path, or delete the repository",
                self.name,
                self.upstream,
                match found {
                    Some(u) => format!(" (it caches {u})"),
                    None => String::new(),
                }
            ))
            .with_code("bmac::gcp::mirror_conflict")),
        }
    }

    fn made_by(&self, r: &Repository, gcp: &Clients, step: &str) -> bool {
        let want = labels::of(&gcp.cluster, step);
        want.iter().all(|(k, v)| r.labels.get(k) == Some(v))
    }
}

async fn get(gcp: &Clients, r: &Remote) -> Result<Option<Repository>, ProviderError> {
    found(
        gcp.artifact_registry
            .get_repository()
            .set_name(&r.name)
            .send()
            .boxed()
            .await,
        "artifactregistry.repositories.get",
        &format!("repository {}", r.name),
    )
}

fn existing_outputs(c: &RegistryMirrorConfig) -> Outputs {
    Outputs::new().with(OUTPUT_MIRROR_URL, format!("https://{}", c.mirror))
}

#[async_trait]
impl Handler<Clients> for Mirror {
    fn expected(&self) -> std::time::Duration {
        std::time::Duration::from_secs(20)
    }

    fn max(&self) -> std::time::Duration {
        std::time::Duration::from_secs(5 * 60)
    }

    async fn apply(&self, gcp: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: RegistryMirrorConfig = super::config(req.step)?;
        if !c.pull_through_cache {
            return Ok(existing_outputs(&c));
        }
        let remote = Remote::of(&c)?;
        let what = format!("repository {}", remote.name);
        operation::finish_interrupted(gcp, req.ctx, &what).await?;
        if let Some(r) = get(gcp, &remote).await? {
            remote.check(&r)?;
            return Ok(remote.outputs());
        }
        let made = created(
            gcp.artifact_registry
                .create_repository()
                .set_parent(&remote.parent)
                .set_repository_id(&remote.id)
                .set_repository(remote.body(gcp, req.step.id.as_str(), &c.upstream))
                .send()
                .boxed()
                .await,
            "artifactregistry.repositories.create",
            &what,
        )?;
        if let Created::New(op) = made {
            Op::artifact_registry(&op)
                .wait(gcp, req.ctx, &format!("create of {what}"))
                .await?;
        }
        let r = get(gcp, &remote)
            .await?
            .ok_or_else(|| ProviderError::retryable(format!("{what} is not visible yet")))?;
        remote.check(&r)?;
        Ok(remote.outputs())
    }

    async fn observe(
        &self,
        gcp: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: RegistryMirrorConfig = super::config(req.step)?;
        if !c.pull_through_cache {
            return Ok(Observed::Present {
                config: req.step.config.value().clone(),
                outputs: existing_outputs(&c),
            });
        }
        let remote = Remote::of(&c)?;
        let Some(r) = get(gcp, &remote).await? else {
            return Ok(Observed::Absent);
        };
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        match Remote::upstream_of(&r) {
            Some(u) if u == remote.upstream => {}
            Some(Upstream::DockerHub) => config["upstream"] = json!("docker.io"),
            Some(Upstream::Custom(uri)) => {
                config["upstream"] = json!(uri.trim_start_matches("https://"))
            }
            None => config["upstream"] = json!(null),
        }
        Ok(Observed::Present {
            config,
            outputs: remote.outputs(),
        })
    }

    async fn destroy(&self, gcp: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: RegistryMirrorConfig = super::config(req.step)?;
        if !c.pull_through_cache {
            return Ok(());
        }
        let remote = Remote::of(&c)?;
        let what = format!("repository {}", remote.name);
        operation::finish_interrupted(gcp, req.ctx, &what).await?;
        let Some(r) = get(gcp, &remote).await? else {
            return Ok(());
        };
        if !remote.made_by(&r, gcp, req.step.id.as_str()) {
            req.ctx.progress(format!(
                "kept {what}: bmac did not create it (it has no bmac labels of this step)"
            ));
            return Ok(());
        }
        let deleted = found(
            gcp.artifact_registry
                .delete_repository()
                .set_name(&remote.name)
                .send()
                .boxed()
                .await,
            "artifactregistry.repositories.delete",
            &what,
        )?;
        if let Some(op) = deleted {
            Op::artifact_registry(&op)
                .wait(gcp, req.ctx, &format!("delete of {what}"))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(upstream: &str, mirror: &str) -> RegistryMirrorConfig {
        RegistryMirrorConfig {
            upstream: upstream.into(),
            mirror: mirror.into(),
            pull_through_cache: true,
            credential: None,
        }
    }

    #[test]
    fn a_mirror_names_its_remote_repository_and_upstream() {
        let r = Remote::of(&config(
            "docker.io",
            "europe-docker.pkg.dev/acme-prod/docker-hub",
        ))
        .unwrap();
        assert_eq!(
            r.name,
            "projects/acme-prod/locations/europe/repositories/docker-hub"
        );
        assert_eq!(r.parent, "projects/acme-prod/locations/europe");
        assert_eq!(r.id, "docker-hub");
        assert_eq!(r.upstream, Upstream::DockerHub);
        let r = Remote::of(&config(
            "index.docker.io",
            "us-central1-docker.pkg.dev/p-123456/hub",
        ))
        .unwrap();
        assert_eq!(r.upstream, Upstream::DockerHub, "docker.io aliases fold");
        let r = Remote::of(&config(
            "ghcr.io",
            "europe-west1-docker.pkg.dev/acme-prod/ghcr",
        ))
        .unwrap();
        assert_eq!(r.upstream, Upstream::Custom("https://ghcr.io".into()));
        assert!(Remote::of(&config("ghcr.io", "ghcr.example.com/x")).is_err());
    }
}
