//! Docker Hub's webhook chain: a push payload carries a `callback_url`, and Docker Hub shows
//! the push as pending until something POSTs `{"state": "success" | "failure" | "error", …}`
//! there. ferry does so once a deployment caused by a Docker Hub push has run and ended
//! (succeeded, failed, timed out, rolled back, cancelled), for apps that set
//! `dockerhub_callback`.
//!
//! The URL comes from the payload, so it is called only when it starts with the app's
//! configured prefix, never on a payload value alone; it is checked at fan-out and stored
//! with the notification. Each app's callbacks are one queue (`dockerhub:APP`). A redirect is
//! not followed (`crate::outgoing`): a 3xx, like any 4xx but 408 and 429, is a refusal that
//! trying again cannot change; 5xx answers and network errors are tried again.

use serde_json::json;

use super::retry::retry_after;
use super::target::{self, Context, Kind, Outcome, Subject};
use crate::config::receiver_of;
use crate::states::DeploymentState;
use crate::store::{NewNotification, Notification, StoreError};

/// The callback of one event, if it is the end of a run of a Docker Hub push's deployment
/// whose app wants callbacks and whose payload names a callback URL under the app's prefix.
pub(crate) async fn fan_out(
    ctx: &Context,
    s: &Subject<'_>,
) -> Result<Option<NewNotification>, StoreError> {
    let Some(state) = s.event.event.deployment_state().and_then(callback_state) else {
        return Ok(None);
    };
    let Some(d) = s.deployment else {
        return Ok(None);
    };
    if d.source != crate::sources::Source::Dockerhub.as_str() {
        return Ok(None);
    }
    let prefix = ctx
        .config
        .apps
        .get(&d.app)
        .and_then(|a| a.dockerhub_callback.as_deref());
    let Some(prefix) = prefix else {
        return Ok(None);
    };
    let Some(delivery) = ctx.store.delivery(d.delivery_id).await? else {
        return Ok(None);
    };
    let Some(url) = crate::sources::dockerhub::callback_url(&delivery.body) else {
        return Ok(None);
    };
    if !url.starts_with(prefix) {
        tracing::warn!(deployment = d.id, app = %d.app, "Docker Hub callback_url is outside dockerhub_callback's prefix; not called");
        return Ok(None);
    }
    let final_state = s.event.event.deployment_state().unwrap_or(d.state);
    let body = json!({
        "state": state,
        "description": format!("ferry: {}/{} deployment {} {final_state}", d.app, d.service, d.id),
        "context": "ferry",
        "target_url": ctx.deployment_url(d.id),
    });
    let queue = format!("dockerhub:{}", d.app);
    Ok(Some(target::notification(
        s,
        &queue,
        Kind::Dockerhub,
        &receiver_of(&url),
        Some(url),
        body.to_string(),
    )))
}

/// Docker Hub's state for a deployment that ran and ended in `state`; `None` for the states
/// that are not reported (queued, running, and those that never ran or will run again:
/// superseded, skipped, interrupted).
fn callback_state(state: DeploymentState) -> Option<&'static str> {
    match state {
        DeploymentState::Succeeded => Some("success"),
        DeploymentState::Failed | DeploymentState::TimedOut | DeploymentState::RolledBack => {
            Some("failure")
        }
        DeploymentState::Cancelled => Some("error"),
        DeploymentState::Queued
        | DeploymentState::Running
        | DeploymentState::Superseded
        | DeploymentState::Skipped
        | DeploymentState::Interrupted => None,
    }
}

/// One try: POST the stored body to the stored callback URL.
pub(crate) async fn send(ctx: &Context, n: &Notification) -> Outcome {
    let Some(url) = n.url.as_deref() else {
        return Outcome::Permanent {
            status: None,
            error: "no callback URL stored".into(),
        };
    };
    let answer = ctx
        .client
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(n.body.clone())
        .send()
        .await;
    match answer {
        Ok(r) if r.status().is_success() => Outcome::Sent {
            status: r.status().as_u16(),
        },
        Ok(r) => {
            let status = r.status();
            let error = format!("answered {status}");
            let again = status.is_server_error()
                || status == http::StatusCode::REQUEST_TIMEOUT
                || status == http::StatusCode::TOO_MANY_REQUESTS;
            if again {
                Outcome::Retry {
                    status: Some(status.as_u16()),
                    error,
                    after: retry_after(r.headers()),
                }
            } else {
                Outcome::Permanent {
                    status: Some(status.as_u16()),
                    error,
                }
            }
        }
        Err(e) => Outcome::Retry {
            status: None,
            error: target::describe(e),
            after: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runs_that_ended_are_reported() {
        use DeploymentState::*;
        let reported: Vec<_> = DeploymentState::ALL
            .iter()
            .filter_map(|s| callback_state(*s).map(|c| (*s, c)))
            .collect();
        assert_eq!(
            reported,
            [
                (Succeeded, "success"),
                (Failed, "failure"),
                (TimedOut, "failure"),
                (Cancelled, "error"),
                (RolledBack, "failure"),
            ]
        );
    }
}
