//! Containers, end to end: a real registry notifies ferry of image pushes, and ferry replaces a
//! real container through the Docker Engine — health-gated, with rollback — keeping what the
//! user set on it. See `dockerenv.rs` for the registry and the test images.

use serde_json::Value;

use crate::dockerenv::*;
use crate::fake_http::FakeHttp;
use crate::support::*;

/// The bearer token the registry notifies ferry with.
pub const NOTIFY_TOKEN: &str = "registry-notify-token";

/// ferry on 127.0.0.1:`port` (from [`free_port`] when the registry's config needs the hook URL
/// before ferry starts; else 0) with one image service `shop/api` that follows `repo` (pushes
/// notified with [`NOTIFY_TOKEN`]) and replaces the container `container`.
pub fn config(port: u16, repo: &str, container: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
data_dir = "{{dir}}/data"
admin_token = "${{FERRY_ADMIN_TOKEN}}"

[apps.shop]
token = "{HOOK_TOKEN}"
[apps.shop.verify]
bearer = "{NOTIFY_TOKEN}"

[apps.shop.services.api]
image = {{ repository = "{repo}", tags = "semver:^1" }}
docker = {{ container = "{container}", health_timeout = "15s" }}
"#
    )
}

/// The deployment of service `api` that the manifest push of `tag` caused, once in `state`
/// (`what` names it while waiting).
pub async fn deployment_of_tag(ferry: &Ferry, tag: &str, what: &str, state: &str) -> Value {
    let list = ferry
        .wait_deployments("app=shop&service=api", what, |list| {
            list.iter()
                .any(|d| d["image_tag"] == tag && d["state"] == state)
        })
        .await;
    list.into_iter()
        .find(|d| d["image_tag"] == tag && d["state"] == state)
        .expect("found above")
}

fn container_id(name: &str) -> String {
    docker(&["inspect", "--format", "{{.Id}}", name])
        .trim()
        .to_string()
}

