//! The `ferry` binary: parses arguments and hands over to the library. Errors are printed here,
//! once, with their causes.

use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{self, Cli, Command};

fn main() -> ExitCode {
    // One TLS crypto provider for the process (aws-lc-rs, which reqwest uses too); ferry's own
    // TLS code passes it explicitly, this covers every other rustls user.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Check(args) => return cli::check(args),
        Command::Hooks {
            config,
            show_secrets,
        } => return cli::hooks(config, *show_secrets),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(&args, cli.log_format).await,
            Command::Rollback {
                app,
                service,
                to,
                wait,
                client,
            } => cli::rollback(&app, &service, to, wait, &client).await,
            Command::Deploy {
                app,
                services,
                profile,
                git_ref,
                wait,
                client,
            } => {
                cli::deploy(
                    &app,
                    &services,
                    profile.as_deref(),
                    git_ref.as_deref(),
                    wait,
                    &client,
                )
                .await
            }
            Command::Status { app, client } => cli::status(app.as_deref(), &client).await,
            Command::Logs {
                deployment,
                follow,
                client,
            } => cli::logs(deployment, follow, &client).await,
            Command::Deliveries { app, limit, client } => {
                cli::deliveries(app.as_deref(), limit, &client).await
            }
            Command::Replay { delivery, client } => cli::replay(delivery, &client).await,
            Command::Cancel { deployment, client } => cli::cancel(deployment, &client).await,
            Command::Notifications {
                failed,
                app,
                limit,
                client,
            } => cli::notifications(failed, app.as_deref(), limit, &client).await,
            Command::Check(_) | Command::Hooks { .. } => unreachable!("handled above"),
        }
    })
}

async fn serve(args: &cli::ConfigArg, format: cli::LogFormat) -> anyhow::Result<ExitCode> {
    let config = cli::load_config(&args.config)?;
    ferry::logging::init(format);
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
    ferry::serve(listener, config, shutdown_signal()).await?;
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
