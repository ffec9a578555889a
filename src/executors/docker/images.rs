//! The docker executor's images: pulled with the registry's credentials (from config, else
//! the user's Docker config) and pinned by digest; old ones pruned after a deployment
//! (`keep_images`), never the ones running or needed for a rollback.

use std::time::Instant;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptions, ListImagesOptions, RemoveImageOptions};
use futures_util::StreamExt;

use super::{DockerError, DockerJob};
use crate::config::DockerSpec;
use crate::deploylog::LogWriter;
use crate::executors::health::secs;
use crate::image_ref::{DOCKER_HUB_ALIASES, registry_host};

/// Pulls the image and returns its digest.
pub(super) async fn pull(
    docker: &Docker,
    job: &DockerJob,
    log: &LogWriter,
) -> Result<String, DockerError> {
    let reference = job.image.reference();
    log.ferry(&format!("pulling {reference}")).await?;
    let started = Instant::now();
    let options = CreateImageOptions {
        from_image: Some(reference.clone()),
        ..Default::default()
    };
    let credentials = credentials(&job.spec, &job.image.repository);
    let mut stream = docker.create_image(Some(options), None, credentials);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| DockerError::Pull {
            reference: reference.clone(),
            message: e.to_string(),
        })?;
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            return Err(DockerError::Pull {
                reference,
                message: detail,
            });
        }
    }
    let repository = &job.image.repository;
    let digest = match &job.image.digest {
        Some(d) => d.clone(),
        None => {
            let inspect = docker.inspect_image(&reference).await?;
            let prefix = format!("{repository}@");
            inspect
                .repo_digests
                .unwrap_or_default()
                .iter()
                .find_map(|d| d.strip_prefix(&prefix).map(str::to_string))
                .ok_or_else(|| DockerError::NoDigest(reference.clone(), repository.clone()))?
        }
    };
    log.ferry(&format!(
        "pulled in {}; digest {digest}",
        secs(started.elapsed())
    ))
    .await?;
    Ok(digest)
}

/// Credentials for the image's registry: from config, else from the user's Docker config.
fn credentials(spec: &DockerSpec, repository: &str) -> Option<DockerCredentials> {
    let host = registry_host(repository);
    if let Some((user, password)) = &spec.auth {
        return Some(DockerCredentials {
            username: Some(user.clone()),
            password: Some(password.expose().to_string()),
            serveraddress: Some(host),
            ..Default::default()
        });
    }
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))?;
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(k, v)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let k = k.split('/').next().unwrap_or(k);
        let matches = k == host || (host == "docker.io" && DOCKER_HUB_ALIASES.contains(&k));
        matches.then_some(v)
    })?;
    // `auth` is base64 of `user:password`; the engine wants them apart (it does not decode
    // `auth` itself). Credential helpers (`credsStore`) are not consulted.
    use base64::Engine as _;
    let auth = entry.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some(DockerCredentials {
        username: Some(user.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(host),
        ..Default::default()
    })
}

/// Removes old images of the repository, keeping the newest `keep` besides those in `needed`
/// (the one now running and the one a rollback needs). An image still used by some container
/// is left alone (the engine refuses, and that is fine).
pub(super) async fn prune(
    docker: &Docker,
    repository: &str,
    needed: &[String],
    keep: usize,
    log: &LogWriter,
) -> Result<(), DockerError> {
    let mut images: Vec<_> = docker
        .list_images(Some(ListImagesOptions {
            all: false,
            ..Default::default()
        }))
        .await?
        .into_iter()
        .filter(|i| ours(repository, &i.repo_tags) || ours(repository, &i.repo_digests))
        .filter(|i| !needed.contains(&i.id))
        .collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    let mut needed = needed.to_vec();
    needed.sort();
    needed.dedup();
    let extra = keep.saturating_sub(needed.len());
    let mut removed = 0;
    for image in images.iter().skip(extra) {
        // By reference, not id: an image with several tags is only removed with all of them.
        let refs = image
            .repo_tags
            .iter()
            .chain(&image.repo_digests)
            .filter(|r| ours(repository, std::slice::from_ref(r)));
        if remove_all(docker, refs, log).await? {
            removed += 1;
        }
    }
    if removed > 0 {
        log.ferry(&format!(
            "removed {removed} old image(s) of {repository} (keep_images = {keep})"
        ))
        .await?;
    }
    Ok(())
}

/// Whether one of `refs` is of `repository` (`repository:tag` or `repository@digest`).
fn ours(repository: &str, refs: &[String]) -> bool {
    refs.iter().any(|r| {
        r.strip_prefix(repository)
            .is_some_and(|rest| rest.starts_with('@') || rest.starts_with(':'))
    })
}

/// Removes an image by each of its references; stops at the first the engine refuses (an
/// image in use), noting it. True if all went.
async fn remove_all(
    docker: &Docker,
    refs: impl Iterator<Item = &String>,
    log: &LogWriter,
) -> Result<bool, DockerError> {
    for r in refs {
        if let Err(e) = docker
            .remove_image(r, None::<RemoveImageOptions>, None)
            .await
        {
            log.ferry(&format!("kept image {r}: {e}")).await?;
            return Ok(false);
        }
    }
    Ok(true)
}
