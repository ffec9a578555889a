//! `ferry doctor`: checks what a first run trips on and prints each finding with its fix —
//! the config, the data dir (writable, private, free space), the Docker Engine for services
//! that need it, whether `public_url` answers from this host, weak or reused secrets, and
//! hook URLs served without TLS on a public address.
//!
//! It only reads and probes: the one write is a probe file in the data dir, removed at once.
//! Exit status 1 when anything is a problem (ferry will fail or is exposed), else 0 (warnings
//! included).

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{App, Config, Executor};

/// How long a probe (Docker, `public_url`) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Less free space than this on the data dir's file system is a problem; less than
/// [`FREE_WARN`] a warning.
const FREE_PROBLEM: u64 = 64 << 20;
const FREE_WARN: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warning,
    Problem,
}

/// One thing found, and what to do about it.
struct Finding {
    level: Level,
    what: String,
    fix: Option<String>,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            what: what.into(),
            fix: None,
        }
    }

    fn warning(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Warning,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }

    fn problem(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Problem,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check on the config at `path` and prints the findings.
pub(crate) async fn doctor(path: &Path) -> anyhow::Result<ExitCode> {
    println!("ferry doctor: {}", path.display());
    let mut findings = Vec::new();
    match super::load_config(path) {
        Err(e) => findings.push(Finding::problem(
            format!("config: {e}"),
            "correct the config (`ferry check` shows the same); the other checks need it",
        )),
        Ok(config) => {
            let services: usize = config.apps.values().map(|a| a.services.len()).sum();
            findings.push(Finding::ok(format!(
                "config: {} apps, {services} services",
                config.apps.len()
            )));
            findings.extend(data_dir(&config.server.data_dir));
            if let Some(url) = &config.server.database {
                findings.push(database(url.expose(), &config.server.node).await);
            }
            findings.extend(docker(&config).await);
            findings.extend(git(&config).await);
            findings.push(public_url(&config).await);
            findings.extend(secrets(&config));
            findings.extend(tls(&config));
        }
    }
    Ok(report(&findings))
}

fn report(findings: &[Finding]) -> ExitCode {
    for f in findings {
        let label = match f.level {
            Level::Ok => "ok      ",
            Level::Warning => "warning ",
            Level::Problem => "PROBLEM ",
        };
        println!("  {label} {}", f.what);
        if let Some(fix) = &f.fix {
            println!("           fix: {fix}");
        }
    }
    let count = |l| findings.iter().filter(|f| f.level == l).count();
    let (problems, warnings) = (count(Level::Problem), count(Level::Warning));
    println!("{problems} problem(s), {warnings} warning(s)");
    if problems > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The data dir: there (or creatable), writable, private, with room to grow.
fn data_dir(dir: &Path) -> Vec<Finding> {
    use std::os::unix::fs::PermissionsExt;
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![creatable(dir)];
        }
        Err(e) => {
            return vec![Finding::problem(
                format!("data dir {shown} cannot be read: {e}"),
                "give the user ferry runs as access to it (chown), or choose another server.data_dir",
            )];
        }
    };
    let mut out = vec![writable(dir)];
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        out.push(Finding::warning(
            format!("data dir {shown} is readable by others (mode {mode:o}): it holds every delivery's headers and body"),
            format!("chmod 700 {shown} (ferry also tightens it when it starts)"),
        ));
    }
    out.push(free_space(dir));
    out
}

/// A data dir that does not exist yet: ferry creates it if its parent lets it.
fn creatable(dir: &Path) -> Finding {
    let parent = dir
        .ancestors()
        .skip(1)
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    match probe_write(parent) {
        Ok(()) => Finding::ok(format!(
            "data dir {} does not exist yet; ferry will create it",
            dir.display()
        )),
        Err(e) => Finding::problem(
            format!(
                "data dir {} does not exist and cannot be created in {}: {e}",
                dir.display(),
                parent.display()
            ),
            "create it for the user ferry runs as (mkdir, chown, chmod 700), or choose another server.data_dir",
        ),
    }
}

fn writable(dir: &Path) -> Finding {
    match probe_write(dir) {
        Ok(()) => Finding::ok(format!("data dir {} is writable", dir.display())),
        Err(e) => Finding::problem(
            format!("data dir {} is not writable: {e}", dir.display()),
            "make it writable by the user ferry runs as (chown, chmod 700), or mount it read-write; until then ferry answers every hook 503",
        ),
    }
}

/// Creates and removes a file in `dir`: permission bits do not tell (root, read-only mounts).
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".ferry-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    std::fs::remove_file(&probe)
}

