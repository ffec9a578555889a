//! The test harness: every test runs its own `ferry serve` process, in its own temp dir, on a
//! free port, and talks to it the way users do — hook requests, the admin API, the CLI.
//!
//! ```ignore
//! let ferry = Ferry::shop().env("K", "V").start().await;
//! let id = ferry.hook("shop").fixture("push-branch-created").send().await.accepted();
//! let deployments = ferry.settle(id).await;
//! ```
//!
//! Waiting is always polling with a deadline ([`WAIT`]), never a sleep that decides an outcome.
//! Deploy commands in the configs are the recording script [`DEPLOY_SH`], which leaves behind
//! what it ran (see [`Ferry::runs`], [`Ferry::run_env`], [`Ferry::run_payload`]) and can be held
//! ([`Ferry::hold`]), slowed ([`Ferry::slow`]) or made to fail ([`Ferry::fail`]) per service.

// Not every test module uses every helper.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The admin token every test server gets through `FERRY_ADMIN_TOKEN` (ferry wants at least 12
/// characters).
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The hook token of the app `shop` in [`SHOP`].
pub const HOOK_TOKEN: &str = "secret-token-1";
/// `verify.github` of the app `shop`; also the secret the GitHub fixtures are signed with.
pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
/// The repository `web` follows in [`SHOP`], and the one in the GitHub fixtures.
pub const REPO: &str = "Codertocat/Hello-World";
/// `head_commit.id` of the fixture `push-branch-created`.
pub const FIXTURE_COMMIT: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
/// How long any wait lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often waits poll.
pub const POLL: Duration = Duration::from_millis(50);

/// The standard config: app `shop` with a git-based service `web` (following [`REPO`] on
/// `master`) and a plain service `worker`, both deployed by [`DEPLOY_SH`]; profiles `hotfix`
/// (web) and `front end` (worker, a name with a space). GitHub deliveries must be signed;
/// unsigned requests that claim no sender are taken as redeploys (`allow_unsigned`). `{dir}` is
/// the test's temp dir.
pub const SHOP: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.shop]
token = "secret-token-1"

[apps.shop.verify]
github = "It's a Secret to Everybody"
# Many tests redeploy with a bare curl-style request: those carry no version.
allow_unsigned = true

[apps.shop.services.web]
git = { repo = "Codertocat/Hello-World", branch = "master" }
command = ["{dir}/deploy.sh", "web arg", "*"]
timeout = "60s"
env = { EXTRA = "x" }

[apps.shop.services.worker]
command = ["{dir}/deploy.sh", "worker"]
timeout = "60s"

[apps.shop.profiles.hotfix]
services = ["web"]

[apps.shop.profiles."front end"]
services = ["worker"]
"#;

/// `verify.bearer` of the app `shop` in [`shop_ci`]: a CI job's credential.
pub const CI_BEARER: &str = "ci-bearer-token";

/// [`SHOP`] where a CI job may name the ref to deploy: it authenticates with
/// `Authorization: Bearer` [`CI_BEARER`], and `git_ref` is among the app's `modifiers`.
pub fn shop_ci() -> String {
    SHOP.replace(
        "token = \"secret-token-1\"\n",
        "token = \"secret-token-1\"\nmodifiers = [\"services\", \"deployment_profile\", \"git_ref\"]\n",
    )
    .replace(
        "allow_unsigned = true\n",
        &format!("allow_unsigned = true\nbearer = \"{CI_BEARER}\"\n"),
    )
}

/// A second app for tests that need two (append it to [`SHOP`]).
pub const BLOG: &str = r#"
[apps.blog]
token = "blog-token-123456"

[apps.blog.services.site]
command = ["{dir}/deploy.sh", "site"]
timeout = "60s"
"#;

/// The recording deploy script, written as `{dir}/deploy.sh` in every test dir. Per run it
/// appends `SERVICE COMMIT DEPLOYMENT_ID` to `{dir}/runs.log` (commit `-` when unset), writes
/// the FERRY_* environment, argv and working directory to `{dir}/runs/ID.env` and copies the
/// payload to `{dir}/runs/ID.payload`. Files in `{dir}` steer it per service: `hold-SERVICE`
/// (wait while it exists), `sleep-SERVICE` (sleep that many seconds), `fail-SERVICE` (exit 7).
pub const DEPLOY_SH: &str = r#"#!/bin/sh
set -u
out="{dir}/runs"
mkdir -p "$out"
id="$FERRY_DEPLOYMENT_ID"
{
  env | grep -E '^(FERRY_[A-Z_]*|EXTRA)=' | sort
  printf 'ARGS='; printf '%s|' "$@"; echo
  echo "PWD=$(pwd)"
} > "$out/$id.env.tmp"
mv "$out/$id.env.tmp" "$out/$id.env"
if [ -n "${FERRY_PAYLOAD:-}" ]; then cp "$FERRY_PAYLOAD" "$out/$id.payload"; fi
echo "$FERRY_SERVICE ${FERRY_GIT_COMMIT:--} $id" >> "{dir}/runs.log"
echo "deploying $FERRY_SERVICE (deployment $id)"
echo "a note on stderr from $FERRY_SERVICE" >&2
while [ -e "{dir}/hold-$FERRY_SERVICE" ]; do sleep 0.05; done
if [ -e "{dir}/sleep-$FERRY_SERVICE" ]; then sleep "$(cat "{dir}/sleep-$FERRY_SERVICE")"; fi
if [ -e "{dir}/fail-$FERRY_SERVICE" ]; then echo "failing on purpose" >&2; exit 7; fi
echo "done"
"#;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// For a test that needs what not every machine has (Docker, strace, root for a tmpfs): such a
/// test is marked `#[ignore = "needs …: cargo test -- --include-ignored"]`, so a plain
/// `cargo test` lists it as ignored with that reason. Run (`--include-ignored`, as `.ci/run`
/// and the README's test command do), it calls this when what it needs is missing: with `CI`
/// set the test fails rather than pass unchecked; elsewhere it prints why and the caller
/// returns (skipped), so the README's command also passes on a machine without Docker.
pub fn unavailable(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("this test cannot run here (CI is set, so it may not be skipped): {why}");
    }
    eprintln!("skipping: this test cannot run here: {why}");
}

