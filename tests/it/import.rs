//! `ferry import webhook`: each example of adnanh/webhook's docs/Hook-Examples.md
//! (`tests/fixtures/webhook`, see its SOURCES.md) imports into a config `ferry check` accepts,
//! with the omissions reported by hook and rule; a file the peer refuses is an input error
//! naming the line; and one GitHub-style hook, driven end to end, accepts the same signed
//! request in ferry that the real peer accepts, and runs its command with the commit.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::init::runnable;
use crate::support::*;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/webhook")
        .join(name)
        .to_str()
        .expect("utf-8")
        .to_string()
}

/// Each documented example, the exit status of its import and the omissions it must report
/// (`hook "ID": RULE`), all of them.
const EXAMPLES: [(&str, i32, &[&str]); 11] = [
    (
        "github.json",
        2,
        &[
            "hook \"webhook\": pass-arguments-to-command[1]",
            "hook \"webhook\": pass-arguments-to-command[2]",
        ],
    ),
    (
        "bitbucket.json",
        2,
        &["hook \"webhook\": pass-arguments-to-command[0]"],
    ),
    (
        "gitlab.json",
        2,
        &[
            "hook \"redeploy-webhook\": pass-arguments-to-command[0]",
            "hook \"redeploy-webhook\": response-message",
        ],
    ),
    (
        "gogs.json",
        2,
        &[
            "hook \"webhook\": pass-arguments-to-command[1]",
            "hook \"webhook\": pass-arguments-to-command[2]",
            "hook \"webhook\": trigger-rule.and[1].match (value)",
        ],
    ),
    (
        "gitea.json",
        2,
        &[
            "hook \"webhook\": pass-arguments-to-command[1]",
            "hook \"webhook\": pass-arguments-to-command[2]",
            "hook \"webhook\": trigger-rule.and[0].match (value)",
            // Its ref rule: no signature rule, so no `repo = "*"` for anyone holding the URL.
            "hook \"webhook\": trigger-rule.and[1].match (value)",
        ],
    ),
    (
        "slack.json",
        2,
        &[
            "hook \"redeploy-webhook\": response-message",
            "hook \"redeploy-webhook\": trigger-rule.match (value)",
        ],
    ),
    (
        "query-token.json",
        2,
        &[
            "hook \"simple-one\": response-message",
            "hook \"simple-one\": trigger-rule.match (value)",
        ],
    ),
    (
        "scalr.json",
        2,
        &[
            "hook \"redeploy-webhook\": include-command-output-in-response",
            "hook \"redeploy-webhook\": pass-environment-to-command[0]",
            "hook \"redeploy-webhook\": pass-environment-to-command[1]",
            "hook \"redeploy-webhook\": trigger-rule.match (scalr-signature)",
        ],
    ),
    (
        "travis.json",
        2,
        &[
            "hook \"deploy\": parse-parameters-as-json",
            "hook \"deploy\": trigger-rule.and[0].match (value)",
            "hook \"deploy\": trigger-rule.and[1].match (value)",
        ],
    ),
    (
        "xml.json",
        2,
        &[
            "hook \"deploy\": trigger-rule.and[0].match (value)",
            "hook \"deploy\": trigger-rule.and[1].match (value)",
        ],
    ),
    (
        "plex.json",
        2,
        &[
            "hook \"plex\": parse-parameters-as-json",
            "hook \"plex\": trigger-rule.match (value)",
        ],
    ),
];

