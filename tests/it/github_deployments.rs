//! GitHub Deployments (`[apps.X.github]`) and GitHub `deployment` events, against a local
//! stand-in of GitHub's REST API ([`fake_github`]): it records every call and answers as
//! GitHub documents — 201 with a deployment id, or what the test scripts (500, 422 with a
//! message, 403 with a rate-limit reset, or no answer at all).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::fake_http::{Call, FakeHttp, Reply, Request};
use crate::support::*;

/// `[apps.shop.github] token` in these tests.
const TOKEN: &str = "ghp_test0123456789abcdef";
/// The first id the fake gives a deployment it creates.
const FIRST_ID: i64 = 9001;
/// The deployment id in the fixture `deployment-created`.
const EVENT_DEPLOYMENT: i64 = 145988746;
/// The commit the fixture `deployment-created` deploys.
const EVENT_SHA: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";

/// A local stand-in of GitHub's deployments API: `POST …/repos/O/R/deployments` creates a
/// deployment (ids from [`FIRST_ID`]), `POST …/deployments/ID/statuses` adds a status. The
/// replies scripted with [`FakeHttp::then`] go first, one per call, then GitHub's 201.
fn fake_github() -> FakeHttp {
    let next_id = AtomicI64::new(FIRST_ID);
    let fake = FakeHttp::start();
    fake.answer_with(move |r| Reply::json(201, created(&next_id, r)));
    fake
}

/// GitHub's 201 body for request `r` (the fields ferry may read), with the next id.
fn created(next_id: &AtomicI64, r: &Request) -> Value {
    let id = next_id.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_str(&r.body).unwrap_or_default();
    let path = &r.target;
    if path.ends_with("/deployments") {
        json!({"id": id, "sha": body["ref"], "ref": body["ref"], "environment": body["environment"],
               "statuses_url": format!("https://api.github.com{path}/{id}/statuses")})
    } else {
        json!({"id": id, "state": body["state"]})
    }
}

/// Whether `c` created a deployment (rather than posting a status).
fn is_create(c: &Call) -> bool {
    c.target.ends_with("/deployments")
}

/// [`SHOP`] reporting to the fake at `api_url`.
fn config(api_url: &str) -> String {
    format!(
        "{SHOP}\n[apps.shop.github]\ntoken = \"{TOKEN}\"\napi_url = \"{api_url}\"\nenvironment_url = \"https://shop.example.com\"\n"
    )
}

async fn ferry_for(fake: &FakeHttp) -> Ferry {
    Ferry::with_config(&config(&fake.url(""))).start().await
}

