//! `[apps.X.gitlab]`, `[apps.X.gitea]`, `[apps.X.bitbucket]`: where ferry posts the commit
//! statuses of the deployments that host's pushes cause (`crate::notify`'s `gitlab.rs`,
//! `gitea.rs`, `bitbucket.rs`). Each table holds the access token (a secret, `{ file = … }`
//! allowed, required) and the API's base URL (`api_url`: a default for GitLab.com and
//! Bitbucket Cloud; required for Gitea and Forgejo, which are always self-hosted).

use toml::Spanned;

use super::raw;
use super::validator::Validator;
use crate::secret::Secret;

/// GitLab.com's API.
pub(crate) const GITLAB_API_URL: &str = "https://gitlab.com/api/v4";
/// Bitbucket Cloud's API (the paths add `/2.0/…`).
pub(crate) const BITBUCKET_API_URL: &str = "https://api.bitbucket.org";

/// One host's table: how to reach its API.
#[derive(Debug, Clone)]
pub(crate) struct CommitStatuses {
    /// The access token: sent in a header on each try, never logged, stored or served.
    pub(crate) token: Secret,
    /// The API's base URL, without a trailing `/` (the request paths are appended).
    pub(crate) api_url: String,
}

/// An app's commit-status tables (each `None` when absent).
#[derive(Debug, Clone, Default)]
pub(crate) struct StatusTargets {
    pub(crate) gitlab: Option<CommitStatuses>,
    /// Gitea and Forgejo.
    pub(crate) gitea: Option<CommitStatuses>,
    /// Bitbucket Cloud.
    pub(crate) bitbucket: Option<CommitStatuses>,
}

impl StatusTargets {
    /// The tokens configured (for redacting incoming headers that carry one).
    pub(crate) fn tokens(&self) -> impl Iterator<Item = &Secret> {
        [&self.gitlab, &self.gitea, &self.bitbucket]
            .into_iter()
            .flatten()
            .map(|t| &t.token)
    }
}

