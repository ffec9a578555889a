//! GitLab webhooks: `X-Gitlab-Event` (`Push Hook`, `Tag Push Hook`, `System Hook`).
//!
//! Verification is the secret token echoed in `X-Gitlab-Token` (compared in constant time), or,
//! when the configured secret is a `whsec_` signing token (GitLab 19+), the Standard Webhooks
//! signature. The commit is `checkout_sha` (else `after`), the repo
//! `project.path_with_namespace`; a push whose `after` is all zeros deleted its ref.

use std::time::Duration;

use http::HeaderMap;
use serde::Deserialize;

use super::setup::Setup;
use super::{
    Event, GitPush, GitRef, ParseError, VerifyError, ZERO_SHA, header, rfc3339_ms, standard,
};
use crate::secret::Secret;

pub(crate) const EVENT_HEADER: &str = "x-gitlab-event";
pub(crate) const EVENT_UUID_HEADER: &str = "x-gitlab-event-uuid";
pub(crate) const TOKEN_HEADER: &str = "X-Gitlab-Token";

/// Whether [`verify`] checks a Standard Webhooks signature (a `whsec_` signing token is
/// configured and the request carries `webhook-signature`) rather than `X-Gitlab-Token`.
pub(crate) fn signing(secrets: &[Secret], headers: &HeaderMap) -> bool {
    secrets.iter().any(|s| s.expose().starts_with("whsec_"))
        && headers.contains_key(standard::SIGNATURE_HEADER)
}

pub(crate) fn verify(
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let (signing, tokens): (Vec<Secret>, Vec<Secret>) = secrets
        .iter()
        .cloned()
        .partition(|s| s.expose().starts_with("whsec_"));
    if self::signing(secrets, headers) {
        return standard::verify(&signing, headers, body, now_secs, tolerance);
    }
    if tokens.is_empty() {
        return Err(VerifyError::Missing {
            header: standard::SIGNATURE_HEADER.into(),
        });
    }
    let given = header(headers, TOKEN_HEADER).ok_or_else(|| VerifyError::Missing {
        header: TOKEN_HEADER.into(),
    })?;
    // Compare against every token without stopping early.
    let ok = Secret::any_matches(&tokens, given.as_bytes());
    if ok {
        Ok(())
    } else {
        Err(VerifyError::Mismatch {
            header: TOKEN_HEADER.into(),
        })
    }
}

#[derive(Deserialize)]
struct Push {
    object_kind: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    checkout_sha: Option<String>,
    project: Option<Project>,
    #[serde(default)]
    commits: Vec<Commit>,
}

#[derive(Deserialize)]
struct Project {
    path_with_namespace: Option<String>,
}

#[derive(Deserialize)]
struct Commit {
    id: Option<String>,
    timestamp: Option<String>,
}

pub(crate) fn parse(event: &str, body: &[u8]) -> Result<Event, ParseError> {
    // System hooks carry the kind only in the body.
    if !matches!(event, "Push Hook" | "Tag Push Hook" | "System Hook") {
        return Ok(Event::Ignored(event.to_string()));
    }
    let p: Push = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    match p.object_kind.as_deref() {
        Some("push") | Some("tag_push") => {}
        Some(other) => return Ok(Event::Ignored(other.to_string())),
        None => return Err(ParseError::Field("object_kind")),
    }
    let full_ref = p.git_ref.ok_or(ParseError::Field("ref"))?;
    let repo = p
        .project
        .and_then(|pr| pr.path_with_namespace)
        .ok_or(ParseError::Field("project.path_with_namespace"))?;
    let deleted = p.after.as_deref() == Some(ZERO_SHA);
    let commit = p
        .checkout_sha
        .filter(|c| !c.is_empty() && c != ZERO_SHA)
        .or(p.after.filter(|a| a != ZERO_SHA));
    // The deployed commit's own time; else the newest listed commit's.
    let time = p
        .commits
        .iter()
        .find(|c| c.id.is_some() && c.id == commit)
        .or(p.commits.last())
        .and_then(|c| c.timestamp.as_deref())
        .and_then(rfc3339_ms);
    Ok(Event::Push(vec![GitPush {
        repo,
        git_ref: GitRef::parse(&full_ref),
        full_ref,
        commit: if deleted { None } else { commit },
        time,
        deleted,
        forced: false,
    }]))
}

/// `ferry hooks`: the webhook, for apps that verify GitLab. A `whsec_` token goes in
/// GitLab's "Signing token" field, a plain one in "Secret token".
pub(crate) fn setup(s: &Setup<'_>) -> Option<String> {
    let v = s.verify();
    if v.gitlab.is_empty() {
        return None;
    }
    let token = s.secret(&v.gitlab, "gitlab");
    let field = if v.gitlab.iter().any(|s| s.expose().starts_with("whsec_")) {
        "Signing token"
    } else {
        "Secret token"
    };
    Some(format!(
        "GitLab (Settings → Webhooks → Add new webhook): URL {} · {field} {token} · Trigger: Push events, Tag push events",
        s.url
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/gitlab/push.json");
    const TAG: &[u8] = include_bytes!("../../tests/fixtures/gitlab/tag-push.json");

    #[test]
    fn push_fixture() {
        let Event::Push(p) = parse("Push Hook", PUSH).unwrap() else {
            panic!()
        };
        assert_eq!(p[0].repo, "mike/diaspora");
        assert_eq!(p[0].git_ref, GitRef::Branch("master".into()));
        assert_eq!(
            p[0].commit.as_deref(),
            Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7")
        );
        assert_eq!(p[0].time, rfc3339_ms("2012-01-03T23:36:29+02:00"));
    }

    #[test]
    fn tag_push_fixture() {
        let Event::Push(p) = parse("Tag Push Hook", TAG).unwrap() else {
            panic!()
        };
        assert_eq!(p[0].git_ref, GitRef::Tag("v1.0.0".into()));
        assert_eq!(
            p[0].commit.as_deref(),
            Some("82b3d5ae55f7080f1e6022629cdb57bfae7cccc7")
        );
    }

    #[test]
    fn branch_deletion() {
        let body = br#"{"object_kind":"push","ref":"refs/heads/gone","after":"0000000000000000000000000000000000000000","checkout_sha":null,"project":{"path_with_namespace":"a/b"},"commits":[]}"#;
        let Event::Push(p) = parse("Push Hook", body).unwrap() else {
            panic!()
        };
        assert!(p[0].deleted);
        assert_eq!(p[0].commit, None);
    }

    #[test]
    fn other_events_are_ignored() {
        assert_eq!(
            parse("Merge Request Hook", b"{}").unwrap(),
            Event::Ignored("Merge Request Hook".into())
        );
        assert_eq!(
            parse("System Hook", br#"{"object_kind":"project_create"}"#).unwrap(),
            Event::Ignored("project_create".into())
        );
    }

    #[test]
    fn token_and_signing_token() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-gitlab-token",
            "It's a Secret to Everybody".parse().unwrap(),
        );
        let tol = Duration::from_secs(300);
        let s = [Secret::new("It's a Secret to Everybody")];
        assert_eq!(verify(&s, &h, b"{}", 0, tol), Ok(()));
        assert!(matches!(
            verify(&[Secret::new("other")], &h, b"{}", 0, tol),
            Err(VerifyError::Mismatch { .. })
        ));
        assert!(matches!(
            verify(&s, &HeaderMap::new(), b"{}", 0, tol),
            Err(VerifyError::Missing { .. })
        ));
    }
}
