//! Verification: the one rule that decides, for every claimed sender, whether a delivery is
//! verified by a scheme the app configures (request path, before anything is read from the
//! body). The schemes themselves live in the senders' files (`github::verify`, …) and, for the
//! sender-independent ones, in `generic` (custom HMAC header), `auth` (bearer/basic) and
//! `standard`; this module only picks which of them apply and what a refusal says.

use http::HeaderMap;

use super::{Source, auth, bitbucket, generic, gitea, github, gitlab, standard};
use crate::config::Verify;

/// Why a delivery failed verification (answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{header} is missing: this app requires signed deliveries")]
    Missing { header: String },
    #[error("{header} is malformed: {why}")]
    Malformed { header: String, why: String },
    #[error("{header} does not match the body: check the webhook secret")]
    Mismatch { header: String },
    #[error("{header} {why}; refusing a possible replay")]
    Expired { header: String, why: String },
    /// Nothing verified the delivery, and no configured scheme applies to the sender it claims.
    #[error(
        "this app requires a verified delivery (configured: {schemes}), and none of them can verify this {sender} delivery: {hint}"
    )]
    Required {
        sender: &'static str,
        schemes: String,
        hint: String,
    },
}

/// What verification established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A configured scheme matched.
    Verified(Scheme),
    /// Accepted on the URL token alone: the app configures no scheme, or it allows unsigned
    /// requests (`verify.allow_unsigned`) and this one claims no sender.
    Unverified,
}

/// The scheme that verified a delivery: what it signs decides the dedupe key (`dedupe.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `X-Hub-Signature-256` over the body.
    Github,
    /// `X-Gitlab-Token`: the secret itself, signs nothing.
    Gitlab,
    /// A GitLab `whsec_` signing token (Standard Webhooks: id and timestamp are signed).
    GitlabSigning,
    /// `X-Hub-Signature` over the body.
    Bitbucket,
    /// `X-Gitea-Signature` / `X-Forgejo-Signature` over the JSON.
    Gitea,
    /// Standard Webhooks: id, timestamp and body are signed.
    Standard,
    /// The configured custom HMAC header over the body.
    Hmac,
    /// `Authorization: Bearer`: a credential, signs nothing.
    Bearer,
    /// `Authorization: Basic`: a credential, signs nothing.
    Basic,
}

impl Scheme {
    /// The name stored with a delivery (`deliveries.scheme`) and shown by the inspector.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Github => "github",
            Scheme::Gitlab => "gitlab",
            Scheme::GitlabSigning => "gitlab_signing",
            Scheme::Bitbucket => "bitbucket",
            Scheme::Gitea => "gitea",
            Scheme::Standard => "standard",
            Scheme::Hmac => "hmac",
            Scheme::Bearer => "bearer",
            Scheme::Basic => "basic",
        }
    }
}

