//! The Docker test environment: a real Docker Engine, a throwaway CNCF registry per test
//! (`docker-registry serve`), and test images built locally from `tests/images/app.c`.
//!
//! ```ignore
//! require_docker();                                 // in a test marked #[ignore = "needs Docker …"]
//! let mut docker = DockerScope::new("my-test");      // removes what it tracks when dropped
//! let registry = Registry::start(Some(&hook_url), Some("Bearer token"));
//! let repo = docker.repo(&registry.repo("acme/api")); // 127.0.0.1:PORT/acme/api
//! build_image(&format!("{repo}:1.0.0"), "1.0.0", false);
//! let digest = push(&format!("{repo}:1.0.0"));        // the registry now notifies `hook_url`
//! ```
//!
//! The engine cannot pull from Docker Hub, so every image is built here: `FROM scratch` with
//! the static `/app` (see `tests/images/app.c`), made with `docker import` (one step, no
//! intermediate containers, unlike the legacy builder). Everything this module creates carries
//! the label [`TEST_LABEL`] (containers inherit it from the image) and is removed by
//! [`DockerScope`], [`remove_containers`] and [`remove_images`].
//!
//! Docker commands are blocking `std::process` calls; the endpoint a registry notifies in
//! these tests (a [`FakeHttp`]) serves on its own threads, so a test blocked in [`push`] never
//! delays the registry's notifications.

// Not every test module uses every helper.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::fake_http::{Call, FakeHttp};
use crate::support::{WAIT, eventually, free_port, unique};

/// The label of every test image, and so of every container made from one.
pub const TEST_LABEL: &str = "ferry.test=1";
/// The port the test app listens on inside its container (`ENV PORT`, `EXPOSE`).
pub const APP_PORT: u16 = 8080;
/// The registry binary (Debian's package `docker-registry`, distribution 2.8).
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

// ---- availability ----

/// Whether Docker can be used: `docker info` works and [`REGISTRY_BIN`] exists. Tests that call
/// this are marked `#[ignore = "needs Docker …"]` and return at once when it is false; with
/// `CI` set it fails the test instead (see [`crate::support::unavailable`]).
pub fn require_docker() -> bool {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    let available = AVAILABLE.get_or_init(|| {
        if !Path::new(REGISTRY_BIN).exists() {
            return Err(format!(
                "{REGISTRY_BIN} not found (apt-get install docker-registry)"
            ));
        }
        let out = run_with_timeout(
            Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]),
            Duration::from_secs(30),
        )
        .map_err(|e| format!("`docker info` failed: {e}"))?;
        if out.trim().is_empty() {
            return Err("`docker info` reports no server version".into());
        }
        Ok(())
    });
    match available {
        Ok(()) => true,
        Err(reason) => {
            crate::support::unavailable(&format!("Docker: {reason}"));
            false
        }
    }
}

/// Runs `cmd` (stdin closed) and returns its stdout, or why it failed; kills it after
/// `timeout`.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!("{status}: {}", stderr.trim()))
    }
}

// ---- the docker CLI ----

/// `docker ARGS`: its trimmed stdout, or `Err` with the exit status and stderr.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {} ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// `docker ARGS`: its trimmed stdout; fails the test if docker fails.
pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("{e}"))
}

// ---- the test app and its images ----

/// The static test app (`tests/images/app.c`), compiled once per source version into the
/// target dir (`CARGO_TARGET_TMPDIR/dockerenv/app-HASH`). Safe to call from concurrent tests
/// and test processes: each compiles into a private name and renames it into place.
pub fn app_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            const FLAGS: [&str; 5] = ["-static", "-O2", "-s", "-Wall", "-Wextra"];
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/app.c");
            let source = std::fs::read(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
            let mut hash = Sha256::new();
            hash.update(&source);
            hash.update(FLAGS.join(" "));
            let hash = hex::encode(hash.finalize());
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dockerenv");
            std::fs::create_dir_all(&dir).expect("create dockerenv dir");
            let binary = dir.join(format!("app-{}", &hash[..16]));
            if binary.exists() {
                return binary;
            }
            let tmp = dir.join(format!("{}.tmp", unique(&format!("app-{}", &hash[..16]))));
            let out = Command::new("gcc")
                .args(FLAGS)
                .arg("-o")
                .arg(&tmp)
                .arg(&src)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run gcc: {e}"));
            if !out.status.success() {
                let _ = std::fs::remove_file(&tmp);
                panic!(
                    "gcc {} failed ({}):\n{}",
                    src.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::fs::rename(&tmp, &binary).expect("move the app binary into place");
            binary
        })
        .clone()
}

