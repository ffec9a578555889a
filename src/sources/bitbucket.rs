//! Bitbucket Cloud (`X-Event-Key: repo:push`) and Bitbucket Data Center/Server
//! (`repo:refs_changed`).
//!
//! Both sign with `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>` (note: not `-256`).
//! One push can update several branches and tags, so a push becomes one [`GitPush`] per change;
//! a change without a new target (Cloud) or of type `DELETE` (Data Center) deleted its ref.

use http::HeaderMap;
use serde::Deserialize;

use super::setup::Setup;
use super::{Event, GitPush, GitRef, ParseError, VerifyError, ZERO_SHA, rfc3339_ms};
use crate::secret::Secret;

pub(crate) const EVENT_HEADER: &str = "x-event-key";
pub(crate) const SIGNATURE_HEADER: &str = "X-Hub-Signature";

pub(crate) fn verify(
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), VerifyError> {
    super::github::verify_prefixed_hex(SIGNATURE_HEADER, "sha256=", secrets, headers, body)
}

pub(crate) fn parse(event: &str, body: &[u8]) -> Result<Event, ParseError> {
    match event {
        "repo:push" => parse_cloud(body),
        "repo:refs_changed" => parse_server(body),
        "diagnostics:ping" => Ok(Event::Ping),
        other => Ok(Event::Ignored(other.to_string())),
    }
}

#[derive(Deserialize)]
struct CloudPush {
    repository: Option<CloudRepo>,
    push: Option<CloudChanges>,
}

#[derive(Deserialize)]
struct CloudRepo {
    full_name: Option<String>,
}

#[derive(Deserialize)]
struct CloudChanges {
    #[serde(default)]
    changes: Vec<CloudChange>,
}

#[derive(Deserialize)]
struct CloudChange {
    new: Option<CloudRef>,
    old: Option<CloudRef>,
    #[serde(default)]
    forced: bool,
}

#[derive(Deserialize)]
struct CloudRef {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    target: Option<CloudTarget>,
}

#[derive(Deserialize)]
struct CloudTarget {
    hash: Option<String>,
    date: Option<String>,
}

fn full_ref(kind: Option<&str>, name: &str) -> String {
    match kind {
        Some("tag") | Some("TAG") => format!("refs/tags/{name}"),
        _ => format!("refs/heads/{name}"),
    }
}

fn parse_cloud(body: &[u8]) -> Result<Event, ParseError> {
    let p: CloudPush = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let repo = p
        .repository
        .and_then(|r| r.full_name)
        .ok_or(ParseError::Field("repository.full_name"))?;
    let changes = p.push.ok_or(ParseError::Field("push.changes"))?.changes;
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        let deleted = c.new.is_none();
        let Some(r) = c.new.or(c.old) else {
            continue;
        };
        let name = r.name.ok_or(ParseError::Field("push.changes[].new.name"))?;
        let full = full_ref(r.kind.as_deref(), &name);
        let target = r.target;
        out.push(GitPush {
            repo: repo.clone(),
            git_ref: GitRef::parse(&full),
            full_ref: full,
            commit: if deleted {
                None
            } else {
                target.as_ref().and_then(|t| t.hash.clone())
            },
            time: target
                .as_ref()
                .and_then(|t| t.date.as_deref())
                .and_then(rfc3339_ms),
            deleted,
            forced: c.forced,
        });
    }
    Ok(Event::Push(out))
}

#[derive(Deserialize)]
struct ServerPush {
    date: Option<String>,
    repository: Option<ServerRepo>,
    #[serde(default)]
    changes: Vec<ServerChange>,
}

#[derive(Deserialize)]
struct ServerRepo {
    slug: Option<String>,
    project: Option<ServerProject>,
}

#[derive(Deserialize)]
struct ServerProject {
    key: Option<String>,
}

