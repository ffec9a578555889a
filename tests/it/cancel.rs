//! Cancelling deployments: `POST /api/v1/deployments/ID/cancel` and `ferry cancel ID`. A queued
//! one never runs; a running command is stopped like a timeout (its whole process group
//! killed) and recorded `cancelled`, and the service's next queued deployment runs as usual.
//! Also the typed state filter of the deployment list (`?state=` takes state names only).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

/// Queues a deployment of `service` (a bare redeploy) and returns its id.
async fn deploy(ferry: &Ferry, service: &str) -> i64 {
    let delivery = ferry
        .hook("shop")
        .query(&format!("services={service}"))
        .send()
        .await
        .accepted();
    ferry.planned_deployment(delivery, service).await["id"]
        .as_i64()
        .unwrap()
}

async fn cancel(ferry: &Ferry, id: i64) -> Reply {
    ferry
        .post(&format!("/api/v1/deployments/{id}/cancel"), json!({}))
        .await
}

#[tokio::test]
async fn a_cancelled_queued_deployment_never_runs() {
    let ferry = Ferry::shop().start().await;
    ferry.hold("worker");
    let first = deploy(&ferry, "worker").await;
    ferry.wait_state(first, "running").await;
    let second = deploy(&ferry, "worker").await;
    ferry.wait_state(second, "queued").await;

    let r = cancel(&ferry, second).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = r.json();
    assert_eq!(d["id"], second);
    assert_eq!(d["state"], "cancelled", "{d:#}");
    assert!(
        d["reason"].as_str().unwrap().contains("before it started"),
        "{d:#}"
    );
    assert!(d["finished_at"].is_string(), "{d:#}");

    ferry.release("worker");
    ferry.wait_state(first, "succeeded").await;
    ferry.settled("shop").await;
    let runs: Vec<i64> = ferry
        .runs_of("worker")
        .iter()
        .map(|r| r.deployment)
        .collect();
    assert_eq!(runs, [first], "the cancelled deployment never ran");
    assert_eq!(ferry.deployment(second).await["state"], "cancelled");
    let listed = ferry.deployments("state=cancelled").await;
    assert_eq!(listed.len(), 1, "{listed:#?}");
}

#[tokio::test]
async fn a_cancelled_running_command_loses_its_process_group_and_the_next_one_runs() {
    // A number no other process on the machine has on its command line.
    let marker = format!("5{:07}9", std::process::id() % 10_000_000);
    let config = format!(
        "{SHOP}{}",
        r#"
[apps.shop.services.long]
command = ["{dir}/long.sh"]
timeout = "10m"
"#
    );
    let script = r#"#!/bin/sh
echo "$FERRY_DEPLOYMENT_ID" >> "{dir}/long.log"
if [ -e "{dir}/long-quick" ]; then echo quick; exit 0; fi
sleep MARKER & sleep MARKER; wait
"#
    .replace("MARKER", &marker);
    let ferry = Ferry::with_config(&config)
        .script("long.sh", &script)
        .start()
        .await;

    let first = deploy(&ferry, "long").await;
    eventually("the sleeps to start", WAIT, async || {
        let found = procs_matching(&marker);
        if found.len() >= 2 {
            Ok(())
        } else {
            Err(format!("{found:?}"))
        }
    })
    .await;
    let second = deploy(&ferry, "long").await;
    ferry.wait_state(second, "queued").await;
    std::fs::write(ferry.path("long-quick"), "").unwrap();

    let asked = Instant::now();
    let r = cancel(&ferry, first).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["id"], first);
    let d = ferry.wait_state(first, "cancelled").await;
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "stopped at once, not at the 10 min timeout"
    );
    assert!(
        d["reason"].as_str().unwrap().contains("while it ran"),
        "{d:#}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = procs_matching(&marker);
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        left = procs_matching(&marker);
    }
    if !left.is_empty() {
        kill_matching(&marker);
        panic!("processes of the cancelled command survived: {left:?}");
    }
    let log = ferry.log(first).await;
    assert!(
        log.contains("cancelled: requested through the API; killed process group "),
        "{log}"
    );

    // The lane is free again: the queued deployment runs as usual.
    ferry.wait_state(second, "succeeded").await;
    let ran = std::fs::read_to_string(ferry.path("long.log")).unwrap();
    assert_eq!(ran, format!("{first}\n{second}\n"));

    // Once ended it is final: cancelling again is a conflict, and changes nothing.
    let again = cancel(&ferry, first).await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(ferry.deployment(first).await["state"], "cancelled");
}

#[tokio::test]
async fn an_ended_deployment_cannot_be_cancelled() {
    let ferry = Ferry::shop().start().await;
    let id = deploy(&ferry, "worker").await;
    let done = ferry.wait_state(id, "succeeded").await;

    let r = cancel(&ferry, id).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        r.error(),
        format!("deployment {id} has already ended: it is succeeded")
    );
    let after = ferry.deployment(id).await;
    assert_eq!(after, done, "a refused cancel changes nothing");

    let r = cancel(&ferry, 999_999).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.error(), "deployment not found");

    let r = ferry
        .api(
            Method::POST,
            &format!("/api/v1/deployments/{id}/cancel"),
            Some("wrong-admin"),
            None,
        )
        .await;
    assert_eq!(r.status, 401, "the admin token is required: {}", r.text);
}

#[tokio::test]
async fn ferry_cancel_cancels_through_the_api() {
    let ferry = Ferry::shop().start().await;
    ferry.hold("worker");
    let running = deploy(&ferry, "worker").await;
    ferry.wait_state(running, "running").await;
    let queued = deploy(&ferry, "worker").await;
    ferry.wait_state(queued, "queued").await;

    let out = ferry.cli(&["cancel", &queued.to_string()]).run().await;
    assert_eq!(
        out.success().trim(),
        format!("deployment {queued} cancelled")
    );
    assert_eq!(ferry.deployment(queued).await["state"], "cancelled");

    let out = ferry.cli(&["cancel", &running.to_string()]).run().await;
    assert_eq!(
        out.success().trim(),
        format!("deployment {running} is running: cancelling (its run is being stopped)")
    );
    let d: Value = ferry.wait_state(running, "cancelled").await;
    assert_eq!(d["exit_code"], Value::Null, "{d:#}");

    let out = ferry.cli(&["cancel", &running.to_string()]).run().await;
    let err = out.failure();
    assert!(
        err.contains("409") && err.contains("already ended: it is cancelled"),
        "{err}"
    );
    ferry.release("worker");
    assert_eq!(ferry.runs_of("worker").len(), 1, "only the first one ran");
}

#[tokio::test]
async fn the_state_filter_takes_state_names_only() {
    let ferry = Ferry::shop().start().await;
    let r = ferry
        .api(
            Method::GET,
            "/api/v1/deployments?state=done",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.error()
            .starts_with("unknown deployment state \"done\" (known: queued, running,"),
        "{}",
        r.text
    );
    assert_eq!(
        ferry.deployments("state=cancelled").await,
        Vec::<Value>::new()
    );
    assert_eq!(
        ferry.deliveries("state=whatever").await,
        Vec::<Value>::new()
    );
}