/// A tar archive holding one file `name` (mode 0755, owner root, mtime 0) with `data`, so
/// every image gets the same layer (as real builds of unchanged code would).
fn tar_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, value: &[u8]| {
        h[at..at + value.len()].copy_from_slice(value);
    };
    put(&mut header, 0, name.as_bytes()); // name
    put(&mut header, 100, b"0000755\0"); // mode
    put(&mut header, 108, b"0000000\0"); // uid
    put(&mut header, 116, b"0000000\0"); // gid
    put(
        &mut header,
        124,
        format!("{:011o}\0", data.len()).as_bytes(),
    ); // size
    put(&mut header, 136, b"00000000000\0"); // mtime
    put(&mut header, 148, b"        "); // checksum, counted as spaces
    put(&mut header, 156, b"0"); // regular file
    put(&mut header, 257, b"ustar\0"); // magic
    put(&mut header, 263, b"00"); // version
    put(&mut header, 265, b"root"); // uname
    put(&mut header, 297, b"root"); // gname
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    put(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(data);
    tar.resize(tar.len().next_multiple_of(512) + 1024, 0);
    tar
}

/// Builds the test image `reference` (e.g. `127.0.0.1:5123/acme/api:1.1.0`): `FROM scratch`
/// with `/app`, `ENV VERSION=version PORT=8080 GREETING=from-image` (plus `BROKEN=1` when
/// `broken`, which fails its healthcheck), `HEALTHCHECK --interval=1s --timeout=2s
/// --retries=2 CMD ["/app","check"]`, `EXPOSE 8080`, `ENTRYPOINT ["/app"]`, `CMD ["serve"]`,
/// `LABEL ferry.test=1`. A healthy container is `healthy` after about 1 s, a broken one
/// `unhealthy` after about 2 s.
pub fn build_image(reference: &str, version: &str, broken: bool) {
    let app = std::fs::read(app_binary()).expect("read the app binary");
    let context = tempfile::tempdir().expect("temp dir");
    let rootfs = context.path().join("rootfs.tar");
    std::fs::write(&rootfs, tar_one_file("app", &app)).expect("write rootfs.tar");
    let mut changes = vec![
        format!("ENV VERSION={version}"),
        format!("ENV PORT={APP_PORT}"),
        "ENV GREETING=from-image".to_string(),
    ];
    if broken {
        changes.push("ENV BROKEN=1".to_string());
    }
    changes.extend([
        // No --start-period: the 20.10 parser rejects 0s ("cannot be less than 1ms"); the
        // default is 0.
        r#"HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD ["/app","check"]"#.to_string(),
        format!("EXPOSE {APP_PORT}"),
        format!("LABEL {TEST_LABEL}"),
        r#"ENTRYPOINT ["/app"]"#.to_string(),
        r#"CMD ["serve"]"#.to_string(),
    ]);
    let mut args = vec!["import".to_string()];
    for change in changes {
        args.push("--change".into());
        args.push(change);
    }
    args.push(rootfs.to_str().expect("utf-8 temp dir").into());
    args.push(reference.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args);
}

