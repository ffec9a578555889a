//! Secrets in the config: tokens, webhook secrets, passwords.
//!
//! Any secret may be written inline (`${VAR}` allowed; the variable's name is then kept from
//! deploy commands) or as `{ file = "…" }`, read once here at load (Docker and Kubernetes
//! secrets), relative to the config's directory. Files read are remembered so `ferry check`
//! can warn about those others may read. What comes out is wrapped in [`Secret`], whose
//! `Debug` is redacted.

use std::path::Path;

use toml::Spanned;

use super::raw;
use super::validator::Validator;
use crate::secret::Secret;

impl Validator<'_> {
    /// One secret or a list of them (several are accepted during a rotation); none is empty.
    pub(super) fn secrets(
        &mut self,
        raw: &Option<Spanned<raw::Secrets>>,
        key: &str,
    ) -> Vec<Secret> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        // Untagged enums lose inner spans, so every entry reports the whole value's line.
        let list: Vec<Spanned<raw::SecretValue>> = match raw.get_ref() {
            raw::Secrets::One(s) => vec![Spanned::new(raw.span(), s.clone())],
            raw::Secrets::Many(v) => v
                .iter()
                .map(|s| Spanned::new(raw.span(), s.clone()))
                .collect(),
        };
        if list.is_empty() {
            self.error(Some(raw.span()), key, "lists no secret".into());
        }
        let mut out = Vec::new();
        for s in &list {
            if let Some(v) = self.secret_value(s, key) {
                if v.is_empty() {
                    self.error(Some(s.span()), key, "secret is empty".into());
                } else {
                    out.push(Secret::new(v));
                }
            }
        }
        out
    }

    /// A secret's value: the text (with `${VAR}` expanded) or the content of its file.
    pub(super) fn secret_value(
        &mut self,
        value: &Spanned<raw::SecretValue>,
        key: &str,
    ) -> Option<String> {
        match value.get_ref() {
            raw::SecretValue::Text(s) => {
                self.expand(&Spanned::new(value.span(), s.clone()), key, true)
            }
            raw::SecretValue::File(f) => {
                let name = Spanned::new(value.span(), f.file.clone());
                let file = self.expand(&name, key, false)?;
                let path = self.config_dir.join(file);
                match read_secret_file(&path) {
                    Ok(s) => {
                        self.secret_files.push((key.to_string(), path));
                        Some(s)
                    }
                    Err(message) => {
                        self.error(Some(value.span()), key, message);
                        None
                    }
                }
            }
        }
    }
}

/// Reads a secret from a file (`{ file = "…" }`): UTF-8 text, one trailing newline (`\n` or
/// `\r\n`) dropped, as `echo` and editors leave it. The message names the file.
fn read_secret_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    /// A secret is a few dozen bytes; more means the wrong file (or `/dev/zero`).
    const LIMIT: u64 = 64 * 1024;
    let shown = path.display();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(LIMIT + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read secret file {shown}: {e}"))?;
    if bytes.len() as u64 > LIMIT {
        return Err(format!(
            "secret file {shown} is larger than {} KiB; is it the right file?",
            LIMIT / 1024
        ));
    }
    let mut text =
        String::from_utf8(bytes).map_err(|_| format!("secret file {shown} is not UTF-8 text"))?;
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    if text.is_empty() {
        return Err(format!("secret file {shown} is empty"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use crate::config::ConfigError;
    use crate::config::testing::{GOOD, check, with_files};

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c = check(GOOD).unwrap();
        let dump = format!("{c:?}");
        assert!(!dump.contains("tok-0123456789abcdef"));
        assert!(!dump.contains("gh-secret"));
    }

    const FROM_FILES: &str = r#"
[server]
admin_token = { file = "admin" }

[apps.shop]
token = { file = "{dir}/token" }
verify = { github = { file = "gh" }, gitlab = [{ file = "gl" }, "inline-secret"], hmac = { header = "X-Sig", secret = { file = "hm" } } }

[apps.shop.services.web]
command = ["true"]
"#;

    #[test]
    fn secrets_from_files() {
        let (_dir, result) = with_files(
            FROM_FILES,
            &[
                ("admin", b"admin-token-0123\n"),
                ("token", b"hook-token-0123456\r\n"),
                ("gh", b"gh secret\n\n"),
                ("gl", b"gl-secret"),
                ("hm", b"hm-secret\n"),
            ],
        );
        let c = result.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server.admin_token.unwrap().expose(), "admin-token-0123");
        let app = &c.apps["shop"];
        assert_eq!(app.token.expose(), "hook-token-0123456");
        // Only one trailing newline is dropped.
        assert_eq!(app.verify.github[0].expose(), "gh secret\n");
        let gitlab: Vec<&str> = app.verify.gitlab.iter().map(|s| s.expose()).collect();
        assert_eq!(gitlab, ["gl-secret", "inline-secret"]);
        assert_eq!(
            app.verify.hmac.as_ref().unwrap().secrets[0].expose(),
            "hm-secret"
        );
    }

    #[test]
    fn secret_file_errors_name_key_line_and_file() {
        let (dir, result) = with_files(
            FROM_FILES,
            &[
                ("admin", b"\n"),
                ("token", b"\xff\xfe"),
                ("hm", b"hm-secret"),
            ],
        );
        let Err(ConfigError::Invalid(diags)) = result else {
            panic!("should be invalid");
        };
        let all: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        let find = |key: &str| {
            diags
                .iter()
                .find(|d| d.key == key)
                .unwrap_or_else(|| panic!("no error for {key}: {all:#?}"))
        };
        let d = find("server.admin_token");
        assert_eq!(d.line, Some(3));
        assert!(
            d.message.contains("is empty") && d.message.contains("admin"),
            "{d}"
        );
        let d = find("apps.shop.token");
        assert_eq!(d.line, Some(6));
        assert!(d.message.contains("not UTF-8"), "{d}");
        let d = find("apps.shop.verify.github");
        assert_eq!(d.line, Some(7));
        let gh = dir.path().join("gh");
        assert!(
            d.message
                .contains(&format!("cannot read secret file {}", gh.display())),
            "{d}"
        );
    }
}