#[tokio::test]
async fn every_documented_example_imports_into_a_config_that_checks() {
    for (name, code, omitted) in EXAMPLES {
        let out = Cli::new(&["import", "webhook", &fixture(name)]).run().await;
        assert_eq!(out.code, Some(code), "{name}: {out:#?}");
        let reported: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains(": hook \"") && !l.contains(": note: "))
            .collect();
        assert_eq!(reported.len(), omitted.len(), "{name}: {reported:#?}");
        for o in omitted {
            assert!(
                reported.iter().any(|l| l.contains(o)),
                "{name}: {o:?} not reported:\n{}",
                out.stderr
            );
        }
        let config = ConfigFile::new(&out.stdout);
        let check = config.check().await;
        assert!(
            check.success().contains("ok (1 apps, 1 services)"),
            "{name}: {check:#?}\n{}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn the_examples_map_their_rules_to_verify_and_the_branch() {
    let github = Cli::new(&["import", "webhook", &fixture("github.json")])
        .run()
        .await;
    for line in [
        "github = \"mysecret\"",
        "git = { repo = \"*\", branch = \"master\" }",
        "command = [\"/home/adnan/redeploy-go-webhook.sh\"]",
        "workdir = \"/home/adnan/go\"",
        "# note: argument 1 (payload \"head_commit.id\") now arrives as $FERRY_GIT_COMMIT",
    ] {
        assert!(github.stdout.contains(line), "{line:?}:\n{}", github.stdout);
    }
    let gitlab = Cli::new(&["import", "webhook", &fixture("gitlab.json")])
        .run()
        .await;
    assert!(
        gitlab
            .stdout
            .contains("gitlab = \"<YOUR-GENERATED-TOKEN>\"")
    );
    let bitbucket = Cli::new(&["import", "webhook", &fixture("bitbucket.json")])
        .run()
        .await;
    assert!(
        bitbucket
            .stdout
            .contains("allow_ips = [\"104.192.143.0/24\"]")
    );
    let gogs = Cli::new(&["import", "webhook", &fixture("gogs.json")])
        .run()
        .await;
    assert!(
        gogs.stdout.contains(
            "hmac = { header = \"X-Gogs-Signature\", algorithm = \"sha256\", encoding = \"hex\", prefix = \"\", secret = \"mysecret\" }"
        ),
        "{}",
        gogs.stdout
    );
}

#[tokio::test]
async fn a_file_the_peer_refuses_is_an_input_error_naming_the_line() {
    // The documented pass-file example has `//` comments: the peer refuses it too.
    let out = Cli::new(&["import", "webhook", &fixture("pass-file.json")])
        .run()
        .await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("pass-file.json:11:"), "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = dir.path().join("hooks.yaml");
    std::fs::write(&yaml, "- id: a\n  execute-command: [unclosed\n").expect("write");
    let out = Cli::new(&["import", "webhook", yaml.to_str().expect("utf-8")])
        .run()
        .await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("hooks.yaml:3:"), "{out:#?}");
    let missing = dir.path().join("nothing.json");
    let out = Cli::new(&["import", "webhook", missing.to_str().expect("utf-8")])
        .run()
        .await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("cannot read"), "{out:#?}");
}

#[tokio::test]
async fn output_is_created_private_and_never_overwritten() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ferry.toml");
    let path_s = path.to_str().expect("utf-8");
    let out = Cli::new(&[
        "import",
        "webhook",
        &fixture("github.json"),
        "--output",
        path_s,
    ])
    .run()
    .await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
    let mode = std::fs::metadata(&path)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = std::fs::read_to_string(&path).expect("read");
    let again = Cli::new(&[
        "import",
        "webhook",
        &fixture("github.json"),
        "--output",
        path_s,
    ])
    .run()
    .await;
    assert!(again.failure().contains("not overwriting"), "{again:#?}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), first);
}

/// A GitHub-style hook as the peer's users write it: the secret from the environment
/// (`-template`), a SHA-256 signature, the branch, the commit as the first argument.
const GITHUB_HOOK: &str = r#"- id: github-deploy
  execute-command: "{dir}/deploy.sh"
  command-working-directory: "{dir}"
  pass-arguments-to-command:
    - source: payload
      name: head_commit.id
  trigger-rule:
    and:
      - match:
          type: payload-hmac-sha256
          secret: '{{ getenv "HOOK_SECRET" }}'
          parameter:
            source: header
            name: X-Hub-Signature-256
      - match:
          type: value
          value: refs/heads/main
          parameter:
            source: payload
            name: ref
