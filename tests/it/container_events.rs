//! Container events, end to end: real containers managed by ferry's `docker` executor die,
//! restart and turn unhealthy, and a `[[notify]]` receiver (a local HTTP listener) gets
//! `container.died`, `container.restarted` and `container.unhealthy` with the service and the
//! version it runs — but nothing for what ferry's own deployments do to the containers, and at
//! most one per container and type per minute.
//!
//! The reconnecting to Docker's event stream (after the engine restarts) is tested at the unit
//! level (`watch::follow`): restarting the shared Docker daemon here would disturb every other
//! test using it.

use std::time::Duration;

use serde_json::Value;

use crate::containers::{NOTIFY_TOKEN, config, deployment_of_tag};
use crate::dockerenv::*;
use crate::fake_http::FakeHttp;
use crate::notifications::standard;
use crate::support::*;

/// `config` with a `[[notify]]` receiver at `sink` that gets every event.
fn with_receiver(config: String, sink: &FakeHttp) -> String {
    format!("{config}\n{}", standard(&sink.url("/notify"), ""))
}

/// The Standard Webhooks bodies the receiver got, of `container.*` types.
fn container_events(sink: &FakeHttp) -> Vec<Value> {
    sink.calls()
        .iter()
        .map(|n| n.json())
        .filter(|b| {
            b["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("container."))
        })
        .collect()
}

/// Waits for a `container.*` event of `kind` and returns its body.
async fn wait_event(sink: &FakeHttp, kind: &str) -> Value {
    sink.wait_for(&format!("a {kind} notification"), WAIT, |n| {
        n.json()["type"] == kind
    })
    .await
    .json()
}

/// `GET http://addr/path`, whatever it answers (the app may exit or be sick).
async fn poke(addr: &str, path: &str) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let _ = client.get(format!("http://{addr}{path}")).send().await;
}

/// Longer than the watcher holds a `die` (2 s) plus a fan-out and a send: what was going to
/// arrive has arrived.
const QUIET: Duration = Duration::from_secs(6);

/// A deployment that replaces the container (the old one stopped and removed under its aside
/// name) and one that rolls back (the new container, under the service's own name, turns
/// unhealthy and is removed) report no container events; a `docker kill` afterwards reports
/// one `container.died`, with the service, the version of the current deployment and the
/// exit code; a `docker restart` one `container.restarted`.
#[tokio::test]
#[ignore = "needs Docker and docker-registry: cargo test -- --include-ignored"]
async fn deployments_report_nothing_and_a_killed_container_died() {
    if !require_docker() {
        return;
    }
    let scope = DockerScope::new("ferry-ev");
    let name = scope.name("api");
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hooks/shop/{HOOK_TOKEN}");
    let registry = Registry::start(Some(&hook), Some(&format!("Bearer {NOTIFY_TOKEN}")));
    let mut scope = scope;
    let repo = scope.repo(&registry.repo("acme/events"));
    let sink = FakeHttp::start();
    let ferry = Ferry::with_config(&with_receiver(config(port, &repo, &name), &sink))
        .dir("data")
        .start()
        .await;
    for (v, broken) in [("1.0.0", false), ("1.1.0", false), ("1.2.0", true)] {
        build_image(&format!("{repo}:{v}"), v, broken);
    }
    // A fixed host port: each replacement stops the old container (a `die`), and a restart
    // policy, so a rollback restarts it.
    let publish = format!("127.0.0.1:{}:{APP_PORT}", free_port());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        &publish,
        "--restart",
        "unless-stopped",
        &format!("{repo}:1.0.0"),
    ]);
    wait_health(&name, "healthy").await;

    push(&format!("{repo}:1.0.0"));
    deployment_of_tag(&ferry, "1.0.0", "1.0.0 succeeded", "succeeded").await;
    let d110 = push(&format!("{repo}:1.1.0"));
    let current = deployment_of_tag(&ferry, "1.1.0", "1.1.0 succeeded", "succeeded").await;
    push(&format!("{repo}:1.2.0"));
    deployment_of_tag(&ferry, "1.2.0", "1.2.0 rolled_back", "rolled_back").await;
    wait_health(&name, "healthy").await;
    tokio::time::sleep(QUIET).await;
    let types: Vec<Value> = sink
        .calls()
        .iter()
        .map(|n| n.json()["type"].clone())
        .collect();
    assert!(
        types.iter().any(|t| t == "deployment.rolled_back"),
        "the receiver gets events: {types:?}"
    );
    assert_eq!(
        container_events(&sink),
        Vec::<Value>::new(),
        "what deployments do to their containers is no container event"
    );

    docker(&["kill", &name]);
    let died = wait_event(&sink, "container.died").await;
    let data = &died["data"];
    assert_eq!(data["app"], "shop", "{died:#}");
    assert_eq!(data["service"], "api", "{died:#}");
    assert_eq!(data["container"], name.as_str(), "{died:#}");
    assert_eq!(data["exit_code"], 137, "SIGKILL: {died:#}");
    assert_eq!(data["version"], format!("1.1.0@{d110}"), "{died:#}");
    assert_eq!(data["image_tag"], "1.1.0", "{died:#}");
    assert_eq!(data["deployment_id"], current["id"], "{died:#}");
    assert_eq!(data["image"], format!("{repo}@{d110}"), "{died:#}");
    tokio::time::sleep(QUIET).await;
    let events = container_events(&sink);
    assert_eq!(events.len(), 1, "one kill, one event: {events:#?}");

    // Started again by hand (not watched), then `docker restart`: Docker's stop and start,
    // which the watcher sees as a `die` after which the container runs again.
    docker(&["start", &name]);
    wait_health(&name, "healthy").await;
    docker(&["restart", "-t", "5", &name]);
    let restarted = wait_event(&sink, "container.restarted").await;
    assert_eq!(restarted["data"]["exit_code"], 0, "SIGTERM: {restarted:#}");
    assert_eq!(
        restarted["data"]["version"],
        format!("1.1.0@{d110}"),
        "{restarted:#}"
    );
    tokio::time::sleep(QUIET).await;
    let types: Vec<Value> = container_events(&sink)
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(types, ["container.died", "container.restarted"]);
    scope.clean();
}

