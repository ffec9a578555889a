//! GitHub webhooks: `X-GitHub-Event`, `X-GitHub-Delivery`, `X-Hub-Signature-256`.
//!
//! The signature is HMAC-SHA256 of the raw body as received — for form-encoded deliveries that
//! is the `payload=…` form, not the JSON inside it — so verification runs before any decoding.
//! `push` becomes [`Event::Push`], `ping` [`Event::Ping`], a container published to GHCR
//! (`package` / `registry_package`, action `published` or `updated`) [`Event::ImagePush`],
//! `deployment` (action `created`: a deployment made in GitHub by anyone, ferry included)
//! [`Event::Deployment`]; every other event deploys nothing. Gitea and Forgejo reuse this module's push parsing and
//! signature check.

use http::HeaderMap;
use serde::Deserialize;

use super::setup::Setup;
use super::signature::{hmac_matches, keys};
use super::{
    Event, GitDeployment, GitPush, GitRef, ImagePush, ParseError, VerifyError, ZERO_SHA, digest,
    image_repository, image_tag, json_document, rfc3339_ms,
};
use crate::config::HmacAlgorithm;
use crate::secret::Secret;

pub(crate) const EVENT_HEADER: &str = "x-github-event";
pub(crate) const DELIVERY_HEADER: &str = "x-github-delivery";
pub(crate) const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Checks `X-Hub-Signature-256: sha256=<hex>` against the raw body, in constant time.
pub(crate) fn verify(
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), VerifyError> {
    verify_prefixed_hex(SIGNATURE_HEADER, "sha256=", secrets, headers, body)
}

/// `HEADER: <prefix><hex HMAC-SHA256(secret, body)>`: GitHub's scheme, also Bitbucket's and
/// (without prefix) Gitea's.
pub(crate) fn verify_prefixed_hex(
    header: &str,
    prefix: &str,
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), VerifyError> {
    let value = headers
        .get(header)
        .ok_or_else(|| VerifyError::Missing {
            header: header.into(),
        })?
        .to_str()
        .map_err(|_| VerifyError::Malformed {
            header: header.into(),
            why: "not ASCII".into(),
        })?
        .trim();
    let hex_sig = value
        .strip_prefix(prefix)
        .ok_or_else(|| VerifyError::Malformed {
            header: header.into(),
            why: format!("expected `{prefix}<hex digest>`"),
        })?;
    let sig = hex::decode(hex_sig).map_err(|_| VerifyError::Malformed {
        header: header.into(),
        why: "digest is not hex".into(),
    })?;
    if hmac_matches(HmacAlgorithm::Sha256, &keys(secrets), &[body], &sig) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch {
            header: header.into(),
        })
    }
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    forced: bool,
    repository: Option<Repository>,
    head_commit: Option<HeadCommit>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: Option<String>,
}

#[derive(Deserialize)]
struct HeadCommit {
    id: Option<String>,
    timestamp: Option<String>,
}

