//! The command line: `serve`, `check`, `hooks` work on the config file; `deploy`, `rollback`,
//! `status`, `logs`, `deliveries`, `replay`, `cancel` and `notifications` are clients of a
//! running server's API.
//! They find the server through `--server`, else the config: `server.admin_listen` when set
//! (the API is only there then), else `server.public_url`.
//!
//! Each command returns an exit code or an error; `main` prints errors in one place.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::config::{self, ConfigError};
use crate::states::{DeliveryStatus, DeploymentState, NotificationState};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Secret redeploy hook URLs that verify, store durably, and deploy."
)]
pub struct Cli {
    /// Log format of `ferry serve` (on stderr).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "FERRY_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(long, short, env = "FERRY_CONFIG", default_value = "ferry.toml")]
    pub config: PathBuf,
}

#[derive(clap::Args)]
pub struct ClientArgs {
    /// The ferry server's URL (default: the config's server.public_url).
    #[arg(long, env = "FERRY_SERVER")]
    server: Option<String>,
    /// The admin token.
    #[arg(long, env = "FERRY_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The config file, to find the server when --server is not given.
    #[arg(long, short, env = "FERRY_CONFIG", default_value = "ferry.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ConfigArg),
    /// Validate the config; errors name the key and the line.
    Check(ConfigArg),
    /// Print every app's hook URL and what to paste into each configured sender.
    Hooks {
        #[command(flatten)]
        config: ConfigArg,
        /// Print secrets instead of naming the config key that holds them.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Trigger a deployment through the running server.
    Deploy {
        app: String,
        /// Only these services (comma-separated).
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Use this deployment profile.
        #[arg(long)]
        profile: Option<String>,
        /// Deploy this branch, tag or commit to git-based services.
        #[arg(long = "ref")]
        git_ref: Option<String>,
        /// Wait until the deployments end; exit 1 unless all succeeded.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Redeploy a service's previous successful version (by digest for images).
    Rollback {
        app: String,
        service: String,
        /// Go back to the version of this deployment instead.
        #[arg(long)]
        to: Option<i64>,
        /// Wait until the rollback ends; exit 1 unless it succeeded.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Services with their current version and last deployment.
    Status {
        app: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A deployment's log.
    Logs {
        deployment: i64,
        /// Keep printing until the deployment ends.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Received requests, newest first.
    Deliveries {
        app: Option<String>,
        #[arg(long, default_value = "20")]
        limit: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Process a stored delivery again, as a new delivery.
    Replay {
        delivery: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a deployment: a queued one never runs; a running one is stopped (its process
    /// group killed, a container replacement rolled back).
    Cancel {
        deployment: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Outgoing notifications (webhooks, Docker Hub callbacks), newest first.
    Notifications {
        /// Only the dead ones: refused, or still failing when `notify_retry_for` ran out.
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        app: Option<String>,
        #[arg(long, default_value = "100")]
        limit: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Loads the config, turning its errors into the message `check` and `serve` print.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<config::Config> {
    config::load(path).map_err(|e| match e {
        ConfigError::Invalid(_) => anyhow!("{e}"),
        ConfigError::Read { .. } => anyhow!("{e}"),
    })
}

pub fn check(args: &ConfigArg) -> anyhow::Result<ExitCode> {
    let c = load_config(&args.config)?;
    let services: usize = c.apps.values().map(|a| a.services.len()).sum();
    println!(
        "{}: ok ({} apps, {} services)",
        args.config.display(),
        c.apps.len(),
        services
    );
    if c.server.admin_token.is_none() {
        eprintln!(
            "warning: server.admin_token is not set: the API and client commands are disabled"
        );
    }
    warn_readable_secret_files(&c);
    for warning in verify_warnings(&c) {
        eprintln!("warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Secret files that others than their owner may read are worth a warning, not an error
/// (a Kubernetes secret volume may be group-readable on purpose, with `fsGroup`).
fn warn_readable_secret_files(c: &config::Config) {
    use std::os::unix::fs::PermissionsExt;
    for (key, path) in &c.secret_files {
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "warning: {key}: secret file {} is readable by others (mode {mode:o}); chmod 600 it",
                    path.display()
                );
            }
        }
    }
}

/// What `check` says about apps whose deliveries are not all verified: with no scheme at all,
/// the hook URL alone steers the app (any branch, commit or image a request names).
fn verify_warnings(c: &config::Config) -> Vec<String> {
    let mut out = Vec::new();
    for app in c.apps.values() {
        let name = &app.name;
        if !app.verify.configured() {
            out.push(format!(
                "apps.{name} verifies no sender: anyone holding its hook URL can deploy any branch, commit or image a request names; add apps.{name}.verify.github (or gitlab, bitbucket, gitea, standard, hmac, bearer, basic)"
            ));
        } else if app.verify.allow_unsigned {
            out.push(format!(
                "apps.{name}.verify.allow_unsigned is set: anyone holding its hook URL can redeploy its configured services (never a version they name)"
            ));
        }
    }
    out
}

pub fn hooks(args: &ConfigArg, show_secrets: bool) -> anyhow::Result<ExitCode> {
    let c = load_config(&args.config)?;
    for app in c.apps.values() {
        let url = app.hook_url(&c.server.public_url);
        println!("{}\t{url}", app.name);
        // What to paste into each sender: every sender's file writes its own line.
        for line in crate::sources::setup_lines(app, &url, show_secrets) {
            println!("    {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The URL of `server.admin_listen` (plain HTTP) as a client reaches it: a wildcard address
/// (`0.0.0.0`, `[::]`) means this host.
fn admin_url(listen: &str) -> String {
    let addr = if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_string()
    };
    format!("http://{addr}")
}

/// A small blocking-free client for the API.
struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let base = match &args.server {
            Some(s) => s.trim_end_matches('/').to_string(),
            None => {
                let c = load_config(&args.config)
                    .context("cannot find the server: pass --server URL or set FERRY_SERVER")?;
                // With an admin listener the API lives only there.
                match &c.server.admin_listen {
                    Some(addr) => admin_url(addr),
                    None => c.server.public_url,
                }
            }
        };
        let token = args
            .token
            .clone()
            .ok_or_else(|| anyhow!("no admin token: pass --token or set FERRY_ADMIN_TOKEN"))?;
        let http = crate::outgoing::builder(Duration::from_secs(30)).build()?;
        Ok(Client { base, token, http })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach ferry at {}", self.base))?;
        if !resp.status().is_success() {
            let code = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("server answered {code}: {message}");
        }
        Ok(resp)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1{path}", self.base);
        Ok(self.send(self.http.get(url)).await?.json().await?)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1{path}", self.base);
        Ok(self
            .send(self.http.post(url).json(&body))
            .await?
            .json()
            .await?)
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn short(v: &Value) -> String {
    let text = s(v);
    if text.len() == 40 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        text[..12].to_string()
    } else {
        text
    }
}

/// Prints rows as aligned columns.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

pub async fn deploy(
    app: &str,
    services: &[String],
    profile: Option<&str>,
    git_ref: Option<&str>,
    wait: bool,
    client: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let c = Client::new(client)?;
    let body = json!({
        "services": if services.is_empty() { Value::Null } else { json!(services) },
        "profile": profile,
        "ref": git_ref,
    });
    let answer = c.post(&format!("/apps/{app}/deploy"), body).await?;
    let id = answer["delivery_id"]
        .as_i64()
        .ok_or_else(|| anyhow!("unexpected answer: {answer}"))?;
    println!("delivery {id} accepted");
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    wait_for(&c, id).await
}

/// `ferry rollback`: redeploy a service's previous successful version (or that of `to`).
pub async fn rollback(
    app: &str,
    service: &str,
    to: Option<i64>,
    wait: bool,
    client: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let c = Client::new(client)?;
    let answer = c
        .post(
            &format!("/apps/{app}/services/{service}/rollback"),
            json!({ "to": to }),
        )
        .await?;
    let id = answer["delivery_id"]
        .as_i64()
        .ok_or_else(|| anyhow!("unexpected answer: {answer}"))?;
    println!("rollback request {id} accepted");
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    wait_for(&c, id).await
}

/// Waits until a delivery is planned and every deployment it caused has ended; prints each.
/// Exit status 1 unless all succeeded (or were skipped).
async fn wait_for(c: &Client, id: i64) -> anyhow::Result<ExitCode> {
    // Wait for planning, then for every deployment it caused to end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
    let ids = loop {
        let d = c.get(&format!("/deliveries/{id}")).await?;
        let status = d["status"].as_str().and_then(|s| s.parse().ok());
        if status.is_none_or(DeliveryStatus::is_final) {
            if let Some(e) = d["error"].as_str() {
                bail!("delivery {id} deploys nothing: {e}");
            }
            break d["deployments"].as_array().cloned().unwrap_or_default();
        }
        if tokio::time::Instant::now() > deadline {
            bail!("gave up waiting for delivery {id} to be planned");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut all_ok = true;
    for dep in ids {
        let Some(dep) = dep.as_i64() else { continue };
        let final_state = loop {
            let d = c.get(&format!("/deployments/{dep}")).await?;
            if state_of(&d).is_some_and(|s| !s.is_final()) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            } else {
                break d;
            }
        };
        let ok = state_of(&final_state).is_some_and(DeploymentState::is_success);
        let state = s(&final_state["state"]);
        all_ok &= ok;
        println!(
            "deployment {dep} {} {state}{}",
            s(&final_state["service"]),
            final_state["reason"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A deployment JSON's state; `None` for a name this client does not know (taken as ended).
fn state_of(deployment: &Value) -> Option<DeploymentState> {
    deployment["state"].as_str()?.parse().ok()
}

pub async fn status(app: Option<&str>, client: &ClientArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(client)?;
    let path = match app {
        Some(a) => format!("/status?app={a}"),
        None => "/status".to_string(),
    };
    let v = c.get(&path).await?;
    let rows = v["services"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let latest = &r["latest"];
            vec![
                s(&r["app"]),
                s(&r["service"]),
                short(&r["current"]["version"]),
                s(&latest["id"]),
                s(&latest["state"]),
                short(&latest["version"]),
                s(&latest["finished_at"]),
            ]
        })
        .collect();
    table(
        &[
            "APP", "SERVICE", "CURRENT", "LAST", "STATE", "VERSION", "FINISHED",
        ],
        rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn logs(id: i64, follow: bool, client: &ClientArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(client)?;
    let mut offset = 0u64;
    let mut out = std::io::stdout();
    loop {
        let url = format!("{}/api/v1/deployments/{id}/logs?offset={offset}", c.base);
        let resp = c.send(c.http.get(url)).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let next = header("x-ferry-log-offset").and_then(|v| v.parse().ok());
        let state = header("x-ferry-deployment-state").unwrap_or_default();
        let bytes = resp.bytes().await?;
        out.write_all(&bytes)?;
        out.flush()?;
        offset = next.unwrap_or(offset + bytes.len() as u64);
        let ended = state
            .parse::<DeploymentState>()
            .map_or(true, DeploymentState::is_final);
        if !follow || ended {
            if follow && !bytes.is_empty() {
                continue; // drain what was written before the end
            }
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn deliveries(
    app: Option<&str>,
    limit: i64,
    client: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let c = Client::new(client)?;
    let mut path = format!("/deliveries?limit={limit}");
    if let Some(a) = app {
        path.push_str(&format!("&app={a}"));
    }
    let v = c.get(&path).await?;
    let rows = v["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let deployments: Vec<String> = d["deployments"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default();
            vec![
                s(&d["id"]),
                s(&d["received_at"]),
                s(&d["app"]),
                s(&d["source"]),
                s(&d["event"]),
                s(&d["status"]),
                if d["verified"] == true {
                    "yes".into()
                } else {
                    "no".into()
                },
                if deployments.is_empty() {
                    "-".into()
                } else {
                    deployments.join(",")
                },
                s(&d["error"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "RECEIVED",
            "APP",
            "SOURCE",
            "EVENT",
            "STATUS",
            "VERIFIED",
            "DEPLOYMENTS",
            "ERROR",
        ],
        rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn replay(id: i64, client: &ClientArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(client)?;
    let v = c
        .post(&format!("/deliveries/{id}/replay"), json!({}))
        .await?;
    println!(
        "delivery {} accepted (replay of {id})",
        s(&v["delivery_id"])
    );
    Ok(ExitCode::SUCCESS)
}

/// `ferry cancel`: a queued deployment is cancelled at once; a running one is being stopped
/// when this returns (`ferry logs --follow ID` shows it end).
pub async fn cancel(id: i64, client: &ClientArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(client)?;
    let d = c
        .post(&format!("/deployments/{id}/cancel"), json!({}))
        .await?;
    match state_of(&d) {
        Some(DeploymentState::Cancelled) => println!("deployment {id} cancelled"),
        _ => println!(
            "deployment {id} is {}: cancelling (its run is being stopped)",
            s(&d["state"])
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `ferry notifications`: the outbox as a table (what went where, how often it was tried, the
/// last error). `--failed` shows only the dead ones.
pub async fn notifications(
    failed: bool,
    app: Option<&str>,
    limit: i64,
    client: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let c = Client::new(client)?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &limit.to_string());
    if failed {
        query.append_pair("state", NotificationState::Dead.as_str());
    }
    if let Some(a) = app {
        query.append_pair("app", a);
    }
    let v = c.get(&format!("/notifications?{}", query.finish())).await?;
    let rows = v["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| {
            let about = match (&n["deployment_id"], &n["delivery_id"]) {
                (Value::Number(d), _) => format!("deployment {d}"),
                (_, Value::Number(d)) => format!("delivery {d}"),
                _ => "-".into(),
            };
            let last = match (&n["last_status"], &n["last_error"]) {
                (_, Value::String(e)) => e.clone(),
                (Value::Number(s), _) => format!("answered {s}"),
                _ => "-".into(),
            };
            vec![
                s(&n["id"]),
                s(&n["created_at"]),
                s(&n["state"]),
                s(&n["event"]),
                s(&n["app"]),
                about,
                s(&n["receiver"]),
                s(&n["attempts"]),
                last,
            ]
        })
        .collect();
    table(
        &[
            "ID", "CREATED", "STATE", "EVENT", "APP", "ABOUT", "RECEIVER", "TRIES", "LAST",
        ],
        rows,
    );
    Ok(ExitCode::SUCCESS)
}
