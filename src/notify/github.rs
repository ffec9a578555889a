//! GitHub Deployments (`[apps.X.github]`): each deployment of a git service that a GitHub
//! push caused becomes a GitHub deployment of its commit, whose statuses follow it —
//! `queued` → `in_progress` → `success` / `failure` / `error`, or `inactive` when it never
//! ran (superseded, or skipped as stale). A deployment caused by a GitHub `deployment` event
//! posts its statuses on that event's deployment instead of creating one.
//!
//! Fan-out stores each request as an envelope ([`Stored`]): the repository, which request
//! (create a deployment, or post a status), the JSON body GitHub gets and, for statuses,
//! the GitHub deployment's id when it is known then (a `deployment` event names it). The id
//! GitHub returns for a deployment ferry created is stored (`github_deployments`) in the
//! transaction that marks the creation sent (`Outcome::Created`); later statuses of that
//! deployment read it when they are sent. All of an app's requests are one queue
//! (`github:APP`), so the creation precedes its statuses and no status overtakes an earlier
//! one; if the creation fails for good, its statuses are recorded dead with that reason
//! instead of being sent.
//!
//! The token is read from the config at each try, never stored with the notification or
//! logged. Answers count as for commit statuses (`statuses::answer`): 2xx is sent; 429, and
//! a 403 that is a rate limit (`x-ratelimit-remaining: 0` with `x-ratelimit-reset`, or
//! `retry-after`), are tried again when GitHub says; 408, 5xx and network errors are tried
//! again with the outbox's backoff; any other answer is refused for good, recorded with
//! GitHub's `message` (and the `errors` it lists).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::statuses;
use super::target::{self, Context, Kind, Outcome, Subject};
use crate::config::{Github, receiver_of};
use crate::sources::github;
use crate::states::DeploymentState;
use crate::store::{Deployment, NewNotification, Notification, StoreError};

/// GitHub's limit on a description.
const MAX_DESCRIPTION: usize = statuses::DESCRIPTION_MAX;

/// What a notification of this kind stores as its body.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Stored {
    /// `owner/name`.
    repository: String,
    request: Request,
    /// The GitHub deployment a status goes to, when known at fan-out (a `deployment` event
    /// names it); otherwise the one ferry created, read from the store when it is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    github_deployment: Option<i64>,
    /// What GitHub gets.
    body: Value,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Request {
    /// `POST /repos/{owner}/{repo}/deployments`.
    CreateDeployment,
    /// `POST /repos/{owner}/{repo}/deployments/{id}/statuses`.
    DeploymentStatus,
}

/// The GitHub deployment statuses of a ferry deployment's states: `queued` and `running`
/// as they are; how it ended (`failure` when the deploy itself failed; `error` when it was
/// stopped before it could finish: cancelled, or interrupted by a crash or shutdown — a
/// retry, if any, is a new deployment with its own statuses); `inactive` for one that never
/// ran.
fn status_of(state: DeploymentState) -> &'static str {
    match state {
        DeploymentState::Queued => "queued",
        DeploymentState::Running => "in_progress",
        DeploymentState::Succeeded => "success",
        DeploymentState::Failed | DeploymentState::TimedOut | DeploymentState::RolledBack => {
            "failure"
        }
        DeploymentState::Interrupted | DeploymentState::Cancelled => "error",
        DeploymentState::Superseded | DeploymentState::Skipped => "inactive",
    }
}

/// Where a ferry deployment's statuses go, if it is one GitHub hears about.
enum Origin {
    /// A GitHub push: ferry creates the GitHub deployment, in this repository.
    Push { repository: String },
    /// A GitHub `deployment` event: the statuses go to its deployment.
    Requested { repository: String, id: i64 },
}

