//! The hook: what it answers (202, 200 duplicate/pong, 401, 404, 413, 400), what it records,
//! and that nothing refused is ever deployed.

use serde_json::{Value, json};

use crate::support::*;

/// A header of a stored delivery, looked up case-insensitively.
fn stored_header<'a>(delivery: &'a Value, name: &str) -> Option<&'a str> {
    delivery["headers"]
        .as_object()
        .unwrap_or_else(|| panic!("no headers object in {delivery:#}"))
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

#[tokio::test]
async fn github_push_fixture_is_accepted_verified_and_deploys_its_commit() {
    let ferry = Ferry::shop().start().await;
    let fx = fixture("push-branch-created");

    let reply = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .send()
        .await;
    let id = reply.accepted();
    let answer = reply.json();
    let status_url = answer["status_url"].as_str().expect("status_url");
    assert!(
        status_url.ends_with(&format!("/api/v1/deliveries/{id}")),
        "{answer}"
    );

    let deployments = ferry.settle(id).await;
    let web = only(&deployments, "web");
    assert_eq!(web["state"], "succeeded", "{web:#}");
    assert_eq!(web["app"], "shop");
    assert_eq!(web["commit"], FIXTURE_COMMIT);
    assert_eq!(web["version"], FIXTURE_COMMIT);
    assert_eq!(web["attempt"], 1);
    assert_eq!(web["exit_code"], 0);
    for field in ["created_at", "started_at", "finished_at"] {
        assert!(!web[field].is_null(), "{field} missing in {web:#}");
    }
    // `worker` is not git-based: a push does not concern it, and the plan says so.
    let worker = only(&deployments, "worker");
    assert_eq!(worker["state"], "skipped", "{worker:#}");
    assert!(
        worker["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "a skipped deployment carries a reason: {worker:#}"
    );

    let delivery = ferry.delivery(id).await;
    assert_eq!(delivery["id"], id);
    assert_eq!(delivery["app"], "shop");
    assert_eq!(delivery["source"], "github");
    assert_eq!(delivery["event"], "push");
    assert_eq!(
        delivery["source_delivery_id"],
        fx.header("X-GitHub-Delivery").unwrap()
    );
    assert_eq!(delivery["verified"], true);
    assert_eq!(delivery["status"], "planned");
    assert!(delivery["replay_of"].is_null());
    assert!(!delivery["received_at"].is_null());
    let caused = delivery["deployments"].as_array().expect("deployments");
    assert!(caused.contains(&web["id"]), "{delivery:#}");
    assert_eq!(
        delivery["body"].as_str().expect("body").as_bytes(),
        fx.body.as_slice(),
        "the stored body is the body as received"
    );
    assert_eq!(stored_header(&delivery, "X-GitHub-Event"), Some("push"));

    // What the deploy command was given.
    let web_id = web["id"].as_i64().unwrap();
    assert_eq!(
        ferry.runs(),
        vec![Run {
            service: "web".into(),
            commit: Some(FIXTURE_COMMIT.into()),
            deployment: web_id
        }]
    );
    let env = ferry.run_env(web_id);
    let expect = [
        ("FERRY_APP", "shop".to_string()),
        ("FERRY_SERVICE", "web".to_string()),
        ("FERRY_DEPLOYMENT_ID", web_id.to_string()),
        ("FERRY_DELIVERY_ID", id.to_string()),
        ("FERRY_SOURCE", "github".to_string()),
        ("FERRY_EVENT", "push".to_string()),
        ("FERRY_GIT_REPO", REPO.to_string()),
        ("FERRY_GIT_BRANCH", "master".to_string()),
        ("FERRY_GIT_COMMIT", FIXTURE_COMMIT.to_string()),
        ("EXTRA", "x".to_string()),
        // argv from the config, untouched by any shell: a space and a `*` survive.
        ("ARGS", "web arg|*|".to_string()),
    ];
    for (k, v) in expect {
        assert_eq!(env.get(k), Some(&v), "{k} in {env:#?}");
    }
    for unset in [
        "FERRY_IMAGE",
        "FERRY_IMAGE_TAG",
        "FERRY_IMAGE_DIGEST",
        "FERRY_PROFILE",
    ] {
        assert!(
            !env.contains_key(unset),
            "{unset} should be unset: {env:#?}"
        );
    }
    assert_eq!(
        ferry.run_payload(web_id).expect("FERRY_PAYLOAD file"),
        fx.body,
        "FERRY_PAYLOAD holds the raw body"
    );
}

/// GitHub's published test vector: the signature ferry computes must be GitHub's.
/// A JSON push is kept LZ4-compressed in the store (a third of the disk, BENCHMARKS.md), and
/// everything that reads it back (the API, a replay, the deploy command's FERRY_PAYLOAD) gets
/// the body byte for byte as it was sent.
#[tokio::test]
async fn a_push_is_stored_compressed_and_read_back_as_received() {
    // SQLite: the row is read from the data dir's database.
    let ferry = Ferry::shop().sqlite().start().await;
    let fx = fixture("push-branch-created");
    let id = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .send()
        .await
        .accepted();
    let url = format!("sqlite://{}?mode=ro", ferry.path("data/ferry.db").display());
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("open the store");
    let (stored, codec): (i64, Option<String>) =
        sqlx::query_as("SELECT length(body), codec FROM delivery_bodies WHERE delivery_id = ?1")
            .bind(id)
            .fetch_one(&mut db)
            .await
            .expect("the body's row");
    // LZ4 with the dictionary of GitHub's pushes (`store/body.rs`).
    assert_eq!(codec.as_deref(), Some("lz4+github1"));
    assert!(
        (stored as usize) * 3 < fx.body.len(),
        "{stored} bytes stored for {}",
        fx.body.len()
    );
    let delivered = ferry.settle(id).await;
    let web = only(&delivered, "web")["id"].as_i64().expect("id");
    assert_eq!(ferry.run_payload(web).expect("FERRY_PAYLOAD"), fx.body);
    let delivery = ferry.delivery(id).await;
    assert_eq!(
        delivery["body"].as_str().map(str::as_bytes),
        Some(&fx.body[..])
    );
    let replay = ferry
        .post(&format!("/api/v1/deliveries/{id}/replay"), json!({}))
        .await
        .accepted();
    assert_eq!(ferry.delivery(replay).await["body"], delivery["body"]);

    // A damaged row (a codec nothing decodes) is shown as such and cannot be replayed; the
    // rest of the store reads on.
    drop(db);
    let url = format!("sqlite://{}", ferry.path("data/ferry.db").display());
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("open the store");
    sqlx::query("UPDATE delivery_bodies SET codec = 'zip' WHERE delivery_id = ?1")
        .bind(id)
        .execute(&mut db)
        .await
        .expect("damage the row");
    let damaged = ferry.delivery(id).await;
    assert_eq!(
        damaged["request"]["body"]["format"], "unreadable",
        "{damaged:#}"
    );
    assert!(
        damaged["request"]["body"]["pretty_error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown codec \"zip\"")),
        "{damaged:#}"
    );
    let refused = ferry
        .post(&format!("/api/v1/deliveries/{id}/replay"), json!({}))
        .await;
    assert_eq!(refused.status, 500, "{}", refused.text);
    assert!(
        refused.text.contains("cannot be replayed"),
        "{}",
        refused.text
    );
    assert_eq!(ferry.delivery(replay).await["body"], delivery["body"]);
}

#[tokio::test]
async fn github_docs_test_vector_signature_verifies() {
    let ferry = Ferry::shop().start().await;
    let fx = fixture("docs-test-vector");
    assert_eq!(fx.body, b"Hello, World!");

    let good = ferry
        .hook("shop")
        .fixture("docs-test-vector")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", &github_delivery_id())
        .send()
        .await;
    assert_ne!(
        good.status, 401,
        "the vector's signature verifies: {}",
        good.text
    );
    assert!(!good.text.contains("X-Hub-Signature-256"), "{}", good.text);

    let bad = ferry
        .hook("shop")
        .body("Hello, World!")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", &github_delivery_id())
        .signed("It's not the secret")
        .send()
        .await;
    assert_eq!(bad.status, 401, "{}", bad.text);
    assert!(bad.error().contains("X-Hub-Signature-256"), "{}", bad.text);
}

/// The brief fixes this: the vector's body has no git information ferry can read, and the
/// delivery is still accepted (and deploys nothing it cannot read).
#[tokio::test]
async fn github_docs_test_vector_passes_verification_but_is_not_a_payload() {
    // GitHub's published vector signs "Hello, World!": the signature must verify (no 401),
    // and then, as DESIGN.md promises, an unreadable body for a known source is a 400 that
    // says what was wrong, recorded as rejected.
    let ferry = Ferry::shop().start().await;
    let reply = ferry
        .hook("shop")
        .fixture("docs-test-vector")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", &github_delivery_id())
        .send()
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.error().contains("not valid JSON"), "{}", reply.text);
    let listed = ferry.deliveries("app=shop").await;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["status"], "rejected");
    // The signature itself was good.
    assert_eq!(listed[0]["verified"], true);
}