fn free_space(dir: &Path) -> Finding {
    let stat = match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => s,
        Err(e) => {
            return Finding::warning(
                format!("free space in {} cannot be read: {e}", dir.display()),
                "check it with df",
            );
        }
    };
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    let text = format!("{} MiB free on the data dir's file system", free >> 20);
    if free < FREE_PROBLEM {
        Finding::problem(
            text,
            "free some space or move server.data_dir: without it ferry answers hooks 503",
        )
    } else if free < FREE_WARN {
        Finding::warning(
            text,
            "deliveries and logs grow: free some space, or set server.keep",
        )
    } else {
        Finding::ok(text)
    }
}

/// `server.database`: PostgreSQL answers (within 5 s), as the replica `node`.
async fn database(url: &str, node: &str) -> Finding {
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        crate::store::probe_postgres(url),
    );
    match probe.await {
        Ok(Ok((version, place))) => Finding::ok(format!(
            "{place} answers (PostgreSQL {version}); this replica is node {node:?}"
        )),
        Ok(Err(e)) => Finding::problem(
            format!("PostgreSQL (server.database) cannot be reached: {e}"),
            "check server.database (host, port, user, password, database) and that PostgreSQL accepts connections from this host",
        ),
        Err(_) => Finding::problem(
            "PostgreSQL (server.database) did not answer within 5 s",
            "check the host and port in server.database, and the firewall between",
        ),
    }
}

/// The Docker Engine, when a service deploys through it; Compose's program for compose ones.
async fn docker(config: &Config) -> Vec<Finding> {
    let uses = |f: fn(&Executor) -> bool| {
        config
            .apps
            .values()
            .flat_map(|a| a.services.values())
            .any(|s| f(&s.executor))
    };
    let engine = uses(|e| !matches!(e, Executor::Command { .. }));
    let compose = uses(|e| matches!(e, Executor::Compose(_)));
    let mut out = Vec::new();
    if engine {
        let where_ =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        out.push(match ping_docker().await {
            Ok(version) => Finding::ok(format!("Docker Engine {version} answers at {where_}")),
            Err(e) => Finding::problem(
                format!("Docker Engine not reachable at {where_}: {e}"),
                "start dockerd, or set DOCKER_HOST; the user ferry runs as needs access to the socket (group docker)",
            ),
        });
    }
    if compose {
        out.push(match crate::executors::compose::program().await {
            Some(argv) => Finding::ok(format!("Compose: `{}`", argv.join(" "))),
            None => Finding::problem(
                "compose services need `docker compose` or `docker-compose`, and neither runs",
                "install the Compose plugin (docker-compose-plugin) or docker-compose",
            ),
        });
    }
    out
}

/// git, when a service keeps a checkout.
async fn git(config: &Config) -> Option<Finding> {
    let checkouts = config
        .apps
        .values()
        .flat_map(|a| a.services.values())
        .any(|s| {
            matches!(
                &s.executor,
                Executor::Command {
                    checkout: Some(_),
                    ..
                }
            )
        });
    if !checkouts {
        return None;
    }
    Some(match crate::executors::checkout::git_version().await {
        Ok(version) => Finding::ok(format!("git {version} for checkouts")),
        Err(e) => Finding::problem(
            format!("services with `checkout` need git: {e}"),
            "install git 2.31 or later (apt install git) on the PATH ferry runs with",
        ),
    })
}

async fn ping_docker() -> Result<String, String> {
    let probe = async {
        let docker = crate::executors::docker::connect()
            .await
            .map_err(|e| e.to_string())?;
        let v = docker.version().await.map_err(|e| e.to_string())?;
        Ok(v.version.unwrap_or_else(|| "(unknown version)".into()))
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT:?}")))
}

