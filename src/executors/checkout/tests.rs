//! Unit tests of the checkout: the choice of target, the environment git gets, and real git
//! runs against a local repository (`file://`); the integration tests (`tests/it/checkout.rs`)
//! cover git servers, credentials and what users see.

use std::time::Duration;

use super::*;
use crate::secret::Secret;

fn deployment() -> Deployment {
    Deployment {
        id: 7,
        app: "shop".into(),
        service: "web".into(),
        delivery_id: 3,
        state: crate::store::DeploymentState::Running,
        reason: None,
        source: "github".into(),
        event: "push".into(),
        git_repo: Some("acme/shop".into()),
        git_branch: Some("main".into()),
        git_ref: Some("refs/heads/main".into()),
        git_commit: None,
        event_time: None,
        profile: None,
        image: None,
        image_tag: None,
        image_digest: None,
        attempt: 1,
        retry_of: None,
        exit_code: None,
        created_at: 0,
        started_at: None,
        finished_at: None,
        node: None,
    }
}

fn git_spec(branch: Option<&str>, tags: bool) -> GitSpec {
    GitSpec {
        repo: "acme/shop".into(),
        branch: branch.map(str::to_string),
        tags: tags.then(|| crate::config::TagPattern {
            pattern: "v*".into(),
            matcher: globset::Glob::new("v*").unwrap().compile_matcher(),
        }),
    }
}

#[test]
fn the_target_is_the_commit_else_the_ref_named_else_the_last_deployed_else_the_tip() {
    let g = git_spec(Some("main"), false);
    let c = "a".repeat(40);
    let mut d = deployment();
    d.git_commit = Some(c.clone());
    assert_eq!(
        Target::of(&d, Some(&g), None).unwrap(),
        Target::Commit(c.clone())
    );

    // A plain redeploy: `git_ref` is the branch followed.
    let mut d = deployment();
    d.git_ref = Some("main".into());
    let last = Some((5, "b".repeat(40)));
    assert_eq!(
        Target::of(&d, Some(&g), last.clone()).unwrap(),
        Target::LastDeployed {
            commit: "b".repeat(40),
            deployment: 5
        }
    );
    assert_eq!(
        Target::of(&d, Some(&g), None).unwrap(),
        Target::Tip("refs/heads/main".into())
    );
    // `?git_ref=` naming a tag, or a commit (upper case is lowered).
    d.git_ref = Some("v1.2".into());
    assert_eq!(
        Target::of(&d, Some(&g), last.clone()).unwrap(),
        Target::Tip("v1.2".into())
    );
    d.git_ref = Some("C".repeat(40));
    assert_eq!(
        Target::of(&d, Some(&g), last).unwrap(),
        Target::Commit("c".repeat(40))
    );
    // Tags only, nothing deployed, no commit: nothing to check out.
    d.git_ref = None;
    let e = Target::of(&d, Some(&git_spec(None, true)), None).unwrap_err();
    assert!(e.to_string().starts_with("no commit to check out"), "{e}");
}

#[test]
fn refspecs_are_the_branch_and_tags_when_followed() {
    let d = deployment();
    assert_eq!(
        refspecs(Some(&git_spec(Some("main"), false)), &d),
        ["+refs/heads/main:refs/remotes/origin/main"]
    );
    assert_eq!(
        refspecs(Some(&git_spec(None, true)), &d),
        ["+refs/tags/*:refs/tags/*"]
    );
    let mut tagged = deployment();
    tagged.git_ref = Some("refs/tags/v1".into());
    assert_eq!(
        refspecs(Some(&git_spec(Some("main"), false)), &tagged).len(),
        2
    );
}

