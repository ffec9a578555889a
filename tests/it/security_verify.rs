//! Issue 8, parts 1 and 2, tried as an attacker holding only a hook URL: a spoofed sender is
//! refused whatever it claims to be, an unverified delivery never carries a version, a
//! captured signed push replayed under a new delivery id is a duplicate, URL modifiers are
//! honoured only where the app allows them, and `ferry check` warns about apps that verify
//! nothing. Each test fails on the code before the fix.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// `gh` verifies only GitHub; `reg` only a registry's bearer token; neither allows unsigned
/// requests.
const APPS: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.gh]
token = "gh-hook-token-123456"
[apps.gh.verify]
github = "It's a Secret to Everybody"
[apps.gh.services.web]
git = { repo = "Codertocat/Hello-World", branch = "master" }
command = ["{dir}/deploy.sh"]

[apps.reg]
token = "reg-hook-token-123456"
[apps.reg.verify]
bearer = "registry-bearer-token"
[apps.reg.services.api]
image = { repository = "ghcr.io/acme/api", tags = "semver:^1" }
command = ["{dir}/deploy.sh"]
"#;

/// A GitLab push of `branch` of [`REPO`] at `commit`: what GitLab would send.
fn gitlab_push(branch: &str, commit: &str) -> Value {
    json!({
        "object_kind": "push",
        "ref": format!("refs/heads/{branch}"),
        "before": sha(0),
        "after": commit,
        "checkout_sha": commit,
        "project": {"path_with_namespace": REPO},
        "commits": [{"id": commit, "timestamp": commit_time(50)}],
    })
}

/// Asserts that a refused request left nothing to deploy: the delivery is recorded
/// `rejected` and no command ran.
async fn nothing_deployed(ferry: &Ferry, app: &str) {
    ferry.settled(app).await;
    assert!(ferry.runs().is_empty(), "{:?}", ferry.runs());
    for d in ferry.deliveries(&format!("app={app}")).await {
        assert_eq!(d["status"], "rejected", "{d:#}");
    }
}

#[tokio::test]
async fn a_spoofed_gitlab_push_to_a_github_only_app_is_401() {
    let ferry = Ferry::with_config(APPS).start().await;
    let spoofed = ferry
        .hook("gh")
        .token("gh-hook-token-123456")
        .header("X-Gitlab-Event", "Push Hook")
        .json(&gitlab_push("master", &sha(66)))
        .send()
        .await;
    assert_eq!(spoofed.status, 401, "{}", spoofed.text);
    let e = spoofed.error();
    assert!(
        e.contains("configured: github") && e.contains("verify.gitlab"),
        "the answer names the configured schemes and the key to set: {e}"
    );
    // A token that happens to be the GitHub secret verifies nothing either.
    let with_token = ferry
        .hook("gh")
        .token("gh-hook-token-123456")
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", GITHUB_SECRET)
        .json(&gitlab_push("master", &sha(66)))
        .send()
        .await;
    assert_eq!(with_token.status, 401, "{}", with_token.text);
    // Nor does a bare request: without `allow_unsigned` the app takes only signed ones.
    let bare = ferry.hook("gh").token("gh-hook-token-123456").send().await;
    assert_eq!(bare.status, 401, "{}", bare.text);
    assert!(bare.error().contains("allow_unsigned"), "{}", bare.text);
    nothing_deployed(&ferry, "gh").await;
}

#[tokio::test]
async fn an_unsigned_package_event_to_a_bearer_only_app_is_401() {
    let ferry = Ferry::with_config(APPS).start().await;
    const DIGEST: &str = "sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498";
    // A downgrade attempt: an image push of an old tag, dressed as a GHCR `package` event.
    let body = json!({
        "action": "published",
        "package": {
            "name": "api", "namespace": "acme", "ecosystem": "CONTAINER",
            "package_version": {
                "version": DIGEST, "updated_at": "2026-11-30T10:00:00Z",
                "package_url": "ghcr.io/acme/api:1.0.0",
                "container_metadata": {"tag": {"name": "1.0.0", "digest": DIGEST}}
            }
        }
    });
    let send = |auth: Option<&'static str>| {
        let mut r = ferry
            .hook("reg")
            .token("reg-hook-token-123456")
            .github("package")
            .json(&body);
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.send()
    };
    let unsigned = send(None).await;
    assert_eq!(unsigned.status, 401, "{}", unsigned.text);
    assert!(
        unsigned.error().contains("Authorization"),
        "{}",
        unsigned.text
    );
    let wrong = send(Some("Bearer not-the-token")).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    nothing_deployed(&ferry, "reg").await;

    // With the registry's credentials the same event is verified and deploys.
    let id = send(Some("Bearer registry-bearer-token")).await.accepted();
    assert_eq!(ferry.delivery(id).await["verified"], true);
    let api = only(&ferry.settle(id).await, "api").clone();
    assert_eq!(api["state"], "succeeded", "{api:#}");
    assert_eq!(api["image_tag"], "1.0.0");
}