/// `docker push reference`; returns the manifest digest (`sha256:…`) the registry reported.
pub fn push(reference: &str) -> String {
    let out = docker(&["push", reference]);
    // The last line is `TAG: digest: sha256:HEX size: N`.
    out.lines()
        .find_map(|line| {
            let rest = &line[line.find("digest: ")? + "digest: ".len()..];
            let digest = rest.split_whitespace().next()?;
            digest.starts_with("sha256:").then(|| digest.to_string())
        })
        .unwrap_or_else(|| panic!("no digest in the output of docker push {reference}:\n{out}"))
}

// ---- containers ----

/// The container's health status (`starting`, `healthy`, `unhealthy`), `None` without a
/// healthcheck or if it does not exist.
pub fn health(container: &str) -> Option<String> {
    try_docker(&[
        "inspect",
        "--format",
        "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
        container,
    ])
    .ok()
    .filter(|s| !s.is_empty())
}

/// Waits (up to [`WAIT`]) until the container's health status is `status`.
pub async fn wait_health(container: &str, status: &str) {
    eventually(
        &format!("container {container} to be {status}"),
        WAIT,
        async || match health(container) {
            Some(s) if s == status => Ok(()),
            other => Err(format!("{other:?}; {}", state(container))),
        },
    )
    .await;
}

/// `docker inspect` of a container, image, … as JSON (`None` if it does not exist).
pub fn inspect(object: &str) -> Option<Value> {
    let out = try_docker(&["inspect", object]).ok()?;
    let mut all: Vec<Value> = serde_json::from_str(&out).expect("docker inspect prints JSON");
    (!all.is_empty()).then(|| all.remove(0))
}

/// A one-line summary of a container's state (for failure messages).
pub fn state(container: &str) -> String {
    try_docker(&[
        "inspect",
        "--format",
        "status={{.State.Status}} exit={{.State.ExitCode}} image={{.Config.Image}}",
        container,
    ])
    .unwrap_or_else(|e| e)
}

/// `IP:PORT` on 127.0.0.1 where the container's `port` is published (`-p 127.0.0.1::PORT`).
pub fn published(container: &str, port: u16) -> String {
    let out = docker(&["port", container, &format!("{port}/tcp")]);
    out.lines()
        .find(|l| l.starts_with("127.0.0.1:") || l.starts_with("0.0.0.0:"))
        .map(|l| l.replace("0.0.0.0:", "127.0.0.1:"))
        .unwrap_or_else(|| panic!("{container}: port {port} is not published on IPv4: {out:?}"))
}

/// The container's IP address on its (first) network; reachable from the host here.
pub fn container_ip(container: &str) -> String {
    docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        container,
    ])
    .split_whitespace()
    .next()
    .unwrap_or_else(|| panic!("{container} has no IP address"))
    .to_string()
}

/// The body of `GET http://ADDR/` (`ADDR` like `127.0.0.1:32768`), or why there is none.
pub async fn http_get(addr: &str) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let resp = client
        .get(format!("http://{addr}/"))
        .send()
        .await
        .map_err(|e| format!("GET http://{addr}/: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("GET http://{addr}/: {status}: {text}"))
    }
}

/// The value of `key` in the test app's `key=value` answer.
pub fn answer_value<'a>(answer: &'a str, key: &str) -> Option<&'a str> {
    answer
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

// ---- cleanup ----

/// Removes (with their anonymous volumes) the containers labelled [`TEST_LABEL`] whose name
/// starts with `name_prefix`.
pub fn remove_containers(name_prefix: &str) {
    let names = try_docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={TEST_LABEL}"),
        "--format",
        "{{.Names}}",
    ])
    .unwrap_or_default();
    remove_named(
        names
            .lines()
            .map(|n| n.trim_start_matches('/'))
            .filter(|n| !n.is_empty() && n.starts_with(name_prefix)),
    );
}

/// Removes every container that has `label` (`KEY` or `KEY=VALUE`, as for
/// `docker ps --filter label=…`), e.g. one ferry puts on the containers it runs.
pub fn remove_containers_with_label(label: &str) {
    let names = try_docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={label}"),
        "--format",
        "{{.Names}}",
    ])
    .unwrap_or_default();
    remove_named(names.lines().filter(|n| !n.is_empty()));
}