/// The store a test server runs on. `FERRY_TEST_ENGINE=postgres` makes every ferry the harness
/// starts run on PostgreSQL (a fresh database of the throwaway cluster in
/// `tests/common/postgres.rs` each), so the whole suite can be run on it by hand:
/// `FERRY_TEST_ENGINE=postgres cargo test --test it -- --test-threads=2`. A test that must run
/// on one engine says so: [`FerryBuilder::postgres`], [`FerryBuilder::sqlite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// What `FERRY_TEST_ENGINE` asks for (unset: SQLite, ferry's default).
    pub fn from_env() -> Engine {
        match std::env::var("FERRY_TEST_ENGINE").as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => Engine::Sqlite,
            Ok("postgres") => Engine::Postgres,
            Ok(other) => panic!("FERRY_TEST_ENGINE={other:?}: expected sqlite or postgres"),
        }
    }
}

/// The URL of a fresh PostgreSQL database for one test server, or why there is none (the
/// binaries are missing).
pub fn postgres_database() -> Result<String, String> {
    crate::postgres::database()
}

/// CI runs every test, the ignored ones too (see [`unavailable`]): with `CI` set, a run that
/// leaves them out fails here instead of passing with tests unrun.
#[test]
fn ci_runs_the_ignored_tests() {
    let args: Vec<String> = std::env::args().collect();
    let included = args
        .iter()
        .any(|a| a == "--include-ignored" || a == "--ignored");
    assert!(
        std::env::var_os("CI").is_none() || included,
        "CI is set, so the tests that need Docker, strace or root must run: \
         cargo test -- --include-ignored (args: {args:?})"
    );
}

/// A string no other test (or test process) uses.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A port on 127.0.0.1 that was free a moment ago: for an address a config or a peer needs
/// before the process that will listen on it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A GUID-shaped `X-GitHub-Delivery` value no other request uses.
pub fn github_delivery_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}-0000-4000-8000-{n:012x}", std::process::id())
}

/// `X-Hub-Signature-256` for `body`: `sha256=` + lowercase hex HMAC-SHA256.
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A 40-hex-digit commit id, distinct per `n`.
pub fn sha(n: u64) -> String {
    format!("{:040x}", 0x00c0_ffee_0000_u64 + n)
}

/// An RFC 3339 commit time, `n` seconds after a fixed moment (so a larger `n` is newer).
pub fn commit_time(n: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(1_795_000_000 + n).expect("valid time");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("formattable")
}

/// A realistic GitHub `push` payload (the fields of a real delivery that matter, plus a few
/// that do not). Tests change fields of the returned value for special pushes.
pub fn push_value(repo: &str, branch: &str, commit: &str, commit_time: &str) -> Value {
    let (owner, name) = repo.split_once('/').expect("owner/name");
    let before = "4bf0b3c3a5d02e5bd1e1f8f8a5f6f1f1a2b3c4d5";
    let author = json!({"name": owner, "email": format!("{owner}@users.noreply.github.com"), "username": owner});
    let commit_obj = json!({
        "id": commit,
        "tree_id": "31b122c26a97cf9af023e9ddab94a82c6e77b0ea",
        "distinct": true,
        "message": format!("Update for {commit}"),
        "timestamp": commit_time,
        "url": format!("https://github.com/{repo}/commit/{commit}"),
        "author": author,
        "committer": author,
        "added": [],
        "removed": [],
        "modified": ["README.md"],
    });
    json!({
        "ref": format!("refs/heads/{branch}"),
        "before": before,
        "after": commit,
        "created": false,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": format!("https://github.com/{repo}/compare/{}...{}", &before[..12], &commit[..12]),
        "commits": [commit_obj.clone()],
        "head_commit": commit_obj,
        "repository": {
            "id": 186853002,
            "name": name,
            "full_name": repo,
            "private": false,
            "owner": {"name": owner, "login": owner, "id": 21031067, "type": "User"},
            "html_url": format!("https://github.com/{repo}"),
            "default_branch": "master",
            "pushed_at": 1_795_000_000,
        },
        "pusher": {"name": owner, "email": format!("{owner}@users.noreply.github.com")},
        "sender": {"login": owner, "id": 21031067, "type": "User"},
    })
}

