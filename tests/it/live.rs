//! The live API (Server-Sent Events) and what the terminal makes of it: `GET /api/v1/events`
//! (deliveries and deployment states in commit order, filtered by app), a deployment's log
//! line by line while it runs (`Last-Event-ID` resumes with no line lost or doubled, then
//! `event: end`), the steps of a run in `GET /api/v1/deployments/ID`, `ferry logs --follow`
//! and `ferry deploy --wait`; and that open streams do not hold a shutdown open.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// A service `talk` whose command prints a line, waits for `{dir}/go`, then prints another:
/// the test decides when the second line comes.
const TALK: &str = r#"
[apps.shop.services.talk]
command = ["{dir}/talk.sh"]
timeout = "60s"
"#;

const TALK_SH: &str = r#"#!/bin/sh
echo "first line"
while [ ! -e "{dir}/go" ]; do sleep 0.05; done
echo "second line"
"#;

/// One Server-Sent Event as the test reads it (also read by `postgres.rs`).
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) event: String,
    pub(crate) data: String,
    pub(crate) id: Option<String>,
}

impl Event {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{self:?}: {e}"))
    }
}

/// An open SSE stream.
pub(crate) struct Stream {
    resp: reqwest::Response,
    buf: String,
}

impl Stream {
    /// Opens `path` on `ferry` with `Accept: text/event-stream` and `headers`; asserts 200.
    pub(crate) async fn open(ferry: &Ferry, path: &str, headers: &[(&str, &str)]) -> Stream {
        let resp = sse_request(ferry, path, headers).await;
        assert_eq!(resp.status(), 200, "{path}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Stream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` when the stream ended; fails after [`WAIT`].
    async fn next(&mut self) -> Option<Event> {
        tokio::time::timeout(WAIT, self.read())
            .await
            .expect("no event within the wait")
    }

    async fn read(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut e = Event {
                    event: String::new(),
                    data: String::new(),
                    id: None,
                };
                let mut has_data = false;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_string();
                    match field {
                        "event" => e.event = value,
                        "id" => e.id = Some(value),
                        "data" => {
                            if has_data {
                                e.data.push('\n');
                            }
                            e.data.push_str(&value);
                            has_data = true;
                        }
                        _ => {}
                    }
                }
                if has_data {
                    return Some(e);
                }
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// Events until one satisfies `done` (included).
    pub(crate) async fn until(&mut self, done: impl Fn(&Event) -> bool) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            let e = self
                .next()
                .await
                .unwrap_or_else(|| panic!("stream ended; saw {seen:#?}"));
            let stop = done(&e);
            seen.push(e);
            if stop {
                return seen;
            }
        }
    }
}

