//! Commit statuses on GitLab, Gitea/Forgejo and Bitbucket Cloud (`[apps.X.gitlab]`,
//! `[apps.X.gitea]`, `[apps.X.bitbucket]`): for a deployment caused by a push from that host,
//! each state change is posted to the host's commit-status endpoint, in order, with the
//! host's state names, the context `ferry/APP/SERVICE`, a link to the deployment and the
//! configured token; refusals are recorded and not retried, failures are retried.
//!
//! The hosts cannot run here: [`fake_host`] is a local HTTP server ([`FakeHttp`]) that behaves
//! like their documented endpoints (records each call's method, raw path, headers and body;
//! answers 201, or what the test scripted: a 4xx with the host's JSON message, a 403/429 rate
//! limit, 500).

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fake_http::{Call, FakeHttp, Reply};
use crate::support::*;

const GITLAB_SECRET: &str = "gitlab-hook-secret";
const GITEA_SECRET: &str = "gitea-hook-secret";
const BITBUCKET_SECRET: &str = "bitbucket-hook-secret";
/// The access tokens ferry posts with (never to be seen in the API or the logs).
const GITLAB_TOKEN: &str = "glpat-Zx81TokenNeverShown";
const GITEA_TOKEN: &str = "gta-7c1dTokenNeverShown";
const BITBUCKET_TOKEN: &str = "ATCTT3xFfGN0TokenNeverShown";
const PUBLIC_URL: &str = "https://ferry.example.com";

/// A local stand-in for a host's commit-status API: answers `script` in turn, then 201 with
/// a small JSON body.
fn fake_host(script: Vec<Reply>) -> FakeHttp {
    let fake = FakeHttp::start();
    fake.then(script)
        .answer(Reply::json(201, json!({"id": 1, "status": "created"})));
    fake
}

fn hex_hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The three hosts, with what a test needs to drive and check each.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Host {
    Gitlab,
    Gitea,
    Bitbucket,
}

