//! `[apps.X.github]`: report this app's deployments to GitHub as GitHub Deployments, checked.
//! The target that sends them is `crate::notify::github`; the planner reads `environment` to
//! decide whether a GitHub `deployment` event is this app's. Here: the token (a secret, maybe
//! `{ file = … }`), the environment's name, its URL and the API's base URL (GitHub Enterprise:
//! `https://HOST/api/v3`).

use toml::Spanned;

use super::raw;
use super::validator::Validator;
use crate::secret::Secret;

/// GitHub's own API, the default `api_url`.
pub(crate) const GITHUB_API: &str = "https://api.github.com";
/// The default `environment`.
pub(crate) const DEFAULT_ENVIRONMENT: &str = "production";
/// GitHub's limit on environment names.
const MAX_ENVIRONMENT: usize = 255;

/// `[apps.X.github]`.
#[derive(Debug, Clone)]
pub(crate) struct Github {
    /// A token that may create deployments and their statuses (`repo_deployment`, or a
    /// fine-grained token with "Deployments: write"). Sent only as `Authorization: Bearer`.
    pub(crate) token: Secret,
    /// The GitHub environment ferry's deployments go to, and the one a `deployment` event
    /// must name to deploy this app.
    pub(crate) environment: String,
    /// Where the deployed environment can be seen (`environment_url` of each status).
    pub(crate) environment_url: Option<String>,
    /// The REST API's base URL, without a trailing slash.
    pub(crate) api_url: String,
}