async fn sse_request(ferry: &Ferry, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut req = http
        .get(ferry.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("SSE request")
}

/// Starts a manual deploy of `services` of `app`; returns the delivery id.
pub(crate) async fn deploy(ferry: &Ferry, app: &str, services: &[&str]) -> i64 {
    let r = ferry
        .post(
            &format!("/api/v1/apps/{app}/deploy"),
            json!({ "services": services }),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    r.json()["delivery_id"].as_i64().unwrap()
}

#[tokio::test]
async fn events_show_a_delivery_and_its_deployments_states_in_order() {
    let ferry = Ferry::with_config(&format!("{SHOP}{BLOG}")).start().await;
    let mut shop = Stream::open(&ferry, "/api/v1/events?app=shop", &[]).await;
    let mut blog = Stream::open(&ferry, "/api/v1/events?app=blog", &[]).await;
    let mut all = Stream::open(&ferry, "/api/v1/events", &[]).await;

    let delivery = deploy(&ferry, "shop", &["worker"]).await;
    let events = shop
        .until(|e| e.event == "deployment" && e.json()["state"] == "succeeded")
        .await;
    let deployment = ferry.planned_deployment(delivery, "worker").await;
    let id = deployment["id"].as_i64().unwrap();

    let of_delivery: Vec<Value> = events
        .iter()
        .filter(|e| e.event == "delivery")
        .map(Event::json)
        .collect();
    assert_eq!(of_delivery.len(), 2, "{events:#?}");
    assert_eq!(of_delivery[0]["id"], delivery);
    assert_eq!(of_delivery[0]["status"], "received");
    assert_eq!(of_delivery[0]["app"], "shop");
    assert_eq!(of_delivery[0]["source"], "manual");
    assert!(of_delivery[0]["received_at"].is_string());
    assert_eq!(of_delivery[1]["status"], "planned");
    let states: Vec<Value> = events
        .iter()
        .filter(|e| e.event == "deployment")
        .map(|e| e.json())
        .inspect(|d| {
            assert_eq!(d["id"], id);
            assert_eq!(
                (d["app"].as_str(), d["service"].as_str()),
                (Some("shop"), Some("worker"))
            );
            assert_eq!(d["delivery_id"], delivery);
        })
        .map(|d| d["state"].clone())
        .collect();
    assert_eq!(states, ["queued", "running", "succeeded"], "{events:#?}");
    // The delivery is stored before it is planned, and planned before its deployment runs.
    let position = |pred: &dyn Fn(&Event) -> bool| events.iter().position(pred).unwrap();
    let planned = position(&|e| e.event == "delivery" && e.json()["status"] == "planned");
    let received = position(&|e| e.event == "delivery" && e.json()["status"] == "received");
    let running = position(&|e| e.event == "deployment" && e.json()["state"] == "running");
    assert!(received < planned && planned < running, "{events:#?}");
    // The run's step, live too.
    let step = events
        .iter()
        .find(|e| e.event == "step" && e.json()["outcome"] == "ok")
        .unwrap_or_else(|| panic!("no ended step in {events:#?}"))
        .json();
    assert_eq!(
        (step["deployment_id"].as_i64(), step["name"].as_str()),
        (Some(id), Some("run"))
    );

    // The unfiltered viewer saw the same; the blog viewer saw nothing of shop: its first
    // event is about blog's own delivery, sent after all of shop's.
    let first = all.next().await.unwrap();
    assert_eq!(
        (first.event.as_str(), first.json()["id"].as_i64()),
        ("delivery", Some(delivery))
    );
    let blog_delivery = deploy(&ferry, "blog", &[]).await;
    let first = blog.next().await.unwrap();
    assert_eq!(first.event, "delivery", "{first:?}");
    assert_eq!(first.json()["id"], blog_delivery);
    assert_eq!(first.json()["app"], "blog");

    // An unknown app is a 404, not a stream that never says anything.
    let r = sse_request(&ferry, "/api/v1/events?app=nope", &[]).await;
    assert_eq!(r.status(), 404);
    // Like the rest of the API, it needs the admin token.
    let r = reqwest::Client::new()
        .get(ferry.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Starts `talk` and waits until it runs; returns its deployment id.
async fn start_talk(ferry: &Ferry) -> i64 {
    let delivery = deploy(ferry, "shop", &["talk"]).await;
    let id = ferry.planned_deployment(delivery, "talk").await["id"]
        .as_i64()
        .unwrap();
    ferry.wait_state(id, "running").await;
    id
}

async fn talk_ferry() -> Ferry {
    Ferry::with_config(&format!("{SHOP}{TALK}"))
        .script("talk.sh", TALK_SH)
        .start()
        .await
}

#[tokio::test]
async fn a_running_deployments_log_arrives_line_by_line_then_ends() {
    let ferry = talk_ferry().await;
    let id = start_talk(&ferry).await;
    let path = format!("/api/v1/deployments/{id}/logs");
    let mut log = Stream::open(&ferry, &path, &[]).await;
    let lines = log.until(|e| e.data.ends_with("| first line")).await;
    // It arrived while the command still runs (it waits for `go`).
    assert_eq!(ferry.deployment(id).await["state"], "running");
    assert!(lines.iter().all(|e| e.event.is_empty()), "{lines:#?}");

    std::fs::write(ferry.path("go"), "").unwrap();
    let rest = log.until(|e| e.event == "end").await;
    let end = rest.last().unwrap();
    assert_eq!(end.json(), json!({"state": "succeeded"}));
    assert!(log.next().await.is_none(), "the stream closes after end");

    // Every line of the log, exactly once, each named by the offset after it.
    let text = ferry.log(id).await;
    let streamed: Vec<&Event> = lines.iter().chain(&rest[..rest.len() - 1]).collect();
    let got: Vec<&str> = streamed.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(got, text.lines().collect::<Vec<_>>());
    assert!(
        got.iter().any(|l| l.ends_with("stdout | second line")),
        "{got:#?}"
    );
    let mut offset = 0;
    for e in &streamed {
        offset += e.data.len() + 1;
        assert_eq!(e.id.as_deref(), Some(offset.to_string().as_str()), "{e:?}");
    }

    // An ended deployment's log streams to its end at once.
    let mut again = Stream::open(&ferry, &path, &[]).await;
    let all = again.until(|e| e.event == "end").await;
    assert_eq!(all.len(), streamed.len() + 1);
}

#[tokio::test]
async fn a_viewer_that_reconnects_with_last_event_id_gets_every_line_once() {
    let ferry = talk_ferry().await;
    let id = start_talk(&ferry).await;
    let path = format!("/api/v1/deployments/{id}/logs");
    let mut first = Stream::open(&ferry, &path, &[]).await;
    let before = first.until(|e| e.data.ends_with("| first line")).await;
    let last_id = before.last().unwrap().id.clone().unwrap();
    drop(first); // the connection drops mid-stream

    std::fs::write(ferry.path("go"), "").unwrap();
    let mut resumed = Stream::open(&ferry, &path, &[("last-event-id", &last_id)]).await;
    let after = resumed.until(|e| e.event == "end").await;
    let got: Vec<&str> = before
        .iter()
        .chain(&after[..after.len() - 1])
        .map(|e| e.data.as_str())
        .collect();
    let text = ferry.log(id).await;
    assert_eq!(got, text.lines().collect::<Vec<_>>());
    assert!(
        after[0].data.ends_with("stdout | second line"),
        "{after:#?}"
    );

    // `?offset=` resumes the same way (for clients that cannot set the header).
    let mut by_query = Stream::open(&ferry, &format!("{path}?offset={last_id}"), &[]).await;
    let again = by_query.until(|e| e.event == "end").await;
    assert_eq!(again.len(), after.len());
}

#[tokio::test]
async fn a_last_event_id_that_is_no_line_end_is_a_400() {
    let ferry = talk_ferry().await;
    let id = start_talk(&ferry).await;
    std::fs::write(ferry.path("go"), "").unwrap();
    ferry.wait_state(id, "succeeded").await;
    let size = ferry.log(id).await.len();
    let path = format!("/api/v1/deployments/{id}/logs");
    for (value, expected) in [
        (
            "5",
            "offset 5 is not the end of a line of the log".to_string(),
        ),
        (
            "99999",
            format!("offset 99999 is beyond the end of the log ({size} bytes)"),
        ),
        ("abc", "Last-Event-ID must be a byte offset".to_string()),
        ("-1", "Last-Event-ID must be a byte offset".to_string()),
    ] {
        let r = sse_request(&ferry, &path, &[("last-event-id", value)]).await;
        assert_eq!(r.status(), 400, "{value}");
        let body: Value = r.json().await.unwrap();
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(&expected), "{value}: {message}");
    }
    // An unknown deployment is a 404.
    let r = sse_request(&ferry, "/api/v1/deployments/999/logs", &[]).await;
    assert_eq!(r.status(), 404);
    // Without the Accept header the route still serves plain text.
    assert!(ferry.log(id).await.contains("second line"));
}

#[tokio::test]
async fn a_command_deployment_shows_its_step() {
    let ferry = Ferry::shop().start().await;
    std::fs::write(ferry.path("fail-web"), "").unwrap();
    let delivery = deploy(&ferry, "shop", &["worker", "web"]).await;
    let deployments = ferry.settle(delivery).await;
    let worker = ferry
        .deployment(only(&deployments, "worker")["id"].as_i64().unwrap())
        .await;
    let steps = worker["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{worker:#}");
    let run = &steps[0];
    assert_eq!(run["name"], "run");
    assert_eq!(run["outcome"], "ok");
    assert_eq!(run["detail"], Value::Null);
    let ms = run["duration_ms"].as_i64().unwrap();
    assert_eq!(
        ts_ms(&run["ended_at"]) - ts_ms(&run["started_at"]),
        i128::from(ms)
    );
    assert!(ts_ms(&run["started_at"]) >= ts_ms(&worker["started_at"]));

    let web = ferry
        .deployment(only(&deployments, "web")["id"].as_i64().unwrap())
        .await;
    assert_eq!(web["state"], "failed");
    let run = &web["steps"][0];
    assert_eq!(run["outcome"], "failed", "{web:#}");
    assert_eq!(run["detail"], "exited with status 7");
}

#[tokio::test]
async fn ferry_logs_follow_prints_the_lines_and_exits_with_the_deployment() {
    let ferry = talk_ferry().await;
    let id = start_talk(&ferry).await;
    let id_arg = id.to_string();
    let cli = ferry.cli(&["logs", &id_arg, "--follow"]);
    let follow = tokio::spawn(cli.run());
    // It keeps following while the command waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!follow.is_finished());
    std::fs::write(ferry.path("go"), "").unwrap();
    let out = follow.await.unwrap();
    let stdout = out.success();
    assert_eq!(stdout, ferry.log(id).await, "printed the whole log once");
    assert!(stdout.contains("stdout | first line\n"), "{stdout}");
    assert!(stdout.contains("stdout | second line\n"), "{stdout}");
}

#[tokio::test]
async fn ferry_deploy_wait_prints_each_step_with_its_duration() {
    let ferry = Ferry::shop().start().await;
    let out = ferry
        .cli(&["deploy", "shop", "--services", "worker", "--wait"])
        .run()
        .await;
    let stdout = out.success();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("delivery ") && lines[0].ends_with(" accepted"),
        "{stdout}"
    );
    let step = lines
        .iter()
        .find(|l| l.contains(" worker: run ok "))
        .unwrap_or_else(|| panic!("no step line in {stdout}"));
    let secs = step.rsplit(' ').next().unwrap();
    assert!(
        secs.ends_with('s') && secs.trim_end_matches('s').parse::<f64>().is_ok(),
        "{step}"
    );
    assert!(
        lines.last().unwrap().ends_with("worker succeeded"),
        "{stdout}"
    );
    // No spinner without a terminal: nothing but lines.
    assert!(
        !stdout.contains('\r') && !out.stderr.contains('\r'),
        "{out:?}"
    );

    std::fs::write(ferry.path("fail-worker"), "").unwrap();
    let out = ferry
        .cli(&["deploy", "shop", "--services", "worker", "--wait"])
        .run()
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout.contains("worker: run failed after ")
            && out.stdout.contains("s: exited with status 7"),
        "{out:?}"
    );
}

#[tokio::test]
async fn open_streams_do_not_hold_a_shutdown_open() {
    let mut ferry = talk_ferry().await;
    let id = start_talk(&ferry).await;
    let mut events = Stream::open(&ferry, "/api/v1/events", &[]).await;
    let mut log = Stream::open(&ferry, &format!("/api/v1/deployments/{id}/logs"), &[]).await;
    log.until(|e| e.data.ends_with("| first line")).await;
    ferry.sigterm();
    // Both streams end at once, while the deployment still runs (it waits for `go`, within
    // the shutdown grace): `next` fails the test if they are still open after the wait.
    while let Some(e) = events.next().await {
        assert_ne!(e.event, "lagged", "{e:?}");
    }
    while let Some(e) = log.next().await {
        assert_ne!(
            e.event, "end",
            "the log stream ended as if the deployment had: {e:?}"
        );
    }
    std::fs::write(ferry.path("go"), "").unwrap();
    let status = ferry.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}: {}", ferry.stderr_text());
}

