//! What a container event says (`container.died`, `container.unhealthy`,
//! `container.restarted`, written by `crate::watch`): the `data` of its Standard Webhooks body
//! and its line for chat. The subject is the container (from the journal's `detail`) and the
//! service; the deployment the journal names is the service's current one (its newest
//! success when the event was recorded), so the version is what the container was running.

use serde_json::{Value, json};

use super::event::escape;
use super::target::{Context, Subject};
use crate::states::EventType;
use crate::store::ContainerDetail;

/// The `data` of a container event.
pub(crate) fn data(ctx: &Context, s: &Subject<'_>) -> Value {
    let e = s.event;
    let c = e.container().unwrap_or_default();
    let d = s.deployment;
    json!({
        "app": e.app,
        "service": e.service,
        "container": c.container,
        "container_id": c.container_id,
        "image": c.image,
        "exit_code": c.exit_code,
        "oom_killed": c.oom_killed,
        "restart_count": c.restart_count,
        "health_output": c.health_output,
        "suppressed": c.suppressed,
        "deployment_id": e.deployment_id,
        "deployment_url": e.deployment_id.map(|id| ctx.deployment_url(id)),
        "version": d.and_then(|d| d.version()),
        "image_tag": d.and_then(|d| d.image_tag.clone()),
        "image_digest": d.and_then(|d| d.image_digest.clone()),
        "commit": d.and_then(|d| d.git_commit.clone()),
    })
}

/// One line for chat: `shop/api: container shop-api died (exit code 137), running
/// 1.4.2@sha256:… (<URL|deployment 42>)`, and how many like it were held back since the last.
pub(crate) fn summary(ctx: &Context, s: &Subject<'_>) -> String {
    let e = s.event;
    let c = e.container().unwrap_or_default();
    let what = happened(e.event, &c);
    let running = s
        .deployment
        .and_then(|d| d.version())
        .map(|v| format!(", running {}", escape(&v)))
        .unwrap_or_default();
    let link = e
        .deployment_id
        .map(|id| format!(" (<{}|deployment {id}>)", ctx.deployment_url(id)))
        .unwrap_or_default();
    let more = match c.suppressed {
        0 => String::new(),
        1 => "; 1 more like it was held back since the last message".to_string(),
        n => format!("; {n} more like it were held back since the last message"),
    };
    format!(
        "{}/{}: container {} {what}{running}{link}{more}",
        escape(&e.app),
        escape(e.service.as_deref().unwrap_or_default()),
        escape(&c.container),
    )
}

