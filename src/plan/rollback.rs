//! Rollbacks (`ferry rollback`, stored as a `manual` delivery with event `rollback`): one
//! deployment of the service, to the version its target ran. The planner looks the target up
//! (`History::rollback_target`); here it only becomes a deployment.

use crate::config::App;
use crate::sources::Source;
use crate::store::{DeploymentState, NewDeployment};

use super::History;

/// Plans `ferry rollback`: one deployment of the service, to the version its target ran.
pub(super) fn rollback(
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
