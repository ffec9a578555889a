//! What is stored of a hook request's headers. Every header is kept (the planner reads some
//! back, e.g. the content type, and users see what was sent), but a header that carries a secret
//! is stored as [`REDACTED`]: the database, its backups and the API then never hold a credential.
//!
//! Redacted are: the headers that carry credentials by definition ([`SECRET_HEADERS`], among
//! them `X-Gitlab-Token`, the secret itself, and `Authorization`, which `bearer`/`basic` read),
//! and any header whose value is one of the app's own secrets (its hook token or a `verify`
//! secret), whatever its name. Signatures (`X-Hub-Signature-256`, the custom HMAC header) are
//! kept: they are derived from the body and reveal nothing about the secret.
//!
//! Replays (`POST /api/v1/deliveries/ID/replay`) do not verify again: they reuse the stored
//! `verified` flag, so a redacted token does not stop a GitLab delivery from being replayed.

use axum::http::HeaderMap;

use crate::config::App;

/// The stored value of a header that carried a secret.
pub(crate) const REDACTED: &str = "[redacted]";

/// Headers that carry credentials (lower case, as `http` names them).
pub(crate) const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-gitlab-token",
    "x-api-key",
    "private-token",
];

/// The request's headers as a JSON object (lower-case names; repeated headers joined by ", "),
/// with secret-carrying ones replaced by [`REDACTED`].
pub(crate) fn headers_json(headers: &HeaderMap, app: &App) -> String {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        let value = if is_secret(name.as_str(), value.as_bytes(), app) {
            REDACTED.to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        match map.get_mut(name.as_str()) {
            // One redacted value is enough to say the header was sent.
            Some(serde_json::Value::String(existing)) if existing == REDACTED => {}
            Some(serde_json::Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                map.insert(name.as_str().to_string(), serde_json::Value::String(value));
            }
        }
    }
    serde_json::Value::Object(map).to_string()
}

fn is_secret(name: &str, value: &[u8], app: &App) -> bool {
    SECRET_HEADERS.contains(&name) || app_secrets(app).any(|s| equal(s.as_bytes(), value))
}

/// Compared in constant time (for equal lengths), like every other use of a secret.
fn equal(secret: &[u8], value: &[u8]) -> bool {
    let value = value.trim_ascii();
    !value.is_empty() && crate::secret::equal(secret, value)
}

/// Every secret of an app: its hook token, each `verify` secret and its commit-status tokens.
fn app_secrets(app: &App) -> impl Iterator<Item = &str> {
    let v = &app.verify;
    std::iter::once(&app.token)
        .chain(&v.github)
        .chain(&v.gitlab)
        .chain(&v.bitbucket)
        .chain(&v.gitea)
        .chain(&v.standard)
        .chain(&v.bearer)
        .chain(&v.basic)
        .chain(v.hmac.iter().flat_map(|h| &h.secrets))
        .chain(app.commit_statuses.tokens())
        .map(|s| s.expose())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        let text = r#"
[apps.web]
token = "hook-token-0123456789"
verify = { gitlab = "gitlab-secret", hmac = { header = "X-Sig", secret = "hmac-secret" } }
[apps.web.services.site]
command = ["true"]
"#;
        let config = crate::config::parse(text, std::path::Path::new("/tmp/ferry.toml"), &|_| None)
            .expect("config");
        config.apps["web"].clone()
    }

    fn stored(pairs: &[(&str, &str)]) -> serde_json::Value {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        serde_json::from_str(&headers_json(&h, &app())).unwrap()
    }

    #[test]
    fn secret_headers_are_redacted_not_dropped() {
        let v = stored(&[
            ("Authorization", "Bearer abc"),
            ("Cookie", "a=b"),
            ("Cookie", "c=d"),
            ("X-Gitlab-Token", "gitlab-secret"),
            ("X-Api-Key", "k"),
            ("Private-Token", "p"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Content-Type", "application/json"),
            ("X-Sig", "deadbeef"),
        ]);
        for name in SECRET_HEADERS {
            assert_eq!(v[*name], REDACTED, "{name}");
        }
        assert_eq!(v["content-type"], "application/json");
        assert_eq!(v["x-sig"], "deadbeef", "a signature is not a secret");
    }

    #[test]
    fn a_configured_secret_is_redacted_under_any_name() {
        let v = stored(&[
            ("X-Webhook-Secret", "hmac-secret"),
            ("X-Other", " hook-token-0123456789 "),
            ("X-Event", "push"),
        ]);
        assert_eq!(v["x-webhook-secret"], REDACTED);
        assert_eq!(v["x-other"], REDACTED);
        assert_eq!(v["x-event"], "push");
    }
}
