//! `[[apps.X.alerts]]`: the rules that turn Alertmanager alerts into actions (issue 15).
//!
//! A rule matches an alert's labels (`match`: equality, `match_re`: an anchored regular
//! expression; a missing label reads as the empty string, as in Prometheus) and names exactly
//! one action for a firing alert — `redeploy = "SERVICE"`, `restart = "SERVICE"` (a `docker`
//! service) or `command = [argv…]` — and optionally one for its resolution (`on_resolved`),
//! with a `cooldown` per alert and a `max_per_hour` cap per rule. Everything is checked here,
//! at load: the planner (`crate::plan::alerts`) only reads the validated [`AlertRule`]s.
//!
//! A `command` action runs as a deployment of a pseudo-service that exists only for it,
//! `alert:RULE`, shared by the rule's firing and `on_resolved` commands: one lane per rule, so
//! a rule's commands never run at once and run in the order decided (a resolution's after
//! the firing's), each with a log and steps like any command service. Which of the two a run
//! is comes from its alert's status (`App::alert_command`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::validator::Validator;
use super::values::is_url_safe_name;
use super::{DEFAULT_TIMEOUT, Executor, Service, raw};
use crate::states::ALERT_SERVICE_PREFIX;

/// The cooldown of a rule that sets none: per rule and alert fingerprint.
pub(crate) const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5 * 60);
/// The cap of a rule that sets none: actions per rule in any hour.
pub(crate) const DEFAULT_MAX_PER_HOUR: u32 = 10;

/// One validated `[[apps.X.alerts]]` rule.
#[derive(Debug, Clone)]
pub(crate) struct AlertRule {
    pub(crate) name: String,
    /// All must hold for the rule to take an alert.
    pub(crate) matchers: Vec<Matcher>,
    /// What a firing alert does.
    pub(crate) action: AlertAction,
    /// What a resolved alert does, if anything.
    pub(crate) on_resolved: Option<AlertAction>,
    /// No second action of this rule on the same alert (fingerprint) and status within this.
    pub(crate) cooldown: Duration,
    /// At most this many actions of this rule in any hour, across alerts.
    pub(crate) max_per_hour: u32,
}

/// One label condition of a rule.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    pub(crate) label: String,
    pub(crate) test: LabelTest,
}

/// How a label's value is tested.
#[derive(Debug, Clone)]
pub(crate) enum LabelTest {
    Equal(String),
    /// Anchored: the whole value must match.
    Regex(regex::Regex),
}

/// What a rule does.
#[derive(Debug, Clone)]
pub(crate) enum AlertAction {
    /// Redeploy a service at what it runs now, as a generic redeploy of it would.
    Redeploy(String),
    /// Restart a docker service's containers, then the health gate.
    Restart(String),
    /// Run a command: the pseudo-service `alert:RULE` that runs it.
    Command(Box<Service>),
}

impl AlertAction {
    /// The service the action's deployment is of.
    #[cfg(test)]
    pub(crate) fn service(&self) -> &str {
        match self {
            AlertAction::Redeploy(s) | AlertAction::Restart(s) => s,
            AlertAction::Command(svc) => &svc.name,
        }
    }

    /// How the action is shown: `redeploy web`, `restart web`, `command alert:RULE`.
    pub(crate) fn describe(&self) -> String {
        match self {
            AlertAction::Redeploy(s) => format!("redeploy {s}"),
            AlertAction::Restart(s) => format!("restart {s}"),
            AlertAction::Command(svc) => format!("command {}", svc.name),
        }
    }
}

impl AlertRule {
    /// Whether every matcher holds for `labels` (a missing label reads as "").
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| {
            let value = labels.get(&m.label).map_or("", String::as_str);
            match &m.test {
                LabelTest::Equal(want) => value == want,
                LabelTest::Regex(re) => re.is_match(value),
            }
        })
    }

    /// The command this rule runs for a firing alert, or for a resolved one (`resolved`).
    pub(crate) fn command(&self, resolved: bool) -> Option<&Service> {
        let action = if resolved {
            self.on_resolved.as_ref()?
        } else {
            &self.action
        };
        match action {
            AlertAction::Command(svc) => Some(svc),
            AlertAction::Redeploy(_) | AlertAction::Restart(_) => None,
        }
    }
}

