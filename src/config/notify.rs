//! `[[notify]]`: where ferry sends outgoing webhooks, validated. The worker that sends them is
//! `crate::notify`; this is only what the config says, checked.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::secret::Secret;
use crate::states::EventType;

/// How a `[[notify]]` receiver wants its notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    /// Standard Webhooks: a signed JSON body with `type`, `timestamp` and `data`.
    Standard,
    /// Slack-compatible incoming-webhook JSON (`{"text": …}`); the URL is the secret.
    Slack,
}

impl NotifyFormat {
    pub const ALL: [NotifyFormat; 2] = [NotifyFormat::Standard, NotifyFormat::Slack];

    /// The value of `format`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Standard => "standard",
            NotifyFormat::Slack => "slack",
        }
    }
}

/// One `[[notify]]` entry.
#[derive(Debug, Clone)]
pub struct NotifyTarget {
    /// Where to POST. A `Secret`: a Slack-style URL is the receiver's credential, and any URL
    /// may carry a token in its query; it is never logged, stored or served.
    pub url: Secret,
    /// The `whsec_…` signing secret (`standard` only).
    pub secret: Option<Secret>,
    pub format: NotifyFormat,
    /// The apps whose events it gets (`None`: every app).
    pub apps: Option<BTreeSet<String>>,
    /// The event types it gets (without `events`: every type that `EventType::is_default`).
    pub events: BTreeSet<EventType>,
    /// Its queue in the outbox: `notify:` and a hash of the URL (the URL itself may be a
    /// secret, so it is not stored: the worker finds the entry again by this key).
    pub target: String,
    /// `scheme://host[:port]` of the URL, for logs and the API.
    pub receiver: String,
}

impl NotifyTarget {
    /// An entry for `url` (which must parse as a URL: the config checked it).
    pub fn new(
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
    pub fn wants(&self, event: EventType, app: &str) -> bool {
        self.events.contains(&event) && self.apps.as_ref().is_none_or(|a| a.contains(app))
    }
}

/// `scheme://host[:port]` of a URL: where it goes, without path, query or credentials.
pub fn receiver_of(url: &str) -> String {
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
    use super::*;

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
