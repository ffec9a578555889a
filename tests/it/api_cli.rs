//! The admin API and the client commands of the CLI (`deploy`, `status`, `logs`,
//! `deliveries`, `replay`), plus the server's log format.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

/// [`SHOP`] with a service whose deploy always fails.
fn with_broken() -> String {
    format!(
        "{SHOP}{}",
        r#"
[apps.shop.services.broken]
command = ["/bin/sh", "-c", "echo broken >&2; exit 4"]
"#
    )
}

#[tokio::test]
async fn the_admin_api_requires_the_admin_token() {
    let ferry = Ferry::shop().start().await;
    let id = ferry
        .hook("shop")
        .query("services=worker")
        .send()
        .await
        .accepted();
    let dep = ferry.settle(id).await[0]["id"].as_i64().unwrap();

    let calls = [
        (Method::GET, "/api/v1/apps".to_string()),
        (Method::GET, "/api/v1/deliveries".to_string()),
        (Method::GET, format!("/api/v1/deliveries/{id}")),
        (Method::POST, format!("/api/v1/deliveries/{id}/replay")),
        (Method::GET, "/api/v1/deployments".to_string()),
        (Method::GET, format!("/api/v1/deployments/{dep}")),
        (Method::GET, format!("/api/v1/deployments/{dep}/logs")),
        (Method::POST, "/api/v1/apps/shop/deploy".to_string()),
    ];
    for (method, path) in &calls {
        let body = (*method == Method::POST).then(|| json!({}));
        for token in [None, Some("wrong-admin"), Some(HOOK_TOKEN), Some("")] {
            let r = ferry.api(method.clone(), path, token, body.clone()).await;
            assert_eq!(r.status, 401, "{method} {path} with {token:?}: {}", r.text);
        }
        let r = ferry
            .api(method.clone(), path, Some(ADMIN_TOKEN), body.clone())
            .await;
        assert!(
            (200..300).contains(&r.status),
            "{method} {path} with the admin token: {} {}",
            r.status,
            r.text
        );
    }

    let health = ferry
        .http()
        .get(ferry.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "/healthz needs no token");
}

#[tokio::test]
async fn refused_api_calls_change_nothing() {
    let ferry = Ferry::shop().start().await;
    let r = ferry
        .api(
            Method::POST,
            "/api/v1/apps/shop/deploy",
            Some("wrong-admin"),
            Some(json!({"services": ["worker"]})),
        )
        .await;
    assert_eq!(r.status, 401);
    ferry.settled("shop").await;
    assert_eq!(ferry.deliveries("").await, Vec::<Value>::new());
    assert_eq!(ferry.runs(), vec![]);
}