fn remove_named<'a>(names: impl Iterator<Item = &'a str>) {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        return;
    }
    let mut args = vec!["rm", "-f", "-v"];
    args.extend(&names);
    if let Err(e) = try_docker(&args) {
        eprintln!("dockerenv cleanup: {e}");
    }
}

/// Removes every local image reference of `repository` (e.g. `127.0.0.1:5123/acme/api`):
/// its tags and, for images pulled by digest, its `repository@sha256:…` references.
pub fn remove_images(repository: &str) {
    let rows = try_docker(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}} {{.Tag}} {{.Digest}}",
        repository,
    ])
    .unwrap_or_default();
    let mut refs = Vec::new();
    for row in rows.lines() {
        let mut parts = row.split_whitespace();
        let (Some(repo), Some(tag), Some(digest)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if repo != repository {
            continue;
        }
        let reference = if tag != "<none>" {
            format!("{repo}:{tag}")
        } else if digest != "<none>" {
            format!("{repo}@{digest}")
        } else {
            continue;
        };
        if !refs.contains(&reference) {
            refs.push(reference);
        }
    }
    if refs.is_empty() {
        return;
    }
    let mut args = vec!["rmi", "-f"];
    args.extend(refs.iter().map(String::as_str));
    if let Err(e) = try_docker(&args) {
        eprintln!("dockerenv cleanup: {e}");
    }
}

/// What one test leaves in Docker; removed when dropped (also when the test fails):
/// containers named with [`DockerScope::name`] (or any name starting with
/// [`DockerScope::prefix`]), containers with a tracked label, and images of tracked
/// repositories.
pub struct DockerScope {
    prefix: String,
    labels: Vec<String>,
    repos: Vec<String>,
}

impl DockerScope {
    /// A scope whose prefix (`TEST-PID-N`) no other test uses.
    pub fn new(test: &str) -> DockerScope {
        DockerScope {
            prefix: unique(test),
            labels: Vec::new(),
            repos: Vec::new(),
        }
    }

    /// The prefix of this scope's container names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A container name in this scope: `PREFIX-what`.
    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    /// Also remove containers with `label` (`KEY` or `KEY=VALUE`).
    pub fn label(&mut self, label: &str) {
        self.labels.push(label.to_string());
    }

    /// Also remove the images of `repository`; returns it.
    pub fn repo(&mut self, repository: &str) -> String {
        self.repos.push(repository.to_string());
        repository.to_string()
    }

    /// Removes everything now (dropping does it again, harmlessly).
    pub fn clean(&self) {
        remove_containers(&self.prefix);
        for label in &self.labels {
            remove_containers_with_label(label);
        }
        for repo in &self.repos {
            remove_images(repo);
        }
    }
}

impl Drop for DockerScope {
    fn drop(&mut self) {
        self.clean();
    }
}

// ---- the registry ----

/// A CNCF registry (`docker-registry serve`, distribution 2.8) on `127.0.0.1:port`, storing
/// in its own temp dir and sending notifications to one endpoint. Killed and deleted when
/// dropped.
pub struct Registry {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    /// A registry notifying `notify_url` (if any) of every push and pull, with the static
    /// header `Authorization: notify_auth` (if any). Nothing is ignored, so a push of a new
    /// image sends one notification per blob push and pull (media type
    /// `application/octet-stream`) and one for the manifest (with `target.tag`).
    pub fn start(notify_url: Option<&str>, notify_auth: Option<&str>) -> Registry {
        Registry::start_ignoring(notify_url, notify_auth, &[], &[])
    }

    /// [`Registry::start`] whose endpoint ignores events of the given target media types
    /// (`application/octet-stream` drops the blob events) and actions (`pull`).
    pub fn start_ignoring(
        notify_url: Option<&str>,
        notify_auth: Option<&str>,
        media_types: &[&str],
        actions: &[&str],
    ) -> Registry {
        Registry::launch(notify_url, notify_auth, media_types, actions, None)
    }

