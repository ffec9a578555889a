//! What a deploy command gets besides its argv: the `FERRY_*` environment and the payload file.
//!
//! Every `FERRY_*` variable is named once, in [`FERRY_VARS`], with where its value comes from;
//! the same list says which inherited variables to remove first, so a command never sees a
//! stale value. No payload value reaches a shell: event data is only ever a variable's value
//! or the payload file's content.

use std::path::{Path, PathBuf};

use super::Error;
use crate::sources::values::{ValueError, env_value};
use crate::store::{AlertRow, Deployment};

/// What variables are made from: the deployment, its payload file, its checkout (if the
/// service has one) and, for a deployment an alert rule planned, the alert (`alerts` row).
pub(super) struct Inputs<'a> {
    pub(super) d: &'a Deployment,
    pub(super) payload: &'a Path,
    pub(super) checkout: Option<&'a Path>,
    pub(super) alert: Option<&'a AlertRow>,
}

/// The prefix of the per-label variables of an alert (`FERRY_ALERT_LABEL_SEVERITY`), which are
/// not in [`FERRY_VARS`]: their names come from the alert.
const ALERT_LABEL_PREFIX: &str = "FERRY_ALERT_LABEL_";

/// A variable's value; `None`: unset.
type Value = fn(&Inputs<'_>) -> Option<String>;

/// Every `FERRY_*` variable ferry sets, in the order they are set.
const FERRY_VARS: &[(&str, Value)] = &[
    ("FERRY_APP", |i| Some(i.d.app.clone())),
    ("FERRY_SERVICE", |i| Some(i.d.service.clone())),
    ("FERRY_DEPLOYMENT_ID", |i| Some(i.d.id.to_string())),
    ("FERRY_DELIVERY_ID", |i| Some(i.d.delivery_id.to_string())),
    ("FERRY_SOURCE", |i| Some(i.d.source.clone())),
    ("FERRY_EVENT", |i| Some(i.d.event.clone())),
    ("FERRY_ATTEMPT", |i| Some(i.d.attempt.to_string())),
    ("FERRY_PAYLOAD", |i| Some(i.payload.display().to_string())),
    ("FERRY_GIT_REPO", |i| i.d.git_repo.clone()),
    ("FERRY_GIT_BRANCH", |i| i.d.git_branch.clone()),
    ("FERRY_GIT_REF", |i| i.d.git_ref.clone()),
    ("FERRY_GIT_COMMIT", |i| i.d.git_commit.clone()),
    ("FERRY_IMAGE", |i| i.d.image.clone()),
    ("FERRY_IMAGE_TAG", |i| i.d.image_tag.clone()),
    ("FERRY_IMAGE_DIGEST", |i| i.d.image_digest.clone()),
    ("FERRY_PROFILE", |i| i.d.profile.clone()),
    ("FERRY_CHECKOUT", |i| {
        i.checkout.map(|p| p.display().to_string())
    }),
    // An alert rule's action (source alertmanager, event alert): the alert it acts on. Labels
    // and annotations as JSON objects; each label also as FERRY_ALERT_LABEL_<NAME> (below).
    ("FERRY_ALERT_NAME", |i| i.alert.map(|a| a.alertname.clone())),
    ("FERRY_ALERT_STATUS", |i| i.alert.map(|a| a.status.clone())),
    ("FERRY_ALERT_FINGERPRINT", |i| {
        i.alert.map(|a| a.fingerprint.clone())
    }),
    ("FERRY_ALERT_STARTS_AT", |i| {
        i.alert.map(|a| a.starts_at.clone())
    }),
    ("FERRY_ALERT_RULE", |i| i.alert.and_then(|a| a.rule.clone())),
    ("FERRY_ALERT_LABELS", |i| {
        i.alert.map(|a| escaped_json(&a.labels))
    }),
    ("FERRY_ALERT_ANNOTATIONS", |i| {
        i.alert.map(|a| escaped_json(&a.annotations))
    }),
];

/// `FERRY_ALERT_LABEL_<NAME>` for each label of the alert (the name upper-cased; label names
/// are `[a-zA-Z_][a-zA-Z0-9_]*`, so it is a valid variable name). A value holding a control
/// character is left out here (it stays in `FERRY_ALERT_LABELS`), and of two labels whose
/// names differ only in case the first (in byte order) wins.
fn alert_label_vars(alert: &AlertRow) -> Vec<(String, String)> {
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&alert.labels).unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in labels {
        let var = format!("{ALERT_LABEL_PREFIX}{}", name.to_ascii_uppercase());
        let usable = crate::config::is_label_name(&name) && env_value(&var, &value).is_ok();
        if usable && !out.iter().any(|(k, _)| *k == var) {
            out.push((var, value));
        }
    }
    out
}