#[tokio::test]
async fn apps_lists_every_app_with_its_services() {
    let ferry = Ferry::with_config(&format!("{SHOP}{BLOG}")).start().await;
    let v = ferry.get("/api/v1/apps").await;
    let apps = v["apps"].as_array().expect("apps");
    let mut names: Vec<&str> = apps.iter().map(|a| a["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["blog", "shop"]);

    let shop = apps.iter().find(|a| a["name"] == "shop").unwrap();
    let services = shop["services"].as_array().expect("services");
    assert_eq!(services.len(), 2, "{shop:#}");
    let web = services.iter().find(|s| s["name"] == "web").expect("web");
    assert_eq!(web["executor"], "command");
    assert_eq!(web["git"]["repo"], REPO);
    assert_eq!(web["git"]["branch"], "master");
    let worker = services
        .iter()
        .find(|s| s["name"] == "worker")
        .expect("worker");
    assert_eq!(worker["executor"], "command");
    assert!(
        worker["git"].is_null(),
        "worker is not git-based: {worker:#}"
    );
    // The API is for admins, but secrets are still not part of it.
    let text = v.to_string();
    assert!(
        !text.contains(HOOK_TOKEN) && !text.contains(GITHUB_SECRET),
        "{text}"
    );
}

#[tokio::test]
async fn lists_are_newest_first_filter_and_page_with_before() {
    let ferry = Ferry::with_config(&format!("{SHOP}{BLOG}")).start().await;
    let mut shop = Vec::new();
    for _ in 0..3 {
        let (id, _) = ferry.hook("shop").query("services=worker").deliver().await;
        shop.push(id);
    }
    let (blog, _) = ferry
        .hook("blog")
        .token("blog-token-123456")
        .deliver()
        .await;

    let all = ferry.deliveries("").await;
    let ids: Vec<i64> = all.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![blog, shop[2], shop[1], shop[0]], "newest first");

    let page1 = ferry.get("/api/v1/deliveries?app=shop&limit=2").await;
    let ids: Vec<i64> = page1["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![shop[2], shop[1]]);
    let before = page1["next_before"]
        .as_i64()
        .unwrap_or_else(|| panic!("more to come, so next_before is set: {page1}"));
    let page2 = ferry
        .get(&format!(
            "/api/v1/deliveries?app=shop&limit=2&before={before}"
        ))
        .await;
    let ids: Vec<i64> = page2["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![shop[0]]);
    assert!(page2["next_before"].is_null(), "last page: {page2}");

    let workers = ferry.deployments("service=worker").await;
    assert_eq!(workers.len(), 3);
    assert!(workers.iter().all(|d| d["service"] == "worker"));
    let ids: Vec<i64> = workers.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    let blog_deps = ferry.deployments("app=blog").await;
    assert_eq!(blog_deps.len(), 1);
    assert_eq!(blog_deps[0]["app"], "blog");
    assert!(
        ferry
            .deployments("state=succeeded")
            .await
            .iter()
            .all(|d| d["state"] == "succeeded")
    );
    assert_eq!(ferry.deployments("state=failed").await.len(), 0);
    let newest = ferry.get("/api/v1/deployments?limit=1").await;
    assert_eq!(newest["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(newest["deployments"][0]["app"], "blog");
}

#[tokio::test]
async fn replay_processes_a_stored_delivery_again() {
    let ferry = Ferry::shop().start().await;
    let (original, _) = ferry.hook("shop").query("services=worker").deliver().await;

    let reply = ferry
        .post(&format!("/api/v1/deliveries/{original}/replay"), json!({}))
        .await;
    let replay = reply.accepted();
    assert_ne!(replay, original);
    let d = ferry.delivery(replay).await;
    assert_eq!(d["replay_of"], original);
    assert_eq!(d["app"], "shop");
    let deployments = ferry.settle(replay).await;
    assert_eq!(only(&deployments, "worker")["state"], "succeeded");
    assert_eq!(ferry.runs_of("worker").len(), 2);

    let missing = ferry
        .post("/api/v1/deliveries/999999/replay", json!({}))
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text);
}

#[tokio::test]
async fn the_deploy_endpoint_triggers_a_manual_deployment() {
    let ferry = Ferry::shop().start().await;

    let id = ferry
        .post("/api/v1/apps/shop/deploy", json!({"services": ["worker"]}))
        .await
        .accepted();
    let delivery = ferry.delivery(id).await;
    assert_eq!(delivery["source"], "manual");
    let deployments = ferry.settle(id).await;
    assert_eq!(only(&deployments, "worker")["state"], "succeeded");
    not_deployed(&deployments, "web");

    let id = ferry
        .post(
            "/api/v1/apps/shop/deploy",
            json!({"services": ["web"], "profile": null, "ref": "release-7"}),
        )
        .await
        .accepted();
    let deployments = ferry.settle(id).await;
    let web = only(&deployments, "web");
    assert_eq!(web["state"], "succeeded");
    assert_eq!(web["git_ref"], "release-7");
    let env = ferry.run_env(web["id"].as_i64().unwrap());
    assert_eq!(
        env.get("FERRY_GIT_REF").map(String::as_str),
        Some("release-7")
    );
    assert_eq!(env.get("FERRY_SOURCE").map(String::as_str), Some("manual"));

    let id = ferry
        .post("/api/v1/apps/shop/deploy", json!({"profile": "hotfix"}))
        .await
        .accepted();
    let deployments = ferry.settle(id).await;
    assert_eq!(only(&deployments, "web")["state"], "succeeded");
    not_deployed(&deployments, "worker");

    // Everything, with an empty body.
    let id = ferry
        .post("/api/v1/apps/shop/deploy", json!({}))
        .await
        .accepted();
    let deployments = ferry.settle(id).await;
    assert_eq!(only(&deployments, "web")["state"], "succeeded");
    assert_eq!(only(&deployments, "worker")["state"], "succeeded");

    let unknown = ferry.post("/api/v1/apps/nosuch/deploy", json!({})).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
}

#[tokio::test]
async fn cli_deploy_wait_exits_0_only_when_all_succeeded() {
    let ferry = Ferry::with_config(&with_broken()).start().await;

    ferry
        .cli(&["deploy", "shop", "--services", "worker", "--wait"])
        .run()
        .await
        .success();
    assert_eq!(
        ferry.runs_of("worker").len(),
        1,
        "--wait returns after the run"
    );
    let worker = ferry.deployments("service=worker").await;
    assert_eq!(worker[0]["state"], "succeeded");

    let out = ferry
        .cli(&["deploy", "shop", "--services", "worker,broken", "--wait"])
        .run()
        .await;
    out.failure();
    let broken = ferry.deployments("service=broken").await;
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0]["state"], "failed", "{:#}", broken[0]);

    let out = ferry.cli(&["deploy", "nosuch", "--wait"]).run().await;
    assert!(!out.failure().is_empty(), "says why: {out:#?}");
}

#[tokio::test]
async fn cli_deploy_passes_profile_and_ref() {
    let ferry = Ferry::shop().start().await;
    ferry
        .cli(&[
            "deploy",
            "shop",
            "--profile",
            "hotfix",
            "--ref",
            "v9.9.9",
            "--wait",
        ])
        .run()
        .await
        .success();
    let runs = ferry.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].service, "web");
    let env = ferry.run_env(runs[0].deployment);
    assert_eq!(env.get("FERRY_GIT_REF").map(String::as_str), Some("v9.9.9"));
    assert_eq!(env.get("FERRY_PROFILE").map(String::as_str), Some("hotfix"));

    // Without --wait it returns once the request is accepted.
    ferry
        .cli(&["deploy", "shop", "--services", "worker"])
        .run()
        .await
        .success();
    ferry
        .wait_deployments("service=worker", "the worker deployment", |l| {
            l.iter().any(|d| d["state"] == "succeeded")
        })
        .await;
}

