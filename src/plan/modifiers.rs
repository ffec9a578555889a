//! The hook URL's modifiers (`?services=`, `?deployment_profile=`, `?git_ref=`): read from the
//! query string, checked against the app (unknown names are errors) and against what the app
//! allows on hooks (`[apps.X] modifiers`), and written back for manual deploys.

use crate::config::{App, Modifier};

/// The hook URL's query modifiers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Modifiers {
    pub(crate) services: Option<Vec<String>>,
    pub(crate) profile: Option<String>,
    pub(crate) git_ref: Option<String>,
}

impl Modifiers {
    /// Reads `services`, `deployment_profile` and `git_ref` from a raw query string (`+` and
    /// `%20` both decode to a space). Other parameters are ignored.
    pub(crate) fn parse(query: &str) -> Modifiers {
        let mut m = Modifiers::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.trim().to_string();
            match k.as_ref() {
                "services" => {
                    let list: Vec<String> = v
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    if !list.is_empty() {
                        m.services = Some(list);
                    }
                }
                "deployment_profile" if !v.is_empty() => m.profile = Some(v),
                "git_ref" if !v.is_empty() => m.git_ref = Some(v),
                _ => {}
            }
        }
        m
    }

    /// Checks the modifiers against the app: unknown services or profiles, or a `git_ref` that
    /// is no ref name or commit id, are an error that names them.
    pub(crate) fn validate(&self, app: &App) -> Result<(), String> {
        // `git_ref` becomes FERRY_GIT_REF: a ref name or a commit id, never an option or a
        // line break (see `sources::values`).
        if let Some(r) = &self.git_ref {
            crate::sources::values::git_ref_or_commit(r).map_err(|e| e.to_string())?;
        }
        if let Some(p) = &self.profile
            && !app.profiles.contains_key(p)
        {
            return Err(format!("app {} has no deployment profile {p:?}", app.name));
        }
        if let Some(list) = &self.services {
            let unknown: Vec<&str> = list
                .iter()
                .filter(|s| !app.services.contains_key(s.as_str()))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(format!(
                    "app {} has no service {} (services: {})",
                    app.name,
                    unknown.join(", "),
                    app.services.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Checks a hook request's modifiers against what the app allows (`[apps.X] modifiers`;
    /// the API's manual deploys are not limited by it), and refuses `git_ref` on an unverified
    /// delivery of an app with schemes (`verify.allow_unsigned`): such a delivery never names
    /// a version. The message names the modifier and the key to set.
    pub(crate) fn check_hook(&self, app: &App, verified: bool) -> Result<(), String> {
        let present = [
            (Modifier::Services, self.services.is_some()),
            (Modifier::DeploymentProfile, self.profile.is_some()),
            (Modifier::GitRef, self.git_ref.is_some()),
        ];
        if let Some((m, _)) = present
            .iter()
            .find(|(m, set)| *set && !app.modifiers.contains(m))
        {
            let allowed: Vec<&str> = app.modifiers.iter().map(|m| m.as_str()).collect();
            return Err(format!(
                "the modifier ?{m}= is not allowed for app {app}: add \"{m}\" to apps.{app}.modifiers (allowed now: {allowed})",
                m = m.as_str(),
                app = app.name,
                allowed = if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ));
        }
        if self.git_ref.is_some() && !verified && app.verify.configured() {
            return Err(format!(
                "?git_ref= needs a verified delivery: app {} takes unsigned requests only as redeploys of what is configured (verify.allow_unsigned); sign the request to name a ref",
                app.name
            ));
        }
        Ok(())
    }

    /// Encodes the modifiers as a query string (for manual deploys, stored like a hook URL's).
    pub(crate) fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(s) = &self.services {
            q.append_pair("services", &s.join(","));
        }
        if let Some(p) = &self.profile {
            q.append_pair("deployment_profile", p);
        }
        if let Some(r) = &self.git_ref {
            q.append_pair("git_ref", r);
        }
        q.finish()
    }
}