/// What happened, in words: "died (exit code 137, out of memory)", "was restarted by Docker
/// after exiting with code 3 (restart 4)", "is unhealthy: OUTPUT".
fn happened(event: EventType, c: &ContainerDetail) -> String {
    let mut how = Vec::new();
    if let Some(code) = c.exit_code {
        how.push(format!("exit code {code}"));
    }
    if c.oom_killed {
        how.push("out of memory".to_string());
    }
    let how = if how.is_empty() {
        String::new()
    } else {
        format!(" ({})", how.join(", "))
    };
    match event {
        EventType::ContainerRestarted => {
            let count = c
                .restart_count
                .map(|n| format!(", restart {n}"))
                .unwrap_or_default();
            format!("exited and was restarted by Docker{how}{count}")
        }
        EventType::ContainerUnhealthy => match &c.health_output {
            Some(out) => format!("is unhealthy: {}", escape(out)),
            None => "is unhealthy".to_string(),
        },
        _ => format!("died{how}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{Deployment, JournalEvent, Store};

    /// Two `[[notify]]` receivers: one wants every event, one only `container.died` (and
    /// `deployment.failed`), as chat. Also the watcher's services, read from the same file.
    const CONFIG: &str = r#"
[server]
public_url = "https://ferry.example"
[apps.shop]
token = "shop-token-123456"
[apps.shop.services.api]
image = { repository = "registry.example/acme/api", tags = "semver:^1" }
docker = { container = "shop-api" }

[[notify]]
url = "https://hooks.example/all"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[notify]]
url = "https://chat.example/hook"
format = "slack"
events = ["container.died", "deployment.failed"]
"#;

    async fn context() -> (tempfile::TempDir, Context) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _intake) = Store::open(dir.path()).await.unwrap();
        let config =
            crate::config::parse(CONFIG, std::path::Path::new("/f.toml"), &|_| None).unwrap();
        (dir, Context::new(Arc::new(config), store).unwrap())
    }

    fn event(event: EventType, detail: &ContainerDetail) -> JournalEvent {
        JournalEvent {
            id: 7,
            at: 1_777_000_000_000,
            event,
            app: "shop".into(),
            service: Some("api".into()),
            deployment_id: Some(42),
            delivery_id: None,
            reason: None,
            detail: Some(serde_json::to_string(detail).unwrap()),
        }
    }

    fn deployment() -> Deployment {
        Deployment {
            id: 42,
            app: "shop".into(),
            service: "api".into(),
            delivery_id: 3,
            state: crate::states::DeploymentState::Succeeded,
            reason: None,
            source: "registry".into(),
            event: "push".into(),
            git_repo: None,
            git_branch: None,
            git_ref: None,
            git_commit: None,
            event_time: None,
            profile: None,
            image: Some("registry.example/acme/api".into()),
            image_tag: Some("1.4.2".into()),
            image_digest: Some("sha256:ab".into()),
            attempt: 1,
            retry_of: None,
            exit_code: Some(0),
            created_at: 1,
            started_at: Some(2),
            finished_at: Some(3),
            node: None,
        }
    }

    /// The Standard Webhooks body names the service, the container and the version of the
    /// current deployment; the chat line says the same in words, escaped.
    #[tokio::test]
    async fn bodies_name_service_container_and_version() {
        let (_dir, ctx) = context().await;
        let detail = ContainerDetail {
            container: "shop-api".into(),
            container_id: "0123456789ab".into(),
            image: Some("registry.example/acme/api@sha256:ab".into()),
            exit_code: Some(137),
            oom_killed: true,
            suppressed: 2,
            ..Default::default()
        };
        let e = event(EventType::ContainerDied, &detail);
        let d = deployment();
        let s = Subject {
            event: &e,
            deployment: Some(&d),
            delivery: None,
        };
        let body: Value =
            serde_json::from_str(&super::super::event::standard_body(&ctx, &s)).expect("JSON");
        assert_eq!(body["type"], "container.died");
        assert_eq!(body["timestamp"], "2026-04-24T03:06:40Z");
        let data = &body["data"];
        assert_eq!(
            (&data["app"], &data["service"]),
            (&json!("shop"), &json!("api"))
        );
        assert_eq!(data["container"], "shop-api");
        assert_eq!(data["exit_code"], 137);
        assert_eq!(data["oom_killed"], true);
        assert_eq!(data["suppressed"], 2);
        assert_eq!(data["version"], "1.4.2@sha256:ab");
        assert_eq!(data["deployment_id"], 42);
        assert_eq!(
            data["deployment_url"],
            "https://ferry.example/api/v1/deployments/42"
        );
        assert_eq!(data["restart_count"], Value::Null);
        assert_eq!(
            super::super::event::summary(&ctx, &s),
            "shop/api: container shop-api died (exit code 137, out of memory), running \
             1.4.2@sha256:ab (<https://ferry.example/api/v1/deployments/42|deployment 42>); \
             2 more like it were held back since the last message"
        );

        let sick = ContainerDetail {
            container: "shop-api".into(),
            health_output: Some("<!channel> & down".into()),
            ..Default::default()
        };
        let e = event(EventType::ContainerUnhealthy, &sick);
        let s = Subject {
            event: &e,
            deployment: None,
            delivery: None,
        };
        assert_eq!(
            super::super::event::summary(&ctx, &s),
            "shop/api: container shop-api is unhealthy: &lt;!channel&gt; &amp; down \
             (<https://ferry.example/api/v1/deployments/42|deployment 42>)"
        );
        let restarted = ContainerDetail {
            container: "shop-api".into(),
            exit_code: Some(3),
            restart_count: Some(4),
            ..Default::default()
        };
        let e = event(EventType::ContainerRestarted, &restarted);
        let s = Subject {
            event: &e,
            deployment: Some(&d),
            delivery: None,
        };
        assert!(
            super::super::event::summary(&ctx, &s).starts_with(
                "shop/api: container shop-api exited and was restarted by Docker (exit code 3), restart 4, running 1.4.2@sha256:ab"
            ),
            "{}",
            super::super::event::summary(&ctx, &s)
        );
    }

    /// `[[notify]] events` takes the container types: a receiver without `events` gets all
    /// three, one that lists `container.died` gets only that one.
    #[tokio::test]
    async fn notify_entries_filter_container_events_by_type() {
        let (_dir, ctx) = context().await;
        let detail = ContainerDetail::default();
        let mut got = Vec::new();
        for t in [
            EventType::ContainerDied,
            EventType::ContainerUnhealthy,
            EventType::ContainerRestarted,
        ] {
            let e = event(t, &detail);
            let s = Subject {
                event: &e,
                deployment: None,
                delivery: None,
            };
            for n in super::super::webhook::fan_out(&ctx, &s) {
                got.push((n.event.as_str(), n.kind));
            }
        }
        assert_eq!(
            got,
            [
                ("container.died", "webhook".to_string()),
                ("container.died", "slack".to_string()),
                ("container.unhealthy", "webhook".to_string()),
                ("container.restarted", "webhook".to_string()),
            ]
        );
    }
}
