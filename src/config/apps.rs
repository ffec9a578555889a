//! `[apps.NAME]`: one hook URL each. Here: the app's token (the URL's secret), its profiles,
//! the URL modifiers it honours, its rate limit and Docker Hub callbacks, and the check across
//! apps (no two share a token). How deliveries are verified is `verify`; what the app's
//! services follow and run is `services` and `executors`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::validator::Validator;
use super::values::is_url_safe_name;
use super::{
    App, DEFAULT_STANDARD_TOLERANCE, DOCKERHUB_CALLBACK_PREFIX, Limits, MIN_TOKEN_LEN, Modifier,
    Profile, Service, Verify, raw,
};
use crate::secret::Secret;

impl Validator<'_> {
    /// Every `[apps.NAME]`, then the check across them.
    pub(super) fn apps(
        &mut self,
        raw: BTreeMap<Spanned<String>, Spanned<raw::App>>,
        dir: &Path,
    ) -> BTreeMap<String, App> {
        let mut apps = BTreeMap::new();
        for (name, app) in raw {
            let key = format!("apps.{}", name.get_ref());
            if !is_url_safe_name(name.get_ref()) {
                self.error(
                    Some(name.span()),
                    &key,
                    "app names may use only letters, digits, '-' and '_'".into(),
                );
            }
            if let Some(app) = self.app(name.get_ref(), app, &key, dir) {
                apps.insert(name.into_inner(), app);
            }
        }
        self.unique_tokens(&apps);
        apps
    }

    /// Two apps with one token would make hook URLs guessable from each other.
    fn unique_tokens(&mut self, apps: &BTreeMap<String, App>) {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        let mut dups = Vec::new();
        for app in apps.values() {
            if let Some(other) = seen.insert(app.token.expose(), &app.name) {
                dups.push(format!(
                    "apps.{} and apps.{other} have the same token; every app needs its own",
                    app.name
                ));
            }
        }
        for d in dups {
            self.error(None, "token", d);
        }
    }

    /// One app; `None` when it cannot be used (the reasons are reported).
    fn app(&mut self, name: &str, raw: Spanned<raw::App>, key: &str, dir: &Path) -> Option<App> {
        let span = raw.span();
        let raw = raw.into_inner();
        let token = self.token(&raw.token, key, span.clone());
        let verify = match &raw.verify {
            Some(v) => self.verify(v.get_ref(), &format!("{key}.verify")),
            None => Verify {
                standard_tolerance: DEFAULT_STANDARD_TOLERANCE,
                ..Verify::default()
            },
        };
        let services = self.services(raw.services, key, dir, span.clone());
        let profiles = self.profiles(raw.profiles, &services, name, key);
        let alerts = self.alerts(raw.alerts, &services, key, dir);
        let dockerhub_callback = self.dockerhub_callback(&raw.dockerhub_callback, key)?;
        let modifiers = self.modifiers(&raw.modifiers, &format!("{key}.modifiers"));
        let limits = self.limits(&raw.limits, &format!("{key}.limits"));
        let github = self.github(&raw.github, &format!("{key}.github"))?;
        let commit_statuses = self.status_targets([&raw.gitlab, &raw.gitea, &raw.bitbucket], key);
        let reports = github.is_some() || commit_statuses.tokens().next().is_some();
        self.any_repo_needs_trust(reports, verify.configured(), &services, key, span);
        Some(App {
            name: name.to_string(),
            token: token?,
            verify,
            services,
            profiles,
            dockerhub_callback,
            modifiers,
            limits,
            github,
            commit_statuses,
            alerts,
        })
    }

    /// `repo = "*"` lets the delivery name the repository. That needs a verified sender (else
    /// anyone holding the hook URL could point the deploy at a repository of theirs), and no
    /// reporting back (else whoever can send the app a push chooses which repository the
    /// app's token writes to).
    fn any_repo_needs_trust(
        &mut self,
        reports: bool,
        verified: bool,
        services: &BTreeMap<String, Service>,
        key: &str,
        app_span: Range<usize>,
    ) {
        let why = match (verified, reports) {
            (false, _) => {
                "cannot be used by an app that verifies no sender: anyone holding its hook URL could name a repository of theirs; add a verify scheme or name the repository"
            }
            (true, true) => {
                "cannot be used by an app that reports back (github, gitlab, gitea, bitbucket): name the repository, so the app's token writes only there"
            }
            (true, false) => return,
        };
        for (name, s) in services {
            if s.git.as_ref().is_some_and(|g| g.any_repo()) {
                self.error(
                    Some(app_span.clone()),
                    &format!("{key}.services.{name}.git.repo"),
                    format!("\"*\" (any repository) {why}"),
                );
            }
        }
    }

    /// `token`: required, long enough to be unguessable, and safe in a URL path.
    fn token(
        &mut self,
        raw: &Option<Spanned<raw::SecretValue>>,
        key: &str,
        app_span: Range<usize>,
    ) -> Option<Secret> {
        let k = format!("{key}.token");
        let Some(v) = raw else {
            self.error(
                Some(app_span),
                &k,
                "missing: every app needs a secret token for its hook URL".into(),
            );
            return None;
        };
        // Unreadable: reported; the rest of the app is still checked.
        let t = self.secret_value(v, &k)?;
        if t.len() < MIN_TOKEN_LEN {
            self.error(
                Some(v.span()),
                &k,
                format!(
                    "must be at least {MIN_TOKEN_LEN} characters long (it is the hook URL's secret)"
                ),
            );
        } else if !is_url_safe_token(&t) {
            self.error(
                Some(v.span()),
                &k,
                "may use only letters, digits and '-', '_', '.', '~' (it is part of a URL)".into(),
            );
        }
        Some(Secret::new(t))
    }

    /// `[apps.X.profiles.NAME]`: named sets of the app's services.
    fn profiles(
        &mut self,
        raw: BTreeMap<Spanned<String>, Spanned<raw::Profile>>,
        services: &BTreeMap<String, Service>,
        app: &str,
        key: &str,
    ) -> BTreeMap<String, Profile> {
        let mut profiles = BTreeMap::new();
        for (pname, profile) in raw {
            let skey = format!("{key}.profiles.{}.services", pname.get_ref());
            let mut list = Vec::new();
            for s in profile.into_inner().services.into_inner() {
                if !services.contains_key(s.get_ref()) {
                    self.error(
                        Some(s.span()),
                        &skey,
                        format!(
                            "names service {:?}, which app {app} does not have",
                            s.get_ref()
                        ),
                    );
                } else if list.contains(s.get_ref()) {
                    self.error(
                        Some(s.span()),
                        &skey,
                        format!("names service {:?} twice", s.get_ref()),
                    );
                } else {
                    list.push(s.into_inner());
                }
            }
            profiles.insert(pname.into_inner(), Profile { services: list });
        }
        profiles
    }

    /// `dockerhub_callback`: `true` (Docker Hub's own callback URLs), `false`, or a prefix the
    /// callback URL must start with. The outer `None` means the value was wrong (reported):
    /// the app is then not checked further.
    fn dockerhub_callback(
        &mut self,
        raw: &Option<Spanned<raw::Callback>>,
        key: &str,
    ) -> Option<Option<String>> {
        let Some(c) = raw else {
            return Some(None);
        };
        match c.get_ref() {
            raw::Callback::On(false) => Some(None),
            raw::Callback::On(true) => Some(Some(DOCKERHUB_CALLBACK_PREFIX.to_string())),
            raw::Callback::Prefix(p) => {
                let ckey = format!("{key}.dockerhub_callback");
                let p = self.expand(&Spanned::new(c.span(), p.clone()), &ckey, false)?;
                if !(p.starts_with("https://") || p.starts_with("http://"))
                    || !p.get(8..).is_some_and(|rest| rest.contains('/'))
                {
                    self.error(
                        Some(c.span()),
                        &ckey,
                        format!("{p:?} is not true, false or a URL prefix ending in a path (https://host/)"),
                    );
                    return None;
                }
                Some(Some(p))
            }
        }
    }

    /// `[apps.X] modifiers`: which hook URL modifiers the app honours.
    fn modifiers(
        &mut self,
        raw: &Option<Spanned<Vec<Spanned<String>>>>,
        key: &str,
    ) -> Vec<Modifier> {
        let Some(raw) = raw else {
            return Modifier::DEFAULT.to_vec();
        };
        let mut out = Vec::new();
        for m in raw.get_ref() {
            match Modifier::ALL
                .into_iter()
                .find(|x| x.as_str() == m.get_ref())
            {
                Some(x) if out.contains(&x) => self.error(
                    Some(m.span()),
                    key,
                    format!("names {:?} twice", m.get_ref()),
                ),
                Some(x) => out.push(x),
                None => self.error(
                    Some(m.span()),
                    key,
                    format!(
                        "unknown modifier {:?} (one of: {})",
                        m.get_ref(),
                        Modifier::ALL.map(Modifier::as_str).join(", ")
                    ),
                ),
            }
        }
        out
    }

    /// `[apps.X.limits]`.
    fn limits(&mut self, raw: &Option<Spanned<raw::Limits>>, key: &str) -> Limits {
        let mut limits = Limits::default();
        if let Some(rate) = raw.as_ref().and_then(|l| l.get_ref().rate.as_ref()) {
            limits.rate = self.rate(rate, &format!("{key}.rate"), false);
        }
        limits
    }
}