/// Parses a GitHub delivery (JSON, or form-encoded with the JSON in `payload`).
pub(crate) fn parse(
    event: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Event, ParseError> {
    match event {
        "ping" => Ok(Event::Ping),
        "push" => {
            let json = json_document(content_type, body).map_err(|_| ParseError::NoFormPayload)?;
            let push: Push =
                serde_json::from_slice(&json).map_err(|e| ParseError::Json(e.to_string()))?;
            Ok(Event::Push(vec![push_event(push)?]))
        }
        "package" | "registry_package" => {
            let json = json_document(content_type, body).map_err(|_| ParseError::NoFormPayload)?;
            parse_package(event, &json)
        }
        DEPLOYMENT_EVENT => {
            let json = json_document(content_type, body).map_err(|_| ParseError::NoFormPayload)?;
            parse_deployment(&json)
        }
        other => Ok(Event::Ignored(other.to_string())),
    }
}

/// The `X-GitHub-Event` of a deployment created in GitHub.
pub(crate) const DEPLOYMENT_EVENT: &str = "deployment";

#[derive(Deserialize)]
struct DeploymentEvent {
    action: Option<String>,
    deployment: Option<DeploymentFields>,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct DeploymentFields {
    id: Option<i64>,
    sha: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    task: Option<String>,
    environment: Option<String>,
    /// Any JSON (an object, or a string for deployments made with one).
    #[serde(default)]
    payload: serde_json::Value,
}

/// A `deployment` event: what it asks to deploy, where, and which deployment the statuses go
/// to. Its `payload` names a ferry deployment when ferry created it.
fn parse_deployment(json: &[u8]) -> Result<Event, ParseError> {
    let e: DeploymentEvent =
        serde_json::from_slice(json).map_err(|e| ParseError::Json(e.to_string()))?;
    if let Some(action) = e.action.as_deref().filter(|a| *a != "created") {
        return Ok(Event::Ignored(format!(
            "deployment: {}",
            action.chars().take(50).collect::<String>()
        )));
    }
    let d = e.deployment.ok_or(ParseError::Field("deployment"))?;
    let created_by_ferry = d
        .payload
        .get("ferry")
        .and_then(|f| f.get("deployment"))
        .and_then(serde_json::Value::as_i64);
    Ok(Event::Deployment(GitDeployment {
        repo: e
            .repository
            .and_then(|r| r.full_name)
            .ok_or(ParseError::Field("repository.full_name"))?,
        commit: d.sha.ok_or(ParseError::Field("deployment.sha"))?,
        git_ref: d.git_ref.ok_or(ParseError::Field("deployment.ref"))?,
        environment: d
            .environment
            .ok_or(ParseError::Field("deployment.environment"))?,
        task: d.task.unwrap_or_else(|| "deploy".into()),
        id: d.id.ok_or(ParseError::Field("deployment.id"))?,
        created_by_ferry,
    }))
}

/// The id of the GitHub deployment a stored `deployment` delivery names: where ferry posts
/// the statuses of the deployments it caused.
pub(crate) fn requested_deployment_id(content_type: Option<&str>, body: &[u8]) -> Option<i64> {
    match parse(DEPLOYMENT_EVENT, content_type, body).ok()? {
        Event::Deployment(d) => Some(d.id),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Package {
    name: Option<String>,
    namespace: Option<String>,
    package_version: Option<PackageVersion>,
}

#[derive(Deserialize)]
struct PackageVersion {
    version: Option<String>,
    name: Option<String>,
    package_url: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    container_metadata: Option<ContainerMetadata>,
}

#[derive(Deserialize)]
struct ContainerMetadata {
    tag: Option<ContainerTag>,
}

#[derive(Deserialize)]
struct ContainerTag {
    name: Option<String>,
    digest: Option<String>,
}

/// A GHCR container package published or updated (`package`, or `registry_package` from GitHub
/// Apps; same shape under the event's own key). Tolerates GitHub's examples, which carry an
/// empty tag name, a 40-hex "digest" in `tag.digest`, the real digest in `package_version.version`
/// and `package_type: "npm"` beside `ecosystem: "docker"`.
fn parse_package(event: &str, json: &[u8]) -> Result<Event, ParseError> {
    // Read loosely first: events that deploy nothing are never refused for their shape.
    let e: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| ParseError::Json(e.to_string()))?;
    let action = e.get("action").and_then(|a| a.as_str()).unwrap_or("");
    if action != "published" && action != "updated" {
        return Ok(Event::Ignored(format!(
            "{event}: {}",
            action.chars().take(50).collect::<String>()
        )));
    }
    let (own, other) = if event == "registry_package" {
        ("registry_package", "package")
    } else {
        ("package", "registry_package")
    };
    let package = e
        .get(own)
        .or_else(|| e.get(other))
        .filter(|p| p.is_object())
        .ok_or(ParseError::Field("package"))?;
    if let Some(kind) = other_than_container(package) {
        return Ok(Event::Ignored(format!("{event}: {kind} package")));
    }
    let package = Package::deserialize(package).map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(Event::ImagePush(vec![container_push(package)?]))
}

/// The kind of a package that is not a container (npm, maven, …; cut to 50 characters), or
/// `None` for a container. GitHub's examples name `docker` in one field and not the other.
fn other_than_container(package: &serde_json::Value) -> Option<String> {
    let kind = |key: &str| package.get(key).and_then(|k| k.as_str()).unwrap_or("");
    let is_container =
        |k: &str| k.eq_ignore_ascii_case("container") || k.eq_ignore_ascii_case("docker");
    if is_container(kind("ecosystem")) || is_container(kind("package_type")) {
        return None;
    }
    let named = [kind("package_type"), kind("ecosystem")]
        .into_iter()
        .find(|k| !k.is_empty())
        .unwrap_or("unknown");
    Some(named.chars().take(50).collect())
}

/// The image a container package version names: `ghcr.io/NAMESPACE/NAME` (or its
/// `package_url`), its tag and digest where well-formed, and a plausible time.
fn container_push(package: Package) -> Result<ImagePush, ParseError> {
    let version = package.package_version;
    let package_url = version.as_ref().and_then(|v| v.package_url.as_deref());
    let named = match (package.namespace.as_deref(), package.name.as_deref()) {
        (Some(ns), Some(name)) if !ns.trim().is_empty() && !name.trim().is_empty() => {
            image_repository(&format!("ghcr.io/{}/{}", ns.trim(), name.trim()))
        }
        _ => None,
    };
    let repository = named
        .or_else(|| package_url.and_then(image_repository))
        .ok_or(ParseError::Field("package.namespace"))?
        .to_lowercase();
    let tag = version
        .as_ref()
        .and_then(|v| v.container_metadata.as_ref())
        .and_then(|m| m.tag.as_ref());
    let digest = tag
        .and_then(|t| t.digest.as_deref())
        .and_then(digest)
        .or_else(|| {
            let v = version.as_ref()?;
            v.version
                .as_deref()
                .and_then(digest)
                .or_else(|| v.name.as_deref().and_then(digest))
        });
    // GitHub leaves version times at 0001-01-01; only a plausible time orders events.
    let time = version.as_ref().and_then(|v| {
        [&v.updated_at, &v.created_at]
            .into_iter()
            .find_map(|t| t.as_deref().and_then(rfc3339_ms).filter(|ms| *ms > 0))
    });
    Ok(ImagePush {
        repository,
        tag: tag.and_then(|t| t.name.as_deref()).and_then(image_tag),
        digest,
        time,
        event_id: None,
    })
}

fn push_event(p: Push) -> Result<GitPush, ParseError> {
    let full_ref = p.git_ref.ok_or(ParseError::Field("ref"))?;
    let repo = p
        .repository
        .and_then(|r| r.full_name)
        .ok_or(ParseError::Field("repository.full_name"))?;
    let deleted = p.deleted || p.after.as_deref() == Some(ZERO_SHA);
    // For annotated tags `after` is the tag object; head_commit.id is the commit.
    let (commit, time) = match p.head_commit {
        Some(h) => (
            h.id.or(p.after.clone()),
            h.timestamp.as_deref().and_then(rfc3339_ms),
        ),
        None => (p.after.filter(|a| a != ZERO_SHA), None),
    };
    Ok(GitPush {
        repo,
        git_ref: GitRef::parse(&full_ref),
        full_ref,
        commit: if deleted { None } else { commit },
        time,
        deleted,
        forced: p.forced,
    })
}

/// Gitea and Forgejo push payloads have GitHub's shape.
pub(crate) fn parse_push(json: &[u8]) -> Result<GitPush, ParseError> {
    let push: Push = serde_json::from_slice(json).map_err(|e| ParseError::Json(e.to_string()))?;
    push_event(push)
}

/// `ferry hooks`: the push webhook (and deployments, for apps with `[apps.X.github]`), for
/// apps that verify GitHub.
pub(crate) fn setup(s: &Setup<'_>) -> Option<String> {
    let v = s.verify();
    // With [apps.X.github], deployments made in GitHub deploy too.
    let events = if s.app.github.is_some() {
        "Let me select individual events: Pushes, Deployments"
    } else {
        "Just the push event"
    };
    (!v.github.is_empty()).then(|| {
        format!(
            "GitHub (Settings → Webhooks → Add webhook): Payload URL {} · Content type application/json · Secret {} · Events: {events}",
            s.url,
            s.secret(&v.github, "github")
        )
    })
}

/// `ferry hooks`: GHCR pushes, which come as GitHub `package` events (apps with images).
pub(crate) fn package_setup(s: &Setup<'_>) -> String {
    format!(
        "GitHub Container Registry: a GitHub webhook on {} with the \"Packages\" event",
        s.url
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Vec<Secret> {
        vec![Secret::new(s)]
    }

    fn mismatch() -> Result<(), VerifyError> {
        Err(VerifyError::Mismatch {
            header: SIGNATURE_HEADER.into(),
        })
    }

    fn headers(sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", sig.parse().unwrap());
        h
    }

    #[test]
    fn github_published_test_vector() {
        let s = secret("It's a Secret to Everybody");
        let h = headers("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
        assert_eq!(verify(&s, &h, b"Hello, World!"), Ok(()));
        assert_eq!(verify(&s, &h, b"Hello, World?"), mismatch());
        assert_eq!(verify(&secret("another"), &h, b"Hello, World!"), mismatch());
        // Rotation: any configured secret may match.
        let both = vec![
            Secret::new("old"),
            Secret::new("It's a Secret to Everybody"),
        ];
        assert_eq!(verify(&both, &h, b"Hello, World!"), Ok(()));
    }

    #[test]
    fn form_body_is_verified_as_received() {
        // go-github's vector: the HMAC covers the raw form body, not the JSON inside it.
        let body = b"payload=%7B%22yo%22%3Atrue%7D";
        let h = headers("sha256=30f622d549ca623f1c553f7e395a80c9487b43b9feaf9af4a1811381ddf5a94d");
        assert_eq!(verify(&secret("0123456789abcdef"), &h, body), Ok(()));
        assert_eq!(
            verify(&secret("0123456789abcdef"), &h, br#"{"yo":true}"#),
            mismatch()
        );
    }

    #[test]
    fn malformed_and_missing_signatures() {
        let body = b"x";
        assert_eq!(
            verify(&secret("s"), &HeaderMap::new(), body),
            Err(VerifyError::Missing {
                header: SIGNATURE_HEADER.into()
            })
        );
        assert!(matches!(
            verify(&secret("s"), &headers("sha1=abcd"), body),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            verify(&secret("s"), &headers("sha256=zz"), body),
            Err(VerifyError::Malformed { .. })
        ));
    }

    #[test]
    fn push_with_annotated_tag_uses_head_commit() {
        let body = br#"{"ref":"refs/tags/v1.0","after":"1111111111111111111111111111111111111111",
            "repository":{"full_name":"acme/shop"},
            "head_commit":{"id":"2222222222222222222222222222222222222222","timestamp":"2024-01-02T03:04:05+01:00"}}"#;
        let Event::Push(mut p) = parse("push", Some("application/json"), body).unwrap() else {
            panic!("not a push")
        };
        let p = p.remove(0);
        assert_eq!(p.git_ref, GitRef::Tag("v1.0".into()));
        assert_eq!(
            p.commit.as_deref(),
            Some("2222222222222222222222222222222222222222")
        );
        assert_eq!(p.time, Some(1_704_161_045_000));
        assert!(!p.deleted);
    }

    #[test]
    fn deleted_branch_has_no_commit() {
        let body = br#"{"ref":"refs/heads/old","after":"0000000000000000000000000000000000000000","deleted":true,
            "repository":{"full_name":"acme/shop"},"head_commit":null}"#;
        let Event::Push(mut p) = parse("push", None, body).unwrap() else {
            panic!("not a push")
        };
        let p = p.remove(0);
        assert!(p.deleted);
        assert_eq!(p.commit, None);
    }

    const DIGEST: &str = "sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498";

    #[test]
    fn ghcr_package_fixtures() {
        for (event, body) in [
            (
                "package",
                &include_bytes!("../../tests/fixtures/github/package-published-container.json")[..],
            ),
            (
                "registry_package",
                &include_bytes!(
                    "../../tests/fixtures/github/registry_package-published-container.json"
                )[..],
            ),
        ] {
            // The examples' quirks: empty tag name, a 40-hex `tag.digest`, the digest in
            // `version`, `package_type: "npm"`, version times at year 1.
            assert_eq!(
                parse(event, Some("application/json"), body).unwrap(),
                Event::ImagePush(vec![ImagePush {
                    repository: "ghcr.io/codertocat/hello-world/hello-world-npm".into(),
                    tag: None,
                    digest: Some(DIGEST.into()),
                    time: None,
                    event_id: None,
                }]),
                "{event}"
            );
        }
    }

    #[test]
    fn ghcr_real_shape_and_other_packages() {
        let body = |action: &str, kind: &str| {
            format!(
                r#"{{"action":"{action}","registry_package":{{"name":"Web","namespace":"Acme","ecosystem":"{kind}","package_type":"{kind}",
                "package_version":{{"version":"{DIGEST}","created_at":"0001-01-01T00:00:00Z","updated_at":"2024-01-02T03:04:05Z",
                "package_url":"ghcr.io/acme/web:v1.2.3",
                "container_metadata":{{"tag":{{"name":"v1.2.3","digest":"{DIGEST}"}}}}}}}}}}"#
            )
        };
        assert_eq!(
            parse(
                "registry_package",
                None,
                body("published", "CONTAINER").as_bytes()
            )
            .unwrap(),
            Event::ImagePush(vec![ImagePush {
                repository: "ghcr.io/acme/web".into(),
                tag: Some("v1.2.3".into()),
                digest: Some(DIGEST.into()),
                time: Some(1_704_164_645_000),
                event_id: None,
            }])
        );
        assert_eq!(
            parse(
                "registry_package",
                None,
                body("published", "npm").as_bytes()
            )
            .unwrap(),
            Event::Ignored("registry_package: npm package".into())
        );
        assert_eq!(
            parse(
                "registry_package",
                None,
                body("deleted", "CONTAINER").as_bytes()
            )
            .unwrap(),
            Event::Ignored("registry_package: deleted".into())
        );
        // Packages that deploy nothing are not read further.
        assert_eq!(
            parse(
                "package",
                None,
                br#"{"action":"published","package":{"package_type":"maven","name":7}}"#
            )
            .unwrap(),
            Event::Ignored("package: maven package".into())
        );
        assert!(matches!(
            parse(
                "package",
                None,
                br#"{"action":"published","package":{"package_type":"CONTAINER","name":7}}"#
            ),
            Err(ParseError::Json(_))
        ));
        // Without namespace and name, the package URL names the repository.
        let bare = br#"{"action":"updated","package":{"package_type":"CONTAINER","package_version":{"package_url":"ghcr.io/Acme/API:"}}}"#;
        let Event::ImagePush(p) = parse("package", None, bare).unwrap() else {
            panic!("not an image push")
        };
        assert_eq!(p[0].repository, "ghcr.io/acme/api");
        assert_eq!((p[0].tag.as_deref(), p[0].digest.as_deref()), (None, None));
        assert_eq!(
            parse("package", None, br#"{"action":"published"}"#),
            Err(ParseError::Field("package"))
        );
    }

    /// The documented `deployment` event (a deployment created in GitHub); ferry's own,
    /// recognised by its payload; other actions and broken ones; a form-encoded delivery.
    #[test]
    fn deployment_events() {
        let body = include_bytes!("../../tests/fixtures/github/deployment-created.json");
        let expected = GitDeployment {
            repo: "Codertocat/Hello-World".into(),
            commit: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
            git_ref: "master".into(),
            environment: "production".into(),
            task: "deploy".into(),
            id: 145988746,
            created_by_ferry: None,
        };
        assert_eq!(
            parse("deployment", Some("application/json"), body).unwrap(),
            Event::Deployment(expected.clone())
        );
        assert_eq!(
            requested_deployment_id(Some("application/json"), body),
            Some(145988746)
        );
        let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["deployment"]["payload"] =
            serde_json::json!({"ferry": {"deployment": 42, "app": "shop", "service": "web"}});
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &v.to_string())
            .finish();
        assert_eq!(
            parse(
                "deployment",
                Some("application/x-www-form-urlencoded"),
                form.as_bytes()
            )
            .unwrap(),
            Event::Deployment(GitDeployment {
                created_by_ferry: Some(42),
                ..expected
            })
        );
        v["deployment"]["payload"] = serde_json::json!("a string payload");
        v["action"] = serde_json::json!("created");
        assert!(matches!(
            parse("deployment", None, v.to_string().as_bytes()).unwrap(),
            Event::Deployment(GitDeployment {
                created_by_ferry: None,
                ..
            })
        ));
        v["action"] = serde_json::json!("deleted");
        assert_eq!(
            parse("deployment", None, v.to_string().as_bytes()).unwrap(),
            Event::Ignored("deployment: deleted".into())
        );
        v["action"] = serde_json::json!("created");
        v["deployment"].as_object_mut().unwrap().remove("sha");
        assert_eq!(
            parse("deployment", None, v.to_string().as_bytes()),
            Err(ParseError::Field("deployment.sha"))
        );
        assert_eq!(
            requested_deployment_id(None, v.to_string().as_bytes()),
            None
        );
        // A deployment_status event (GitHub's echo of the statuses ferry posts) deploys nothing.
        assert_eq!(
            parse("deployment_status", None, b"{}").unwrap(),
            Event::Ignored("deployment_status".into())
        );
    }

    /// `ferry hooks` asks for the Deployments event too when the app reports to GitHub.
    #[test]
    fn setup_names_the_events_to_send() {
        let app = |extra: &str| {
            let text = format!(
                "[apps.shop]\ntoken = \"tok-0123456789abcdef\"\nverify = {{ github = \"s\" }}\n[apps.shop.services.web]\ncommand = [\"x\"]\n{extra}"
            );
            crate::config::parse(&text, std::path::Path::new("f.toml"), &|_| None)
                .unwrap()
                .apps
                .remove("shop")
                .unwrap()
        };
        let line = |app: &crate::config::App| {
            setup(&Setup {
                app,
                url: "https://ferry.example/hooks/shop/T",
                show_secrets: false,
            })
            .unwrap()
        };
        assert!(line(&app("")).ends_with("Events: Just the push event"));
        let reporting = app("[apps.shop.github]\ntoken = \"t\"\n");
        assert!(
            line(&reporting)
                .ends_with("Events: Let me select individual events: Pushes, Deployments"),
            "{}",
            line(&reporting)
        );
    }

    #[test]
    fn form_encoded_push_and_other_events() {
        let json = r#"{"ref":"refs/heads/main","after":"abc","repository":{"full_name":"a/b"}}"#;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", json)
            .finish();
        let ev = parse(
            "push",
            Some("application/x-www-form-urlencoded"),
            body.as_bytes(),
        )
        .unwrap();
        assert!(matches!(ev, Event::Push(p) if p[0].git_ref == GitRef::Branch("main".into())));
        assert_eq!(
            parse("issues", None, b"{}").unwrap(),
            Event::Ignored("issues".into())
        );
        assert_eq!(parse("ping", None, b"").unwrap(), Event::Ping);
        assert!(matches!(
            parse("push", None, b"{not json"),
            Err(ParseError::Json(_))
        ));
        assert_eq!(
            parse("push", None, br#"{"ref":"refs/heads/x"}"#),
            Err(ParseError::Field("repository.full_name"))
        );
    }
}
