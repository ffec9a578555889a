//! Reporting back to senders once a deployment has ended.
//!
//! Called by the lanes after a deployment's final state is recorded. Today this is Docker
//! Hub's webhook chain: a push payload carries a `callback_url`, and Docker Hub shows the push
//! as pending until something POSTs `{"state": "success" | "failure" | "error", …}` there. The
//! URL comes from the payload, so it is only called when it starts with the app's configured
//! prefix (`dockerhub_callback`), never a payload value alone. Fire and forget, bounded by a
//! timeout; the outcome goes to ferry's log. A redirect is not followed (`crate::outgoing`).

use std::time::Duration;

use serde_json::json;

use crate::config::Config;
use crate::store::{Deployment, DeploymentState, Store};

/// Reports a deployment's end to its sender, if the sender wants that and the app allows it.
pub async fn deployment_ended(
    config: &Config,
    store: &Store,
    d: &Deployment,
    final_state: DeploymentState,
) {
    if d.source != crate::sources::Source::Dockerhub.as_str() {
        return;
    }
    let Some(prefix) = config
        .apps
        .get(&d.app)
        .and_then(|a| a.dockerhub_callback.clone())
    else {
        return;
    };
    let body = match store.delivery(d.delivery_id).await {
        Ok(Some(full)) => full.body,
        _ => return,
    };
    let url = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("callback_url")?.as_str().map(str::to_string));
    let Some(url) = url else { return };
    if !url.starts_with(&prefix) {
        tracing::warn!(deployment = d.id, app = %d.app, "Docker Hub callback_url is outside dockerhub_callback's prefix; not called");
        return;
    }
    let callback_state = match final_state {
        DeploymentState::Succeeded => "success",
        DeploymentState::Failed | DeploymentState::TimedOut | DeploymentState::RolledBack => {
            "failure"
        }
        DeploymentState::Cancelled
        | DeploymentState::Interrupted
        | DeploymentState::Superseded
        | DeploymentState::Skipped
        | DeploymentState::Queued
        | DeploymentState::Running => "error",
    };
    let target = format!(
        "{}/api/v1/deployments/{}",
        config.server.public_url.trim_end_matches('/'),
        d.id
    );
    let payload = json!({
        "state": callback_state,
        "description": format!("ferry: {}/{} deployment {} {final_state}", d.app, d.service, d.id),
        "context": "ferry",
        "target_url": target,
    });
    let client = match crate::outgoing::builder(Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the callback client");
            return;
        }
    };
    match client.post(&url).json(&payload).send().await {
        Ok(r) if r.status().is_success() => {
            tracing::info!(
                deployment = d.id,
                state = callback_state,
                "Docker Hub callback sent"
            )
        }
        Ok(r) => {
            tracing::warn!(
                deployment = d.id,
                status = r.status().as_u16(),
                "Docker Hub callback refused"
            )
        }
        // The error names the URL, which came from the payload: escaped.
        Err(e) => {
            tracing::warn!(deployment = d.id, error = %crate::logging::Escaped(&e), "Docker Hub callback failed")
        }
    }
}