/// Whether a label name is one Prometheus allows.
pub(crate) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The fields of one action as written (in the rule itself, or in `on_resolved`).
struct ActionFields<'a> {
    redeploy: &'a Option<Spanned<String>>,
    restart: &'a Option<Spanned<String>>,
    command: &'a Option<Spanned<Vec<Spanned<String>>>>,
    workdir: &'a Option<Spanned<String>>,
    timeout: &'a Option<Spanned<String>>,
    env: &'a BTreeMap<Spanned<String>, Spanned<String>>,
}

impl Validator<'_> {
    /// Every `[[apps.X.alerts]]` rule of an app (`key` is the app's).
    pub(super) fn alerts(
        &mut self,
        raw: Vec<Spanned<raw::AlertRule>>,
        services: &BTreeMap<String, Service>,
        key: &str,
        dir: &Path,
    ) -> Vec<AlertRule> {
        let mut rules: Vec<AlertRule> = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let rkey = format!("{key}.alerts[{i}]");
            let Some(rule) = self.alert_rule(r, services, &rkey, dir) else {
                continue;
            };
            if rules.iter().any(|o| o.name == rule.name) {
                self.error(
                    None,
                    &format!("{rkey}.name"),
                    format!("{:?} is used by another rule of this app", rule.name),
                );
                continue;
            }
            rules.push(rule);
        }
        rules
    }

    fn alert_rule(
        &mut self,
        raw: Spanned<raw::AlertRule>,
        services: &BTreeMap<String, Service>,
        key: &str,
        dir: &Path,
    ) -> Option<AlertRule> {
        let span = raw.span();
        let r = raw.into_inner();
        let name = self.alert_rule_name(&r.name, key, span.clone());
        let mut matchers = self.equal_matchers(&r.equal, key);
        matchers.extend(self.regex_matchers(&r.match_re, key));
        let cooldown = match &r.cooldown {
            Some(v) => self.duration(v, &format!("{key}.cooldown")),
            None => Some(DEFAULT_COOLDOWN),
        };
        let max_per_hour = self.max_per_hour(&r.max_per_hour, key);
        let fields = ActionFields {
            redeploy: &r.redeploy,
            restart: &r.restart,
            command: &r.command,
            workdir: &r.workdir,
            timeout: &r.timeout,
            env: &r.env,
        };
        let name = name?;
        let action = self.alert_action(&fields, services, key, span, &name, dir);
        let on_resolved = match &r.on_resolved {
            Some(a) => {
                let a_span = a.span();
                let a = a.get_ref();
                let fields = ActionFields {
                    redeploy: &a.redeploy,
                    restart: &a.restart,
                    command: &a.command,
                    workdir: &a.workdir,
                    timeout: &a.timeout,
                    env: &a.env,
                };
                let rkey = format!("{key}.on_resolved");
                Some(self.alert_action(&fields, services, &rkey, a_span, &name, dir)?)
            }
            None => None,
        };
        Some(AlertRule {
            name,
            matchers,
            action: action?,
            on_resolved,
            cooldown: cooldown?,
            max_per_hour: max_per_hour?,
        })
    }

    /// `name`: required; used in the pseudo-service `alert:NAME`, so URL-safe.
    fn alert_rule_name(
        &mut self,
        raw: &Option<Spanned<String>>,
        key: &str,
        span: Range<usize>,
    ) -> Option<String> {
        let nkey = format!("{key}.name");
        let Some(v) = raw else {
            self.error(
                Some(span),
                &nkey,
                "is required: name = \"restart-web-on-5xx\"".into(),
            );
            return None;
        };
        let name = self.expand(v, &nkey, false)?;
        if name.is_empty() || !is_url_safe_name(&name) {
            self.error(
                Some(v.span()),
                &nkey,
                "rule names may use only letters, digits, '-' and '_'".into(),
            );
            return None;
        }
        Some(name)
    }

    /// `match = { label = "value" }`.
    fn equal_matchers(
        &mut self,
        raw: &Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
        key: &str,
    ) -> Vec<Matcher> {
        let mut out = Vec::new();
        for (label, value) in raw.iter().flat_map(|m| m.get_ref()) {
            let mkey = format!("{key}.match.{}", label.get_ref());
            if !self.label_name(label, &mkey) {
                continue;
            }
            if let Some(v) = self.expand(value, &mkey, false) {
                out.push(Matcher {
                    label: label.get_ref().clone(),
                    test: LabelTest::Equal(v),
                });
            }
        }
        out
    }

    /// `match_re = { label = "regex" }`: anchored, compiled at load.
    fn regex_matchers(
        &mut self,
        raw: &Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
        key: &str,
    ) -> Vec<Matcher> {
        let mut out = Vec::new();
        for (label, value) in raw.iter().flat_map(|m| m.get_ref()) {
            let mkey = format!("{key}.match_re.{}", label.get_ref());
            if !self.label_name(label, &mkey) {
                continue;
            }
            let Some(text) = self.expand(value, &mkey, false) else {
                continue;
            };
            match regex::Regex::new(&format!("^(?:{text})$")) {
                Ok(re) => out.push(Matcher {
                    label: label.get_ref().clone(),
                    test: LabelTest::Regex(re),
                }),
                Err(e) => {
                    let first = e.to_string();
                    let why = first.lines().last().unwrap_or("invalid").trim().to_string();
                    self.error(
                        Some(value.span()),
                        &mkey,
                        format!("invalid regular expression {text:?}: {why}"),
                    )
                }
            }
        }
        out
    }

    fn label_name(&mut self, label: &Spanned<String>, key: &str) -> bool {
        let ok = is_label_name(label.get_ref());
        if !ok {
            self.error(
                Some(label.span()),
                key,
                "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)".into(),
            );
        }
        ok
    }

    fn max_per_hour(&mut self, raw: &Option<Spanned<i64>>, key: &str) -> Option<u32> {
        let Some(v) = raw else {
            return Some(DEFAULT_MAX_PER_HOUR);
        };
        match u32::try_from(*v.get_ref()) {
            Ok(n) if (1..=3600).contains(&n) => Some(n),
            _ => {
                self.error(
                    Some(v.span()),
                    &format!("{key}.max_per_hour"),
                    "must be between 1 and 3600".into(),
                );
                None
            }
        }
    }

    /// Exactly one of `redeploy`, `restart`, `command`; `workdir`, `timeout` and `env` only
    /// with `command`. `pseudo` names the rule's command pseudo-service (without the prefix).
    fn alert_action(
        &mut self,
        f: &ActionFields<'_>,
        services: &BTreeMap<String, Service>,
        key: &str,
        span: Range<usize>,
        pseudo: &str,
        dir: &Path,
    ) -> Option<AlertAction> {
        let set: Vec<&str> = [
            f.redeploy.as_ref().map(|_| "redeploy"),
            f.restart.as_ref().map(|_| "restart"),
            f.command.as_ref().map(|_| "command"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if set.len() != 1 {
            let which = if set.is_empty() {
                "none is set".to_string()
            } else {
                format!("{} are set", set.join(" and "))
            };
            self.error(
                Some(span),
                key,
                format!("needs exactly one action: redeploy = \"SERVICE\", restart = \"SERVICE\" or command = [\"program\", …] ({which})"),
            );
            return None;
        }
        if let Some(cmd) = f.command {
            return self.alert_command(f, cmd, key, pseudo, dir);
        }
        for (field, present) in [
            ("workdir", f.workdir.as_ref().map(Spanned::span)),
            ("timeout", f.timeout.as_ref().map(Spanned::span)),
            ("env", f.env.keys().next().map(Spanned::span)),
        ] {
            if let Some(s) = present {
                self.error(
                    Some(s),
                    &format!("{key}.{field}"),
                    "applies only to a `command` action".into(),
                );
            }
        }
        if let Some(s) = f.redeploy {
            let name = self.known_service(s, services, &format!("{key}.redeploy"))?;
            return Some(AlertAction::Redeploy(name));
        }
        let s = f.restart.as_ref()?;
        let rkey = format!("{key}.restart");
        let name = self.known_service(s, services, &rkey)?;
        if !matches!(services[&name].executor, Executor::Docker(_)) {
            self.error(
                Some(s.span()),
                &rkey,
                format!("service {name:?} is not a docker service: only their containers can be restarted (use redeploy or command)"),
            );
            return None;
        }
        Some(AlertAction::Restart(name))
    }

    /// A `command` action as the pseudo-service `alert:PSEUDO` that runs it.
    fn alert_command(
        &mut self,
        f: &ActionFields<'_>,
        cmd: &Spanned<Vec<Spanned<String>>>,
        key: &str,
        pseudo: &str,
        dir: &Path,
    ) -> Option<AlertAction> {
        let timeout = match f.timeout {
            Some(v) => self.duration(v, &format!("{key}.timeout"))?,
            None => DEFAULT_TIMEOUT,
        };
        let env = self.env(f.env, key);
        let workdir = match f.workdir {
            Some(v) => dir.join(self.expand(v, &format!("{key}.workdir"), false)?),
            None => dir.to_path_buf(),
        };
        let executor = self.command(cmd, key, workdir, None)?;
        Some(AlertAction::Command(Box::new(Service {
            name: format!("{ALERT_SERVICE_PREFIX}{pseudo}"),
            git: None,
            image: None,
            executor,
            timeout,
            env,
            runs_on: Vec::new(),
            // A rule's command runs for alerts, never on a schedule.
            reconcile: None,
        })))
    }

    /// The name of a configured service, or an error naming those there are.
    fn known_service(
        &mut self,
        v: &Spanned<String>,
        services: &BTreeMap<String, Service>,
        key: &str,
    ) -> Option<String> {
        let name = self.expand(v, key, false)?;
        if services.contains_key(&name) {
            return Some(name);
        }
        let known: Vec<&str> = services.keys().map(String::as_str).collect();
        self.error(
            Some(v.span()),
            key,
            format!(
                "no service {name:?} in this app (services: {})",
                known.join(", ")
            ),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::testing::errors;

    const BASE: &str = "[apps.shop]\ntoken = \"tok-0123456789abcdef\"\n[apps.shop.services.web]\ncommand = [\"true\"]\n[apps.shop.services.api]\nimage = { repository = \"r.example/acme/api\" }\ndocker = { container = \"api\" }\n";

    fn rules(extra: &str) -> Vec<AlertRule> {
        let text = format!("{BASE}{extra}");
        crate::config::parse(&text, Path::new("f.toml"), &|_| None)
            .unwrap()
            .apps
            .remove("shop")
            .unwrap()
            .alerts
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rules_read_with_their_defaults_and_match_labels() {
        let r = rules(
            "[[apps.shop.alerts]]\nname = \"mem\"\nmatch = { alertname = \"HighMemory\" }\nmatch_re = { instance = \"web-[0-9]+\" }\nrestart = \"api\"\non_resolved = { command = [\"./ok.sh\"], timeout = \"30s\" }\n",
        );
        assert_eq!(r.len(), 1);
        let rule = &r[0];
        assert_eq!(rule.cooldown, DEFAULT_COOLDOWN);
        assert_eq!(rule.max_per_hour, DEFAULT_MAX_PER_HOUR);
        assert_eq!(rule.action.describe(), "restart api");
        let resolved = rule.on_resolved.as_ref().unwrap();
        assert_eq!(resolved.service(), "alert:mem");
        assert!(rule.command(false).is_none());
        let svc = rule.command(true).unwrap();
        assert_eq!(svc.timeout, std::time::Duration::from_secs(30));
        assert!(rule.matches(&labels(&[
            ("alertname", "HighMemory"),
            ("instance", "web-12")
        ])));
        // Anchored: a prefix or suffix does not match.
        assert!(!rule.matches(&labels(&[
            ("alertname", "HighMemory"),
            ("instance", "xweb-12")
        ])));
        assert!(!rule.matches(&labels(&[
            ("alertname", "HighMemory"),
            ("instance", "web-12x")
        ])));
        assert!(!rule.matches(&labels(&[
            ("alertname", "HighMemoryX"),
            ("instance", "web-1")
        ])));
        // A missing label reads as "".
        assert!(!rule.matches(&labels(&[("alertname", "HighMemory")])));
        let r = rules(
            "[[apps.shop.alerts]]\nname = \"any\"\nmatch_re = { team = \"|ops\" }\ncommand = [\"x\"]\n",
        );
        assert!(r[0].matches(&labels(&[])));
        assert_eq!(r[0].action.service(), "alert:any");
    }

    #[test]
    fn every_mistake_is_named_with_its_key() {
        let cases: &[(&str, &str)] = &[
            (
                "match = { a = \"b\" }\ncommand = [\"x\"]\n",
                "alerts[0].name: is required",
            ),
            (
                "name = \"a b\"\ncommand = [\"x\"]\n",
                "alerts[0].name: rule names may use only",
            ),
            ("name = \"r\"\n", "alerts[0]: needs exactly one action"),
            (
                "name = \"r\"\nredeploy = \"web\"\nrestart = \"api\"\n",
                "redeploy and restart are set",
            ),
            (
                "name = \"r\"\nredeploy = \"nope\"\n",
                "alerts[0].redeploy: no service \"nope\"",
            ),
            (
                "name = \"r\"\nrestart = \"web\"\n",
                "alerts[0].restart: service \"web\" is not a docker service",
            ),
            (
                "name = \"r\"\nredeploy = \"web\"\ntimeout = \"1m\"\n",
                "alerts[0].timeout: applies only to a `command` action",
            ),
            (
                "name = \"r\"\ncommand = [\"x\"]\nmatch_re = { job = \"(\" }\n",
                "alerts[0].match_re.job: invalid regular expression",
            ),
            (
                "name = \"r\"\ncommand = [\"x\"]\nmatch = { \"1job\" = \"a\" }\n",
                "alerts[0].match.1job: is not a label name",
            ),
            (
                "name = \"r\"\ncommand = [\"x\"]\ncooldown = \"soon\"\n",
                "alerts[0].cooldown: invalid duration",
            ),
            (
                "name = \"r\"\ncommand = [\"x\"]\nmax_per_hour = 0\n",
                "alerts[0].max_per_hour: must be between 1 and 3600",
            ),
            (
                "name = \"r\"\ncommand = []\n",
                "alerts[0].command: must name a program",
            ),
            (
                "name = \"r\"\ncommand = [\"x\"]\nenv = { FERRY_X = \"1\" }\n",
                "alerts[0].env.FERRY_X",
            ),
            (
                "name = \"r\"\ncommand = [\"x\"]\non_resolved = { }\n",
                "alerts[0].on_resolved: needs exactly one action",
            ),
            (
                "name = \"r\"\ncommand = [\"x\"]\non_resolved = { redeploy = \"web\", cooldown = \"1m\" }\n",
                "unknown field `cooldown`",
            ),
            (
                "name = \"r\"\ncommand = [\"x\"]\nrestrat = \"api\"\n",
                "unknown field `restrat`",
            ),
        ];
        for (rule, want) in cases {
            let e = errors(&format!("{BASE}[[apps.shop.alerts]]\n{rule}"));
            assert!(
                e.len() == 1 && e[0].contains(want),
                "{rule:?}: want {want:?}, got {e:?}"
            );
            assert!(e[0].starts_with("/etc/ferry/ferry.toml:"), "{e:?}");
        }
        let e = errors(&format!(
            "{BASE}[[apps.shop.alerts]]\nname = \"r\"\ncommand = [\"x\"]\n[[apps.shop.alerts]]\nname = \"r\"\nredeploy = \"web\"\n"
        ));
        assert!(
            e.len() == 1 && e[0].contains("alerts[1].name: \"r\" is used by another rule"),
            "{e:?}"
        );
    }
}
