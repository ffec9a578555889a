//! The command executor and the lanes: exit codes, logs, timeouts that kill the whole process
//! group, one deployment at a time per service, bursts collapsing to the newest.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const EXEC: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.exec]
token = "exec-token-1234"

[apps.exec.services.ok]
command = ["/bin/sh", "-c", "echo out-line; echo err-line >&2; exit 0"]

[apps.exec.services.bad]
command = ["/bin/sh", "-c", "echo about to fail; exit 3"]
"#;

/// Splits a deployment log line `<RFC 3339 time> <label> | <text>` into label and text (the
/// label may be padded to align the columns). Fails the test on any other shape.
fn parse_log_line(line: &str) -> (&str, &str) {
    let (time, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("log line {line:?}"));
    time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("log line {line:?} does not start with a time: {e}"));
    let (label, text) = rest
        .split_once(" | ")
        .unwrap_or_else(|| panic!("log line {line:?} has no `label | text`"));
    let label = label.trim();
    assert!(
        ["stdout", "stderr", "ferry"].contains(&label),
        "log line {line:?}: label {label:?} is not stdout, stderr or ferry"
    );
    (label, text)
}

/// The `(label, text)` of every line of a deployment log, checking the format.
fn log_lines(log: &str) -> Vec<(&str, &str)> {
    log.lines()
        .filter(|l| !l.is_empty())
        .map(parse_log_line)
        .collect()
}

/// Whether `log` has a line `<time> <label> | <text>`.
fn has_line(log: &str, label: &str, text: &str) -> bool {
    log_lines(log).contains(&(label, text))
}

/// Whether `log` has a line by ferry itself.
fn has_ferry_line(log: &str) -> bool {
    log_lines(log).iter().any(|(label, _)| *label == "ferry")
}

#[tokio::test]
async fn exit_codes_become_states_and_output_is_logged_with_labels() {
    let ferry = Ferry::with_config(EXEC).start().await;
    let (_, deployments) = ferry.hook("exec").token("exec-token-1234").deliver().await;

    let ok = only(&deployments, "ok");
    assert_eq!(ok["state"], "succeeded", "{ok:#}");
    assert_eq!(ok["exit_code"], 0);
    let log = ferry.log(ok["id"].as_i64().unwrap()).await;
    log_lines(&log);
    assert!(has_line(&log, "stdout", "out-line"), "{log}");
    assert!(has_line(&log, "stderr", "err-line"), "{log}");

    let bad = only(&deployments, "bad");
    assert_eq!(bad["state"], "failed", "{bad:#}");
    assert_eq!(bad["exit_code"], 3);
    let log = ferry.log(bad["id"].as_i64().unwrap()).await;
    log_lines(&log);
    assert!(has_line(&log, "stdout", "about to fail"), "{log}");
    assert!(
        has_ferry_line(&log),
        "ferry notes how the command ended: {log}"
    );
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    // A number no other process on the machine has on its command line.
    let marker = format!("7{:07}3", std::process::id() % 10_000_000);
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{{dir}}/data"
admin_token = "${{FERRY_ADMIN_TOKEN}}"

[apps.hang]
token = "hang-token-1234"

[apps.hang.services.stuck]
command = ["/bin/sh", "-c", "sleep {marker} & sleep {marker}; wait"]
timeout = "2s"
"#
    );
    let ferry = Ferry::with_config(&config).start().await;
    let id = ferry
        .hook("hang")
        .token("hang-token-1234")
        .send()
        .await
        .accepted();

    // The command really started its children…
    eventually("the sleeps to start", WAIT, async || {
        let found = procs_matching(&marker);
        if found.len() >= 2 {
            Ok(())
        } else {
            Err(format!("{found:?}"))
        }
    })
    .await;

    // …and the timeout ends the deployment and all of them.
    let deployments = ferry.settle(id).await;
    let stuck = only(&deployments, "stuck");
    assert_eq!(stuck["state"], "timed_out", "{stuck:#}");
    let ran_ms = ts_ms(&stuck["finished_at"]) - ts_ms(&stuck["started_at"]);
    assert!(
        (1_500..15_000).contains(&ran_ms),
        "killed at the 2 s timeout, not later: ran {ran_ms} ms"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = procs_matching(&marker);
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        left = procs_matching(&marker);
    }
    if !left.is_empty() {
        kill_matching(&marker);
        panic!("processes of the timed-out command survived: {left:?}");
    }
    let log = ferry.log(stuck["id"].as_i64().unwrap()).await;
    log_lines(&log);
    assert!(
        has_ferry_line(&log),
        "ferry notes the timeout in the log: {log}"
    );
}