impl Validator<'_> {
    /// The app's three tables (`gitlab`, `gitea`, `bitbucket` of `[apps.X]`).
    pub(super) fn status_targets(
        &mut self,
        [gitlab, gitea, bitbucket]: [&Option<Spanned<raw::CommitStatuses>>; 3],
        key: &str,
    ) -> StatusTargets {
        StatusTargets {
            gitlab: self.commit_statuses(gitlab, &format!("{key}.gitlab"), Some(GITLAB_API_URL)),
            gitea: self.commit_statuses(gitea, &format!("{key}.gitea"), None),
            bitbucket: self.commit_statuses(
                bitbucket,
                &format!("{key}.bitbucket"),
                Some(BITBUCKET_API_URL),
            ),
        }
    }

    /// One table: `token` (required) and `api_url` (`default` when left out; required when
    /// there is none).
    fn commit_statuses(
        &mut self,
        raw: &Option<Spanned<raw::CommitStatuses>>,
        key: &str,
        default: Option<&str>,
    ) -> Option<CommitStatuses> {
        let raw = raw.as_ref()?;
        let token = self.status_token(raw, key);
        let api_url = self.api_url(raw, key, default);
        Some(CommitStatuses {
            token: token?,
            api_url: api_url?,
        })
    }

    /// `token`: required; sent as a header value, so visible ASCII only.
    fn status_token(&mut self, raw: &Spanned<raw::CommitStatuses>, key: &str) -> Option<Secret> {
        let tkey = format!("{key}.token");
        let Some(v) = &raw.get_ref().token else {
            self.error(
                Some(raw.span()),
                &tkey,
                "missing: the access token ferry posts commit statuses with".into(),
            );
            return None;
        };
        let token = self.secret_value(v, &tkey)?;
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            self.error(
                Some(v.span()),
                &tkey,
                "must be a non-empty token without spaces or control characters".into(),
            );
            return None;
        }
        Some(Secret::new(token))
    }

    /// `api_url`: an `http://` or `https://` URL with a host and no query, fragment or
    /// credentials; kept without a trailing `/`.
    fn api_url(
        &mut self,
        raw: &Spanned<raw::CommitStatuses>,
        key: &str,
        default: Option<&str>,
    ) -> Option<String> {
        let ukey = format!("{key}.api_url");
        let Some(v) = &raw.get_ref().api_url else {
            if default.is_none() {
                self.error(
                    Some(raw.span()),
                    &ukey,
                    "missing: Gitea and Forgejo are self-hosted, so say where: e.g. api_url = \"https://git.example.com/api/v1\"".into(),
                );
            }
            return default.map(str::to_string);
        };
        let url = self.expand(v, &ukey, false)?;
        let ok = reqwest::Url::parse(&url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && u.password().is_none()
        });
        if !ok {
            self.error(
                Some(v.span()),
                &ukey,
                format!("must be an http:// or https:// URL without query, fragment or credentials, e.g. {:?}", default.unwrap_or("https://git.example.com/api/v1")),
            );
            return None;
        }
        Some(url.trim_end_matches('/').to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{GOOD, check, errors, with_files};

    #[test]
    fn tables_with_defaults_files_and_variables() {
        let text = format!(
            "{GOOD}\n[apps.shop.gitlab]\ntoken = \"${{TOKEN}}\"\n\n[apps.shop.gitea]\ntoken = \"gta-1\"\napi_url = \"https://git.example.com/api/v1/\"\n\n[apps.shop.bitbucket]\ntoken = \"bb-1\"\n"
        );
        let c = check(&text).unwrap();
        let s = &c.apps["shop"].commit_statuses;
        let gitlab = s.gitlab.as_ref().unwrap();
        assert_eq!(gitlab.token.expose(), "tok-0123456789abcdef");
        assert_eq!(gitlab.api_url, "https://gitlab.com/api/v4");
        assert!(
            c.secret_env_vars.contains(&"TOKEN".to_string()),
            "a token is a secret"
        );
        let gitea = s.gitea.as_ref().unwrap();
        assert_eq!(
            gitea.api_url, "https://git.example.com/api/v1",
            "no trailing /"
        );
        assert_eq!(
            s.bitbucket.as_ref().unwrap().api_url,
            "https://api.bitbucket.org"
        );
        assert_eq!(s.tokens().count(), 3);
        assert!(
            !format!("{s:?}").contains("gta-1"),
            "tokens are redacted in Debug"
        );
        let none = check(GOOD).unwrap();
        assert_eq!(none.apps["shop"].commit_statuses.tokens().count(), 0);

        let (_dir, c) = with_files(
            "[apps.shop]\ntoken = \"tok-0123456789abcdef\"\n[apps.shop.services.web]\ncommand = [\"x\"]\n[apps.shop.gitlab]\ntoken = { file = \"gl\" }\napi_url = \"https://gitlab.example.com/api/v4\"\n",
            &[("gl", b"glpat-from-file\n")],
        );
        let c = c.unwrap();
        let gitlab = c.apps["shop"].commit_statuses.gitlab.clone().unwrap();
        assert_eq!(gitlab.token.expose(), "glpat-from-file");
        assert_eq!(gitlab.api_url, "https://gitlab.example.com/api/v4");
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let base = GOOD.lines().count();
        let text = format!(
            "{GOOD}\n[apps.shop.gitlab]\napi_url = \"ftp://gitlab.example.com\"\n\n[apps.shop.gitea]\ntoken = \"has space\"\n\n[apps.shop.bitbucket]\ntoken = \"\"\napi_url = \"https://user:pw@api.bitbucket.org?x=1\"\n"
        );
        let errs = errors(&text);
        let line = |n: usize| format!("/etc/ferry/ferry.toml:{}: ", base + n);
        let expect = [
            (line(2), "apps.shop.gitlab.token: missing: the access token"),
            (
                line(3),
                "apps.shop.gitlab.api_url: must be an http:// or https:// URL",
            ),
            (
                line(6),
                "apps.shop.gitea.token: must be a non-empty token without spaces",
            ),
            (
                line(5),
                "apps.shop.gitea.api_url: missing: Gitea and Forgejo are self-hosted",
            ),
            (
                line(9),
                "apps.shop.bitbucket.token: must be a non-empty token",
            ),
            (
                line(10),
                "apps.shop.bitbucket.api_url: must be an http:// or https:// URL without query, fragment or credentials",
            ),
        ];
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
        for ((at, what), got) in expect.iter().zip(&errs) {
            assert!(
                got.starts_with(&format!("{at}{what}")),
                "{got}\nexpected {at}{what}"
            );
        }
        let unknown = errors(&format!(
            "{GOOD}\n[apps.shop.gitlab]\ntoken = \"t\"\nurl = \"https://x\"\n"
        ));
        assert!(unknown[0].contains("unknown field `url`"), "{unknown:?}");
    }
}
