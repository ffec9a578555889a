//! GitLab commit statuses: `POST {api_url}/projects/:id/statuses/:sha` with the project's
//! path, URL-encoded as one segment (`group%2Fsub%2Fproject`), as `:id`, and the token in
//! `PRIVATE-TOKEN` (a personal, group or project access token with the `api` scope). The
//! body is JSON: `state`, `name` (the context), `target_url`, `description`, and `ref` (the
//! branch or tag, so GitLab files the status under that ref's pipeline).
//!
//! GitLab moves a status only forwards (`pending` → `running` → an end) and refuses, with 400,
//! both a move backwards (e.g. a second deployment of the same commit queued while the first
//! runs: `Cannot transition status via :enqueue from :running`) and a repeat of the state it
//! has (`… via :enqueue from :pending`). A move backwards is recorded as refused and not tried
//! again. A repeat is counted as sent ([`already_there`]): the status is what ferry wanted,
//! and a try whose answer was lost (a timeout, a restart) is sent again by design. What is
//! shared with the other hosts (which events, states, context, answers) is `statuses.rs`.

use http::HeaderName;
use serde_json::json;

use super::statuses::{self, Host};
use super::target::{Context, Outcome, Subject};
use crate::store::{NewNotification, Notification};

/// The status of one event, if it gets one.
pub(crate) fn fan_out(ctx: &Context, s: &Subject<'_>) -> Option<NewNotification> {
    let st = statuses::status(ctx, s, Host::Gitlab)?;
    let path = format!(
        "projects/{}/statuses/{}",
        statuses::encode(&st.repo.join("/")),
        statuses::encode(st.commit)
    );
    let mut body = json!({
        "state": Host::Gitlab.state(st.state),
        "name": st.context,
        "target_url": st.target_url,
        "description": st.description,
    });
    if let Some(r) = st.short_ref() {
        body["ref"] = json!(r);
    }
    statuses::notification(ctx, s, Host::Gitlab, path, &body)
}

/// One try; a refused repeat of the state GitLab has counts as sent.
pub(crate) async fn send(ctx: &Context, n: &Notification) -> Outcome {
    let outcome = statuses::send(ctx, n, Host::Gitlab, |token| {
        (HeaderName::from_static("private-token"), token.to_string())
    })
    .await;
    match outcome {
        Outcome::Permanent {
            status: Some(400),
            error,
        } if already_there(&error) => Outcome::Sent { status: 400 },
        other => other,
    }
}

/// Whether GitLab refused a status because the commit has that state already: its state
/// machine has no `pending` → `pending` (`enqueue`) or `running` → `running` (`run`).
fn already_there(error: &str) -> bool {
    [
        "Cannot transition status via :enqueue from :pending",
        "Cannot transition status via :run from :running",
    ]
    .iter()
    .any(|m| error.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_repeat_of_the_same_state_counts_as_there() {
        assert!(already_there(
            "answered 400 Bad Request: Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\")"
        ));
        assert!(already_there(
            "answered 400 Bad Request: Cannot transition status via :run from :running"
        ));
        assert!(!already_there(
            "answered 400 Bad Request: Cannot transition status via :enqueue from :running"
        ));
        assert!(!already_there(
            "answered 400 Bad Request: Cannot transition status via :run from :success"
        ));
    }
}