#[tokio::test]
#[ignore = "needs Docker and docker-registry: cargo test -- --include-ignored"]
async fn an_image_push_replaces_the_container_health_gated_with_rollback() {
    if !require_docker() {
        return;
    }
    let mut scope = DockerScope::new("ferry-ct");
    let name = scope.name("api");
    let network = scope.name("net");
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hooks/shop/{HOOK_TOKEN}");
    let registry = Registry::start(Some(&hook), Some(&format!("Bearer {NOTIFY_TOKEN}")));
    let repo = scope.repo(&registry.repo("acme/api"));
    let ferry = Ferry::with_config(&config(port, &repo, &name))
        .dir("data")
        .dir("marker")
        .start()
        .await;

    // The user's container, started by hand from 1.0.0 with settings ferry must keep.
    for (v, broken) in [
        ("1.0.0", false),
        ("1.1.0", false),
        ("1.2.0", true),
        ("2.0.0", false),
    ] {
        build_image(&format!("{repo}:{v}"), v, broken);
    }
    std::fs::write(ferry.path("marker/marker"), "kept-across-deploys").unwrap();
    docker(&["network", "create", "--label", TEST_LABEL, &network]);
    let _network = NetworkGuard(network.clone());
    let mount = format!("{}:/data:ro", ferry.path("marker").display());
    // A fixed host port: the new container can only bind it once the old one has stopped.
    let publish = format!("127.0.0.1:{}:8080", free_port());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &network,
        "--network-alias",
        "api-alias",
        "-p",
        &publish,
        "-e",
        "GREETING=hello-from-the-user",
        "-v",
        &mount,
        "--label",
        "ferry.service=api",
        "--restart",
        "unless-stopped",
        &format!("{repo}:1.0.0"),
    ]);
    wait_health(&name, "healthy").await;
    let address = published(&name, APP_PORT);

    // 1.0.0 pushed: ferry pins the running container to the pushed digest.
    let d100 = push(&format!("{repo}:1.0.0"));
    let first = deployment_of_tag(&ferry, "1.0.0", "1.0.0 deployed", "succeeded").await;
    assert_eq!(first["image_digest"], d100.as_str(), "{first:#}");
    assert_eq!(first["source"], "registry", "{first:#}");

    // 1.1.0: a healthy new version replaces it, keeping env, mounts, ports, labels, alias.
    let before = container_id(&name);
    let d110 = push(&format!("{repo}:1.1.0"));
    let second = deployment_of_tag(&ferry, "1.1.0", "1.1.0 deployed", "succeeded").await;
    assert_eq!(second["version"], format!("1.1.0@{d110}"), "{second:#}");
    let after = container_id(&name);
    assert_ne!(before, after, "a new container runs 1.1.0");
    let answer = http_get(&published(&name, APP_PORT)).await.unwrap();
    assert_eq!(answer_value(&answer, "version"), Some("1.1.0"), "{answer}");
    assert_eq!(
        answer_value(&answer, "greeting"),
        Some("hello-from-the-user"),
        "{answer}"
    );
    assert_eq!(
        answer_value(&answer, "marker"),
        Some("kept-across-deploys"),
        "{answer}"
    );
    assert_eq!(
        published(&name, APP_PORT),
        address,
        "the same published host port"
    );
    let c = inspect(&name).unwrap();
    assert_eq!(
        c["Config"]["Image"],
        format!("{repo}@{d110}"),
        "pinned by digest"
    );
    assert_eq!(c["Config"]["Labels"]["ferry.service"], "api");
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(c["State"]["Health"]["Status"], "healthy");
    let aliases: Vec<String> = c["NetworkSettings"]["Networks"][&network]["Aliases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert!(aliases.contains(&"api-alias".to_string()), "{aliases:?}");
    assert!(
        !aliases.contains(&before[..12].to_string()),
        "old short id kept: {aliases:?}"
    );
    assert_ne!(
        c["Config"]["Hostname"],
        before[..12],
        "old generated hostname copied"
    );
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"VERSION=1.1.0"),
        "the new image's own env applies: {env:?}"
    );
    let log = ferry.log(second["id"].as_i64().unwrap()).await;
    for step in [
        "pulling",
        "digest",
        "created",
        "healthy after",
        "removed the old container",
    ] {
        assert!(log.contains(step), "deploy log lacks {step:?}:\n{log}");
    }

    // 1.2.0 fails its healthcheck: rolled back, 1.1.0 runs on in the same container.
    push(&format!("{repo}:1.2.0"));
    let third = deployment_of_tag(&ferry, "1.2.0", "1.2.0 rolled back", "rolled_back").await;
    assert!(
        third["reason"].as_str().unwrap_or("").contains("unhealthy"),
        "{third:#}"
    );
    assert_eq!(container_id(&name), after, "the 1.1.0 container is back");
    assert!(
        state(&name).starts_with("status=running"),
        "{}",
        state(&name)
    );
    let answer = http_get(&published(&name, APP_PORT)).await.unwrap();
    assert_eq!(answer_value(&answer, "version"), Some("1.1.0"), "{answer}");
    let leftovers = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={name}-ferry-old"),
        "-q",
    ]);
    assert!(
        leftovers.trim().is_empty(),
        "old containers left: {leftovers}"
    );

    // 2.0.0 is outside semver:^1.
    push(&format!("{repo}:2.0.0"));
    let fourth = deployment_of_tag(&ferry, "2.0.0", "2.0.0 skipped", "skipped").await;
    assert!(
        fourth["reason"].as_str().unwrap().contains("semver:^1"),
        "{fourth:#}"
    );

    // The same digest under another version tag deploys nothing again.
    docker(&["tag", &format!("{repo}:1.1.0"), &format!("{repo}:v1.1.0")]);
    push(&format!("{repo}:v1.1.0"));
    let again = deployment_of_tag(&ferry, "v1.1.0", "v1.1.0 skipped", "skipped").await;
    assert!(
        again["reason"]
            .as_str()
            .unwrap()
            .contains("already deployed"),
        "{again:#}"
    );

    // A redelivered notification is a duplicate.
    let delivery = ferry
        .delivery(second["delivery_id"].as_i64().unwrap())
        .await;
    let body = delivery["body"].as_str().unwrap().to_string();
    let redelivered = ferry
        .hook("shop")
        .header(
            "Content-Type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .header("Authorization", &format!("Bearer {NOTIFY_TOKEN}"))
        .body(body)
        .send()
        .await;
    assert_eq!(redelivered.status, 200, "{}", redelivered.text);
    assert_eq!(redelivered.json()["status"], "duplicate");
    ferry.settled("shop").await;
    assert_eq!(container_id(&name), after);

    // `ferry rollback` returns to the previous successful version: 1.0.0, by digest.
    let out = ferry
        .cli(&["rollback", "shop", "api", "--wait"])
        .run()
        .await;
    let text = out.success().to_string();
    assert!(text.contains("succeeded"), "{text}");
    let c = inspect(&name).unwrap();
    assert_eq!(c["Config"]["Image"], format!("{repo}@{d100}"));
    let answer = http_get(&published(&name, APP_PORT)).await.unwrap();
    assert_eq!(answer_value(&answer, "version"), Some("1.0.0"), "{answer}");
    assert_eq!(
        answer_value(&answer, "greeting"),
        Some("hello-from-the-user"),
        "{answer}"
    );
    let status = ferry
        .get("/api/v1/deployments?app=shop&service=api&limit=1")
        .await;
    let latest = &status["deployments"][0];
    assert_eq!(latest["event"], "rollback", "{latest:#}");
    assert!(
        latest["reason"]
            .as_str()
            .unwrap()
            .starts_with("rollback to deployment"),
        "{latest:#}"
    );
    scope.clean();
}

/// Removes a test network when dropped (after the containers on it).
struct NetworkGuard(String);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        remove_containers_on_network(&self.0);
        let _ = try_docker(&["network", "rm", &self.0]);
    }
}

fn remove_containers_on_network(network: &str) {
    if let Ok(ids) = try_docker(&["ps", "-aq", "--filter", &format!("network={network}")]) {
        for id in ids.split_whitespace() {
            let _ = try_docker(&["rm", "-f", id]);
        }
    }
}

/// Image services deployed by a command: every image sender's push reaches them, with the
/// image in `FERRY_IMAGE*` (no Docker needed).
const IMAGE_APPS: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.hub]
token = "image-hook-token-1"
[apps.hub.services.testhook]
image = { repository = "docker.io/svendowideit/testhook", tags = "latest" }
command = ["{dir}/deploy.sh"]
[apps.hub.services.quay]
image = { repository = "quay.io/dgangaia/test", tags = "latest" }
command = ["{dir}/deploy.sh"]
[apps.hub.services.pinned]
image = { repository = "quay.io/dgangaia/test", tags = "semver:^1" }
command = ["{dir}/deploy.sh"]