/// Verifies a delivery with the app's configured schemes. One rule, whatever the sender
/// claims to be: once an app configures any scheme, a delivery must be verified by one of them.
///
/// - The claimed sender's own scheme (github, gitlab, bitbucket, gitea, standard), when
///   configured, must match: it is what that sender sends.
/// - Otherwise the sender-independent schemes apply to any claimed sender: the custom HMAC
///   header, `Authorization` (bearer/basic), and a Standard Webhooks signature when its headers
///   are present. Any presented scheme that fails is a 401; one success verifies.
/// - Nothing verified: accepted unverified only if the app configures no scheme at all, or if
///   it sets `allow_unsigned` and the request claims no sender (then it carries no version:
///   the planner redeploys what is configured). Anything else is a 401 that names what is
///   missing, e.g. a GitLab-looking request to an app that only verifies GitHub.
pub fn verify(
    source: Source,
    v: &Verify,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<Verdict, VerifyError> {
    if let Some((scheme, result)) = own_scheme(source, v, headers, body, now_secs) {
        result?;
        return Ok(Verdict::Verified(scheme));
    }
    let (verified, missing) = independent_schemes(v, headers, body, now_secs)?;
    if let Some(scheme) = verified {
        return Ok(Verdict::Verified(scheme));
    }
    let schemes = v.schemes();
    if !v.require && schemes.is_empty() {
        return Ok(Verdict::Unverified);
    }
    if v.allow_unsigned && source == Source::Generic {
        return Ok(Verdict::Unverified);
    }
    // The header a configured sender-independent scheme wants, if any: the most useful answer.
    Err(missing.unwrap_or_else(|| required(source, &schemes)))
}

/// The claimed sender's own scheme and its result, when the app configures it. `None` when it
/// does not, and for senders that sign nothing (the sender-independent schemes verify those).
fn own_scheme(
    source: Source,
    v: &Verify,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Option<(Scheme, Result<(), VerifyError>)> {
    let tolerance = v.standard_tolerance;
    match source {
        Source::Github => (!v.github.is_empty())
            .then(|| (Scheme::Github, github::verify(&v.github, headers, body))),
        Source::Gitlab => (!v.gitlab.is_empty()).then(|| {
            let scheme = if gitlab::signing(&v.gitlab, headers) {
                Scheme::GitlabSigning
            } else {
                Scheme::Gitlab
            };
            let result = gitlab::verify(&v.gitlab, headers, body, now_secs, tolerance);
            (scheme, result)
        }),
        Source::Bitbucket => (!v.bitbucket.is_empty()).then(|| {
            (
                Scheme::Bitbucket,
                bitbucket::verify(&v.bitbucket, headers, body),
            )
        }),
        Source::Gitea => {
            (!v.gitea.is_empty()).then(|| (Scheme::Gitea, gitea::verify(&v.gitea, headers, body)))
        }
        Source::Standard => (!v.standard.is_empty()).then(|| {
            let result = standard::verify(&v.standard, headers, body, now_secs, tolerance);
            (Scheme::Standard, result)
        }),
        Source::Registry
        | Source::Dockerhub
        | Source::Harbor
        | Source::Quay
        | Source::Alertmanager
        | Source::Generic
        | Source::Manual => None,
    }
}

/// The sender-independent schemes, each checked when presented, whoever the request claims to
/// be: a presented one that fails is the error. Returns the first that verified (Standard
/// Webhooks, custom HMAC, then `Authorization`) and the first configured one whose header is
/// missing.
fn independent_schemes(
    v: &Verify,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<(Option<Scheme>, Option<VerifyError>), VerifyError> {
    let mut verified = None;
    let mut missing = None;
    if !v.standard.is_empty() && headers.contains_key(standard::SIGNATURE_HEADER) {
        standard::verify(&v.standard, headers, body, now_secs, v.standard_tolerance)?;
        verified = Some(Scheme::Standard);
    }
    let mut presented = |result: Result<Scheme, VerifyError>| match result {
        Ok(scheme) => {
            verified = verified.or(Some(scheme));
            Ok(())
        }
        Err(VerifyError::Missing { header }) => {
            missing.get_or_insert(VerifyError::Missing { header });
            Ok(())
        }
        Err(e) => Err(e),
    };
    if let Some(h) = &v.hmac {
        presented(generic::verify_hmac(h, headers, body).map(|()| Scheme::Hmac))?;
    }
    if !v.bearer.is_empty() || !v.basic.is_empty() {
        presented(auth::verify(&v.bearer, &v.basic, headers))?;
    }
    Ok((verified, missing))
}

/// The 401 for a delivery that nothing verified, saying what would.
fn required(source: Source, schemes: &[&str]) -> VerifyError {
    let hint = match source {
        Source::Generic | Source::Manual => {
            "sign it with a scheme for your client (verify.hmac, verify.bearer or verify.basic), or set verify.allow_unsigned = true to let unsigned requests redeploy what is configured (never a version they name)".to_string()
        }
        Source::Alertmanager => "alertmanager signs nothing; set verify.bearer and Alertmanager's http_config.authorization.credentials (or verify.basic and its basic_auth)".to_string(),
        Source::Registry | Source::Dockerhub | Source::Harbor | Source::Quay => format!(
            "{} signs nothing; set verify.bearer, verify.basic or verify.hmac and send those credentials",
            source.as_str()
        ),
        Source::Github | Source::Gitlab | Source::Bitbucket | Source::Gitea | Source::Standard => {
            format!(
                "set verify.{} to the webhook's secret (or the request is not from the sender it claims to be)",
                source.as_str()
            )
        }
    };
    VerifyError::Required {
        sender: source.as_str(),
        schemes: if schemes.is_empty() {
            "none".into()
        } else {
            schemes.join(", ")
        },
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_headers as headers;

    #[test]
    fn registries_need_configured_credentials_like_generic_senders() {
        use crate::secret::Secret;
        let v = Verify {
            bearer: vec![Secret::new("token")],
            ..Verify::default()
        };
        let bare = HeaderMap::new();
        let bearer = headers(&[("Authorization", "Bearer token")]);
        let wrong = headers(&[("Authorization", "Bearer other")]);
        for source in [
            Source::Generic,
            Source::Registry,
            Source::Dockerhub,
            Source::Harbor,
            Source::Quay,
        ] {
            assert_eq!(
                verify(source, &v, &bare, b"{}", 0),
                Err(VerifyError::Missing {
                    header: "Authorization".into()
                }),
                "{source:?}"
            );
            assert_eq!(
                verify(source, &v, &bearer, b"{}", 0),
                Ok(Verdict::Verified(Scheme::Bearer))
            );
            assert!(matches!(
                verify(source, &v, &wrong, b"{}", 0),
                Err(VerifyError::Mismatch { .. })
            ));
        }
        // Git senders too: with only `bearer` configured, bearer is what verifies them.
        assert_eq!(
            verify(Source::Github, &v, &bare, b"{}", 0),
            Err(VerifyError::Missing {
                header: "Authorization".into()
            })
        );
        assert_eq!(
            verify(Source::Github, &v, &bearer, b"{}", 0),
            Ok(Verdict::Verified(Scheme::Bearer))
        );
    }

    /// Builds a `Verify` as the config does: `require` follows whether a scheme is set.
    fn verify_with(f: impl FnOnce(&mut Verify)) -> Verify {
        let mut v = Verify {
            standard_tolerance: std::time::Duration::from_secs(300),
            ..Verify::default()
        };
        f(&mut v);
        v.require = v.configured();
        v
    }

    fn github_signed(secret: &str, body: &[u8], event: &str) -> HeaderMap {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        headers(&[("X-GitHub-Event", event), ("X-Hub-Signature-256", &sig)])
    }

    /// The verification rule, claimed sender × configured schemes.
    #[test]
    fn every_claimed_sender_needs_a_configured_scheme() {
        use crate::secret::Secret;
        let body = br#"{"ref":"refs/heads/main"}"#;
        let github_only = verify_with(|v| v.github = vec![Secret::new("gh")]);
        let bearer_only = verify_with(|v| v.bearer = vec![Secret::new("tok")]);
        let nothing = verify_with(|_| {});
        let gitlab = headers(&[("X-Gitlab-Event", "Push Hook")]);
        let gitlab_token = headers(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "gh")]);
        let package = headers(&[("X-GitHub-Event", "package")]);
        let bearer = headers(&[
            ("X-GitHub-Event", "package"),
            ("Authorization", "Bearer tok"),
        ]);
        let wrong_bearer = headers(&[
            ("X-GitHub-Event", "package"),
            ("Authorization", "Bearer no"),
        ]);
        let bare = HeaderMap::new();

        // A spoofed GitLab push to an app that verifies only GitHub: nothing can verify it.
        let e = verify(Source::Gitlab, &github_only, &gitlab, body, 0).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::Required {
                    sender: "gitlab",
                    ..
                }
            ),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("configured: github") && text.contains("verify.gitlab"),
            "{text}"
        );
        // A token that happens to equal another scheme's secret verifies nothing either.
        assert!(verify(Source::Gitlab, &github_only, &gitlab_token, body, 0).is_err());
        // The claimed sender's own scheme decides when configured.
        let gh = github_signed("gh", body, "push");
        assert_eq!(
            verify(Source::Github, &github_only, &gh, body, 0),
            Ok(Verdict::Verified(Scheme::Github))
        );
        assert!(matches!(
            verify(
                Source::Github,
                &github_only,
                &github_signed("x", body, "push"),
                body,
                0
            ),
            Err(VerifyError::Mismatch { .. })
        ));
        // A curl request to a GitHub-only app: refused, naming allow_unsigned.
        let e = verify(Source::Generic, &github_only, &bare, body, 0).unwrap_err();
        assert!(e.to_string().contains("allow_unsigned"), "{e}");

        // An unsigned `package` event to a bearer-only app: bearer is required of it.
        assert_eq!(
            verify(Source::Github, &bearer_only, &package, body, 0),
            Err(VerifyError::Missing {
                header: "Authorization".into()
            })
        );
        assert_eq!(
            verify(Source::Github, &bearer_only, &bearer, body, 0),
            Ok(Verdict::Verified(Scheme::Bearer))
        );
        assert!(matches!(
            verify(Source::Github, &bearer_only, &wrong_bearer, body, 0),
            Err(VerifyError::Mismatch { .. })
        ));
        for source in [
            Source::Gitlab,
            Source::Bitbucket,
            Source::Gitea,
            Source::Quay,
        ] {
            assert!(
                verify(source, &bearer_only, &bare, body, 0).is_err(),
                "{source:?}"
            );
        }

        // No scheme at all: token-only, as before (`ferry check` warns).
        for source in Source::ALL {
            assert_eq!(
                verify(source, &nothing, &bare, body, 0),
                Ok(Verdict::Unverified),
                "{source:?}"
            );
        }
    }

    #[test]
    fn allow_unsigned_lets_only_senderless_requests_through() {
        use crate::secret::Secret;
        let body = b"{}";
        let v = verify_with(|v| {
            v.github = vec![Secret::new("gh")];
            v.bearer = vec![Secret::new("tok")];
            v.allow_unsigned = true;
        });
        let bare = HeaderMap::new();
        assert_eq!(
            verify(Source::Generic, &v, &bare, body, 0),
            Ok(Verdict::Unverified)
        );
        // Presented credentials that fail are still refused.
        let wrong = headers(&[("Authorization", "Bearer no")]);
        assert!(verify(Source::Generic, &v, &wrong, body, 0).is_err());
        let right = headers(&[("Authorization", "Bearer tok")]);
        assert_eq!(
            verify(Source::Generic, &v, &right, body, 0),
            Ok(Verdict::Verified(Scheme::Bearer))
        );
        // A request claiming a sender gets no exemption: unsigned GitHub or GitLab is refused.
        let github = headers(&[("X-GitHub-Event", "push")]);
        assert!(verify(Source::Github, &v, &github, body, 0).is_err());
        let gitlab = headers(&[("X-Gitlab-Event", "Push Hook")]);
        assert!(verify(Source::Gitlab, &v, &gitlab, body, 0).is_err());
        for source in Source::HINTABLE {
            assert!(verify(source, &v, &bare, body, 0).is_err(), "{source:?}");
        }
    }

    #[test]
    fn a_standard_signature_verifies_any_claimed_sender() {
        use crate::secret::Secret;
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let v = verify_with(|v| v.standard = vec![Secret::new(secret)]);
        let body = br#"{"test": 2432232314}"#;
        // The Standard Webhooks spec's example.
        let signed = headers(&[
            ("X-Gitlab-Event", "Push Hook"),
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        assert_eq!(
            verify(Source::Gitlab, &v, &signed, body, 1614265330),
            Ok(Verdict::Verified(Scheme::Standard))
        );
        assert!(verify(Source::Gitlab, &v, &signed, b"{}", 1614265330).is_err());
        let unsigned = headers(&[("X-Gitlab-Event", "Push Hook")]);
        assert!(verify(Source::Gitlab, &v, &unsigned, body, 1614265330).is_err());
    }
}
