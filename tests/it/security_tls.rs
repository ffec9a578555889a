//! Transport security (issue 8, part 5): HTTPS with rustls, HTTP/2 through ALPN, certificate
//! reload on SIGHUP, mTLS per app, TLS 1.1 refused, a stalled handshake cut off (within
//! `server.header_timeout`), the admin listener, and outgoing calls that follow no redirect.
//!
//! Certificates are made here with `rcgen`; the clients are the real `curl` and
//! `openssl s_client`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::support::*;

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `localhost` / 127.0.0.1 (server) or a client, as (cert PEM, key PEM).
    fn issue(
        &self,
        common_name: &str,
        serial: u64,
        client: bool,
        expired: bool,
    ) -> (String, String) {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serial_number = Some(serial.into());
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let now = time::OffsetDateTime::now_utc();
        if expired {
            params.not_before = now - time::Duration::days(30);
            params.not_after = now - time::Duration::days(1);
        } else {
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(30);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Files of one test's PKI: the server's CA, the server certificate, client CA and clients.
struct Pki {
    dir: tempfile::TempDir,
    server_ca: Ca,
    client_ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            server_ca: Ca::new("ferry test server CA"),
            client_ca: Ca::new("ferry test client CA"),
        };
        pki.write("server-ca.pem", &pki.server_ca.pem());
        pki.write("client-ca.pem", &pki.client_ca.pem());
        pki.server_cert("ferry-one", 1);
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    /// (Re)writes `server.pem` / `server.key` with a certificate named `cn`.
    fn server_cert(&self, cn: &str, serial: u64) {
        let (cert, key) = self.server_ca.issue(cn, serial, false, false);
        self.write("server.pem", &cert);
        self.write("server.key", &key);
    }

    /// Writes `NAME.pem` / `NAME.key`: a client certificate from `ca`.
    fn client(&self, name: &str, ca: &Ca, expired: bool) {
        let (cert, key) = ca.issue(name, 7, true, expired);
        self.write(&format!("{name}.pem"), &cert);
        self.write(&format!("{name}.key"), &key);
    }
}

/// The `[server]` TLS lines for `pki` (with `client_ca` when `mtls`).
fn tls_lines(pki: &Pki, mtls: bool) -> String {
    let mut s = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}\n",
        pki.p("server.pem"),
        pki.p("server.key")
    );
    if mtls {
        s.push_str(&format!("client_ca = \"{}\"\n", pki.p("client-ca.pem")));
    }
    s
}

/// Two apps without signature schemes: `open`, and `locked` (`verify.client_cert = true`
/// when `mtls`).
fn config(server_extra: &str, mtls: bool) -> String {
    let locked_verify = if mtls {
        "[apps.locked.verify]\nclient_cert = true\n"
    } else {
        ""
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{{dir}}/data"
admin_token = "${{FERRY_ADMIN_TOKEN}}"
{server_extra}
[apps.open]
token = "open-token-123456"
[apps.open.services.site]
command = ["{{dir}}/deploy.sh", "site"]
timeout = "60s"

[apps.locked]
token = "locked-token-123456"
{locked_verify}
[apps.locked.services.site]
command = ["{{dir}}/deploy.sh", "site"]
timeout = "60s"
"#
    )
}

fn port(ferry: &Ferry) -> String {
    ferry.base_url().rsplit(':').next().unwrap().to_string()
}

/// What `curl` did: exit code, `%{http_code} %{http_version}`, the body, and its stderr.
#[derive(Debug)]
struct Curl {
    code: Option<i32>,
    status: String,
    http_version: String,
    body: String,
    stderr: String,
}

