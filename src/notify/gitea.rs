//! Gitea and Forgejo commit statuses: `POST {api_url}/repos/{owner}/{repo}/statuses/{sha}`
//! (`api_url` ends in `/api/v1`; there is no default, every instance is self-hosted) with
//! `Authorization: token TOKEN` (an access token with repository write access). The body is
//! JSON: `state`, `context`, `target_url`, `description`. Gitea keeps every status and shows
//! the newest per context, so any order of states is accepted; it has no running state
//! (`pending` until the end). What is shared with the other hosts is `statuses.rs`.

use serde_json::json;

use super::statuses::{self, Host};
use super::target::{Context, Outcome, Subject};
use crate::store::{NewNotification, Notification};

/// The status of one event, if it gets one (the repository must be `OWNER/REPO`).
pub(crate) fn fan_out(ctx: &Context, s: &Subject<'_>) -> Option<NewNotification> {
    let st = statuses::status(ctx, s, Host::Gitea)?;
    let [owner, repo] = st.repo[..] else {
        statuses::unusable(
            st.deployment,
            Host::Gitea,
            "its repository is not OWNER/REPO",
        );
        return None;
    };
    let path = format!(
        "repos/{}/{}/statuses/{}",
        statuses::encode(owner),
        statuses::encode(repo),
        statuses::encode(st.commit)
    );
    let body = json!({
        "state": Host::Gitea.state(st.state),
        "context": st.context,
        "target_url": st.target_url,
        "description": st.description,
    });
    statuses::notification(ctx, s, Host::Gitea, path, &body)
}

/// One try.
pub(crate) async fn send(ctx: &Context, n: &Notification) -> Outcome {
    statuses::send(ctx, n, Host::Gitea, |token| {
        (http::header::AUTHORIZATION, format!("token {token}"))
    })
    .await
}