/// ferry with a docker service over `container` that nothing deploys (its repository is
/// unreachable), and the receiver `sink`.
fn plain_config(container: &str, sink: &FakeHttp) -> String {
    with_receiver(config(0, "127.0.0.1:1/acme/unused", container), sink)
}

/// A container whose process exits under `--restart always` is `container.restarted` (with
/// its exit code); more restarts within the minute are held back (counted in the log); a
/// healthcheck that starts failing is `container.unhealthy`, with the check's output.
#[tokio::test]
#[ignore = "needs Docker: cargo test -- --include-ignored"]
async fn restarts_are_rate_limited_and_unhealthy_containers_reported() {
    if !require_docker() {
        return;
    }
    let mut scope = DockerScope::new("ferry-ev");
    let name = scope.name("api");
    let image = scope.repo(&format!("ferry-test/{}", scope.prefix()));
    build_image(&format!("{image}:1.0.0"), "1.0.0", false);
    let sink = FakeHttp::start();
    let ferry = Ferry::with_config(&plain_config(&name, &sink))
        .dir("data")
        .start()
        .await;
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        &format!("127.0.0.1::{APP_PORT}"),
        "--restart",
        "always",
        &format!("{image}:1.0.0"),
    ]);
    wait_health(&name, "healthy").await;
    let addr = published(&name, APP_PORT);

    poke(&addr, "/exit").await;
    let restarted = wait_event(&sink, "container.restarted").await;
    let data = &restarted["data"];
    assert_eq!(
        (&data["app"], &data["service"]),
        (&"shop".into(), &"api".into()),
        "{restarted:#}"
    );
    assert_eq!(data["container"], name.as_str(), "{restarted:#}");
    assert_eq!(data["exit_code"], 3, "{restarted:#}");
    assert_eq!(data["restart_count"], 1, "{restarted:#}");
    assert_eq!(data["suppressed"], 0, "{restarted:#}");
    assert_eq!(
        data["version"],
        Value::Null,
        "nothing deployed yet: {restarted:#}"
    );
    assert!(
        container_events(&sink)
            .iter()
            .all(|e| e["type"] != "container.died")
    );

    // A burst: three more crashes within the minute.
    for n in 2..=4 {
        wait_health(&name, "healthy").await;
        let addr = published(&name, APP_PORT);
        poke(&addr, "/exit").await;
        eventually(&format!("restart {n}"), WAIT, async || {
            let c = inspect(&name).ok_or("gone")?;
            if c["RestartCount"] == n {
                Ok(())
            } else {
                Err(format!("{}", c["RestartCount"]))
            }
        })
        .await;
    }
    tokio::time::sleep(QUIET).await;
    let restarts: Vec<Value> = container_events(&sink)
        .into_iter()
        .filter(|e| e["type"] == "container.restarted")
        .collect();
    assert_eq!(restarts.len(), 1, "at most one per minute: {restarts:#?}");
    let held = ferry
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("container event held back"))
        .count();
    assert_eq!(
        held,
        3,
        "each held back event is logged:\n{}",
        ferry.stderr_text()
    );

    // The healthcheck starts failing.
    wait_health(&name, "healthy").await;
    poke(&published(&name, APP_PORT), "/sick").await;
    let unhealthy = wait_event(&sink, "container.unhealthy").await;
    let data = &unhealthy["data"];
    assert_eq!(data["container"], name.as_str(), "{unhealthy:#}");
    assert!(
        data["health_output"]
            .as_str()
            .is_some_and(|o| o.contains("no 200 answer")),
        "{unhealthy:#}"
    );
    scope.clean();
}

