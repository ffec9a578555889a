//! The delivery inspector's model: everything ferry knows about one stored delivery, in one
//! serialisable value ([`Inspection`]) that `GET /api/v1/deliveries/ID`, `ferry deliveries
//! ID` and the dashboard's inspector page all show.
//!
//! It reads the delivery and its deployments from the store and re-runs, read-only, what the
//! planner ran on it (`planner::read_event`: the sender's parser, the value checks and the
//! time clamp), so "parsed into" is what planning saw, not a second interpretation. Reasons
//! come from where the planner stored them (a deployment's `reason`, the delivery's `error` and
//! `note`, the duplicates counted on it); the few it never stores because they follow from the
//! delivery alone (a ping, an event that never deploys, a service `?services=` left out) are
//! worked out here from the same inputs. Above `shared`, below the handlers (`api`, the
//! dashboard).

mod body;

use serde::Serialize;
use serde_json::Value;

pub(crate) use body::BodyView;

use crate::config::App;
use crate::plan::Modifiers;
use crate::shared::Shared;
use crate::sources::{Event, RECONCILE_EVENT, ROLLBACK_EVENT, Source};
use crate::store::{DeliveryStatus, Deployment, DeploymentState, FullDelivery, StoreError};
use crate::timefmt::{fmt_ms, json_time};

/// One delivery, inspected.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Inspection {
    pub(crate) id: i64,
    pub(crate) app: String,
    /// The sender (`github`, `generic`, `manual`, …).
    pub(crate) source: String,
    pub(crate) event: Option<String>,
    pub(crate) source_delivery_id: Option<String>,
    /// RFC 3339.
    pub(crate) received_at: String,
    pub(crate) status: DeliveryStatus,
    pub(crate) error: Option<String>,
    pub(crate) note: Option<String>,
    /// The hook URL's query as stored (the modifiers; `source=`).
    pub(crate) query: Option<String>,
    pub(crate) replay_of: Option<i64>,
    pub(crate) request: RequestView,
    pub(crate) verification: Verification,
    pub(crate) parsed: ParsedView,
    pub(crate) outcomes: Outcomes,
    pub(crate) duplicates: Duplicates,
}

/// The request as received (or what stored it, for the API's own deliveries).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RequestView {
    /// `POST` for a hook; `deploy`, `rollback` or `replay` for what the API stored;
    /// `reconcile` for what the reconcile schedule stored.
    pub(crate) method: String,
    /// What made it, in words: `POST to the hook URL`, `ferry replay of delivery 4 (POST
    /// /api/v1/deliveries/4/replay)`, …
    pub(crate) made_by: String,
    /// The hook path with its token masked (`/hooks/APP/••••`) and the stored query; the API
    /// path for deploys and rollbacks.
    pub(crate) path: String,
    /// The HTTP status a refused hook request was answered with (401, 415, 400, …); `None`
    /// for accepted ones (202, or 200 for a ping).
    pub(crate) refused_with: Option<i64>,
    /// The headers as stored (secrets were redacted before storage).
    pub(crate) headers: Value,
    pub(crate) body: BodyView,
}

/// Who vouched for the delivery.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Verification {
    pub(crate) verified: bool,
    /// The scheme that verified it (`github`, `hmac`, `bearer`, `standard`, `admin_token`, …).
    pub(crate) scheme: Option<String>,
    /// Why verification failed, when it did (the delivery's `error`).
    pub(crate) failure: Option<String>,
    /// One line for people: `verified by github`, `verification failed: …`, `unverified: …`.
    pub(crate) summary: String,
}

/// What the planner reads the delivery as.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ParsedView {
    /// The event as JSON (`kind`: `push`, `image_push`, `deployment`, `redeploy`, …).
    pub(crate) event: Option<Value>,
    /// Why it cannot be read (a parse error, a value check, an app no longer configured).
    pub(crate) error: Option<String>,
}

