//! Who sent a delivery, what event it is and which id it carries, read from the request's
//! headers alone (request path). Each sender's file knows its own header names; this module
//! decides between senders that look alike (Gitea also sends GitHub's headers, GitLab 19 also
//! sends Standard Webhooks') and honours the hook URL's `?source=` for senders that send
//! nothing recognisable.

use http::HeaderMap;

use super::{Source, alertmanager, bitbucket, gitea, github, gitlab, header, registry, standard};

/// Recognises the sender from its headers: the first of [`DETECTION_ORDER`] whose headers are
/// present, else [`Source::Generic`]. A distribution registry is recognised by its events
/// media type; Docker Hub, Harbor and Quay send nothing that identifies them (see
/// [`detect_with_hint`]).
pub fn detect(headers: &HeaderMap) -> Source {
    DETECTION_ORDER
        .into_iter()
        .find(|&source| recognised(source, headers))
        .unwrap_or(Source::Generic)
}

/// The senders that identify themselves, most specific first: Gitea and Forgejo also send
/// GitHub's headers, and GitLab 19 also sends Standard Webhooks headers.
const DETECTION_ORDER: [Source; 7] = [
    Source::Gitea,
    Source::Github,
    Source::Gitlab,
    Source::Bitbucket,
    Source::Standard,
    Source::Registry,
    Source::Alertmanager,
];

/// Whether the request carries `source`'s identifying headers. A sender that has some must
/// also be placed in [`DETECTION_ORDER`].
fn recognised(source: Source, headers: &HeaderMap) -> bool {
    match source {
        Source::Gitea => gitea::detect(headers),
        Source::Github => headers.contains_key(github::EVENT_HEADER),
        Source::Gitlab => headers.contains_key(gitlab::EVENT_HEADER),
        Source::Bitbucket => headers.contains_key(bitbucket::EVENT_HEADER),
        Source::Standard => standard::detect(headers),
        Source::Registry => registry::detect(headers),
        Source::Alertmanager => alertmanager::detect(headers),
        // Nothing identifies them: the hook URL names them (`?source=`).
        Source::Dockerhub | Source::Harbor | Source::Quay => false,
        // What is left when nothing else is recognised; never sent by a hook.
        Source::Generic | Source::Manual => false,
    }
}

/// [`detect`], unless the hook URL names the sender with `?source=registry|dockerhub|harbor|quay`
/// (`hint`): Docker Hub, Harbor and Quay cannot be told apart from a generic sender by their
/// headers, so a hook meant for one of them names it in its URL. The hint forces the source
/// (it wins over headers). A hint that names no [`Source::HINTABLE`] sender is ignored here;
/// [`Source::from_hint`] tells the caller whether to refuse it instead.
///
/// Forcing is safe: these senders are verified like generic ones (the configured HMAC header
/// or `Authorization` is required of them), so a hint never skips a check that a generic
/// delivery would face.
pub(crate) fn detect_with_hint(headers: &HeaderMap, hint: Option<&str>) -> Source {
    hint.and_then(Source::from_hint)
        .unwrap_or_else(|| detect(headers))
}

/// The sender's event name, from its headers.
pub(crate) fn event_name(source: Source, headers: &HeaderMap) -> Option<String> {
    let name = match source {
        Source::Github => header(headers, github::EVENT_HEADER),
        Source::Gitlab => header(headers, gitlab::EVENT_HEADER),
        Source::Bitbucket => header(headers, bitbucket::EVENT_HEADER),
        Source::Gitea => gitea::event(headers),
        // Registries name their events in the body only.
        Source::Standard
        | Source::Registry
        | Source::Dockerhub
        | Source::Harbor
        | Source::Quay
        | Source::Alertmanager
        | Source::Generic
        | Source::Manual => None,
    };
    name.map(|n| n.chars().take(100).collect())
}