/// [`push_value`] as the JSON text GitHub would send.
pub fn push_payload(repo: &str, branch: &str, commit: &str, commit_time: &str) -> String {
    push_value(repo, branch, commit, commit_time).to_string()
}

/// A GitHub fixture from `tests/fixtures/github`: the exact body and the sidecar's headers.
pub struct Fixture {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Fixture {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a fixture's body and its `.headers` sidecar: `NAME` is in `tests/fixtures/github`,
/// `SENDER/NAME` in `tests/fixtures/SENDER`. A sidecar such as `push.forgejo` belongs to the
/// body `push` (its first dotted component).
pub fn fixture(name: &str) -> Fixture {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (dir, name) = match name.split_once('/') {
        Some((sender, name)) => (root.join(sender), name),
        None => (root.join("github"), name),
    };
    let body_name = name.split('.').next().unwrap_or(name);
    let body = std::fs::read(dir.join(format!("{body_name}.json")))
        .or_else(|_| std::fs::read(dir.join(format!("{body_name}.body"))))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    let sidecar = std::fs::read_to_string(dir.join(format!("{name}.headers")))
        .unwrap_or_else(|e| panic!("fixture {name}.headers: {e}"));
    let headers = sidecar
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once(':').expect("Name: value");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Fixture { body, headers }
}

/// A ferry with one app `hub` (token `image-hook-token-1`) whose service `testhook` runs the
/// deploy script for Docker Hub's `svendowideit/testhook:latest` (no Docker needed), and reports
/// back to callback URLs under `http://HOST/u/`; `server` adds lines to `[server]`.
pub fn dockerhub_callback_config(host: &str, server: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{{dir}}/data"
admin_token = "${{FERRY_ADMIN_TOKEN}}"
{server}

[apps.hub]
token = "image-hook-token-1"
dockerhub_callback = "http://{host}/u/"
[apps.hub.services.testhook]
image = {{ repository = "docker.io/svendowideit/testhook", tags = "latest" }}
command = ["{{dir}}/deploy.sh"]
"#
    )
}

/// Docker Hub's push (fixture `dockerhub/push`) with its `callback_url` on `host`: a local
/// listener that plays Docker Hub's callback endpoint (Docker Hub cannot run here).
pub fn dockerhub_push_calling_back_to(host: &str) -> String {
    String::from_utf8(fixture("dockerhub/push").body)
        .expect("UTF-8 fixture")
        .replace(
            "https://registry.hub.docker.com/u/",
            &format!("http://{host}/u/"),
        )
}

/// Removes ANSI colour sequences (in case the server colours its logs).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The address in ferry's "listening" log line, text (`addr=IP:PORT`) or JSON (`"addr":"…"`).
fn listening_addr(line: &str) -> Option<String> {
    if !line.contains("listening") {
        return None;
    }
    if let Some(i) = line.find("addr=") {
        let rest = &line[i + "addr=".len()..];
        let addr: String = rest
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_string();
        return Some(addr);
    }
    let v: Value = serde_json::from_str(line).ok()?;
    let addr = v
        .get("addr")
        .or_else(|| v.get("fields").and_then(|f| f.get("addr")))?;
    addr.as_str().map(str::to_string)
}

/// Environment changes for every ferry process the tests start: nothing from the developer's
/// shell may steer it (FERRY_*, RUST_LOG, proxies), and no colours.
fn hermetic(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        let lower = k.to_ascii_lowercase();
        if k.starts_with("FERRY_") || k == "RUST_LOG" || lower.ends_with("_proxy") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("NO_COLOR", "1");
}

/// Process ids (not ours) whose command line contains `needle`.
pub fn procs_matching(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// SIGKILLs every process whose command line contains `needle` (processes this test started).
pub fn kill_matching(needle: &str) {
    for pid in procs_matching(needle) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Polls `check` every [`POLL`] until it returns `Some`, for at most `timeout`; then fails the
/// test with `what` and the last value `describe` gives.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() > deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// States a deployment never leaves.
pub fn is_final(state: &Value) -> bool {
    !matches!(state.as_str(), Some("queued") | Some("running"))
}

/// A timestamp from the API (RFC 3339 text or unix milliseconds) as unix milliseconds.
pub fn ts_ms(v: &Value) -> i128 {
    match v {
        Value::Number(n) => n.as_i64().expect("integer timestamp") as i128,
        Value::String(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("timestamp {s:?}: {e}"));
            t.unix_timestamp_nanos() / 1_000_000
        }
        other => panic!("not a timestamp: {other}"),
    }
}

/// The one deployment of `service` in `deployments`.
pub fn only<'a>(deployments: &'a [Value], service: &str) -> &'a Value {
    let matching: Vec<&Value> = deployments
        .iter()
        .filter(|d| d["service"] == service)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one deployment of {service} in {deployments:#?}"
    );
    matching[0]
}