/// The states of the statuses posted to GitHub deployment `id`, in order.
fn statuses_of(calls: &[Call], id: i64) -> Vec<String> {
    let suffix = format!("/deployments/{id}/statuses");
    calls
        .iter()
        .filter(|c| c.ok() && c.target.ends_with(&suffix))
        .map(|c| c.json()["state"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The creation of the GitHub deployment of ferry deployment `ferry_id`, and the id the fake
/// gave it.
fn created_for(calls: &[Call], ferry_id: i64) -> (Call, i64) {
    calls
        .iter()
        .find(|c| c.ok() && is_create(c) && c.json()["payload"]["ferry"]["deployment"] == ferry_id)
        .map(|c| (c.clone(), c.reply_json()["id"].as_i64().expect("an id")))
        .unwrap_or_else(|| {
            panic!("no GitHub deployment created for deployment {ferry_id}: {calls:#?}")
        })
}

#[tokio::test]
async fn a_push_creates_a_github_deployment_and_posts_its_statuses() {
    let fake = fake_github();
    let ferry = ferry_for(&fake).await;
    let commit = sha(1);
    let (_, deployments) = ferry
        .hook("shop")
        .github("push")
        .body(push_payload(REPO, "master", &commit, &commit_time(1)))
        .signed(GITHUB_SECRET)
        .deliver()
        .await;
    let web = only(&deployments, "web");
    assert_eq!(web["state"], "succeeded");
    let id = web["id"].as_i64().unwrap();
    let calls = fake.wait_ok(4, WAIT).await;
    let (create, gh_id) = created_for(&calls, id);
    assert_eq!(create.target, "/repos/Codertocat/Hello-World/deployments");
    let body = create.json();
    assert_eq!(body["ref"], commit.as_str());
    assert_eq!(body["environment"], "production");
    assert_eq!(body["auto_merge"], false);
    assert_eq!(body["required_contexts"], json!([]));
    assert_eq!(body["task"], "deploy");
    assert_eq!(body["payload"]["ferry"]["app"], "shop");
    assert_eq!(body["payload"]["ferry"]["service"], "web");
    assert_eq!(calls[0].target, create.target, "the creation comes first");
    assert_eq!(
        statuses_of(&calls, gh_id),
        ["queued", "in_progress", "success"]
    );
    for c in &calls {
        assert_eq!(c.header("authorization"), format!("Bearer {TOKEN}"));
        assert_eq!(c.header("accept"), "application/vnd.github+json");
        assert_eq!(c.header("x-github-api-version"), "2022-11-28");
        assert!(c.header("user-agent").starts_with("ferry/"), "{c:?}");
    }
    let status = calls[calls.len() - 1].json();
    assert_eq!(
        status["log_url"],
        format!("http://127.0.0.1:0/deployments/{id}")
    );
    assert_eq!(status["environment_url"], "https://shop.example.com");
    let description = status["description"].as_str().unwrap();
    assert!(description.contains("succeeded"), "{description}");
    // `worker` follows no repository: GitHub hears nothing of it.
    assert_eq!(calls.len(), 4, "{calls:#?}");

    // The API shows the requests (bodies without the token); the log never holds the token.
    let list = ferry.get("/api/v1/notifications?app=shop").await;
    let list = list["notifications"].as_array().unwrap().clone();
    assert_eq!(list.len(), 4, "{list:#?}");
    assert!(
        list.iter()
            .all(|n| n["kind"] == "github" && n["state"] == "sent")
    );
    for n in &list {
        let full = ferry
            .get(&format!("/api/v1/notifications/{}", n["id"]))
            .await;
        assert!(!full.to_string().contains(TOKEN), "{full:#}");
    }
    assert!(!ferry.stderr_text().contains(TOKEN));
}

/// A signed push of `commit` to `master` of [`REPO`], newer with `n`; returns the delivery.
async fn push(ferry: &Ferry, n: u64) -> i64 {
    ferry
        .hook("shop")
        .github("push")
        .body(push_payload(
            REPO,
            "master",
            &sha(n),
            &commit_time(n as i64),
        ))
        .signed(GITHUB_SECRET)
        .send()
        .await
        .accepted()
}

/// The deployment of `web` that delivery `delivery` caused, once ended.
async fn web_of(ferry: &Ferry, delivery: i64) -> Value {
    only(&ferry.settle(delivery).await, "web").clone()
}

#[tokio::test]
async fn a_failing_deploy_ends_in_failure_with_its_reason() {
    let fake = fake_github();
    let ferry = ferry_for(&fake).await;
    ferry.fail("web");
    let web = web_of(&ferry, push(&ferry, 1).await).await;
    assert_eq!(web["state"], "failed");
    let calls = fake.wait_ok(4, WAIT).await;
    let (_, gh_id) = created_for(&calls, web["id"].as_i64().unwrap());
    assert_eq!(
        statuses_of(&calls, gh_id),
        ["queued", "in_progress", "failure"]
    );
    let last = calls.last().unwrap().json();
    let description = last["description"].as_str().unwrap();
    assert!(
        description.contains("failed: ") && description.contains('7'),
        "{description}"
    );
    assert!(description.chars().count() <= 140, "{description}");
}

/// A `deployment` event (the fixture: created in GitHub for `master` at [`EVENT_SHA`], to
/// `production`) deploys its commit and ferry posts the statuses on that deployment; it
/// creates none.
#[tokio::test]
async fn a_deployment_event_deploys_its_sha_and_reports_on_that_deployment() {
    let fake = fake_github();
    let ferry = ferry_for(&fake).await;
    let (_, deployments) = ferry
        .hook("shop")
        .fixture("deployment-created")
        .deliver()
        .await;
    let web = only(&deployments, "web");
    assert_eq!(web["state"], "succeeded");
    assert_eq!(web["commit"], EVENT_SHA);
    not_deployed(&deployments, "worker");
    let env = ferry.run_env(web["id"].as_i64().unwrap());
    assert_eq!(env["FERRY_EVENT"], "deployment");
    assert_eq!(env["FERRY_GIT_COMMIT"], EVENT_SHA);
    let calls = fake.wait_ok(3, WAIT).await;
    assert!(calls.iter().all(|c| !is_create(c)), "{calls:#?}");
    assert!(
        calls.iter().all(|c| c.target
            == format!("/repos/Codertocat/Hello-World/deployments/{EVENT_DEPLOYMENT}/statuses")),
        "{calls:#?}"
    );
    assert_eq!(
        statuses_of(&calls, EVENT_DEPLOYMENT),
        ["queued", "in_progress", "success"]
    );
}

/// The fixture's body with `environment` and `ref` changed (sent re-signed).
fn deployment_event(environment: &str, git_ref: &str) -> String {
    let mut v: Value = serde_json::from_slice(&fixture("deployment-created").body).unwrap();
    v["deployment"]["environment"] = json!(environment);
    v["deployment"]["ref"] = json!(git_ref);
    v.to_string()
}

/// A `deployment` event to another environment deploys nothing, and says why; one to this
/// app's environment for a ref the service does not follow deploys the named commit (the
/// branch filter does not apply: the deployment names an exact commit); one that ferry
/// created itself deploys nothing again.
#[tokio::test]
async fn a_deployment_event_for_another_environment_deploys_nothing() {
    let fake = fake_github();
    let ferry = ferry_for(&fake).await;
    let id = ferry
        .hook("shop")
        .github("deployment")
        .body(deployment_event("staging", "master"))
        .signed(GITHUB_SECRET)
        .send()
        .await
        .accepted();
    let delivery = ferry.wait_planned(id).await;
    assert_eq!(delivery["status"], "planned");
    assert_eq!(delivery["deployments"], json!([]));
    let error = delivery["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("\"staging\"") && error.contains("\"production\""),
        "{delivery:#}"
    );

    let (_, deployments) = ferry
        .hook("shop")
        .github("deployment")
        .body(deployment_event("production", "feature/x"))
        .signed(GITHUB_SECRET)
        .deliver()
        .await;
    let web = only(&deployments, "web");
    assert_eq!(web["state"], "succeeded");
    assert_eq!(web["commit"], EVENT_SHA);
    assert_eq!(web["git_ref"], "feature/x");
    fake.wait_ok(3, WAIT).await;

    // The deployment ferry created for that push comes back as a `deployment` event: its
    // payload names ferry's deployment, and it deploys nothing again.
    let mut own: Value = serde_json::from_str(&deployment_event("production", "master")).unwrap();
    own["deployment"]["payload"] =
        json!({"ferry": {"deployment": web["id"], "app": "shop", "service": "web"}});
    let id = ferry
        .hook("shop")
        .github("deployment")
        .body(own.to_string())
        .signed(GITHUB_SECRET)
        .send()
        .await
        .accepted();
    let delivery = ferry.wait_planned(id).await;
    assert_eq!(delivery["deployments"], json!([]));
    let error = delivery["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "created by ferry for its deployment {}",
            web["id"]
        )),
        "{delivery:#}"
    );
    ferry.settled("shop").await;
    assert_eq!(fake.calls().len(), 3, "nothing more to report");
}

