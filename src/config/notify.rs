//! `[[notify]]`: where ferry sends outgoing webhooks, checked. The worker that sends them is
//! `crate::notify`; this is what the config says: the URL (a secret: a Slack-style URL is the
//! receiver's credential), the `whsec_` signing secret that `format = "standard"` needs and
//! `"slack"` must not have, and which apps and event types each entry wants (names checked
//! against the apps and `EventType`).

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::validator::Validator;
use super::{App, raw};
use crate::secret::Secret;
use crate::states::EventType;

/// How a `[[notify]]` receiver wants its notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotifyFormat {
    /// Standard Webhooks: a signed JSON body with `type`, `timestamp` and `data`.
    Standard,
    /// Slack-compatible incoming-webhook JSON (`{"text": …}`); the URL is the secret.
    Slack,
}

impl NotifyFormat {
    pub(crate) const ALL: [NotifyFormat; 2] = [NotifyFormat::Standard, NotifyFormat::Slack];

    /// The value of `format`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Standard => "standard",
            NotifyFormat::Slack => "slack",
        }
    }
}

/// One `[[notify]]` entry.
#[derive(Debug, Clone)]
pub(crate) struct NotifyTarget {
    /// Where to POST. A `Secret`: a Slack-style URL is the receiver's credential, and any URL
    /// may carry a token in its query; it is never logged, stored or served.
    pub(crate) url: Secret,
    /// The `whsec_…` signing secret (`standard` only).
    pub(crate) secret: Option<Secret>,
    pub(crate) format: NotifyFormat,
    /// The apps whose events it gets (`None`: every app).
    pub(crate) apps: Option<BTreeSet<String>>,
    /// The event types it gets (without `events`: every type that `EventType::is_default`).
    pub(crate) events: BTreeSet<EventType>,
    /// Its queue in the outbox: `notify:` and a hash of the URL (the URL itself may be a
    /// secret, so it is not stored: the worker finds the entry again by this key).
    pub(crate) target: String,
    /// `scheme://host[:port]` of the URL, for logs and the API.
    pub(crate) receiver: String,
}

impl NotifyTarget {
    /// An entry for `url` (which must parse as a URL: the config checked it).
    pub(crate) fn new(
        url: Secret,
        secret: Option<Secret>,
        format: NotifyFormat,
        apps: Option<BTreeSet<String>>,
        events: Option<BTreeSet<EventType>>,
    ) -> NotifyTarget {
        let digest = Sha256::digest(url.expose().as_bytes());
        let target = format!("notify:{}", &hex::encode(digest)[..16]);
        let receiver = receiver_of(url.expose());
        let events = events.unwrap_or_else(|| {
            EventType::ALL
                .iter()
                .copied()
                .filter(|e| e.is_default())
                .collect()
        });
        NotifyTarget {
            url,
            secret,
            format,
            apps,
            events,
            target,
            receiver,
        }
    }

    /// Whether it wants an event of `event` about `app`.
    pub(crate) fn wants(&self, event: EventType, app: &str) -> bool {
        self.events.contains(&event) && self.apps.as_ref().is_none_or(|a| a.contains(app))
    }
}

