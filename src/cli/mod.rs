//! The command line: `serve`, `check`, `hooks` work on the config file; `deploy`, `rollback`,
//! `status`, `logs`, `deliveries`, `replay`, `cancel` and `notifications` are clients of a
//! running server's API.
//! They find the server through `--server`, else the config: `server.admin_listen` when set
//! (the API is only there then), else `server.public_url`.
//!
//! Each command returns an exit code or an error; [`main`] prints errors in one place. The
//! binary (`src/main.rs`) only calls [`main`], so this is the top of the layers: the only
//! module that may import `server`.
//!
//! - `config_file.rs`: `check` and `hooks`, and loading the config for `serve`.
//! - `client.rs`: the API client commands and their table output.
//! - `delivery_view.rs`: `ferry deliveries ID`, one delivery printed like the inspector.
//! - `import.rs`: `ferry import webhook FILE`, another tool's hooks as a ferry.toml.
//! - `migrate.rs`: `ferry migrate --to postgres://…`, the SQLite store copied to PostgreSQL.

mod client;
mod config_file;
mod delivery_view;
mod doctor;
mod import;
mod init;
mod migrate;

pub(crate) use client::{
    alerts, cancel, deliveries, delivery, deploy, logs, notifications, replay, rollback, status,
};
pub(crate) use config_file::{check, hooks, load_config};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

/// `ferry --version`: the release and the commit it was built from (`build.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FERRY_COMMIT"), ")");

#[derive(Parser)]
#[command(
    name = "ferry",
    version = VERSION,
    about = "Secret redeploy hook URLs that verify, store durably, and deploy."
)]
pub(crate) struct Cli {
    /// Log format of `ferry serve` (on stderr).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "FERRY_LOG_FORMAT"
    )]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(clap::Args)]