[apps.harbor]
token = "image-hook-token-2"
[apps.harbor.verify]
bearer = "It's a Secret to Everybody"
[apps.harbor.services.alpine]
image = { repository = "localhost/harbor/alpine", tags = "latest" }
command = ["{dir}/deploy.sh"]
"#;

#[tokio::test]
async fn image_pushes_of_every_sender_reach_image_services() {
    let ferry = Ferry::with_config(IMAGE_APPS).start().await;

    // Docker Hub sends no identifying header: its hook URL names it (`ferry hooks` says so).
    // Tag `latest`, no digest (resolved by the docker executor; a command gets
    // the tag). A redelivery of the same body is a duplicate.
    let hub = ferry
        .hook("hub")
        .token("image-hook-token-1")
        .query("source=dockerhub")
        .fixture("dockerhub/push")
        .send()
        .await;
    let id = hub.accepted();
    let deps = ferry.settle(id).await;
    let testhook = only(&deps, "testhook");
    assert_eq!(testhook["state"], "succeeded", "{testhook:#}");
    assert_eq!(testhook["source"], "dockerhub");
    assert_eq!(testhook["version"], "latest");
    let env = ferry.run_env(testhook["id"].as_i64().unwrap());
    assert_eq!(env["FERRY_IMAGE"], "docker.io/svendowideit/testhook");
    assert_eq!(env["FERRY_IMAGE_TAG"], "latest");
    assert!(!env.contains_key("FERRY_IMAGE_DIGEST"), "{env:?}");
    assert_eq!(env["FERRY_EVENT"], "image_push");
    assert!(
        only(&deps, "quay")["reason"]
            .as_str()
            .unwrap()
            .contains("follows quay.io/dgangaia/test")
    );
    let again = ferry
        .hook("hub")
        .token("image-hook-token-1")
        .query("source=dockerhub")
        .fixture("dockerhub/push")
        .send()
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["status"], "duplicate");

    // Quay: `updated_tags` [latest] deploys the `latest` service; `semver:^1` refuses it.
    let (_, deps) = ferry
        .hook("hub")
        .token("image-hook-token-1")
        .query("source=quay")
        .fixture("quay/repo-push")
        .deliver()
        .await;
    assert_eq!(only(&deps, "quay")["state"], "succeeded");
    assert_eq!(only(&deps, "quay")["image_tag"], "latest");
    let pinned = only(&deps, "pinned");
    assert_eq!(pinned["state"], "skipped");
    assert!(
        pinned["reason"].as_str().unwrap().contains("semver:^1"),
        "{pinned:#}"
    );

    // Harbor, verified by its Authorization header; this push is by digest only, which no
    // tag policy takes.
    let (_, deps) = ferry
        .hook("harbor")
        .token("image-hook-token-2")
        .query("source=harbor")
        .fixture("harbor/push-artifact-default")
        .deliver()
        .await;
    let alpine = only(&deps, "alpine");
    assert_eq!(alpine["state"], "skipped", "{alpine:#}");
    assert!(
        alpine["reason"].as_str().unwrap().contains("(by digest)"),
        "{alpine:#}"
    );
    assert!(
        alpine["image_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:954b378c")
    );
    let unsigned = ferry
        .hook("harbor")
        .token("image-hook-token-2")
        .query("source=harbor")
        .fixture("harbor/push-artifact-default")
        .without_header("Authorization")
        .send()
        .await;
    assert_eq!(unsigned.status, 401, "{}", unsigned.text);
}

/// GitHub Container Registry: GitHub's `package` / `registry_package` events, signed like every
/// GitHub delivery, reach image services; the version's tag and digest come from its metadata.
#[tokio::test]
async fn ghcr_package_events_are_verified_and_deploy_image_services() {
    let config = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.gh]
