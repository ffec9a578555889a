//! Deployments requested in the git host (GitHub's `deployment` event, [`GitDeployment`]):
//! someone (the GitHub UI, Actions, the CLI) asked for an exact commit to be deployed to an
//! environment. The app takes it when the environment is its `[apps.X.github]
//! environment`, the task is `deploy`, and ferry did not create the deployment itself (its
//! own GitHub deployments come back as `deployment` events: the push already deployed
//! them). Then it deploys the commit to every git service following the repository; the
//! branch or tags a service follows do not matter, since the deployment names the commit
//! and its environment chose the app. It is never stale: someone asked for it now.

use crate::config::{App, GitSpec};
use crate::sources::GitDeployment;
use crate::store::NewDeployment;

/// The task ferry runs; deployments for other tasks (`deploy:migrations`, …) are not ferry's.
const TASK: &str = "deploy";

/// Whether `app` takes this deployment; if not, the reason, recorded on the delivery.
pub(super) fn accepts(app: &App, d: &GitDeployment) -> Result<(), String> {
    let id = d.id;
    if let Some(own) = d.created_by_ferry {
        return Err(format!(
            "GitHub deployment {id} was created by ferry for its deployment {own}, which the push deploys; not deployed again"
        ));
    }
    let Some(gh) = &app.github else {
        return Err(format!(
            "GitHub deployment {id} to {:?}: app {} has no [apps.{}.github] environment to match",
            d.environment, app.name, app.name
        ));
    };
    // GitHub's environment names are not case sensitive.
    if d.environment.to_lowercase() != gh.environment.to_lowercase() {
        return Err(format!(
            "GitHub deployment {id} is to environment {:?}; app {} deploys {:?} ([apps.{}.github] environment)",
            d.environment, app.name, gh.environment, app.name
        ));
    }
    if d.task != TASK {
        return Err(format!(
            "GitHub deployment {id} is for task {:?}; ferry runs only {TASK:?}",
            d.task
        ));
    }
    Ok(())
}