/// Stored JSON with every control character escaped as `\uXXXX`: serde_json leaves DEL and
/// the C1 controls raw, and no variable may hold a control character. (Outside strings the
/// stored JSON holds none, so escaping them is still the same JSON.)
fn escaped_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The inherited per-label variables (of ferry's own environment), removed like every other
/// `FERRY_*` name so a command never sees a stale one.
fn inherited_alert_label_vars() -> impl Iterator<Item = String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with(ALERT_LABEL_PREFIX))
}

/// How a deploy command's environment differs from ferry's own.
#[derive(Debug, Clone)]
pub(super) struct Env {
    /// Added: the `FERRY_*` values, then the service's `env` from config.
    pub(crate) set: Vec<(String, String)>,
    /// Removed first: every `FERRY_*` name, and the variables that held ferry's secrets.
    pub(crate) remove: Vec<String>,
}

impl Env {
    /// The environment of deployment `d`. Every `FERRY_*` value is checked for control
    /// characters once more: the planner took only checked values (`sources::values`), but
    /// whatever a deployment row holds is checked again before it becomes a variable.
    pub(super) fn new(
        d: &Deployment,
        payload: &Path,
        (checkout, alert): (Option<&Path>, Option<&AlertRow>),
        service_env: &[(String, String)],
        secret_env_vars: &[String],
    ) -> Result<Env, ValueError> {
        let inputs = Inputs {
            d,
            payload,
            checkout,
            alert,
        };
        let mut set = Vec::new();
        for (name, value) in FERRY_VARS {
            if let Some(value) = value(&inputs) {
                set.push((name.to_string(), value));
            }
        }
        if let Some(alert) = alert {
            set.extend(alert_label_vars(alert));
        }
        set.iter().try_for_each(|(k, v)| env_value(k, v))?;
        set.extend(service_env.iter().cloned());
        let remove = FERRY_VARS
            .iter()
            .map(|(name, _)| name.to_string())
            .chain(inherited_alert_label_vars())
            .chain(secret_env_vars.iter().cloned())
            .collect();
        Ok(Env { set, remove })
    }
}

/// The delivery's raw body in a private file for `FERRY_PAYLOAD`; removed when dropped, i.e.
/// once the run is over however it ended.
#[derive(Debug)]
pub(super) struct Payload(PathBuf);

impl Payload {
    pub(super) async fn write(
        data_dir: &Path,
        deployment: i64,
        body: &[u8],
    ) -> Result<Payload, Error> {
        let dir = data_dir.join("payloads");
        let path = dir.join(format!("deployment-{deployment}.body"));
        let write = async {
            crate::datadir::create_dir_async(&dir).await?;
            let mut opts = crate::datadir::file_options_async();
            opts.write(true).create(true).truncate(true);
            let mut f = opts.open(&path).await?;
            tokio::io::AsyncWriteExt::write_all(&mut f, body).await?;
            tokio::io::AsyncWriteExt::flush(&mut f).await
        };
        match write.await {
            Ok(()) => Ok(Payload(path)),
            Err(source) => Err(Error::Payload { path, source }),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Deployment {
        Deployment {
            id: 7,
            app: "shop".into(),
            service: "web".into(),
            delivery_id: 3,
            state: crate::store::DeploymentState::Running,
            reason: None,
            source: "github".into(),
            event: "push".into(),
            git_repo: Some("acme/shop".into()),
            git_branch: Some("main".into()),
            git_ref: None,
            git_commit: Some("a".repeat(40)),
            event_time: None,
            profile: None,
            image: None,
            image_tag: None,
            image_digest: None,
            attempt: 1,
            retry_of: None,
            exit_code: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
            node: None,
        }
    }

    #[test]
    fn set_values_come_first_and_every_ferry_name_is_removed() {
        let env = Env::new(
            &deployment(),
            Path::new("/data/payloads/deployment-7.body"),
            (None, None),
            &[("GREETING".into(), "hello".into())],
            &["HOOK_TOKEN".into()],
        )
        .unwrap();
        let names: Vec<&str> = env.set.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "FERRY_APP",
                "FERRY_SERVICE",
                "FERRY_DEPLOYMENT_ID",
                "FERRY_DELIVERY_ID",
                "FERRY_SOURCE",
                "FERRY_EVENT",
                "FERRY_ATTEMPT",
                "FERRY_PAYLOAD",
                "FERRY_GIT_REPO",
                "FERRY_GIT_BRANCH",
                "FERRY_GIT_COMMIT",
                "GREETING",
            ]
        );
        assert!(env.set.contains(&(
            "FERRY_PAYLOAD".into(),
            "/data/payloads/deployment-7.body".into()
        )));
        assert_eq!(env.remove.len(), FERRY_VARS.len() + 1);
        assert!(env.remove.iter().any(|n| n == "FERRY_PROFILE"));
        assert_eq!(env.remove.last().map(String::as_str), Some("HOOK_TOKEN"));
    }

