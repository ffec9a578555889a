//! Real git servers for the checkout tests: bare repositories in a temp dir, served by
//! `git daemon` (public, `git://`) and by `git http-backend` (CGI) behind [`GitHttp`], a small
//! HTTP/1.1 server that demands basic auth; and a scratch clone that commits and pushes to
//! them for real ([`Scratch`]); and OpenSSH's `sshd` ([`Sshd`]) serving them over ssh with
//! a host key of its own and one authorized deploy key.
//!
//! [`GitHttp`] serves each connection on its own thread: one request (head, then a
//! `content-length` or chunked body), checked against the expected `Authorization`, run
//! through `git http-backend` with the CGI variables, and answered with its output and
//! `connection: close`. It records every request's target and headers, so a test can check
//! what ferry's git sent (a token never in the URL).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// Runs git with a fixed identity in `dir`; panics with its output on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Tester",
            "-c",
            "user.email=tester@example.com",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Bare repositories under one root, which the servers export.
pub struct Repos {
    root: tempfile::TempDir,
}

impl Repos {
    pub fn new() -> Repos {
        Repos {
            root: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Creates the bare repository `NAME.git` and a scratch clone that pushes to it.
    pub fn create(&self, name: &str) -> Scratch {
        let bare = self.root.path().join(format!("{name}.git"));
        git(
            self.root.path(),
            &["init", "-q", "--bare", bare.to_str().unwrap()],
        );
        // Commits off every branch can be fetched by id (as GitHub allows).
        git(&bare, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
        let work = self.root.path().join(format!("{name}-scratch"));
        git(self.root.path(), &["init", "-q", work.to_str().unwrap()]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Scratch { work }
    }
}

/// A clone where tests commit and push.
pub struct Scratch {
    work: PathBuf,
}

impl Scratch {
    /// Writes `files` (`None` deletes one), commits and pushes `main`; returns the commit.
    pub fn commit_and_push(&self, message: &str, files: &[(&str, Option<&str>)]) -> String {
        for (name, content) in files {
            let path = self.work.join(name);
            match content {
                Some(text) => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).unwrap();
                    }
                    std::fs::write(&path, text).unwrap()
                }
                None => std::fs::remove_file(&path).unwrap(),
            }
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(
            &self.work,
            &["push", "-q", "origin", "HEAD:refs/heads/main"],
        );
        self.git(&["rev-parse", "HEAD"])
    }

    /// `git push --force` of `commit` to `main` (the branch moves back).
    pub fn force_push(&self, commit: &str) {
        git(
            &self.work,
            &[
                "push",
                "-q",
                "--force",
                "origin",
                &format!("{commit}:refs/heads/main"),
            ],
        );
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work, args)
    }
}

/// Waits until something accepts connections on `port`.
pub fn wait_listening(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `git daemon` exporting every repository under a root, read-only; killed when dropped.
pub struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    pub fn start(root: &Path) -> GitDaemon {
        let port = free_port();
        let mut child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--informative-errors",
            ])
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        wait_listening(port, "git daemon", &mut child);
        GitDaemon { child, port }
    }

    /// `git://127.0.0.1:PORT/NAME.git`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request [`GitHttp`] received.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub target: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub authorized: bool,
}

/// `git http-backend` behind basic auth (`user:password`); stops with the test process.
pub struct GitHttp {
    port: u16,
    pub requests: Arc<Mutex<Vec<HttpRequest>>>,
}

impl GitHttp {
    pub fn start(root: &Path, user: &str, password: &str) -> GitHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let expected = format!("Basic {}", base64_encode(&format!("{user}:{password}")));
        let (root, log) = (root.to_path_buf(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, log, expected) = (root.clone(), log.clone(), expected.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &root, &expected, &log);
                });
            }
        });
        GitHttp { port, requests }
    }

    /// `http://127.0.0.1:PORT/NAME.git`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}.git", self.port)
    }
}