/// The steps of a docker deployment: `pull`, `create`, `start`, `health`, `remove` when the new
/// container is healthy; `health` failed and `rollback` when it is not.
#[tokio::test]
#[ignore = "needs Docker and docker-registry: cargo test -- --include-ignored"]
async fn a_docker_deployment_records_its_steps() {
    use crate::containers::{NOTIFY_TOKEN, config, deployment_of_tag};
    use crate::dockerenv::*;
    if !require_docker() {
        return;
    }
    let mut scope = DockerScope::new("ferry-steps");
    let name = scope.name("api");
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hooks/shop/{HOOK_TOKEN}");
    let registry = Registry::start(Some(&hook), Some(&format!("Bearer {NOTIFY_TOKEN}")));
    let repo = scope.repo(&registry.repo("acme/steps"));
    let ferry = Ferry::with_config(&config(port, &repo, &name))
        .dir("data")
        .start()
        .await;
    for (v, broken) in [("1.0.0", false), ("1.1.0", false), ("1.2.0", true)] {
        build_image(&format!("{repo}:{v}"), v, broken);
    }
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        TEST_LABEL,
        &format!("{repo}:1.0.0"),
    ]);
    wait_health(&name, "healthy").await;

    let steps = async |d: &Value| {
        let d = ferry.deployment(d["id"].as_i64().unwrap()).await;
        d["steps"].as_array().unwrap().clone()
    };
    let summary = |steps: &[Value]| -> Vec<(String, String)> {
        steps
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().into(),
                    s["outcome"].as_str().unwrap_or("-").into(),
                )
            })
            .collect()
    };
    let ok = |name: &str| (name.to_string(), "ok".to_string());

    push(&format!("{repo}:1.1.0"));
    let good = deployment_of_tag(&ferry, "1.1.0", "1.1.0 deployed", "succeeded").await;
    let good = steps(&good).await;
    assert_eq!(
        summary(&good),
        [
            ok("pull"),
            ok("create"),
            ok("start"),
            ok("health"),
            ok("remove")
        ],
        "{good:#?}"
    );
    assert!(
        good[1..].iter().all(|s| s["detail"] == name.as_str()),
        "{good:#?}"
    );
    for pair in good.windows(2) {
        assert!(
            ts_ms(&pair[0]["ended_at"]) <= ts_ms(&pair[1]["started_at"]),
            "{pair:#?}"
        );
    }

    push(&format!("{repo}:1.2.0"));
    let bad = deployment_of_tag(&ferry, "1.2.0", "1.2.0 rolled back", "rolled_back").await;
    let bad = steps(&bad).await;
    let failed = ("health".to_string(), "failed".to_string());
    assert_eq!(
        summary(&bad),
        [
            ok("pull"),
            ok("create"),
            ok("start"),
            failed,
            ok("rollback")
        ],
        "{bad:#?}"
    );
    assert!(
        bad[3]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("unhealthy"),
        "{bad:#?}"
    );
}