/// The token is a path segment of the hook URL, so it must not need escaping.
fn is_url_safe_token(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
}

#[cfg(test)]
mod tests {
    use crate::config::Modifier;
    use crate::config::testing::{GOOD, check, errors};

    #[test]
    fn profile_with_unknown_service() {
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ncommand = [\"x\"]\n[apps.shop.profiles.p]\nservices = [\"web\", \"api\"]\n",
        );
        assert_eq!(
            e,
            [
                "/etc/ferry/ferry.toml:6: apps.shop.profiles.p.services: names service \"api\", which app shop does not have"
            ]
        );
    }

    #[test]
    fn any_repository_and_reporting_back_exclude_each_other() {
        let any = GOOD.replace("repo = \"acme/shop\"", "repo = \"*\"");
        assert!(
            check(&any).is_ok(),
            "any repository, verified and without reporting back, is fine"
        );
        let unverified = errors(&any.replace("verify = { github = \"${SECRET}\" }\n", ""));
        assert!(
            unverified.iter().any(|m| m.contains(
                "apps.shop.services.web.git.repo: \"*\" (any repository) cannot be used by an app that verifies no sender"
            )),
            "{unverified:?}"
        );
        let reporting = format!("{any}\n[apps.shop.github]\ntoken = \"${{TOKEN}}\"\n");
        let e = errors(&reporting);
        assert!(
            e.iter().any(|m| m.starts_with("/etc/ferry/ferry.toml:")
                && m.contains("apps.shop.services.web.git.repo: \"*\" (any repository) cannot be used by an app that reports back")),
            "{e:?}"
        );
    }

    #[test]
    fn modifiers_are_checked_with_their_line() {
        let c = check(&GOOD.replace(
            "verify = { github",
            "modifiers = [\"git_ref\", \"services\"]\nverify = { github",
        ))
        .unwrap();
        assert_eq!(
            c.apps["shop"].modifiers,
            [Modifier::GitRef, Modifier::Services]
        );
        let e = errors(&GOOD.replace(
            "verify = { github",
            "modifiers = [\n  \"services\",\n  \"git-ref\",\n  \"services\",\n]\nverify = { github",
        ));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("/etc/ferry/ferry.toml:10: apps.shop.modifiers: unknown modifier \"git-ref\" (one of: services, deployment_profile, git_ref)"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with(
                "/etc/ferry/ferry.toml:11: apps.shop.modifiers: names \"services\" twice"
            ),
            "{e:?}"
        );
        let none =
            check(&GOOD.replace("verify = { github", "modifiers = []\nverify = { github")).unwrap();
        assert!(none.apps["shop"].modifiers.is_empty());
    }
}