/// What came of the delivery.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outcomes {
    /// Every deployment it caused, oldest first (retries included).
    pub(crate) deployments: Vec<DeploymentOutcome>,
    /// Each service of the app (as configured now): its deployment from this delivery, or
    /// why there is none.
    pub(crate) services: Vec<ServiceOutcome>,
    /// When it caused no deployment at all: why.
    pub(crate) why: Option<String>,
    /// An Alertmanager delivery: each alert with the rule that matched it, the outcome and
    /// the reason, in the order decided.
    pub(crate) alerts: Vec<AlertView>,
}

/// One alert of an Alertmanager delivery and what one rule (or none) decided for it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AlertView {
    pub(crate) alertname: String,
    pub(crate) status: String,
    pub(crate) fingerprint: String,
    pub(crate) starts_at: String,
    pub(crate) rule: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) outcome: crate::states::AlertOutcome,
    pub(crate) reason: Option<String>,
    pub(crate) deployment_id: Option<i64>,
}

impl From<&crate::store::AlertRow> for AlertView {
    fn from(a: &crate::store::AlertRow) -> AlertView {
        AlertView {
            alertname: a.alertname.clone(),
            status: a.status.clone(),
            fingerprint: a.fingerprint.clone(),
            starts_at: a.starts_at.clone(),
            rule: a.rule.clone(),
            action: a.action.clone(),
            outcome: a.outcome,
            reason: a.reason.clone(),
            deployment_id: a.deployment_id,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeploymentOutcome {
    pub(crate) id: i64,
    pub(crate) service: String,
    pub(crate) state: DeploymentState,
    pub(crate) reason: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) attempt: i64,
    pub(crate) retry_of: Option<i64>,
    pub(crate) created_at: Value,
    pub(crate) finished_at: Value,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceOutcome {
    pub(crate) service: String,
    /// Its newest deployment from this delivery, if any.
    pub(crate) deployment: Option<i64>,
    pub(crate) state: Option<DeploymentState>,
    /// The deployment's reason, or why the delivery did not deploy the service.
    pub(crate) reason: Option<String>,
}

/// Duplicates of this delivery (answered `duplicate`, not stored).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Duplicates {
    pub(crate) count: i64,
    pub(crate) last_at: Value,
}

/// What the planner read: the event, the modifiers, and whether it was read unverified.
type Read = Result<(Event, Modifiers, bool), String>;

/// Inspects delivery `id`; `None` when there is no such delivery.
pub(crate) async fn inspect(shared: &Shared, id: i64) -> Result<Option<Inspection>, StoreError> {
    let Some(full) = shared.store.delivery(id).await? else {
        return Ok(None);
    };
    of(shared, &full).await.map(Some)
}

/// Inspects a delivery read from the store.
async fn of(shared: &Shared, full: &FullDelivery) -> Result<Inspection, StoreError> {
    let id = full.delivery.id;
    let deployments = shared.store.deployments_of(id).await?;
    let alerts = shared.store.alerts_of_delivery(id).await?;
    let app = shared.config.apps.get(&full.delivery.app);
    let read = if refused_at_hook(full) {
        Err("not parsed: ferry refused it at the hook, so the planner never read it".to_string())
    } else {
        crate::planner::read_event(&shared.config, full)
    };
    let d = &full.delivery;
    Ok(Inspection {
        id: d.id,
        app: d.app.clone(),
        source: d.source.clone(),
        event: d.event.clone(),
        source_delivery_id: d.source_delivery_id.clone(),
        received_at: fmt_ms(d.received_at),
        status: d.status,
        error: d.error.clone(),
        note: d.note.clone(),
        query: d.query.clone(),
        replay_of: d.replay_of,
        request: request(full, &read),
        verification: verification(full, app),
        parsed: ParsedView {
            event: read
                .as_ref()
                .ok()
                .map(|(e, m, unverified)| event_json(e, m, *unverified)),
            error: read.as_ref().err().cloned(),
        },
        outcomes: Outcomes {
            alerts: alerts.iter().map(AlertView::from).collect(),
            ..outcomes(full, app, &deployments, &read)
        },
        duplicates: Duplicates {
            count: d.duplicates,
            last_at: json_time(d.duplicate_at),
        },
    })
}

/// A delivery refused on the request path: rejected, and never planned. (The planner's own
/// rejections, by its value checks, are read again: that shows why.)
fn refused_at_hook(full: &FullDelivery) -> bool {
    full.delivery.status == DeliveryStatus::Rejected && full.delivery.planned_at.is_none()
}

/// How it arrived: the method, what made it, the masked path, headers and body.
fn request(full: &FullDelivery, read: &Read) -> RequestView {
    let d = &full.delivery;
    let query = d
        .query
        .as_deref()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let hook_path = format!("/hooks/{}/••••{query}", d.app);
    let manual = d.source == Source::Manual.as_str();
    let (method, made_by, path) = match (d.replay_of, manual, d.event.as_deref()) {
        (Some(of), _, _) => (
            "replay".to_string(),
            format!("ferry replay of delivery {of} (POST /api/v1/deliveries/{of}/replay)"),
            if manual {
                format!("/api/v1/deliveries/{of}/replay")
            } else {
                hook_path
            },
        ),
        (None, true, Some(ROLLBACK_EVENT)) => {
            let service = match read {
                Ok((Event::Rollback { service, .. }, _, _)) => service.as_str(),
                _ => "?",
            };
            let path = format!("/api/v1/apps/{}/services/{service}/rollback", d.app);
            (
                "rollback".into(),
                format!("ferry rollback (POST {path})"),
                path,
            )
        }
        (None, true, Some(RECONCILE_EVENT)) => {
            let service = match read {
                Ok((Event::Reconcile { service }, _, _)) => service.as_str(),
                _ => "?",
            };
            (
                "reconcile".into(),
                format!(
                    "ferry's reconcile schedule: `reconcile` of {}/{service} was due (no request was received)",
                    d.app
                ),
                format!("(none: made by ferry for {}/{service})", d.app),
            )
        }
        (None, true, _) => {
            let path = format!("/api/v1/apps/{}/deploy{query}", d.app);
            ("deploy".into(), format!("ferry deploy (POST {path})"), path)
        }
        (None, false, _) => ("POST".into(), "POST to the hook URL".into(), hook_path),
    };
    let headers: Value = serde_json::from_str(&full.headers).unwrap_or(Value::Null);
    let content_type = headers
        .get("content-type")
        .and_then(Value::as_str)
        .map(str::to_string);
    RequestView {
        method,
        made_by,
        path,
        refused_with: d.refused_with,
        body: body::view(&full.body, full.body_size, content_type.as_deref())
            .unreadable(full.unreadable.as_deref()),
        headers,
    }
}

/// Who vouched for it: the stored scheme, or why nothing did. A refusal answered 401 failed
/// verification (the request path answers 401 for nothing else once the token matched); for
/// refusals stored before ferry kept the answer, the app's schemes as configured now tell.
fn verification(full: &FullDelivery, app: Option<&App>) -> Verification {
    let d = &full.delivery;
    let schemes = app.map(|a| a.verify.schemes()).unwrap_or_default();
    let mut v = Verification {
        verified: d.verified,
        scheme: d.scheme.clone(),
        failure: None,
        summary: String::new(),
    };
    v.summary = match (&d.scheme, d.verified) {
        (Some(s), true) => format!("verified by {s}"),
        (None, true)
            if d.source == Source::Manual.as_str()
                && d.event.as_deref() == Some(RECONCILE_EVENT) =>
        {
            "nothing to verify: made by ferry itself (the reconcile schedule)".into()
        }
        (None, true) if d.source == Source::Manual.as_str() => {
            "verified by the admin token (stored by the API)".into()
        }
        (_, true) => "verified (stored before ferry recorded which scheme)".into(),
        (_, false) if failed_verification(d, !schemes.is_empty()) => {
            v.failure = d.error.clone();
            format!(
                "verification failed: {}",
                d.error.as_deref().unwrap_or("no reason stored")
            )
        }
        (_, false) if schemes.is_empty() => {
            "unverified: the app configures no scheme; accepted on the URL token alone".into()
        }
        (_, false) => format!(
            "unverified: let through by verify.allow_unsigned (configured: {}); it redeploys what is configured",
            schemes.join(", ")
        ),
    };
    v
}

/// Whether an unverified delivery was refused for failing verification.
fn failed_verification(d: &crate::store::Delivery, app_has_schemes: bool) -> bool {
    match d.refused_with {
        Some(code) => code == 401,
        None => d.status == DeliveryStatus::Rejected && d.planned_at.is_none() && app_has_schemes,
    }
}

/// Its deployments, each service's outcome, and why nothing was deployed.
fn outcomes(
    full: &FullDelivery,
    app: Option<&App>,
    deployments: &[Deployment],
    read: &Read,
) -> Outcomes {
    let list: Vec<DeploymentOutcome> = deployments
        .iter()
        .map(|dep| DeploymentOutcome {
            id: dep.id,
            service: dep.service.clone(),
            state: dep.state,
            reason: dep.reason.clone(),
            version: dep.version(),
            attempt: dep.attempt,
            retry_of: dep.retry_of,
            created_at: json_time(Some(dep.created_at)),
            finished_at: json_time(dep.finished_at),
        })
        .collect();
    let why = list.is_empty().then(|| why_nothing(full, read));
    let services = app
        .map(|a| {
            a.services
                .keys()
                .map(|name| service_outcome(name, deployments, read, why.as_deref()))
                .collect()
        })
        .unwrap_or_default();
    Outcomes {
        deployments: list,
        services,
        why,
        alerts: Vec::new(),
    }
}

/// Why a delivery caused no deployment: its status, its stored error, or what its event is.
fn why_nothing(full: &FullDelivery, read: &Read) -> String {
    let d = &full.delivery;
    match (d.status, &d.error) {
        (DeliveryStatus::Received, _) => "not planned yet".into(),
        (DeliveryStatus::Rejected, e) => {
            format!("rejected: {}", e.as_deref().unwrap_or("no reason stored"))
        }
        (DeliveryStatus::Planned, Some(e)) => e.clone(),
        (DeliveryStatus::Planned, None) => match read {
            Ok((Event::Ping, _, _)) => "a ping: it checks the hook and deploys nothing".into(),
            Ok((Event::Ignored(name), _, _)) => {
                format!(
                    "{} events never deploy",
                    if name.is_empty() { "these" } else { name }
                )
            }
            Ok((Event::Alerts(_), _, _)) => {
                "no alert rule acted on its alerts (each alert's outcome is listed)".into()
            }
            Ok(_) => "it selected no service".into(),
            Err(e) => e.clone(),
        },
    }
}

/// One service: its newest deployment from this delivery, or why it has none.
fn service_outcome(
    name: &str,
    deployments: &[Deployment],
    read: &Read,
    why: Option<&str>,
) -> ServiceOutcome {
    if let Some(dep) = deployments.iter().rev().find(|d| d.service == name) {
        return ServiceOutcome {
            service: name.to_string(),
            deployment: Some(dep.id),
            state: Some(dep.state),
            reason: dep.reason.clone(),
        };
    }
    let reason = match (why, read) {
        (Some(why), _) => why.to_string(),
        (None, Ok((Event::Rollback { service, .. }, _, _))) => {
            format!("the rollback is of service {service}")
        }
        (None, Ok((Event::Reconcile { service }, _, _))) => {
            format!("the reconcile is of service {service}")
        }
        (None, Ok((_, m, _))) => not_selected(name, m),
        (None, Err(e)) => e.clone(),
    };
    ServiceOutcome {
        service: name.to_string(),
        deployment: None,
        state: None,
        reason: Some(reason),
    }
}

/// Why a service got no deployment when others did: the hook URL's modifiers left it out.
fn not_selected(name: &str, m: &Modifiers) -> String {
    if let Some(list) = &m.services
        && !list.iter().any(|s| s == name)
    {
        return format!("not selected: ?services={}", list.join(","));
    }
    if let Some(p) = &m.profile {
        return format!("not selected: not in deployment profile {p:?}");
    }
    "no deployment recorded for this service (the service may be newer than the delivery)".into()
}

/// The event as the inspector shows it: `kind` and what the event names.
fn event_json(event: &Event, m: &Modifiers, unverified: bool) -> Value {
    let mut v = match event {
        Event::Ping => serde_json::json!({"kind": "ping"}),
        Event::Push(changes) => serde_json::json!({
            "kind": "push",
            "changes": changes.iter().map(push_json).collect::<Vec<_>>(),
        }),
        Event::ImagePush(images) => serde_json::json!({
            "kind": "image_push",
            "images": images.iter().map(|i| serde_json::json!({
                "repository": i.repository,
                "tag": i.tag,
                "digest": i.digest,
                "time": json_time(i.time),
                "event_id": i.event_id,
            })).collect::<Vec<_>>(),
        }),
        Event::Deployment(d) => serde_json::json!({
            "kind": "deployment",
            "repository": d.repo,
            "commit": d.commit,
            "ref": d.git_ref,
            "environment": d.environment,
            "task": d.task,
            "github_deployment_id": d.id,
            "created_by_ferry": d.created_by_ferry,
        }),
        Event::Ignored(name) => serde_json::json!({"kind": "ignored", "event": name}),
        Event::Redeploy { time } => {
            serde_json::json!({"kind": "redeploy", "time": json_time(*time)})
        }
        Event::Rollback { service, to } => {
            serde_json::json!({"kind": "rollback", "service": service, "to": to})
        }
        Event::Reconcile { service } => serde_json::json!({
            "kind": "reconcile",
            "service": service,
            "meaning": "the service's `reconcile` schedule was due: its last successful version runs again, unless another deployment of it is queued or running",
        }),
        Event::Alerts(alerts) => serde_json::json!({
            "kind": "alert",
            "alerts": alerts.iter().map(|a| serde_json::json!({
                "status": a.status.as_str(),
                "alertname": a.name(),
                "fingerprint": a.fingerprint,
                "starts_at": a.starts_at,
                "ends_at": a.ends_at,
                "labels": a.labels,
            })).collect::<Vec<_>>(),
        }),
    };
    v["modifiers"] = serde_json::json!({
        "services": m.services,
        "profile": m.profile,
        "git_ref": m.git_ref,
    });
    if unverified {
        v["unverified"] = Value::Bool(true);
    }
    v
}

fn push_json(c: &crate::sources::GitPush) -> Value {
    use crate::sources::GitRef;
    let (branch, tag) = match &c.git_ref {
        GitRef::Branch(b) => (Some(b.as_str()), None),
        GitRef::Tag(t) => (None, Some(t.as_str())),
        GitRef::Other(_) => (None, None),
    };
    serde_json::json!({
        "repository": c.repo,
        "ref": c.full_ref,
        "branch": branch,
        "tag": tag,
        "commit": c.commit,
        "time": json_time(c.time),
        "deleted": c.deleted,
        "forced": c.forced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{GitPush, GitRef};

    #[test]
    fn events_name_their_kind_and_what_they_carry() {
        let push = Event::Push(vec![GitPush {
            repo: "acme/shop".into(),
            full_ref: "refs/tags/v1.2".into(),
            git_ref: GitRef::parse("refs/tags/v1.2"),
            commit: Some("c0ffee".into()),
            time: Some(0),
            deleted: false,
            forced: true,
        }]);
        let m = Modifiers::parse("services=web");
        let v = event_json(&push, &m, false);
        assert_eq!(v["kind"], "push");
        assert_eq!(v["changes"][0]["tag"], "v1.2");
        assert!(v["changes"][0]["branch"].is_null());
        assert_eq!(v["changes"][0]["time"], "1970-01-01T00:00:00Z");
        assert_eq!(v["changes"][0]["forced"], true);
        assert_eq!(v["modifiers"]["services"][0], "web");
        assert!(v.get("unverified").is_none());
        let v = event_json(&Event::Redeploy { time: None }, &Modifiers::default(), true);
        assert_eq!(v["kind"], "redeploy");
        assert_eq!(v["unverified"], true);
    }

    #[test]
    fn services_left_out_say_by_what() {
        assert_eq!(
            not_selected("worker", &Modifiers::parse("services=web,api")),
            "not selected: ?services=web,api"
        );
        assert_eq!(
            not_selected("worker", &Modifiers::parse("deployment_profile=front")),
            "not selected: not in deployment profile \"front\""
        );
    }
}