token = "image-hook-token-3"
[apps.gh.verify]
github = "It's a Secret to Everybody"
[apps.gh.services.web]
image = { repository = "ghcr.io/acme/web", tags = "semver:^1" }
command = ["{dir}/deploy.sh"]
[apps.gh.services.npm]
image = { repository = "ghcr.io/codertocat/hello-world/hello-world-npm", tags = "latest" }
command = ["{dir}/deploy.sh"]
"#;
    let ferry = Ferry::with_config(config).start().await;
    const DIGEST: &str = "sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498";
    // The shape GHCR sends for a container pushed as v1.2.3 (the documented example below has
    // no tag).
    let body = |tag: &str| {
        serde_json::json!({
            "action": "published",
            "registry_package": {
                "name": "web", "namespace": "Acme", "ecosystem": "CONTAINER",
                "package_type": "CONTAINER",
                "package_version": {
                    "version": DIGEST, "updated_at": "2026-11-30T10:00:00Z",
                    "package_url": format!("ghcr.io/acme/web:{tag}"),
                    "container_metadata": {"tag": {"name": tag, "digest": DIGEST}}
                }
            }
        })
        .to_string()
    };
    let (_, deps) = ferry
        .hook("gh")
        .token("image-hook-token-3")
        .github("registry_package")
        .body(body("v1.2.3"))
        .signed(GITHUB_SECRET)
        .deliver()
        .await;
    let web = only(&deps, "web");
    assert_eq!(web["state"], "succeeded", "{web:#}");
    assert_eq!(web["source"], "github");
    assert_eq!(web["version"], format!("v1.2.3@{DIGEST}"));
    let env = ferry.run_env(web["id"].as_i64().unwrap());
    assert_eq!(env["FERRY_IMAGE"], "ghcr.io/acme/web");
    assert_eq!(env["FERRY_IMAGE_TAG"], "v1.2.3");
    assert_eq!(env["FERRY_IMAGE_DIGEST"], DIGEST);
    not_deployed(&deps, "npm");

    // v2.0.0 is outside `semver:^1`: recorded as skipped, with the reason.
    let id = ferry
        .hook("gh")
        .token("image-hook-token-3")
        .github("registry_package")
        .body(body("v2.0.0"))
        .signed(GITHUB_SECRET)
        .send()
        .await
        .accepted();
    let web = only(&ferry.settle(id).await, "web").clone();
    assert_eq!(web["state"], "skipped", "{web:#}");
    assert!(
        web["reason"].as_str().unwrap().contains("semver:^1"),
        "{web:#}"
    );

    // GitHub's documented examples (signed with the fixture secret): a version without a tag,
    // which no tag policy deploys, recorded with its digest.
    for fixture in [
        "github/registry_package-published-container",
        "github/package-published-container",
    ] {
        let (id, deps) = ferry
            .hook("gh")
            .token("image-hook-token-3")
            .fixture(fixture)
            .deliver()
            .await;
        let npm = only(&deps, "npm");
        assert_eq!(npm["state"], "skipped", "{fixture}: {npm:#}");
        assert!(
            npm["reason"].as_str().unwrap().contains("(by digest)"),
            "{npm:#}"
        );
        assert_eq!(npm["image_digest"], DIGEST);
        assert!(ferry.delivery(id).await["verified"].as_bool().unwrap());
    }

    // Signed with another secret: 401, nothing deployed.
    let forged = ferry
        .hook("gh")
        .token("image-hook-token-3")
        .github("registry_package")
        .body(body("v1.9.9"))
        .signed("not the secret")
        .send()
        .await;
    assert_eq!(forged.status, 401, "{}", forged.text);
}

#[tokio::test]
#[ignore = "needs Docker and docker-registry: cargo test -- --include-ignored"]
async fn labelled_replicas_are_replaced_one_at_a_time_and_old_images_pruned() {
    if !require_docker() {
        return;
    }
    let mut scope = DockerScope::new("ferry-rep");
    let label = format!("ferry.service={}", scope.prefix());
    scope.label(&label);
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hooks/shop/{HOOK_TOKEN}");
    let registry = Registry::start(Some(&hook), Some(&format!("Bearer {NOTIFY_TOKEN}")));
    let repo = scope.repo(&registry.repo("acme/web"));
    let config = config(port, &repo, "unused").replace(
        r#"docker = { container = "unused", health_timeout = "15s" }"#,
        &format!(r#"docker = {{ label = "{label}", health_timeout = "15s", keep_images = 2 }}"#),
    );
    let ferry = Ferry::with_config(&config).dir("data").start().await;
    for v in ["1.0.0", "1.1.0"] {
        build_image(&format!("{repo}:{v}"), v, false);
    }
    let replicas = [scope.name("r1"), scope.name("r2")];
    for r in &replicas {
        docker(&[
            "run",
            "-d",
            "--name",
            r,
            "--label",
            &label,
            &format!("{repo}:1.0.0"),
        ]);
    }
    for r in &replicas {
        wait_health(r, "healthy").await;
    }

    push(&format!("{repo}:1.0.0"));
    deployment_of_tag(&ferry, "1.0.0", "1.0.0 deployed", "succeeded").await;
    let d110 = push(&format!("{repo}:1.1.0"));
    let dep = deployment_of_tag(&ferry, "1.1.0", "1.1.0 deployed", "succeeded").await;
    for r in &replicas {
        let c = inspect(r).unwrap();
        assert_eq!(c["Config"]["Image"], format!("{repo}@{d110}"), "{r}");
        assert_eq!(c["State"]["Health"]["Status"], "healthy", "{r}");
    }
    // One at a time: the first replica is healthy and its old container gone before the
    // second one is touched.
    let log = ferry.log(dep["id"].as_i64().unwrap()).await;
    let first_done = log
        .find("removed the old container")
        .expect("first replica done");
    let second_start = log
        .find(&format!("container {}:", replicas[1]))
        .expect("second replica started");
    assert!(
        first_done < second_start,
        "replicas replaced together:\n{log}"
    );

    // keep_images = 2: after 1.2.0, 1.2.0 runs and 1.1.0 (the rollback) stays; 1.0.0 goes.
    build_image(&format!("{repo}:1.2.0"), "1.2.0", false);
    push(&format!("{repo}:1.2.0"));
    deployment_of_tag(&ferry, "1.2.0", "1.2.0 deployed", "succeeded").await;
    assert!(try_docker(&["image", "inspect", &format!("{repo}:1.1.0")]).is_ok());
    assert!(try_docker(&["image", "inspect", &format!("{repo}:1.2.0")]).is_ok());
    assert!(
        try_docker(&["image", "inspect", &format!("{repo}:1.0.0")]).is_err(),
        "1.0.0 should have been pruned"
    );
    scope.clean();
}

/// Runs `docker-compose down` for a test project when dropped.
struct ComposeGuard {
    project: String,
    file: String,
}

impl Drop for ComposeGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker-compose")
            .args(["-p", &self.project, "-f", &self.file, "down", "-t", "1"])
            .output();
    }
}