impl Validator<'_> {
    /// `[apps.X.github]`, if present; `None` inside when it is unusable (reported).
    pub(super) fn github(
        &mut self,
        raw: &Option<Spanned<raw::Github>>,
        key: &str,
    ) -> Option<Option<Github>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let span = raw.span();
        let raw = raw.get_ref();
        let token = match &raw.token {
            Some(t) => self.github_token(t, &format!("{key}.token")),
            None => {
                self.error(
                    Some(span),
                    &format!("{key}.token"),
                    "missing: GitHub needs a token that may write deployments".into(),
                );
                None
            }
        };
        let environment = self.github_environment(&raw.environment, &format!("{key}.environment"));
        let environment_url = match &raw.environment_url {
            Some(u) => self
                .github_url(u, &format!("{key}.environment_url"), true)
                .map(Some),
            None => Some(None),
        };
        let api_url = match &raw.api_url {
            Some(u) => self
                .github_url(u, &format!("{key}.api_url"), false)
                .map(|u| u.trim_end_matches('/').to_string()),
            None => Some(GITHUB_API.to_string()),
        };
        Some(Some(Github {
            token: token?,
            environment: environment?,
            environment_url: environment_url?,
            api_url: api_url?,
        }))
    }

    fn github_token(&mut self, raw: &Spanned<raw::SecretValue>, key: &str) -> Option<Secret> {
        let t = self.secret_value(raw, key)?;
        if t.is_empty() {
            self.error(Some(raw.span()), key, "secret is empty".into());
            return None;
        }
        // It goes into a header: a newline would end it there.
        if t.chars().any(|c| c.is_control() || c == ' ') {
            self.error(
                Some(raw.span()),
                key,
                "holds whitespace or a control character; a GitHub token has none".into(),
            );
            return None;
        }
        Some(Secret::new(t))
    }

    fn github_environment(&mut self, raw: &Option<Spanned<String>>, key: &str) -> Option<String> {
        let Some(v) = raw else {
            return Some(DEFAULT_ENVIRONMENT.to_string());
        };
        let env = self.expand(v, key, false)?;
        let problem = if env.trim().is_empty() {
            Some("is empty".to_string())
        } else if env.len() > MAX_ENVIRONMENT {
            Some(format!(
                "is longer than GitHub's {MAX_ENVIRONMENT} characters"
            ))
        } else if env.chars().any(char::is_control) {
            Some("holds a control character".to_string())
        } else {
            None
        };
        if let Some(p) = problem {
            self.error(Some(v.span()), key, p);
            return None;
        }
        Some(env)
    }

    /// An `http://` or `https://` URL with a host; the API's base (`query: false`) takes
    /// paths after it, so it may have no query or fragment.
    fn github_url(&mut self, raw: &Spanned<String>, key: &str, query: bool) -> Option<String> {
        let url = self.expand(raw, key, false)?;
        let ok = reqwest::Url::parse(&url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty())
                && (query || (u.query().is_none() && u.fragment().is_none()))
        });
        if !ok {
            let what = if query {
                "an http:// or https:// URL"
            } else {
                "an http:// or https:// URL without query or fragment"
            };
            self.error(Some(raw.span()), key, format!("{url:?} is not {what}"));
            return None;
        }
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{GOOD, check, errors};

    #[test]
    fn defaults_and_every_key() {
        let c = check(&format!(
            "{GOOD}\n[apps.shop.github]\ntoken = \"${{TOKEN}}\"\n"
        ))
        .unwrap();
        let gh = c.apps["shop"].github.as_ref().unwrap();
        assert_eq!(gh.token.expose(), "tok-0123456789abcdef");
        assert_eq!(gh.environment, "production");
        assert_eq!(gh.environment_url, None);
        assert_eq!(gh.api_url, "https://api.github.com");
        assert!(
            c.secret_env_vars.contains(&"TOKEN".to_string()),
            "deploy commands do not inherit the token's variable"
        );
        let shown = format!("{gh:?}");
        assert!(
            shown.contains("Secret(***)") && !shown.contains("tok-"),
            "{shown}"
        );

        let c = check(&format!(
            "{GOOD}\n[apps.shop.github]\ntoken = \"ghp_x\"\nenvironment = \"staging eu\"\nenvironment_url = \"https://staging.example.com/?from=github\"\napi_url = \"https://ghe.example.com/api/v3/\"\n"
        ))
        .unwrap();
        let gh = c.apps["shop"].github.as_ref().unwrap();
        assert_eq!(gh.environment, "staging eu");
        assert_eq!(
            gh.environment_url.as_deref(),
            Some("https://staging.example.com/?from=github")
        );
        assert_eq!(
            gh.api_url, "https://ghe.example.com/api/v3",
            "no trailing slash"
        );
        assert!(check(GOOD).unwrap().apps["shop"].github.is_none());
    }

    #[test]
    fn a_token_file_is_read() {
        let text = "[apps.shop]\ntoken = \"hook-token-0123456\"\n[apps.shop.services.web]\ncommand = [\"true\"]\n[apps.shop.github]\ntoken = { file = \"{dir}/gh-token\" }\n";
        let (_dir, c) =
            super::super::testing::with_files(text, &[("gh-token", b"ghp_from_file\n")]);
        let c = c.unwrap();
        let gh = c.apps["shop"].github.as_ref().unwrap();
        assert_eq!(gh.token.expose(), "ghp_from_file");
        assert!(
            c.secret_files
                .iter()
                .any(|(k, _)| k == "apps.shop.github.token")
        );
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let base = GOOD.lines().count();
        let text = format!(
            "{GOOD}\n[apps.shop.github]\nenvironment = \"\"\nenvironment_url = \"shop.example.com\"\napi_url = \"https://ghe.example.com/api/v3?x=1\"\ncolour = \"blue\"\n"
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "unknown keys stop the parse: {errs:#?}");
        assert!(errs[0].contains("unknown field `colour`"), "{errs:#?}");

        let text = format!(
            "{GOOD}\n[apps.shop.github]\nenvironment = \"\"\nenvironment_url = \"shop.example.com\"\napi_url = \"https://ghe.example.com/api/v3?x=1\"\n"
        );
        let errs = errors(&text);
        let line = |n: usize| format!("/etc/ferry/ferry.toml:{}: ", base + n);
        let expect = [
            (
                line(2),
                "apps.shop.github.token: missing: GitHub needs a token",
            ),
            (line(3), "apps.shop.github.environment: is empty"),
            (
                line(4),
                "apps.shop.github.environment_url: \"shop.example.com\" is not an http:// or https:// URL",
            ),
            (
                line(5),
                "apps.shop.github.api_url: \"https://ghe.example.com/api/v3?x=1\" is not an http:// or https:// URL without query or fragment",
            ),
        ];
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
        for ((line, message), got) in expect.iter().zip(&errs) {
            assert!(
                got.starts_with(line) && got.contains(message),
                "{got}\nexpected {line}{message}"
            );
        }
        let errs = errors(&format!(
            "{GOOD}\n[apps.shop.github]\ntoken = \"ghp x\"\nenvironment = \"{}\"\n",
            "e".repeat(256)
        ));
        assert!(
            errs[0].contains("apps.shop.github.token: holds whitespace"),
            "{errs:#?}"
        );
        assert!(
            errs[1].contains("apps.shop.github.environment: is longer than GitHub's 255"),
            "{errs:#?}"
        );
    }
}
