//! `[[notify]]` receivers: each event its entry wants (by `apps` and `events`), POSTed as a
//! Standard Webhooks message (`format = "standard"`: the JSON of `event::standard_body`, signed
//! with the entry's `whsec_` secret) or as Slack-compatible incoming-webhook JSON
//! (`format = "slack"`: `{"text": …}`; the URL is the credential, so there is no signature).
//!
//! The body is rendered once, at fan-out, and stored; the URL and secret are not stored: each
//! try finds the entry again by its queue key, so a rotated secret signs the next try. Each try
//! is signed afresh (`webhook-timestamp` is the time of the try, receivers refuse old ones)
//! under the same `webhook-id`, which receivers use to drop duplicates.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::event;
use super::retry::retry_after;
use super::target::{self, Context, Kind, Outcome, Subject};
use crate::config::NotifyFormat;
use crate::store::{NewNotification, Notification};

/// The notifications of one event, one per `[[notify]]` entry that wants it.
pub(crate) fn fan_out(ctx: &Context, s: &Subject<'_>) -> Vec<NewNotification> {
    let mut standard = None;
    let mut slack = None;
    let mut out = Vec::new();
    for t in ctx
        .targets
        .iter()
        .filter(|t| t.wants(s.event.event, &s.event.app))
    {
        let (kind, body) = match t.format {
            NotifyFormat::Standard => (
                Kind::Webhook,
                standard.get_or_insert_with(|| event::standard_body(ctx, s)),
            ),
            NotifyFormat::Slack => (
                Kind::Slack,
                slack.get_or_insert_with(|| json!({ "text": event::summary(ctx, s) }).to_string()),
            ),
        };
        out.push(target::notification(
            s,
            &t.target,
            kind,
            &t.receiver,
            None,
            body.clone(),
        ));
    }
    out
}

/// One try: POST the stored body to the entry's URL (signed, for `standard`). 2xx is sent;
/// anything else, and no answer within the timeout, is tried again (as the spec asks),
/// after the receiver's `Retry-After` if it sent one.
pub(crate) async fn send(ctx: &Context, n: &Notification) -> Outcome {
    let Some(t) = ctx.notify_target(&n.target) else {
        return Outcome::Permanent {
            status: None,
            error: "no [[notify]] entry has this receiver's URL any more".into(),
        };
    };
    let mut request = ctx
        .client
        .post(t.url.expose())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("ferry/", env!("CARGO_PKG_VERSION")),
        )
        .body(n.body.clone());
    if n.kind == Kind::Webhook.as_str() {
        let key = t
            .secret
            .as_ref()
            .and_then(|s| crate::secret::decode_secret(s.expose()));
        let Some(key) = key else {
            return Outcome::Permanent {
                status: None,
                error: "the [[notify]] entry has no whsec_ secret to sign with".into(),
            };
        };
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        request = request
            .header("webhook-id", &n.uid)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign(&key, &n.uid, timestamp, n.body.as_bytes()),
            );
    }
    match request.send().await {
        Ok(r) if r.status().is_success() => Outcome::Sent {
            status: r.status().as_u16(),
        },
        Ok(r) => Outcome::Retry {
            status: Some(r.status().as_u16()),
            error: format!("answered {}", r.status()),
            after: retry_after(r.headers()),
        },
        Err(e) => Outcome::Retry {
            status: None,
            error: target::describe(e),
            after: None,
        },
    }
}

/// The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.
pub(crate) fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test vector of the Standard Webhooks reference libraries (checked with
    /// the Python `standardwebhooks` package's `Webhook.sign`).
    #[test]
    fn signature_matches_the_reference_vector() {
        let key = crate::secret::decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    /// What a receiver does: `sources::standard` (ferry's own verifier of incoming Standard
    /// Webhooks) accepts what this module signs.
    #[test]
    fn ferrys_own_verifier_accepts_it() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = crate::secret::decode_secret(secret).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let body = br#"{"type":"deployment.succeeded"}"#;
        let sig = sign(&key, "msg_x", now, body);
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "msg_x".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", sig.parse().unwrap());
        let secrets = [crate::secret::Secret::new(secret)];
        let tolerance = std::time::Duration::from_secs(300);
        crate::sources::standard::verify(&secrets, &headers, body, now, tolerance).unwrap();
        let other = [crate::secret::Secret::new("whsec_QUJDRA==")];
        assert!(crate::sources::standard::verify(&other, &headers, body, now, tolerance).is_err());
    }
}