impl Host {
    /// The repository the service follows (GitLab's in a subgroup, so its path has two `/`).
    fn repo(self) -> &'static str {
        match self {
            Host::Gitlab => "acme/platform/shop",
            Host::Gitea | Host::Bitbucket => "acme/shop",
        }
    }

    /// The service's name (Bitbucket's makes a context longer than its 40-character `key`).
    fn service(self) -> &'static str {
        match self {
            Host::Bitbucket => "storefront-web-frontend-europe-west",
            Host::Gitlab | Host::Gitea => "web",
        }
    }

    /// The config's table for this host, pointing at `fake`.
    fn table(self, fake: &FakeHttp) -> String {
        match self {
            Host::Gitlab => format!(
                "[apps.shop.gitlab]\ntoken = \"{GITLAB_TOKEN}\"\napi_url = \"{}\"\n",
                fake.url("/api/v4")
            ),
            Host::Gitea => format!(
                "[apps.shop.gitea]\ntoken = {{ file = \"gitea-token\" }}\napi_url = \"{}/\"\n",
                fake.url("/api/v1")
            ),
            Host::Bitbucket => format!(
                "[apps.shop.bitbucket]\ntoken = \"${{BB_TOKEN}}\"\napi_url = \"{}\"\n",
                fake.url("")
            ),
        }
    }

    /// The path each status of `commit` must be posted to.
    fn path(self, commit: &str) -> String {
        match self {
            Host::Gitlab => format!("/api/v4/projects/acme%2Fplatform%2Fshop/statuses/{commit}"),
            Host::Gitea => format!("/api/v1/repos/acme/shop/statuses/{commit}"),
            Host::Bitbucket => {
                format!("/2.0/repositories/acme/shop/commit/{commit}/statuses/build")
            }
        }
    }

    /// The header that must carry the token, and its value.
    fn auth(self) -> (&'static str, String) {
        match self {
            Host::Gitlab => ("private-token", GITLAB_TOKEN.to_string()),
            Host::Gitea => ("authorization", format!("token {GITEA_TOKEN}")),
            Host::Bitbucket => ("authorization", format!("Bearer {BITBUCKET_TOKEN}")),
        }
    }

    fn token(self) -> &'static str {
        match self {
            Host::Gitlab => GITLAB_TOKEN,
            Host::Gitea => GITEA_TOKEN,
            Host::Bitbucket => BITBUCKET_TOKEN,
        }
    }

    /// The host's states for queued, running, and an end that `succeeded` or failed.
    fn states(self, succeeded: bool) -> [&'static str; 3] {
        match (self, succeeded) {
            (Host::Gitlab, true) => ["pending", "running", "success"],
            (Host::Gitlab, false) => ["pending", "running", "failed"],
            (Host::Gitea, true) => ["pending", "pending", "success"],
            (Host::Gitea, false) => ["pending", "pending", "failure"],
            (Host::Bitbucket, true) => ["INPROGRESS", "INPROGRESS", "SUCCESSFUL"],
            (Host::Bitbucket, false) => ["INPROGRESS", "INPROGRESS", "FAILED"],
        }
    }

    /// The body field holding the context, and the one holding the link.
    fn context_field(self) -> &'static str {
        match self {
            Host::Gitlab | Host::Bitbucket => "name",
            Host::Gitea => "context",
        }
    }

    fn link_field(self) -> &'static str {
        match self {
            Host::Gitlab | Host::Gitea => "target_url",
            Host::Bitbucket => "url",
        }
    }

    /// A refusal as the host words it (GitLab's backwards move, Gitea's validation error,
    /// Bitbucket's error object), and the message ferry must record from it.
    fn refusal(self) -> (Reply, &'static str) {
        match self {
            Host::Gitlab => (
                Reply::json(
                    400,
                    json!({"message": "Cannot transition status via :enqueue from :running"}),
                ),
                "Cannot transition status via :enqueue from :running",
            ),
            Host::Gitea => (
                Reply::json(
                    422,
                    json!({"message": "state: invalid commit status state", "url": "https://git.example.com/api/swagger"}),
                ),
                "state: invalid commit status state",
            ),
            Host::Bitbucket => (
                Reply::json(
                    400,
                    json!({"type": "error", "error": {"message": "Bad request", "detail": "url: This field is required."}}),
                ),
                "Bad request (url: This field is required.)",
            ),
        }
    }

    /// Sends a signed push of `commit` (the `n`th: newer for a larger `n`) from this host.
    async fn push(self, ferry: &Ferry, commit: &str, n: i64) -> i64 {
        let time = commit_time(n);
        let (body, headers): (String, Vec<(&str, String)>) = match self {
            Host::Gitlab => {
                let body = json!({
                    "object_kind": "push", "event_name": "push", "ref": "refs/heads/main",
                    "before": sha(9000 + n as u64), "after": commit, "checkout_sha": commit,
                    "project": {"path_with_namespace": self.repo()},
                    "commits": [{"id": commit, "timestamp": time}], "total_commits_count": 1,
                })
                .to_string();
                let headers = vec![
                    ("X-Gitlab-Event", "Push Hook".to_string()),
                    ("X-Gitlab-Token", GITLAB_SECRET.to_string()),
                ];
                (body, headers)
            }
            Host::Gitea => {
                let body = push_payload(self.repo(), "main", commit, &time);
                let headers = vec![
                    ("X-Gitea-Event", "push".to_string()),
                    ("X-Gitea-Delivery", unique("gitea")),
                    ("X-Gitea-Signature", hex_hmac(GITEA_SECRET, body.as_bytes())),
                ];
                (body, headers)
            }
            Host::Bitbucket => {
                let body = json!({
                    "repository": {"full_name": self.repo()},
                    "push": {"changes": [{
                        "new": {"type": "branch", "name": "main", "target": {"hash": commit, "date": time}},
                        "old": {"type": "branch", "name": "main", "target": {"hash": sha(9000 + n as u64)}},
                        "forced": false,
                    }]},
                })
                .to_string();
                let headers = vec![
                    ("X-Event-Key", "repo:push".to_string()),
                    ("X-Request-UUID", unique("bitbucket")),
                    (
                        "X-Hub-Signature",
                        format!("sha256={}", hex_hmac(BITBUCKET_SECRET, body.as_bytes())),
                    ),
                ];
                (body, headers)
            }
        };
        let mut request = ferry
            .hook("shop")
            .header("Content-Type", "application/json");
        for (k, v) in &headers {
            request = request.header(k, v);
        }
        request.body(body).send().await.accepted()
    }
}