#[tokio::test]
async fn cli_status_shows_each_services_state_and_version() {
    let ferry = Ferry::with_config(&with_broken()).start().await;
    ferry
        .hook("shop")
        .fixture("push-branch-created")
        .deliver()
        .await;
    ferry
        .hook("shop")
        .query("services=worker,broken")
        .deliver()
        .await;

    for args in [&["status", "shop"][..], &["status"][..]] {
        let out = ferry.cli(args).run().await;
        let stdout = out.success();
        let row = |service: &str| -> String {
            stdout
                .lines()
                .find(|l| l.split_whitespace().any(|w| w == service))
                .unwrap_or_else(|| panic!("no row for {service}:\n{stdout}"))
                .to_string()
        };
        let web = row("web");
        assert!(web.contains("succeeded"), "{web}");
        assert!(web.contains(&FIXTURE_COMMIT[..7]), "the version: {web}");
        assert!(row("worker").contains("succeeded"), "{stdout}");
        assert!(row("broken").contains("failed"), "{stdout}");
    }
}

#[tokio::test]
async fn cli_logs_prints_a_deployments_log() {
    let ferry = Ferry::shop().start().await;
    let id = ferry
        .hook("shop")
        .query("services=worker")
        .send()
        .await
        .accepted();
    let dep = only(&ferry.settle(id).await, "worker")["id"]
        .as_i64()
        .unwrap();
    let out = ferry.cli(&["logs", &dep.to_string()]).run().await;
    let stdout = out.success();
    assert!(
        stdout.contains(&format!("deploying worker (deployment {dep})")),
        "{stdout}"
    );
    assert!(stdout.contains("a note on stderr from worker"), "{stdout}");

    ferry.cli(&["logs", "999999"]).run().await.failure();
}