/// The requests one event causes: for a deployment of a GitHub push or `deployment` event
/// of an app with `[apps.X.github]`, that names a commit (so a push that matched the
/// service), its status; before the first status of a push's deployment (queued, or skipped
/// as stale), the creation of its GitHub deployment.
pub(crate) async fn fan_out(
    ctx: &Context,
    s: &Subject<'_>,
) -> Result<Vec<NewNotification>, StoreError> {
    let (Some(state), Some(d)) = (s.event.event.deployment_state(), s.deployment) else {
        return Ok(Vec::new());
    };
    let Some(gh) = ctx.config.apps.get(&d.app).and_then(|a| a.github.as_ref()) else {
        return Ok(Vec::new());
    };
    let Some(origin) = origin(ctx, d).await? else {
        return Ok(Vec::new());
    };
    let queue = format!("github:{}", d.app);
    let receiver = receiver_of(&gh.api_url);
    let mut out = Vec::new();
    let status = status_body(ctx, gh, d, state, s.event.reason.as_deref());
    let (repository, github_deployment) = match origin {
        Origin::Push { repository } => {
            if matches!(state, DeploymentState::Queued | DeploymentState::Skipped) {
                let create = Stored {
                    repository: repository.clone(),
                    request: Request::CreateDeployment,
                    github_deployment: None,
                    body: create_body(ctx, gh, d),
                };
                let mut n = target::notification(
                    s,
                    &queue,
                    Kind::Github,
                    &receiver,
                    None,
                    to_json(&create),
                );
                // Two notifications of one event in one queue: the creation's uid differs.
                n.uid = target::uid(s.event, &format!("{queue}:create"));
                out.push(n);
            }
            (repository, None)
        }
        Origin::Requested { repository, id } => (repository, Some(id)),
    };
    let stored = Stored {
        repository,
        request: Request::DeploymentStatus,
        github_deployment,
        body: status,
    };
    out.push(target::notification(
        s,
        &queue,
        Kind::Github,
        &receiver,
        None,
        to_json(&stored),
    ));
    Ok(out)
}

fn to_json(s: &Stored) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Whether GitHub hears about `d`, and where: deployments of GitHub pushes and `deployment`
/// events that name a commit. (A push that did not match a service leaves its deployment
/// without a commit: it was skipped, and GitHub hears nothing of it.)
async fn origin(ctx: &Context, d: &Deployment) -> Result<Option<Origin>, StoreError> {
    if d.source != crate::sources::Source::Github.as_str() || d.git_commit.is_none() {
        return Ok(None);
    }
    // The deployment's `event` is `Event::name`: "push" for a push, "deployment" for a
    // deployment requested in GitHub.
    match d.event.as_str() {
        "push" => Ok(d
            .git_repo
            .clone()
            .map(|repository| Origin::Push { repository })),
        github::DEPLOYMENT_EVENT => {
            let Some(delivery) = ctx.store.delivery(d.delivery_id).await? else {
                return Ok(None);
            };
            let headers: serde_json::Map<String, Value> =
                serde_json::from_str(&delivery.headers).unwrap_or_default();
            let content_type = headers.get("content-type").and_then(Value::as_str);
            let id = github::requested_deployment_id(content_type, &delivery.body);
            // The repository the service follows (the event's matched it), not the payload's.
            Ok(d.git_repo
                .clone()
                .zip(id)
                .map(|(repository, id)| Origin::Requested { repository, id }))
        }
        _ => Ok(None),
    }
}

/// The body of `POST …/deployments`: the commit, the environment, no merge of the default
/// branch and no required checks (ferry deploys what was pushed, and the checks are the
/// pusher's business), and a payload naming the ferry deployment — by which ferry knows the
/// `deployment` event GitHub then sends as its own, and does not deploy it again.
fn create_body(ctx: &Context, gh: &Github, d: &Deployment) -> Value {
    let description = format!("ferry: {}/{}, deployment {}", d.app, d.service, d.id);
    json!({
        "ref": d.git_commit,
        "task": "deploy",
        "auto_merge": false,
        "required_contexts": [],
        "environment": gh.environment,
        "description": statuses::cut(&description, MAX_DESCRIPTION),
        "payload": {
            "ferry": {
                "deployment": d.id,
                "app": d.app,
                "service": d.service,
                "url": ctx.deployment_url(d.id),
            }
        },
    })
}

