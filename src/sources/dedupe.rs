//! Dedupe keys: what makes two deliveries the same delivery (the unique index on
//! `(app, dedupe_key)`), decided on the request path from the verdict, the headers and a hash
//! of the body — never from parsing it.

use http::HeaderMap;

use super::{Scheme, Source, Verdict, delivery_id, header, standard};

/// The idempotency key of an accepted delivery (the unique index on `(app, dedupe_key)`).
///
/// GitHub, Gitea and Bitbucket sign the body but no id or time, and GitLab's plain
/// `X-Gitlab-Token` signs nothing; their delivery id headers are not covered by anything. So a
/// delivery verified by one of those schemes is keyed by a hash of its body: a captured body
/// sent again under a new delivery id is a duplicate, and so is the sender's own redelivery
/// (same id, same body). Distinct pushes have distinct bodies (another `after`, another
/// `before`, GitHub's `pushed_at`). The key does not name the sender, so the same signed body
/// presented as another sender (GitHub's signature under Gitea's header) is a duplicate too.
/// The custom `hmac` scheme verifies any claimed sender: where that sender's body names a
/// version, it is keyed the same way; a generic sender's body names none (a plain redeploy),
/// so a CI job may send the same body twice. Deliveries verified by a Standard Webhooks
/// signature are keyed by their signed `webhook-id`. Everything else keeps the sender's
/// delivery id (or `Idempotency-Key`) — prefixed `unverified:` when nothing verified it, so
/// that a request holding only the hook URL can never take the key of a signed delivery.
pub fn dedupe_key(
    source: Source,
    verdict: Verdict,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<String> {
    let signed = match verdict {
        Verdict::Verified(scheme) => signed_key(scheme, source, headers, body),
        Verdict::Unverified => None,
    };
    signed.or_else(|| {
        let key = delivery_id(source, headers).or_else(|| body_key(source, body))?;
        Some(match verdict {
            Verdict::Unverified => format!("unverified:{key}"),
            Verdict::Verified(_) => key,
        })
    })
}

/// The dedupe key of senders that send no delivery id but whose every event body is unique:
/// a hash of the body, so a redelivery (the same body again) is a duplicate. Distribution and
/// Harbor bodies carry per-event ids, Docker Hub's carry `pushed_at`. Quay's carry neither id
/// nor time — two real pushes of one tag look the same — so Quay is not deduplicated here;
/// the docker executor then finds the container already runs the digest and does nothing.
pub(crate) fn body_key(source: Source, body: &[u8]) -> Option<String> {
    let unique = match source {
        // Alertmanager: a re-send of an unchanged group is the same body (a duplicate); one
        // whose alerts changed is a new delivery, deduplicated per alert by the planner.
        Source::Registry | Source::Harbor | Source::Dockerhub | Source::Alertmanager => true,
        // Neither id nor time in the body (see above).
        Source::Quay => false,
        // They send a delivery id, or their keys come from a signature.
        Source::Github
        | Source::Gitlab
        | Source::Bitbucket
        | Source::Gitea
        | Source::Standard
        | Source::Generic
        | Source::Manual => false,
    };
    (unique && !body.is_empty()).then(|| format!("body-sha256:{}", sha256_hex(body)))
}

/// The key that a scheme's signature vouches for, if it signs anything that identifies the
/// delivery: the body, or Standard Webhooks' `webhook-id`.
fn signed_key(scheme: Scheme, source: Source, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let signed_body = || format!("signed-body-sha256:{}", sha256_hex(body));
    match scheme {
        Scheme::Github | Scheme::Gitea | Scheme::Bitbucket | Scheme::Gitlab => Some(signed_body()),
        // A generic sender's body names no version: a CI job may send the same body twice.
        Scheme::Hmac => (source != Source::Generic).then(signed_body),
        Scheme::Standard | Scheme::GitlabSigning => header(headers, standard::ID_HEADER)
            .map(|id| format!("signed-id:{}", id.chars().take(200).collect::<String>())),
        // Credentials sign nothing.
        Scheme::Bearer | Scheme::Basic => None,
    }
}

fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_headers as headers;

    #[test]
    fn signed_bodies_without_a_signed_id_dedupe_on_the_body() {
        let body = b"{\"after\":\"abc\"}";
        let a = headers(&[("X-GitHub-Delivery", "one")]);
        let b = headers(&[("X-GitHub-Delivery", "two")]);
        for scheme in [
            Scheme::Github,
            Scheme::Gitea,
            Scheme::Bitbucket,
            Scheme::Gitlab,
        ] {
            let verified = Verdict::Verified(scheme);
            let ka = dedupe_key(Source::Github, verified, &a, body);
            assert!(
                ka.as_deref().is_some_and(|k| k.contains("body-sha256")),
                "{ka:?}"
            );
            // A new delivery id: the same key (a replay); another body: another key.
            assert_eq!(ka, dedupe_key(Source::Github, verified, &b, body));
            assert_ne!(ka, dedupe_key(Source::Github, verified, &a, b"{}"));
        }
        // The same signed body claimed by another sender: still the same key.
        assert_eq!(
            dedupe_key(Source::Github, Verdict::Verified(Scheme::Github), &a, body),
            dedupe_key(Source::Gitea, Verdict::Verified(Scheme::Gitea), &b, body)
        );
        // The custom HMAC on a sender whose body names a version: keyed on the body too (found
        // in review: it used to fall back to the unsigned delivery id).
        assert_eq!(
            dedupe_key(Source::Github, Verdict::Verified(Scheme::Hmac), &b, body),
            dedupe_key(Source::Github, Verdict::Verified(Scheme::Github), &a, body)
        );
        // A credential that signs nothing: the sender's id, as before.
        assert_eq!(
            dedupe_key(Source::Github, Verdict::Verified(Scheme::Bearer), &a, body).as_deref(),
            Some("one")
        );
        // Unverified: the sender's id in a namespace of its own, so it can never take a signed
        // delivery's key.
        assert_eq!(
            dedupe_key(Source::Github, Verdict::Unverified, &a, body).as_deref(),
            Some("unverified:one")
        );
        assert_eq!(
            dedupe_key(
                Source::Generic,
                Verdict::Verified(Scheme::Hmac),
                &HeaderMap::new(),
                b""
            ),
            None
        );
        // Standard Webhooks: the signed webhook-id.
        let std = headers(&[("webhook-id", "msg_1"), ("Idempotency-Key", "other")]);
        assert_eq!(
            dedupe_key(
                Source::Gitlab,
                Verdict::Verified(Scheme::GitlabSigning),
                &std,
                body
            )
            .as_deref(),
            Some("signed-id:msg_1")
        );
    }
}
