//! Image pushes: whether a push deploys an image service, and which tag and digest. The
//! repository matches on its canonical name (Docker Hub's implicit `docker.io/library/` made
//! explicit); the service's tag policy must take the tag; of several tags of one push, one
//! deployment (the highest version under `semver:`, else the newest). A digest the service
//! already runs or has queued is skipped, and under `semver:` versions only move forward.
//! Also: what a redeploy of an image service runs (what it runs now).

use crate::config::{ImageSpec, TagPolicy, tag_version};
use crate::image_ref::canonical_repository;
use crate::sources::ImagePush;
use crate::store::{HeldImage, NewDeployment};

use super::History;

/// Fills in the image an image push deploys to a service, or skips it with the reason.
/// Returns whether the staleness rule is waived: semver services are ordered by version
/// instead (a lower version pushed later is refused here, a higher one pushed out of order
/// still deploys).
pub(super) fn plan_push(
    d: &mut NewDeployment,
    spec: &ImageSpec,
    pushes: &[ImagePush],
    history: &dyn History,
) -> bool {
    plan_image(d, spec, pushes, history);
    matches!(spec.tags, TagPolicy::Semver { .. })
}

fn plan_image(
    d: &mut NewDeployment,
    spec: &ImageSpec,
    pushes: &[ImagePush],
    history: &dyn History,
) {
    let name = d.service.clone();
    let wanted = canonical_repository(&spec.repository);
    let ours: Vec<&ImagePush> = pushes
        .iter()
        .filter(|p| canonical_repository(&p.repository) == wanted)
        .collect();
    if ours.is_empty() {
        let repo = pushes.first().map(|p| p.repository.as_str()).unwrap_or("?");
        d.skip(format!(
            "image push of {repo}; service {name} follows {}",
            spec.repository
        ));
        return;
    }
    let accepted: Vec<&ImagePush> = ours
        .iter()
        .copied()
        .filter(|p| p.tag.as_deref().is_some_and(|t| accepts(&spec.tags, t)))
        .collect();
    let Some(push) = choose(&spec.tags, &accepted) else {
        refuse(d, spec, &ours);
        return;
    };
    let tag = push.tag.clone().unwrap_or_default();
    // The digest: this push's, or that of another accepted tag of the same push.
    let digest = push
        .digest
        .clone()
        .or_else(|| accepted.iter().find_map(|p| p.digest.clone()));
    d.image = Some(spec.repository.clone());
    d.image_tag = Some(tag.clone());
    d.image_digest = digest.clone();
    d.event_time = push.time;
    skip_if_held(d, spec, &tag, digest.as_deref(), &history.images(&name));
}

/// Several tags of one push (`1.4.2`, `1.4`, `latest`): the highest version under a semver
/// policy, else the newest; one deployment either way.
fn choose<'a>(policy: &TagPolicy, accepted: &[&'a ImagePush]) -> Option<&'a ImagePush> {
    match policy {
        TagPolicy::Semver { .. } => accepted
            .iter()
            .copied()
            .max_by_key(|p| p.tag.as_deref().and_then(tag_version)),
        _ => accepted.iter().copied().max_by_key(|p| p.time),
    }
}

/// Skips a push none of whose tags the service's policy takes. Recorded with what was pushed,
/// so the history shows the refused tag.
fn refuse(d: &mut NewDeployment, spec: &ImageSpec, ours: &[&ImagePush]) {
    let name = d.service.clone();
    if let Some(p) = ours.last() {
        d.image = Some(spec.repository.clone());
        d.image_tag = p.tag.clone();
        d.image_digest = p.digest.clone();
        d.event_time = p.time;
    }
    let tags: Vec<&str> = ours
        .iter()
        .map(|p| p.tag.as_deref().unwrap_or("(by digest)"))
        .collect();
    d.skip(format!(
        "tag {} of {}: service {name} deploys tags {}",
        tags.join(", "),
        spec.repository,
        spec.tags.text()
    ));
}