#[tokio::test]
async fn missing_or_wrong_signatures_are_401_and_deploy_nothing() {
    let ferry = Ferry::shop().start().await;
    let body = push_payload(REPO, "master", &sha(1), &commit_time(1));

    let wrong_secret = ferry
        .hook("shop")
        .github("push")
        .body(body.clone())
        .signed("not the secret")
        .send()
        .await;
    let missing = ferry
        .hook("shop")
        .github("push")
        .body(body.clone())
        .send()
        .await;
    let garbage = ferry
        .hook("shop")
        .github("push")
        .body(body.clone())
        .header("X-Hub-Signature-256", "sha256=not-hex-at-all")
        .send()
        .await;
    // A signature made for a different body (one byte changed after signing).
    let tampered = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .body({
            let mut b = fixture("push-branch-created").body;
            let i = b.iter().position(|&c| c == b'6').expect("a digit");
            b[i] = b'7';
            b
        })
        .send()
        .await;
    // Only the legacy SHA-1 header (valid for this body): X-Hub-Signature-256 is required.
    let sha1_only = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .without_header("X-Hub-Signature-256")
        .send()
        .await;

    for (what, r) in [
        ("wrong secret", &wrong_secret),
        ("missing signature", &missing),
        ("malformed signature", &garbage),
        ("tampered body", &tampered),
        ("sha1 only", &sha1_only),
    ] {
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        assert!(
            r.error().contains("X-Hub-Signature-256"),
            "{what}: the message names the header: {}",
            r.text
        );
    }

    ferry.settled("shop").await;
    assert_eq!(ferry.runs(), vec![], "nothing refused is deployed");
    assert_eq!(ferry.deployments("app=shop").await, Vec::<Value>::new());
    for d in ferry.deliveries("app=shop").await {
        assert_eq!(
            d["status"], "rejected",
            "refused, so at most recorded as such: {d:#}"
        );
        assert_eq!(d["deployments"], json!([]), "{d:#}");
    }
}