fn compose(project: &str, file: &str, args: &[&str]) {
    let out = std::process::Command::new("docker-compose")
        .args(["-p", project, "-f", file])
        .args(args)
        .output()
        .expect("run docker-compose");
    assert!(
        out.status.success(),
        "docker-compose {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn compose_container(project: &str, service: &str) -> String {
    docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ])
    .trim()
    .to_string()
}

#[tokio::test]
#[ignore = "needs Docker, docker-registry and docker-compose: cargo test -- --include-ignored"]
async fn a_compose_service_is_pulled_and_recreated_through_compose() {
    if !require_docker() {
        return;
    }
    if try_docker(&["version"]).is_ok()
        && std::process::Command::new("docker-compose")
            .arg("version")
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
    {
        unavailable("docker-compose is not installed");
        return;
    }
    let mut scope = DockerScope::new("ferry-cmp");
    let project = scope.prefix().to_string();
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hooks/shop/{HOOK_TOKEN}");
    let registry = Registry::start(Some(&hook), Some(&format!("Bearer {NOTIFY_TOKEN}")));
    let repo = scope.repo(&registry.repo("acme/site"));
    let config = config(port, &repo, "unused")
        .replace(r#"tags = "semver:^1""#, r#"tags = "stable""#)
        .replace(
            r#"docker = { container = "unused", health_timeout = "15s" }"#,
            &format!(
                r#"compose = {{ project = "{project}", file = "compose.yml", services = ["api"], health_timeout = "15s" }}"#
            ),
        );
    let ferry = Ferry::with_config(&config).dir("data").start().await;
    let file = ferry.path("compose.yml").display().to_string();
    std::fs::write(
        &file,
        format!(
            "version: \"2.4\"\nservices:\n  api:\n    image: {repo}:stable\n    environment:\n      GREETING: from-compose\n  other:\n    image: {repo}:stable\n"
        ),
    )
    .unwrap();
    let _down = ComposeGuard {
        project: project.clone(),
        file: file.clone(),
    };
    build_image(&format!("{repo}:stable"), "1.0.0", false);
    compose(&project, &file, &["up", "-d"]);
    let api_before = compose_container(&project, "api");
    let other_before = compose_container(&project, "other");
    assert!(!api_before.is_empty() && !other_before.is_empty());

    // A new `stable` is pushed: ferry pulls it and recreates `api` only, through Compose.
    build_image(&format!("{repo}:stable"), "1.1.0", false);
    let digest = push(&format!("{repo}:stable"));
    let dep = ferry
        .wait_deployments("app=shop&service=api", "the compose deployment", |l| {
            l.iter().any(|d| is_final(&d["state"]))
        })
        .await
        .remove(0);
    assert_eq!(
        dep["state"],
        "succeeded",
        "{dep:#}\n{}",
        ferry.log(dep["id"].as_i64().unwrap()).await
    );
    assert_eq!(dep["image_digest"], digest.as_str());
    let api_after = compose_container(&project, "api");
    assert_ne!(api_after, api_before, "api recreated");
    assert_eq!(
        compose_container(&project, "other"),
        other_before,
        "other untouched"
    );
    let c = inspect(&api_after).unwrap();
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.contains(&"VERSION=1.1.0"), "{env:?}");
    assert!(env.contains(&"GREETING=from-compose"), "{env:?}");
    let log = ferry.log(dep["id"].as_i64().unwrap()).await;
    assert!(log.contains("up -d --no-deps api"), "{log}");
    assert!(log.contains("healthy after"), "{log}");

    // Compose recognises its own container: a later `up` by hand leaves `api` alone.
    compose(&project, &file, &["up", "-d", "api"]);
    assert_eq!(
        compose_container(&project, "api"),
        api_after,
        "compose recreated api again"
    );
    scope.clean();
}

/// Leaves the Swarm when dropped, if the test made this engine a Swarm manager.
struct SwarmGuard {
    joined: bool,
    service: String,
}

impl Drop for SwarmGuard {
    fn drop(&mut self) {
        let _ = try_docker(&["service", "rm", &self.service]);
        if self.joined {
            let _ = try_docker(&["swarm", "leave", "--force"]);
            let _ = try_docker(&["network", "rm", "docker_gwbridge"]);
        }
        // Swarm tasks pull by digest: those images have no tag to remove them by.
        let _ = try_docker(&[
            "image",
            "prune",
            "-f",
            "--filter",
            &format!("label={TEST_LABEL}"),
        ]);
    }
}