#[tokio::test]
async fn a_replayed_signed_push_under_a_new_delivery_id_is_a_duplicate() {
    // `git_ref` is allowed here, so only the replay rule stands between the attacker and X.
    let ferry = Ferry::with_config(&shop_ci()).start().await;
    let body = push_payload(REPO, "master", &sha(1), &commit_time(1));
    let signature = sign_github(GITHUB_SECRET, body.as_bytes());
    let (first, deployments) = ferry
        .hook("shop")
        .github("push")
        .header("X-Hub-Signature-256", &signature)
        .body(body.clone())
        .deliver()
        .await;
    assert_eq!(
        only(&deployments, "web")["commit"],
        sha(1).as_str(),
        "{deployments:#?}"
    );

    // The captured request, with a new X-GitHub-Delivery and `?git_ref=X`.
    let replayed = ferry
        .hook("shop")
        .github("push")
        .query("git_ref=attacker-branch")
        .header("X-Hub-Signature-256", &signature)
        .body(body.clone())
        .send()
        .await;
    assert_eq!(replayed.status, 200, "{}", replayed.text);
    assert_eq!(replayed.json()["status"], "duplicate");
    assert_eq!(replayed.delivery_id(), first);
    ferry.settled("shop").await;
    let runs = ferry.runs();
    assert_eq!(runs.len(), 1, "nothing new deployed: {runs:?}");
    let deployments = ferry.deployments("app=shop").await;
    assert!(
        deployments
            .iter()
            .all(|d| d["git_ref"] != "attacker-branch"),
        "{deployments:#?}"
    );
}

#[tokio::test]
async fn git_ref_on_a_signed_push_never_overrides_the_pushed_ref() {
    let ferry = Ferry::with_config(&shop_ci()).start().await;
    let body = push_payload(REPO, "master", &sha(2), &commit_time(2));
    let id = ferry
        .hook("shop")
        .github("push")
        .query("git_ref=attacker-branch")
        .body(body)
        .signed(GITHUB_SECRET)
        .send()
        .await
        .accepted();
    let web = only(&ferry.settle(id).await, "web").clone();
    assert_eq!(web["state"], "succeeded", "{web:#}");
    assert_eq!(web["git_ref"], "refs/heads/master");
    assert_eq!(web["commit"], sha(2).as_str());
    assert!(
        web["reason"]
            .as_str()
            .is_some_and(|r| r.contains("?git_ref= ignored")),
        "the deployment says why the modifier did nothing: {web:#}"
    );
    let env = ferry.run_env(web["id"].as_i64().expect("id"));
    assert_eq!(env["FERRY_GIT_REF"], "refs/heads/master");
}

#[tokio::test]
async fn an_allow_unsigned_redeploy_carries_no_version() {
    // SHOP verifies GitHub and sets `allow_unsigned`.
    let ferry = Ferry::shop().start().await;
    // An unsigned request whose body is a push of another branch and commit.
    let body = push_value(REPO, "attacker-branch", &sha(99), &commit_time(99));
    let id = ferry
        .hook("shop")
        .query("services=web")
        .json(&body)
        .send()
        .await
        .accepted();
    assert_eq!(ferry.delivery(id).await["verified"], false);
    let web = only(&ferry.settle(id).await, "web").clone();
    assert_eq!(web["state"], "succeeded", "{web:#}");
    assert_eq!(web["event"], "redeploy");
    assert_eq!(web["git_ref"], "master", "the configured branch: {web:#}");
    assert!(web["commit"].is_null(), "{web:#}");
    assert!(
        web["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unverified")),
        "{web:#}"
    );
    let env = ferry.run_env(web["id"].as_i64().expect("id"));
    assert_eq!(env.get("FERRY_GIT_REF").map(String::as_str), Some("master"));
    assert_eq!(env.get("FERRY_GIT_COMMIT"), None, "{env:?}");
    assert!(
        !env.values()
            .any(|v| v.contains("attacker") || v == &sha(99)),
        "{env:?}"
    );

    // `allow_unsigned` exempts only requests that claim no sender: unsigned GitLab or GitHub
    // headers are still refused.
    let gitlab = ferry
        .hook("shop")
        .header("X-Gitlab-Event", "Push Hook")
        .json(&gitlab_push("master", &sha(98)))
        .send()
        .await;
    assert_eq!(gitlab.status, 401, "{}", gitlab.text);
    let github = ferry
        .hook("shop")
        .github("push")
        .body(push_payload(REPO, "master", &sha(97), &commit_time(97)))
        .send()
        .await;
    assert_eq!(github.status, 401, "{}", github.text);
    ferry.settled("shop").await;
    assert_eq!(ferry.runs().len(), 1, "{:?}", ferry.runs());

    // Naming a ref needs a verified delivery, even where git_ref is an allowed modifier.
    let lax = Ferry::with_config(&shop_ci()).start().await;
    let named = lax
        .hook("shop")
        .query("git_ref=attacker-branch")
        .send()
        .await;
    assert_eq!(named.status, 400, "{}", named.text);
    assert!(named.error().contains("verified"), "{}", named.text);
}

