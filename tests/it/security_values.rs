//! Issue 8, parts 3 and 4: hostile values in a payload are rejected before anything deploys,
//! and an event time from the future does not order a service's deployments.

use serde_json::{Value, json};

use crate::support::*;

/// An app with no `verify` section (unsigned requests are its normal case), a git service and
/// a plain one; it allows the `git_ref` modifier, so bad values reach the value checks.
const OPEN: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.open]
token = "secret-token-1"
modifiers = ["services", "deployment_profile", "git_ref"]

[apps.open.services.web]
git = { repo = "Codertocat/Hello-World", branch = "master" }
command = ["{dir}/deploy.sh", "web"]
timeout = "60s"

[apps.open.services.worker]
command = ["{dir}/deploy.sh", "worker"]
timeout = "60s"
"#;

/// Waits until delivery `id` is planned or rejected; asserts it was rejected, deploys nothing,
/// and that its reason contains every one of `words`. Returns the reason.
async fn assert_rejected(ferry: &Ferry, id: i64, words: &[&str]) -> String {
    let d = ferry.wait_planned(id).await;
    assert_eq!(d["status"], "rejected", "{d:#}");
    assert_eq!(d["deployments"], json!([]), "{d:#}");
    let reason = d["error"].as_str().expect("a reason").to_string();
    for w in words {
        assert!(reason.contains(w), "{w:?} in the reason: {reason}");
    }
    assert!(!reason.contains('\n'), "one line: {reason:?}");
    reason
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formattable")
}

#[tokio::test]
async fn an_option_looking_commit_is_rejected_and_nothing_deploys() {
    let ferry = Ferry::shop().start().await;
    let root = ferry.dir_str();
    let evil = format!("--upload-pack=touch {root}/pwned");
    let mut push = push_value(REPO, "master", &sha(1), &commit_time(1));
    push["after"] = json!(evil);
    push["head_commit"]["id"] = json!(evil);
    push["commits"][0]["id"] = json!(evil);
    let id = ferry.signed_push(&push).await;

    let reason = assert_rejected(
        &ferry,
        id,
        &[&evil, "is not a commit id (40 or 64 hex digits)"],
    )
    .await;
    assert!(reason.starts_with("commit"), "names the field: {reason}");

    // `ferry deliveries` shows it too.
    let out = ferry.cli(&["deliveries", "shop"]).run().await;
    let stdout = out.success();
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("rejected") && l.contains("is not a commit id")),
        "{stdout}"
    );

    ferry.settled("shop").await;
    assert_eq!(ferry.runs(), vec![]);
    assert!(!ferry.path("pwned").exists());

    // A good push afterwards deploys as usual (nothing was left half-planned).
    let good = ferry.push("master", &sha(2), &commit_time(2)).await;
    let web = only(&ferry.settle(good).await, "web").clone();
    assert_eq!(web["state"], "succeeded", "{web:#}");
}

#[tokio::test]
async fn refs_with_a_newline_or_a_leading_dash_are_rejected() {
    let ferry = Ferry::shop().start().await;
    for (full_ref, words) in [
        // JSON "\n": a second line in FERRY_GIT_REF.
        (
            "refs/heads/master\nFERRY_GIT_COMMIT=x",
            vec!["ref:", "\\n", "control character"],
        ),
        ("--upload-pack=x", vec!["ref:", "starts with '-'"]),
        ("refs/heads/-f", vec!["branch:", "starts with '-'"]),
        ("refs/tags/-x", vec!["tag:", "starts with '-'"]),
        ("refs/heads/a..b", vec!["ref:", "'..'"]),
    ] {
        let mut push = push_value(REPO, "master", &sha(1), &commit_time(1));
        push["ref"] = json!(full_ref);
        let id = ferry.signed_push(&push).await;
        assert_rejected(&ferry, id, &words).await;
    }
    ferry.settled("shop").await;
    assert_eq!(ferry.runs(), vec![]);
}

/// The checks are the planner's, whatever the sender: an unsigned GitLab push with a hostile
/// `checkout_sha` is rejected like a GitHub one.
#[tokio::test]
async fn every_sender_is_checked_in_the_same_place() {
    let ferry = Ferry::with_config(OPEN).start().await;
    let body = json!({
        "object_kind": "push", "ref": "refs/heads/master",
        "after": "-oProxyCommand=id", "checkout_sha": "-oProxyCommand=id",
        "project": {"path_with_namespace": REPO},
        "commits": [{"id": "-oProxyCommand=id", "timestamp": now_rfc3339()}],
    });
    let id = ferry
        .hook("open")
        .header("X-Gitlab-Event", "Push Hook")
        .json(&body)
        .send()
        .await
        .accepted();
    assert_rejected(&ferry, id, &["-oProxyCommand=id", "is not a commit id"]).await;
    ferry.settled("open").await;
    assert_eq!(ferry.runs(), vec![]);
}

