//! Reconciles (a service's `reconcile` schedule, stored by `crate::reconcile` as a `manual`
//! delivery with event `reconcile`): one deployment of the service at the version of its last
//! success, or a skipped one when another deployment is queued or running (a reconcile never
//! overlaps nor overtakes other work). The planner looks both up (`History::last_success`,
//! `History::active`) in its planning transaction; here they only become a deployment.

use crate::config::App;
use crate::sources::Source;
use crate::store::{DeploymentState, NewDeployment};

use super::History;

/// The `FERRY_EVENT` of reconcile deployments.
const EVENT: &str = "reconcile";

/// Plans a reconcile of `service`: its last success again, unless another deployment of it is
/// queued or running (then a skipped deployment says which). An error (deploys nothing) when
/// the service is gone, no longer reconciles, or never succeeded.
pub(super) fn reconcile(
    app: &App,
    source: Source,
    service: &str,
    history: &dyn History,
) -> Result<Vec<NewDeployment>, String> {
    let Some(svc) = app.services.get(service) else {
        return Err(format!("app {} has no service {service}", app.name));
    };
    if svc.reconcile.is_none() {
        // The config changed since the schedule stored this delivery.
        return Err(format!(
            "{}/{service} no longer has `reconcile`: nothing to do",
            app.name
        ));
    }
    let Some(last) = history.last_success(service) else {
        return Err(format!(
            "{}/{service} has never deployed successfully: nothing to reconcile",
            app.name
        ));
    };
    let (state, reason) = match history.active(service) {
        Some((id, state)) => (
            DeploymentState::Skipped,
            format!("reconcile: deployment {id} is {state}"),
        ),
        None => (
            DeploymentState::Queued,
            format!("reconcile: re-run of deployment {}", last.id),
        ),
    };
    Ok(vec![NewDeployment {
        app: app.name.clone(),
        service: service.to_string(),
        state,
        reason: Some(reason),
        source: source.as_str().to_string(),
        event: EVENT.into(),
        git_repo: last.git_repo,
        git_branch: last.git_branch,
        git_ref: last.git_ref,
        git_commit: last.git_commit,
        // Not ordered against pushes: a newer push supersedes it in the lanes, and it never
        // makes a later push stale.
        event_time: None,
        profile: last.profile,
        image: last.image,
        image_tag: last.image_tag,
        image_digest: last.image_digest,
    }])
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::store::Deployment;

    fn app() -> App {
        let text = r#"
[apps.shop]
token = "tok-0123456789abcdef"
[apps.shop.services.web]
git = { repo = "acme/shop", branch = "main" }
command = ["x"]
reconcile = "2s"
[apps.shop.services.worker]
command = ["x"]
"#;
        crate::config::test_app(text, "shop")
    }

    /// What a reconcile sees: web's last success (deployment 4 at commit c4) and, optionally,
    /// a deployment in its way.
    struct Seen(Option<(i64, DeploymentState)>, bool);

    impl History for Seen {
        fn newest(&self, _: &str) -> Option<(i64, i64)> {
            None
        }
        fn last_success(&self, _: &str) -> Option<Deployment> {
            self.1.then(|| Deployment {
                id: 4,
                app: "shop".into(),
                service: "web".into(),
                delivery_id: 2,
                state: DeploymentState::Succeeded,
                reason: None,
                source: "github".into(),
                event: "push".into(),
                git_repo: Some("acme/shop".into()),
                git_branch: Some("main".into()),
                git_ref: Some("main".into()),
                git_commit: Some("c4".into()),
                event_time: Some(1_000),
                profile: None,
                image: None,
                image_tag: None,
                image_digest: None,
                attempt: 1,
                retry_of: None,
                exit_code: Some(0),
                created_at: 1,
                started_at: Some(2),
                finished_at: Some(3),
                node: None,
            })
        }
        fn active(&self, _: &str) -> Option<(i64, DeploymentState)> {
            self.0
        }
    }

    #[test]
    fn reruns_the_last_success_at_its_commit() {
        let d = reconcile(&app(), Source::Manual, "web", &Seen(None, true)).unwrap();
        assert_eq!(d.len(), 1);
        let d = &d[0];
        assert_eq!(d.state, DeploymentState::Queued);
        assert_eq!(d.event, "reconcile");
        assert_eq!(
            d.reason.as_deref(),
            Some("reconcile: re-run of deployment 4")
        );
        assert_eq!(d.git_commit.as_deref(), Some("c4"));
        assert_eq!(d.git_ref.as_deref(), Some("main"));
        assert_eq!(d.event_time, None, "never ordered against pushes");
    }

    #[test]
    fn an_image_service_gets_the_image_tag_and_digest_it_ran() {
        struct Image;
        impl History for Image {
            fn newest(&self, _: &str) -> Option<(i64, i64)> {
                None
            }
            fn last_success(&self, s: &str) -> Option<Deployment> {
                let mut d = Seen(None, true).last_success(s)?;
                (d.git_repo, d.git_branch, d.git_ref, d.git_commit) = (None, None, None, None);
                d.image = Some("registry.example/acme/api".into());
                d.image_tag = Some("1.4.2".into());
                d.image_digest = Some(format!("sha256:{}", "ab".repeat(32)));
                Some(d)
            }
        }
        let d = reconcile(&app(), Source::Manual, "web", &Image)
            .unwrap()
            .remove(0);
        assert_eq!(d.state, DeploymentState::Queued);
        assert_eq!(d.image.as_deref(), Some("registry.example/acme/api"));
        assert_eq!(d.image_tag.as_deref(), Some("1.4.2"));
        assert_eq!(d.image_digest, Some(format!("sha256:{}", "ab".repeat(32))));
        assert_eq!(d.git_commit, None);
    }

    #[test]
    fn skips_while_another_deployment_is_queued_or_running() {
        for (state, word) in [
            (DeploymentState::Running, "running"),
            (DeploymentState::Queued, "queued"),
        ] {
            let d =
                reconcile(&app(), Source::Manual, "web", &Seen(Some((9, state)), true)).unwrap();
            assert_eq!(d[0].state, DeploymentState::Skipped);
            assert_eq!(
                d[0].reason.as_deref(),
                Some(format!("reconcile: deployment 9 is {word}").as_str())
            );
            assert_eq!(d[0].event, "reconcile");
        }
    }

    #[test]
    fn nothing_without_a_success_a_schedule_or_the_service() {
        let e = reconcile(&app(), Source::Manual, "web", &Seen(None, false)).unwrap_err();
        assert_eq!(
            e,
            "shop/web has never deployed successfully: nothing to reconcile"
        );
        let e = reconcile(&app(), Source::Manual, "worker", &Seen(None, true)).unwrap_err();
        assert_eq!(e, "shop/worker no longer has `reconcile`: nothing to do");
        let e = reconcile(&app(), Source::Manual, "gone", &Seen(None, true)).unwrap_err();
        assert_eq!(e, "app shop has no service gone");
    }
}