/// Serves one request on `stream`.
fn serve(
    stream: TcpStream,
    root: &Path,
    expected: &str,
    log: &Mutex<Vec<HttpRequest>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let authorized = header("authorization").as_deref() == Some(expected);
    log.lock().unwrap().push(HttpRequest {
        target: target.clone(),
        headers: headers.clone(),
        authorized,
    });
    let mut out = stream;
    if !authorized {
        return out.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
    }
    let body = read_body(
        &mut reader,
        header("content-length"),
        header("transfer-encoding"),
    )?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header("content-encoding").unwrap_or_default(),
        )
        .env(
            "HTTP_GIT_PROTOCOL",
            header("git-protocol").unwrap_or_default(),
        )
        .env("REMOTE_USER", "ferry")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = cgi.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let mut output = Vec::new();
    cgi.stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut output)?;
    let _ = writer.join();
    cgi.wait()?;
    // CGI output: headers (a `Status:` among them), a blank line, the body.
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, rest) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&output[..i]).into_owned(),
            &output[i + n..],
        ),
        None => (String::new(), &output[..]),
    };
    let mut status = "200 OK".to_string();
    let mut response = String::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => response.push_str(&format!("{h}\r\n")),
            None => {}
        }
    }
    out.write_all(
        format!(
            "HTTP/1.1 {status}\r\n{response}content-length: {}\r\nconnection: close\r\n\r\n",
            rest.len()
        )
        .as_bytes(),
    )?;
    out.write_all(rest)
}

/// A request body: `content-length` bytes, or a chunked body decoded.
fn read_body(
    reader: &mut impl BufRead,
    length: Option<String>,
    encoding: Option<String>,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if encoding.is_some_and(|e| e.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if n == 0 {
                let mut end = String::new();
                reader.read_line(&mut end)?;
                return Ok(body);
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let n: usize = length.and_then(|l| l.parse().ok()).unwrap_or(0);
    body.resize(n, 0);
    reader.read_exact(&mut body)?;
    Ok(body)
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `ssh-keygen` of an ed25519 key pair at `path` (and `path.pub`); returns the public key line.
pub fn ssh_keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    public.trim().to_string()
}

/// OpenSSH's sshd on a loopback port, as root, accepting only one public key; every path of
/// its own (config, host key, authorized keys, pid file, log) in a temp dir. Killed when
/// dropped.
pub struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// Its host key's public half (`ssh-ed25519 AAAA… comment`).
    host_key: String,
}

/// Where Debian's openssh-server puts the daemon; sshd must be started by its absolute path.
const SSHD: &str = "/usr/sbin/sshd";

impl Sshd {
    /// Whether sshd is installed (with it, Debian's openssh-client: ssh, ssh-keygen); if not,
    /// says so through `support::unavailable` (a failure when CI is set).
    pub fn available() -> bool {
        let there = Path::new(SSHD).exists();
        if !there {
            crate::support::unavailable("sshd is not installed (Debian: openssh-server)");
        }
        there
    }

    /// sshd accepting `authorized` (a public key line); `None` when it is not installed.
    pub fn start(authorized: &str) -> Option<Sshd> {
        if !Sshd::available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let host_key = ssh_keygen(&dir.path().join("host_key"));
        std::fs::write(
            dir.path().join("authorized_keys"),
            format!("{authorized}\n"),
        )
        .unwrap();
        // The privilege separation directory sshd refuses to start without.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let port = free_port();
        let d = dir.path().display();
        let config = format!(
            "ListenAddress 127.0.0.1:{port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n\
             LogLevel VERBOSE\n"
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        wait_listening(port, "sshd", &mut child);
        Some(Sshd {
            child,
            port,
            dir,
            host_key,
        })
    }

    /// `ssh://root@127.0.0.1:PORT/ABSOLUTE/PATH`.
    pub fn url(&self, repo: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, repo.display())
    }

    /// The known_hosts line for this server with `key` (`type base64 [comment]`) as its key.
    pub fn known_hosts_line(&self, key: &str) -> String {
        format!("[127.0.0.1]:{} {key}\n", self.port)
    }

    /// Its host key's public half (`ssh-ed25519 AAAA… comment`).
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// This server's own known_hosts line.
    pub fn known_hosts(&self) -> String {
        self.known_hosts_line(&self.host_key)
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
