//! ferry's own logs: one structured line per delivery and per deployment state change, on
//! stderr, human-readable by default or JSON (`--log-format json`). `RUST_LOG` filters them.
//! Secrets never reach a log line: config secrets are [`crate::config::Secret`]s whose `Debug`
//! is redacted, and no handler logs tokens, signatures or payloads.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests calling into the library) is harmless; ignore its error.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}