/// Whether `public_url` answers `/healthz` from here: senders and status links use it.
async fn public_url(config: &Config) -> Finding {
    let url = format!("{}/healthz", config.server.public_url.trim_end_matches('/'));
    let answer = async {
        let http = crate::outgoing::builder(PROBE_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let r = http
            .get(&url)
            .send()
            .await
            .map_err(|e| crate::notify::target::describe_after(e, PROBE_TIMEOUT))?;
        Ok::<_, String>(r.status())
    };
    match answer.await {
        Ok(s) if s.is_success() => Finding::ok(format!("{url} answers from this host")),
        Ok(s) => Finding::warning(
            format!("{url} answers {s}: something else than ferry may be there"),
            "point server.public_url at ferry (or at the proxy in front of it)",
        ),
        Err(e) => Finding::warning(
            format!("{url} does not answer from this host: {e}"),
            "start ferry and run doctor again; if it runs, check server.public_url, DNS, the proxy and the firewall (senders use this address)",
        ),
    }
}

/// Every secret of the config, with the key that holds it.
fn all_secrets(config: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(t) = &config.server.admin_token {
        out.push(("server.admin_token".into(), t.expose().to_string()));
    }
    for app in config.apps.values() {
        out.extend(app_secrets(app));
    }
    for (i, n) in config.notify.iter().enumerate() {
        if let Some(s) = &n.secret {
            out.push((format!("notify[{i}].secret"), s.expose().to_string()));
        }
    }
    out
}

fn app_secrets(app: &App) -> Vec<(String, String)> {
    let key = format!("apps.{}", app.name);
    let mut out = vec![(format!("{key}.token"), app.token.expose().to_string())];
    for (name, secret) in app.verify.secrets() {
        out.push((format!("{key}.verify.{name}"), secret.expose().to_string()));
    }
    out
}

/// Weak secrets (short, few distinct characters, or a placeholder word) and secrets used
/// under two keys (one leaked key then opens the other).
fn secrets(config: &Config) -> Vec<Finding> {
    let all = all_secrets(config);
    let mut out = Vec::new();
    for (key, value) in &all {
        if let Some(why) = weakness(value) {
            out.push(Finding::problem(
                format!("{key} is weak: {why}"),
                "use a long random value, e.g. `openssl rand -hex 32` (`ferry init` writes fresh ones)",
            ));
        }
    }
    for (i, (key, value)) in all.iter().enumerate() {
        if let Some((other, _)) = all[..i].iter().find(|(_, v)| v == value) {
            out.push(Finding::problem(
                format!("{other} and {key} hold the same secret: whoever learns one holds both"),
                "give each its own random value",
            ));
        }
    }
    if out.is_empty() {
        out.push(Finding::ok(format!(
            "{} secrets: none weak, none reused",
            all.len()
        )));
    }
    out
}

/// Why a secret is easy to guess, if it is.
fn weakness(secret: &str) -> Option<String> {
    const PLACEHOLDERS: [&str; 8] = [
        "change", "secret", "password", "example", "token", "test", "default", "12345",
    ];
    // Basic auth's `user:password`: the password is the secret part.
    let secret = secret.rsplit_once(':').map_or(secret, |(_, p)| p);
    let lower = secret.to_ascii_lowercase();
    if let Some(word) = PLACEHOLDERS.iter().find(|w| lower.contains(*w)) {
        return Some(format!("it contains the placeholder word {word:?}"));
    }
    if secret.len() < 16 {
        return Some(format!("{} characters (16 or more, random)", secret.len()));
    }
    let distinct = secret
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    (distinct < 8).then(|| format!("only {distinct} distinct characters"))
}

/// Hook URLs (with their tokens) served over plain HTTP to a public address.
fn tls(config: &Config) -> Vec<Finding> {
    let s = &config.server;
    if s.tls.is_some() {
        return vec![Finding::ok("hooks are served over TLS (server.tls)")];
    }
    let public_http = s
        .public_url
        .strip_prefix("http://")
        .map(|rest| rest.split(['/', '?']).next().unwrap_or(rest))
        .filter(|authority| is_public_host(authority));
    let mut out = Vec::new();
    if let Some(host) = public_http {
        out.push(Finding::problem(
            format!("hook URLs are served without TLS on a public address ({host}): their tokens and every payload travel in clear"),
            "set [server] tls = { cert, key }, or put ferry behind an HTTPS proxy and set server.public_url to its https:// address",
        ));
    } else if !is_local(&s.listen) && s.public_url.starts_with("https://") {
        out.push(Finding::warning(
            format!("ferry listens on {} without TLS; public_url is HTTPS (a proxy, presumably)", s.listen),
            "let only the proxy reach that port (firewall, or listen on 127.0.0.1), and list it in server.trusted_proxies",
        ));
    } else if public_http.is_none() && s.public_url.starts_with("http://") {
        out.push(Finding::ok(
            "plain HTTP, on a loopback or private address only",
        ));
    }
    out
}

/// Whether `authority` (`host[:port]`) names a host beyond loopback and private networks.
fn is_public_host(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    match host.parse::<IpAddr>() {
        Ok(ip) => !is_private(ip),
        Err(_) => host != "localhost" && !host.ends_with(".localhost"),
    }
}

/// Whether a listen address (`ip:port`) is loopback.
fn is_local(listen: &str) -> bool {
    listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_secrets_are_named_with_why() {
        assert!(weakness("changeme-1234").is_some_and(|w| w.contains("change")));
        assert!(weakness("Ab3x9Qz").is_some_and(|w| w.contains("7 characters")));
        assert!(weakness("abababababababababab").is_some_and(|w| w.contains("2 distinct")));
        assert!(weakness("user:hunter2hunter2").is_some_and(|w| w.contains("14 characters")));
        assert_eq!(weakness("9f2c1e7a4b8d03e6f5a1c2b7"), None);
    }

    #[test]
    fn public_hosts() {
        for public in [
            "deploy.example.com",
            "198.51.100.7:8080",
            "[2001:db8::1]:80",
        ] {
            assert!(is_public_host(public), "{public}");
        }
        for private in [
            "127.0.0.1:8080",
            "localhost:8080",
            "10.1.2.3",
            "192.168.0.2:80",
            "[::1]:8080",
            "[fd00::1]",
        ] {
            assert!(!is_public_host(private), "{private}");
        }
    }
}