/// Two quick pushes while a slow deploy runs: the first queued one is superseded by the
/// second before it starts, and its GitHub deployment goes `queued` → `inactive`.
#[tokio::test]
async fn a_superseded_deployment_becomes_inactive() {
    let fake = fake_github();
    let ferry = ferry_for(&fake).await;
    ferry.hold("web");
    let first = ferry.planned_deployment(push(&ferry, 1).await, "web").await;
    ferry
        .wait_state(first["id"].as_i64().unwrap(), "running")
        .await;
    let second = ferry.planned_deployment(push(&ferry, 2).await, "web").await;
    let third = ferry.planned_deployment(push(&ferry, 3).await, "web").await;
    ferry.release("web");
    let second = ferry
        .wait_state(second["id"].as_i64().unwrap(), "superseded")
        .await;
    ferry
        .wait_state(third["id"].as_i64().unwrap(), "succeeded")
        .await;
    // 3 deployments: 3 creations; statuses: 3 + 2 + 3.
    let calls = fake.wait_ok(11, WAIT).await;
    let (create, gh_id) = created_for(&calls, second["id"].as_i64().unwrap());
    assert_eq!(create.json()["ref"], sha(2).as_str());
    assert_eq!(statuses_of(&calls, gh_id), ["queued", "inactive"]);
    let (_, third_gh) = created_for(&calls, third["id"].as_i64().unwrap());
    assert_eq!(
        statuses_of(&calls, third_gh),
        ["queued", "in_progress", "success"]
    );
}

/// GitHub answers 500 once: the creation is tried again (with the outbox's backoff), and
/// the statuses wait behind it and follow in order.
#[tokio::test]
async fn a_500_is_retried_and_the_statuses_wait_their_turn() {
    let fake = fake_github();
    fake.then([Reply::json(500, json!({"message": "Server Error"}))]);
    let ferry = ferry_for(&fake).await;
    let web = web_of(&ferry, push(&ferry, 1).await).await;
    let calls = fake.wait_ok(4, WAIT).await;
    let all = fake.calls();
    assert_eq!(all[0].status(), Some(500));
    assert!(is_create(&all[0]) && is_create(&all[1]), "{all:#?}");
    let (_, gh_id) = created_for(&calls, web["id"].as_i64().unwrap());
    assert_eq!(
        statuses_of(&calls, gh_id),
        ["queued", "in_progress", "success"]
    );
    let list = ferry.get("/api/v1/notifications?app=shop").await;
    let creation = list["notifications"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (creation["attempts"].as_i64(), creation["state"].as_str()),
        (Some(2), Some("sent"))
    );
    assert_eq!(creation["last_status"], 201);
}

