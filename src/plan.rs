//! Planning rules: which services an event deploys, to which version, and why not.
//!
//! Pure functions, no I/O: the planner task (`crate::planner`) gathers the inputs (the app's
//! config, the parsed event, the hook URL's modifiers, what each service already has) and stores
//! the result. The rules follow Cloud 66 redeploy hooks:
//! - a payload with git information deploys only git services whose repo and branch match;
//! - a payload without it redeploys every service (or those chosen by the modifiers);
//! - `?services=`, `?deployment_profile=` and `?git_ref=` narrow or steer that;
//! - an event older than what a service has deployed or queued is skipped as stale;
//! - an image push deploys image services whose repository matches and whose tag policy takes
//!   the tag: once per digest, and under `semver:` only forward.

use crate::config::{App, ImageSpec, Modifier, TagPolicy, tag_version};
use crate::image_ref::canonical_repository;
use crate::sources::{Event, GitPush, GitRef, ImagePush, Source};
use crate::store::{DeploymentState, HeldImage, NewDeployment};
use crate::timefmt::fmt_ms;

/// The hook URL's query modifiers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modifiers {
    pub services: Option<Vec<String>>,
    pub profile: Option<String>,
    pub git_ref: Option<String>,
}

impl Modifiers {
    /// Reads `services`, `deployment_profile` and `git_ref` from a raw query string (`+` and
    /// `%20` both decode to a space). Other parameters are ignored.
    pub fn parse(query: &str) -> Modifiers {
        let mut m = Modifiers::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.trim().to_string();
            match k.as_ref() {
                "services" => {
                    let list: Vec<String> = v
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    if !list.is_empty() {
                        m.services = Some(list);
                    }
                }
                "deployment_profile" if !v.is_empty() => m.profile = Some(v),
                "git_ref" if !v.is_empty() => m.git_ref = Some(v),
                _ => {}
            }
        }
        m
    }

    /// Checks the modifiers against the app: unknown services or profiles, or a `git_ref` that
    /// is no ref name or commit id, are an error that names them.
    pub fn validate(&self, app: &App) -> Result<(), String> {
        // `git_ref` becomes FERRY_GIT_REF: a ref name or a commit id, never an option or a
        // line break (see `sources::values`).
        if let Some(r) = &self.git_ref {
            crate::sources::values::git_ref_or_commit(r).map_err(|e| e.to_string())?;
        }
        if let Some(p) = &self.profile
            && !app.profiles.contains_key(p)
        {
            return Err(format!("app {} has no deployment profile {p:?}", app.name));
        }
        if let Some(list) = &self.services {
            let unknown: Vec<&str> = list
                .iter()
                .filter(|s| !app.services.contains_key(s.as_str()))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(format!(
                    "app {} has no service {} (services: {})",
                    app.name,
                    unknown.join(", "),
                    app.services.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Checks a hook request's modifiers against what the app allows (`[apps.X] modifiers`;
    /// the API's manual deploys are not limited by it), and refuses `git_ref` on an unverified
    /// delivery of an app with schemes (`verify.allow_unsigned`): such a delivery never names
    /// a version. The message names the modifier and the key to set.
    pub fn check_hook(&self, app: &App, verified: bool) -> Result<(), String> {
        let present = [
            (Modifier::Services, self.services.is_some()),
            (Modifier::DeploymentProfile, self.profile.is_some()),
            (Modifier::GitRef, self.git_ref.is_some()),
        ];
        if let Some((m, _)) = present
            .iter()
            .find(|(m, set)| *set && !app.modifiers.contains(m))
        {
            let allowed: Vec<&str> = app.modifiers.iter().map(|m| m.as_str()).collect();
            return Err(format!(
                "the modifier ?{m}= is not allowed for app {app}: add \"{m}\" to apps.{app}.modifiers (allowed now: {allowed})",
                m = m.as_str(),
                app = app.name,
                allowed = if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ));
        }
        if self.git_ref.is_some() && !verified && app.verify.configured() {
            return Err(format!(
                "?git_ref= needs a verified delivery: app {} takes unsigned requests only as redeploys of what is configured (verify.allow_unsigned); sign the request to name a ref",
                app.name
            ));
        }
        Ok(())
    }

    /// Encodes the modifiers as a query string (for manual deploys, stored like a hook URL's).
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(s) = &self.services {
            q.append_pair("services", &s.join(","));
        }
        if let Some(p) = &self.profile {
            q.append_pair("deployment_profile", p);
        }
        if let Some(r) = &self.git_ref {
            q.append_pair("git_ref", r);
        }
        q.finish()
    }
}

/// What each service already holds.
pub trait History {
    /// The newest event time it has deployed, runs or has queued, and the deployment holding it.
    fn newest(&self, service: &str) -> Option<(i64, i64)>;
    /// Image services: the images it runs (its newest success) and has queued or running.
    fn images(&self, _service: &str) -> Vec<HeldImage> {
        Vec::new()
    }
    /// The deployment a rollback of the service goes back to: deployment `to` if given (it must
    /// have succeeded), else the newest success older than the current version that ran a
    /// different version.
    fn rollback_target(
        &self,
        _service: &str,
        _to: Option<i64>,
    ) -> Option<crate::store::Deployment> {
        None
    }
}

impl<F: Fn(&str) -> Option<(i64, i64)>> History for F {
    fn newest(&self, service: &str) -> Option<(i64, i64)> {
        self(service)
    }
}

/// Plans one delivery. Returns the deployments to record (queued or skipped) or an error that
/// deploys nothing (e.g. a profile that no longer exists).
pub fn plan(
    app: &App,
    source: Source,
    event: &Event,
    m: &Modifiers,
    history: &dyn History,
) -> Result<Vec<NewDeployment>, String> {
    m.validate(app)?;
    if matches!(event, Event::Ping | Event::Ignored(_)) {
        return Ok(Vec::new());
    }
    // A push names its own ref and commit: `?git_ref=` never overrides what a payload names
    // (a captured signed push replayed with `?git_ref=X` must not deploy X).
    if matches!(event, Event::Push(_) | Event::ImagePush(_)) && m.git_ref.is_some() {
        return plan_without_ref(app, source, event, m, history, IGNORED_GIT_REF);
    }
    plan_event(app, source, event, m, history)
}

/// [`plan_event`] with `?git_ref=` dropped, and `note` on every deployment saying why.
fn plan_without_ref(
    app: &App,
    source: Source,
    event: &Event,
    m: &Modifiers,
    history: &dyn History,
    note: &str,
) -> Result<Vec<NewDeployment>, String> {
    let m = Modifiers {
        git_ref: None,
        ..m.clone()
    };
    let mut out = plan_event(app, source, event, &m, history)?;
    for d in &mut out {
        d.note(note);
    }
    Ok(out)
}

/// Recorded on deployments of a push whose hook URL had `?git_ref=`.
pub const IGNORED_GIT_REF: &str =
    "?git_ref= ignored: a push deploys the ref and commit it names, not the hook URL's";

/// Recorded on deployments of an unverified delivery of an app that configures a scheme.
pub const UNVERIFIED: &str = "unverified delivery (verify.allow_unsigned): redeploys what is configured; any branch, commit, tag or image the request names is ignored";

/// Plans an unverified delivery of an app that configures a scheme (let through by
/// `verify.allow_unsigned`). It carries no version, whatever its body or URL say: it is a plain
/// redeploy of the selected services (`?services=`, `?deployment_profile=`), with no event
/// time and no `?git_ref=`. The planner calls this instead of parsing the body, so no request
/// path or config change can make such a delivery name a version.
pub fn plan_unverified(
    app: &App,
    source: Source,
    m: &Modifiers,
    history: &dyn History,
) -> Result<Vec<NewDeployment>, String> {
    // Checked as `plan` checks them, once `?git_ref=` (which never applies here) is gone.
    Modifiers {
        git_ref: None,
        ..m.clone()
    }
    .validate(app)?;
    let event = Event::Redeploy { time: None };
    plan_without_ref(app, source, &event, m, history, UNVERIFIED)
}

/// [`plan`] once `?git_ref=` has been dropped where it may not apply.
fn plan_event(
    app: &App,
    source: Source,
    event: &Event,
    m: &Modifiers,
    history: &dyn History,
) -> Result<Vec<NewDeployment>, String> {
    if let Event::Rollback { service, to } = event {
        return rollback(app, source, service, *to, history);
    }
    let selected: Vec<&str> = app
        .services
        .keys()
        .map(String::as_str)
        .filter(|s| {
            m.profile
                .as_ref()
                .is_none_or(|p| app.profiles[p].services.iter().any(|x| x == s))
        })
        .filter(|s| m.services.as_ref().is_none_or(|l| l.iter().any(|x| x == s)))
        .collect();

    let mut out = Vec::new();
    for name in selected {
        let svc = &app.services[name];
        let mut d = NewDeployment {
            app: app.name.clone(),
            service: name.to_string(),
            state: DeploymentState::Queued,
            source: source.as_str().to_string(),
            event: event.name(source).to_string(),
            profile: m.profile.clone(),
            ..NewDeployment::default()
        };
        if let Some(g) = &svc.git {
            d.git_repo = Some(g.repo.clone());
            d.git_branch = g.branch.clone();
            d.git_ref = m.git_ref.clone().or_else(|| g.branch.clone());
        }
        let mut forced = false;
        let image_repo = svc.image.as_ref().map_or("?", |i| i.repository.as_str());
        match event {
            Event::ImagePush(pushes) => match &svc.image {
                None => {
                    let repo = pushes.first().map(|p| p.repository.as_str()).unwrap_or("?");
                    d.skip(format!(
                        "image push of {repo}: service {name} does not follow an image"
                    ));
                }
                Some(spec) => {
                    plan_image(&mut d, spec, pushes, history);
                    forced = matches!(spec.tags, TagPolicy::Semver { .. });
                }
            },
            Event::Push(_) if svc.image.is_some() => {
                d.skip(format!(
                    "git push: service {name} follows the image {image_repo}"
                ));
            }
            Event::Redeploy { time } if svc.image.is_some() => {
                // Redeploying an image service recreates its containers from what it runs now.
                d.event_time = *time;
                let current = history.images(name).into_iter().find(|h| !h.pending);
                match current {
                    Some(h) => {
                        d.image = svc.image.as_ref().map(|i| i.repository.clone());
                        d.image_tag = h.tag;
                        d.image_digest = h.digest;
                    }
                    None => d.skip(format!(
                        "service {name} has no image deployed yet; push one to {image_repo}"
                    )),
                }
            }
            Event::Push(changes) => match &svc.git {
                None => {
                    let repo = changes.first().map(|c| c.repo.as_str()).unwrap_or("?");
                    d.skip(format!(
                        "push to {repo}: service {name} does not follow a git repository"
                    ));
                }
                Some(g) => {
                    let in_repo: Vec<&GitPush> = changes
                        .iter()
                        .filter(|c| g.repo.eq_ignore_ascii_case(&c.repo))
                        .collect();
                    // The change this service follows; the newest if several match.
                    let followed = in_repo
                        .iter()
                        .filter(|c| m.git_ref.is_some() || follows(g, &c.git_ref))
                        .max_by_key(|c| c.time);
                    match (in_repo.first(), followed) {
                        (None, _) => {
                            let repo = changes.first().map(|c| c.repo.as_str()).unwrap_or("?");
                            d.skip(format!("push to {repo}; service {name} follows {}", g.repo));
                        }
                        (_, Some(c)) if c.deleted => {
                            d.skip(format!("{} was deleted; nothing to deploy", c.full_ref));
                        }
                        (_, Some(_)) if m.git_ref.is_some() => {
                            // The URL names the ref to deploy; the push only triggers it.
                        }
                        (_, Some(c)) => {
                            d.git_ref = Some(c.full_ref.clone());
                            d.git_branch = match &c.git_ref {
                                GitRef::Branch(b) => Some(b.clone()),
                                _ => None,
                            };
                            d.git_commit = c.commit.clone();
                            d.event_time = c.time;
                            forced = c.forced;
                        }
                        (Some(_), None) => {
                            let what: Vec<String> = in_repo.iter().map(|c| describe(c)).collect();
                            d.skip(format!(
                                "{}; service {name} follows {}",
                                what.join(", "),
                                g.follows()
                            ));
                        }
                    }
                }
            },
            Event::Redeploy { time } => d.event_time = *time,
            Event::Ping | Event::Ignored(_) | Event::Rollback { .. } => {
                unreachable!("returned above")
            }
        }
        // A forced push rewrote history on purpose: it is never stale. Semver image services
        // are ordered by version instead (see `plan_image`).
        if d.state == DeploymentState::Queued
            && !forced
            && let Some(t) = d.event_time
            && let Some((newest, by)) = history.newest(name)
            && newest > t
        {
            d.skip(format!(
                "stale: event time {} is older than {} of deployment {by}",
                fmt_ms(t),
                fmt_ms(newest)
            ));
        }
        out.push(d);
    }
    Ok(out)
}

/// Fills in the image an image push deploys to a service, or skips it with the reason.
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
    // Several tags of one push (`1.4.2`, `1.4`, `latest`): the highest version under a semver
    // policy, else the newest; one deployment either way.
    let chosen = match &spec.tags {
        TagPolicy::Semver { .. } => accepted
            .iter()
            .max_by_key(|p| p.tag.as_deref().and_then(tag_version)),
        _ => accepted.iter().max_by_key(|p| p.time),
    };
    let Some(push) = chosen else {
        // Recorded with what was pushed, so the history shows the refused tag.
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
    let held = history.images(&name);
    if let Some(digest) = &digest
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
        && let Some(v) = tag_version(&tag)
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

/// Whether a tag policy takes a pushed tag.
pub fn accepts(policy: &TagPolicy, tag: &str) -> bool {
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

/// Plans `ferry rollback`: one deployment of the service, to the version its target ran.
fn rollback(
    app: &App,
    source: Source,
    service: &str,
    to: Option<i64>,
    history: &dyn History,
) -> Result<Vec<NewDeployment>, String> {
    if !app.services.contains_key(service) {
        return Err(format!("app {} has no service {service}", app.name));
    }
    let Some(t) = history.rollback_target(service, to) else {
        return Err(match to {
            Some(id) => format!(
                "deployment {id} of {}/{service} did not succeed; nothing to roll back to",
                app.name
            ),
            None => format!(
                "{}/{service} has no earlier successful version to roll back to",
                app.name
            ),
        });
    };
    Ok(vec![NewDeployment {
        app: app.name.clone(),
        service: service.to_string(),
        state: DeploymentState::Queued,
        reason: Some(format!("rollback to deployment {}", t.id)),
        source: source.as_str().to_string(),
        event: "rollback".into(),
        git_repo: t.git_repo,
        git_branch: t.git_branch,
        git_ref: t.git_ref,
        git_commit: t.git_commit,
        // A rollback is ordered like a new event: nothing already queued is older than it.
        event_time: None,
        profile: None,
        image: t.image,
        image_tag: t.image_tag,
        image_digest: t.image_digest,
    }])
}

/// Whether a service's git policy follows a pushed ref.
fn follows(g: &crate::config::GitSpec, r: &GitRef) -> bool {
    match r {
        GitRef::Branch(b) => g.branch.as_deref() == Some(b.as_str()),
        GitRef::Tag(t) => g.tags.as_ref().is_some_and(|p| p.matches(t)),
        GitRef::Other(_) => false,
    }
}

fn describe(c: &GitPush) -> String {
    let what = match &c.git_ref {
        GitRef::Branch(b) => format!("push to branch {b}"),
        GitRef::Tag(t) => format!("push of tag {t}"),
        GitRef::Other(r) => format!("push to {r}"),
    };
    if c.deleted {
        format!("{what} (deleted)")
    } else {
        what
    }
}

impl NewDeployment {
    fn skip(&mut self, reason: String) {
        self.state = DeploymentState::Skipped;
        self.reason = Some(reason);
    }

    /// Adds a note to the deployment's reason (after a skip reason, if any).
    fn note(&mut self, note: &str) {
        self.reason = Some(match self.reason.take() {
            Some(r) => format!("{r}; {note}"),
            None => note.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config;

    fn app() -> App {
        let text = r#"
[apps.shop]
token = "tok-0123456789abcdef"
[apps.shop.services.web]
git = { repo = "Acme/Shop", branch = "main" }
command = ["x"]
[apps.shop.services.api]
git = { repo = "acme/api", branch = "main" }
command = ["x"]
[apps.shop.services.worker]
command = ["x"]
[apps.shop.services.site]
git = { repo = "acme/shop", tags = "v*" }
command = ["x"]
[apps.shop.profiles."quick fix"]
services = ["web", "worker"]
"#;
        config::parse(text, Path::new("f.toml"), &|_| None)
            .unwrap()
            .apps
            .remove("shop")
            .unwrap()
    }

    fn change(repo: &str, r: &str, time: Option<i64>) -> GitPush {
        GitPush {
            repo: repo.into(),
            full_ref: r.into(),
            git_ref: GitRef::parse(r),
            commit: Some("c0ffee".into()),
            time,
            deleted: false,
            forced: false,
        }
    }

    fn push(repo: &str, r: &str, time: Option<i64>) -> Event {
        Event::Push(vec![change(repo, r, time)])
    }

    fn none(_: &str) -> Option<(i64, i64)> {
        None
    }

    /// Plans and renders "service state reason" lines, one per deployment.
    fn check(event: Event, query: &str, history: &dyn History, expect: &[&str]) {
        let m = Modifiers::parse(query);
        let got: Vec<String> = plan(&app(), Source::Github, &event, &m, history)
            .unwrap()
            .iter()
            .map(|d| {
                format!(
                    "{} {} {}",
                    d.service,
                    d.state,
                    d.reason.clone().unwrap_or_default()
                )
                .trim_end()
                .to_string()
            })
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn push_deploys_only_matching_git_services() {
        check(
            push("acme/shop", "refs/heads/main", Some(10)),
            "",
            &none,
            &[
                "api skipped push to acme/shop; service api follows acme/api",
                "site skipped push to branch main; service site follows tags v*",
                "web queued",
                "worker skipped push to acme/shop: service worker does not follow a git repository",
            ],
        );
    }

    #[test]
    fn push_to_other_branch_or_tag_is_skipped_with_reason() {
        check(
            push("acme/shop", "refs/heads/dev", None),
            "services=web",
            &none,
            &["web skipped push to branch dev; service web follows branch main"],
        );
        check(
            push("acme/shop", "refs/tags/v1", None),
            "services=web",
            &none,
            &["web skipped push of tag v1; service web follows branch main"],
        );
    }

    #[test]
    fn deleted_branch_deploys_nothing() {
        let mut p = change("acme/shop", "refs/heads/main", None);
        p.deleted = true;
        check(
            Event::Push(vec![p]),
            "services=web",
            &none,
            &["web skipped refs/heads/main was deleted; nothing to deploy"],
        );
    }

    #[test]
    fn no_git_info_redeploys_all_or_selected() {
        let redeploy = || Event::Redeploy { time: None };
        check(
            redeploy(),
            "",
            &none,
            &["api queued", "site queued", "web queued", "worker queued"],
        );
        check(
            redeploy(),
            "services=api,worker",
            &none,
            &["api queued", "worker queued"],
        );
        check(
            redeploy(),
            "deployment_profile=quick+fix",
            &none,
            &["web queued", "worker queued"],
        );
        check(
            redeploy(),
            "deployment_profile=quick%20fix&services=worker",
            &none,
            &["worker queued"],
        );
    }

    #[test]
    fn git_ref_modifier_steers_git_services() {
        let m = Modifiers::parse("git_ref=v2.0&services=web");
        let d = plan(
            &app(),
            Source::Generic,
            &Event::Redeploy { time: None },
            &m,
            &none,
        )
        .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].git_ref.as_deref(), Some("v2.0"));
    }

    #[test]
    fn git_ref_modifier_never_overrides_a_push() {
        // A push to another branch with git_ref deploys nothing: the push names its own ref.
        let d = plan(
            &app(),
            Source::Github,
            &push("acme/shop", "refs/heads/dev", None),
            &Modifiers::parse("git_ref=release&services=web"),
            &none,
        )
        .unwrap();
        assert_eq!(d[0].state, DeploymentState::Skipped);
        assert!(
            d[0].reason.as_deref().unwrap().contains(IGNORED_GIT_REF),
            "{d:?}"
        );
        // A push to the followed branch deploys the pushed ref and commit, noting the modifier.
        let d = plan(
            &app(),
            Source::Github,
            &push("acme/shop", "refs/heads/main", Some(5)),
            &Modifiers::parse("git_ref=release&services=web"),
            &none,
        )
        .unwrap();
        assert_eq!(d[0].state, DeploymentState::Queued);
        assert_eq!(d[0].git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(d[0].git_commit.as_deref(), Some("c0ffee"));
        assert_eq!(d[0].reason.as_deref(), Some(IGNORED_GIT_REF));
    }

    #[test]
    fn unverified_deliveries_redeploy_what_is_configured() {
        let history = |s: &str| (s == "web").then_some((20_000, 7));
        let d = plan_unverified(
            &app(),
            Source::Generic,
            &Modifiers::parse("git_ref=evil&services=web"),
            &history,
        )
        .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].state, DeploymentState::Queued);
        assert_eq!(d[0].event, "redeploy");
        // The configured branch, no commit, no event time: nothing the request named.
        assert_eq!(d[0].git_ref.as_deref(), Some("main"));
        assert_eq!(d[0].git_commit, None);
        assert_eq!(d[0].event_time, None);
        assert_eq!(d[0].reason.as_deref(), Some(UNVERIFIED));
    }

    #[test]
    fn hook_modifiers_follow_the_apps_allowlist() {
        let a = app();
        assert!(
            Modifiers::parse("services=web&deployment_profile=quick+fix")
                .check_hook(&a, true)
                .is_ok()
        );
        let e = Modifiers::parse("git_ref=v1")
            .check_hook(&a, true)
            .unwrap_err();
        assert!(
            e.contains("?git_ref=") && e.contains("apps.shop.modifiers"),
            "{e}"
        );
        let mut only_ref = app();
        only_ref.modifiers = vec![crate::config::Modifier::GitRef];
        assert!(
            Modifiers::parse("git_ref=v1")
                .check_hook(&only_ref, true)
                .is_ok()
        );
        let e = Modifiers::parse("services=web")
            .check_hook(&only_ref, true)
            .unwrap_err();
        assert!(
            e.contains("?services=") && e.contains("allowed now: git_ref"),
            "{e}"
        );
        // git_ref on an unverified delivery of an app with a scheme: refused.
        only_ref.verify.bearer = vec![crate::secret::Secret::new("t")];
        let e = Modifiers::parse("git_ref=v1")
            .check_hook(&only_ref, false)
            .unwrap_err();
        assert!(e.contains("verified"), "{e}");
        assert!(
            Modifiers::parse("git_ref=v1")
                .check_hook(&only_ref, true)
                .is_ok()
        );
    }

    #[test]
    fn older_event_is_stale() {
        let history = |s: &str| (s == "web").then_some((20_000, 7));
        check(
            push("acme/shop", "refs/heads/main", Some(10_000)),
            "services=web",
            &history,
            &[
                "web skipped stale: event time 1970-01-01T00:00:10Z is older than 1970-01-01T00:00:20Z of deployment 7",
            ],
        );
        // Same time or newer is not stale; events without a time never are.
        check(
            push("acme/shop", "refs/heads/main", Some(20_000)),
            "services=web",
            &history,
            &["web queued"],
        );
        check(
            push("acme/shop", "refs/heads/main", None),
            "services=web",
            &history,
            &["web queued"],
        );
    }

    #[test]
    fn forced_push_is_never_stale_and_timed_redeploy_is() {
        let history = |s: &str| (s == "web").then_some((20_000, 7));
        let mut c = change("acme/shop", "refs/heads/main", Some(10_000));
        c.forced = true;
        check(
            Event::Push(vec![c]),
            "services=web",
            &history,
            &["web queued"],
        );
        check(
            Event::Redeploy { time: Some(5_000) },
            "services=web",
            &history,
            &[
                "web skipped stale: event time 1970-01-01T00:00:05Z is older than 1970-01-01T00:00:20Z of deployment 7",
            ],
        );
    }

    #[test]
    fn tags_deploy_services_that_follow_them() {
        let d = plan(
            &app(),
            Source::Gitlab,
            &push("acme/shop", "refs/tags/v1.4.2", Some(1)),
            &Modifiers::default(),
            &none,
        )
        .unwrap();
        let site = d.iter().find(|d| d.service == "site").unwrap();
        assert_eq!(site.state, DeploymentState::Queued);
        assert_eq!(site.git_ref.as_deref(), Some("refs/tags/v1.4.2"));
        assert_eq!(site.git_branch, None);
        check(
            push("acme/shop", "refs/tags/rc-1", None),
            "services=site",
            &none,
            &["site skipped push of tag rc-1; service site follows tags v*"],
        );
    }

    #[test]
    fn multi_change_push_picks_the_followed_ref() {
        let mut gone = change("acme/shop", "refs/heads/old", None);
        gone.deleted = true;
        let ev = Event::Push(vec![
            change("acme/shop", "refs/heads/dev", Some(3)),
            change("acme/shop", "refs/tags/v2", Some(2)),
            change("acme/shop", "refs/heads/main", Some(1)),
            gone,
        ]);
        check(
            ev,
            "services=web,site,api",
            &none,
            &[
                "api skipped push to acme/shop; service api follows acme/api",
                "site queued",
                "web queued",
            ],
        );
        let mut del = change("acme/shop", "refs/heads/main", None);
        del.deleted = true;
        check(
            Event::Push(vec![change("acme/shop", "refs/heads/dev", None), del]),
            "services=web",
            &none,
            &["web skipped refs/heads/main was deleted; nothing to deploy"],
        );
    }

    #[test]
    fn unknown_modifiers_are_errors() {
        let a = app();
        assert!(
            Modifiers::parse("services=web,nope")
                .validate(&a)
                .unwrap_err()
                .contains("nope")
        );
        assert!(
            Modifiers::parse("deployment_profile=x")
                .validate(&a)
                .unwrap_err()
                .contains("\"x\"")
        );
        assert!(Modifiers::parse("other=1&services=").validate(&a).is_ok());
    }

    #[test]
    fn ping_and_ignored_events_deploy_nothing() {
        check(Event::Ping, "", &none, &[]);
        check(Event::Ignored("issues".into()), "", &none, &[]);
    }

    #[test]
    fn modifiers_round_trip() {
        let m = Modifiers {
            services: Some(vec!["a".into(), "b".into()]),
            profile: Some("quick fix".into()),
            git_ref: Some("v1".into()),
        };
        assert_eq!(Modifiers::parse(&m.to_query()), m);
    }

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
        config::parse(text, Path::new("f.toml"), &|_| None)
            .unwrap()
            .apps
            .remove("shop")
            .unwrap()
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
