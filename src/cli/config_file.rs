//! The commands that read the config file and need no server: `check` (validate, then warn
//! about what is valid but risky: unverified senders, secret files others may read, ssh
//! checkouts that trust host keys on first use) and `hooks` (every app's hook URL and what to
//! paste into each sender); `load_config` is also what `serve` reads the config with.

use std::process::ExitCode;

use anyhow::anyhow;

use super::ConfigArg;
use crate::config::{self, ConfigError};

/// Loads the config, turning its errors into the message `check` and `serve` print.
pub(crate) fn load_config(path: &std::path::Path) -> anyhow::Result<config::Config> {
    // The message already names the cause (file, line, key): printing the error's source
    // chain as well would say it twice.
    config::load(path).map_err(|e: ConfigError| anyhow!("{e}"))
}

pub(crate) fn check(args: &ConfigArg) -> anyhow::Result<ExitCode> {
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
    for warning in verify_warnings(&c).into_iter().chain(host_key_warnings(&c)) {
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
            if !app.alerts.is_empty() {
                out.push(format!(
                    "apps.{name} has alert rules: anyone holding its hook URL can post alerts that fire them (run their commands with the alert's values in FERRY_ALERT_*, restart or redeploy services), held back only by cooldown and max_per_hour; set apps.{name}.verify.bearer (or basic) and the same credential in Alertmanager's http_config"
                ));
            }
            if let Some(tables) = reporting_tables(app) {
                out.push(format!(
                    "apps.{name} reports to {tables} with your token: anyone holding its hook URL can make ferry create deployments and post statuses on any commit of the configured repository (and on GitHub deployments others created); verify the sender"
                ));
            }
        } else if app.verify.allow_unsigned {
            out.push(format!(
                "apps.{name}.verify.allow_unsigned is set: anyone holding its hook URL can redeploy its configured services (never a version they name)"
            ));
        }
    }
    out
}

/// Checkouts over ssh that pin no host keys: ssh trusts whatever key the server shows first.
fn host_key_warnings(c: &config::Config) -> Vec<String> {
    let mut out = Vec::new();
    for app in c.apps.values() {
        for s in app.services.values() {
            let config::Executor::Command {
                checkout: Some(checkout),
                ..
            } = &s.executor
            else {
                continue;
            };
            if checkout.over_ssh() && checkout.known_hosts.is_none() {
                out.push(format!(
                    "apps.{}.services.{}.checkout fetches over ssh trusting the server's host key on first use (then as the ferry user's ~/.ssh/known_hosts holds it): pin it with checkout.known_hosts, e.g. from `ssh-keyscan` after checking its fingerprint",
                    app.name, s.name
                ));
            }
        }
    }
    out
}

/// The tables through which `app` reports to git hosts with a token, if any
/// (`apps.X.github, apps.X.gitlab`).
fn reporting_tables(app: &config::App) -> Option<String> {
    let s = &app.commit_statuses;
    let tables: Vec<String> = [
        ("github", app.github.is_some()),
        ("gitlab", s.gitlab.is_some()),
        ("gitea", s.gitea.is_some()),
        ("bitbucket", s.bitbucket.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(t, _)| format!("apps.{}.{t}", app.name))
    .collect();
    (!tables.is_empty()).then(|| tables.join(", "))
}

pub(crate) fn hooks(args: &ConfigArg, show_secrets: bool) -> anyhow::Result<ExitCode> {
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