/// The body of `POST …/statuses`: the state, ferry's page of the deployment, a description
/// with the reason when it did not succeed, and the environment's URL if configured.
fn status_body(
    ctx: &Context,
    gh: &Github,
    d: &Deployment,
    state: DeploymentState,
    reason: Option<&str>,
) -> Value {
    let verb = match state {
        DeploymentState::Running => "started".to_string(),
        other => other.as_str().replace('_', " "),
    };
    // The reason says why it ended so (or why it never ran); on a success it is only a note.
    let reason = reason
        .filter(|_| state.is_final() && state != DeploymentState::Succeeded)
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let description = format!(
        "ferry: {}/{} deployment {} {verb}{reason}",
        d.app, d.service, d.id
    );
    let mut body = json!({
        "state": status_of(state),
        "log_url": ctx.deployment_page_url(d.id),
        "description": statuses::cut(&description, MAX_DESCRIPTION),
    });
    if let (Some(url), Some(b)) = (&gh.environment_url, body.as_object_mut()) {
        b.insert("environment_url".into(), json!(url));
    }
    body
}

/// One try: the stored request, to `[apps.X.github] api_url` with the token (read from the
/// config now, so a rotated token is used at once).
pub(crate) async fn send(ctx: &Context, n: &Notification) -> Outcome {
    let stored: Stored = match serde_json::from_str(&n.body) {
        Ok(s) => s,
        Err(e) => return refused(format!("the stored request cannot be read: {e}")),
    };
    let Some(gh) = ctx.config.apps.get(&n.app).and_then(|a| a.github.as_ref()) else {
        return refused(format!(
            "[apps.{}.github] is not configured any more",
            n.app
        ));
    };
    let url = match url(ctx, gh, n, &stored).await {
        Ok(url) => url,
        Err(outcome) => return outcome,
    };
    let answer = ctx
        .client
        .post(url)
        .bearer_auth(gh.token.expose())
        .header(http::header::ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", API_VERSION)
        .header(
            http::header::USER_AGENT,
            concat!("ferry/", env!("CARGO_PKG_VERSION")),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(stored.body.to_string())
        .send()
        .await;
    match answer {
        Ok(r) => answered(stored.request, r, gh.token.expose()).await,
        Err(e) => Outcome::Retry {
            status: None,
            error: target::describe(e),
            after: None,
        },
    }
}

/// The REST API version ferry speaks.
const API_VERSION: &str = "2022-11-28";

fn refused(error: String) -> Outcome {
    Outcome::Permanent {
        status: None,
        error,
    }
}

/// Where the request goes. A status of a deployment ferry created needs that deployment's
/// id: if the creation failed for good there is none, and the status is refused with why.
async fn url(ctx: &Context, gh: &Github, n: &Notification, s: &Stored) -> Result<String, Outcome> {
    // `owner/name`, each a plain segment (never `.` or `..`), percent-encoded.
    let Some(parts) = statuses::segments(&s.repository).filter(|p| p.len() == 2) else {
        return Err(refused(format!("{:?} is not owner/name", s.repository)));
    };
    let base = format!(
        "{}/repos/{}/{}/deployments",
        gh.api_url,
        statuses::encode(parts[0]),
        statuses::encode(parts[1])
    );
    let id = match (s.request, s.github_deployment) {
        (Request::CreateDeployment, _) => return Ok(base),
        (Request::DeploymentStatus, Some(id)) => id,
        (Request::DeploymentStatus, None) => created(ctx, n).await?,
    };
    Ok(format!("{base}/{id}/statuses"))
}

/// The id of the GitHub deployment ferry created for `n`'s deployment.
async fn created(ctx: &Context, n: &Notification) -> Result<i64, Outcome> {
    let Some(deployment) = n.deployment_id else {
        return Err(refused("names no deployment".into()));
    };
    let store_error = |e: StoreError| Outcome::Retry {
        status: None,
        error: format!("cannot read the store: {e}"),
        after: None,
    };
    if let Some(id) = ctx
        .store
        .github_deployment(deployment)
        .await
        .map_err(store_error)?
    {
        return Ok(id);
    }
    let failed = ctx
        .store
        .first_dead_notification(deployment, Kind::Github.as_str())
        .await
        .map_err(store_error)?;
    Err(refused(match failed {
        Some((id, error)) => format!(
            "not sent: creating the GitHub deployment failed for good (notification {id}: {})",
            error.as_deref().unwrap_or("no error recorded")
        ),
        None => format!(
            "not sent: ferry created no GitHub deployment for deployment {deployment} (was [apps.{}.github] added after it was queued?)",
            n.app
        ),
    }))
}

/// What an answer means: 2xx is sent (with the id of a created deployment); anything else
/// as for commit statuses (`statuses::answer`: rate limits and 5xx retried, other refusals
/// final with GitHub's message).
async fn answered(request: Request, r: reqwest::Response, token: &str) -> Outcome {
    let (status, headers) = (r.status(), r.headers().clone());
    let body = statuses::read_body(r).await;
    if !status.is_success() {
        return statuses::answer(status, &headers, &body, token);
    }
    match (request, deployment_id(&body)) {
        (Request::DeploymentStatus, _) => Outcome::Sent {
            status: status.as_u16(),
        },
        (Request::CreateDeployment, Some(id)) => Outcome::Created {
            status: status.as_u16(),
            github_deployment: id,
        },
        // 202: GitHub merged the default branch into the ref instead (ferry asks it not to).
        (Request::CreateDeployment, None) => Outcome::Permanent {
            status: Some(status.as_u16()),
            error: format!(
                "answered {status} without a deployment id: {}",
                statuses::host_message(&body).unwrap_or_default()
            ),
        },
    }
}

/// The `id` of a created deployment.
fn deployment_id(body: &str) -> Option<i64> {
    serde_json::from_str::<Value>(body)
        .ok()?
        .get("id")?
        .as_i64()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::states::{DeliveryStatus, EventType};
    use crate::store::{Intake, NewDelivery, NewDeployment, Store, now_ms};

    #[test]
    fn every_state_has_a_github_status() {
        use DeploymentState::*;
        let got: Vec<_> = DeploymentState::ALL
            .iter()
            .map(|s| (*s, status_of(*s)))
            .collect();
        assert_eq!(
            got,
            [
                (Queued, "queued"),
                (Running, "in_progress"),
                (Succeeded, "success"),
                (Failed, "failure"),
                (TimedOut, "failure"),
                (Cancelled, "error"),
                (Superseded, "inactive"),
                (Skipped, "inactive"),
                (Interrupted, "error"),
                (RolledBack, "failure"),
            ]
        );
    }

    #[test]
    fn descriptions_are_cut_to_140_characters_on_a_char_boundary() {
        assert_eq!(statuses::cut("short", 140), "short");
        let exact = "é".repeat(140);
        assert_eq!(statuses::cut(&exact, 140), exact);
        let long = format!("{}ü€", "ä".repeat(139));
        let c = statuses::cut(&long, 140);
        assert_eq!(c.chars().count(), 140);
        assert!(c.ends_with("ä…"), "{c}");
    }

    const CONFIG: &str = r#"
[server]
public_url = "https://ferry.example/"
[apps.shop]
token = "shop-token-123456"
[apps.shop.services.web]
git = { repo = "Codertocat/Hello-World", branch = "master" }
command = ["x"]
[apps.shop.github]
token = "ghp_secret_token"
environment = "live"
environment_url = "https://shop.example"
api_url = "https://ghe.example/api/v3"
[apps.blog]
token = "blog-token-123456"
[apps.blog.services.site]
git = { repo = "acme/blog", branch = "main" }
command = ["x"]
"#;

    async fn setup() -> (tempfile::TempDir, Context, Intake) {
        let dir = tempfile::tempdir().unwrap();
        let (store, intake) = Store::open(dir.path()).await.unwrap();
        let config =
            crate::config::parse(CONFIG, std::path::Path::new("/f.toml"), &|_| None).unwrap();
        let ctx = Context::new(Arc::new(config), store).unwrap();
        (dir, ctx, intake)
    }

    async fn deliver(intake: &Intake, app: &str, event: &str, body: &[u8]) -> i64 {
        let d = NewDelivery {
            app: app.into(),
            source: "github".into(),
            event: Some(event.into()),
            source_delivery_id: None,
            dedupe_key: None,
            received_at: now_ms(),
            verified: true,
            scheme: None,
            status: DeliveryStatus::Received,
            error: None,
            query: None,
            headers: r#"{"content-type":"application/json"}"#.into(),
            body: bytes::Bytes::from(body.to_vec()),
            replay_of: None,
            refused_with: None,
        };
        match intake.insert(d).await.unwrap() {
            crate::store::Inserted::New(id) => id,
            other => panic!("{other:?}"),
        }
    }

    async fn plan(store: &Store, delivery: i64, rows: Vec<NewDeployment>) -> Vec<i64> {
        let mut p = store.begin_planning().await.unwrap();
        let first = p.next_deployment_id().await.unwrap();
        let rows: Vec<_> = rows
            .into_iter()
            .zip(first..)
            .map(|(d, id)| (id, delivery, d))
            .collect();
        p.record(&rows, &[(delivery, None)]).await.unwrap();
        p.commit().await.unwrap();
        rows.iter().map(|r| r.0).collect()
    }

    fn deployment(app: &str, service: &str, event: &str, commit: Option<&str>) -> NewDeployment {
        NewDeployment {
            app: app.into(),
            service: service.into(),
            state: if commit.is_some() {
                DeploymentState::Queued
            } else {
                DeploymentState::Skipped
            },
            reason: commit.is_none().then(|| "push to branch dev".into()),
            source: "github".into(),
            event: event.into(),
            git_repo: Some("Codertocat/Hello-World".into()),
            git_commit: commit.map(str::to_string),
            ..Default::default()
        }
    }

    /// What GitHub gets for every event not fanned out yet: (event, request, stored body).
    async fn fan_out_all(ctx: &Context) -> Vec<(EventType, NewNotification, Stored)> {
        let events = ctx.store.unfanned_events(100).await.unwrap();
        let ids: Vec<i64> = events.iter().filter_map(|e| e.deployment_id).collect();
        let deployments = ctx.store.deployments_by_id(&ids).await.unwrap();
        let mut out = Vec::new();
        for e in &events {
            let s = Subject {
                event: e,
                deployment: e.deployment_id.and_then(|id| deployments.get(&id)),
                delivery: None,
            };
            for n in fan_out(ctx, &s).await.unwrap() {
                let stored: Stored = serde_json::from_str(&n.body).unwrap();
                out.push((e.event, n, stored));
            }
        }
        let all: Vec<NewNotification> = out.iter().map(|(_, n, _)| n.clone()).collect();
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        ctx.store.fan_out(&all, &ids, now_ms()).await.unwrap();
        out
    }

    const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

    /// A push's deployment: its creation, then a status per state change, in one queue per
    /// app; a skipped deployment without a commit (the push did not match), another app
    /// without `[apps.X.github]` and other senders get nothing.
    #[tokio::test]
    async fn a_pushs_deployment_is_created_then_follows_its_states() {
        let (_dir, ctx, intake) = setup().await;
        let d = deliver(&intake, "shop", "push", b"{}").await;
        let ids = plan(
            &ctx.store,
            d,
            vec![
                deployment("shop", "web", "push", Some(SHA)),
                deployment("shop", "web", "push", None),
                deployment("blog", "site", "push", Some(SHA)),
                // (Skipped, so that it does not supersede the first.)
                NewDeployment {
                    source: "manual".into(),
                    state: DeploymentState::Skipped,
                    ..deployment("shop", "web", "manual", Some(SHA))
                },
            ],
        )
        .await;
        let web = ctx.store.deployment(ids[0]).await.unwrap().unwrap();
        assert!(
            ctx.store
                .start(&web, &crate::store::Claim::TEST)
                .await
                .unwrap()
        );
        ctx.store
            .finish(
                web.id,
                DeploymentState::Failed,
                Some("command exited with status 7"),
                Some(7),
            )
            .await
            .unwrap();
        let got = fan_out_all(&ctx).await;
        let seen: Vec<_> = got
            .iter()
            .map(|(e, n, s)| {
                (
                    e.as_str(),
                    s.request,
                    s.body["state"].as_str().unwrap_or("-"),
                    n.deployment_id,
                )
            })
            .collect();
        let web_id = Some(web.id);
        assert_eq!(
            seen,
            [
                ("deployment.queued", Request::CreateDeployment, "-", web_id),
                (
                    "deployment.queued",
                    Request::DeploymentStatus,
                    "queued",
                    web_id
                ),
                (
                    "deployment.started",
                    Request::DeploymentStatus,
                    "in_progress",
                    web_id
                ),
                (
                    "deployment.failed",
                    Request::DeploymentStatus,
                    "failure",
                    web_id
                ),
            ]
        );
        assert!(got.iter().all(|(_, n, _)| n.target == "github:shop"
            && n.kind == "github"
            && n.receiver == "https://ghe.example"
            && n.url.is_none()
            && !n.body.contains("ghp_secret_token")));
        assert_ne!(
            got[0].1.uid, got[1].1.uid,
            "two of one event, each its own uid"
        );
        let create = &got[0].2;
        assert_eq!(create.repository, "Codertocat/Hello-World");
        assert_eq!(create.github_deployment, None);
        assert_eq!(
            create.body,
            json!({
                "ref": SHA,
                "task": "deploy",
                "auto_merge": false,
                "required_contexts": [],
                "environment": "live",
                "description": format!("ferry: shop/web, deployment {}", web.id),
                "payload": {"ferry": {"deployment": web.id, "app": "shop", "service": "web",
                    "url": format!("https://ferry.example/api/v1/deployments/{}", web.id)}},
            })
        );
        let failed = &got[3].2;
        assert_eq!(
            failed.github_deployment, None,
            "read from the store when sent"
        );
        assert_eq!(
            failed.body,
            json!({
                "state": "failure",
                "log_url": format!("https://ferry.example/deployments/{}", web.id),
                "description": format!("ferry: shop/web deployment {} failed: command exited with status 7", web.id),
                "environment_url": "https://shop.example",
            })
        );
    }

    /// A push's deployment skipped as stale names its commit: GitHub gets it, `inactive`.
    #[tokio::test]
    async fn a_stale_pushs_deployment_is_created_inactive() {
        let (_dir, ctx, intake) = setup().await;
        let d = deliver(&intake, "shop", "push", b"{}").await;
        plan(
            &ctx.store,
            d,
            vec![NewDeployment {
                state: DeploymentState::Skipped,
                reason: Some("stale: event time … is older".into()),
                ..deployment("shop", "web", "push", Some(SHA))
            }],
        )
        .await;
        let got = fan_out_all(&ctx).await;
        let seen: Vec<_> = got
            .iter()
            .map(|(_, _, s)| (s.request, s.body["state"].as_str().unwrap_or("-")))
            .collect();
        assert_eq!(
            seen,
            [
                (Request::CreateDeployment, "-"),
                (Request::DeploymentStatus, "inactive")
            ]
        );
        let description = got[1].2.body["description"].as_str().unwrap();
        assert!(
            description.ends_with("skipped: stale: event time … is older"),
            "{description}"
        );
    }

    /// A deployment requested in GitHub: no creation; its statuses name the event's
    /// deployment.
    #[tokio::test]
    async fn a_requested_deployments_statuses_go_to_the_events_deployment() {
        let (_dir, ctx, intake) = setup().await;
        let body = include_bytes!("../../tests/fixtures/github/deployment-created.json");
        let d = deliver(&intake, "shop", "deployment", body).await;
        let ids = plan(
            &ctx.store,
            d,
            vec![deployment("shop", "web", "deployment", Some(SHA))],
        )
        .await;
        let web = ctx.store.deployment(ids[0]).await.unwrap().unwrap();
        ctx.store
            .start(&web, &crate::store::Claim::TEST)
            .await
            .unwrap();
        let got = fan_out_all(&ctx).await;
        let seen: Vec<_> = got
            .iter()
            .map(|(_, _, s)| {
                (
                    s.request,
                    s.github_deployment,
                    s.body["state"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (Request::DeploymentStatus, Some(145988746), "queued"),
                (Request::DeploymentStatus, Some(145988746), "in_progress"),
            ]
        );
        assert_eq!(got[0].2.repository, "Codertocat/Hello-World");
    }
}