#[test]
fn a_token_reaches_git_only_as_a_header_for_its_own_host() {
    let spec = CheckoutSpec {
        url: "https://git.example.com:8443/acme/shop.git".into(),
        path: "/srv/shop".into(),
        auth: CheckoutAuth::Token {
            username: "bot".into(),
            token: Secret::new("s3cr3t-token"),
        },
        known_hosts: None,
        submodules: false,
    };
    let (env, secrets) = git_env(&spec, None);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("GIT_CONFIG_COUNT"), Some("1"));
    assert_eq!(
        get("GIT_CONFIG_KEY_0"),
        Some("http.https://git.example.com:8443/.extraHeader")
    );
    // base64("bot:s3cr3t-token")
    assert_eq!(
        get("GIT_CONFIG_VALUE_0"),
        Some("Authorization: Basic Ym90OnMzY3IzdC10b2tlbg==")
    );
    assert_eq!(get("GIT_TERMINAL_PROMPT"), Some("0"));
    assert_eq!(get("GIT_ASKPASS"), Some(""));
    assert_eq!(get("GIT_ALLOW_PROTOCOL"), Some("https:http:ssh:git"));
    assert_eq!(get("GIT_CEILING_DIRECTORIES"), Some("/srv"));
    assert_eq!(secrets, ["s3cr3t-token", "Ym90OnMzY3IzdC10b2tlbg=="]);
    assert_eq!(
        redact(
            "fatal: s3cr3t-token and Ym90OnMzY3IzdC10b2tlbg== here",
            &secrets
        ),
        "fatal: [redacted] and [redacted] here"
    );

    let spec = CheckoutSpec {
        url: "git@github.com:acme/shop.git".into(),
        auth: CheckoutAuth::Key(Secret::new("k")),
        ..spec
    };
    let (env, secrets) = git_env(&spec, Some(Path::new("/data/checkout-keys/it's.key")));
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(
        get("GIT_SSH_COMMAND"),
        Some(
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o IdentitiesOnly=yes -i '/data/checkout-keys/it'\\''s.key'"
        )
    );
    assert_eq!(get("GIT_CONFIG_COUNT"), Some("0"));
    assert!(secrets.is_empty());

    // Pinned host keys: that file alone, strictly, never written to.
    let spec = CheckoutSpec {
        known_hosts: Some("/etc/ferry/known_hosts".into()),
        ..spec
    };
    let (env, _) = git_env(&spec, Some(Path::new("/data/checkout-keys/7.key")));
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(
        get("GIT_SSH_COMMAND"),
        Some(
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o 'UserKnownHostsFile=/etc/ferry/known_hosts' -o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no -o IdentitiesOnly=yes -i '/data/checkout-keys/7.key'"
        )
    );
}

#[test]
fn failures_about_credentials_say_what_to_set() {
    let no_user = "fatal: could not read Username for 'http://h': terminal prompts disabled";
    assert!(hint(no_user, true, None).contains("set checkout.token"));
    assert!(hint(no_user, false, None).contains("refused checkout.token"));
    assert!(hint("git@h: Permission denied (publickey).", true, None).contains("ssh key"));
    assert_eq!(hint("fatal: couldn't find remote ref main", true, None), "");
}

#[test]
fn a_host_key_failure_says_so_and_which_file_to_update() {
    let changed = "@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
                   Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.\n\
                   Host key verification failed.\n\
                   fatal: Could not read from remote repository.\n\n\
                   Please make sure you have the correct access rights\n";
    assert_eq!(cause(changed), "Host key verification failed.");
    let pinned = hint(changed, true, Some(Path::new("/etc/ferry/known_hosts")));
    assert!(
        pinned.contains("not one checkout.known_hosts (/etc/ferry/known_hosts) holds")
            && pinned.contains("update that file"),
        "{pinned}"
    );
    assert!(hint(changed, true, None).contains("~/.ssh/known_hosts"));
    let refused = "root@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote repository.\n";
    assert_eq!(
        cause(refused),
        "root@127.0.0.1: Permission denied (publickey)."
    );
    assert_eq!(
        cause("x\nfatal: couldn't find remote ref main\n"),
        "fatal: couldn't find remote ref main"
    );
    assert_eq!(cause(""), "");
}