"#;

const SECRET: &str = "peer-and-ferry-share-this-secret";

/// The peer on `hooks`, with its script recording its first argument in `{dir}/peer.log`.
fn start_peer(dir: &Path, port: u16) -> std::process::Child {
    let root = dir.to_str().expect("utf-8");
    let hooks = dir.join("hooks.yaml");
    std::fs::write(&hooks, GITHUB_HOOK.replace("{dir}", root)).expect("write hooks");
    let script = dir.join("deploy.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1\" > {root}/peer.log\n"),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::process::Command::new("webhook")
        .args(["-hooks", hooks.to_str().expect("utf-8"), "-template"])
        .args(["-ip", "127.0.0.1", "-port", &port.to_string()])
        .env("HOOK_SECRET", SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start webhook")
}

/// POSTs the signed push to `url`; the status and body.
async fn post(url: &str, body: &str) -> (u16, String) {
    let reply = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", github_delivery_id())
        .header("X-Hub-Signature-256", sign_github(SECRET, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    let status = reply.status().as_u16();
    (status, reply.text().await.unwrap_or_default())
}

#[tokio::test]
#[ignore = "needs adnanh/webhook (the webhook package): cargo test -- --include-ignored"]
async fn an_imported_github_hook_accepts_the_request_the_peer_accepts() {
    if which("webhook").is_none() {
        return unavailable("no `webhook` on PATH (apt-get install webhook)");
    }
    let commit = sha(14);
    let body = push_payload("acme/site", "main", &commit, &commit_time(1));

    // The peer itself runs the hook for this request.
    let peer_dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut peer = start_peer(peer_dir.path(), port);
    let peer_url = format!("http://127.0.0.1:{port}/hooks/github-deploy");
    let peer_log = peer_dir.path().join("peer.log");
    eventually(
        "the peer to run its hook",
        Duration::from_secs(20),
        async || match post(&peer_url, &body).await {
            _ if peer_log.exists() => Ok(()),
            (status, text) => Err(format!("{status} {text}")),
        },
    )
    .await;
    let _ = peer.kill();
    let _ = peer.wait();
    assert_eq!(
        std::fs::read_to_string(&peer_log).expect("log").trim(),
        commit
    );

    // The import of the same hook is complete, checks, and ferry takes the same request.
    let dir = tempfile::tempdir().expect("temp dir");
    let hooks = dir.path().join("hooks.yaml");
    std::fs::write(&hooks, GITHUB_HOOK).expect("write hooks");
    let out = Cli::new(&["import", "webhook", hooks.to_str().expect("utf-8")])
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(
        out.stdout.contains("github = \"${HOOK_SECRET}\""),
        "{}",
        out.stdout
    );
    let token = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .and_then(|l| l.split('"').next())
        .expect("the app's token")
        .to_string();
    let ferry = Ferry::with_config(&runnable(&out.stdout))
        .env("HOOK_SECRET", SECRET)
        .start()
        .await;
    let url = ferry.url(&format!("/hooks/github-deploy/{token}"));
    let (status, text) = post(&url, &body).await;
    assert_eq!(status, 202, "{text}");
    ferry.settled("github-deploy").await;
    let runs = ferry.runs_of("run");
    assert_eq!(runs.len(), 1, "{runs:?}\n{}", ferry.stderr_text());
    assert_eq!(runs[0].commit.as_deref(), Some(commit.as_str()));
    let env = ferry.run_env(runs[0].deployment);
    assert_eq!(
        env.get("FERRY_GIT_REPO").map(String::as_str),
        Some("acme/site")
    );

    // A push to another branch, which the peer's rule refuses, deploys nothing.
    let other = push_payload("acme/site", "dev", &sha(15), &commit_time(2));
    let (status, _) = post(&url, &other).await;
    assert!((200..300).contains(&status), "{status}");
    ferry.settled("github-deploy").await;
    assert_eq!(ferry.runs_of("run").len(), 1);
}

/// `name`'s path on PATH, if any.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