/// Runs `docker-compose down` for a test project when dropped.
struct ComposeDown {
    project: String,
    file: String,
}

impl Drop for ComposeDown {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker-compose")
            .args(["-p", &self.project, "-f", &self.file, "down", "-t", "1"])
            .output();
    }
}

/// A `compose` service's container is watched by Compose's labels: killed, it is
/// `container.died` for the ferry service; the project's other Compose service, which no ferry
/// service deploys, reports nothing.
#[tokio::test]
#[ignore = "needs Docker and docker-compose: cargo test -- --include-ignored"]
async fn a_compose_services_container_that_dies_is_reported() {
    if !require_docker() {
        return;
    }
    let has_compose = std::process::Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_compose {
        unavailable("docker-compose is not installed");
        return;
    }
    let mut scope = DockerScope::new("ferry-evc");
    let project = scope.prefix().to_string();
    let image = scope.repo(&format!("ferry-test/{project}"));
    build_image(&format!("{image}:1.0.0"), "1.0.0", false);
    let sink = FakeHttp::start();
    let config = plain_config("unused", &sink).replace(
        r#"docker = { container = "unused", health_timeout = "15s" }"#,
        &format!(
            r#"compose = {{ project = "{project}", file = "compose.yml", services = ["api"] }}"#
        ),
    );
    let ferry = Ferry::with_config(&config).dir("data").start().await;
    let file = ferry.path("compose.yml").display().to_string();
    std::fs::write(
        &file,
        format!(
            "version: \"2.4\"\nservices:\n  api:\n    image: {image}:1.0.0\n  other:\n    image: {image}:1.0.0\n"
        ),
    )
    .unwrap();
    let _down = ComposeDown {
        project: project.clone(),
        file: file.clone(),
    };
    let out = std::process::Command::new("docker-compose")
        .args(["-p", &project, "-f", &file, "up", "-d"])
        .output()
        .expect("run docker-compose");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let container = |service: &str| {
        docker(&[
            "ps",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
        .trim()
        .to_string()
    };
    let (api, other) = (container("api"), container("other"));
    wait_health(&api, "healthy").await;
    wait_health(&other, "healthy").await;

    docker(&["kill", &other]);
    docker(&["kill", &api]);
    let died = wait_event(&sink, "container.died").await;
    assert_eq!(died["data"]["service"], "api", "{died:#}");
    assert_eq!(died["data"]["container"], api.as_str(), "{died:#}");
    assert_eq!(died["data"]["exit_code"], 137, "{died:#}");
    tokio::time::sleep(QUIET).await;
    let events = container_events(&sink);
    assert_eq!(
        events.len(),
        1,
        "only the ferry service's container: {events:#?}"
    );
    drop(ferry);
    scope.clean();
}