/// An app `shop` that verifies every sender, with one git service following `host`'s
/// repository on `main`, and `tables` (TOML) after it.
fn config(host: Host, tables: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "{PUBLIC_URL}"
data_dir = "{{dir}}/data"
admin_token = "${{FERRY_ADMIN_TOKEN}}"

[apps.shop]
token = "secret-token-1"

[apps.shop.verify]
github = "{GITHUB_SECRET}"
gitlab = "{GITLAB_SECRET}"
gitea = "{GITEA_SECRET}"
bitbucket = "{BITBUCKET_SECRET}"

[apps.shop.services.{service}]
git = {{ repo = "{repo}", branch = "main" }}
command = ["{{dir}}/deploy.sh"]
timeout = "60s"

{tables}
"#,
        service = host.service(),
        repo = host.repo(),
    )
}

/// A ferry whose app `shop` posts `host`'s statuses to `fake`.
async fn ferry_for(host: Host, fake: &FakeHttp) -> Ferry {
    let builder = Ferry::with_config(&config(host, &host.table(fake)))
        .env("BB_TOKEN", BITBUCKET_TOKEN)
        .script("gitea-token", &format!("{GITEA_TOKEN}\n"));
    builder.start().await
}

/// Checks that `calls` are `host`'s three statuses of `deployment` (ending as `succeeded`
/// says), posted as the host's API wants them.
fn check_sequence(host: Host, calls: &[Call], deployment: &Value, succeeded: bool) {
    let id = deployment["id"].as_i64().expect("id");
    let commit = deployment["commit"].as_str().expect("commit");
    let states: Vec<String> = calls
        .iter()
        .map(|c| c.json()["state"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(states, host.states(succeeded), "{calls:#?}");
    let context = format!("ferry/shop/{}", host.service());
    let (auth_header, auth_value) = host.auth();
    for c in calls {
        assert_eq!(c.method, "POST");
        assert_eq!(c.target, host.path(commit), "{c:#?}");
        assert_eq!(c.header(auth_header), auth_value);
        assert_eq!(c.header("content-type"), "application/json");
        let body = c.json();
        assert_eq!(body[host.context_field()], context, "{body}");
        assert_eq!(
            body[host.link_field()],
            format!("{PUBLIC_URL}/api/v1/deployments/{id}")
        );
        let description = body["description"].as_str().expect("description");
        assert!(
            description.starts_with(&format!("Deployment {id} "))
                && description.chars().count() <= 140,
            "{description:?}"
        );
        let text = serde_json::to_string(&body).unwrap();
        assert!(!text.contains(host.token()), "no token in the body: {text}");
    }
    let last = calls[2].json()["description"].to_string();
    let end = if succeeded {
        format!("\"Deployment {id} succeeded\"")
    } else {
        format!("\"Deployment {id} failed: command exited with status 7")
    };
    assert!(last.starts_with(&end), "{last} should start with {end}");
    match host {
        Host::Gitlab => assert!(calls.iter().all(|c| c.json()["ref"] == "main")),
        Host::Gitea => {}
        Host::Bitbucket => {
            let key = calls[0].json()["key"].as_str().expect("key").to_string();
            assert!(key.chars().count() <= 40 && key != context, "{key:?}");
            assert_eq!((key.len(), &key[..31]), (40, &context[..31]), "{key:?}");
            assert!(
                calls.iter().all(|c| c.json()["key"] == key),
                "one key for all"
            );
        }
    }
}

/// A push's deployment posts queued, running, succeeded; a failing one ends failed. Nothing
/// in the API or the log shows the token.
async fn statuses_follow_deployments(host: Host) {
    let fake = fake_host(Vec::new());
    let ferry = ferry_for(host, &fake).await;
    let id = host.push(&ferry, &sha(1), 1).await;
    let ok = only(&ferry.settle(id).await, host.service()).clone();
    assert_eq!(ok["state"], "succeeded", "{ok:#}");
    let calls = fake.wait_ok(3, WAIT).await;
    check_sequence(host, &calls[..3], &ok, true);

    ferry.fail(host.service());
    let id = host.push(&ferry, &sha(2), 2).await;
    let failed = only(&ferry.settle(id).await, host.service()).clone();
    assert_eq!(failed["state"], "failed", "{failed:#}");
    let calls = fake.wait_ok(6, WAIT).await;
    check_sequence(host, &calls[3..6], &failed, false);
    assert_eq!(fake.calls().len(), 6, "each status once");

    let list = ferry.get("/api/v1/notifications?app=shop").await;
    let list = list["notifications"].as_array().expect("list").clone();
    assert_eq!(list.len(), 6, "{list:#?}");
    assert!(
        list.iter()
            .all(|n| n["state"] == "sent" && n["attempts"] == 1),
        "{list:#?}"
    );
    let one = ferry
        .get(&format!("/api/v1/notifications/{}", list[0]["id"]))
        .await;
    assert_eq!(one["receiver"], format!("http://{}", fake.addr()));
    let text = format!("{list:?}{one}{}", ferry.stderr_text());
    assert!(!text.contains(host.token()), "the token leaked: {text}");
}

#[tokio::test]
async fn gitlab_statuses_follow_deployments() {
    statuses_follow_deployments(Host::Gitlab).await;
}

#[tokio::test]
async fn gitea_statuses_follow_deployments() {
    statuses_follow_deployments(Host::Gitea).await;
}

#[tokio::test]
async fn bitbucket_statuses_follow_deployments() {
    statuses_follow_deployments(Host::Bitbucket).await;
}

/// A 500 is tried again (the same status, first), and the statuses behind it wait.
async fn a_server_error_is_retried(host: Host) {
    let fake = fake_host(vec![Reply::json(
        500,
        json!({"message": "500 Internal Server Error"}),
    )]);
    let ferry = ferry_for(host, &fake).await;
    let id = host.push(&ferry, &sha(1), 1).await;
    let d = only(&ferry.settle(id).await, host.service()).clone();
    let ok = fake.wait_ok(3, WAIT).await;
    check_sequence(host, &ok, &d, true);
    let calls = fake.calls();
    assert_eq!(calls.len(), 4, "{calls:#?}");
    assert_eq!(calls[0].status(), Some(500));
    assert_eq!(
        calls[0].body, calls[1].body,
        "the failed status is sent again first"
    );
    let list = ferry.get("/api/v1/notifications?app=shop").await;
    let queued = list["notifications"]
        .as_array()
        .expect("list")
        .last()
        .expect("one")
        .clone();
    assert_eq!(queued["event"], "deployment.queued");
    assert_eq!(queued["state"], "sent", "{queued:#}");
    assert_eq!(queued["attempts"], 2, "{queued:#}");
}

#[tokio::test]
async fn gitlab_server_error_is_retried() {
    a_server_error_is_retried(Host::Gitlab).await;
}

#[tokio::test]
async fn gitea_server_error_is_retried() {
    a_server_error_is_retried(Host::Gitea).await;
}

#[tokio::test]
async fn bitbucket_server_error_is_retried() {
    a_server_error_is_retried(Host::Bitbucket).await;
}

/// A 4xx is recorded with the host's message, as dead, and not tried again; the statuses
/// behind it go on.
async fn a_refusal_is_recorded_not_retried(host: Host) {
    let (refusal, message) = host.refusal();
    let status = refusal.code().expect("a status");
    let fake = fake_host(vec![refusal]);
    let ferry = ferry_for(host, &fake).await;
    let id = host.push(&ferry, &sha(1), 1).await;
    let d = only(&ferry.settle(id).await, host.service()).clone();
    let ok = fake.wait_ok(2, WAIT).await;
    let calls = fake.calls();
    assert_eq!(
        calls.len(),
        3,
        "the refused status is not sent again: {calls:#?}"
    );
    assert_eq!(calls[0].status(), Some(status));
    assert_eq!(calls[0].json()["state"], host.states(true)[0]);
    let later: Vec<String> = ok
        .iter()
        .map(|c| c.json()["state"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(
        later,
        host.states(true)[1..],
        "the statuses behind it went on"
    );
    let dead = ferry.get("/api/v1/notifications?app=shop&state=dead").await;
    let dead = dead["notifications"].as_array().expect("list").clone();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let n = &dead[0];
    assert_eq!(n["event"], "deployment.queued");
    assert_eq!(n["deployment_id"], d["id"]);
    assert_eq!(n["attempts"], 1);
    assert_eq!(n["last_status"], status);
    let error = n["last_error"].as_str().expect("last_error");
    assert!(error.contains(message), "{error:?}");
    // The CLI shows it among the failed ones.
    let out = ferry.cli(&["notifications", "--failed"]).run().await;
    assert!(out.success().contains(message), "{out:#?}");
}

#[tokio::test]
async fn gitlab_refusal_is_recorded_not_retried() {
    a_refusal_is_recorded_not_retried(Host::Gitlab).await;
}

#[tokio::test]
async fn gitea_refusal_is_recorded_not_retried() {
    a_refusal_is_recorded_not_retried(Host::Gitea).await;
}

#[tokio::test]
async fn bitbucket_refusal_is_recorded_not_retried() {
    a_refusal_is_recorded_not_retried(Host::Bitbucket).await;
}

/// Rate limits are waited out, not given up on: a 429 with `Retry-After`, then a 403 that
/// says no requests remain until `RateLimit-Reset` (GitLab's headers).
#[tokio::test]
async fn rate_limits_are_retried_after_the_wait() {
    let reset = (time::OffsetDateTime::now_utc().unix_timestamp() + 2).to_string();
    let fake = fake_host(vec![
        Reply::json(429, json!({"message": "429 Too Many Requests"})).header("Retry-After", "1"),
        Reply::json(403, json!({"message": "403 Forbidden"}))
            .header("RateLimit-Remaining", "0")
            .header("RateLimit-Reset", &reset),
    ]);
    let ferry = ferry_for(Host::Gitlab, &fake).await;
    let id = Host::Gitlab.push(&ferry, &sha(1), 1).await;
    let d = only(&ferry.settle(id).await, "web").clone();
    let ok = fake.wait_ok(3, WAIT).await;
    check_sequence(Host::Gitlab, &ok, &d, true);
    let calls = fake.calls();
    assert_eq!(calls.len(), 5, "{calls:#?}");
    assert!(
        calls[..3].iter().all(|c| c.body == calls[0].body),
        "{calls:#?}"
    );
    let list = ferry.get("/api/v1/notifications?app=shop").await;
    let queued = list["notifications"]
        .as_array()
        .expect("list")
        .last()
        .expect("one")
        .clone();
    assert_eq!(
        (queued["state"].as_str(), queued["attempts"].as_i64()),
        (Some("sent"), Some(3)),
        "{queued:#}"
    );
}

/// Statuses go only to the host the push came from: a GitHub push to an app with only
/// `[apps.X.gitlab]` posts nothing (the GitLab push after it shows the queue got that far).
#[tokio::test]
async fn a_github_push_posts_nothing_to_gitlab() {
    let fake = fake_host(Vec::new());
    // Gitea's service: `web` following acme/shop.
    let config = config(Host::Gitea, &Host::Gitlab.table(&fake));
    let ferry = Ferry::with_config(&config).start().await;
    let github = ferry
        .hook("shop")
        .github("push")
        .body(push_payload("acme/shop", "main", &sha(1), &commit_time(1)))
        .signed(GITHUB_SECRET)
        .send()
        .await
        .accepted();
    let d = only(&ferry.settle(github).await, "web").clone();
    assert_eq!(d["state"], "succeeded", "{d:#}");
    // A GitLab push of the same repository (GitLab names it the same here).
    let gitlab = json!({
        "object_kind": "push", "ref": "refs/heads/main", "after": sha(2), "checkout_sha": sha(2),
        "project": {"path_with_namespace": "acme/shop"},
        "commits": [{"id": sha(2), "timestamp": commit_time(2)}],
    });
    let id = ferry
        .hook("shop")
        .json(&gitlab)
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", GITLAB_SECRET)
        .send()
        .await
        .accepted();
    ferry.settle(id).await;
    let calls = fake.wait_ok(3, WAIT).await;
    assert!(
        calls
            .iter()
            .all(|c| c.target.ends_with(&format!("/statuses/{}", sha(2)))),
        "only the GitLab push's deployment: {calls:#?}"
    );
    let list = ferry.get("/api/v1/notifications?app=shop").await;
    let list = list["notifications"].as_array().expect("list").clone();
    assert!(
        list.iter().all(|n| n["deployment_id"] != d["id"]),
        "{list:#?}"
    );
}

/// Bitbucket Data Center has another API: its pushes deploy but post nothing to the Cloud
/// endpoint (the Cloud push after it shows the queue got that far).
#[tokio::test]
async fn a_bitbucket_data_center_push_posts_nothing() {
    let fake = fake_host(Vec::new());
    let ferry = ferry_for(Host::Bitbucket, &fake).await;
    // Data Center names repositories PROJECT/slug; the service follows them without regard to case.
    let body = json!({
        "eventKey": "repo:refs_changed", "date": commit_time(1),
        "repository": {"slug": "shop", "project": {"key": "ACME"}},
        "changes": [{"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"},
                     "refId": "refs/heads/main", "fromHash": sha(9000), "toHash": sha(1), "type": "UPDATE"}],
    })
    .to_string();
    let id = ferry
        .hook("shop")
        .header("Content-Type", "application/json")
        .header("X-Event-Key", "repo:refs_changed")
        .header("X-Request-Id", &unique("dc"))
        .header(
            "X-Hub-Signature",
            &format!("sha256={}", hex_hmac(BITBUCKET_SECRET, body.as_bytes())),
        )
        .body(body)
        .send()
        .await
        .accepted();
    let d = only(&ferry.settle(id).await, Host::Bitbucket.service()).clone();
    assert_eq!(d["state"], "succeeded", "{d:#}");
    let id = Host::Bitbucket.push(&ferry, &sha(2), 2).await;
    ferry.settle(id).await;
    let calls = fake.wait_ok(3, WAIT).await;
    assert!(
        calls
            .iter()
            .all(|c| c.target == Host::Bitbucket.path(&sha(2))),
        "only the Cloud push's deployment: {calls:#?}"
    );
}

/// GitLab refuses a repeat of the state a status has (`pending` → `pending`), as after a try
/// whose answer was lost: that status is there, so it counts as sent, not as a failure.
#[tokio::test]
async fn a_gitlab_repeat_of_the_same_state_counts_as_sent() {
    let repeat = "Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\")";
    let fake = fake_host(vec![Reply::json(400, json!({ "message": repeat }))]);
    let ferry = ferry_for(Host::Gitlab, &fake).await;
    let id = Host::Gitlab.push(&ferry, &sha(1), 1).await;
    ferry.settle(id).await;
    fake.wait_ok(2, WAIT).await;
    assert_eq!(fake.calls().len(), 3, "{:#?}", fake.calls());
    let list = ferry.get("/api/v1/notifications?app=shop").await;
    let list = list["notifications"].as_array().expect("list").clone();
    assert!(list.iter().all(|n| n["state"] == "sent"), "{list:#?}");
    let queued = list.last().expect("one");
    assert_eq!(
        (queued["attempts"].as_i64(), queued["last_status"].as_i64()),
        (Some(1), Some(400)),
        "{queued:#}"
    );
}