/// A sender fixes its secret and redelivers: the same `X-GitHub-Delivery` that was refused
/// must not be treated as a duplicate of the refused request.
#[tokio::test]
async fn a_refused_delivery_does_not_block_its_corrected_redelivery() {
    let ferry = Ferry::shop().start().await;
    let body = push_payload(REPO, "master", &sha(7), &commit_time(7));
    let guid = github_delivery_id();

    let refused = ferry
        .hook("shop")
        .github("push")
        .header("X-GitHub-Delivery", &guid)
        .body(body.clone())
        .signed("an old secret")
        .send()
        .await;
    assert_eq!(refused.status, 401, "{}", refused.text);

    let id = ferry
        .hook("shop")
        .github("push")
        .header("X-GitHub-Delivery", &guid)
        .body(body)
        .signed(GITHUB_SECRET)
        .send()
        .await
        .accepted();
    let web = only(&ferry.settle(id).await, "web").clone();
    assert_eq!(web["state"], "succeeded", "{web:#}");
    assert_eq!(web["commit"], sha(7).as_str());
}

#[tokio::test]
async fn a_github_redelivery_is_a_duplicate_and_deploys_once() {
    let ferry = Ferry::shop().start().await;

    // GitHub timed out and the user pressed "Redeliver" at once: both arrive before planning.
    let first = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .send()
        .await;
    let id = first.accepted();
    let again = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .send()
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["status"], "duplicate");
    assert_eq!(
        again.delivery_id(),
        id,
        "the answer names the original delivery"
    );

    let web = only(&ferry.settle(id).await, "web").clone();
    assert_eq!(web["state"], "succeeded");

    // And again, long after it was deployed.
    let late = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .send()
        .await;
    assert_eq!(late.status, 200, "{}", late.text);
    assert_eq!(late.json()["status"], "duplicate");
    assert_eq!(late.delivery_id(), id);

    ferry.settled("shop").await;
    assert_eq!(ferry.runs_of("web").len(), 1, "{:?}", ferry.runs());
    for d in ferry.deployments("app=shop").await {
        assert_eq!(d["delivery_id"], id, "only the original deploys: {d:#}");
    }
}