#[tokio::test]
#[ignore = "needs Docker (a single-node Swarm) and docker-registry: cargo test -- --include-ignored"]
async fn a_swarm_service_is_updated_and_swarm_rolls_back_a_bad_image() {
    if !require_docker() {
        return;
    }
    let active = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    let joined = active.trim() != "active";
    if joined {
        if let Err(e) = try_docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]) {
            unavailable(&format!("this engine cannot run a single-node Swarm: {e}"));
            return;
        }
    }
    let mut scope = DockerScope::new("ferry-swarm");
    let service = scope.name("api");
    let _swarm = SwarmGuard {
        joined,
        service: service.clone(),
    };
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hooks/shop/{HOOK_TOKEN}");
    let registry = Registry::start(Some(&hook), Some(&format!("Bearer {NOTIFY_TOKEN}")));
    let repo = scope.repo(&registry.repo("acme/swarm"));
    let config = config(port, &repo, "unused").replace(
        r#"docker = { container = "unused", health_timeout = "15s" }"#,
        &format!(r#"swarm = {{ service = "{service}", timeout = "60s" }}"#),
    );
    let ferry = Ferry::with_config(&config).dir("data").start().await;
    for (v, broken) in [("1.0.0", false), ("1.1.0", false), ("1.2.0", true)] {
        build_image(&format!("{repo}:{v}"), v, broken);
    }
    let d100 = push(&format!("{repo}:1.0.0"));
    deployment_of_tag(&ferry, "1.0.0", "1.0.0 recorded", "failed").await;
    // The service, created by the user, with Swarm's own rollback on failure.
    docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        &service,
        "--health-cmd",
        "/app check",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "4s",
        "--env",
        "GREETING=from-swarm",
        &format!("{repo}@{d100}"),
    ]);

    let d110 = push(&format!("{repo}:1.1.0"));
    let ok = deployment_of_tag(&ferry, "1.1.0", "1.1.0 rolled out", "succeeded").await;
    let spec = inspect(&service).unwrap();
    let image = spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(image, format!("{repo}@{d110}"));
    let env = &spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"];
    assert!(env.to_string().contains("GREETING=from-swarm"), "{env}");
    assert!(
        ferry
            .log(ok["id"].as_i64().unwrap())
            .await
            .contains("update completed")
    );

    push(&format!("{repo}:1.2.0"));
    let bad = deployment_of_tag(&ferry, "1.2.0", "1.2.0 rolled back by Swarm", "rolled_back").await;
    assert!(bad["reason"].as_str().unwrap().contains("Swarm"), "{bad:#}");
    let spec = inspect(&service).unwrap();
    assert_eq!(
        spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            .as_str()
            .unwrap(),
        image,
        "Swarm's rollback restored 1.1.0"
    );
    scope.clean();
}

#[tokio::test]
async fn a_docker_hub_push_reports_back_to_its_callback_url() {
    // Docker Hub's callback endpoint, played by a local listener (Docker Hub cannot run here).
    let callback = FakeHttp::start();
    let hub = callback.addr();
    let config = IMAGE_APPS.replace(
        "[apps.hub]\ntoken = \"image-hook-token-1\"",
        &format!(
            "[apps.hub]\ntoken = \"image-hook-token-1\"\ndockerhub_callback = \"http://{hub}/u/\""
        ),
    );
    let ferry = Ferry::with_config(&config).start().await;
    let body = dockerhub_push_calling_back_to(hub);
    let (_, deps) = ferry
        .hook("hub")
        .token("image-hook-token-1")
        .query("source=dockerhub")
        .header("Content-Type", "application/json")
        .body(body)
        .deliver()
        .await;
    assert_eq!(only(&deps, "testhook")["state"], "succeeded");
    let request = callback
        .wait_calls(1, std::time::Duration::from_secs(10))
        .await
        .remove(0);
    assert!(
        request.method == "POST" && request.target.starts_with("/u/svendowideit/testhook/hook/"),
        "{request:#?}"
    );
    let json = request.json();
    assert_eq!(json["state"], "success", "{json}");
    assert_eq!(json["context"], "ferry");

    // The unmodified fixture's callback_url (Docker Hub's own host) is outside the prefix
    // configured here: not called.
    ferry
        .hook("hub")
        .token("image-hook-token-1")
        .query("source=dockerhub")
        .fixture("dockerhub/push")
        .deliver()
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(callback.calls().len(), 1, "{:#?}", callback.calls());
    assert!(
        ferry
            .stderr_text()
            .contains("outside dockerhub_callback's prefix")
    );
}

/// A Quay-shaped push of `repo` (host/namespace/name) with `tags`.
fn quay_push(repo: &str, tags: &[&str]) -> String {
    serde_json::json!({
        "name": "api",
        "repository": "acme/api",
        "namespace": "acme",
        "docker_url": repo,
        "homepage": "https://quay.example/repository/acme/api",
        "updated_tags": tags,
    })
    .to_string()
}

