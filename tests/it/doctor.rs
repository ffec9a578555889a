//! `ferry doctor`: each problem of a broken setup named with its fix (exit 1); a healthy one
//! passes (exit 0).

use crate::support::*;

/// Strong, distinct secrets; `{data}` and `{public}` filled in per test.
const HEALTHY: &str = r#"
[server]
listen = "127.0.0.1:0"
public_url = "{public}"
data_dir = "{data}"
admin_token = "3f9a0c7e12b44d6a9e58c1f07b2d4e6a"

[apps.shop]
token = "b71e4c09d2a5f83e6c1b7a90"

[apps.shop.verify]
github = "8d2f6b1a9c3e5d7f0a4b6c8e2d1f3a5b"

[apps.shop.services.web]
command = ["/bin/true"]
"#;

fn healthy(data: &str, public: &str) -> String {
    HEALTHY.replace("{data}", data).replace("{public}", public)
}

#[tokio::test]
async fn a_healthy_setup_passes() {
    let ferry = Ferry::with_config(&healthy("{dir}/data", "http://127.0.0.1:9"))
        .start()
        .await;
    let data = ferry.dir_str() + "/data";
    let config = ConfigFile::new(&healthy(&data, &ferry.base_url()));
    let out = Cli::new(&["doctor", "--config", config.path.to_str().expect("utf-8")])
        .run()
        .await;
    let text = out.success();
    for line in [
        "ok       config: 1 apps, 1 services",
        &format!("ok       data dir {data} is writable"),
        "MiB free on the data dir's file system",
        "/healthz answers from this host",
        "ok       3 secrets: none weak, none reused",
        "ok       plain HTTP, on a loopback or private address only",
        "0 problem(s), 0 warning(s)",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
}

#[tokio::test]
async fn a_broken_setup_gets_each_problem_named_with_its_fix() {
    // A data dir that cannot be created, a placeholder token, one secret under two keys, a
    // Docker service without a Docker Engine, a public_url nothing answers at.
    let config = healthy("/proc/ferry-doctor/data", "http://127.0.0.1:9")
        .replace("b71e4c09d2a5f83e6c1b7a90", "changeme-1234")
        .replace(
            "github = \"8d2f6b1a9c3e5d7f0a4b6c8e2d1f3a5b\"",
            "github = \"3f9a0c7e12b44d6a9e58c1f07b2d4e6a\"",
        )
        + "\n[apps.shop.services.api]\nimage = { repository = \"registry.example.com/acme/api\", tags = \"latest\" }\ndocker = { container = \"shop-api\" }\n";
    let file = ConfigFile::new(&config);
    let out = Cli::new(&["doctor", "--config", file.path.to_str().expect("utf-8")])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .run()
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let text = &out.stdout;
    for (problem, fix) in [
        (
            "PROBLEM  data dir /proc/ferry-doctor/data does not exist and cannot be created in /proc",
            "fix: create it for the user ferry runs as",
        ),
        (
            "PROBLEM  apps.shop.token is weak: it contains the placeholder word \"change\"",
            "fix: use a long random value",
        ),
        (
            "PROBLEM  server.admin_token and apps.shop.verify.github hold the same secret",
            "fix: give each its own random value",
        ),
        (
            "PROBLEM  Docker Engine not reachable at unix:///nonexistent/docker.sock",
            "fix: start dockerd, or set DOCKER_HOST",
        ),
        (
            "warning  http://127.0.0.1:9/healthz does not answer from this host",
            "fix: start ferry and run doctor again",
        ),
    ] {
        assert!(text.contains(problem), "{problem:?} not in:\n{text}");
        assert!(text.contains(fix), "{fix:?} not in:\n{text}");
    }
    assert!(text.contains("4 problem(s), 1 warning(s)"), "{text}");
}

#[tokio::test]
async fn plain_http_on_a_public_address_is_a_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = healthy(data.to_str().expect("utf-8"), "http://198.51.100.7:8080")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:8080\"");
    let file = ConfigFile::new(&config);
    let out = Cli::new(&["doctor", "--config", file.path.to_str().expect("utf-8")])
        .run()
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout.contains(
            "PROBLEM  hook URLs are served without TLS on a public address (198.51.100.7:8080)"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("fix: set [server] tls"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
#[ignore = "needs root to mount a tmpfs: cargo test -- --include-ignored"]
async fn a_read_only_data_dir_is_a_problem() {
    let Some(mount) = Mount::tmpfs("4m") else {
        return;
    };
    mount.remount("ro");
    let data = mount.path().to_str().expect("utf-8").to_string();
    let file = ConfigFile::new(&healthy(&data, "http://127.0.0.1:9"));
    let out = Cli::new(&["doctor", "--config", file.path.to_str().expect("utf-8")])
        .run()
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "PROBLEM  data dir {data} is not writable: Read-only file system"
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("mount it read-write"), "{}", out.stdout);
}

/// With `server.database`, doctor connects: a reachable PostgreSQL is named with its version,
/// host and database (never the URL's password), an unreachable one is a problem with why.
#[tokio::test]
async fn the_database_is_checked_without_showing_its_password() {
    let url = match crate::postgres::database() {
        Ok(url) => url,
        Err(why) => return unavailable(&format!("PostgreSQL: {why}")),
    };
    let with_password = url.replacen("postgres://ferry@", "postgres://ferry:hunter2-pw@", 1);
    let config = healthy("/tmp/ferry-doctor-db-data", "http://127.0.0.1:9").replace(
        "[server]\n",
        &format!("[server]\ndatabase = \"{with_password}\"\nnode = \"host-a\"\n"),
    );
    let file = ConfigFile::new(&config);
    let out = Cli::new(&["doctor", "--config", file.path.to_str().expect("utf-8")])
        .run()
        .await;
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("ok       PostgreSQL database \"")
            && text.contains("answers (PostgreSQL 15")
            && text.contains("this replica is node \"host-a\""),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    let port = free_port();
    let gone = config.replace(
        &with_password,
        &format!("postgres://ferry:hunter2-pw@127.0.0.1:{port}/x"),
    );
    let file = ConfigFile::new(&gone);
    let out = Cli::new(&["doctor", "--config", file.path.to_str().expect("utf-8")])
        .run()
        .await;
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("PROBLEM  PostgreSQL (server.database) cannot be reached")
            && text.contains("Connection refused"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}