    /// A registry that requires a login: `htpasswd` is one line `USER:BCRYPT-HASH`.
    pub fn start_with_users(htpasswd: &str) -> Registry {
        Registry::launch(None, None, &[], &[], Some(htpasswd))
    }

    fn launch(
        notify_url: Option<&str>,
        notify_auth: Option<&str>,
        media_types: &[&str],
        actions: &[&str],
        htpasswd: Option<&str>,
    ) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let users = htpasswd.map(|line| {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, format!("{line}\n")).expect("write htpasswd");
            path
        });
        let mut last_error = String::new();
        // The free port is found by binding and releasing it, so another process may take it
        // before the registry binds; then try again with another.
        for _ in 0..5 {
            let port = free_port();
            let mut config = registry_config(
                dir.path(),
                port,
                notify_url,
                notify_auth,
                media_types,
                actions,
            );
            if let Some(path) = &users {
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                    yaml_str(path.to_str().expect("utf-8 temp dir"))
                ));
            }
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write config.yml");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
            let mut cmd = Command::new(REGISTRY_BIN);
            cmd.arg("serve")
                .arg(&config_path)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log);
            // Nothing from the environment may change the config (REGISTRY_HTTP_ADDR, …).
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy().to_string();
                if k.starts_with("REGISTRY_") || k.to_ascii_lowercase().ends_with("_proxy") {
                    cmd.env_remove(&k);
                }
            }
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {REGISTRY_BIN}: {e}"));
            match wait_ready(&mut child, port) {
                Ok(()) => return Registry { port, dir, child },
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(dir.path().join("registry.log"));
                    last_error = format!("{e}\n{}", log.unwrap_or_default());
                }
            }
        }
        panic!("the registry did not start: {last_error}");
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/path`, a repository in this registry (e.g. `path` = `acme/api`).
    pub fn repo(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- registry log ({}) -----\n{}\n----- end of registry log -----",
                self.host(),
                self.log()
            );
        }
    }
}

/// Waits until the registry on `port` answers `GET /v2/` with 200.
fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let host = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("registry exited ({status})"));
        }
        // 401: up, and asking for a login (`start_with_users`).
        if let Ok(head) = blocking_get(&host, "/v2/")
            && matches!(head.split_whitespace().nth(1), Some("200" | "401"))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "GET http://{host}/v2/ did not answer 200 within {WAIT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A YAML double-quoted string.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn registry_config(
    dir: &Path,
    port: u16,
    notify_url: Option<&str>,
    notify_auth: Option<&str>,
    media_types: &[&str],
    actions: &[&str],
) -> String {
    let storage = dir.join("storage");
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: ferry-test-secret\n",
        yaml_str(storage.to_str().expect("utf-8 temp dir"))
    );
    if let Some(url) = notify_url {
        config.push_str(&format!(
            "notifications:\n  endpoints:\n    - name: ferry\n      url: {}\n",
            yaml_str(url)
        ));
        if let Some(auth) = notify_auth {
            config.push_str(&format!(
                "      headers:\n        Authorization: [{}]\n",
                yaml_str(auth)
            ));
        }
        config.push_str("      timeout: 2s\n      threshold: 5\n      backoff: 1s\n");
        if !media_types.is_empty() {
            config.push_str("      ignoredmediatypes:\n");
            for t in media_types {
                config.push_str(&format!("        - {}\n", yaml_str(t)));
            }
        }
        if !actions.is_empty() {
            config.push_str("      ignore:\n        actions:\n");
            for a in actions {
                config.push_str(&format!("          - {}\n", yaml_str(a)));
            }
        }
    }
    config
}

/// The status line and headers of `GET http://HOST/PATH` (blocking, loopback only).
fn blocking_get(host: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

// ---- registry notifications ----

/// The `events` of a registry notification envelope (a request's JSON body).
pub fn events(envelope: &Value) -> Vec<Value> {
    match envelope.get("events") {
        Some(Value::Array(events)) => events.clone(),
        _ => Vec::new(),
    }
}

/// The manifest `push` event for `tag`, if the envelope has one.
pub fn manifest_push(envelope: &Value, tag: &str) -> Option<Value> {
    events(envelope).into_iter().find(|e| {
        e["action"] == "push"
            && e["target"]["tag"] == tag
            && e["target"]["mediaType"]
                .as_str()
                .is_some_and(|t| t.contains("manifest") || t.contains("image.index"))
    })
}

// ---- the smoke test ----

/// Rewrites `tests/fixtures/registry/*` from this run when set.
const WRITE_FIXTURES: &str = "DOCKERENV_WRITE_FIXTURES";

fn write_fixture(name: &str, n: &Call, note: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry");
    std::fs::create_dir_all(&dir).expect("fixtures dir");
    std::fs::write(dir.join(format!("{name}.json")), &n.body).expect("write fixture");
    let mut headers = format!(
        "# Sender: CNCF distribution {}, a real notification captured by dockerenv_smoke\n\
         # (DOCKERENV_WRITE_FIXTURES=1 cargo test --test it dockerenv_smoke).\n# {note}\n",
        registry_version()
    );
    for name in [
        "Content-Type",
        "Content-Length",
        "Authorization",
        "User-Agent",
    ] {
        let v = n.header(name);
        if !v.is_empty() {
            headers.push_str(&format!("{name}: {v}\n"));
        }
    }
    std::fs::write(dir.join(format!("{name}.headers")), headers).expect("write sidecar");
}

/// `docker-registry --version`'s version (e.g. `2.8.2+ds1`).
fn registry_version() -> String {
    let out = Command::new(REGISTRY_BIN)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace().last().unwrap_or("?").to_string()
}

#[tokio::test]
#[ignore = "needs Docker and docker-registry: cargo test -- --include-ignored"]
async fn dockerenv_smoke() {
    if !require_docker() {
        return;
    }
    let mut scope = DockerScope::new("dockerenv-smoke");
    let sink = FakeHttp::start();
    let registry = Registry::start(
        Some(&sink.url("/registry-events")),
        Some("Bearer test-token"),
    );
    let repo = scope.repo(&registry.repo("acme/api"));

    // Build and push; the registry notifies the sink.
    let image = format!("{repo}:1.0.0");
    build_image(&image, "1.0.0", false);
    let pushed = Instant::now();
    let digest = push(&image);
    let pushed_at = Instant::now();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let n = sink
        .wait_for("the manifest push notification of 1.0.0", WAIT, |n| {
            manifest_push(&n.json(), "1.0.0").is_some()
        })
        .await;
    eprintln!(
        "docker push took {:?}; the manifest push notification arrived {:?} after it started; {} requests in all",
        pushed_at.duration_since(pushed),
        n.at.saturating_duration_since(pushed),
        sink.calls().len()
    );
    assert_eq!(n.method, "POST");
    assert_eq!(n.header("Authorization"), "Bearer test-token");
    let content_type = n.header("Content-Type");
    assert!(
        [
            "application/vnd.docker.distribution.events.v1+json",
            "application/vnd.docker.distribution.events.v2+json"
        ]
        .contains(&content_type),
        "Content-Type {content_type:?}"
    );
    let event = manifest_push(&n.json(), "1.0.0").unwrap();
    assert_eq!(event["target"]["digest"], digest.as_str(), "{event:#}");
    assert_eq!(event["target"]["repository"], "acme/api", "{event:#}");
    assert_eq!(
        event["request"]["host"],
        registry.host().as_str(),
        "{event:#}"
    );

    // The registry agrees on the digest.
    let head = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .head(format!(
            "http://{}/v2/acme/api/manifests/1.0.0",
            registry.host()
        ))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .expect("HEAD manifest");
    assert_eq!(
        head.headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok()),
        Some(digest.as_str())
    );

    if std::env::var_os(WRITE_FIXTURES).is_some() {
        write_fixture(
            "manifest-push",
            &n,
            &format!("docker push {image}: the manifest push (with target.tag)."),
        );
        let blob = |action: &str| {
            sink.calls().into_iter().find(|n| {
                events(&n.json()).iter().any(|e| {
                    e["action"] == action && e["target"]["mediaType"] == "application/octet-stream"
                })
            })
        };
        let note = "Sent before the manifest push in the same docker push; ferry must ignore it.";
        write_fixture("blob-push", &blob("push").expect("a blob push"), note);
        write_fixture("blob-pull", &blob("pull").expect("a blob pull"), note);
    }

    // A healthy container: env from the image and `-e`, a bind mount, a published port.
    let data = tempfile::tempdir().expect("temp dir");
    std::fs::write(data.path().join("marker"), "kept-1\n").expect("marker");
    let ok = scope.name("ok");
    docker(&[
        "run",
        "-d",
        "--name",
        &ok,
        "-p",
        &format!("127.0.0.1::{APP_PORT}"),
        "-e",
        "GREETING=hello",
        "-v",
        &format!("{}:/data:ro", data.path().display()),
        &image,
    ]);
    assert_eq!(
        inspect(&ok).unwrap()["Config"]["Labels"]["ferry.test"],
        "1",
        "containers inherit the image's label"
    );
    wait_health(&ok, "healthy").await;
    let addr = published(&ok, APP_PORT);
    let answer = http_get(&addr).await.expect("the app answers");
    assert_eq!(answer_value(&answer, "version"), Some("1.0.0"), "{answer}");
    assert_eq!(answer_value(&answer, "greeting"), Some("hello"), "{answer}");
    assert_eq!(answer_value(&answer, "marker"), Some("kept-1"), "{answer}");
    let ip = container_ip(&ok);
    let direct = http_get(&format!("{ip}:{APP_PORT}")).await.expect("by IP");
    assert_eq!(answer_value(&direct, "version"), Some("1.0.0"), "{direct}");

    // SIGTERM ends the app at once, with 0.
    let stopping = Instant::now();
    docker(&["stop", "-t", "10", &ok]);
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "docker stop took {:?}",
        stopping.elapsed()
    );
    assert_eq!(inspect(&ok).unwrap()["State"]["ExitCode"], 0);

    // A broken image runs but fails its healthcheck.
    let broken = format!("{repo}:1.0.1-broken");
    build_image(&broken, "1.0.1", true);
    let bad = scope.name("broken");
    docker(&["run", "-d", "--name", &bad, &broken]);
    wait_health(&bad, "unhealthy").await;
    assert_eq!(
        inspect(&bad).unwrap()["State"]["Status"],
        "running",
        "{}",
        state(&bad)
    );

    // Nothing is left behind.
    scope.clean();
    let left = docker(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!left.contains(scope.prefix()), "containers left: {left}");
    let images = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}", &repo]);
    assert!(images.is_empty(), "images left: {images}");
}

/// The captured fixtures load with the harness's loader and say what SOURCES.md says.
#[test]
fn registry_fixtures_are_well_formed() {
    let push = crate::support::fixture("registry/manifest-push");
    assert_eq!(
        push.header("Content-Type"),
        Some("application/vnd.docker.distribution.events.v1+json")
    );
    assert_eq!(push.header("Authorization"), Some("Bearer test-token"));
    let envelope: Value = serde_json::from_slice(&push.body).unwrap();
    assert_eq!(events(&envelope).len(), 1);
    let event = manifest_push(&envelope, "1.0.0").expect("a manifest push of 1.0.0");
    assert!(
        event["target"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    for name in ["registry/blob-push", "registry/blob-pull"] {
        let f = crate::support::fixture(name);
        let events: Value = serde_json::from_slice(&f.body).unwrap();
        assert_eq!(
            events["events"][0]["target"]["mediaType"], "application/octet-stream",
            "{name}"
        );
        assert!(events["events"][0]["target"].get("tag").is_none(), "{name}");
    }
}
