//! Storage hygiene and secrets (issue 8, parts 7 and 8): what ferry keeps of refused
//! deliveries, secret-carrying headers never stored nor served, a private data dir, secrets
//! read from files, and request values that cannot forge log lines.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// `open` has no `verify` section (unsigned requests are accepted), `gl` verifies GitLab's
/// token, `filed` reads its GitHub secret from a file next to the config.
const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"
# The pruning test sends 1,100 refused requests from one address.
rate_per_client = "off"

[apps.open]
token = "open-token-123456"

[apps.open.services.site]
command = ["{dir}/deploy.sh", "site"]
timeout = "60s"

[apps.gl]
token = "gl-token-1234567"
verify = { gitlab = "It's a Secret to Everybody" }

[apps.gl.services.gl]
git = { repo = "mike/diaspora", branch = "master" }
command = ["{dir}/deploy.sh"]
timeout = "60s"

[apps.filed]
token = "filed-token-12345"
verify = { github = { file = "github.secret" } }

[apps.filed.services.web]
git = { repo = "Codertocat/Hello-World", branch = "master" }
command = ["{dir}/deploy.sh"]
timeout = "60s"
"#;

const OPEN: &str = "open-token-123456";

async fn start() -> Ferry {
    Ferry::with_config(CONFIG)
        .script("github.secret", &format!("{GITHUB_SECRET}\n"))
        .start()
        .await
}