/// A source repository with commits made by [`Repo::commit`], and a place for checkouts.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let repo = Repo {
            dir: tempfile::tempdir().unwrap(),
        };
        repo.git(&["init", "-q", "-b", "main", "src"], "");
        repo
    }

    fn git(&self, args: &[&str], sub: &str) -> String {
        let out = std::process::Command::new("git")
            .current_dir(self.dir.path().join(sub))
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(["-c", "protocol.file.allow=always"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Writes `files` (a `None` content removes the file) and commits; returns the commit.
    fn commit(&self, files: &[(&str, Option<&str>)]) -> String {
        let src = self.dir.path().join("src");
        for (name, content) in files {
            match content {
                Some(c) => std::fs::write(src.join(name), c).unwrap(),
                None => std::fs::remove_file(src.join(name)).unwrap(),
            }
        }
        self.git(&["add", "-A"], "src");
        self.git(&["commit", "-q", "-m", "change"], "src");
        self.git(&["rev-parse", "HEAD"], "src")
    }

    fn url(&self) -> String {
        format!("file://{}/src", self.dir.path().display())
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("checkout")
    }

    fn job(&self, target: Target) -> CheckoutJob {
        CheckoutJob {
            spec: CheckoutSpec {
                url: self.url(),
                path: self.path(),
                auth: CheckoutAuth::None,
                known_hosts: None,
                submodules: false,
            },
            target,
            refspecs: vec!["+refs/heads/main:refs/remotes/origin/main".into()],
            command: CommandSpec {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo \"$FERRY_GIT_COMMIT $(ls -A | grep -v '^.git$' | tr '\\n' ' ')\" > ../ran"
                        .into(),
                ],
                workdir: self.path(),
                env: Vec::new(),
                env_remove: Vec::new(),
                timeout: Duration::from_secs(60),
                pid_file: None,
            },
            key_file: self.dir.path().join("keys/k"),
            record_commit: false,
        }
    }

    /// Runs a checkout of `target`; returns how it ended and the log.
    async fn run(&self, target: Target) -> (Result<Checked, CheckoutError>, String) {
        self.run_job(self.job(target)).await
    }

    async fn run_job(&self, job: CheckoutJob) -> (Result<Checked, CheckoutError>, String) {
        let log_path = self.dir.path().join("log");
        let _ = std::fs::remove_file(&log_path);
        let log = LogWriter::create(&log_path).await.unwrap();
        let ran = run(&job, &log, &Stop::default(), &Steps::default()).await;
        (ran, std::fs::read_to_string(&log_path).unwrap())
    }

    fn ran(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ran"))
            .unwrap()
            .trim()
            .to_string()
    }
}

#[tokio::test]
async fn the_checkout_holds_exactly_the_commit_and_nothing_else() {
    let repo = Repo::new();
    let c1 = repo.commit(&[("a", Some("1")), ("b", Some("1"))]);
    let c2 = repo.commit(&[("b", None), ("c", Some("2"))]);

    let (ran, log) = repo.run(Target::Commit(c1.clone())).await;
    let checked = ran.unwrap();
    assert_eq!(checked.outcome, Outcome::Succeeded, "{log}");
    assert_eq!(checked.commit.as_deref(), Some(c1.as_str()));
    assert_eq!(repo.ran(), format!("{c1} a b"));
    assert!(log.contains("ferry  | git fetch --no-tags"), "{log}");
    assert!(log.contains(&format!("checked out {}", &c1[..12])), "{log}");

    // Leftovers: an untracked file, an ignored-style build dir, a changed tracked file.
    std::fs::write(repo.path().join("untracked"), "x").unwrap();
    std::fs::create_dir(repo.path().join("build")).unwrap();
    std::fs::write(repo.path().join("build/out"), "x").unwrap();
    std::fs::write(repo.path().join("a"), "changed").unwrap();
    let (ran, log) = repo.run(Target::Commit(c2.clone())).await;
    assert_eq!(ran.unwrap().outcome, Outcome::Succeeded, "{log}");
    assert_eq!(repo.ran(), format!("{c2} a c"));
    assert_eq!(std::fs::read_to_string(repo.path().join("a")).unwrap(), "1");
    assert!(log.contains("Removing untracked"), "{log}");

    // Back to the older commit (a rollback): already fetched, nothing fetched.
    let (ran, log) = repo.run(Target::Commit(c1.clone())).await;
    assert_eq!(ran.unwrap().outcome, Outcome::Succeeded, "{log}");
    assert_eq!(repo.ran(), format!("{c1} a b"));
    assert!(!log.contains("git fetch"), "{log}");
}

#[tokio::test]
async fn without_a_commit_the_tip_or_the_last_deployed_one_is_checked_out() {
    let repo = Repo::new();
    let c1 = repo.commit(&[("a", Some("1"))]);
    let c2 = repo.commit(&[("a", Some("2"))]);
    let (ran, log) = repo.run(Target::Tip("refs/heads/main".into())).await;
    let checked = ran.unwrap();
    assert_eq!(checked.commit.as_deref(), Some(c2.as_str()), "{log}");
    assert!(
        log.contains("checking out the tip of refs/heads/main"),
        "{log}"
    );
    // FERRY_GIT_COMMIT is what was checked out.
    assert_eq!(repo.ran(), format!("{c2} a"));

    let (ran, log) = repo
        .run(Target::LastDeployed {
            commit: c1.clone(),
            deployment: 4,
        })
        .await;
    assert_eq!(ran.unwrap().commit.as_deref(), Some(c1.as_str()), "{log}");
    assert!(
        log.contains("what deployment 4 (the service's last successful one) deployed"),
        "{log}"
    );
}

#[tokio::test]
async fn a_commit_off_the_branch_is_fetched_by_id_and_a_missing_one_is_a_clear_error() {
    let repo = Repo::new();
    repo.commit(&[("a", Some("1"))]);
    repo.git(&["checkout", "-q", "-b", "side"], "src");
    let side = repo.commit(&[("s", Some("1"))]);
    repo.git(&["checkout", "-q", "main"], "src");
    // Protocol v2 serves any commit the server has; older servers only what refs reach.
    repo.git(&["config", "uploadpack.allowAnySHA1InWant", "true"], "src");
    let (ran, log) = repo.run(Target::Commit(side.clone())).await;
    assert_eq!(ran.unwrap().commit.as_deref(), Some(side.as_str()), "{log}");
    assert!(
        log.contains("is not on the refs fetched: fetching it by id"),
        "{log}"
    );

    let missing = "0123456789abcdef0123456789abcdef01234567";
    let (ran, log) = repo.run(Target::Commit(missing.into())).await;
    let e = ran.unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "checkout: commit {missing} is not in {}",
            repo.url()
        )),
        "{e}\n{log}"
    );
}

