//! Outgoing notifications through the outbox (`[[notify]]`, Docker Hub's callback): what
//! arrives, in which order, signed how, and what happens when the receiver fails, hangs, is
//! down across a `kill -9`, or stays down until the notification is dead.
//!
//! The receivers are local HTTP listeners in the test ([`FakeHttp`]): they record every
//! request and answer as the test says (a status, or hang, or nothing listening).

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::fake_http::{Call, FakeHttp, Reply};
use crate::support::*;

/// The signing secret of the `[[notify]]` receivers here.
pub const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A receiver answering `reply` until told otherwise.
fn receiver(reply: Reply) -> FakeHttp {
    let receiver = FakeHttp::start();
    receiver.answer(reply);
    receiver
}

/// `code` with the body `ok` (as Slack answers).
fn status(code: u16) -> Reply {
    Reply::status(code).body("ok")
}

fn event_type(r: &Call) -> String {
    r.json()["type"].as_str().unwrap_or_default().to_string()
}

/// Verifies a Standard Webhooks message as the spec's libraries do (a Rust re-implementation:
/// HMAC-SHA256 over `id.timestamp.body` with the `whsec_` key, `v1,` base64, a timestamp within
/// 5 minutes). The unit tests check ferry's signing against the spec's published vector.
fn verify_standard(r: &Call) {
    let id = r.header("webhook-id");
    let ts = r.header("webhook-timestamp");
    assert!(id.starts_with("msg_"), "webhook-id {id:?}");
    let ts_secs: i64 = ts.parse().expect("webhook-timestamp in seconds");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (now - ts_secs).abs() < 300,
        "timestamp {ts_secs} vs now {now}"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(WHSEC.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let given = r.header("webhook-signature");
    assert!(
        given.split(' ').any(|s| s == expected),
        "signature {given:?}, expected {expected:?} for {}",
        r.body
    );
    verify_with_reference_library(r);
}

/// Also verifies with the reference library (`pip install standardwebhooks`) when this
/// machine has it; says so when it does not (the Rust check above still ran).
fn verify_with_reference_library(r: &Call) {
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
m = json.load(sys.stdin)
Webhook(m["secret"]).verify(m["body"], m["headers"])
print("verified")
"#;
    let input = serde_json::json!({"secret": WHSEC, "body": r.body, "headers": r.headers});
    let child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        reference_missing("python3");
        return;
    };
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes());
    let out = child.wait_with_output().expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named") {
        reference_missing("the Python package standardwebhooks (pip install standardwebhooks)");
        return;
    }
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("verified"),
        "the reference library refused it: {stderr}"
    );
}

/// CI installs the reference library (`.ci/run`), so there its absence fails the test (as
/// [`unavailable`] does); elsewhere the Rust check stands alone, and says so.
fn reference_missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        unavailable(what);
    }
    eprintln!("not checked with the reference library: {what} is missing");
}

/// [`SHOP`] and [`BLOG`] with `[[notify]]` entries (`entries` is TOML) and `server` lines.
fn config(server: &str, entries: &str) -> String {
    let base = SHOP.replace(
        "admin_token = \"${FERRY_ADMIN_TOKEN}\"\n",
        &format!("admin_token = \"${{FERRY_ADMIN_TOKEN}}\"\n{server}\n"),
    );
    format!("{base}{BLOG}\n{entries}")
}

/// A `[[notify]]` entry in the standard format for `url` (and `extra` TOML lines).
pub fn standard(url: &str, extra: &str) -> String {
    format!("[[notify]]\nurl = \"{url}\"\nsecret = \"{WHSEC}\"\n{extra}\n")
}

/// Redeploys `shop`'s `worker` (an unsigned redeploy of one service) and waits for it to end.
async fn deploy_worker(ferry: &Ferry) -> Value {
    let id = ferry
        .hook("shop")
        .query("services=worker")
        .send()
        .await
        .accepted();
    let deployments = ferry.settle(id).await;
    only(&deployments, "worker").clone()
}

fn types(list: &[Call]) -> Vec<String> {
    list.iter().map(event_type).collect()
}