/// Runs `curl ARGS URL` (no proxy, quiet, writing out status and HTTP version).
fn curl(args: &[&str], url: &str) -> Curl {
    let body = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "20", "-o"])
        .arg(body.path())
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args)
        .arg(url)
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("run curl (installed with the test dependencies)");
    let written = String::from_utf8_lossy(&out.stdout).to_string();
    let mut parts = written.split_whitespace();
    Curl {
        code: out.status.code(),
        status: parts.next().unwrap_or("").to_string(),
        http_version: parts.next().unwrap_or("").to_string(),
        body: std::fs::read_to_string(body.path()).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// `curl -X POST` to an app's hook over HTTPS, trusting the test's server CA.
fn post_hook(pki: &Pki, ferry: &Ferry, app_and_token: &str, extra: &[&str]) -> Curl {
    let ca = pki.p("server-ca.pem");
    let mut args = vec!["--cacert", ca.as_str(), "-X", "POST"];
    args.extend(extra);
    let url = format!("https://localhost:{}/hooks/{app_and_token}", port(ferry));
    let resolve = format!("localhost:{}:127.0.0.1", port(ferry));
    args.extend(["--resolve", resolve.as_str()]);
    curl(&args, &url)
}

/// `GET /api/v1PATH` over HTTPS with the admin token.
fn get_api(pki: &Pki, ferry: &Ferry, path: &str) -> Curl {
    let ca = pki.p("server-ca.pem");
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let resolve = format!("localhost:{}:127.0.0.1", port(ferry));
    curl(
        &["--cacert", &ca, "--resolve", &resolve, "-H", &auth],
        &format!("https://localhost:{}/api/v1{path}", port(ferry)),
    )
}

/// `openssl s_client` to the server with `args`, stdin closed; returns stdout + stderr.
fn s_client(ferry: &Ferry, args: &[&str]) -> (bool, String) {
    let connect = format!("127.0.0.1:{}", port(ferry));
    // An empty config: Debian's openssl.cnf raises the client's own minimum to TLS 1.2, and
    // the tests must see what the *server* refuses.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-servername", "localhost"])
        .args(args)
        .env("OPENSSL_CONF", empty.path())
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn hup(ferry: &Ferry) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ferry.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP ferry");
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The subject line of the certificate a new handshake sees.
fn served_subject(ferry: &Ferry) -> String {
    let (_, text) = s_client(ferry, &[]);
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject in s_client output:\n{text}"))
        .to_string()
}

#[tokio::test]
async fn https_hook_is_accepted_over_http2() {
    let pki = Pki::new();
    let ferry = Ferry::with_config(&config(&tls_lines(&pki, false), false))
        .start()
        .await;
    assert!(
        ferry.stderr_text().contains("scheme=https"),
        "{}",
        ferry.stderr_text()
    );

    let r = post_hook(&pki, &ferry, "open/open-token-123456", &["--http2", "-v"]);
    assert_eq!(r.status, "202", "{r:#?}");
    assert_eq!(r.http_version, "2", "{r:#?}");
    assert!(r.stderr.contains("ALPN: server accepted h2"), "{r:#?}");
    let id = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["delivery_id"]
        .as_i64()
        .unwrap();

    // HTTP/1.1 clients get HTTP/1.1 through ALPN.
    let r = post_hook(&pki, &ferry, "open/open-token-123456", &["--http1.1"]);
    assert_eq!(
        (r.status.as_str(), r.http_version.as_str()),
        ("202", "1.1"),
        "{r:#?}"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let r = curl(
        &["-X", "POST"],
        &format!(
            "http://127.0.0.1:{}/hooks/open/open-token-123456",
            port(&ferry)
        ),
    );
    assert_ne!(r.status, "202", "{r:#?}");

    // The API is served over the same TLS listener.
    let r = get_api(&pki, &ferry, &format!("/deliveries/{id}"));
    assert_eq!(r.status, "200", "{r:#?}");
}

#[tokio::test]
async fn tls_1_1_is_refused_and_1_2_accepted() {
    let pki = Pki::new();
    let ferry = Ferry::with_config(&config(&tls_lines(&pki, false), false))
        .start()
        .await;
    let (ok, text) = s_client(&ferry, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!ok, "TLS 1.1 handshake succeeded:\n{text}");
    // The client did send its TLS 1.1 hello (it did not refuse on its own) and the server
    // answered with an alert (rustls: handshake_failure, as a 1.1 hello has no signature
    // algorithms for it to choose from).
    assert!(!text.contains("no protocols available"), "{text}");
    assert!(text.contains("SSL alert number"), "{text}");
    assert!(text.contains("Cipher is (NONE)"), "{text}");

    let (ok, text) = s_client(&ferry, &["-tls1_2"]);
    assert!(ok && text.contains("Protocol  : TLSv1.2"), "{text}");
}

#[tokio::test]
async fn sighup_swaps_the_certificate_and_open_connections_keep_working() {
    let pki = Pki::new();
    let ferry = Ferry::with_config(&config(&tls_lines(&pki, false), false))
        .start()
        .await;
    assert!(served_subject(&ferry).contains("ferry-one"));

    // A connection opened before the reload, kept open (HTTP/1.1 keep-alive).
    let connect = format!("127.0.0.1:{}", port(&ferry));
    let empty = tempfile::NamedTempFile::new().unwrap();
    let mut open = Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-servername", "localhost"])
        .args(["-ign_eof", "-quiet"])
        .env("OPENSSL_CONF", empty.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    {
        let seen = seen.clone();
        let mut stdout = open.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let mut stdin = open.stdin.take().unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    stdin.write_all(request).unwrap();
    stdin.flush().unwrap();
    let answers = |n: usize| {
        let seen = seen.clone();
        async move {
            eventually("answers on the open connection", WAIT, async || {
                let s = seen.lock().unwrap().clone();
                if s.matches("HTTP/1.1 200 OK").count() >= n {
                    Ok(())
                } else {
                    Err(s)
                }
            })
            .await
        }
    };
    answers(1).await;

    pki.server_cert("ferry-two", 2);
    hup(&ferry);
    eventually("the reload to be logged", WAIT, async || {
        let t = ferry.stderr_text();
        if t.contains("TLS certificate and key reloaded") {
            Ok(())
        } else {
            Err(t)
        }
    })
    .await;
    let subject = served_subject(&ferry);
    assert!(subject.contains("ferry-two"), "{subject}");

    // The old connection still works.
    stdin.write_all(request).unwrap();
    stdin.flush().unwrap();
    answers(2).await;

    // A broken file: the reload fails loudly and the current certificate stays.
    pki.write("server.pem", "not a certificate\n");
    hup(&ferry);
    eventually("the failed reload to be logged", WAIT, async || {
        let t = ferry.stderr_text();
        if t.contains("cannot reload TLS files") && t.contains("server.pem") {
            Ok(())
        } else {
            Err(t)
        }
    })
    .await;
    assert!(served_subject(&ferry).contains("ferry-two"));
    let r = post_hook(&pki, &ferry, "open/open-token-123456", &[]);
    assert_eq!(r.status, "202", "{r:#?}");
    let _ = open.kill();
    let _ = open.wait();
}

#[tokio::test]
async fn mtls_app_requires_a_client_certificate_from_the_configured_ca() {
    let pki = Pki::new();
    pki.client("good", &pki.client_ca, false);
    pki.client("expired", &pki.client_ca, true);
    let stranger = Ca::new("someone else's CA");
    pki.client("stranger", &stranger, false);
    let ferry = Ferry::with_config(&config(&tls_lines(&pki, true), true))
        .start()
        .await;
    let with = |name: &str| -> Vec<String> {
        vec![
            "--cert".into(),
            pki.p(&format!("{name}.pem")),
            "--key".into(),
            pki.p(&format!("{name}.key")),
        ]
    };

    // Right CA: accepted.
    let good = with("good");
    let r = post_hook(&pki, &ferry, "locked/locked-token-123456", &args(&good));
    assert_eq!(r.status, "202", "{r:#?}");

    // No client certificate: the TLS connection is fine (other apps work), this hook refuses.
    let r = post_hook(&pki, &ferry, "locked/locked-token-123456", &[]);
    assert_eq!(r.status, "401", "{r:#?}");
    assert!(r.body.contains("client certificate"), "{r:#?}");
    let r = post_hook(&pki, &ferry, "open/open-token-123456", &[]);
    assert_eq!(r.status, "202", "{r:#?}");

    // A certificate from another CA, or an expired one: the handshake fails, no HTTP answer.
    for name in ["stranger", "expired"] {
        let v = with(name);
        let r = post_hook(&pki, &ferry, "locked/locked-token-123456", &args(&v));
        assert_eq!(r.status, "000", "{name}: {r:#?}");
        assert_ne!(r.code, Some(0), "{name}: {r:#?}");
    }
    // Only the good request was stored for `locked`.
    let r = get_api(&pki, &ferry, "/deliveries?app=locked");
    let stored: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let stored = stored["deliveries"].as_array().expect("a deliveries list");
    assert_eq!(stored.len(), 1, "{stored:#?}");
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_off() {
    let pki = Pki::new();
    let ferry = Ferry::with_config(&config(&tls_lines(&pki, false), false))
        .start()
        .await;
    let mut idle = std::net::TcpStream::connect(format!("127.0.0.1:{}", port(&ferry))).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    let started = std::time::Instant::now();
    // Meanwhile others are served.
    let r = post_hook(&pki, &ferry, "open/open-token-123456", &[]);
    assert_eq!(r.status, "202", "{r:#?}");
    let mut buf = [0u8; 16];
    let n = idle
        .read(&mut buf)
        .expect("the server closes the connection (not the read timeout)");
    assert_eq!(n, 0, "closed without a byte");
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// The handshake has no budget of its own: it counts against `server.header_timeout` from
/// the moment the connection is accepted (the 10 s default matches the old fixed timeout).
#[tokio::test]
async fn a_stalled_tls_handshake_gets_the_header_timeout() {
    let pki = Pki::new();
    let extra = format!("{}header_timeout = \"2s\"\n", tls_lines(&pki, false));
    let ferry = Ferry::with_config(&config(&extra, false)).start().await;
    let mut idle = std::net::TcpStream::connect(format!("127.0.0.1:{}", port(&ferry))).unwrap();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    let started = std::time::Instant::now();
    let n = idle
        .read(&mut [0u8; 16])
        .expect("the server closes the connection (not the read timeout)");
    let took = started.elapsed();
    assert_eq!(n, 0, "closed without a byte");
    assert!(took >= Duration::from_millis(1900), "closed after {took:?}");
    assert!(took < Duration::from_secs(8), "closed only after {took:?}");
}

#[tokio::test]
async fn admin_listener_alone_serves_the_api_and_metrics() {
    let admin_port = free_port();
    let ferry = Ferry::with_config(&config(
        &format!("admin_listen = \"127.0.0.1:{admin_port}\"\n"),
        false,
    ))
    .start()
    .await;
    let admin = format!("http://127.0.0.1:{admin_port}");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let get = async |url: String| {
        ferry
            .http()
            .get(url)
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Main listener: hooks and health checks, nothing else.
    let id = ferry
        .hook("open")
        .token("open-token-123456")
        .send()
        .await
        .accepted();
    assert_eq!(get(ferry.url("/healthz")).await, 200);
    assert_eq!(get(ferry.url("/readyz")).await, 200);
    assert_eq!(get(ferry.url("/api/v1/apps")).await, 404);
    assert_eq!(
        get(ferry.url(&format!("/api/v1/deliveries/{id}"))).await,
        404
    );
    assert_eq!(get(ferry.url("/metrics")).await, 404);
    // Admin listener: the API and metrics.
    assert_eq!(get(format!("{admin}/api/v1/apps")).await, 200);
    assert_eq!(get(format!("{admin}/api/v1/deliveries/{id}")).await, 200);
    assert_eq!(get(format!("{admin}/metrics")).await, 200);
    assert_eq!(get(format!("{admin}/healthz")).await, 200);
    // Hooks are not on the admin listener.
    let r = ferry
        .http()
        .post(format!("{admin}/hooks/open/open-token-123456"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // The CLI finds the API through the config's admin_listen.
    let out = Cli::new(&["status", "--config", ferry.config_path().to_str().unwrap()])
        .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
        .run()
        .await;
    let stdout = out.success();
    assert!(stdout.contains("open"), "{stdout}");
}

/// A peer that answers every request with a 302 to `/elsewhere` and reports each request
/// line it gets.
fn redirecting_peer() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let location = format!("http://{addr}/elsewhere");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = tx.send(first.trim_end().to_string());
            let answer = format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = s.write_all(answer.as_bytes());
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn a_docker_hub_callback_answering_302_is_not_followed() {
    let (peer, requests) = redirecting_peer();
    let ferry = Ferry::with_config(&dockerhub_callback_config(&peer, ""))
        .start()
        .await;
    let body = dockerhub_push_calling_back_to(&peer);
    ferry
        .hook("hub")
        .token("image-hook-token-1")
        .query("source=dockerhub")
        .header("Content-Type", "application/json")
        .body(body)
        .deliver()
        .await;
    let first = requests
        .recv_timeout(WAIT)
        .expect("the callback was called");
    assert!(first.starts_with("POST /u/"), "{first}");
    eventually("the refused callback to be logged", WAIT, async || {
        let t = ferry.stderr_text();
        if t.contains("Docker Hub callback refused") && t.contains("302") {
            Ok(())
        } else {
            Err(t)
        }
    })
    .await;
    // Nothing went to the redirect's target.
    assert!(
        requests.recv_timeout(Duration::from_millis(500)).is_err(),
        "the redirect was followed"
    );
    // A redirect is final: the callback is dead (listed for a manual retry), not retried.
    let list = ferry.get("/api/v1/notifications?state=dead").await;
    let dead = &list["notifications"][0];
    assert_eq!(dead["kind"], "dockerhub", "{list:#}");
    assert_eq!(dead["last_status"], 302);
    assert_eq!(dead["attempts"], 1);
}

// ---- config errors (ferry check) ----

/// Runs `ferry check` and asserts it fails naming `ferry.toml:LINE`, `key` and `mentions`.
async fn check_fails(config: &str, needle: &str, key: &str, mentions: &[&str]) {
    let file = ConfigFile::new(config);
    let out = file.check().await;
    assert_eq!(out.code, Some(1), "ferry check must fail: {out:#?}");
    let at = format!("ferry.toml:{}: {key}", line_of(config, needle, 1));
    assert!(
        out.stderr.contains(&at),
        "expected {at:?} in:\n{}",
        out.stderr
    );
    for m in mentions {
        assert!(out.stderr.contains(m), "expected {m:?} in:\n{}", out.stderr);
    }
}

#[tokio::test]
async fn check_names_bad_tls_settings() {
    let pki = Pki::new();
    // A good one passes.
    let good = config(&tls_lines(&pki, true), true);
    ConfigFile::new(&good).check().await.success();

    // client_cert without client_ca.
    let c = config(&tls_lines(&pki, false), true);
    check_fails(
        &c,
        "client_cert",
        "apps.locked.verify.client_cert",
        &["server.client_ca"],
    )
    .await;
    // client_ca without tls.
    let c = config(
        &format!("client_ca = \"{}\"\n", pki.p("client-ca.pem")),
        false,
    );
    check_fails(&c, "client_ca", "server.client_ca", &["server.tls"]).await;
    // A missing certificate file.
    let c = config(&tls_lines(&pki, false), false).replace("server.pem", "missing.pem");
    check_fails(
        &c,
        "tls =",
        "server.tls.cert",
        &["missing.pem", "cannot read"],
    )
    .await;
    // A key file without a key.
    pki.write("nokey.key", &pki.client_ca.pem());
    let c = config(&tls_lines(&pki, false), false).replace("server.key", "nokey.key");
    check_fails(
        &c,
        "tls =",
        "server.tls.key",
        &["nokey.key", "no PEM private key"],
    )
    .await;
    // Broken PEM.
    pki.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n",
    );
    let c = config(&tls_lines(&pki, false), false).replace("server.pem", "broken.pem");
    check_fails(&c, "tls =", "server.tls.cert", &["broken.pem"]).await;
    // A key that does not belong to the certificate.
    pki.client("other", &pki.client_ca, false);
    let c = config(&tls_lines(&pki, false), false).replace("server.key", "other.key");
    check_fails(&c, "tls =", "server.tls", &["other.key"]).await;
    // A client CA file that holds no certificate.
    pki.write("empty-ca.pem", "");
    let c = config(&tls_lines(&pki, true), true).replace("client-ca.pem", "empty-ca.pem");
    check_fails(&c, "client_ca", "server.client_ca", &["empty-ca.pem"]).await;
}

#[tokio::test]
async fn while_the_store_cannot_open_https_and_the_admin_listener_answer_503() {
    let pki = Pki::new();
    let admin_port = free_port();
    // The data dir's parent is a file: the store cannot be created until it is removed.
    let config = config(
        &format!(
            "{}admin_listen = \"127.0.0.1:{admin_port}\"\n",
            tls_lines(&pki, false)
        ),
        false,
    )
    .replace(
        "data_dir = \"{dir}/data\"",
        "data_dir = \"{dir}/blocker/data\"",
    );
    let blocker = pki.path("blocker");
    let config = config.replace("{dir}/blocker", blocker.to_str().unwrap());
    std::fs::write(&blocker, "a file, not a directory").unwrap();
    let ferry = Ferry::with_config(&config).start().await;

    let r = post_hook(&pki, &ferry, "open/open-token-123456", &[]);
    assert_eq!(r.status, "503", "{r:#?}");
    assert!(r.body.contains("cannot be opened"), "{r:#?}");
    let admin = ferry
        .http()
        .get(format!("http://127.0.0.1:{admin_port}/api/v1/apps"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status().as_u16(), 503);

    std::fs::remove_file(&blocker).unwrap();
    eventually("the store to open", WAIT, async || {
        let r = post_hook(&pki, &ferry, "open/open-token-123456", &[]);
        if r.status == "202" {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn the_cli_reaches_an_https_server_through_the_config() {
    let pki = Pki::new();
    let port = free_port();
    let config = config(&tls_lines(&pki, false), false).replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let ferry = Ferry::with_config(&config).start().await;
    let status = |ca: Option<String>| {
        let mut cli = Cli::new(&["status", "--config", ferry.config_path().to_str().unwrap()])
            .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN);
        if let Some(ca) = ca {
            cli = cli.env("SSL_CERT_FILE", &ca);
        }
        cli.run()
    };
    // public_url defaults to https://LISTEN; the server's CA must be trusted.
    let out = status(Some(pki.p("server-ca.pem"))).await;
    assert!(out.success().contains("open"), "{out:#?}");
    let out = status(Some(pki.p("client-ca.pem"))).await;
    assert!(out.failure().contains("https://127.0.0.1"), "{out:#?}");
}
