//! `/metrics` and `/readyz` as a monitoring system reads them: actions are performed through
//! hooks, then the scrape is parsed with a Prometheus text-format parser (`prometheus-parse`)
//! and its values checked against what was done.

use prometheus_parse::{Sample, Scrape, Value};

use crate::dockerenv::require_docker;
use crate::support::{
    Ferry, GITHUB_SECRET, REPO, SHOP, WAIT, commit_time, eventually, push_payload, sha,
};

/// Scrapes `/metrics` (Prometheus' text format, what a plain GET gets) and parses it.
async fn scrape(ferry: &Ferry) -> Scrape {
    let r = ferry
        .http()
        .get(ferry.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = r.text().await.expect("body");
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parse the scrape")
}

/// The value of the sample `name` whose labels are exactly `labels`; panics if there is none.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape.samples.iter().find(|s| is(s, name, labels));
    match found.map(|s| &s.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(other) => panic!("{name}{labels:?} is not a single value: {other:?}"),
        None => panic!(
            "no sample {name}{labels:?} among:\n{:#?}",
            scrape
                .samples
                .iter()
                .filter(|s| s.metric.starts_with(name))
                .collect::<Vec<_>>()
        ),
    }
}

fn is(s: &Sample, name: &str, labels: &[(&str, &str)]) -> bool {
    s.metric == name
        && s.labels.len() == labels.len()
        && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
}

/// `ferry_deliveries_total` of app `shop` from `source` with `outcome`.
fn deliveries(scrape: &Scrape, source: &str, outcome: &str) -> f64 {
    value(
        scrape,
        "ferry_deliveries_total",
        &[("app", "shop"), ("source", source), ("outcome", outcome)],
    )
}

#[tokio::test]
async fn metrics_count_deliveries_answers_deployments_and_commits_as_they_happened() {
    let ferry = Ferry::shop().start().await;
    // Accepted (github), then the same push again: a duplicate.
    let push = push_payload(REPO, "master", &sha(1), &commit_time(1));
    let send_push = || {
        ferry
            .hook("shop")
            .github("push")
            .body(push.clone())
            .signed(GITHUB_SECRET)
            .send()
    };
    let pushed = send_push().await.accepted();
    assert_eq!(send_push().await.json()["status"], "duplicate");
    // Rejected: a wrong signature (stored as rejected).
    let forged = ferry
        .hook("shop")
        .github("push")
        .body(push_payload(REPO, "master", &sha(2), &commit_time(2)))
        .signed("not the secret")
        .send()
        .await;
    assert_eq!(forged.status, 401, "{}", forged.text);
    // Not found: a wrong token (no app, so not a delivery).
    assert_eq!(ferry.hook("shop").token("wrong").send().await.status, 404);
    // A redeploy of `worker` (no sender headers: generic) that fails.
    ferry.fail("worker");
    let redeploy = ferry.hook("shop").query("services=worker").send().await;
    let redeploy = redeploy.accepted();
    let mut ended = ferry.settle(pushed).await;
    ended.extend(ferry.settle(redeploy).await);
    let count = |state: &str| ended.iter().filter(|d| d["state"] == state).count() as f64;
    assert_eq!(
        (count("succeeded"), count("failed")),
        (1.0, 1.0),
        "{ended:#?}"
    );

    let m = scrape(&ferry).await;
    assert_eq!(deliveries(&m, "github", "accepted"), 1.0);
    assert_eq!(deliveries(&m, "github", "duplicate"), 1.0);
    assert_eq!(deliveries(&m, "github", "rejected"), 1.0);
    assert_eq!(deliveries(&m, "generic", "accepted"), 1.0);
    for (outcome, n) in [
        ("accepted", 2.0),
        ("duplicate", 1.0),
        ("rejected", 1.0),
        ("not_found", 1.0),
        ("limited", 0.0),
    ] {
        let got = value(&m, "ferry_hook_requests_total", &[("outcome", outcome)]);
        assert_eq!(got, n, "ferry_hook_requests_total{{outcome={outcome}}}");
    }
    // Every hook answer is timed, the 404 too.
    assert_eq!(value(&m, "ferry_hook_answer_seconds_count", &[]), 5.0);
    assert!(value(&m, "ferry_hook_answer_seconds_sum", &[]) > 0.0);

    // Deployments: in the store by state, and the runs by executor and final state.
    assert_eq!(
        value(&m, "ferry_deployments", &[("state", "succeeded")]),
        1.0
    );
    assert_eq!(value(&m, "ferry_deployments", &[("state", "failed")]), 1.0);
    assert_eq!(value(&m, "ferry_deployments", &[("state", "queued")]), 0.0);
    for state in ["succeeded", "failed"] {
        let labels = [("executor", "command"), ("state", state)];
        assert_eq!(value(&m, "ferry_deployments_finished_total", &labels), 1.0);
        assert_eq!(
            value(&m, "ferry_deployment_duration_seconds_count", &labels),
            1.0
        );
        assert!(value(&m, "ferry_deployment_duration_seconds_sum", &labels) > 0.0);
    }

    // The intake writer: the four deliveries handed to the store (accepted, duplicate,
    // rejected, redeploy) went through its batches, each batch committed and fsync'd.
    let batches = value(&m, "ferry_store_batch_deliveries_count", &[]);
    assert!(batches >= 1.0, "{batches}");
    assert_eq!(value(&m, "ferry_store_batch_deliveries_sum", &[]), 4.0);
    assert_eq!(value(&m, "ferry_store_commit_seconds_count", &[]), batches);
    assert!(value(&m, "ferry_store_fsync_seconds_count", &[]) >= 1.0);

    // Lanes are idle; no notification target is configured.
    for service in ["web", "worker"] {
        let labels = [("app", "shop"), ("service", service)];
        assert_eq!(value(&m, "ferry_lane_queue_depth", &labels), 0.0);
    }
    for state in ["pending", "sent", "dead"] {
        assert_eq!(value(&m, "ferry_notifications", &[("state", state)]), 0.0);
    }
    // The refused delivery and the two deployments' changes were journalled, and fanned out
    // (to no target) by the worker within its 250 ms pass.
    eventually("the outbox to be fanned out", WAIT, async || {
        let n = value(&scrape(&ferry).await, "ferry_outbox_unfanned_events", &[]);
        if n == 0.0 { Ok(()) } else { Err(n.to_string()) }
    })
    .await;
}

