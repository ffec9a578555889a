//! The validator: turns the raw TOML (`raw`) into a [`Config`], collecting every problem.
//!
//! One `Validator` lives for one parse. It holds what every check needs — the text (for line
//! numbers), the environment (for `${VAR}`), the diagnostics so far — and what is gathered on
//! the way (names of env vars and files that held secrets). The checks themselves are
//! `impl Validator` blocks next to the section they read: `server`, `apps`, `verify`,
//! `services`, `executors`, `checkout`, `notify`, with the readers of single values in `values` and of secrets in
//! `secrets`. A check that fails records a diagnostic and goes on, so `ferry check` reports
//! every error at once, in the order the checks run.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{Config, Diagnostic, raw};

pub(super) struct Validator<'a> {
    text: &'a str,
    file: String,
    /// The config file's directory: relative secret files are read from there.
    pub(super) config_dir: PathBuf,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) diags: Vec<Diagnostic>,
    pub(super) secret_env_vars: Vec<String>,
    pub(super) secret_files: Vec<(String, PathBuf)>,
    /// `apps.X.verify.client_cert = true` settings (key, span), checked against
    /// `server.client_ca` once every app is read.
    pub(super) client_cert_apps: Vec<(String, Range<usize>)>,
    /// Every `checkout.path` (key, path, span), checked against each other, the data dir and
    /// the config file once every app is read.
    pub(super) checkout_paths: Vec<(String, PathBuf, Range<usize>)>,
}

impl<'a> Validator<'a> {
    /// A validator for `text`, read from `path` (named in messages) in `config_dir`.
    pub(super) fn new(
        text: &'a str,
        path: &Path,
        config_dir: PathBuf,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Self {
        Validator {
            text,
            file: path.display().to_string(),
            config_dir,
            env,
            diags: Vec::new(),
            secret_env_vars: Vec::new(),
            secret_files: Vec::new(),
            client_cert_apps: Vec::new(),
            checkout_paths: Vec::new(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Records a problem with `key`, on the line where `span` starts.
    pub(super) fn error(&mut self, span: Option<Range<usize>>, key: &str, message: String) {
        let line = span.map(|s| self.line_of(s.start));
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message,
        });
    }

    /// Records the TOML parser's error: the file could not be read as `raw` at all.
    pub(super) fn syntax_error(&mut self, e: &toml::de::Error) {
        let line = e.span().map(|s| self.line_of(s.start));
        // toml's message may not name the key ("duplicate key"): name what the span covers.
        let mut message = e.message().trim_end().to_string();
        if let Some(span) = e.span()
            && let Some(snippet) = self.text.get(span.clone())
        {
            let snippet = snippet.lines().next().unwrap_or("").trim();
            if !snippet.is_empty() && !message.contains(snippet) && snippet.len() <= 80 {
                message = format!("{message}: `{snippet}`");
            }
        }
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            key: String::new(),
            message,
        });
    }

    /// The whole file: `[server]`, every app, then the checks that span sections.
    pub(super) fn validate(&mut self, raw: raw::File, path: &Path, dir: &Path) -> Config {
        let server = self.server(raw.server, dir);
        let apps = self.apps(raw.apps, dir);
        self.check_client_cert_apps(&server);
        self.check_checkout_paths(&server.data_dir, path);
        let notify = self.notify(&raw.notify, &apps);
        Config {
            path: path.to_path_buf(),
            server,
            apps,
            notify,
            secret_env_vars: std::mem::take(&mut self.secret_env_vars),
            secret_files: std::mem::take(&mut self.secret_files),
        }
    }
}