#[tokio::test]
#[ignore = "needs Docker and docker-registry: cargo test -- --include-ignored"]
async fn a_push_without_digest_is_resolved_in_the_registry_and_a_forged_tag_is_refused() {
    if !require_docker() {
        return;
    }
    let mut scope = DockerScope::new("ferry-res");
    let name = scope.name("api");
    let registry = Registry::start(None, None);
    let repo = scope.repo(&registry.repo("acme/api"));
    let config = config(0, &repo, &name).replace(
        &format!("[apps.shop.verify]\nbearer = \"{NOTIFY_TOKEN}\"\n"),
        "",
    );
    let ferry = Ferry::with_config(&config).dir("data").start().await;
    build_image(&format!("{repo}:1.0.0"), "1.0.0", false);
    push(&format!("{repo}:1.0.0"));
    docker(&["run", "-d", "--name", &name, &format!("{repo}:1.0.0")]);
    wait_health(&name, "healthy").await;
    let before = container_id(&name);

    // A forged push: the tag does not exist in the registry. Nothing is touched.
    let forged = ferry
        .hook("shop")
        .query("source=quay")
        .header("Content-Type", "application/json")
        .body(quay_push(&repo, &["1.9.0"]))
        .send()
        .await
        .accepted();
    let dep = ferry.settle(forged).await.remove(0);
    assert_eq!(dep["state"], "failed", "{dep:#}");
    assert!(
        dep["reason"].as_str().unwrap().contains("pulling"),
        "{dep:#}"
    );
    assert_eq!(container_id(&name), before, "the container was touched");

    // A real push without a digest: resolved when pulled, recorded, and deployed pinned.
    build_image(&format!("{repo}:1.1.0"), "1.1.0", false);
    let digest = push(&format!("{repo}:1.1.0"));
    let real = ferry
        .hook("shop")
        .query("source=quay")
        .header("Content-Type", "application/json")
        .body(quay_push(&repo, &["1.1.0"]))
        .send()
        .await
        .accepted();
    let dep = ferry.settle(real).await.remove(0);
    assert_eq!(dep["state"], "succeeded", "{dep:#}");
    assert_eq!(dep["image_digest"], digest.as_str(), "{dep:#}");
    let c = inspect(&name).unwrap();
    assert_eq!(c["Config"]["Image"], format!("{repo}@{digest}"));
    scope.clean();
}

#[tokio::test]
#[ignore = "needs Docker and docker-registry: cargo test -- --include-ignored"]
async fn a_replacement_interrupted_half_way_is_restored_then_redone() {
    if !require_docker() {
        return;
    }
    let mut scope = DockerScope::new("ferry-int");
    let name = scope.name("api");
    let registry = Registry::start(None, None);
    let repo = scope.repo(&registry.repo("acme/api"));
    let config = config(0, &repo, &name).replace(
        &format!("[apps.shop.verify]\nbearer = \"{NOTIFY_TOKEN}\"\n"),
        "",
    );
    let ferry = Ferry::with_config(&config).dir("data").start().await;
    for v in ["1.0.0", "1.1.0"] {
        build_image(&format!("{repo}:{v}"), v, false);
        push(&format!("{repo}:{v}"));
    }
    // What a ferry killed during a replacement leaves: the old container stopped under its
    // aside name, and an unverified new one under the real name.
    docker(&["run", "-d", "--name", &name, &format!("{repo}:1.0.0")]);
    let old = container_id(&name);
    let aside = format!("{name}-ferry-old-7");
    docker(&["rename", &name, &aside]);
    docker(&["stop", "-t", "1", &aside]);
    docker(&["run", "-d", "--name", &name, &format!("{repo}:1.1.0")]);
    let unverified = container_id(&name);

    let id = ferry
        .hook("shop")
        .query("source=quay")
        .header("Content-Type", "application/json")
        .body(quay_push(&repo, &["1.1.0"]))
        .send()
        .await
        .accepted();
    let dep = ferry.settle(id).await.remove(0);
    let log = ferry.log(dep["id"].as_i64().unwrap()).await;
    assert_eq!(dep["state"], "succeeded", "{dep:#}\n{log}");
    assert!(log.contains(&format!("restored {name}")), "{log}");
    // The old container was restored and then replaced properly; the unverified one is gone.
    let now = container_id(&name);
    assert!(now != old && now != unverified, "{log}");
    assert!(
        try_docker(&["inspect", &unverified]).is_err(),
        "the unverified container is left"
    );
    assert!(
        try_docker(&["inspect", &aside]).is_err(),
        "the aside container is left"
    );
    assert!(
        log.contains(&format!("old one ({}) renamed", &old[..12])),
        "{log}"
    );
    scope.clean();
}

/// `ferry-registry-pass` for the user `ferry`, bcrypt (the registry's htpasswd wants bcrypt).
const REGISTRY_USERS: &str = "ferry:$2b$05$99sxmJh/yFHlauj7p5S7Pup/Io0D9in0iNlo14UwwfokVsZnxoLYa";
const REGISTRY_PASS: &str = "ferry-registry-pass";