#[tokio::test]
async fn a_deployment_waiting_behind_a_running_one_shows_in_its_lane() {
    let ferry = Ferry::shop().start().await;
    ferry.hold("web");
    let first = ferry.push("master", &sha(1), &commit_time(1)).await;
    let running = ferry.planned_deployment(first, "web").await;
    ferry
        .wait_state(running["id"].as_i64().expect("id"), "running")
        .await;
    for n in [2, 3] {
        let id = ferry.push("master", &sha(n), &commit_time(n as i64)).await;
        ferry.wait_planned(id).await;
    }
    // The planner queued 2, then 3 superseded it: one waits behind the running one.
    let m = scrape(&ferry).await;
    let web = [("app", "shop"), ("service", "web")];
    assert_eq!(value(&m, "ferry_lane_queue_depth", &web), 1.0);
    let worker = [("app", "shop"), ("service", "worker")];
    assert_eq!(value(&m, "ferry_lane_queue_depth", &worker), 0.0);
    for (state, n) in [("queued", 1.0), ("running", 1.0), ("superseded", 1.0)] {
        assert_eq!(
            value(&m, "ferry_deployments", &[("state", state)]),
            n,
            "{state}"
        );
    }

    ferry.release("web");
    ferry.settled("shop").await;
    let m = scrape(&ferry).await;
    assert_eq!(value(&m, "ferry_lane_queue_depth", &web), 0.0);
}

#[tokio::test]
async fn openmetrics_is_served_to_scrapers_that_ask_for_it() {
    let ferry = Ferry::shop().start().await;
    let r = ferry
        .http()
        .get(ferry.url("/metrics"))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = r.text().await.expect("body");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# UNIT ferry_hook_answer_seconds seconds"),
        "{text}"
    );
}

/// [`SHOP`] plus a service deployed through the Docker Engine.
fn shop_with_docker() -> String {
    format!(
        "{SHOP}
[apps.shop.services.api]
image = {{ repository = \"127.0.0.1:5000/acme/api\", tags = \"latest\" }}
docker = {{ container = \"ferry-readyz-unused\", health_timeout = \"15s\" }}
"
    )
}

async fn readyz(ferry: &Ferry) -> (u16, String) {
    let r = ferry
        .http()
        .get(ferry.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test]
async fn readyz_fails_naming_docker_when_the_engine_cannot_be_reached() {
    let ferry = Ferry::with_config(&shop_with_docker())
        .env("DOCKER_HOST", "unix:///nonexistent")
        .start()
        .await;
    let (status, body) = readyz(&ferry).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("docker: cannot reach the Docker Engine") && body.contains("/nonexistent"),
        "{body}"
    );
    assert!(!body.contains("store:"), "the store is fine: {body}");

    // Without Docker services the engine is not asked at all.
    let ferry = Ferry::shop()
        .env("DOCKER_HOST", "unix:///nonexistent")
        .start()
        .await;
    assert_eq!(readyz(&ferry).await, (200, "ready\n".to_string()));
}

#[tokio::test]
#[ignore = "needs Docker and docker-registry: cargo test -- --include-ignored"]
async fn readyz_is_ready_when_the_docker_engine_answers() {
    if !require_docker() {
        return;
    }
    let ferry = Ferry::with_config(&shop_with_docker()).start().await;
    assert_eq!(readyz(&ferry).await, (200, "ready\n".to_string()));
}
