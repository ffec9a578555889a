//! GitOps checkouts (`checkout = { url, path, … }`) against real git servers started here:
//! `git daemon` for a public repository, `git http-backend` behind basic auth for a private
//! one (`git_server.rs`). Commits are made and pushed for real; ferry hears of them through
//! signed GitHub push deliveries naming the real commits (their commit times order them).
//! The deploy command (`record.sh`, run in the checkout) records `git rev-parse HEAD`, its
//! directory, `FERRY_CHECKOUT`, `FERRY_GIT_COMMIT`, the files it sees and its environment.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::git_server::{GitDaemon, GitHttp, Repos};
use crate::support::{Ferry, commit_time, only, push_value};

/// The repository the service follows, as the push payloads name it.
const REPO: &str = "acme/site";

/// App `shop` (hook token and GitHub secret as the harness signs with) with the service
/// `site` checking out `{url}` into `{dir}/site`; `{services}` adds more.
const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.shop]
token = "secret-token-1"

[apps.shop.verify]
github = "It's a Secret to Everybody"

[apps.shop.services.site]
git = { repo = "acme/site", branch = "main" }
command = ["{dir}/record.sh"]
timeout = "60s"
checkout = { url = "{url}", path = "{dir}/site"{auth} }
{services}
"#;

/// The deploy command: what it saw, in `{dir}/runs/ID.txt` and `ID.env`, and one line per run
/// in `{dir}/checkouts.log`.
const RECORD: &str = r#"#!/bin/sh
set -eu
out="{dir}/runs"
mkdir -p "$out"
{
  echo "head=$(git rev-parse HEAD)"
  echo "pwd=$(pwd)"
  echo "checkout=$FERRY_CHECKOUT"
  echo "commit=$FERRY_GIT_COMMIT"
  echo "files=$(find . -path ./.git -prune -o -type f -print | sed 's|^\./||' | sort | tr '\n' ' ')"
} > "$out/$FERRY_DEPLOYMENT_ID.txt"
env > "$out/$FERRY_DEPLOYMENT_ID.env"
echo "$FERRY_SERVICE $(git rev-parse HEAD)" >> "{dir}/checkouts.log"
echo "deployed $(git rev-parse --short HEAD)"
"#;

fn config(url: &str, auth: &str, services: &str) -> String {
    CONFIG
        .replace("{url}", url)
        .replace("{auth}", auth)
        .replace("{services}", services)
}

async fn start(config: &str, env: &[(&str, &str)]) -> Ferry {
    let mut builder = Ferry::with_config(config).script("record.sh", RECORD);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    builder.start().await
}

/// A signed push of `commit` to `main` of [`REPO`], committed at `commit_time(n)`.
fn push(commit: &str, n: i64) -> Value {
    push_value(REPO, "main", commit, &commit_time(n))
}