#[tokio::test]
async fn a_deployments_events_arrive_in_order_as_signed_standard_webhooks() {
    let receiver = receiver(status(204));
    let ferry = Ferry::with_config(&config("", &standard(&receiver.url("/in"), "")))
        .start()
        .await;
    let worker = deploy_worker(&ferry).await;
    assert_eq!(worker["state"], "succeeded");
    let got = receiver.wait_ok(3, WAIT).await;
    assert_eq!(
        types(&got),
        [
            "deployment.queued",
            "deployment.started",
            "deployment.succeeded"
        ]
    );
    for r in &got {
        verify_standard(r);
        assert_eq!(r.header("content-type"), "application/json");
        let body = r.json();
        assert_eq!(body["data"]["id"], worker["id"]);
        assert_eq!(body["data"]["app"], "shop");
        assert_eq!(body["data"]["service"], "worker");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
        // `public_url` (here the configured listen address, port 0) names the links.
        assert_eq!(
            body["data"]["url"],
            format!("http://127.0.0.1:0/api/v1/deployments/{}", worker["id"])
        );
    }
    let states: Vec<String> = got
        .iter()
        .map(|r| r.json()["data"]["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["queued", "running", "succeeded"]);
    let ids: std::collections::BTreeSet<&str> =
        got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 3, "one id per message");

    // The API lists them, sent, with no URL or secret.
    let list = ferry.get("/api/v1/notifications?state=sent&app=shop").await;
    let list = list["notifications"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{list:#?}");
    let text = serde_json::to_string(&list).unwrap();
    assert!(!text.contains("/in") && !text.contains("whsec_"), "{text}");
    assert_eq!(list[0]["receiver"], format!("http://{}", receiver.addr()));
    assert_eq!(list[0]["event"], "deployment.succeeded", "newest first");
    assert_eq!(list[0]["attempts"], 1);
    let metrics = ferry
        .http()
        .get(ferry.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ferry_notifications{state=\"sent\"} 3")
            && metrics.contains("ferry_notifications{state=\"dead\"} 0"),
        "{metrics}"
    );
}

/// A receiver answering 500 twice: the first notification is tried again (same
/// `webhook-id`, signed afresh) and the ones behind it wait, so the receiver gets them in
/// order, each once.
#[tokio::test]
async fn failed_tries_are_retried_and_later_ones_wait_their_turn() {
    let receiver = receiver(status(500));
    let ferry = Ferry::with_config(&config("", &standard(&receiver.url("/in"), "")))
        .start()
        .await;
    deploy_worker(&ferry).await;
    receiver.wait_calls(2, WAIT).await;
    receiver.answer(status(200));
    let got = receiver.wait_ok(3, WAIT).await;
    let seen = receiver.calls();
    let first_id = seen[0].header("webhook-id");
    assert!(
        seen.iter()
            .filter(|r| !r.ok())
            .all(|r| r.header("webhook-id") == first_id),
        "only the head was tried while it failed: {seen:#?}"
    );
    assert_eq!(
        got[0].header("webhook-id"),
        first_id,
        "the retry keeps its id"
    );
    assert_eq!(
        types(&got),
        [
            "deployment.queued",
            "deployment.started",
            "deployment.succeeded"
        ]
    );
    for r in &seen {
        verify_standard(r);
    }
    let list = ferry.get("/api/v1/notifications?app=shop").await;
    let head = list["notifications"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(head["attempts"].as_i64().unwrap() >= 3, "{head:#}");
    assert_eq!(head["state"], "sent");
}

/// One receiver hangs. Another receiver gets every notification at once, and another
/// service's deploy is not held up; the hanging one gets its first notification again after
/// the 10 s timeout, under the same `webhook-id`, once it answers.
#[tokio::test]
async fn a_hanging_receiver_delays_only_its_own_queue() {
    let hanging = receiver(Reply::Hang);
    let fine = receiver(status(200));
    let entries = format!(
        "{}{}",
        standard(&hanging.url("/slow"), ""),
        standard(&fine.url("/fast"), "")
    );
    let ferry = Ferry::with_config(&config("", &entries)).start().await;
    deploy_worker(&ferry).await;
    fine.wait_ok(3, WAIT).await;
    assert_eq!(
        hanging.calls().len(),
        1,
        "the hanging one holds its first try"
    );
    // A deploy of another service goes through while the receiver hangs.
    let started = Instant::now();
    let id = ferry
        .hook("blog")
        .token("blog-token-123456")
        .send()
        .await
        .accepted();
    let deployments = ferry.settle(id).await;
    assert_eq!(only(&deployments, "site")["state"], "succeeded");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    fine.wait_ok(6, WAIT).await;
    assert_eq!(hanging.calls().len(), 1);

    hanging.answer(status(200));
    let got = hanging.wait_ok(6, Duration::from_secs(60)).await;
    let first = &hanging.calls()[0];
    assert_eq!(got[0].header("webhook-id"), first.header("webhook-id"));
    let waited = got[0].at - first.at;
    assert!(
        waited >= Duration::from_secs(10),
        "retried after the timeout: {waited:?}"
    );
    assert_eq!(types(&got)[..3], types(&fine.ok_calls())[..3]);
    let log = ferry.stderr_text();
    assert!(
        log.contains("webhook failed; will retry") && log.contains("timed out after 10s"),
        "{log}"
    );
}

/// Notifications pending while the receiver is down survive `kill -9`: after the restart
/// every one arrives, each once (one `webhook-id` each), in order.
#[tokio::test]
async fn pending_notifications_survive_kill_9_and_are_sent_once_each() {
    let receiver = FakeHttp::down();
    receiver.answer(status(200));
    let mut ferry = Ferry::with_config(&config("", &standard(&receiver.url("/in"), "")))
        .start()
        .await;
    deploy_worker(&ferry).await;
    eventually("a failed try", WAIT, async || {
        let list = ferry.get("/api/v1/notifications?state=pending").await;
        let tried = list["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["attempts"].as_i64() > Some(0));
        if tried {
            Ok(())
        } else {
            Err(format!("{list:#}"))
        }
    })
    .await;
    let uids = |list: Value| -> std::collections::BTreeSet<String> {
        list["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["uid"].as_str().unwrap().to_string())
            .collect()
    };
    let before = eventually("three notifications pending", WAIT, async || {
        let list = uids(ferry.get("/api/v1/notifications?state=pending").await);
        if list.len() == 3 {
            Ok(list)
        } else {
            Err(format!("{list:?}"))
        }
    })
    .await;
    ferry.kill9();
    receiver.up();
    ferry.restart().await;
    let got = receiver.wait_ok(3, WAIT).await;
    assert_eq!(
        types(&got),
        [
            "deployment.queued",
            "deployment.started",
            "deployment.succeeded"
        ]
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = receiver.calls();
    let ids: std::collections::BTreeSet<&str> =
        seen.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!((seen.len(), ids.len()), (3, 3), "each once: {seen:#?}");
    let sent: std::collections::BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    assert_eq!(sent, before, "the ids they had before the kill");
    for r in &seen {
        verify_standard(r);
    }
}

/// With a short `notify_retry_for`, a receiver that keeps failing makes the notification
/// `dead`: `ferry notifications --failed` and the API list it; a retry through the API sends
/// it (same `webhook-id`) once the receiver works; retrying a pending one is a 409.
#[tokio::test]
async fn a_dead_notification_is_listed_and_sent_again_on_request() {
    let receiver = receiver(status(500));
    let entry = standard(&receiver.url("/in"), "events = [\"deployment.succeeded\"]");
    let ferry = Ferry::with_config(&config("notify_retry_for = \"2s\"", &entry))
        .start()
        .await;
    deploy_worker(&ferry).await;
    let dead = eventually("a dead notification", WAIT, async || {
        let list = ferry.get("/api/v1/notifications?state=dead").await;
        match list["notifications"].as_array().unwrap().first() {
            Some(n) => Ok(n.clone()),
            None => Err(format!("{list:#}")),
        }
    })
    .await;
    assert_eq!(dead["event"], "deployment.succeeded");
    assert_eq!(dead["last_status"], 500);
    assert!(dead["attempts"].as_i64().unwrap() >= 2, "{dead:#}");
    let id = dead["id"].as_i64().unwrap();

    let out = ferry.cli(&["notifications", "--failed"]).run().await;
    out.success();
    assert!(out.stdout.contains(&id.to_string()), "{}", out.stdout);
    assert!(
        out.stdout.contains("deployment.succeeded") && out.stdout.contains("dead"),
        "{}",
        out.stdout
    );
    let everything = ferry.cli(&["notifications", "--app", "blog"]).run().await;
    everything.success();
    assert!(
        !everything.stdout.contains("deployment.succeeded"),
        "{}",
        everything.stdout
    );

    let retry = format!("/api/v1/notifications/{id}/retry");
    let r = ferry.post(&retry, Value::Null).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"], "pending");
    let again = ferry.post(&retry, Value::Null).await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(
        ferry
            .post("/api/v1/notifications/99999/retry", Value::Null)
            .await
            .status,
        404
    );

    receiver.answer(status(200));
    // It may have died once more meanwhile (the window is 2 s): retry until it is sent.
    let got = eventually("the retried notification to arrive", WAIT, async || {
        let got = receiver.ok_calls();
        if !got.is_empty() {
            return Ok(got);
        }
        let n = ferry.get(&format!("/api/v1/notifications/{id}")).await;
        if n["state"] == "dead" {
            ferry.post(&retry, Value::Null).await;
        }
        Err(format!("{n:#}"))
    })
    .await;
    assert_eq!(
        got[0].header("webhook-id"),
        receiver.calls()[0].header("webhook-id")
    );
    verify_standard(&got[0]);
    let n = ferry.get(&format!("/api/v1/notifications/{id}")).await;
    assert_eq!(n["body"]["type"], "deployment.succeeded");
}

/// `apps` and `events` select what an entry gets; `format = "slack"` sends `{"text": …}`
/// with a link to the deployment and no signature; a refused delivery is an event too.
#[tokio::test]
async fn entries_filter_by_app_and_event_and_slack_gets_text() {
    let blog_only = receiver(status(200));
    let chat = receiver(status(200));
    let entries = format!(
        "{}[[notify]]\nurl = \"{}\"\nformat = \"slack\"\napps = [\"shop\"]\nevents = [\"deployment.succeeded\", \"delivery.rejected\"]\n",
        standard(&blog_only.url("/blog"), "apps = [\"blog\"]"),
        chat.url("/services/T0/B0/XXXX")
    );
    let ferry = Ferry::with_config(&config("", &entries)).start().await;
    let worker = deploy_worker(&ferry).await;
    let got = chat.wait_ok(1, WAIT).await;
    let text = got[0].json()["text"].as_str().unwrap().to_string();
    let link = format!("http://127.0.0.1:0/api/v1/deployments/{}", worker["id"]);
    assert_eq!(
        text,
        format!(
            "shop/worker: <{link}|deployment {}> succeeded",
            worker["id"]
        )
    );
    assert_eq!(
        got[0].header("webhook-signature"),
        "",
        "slack messages are not signed"
    );

    // A push with a bad signature is refused: `delivery.rejected`, to the chat only.
    let r = ferry
        .hook("shop")
        .github("push")
        .body(push_payload(REPO, "master", &sha(1), &commit_time(1)))
        .signed("not the secret")
        .send()
        .await;
    assert_eq!(r.status, 401);
    let got = chat.wait_ok(2, WAIT).await;
    let text = got[1].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("shop: <") && text.contains("rejected"),
        "{text}"
    );

    let id = ferry
        .hook("blog")
        .token("blog-token-123456")
        .send()
        .await
        .accepted();
    ferry.settle(id).await;
    let got = blog_only.wait_ok(3, WAIT).await;
    assert!(
        got.iter().all(|r| r.json()["data"]["app"] == "blog"),
        "{got:#?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(chat.calls().len(), 2, "no blog events in the chat");
    assert!(
        !ferry.stderr_text().contains("XXXX"),
        "the Slack URL is a secret"
    );
}