#[tokio::test]
async fn an_idempotency_key_makes_generic_retries_safe_per_app() {
    let ferry = Ferry::with_config(&format!("{SHOP}{BLOG}")).start().await;
    let key = unique("retry-key");

    let first = ferry
        .hook("shop")
        .header("Idempotency-Key", &key)
        .send()
        .await
        .accepted();
    let retry = ferry
        .hook("shop")
        .header("Idempotency-Key", &key)
        .send()
        .await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.json()["status"], "duplicate");
    assert_eq!(retry.delivery_id(), first);

    // The same key on another app is another request.
    let blog = ferry
        .hook("blog")
        .token("blog-token-123456")
        .header("Idempotency-Key", &key)
        .send()
        .await
        .accepted();
    assert_ne!(blog, first);
    // Another key on the same app too.
    let second = ferry
        .hook("shop")
        .header("Idempotency-Key", &unique("other-key"))
        .send()
        .await
        .accepted();
    assert_ne!(second, first);

    let delivery = ferry.delivery(first).await;
    assert_eq!(delivery["source"], "generic");
    assert_eq!(delivery["source_delivery_id"], key.as_str());

    ferry.settled("shop").await;
    ferry.settled("blog").await;
    let shop = ferry.deployments("app=shop").await;
    assert!(!shop.is_empty());
    for d in &shop {
        let from = d["delivery_id"].as_i64().unwrap();
        assert!(
            from == first || from == second,
            "unexpected deployment {d:#}"
        );
    }
    let blog_deployments = ferry.deployments("app=blog").await;
    assert_eq!(only(&blog_deployments, "site")["delivery_id"], blog);
}

#[tokio::test]
async fn github_ping_is_answered_pong_and_deploys_nothing() {
    let ferry = Ferry::shop().start().await;
    let reply = ferry.hook("shop").fixture("ping").send().await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let answer = reply.json();
    assert_eq!(answer["status"], "pong");
    let id = reply.delivery_id();

    let delivery = ferry.wait_planned(id).await;
    assert_eq!(delivery["event"], "ping");
    assert_eq!(delivery["source"], "github");
    assert_eq!(delivery["verified"], true);
    assert_eq!(delivery["deployments"], json!([]));
    ferry.settled("shop").await;
    assert_eq!(ferry.runs(), vec![]);
}

#[tokio::test]
async fn a_form_encoded_delivery_is_verified_over_the_raw_body() {
    let config = format!(
        "{SHOP}{}",
        r#"
[apps.forms]
token = "forms-token-123"
[apps.forms.verify]
github = "0123456789abcdef"
[apps.forms.services.site]
command = ["{dir}/deploy.sh"]
"#
    );
    let ferry = Ferry::with_config(&config).start().await;

    let reply = ferry
        .hook("forms")
        .token("forms-token-123")
        .fixture("form-urlencoded")
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["status"], "pong");
    let delivery = ferry.delivery(reply.delivery_id()).await;
    assert_eq!(delivery["verified"], true);
    assert_eq!(delivery["event"], "ping");

    // A signature over the decoded JSON (what Gitea would sign) is not GitHub's.
    let json_signed = ferry
        .hook("forms")
        .token("forms-token-123")
        .fixture("form-urlencoded")
        .header(
            "X-Hub-Signature-256",
            &sign_github("0123456789abcdef", br#"{"yo":true}"#),
        )
        .send()
        .await;
    assert_eq!(json_signed.status, 401, "{}", json_signed.text);
}

