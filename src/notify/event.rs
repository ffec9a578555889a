//! What an event says, for any target: the `data` object of a Standard Webhooks body (the
//! same field names as the API's deployment and delivery JSON) and a one-line summary for
//! chat. Both describe the subject as it was when the event happened: the state and reason
//! come from the journal, and times that came later are left out.

use serde_json::{Value, json};

use super::target::{Context, Subject};
use crate::states::DeploymentState;
use crate::store::Deployment;
use crate::timefmt::{fmt_ms, json_time};

/// The `data` of an event: the deployment or the delivery it is about (or, for container
/// events, the container: `container.rs`).
pub(crate) fn data(ctx: &Context, s: &Subject<'_>) -> Value {
    if s.event.event.is_container() {
        return super::container::data(ctx, s);
    }
    match s.event.event.deployment_state() {
        Some(state) => deployment_data(ctx, s, state),
        None => delivery_data(ctx, s),
    }
}

/// The Standard Webhooks body: `type`, `timestamp` (when it happened), `data`.
pub(crate) fn standard_body(ctx: &Context, s: &Subject<'_>) -> String {
    json!({
        "type": s.event.event,
        "timestamp": fmt_ms(s.event.at),
        "data": data(ctx, s),
    })
    .to_string()
}

fn deployment_data(ctx: &Context, s: &Subject<'_>, state: DeploymentState) -> Value {
    let e = s.event;
    let id = e.deployment_id.unwrap_or_default();
    // The deployment as the API shows it, then what the event knew when it happened: its
    // state and reason, and no times or exit code that came later.
    let mut v = s.deployment.map_or_else(|| json!({}), Deployment::json);
    let started = !matches!(
        state,
        DeploymentState::Queued | DeploymentState::Superseded | DeploymentState::Skipped
    );
    if let Some(v) = v.as_object_mut() {
        let snapshot = json!({
            "id": id,
            "app": e.app,
            "service": e.service,
            "state": state,
            "reason": e.reason,
            "delivery_id": e.delivery_id,
            "url": ctx.deployment_url(id),
            "log_url": format!("{}/logs", ctx.deployment_url(id)),
        });
        if let Value::Object(snapshot) = snapshot {
            v.extend(snapshot);
        }
        if let Some(d) = s.deployment {
            v.insert(
                "exit_code".into(),
                json!(d.exit_code.filter(|_| state.is_final())),
            );
            v.insert(
                "started_at".into(),
                json_time(d.started_at.filter(|_| started)),
            );
            v.insert(
                "finished_at".into(),
                json_time(d.finished_at.filter(|_| state.is_final())),
            );
        }
    }
    v
}

fn delivery_data(ctx: &Context, s: &Subject<'_>) -> Value {
    let e = s.event;
    let id = e.delivery_id.unwrap_or_default();
    let mut v = json!({
        "id": id,
        "app": e.app,
        "status": crate::states::DeliveryStatus::Rejected,
        "error": e.reason,
        "url": ctx.delivery_url(id),
    });
    if let (Some(v), Some(d)) = (v.as_object_mut(), s.delivery) {
        v.insert("source".into(), json!(d.source));
        v.insert("event".into(), json!(d.event));
        v.insert("source_delivery_id".into(), json!(d.source_delivery_id));
        v.insert("received_at".into(), json_time(Some(d.received_at)));
        v.insert("verified".into(), json!(d.verified));
    }
    v
}

/// One line for chat, in Slack's markup: `shop/web: <URL|deployment 42> succeeded (v1.2.3)`,
/// with the reason after a colon when it ended otherwise.
/// Values are escaped as Slack asks (`&`, `<`, `>`), so none can forge a link or mention.
pub(crate) fn summary(ctx: &Context, s: &Subject<'_>) -> String {
    let e = s.event;
    if e.event.is_container() {
        return super::container::summary(ctx, s);
    }
    let Some(state) = e.event.deployment_state() else {
        let id = e.delivery_id.unwrap_or_default();
        let from = s
            .delivery
            .map(|d| format!(" from {}", escape(&d.source)))
            .unwrap_or_default();
        let why = e.reason.as_deref().map(escape).unwrap_or_default();
        return format!(
            "{}: <{}|delivery {id}>{from} rejected: {why}",
            escape(&e.app),
            ctx.delivery_url(id)
        );
    };
    let id = e.deployment_id.unwrap_or_default();
    let service = e.service.as_deref().unwrap_or_default();
    let verb = match state {
        DeploymentState::Running => "started".to_string(),
        other => other.as_str().replace('_', " "),
    };
    let version = s
        .deployment
        .and_then(|d| d.version())
        .map(|v| format!(" ({})", escape(&v)))
        .unwrap_or_default();
    // The reason says why it ended so; on a success, or before the end, it is only a note.
    let why = state.is_final() && state != DeploymentState::Succeeded;
    let reason = e
        .reason
        .as_deref()
        .filter(|_| why)
        .map(|r| format!(": {}", escape(r)))
        .unwrap_or_default();
    format!(
        "{}/{}: <{}|deployment {id}> {verb}{version}{reason}",
        escape(&e.app),
        escape(service),
        ctx.deployment_url(id)
    )
}

/// Slack's escaping of message text.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