/// Asserts that `service` was not deployed by `deployments`: at most a `skipped` record.
pub fn not_deployed(deployments: &[Value], service: &str) {
    for d in deployments.iter().filter(|d| d["service"] == service) {
        assert_eq!(
            d["state"], "skipped",
            "{service} should not be deployed: {d:#}"
        );
    }
}

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub content_type: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("answer {} is not JSON ({e}): {}", self.status, self.text))
    }

    /// Asserts a 202 `accepted` answer and returns its delivery id.
    pub fn accepted(&self) -> i64 {
        assert_eq!(
            self.status, 202,
            "expected 202 accepted, got: {}",
            self.text
        );
        let v = self.json();
        assert_eq!(v["status"], "accepted", "{v}");
        self.delivery_id()
    }

    pub fn delivery_id(&self) -> i64 {
        self.json()["delivery_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("no integer delivery_id in {}", self.text))
    }

    /// The `error` message of a JSON error answer.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.text))
            .to_string()
    }
}

/// One run of the recording script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub service: String,
    /// `FERRY_GIT_COMMIT`, if set.
    pub commit: Option<String>,
    pub deployment: i64,
}

/// Builds a test server: config, scripts, environment, flags.
pub struct FerryBuilder {
    config: String,
    scripts: Vec<(String, String)>,
    dirs: Vec<String>,
    env: Vec<(String, String)>,
    global_args: Vec<String>,
    serve_args: Vec<String>,
    nofile: Option<u64>,
    /// `None`: as `FERRY_TEST_ENGINE` says.
    engine: Option<Engine>,
}

impl FerryBuilder {
    /// Runs this server on PostgreSQL (`FERRY_DATABASE`: a fresh database of the throwaway
    /// cluster, kept over [`Ferry::restart`]) whatever `FERRY_TEST_ENGINE` says. `None` when
    /// PostgreSQL cannot run here: the test returns (skipped, with the reason printed by
    /// [`unavailable`], which fails the test instead when `CI` is set).
    pub fn postgres(mut self) -> Option<Self> {
        match postgres_database() {
            Ok(url) => {
                self.env.push(("FERRY_DATABASE".into(), url));
                self.engine = Some(Engine::Postgres);
                Some(self)
            }
            Err(why) => {
                unavailable(&format!("PostgreSQL: {why}"));
                None
            }
        }
    }

    /// Runs this server on SQLite whatever `FERRY_TEST_ENGINE` says: for a test of what only
    /// the SQLite engine has (its files, its fsyncs); the caller says why.
    pub fn sqlite(mut self) -> Self {
        self.engine = Some(Engine::Sqlite);
        self
    }