#[tokio::test]
async fn a_commit_dated_2999_does_not_make_later_pushes_stale() {
    let ferry = Ferry::shop().start().await;
    let bomb = ferry.push("master", &sha(1), "2999-01-01T00:00:00Z").await;
    let web = only(&ferry.settle(bomb).await, "web").clone();
    assert_eq!(web["state"], "succeeded", "{web:#}");
    let d = ferry.delivery(bomb).await;
    assert_eq!(d["status"], "planned", "{d:#}");
    let note = d["note"]
        .as_str()
        .unwrap_or_else(|| panic!("a note: {d:#}"));
    assert!(
        note.contains("2999-01-01T00:00:00Z") && note.contains("time received"),
        "{note}"
    );
    // Ordered by the time received instead.
    assert!(
        ts_ms(&web["event_time"]) <= ts_ms(&d["received_at"]) + 1,
        "{web:#} {d:#}"
    );

    // A push made now, after the bomb was received, deploys.
    let next = ferry.push("master", &sha(2), &now_rfc3339()).await;
    let web = only(&ferry.settle(next).await, "web").clone();
    assert_eq!(web["state"], "succeeded", "not stale: {web:#}");
    assert_eq!(web["commit"], sha(2).as_str());
    assert_eq!(ferry.delivery(next).await["note"], Value::Null);

    // An older commit is still stale: only the future is not trusted.
    let old = ferry.push("master", &sha(3), &commit_time(3)).await;
    let web = only(&ferry.settle(old).await, "web").clone();
    assert_eq!(web["state"], "skipped", "{web:#}");
    assert!(
        web["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("stale")),
        "{web:#}"
    );
}

/// Also while the 2999 deployment is only queued (staleness counts queued deployments too).
#[tokio::test]
async fn a_queued_deployment_dated_2999_does_not_make_the_next_push_stale() {
    let ferry = Ferry::shop().start().await;
    ferry.hold("web");
    // A first deployment keeps the lane busy, so the next two are planned while it runs.
    let first = ferry.push("master", &sha(1), &commit_time(1)).await;
    let running = ferry.planned_deployment(first, "web").await;
    ferry.wait_run(running["id"].as_i64().unwrap()).await;
    let bomb = ferry.push("master", &sha(2), "2999-01-01T00:00:00Z").await;
    let next = ferry.push("master", &sha(3), &now_rfc3339()).await;
    let web = ferry.planned_deployment(next, "web").await;
    assert_eq!(web["state"], "queued", "not stale: {web:#}");
    ferry.release("web");
    let web = only(&ferry.settle(next).await, "web").clone();
    assert_eq!(web["state"], "succeeded", "{web:#}");
    ferry.settle(bomb).await;
}

#[tokio::test]
async fn a_git_ref_modifier_that_is_no_ref_is_refused_with_400() {
    let ferry = Ferry::with_config(OPEN).start().await;
    for bad in ["-x", "--upload-pack%3Dx", "main%0Ax", "a..b", "a%20b"] {
        let r = ferry
            .hook("open")
            .query(&format!("services=web&git_ref={bad}"))
            .send()
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        let e = r.error();
        assert!(
            e.starts_with("git_ref: ") && e.contains("is neither a ref name nor a commit id"),
            "{bad}: {e}"
        );
    }
    // The API's manual deploy takes the same rule.
    let r = ferry
        .post("/api/v1/apps/open/deploy", json!({"ref": "-x"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("git_ref"), "{}", r.text);

    // Refs and commit ids are still taken.
    for good in ["v2.3.4", "refs/heads/main", &sha(7)] {
        let id = ferry
            .hook("open")
            .query(&format!("services=web&git_ref={good}"))
            .send()
            .await
            .accepted();
        let web = only(&ferry.settle(id).await, "web").clone();
        assert_eq!(web["state"], "succeeded", "{web:#}");
        assert_eq!(web["git_ref"], good);
    }
    ferry.settled("open").await;
    assert_eq!(ferry.runs().len(), 3);
}

/// The lanes' last look: a `FERRY_*` value with a control character never reaches a command,
/// whatever put it there (here the config itself names a profile with a line break).
#[tokio::test]
async fn no_ferry_value_with_a_control_character_reaches_a_command() {
    let config = format!("{OPEN}\n[apps.open.profiles.\"two\\nlines\"]\nservices = [\"worker\"]\n");
    let ferry = Ferry::with_config(&config).start().await;
    let (_, deployments) = ferry
        .hook("open")
        .query("deployment_profile=two%0Alines")
        .deliver()
        .await;
    let worker = only(&deployments, "worker");
    assert_eq!(worker["state"], "failed", "{worker:#}");
    let reason = worker["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("FERRY_PROFILE") && reason.contains("control character"),
        "{reason}"
    );
    ferry.settled("open").await;
    assert_eq!(ferry.runs(), vec![]);
}
