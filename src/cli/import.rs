//! `ferry import webhook FILE`: an adnanh/webhook hooks file (JSON or YAML) converted into a
//! `ferry.toml`, printed on stdout or created (0600, never over a file) with `--output`.
//!
//! Each hook becomes an app with one command service and a fresh URL token; what ferry has no
//! equivalent for is listed on stderr by hook and rule. Exit status: 0 the import is complete,
//! 1 the input could not be read (the error names the file and line), 2 imported with
//! omissions. The conversion itself is `webhook.rs`; this file reads, parses and writes.

mod webhook;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow};

/// What `ferry import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ImportKind {
    /// An adnanh/webhook hooks file (`hooks.json` or `hooks.yaml`).
    Webhook,
}

/// Exit status of an import that left something out (listed on stderr).
const OMISSIONS: u8 = 2;

pub(crate) fn import(
    kind: ImportKind,
    file: &Path,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let ImportKind::Webhook = kind;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let value = parse(file, &text)?;
    let token = || super::init::random_hex(16);
    let admin = super::init::random_hex(32)?;
    let imported =
        webhook::convert(&value, &admin, token).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    for o in &imported.omissions {
        eprintln!("{}: {o}", file.display());
    }
    for n in &imported.notes {
        eprintln!("{}: note: {n}", file.display());
    }
    match output {
        Some(path) => {
            super::init::write_new(path, &imported.text, "--output")?;
            eprintln!("wrote {} (mode 600: it holds the secrets)", path.display());
        }
        None => print!("{}", imported.text),
    }
    if imported.omissions.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{}: imported with {} omission(s): what is listed above is not in the config",
            file.display(),
            imported.omissions.len()
        );
        Ok(ExitCode::from(OMISSIONS))
    }
}

/// The hooks file as a JSON value. `.yaml`/`.yml` are YAML; anything else is read as JSON and,
/// failing that, as YAML (the peer reads every file with a YAML parser, which takes JSON with
/// trailing commas too); the error then is JSON's, with the file, line and column.
fn parse(file: &Path, text: &str) -> anyhow::Result<serde_json::Value> {
    let yaml = matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let from_yaml = |text: &str| {
        serde_yaml_ng::from_str::<serde_json::Value>(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            anyhow!("{}{at}: not valid YAML: {e}", file.display())
        })
    };
    if yaml {
        return from_yaml(text);
    }
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(json) => from_yaml(text).map_err(|_| {
            let (line, column) = (json.line(), json.column());
            let full = json.to_string();
            let why = full
                .strip_suffix(&format!(" at line {line} column {column}"))
                .unwrap_or(&full);
            anyhow!("{}:{line}:{column}: not valid JSON: {why}", file.display())
        }),
    }
}