    /// Runs ferry with this open-file limit (soft and hard, as `ulimit -n N` does).
    pub fn nofile_limit(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    /// An environment variable for the server (and so for its deploy commands).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// An executable file `{dir}/NAME`; `{dir}` in `body` is replaced.
    pub fn script(mut self, name: &str, body: &str) -> Self {
        self.scripts.push((name.into(), body.into()));
        self
    }

    /// A directory `{dir}/NAME`.
    pub fn dir(mut self, name: &str) -> Self {
        self.dirs.push(name.into());
        self
    }

    /// A flag before the subcommand (`ferry FLAG serve …`).
    pub fn global_arg(mut self, arg: &str) -> Self {
        self.global_args.push(arg.into());
        self
    }

    /// A flag after the subcommand (`ferry serve --config … FLAG`).
    pub fn serve_arg(mut self, arg: &str) -> Self {
        self.serve_args.push(arg.into());
        self
    }

    pub async fn start(mut self) -> Ferry {
        let engine = self.engine.unwrap_or_else(Engine::from_env);
        if engine == Engine::Postgres {
            // Set already by `postgres()`, or by a test of the variable itself.
            if !self.env.iter().any(|(k, _)| k == "FERRY_DATABASE") {
                // Asked for by FERRY_TEST_ENGINE: a run of the suite that fell back to SQLite
                // would pass without testing what was asked, so this fails even without CI.
                let url = postgres_database().unwrap_or_else(|why| {
                    panic!("FERRY_TEST_ENGINE=postgres, but PostgreSQL cannot run here: {why}")
                });
                self.env.push(("FERRY_DATABASE".into(), url));
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_str().expect("utf-8 temp dir").to_string();
        let fill = |s: &str| s.replace("{dir}", &root);
        let config_path = dir.path().join("ferry.toml");
        std::fs::write(&config_path, fill(&self.config)).expect("write config");
        // ferry runs from a different directory, so relative paths that wrongly follow the
        // working directory instead of the config file's show up.
        std::fs::create_dir(dir.path().join("cwd")).expect("cwd");
        for d in &self.dirs {
            std::fs::create_dir_all(dir.path().join(d)).expect("dir");
        }
        let mut scripts = vec![("deploy.sh".to_string(), DEPLOY_SH.to_string())];
        scripts.extend(self.scripts);
        for (name, body) in scripts {
            let path = dir.path().join(&name);
            std::fs::write(&path, fill(&body)).expect("write script");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod script");
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            // ferry closes connections idle for `header_timeout` (10 s by default): a client that
            // kept one longer could send on it just as it closes (seen as a flaky test).
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        let mut ferry = Ferry {
            dir,
            engine,
            config_path,
            env: self.env,
            global_args: self.global_args,
            serve_args: self.serve_args,
            nofile: self.nofile,
            child: None,
            exit: None,
            addr: String::new(),
            logs: Arc::new(Mutex::new(Vec::new())),
            http,
        };
        ferry.launch().await;
        ferry
    }
}

/// A running `ferry serve` (killed with SIGKILL when dropped).
pub struct Ferry {
    dir: tempfile::TempDir,
    /// The store it runs on (on PostgreSQL, `FERRY_DATABASE` is in `env`, so a restart finds
    /// the same database).
    engine: Engine,
    config_path: PathBuf,
    env: Vec<(String, String)>,
    global_args: Vec<String>,
    serve_args: Vec<String>,
    nofile: Option<u64>,
    child: Option<Child>,
    exit: Option<ExitStatus>,
    addr: String,
    /// Every stderr (and stdout, prefixed) line of every ferry process of this test.
    logs: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl Ferry {
    /// A server with `config` (`{dir}` is replaced by the test's temp dir).
    pub fn with_config(config: &str) -> FerryBuilder {
        FerryBuilder {
            config: config.to_string(),
            scripts: Vec::new(),
            dirs: Vec::new(),
            env: vec![("FERRY_ADMIN_TOKEN".into(), ADMIN_TOKEN.into())],
            global_args: Vec::new(),
            serve_args: Vec::new(),
            nofile: None,
            engine: None,
        }
    }

    /// A server with [`SHOP`].
    pub fn shop() -> FerryBuilder {
        Ferry::with_config(SHOP)
    }

    async fn launch(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(&self.global_args)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .args(&self.serve_args)
            .current_dir(self.dir.path().join("cwd"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        hermetic(&mut cmd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = cmd.spawn().expect("start ferry");
        let (tx, rx) = mpsc::channel::<Option<String>>();
        let stderr = child.stderr.take().expect("stderr");
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut buf = Vec::new();
            let mut found = false;
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = strip_ansi(String::from_utf8_lossy(&buf).trim_end());
                if !found && let Some(addr) = listening_addr(&line) {
                    found = true;
                    let _ = tx.send(Some(addr));
                }
                logs.lock().unwrap().push(line);
            }
            let _ = tx.send(None);
        });
        let stdout = child.stdout.take().expect("stdout");
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                logs.lock()
                    .unwrap()
                    .push(format!("[stdout] {}", strip_ansi(&line)));
            }
        });
        self.child = Some(child);
        self.exit = None;
        let deadline = Instant::now() + WAIT;
        loop {
            match rx.try_recv() {
                Ok(Some(addr)) => {
                    self.addr = addr;
                    return;
                }
                Ok(None) | Err(mpsc::TryRecvError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    panic!(
                        "ferry exited ({status:?}) before logging `listening addr=…`:\n{}",
                        self.stderr_text()
                    );
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            if Instant::now() > deadline {
                panic!(
                    "ferry did not log `listening addr=…` within {WAIT:?}:\n{}",
                    self.stderr_text()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The store this server runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The test's temp dir (also the config file's directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn dir_str(&self) -> String {
        self.dir.path().to_str().expect("utf-8").to_string()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// `http://IP:PORT` of the current process.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Everything the server wrote to stderr (and stdout, marked), over all restarts.
    pub fn stderr_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("ferry is running").id() as i32
    }

    /// `kill -9` the server and reap it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("ferry is running");
        child.kill().expect("SIGKILL ferry");
        self.exit = Some(child.wait().expect("reap ferry"));
    }

    /// Sends SIGTERM (the server keeps running until it exits on its own).
    pub fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM ferry");
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => match c.try_wait().expect("try_wait") {
                None => true,
                Some(status) => {
                    self.exit = Some(status);
                    self.child = None;
                    false
                }
            },
        }
    }

    /// Waits for the server to exit on its own; fails the test after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return self.exit.expect("exit status");
            }
            if Instant::now() > deadline {
                panic!(
                    "ferry did not exit within {timeout:?}:\n{}",
                    self.stderr_text()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sets (or replaces) an environment variable for the next start ([`Ferry::restart`]).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Starts the server again on the same config and data dir (after [`Ferry::kill9`] or an
    /// exit). The port changes.
    pub async fn restart(&mut self) {
        assert!(!self.is_running(), "restart needs a stopped ferry");
        self.launch().await;
    }

    /// Kills deploy commands left behind by a killed server (anything running from the temp
    /// dir), so they cannot interfere with what happens after a restart.
    pub fn kill_orphans(&self) {
        kill_matching(&self.dir_str());
    }

    // ---- hooks ----

    /// Sends a GitHub push with this payload to `shop`, signed with [`GITHUB_SECRET`]; returns
    /// the delivery id (asserting 202).
    pub async fn signed_push(&self, payload: &Value) -> i64 {
        self.hook("shop")
            .github("push")
            .body(payload.to_string())
            .signed(GITHUB_SECRET)
            .send()
            .await
            .accepted()
    }

    /// A request to `POST /hooks/APP/TOKEN` (token [`HOOK_TOKEN`] unless changed).
    pub fn hook(&self, app: &str) -> HookRequest<'_> {
        HookRequest {
            ferry: self,
            app: app.into(),
            token: HOOK_TOKEN.into(),
            query: String::new(),
            headers: Vec::new(),
            body: None,
            sign_with: None,
        }
    }

    /// A signed GitHub push of `branch` of [`REPO`] to app `shop`, answered 202.
    pub async fn push(&self, branch: &str, commit: &str, time: &str) -> i64 {
        self.hook("shop")
            .github("push")
            .body(push_payload(REPO, branch, commit, time))
            .signed(GITHUB_SECRET)
            .send()
            .await
            .accepted()
    }

    // ---- API ----

    /// A call to the admin API with `token` (none: no Authorization header).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}\n{}", self.stderr_text()));
        reply(resp).await
    }

    /// `GET path` with the admin token; the answer must be 200 JSON.
    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .api(reqwest::Method::GET, path, Some(ADMIN_TOKEN), None)
            .await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        r.json()
    }

    /// `POST path` with the admin token and a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.api(reqwest::Method::POST, path, Some(ADMIN_TOKEN), Some(body))
            .await
    }

    pub async fn delivery(&self, id: i64) -> Value {
        self.get(&format!("/api/v1/deliveries/{id}")).await
    }

    pub async fn deployment(&self, id: i64) -> Value {
        self.get(&format!("/api/v1/deployments/{id}")).await
    }

    /// `GET /api/v1/deployments?QUERY` (all of them, newest first).
    pub async fn deployments(&self, query: &str) -> Vec<Value> {
        let v = self
            .get(&format!("/api/v1/deployments?limit=10000&{query}"))
            .await;
        v["deployments"]
            .as_array()
            .unwrap_or_else(|| panic!("no deployments array in {v}"))
            .clone()
    }

    /// `GET /api/v1/deliveries?QUERY` (all of them, newest first).
    pub async fn deliveries(&self, query: &str) -> Vec<Value> {
        let v = self
            .get(&format!("/api/v1/deliveries?limit=10000&{query}"))
            .await;
        v["deliveries"]
            .as_array()
            .unwrap_or_else(|| panic!("no deliveries array in {v}"))
            .clone()
    }

    /// A deployment's log (`text/plain`).
    pub async fn log(&self, id: i64) -> String {
        let r = self
            .api(
                reqwest::Method::GET,
                &format!("/api/v1/deployments/{id}/logs"),
                Some(ADMIN_TOKEN),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "logs of {id}: {}", r.text);
        assert!(
            r.content_type.starts_with("text/plain"),
            "logs should be text/plain, got {:?}",
            r.content_type
        );
        r.text
    }

    /// Polls `GET /api/v1/deployments?QUERY` until `pred` holds for the list.
    pub async fn wait_deployments(
        &self,
        query: &str,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        eventually(what, WAIT, async || {
            let list = self.deployments(query).await;
            if pred(&list) {
                Ok(list)
            } else {
                Err(format!("{list:#?}"))
            }
        })
        .await
    }

    /// Waits until deployment `id` is in `state`.
    pub async fn wait_state(&self, id: i64, state: &str) -> Value {
        eventually(
            &format!("deployment {id} to be {state}"),
            WAIT,
            async || {
                let d = self.deployment(id).await;
                if d["state"] == state {
                    Ok(d)
                } else {
                    Err(format!("{d:#}"))
                }
            },
        )
        .await
    }

    /// Waits until delivery `id` has been planned (or rejected) and returns it.
    pub async fn wait_planned(&self, id: i64) -> Value {
        eventually(&format!("delivery {id} to be planned"), WAIT, async || {
            let d = self.delivery(id).await;
            if d["status"] != "received" {
                Ok(d)
            } else {
                Err(format!("{d:#}"))
            }
        })
        .await
    }

    /// Waits until delivery `delivery` is planned and returns its deployment of `service`.
    pub async fn planned_deployment(&self, delivery: i64, service: &str) -> Value {
        let d = self.wait_planned(delivery).await;
        let ids = d["deployments"]
            .as_array()
            .unwrap_or_else(|| panic!("no deployments array in {d:#}"))
            .clone();
        for id in ids {
            let dep = self.deployment(id.as_i64().expect("integer id")).await;
            if dep["service"] == service {
                return dep;
            }
        }
        panic!("delivery {delivery} has no deployment of {service}: {d:#}");
    }

    /// Waits until delivery `id` is planned and every deployment it caused has ended; returns
    /// those deployments.
    pub async fn settle(&self, id: i64) -> Vec<Value> {
        let delivery = self.wait_planned(id).await;
        let ids: Vec<i64> = delivery["deployments"]
            .as_array()
            .unwrap_or_else(|| panic!("no deployments array in {delivery:#}"))
            .iter()
            .map(|v| v.as_i64().expect("deployment ids are integers"))
            .collect();
        let mut out = Vec::new();
        for dep in ids {
            let d = eventually(&format!("deployment {dep} to end"), WAIT, async || {
                let d = self.deployment(dep).await;
                if is_final(&d["state"]) {
                    Ok(d)
                } else {
                    Err(format!("{d:#}"))
                }
            })
            .await;
            assert_eq!(d["delivery_id"], id, "{d:#}");
            out.push(d);
        }
        out
    }

    /// Waits until nothing is left to do for `app`: no delivery waits to be planned and no
    /// deployment is queued or running. A barrier before asserting that something did *not*
    /// happen: whatever an accepted request caused is visible afterwards.
    pub async fn settled(&self, app: &str) {
        eventually(&format!("app {app} to settle"), WAIT, async || {
            let deliveries = self.deliveries(&format!("app={app}")).await;
            let deployments = self.deployments(&format!("app={app}")).await;
            let busy: Vec<&Value> = deliveries
                .iter()
                .filter(|d| d["status"] == "received")
                .chain(deployments.iter().filter(|d| !is_final(&d["state"])))
                .collect();
            if busy.is_empty() {
                Ok(())
            } else {
                Err(format!("{busy:#?}"))
            }
        })
        .await
    }

    // ---- what the deploy commands did ----

    /// The runs of the recording script, in the order they started.
    pub fn runs(&self) -> Vec<Run> {
        let text = std::fs::read_to_string(self.path("runs.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let parts: Vec<&str> = l.split(' ').collect();
                assert_eq!(parts.len(), 3, "runs.log line {l:?}");
                Run {
                    service: parts[0].to_string(),
                    commit: (parts[1] != "-").then(|| parts[1].to_string()),
                    deployment: parts[2].parse().expect("deployment id"),
                }
            })
            .collect()
    }

    /// Waits until the recording script has started for deployment `id`.
    pub async fn wait_run(&self, id: i64) {
        eventually(
            &format!("the command of deployment {id} to start"),
            WAIT,
            async || {
                let runs = self.runs();
                if runs.iter().any(|r| r.deployment == id) {
                    Ok(())
                } else {
                    Err(format!("{runs:?}"))
                }
            },
        )
        .await;
    }

    /// The runs of `service`.
    pub fn runs_of(&self, service: &str) -> Vec<Run> {
        self.runs()
            .into_iter()
            .filter(|r| r.service == service)
            .collect()
    }

    /// The FERRY_* variables (plus `EXTRA`, `ARGS` = argv joined by `|`, `PWD`) that deployment
    /// `id` ran with.
    pub fn run_env(&self, id: i64) -> HashMap<String, String> {
        let path = self.path(&format!("runs/{id}.env"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("deployment {id} did not run the script ({e})"));
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The payload file deployment `id` was given, if any.
    pub fn run_payload(&self, id: i64) -> Option<Vec<u8>> {
        std::fs::read(self.path(&format!("runs/{id}.payload"))).ok()
    }

    /// Makes the recording script wait (for `service`) until [`Ferry::release`].
    pub fn hold(&self, service: &str) {
        std::fs::write(self.path(&format!("hold-{service}")), "").expect("hold");
    }

    pub fn release(&self, service: &str) {
        std::fs::remove_file(self.path(&format!("hold-{service}"))).expect("release");
    }

    /// Makes the recording script sleep `seconds` for `service`.
    pub fn slow(&self, service: &str, seconds: &str) {
        std::fs::write(self.path(&format!("sleep-{service}")), seconds).expect("slow");
    }

    /// Makes the recording script exit 7 for `service`.
    pub fn fail(&self, service: &str) {
        std::fs::write(self.path(&format!("fail-{service}")), "").expect("fail");
    }

    // ---- CLI ----

    /// `ferry ARGS --server URL --token ADMIN_TOKEN`.
    pub fn cli(&self, args: &[&str]) -> Cli {
        let url = self.base_url();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", url.as_str(), "--token", ADMIN_TOKEN]);
        Cli::new(&all)
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deploy commands that outlived a killed server.
        kill_matching(&self.dir_str());
        if std::thread::panicking() {
            eprintln!(
                "----- ferry's stderr ({}) -----\n{}\n----- end of ferry's stderr -----",
                self.dir_str(),
                self.stderr_text()
            );
        }
    }
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.expect("answer body");
    Reply {
        status,
        text,
        content_type,
    }
}

/// A hook request being built.
pub struct HookRequest<'a> {
    ferry: &'a Ferry,
    app: String,
    token: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    sign_with: Option<String>,
}

impl HookRequest<'_> {
    pub fn token(mut self, token: &str) -> Self {
        self.token = token.into();
        self
    }

    /// The query string, without `?` (`services=web&git_ref=v1`).
    pub fn query(mut self, query: &str) -> Self {
        self.query = query.into();
        self
    }

    /// Sets a header (replacing one of the same name).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, value: &Value) -> Self {
        self.header("Content-Type", "application/json")
            .body(value.to_string())
    }

    /// GitHub's headers for `event` with a fresh `X-GitHub-Delivery` (unsigned: add
    /// [`HookRequest::signed`]).
    pub fn github(self, event: &str) -> Self {
        self.header("Content-Type", "application/json")
            .header("User-Agent", "GitHub-Hookshot/044aadd")
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", &github_delivery_id())
            .header("X-GitHub-Hook-ID", "109948940")
    }

    /// `Authorization: Bearer` [`CI_BEARER`] (see [`shop_ci`]).
    pub fn ci_bearer(self) -> Self {
        self.header("Authorization", &format!("Bearer {CI_BEARER}"))
    }

    /// Signs the body as GitHub does (`X-Hub-Signature-256`) when sent.
    pub fn signed(mut self, secret: &str) -> Self {
        self.sign_with = Some(secret.into());
        self
    }

    /// The body and headers of a GitHub fixture, exactly as stored.
    pub fn fixture(mut self, name: &str) -> Self {
        let fx = fixture(name);
        for (k, v) in &fx.headers {
            // The HTTP client sets these itself.
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("host") {
                continue;
            }
            self = self.header(k, v);
        }
        self.body(fx.body)
    }

    /// The chain most tests repeat: sends, asserts 202 `accepted`, and waits until the delivery
    /// is planned and every deployment it caused has ended ([`Ferry::settle`]). Returns the
    /// delivery id and those deployments.
    pub async fn deliver(self) -> (i64, Vec<Value>) {
        let ferry = self.ferry;
        let id = self.send().await.accepted();
        (id, ferry.settle(id).await)
    }

    pub async fn send(self) -> Reply {
        let mut url = self
            .ferry
            .url(&format!("/hooks/{}/{}", self.app, self.token));
        if !self.query.is_empty() {
            url.push('?');
            url.push_str(&self.query);
        }
        let mut req = self.ferry.http.post(url);
        let body = self.body.unwrap_or_default();
        let mut headers = self.headers;
        if let Some(secret) = &self.sign_with {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("X-Hub-Signature-256"));
            headers.push(("X-Hub-Signature-256".into(), sign_github(secret, &body)));
        }
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp =
            req.body(body).send().await.unwrap_or_else(|e| {
                panic!("hook request failed: {e}\n{}", self.ferry.stderr_text())
            });
        reply(resp).await
    }
}

/// The output of one `ferry` CLI run.
#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Asserts exit 0 and returns stdout.
    pub fn success(&self) -> &str {
        assert_eq!(self.code, Some(0), "ferry CLI failed: {self:#?}");
        &self.stdout
    }

