//! The client commands (`deploy`, `rollback`, `status`, `logs`, `deliveries` (and one delivery,
//! printed by `delivery_view`), `replay`,
//! `cancel`, `notifications`): each talks to a running server's `/api/v1` with the admin token and prints a
//! table or follows a deployment to its end. `live.rs`: following over Server-Sent Events
//! (`logs --follow`) and the steps `--wait` shows.

mod live;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use super::{ClientArgs, load_config};
use crate::states::{DeliveryStatus, DeploymentState, NotificationState};

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
        // The config is read only for what the flags and environment leave out.
        let config = match (&args.server, &args.token) {
            (Some(_), Some(_)) => None,
            _ => Some(load_config(&args.config)),
        };
        let base = match (&args.server, &config) {
            (Some(s), _) => s.trim_end_matches('/').to_string(),
            (None, Some(Err(e))) => {
                return Err(anyhow!(
                    "cannot find the server: pass --server URL or set FERRY_SERVER\n  caused by: {e}"
                ));
            }
            (None, Some(Ok(c))) => match &c.server.admin_listen {
                // With an admin listener the API lives only there.
                Some(addr) => admin_url(addr),
                None => c.server.public_url.clone(),
            },
            (None, None) => unreachable!("the config is read when --server is missing"),
        };
        let from_config = || match &config {
            Some(Ok(c)) => c
                .server
                .admin_token
                .as_ref()
                .map(|t| t.expose().to_string()),
            _ => None,
        };
        let token = args.token.clone().or_else(from_config).ok_or_else(|| {
            anyhow!(
                "no admin token: pass --token, set FERRY_ADMIN_TOKEN, or set server.admin_token in {}",
                args.config.display()
            )
        })?;
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

pub(crate) async fn deploy(
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
pub(crate) async fn rollback(
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

/// Waits until a delivery is planned and every deployment it caused has ended; prints each
/// step as it ends (a spinner on the current one on a terminal), then each deployment's end.
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
    let progress = live::Progress::new();
    for dep in ids {
        let Some(dep) = dep.as_i64() else { continue };
        let final_state = live::wait_deployment(c, dep, &progress).await?;
        let ok = state_of(&final_state).is_some_and(DeploymentState::is_success);
        let state = s(&final_state["state"]);
        all_ok &= ok;
        progress.line(&format!(
            "deployment {dep} {} {state}{}",
            s(&final_state["service"]),
            final_state["reason"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
    }
    progress.finish();
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

pub(crate) async fn status(app: Option<&str>, client: &ClientArgs) -> anyhow::Result<ExitCode> {
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
                s(&r["reconcile"]["next_at"]),
            ]
        })
        .collect();
    table(
        &[
            "APP",
            "SERVICE",
            "CURRENT",
            "LAST",
            "STATE",
            "VERSION",
            "FINISHED",
            "NEXT RECONCILE",
        ],
        rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// `ferry logs ID`: the log so far; with `--follow`, live until the deployment ends.
pub(crate) async fn logs(id: i64, follow: bool, client: &ClientArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(client)?;
    if follow {
        return live::follow_log(&c, id).await;
    }
    let url = format!("{}/api/v1/deployments/{id}/logs", c.base);
    let bytes = c.send(c.http.get(url)).await?.bytes().await?;
    let mut out = std::io::stdout();
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn deliveries(
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

/// `ferry deliveries ID`: one delivery, as the inspector shows it (`--json`: the API's JSON;
/// `--raw`: the body as stored).
pub(crate) async fn delivery(
    id: i64,
    raw: bool,
    as_json: bool,
    client: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let c = Client::new(client)?;
    let v = c.get(&format!("/deliveries/{id}")).await?;
    let text = if as_json {
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        super::delivery_view::render(&v, raw)
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn replay(id: i64, client: &ClientArgs) -> anyhow::Result<ExitCode> {
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
pub(crate) async fn cancel(id: i64, client: &ClientArgs) -> anyhow::Result<ExitCode> {
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
pub(crate) async fn notifications(
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

/// `ferry alerts`: the alerts received, newest first, with the rule, outcome and reason.
pub(crate) async fn alerts(
    (app, outcome): (Option<&str>, Option<&str>),
    limit: i64,
    client: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let c = Client::new(client)?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &limit.to_string());
    if let Some(a) = app {
        query.append_pair("app", a);
    }
    if let Some(o) = outcome {
        query.append_pair("outcome", o);
    }
    let v = c.get(&format!("/alerts?{}", query.finish())).await?;
    let rows = v["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            vec![
                s(&a["id"]),
                s(&a["created_at"]),
                s(&a["app"]),
                s(&a["alertname"]),
                s(&a["status"]),
                s(&a["fingerprint"]),
                s(&a["rule"]),
                s(&a["outcome"]),
                s(&a["deployment_id"]),
                s(&a["delivery_id"]),
                s(&a["reason"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "RECEIVED",
            "APP",
            "ALERT",
            "STATUS",
            "FINGERPRINT",
            "RULE",
            "OUTCOME",
            "DEPLOYMENT",
            "DELIVERY",
            "REASON",
        ],
        rows,
    );
    Ok(ExitCode::SUCCESS)
}