/// A 422 is GitHub refusing the request: recorded with GitHub's message and not tried
/// again; the statuses of that deployment are recorded dead with the reason, not sent.
#[tokio::test]
async fn a_422_is_recorded_with_githubs_message_and_not_retried() {
    let fake = fake_github();
    fake.then([Reply::json(
        422,
        json!({"message": "Validation Failed", "errors": [{"resource": "Deployment", "code": "custom", "field": "ref", "message": "No ref found for: c0ffee"}], "documentation_url": "https://docs.github.com/rest"}),
    )]);
    let ferry = ferry_for(&fake).await;
    let web = web_of(&ferry, push(&ferry, 1).await).await;
    assert_eq!(
        web["state"], "succeeded",
        "GitHub's refusal changes nothing of the deploy"
    );
    let dead = eventually("4 dead notifications", WAIT, async || {
        let list = ferry.get("/api/v1/notifications?state=dead").await;
        let list = list["notifications"].as_array().unwrap().clone();
        if list.len() == 4 {
            Ok(list)
        } else {
            Err(format!("{list:#?}"))
        }
    })
    .await;
    let creation = dead.last().unwrap();
    assert_eq!(creation["last_status"], 422);
    assert_eq!(creation["attempts"], 1);
    let error = creation["last_error"].as_str().unwrap();
    assert!(
        error.contains("Validation Failed") && error.contains("ref: No ref found for: c0ffee"),
        "{error}"
    );
    for status in &dead[..3] {
        let e = status["last_error"].as_str().unwrap();
        assert!(
            e.contains("creating the GitHub deployment failed for good")
                && e.contains("Validation Failed"),
            "{e}"
        );
        assert_eq!(status["attempts"], 1);
    }
    assert_eq!(fake.calls().len(), 1, "nothing tried again, no status sent");
    let out = ferry.cli(&["notifications", "--failed"]).run().await;
    let text = out.success();
    assert!(text.contains("Validation Failed"), "{text}");
}

/// A 403 with `x-ratelimit-remaining: 0` is tried again at `x-ratelimit-reset`, not before.
#[tokio::test]
async fn a_rate_limited_403_is_retried_after_the_reset() {
    let fake = fake_github();
    let reset = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 8;
    fake.then([Reply::json(
        403,
        json!({"message": "API rate limit exceeded for user ID 1."}),
    )
    .header("x-ratelimit-remaining", "0")
    .header("x-ratelimit-reset", &reset.to_string())]);
    let ferry = ferry_for(&fake).await;
    push(&ferry, 1).await;
    fake.wait_ok(4, Duration::from_secs(40)).await;
    let calls = fake.calls();
    assert_eq!(calls[0].status(), Some(403));
    let retried = calls[1]
        .wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        retried >= reset as f64 - 0.01,
        "retried at {retried}, reset at {reset}"
    );
    assert!(
        retried < reset as f64 + 5.0,
        "retried at {retried}, reset at {reset}"
    );
    let log = ferry.stderr_text();
    assert!(
        log.contains("answered 403 Forbidden (rate limited)"),
        "{log}"
    );
}

/// GitHub Enterprise: `api_url = "https://HOST/api/v3"`; every call goes under the prefix.
#[tokio::test]
async fn api_url_with_a_path_prefix() {
    let fake = fake_github();
    let ferry = Ferry::with_config(&config(&format!("{}/", fake.url("/api/v3"))))
        .start()
        .await;
    web_of(&ferry, push(&ferry, 1).await).await;
    let calls = fake.wait_ok(4, WAIT).await;
    assert_eq!(
        calls[0].target,
        "/api/v3/repos/Codertocat/Hello-World/deployments"
    );
    assert!(
        calls[1..].iter().all(|c| c
            .target
            .starts_with("/api/v3/repos/Codertocat/Hello-World/deployments/")
            && c.target.ends_with("/statuses")),
        "{calls:#?}"
    );
}

/// GitHub's API hangs: deploys go on at their own pace while its requests wait.
#[tokio::test]
async fn a_hanging_github_api_does_not_delay_deploys() {
    let fake = fake_github();
    fake.then(std::iter::repeat_n(Reply::Hang, 10));
    let ferry = ferry_for(&fake).await;
    let first = web_of(&ferry, push(&ferry, 1).await).await;
    assert_eq!(first["state"], "succeeded");
    fake.wait_calls(1, WAIT).await;
    let started = Instant::now();
    let second = web_of(&ferry, push(&ferry, 2).await).await;
    assert_eq!(second["state"], "succeeded");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let calls = fake.calls();
    assert_eq!(
        calls.len(),
        1,
        "the first request hangs; the queue waits behind it: {calls:#?}"
    );
    assert_eq!(calls[0].reply, Reply::Hang);
    assert!(is_create(&calls[0]));
}