/// `docker` with its own client config dir (so a login never touches the user's).
fn docker_as(config_dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("docker")
        .env("DOCKER_CONFIG", config_dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run docker");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
#[ignore = "needs Docker and docker-registry: cargo test -- --include-ignored"]
async fn pulls_from_a_registry_that_wants_a_login_use_config_or_docker_credentials() {
    if !require_docker() {
        return;
    }
    let mut scope = DockerScope::new("ferry-auth");
    let registry = Registry::start_with_users(REGISTRY_USERS);
    let repo = scope.repo(&registry.repo("acme/api"));
    let logins = tempfile::tempdir().unwrap();
    docker_as(
        logins.path(),
        &["login", &registry.host(), "-u", "ferry", "--password-stdin"],
        Some(REGISTRY_PASS),
    );
    for v in ["1.0.0", "1.1.0"] {
        build_image(&format!("{repo}:{v}"), v, false);
        docker_as(logins.path(), &["push", &format!("{repo}:{v}")], None);
    }
    let (with_config, with_login) = (scope.name("cfg"), scope.name("login"));
    for c in [&with_config, &with_login] {
        docker(&["run", "-d", "--name", c, &format!("{repo}:1.0.0")]);
    }
    let config = || {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{{dir}}/data"
admin_token = "${{FERRY_ADMIN_TOKEN}}"

[apps.shop]
token = "{HOOK_TOKEN}"
[apps.shop.services.cfg]
image = {{ repository = "{repo}", tags = "semver:^1" }}
docker = {{ container = "{with_config}", username = "ferry", password = "${{REGISTRY_PASS}}" }}
[apps.shop.services.login]
image = {{ repository = "{repo}", tags = "semver:^1" }}
docker = {{ container = "{with_login}" }}
"#
        )
    };
    let push = quay_push(&repo, &["1.1.0"]);

    // Without DOCKER_CONFIG: the service with credentials in config pulls; the other is refused
    // by the registry, and its container is left alone.
    let ferry = Ferry::with_config(&config())
        .env("REGISTRY_PASS", REGISTRY_PASS)
        .env("DOCKER_CONFIG", "/nonexistent")
        .start()
        .await;
    let (_, deps) = ferry
        .hook("shop")
        .query("source=quay")
        .header("Content-Type", "application/json")
        .body(push.clone())
        .deliver()
        .await;
    assert_eq!(only(&deps, "cfg")["state"], "succeeded", "{deps:#?}");
    let refused = only(&deps, "login");
    assert_eq!(refused["state"], "failed", "{refused:#}");
    assert!(
        refused["reason"].as_str().unwrap().contains("pulling"),
        "{refused:#}"
    );
    let c = inspect(&with_login).unwrap();
    assert!(c["Config"]["Image"].as_str().unwrap().ends_with(":1.0.0"));
    drop(ferry);

    // With the user's Docker login (DOCKER_CONFIG), the other one pulls too.
    let ferry = Ferry::with_config(&config())
        .env("REGISTRY_PASS", REGISTRY_PASS)
        .env("DOCKER_CONFIG", logins.path().to_str().unwrap())
        .start()
        .await;
    let (_, deps) = ferry
        .hook("shop")
        .query("source=quay&services=login")
        .header("Content-Type", "application/json")
        .body(push)
        .deliver()
        .await;
    let login = only(&deps, "login");
    assert_eq!(login["state"], "succeeded", "{login:#}");
    let c = inspect(&with_login).unwrap();
    assert!(
        c["Config"]["Image"].as_str().unwrap().contains("@sha256:"),
        "{c:#}"
    );
    scope.clean();
}

/// `ferry cancel` of a container replacement in progress takes the path of a failed health
/// gate: the new container goes, the old one gets its name back and runs on; the deployment is
/// `cancelled`.
#[tokio::test]
#[ignore = "needs Docker and docker-registry: cargo test -- --include-ignored"]
async fn cancelling_a_container_replacement_rolls_it_back() {
    if !require_docker() {
        return;
    }
    let mut scope = DockerScope::new("ferry-cc");
    let name = scope.name("api");
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hooks/shop/{HOOK_TOKEN}");
    let registry = Registry::start(Some(&hook), Some(&format!("Bearer {NOTIFY_TOKEN}")));
    let repo = scope.repo(&registry.repo("acme/api"));
    let config =
        config(port, &repo, &name).replace("health_timeout = \"15s\"", "health_timeout = \"5m\"");
    let ferry = Ferry::with_config(&config).dir("data").start().await;
    for v in ["1.0.0", "1.1.0"] {
        build_image(&format!("{repo}:{v}"), v, false);
    }
    // The user's own healthcheck (copied to the new container) first runs after a minute: the
    // health gate is still waiting when the cancel comes.
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "ferry.service=api",
        "--health-cmd",
        "/app check",
        "--health-interval",
        "60s",
        &format!("{repo}:1.0.0"),
    ]);
    let old = container_id(&name);

    push(&format!("{repo}:1.1.0"));
    let running = deployment_of_tag(&ferry, "1.1.0", "1.1.0 running", "running").await;
    let id = running["id"].as_i64().unwrap();
    eventually("the health gate to wait", WAIT, async || {
        let log = ferry.log(id).await;
        if log.contains("waiting for its healthcheck") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;

    let out = ferry.cli(&["cancel", &id.to_string()]).run().await;
    assert!(out.success().contains("cancelling"), "{out:#?}");
    let d = ferry.wait_state(id, "cancelled").await;
    assert!(
        d["reason"].as_str().unwrap().contains("while it ran"),
        "{d:#}"
    );
    assert_eq!(
        container_id(&name),
        old,
        "the old container has its name back"
    );
    assert!(
        state(&name).starts_with("status=running"),
        "{}",
        state(&name)
    );
    let leftovers = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={name}-ferry-old"),
        "-q",
    ]);
    assert!(leftovers.trim().is_empty(), "containers left: {leftovers}");
    let log = ferry.log(id).await;
    assert!(
        log.contains("requested through the API; rolling back"),
        "{log}"
    );
    assert!(log.contains("rolled back:"), "{log}");
    scope.clean();
}
