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
//!   the tag: once per digest, and under `semver:` only forward;
//! - a deployment requested in GitHub (`deployment` event) for the app's environment deploys
//!   its commit to the git services following its repository, whatever branch they follow.
//!
//! Layout: this file holds the entry points ([`plan`], [`plan_unverified`]), the services an
//! event selects and the staleness rule; in `plan/`: `modifiers.rs` the hook URL's modifiers,
//! `git.rs` git pushes, `deployment.rs` deployments requested in GitHub, `image.rs` image
//! pushes and image redeploys, `rollback.rs` rollbacks, `reconcile.rs` reconciles (a
//! service's `reconcile` schedule).

pub(crate) mod alerts;
mod deployment;
mod git;
mod image;
mod modifiers;
mod reconcile;
mod rollback;

pub(crate) use modifiers::Modifiers;

use crate::config::App;
use crate::sources::{Event, Source};
use crate::store::{DeploymentState, HeldImage, NewDeployment};
use crate::timefmt::fmt_ms;

/// What each service already holds.
pub(crate) trait History {
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
    /// The newest succeeded deployment of the service: what a reconcile runs again.
    fn last_success(&self, _service: &str) -> Option<crate::store::Deployment> {
        None
    }
    /// A queued or running deployment of the service (its id and state), if any: a reconcile
    /// then records a skip instead of running.
    fn active(&self, _service: &str) -> Option<(i64, DeploymentState)> {
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
pub(crate) fn plan(
    app: &App,
    source: Source,
    event: &Event,
    m: &Modifiers,
    history: &dyn History,
) -> Result<Vec<NewDeployment>, String> {
    m.validate(app)?;
    // Alerts are decided by the app's alert rules (`alerts::decide`, called by the planner
    // with the alerts' history), never by the rules here.
    if matches!(event, Event::Ping | Event::Ignored(_) | Event::Alerts(_)) {
        return Ok(Vec::new());
    }
    // A push names its own ref and commit: `?git_ref=` never overrides what a payload names
    // (a captured signed push replayed with `?git_ref=X` must not deploy X).
    if matches!(
        event,
        Event::Push(_) | Event::ImagePush(_) | Event::Deployment(_)
    ) && m.git_ref.is_some()
    {
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
pub(crate) const IGNORED_GIT_REF: &str =
    "?git_ref= ignored: a push deploys the ref and commit it names, not the hook URL's";

/// Recorded on deployments of an unverified delivery of an app that configures a scheme.
pub(crate) const UNVERIFIED: &str = "unverified delivery (verify.allow_unsigned): redeploys what is configured; any branch, commit, tag or image the request names is ignored";

/// Plans an unverified delivery of an app that configures a scheme (let through by
/// `verify.allow_unsigned`). It carries no version, whatever its body or URL say: it is a plain
/// redeploy of the selected services (`?services=`, `?deployment_profile=`), with no event
/// time and no `?git_ref=`. The planner calls this instead of parsing the body, so no request
/// path or config change can make such a delivery name a version.
pub(crate) fn plan_unverified(
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
        return rollback::rollback(app, source, service, *to, history);
    }
    if let Event::Reconcile { service } = event {
        return reconcile::reconcile(app, source, service, history);
    }
    if let Event::Deployment(d) = event {
        deployment::accepts(app, d)?;
    }
    Ok(selected(app, m)
        .into_iter()
        .map(|name| plan_service(app, name, source, event, m, history))
        .collect())
}

/// The services an event deploys: all of the app's, narrowed by `?deployment_profile=` and
/// `?services=`.
fn selected<'a>(app: &'a App, m: &Modifiers) -> Vec<&'a str> {
    app.services
        .keys()
        .map(String::as_str)
        .filter(|s| {
            m.profile
                .as_ref()
                .is_none_or(|p| app.profiles[p].services.iter().any(|x| x == s))
        })
        .filter(|s| m.services.as_ref().is_none_or(|l| l.iter().any(|x| x == s)))
        .collect()
}

/// Plans one service for an event (not a rollback): what the event means for a git service
/// or an image service, then the staleness rule.
fn plan_service(
    app: &App,
    name: &str,
    source: Source,
    event: &Event,
    m: &Modifiers,
    history: &dyn History,
) -> NewDeployment {
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
        // With `repo = "*"` the repository is the pushed one (set by `git::plan_push`).
        d.git_repo = (!g.any_repo()).then(|| g.repo.clone());
        d.git_branch = g.branch.clone();
        d.git_ref = m.git_ref.clone().or_else(|| g.branch.clone());
    }
    // Whether the staleness rule is waived (see `skip_if_stale`).
    let forced = match (event, &svc.image) {
        (Event::ImagePush(pushes), Some(spec)) => image::plan_push(&mut d, spec, pushes, history),
        (Event::ImagePush(pushes), None) => {
            let repo = pushes.first().map(|p| p.repository.as_str()).unwrap_or("?");
            d.skip(format!(
                "image push of {repo}: service {name} does not follow an image"
            ));
            false
        }
        (Event::Push(_), Some(spec)) => {
            d.skip(format!(
                "git push: service {name} follows the image {}",
                spec.repository
            ));
            false
        }
        (Event::Deployment(dep), Some(spec)) => {
            d.skip(format!(
                "GitHub deployment of {}: service {name} follows the image {}",
                dep.repo, spec.repository
            ));
            false
        }
        (Event::Deployment(dep), None) => {
            deployment::plan_deployment(&mut d, svc.git.as_ref(), dep)
        }
        (Event::Redeploy { time }, Some(spec)) => {
            image::plan_redeploy(&mut d, spec, *time, history);
            false
        }
        (Event::Push(changes), None) => git::plan_push(&mut d, svc.git.as_ref(), changes, m),
        (Event::Redeploy { time }, None) => {
            d.event_time = *time;
            false
        }
        (
            Event::Ping
            | Event::Ignored(_)
            | Event::Rollback { .. }
            | Event::Reconcile { .. }
            | Event::Alerts(_),
            _,
        ) => {
            unreachable!("returned above")
        }
    };
    skip_if_stale(&mut d, forced, history);
    d
}

