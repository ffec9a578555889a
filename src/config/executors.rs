//! What a service runs: exactly one of `command`, `docker`, `compose` or `swarm`, each read
//! into its [`Executor`] variant by one function here (`docker` and `compose` share the health
//! gate). The image-based executors (`docker`, `swarm`) also need the service's `image`.
//!
//! A new executor needs: its `raw::Service` field, its entry in `one_executor`'s list, an arm in
//! `executor` (and in its "has no executor" message), and an [`Executor`] variant.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::validator::Validator;
use super::{
    CheckoutSpec, ComposeSpec, ContainerSelector, DockerSpec, Executor, HealthGate, SwarmSpec, raw,
};
use crate::secret::Secret;

impl Validator<'_> {
    /// The service's one executor (`key` is the service's, `span` its table's). `workdir` is
    /// the command's working directory, `checkout` its git work tree (read by `checkout.rs`,
    /// which refuses it with another executor).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn executor(
        &mut self,
        raw: &raw::Service,
        span: Range<usize>,
        key: &str,
        name: &str,
        dir: &Path,
        workdir: PathBuf,
        checkout: Option<CheckoutSpec>,
    ) -> Option<Executor> {
        if !self.one_executor(raw, key) {
            return None;
        }
        if let Some(sw) = &raw.swarm {
            let spec = self.swarm(sw, key)?;
            self.needs_image(raw, sw.span(), key, "swarm")?;
            Some(Executor::Swarm(spec))
        } else if let Some(c) = &raw.compose {
            Some(Executor::Compose(self.compose(c, key, name, dir)?))
        } else if let Some(d) = &raw.docker {
            let spec = self.docker(d, key)?;
            self.needs_image(raw, d.span(), key, "docker")?;
            Some(Executor::Docker(spec))
        } else if let Some(cmd) = &raw.command {
            self.command(cmd, key, workdir, checkout)
        } else {
            self.error(
                Some(span),
                key,
                "has no executor: set `command = [\"program\", \"arg\", …]`, `docker = { container = \"name\" }`, `compose = { project = \"name\" }` or `swarm = { service = \"name\" }`".into(),
            );
            None
        }
    }

    /// Refuses a service with more than one executor set, naming them.
    fn one_executor(&mut self, raw: &raw::Service, key: &str) -> bool {
        let executors = [
            raw.command.as_ref().map(|c| ("command", c.span())),
            raw.docker.as_ref().map(|c| ("docker", c.span())),
            raw.compose.as_ref().map(|c| ("compose", c.span())),
            raw.swarm.as_ref().map(|c| ("swarm", c.span())),
        ];
        let set: Vec<_> = executors.iter().flatten().collect();
        if set.len() > 1 {
            self.error(
                Some(set[1].1.clone()),
                &format!("{key}.{}", set[1].0),
                format!(
                    "a service has one executor: {} are both set",
                    set.iter()
                        .map(|(k, _)| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            );
            return false;
        }
        true
    }

    /// An image-based executor deploys what `image` names, so the service must have one.
    fn needs_image(
        &mut self,
        raw: &raw::Service,
        span: Range<usize>,
        key: &str,
        kind: &str,
    ) -> Option<()> {
        if raw.image.is_none() {
            self.error(
                Some(span),
                &format!("{key}.image"),
                format!("is required with `{kind}`: image = {{ repository = \"registry.example.com/acme/api\", tags = \"semver:^1\" }}"),
            );
            return None;
        }
        Some(())
    }

    /// `command = ["program", "arg", …]`: run in `workdir`, never through a shell.
    pub(super) fn command(
        &mut self,
        cmd: &Spanned<Vec<Spanned<String>>>,
        key: &str,
        workdir: PathBuf,
        checkout: Option<CheckoutSpec>,
    ) -> Option<Executor> {
        let ckey = format!("{key}.command");
        let mut argv = Vec::new();
        for a in cmd.get_ref() {
            argv.push(self.expand(a, &ckey, false)?);
        }
        if argv.first().is_none_or(|p| p.is_empty()) {
            self.error(
                Some(cmd.span()),
                &ckey,
                "must name a program: command = [\"./deploy.sh\", \"arg\"]".into(),
            );
            return None;
        }
        Some(Executor::Command {
            argv,
            workdir,
            checkout,
        })
    }

    /// `swarm = { service, timeout }`: the Swarm service to update, and how long to wait.
    fn swarm(&mut self, raw: &Spanned<raw::Swarm>, key: &str) -> Option<SwarmSpec> {
        let skey = format!("{key}.swarm");
        let service = self.expand(&raw.get_ref().service, &format!("{skey}.service"), false)?;
        let timeout = match &raw.get_ref().timeout {
            Some(v) => self.duration(v, &format!("{skey}.timeout"))?,
            None => Duration::from_secs(300),
        };
        Some(SwarmSpec { service, timeout })
    }

    /// `docker = { container | label, health…, username, password, keep_images }`.
    fn docker(&mut self, raw: &Spanned<raw::Docker>, key: &str) -> Option<DockerSpec> {
        let d = raw.get_ref();
        let select = self.container_selector(raw, key)?;
        let health = self.health(
            &d.health_timeout,
            &d.probe,
            &d.stable_for,
            &format!("{key}.docker"),
        )?;
        let auth = self.registry_auth(d, key)?;
        let keep_images = match &d.keep_images {
            Some(n) if *n.get_ref() >= 1 => usize::try_from(*n.get_ref()).ok(),
            Some(n) => {
                self.error(
                    Some(n.span()),
                    &format!("{key}.docker.keep_images"),
                    "must be at least 1 (the rollback image is always kept)".into(),
                );
                return None;
            }
            None => None,
        };
        Some(DockerSpec {
            select,
            health,
            auth,
            keep_images,
        })
    }

    /// Exactly one of `container = "name"` and `label = "key=value"`.
    fn container_selector(
        &mut self,
        raw: &Spanned<raw::Docker>,
        key: &str,
    ) -> Option<ContainerSelector> {
        let d = raw.get_ref();
        match (&d.container, &d.label) {
            (Some(c), None) => Some(ContainerSelector::Name(self.expand(
                c,
                &format!("{key}.docker.container"),
                false,
            )?)),
            (None, Some(l)) => {
                let lkey = format!("{key}.docker.label");
                let label = self.expand(l, &lkey, false)?;
                if !label.contains('=') || label.starts_with('=') {
                    self.error(
                        Some(l.span()),
                        &lkey,
                        format!("{label:?} is not key=value, e.g. \"ferry.service=api\""),
                    );
                    return None;
                }
                Some(ContainerSelector::Label(label))
            }
            _ => {
                self.error(
                    Some(raw.span()),
                    &format!("{key}.docker"),
                    "needs exactly one of `container = \"name\"` or `label = \"key=value\"`".into(),
                );
                None
            }
        }
    }

    /// `username` and `password`, both or neither. The outer `None` means one is missing or
    /// unreadable (reported).
    fn registry_auth(&mut self, d: &raw::Docker, key: &str) -> Option<Option<(String, Secret)>> {
        match (&d.username, &d.password) {
            (Some(u), Some(p)) => Some(Some((
                self.expand(u, &format!("{key}.docker.username"), false)?,
                Secret::new(self.expand(p, &format!("{key}.docker.password"), true)?),
            ))),
            (None, None) => Some(None),
            (Some(u), None) => {
                self.error(
                    Some(u.span()),
                    &format!("{key}.docker.password"),
                    "is required with `username`".into(),
                );
                None
            }
            (None, Some(p)) => {
                self.error(
                    Some(p.span()),
                    &format!("{key}.docker.username"),
                    "is required with `password`".into(),
                );
                None
            }
        }
    }

    /// The health gate of `docker` and `compose` (`key` is that table's): `health_timeout`
    /// (60 s), `probe` (an HTTP URL) and `stable_for` (5 s).
    fn health(
        &mut self,
        timeout: &Option<Spanned<String>>,
        probe: &Option<Spanned<String>>,
        stable_for: &Option<Spanned<String>>,
        key: &str,
    ) -> Option<HealthGate> {
        let timeout = match timeout {
            Some(v) => self.duration(v, &format!("{key}.health_timeout"))?,
            None => Duration::from_secs(60),
        };
        let stable_for = match stable_for {
            Some(v) => self.duration(v, &format!("{key}.stable_for"))?,
            None => Duration::from_secs(5),
        };
        let probe = match probe {
            Some(v) => {
                let pkey = format!("{key}.probe");
                let url = self.expand(v, &pkey, false)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    self.error(
                        Some(v.span()),
                        &pkey,
                        format!("{url:?} is not an http:// or https:// URL"),
                    );
                    return None;
                }
                Some(url)
            }
            None => None,
        };
        Some(HealthGate {
            timeout,
            probe,
            stable_for,
        })
    }

    /// `compose = { project, file, services, health… }` (`service` is ferry's name for it,
    /// the default Compose service).
    fn compose(
        &mut self,
        raw: &Spanned<raw::Compose>,
        key: &str,
        service: &str,
        dir: &Path,
    ) -> Option<ComposeSpec> {
        let c = raw.get_ref();
        let ckey = format!("{key}.compose");
        let project = self.expand(&c.project, &format!("{ckey}.project"), false)?;
        if project.is_empty()
            || !project
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-_".contains(ch))
        {
            self.error(
                Some(c.project.span()),
                &format!("{ckey}.project"),
                format!("{project:?} is not a Compose project name (lower-case letters, digits, - and _)"),
            );
            return None;
        }
        let file = match &c.file {
            Some(f) => dir.join(self.expand(f, &format!("{ckey}.file"), false)?),
            None => dir.join("compose.yaml"),
        };
        let services = match &c.services {
            Some(list) => {
                let mut out = Vec::new();
                for s in list.get_ref() {
                    out.push(self.expand(s, &format!("{ckey}.services"), false)?);
                }
                if out.is_empty() || out.iter().any(|s| s.is_empty() || s.starts_with('-')) {
                    self.error(
                        Some(list.span()),
                        &format!("{ckey}.services"),
                        "must name Compose services: services = [\"api\"]".into(),
                    );
                    return None;
                }
                out
            }
            None => vec![service.to_string()],
        };
        let health = self.health(&c.health_timeout, &c.probe, &c.stable_for, &ckey)?;
        Some(ComposeSpec {
            project,
            file,
            services,
            health,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Executor;
    use crate::config::testing::{check, errors};

    #[test]
    fn service_without_executor() {
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ngit = { repo = \"a/b\" }\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("apps.shop.services.web: has no executor"),
            "{e:?}"
        );
        assert!(e[0].starts_with("/etc/ferry/ferry.toml:3:"), "{e:?}");
        // Every executor is offered, each with the key it needs.
        assert!(
            e[0].ends_with(
                "has no executor: set `command = [\"program\", \"arg\", …]`, `docker = { container = \"name\" }`, `compose = { project = \"name\" }` or `swarm = { service = \"name\" }`"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn docker_executor_needs_an_image() {
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.api]\ndocker = { container = \"api\" }\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("apps.shop.services.api.image: is required with `docker`"),
            "{e:?}"
        );
    }

    #[test]
    fn compose_services() {
        let base = "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.api]\n";
        let c = check(&format!(
            "{base}compose = {{ project = \"shop\", file = \"deploy/compose.yml\" }}\n"
        ))
        .unwrap();
        let Executor::Compose(spec) = &c.apps["shop"].services["api"].executor else {
            panic!("compose executor expected")
        };
        assert_eq!(spec.file, Path::new("/etc/ferry/deploy/compose.yml"));
        assert_eq!(spec.services, ["api"]);
        let e = errors(&format!("{base}compose = {{ project = \"Shop App\" }}\n"));
        assert!(e.len() == 1 && e[0].contains("compose.project"), "{e:?}");
        let e = errors(&format!(
            "{base}compose = {{ project = \"shop\" }}\ncommand = [\"x\"]\n"
        ));
        assert!(e.len() == 1 && e[0].contains("one executor"), "{e:?}");
    }
}
