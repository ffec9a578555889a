//! PostgreSQL as users see it (issue 13, part 1: choosing PostgreSQL changes nothing a user
//! sees); the module `on_postgres` (`crate::postgres` is the throwaway cluster). These tests always run ferry on PostgreSQL (a fresh database of the throwaway
//! cluster per server, whatever `FERRY_TEST_ENGINE` says), mirroring what `intake.rs`,
//! `executor.rs`, `live.rs` and `restart.rs` test on SQLite; where a scenario is
//! deterministic, it runs on SQLite too and what the user sees (answers, API, deploy
//! commands' environment, logs, live events) must be the same but for times and paths.
//!
//! Without PostgreSQL's binaries they are skipped with the reason, or fail when `CI` is set
//! (`FerryBuilder::postgres`, `unavailable`).

use serde_json::{Map, Value, json};

use crate::live::{Stream, deploy};
use crate::support::*;

/// `builder` on PostgreSQL, started; `None`: PostgreSQL cannot run here (skip).
async fn on_postgres(builder: FerryBuilder) -> Option<Ferry> {
    Some(builder.postgres()?.start().await)
}

/// `v` without what differs between any two runs, whatever the engine: times (`…_at`,
/// `duration_ms`) become `"<time>"` when set, the server's address and the test's temp dir
/// become `{addr}` and `{dir}` in every string, and the `X-GitHub-Delivery` values this
/// process made up (`github_delivery_id`, counted across tests) become `{github delivery}`.
fn comparable(v: &Value, ferry: &Ferry) -> Value {
    let addr = ferry.base_url().trim_start_matches("http://").to_string();
    let dir = ferry.dir_str();
    let made_up = format!("{:08x}-0000-4000-8000-", std::process::id());
    let walk_string = |s: &str| {
        if s.starts_with(&made_up) {
            "{github delivery}".to_string()
        } else {
            s.replace(&dir, "{dir}").replace(&addr, "{addr}")
        }
    };
    fn walk(v: &Value, string: &dyn Fn(&str) -> String) -> Value {
        match v {
            Value::String(s) => Value::String(string(s)),
            Value::Array(items) => items.iter().map(|i| walk(i, string)).collect(),
            Value::Object(fields) => {
                let mut out = Map::new();
                for (k, v) in fields {
                    let timed = k.ends_with("_at") || k == "duration_ms";
                    let v = if timed && !v.is_null() {
                        json!("<time>")
                    } else {
                        walk(v, string)
                    };
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
    walk(v, &walk_string)
}

/// Asserts that two engines showed the same, naming the first difference.
fn assert_same(sqlite: &Value, postgres: &Value) {
    if sqlite != postgres {
        let (a, b) = (
            serde_json::to_string_pretty(sqlite).unwrap(),
            serde_json::to_string_pretty(postgres).unwrap(),
        );
        let line = a
            .lines()
            .zip(b.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(0);
        panic!(
            "SQLite and PostgreSQL differ from line {line}:\n--- SQLite ---\n{a}\n--- PostgreSQL ---\n{b}"
        );
    }
}

/// A signed GitHub push (the fixture `push-branch-created`) from the hook's answer to the deploy
/// command's run: what the user sees of it, comparable across engines.
async fn signed_push_seen(ferry: &Ferry) -> Value {
    let reply = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .send()
        .await;
    let id = reply.accepted();
    let mut deployments = ferry.settle(id).await;
    deployments.sort_by_key(|d| d["id"].as_i64());
    let web = only(&deployments, "web").clone();
    assert_eq!(web["state"], "succeeded", "{web:#}");
    assert_eq!(web["commit"], FIXTURE_COMMIT);
    assert_eq!(web["exit_code"], 0);
    assert_eq!(only(&deployments, "worker")["state"], "skipped");
    let web_id = web["id"].as_i64().unwrap();
    assert_eq!(
        ferry.runs(),
        vec![Run {
            service: "web".into(),
            commit: Some(FIXTURE_COMMIT.into()),
            deployment: web_id,
        }]
    );
    let delivery = ferry.delivery(id).await;
    assert_eq!(delivery["verified"], true);
    assert_eq!(delivery["status"], "planned");
    let mut env: Vec<(String, String)> = ferry.run_env(web_id).into_iter().collect();
    env.sort();
    assert!(
        env.iter().all(|(k, _)| k != "FERRY_DATABASE"),
        "the database URL (it may hold a password) is not the deploy command's: {env:?}"
    );
    // The log's lines without their times, sorted: stdout and stderr are read apart, so
    // their lines may interleave either way.
    let log = ferry.log(web_id).await;
    let mut log: Vec<String> = log
        .lines()
        .map(|l| {
            let line = l.split_once(' ').map_or(l, |(_, rest)| rest);
            match line.split_once(" after ") {
                Some((exited, _)) => format!("{exited} after <time>"),
                None => line.to_string(),
            }
        })
        .collect();
    log.sort();
    let seen = json!({
        "answer": { "status": reply.status, "body": reply.json() },
        "delivery": delivery,
        "deployments": deployments,
        "deployment": ferry.deployment(web_id).await,
        "env": env,
        "log": log,
        "payload_is_the_body": ferry.run_payload(web_id) == Some(fixture("push-branch-created").body),
        "status": ferry.get("/api/v1/status?app=shop").await,
    });
    comparable(&seen, ferry)
}

#[tokio::test]
async fn a_signed_github_push_deploys_and_reads_as_on_sqlite() {
    let Some(postgres) = on_postgres(Ferry::shop()).await else {
        return;
    };
    let on_postgres = signed_push_seen(&postgres).await;
    let sqlite = Ferry::shop().sqlite().start().await;
    let on_sqlite = signed_push_seen(&sqlite).await;
    assert_same(&on_sqlite, &on_postgres);
}

#[tokio::test]
async fn a_redelivery_is_answered_as_a_duplicate_and_stored_once() {
    let Some(ferry) = on_postgres(Ferry::shop()).await else {
        return;
    };
    // GitHub's "Redeliver" (the same X-GitHub-Delivery) before and after planning.
    let id = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .send()
        .await
        .accepted();
    let again = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .send()
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["status"], "duplicate");
    assert_eq!(again.delivery_id(), id, "the answer names the original");
    let web = only(&ferry.settle(id).await, "web").clone();
    assert_eq!(web["state"], "succeeded");
    let late = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .send()
        .await;
    assert_eq!(late.status, 200, "{}", late.text);
    assert_eq!(late.json()["status"], "duplicate");
    assert_eq!(late.delivery_id(), id);

    // An Idempotency-Key does the same for generic requests.
    let key = unique("retry");
    let generic = ferry
        .hook("shop")
        .query("services=worker")
        .header("Idempotency-Key", &key)
        .send()
        .await
        .accepted();
    let retried = ferry
        .hook("shop")
        .query("services=worker")
        .header("Idempotency-Key", &key)
        .send()
        .await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(retried.delivery_id(), generic);

    ferry.settled("shop").await;
    let stored: Vec<i64> = ferry
        .deliveries("app=shop")
        .await
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(stored, [generic, id], "each stored once, newest first");
    let original = ferry.delivery(id).await;
    assert_eq!(original["duplicates"]["count"], 2, "{original:#}");
    assert!(
        original["duplicates"]["last_at"].is_string(),
        "{original:#}"
    );
    assert_eq!(ferry.runs_of("web").len(), 1, "{:?}", ferry.runs());
    assert_eq!(ferry.runs_of("worker").len(), 1, "{:?}", ferry.runs());
}

#[tokio::test]
async fn a_burst_to_one_service_collapses_to_the_newest() {
    let Some(ferry) = on_postgres(Ferry::shop()).await else {
        return;
    };
    ferry.hold("web");
    let first = ferry.push("master", &sha(1), &commit_time(1)).await;
    let d1 = ferry.planned_deployment(first, "web").await["id"]
        .as_i64()
        .unwrap();
    ferry.wait_state(d1, "running").await;
    let mut later = Vec::new();
    for i in 2..=4 {
        let id = ferry.push("master", &sha(i), &commit_time(i as i64)).await;
        later.push(
            ferry.planned_deployment(id, "web").await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let (d2, d3, d4) = (later[0], later[1], later[2]);
    ferry.wait_state(d4, "queued").await;
    // Each push was planned on its own: each queued one was superseded by the next.
    for (d, by) in [(d2, d3), (d3, d4)] {
        let superseded = ferry.wait_state(d, "superseded").await;
        assert_eq!(
            superseded["reason"],
            format!("superseded by deployment {by}"),
            "{superseded:#}"
        );
    }
    let running = ferry
        .deployments("app=shop&service=web&state=running")
        .await;
    assert_eq!(running.len(), 1, "one at a time: {running:#?}");

    ferry.release("web");
    let last = ferry.wait_state(d4, "succeeded").await;
    assert_eq!(last["version"], sha(4).as_str());
    ferry.settled("shop").await;
    assert_eq!(ferry.deployment(d1).await["state"], "succeeded");
    let ran: Vec<i64> = ferry.runs_of("web").iter().map(|r| r.deployment).collect();
    assert_eq!(ran, vec![d1, d4]);
    // Stale pushes (older than what is deployed) are skipped, as on SQLite.
    let stale = ferry.push("master", &sha(9), &commit_time(0)).await;
    let web = only(&ferry.settle(stale).await, "web").clone();
    assert_eq!(web["state"], "skipped", "{web:#}");
}

/// The lists of the API (deliveries, deployments, their filters and pages), the live events
/// and `/readyz`, after the same requests: what the user sees, comparable across engines.
async fn lists_seen(ferry: &Ferry) -> Value {
    let (status, ready) = {
        let r = ferry
            .http()
            .get(ferry.url("/readyz"))
            .send()
            .await
            .expect("GET /readyz");
        (r.status().as_u16(), r.text().await.expect("body"))
    };
    assert_eq!((status, ready.as_str()), (200, "ready\n"));

    let mut events = Stream::open(ferry, "/api/v1/events?app=shop", &[]).await;
    let manual = deploy(ferry, "shop", &["worker"]).await;
    let seen_live = events
        .until(|e| e.event == "deployment" && e.json()["state"] == "succeeded")
        .await;
    let live: Vec<Value> = seen_live
        .iter()
        .map(|e| {
            let v = e.json();
            json!([
                e.event,
                v["id"],
                v["status"],
                v["state"],
                v["name"],
                v["outcome"]
            ])
        })
        .collect();
    ferry.settled("shop").await;

    // A push, a refused one, a redeploy; then a failing one.
    let push = ferry.push("master", &sha(1), &commit_time(1)).await;
    let refused = ferry
        .hook("shop")
        .github("push")
        .body(push_payload(REPO, "master", &sha(2), &commit_time(2)))
        .signed("not the secret")
        .send()
        .await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    ferry.settle(push).await;
    ferry.fail("worker");
    let failing = ferry
        .hook("shop")
        .query("services=worker")
        .send()
        .await
        .accepted();
    ferry.settle(failing).await;
    ferry.settled("shop").await;

    let mut lists = Map::new();
    for path in [
        "/api/v1/deliveries",
        "/api/v1/deliveries?app=shop&limit=2",
        "/api/v1/deliveries?app=nope",
        "/api/v1/deployments",
        "/api/v1/deployments?app=shop&service=web",
        "/api/v1/deployments?state=failed",
        "/api/v1/deployments?state=skipped&limit=1",
        "/api/v1/status",
    ] {
        lists.insert(path.into(), ferry.get(path).await);
    }
    // The next page of a full one.
    let first = ferry.get("/api/v1/deliveries?limit=2").await;
    let next = first["next_before"].as_i64().expect("a next page");
    lists.insert(
        "next page".into(),
        ferry
            .get(&format!("/api/v1/deliveries?limit=2&before={next}"))
            .await,
    );
    let deliveries = ferry.deliveries("").await;
    assert!(
        deliveries.iter().any(|d| d["status"] == "rejected"),
        "the refused delivery is listed: {deliveries:#?}"
    );
    assert!(deliveries.iter().any(|d| d["id"] == manual));
    let seen = json!({ "live": live, "lists": lists });
    comparable(&seen, ferry)
}

#[tokio::test]
async fn the_api_lists_live_events_and_readyz_read_as_on_sqlite() {
    let Some(postgres) = on_postgres(Ferry::shop()).await else {
        return;
    };
    let on_postgres = lists_seen(&postgres).await;
    let sqlite = Ferry::shop().sqlite().start().await;
    let on_sqlite = lists_seen(&sqlite).await;
    assert_same(&on_sqlite, &on_postgres);
}

/// `kill -9` right after the answer, on PostgreSQL (the test of `restart.rs`).
#[tokio::test]
async fn kill_9_loses_no_acknowledged_delivery() {
    if let Some(ferry) = on_postgres(Ferry::shop()).await {
        crate::restart::loses_no_acknowledged_delivery(ferry).await;
    }
}

/// `kill -9` during a deployment, on PostgreSQL (the test of `restart.rs`).
#[tokio::test]
async fn kill_9_during_a_deployment_marks_it_interrupted_and_retries_it() {
    if let Some(ferry) = on_postgres(crate::restart::hanging(None)).await {
        crate::restart::interrupted_and_retried_once(ferry).await;
    }
}