/// Skips a push whose digest the service already runs or has queued, and under a semver
/// policy a version not newer than the highest it holds.
fn skip_if_held(
    d: &mut NewDeployment,
    spec: &ImageSpec,
    tag: &str,
    digest: Option<&str>,
    held: &[HeldImage],
) {
    if let Some(digest) = digest
        && let Some(h) = held.iter().find(|h| h.digest.as_deref() == Some(digest))
    {
        let what = if h.pending { "queued" } else { "deployed" };
        d.skip(format!(
            "{tag} is {} already {what} (deployment {})",
            short_digest(digest),
            h.deployment
        ));
        return;
    }
    if let TagPolicy::Semver { text, .. } = &spec.tags
        && let Some(v) = tag_version(tag)
        && let Some((h, hv)) = held
            .iter()
            .filter_map(|h| Some((h, h.tag.as_deref().and_then(tag_version)?)))
            .max_by(|a, b| a.1.cmp(&b.1))
        && hv >= v
    {
        d.skip(format!(
            "{tag} is not newer than {hv} (deployment {}); {text} only moves forward",
            h.deployment
        ));
    }
}

/// Redeploying an image service recreates its containers from what it runs now (its newest
/// success); with nothing deployed yet there is nothing to redeploy.
pub(super) fn plan_redeploy(
    d: &mut NewDeployment,
    spec: &ImageSpec,
    time: Option<i64>,
    history: &dyn History,
) {
    d.event_time = time;
    let name = d.service.clone();
    match history.images(&name).into_iter().find(|h| !h.pending) {
        Some(h) => {
            d.image = Some(spec.repository.clone());
            d.image_tag = h.tag;
            d.image_digest = h.digest;
        }
        None => d.skip(format!(
            "service {name} has no image deployed yet; push one to {}",
            spec.repository
        )),
    }
}

/// Whether a tag policy takes a pushed tag.
pub(crate) fn accepts(policy: &TagPolicy, tag: &str) -> bool {
    match policy {
        TagPolicy::Exact(t) => t == tag,
        TagPolicy::Glob(p) => p.matches(tag),
        TagPolicy::Semver { range, pre, .. } => match tag_version(tag) {
            None => false,
            Some(v) if v.pre.is_empty() => range.matches(&v),
            // `VersionReq` takes a pre-release only next to a comparator with one; `+pre`
            // asks for every pre-release in the range.
            Some(v) if *pre => {
                range.matches(&v) || range.matches(&semver::Version::new(v.major, v.minor, v.patch))
            }
            Some(_) => false,
        },
    }
}