impl Validator<'_> {
    /// Every `[[notify]]` entry (`notify[0]`, `notify[1]`, … in messages), checked against
    /// the apps; two entries may not share a URL (it is their queue's key).
    pub(super) fn notify(
        &mut self,
        raw: &[Spanned<raw::Notify>],
        apps: &BTreeMap<String, App>,
    ) -> Vec<NotifyTarget> {
        let mut out: Vec<NotifyTarget> = Vec::new();
        let mut first_of: BTreeMap<String, usize> = BTreeMap::new();
        for (i, entry) in raw.iter().enumerate() {
            let key = format!("notify[{i}]");
            let Some(target) = self.notify_entry(entry.get_ref(), &key, apps) else {
                continue;
            };
            if let Some(first) = first_of.get(&target.target) {
                self.error(
                    Some(entry.get_ref().url.span()),
                    &format!("{key}.url"),
                    format!("the same URL as notify[{first}]: one entry per receiver"),
                );
                continue;
            }
            first_of.insert(target.target.clone(), i);
            out.push(target);
        }
        out
    }

    fn notify_entry(
        &mut self,
        raw: &raw::Notify,
        key: &str,
        apps: &BTreeMap<String, App>,
    ) -> Option<NotifyTarget> {
        let url = self.notify_url(raw, key);
        let format = self.notify_format(raw, key);
        let secret = format.and_then(|f| self.notify_secret(raw, key, f));
        let wanted_apps = self.notify_apps(raw, key, apps);
        let events = self.notify_events(raw, key);
        Some(NotifyTarget::new(
            url?,
            secret?,
            format?,
            wanted_apps?,
            events?,
        ))
    }

    /// `url`: an `http://` or `https://` URL with a host. The message never shows it.
    fn notify_url(&mut self, raw: &raw::Notify, key: &str) -> Option<Secret> {
        let key = format!("{key}.url");
        let url = self.secret_value(&raw.url, &key)?;
        let ok = reqwest::Url::parse(&url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        });
        if !ok {
            self.error(
                Some(raw.url.span()),
                &key,
                "must be an http:// or https:// URL".into(),
            );
            return None;
        }
        Some(Secret::new(url))
    }

    /// `format`: `"standard"` (the default) or `"slack"`.
    fn notify_format(&mut self, raw: &raw::Notify, key: &str) -> Option<NotifyFormat> {
        let Some(v) = &raw.format else {
            return Some(NotifyFormat::Standard);
        };
        let found = NotifyFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == v.get_ref());
        if found.is_none() {
            let known: Vec<&str> = NotifyFormat::ALL.iter().map(|f| f.as_str()).collect();
            self.error(
                Some(v.span()),
                &format!("{key}.format"),
                format!(
                    "unknown format {:?} (known: {})",
                    v.get_ref(),
                    known.join(", ")
                ),
            );
        }
        found
    }

    /// `secret`: a `whsec_` key, required by `standard`; refused with `slack`, whose URL is the
    /// credential (a secret there would suggest a signature that is never sent).
    fn notify_secret(
        &mut self,
        raw: &raw::Notify,
        key: &str,
        format: NotifyFormat,
    ) -> Option<Option<Secret>> {
        let skey = format!("{key}.secret");
        match (format, &raw.secret) {
            (NotifyFormat::Slack, None) => Some(None),
            (NotifyFormat::Slack, Some(v)) => {
                self.error(
                    Some(v.span()),
                    &skey,
                    "not used with format = \"slack\": Slack-style messages are not signed, the URL is the credential; remove it".into(),
                );
                None
            }
            (NotifyFormat::Standard, None) => {
                self.error(
                    Some(raw.url.span()),
                    &skey,
                    "required with format = \"standard\": the whsec_ secret that signs every message (Standard Webhooks)".into(),
                );
                None
            }
            (NotifyFormat::Standard, Some(v)) => {
                let value = self.secret_value(v, &skey)?;
                if crate::secret::decode_secret(&value).is_none() || !value.starts_with("whsec_") {
                    self.error(
                        Some(v.span()),
                        &skey,
                        "must be a Standard Webhooks secret: whsec_ and base64".into(),
                    );
                    return None;
                }
                Some(Some(Secret::new(value)))
            }
        }
    }

    /// `apps`: names of configured apps (`None`: every app).
    fn notify_apps(
        &mut self,
        raw: &raw::Notify,
        key: &str,
        apps: &BTreeMap<String, App>,
    ) -> Option<Option<BTreeSet<String>>> {
        let Some(list) = &raw.apps else {
            return Some(None);
        };
        let akey = format!("{key}.apps");
        if list.get_ref().is_empty() {
            self.error(
                Some(list.span()),
                &akey,
                "is empty: leave it out for every app".into(),
            );
            return None;
        }
        let mut ok = true;
        for name in list.get_ref() {
            if !apps.contains_key(name.get_ref()) {
                let known: Vec<&str> = apps.keys().map(String::as_str).collect();
                self.error(
                    Some(name.span()),
                    &akey,
                    format!(
                        "unknown app {:?} (apps: {})",
                        name.get_ref(),
                        known.join(", ")
                    ),
                );
                ok = false;
            }
        }
        ok.then(|| Some(list.get_ref().iter().map(|n| n.get_ref().clone()).collect()))
    }

    /// `events`: event type names (`None`: the default set).
    fn notify_events(
        &mut self,
        raw: &raw::Notify,
        key: &str,
    ) -> Option<Option<BTreeSet<EventType>>> {
        let Some(list) = &raw.events else {
            return Some(None);
        };
        let ekey = format!("{key}.events");
        if list.get_ref().is_empty() {
            self.error(
                Some(list.span()),
                &ekey,
                "is empty: leave it out for every event".into(),
            );
            return None;
        }
        let mut events = BTreeSet::new();
        let mut ok = true;
        for name in list.get_ref() {
            match name.get_ref().parse::<EventType>() {
                Ok(e) => {
                    events.insert(e);
                }
                Err(e) => {
                    self.error(Some(name.span()), &ekey, e.to_string());
                    ok = false;
                }
            }
        }
        ok.then_some(Some(events))
    }
}