    /// Asserts a non-zero exit and returns stderr.
    pub fn failure(&self) -> &str {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "ferry CLI should fail: {self:#?}"
        );
        &self.stderr
    }
}

/// A run of the `ferry` binary as a CLI (builder).
pub struct Cli {
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
}

impl Cli {
    pub fn new(args: &[&str]) -> Cli {
        Cli {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            cwd: None,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Runs it (at most 60 s).
    pub async fn run(self) -> CliOutput {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        hermetic(&mut cmd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("ferry {:?} did not finish within 60 s", self.args))
            .expect("run ferry");
        CliOutput {
            code: out.status.code(),
            stdout: strip_ansi(&String::from_utf8_lossy(&out.stdout)),
            stderr: strip_ansi(&String::from_utf8_lossy(&out.stderr)),
        }
    }
}

/// A config file in its own temp dir, for the commands that only read the config.
pub struct ConfigFile {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl ConfigFile {
    /// Writes `text` (with `{dir}` replaced) as `ferry.toml` in a fresh temp dir.
    pub fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_str().expect("utf-8").to_string();
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, text.replace("{dir}", &root)).expect("write config");
        ConfigFile { dir, path }
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("utf-8")
    }

    /// `ferry check --config PATH`.
    pub async fn check(&self) -> CliOutput {
        Cli::new(&["check", "--config", self.path_str()])
            .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
            .cwd(self.dir.path())
            .run()
            .await
    }
}

/// The 1-based line of the first line of `text` containing `needle` (at or after line `from`).
pub fn line_of(text: &str, needle: &str, from: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in config"))
}

/// A tmpfs mounted for one test; unmounted on drop (after the server using it is gone).
pub struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    /// `None` (skipped, see `unavailable`) where no tmpfs can be mounted.
    pub fn tmpfs(size: &str) -> Option<Mount> {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mount { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                unavailable(&format!("cannot mount a tmpfs here ({why})"));
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .expect("mount");
        assert!(status.success(), "remount {mode}");
    }

    /// Fills the file system until writes fail; returns the filler to delete later.
    pub fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", filler.display()))
            .output();
        filler
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