/// The sender's own delivery id: the idempotency key. Any client may send `Idempotency-Key`.
pub fn delivery_id(source: Source, headers: &HeaderMap) -> Option<String> {
    let id = match source {
        Source::Github => header(headers, github::DELIVERY_HEADER),
        // Idempotency-Key is stable across GitLab's retries and resends; the event UUID is
        // shared by recursive hooks, so it only stands in on old versions.
        Source::Gitlab => header(headers, "idempotency-key")
            .or_else(|| header(headers, gitlab::EVENT_UUID_HEADER)),
        Source::Bitbucket => {
            header(headers, "x-request-uuid").or_else(|| header(headers, "x-request-id"))
        }
        Source::Gitea => gitea::delivery(headers),
        Source::Standard => header(headers, standard::ID_HEADER),
        // Registries send no delivery id in their headers: distribution and Harbor CloudEvents
        // carry per-event ids in the body (`ImagePush::event_id`), Docker Hub and Quay none.
        // Alertmanager sends no id: its re-sends are deduplicated per alert by the planner.
        Source::Registry
        | Source::Dockerhub
        | Source::Harbor
        | Source::Quay
        | Source::Alertmanager
        | Source::Generic
        | Source::Manual => None,
    }
    .or_else(|| header(headers, "idempotency-key"));
    id.map(|s| s.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_headers as headers;

    #[test]
    fn detection_prefers_specific_senders() {
        assert_eq!(
            detect(&headers(&[
                ("X-GitHub-Event", "push"),
                ("X-Gitea-Event", "push")
            ])),
            Source::Gitea
        );
        assert_eq!(
            detect(&headers(&[
                ("X-Forgejo-Event", "push"),
                ("X-GitHub-Event", "push")
            ])),
            Source::Gitea
        );
        assert_eq!(
            detect(&headers(&[("X-GitHub-Event", "push")])),
            Source::Github
        );
        assert_eq!(
            detect(&headers(&[
                ("X-Gitlab-Event", "Push Hook"),
                ("webhook-id", "a"),
                ("webhook-timestamp", "1"),
                ("webhook-signature", "v1,x")
            ])),
            Source::Gitlab
        );
        assert_eq!(
            detect(&headers(&[("X-Event-Key", "repo:push")])),
            Source::Bitbucket
        );
        assert_eq!(
            detect(&headers(&[
                ("webhook-id", "a"),
                ("webhook-timestamp", "1"),
                ("webhook-signature", "v1,x")
            ])),
            Source::Standard
        );
        assert_eq!(detect(&HeaderMap::new()), Source::Generic);
        let registry = headers(&[(
            "Content-Type",
            "application/vnd.docker.distribution.events.v1+json",
        )]);
        assert_eq!(detect(&registry), Source::Registry);
        assert_eq!(
            detect(&headers(&[("Content-Type", "application/json")])),
            Source::Generic
        );
        // Senders that identify themselves come first.
        assert_eq!(
            detect(&headers(&[
                ("X-GitHub-Event", "push"),
                (
                    "Content-Type",
                    "application/vnd.docker.distribution.events.v2+json"
                )
            ])),
            Source::Github
        );
    }

    /// A sender left out of the order would never be detected: only those named by
    /// `?source=`, and the fallbacks, may be missing from it.
    #[test]
    fn every_self_identifying_sender_is_in_the_detection_order() {
        for source in Source::ALL {
            assert!(
                DETECTION_ORDER.contains(&source)
                    || Source::HINTABLE.contains(&source)
                    || matches!(source, Source::Generic | Source::Manual),
                "{source:?}"
            );
        }
    }

    #[test]
    fn hints_name_registries_only() {
        let none = HeaderMap::new();
        for (hint, source) in [
            ("dockerhub", Source::Dockerhub),
            ("harbor", Source::Harbor),
            (" Quay ", Source::Quay),
            ("registry", Source::Registry),
        ] {
            assert_eq!(Source::from_hint(hint), Some(source));
            assert_eq!(detect_with_hint(&none, Some(hint)), source);
        }
        for hint in ["github", "generic", "manual", "docker hub", ""] {
            assert_eq!(Source::from_hint(hint), None, "{hint}");
            assert_eq!(detect_with_hint(&none, Some(hint)), Source::Generic);
        }
        assert_eq!(detect_with_hint(&none, None), Source::Generic);
        // The hint wins over headers: the hook's URL says who it was given to.
        let github = headers(&[("X-GitHub-Event", "push")]);
        assert_eq!(detect_with_hint(&github, Some("harbor")), Source::Harbor);
        assert_eq!(detect_with_hint(&github, Some("nope")), Source::Github);
        for s in Source::HINTABLE {
            assert!(Source::ALL.contains(&s));
            assert_eq!(Source::from_name(s.as_str()), Some(s));
        }
    }
    #[test]
    fn delivery_ids_per_sender() {
        let h = headers(&[("X-Gitlab-Event-UUID", "evt"), ("Idempotency-Key", "idem")]);
        assert_eq!(delivery_id(Source::Gitlab, &h).as_deref(), Some("idem"));
        let h = headers(&[("X-Gitlab-Event-UUID", "evt")]);
        assert_eq!(delivery_id(Source::Gitlab, &h).as_deref(), Some("evt"));
        let h = headers(&[("X-Request-Id", "bbs")]);
        assert_eq!(delivery_id(Source::Bitbucket, &h).as_deref(), Some("bbs"));
        let h = headers(&[("Idempotency-Key", "k")]);
        assert_eq!(delivery_id(Source::Generic, &h).as_deref(), Some("k"));
        for source in Source::HINTABLE {
            assert_eq!(delivery_id(source, &HeaderMap::new()), None);
            assert_eq!(delivery_id(source, &h).as_deref(), Some("k"));
        }
    }
}