pub(crate) struct ConfigArg {
    /// The config file.
    #[arg(long, short, env = "FERRY_CONFIG", default_value = "ferry.toml")]
    pub(crate) config: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct ClientArgs {
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
pub(crate) enum Command {
    /// Run the server.
    Serve(ConfigArg),
    /// Write a starter config with fresh random secrets for one sender, and print the next
    /// steps (start, what to paste into the sender, a test request). Never overwrites.
    Init {
        #[command(flatten)]
        config: ConfigArg,
        /// Who will send the hooks.
        #[arg(long, value_enum, default_value = "github")]
        sender: init::Sender,
    },
    /// Convert another tool's hooks into a ferry.toml (printed, or written with --output).
    /// Exit status: 0 complete, 1 the input could not be read, 2 imported with omissions
    /// (listed on stderr by hook and rule).
    Import {
        /// What FILE is: `webhook` (adnanh/webhook's hooks.json or hooks.yaml).
        #[arg(value_enum)]
        what: import::ImportKind,
        /// The file to convert.
        file: PathBuf,
        /// Write the config here (mode 600, never over a file) instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Validate the config; errors name the key and the line.
    Check(ConfigArg),
    /// Check what a first run trips on (config, data dir, Docker, public_url, secrets, TLS)
    /// and print each finding with its fix; exit 1 if any is a problem.
    Doctor(ConfigArg),
    /// Copy this ferry's SQLite store (deliveries, deployments and their steps, events,
    /// notifications, deploy logs) into an empty PostgreSQL database, in one transaction, for
    /// a move to replicas. Stop ferry first. The SQLite store is only read; on any error
    /// nothing is copied.
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
        /// The PostgreSQL database to copy into (postgres://USER:PASSWORD@HOST/DATABASE); it
        /// must hold no row yet. Never printed: only its host and database name are.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Print a completion script for SHELL (e.g. `ferry completions bash >
    /// /etc/bash_completion.d/ferry`).
    Completions { shell: clap_complete::Shell },
    /// Print the man page of ferry, or of one of its commands (roff; e.g. `ferry man >
    /// ferry.1`, `ferry man init > ferry-init.1`).
    Man { command: Option<String> },
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
        /// Wait until the deployments end, showing each step; exit 1 unless all succeeded.
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
        /// Wait until the rollback ends, showing each step; exit 1 unless it succeeded.
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
        /// Keep printing as lines are written (live, over Server-Sent Events) until the
        /// deployment ends.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Received requests, newest first; or, given a delivery id, that delivery in full: how it
    /// came, who verified it, what it was parsed into, what it deployed or why not, its
    /// headers and body.
    Deliveries {
        /// An app whose deliveries to list, or a delivery id (all digits) to show.
        #[arg(value_name = "APP|ID")]
        app: Option<String>,
        #[arg(long, default_value = "20")]
        limit: i64,
        /// With an id: the body as stored instead of pretty-printed.
        #[arg(long)]
        raw: bool,
        /// With an id: the API's JSON.
        #[arg(long)]
        json: bool,
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
    /// Alertmanager alerts received, newest first: the rule that matched each, its outcome
    /// (acted, duplicate, cooldown, capped, unmatched, no_action) and why.
    Alerts {
        #[arg(long)]
        app: Option<String>,
        /// Only this outcome.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long, default_value = "100")]
        limit: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// The binary's `main`: parses the arguments, runs the command, prints an error once with its
/// causes.
pub fn main() -> ExitCode {
    // One TLS crypto provider for the process (aws-lc-rs, which reqwest uses too); ferry's own
    // TLS code passes it explicitly, this covers every other rustls user.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        quiet_broken_pipe();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferry: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A command's output piped into `head` ends it quietly, as other Unix tools end: Rust ignores
/// SIGPIPE, so `print!` to a closed pipe would panic. Not for `serve`, which must outlive any
/// reader (sockets never raise SIGPIPE: Rust writes them with `MSG_NOSIGNAL`).
fn quiet_broken_pipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called before any thread starts; the default action needs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Check(args) => return check(args),
        Command::Init { config, sender } => return init::init(&config.config, *sender),
        Command::Import { what, file, output } => {
            return import::import(*what, file, output.as_deref());
        }
        Command::Completions { shell } => return completions(*shell),
        Command::Man { command } => return man(command.as_deref()),
        Command::Hooks {
            config,
            show_secrets,
        } => return hooks(config, *show_secrets),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(cli))
}

/// The commands that need the async runtime.
async fn run_async(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(&args, cli.log_format).await,
        Command::Doctor(args) => doctor::doctor(&args.config).await,
        Command::Migrate { config, to } => migrate::migrate(&config.config, &to).await,
        Command::Rollback {
            app,
            service,
            to,
            wait,
            client,
        } => rollback(&app, &service, to, wait, &client).await,
        Command::Deploy {
            app,
            services,
            profile,
            git_ref,
            wait,
            client,
        } => {
            deploy(
                &app,
                &services,
                profile.as_deref(),
                git_ref.as_deref(),
                wait,
                &client,
            )
            .await
        }
        Command::Status { app, client } => status(app.as_deref(), &client).await,
        Command::Logs {
            deployment,
            follow,
            client,
        } => logs(deployment, follow, &client).await,
        Command::Deliveries {
            app,
            limit,
            raw,
            json,
            client,
        } => match app.as_deref().map(str::parse::<i64>) {
            Some(Ok(id)) => delivery(id, raw, json, &client).await,
            _ => deliveries(app.as_deref(), limit, &client).await,
        },
        Command::Replay { delivery, client } => replay(delivery, &client).await,
        Command::Cancel { deployment, client } => cancel(deployment, &client).await,
        Command::Notifications {
            failed,
            app,
            limit,
            client,
        } => notifications(failed, app.as_deref(), limit, &client).await,
        Command::Alerts {
            app,
            outcome,
            limit,
            client,
        } => alerts((app.as_deref(), outcome.as_deref()), limit, &client).await,
        Command::Check(_)
        | Command::Hooks { .. }
        | Command::Init { .. }
        | Command::Import { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => unreachable!("handled in run"),
    }
}

/// The completion script for `shell`, generated from these clap definitions.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// A man page generated from these clap definitions: ferry(1), or ferry-COMMAND(1).
fn man(command: Option<&str>) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let cli = Cli::command();
    let page = match command {
        None => cli,
        Some(name) => {
            let sub = cli
                .find_subcommand(name)
                .ok_or_else(|| anyhow::anyhow!("ferry has no command {name:?}"))?;
            let title = format!("ferry-{name}");
            sub.clone()
                .name(title.clone())
                .bin_name(format!("ferry {name}"))
                .display_name(title)
                .version(VERSION)
        }
    };
    match clap_mangen::Man::new(page).render(&mut std::io::stdout().lock()) {
        // `ferry man | head` is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

async fn serve(args: &ConfigArg, format: LogFormat) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config)?;
    // Held until serve returns: the last lines are written before the process exits.
    let _log = crate::logging::init(format);
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
    crate::server::serve(listener, config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
}