/// `scheme://host[:port]` of a URL: where it goes, without path, query or credentials.
pub(crate) fn receiver_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or_default();
            match u.port() {
                Some(port) => format!("{}://{host}:{port}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{GOOD, check, errors};
    use super::*;

    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn entries_with_defaults_and_filters() {
        let text = format!(
            "{GOOD}\n[[notify]]\nurl = \"https://hooks.example.com/ferry\"\nsecret = \"{WHSEC}\"\n\n[[notify]]\nurl = \"${{TOKEN}}\"\nformat = \"slack\"\napps = [\"shop\"]\nevents = [\"deployment.failed\", \"deployment.skipped\"]\n"
        );
        let text = text.replace(
            "url = \"${TOKEN}\"",
            "url = \"https://chat.example/hooks/${TOKEN}\"",
        );
        let c = check(&text).unwrap();
        assert_eq!(c.notify.len(), 2);
        let (standard, slack) = (&c.notify[0], &c.notify[1]);
        assert_eq!(standard.format, NotifyFormat::Standard);
        assert_eq!(standard.secret.as_ref().map(|s| s.expose()), Some(WHSEC));
        assert!(standard.apps.is_none());
        assert!(standard.wants(EventType::DeliveryRejected, "shop"));
        assert!(!standard.wants(EventType::DeploymentSkipped, "shop"));
        assert_eq!(slack.format, NotifyFormat::Slack);
        assert_eq!(
            slack.url.expose(),
            "https://chat.example/hooks/tok-0123456789abcdef"
        );
        assert!(
            c.secret_env_vars.contains(&"TOKEN".to_string()),
            "a URL is a secret"
        );
        assert!(slack.wants(EventType::DeploymentSkipped, "shop"));
        assert!(!slack.wants(EventType::DeploymentSucceeded, "shop"));
        assert_eq!(
            c.server.notify_retry_for,
            std::time::Duration::from_secs(86400)
        );
        let c =
            check(&GOOD.replace("[server]\n", "[server]\nnotify_retry_for = \"90m\"\n")).unwrap();
        assert_eq!(
            c.server.notify_retry_for,
            std::time::Duration::from_secs(5400)
        );
        assert!(c.notify.is_empty());
    }

    #[test]
    fn errors_name_the_entry_key_and_line() {
        let base_lines = GOOD.lines().count();
        let text = format!(
            "{GOOD}\n[[notify]]\nurl = \"ftp://h/x\"\nsecret = \"{WHSEC}\"\n\n[[notify]]\nurl = \"https://h.example/a\"\n\n[[notify]]\nurl = \"https://h.example/b\"\nformat = \"slack\"\nsecret = \"{WHSEC}\"\napps = [\"shop\", \"nope\"]\nevents = [\"deployment.exploded\"]\n\n[[notify]]\nurl = \"https://h.example/c\"\nformat = \"teams\"\n\n[[notify]]\nurl = \"https://h.example/d\"\nsecret = \"not-whsec\"\n\n[[notify]]\nurl = \"https://h.example/e\"\nsecret = \"{WHSEC}\"\napps = []\n\n[[notify]]\nurl = \"https://h.example/f\"\nsecret = \"{WHSEC}\"\n\n[[notify]]\nurl = \"https://h.example/f\"\nsecret = \"{WHSEC}\"\n"
        );
        let errs = errors(&text);
        let line = |n: usize| format!("/etc/ferry/ferry.toml:{}: ", base_lines + n);
        let expect = [
            (line(3), "notify[0].url: must be an http:// or https:// URL"),
            (
                line(7),
                "notify[1].secret: required with format = \"standard\"",
            ),
            (
                line(12),
                "notify[2].secret: not used with format = \"slack\"",
            ),
            (
                line(13),
                "notify[2].apps: unknown app \"nope\" (apps: shop)",
            ),
            (
                line(14),
                "notify[2].events: unknown event type \"deployment.exploded\" (known: delivery.rejected, deployment.queued",
            ),
            (
                line(18),
                "notify[3].format: unknown format \"teams\" (known: standard, slack)",
            ),
            (
                line(22),
                "notify[4].secret: must be a Standard Webhooks secret",
            ),
            (line(27), "notify[5].apps: is empty"),
            (line(34), "notify[7].url: the same URL as notify[6]"),
        ];
        for (at, message) in &expect {
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(at.as_str()) && e[at.len()..].starts_with(message)),
                "no error {at}{message} in {errs:#?}"
            );
        }
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
        assert!(
            !errs.iter().any(|e| e.contains("h.example")),
            "URLs are not shown: {errs:#?}"
        );
    }

    #[test]
    fn target_key_and_receiver_hide_the_url() {
        let url = "https://user:pw@hooks.example.com:8443/services/T0/B0/XXXX?token=abc";
        let t = NotifyTarget::new(Secret::new(url), None, NotifyFormat::Slack, None, None);
        assert!(
            t.target.starts_with("notify:") && t.target.len() == 23,
            "{}",
            t.target
        );
        assert!(!t.target.contains("XXXX"));
        assert_eq!(t.receiver, "https://hooks.example.com:8443");
        assert_eq!(receiver_of("http://127.0.0.1:9/x"), "http://127.0.0.1:9");
        assert_eq!(receiver_of("https://h.example/x"), "https://h.example");
        assert!(t.wants(EventType::DeploymentFailed, "any"));
        assert!(
            !t.wants(EventType::DeploymentSkipped, "any"),
            "not by default"
        );
        let only = NotifyTarget::new(
            Secret::new("https://h.example/"),
            None,
            NotifyFormat::Standard,
            Some(["shop".to_string()].into()),
            Some([EventType::DeploymentSkipped].into()),
        );
        assert!(only.wants(EventType::DeploymentSkipped, "shop"));
        assert!(!only.wants(EventType::DeploymentSkipped, "blog"));
        assert!(!only.wants(EventType::DeploymentFailed, "shop"));
        assert_ne!(only.target, t.target);
    }
}
