//! `[apps.X.services.NAME]`: what a service follows (a git branch or tags, or an image
//! repository and tag policy) and the settings every executor shares (`timeout`, `env`,
//! `workdir`: the config's directory, or with a `checkout` its path, anchors a relative one). Which executor runs it, and that executor's settings, are in `executors`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::validator::Validator;
use super::values::is_url_safe_name;
use super::{DEFAULT_TIMEOUT, GitSpec, ImageSpec, Service, TagPattern, TagPolicy, raw};

/// The shortest `reconcile` interval.
const MIN_RECONCILE: Duration = Duration::from_secs(1);

impl Validator<'_> {
    /// Every service of an app (`key` is the app's); an app without any is an error.
    pub(super) fn services(
        &mut self,
        raw: BTreeMap<Spanned<String>, Spanned<raw::Service>>,
        key: &str,
        dir: &Path,
        app_span: Range<usize>,
    ) -> BTreeMap<String, Service> {
        let mut services = BTreeMap::new();
        let declared_services = raw.len();
        for (sname, svc) in raw {
            let skey = format!("{key}.services.{}", sname.get_ref());
            if !is_url_safe_name(sname.get_ref()) {
                self.error(
                    Some(sname.span()),
                    &skey,
                    "service names may use only letters, digits, '-' and '_'".into(),
                );
            }
            if let Some(s) = self.service(sname.get_ref(), svc, &skey, dir) {
                services.insert(sname.into_inner(), s);
            }
        }
        if declared_services == 0 {
            self.error(
                Some(app_span),
                key,
                "has no services: add at least one [apps.NAME.services.SERVICE]".into(),
            );
        }
        services
    }

    /// One service; `None` when it cannot be used (the reasons are reported).
    fn service(
        &mut self,
        name: &str,
        raw: Spanned<raw::Service>,
        key: &str,
        dir: &Path,
    ) -> Option<Service> {
        let span = raw.span();
        let raw = raw.into_inner();
        let image = raw.image.as_ref().and_then(|i| self.image(i, key));
        if let (Some(g), Some(_)) = (&raw.git, &image) {
            self.error(
                Some(g.span()),
                &format!("{key}.git"),
                "a service follows a git repository or an image, not both".into(),
            );
        }
        let git = raw.git.as_ref().and_then(|g| self.git(g, key));
        let timeout = match &raw.timeout {
            Some(v) => self.duration(v, &format!("{key}.timeout"))?,
            None => DEFAULT_TIMEOUT,
        };
        let env = self.env(&raw.env, key);
        let checkout = self.checkout(&raw, key)?;
        // With a checkout, the command runs in it: a relative workdir is inside it.
        let base = checkout.as_ref().map_or(dir, |c| c.path.as_path());
        let workdir = match &raw.workdir {
            Some(v) => base.join(self.expand(v, &format!("{key}.workdir"), false)?),
            None => base.to_path_buf(),
        };
        let runs_on = self.runs_on(&raw, key);
        let reconcile = self.reconcile(&raw, key);
        let executor = self.executor(&raw, span, key, name, dir, workdir, checkout)?;
        Some(Service {
            name: name.to_string(),
            git,
            image,
            executor,
            timeout,
            env,
            runs_on,
            reconcile,
        })
    }

    /// `reconcile = "15m"`: how long after its last run a service's last success runs again.
    /// At least [`MIN_RECONCILE`]: the schedule is checked about every second.
    fn reconcile(&mut self, raw: &raw::Service, key: &str) -> Option<Duration> {
        let value = raw.reconcile.as_ref()?;
        let key = format!("{key}.reconcile");
        let d = self.duration(value, &key)?;
        if d < MIN_RECONCILE {
            self.error(
                Some(value.span()),
                &key,
                format!(
                    "{} is too short: at least 1s (ferry checks the schedule about every second)",
                    humantime::format_duration(d)
                ),
            );
            return None;
        }
        Some(d)
    }

    /// `runs_on = ["host-a"]`: the replicas (`server.node`) that may run the service.
    fn runs_on(&mut self, raw: &raw::Service, key: &str) -> Vec<String> {
        let Some(list) = &raw.runs_on else {
            return Vec::new();
        };
        let key = format!("{key}.runs_on");
        if list.get_ref().is_empty() {
            self.error(
                Some(list.span()),
                &key,
                "is empty: no replica could run the service (leave it out to let any run it)"
                    .into(),
            );
        }
        let mut nodes = Vec::new();
        for v in list.get_ref() {
            let Some(name) = self.expand(v, &key, false) else {
                continue;
            };
            match super::server::node_name_problem(&name) {
                None => nodes.push(name),
                Some(why) => self.error(Some(v.span()), &key, why),
            }
        }
        nodes
    }

    /// `git = { repo, branch, tags }`: pushes to this repository's branch (default `main`,
    /// unless only tags are followed) or tags deploy the service. `repo = "*"` follows the
    /// branch or tags in any repository (as an adnanh/webhook rule on the ref alone does).
    fn git(&mut self, raw: &Spanned<raw::Git>, key: &str) -> Option<GitSpec> {
        let span = raw.span();
        let g = raw.get_ref();
        let repo = self.expand(&g.repo, &format!("{key}.git.repo"), false)?;
        let repo = repo.trim_matches('/').to_string();
        if repo.is_empty() {
            self.error(
                Some(g.repo.span()),
                &format!("{key}.git.repo"),
                "is empty".into(),
            );
        }
        let tags = match &g.tags {
            Some(t) => {
                let tkey = format!("{key}.git.tags");
                let pattern = self.expand(t, &tkey, false)?;
                match globset::Glob::new(&pattern) {
                    Ok(glob) => Some(TagPattern {
                        pattern,
                        matcher: glob.compile_matcher(),
                    }),
                    Err(e) => {
                        self.error(Some(t.span()), &tkey, format!("invalid glob: {e}"));
                        return None;
                    }
                }
            }
            None => None,
        };
        let branch = match &g.branch {
            Some(b) => Some(self.expand(b, &format!("{key}.git.branch"), false)?),
            // Following tags only is explicit; otherwise the default branch is main.
            None if tags.is_some() => None,
            None => Some("main".to_string()),
        };
        let branch = branch.map(|b| b.strip_prefix("refs/heads/").unwrap_or(&b).to_string());
        if branch.as_deref() == Some("") {
            self.error(Some(span), &format!("{key}.git.branch"), "is empty".into());
        }
        Some(GitSpec { repo, branch, tags })
    }

    /// `image = { repository, tags }`: pushes of this repository whose tag the policy accepts
    /// (default `latest`) deploy the service.
    fn image(&mut self, raw: &Spanned<raw::Image>, key: &str) -> Option<ImageSpec> {
        let i = raw.get_ref();
        let rkey = format!("{key}.image.repository");
        let repository = self.expand(&i.repository, &rkey, false)?;
        if crate::image_ref::image_repository(&repository).as_deref() != Some(repository.as_str()) {
            self.error(
                Some(i.repository.span()),
                &rkey,
                format!("{repository:?} is not an image repository (no tag or digest): e.g. registry.example.com/acme/api"),
            );
            return None;
        }
        let tags = match &i.tags {
            Some(t) => {
                let tkey = format!("{key}.image.tags");
                let text = self.expand(t, &tkey, false)?;
                match TagPolicy::parse(&text) {
                    Ok(p) => p,
                    Err(e) => {
                        self.error(Some(t.span()), &tkey, e);
                        return None;
                    }
                }
            }
            None => TagPolicy::Exact("latest".into()),
        };
        Some(ImageSpec { repository, tags })
    }

    /// `env`: extra variables for the executor. `FERRY_*` are ferry's own.
    pub(super) fn env(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<String>>,
        key: &str,
    ) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for (k, v) in raw {
            let ekey = format!("{key}.env.{}", k.get_ref());
            if k.get_ref().is_empty() || k.get_ref().contains('=') || k.get_ref().contains('\0') {
                self.error(Some(k.span()), &ekey, "is not a valid variable name".into());
                continue;
            }
            if k.get_ref().starts_with("FERRY_") {
                self.error(
                    Some(k.span()),
                    &ekey,
                    "FERRY_* variables are set by ferry itself".into(),
                );
                continue;
            }
            if let Some(val) = self.expand(v, &ekey, false) {
                env.push((k.get_ref().clone(), val));
            }
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{GOOD, check, errors};

    #[test]
    fn reconcile_is_an_opt_in_interval_of_at_least_a_second() {
        let c = check(GOOD).unwrap();
        assert_eq!(c.apps["shop"].services["web"].reconcile, None);
        let text = GOOD.replace(
            "timeout = \"2m\"\n",
            "timeout = \"2m\"\nreconcile = \"15m\"\n",
        );
        let c = check(&text).unwrap();
        assert_eq!(
            c.apps["shop"].services["web"].reconcile,
            Some(Duration::from_secs(900))
        );
        let c = check(&GOOD.replace("timeout = \"2m\"\n", "reconcile = \"1s\"\n")).unwrap();
        assert_eq!(
            c.apps["shop"].services["web"].reconcile,
            Some(Duration::from_secs(1))
        );
        let line = GOOD.lines().position(|l| l.starts_with("timeout")).unwrap() + 1;
        for (value, message) in [
            ("500ms", "500ms is too short: at least 1s"),
            ("0s", "duration must be above zero"),
            ("often", "invalid duration \"often\""),
        ] {
            let text = GOOD.replace("timeout = \"2m\"", &format!("reconcile = \"{value}\""));
            let e = errors(&text);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with(&format!(
                    "/etc/ferry/ferry.toml:{line}: apps.shop.services.web.reconcile: {message}"
                )),
                "{e:?}"
            );
        }
    }

    #[test]
    fn image_services_and_their_errors() {
        let base = "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.api]\n";
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api:1\", tags = \"semver:^1\" }}\ndocker = {{ container = \"api\" }}\n"
        ));
        assert!(
            e.len() == 1
                && e[0].contains("image.repository")
                && e[0].contains("not an image repository"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api\", tags = \"semver:^^1\" }}\ndocker = {{ container = \"api\" }}\n"
        ));
        assert!(
            e.len() == 1 && e[0].contains("image.tags: invalid semver range"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api\" }}\ndocker = {{ container = \"api\", label = \"a=b\" }}\n"
        ));
        assert!(
            e.len() == 1 && e[0].contains("needs exactly one of"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api\" }}\ndocker = {{ label = \"nolabel\" }}\n"
        ));
        assert!(
            e.len() == 1 && e[0].contains("docker.label") && e[0].contains("not key=value"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api\" }}\ndocker = {{ container = \"api\", probe = \"localhost:8080\" }}\n"
        ));
        assert!(e.len() == 1 && e[0].contains("docker.probe"), "{e:?}");
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api\" }}\ndocker = {{ container = \"api\" }}\ncommand = [\"x\"]\n"
        ));
        assert!(e.len() == 1 && e[0].contains("one executor"), "{e:?}");
    }
}
