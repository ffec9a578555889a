//! What the config's unit tests share: parse a text with a fixed environment and get the
//! messages as `ferry check` prints them, and the configs the tests start from.

use std::path::Path;

use super::{Config, ConfigError, parse};

/// `text` as `/etc/ferry/ferry.toml`, with `${TOKEN}` and `${SECRET}` set; errors as printed.
pub(super) fn check(text: &str) -> Result<Config, Vec<String>> {
    let env = |name: &str| match name {
        "TOKEN" => Some("tok-0123456789abcdef".to_string()),
        "SECRET" => Some("gh-secret".to_string()),
        _ => None,
    };
    parse(text, Path::new("/etc/ferry/ferry.toml"), &env).map_err(|e| match e {
        ConfigError::Invalid(d) => d.iter().map(|d| d.to_string()).collect(),
        other => vec![other.to_string()],
    })
}

/// The errors of a config that must be invalid.
pub(super) fn errors(text: &str) -> Vec<String> {
    match check(text) {
        Ok(_) => panic!("config should be invalid:\n{text}"),
        Err(e) => e,
    }
}

pub(super) const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"
admin_token = "${TOKEN}"

[apps.shop]
token = "${TOKEN}"
verify = { github = "${SECRET}" }

[apps.shop.services.web]
git = { repo = "acme/shop", branch = "main" }
command = ["./deploy/web.sh", "--fast"]
timeout = "2m"
env = { RAILS_ENV = "production" }

[apps.shop.services.worker]
command = ["make", "deploy"]

[apps.shop.profiles.hotfix]
services = ["web"]
"#;

/// `text` as `ferry.toml` in a temp dir holding `files` (name, bytes).
pub(super) fn with_files(
    text: &str,
    files: &[(&str, &[u8])],
) -> (tempfile::TempDir, Result<Config, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let text = text.replace("{dir}", dir.path().to_str().unwrap());
    let result = parse(&text, &dir.path().join("ferry.toml"), &|_| None);
    (dir, result)
}