/// Fills in the commit a requested deployment deploys to a service, or skips it with the
/// reason. Returns `true`: it is never stale.
pub(super) fn plan_deployment(
    d: &mut NewDeployment,
    git: Option<&GitSpec>,
    dep: &GitDeployment,
) -> bool {
    let name = d.service.clone();
    match git {
        None => d.skip(format!(
            "GitHub deployment of {}: service {name} does not follow a git repository",
            dep.repo
        )),
        Some(g) if !g.follows_repo(&dep.repo) => d.skip(format!(
            "GitHub deployment of {}; service {name} follows {}",
            dep.repo, g.repo
        )),
        Some(g) => {
            if g.any_repo() {
                d.git_repo = Some(dep.repo.clone());
            }
            d.git_ref = Some(dep.git_ref.clone());
            // FERRY_GIT_BRANCH only when the deployment names the branch the service follows.
            d.git_branch = g.branch.clone().filter(|b| *b == dep.git_ref);
            d.git_commit = Some(dep.commit.clone());
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Modifiers, plan};
    use crate::config;
    use crate::sources::{Event, GitDeployment, Source};
    use crate::store::DeploymentState;

    const SHA: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";

    fn app(github: &str) -> crate::config::App {
        let text = format!(
            r#"
[apps.shop]
token = "tok-0123456789abcdef"
[apps.shop.services.web]
git = {{ repo = "Acme/Shop", branch = "main" }}
command = ["x"]
[apps.shop.services.site]
git = {{ repo = "acme/shop", tags = "v*" }}
command = ["x"]
[apps.shop.services.api]
git = {{ repo = "acme/api", branch = "main" }}
command = ["x"]
[apps.shop.services.worker]
command = ["x"]
{github}
"#
        );
        config::parse(&text, Path::new("f.toml"), &|_| None)
            .unwrap()
            .apps
            .remove("shop")
            .unwrap()
    }

    const GITHUB: &str = "[apps.shop.github]\ntoken = \"t\"\n";

    fn requested(environment: &str) -> GitDeployment {
        GitDeployment {
            repo: "acme/shop".into(),
            commit: SHA.into(),
            git_ref: "feature/x".into(),
            environment: environment.into(),
            task: "deploy".into(),
            id: 7,
            created_by_ferry: None,
        }
    }

    fn run(app: &crate::config::App, d: GitDeployment, query: &str) -> Result<Vec<String>, String> {
        // Whatever the services hold, a requested deployment is not stale.
        let history = |_: &str| Some((i64::MAX, 1));
        let plans = plan(
            app,
            Source::Github,
            &Event::Deployment(d),
            &Modifiers::parse(query),
            &history,
        )?;
        Ok(plans
            .iter()
            .map(|d| {
                format!(
                    "{} {} {} {} {}",
                    d.service,
                    d.state,
                    d.git_commit.as_deref().unwrap_or("-"),
                    d.git_ref.as_deref().unwrap_or("-"),
                    d.reason.as_deref().unwrap_or("")
                )
                .trim_end()
                .to_string()
            })
            .collect())
    }

    /// The app's environment: every git service following the repository gets the commit,
    /// whatever branch or tags it follows; the others are skipped with the reason.
    #[test]
    fn deploys_the_commit_to_every_service_following_the_repository() {
        let got = run(&app(GITHUB), requested("production"), "").unwrap();
        assert_eq!(
            got,
            [
                "api skipped - main GitHub deployment of acme/shop; service api follows acme/api",
                format!("site queued {SHA} feature/x").as_str(),
                format!("web queued {SHA} feature/x").as_str(),
                "worker skipped - - GitHub deployment of acme/shop: service worker does not follow a git repository",
            ]
        );
        let got = run(&app(GITHUB), requested("production"), "services=web").unwrap();
        assert_eq!(got, [format!("web queued {SHA} feature/x")]);
        // `?git_ref=` never overrides the commit it names.
        let got = run(
            &app(GITHUB),
            requested("production"),
            "services=web&git_ref=v9",
        )
        .unwrap();
        assert_eq!(
            got,
            [format!(
                "web queued {SHA} feature/x {}",
                super::super::IGNORED_GIT_REF
            )]
        );
        let plans = plan(
            &app(GITHUB),
            Source::Github,
            &Event::Deployment(GitDeployment {
                git_ref: "main".into(),
                ..requested("production")
            }),
            &Modifiers::parse("services=web"),
            &|_: &str| None,
        )
        .unwrap();
        assert_eq!(plans[0].state, DeploymentState::Queued);
        assert_eq!(
            plans[0].git_branch.as_deref(),
            Some("main"),
            "the branch it names"
        );
        assert_eq!(plans[0].event, "deployment");
        assert_eq!(plans[0].event_time, None);
    }

    /// Another environment, another task, ferry's own deployment, an app without
    /// `[apps.X.github]`: nothing, with the reason.
    #[test]
    fn deploys_nothing_that_is_not_the_apps() {
        let err = run(&app(GITHUB), requested("staging"), "").unwrap_err();
        assert_eq!(
            err,
            "GitHub deployment 7 is to environment \"staging\"; app shop deploys \"production\" ([apps.shop.github] environment)"
        );
        let staging = format!("{GITHUB}environment = \"staging\"\n");
        assert!(run(&app(&staging), requested("staging"), "").is_ok());
        assert!(
            run(&app(&staging), requested("Staging"), "").is_ok(),
            "as GitHub compares"
        );
        let err = run(
            &app(GITHUB),
            GitDeployment {
                task: "deploy:migrations".into(),
                ..requested("production")
            },
            "",
        )
        .unwrap_err();
        assert!(err.contains("task \"deploy:migrations\""), "{err}");
        let err = run(
            &app(GITHUB),
            GitDeployment {
                created_by_ferry: Some(42),
                ..requested("production")
            },
            "",
        )
        .unwrap_err();
        assert!(
            err.contains("created by ferry for its deployment 42"),
            "{err}"
        );
        let err = run(&app(""), requested("production"), "").unwrap_err();
        assert!(err.contains("app shop has no [apps.shop.github]"), "{err}");
    }
}