#[tokio::test]
async fn one_deployment_at_a_time_per_service_and_queued_ones_collapse_to_the_newest() {
    let ferry = Ferry::shop().start().await;
    ferry.hold("web");

    let first = ferry
        .hook("shop")
        .query("services=web")
        .send()
        .await
        .accepted();
    let d1 = ferry.planned_deployment(first, "web").await["id"]
        .as_i64()
        .unwrap();
    ferry.wait_state(d1, "running").await;

    // Answers stay fast while a deployment runs.
    let mut later = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let id = ferry
            .hook("shop")
            .query("services=web")
            .send()
            .await
            .accepted();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the hook answered in {:?}",
            started.elapsed()
        );
        later.push(
            ferry.planned_deployment(id, "web").await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let (d2, d3, d4) = (later[0], later[1], later[2]);

    ferry.wait_state(d4, "queued").await;
    ferry.wait_state(d2, "superseded").await;
    ferry.wait_state(d3, "superseded").await;
    let running: Vec<Value> = ferry
        .deployments("app=shop&service=web&state=running")
        .await;
    assert_eq!(running.len(), 1, "one at a time: {running:#?}");
    assert_eq!(running[0]["id"], d1);

    ferry.release("web");
    let last = ferry.wait_state(d4, "succeeded").await;
    let first = ferry.deployment(d1).await;
    assert_eq!(first["state"], "succeeded");
    assert!(
        ts_ms(&last["started_at"]) >= ts_ms(&first["finished_at"]),
        "the queued deployment started only after the running one ended: {first:#} {last:#}"
    );
    ferry.settled("shop").await;
    for d in [d2, d3] {
        assert_eq!(ferry.deployment(d).await["state"], "superseded");
    }
    let ran: Vec<i64> = ferry.runs_of("web").iter().map(|r| r.deployment).collect();
    assert_eq!(ran, vec![d1, d4]);
}

#[tokio::test]
async fn different_services_deploy_in_parallel() {
    let ferry = Ferry::shop().start().await;
    ferry.hold("web");
    ferry.hold("worker");
    let id = ferry.hook("shop").send().await.accepted();
    let web = ferry.planned_deployment(id, "web").await["id"]
        .as_i64()
        .unwrap();
    let worker = ferry.planned_deployment(id, "worker").await["id"]
        .as_i64()
        .unwrap();

    eventually("web and worker to run at the same time", WAIT, async || {
        let a = ferry.deployment(web).await;
        let b = ferry.deployment(worker).await;
        if a["state"] == "running" && b["state"] == "running" {
            Ok(())
        } else {
            Err(format!("web {}, worker {}", a["state"], b["state"]))
        }
    })
    .await;

    ferry.release("web");
    ferry.release("worker");
    for d in ferry.settle(id).await {
        assert_eq!(d["state"], "succeeded", "{d:#}");
    }
}

#[tokio::test]
async fn a_burst_of_15_pushes_ends_on_the_newest_commit_with_at_most_3_runs() {
    let ferry = Ferry::shop().start().await;
    // Each deployment takes a while, so the burst arrives while the first one runs.
    ferry.slow("web", "0.5");

    let mut deliveries = Vec::new();
    for i in 1..=15 {
        deliveries.push(
            ferry
                .push("master", &sha(100 + i), &commit_time(i as i64))
                .await,
        );
    }
    let newest = sha(115);

    ferry.settled("shop").await;
    let runs = ferry.runs_of("web");
    assert!(
        !runs.is_empty() && runs.len() <= 3,
        "at most the current deployment plus the newest: {runs:?}"
    );
    assert_eq!(
        runs.last().unwrap().commit.as_deref(),
        Some(newest.as_str()),
        "{runs:?}"
    );

    let web = ferry.deployments("app=shop&service=web").await;
    assert_eq!(web.len(), 15, "one web deployment per push: {web:#?}");
    let succeeded: Vec<&Value> = web.iter().filter(|d| d["state"] == "succeeded").collect();
    assert_eq!(succeeded.len(), runs.len(), "{web:#?}");
    for d in &web {
        assert!(
            d["state"] == "succeeded" || d["state"] == "superseded",
            "the rest end superseded: {d:#}"
        );
    }
    let last = ferry.planned_deployment(deliveries[14], "web").await;
    assert_eq!(last["state"], "succeeded", "{last:#}");
    assert_eq!(last["version"], newest.as_str());
}