#[tokio::test]
async fn cli_deliveries_lists_what_was_received() {
    let ferry = Ferry::with_config(&format!("{SHOP}{BLOG}")).start().await;
    let (push, _) = ferry
        .hook("shop")
        .fixture("push-branch-created")
        .deliver()
        .await;
    ferry
        .hook("blog")
        .token("blog-token-123456")
        .deliver()
        .await;

    let out = ferry.cli(&["deliveries", "shop"]).run().await;
    let stdout = out.success();
    let has_word = |line: &str, word: &str| line.split_whitespace().any(|w| w == word);
    let push_id = push.to_string();
    assert!(
        stdout
            .lines()
            .any(|l| has_word(l, &push_id) && l.contains("github") && l.contains("push")),
        "a row for delivery {push} (github, push):\n{stdout}"
    );
    assert!(
        !stdout.lines().any(|l| has_word(l, "blog")),
        "only shop's deliveries:\n{stdout}"
    );

    let all = ferry.cli(&["deliveries"]).run().await;
    assert!(
        all.success().lines().any(|l| has_word(l, "blog")),
        "{all:#?}"
    );
}

#[tokio::test]
async fn cli_replay_processes_a_delivery_again() {
    let ferry = Ferry::shop().start().await;
    let (id, _) = ferry.hook("shop").query("services=worker").deliver().await;
    ferry
        .cli(&["replay", &id.to_string()])
        .run()
        .await
        .success();
    let replays: Vec<Value> = ferry
        .deliveries("app=shop")
        .await
        .into_iter()
        .filter(|d| d["replay_of"] == id)
        .collect();
    assert_eq!(replays.len(), 1, "{replays:#?}");
    ferry.settle(replays[0]["id"].as_i64().unwrap()).await;
    assert_eq!(ferry.runs_of("worker").len(), 2);
}

#[tokio::test]
async fn cli_finds_server_and_token_in_the_environment() {
    let ferry = Ferry::shop().start().await;
    let out = Cli::new(&["status"])
        .env("FERRY_SERVER", &ferry.base_url())
        .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
        .run()
        .await;
    let stdout = out.success();
    assert!(
        stdout.contains("web") && stdout.contains("worker"),
        "{stdout}"
    );

    let out = Cli::new(&["status"])
        .env("FERRY_SERVER", &ferry.base_url())
        .env("FERRY_ADMIN_TOKEN", "wrong-admin")
        .run()
        .await;
    assert!(!out.failure().is_empty(), "says why: {out:#?}");
}

/// Starts a server logging JSON and checks every line is a JSON object.
async fn check_json_logs(ferry: Ferry) {
    ferry.hook("shop").query("services=worker").deliver().await;
    // The API shows the end once it is committed; the lanes log it after the commit returns
    // (on PostgreSQL a round trip later), so the line may still be on its way.
    eventually("the deployment's end to be logged", WAIT, async || {
        let text = ferry.stderr_text();
        if text.contains("succeeded") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    let lines = ferry.stderr_lines();
    let mut objects = Vec::new();
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        objects.push(v);
    }
    assert!(
        objects.iter().any(|o| o.to_string().contains("succeeded")),
        "a line for the deployment's state change: {lines:#?}"
    );
}

#[tokio::test]
async fn log_format_json_before_the_subcommand() {
    check_json_logs(
        Ferry::shop()
            .global_arg("--log-format")
            .global_arg("json")
            .start()
            .await,
    )
    .await;
}

#[tokio::test]
async fn log_format_json_after_the_subcommand() {
    check_json_logs(
        Ferry::shop()
            .serve_arg("--log-format")
            .serve_arg("json")
            .start()
            .await,
    )
    .await;
}

#[tokio::test]
async fn client_commands_take_the_admin_token_from_the_config() {
    // As `ferry init` writes it: the token in the file, not in the environment.
    let config = SHOP.replace(
        "admin_token = \"${FERRY_ADMIN_TOKEN}\"",
        &format!("admin_token = \"{ADMIN_TOKEN}\""),
    );
    let ferry = Ferry::with_config(&config).start().await;
    ferry.hook("shop").send().await.accepted();
    let config_path = ferry.config_path().to_str().expect("utf-8").to_string();
    let base = ferry.base_url();
    let out = Cli::new(&["deliveries", "--server", &base, "--config", &config_path])
        .run()
        .await;
    assert!(out.success().contains("shop"), "{out:?}");

    // Neither flag, environment nor config: the message says where a token may come from.
    let out = Cli::new(&[
        "deliveries",
        "--server",
        &base,
        "--config",
        "/nonexistent.toml",
    ])
    .run()
    .await;
    assert!(
        out.failure()
            .contains("no admin token: pass --token, set FERRY_ADMIN_TOKEN, or set server.admin_token in /nonexistent.toml"),
        "{out:?}"
    );
}