/// The newest delivery of `app`.
async fn newest(ferry: &Ferry, app: &str) -> Value {
    let list = ferry
        .get(&format!("/api/v1/deliveries?app={app}&limit=1"))
        .await;
    let id = list["deliveries"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no delivery of {app}: {list:#}"));
    ferry.delivery(id).await
}

#[tokio::test]
async fn a_refused_delivery_keeps_only_4_kib_of_its_body() {
    let ferry = start().await;
    let body = vec![b'x'; 1024 * 1024];
    let refused = ferry
        .hook("open")
        .token(OPEN)
        .query("services=nope")
        .body(body)
        .send()
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    let d = newest(&ferry, "open").await;
    assert_eq!(d["status"], "rejected", "{d:#}");
    let stored = d["body"].as_str().expect("body");
    assert_eq!(stored.len(), 4096, "the stored body is cut to 4 KiB");
    assert_eq!(d["body_truncated"], true);
    assert_eq!(d["body_size"], 1024 * 1024);

    // An accepted delivery keeps its whole body, and says so.
    let big = format!("{{\"pad\":\"{}\"}}", "y".repeat(10_000));
    let id = ferry
        .hook("open")
        .token(OPEN)
        .header("Content-Type", "application/json")
        .body(big.clone())
        .send()
        .await
        .accepted();
    let d = ferry.delivery(id).await;
    assert_eq!(d["body"], big.as_str());
    assert_eq!(d["body_truncated"], false);
    assert_eq!(d["body_size"], big.len());
}

#[tokio::test]
async fn only_the_newest_1000_refused_deliveries_of_an_app_are_kept() {
    let ferry = start().await;
    let accepted = ferry.hook("open").token(OPEN).send().await.accepted();
    let other_app = ferry
        .hook("gl")
        .token("gl-token-1234567")
        .query("services=nope")
        .send()
        .await;
    assert!(matches!(other_app.status, 400 | 401), "{}", other_app.text);

    // 1,100 refused requests, 16 at a time (concurrent ones share a commit).
    let url = ferry.url(&format!("/hooks/open/{OPEN}?services=nope"));
    let mut sent = 0;
    while sent < 1100 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..16.min(1100 - sent) {
            let (http, url) = (ferry.http().clone(), url.clone());
            batch.spawn(async move { http.post(url).body("bad").send().await });
            sent += 1;
        }
        while let Some(r) = batch.join_next().await {
            let r = r.expect("task").expect("request");
            assert_eq!(r.status(), 400);
        }
    }

    let kept = eventually(
        "refused deliveries to be pruned to 1,000",
        WAIT,
        async || {
            let rejected: Vec<i64> = ferry
                .deliveries("app=open")
                .await
                .iter()
                .filter(|d| d["status"] == "rejected")
                .map(|d| d["id"].as_i64().expect("id"))
                .collect();
            if rejected.len() == 1000 {
                Ok(rejected)
            } else {
                Err(format!("{} refused deliveries kept", rejected.len()))
            }
        },
    )
    .await;
    // The newest ones are those kept: 100 older ones went, the last id is the newest.
    let newest = newest(&ferry, "open").await["id"].as_i64().expect("id");
    assert_eq!(kept[0], newest);
    assert_eq!(kept[999], newest - 999, "kept ids are the 1,000 newest");
    // Accepted deliveries and other apps' refused ones are not pruned this way.
    assert_eq!(ferry.delivery(accepted).await["status"], "planned");
    let gl = ferry.deliveries("app=gl").await;
    assert_eq!(gl.len(), 1, "{gl:#?}");
}

#[tokio::test]
async fn secret_headers_are_stored_redacted_and_a_gitlab_replay_still_deploys() {
    let ferry = start().await;
    let secrets = [
        ("Authorization", "Bearer auth-secret-value"),
        ("Cookie", "session=cookie-secret-value"),
        ("X-Api-Key", "api-key-secret-value"),
        ("Private-Token", "private-token-secret-value"),
    ];
    let mut req = ferry
        .hook("gl")
        .token("gl-token-1234567")
        .fixture("gitlab/push");
    for (k, v) in secrets {
        req = req.header(k, v);
    }
    let id = req.send().await.accepted();
    let d = ferry.delivery(id).await;
    assert_eq!(d["verified"], true);
    for name in [
        "x-gitlab-token",
        "authorization",
        "cookie",
        "x-api-key",
        "private-token",
    ] {
        assert_eq!(
            d["headers"][name], "[redacted]",
            "{name}: {:#}",
            d["headers"]
        );
    }
    assert_eq!(d["headers"]["x-gitlab-event"], "Push Hook");
    let text = d.to_string() + &ferry.get("/api/v1/deliveries?app=gl").await.to_string();
    for secret in std::iter::once("It's a Secret to Everybody").chain(secrets.map(|s| s.1)) {
        let value = secret.split_once(['=', ' ']).map_or(secret, |(_, v)| v);
        assert!(
            !text.contains(value),
            "{value} is served by the API: {text}"
        );
    }
    let first = ferry.settle(id).await;
    assert_eq!(first[0]["state"], "succeeded", "{first:#?}");

    // A replay reuses the stored verification: the redacted token does not matter.
    ferry.fail("gl"); // A failed run can be told apart from the first one.
    let replay = ferry
        .post(&format!("/api/v1/deliveries/{id}/replay"), Value::Null)
        .await
        .accepted();
    let again = ferry.settle(replay).await;
    assert_eq!(again.len(), 1, "{again:#?}");
    assert_eq!(again[0]["commit"], first[0]["commit"]);
    assert_eq!(ferry.delivery(replay).await["replay_of"], id);
    assert_eq!(
        ferry.runs_of("gl").len(),
        2,
        "the replay ran the deployment again"
    );
}

/// Every directory under `dir` (and `dir`) is 0700 and every file 0600; returns the files.
fn assert_private(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(p) = pending.pop() {
        let meta = std::fs::symlink_metadata(&p).expect("stat");
        let mode = meta.permissions().mode() & 0o777;
        let rel = p.strip_prefix(dir).expect("inside").display().to_string();
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "directory {} is {mode:o}", p.display());
            pending.extend(
                std::fs::read_dir(&p)
                    .expect("list")
                    .map(|e| e.expect("entry").path()),
            );
        } else {
            assert_eq!(mode, 0o600, "file {} is {mode:o}", p.display());
            files.push(rel);
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn the_data_dir_is_private() {
    // An existing data dir with loose modes (as older versions left it) is tightened.
    let ferry = Ferry::with_config(CONFIG)
        .script("github.secret", GITHUB_SECRET)
        .dir("data/logs")
        .script("data/logs/0.log", "an old log\n")
        .start()
        .await;
    let data = ferry.path("data");
    ferry.hold("site");
    let id = ferry.hook("open").token(OPEN).send().await.accepted();
    let dep = ferry.planned_deployment(id, "site").await["id"]
        .as_i64()
        .expect("id");
    ferry.wait_state(dep, "running").await;
    // While the command runs: its payload file and its process-group note exist.
    let payload = format!("payloads/deployment-{dep}.body");
    let running = format!("running/deployment-{dep}.pgid");
    let files = eventually("the run's files", WAIT, async || {
        let files = assert_private(&data);
        if files.contains(&payload) && files.contains(&running) {
            Ok(files)
        } else {
            Err(format!("{files:?}"))
        }
    })
    .await;
    // SQLite's files are in the data dir too (on PostgreSQL there are none).
    let sqlite = ["ferry.db", "ferry.db-wal", "ferry.db-shm"];
    let sqlite = if ferry.engine() == Engine::Sqlite {
        &sqlite[..]
    } else {
        &[]
    };
    for f in sqlite.iter().chain(&["logs/0.log"]) {
        assert!(files.contains(&f.to_string()), "{f} missing: {files:?}");
    }
    ferry.release("site");
    assert_eq!(
        ferry.wait_state(dep, "succeeded").await["state"],
        "succeeded"
    );
    let files = assert_private(&data);
    assert!(files.contains(&format!("logs/{dep}.log")), "{files:?}");
    // Deploy commands keep the user's umask: what they create is theirs to decide (the same
    // mode as a file this test creates).
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    let mine = ferry.path("mine");
    std::fs::write(&mine, "x").expect("write");
    assert_eq!(mode(&ferry.path(&format!("runs/{dep}.env"))), mode(&mine));
}

#[tokio::test]
async fn a_secret_from_a_file_verifies_hooks() {
    let ferry = start().await;
    let good = ferry
        .hook("filed")
        .token("filed-token-12345")
        .fixture("push-branch-created")
        .signed(GITHUB_SECRET)
        .send()
        .await;
    good.accepted();
    let wrong = ferry
        .hook("filed")
        .token("filed-token-12345")
        .fixture("push-branch-created")
        .signed("It's a Secret to Everybody\n")
        .send()
        .await;
    assert_eq!(
        wrong.status, 401,
        "the file's trailing newline is not part of the secret"
    );
}

#[tokio::test]
async fn a_missing_secret_file_is_a_check_error_naming_key_line_and_file() {
    let text = "[apps.x]\ntoken = \"x-token-123456789\"\nverify = { github = { file = \"nope.secret\" } }\n[apps.x.services.s]\ncommand = [\"true\"]\n";
    let config = ConfigFile::new(text);
    let out = config.check().await;
    let err = out.failure();
    let file = config.dir.path().join("nope.secret");
    let expected = format!(
        "{}:3: apps.x.verify.github: cannot read secret file {}",
        config.path_str(),
        file.display()
    );
    assert!(err.contains(&expected), "expected {expected:?} in:\n{err}");
}

#[tokio::test]
async fn request_values_cannot_forge_log_lines() {
    let ferry = start().await;
    let forged = "FORGED-LINE level=ERROR admin logged in";
    let refused = ferry
        .hook("open")
        .token(OPEN)
        .query("services=nope%0AFORGED-LINE%20level%3DERROR%20admin%20logged%20in%0D%0A")
        .send()
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(refused.error().contains(forged), "{}", refused.text);
    let line = eventually("the rejection to be logged", WAIT, async || {
        let lines = ferry.stderr_lines();
        lines
            .iter()
            .find(|l| l.contains("delivery rejected"))
            .cloned()
            .ok_or_else(|| lines.join("\n"))
    })
    .await;
    assert!(line.contains("nope\\nFORGED-LINE"), "{line}");
    for l in ferry.stderr_lines() {
        assert!(
            !l.contains("FORGED-LINE") || l.contains("delivery rejected"),
            "a request value started a log line of its own: {l:?}"
        );
    }
}

#[tokio::test]
async fn ferry_check_warns_about_a_secret_file_others_may_read() {
    let text =
        "[apps.x]\ntoken = { file = \"token\" }\n[apps.x.services.s]\ncommand = [\"true\"]\n";
    let config = ConfigFile::new(text);
    let token = config.dir.path().join("token");
    std::fs::write(&token, "x-token-123456789\n").expect("write");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = config.check().await;
    out.success();
    let expected = format!(
        "warning: apps.x.token: secret file {} is readable by others (mode 644)",
        token.display()
    );
    assert!(out.stderr.contains(&expected), "{out:#?}");

    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = config.check().await;
    out.success();
    assert!(!out.stderr.contains("secret file"), "{out:#?}");
}