/// Skips a queued deployment whose event is older than what its service already has. A forced
/// push rewrote history on purpose: it is never stale. Semver image services are ordered by
/// version instead (see `image::plan_push`).
fn skip_if_stale(d: &mut NewDeployment, forced: bool, history: &dyn History) {
    if d.state == DeploymentState::Queued
        && !forced
        && let Some(t) = d.event_time
        && let Some((newest, by)) = history.newest(&d.service)
        && newest > t
    {
        d.skip(format!(
            "stale: event time {} is older than {} of deployment {by}",
            fmt_ms(t),
            fmt_ms(newest)
        ));
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

    use super::*;
    use crate::sources::{GitPush, GitRef};

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
        crate::config::test_app(text, "shop")
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
    fn any_repo_follows_the_branch_in_every_repository() {
        let text = r#"
[apps.hooks]
token = "tok-0123456789abcdef"
verify = { github = "s3cr3t" }
[apps.hooks.services.run]
git = { repo = "*", branch = "main" }
command = ["x"]
"#;
        let app = crate::config::test_app(text, "hooks");
        let m = Modifiers::parse("");
        for repo in ["acme/shop", "other/thing"] {
            let ds = plan(
                &app,
                Source::Github,
                &push(repo, "refs/heads/main", None),
                &m,
                &none,
            )
            .unwrap();
            assert_eq!(ds[0].state, DeploymentState::Queued, "{:?}", ds[0].reason);
            assert_eq!(ds[0].git_repo.as_deref(), Some(repo));
            assert_eq!(ds[0].git_commit.as_deref(), Some("c0ffee"));
        }
        let ds = plan(
            &app,
            Source::Github,
            &push("acme/shop", "refs/heads/dev", None),
            &m,
            &none,
        )
        .unwrap();
        assert_eq!(ds[0].state, DeploymentState::Skipped);
        let ds = plan(
            &app,
            Source::Github,
            &Event::Redeploy { time: None },
            &m,
            &none,
        )
        .unwrap();
        assert_eq!(ds[0].git_repo, None, "a redeploy names no repository");
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
}