    #[test]
    fn a_checkout_is_named_by_ferry_checkout() {
        let env = Env::new(
            &deployment(),
            Path::new("/p"),
            (Some(Path::new("/srv/app")), None),
            &[],
            &[],
        )
        .unwrap();
        assert!(
            env.set
                .contains(&("FERRY_CHECKOUT".into(), "/srv/app".into()))
        );
        let env = Env::new(&deployment(), Path::new("/p"), (None, None), &[], &[]).unwrap();
        assert!(!env.set.iter().any(|(k, _)| k == "FERRY_CHECKOUT"));
        assert!(env.remove.iter().any(|k| k == "FERRY_CHECKOUT"));
    }

    #[test]
    fn a_control_character_in_a_value_is_refused() {
        let mut d = deployment();
        d.git_branch = Some("main\nFERRY_APP=evil".into());
        let e = Env::new(&d, Path::new("/p"), (None, None), &[], &[]).unwrap_err();
        assert!(e.to_string().contains("FERRY_GIT_BRANCH"), "{e}");
    }

    /// An alert's variables: its fields, the JSON objects (control characters escaped), and
    /// one variable per label whose value is free of control characters.
    #[test]
    fn alert_variables() {
        let alert = AlertRow {
            id: 1,
            delivery_id: 3,
            app: "shop".into(),
            rule: Some("heal".into()),
            fingerprint: "00aa".into(),
            alertname: "Down".into(),
            status: "firing".into(),
            starts_at: "2026-12-04T17:00:00Z".into(),
            ends_at: None,
            labels: r#"{"alertname":"Down","bad":"a\nb","job":"x; rm -rf /","odd":"\u007f"}"#
                .into(),
            annotations: "{\"summary\":\"down\u{85}now\"}".into(),
            action: Some("command alert:heal".into()),
            outcome: crate::states::AlertOutcome::Acted,
            reason: None,
            deployment_id: Some(7),
            created_at: 0,
        };
        let env = Env::new(
            &deployment(),
            Path::new("/p"),
            (None, Some(&alert)),
            &[],
            &[],
        )
        .unwrap();
        let get = |k: &str| {
            env.set
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("FERRY_ALERT_NAME"), Some("Down"));
        assert_eq!(get("FERRY_ALERT_STATUS"), Some("firing"));
        assert_eq!(get("FERRY_ALERT_FINGERPRINT"), Some("00aa"));
        assert_eq!(get("FERRY_ALERT_STARTS_AT"), Some("2026-12-04T17:00:00Z"));
        assert_eq!(get("FERRY_ALERT_RULE"), Some("heal"));
        assert_eq!(get("FERRY_ALERT_LABEL_ALERTNAME"), Some("Down"));
        // Shell metacharacters are only text in a value.
        assert_eq!(get("FERRY_ALERT_LABEL_JOB"), Some("x; rm -rf /"));
        assert_eq!(get("FERRY_ALERT_LABEL_BAD"), None);
        assert_eq!(get("FERRY_ALERT_LABEL_ODD"), None);
        let labels: serde_json::Value =
            serde_json::from_str(get("FERRY_ALERT_LABELS").unwrap()).unwrap();
        assert_eq!(labels["bad"], "a\nb");
        assert_eq!(labels["odd"], "\u{7f}");
        let annotations: serde_json::Value =
            serde_json::from_str(get("FERRY_ALERT_ANNOTATIONS").unwrap()).unwrap();
        assert_eq!(annotations["summary"], "down\u{85}now");
        assert!(
            env.set
                .iter()
                .all(|(_, v)| !v.chars().any(char::is_control))
        );
    }
}
