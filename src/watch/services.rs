//! Which ferry services a container belongs to, read from what Docker's events say of it
//! (its name and labels, in `Actor.Attributes`): a `docker` service's container by name or by
//! its `label`, a `compose` service's by Compose's own labels (project and service; one-off
//! `compose run` containers are not the service's). Swarm tasks belong to Swarm, and `command`
//! services run nothing ferry can see: neither is watched.

use std::collections::HashMap;

use crate::config::{Config, ContainerSelector, Executor};

/// Compose's labels on the containers it creates.
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";
const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";

/// A ferry service: app and service name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServiceRef {
    pub(super) app: String,
    pub(super) service: String,
}

/// How the containers of one service are recognised.
#[derive(Debug, Clone)]
enum Matcher {
    /// `docker = { container = "NAME" }`.
    Name(String),
    /// `docker = { label = "KEY=VALUE" }`.
    Label { key: String, value: String },
    /// `compose = { project, services }`.
    Compose {
        project: String,
        services: Vec<String>,
    },
}

impl Matcher {
    fn matches(&self, name: &str, attributes: &HashMap<String, String>) -> bool {
        let attr = |k: &str| attributes.get(k).map(String::as_str);
        match self {
            Matcher::Name(n) => n == name,
            Matcher::Label { key, value } => attr(key) == Some(value.as_str()),
            Matcher::Compose { project, services } => {
                attr(COMPOSE_PROJECT) == Some(project.as_str())
                    && attr(COMPOSE_SERVICE).is_some_and(|s| services.iter().any(|x| x == s))
                    && !attr(COMPOSE_ONEOFF).is_some_and(|o| o.eq_ignore_ascii_case("true"))
            }
        }
    }
}

/// The services whose containers are watched, from the config.
#[derive(Debug, Clone, Default)]
pub(super) struct Managed {
    rules: Vec<(ServiceRef, Matcher)>,
}

impl Managed {
    /// Every `docker` and `compose` service of the config.
    pub(super) fn of(config: &Config) -> Managed {
        let mut rules = Vec::new();
        for (app_name, app) in &config.apps {
            for (service_name, service) in &app.services {
                let matcher = match &service.executor {
                    Executor::Docker(spec) => match &spec.select {
                        ContainerSelector::Name(n) => Matcher::Name(n.clone()),
                        ContainerSelector::Label(l) => {
                            // The config checked that it is `key=value`.
                            let (key, value) = l.split_once('=').unwrap_or((l.as_str(), ""));
                            Matcher::Label {
                                key: key.to_string(),
                                value: value.to_string(),
                            }
                        }
                    },
                    Executor::Compose(spec) => Matcher::Compose {
                        project: spec.project.clone(),
                        services: spec.services.clone(),
                    },
                    Executor::Command { .. } | Executor::Swarm(_) => continue,
                };
                let service = ServiceRef {
                    app: app_name.clone(),
                    service: service_name.clone(),
                };
                rules.push((service, matcher));
            }
        }
        Managed { rules }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The services the container `name` (with Docker's event `attributes`: its labels and
    /// more) belongs to; none for an old container the docker executor moved aside
    /// (`NAME-ferry-old-N`), whatever its labels say.
    pub(super) fn services_of(
        &self,
        name: &str,
        attributes: &HashMap<String, String>,
    ) -> Vec<ServiceRef> {
        if crate::executors::docker::is_aside(name) {
            return Vec::new();
        }
        self.rules
            .iter()
            .filter(|(_, m)| m.matches(name, attributes))
            .map(|(s, _)| s.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn managed() -> Managed {
        let svc = |app: &str, service: &str| ServiceRef {
            app: app.into(),
            service: service.into(),
        };
        Managed {
            rules: vec![
                (svc("shop", "api"), Matcher::Name("shop-api".into())),
                (
                    svc("shop", "workers"),
                    Matcher::Label {
                        key: "ferry.service".into(),
                        value: "workers".into(),
                    },
                ),
                (
                    svc("blog", "web"),
                    Matcher::Compose {
                        project: "blog".into(),
                        services: vec!["web".into(), "worker".into()],
                    },
                ),
            ],
        }
    }

    /// From the config: `docker` services by name or label, `compose` services by project and
    /// services (default: the service's own name); `command` and `swarm` services not at all.
    #[test]
    fn the_config_says_which_containers_are_managed() {
        let config = crate::config::parse(
            r#"
[apps.shop]
token = "shop-token-123456"
[apps.shop.services.api]
image = { repository = "r.example/api", tags = "latest" }
docker = { container = "shop-api" }
[apps.shop.services.workers]
image = { repository = "r.example/worker", tags = "latest" }
docker = { label = "ferry.service=workers" }
[apps.shop.services.web]
compose = { project = "shop", file = "compose.yml" }
[apps.shop.services.swarmed]
image = { repository = "r.example/swarmed", tags = "latest" }
swarm = { service = "shop_api" }
[apps.shop.services.script]
command = ["./deploy.sh"]
"#,
            std::path::Path::new("/etc/ferry/ferry.toml"),
            &|_| None,
        )
        .expect("valid");
        let m = Managed::of(&config);
        let rules: Vec<String> = m
            .rules
            .iter()
            .map(|(s, m)| format!("{}/{} {m:?}", s.app, s.service))
            .collect();
        assert_eq!(
            rules,
            [
                r#"shop/api Name("shop-api")"#,
                r#"shop/web Compose { project: "shop", services: ["web"] }"#,
                r#"shop/workers Label { key: "ferry.service", value: "workers" }"#,
            ]
        );
        let only_commands = crate::config::parse(
            "[apps.a]\ntoken = \"a-token-123456789\"\n[apps.a.services.s]\ncommand = [\"x\"]\n",
            std::path::Path::new("/f.toml"),
            &|_| None,
        )
        .expect("valid");
        assert!(Managed::of(&only_commands).is_empty(), "nothing to watch");
    }

    #[test]
    fn containers_are_matched_by_name_label_or_compose_labels() {
        let m = managed();
        let of = |name: &str, a: &[(&str, &str)]| -> Vec<String> {
            m.services_of(name, &attrs(a))
                .into_iter()
                .map(|s| format!("{}/{}", s.app, s.service))
                .collect()
        };
        assert_eq!(of("shop-api", &[("name", "shop-api")]), ["shop/api"]);
        assert!(of("shop-api2", &[]).is_empty(), "names match exactly");
        assert!(
            of("shop-api-ferry-old-7", &[("ferry.service", "workers")]).is_empty(),
            "an old container moved aside is ferry's own doing"
        );
        assert_eq!(of("w1", &[("ferry.service", "workers")]), ["shop/workers"]);
        assert!(of("w1", &[("ferry.service", "web")]).is_empty());
        let compose = [
            (COMPOSE_PROJECT, "blog"),
            (COMPOSE_SERVICE, "worker"),
            (COMPOSE_ONEOFF, "False"),
        ];
        assert_eq!(of("blog-worker-1", &compose), ["blog/web"]);
        let oneoff = [
            (COMPOSE_PROJECT, "blog"),
            (COMPOSE_SERVICE, "worker"),
            (COMPOSE_ONEOFF, "True"),
        ];
        assert!(of("blog-worker-run-1", &oneoff).is_empty());
        let other = [(COMPOSE_PROJECT, "shop"), (COMPOSE_SERVICE, "worker")];
        assert!(of("shop-worker-1", &other).is_empty());
        assert_eq!(
            of("shop-api", &[("ferry.service", "workers")]),
            ["shop/api", "shop/workers"],
            "a container two services select belongs to both"
        );
    }
}