#[derive(Deserialize)]
struct ServerChange {
    #[serde(rename = "ref")]
    git_ref: Option<ServerRef>,
    #[serde(rename = "refId")]
    ref_id: Option<String>,
    #[serde(rename = "toHash")]
    to_hash: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct ServerRef {
    id: Option<String>,
}

fn parse_server(body: &[u8]) -> Result<Event, ParseError> {
    let p: ServerPush =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let r = p.repository.ok_or(ParseError::Field("repository"))?;
    let slug = r.slug.ok_or(ParseError::Field("repository.slug"))?;
    let key = r
        .project
        .and_then(|p| p.key)
        .ok_or(ParseError::Field("repository.project.key"))?;
    // Repositories are addressed as PROJECT/slug, as in their clone URLs.
    let repo = format!("{key}/{slug}");
    let time = p.date.as_deref().and_then(rfc3339_ms);
    let mut out = Vec::with_capacity(p.changes.len());
    for c in p.changes {
        let full = c
            .git_ref
            .and_then(|r| r.id)
            .or(c.ref_id)
            .ok_or(ParseError::Field("changes[].ref.id"))?;
        let deleted = c.kind.as_deref() == Some("DELETE") || c.to_hash.as_deref() == Some(ZERO_SHA);
        out.push(GitPush {
            repo: repo.clone(),
            git_ref: GitRef::parse(&full),
            full_ref: full,
            commit: if deleted { None } else { c.to_hash },
            time,
            deleted,
            forced: false,
        });
    }
    Ok(Event::Push(out))
}

/// `ferry hooks`: the webhook, for apps that verify Bitbucket.
pub(crate) fn setup(s: &Setup<'_>) -> Option<String> {
    let v = s.verify();
    (!v.bitbucket.is_empty()).then(|| {
        format!(
            "Bitbucket (Repository settings → Webhooks → Add webhook): URL {} · Secret {} · Triggers: Repository push (Data Center: Repository → Push)",
            s.url,
            s.secret(&v.bitbucket, "bitbucket")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_fixture() {
        let body = include_bytes!("../../tests/fixtures/bitbucket-cloud/repo-push.json");
        let Event::Push(p) = parse("repo:push", body).unwrap() else {
            panic!()
        };
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].repo, "team_name/repo_name");
        assert_eq!(p[0].git_ref, GitRef::Branch("name-of-branch".into()));
        assert_eq!(
            p[0].commit.as_deref(),
            Some("709d658dc5b6d6afcd46049c2f332ee3f515a67d")
        );
        assert_eq!(p[0].time, Some(1_433_820_889_000));
    }

    #[test]
    fn cloud_push_with_several_changes() {
        let body = br#"{"repository":{"full_name":"a/b"},"push":{"changes":[
            {"new":{"type":"branch","name":"main","target":{"hash":"111","date":"2024-01-01T00:00:00+00:00"}},"old":{"type":"branch","name":"main"},"forced":true},
            {"new":{"type":"tag","name":"v1.2","target":{"hash":"222"}},"old":null},
            {"new":null,"old":{"type":"branch","name":"gone","target":{"hash":"333"}}}]}}"#;
        let Event::Push(p) = parse("repo:push", body).unwrap() else {
            panic!()
        };
        assert_eq!(p.len(), 3);
        assert!(p[0].forced);
        assert_eq!(p[1].git_ref, GitRef::Tag("v1.2".into()));
        assert_eq!(p[1].commit.as_deref(), Some("222"));
        assert!(p[2].deleted);
        assert_eq!(p[2].full_ref, "refs/heads/gone");
        assert_eq!(p[2].commit, None);
    }

    #[test]
    fn server_fixtures() {
        let body = include_bytes!(
            "../../tests/fixtures/bitbucket-server/repo-refs-changed-branch-updated.json"
        );
        let Event::Push(p) = parse("repo:refs_changed", body).unwrap() else {
            panic!()
        };
        assert_eq!(p[0].repo, "MYPROJECT/test-repo");
        assert_eq!(p[0].git_ref, GitRef::Branch("master".into()));
        assert_eq!(
            p[0].commit.as_deref(),
            Some("22671f0349857934857983457983475ec39f196b")
        );
        assert_eq!(p[0].time, rfc3339_ms("2019-06-17T09:37:57Z"));
        let body = include_bytes!(
            "../../tests/fixtures/bitbucket-server/repo-refs-changed-branch-deleted.json"
        );
        let Event::Push(p) = parse("repo:refs_changed", body).unwrap() else {
            panic!()
        };
        assert!(p[0].deleted);
        assert_eq!(p[0].full_ref, "refs/heads/feature/wip");
    }
}
