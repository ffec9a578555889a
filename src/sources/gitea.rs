//! Gitea, Forgejo (and Gogs): `X-Gitea-Event` / `X-Forgejo-Event`, `X-Gitea-Delivery`,
//! `X-Gitea-Signature` / `X-Forgejo-Signature` (hex HMAC-SHA256, no prefix).
//!
//! Payloads have GitHub's shape (they even send GitHub's headers, which is why detection
//! checks for Gitea first). One difference: in form mode Gitea signs the JSON inside the
//! `payload` field, not the raw form body as GitHub does.

use http::HeaderMap;

use super::setup::Setup;
use super::{Event, ParseError, VerifyError, header, json_document};
use crate::secret::Secret;

const EVENT_HEADERS: [&str; 3] = ["x-forgejo-event", "x-gitea-event", "x-gogs-event"];
const DELIVERY_HEADERS: [&str; 3] = ["x-forgejo-delivery", "x-gitea-delivery", "x-gogs-delivery"];
const SIGNATURE_HEADERS: [&str; 3] = [
    "X-Forgejo-Signature",
    "X-Gitea-Signature",
    "X-Gogs-Signature",
];

pub(crate) fn detect(headers: &HeaderMap) -> bool {
    EVENT_HEADERS.iter().any(|h| headers.contains_key(*h))
}

pub(crate) fn event(headers: &HeaderMap) -> Option<&str> {
    EVENT_HEADERS.iter().find_map(|h| header(headers, h))
}

pub(crate) fn delivery(headers: &HeaderMap) -> Option<&str> {
    DELIVERY_HEADERS.iter().find_map(|h| header(headers, h))
}

pub(crate) fn verify(
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), VerifyError> {
    // The first signature header present decides (Gitea sends them empty without a secret).
    let Some(name) = SIGNATURE_HEADERS
        .iter()
        .find(|h| header(headers, h).is_some())
    else {
        return Err(VerifyError::Missing {
            header: "X-Gitea-Signature".into(),
        });
    };
    let ct = header(headers, "content-type");
    let signed = json_document(ct, body).map_err(|why| VerifyError::Malformed {
        header: (*name).into(),
        why,
    })?;
    super::github::verify_prefixed_hex(name, "", secrets, headers, &signed)
}

pub(crate) fn parse(
    event: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Event, ParseError> {
    match event {
        "push" => {
            let json = json_document(content_type, body).map_err(|_| ParseError::NoFormPayload)?;
            Ok(Event::Push(vec![super::github::parse_push(&json)?]))
        }
        other => Ok(Event::Ignored(other.to_string())),
    }
}

/// `ferry hooks`: the webhook, for apps that verify Gitea/Forgejo.
pub(crate) fn setup(s: &Setup<'_>) -> Option<String> {
    let v = s.verify();
    (!v.gitea.is_empty()).then(|| {
        format!(
            "Gitea/Forgejo (Settings → Webhooks → Add webhook → Gitea/Forgejo): Target URL {} · HTTP method POST · POST content type application/json · Secret {} · Trigger on: Push events",
            s.url,
            s.secret(&v.gitea, "gitea")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::GitRef;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/gitea/push.json");

    #[test]
    fn go_playground_vector_for_gitea_and_forgejo() {
        let s = [Secret::new("IsWishesWereHorsesWedAllBeEatingSteak!")];
        let sig = "60fe446c74fa0cb9474f98cc557db79e10c7aaf22cf324ad65239600b9e4d915";
        for name in ["x-gitea-signature", "x-forgejo-signature"] {
            let mut h = HeaderMap::new();
            h.insert(name, sig.parse().unwrap());
            assert_eq!(verify(&s, &h, PUSH), Ok(()), "{name}");
            assert!(matches!(
                verify(&s, &h, &PUSH[1..]),
                Err(VerifyError::Mismatch { .. })
            ));
        }
    }

    #[test]
    fn form_mode_signs_the_json_inside() {
        let s = [Secret::new("IsWishesWereHorsesWedAllBeEatingSteak!")];
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", std::str::from_utf8(PUSH).unwrap())
            .finish();
        let mut h = HeaderMap::new();
        h.insert(
            "x-gitea-signature",
            "60fe446c74fa0cb9474f98cc557db79e10c7aaf22cf324ad65239600b9e4d915"
                .parse()
                .unwrap(),
        );
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        assert_eq!(verify(&s, &h, body.as_bytes()), Ok(()));
    }

    #[test]
    fn push_fixture() {
        let Event::Push(p) = parse("push", Some("application/json"), PUSH).unwrap() else {
            panic!()
        };
        assert_eq!(p[0].repo, "example/example");
        assert_eq!(p[0].git_ref, GitRef::Branch("master".into()));
        assert_eq!(
            p[0].commit.as_deref(),
            Some("67b56589a45103f891bdee7c0546e5d40bc02001")
        );
    }
}