#[tokio::test]
async fn an_unverified_delivery_replayed_after_a_scheme_is_added_carries_no_version() {
    // The app verifies nothing yet: an unsigned GitLab push deploys its commit (as before).
    let open = SHOP.replace(
        "[apps.shop.verify]\ngithub = \"It's a Secret to Everybody\"\n# Many tests redeploy with a bare curl-style request: those carry no version.\nallow_unsigned = true\n",
        "",
    );
    assert!(!open.contains("[apps.shop.verify]"), "{open}");
    let mut ferry = Ferry::with_config(&open).start().await;
    let id = ferry
        .hook("shop")
        .header("X-Gitlab-Event", "Push Hook")
        .json(&gitlab_push("master", &sha(7)))
        .query("services=web")
        .send()
        .await
        .accepted();
    let web = only(&ferry.settle(id).await, "web").clone();
    assert_eq!(web["commit"], sha(7).as_str());

    // Now the app verifies GitHub. Replaying the stored unverified delivery goes around the
    // request path, so the planner itself must drop its version.
    let config = std::fs::read_to_string(ferry.config_path()).expect("config");
    let verified = config.replace(
        "token = \"secret-token-1\"\n",
        "token = \"secret-token-1\"\n[apps.shop.verify]\ngithub = \"It's a Secret to Everybody\"\n",
    );
    std::fs::write(ferry.config_path(), verified).expect("write config");
    ferry.sigterm();
    ferry.wait_exit(Duration::from_secs(30)).await;
    ferry.restart().await;
    let replay = ferry
        .post(&format!("/api/v1/deliveries/{id}/replay"), json!({}))
        .await
        .accepted();
    let again = only(&ferry.settle(replay).await, "web").clone();
    assert_eq!(again["state"], "succeeded", "{again:#}");
    assert!(again["commit"].is_null(), "{again:#}");
    assert_eq!(again["git_ref"], "master");
    let env = ferry.run_env(again["id"].as_i64().expect("id"));
    assert_eq!(env.get("FERRY_GIT_COMMIT"), None, "{env:?}");
}

#[tokio::test]
async fn a_modifier_the_app_does_not_allow_is_400() {
    let ferry = Ferry::shop().start().await;
    // A signed push: still, `git_ref` is not among SHOP's (default) modifiers.
    let reply = ferry
        .hook("shop")
        .github("push")
        .query("git_ref=v9")
        .body(push_payload(REPO, "master", &sha(3), &commit_time(3)))
        .signed(GITHUB_SECRET)
        .send()
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    let e = reply.error();
    assert!(
        e.contains("?git_ref=") && e.contains("apps.shop.modifiers"),
        "names the modifier and the key: {e}"
    );
    nothing_deployed(&ferry, "shop").await;

    // An app that allows only `git_ref` refuses `services`.
    let only_ref = SHOP.replace(
        "token = \"secret-token-1\"\n",
        "token = \"secret-token-1\"\nmodifiers = [\"git_ref\"]\n",
    );
    let ferry = Ferry::with_config(&only_ref).start().await;
    let reply = ferry.hook("shop").query("services=web").send().await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.error().contains("?services="), "{}", reply.text);
}

#[tokio::test]
async fn check_warns_about_apps_that_verify_nothing() {
    let config = r#"[server]
listen = "127.0.0.1:0"
data_dir = "data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.shop]
token = "secret-token-1"
verify = { github = "It's a Secret to Everybody" }
[apps.shop.services.web]
command = ["/bin/true"]

[apps.blog]
token = "blog-token-123456"
[apps.blog.services.site]
command = ["/bin/true"]
"#;
    let out = ConfigFile::new(config).check().await;
    out.success();
    assert!(
        out.stderr.contains("warning: apps.blog verifies no sender")
            && out.stderr.contains("apps.blog.verify.github"),
        "{out:#?}"
    );
    assert!(!out.stderr.contains("apps.shop"), "{out:#?}");

    // An app that verifies nothing and reports with a token: a hook URL alone could make
    // ferry post deployments and statuses on any commit. Said by name; not for `shop`,
    // whose senders are verified.
    let reporting = format!(
        "{config}[apps.blog.github]\ntoken = \"ghp_blogtoken\"\n[apps.blog.gitlab]\ntoken = \"glpat-blog\"\n\
         [apps.shop.github]\ntoken = \"ghp_shoptoken\"\n"
    );
    let out = ConfigFile::new(&reporting).check().await;
    out.success();
    assert!(
        out.stderr.contains(
            "warning: apps.blog reports to apps.blog.github, apps.blog.gitlab with your token"
        ),
        "{out:#?}"
    );
    assert!(!out.stderr.contains("apps.shop"), "{out:#?}");

    // `require = false` next to a scheme no longer lets anything through: an error that
    // points to `allow_unsigned`.
    let lax = config.replace(
        "verify = { github = \"It's a Secret to Everybody\" }",
        "verify = { github = \"It's a Secret to Everybody\", require = false }",
    );
    let out = ConfigFile::new(&lax).check().await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .contains("ferry.toml:8: apps.shop.verify.require")
            && out.stderr.contains("allow_unsigned"),
        "{out:#?}"
    );
}