/// What the deploy command of deployment `id` recorded.
fn record(ferry: &Ferry, id: &Value) -> HashMap<String, String> {
    let id = id.as_i64().expect("deployment id");
    let text = std::fs::read_to_string(ferry.path(&format!("runs/{id}.txt")))
        .unwrap_or_else(|e| panic!("no record of deployment {id}: {e}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The commits the deploy command found checked out, in the order it ran.
fn checked_out(ferry: &Ferry) -> Vec<String> {
    std::fs::read_to_string(ferry.path("checkouts.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap_or("").to_string())
        .collect()
}

/// Deploys `commit` (pushed at `n`) and returns its succeeded deployment of `site`.
async fn deploy(ferry: &Ferry, payload: &Value) -> Value {
    let id = ferry.signed_push(payload).await;
    let deployments = ferry.settle(id).await;
    let d = only(&deployments, "site").clone();
    let log = ferry.log(d["id"].as_i64().unwrap()).await;
    assert_eq!(d["state"], "succeeded", "{d:#}\n{log}");
    d
}

#[tokio::test]
async fn the_checkout_holds_exactly_the_pushed_tree_and_nothing_left_over() {
    let repos = Repos::new();
    let scratch = repos.create("site");
    let daemon = GitDaemon::start(repos.root());
    let c1 = scratch.commit_and_push(
        "first",
        &[
            ("index.html", Some("v1")),
            ("old.txt", Some("old")),
            ("lib/a.txt", Some("a")),
        ],
    );
    let ferry = start(&config(&daemon.url("site"), "", ""), &[]).await;
    let site = ferry.path("site").display().to_string();

    let d = deploy(&ferry, &push(&c1, 1)).await;
    let r = record(&ferry, &d["id"]);
    assert_eq!(r["head"], c1);
    assert_eq!(r["commit"], c1);
    assert_eq!(r["pwd"], site, "the command runs in the checkout");
    assert_eq!(r["checkout"], site);
    assert_eq!(r["files"], "index.html lib/a.txt old.txt");
    let full = ferry.deployment(d["id"].as_i64().unwrap()).await;
    let steps: Vec<(&str, &str)> = full["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, [("checkout", "ok"), ("run", "ok")], "{full:#}");
    let log = ferry.log(d["id"].as_i64().unwrap()).await;
    assert!(
        log.contains(&format!(
            "git fetch --no-tags --force --no-write-fetch-head --no-recurse-submodules -- {}",
            daemon.url("site")
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("checked out {} in {site}", &c1[..12])),
        "{log}"
    );

    // What the next commit does not hold goes: a deleted file, an untracked one, a local edit.
    std::fs::write(ferry.path("site/leftover.txt"), "x").unwrap();
    std::fs::write(ferry.path("site/index.html"), "edited on the host").unwrap();
    let c2 = scratch.commit_and_push("second", &[("old.txt", None), ("new.txt", Some("new"))]);
    let d = deploy(&ferry, &push(&c2, 2)).await;
    let r = record(&ferry, &d["id"]);
    assert_eq!(r["head"], c2);
    assert_eq!(r["files"], "index.html lib/a.txt new.txt");
    assert_eq!(
        std::fs::read_to_string(ferry.path("site/index.html")).unwrap(),
        "v1"
    );
    assert!(
        ferry
            .log(d["id"].as_i64().unwrap())
            .await
            .contains("Removing leftover.txt")
    );

    // A redeploy names no commit: the last one deployed, said so, and recorded.
    let id = ferry
        .post("/api/v1/apps/shop/deploy", json!({}))
        .await
        .accepted();
    let d = only(&ferry.settle(id).await, "site").clone();
    let log = ferry.log(d["id"].as_i64().unwrap()).await;
    assert_eq!(d["state"], "succeeded", "{log}");
    assert!(
        log.contains(&format!(
            "this deployment names no commit: checking out {c2}"
        )),
        "{log}"
    );
    assert_eq!(record(&ferry, &d["id"])["head"], c2);
    assert_eq!(record(&ferry, &d["id"])["commit"], c2);
    assert_eq!(
        d["commit"],
        c2.as_str(),
        "the commit checked out is recorded: {d:#}"
    );

    // Naming the branch's full ref deploys its newest commit, even one ferry never heard of.
    let c3 = scratch.commit_and_push("third", &[("index.html", Some("v3"))]);
    let id = ferry
        .post(
            "/api/v1/apps/shop/deploy",
            json!({"ref": "refs/heads/main"}),
        )
        .await
        .accepted();
    let d = only(&ferry.settle(id).await, "site").clone();
    let log = ferry.log(d["id"].as_i64().unwrap()).await;
    assert_eq!(d["state"], "succeeded", "{log}");
    assert!(
        log.contains("checking out the tip of refs/heads/main"),
        "{log}"
    );
    assert_eq!(record(&ferry, &d["id"])["head"], c3);
    assert_eq!(d["commit"], c3.as_str(), "{d:#}");
}

#[tokio::test]
async fn bursts_stale_deliveries_and_force_pushes_never_leave_an_older_tree_over_a_newer_one() {
    let repos = Repos::new();
    let scratch = repos.create("site");
    let daemon = GitDaemon::start(repos.root());
    let commits: Vec<String> = (1..=5)
        .map(|n| {
            let v = n.to_string();
            scratch.commit_and_push(&format!("v{n}"), &[("version", Some(&v))])
        })
        .collect();
    let ferry = start(&config(&daemon.url("site"), "", ""), &[]).await;
    deploy(&ferry, &push(&commits[0], 1)).await;

    // A burst: every push is planned; the newest ends up checked out, and no run checks out
    // an older commit than the one before it.
    let mut ids = Vec::new();
    for (n, c) in commits.iter().enumerate().skip(1) {
        ids.push(ferry.signed_push(&push(c, n as i64 + 1)).await);
    }
    ferry.settled("shop").await;
    let last = only(&ferry.settle(*ids.last().unwrap()).await, "site").clone();
    assert_eq!(last["state"], "succeeded", "{last:#}");
    assert_eq!(record(&ferry, &last["id"])["head"], commits[4]);
    let seen = checked_out(&ferry);
    let order: Vec<usize> = seen
        .iter()
        .map(|c| {
            commits
                .iter()
                .position(|k| k == c)
                .expect("a pushed commit")
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert_eq!(order.last(), Some(&4));
    assert_eq!(
        std::fs::read_to_string(ferry.path("site/version")).unwrap(),
        "5"
    );

    // A stale delivery (an older commit, arriving late): skipped, the tree stays.
    let mut late = push(&commits[1], 2);
    late["pusher"]["name"] = json!("late-delivery");
    let id = ferry.signed_push(&late).await;
    let stale = only(&ferry.settle(id).await, "site").clone();
    assert_eq!(stale["state"], "skipped", "{stale:#}");
    assert!(
        stale["reason"].as_str().unwrap().contains("stale"),
        "{stale:#}"
    );
    assert_eq!(checked_out(&ferry), seen);
    assert_eq!(
        std::fs::read_to_string(ferry.path("site/version")).unwrap(),
        "5"
    );

    // A force push back to an older commit is what the branch now is: it is checked out.
    scratch.force_push(&commits[1]);
    let mut forced = push(&commits[1], 2);
    forced["forced"] = json!(true);
    forced["before"] = json!(commits[4]);
    let d = deploy(&ferry, &forced).await;
    assert_eq!(record(&ferry, &d["id"])["head"], commits[1]);
    assert_eq!(
        std::fs::read_to_string(ferry.path("site/version")).unwrap(),
        "2"
    );
}

#[tokio::test]
async fn a_private_repository_needs_its_token_and_never_shows_it() {
    const TOKEN: &str = "tok-s3cr3t-9f8e7d6c5b4a";
    let repos = Repos::new();
    let scratch = repos.create("private");
    let http = GitHttp::start(repos.root(), "deployer", TOKEN);
    let c1 = scratch.commit_and_push("first", &[("app.yml", Some("replicas: 2"))]);
    let anon = r#"
[apps.shop.services.anon]
git = { repo = "acme/site", branch = "main" }
command = ["{dir}/record.sh"]
checkout = { url = "{url}", path = "{dir}/anon" }
"#
    .replace("{url}", &http.url("private"));
    let text = config(
        &http.url("private"),
        ", token = \"${SITE_TOKEN}\", username = \"deployer\"",
        &anon,
    );
    let ferry = start(&text, &[("SITE_TOKEN", TOKEN)]).await;

    let id = ferry.signed_push(&push(&c1, 1)).await;
    let deployments = ferry.settle(id).await;
    let site = only(&deployments, "site");
    let log = ferry.log(site["id"].as_i64().unwrap()).await;
    assert_eq!(site["state"], "succeeded", "{site:#}\n{log}");
    assert_eq!(record(&ferry, &site["id"])["head"], c1);
    assert_eq!(record(&ferry, &site["id"])["files"], "app.yml");

    // Without credentials: failed, with git's reason and what to set.
    let failed = only(&deployments, "anon");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert!(
        reason.starts_with("checkout: `git fetch` exited with status 128")
            && reason.contains("terminal prompts disabled")
            && reason.contains("set checkout.token"),
        "{reason}"
    );
    assert!(
        !ferry
            .path("runs")
            .join(format!("{}.txt", failed["id"]))
            .exists()
    );
    let steps = &ferry.deployment(failed["id"].as_i64().unwrap()).await["steps"];
    assert_eq!(steps[0]["name"], "checkout", "{steps:#}");
    assert_eq!(steps[0]["outcome"], "failed", "{steps:#}");
    assert_eq!(steps.as_array().unwrap().len(), 1, "nothing ran: {steps:#}");

    // The token went to the server as a header, never in a URL.
    let requests = http.requests.lock().unwrap().clone();
    assert!(requests.iter().any(|r| r.authorized), "{requests:#?}");
    assert!(requests.iter().all(|r| {
        !r.target.contains(TOKEN)
            && r.headers
                .iter()
                .all(|(k, v)| k == "authorization" || !v.contains(TOKEN))
    }));

    // ... and is nowhere users look: logs, the API, ferry's stderr, the deploy command's env.
    let header = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("deployer:{TOKEN}"))
    };
    let mut seen = vec![ferry.stderr_text()];
    for d in &deployments {
        let id = d["id"].as_i64().unwrap();
        seen.push(ferry.log(id).await);
        seen.push(ferry.deployment(id).await.to_string());
    }
    for path in ["/api/v1/deployments", "/api/v1/deliveries", "/api/v1/apps"] {
        seen.push(ferry.get(path).await.to_string());
    }
    seen.push(ferry.delivery(id).await.to_string());
    seen.push(std::fs::read_to_string(ferry.path(&format!("runs/{}.env", site["id"]))).unwrap());
    for text in &seen {
        assert!(!text.contains(TOKEN) && !text.contains(&header), "{text}");
    }
    assert!(
        seen.last().unwrap().contains("FERRY_CHECKOUT="),
        "the env was recorded"
    );
}

/// A stand-in for `ssh` (first on ferry's `PATH`): records its arguments and the key file it
/// was given (mode, content), waits while `ROOT/hold-ssh` exists, then runs the remote
/// command (`git-upload-pack '/path'`) here, as sshd would on the server.
const FAKE_SSH: &str = r#"#!/bin/sh
key=""
prev=""
for a in "$@"; do
  if [ "$prev" = "-i" ]; then key="$a"; fi
  prev="$a"
  last="$a"
done
echo "args=$*" >> "{root}/ssh.log"
if [ -n "$key" ]; then
  echo "key=$key" >> "{root}/ssh.log"
  echo "mode=$(stat -c %a "$key")" >> "{root}/ssh.log"
  cp "$key" "{root}/key-seen"
fi
while [ -e "{root}/hold-ssh" ]; do sleep 0.05; done
exec sh -c "$last"
"#;

const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAfake\n-----END OPENSSH PRIVATE KEY-----";

/// Repositories, a fake `ssh` in `ROOT/bin`, and ferry with it first on its `PATH`: service
/// `site` checks out `ssh://git@git.example/ROOT/site.git` with a key from a file; `{url}` and
/// `{root}` in `services` are those of `site`.
async fn over_ssh(services: &str) -> (Repos, crate::git_server::Scratch, Ferry) {
    let repos = Repos::new();
    let scratch = repos.create("site");
    let root = repos.root().display().to_string();
    let bin = repos.root().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("ssh"), FAKE_SSH.replace("{root}", &root)).unwrap();
    std::fs::write(repos.root().join("deploy_key"), KEY).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("ssh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        repos.root().join("deploy_key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let url = format!("ssh://git@git.example{root}/site.git");
    let auth = format!(", key = {{ file = \"{root}/deploy_key\" }}");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let services = services.replace("{url}", &url).replace("{root}", &root);
    let ferry = start(&config(&url, &auth, &services), &[("PATH", &path)]).await;
    (repos, scratch, ferry)
}

#[tokio::test]
async fn an_ssh_key_is_a_private_file_only_while_git_fetches() {
    let (repos, scratch, ferry) = over_ssh("").await;
    let c1 = scratch.commit_and_push("first", &[("playbook.yml", Some("- hosts: all"))]);
    let d = deploy(&ferry, &push(&c1, 1)).await;
    assert_eq!(record(&ferry, &d["id"])["head"], c1);

    let ssh = std::fs::read_to_string(repos.root().join("ssh.log")).unwrap();
    assert!(
        ssh.contains(
            "-o BatchMode=yes -o StrictHostKeyChecking=accept-new -o IdentitiesOnly=yes -i "
        ),
        "{ssh}"
    );
    assert!(ssh.contains("git@git.example git-upload-pack"), "{ssh}");
    assert!(ssh.contains("mode=600"), "{ssh}");
    // The key as configured, with the newline OpenSSH needs after its last line.
    assert_eq!(
        std::fs::read_to_string(repos.root().join("key-seen")).unwrap(),
        format!("{KEY}\n")
    );
    let key_file = ssh
        .lines()
        .find_map(|l| l.strip_prefix("key="))
        .unwrap()
        .to_string();
    assert!(key_file.starts_with(&ferry.path("data/checkout-keys/").display().to_string()));
    assert!(
        !std::path::Path::new(&key_file).exists(),
        "the key file outlived the fetch"
    );
    let log = ferry.log(d["id"].as_i64().unwrap()).await;
    assert!(
        !log.contains("BEGIN OPENSSH") && !log.contains("b3BlbnNzaC1rZXkt"),
        "{log}"
    );
    let env = std::fs::read_to_string(ferry.path(&format!("runs/{}.env", d["id"]))).unwrap();
    assert!(
        !env.contains("GIT_SSH_COMMAND") && !env.contains("b3BlbnNzaC1rZXkt"),
        "{env}"
    );
}

#[tokio::test]
async fn a_hanging_fetch_is_killed_on_cancel_and_on_timeout() {
    let quick = r#"
[apps.shop.services.quick]
git = { repo = "acme/site", branch = "main" }
command = ["{dir}/record.sh"]
timeout = "2s"
checkout = { url = "{url}", path = "{dir}/quick", key = { file = "{root}/deploy_key" } }
"#;
    let (repos, scratch, ferry) = over_ssh(quick).await;
    let root = repos.root().display().to_string();
    let c1 = scratch.commit_and_push("first", &[("a", Some("1"))]);
    std::fs::write(repos.root().join("hold-ssh"), "").unwrap();

    let id = ferry.signed_push(&push(&c1, 1)).await;
    let site = ferry.planned_deployment(id, "site").await["id"]
        .as_i64()
        .unwrap();
    let quick = ferry.planned_deployment(id, "quick").await["id"]
        .as_i64()
        .unwrap();
    ferry.wait_state(site, "running").await;
    crate::support::eventually(
        "the fetch of site to hang in ssh",
        crate::support::WAIT,
        async || {
            // The fake ssh's arguments name the deployment's key file.
            let n = crate::support::procs_matching(&format!("deployment-{site}.key")).len();
            if n > 0 {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    )
    .await;
    let r = ferry
        .post(&format!("/api/v1/deployments/{site}/cancel"), json!({}))
        .await;
    assert!(r.status < 300, "{}", r.text);
    let d = ferry.wait_state(site, "cancelled").await;
    let t = ferry.wait_state(quick, "timed_out").await;
    let log = ferry.log(quick).await;
    assert!(
        log.contains("timed out after 2s while checking out"),
        "{t:#}\n{log}"
    );
    // git and the ssh it started were killed with their process group; no key file is left.
    crate::support::eventually(
        "the hanging ssh to be killed",
        crate::support::WAIT,
        async || {
            let left = crate::support::procs_matching(&format!("{root}/bin/ssh"));
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
    let keys = std::fs::read_dir(ferry.path("data/checkout-keys"))
        .unwrap()
        .count();
    assert_eq!(keys, 0);
    assert!(!ferry.path("runs").exists(), "no command ran: {d:#}");
    std::fs::remove_file(repos.root().join("hold-ssh")).unwrap();
}

#[tokio::test]
async fn doctor_checks_git_when_a_service_keeps_a_checkout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().display().to_string();
    let text = format!(
        "[server]\ndata_dir = \"{root}/data\"\n[apps.shop]\ntoken = \"b71e4c09d2a5f83e6c1b7a90\"\n\
         [apps.shop.services.site]\ngit = {{ repo = \"acme/site\" }}\ncommand = [\"./deploy.sh\"]\n\
         checkout = {{ url = \"https://git.example.com/acme/site.git\", path = \"{root}/site\" }}\n"
    );
    let file = crate::support::ConfigFile::new(&text);
    let config = file.path.to_str().expect("utf-8");
    let out = crate::support::Cli::new(&["doctor", "--config", config])
        .run()
        .await;
    assert!(out.stdout.contains("ok       git 2."), "{out:?}");
    assert!(out.stdout.contains(" for checkouts"), "{out:?}");

    let out = crate::support::Cli::new(&["doctor", "--config", config])
        .env("PATH", &format!("{root}/no-git-here"))
        .run()
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout
            .contains("PROBLEM  services with `checkout` need git: `git --version` does not run"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("fix: install git 2.31 or later"),
        "{out:?}"
    );
}

/// The services of [`over_real_ssh_only_the_pinned_host_and_the_deploy_key_get_a_checkout`]
/// besides `site` (deploy key, the server's own host key pinned): `wrongkey` offers a key the
/// server does not accept; `impostor` pins another host key for the server's address;
/// `unknown` pins keys of other hosts only.
const REAL_SSH: &str = r#"
[apps.shop.services.wrongkey]
git = { repo = "acme/site", branch = "main" }
command = ["{dir}/record.sh"]
timeout = "60s"
checkout = { url = "{url}", path = "{dir}/wrongkey", key = { file = "{root}/other_key" }, known_hosts = "{root}/known_hosts" }

[apps.shop.services.impostor]
git = { repo = "acme/site", branch = "main" }
command = ["{dir}/record.sh"]
timeout = "60s"
checkout = { url = "{url}", path = "{dir}/impostor", key = { file = "{root}/deploy_key" }, known_hosts = "{root}/other_hosts" }

[apps.shop.services.unknown]
git = { repo = "acme/site", branch = "main" }
command = ["{dir}/record.sh"]
timeout = "60s"
checkout = { url = "{url}", path = "{dir}/unknown", key = { file = "{root}/deploy_key" }, known_hosts = "{root}/unknown_hosts" }
"#;

/// A repository served by a real sshd that accepts `ROOT/deploy_key`, `ROOT/known_hosts`
/// pinning its host key (`ROOT/other_hosts`: another key for its address), and ferry with
/// `site` and [`REAL_SSH`]'s services checking it out.
struct RealSsh {
    repos: Repos,
    scratch: crate::git_server::Scratch,
    sshd: crate::git_server::Sshd,
    ferry: Ferry,
    url: String,
}

impl RealSsh {
    /// `None` when sshd is missing (and CI unset: see `support::unavailable`).
    async fn start() -> Option<RealSsh> {
        if !crate::git_server::Sshd::available() {
            return None;
        }
        let repos = Repos::new();
        let scratch = repos.create("site");
        let root = repos.root();
        let deploy_pub = crate::git_server::ssh_keygen(&root.join("deploy_key"));
        crate::git_server::ssh_keygen(&root.join("other_key"));
        let impostor_pub = crate::git_server::ssh_keygen(&root.join("impostor_host_key"));
        let sshd = crate::git_server::Sshd::start(&deploy_pub)?;
        std::fs::write(root.join("known_hosts"), sshd.known_hosts()).unwrap();
        let other = sshd.known_hosts_line(&impostor_pub);
        std::fs::write(root.join("other_hosts"), other).unwrap();
        // The server's own key, but for other addresses (another port, another name).
        let elsewhere = sshd
            .known_hosts()
            .replacen("[127.0.0.1]:", "[127.0.0.1]:1", 1);
        let unknown = format!("{elsewhere}git.example.com {}\n", sshd.host_key());
        std::fs::write(root.join("unknown_hosts"), unknown).unwrap();
        let url = sshd.url(&root.join("site.git"));
        let r = root.display().to_string();
        let services = REAL_SSH.replace("{url}", &url).replace("{root}", &r);
        let auth =
            format!(", key = {{ file = \"{r}/deploy_key\" }}, known_hosts = \"{r}/known_hosts\"");
        let ferry = start(&config(&url, &auth, &services), &[]).await;
        Some(RealSsh {
            repos,
            scratch,
            sshd,
            ferry,
            url,
        })
    }

    fn root(&self) -> String {
        self.repos.root().display().to_string()
    }

    /// Deployment `d` failed in its checkout with a reason holding `wanted`; nothing ran.
    async fn refused(&self, d: &Value, wanted: &[&str]) {
        let reason = d["reason"].as_str().unwrap_or_default();
        assert_eq!(d["state"], "failed", "{d:#}");
        assert!(
            reason.starts_with("checkout: `git fetch` exited with status 128: "),
            "{reason}"
        );
        for w in wanted {
            assert!(reason.contains(w), "{reason}\nwanted: {w}");
        }
        let steps = &self.ferry.deployment(d["id"].as_i64().unwrap()).await["steps"];
        assert_eq!(steps.as_array().unwrap().len(), 1, "nothing ran: {steps:#}");
        assert_eq!(steps[0]["outcome"], "failed", "{steps:#}");
        let ran = self.ferry.path("runs").join(format!("{}.txt", d["id"]));
        assert!(!ran.exists(), "the command ran");
        let service = d["service"].as_str().unwrap();
        assert!(!self.ferry.path(service).join("site.yml").exists());
    }

    /// Neither private key is in ferry's stderr, a log, the API or `run`'s environment; no key
    /// file is left; ssh wrote nothing to the pinned file.
    async fn keys_nowhere(&self, run: &Value) {
        let root = self.repos.root();
        let mut seen = vec![self.ferry.stderr_text()];
        for d in self.ferry.deployments("app=shop").await {
            let id = d["id"].as_i64().unwrap();
            seen.push(self.ferry.log(id).await);
            seen.push(self.ferry.deployment(id).await.to_string());
        }
        let env = self.ferry.path(&format!("runs/{}.env", run["id"]));
        seen.push(std::fs::read_to_string(env).unwrap());
        for key in ["deploy_key", "other_key"] {
            let key = std::fs::read_to_string(root.join(key)).unwrap();
            let body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
            for text in &seen {
                assert!(!text.contains("PRIVATE KEY"), "{text}");
                assert!(body.iter().all(|l| !text.contains(l)), "{text}");
            }
        }
        let keys = std::fs::read_dir(self.ferry.path("data/checkout-keys"))
            .unwrap()
            .count();
        assert_eq!(keys, 0, "a key file outlived its checkout");
        let pinned = std::fs::read_to_string(root.join("known_hosts")).unwrap();
        assert_eq!(pinned, self.sshd.known_hosts());
    }
}

#[tokio::test]
#[ignore = "needs openssh-server (sshd): cargo test -- --include-ignored"]
async fn over_real_ssh_only_the_pinned_host_and_the_deploy_key_get_a_checkout() {
    let Some(t) = RealSsh::start().await else {
        return;
    };
    let (ferry, root) = (&t.ferry, t.root());
    let c1 = t
        .scratch
        .commit_and_push("first", &[("site.yml", Some("v1")), ("old", Some("x"))]);
    let deployments = ferry.settle(ferry.signed_push(&push(&c1, 1)).await).await;
    let site = only(&deployments, "site");
    let log = ferry.log(site["id"].as_i64().unwrap()).await;
    let sshd_log = t.sshd.log();
    assert_eq!(site["state"], "succeeded", "{site:#}\n{log}\n{sshd_log}");
    let rec = record(ferry, &site["id"]);
    assert_eq!(
        (rec["head"].as_str(), rec["files"].as_str()),
        (c1.as_str(), "old site.yml")
    );
    assert!(log.contains(&format!("-- {}", t.url)), "{log}");

    // A key the server does not accept, and a server whose host key is not the pinned one.
    let wrong = only(&deployments, "wrongkey");
    t.refused(
        wrong,
        &[
            "Permission denied (publickey",
            "the server refused the ssh key",
        ],
    )
    .await;
    let impostor = only(&deployments, "impostor");
    let pinned = format!("checkout.known_hosts ({root}/other_hosts)");
    t.refused(
        impostor,
        &[
            ": Host key verification failed",
            &pinned,
            "update that file",
        ],
    )
    .await;
    let log = ferry.log(impostor["id"].as_i64().unwrap()).await;
    assert!(
        log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{log}"
    );
    let unknown = only(&deployments, "unknown");
    let pinned = format!("checkout.known_hosts ({root}/unknown_hosts)");
    t.refused(unknown, &[": Host key verification failed", &pinned])
        .await;
    let log = ferry.log(unknown["id"].as_i64().unwrap()).await;
    assert!(log.contains("host key is known for [127.0.0.1]:"), "{log}");
    // Only `site` got in: the wrong key was refused, the impostor never authenticated.
    let sshd_log = t.sshd.log();
    let accepted = sshd_log.matches("Accepted publickey for root").count();
    assert_eq!(accepted, 1, "{sshd_log}");

    // The next commit is fetched into the same work tree; the deleted file goes.
    let c2 = t.scratch.commit_and_push("second", &[("old", None)]);
    let d = deploy_service(ferry, &push(&c2, 2), "site").await;
    let rec = record(ferry, &d["id"]);
    assert_eq!(
        (rec["head"].as_str(), rec["files"].as_str()),
        (c2.as_str(), "site.yml")
    );
    t.keys_nowhere(&d).await;
}

/// Deploys `payload` and returns the succeeded deployment of `service`.
async fn deploy_service(ferry: &Ferry, payload: &Value, service: &str) -> Value {
    let id = ferry.signed_push(payload).await;
    let deployments = ferry.settle(id).await;
    let d = only(&deployments, service).clone();
    let log = ferry.log(d["id"].as_i64().unwrap()).await;
    assert_eq!(d["state"], "succeeded", "{d:#}\n{log}");
    d
}

#[tokio::test]
async fn check_warns_when_an_ssh_checkout_trusts_host_keys_on_first_use() {
    let text = "[server]\ndata_dir = \"{dir}/data\"\n[apps.shop]\ntoken = \"b71e4c09d2a5f83e6c1b7a90\"\n\
         [apps.shop.services.site]\ngit = { repo = \"acme/site\" }\ncommand = [\"./deploy.sh\"]\n\
         checkout = { url = \"git@git.example.com:acme/site.git\", path = \"{dir}/site\" }\n\
         [apps.shop.services.pinned]\ngit = { repo = \"acme/site\" }\ncommand = [\"./deploy.sh\"]\n\
         checkout = { url = \"ssh://git@git.example.com/acme/site.git\", path = \"{dir}/pinned\", known_hosts = \"known_hosts\" }\n\
         [apps.shop.services.https]\ngit = { repo = \"acme/site\" }\ncommand = [\"./deploy.sh\"]\n\
         checkout = { url = \"https://git.example.com/acme/site.git\", path = \"{dir}/https\" }\n";
    let file = crate::support::ConfigFile::new(text);
    std::fs::write(
        file.dir.path().join("known_hosts"),
        "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
    )
    .unwrap();
    let out = file.check().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("host key"))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: apps.shop.services.site.checkout fetches over ssh trusting the server's host key on first use (then as the ferry user's ~/.ssh/known_hosts holds it): pin it with checkout.known_hosts, e.g. from `ssh-keyscan` after checking its fingerprint"
        ],
        "{out:?}"
    );

    // A pinned file that is gone is an error with its line.
    std::fs::remove_file(file.dir.path().join("known_hosts")).unwrap();
    let out = file.check().await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let at = format!(
        "{}:12: apps.shop.services.pinned.checkout.known_hosts: cannot read {}/known_hosts",
        file.path.display(),
        file.dir.path().display()
    );
    assert!(out.stderr.contains(&at), "{out:?}\nwanted: {at}");
}