#[tokio::test]
async fn a_directory_that_is_not_a_work_tree_is_never_cleaned() {
    let repo = Repo::new();
    let c1 = repo.commit(&[("a", Some("1"))]);
    std::fs::create_dir(repo.path()).unwrap();
    std::fs::write(repo.path().join("precious"), "x").unwrap();
    let (ran, _) = repo.run(Target::Commit(c1)).await;
    let e = ran.unwrap_err();
    assert!(matches!(e, CheckoutError::NotAWorkTree { .. }), "{e:?}");
    assert!(repo.path().join("precious").exists());
}

#[tokio::test]
async fn a_stopped_run_checks_nothing_out() {
    let repo = Repo::new();
    let c1 = repo.commit(&[("a", Some("1"))]);
    let log = LogWriter::create(&repo.dir.path().join("log"))
        .await
        .unwrap();
    let stop = Stop::default();
    stop.cancel();
    let checked = run(
        &repo.job(Target::Commit(c1)),
        &log,
        &stop,
        &Steps::default(),
    )
    .await
    .unwrap();
    assert_eq!(checked.outcome, Outcome::Cancelled);
    assert_eq!(checked.commit, None);
    assert!(!repo.dir.path().join("ran").exists());
}

#[tokio::test]
async fn submodules_are_checked_out_and_cleaned_when_asked_for() {
    let repo = Repo::new();
    repo.git(&["init", "-q", "-b", "main", "lib"], "");
    repo.git(&["commit", "-q", "--allow-empty", "-m", "empty"], "lib");
    std::fs::write(repo.dir.path().join("lib/x"), "1").unwrap();
    repo.git(&["add", "x"], "lib");
    repo.git(&["commit", "-q", "-m", "x"], "lib");
    let lib = format!("file://{}/lib", repo.dir.path().display());
    repo.git(&["submodule", "add", "-q", &lib, "vendor/lib"], "src");
    let c1 = repo.commit(&[("a", Some("1"))]);

    let mut job = repo.job(Target::Commit(c1.clone()));
    job.spec.submodules = true;
    let (ran, log) = repo.run_job(job.clone()).await;
    assert_eq!(ran.unwrap().outcome, Outcome::Succeeded, "{log}");
    assert_eq!(
        std::fs::read_to_string(repo.path().join("vendor/lib/x")).unwrap(),
        "1"
    );
    std::fs::write(repo.path().join("vendor/lib/stray"), "x").unwrap();
    std::fs::write(repo.path().join("vendor/lib/x"), "changed").unwrap();
    let (ran, log) = repo.run_job(job).await;
    assert_eq!(ran.unwrap().outcome, Outcome::Succeeded, "{log}");
    assert!(!repo.path().join("vendor/lib/stray").exists(), "{log}");
    assert_eq!(
        std::fs::read_to_string(repo.path().join("vendor/lib/x")).unwrap(),
        "1"
    );

    // Without `submodules`, the submodule's directory stays empty.
    let mut plain = repo.job(Target::Commit(c1));
    plain.spec.path = repo.dir.path().join("plain");
    plain.command.workdir = plain.spec.path.clone();
    let (ran, log) = repo.run_job(plain).await;
    assert_eq!(ran.unwrap().outcome, Outcome::Succeeded, "{log}");
    assert!(repo.dir.path().join("plain/vendor/lib").is_dir(), "{log}");
    assert!(
        !repo.dir.path().join("plain/vendor/lib/x").exists(),
        "{log}"
    );
}

#[tokio::test]
async fn an_annotated_tag_is_checked_out_as_its_commit() {
    let repo = Repo::new();
    let c1 = repo.commit(&[("a", Some("1"))]);
    repo.git(&["tag", "-a", "-m", "release", "v1"], "src");
    let tag = repo.git(&["rev-parse", "v1"], "src");
    assert_ne!(tag, c1);
    let mut job = repo.job(Target::Commit(tag.clone()));
    job.refspecs.push("+refs/tags/*:refs/tags/*".into());
    let (ran, log) = repo.run_job(job).await;
    assert_eq!(ran.unwrap().commit.as_deref(), Some(c1.as_str()), "{log}");
    assert!(
        log.contains(&format!("{tag} is a tag: checking out its commit {c1}")),
        "{log}"
    );
}