#[tokio::test]
async fn unknown_app_and_wrong_token_get_the_same_404() {
    let ferry = Ferry::with_config(&format!("{SHOP}{BLOG}")).start().await;
    let answers = [
        ferry.hook("nosuch").send().await,
        ferry.hook("shop").token("wrong-token-1").send().await,
        ferry.hook("shop").token("secret-token-").send().await,
        ferry.hook("shop").token("secret-token-12").send().await,
        ferry.hook("shop").token(ADMIN_TOKEN).send().await,
        // Another app's valid token.
        ferry.hook("shop").token("blog-token-123456").send().await,
        // A correctly signed GitHub push does not get past a wrong token either.
        ferry
            .hook("shop")
            .token("wrong-token-1")
            .fixture("push-branch-created")
            .send()
            .await,
        ferry
            .hook("nosuch")
            .fixture("push-branch-created")
            .send()
            .await,
    ];
    for a in &answers {
        assert_eq!(a.status, 404, "{}", a.text);
        assert_eq!(
            a.text, answers[0].text,
            "unknown app and wrong token must be indistinguishable"
        );
    }
    ferry.settled("shop").await;
    assert_eq!(ferry.runs(), vec![]);
    assert_eq!(ferry.deployments("").await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let config = SHOP.replace(
        "admin_token = \"${FERRY_ADMIN_TOKEN}\"",
        "admin_token = \"${FERRY_ADMIN_TOKEN}\"\nbody_limit = 1024",
    );
    let ferry = Ferry::with_config(&config).start().await;

    let big = ferry
        .hook("shop")
        .query("services=worker")
        .body(vec![b'a'; 4096])
        .send()
        .await;
    assert_eq!(big.status, 413, "{}", big.text);
    let one_over = ferry
        .hook("shop")
        .query("services=worker")
        .body(vec![b'a'; 1025])
        .send()
        .await;
    assert_eq!(one_over.status, 413, "{}", one_over.text);

    let (_, deployments) = ferry
        .hook("shop")
        .query("services=worker")
        .body(vec![b'a'; 1024])
        .deliver()
        .await;
    assert_eq!(only(&deployments, "worker")["state"], "succeeded");
    ferry.settled("shop").await;
    assert_eq!(ferry.runs_of("worker").len(), 1, "{:?}", ferry.runs());
}

#[tokio::test]
async fn unknown_services_and_profiles_are_400_naming_them() {
    let ferry = Ferry::shop().start().await;
    let service = ferry
        .hook("shop")
        .query("services=web,nosuchservice")
        .send()
        .await;
    assert_eq!(service.status, 400, "{}", service.text);
    assert!(service.text.contains("nosuchservice"), "{}", service.text);

    let profile = ferry
        .hook("shop")
        .query("deployment_profile=nosuchprofile")
        .send()
        .await;
    assert_eq!(profile.status, 400, "{}", profile.text);
    assert!(profile.text.contains("nosuchprofile"), "{}", profile.text);

    ferry.settled("shop").await;
    assert_eq!(ferry.runs(), vec![]);
}

#[tokio::test]
async fn a_post_without_a_body_redeploys_every_service() {
    let ferry = Ferry::shop().start().await;

    // `curl -X POST URL`
    let id = ferry.hook("shop").send().await.accepted();
    let deployments = ferry.settle(id).await;
    for service in ["web", "worker"] {
        let d = only(&deployments, service);
        assert_eq!(d["state"], "succeeded", "{d:#}");
    }
    let web = only(&deployments, "web");
    assert!(web["commit"].is_null(), "no commit is known: {web:#}");
    let env = ferry.run_env(web["id"].as_i64().unwrap());
    assert_eq!(env.get("FERRY_SOURCE").map(String::as_str), Some("generic"));
    assert!(!env.contains_key("FERRY_GIT_COMMIT"), "{env:#?}");

    let delivery = ferry.delivery(id).await;
    assert_eq!(delivery["source"], "generic");
    assert!(delivery["event"].is_null(), "{delivery:#}");
    assert_eq!(delivery["verified"], false);

    // `curl -X POST -d '' URL` (an empty form body) is the same thing.
    let (_, deployments) = ferry
        .hook("shop")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .deliver()
        .await;
    for service in ["web", "worker"] {
        assert_eq!(only(&deployments, service)["state"], "succeeded");
    }
}

#[tokio::test]
async fn json_without_git_information_redeploys_every_service() {
    let ferry = Ferry::shop().start().await;
    let body = json!({"text": "CI finished", "build": {"id": 42, "status": "passed"}});
    let id = ferry.hook("shop").json(&body).send().await.accepted();
    let deployments = ferry.settle(id).await;
    for service in ["web", "worker"] {
        let d = only(&deployments, service);
        assert_eq!(d["state"], "succeeded", "{d:#}");
        assert_eq!(
            ferry.run_payload(d["id"].as_i64().unwrap()),
            Some(body.to_string().into_bytes()),
            "FERRY_PAYLOAD holds the raw body"
        );
    }
}

#[tokio::test]
async fn ferry_never_logs_a_secret() {
    let ferry = Ferry::shop().start().await;

    let pushed = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .send()
        .await
        .accepted();
    let refused = ferry
        .hook("shop")
        .github("push")
        .body(push_payload(REPO, "master", &sha(2), &commit_time(2)))
        .signed("a wrong secret")
        .send()
        .await;
    assert_eq!(refused.status, 401);
    let generic = ferry.hook("shop").send().await.accepted();
    ferry.settle(pushed).await;
    ferry.settle(generic).await;
    ferry
        .cli(&["deploy", "shop", "--services", "worker", "--wait"])
        .run()
        .await
        .success();
    ferry.get("/api/v1/deliveries").await;

    let logs = ferry.stderr_text();
    // The logs do report what happened (so the check below is not vacuous)…
    assert!(
        logs.lines().any(|l| l.contains("succeeded")),
        "a line per deployment state change:\n{logs}"
    );
    // …but never a secret.
    for secret in [HOOK_TOKEN, GITHUB_SECRET, ADMIN_TOKEN] {
        assert!(
            !logs.contains(secret),
            "{secret:?} appears in the logs:\n{logs}"
        );
    }
}