fn short_digest(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::config::{self, App};
    use crate::plan::{Modifiers, plan};
    use crate::sources::{Event, Source};
    use crate::store::DeploymentState;

    fn image_app() -> App {
        let text = r#"
[apps.shop]
token = "tok-0123456789abcdef"
[apps.shop.services.api]
image = { repository = "127.0.0.1:5000/acme/api", tags = "semver:^1" }
docker = { container = "api" }
[apps.shop.services.edge]
image = { repository = "acme/edge", tags = "latest" }
docker = { container = "edge" }
[apps.shop.services.web]
git = { repo = "acme/shop", branch = "main" }
command = ["x"]
"#;
        crate::config::test_app(text, "shop")
    }

    fn img(repo: &str, tag: &str, digest: &str) -> ImagePush {
        ImagePush {
            repository: repo.into(),
            tag: Some(tag.into()),
            digest: (!digest.is_empty()).then(|| format!("sha256:{digest:0>64}")),
            time: Some(1_000),
            event_id: None,
        }
    }

    struct Held(Vec<HeldImage>);
    impl History for Held {
        fn newest(&self, _: &str) -> Option<(i64, i64)> {
            None
        }
        fn images(&self, service: &str) -> Vec<HeldImage> {
            if service == "api" {
                self.0.clone()
            } else {
                Vec::new()
            }
        }
    }

    fn plan_images(pushes: Vec<ImagePush>, held: Vec<HeldImage>) -> Vec<NewDeployment> {
        plan(
            &image_app(),
            Source::Registry,
            &Event::ImagePush(pushes),
            &Modifiers::default(),
            &Held(held),
        )
        .unwrap()
    }

    fn get<'a>(out: &'a [NewDeployment], service: &str) -> &'a NewDeployment {
        out.iter().find(|d| d.service == service).unwrap()
    }

    #[test]
    fn one_push_under_several_tags_deploys_once_at_the_highest_version() {
        let r = "127.0.0.1:5000/acme/api";
        let out = plan_images(
            vec![
                img(r, "1.4", "a"),
                img(r, "1.4.2", "a"),
                img(r, "latest", "a"),
            ],
            vec![],
        );
        let api = get(&out, "api");
        assert_eq!(api.state, DeploymentState::Queued, "{api:?}");
        assert_eq!(api.image_tag.as_deref(), Some("1.4.2"));
        assert_eq!(
            api.image_digest.as_deref(),
            Some(format!("sha256:{:0>64}", "a").as_str())
        );
        assert_eq!(api.image.as_deref(), Some(r));
        // Other services: an image service of another repository, and a git service.
        assert!(
            get(&out, "edge")
                .reason
                .as_deref()
                .unwrap()
                .contains("follows acme/edge")
        );
        assert!(
            get(&out, "web")
                .reason
                .as_deref()
                .unwrap()
                .contains("does not follow an image")
        );
    }

    #[test]
    fn semver_policy_refuses_other_majors_and_prereleases_and_moves_only_forward() {
        let r = "127.0.0.1:5000/acme/api";
        let out = plan_images(vec![img(r, "2.0.0", "b")], vec![]);
        let api = get(&out, "api");
        assert_eq!(api.state, DeploymentState::Skipped);
        assert!(
            api.reason
                .as_deref()
                .unwrap()
                .contains("deploys tags semver:^1"),
            "{api:?}"
        );
        let out = plan_images(vec![img(r, "1.5.0-rc.1", "b")], vec![]);
        assert_eq!(get(&out, "api").state, DeploymentState::Skipped);
        let held = vec![HeldImage {
            deployment: 7,
            tag: Some("1.1.0".into()),
            digest: Some("sha256:x".into()),
            pending: false,
        }];
        let out = plan_images(vec![img(r, "1.0.9", "c")], held.clone());
        let api = get(&out, "api");
        assert_eq!(api.state, DeploymentState::Skipped);
        assert!(
            api.reason
                .as_deref()
                .unwrap()
                .contains("not newer than 1.1.0 (deployment 7)"),
            "{api:?}"
        );
        let out = plan_images(vec![img(r, "1.2.0", "c")], held);
        assert_eq!(get(&out, "api").state, DeploymentState::Queued);
    }

    #[test]
    fn a_digest_already_deployed_or_queued_is_skipped() {
        let r = "127.0.0.1:5000/acme/api";
        let held = vec![HeldImage {
            deployment: 9,
            tag: Some("1.0.0".into()),
            digest: Some(format!("sha256:{:0>64}", "d")),
            pending: true,
        }];
        let out = plan_images(vec![img(r, "1.0.0", "d")], held);
        let api = get(&out, "api");
        assert_eq!(api.state, DeploymentState::Skipped);
        assert!(
            api.reason
                .as_deref()
                .unwrap()
                .contains("already queued (deployment 9)"),
            "{api:?}"
        );
    }

    #[test]
    fn docker_hub_names_match_their_canonical_form() {
        let out = plan_images(vec![img("docker.io/acme/edge", "latest", "")], vec![]);
        let edge = get(&out, "edge");
        assert_eq!(edge.state, DeploymentState::Queued, "{edge:?}");
        assert_eq!(
            edge.image_digest, None,
            "resolved by the executor at pull time"
        );
        let out = plan_images(vec![img("acme/edge", "v2", "")], vec![]);
        assert_eq!(get(&out, "edge").state, DeploymentState::Skipped);
    }

    #[test]
    fn tag_policy_acceptance() {
        let p = |t: &str| config::TagPolicy::parse(t).unwrap();
        assert!(accepts(&p("semver:^1"), "v1.2.3"));
        assert!(!accepts(&p("semver:^1"), "1.2"));
        assert!(!accepts(&p("semver:^1"), "1.3.0-beta.1"));
        assert!(accepts(&p("semver:^1 +pre"), "1.3.0-beta.1"));
        assert!(accepts(&p("release-*"), "release-42"));
        assert!(!accepts(&p("release-*"), "latest"));
        assert!(accepts(&p("latest"), "latest"));
        assert!(!accepts(&p("latest"), "1.0.0"));
    }
}
