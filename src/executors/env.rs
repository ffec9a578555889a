//! What a deploy command gets besides its argv: the `FERRY_*` environment and the payload file.
//!
//! Every `FERRY_*` variable is named once, in [`FERRY_VARS`], with where its value comes from;
//! the same list says which inherited variables to remove first, so a command never sees a
//! stale value. No payload value reaches a shell: event data is only ever a variable's value
//! or the payload file's content.

use std::path::{Path, PathBuf};

use super::Error;
use crate::sources::values::{ValueError, env_value};
use crate::store::Deployment;

/// What variables are made from: the deployment, its payload file and its checkout (if the
/// service has one).
pub(super) struct Inputs<'a> {
    pub(super) d: &'a Deployment,
    pub(super) payload: &'a Path,
    pub(super) checkout: Option<&'a Path>,
}

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
];

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
        checkout: Option<&Path>,
        service_env: &[(String, String)],
        secret_env_vars: &[String],
    ) -> Result<Env, ValueError> {
        let inputs = Inputs {
            d,
            payload,
            checkout,
        };
        let mut set = Vec::new();
        for (name, value) in FERRY_VARS {
            if let Some(value) = value(&inputs) {
                set.push((name.to_string(), value));
            }
        }
        set.iter().try_for_each(|(k, v)| env_value(k, v))?;
        set.extend(service_env.iter().cloned());
        let remove = FERRY_VARS
            .iter()
            .map(|(name, _)| name.to_string())
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
            None,
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
            Some(Path::new("/srv/app")),
            &[],
            &[],
        )
        .unwrap();
        assert!(
            env.set
                .contains(&("FERRY_CHECKOUT".into(), "/srv/app".into()))
        );
        let env = Env::new(&deployment(), Path::new("/p"), None, &[], &[]).unwrap();
        assert!(!env.set.iter().any(|(k, _)| k == "FERRY_CHECKOUT"));
        assert!(env.remove.iter().any(|k| k == "FERRY_CHECKOUT"));
    }

    #[test]
    fn a_control_character_in_a_value_is_refused() {
        let mut d = deployment();
        d.git_branch = Some("main\nFERRY_APP=evil".into());
        let e = Env::new(&d, Path::new("/p"), None, &[], &[]).unwrap_err();
        assert!(e.to_string().contains("FERRY_GIT_BRANCH"), "{e}");
    }
}
