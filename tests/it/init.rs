//! `ferry init`: a starter config for each sender that `ferry check` accepts, that a real
//! `ferry serve` runs, and whose printed test request that server verifies and records
//! without deploying anything; never overwriting a file.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

const SENDERS: [&str; 6] = [
    "github",
    "gitlab",
    "bitbucket",
    "gitea",
    "registry",
    "dockerhub",
];

/// The printed test request (`curl -i -X POST -H '…' --data '…' 'URL'`): headers, body, URL.
fn parse_curl(stdout: &str) -> (Vec<(String, String)>, String, String) {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("curl "))
        .unwrap_or_else(|| panic!("no curl line in:\n{stdout}"));
    // Every value is in single quotes and holds none itself: quoted pieces alternate with flags.
    let pieces: Vec<&str> = line.split('\'').collect();
    let mut headers = Vec::new();
    let mut body = None;
    for pair in pieces.chunks(2) {
        let [flag, value] = pair else { continue };
        if flag.ends_with("-H ") {
            let (k, v) = value.split_once(": ").expect("header");
            headers.push((k.to_string(), v.to_string()));
        } else if flag.ends_with("--data ") {
            body = Some(value.to_string());
        }
    }
    let url = pieces[pieces.len() - 2].to_string();
    (headers, body.expect("--data in the curl line"), url)
}

/// The generated config, made to run under the test harness: a free port, the test's data dir
/// and the harness's admin token. Nothing else is touched.
pub(crate) fn runnable(config: &str) -> String {
    let replace = |text: String, from: &str, to: &str| {
        assert!(text.contains(from), "{from:?} not in the config:\n{text}");
        text.replace(from, to)
    };
    let mut text = replace(
        config.to_string(),
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:0\"",
    );
    text = replace(
        text,
        "data_dir = \"./ferry-data\"",
        "data_dir = \"{dir}/data\"",
    );
    let admin = text
        .lines()
        .find(|l| l.starts_with("admin_token = "))
        .expect("admin_token")
        .to_string();
    replace(text, &admin, "admin_token = \"${FERRY_ADMIN_TOKEN}\"")
}

async fn send(
    ferry: &Ferry,
    (headers, body, url): &(Vec<(String, String)>, String, String),
) -> u16 {
    let url = url.replace("http://127.0.0.1:8080", &ferry.base_url());
    let mut req = ferry.http().post(url).body(body.clone());
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req.send().await.expect("send").status().as_u16()
}

#[tokio::test]
async fn every_sender_gets_a_config_that_runs_and_a_test_request_that_is_verified() {
    for sender in SENDERS {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ferry.toml");
        let path_s = path.to_str().expect("utf-8");
        let out = Cli::new(&["init", "--sender", sender, "--config", path_s])
            .run()
            .await;
        let stdout = out.success().to_string();
        for step in ["ferry serve --config", "/hooks/app/", "curl "] {
            assert!(
                stdout.contains(step),
                "{sender}: {step:?} not printed:\n{stdout}"
            );
        }
        let mode = std::fs::metadata(&path)
            .expect("config")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{sender}: the config holds secrets");
        let check = Cli::new(&["check", "--config", path_s]).run().await;
        assert!(
            check.success().contains("ok (1 apps, 1 services)"),
            "{check:?}"
        );

        let config = std::fs::read_to_string(&path).expect("read config");
        let ferry = Ferry::with_config(&runnable(&config)).start().await;
        let request = parse_curl(&stdout);
        let status = send(&ferry, &request).await;
        assert!(
            (200..300).contains(&status),
            "{sender}: test request answered {status}"
        );
        let deliveries = ferry.deliveries("").await;
        assert_eq!(deliveries.len(), 1, "{sender}: {deliveries:?}");
        ferry.settled("app").await;
        // Docker Hub's test push names an image no service follows: recorded, and skipped.
        let deployments = ferry.deployments("").await;
        assert!(
            deployments.iter().all(|d| d["state"] == "skipped"),
            "{sender}: the test request deployed something: {deployments:?}"
        );

        // The verify section is live: the same request with a wrong secret is refused.
        if sender != "dockerhub" {
            let (mut headers, body, url) = request;
            for (k, v) in headers.iter_mut() {
                if k.contains("Signature") || k.contains("Token") || k == "Authorization" {
                    let last = v.pop().expect("secret");
                    v.push(if last == '0' { '1' } else { '0' });
                }
            }
            let status = send(&ferry, &(headers, body, url)).await;
            assert_eq!(status, 401, "{sender}: a wrong secret must be refused");
        }
    }
}

#[tokio::test]
async fn init_never_overwrites_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, "# mine\n").expect("write");
    let out = Cli::new(&["init", "--config", path.to_str().expect("utf-8")])
        .run()
        .await;
    assert!(
        out.failure().contains("exists; not overwriting it"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "# mine\n");
}

#[tokio::test]
async fn each_init_has_fresh_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut configs = Vec::new();
    for name in ["a.toml", "b.toml"] {
        let path = dir.path().join(name);
        Cli::new(&["init", "--config", path.to_str().expect("utf-8")])
            .run()
            .await
            .success();
        configs.push(std::fs::read_to_string(&path).expect("read"));
    }
    let secrets = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| {
                l.starts_with("token = ")
                    || l.starts_with("admin_token = ")
                    || l.starts_with("github = ")
            })
            .map(|l| l.split('"').nth(1).expect("quoted").to_string())
            .collect()
    };
    let (a, b) = (secrets(&configs[0]), secrets(&configs[1]));
    assert_eq!(a.len(), 3, "{a:?}");
    for s in &a {
        assert!(s.len() >= 32, "{s} is too short to be a random secret");
        assert!(!b.contains(s), "{s} was generated twice");
    }
}