#[tokio::test]
async fn payload_values_never_reach_a_shell() {
    let ferry = Ferry::with_config(&shop_ci()).start().await;
    // Shell syntax, yet a valid ref name (`?git_ref=` must be a ref or a commit id: no spaces,
    // no component starting with `.` as temp dirs do). A shell would run it in the config's
    // directory, the deploy command's working directory.
    let evil = "$(touch${IFS}pwned);`touch${IFS}pwned2`".to_string();
    let encoded: String = evil
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_./".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let id = ferry
        .hook("shop")
        .query(&format!("services=web&git_ref={encoded}"))
        .ci_bearer()
        .send()
        .await
        .accepted();
    let web = only(&ferry.settle(id).await, "web").clone();
    assert_eq!(web["state"], "succeeded", "{web:#}");
    let env = ferry.run_env(web["id"].as_i64().unwrap());
    assert_eq!(env.get("FERRY_GIT_REF"), Some(&evil), "passed on verbatim");
    assert!(!ferry.path("pwned").exists() && !ferry.path("pwned2").exists());
}

/// A Docker Hub callback endpoint that accepts connections and never answers (the peer under
/// test: Docker Hub cannot run here). Reports each accepted connection; holds them open.
fn hanging_callback_target() -> (String, std::sync::mpsc::Receiver<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(s) = stream else { break };
            held.push(s);
            let _ = tx.send(());
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn a_hanging_docker_hub_callback_does_not_hold_the_lane() {
    let (hub, callbacks) = hanging_callback_target();
    let config = dockerhub_callback_config(&hub, r#"shutdown_grace = "2s""#);
    let mut ferry = Ferry::with_config(&config).start().await;
    // Two pushes of the same tag, the second one later (else it would be stale).
    let push = |pushed_at: u64| {
        let body =
            dockerhub_push_calling_back_to(&hub).replace("1417566161", &pushed_at.to_string());
        ferry
            .hook("hub")
            .token("image-hook-token-1")
            .query("source=dockerhub")
            .header("Content-Type", "application/json")
            .body(body)
    };
    let (_, deployments) = push(1_417_566_161).deliver().await;
    assert_eq!(only(&deployments, "testhook")["state"], "succeeded");
    callbacks
        .recv_timeout(WAIT)
        .expect("the first deployment's callback was called");

    // The first callback now hangs (for up to its 10 s timeout); the next push of the same
    // service deploys at once all the same.
    let started = Instant::now();
    let (_, deployments) = push(1_417_566_171).deliver().await;
    let elapsed = started.elapsed();
    assert_eq!(only(&deployments, "testhook")["state"], "succeeded");
    // Had the lane waited for the first callback, it would have ended first (timed out).
    assert!(
        !ferry.stderr_text().contains("Docker Hub callback failed"),
        "the second deployment ({elapsed:?}) waited for the first one's callback:\n{}",
        ferry.stderr_text()
    );
    assert!(
        callbacks.try_recv().is_err(),
        "the second callback waits behind the first, not in the lane"
    );

    // Both callbacks wait in the outbox: the first one in its try, the second behind it.
    eventually("both callbacks in the outbox", WAIT, async || {
        let pending = ferry.get("/api/v1/notifications?state=pending").await;
        match pending["notifications"].as_array().map(Vec::len) {
            Some(2) => Ok(()),
            _ => Err(format!("{pending:#}")),
        }
    })
    .await;

    // At shutdown ferry does not wait for the hanging try: it stops at once, and both
    // callbacks are still there after the restart, to be sent then.
    let stopping = Instant::now();
    ferry.sigterm();
    let status = ferry.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", ferry.stderr_text());
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "stopping took {:?}",
        stopping.elapsed()
    );
    ferry.restart().await;
    let pending = ferry.get("/api/v1/notifications?state=pending").await;
    let list = pending["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{pending:#}");
    assert!(
        list.iter()
            .all(|n| n["kind"] == "dockerhub" && n["target"] == "dockerhub:hub")
    );
}
