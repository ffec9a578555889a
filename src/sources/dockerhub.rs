//! Docker Hub repository webhooks.
//!
//! Docker Hub sends no identifying header, no signature and no delivery id, so a hook names it
//! with `?source=dockerhub` and its URL token is the only secret. Only pushes exist:
//! `push_data.tag`, `push_data.pushed_at` (unix seconds) and `repository.repo_name`
//! (`namespace/name`). There is no digest: the tag is resolved against the registry later.
//!
//! A push also carries `callback_url`, where Docker Hub waits for the outcome; [`callback_url`]
//! reads it for `crate::notify`, which decides whether to call it.

use serde::Deserialize;
use serde_json::Value;

use super::setup::Setup;
use super::{Event, ImagePush, ParseError, epoch_secs_ms, image_repository, image_tag};

#[derive(Deserialize)]
struct Push {
    push_data: Option<PushData>,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct PushData {
    tag: Option<String>,
    pushed_at: Option<Value>,
}

#[derive(Deserialize)]
struct Repository {
    repo_name: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

pub(crate) fn parse(body: &[u8]) -> Result<Event, ParseError> {
    let p: Push = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let data = p.push_data.ok_or(ParseError::Field("push_data"))?;
    let tag = data
        .tag
        .as_deref()
        .and_then(image_tag)
        .ok_or(ParseError::Field("push_data.tag"))?;
    let repo = p.repository.ok_or(ParseError::Field("repository"))?;
    let name = match (repo.repo_name, repo.namespace, repo.name) {
        (Some(full), _, _) if !full.trim().is_empty() => full,
        (_, Some(ns), Some(name)) if !ns.trim().is_empty() && !name.trim().is_empty() => {
            format!("{}/{}", ns.trim(), name.trim())
        }
        _ => return Err(ParseError::Field("repository.repo_name")),
    };
    let name = image_repository(&name).ok_or(ParseError::Field("repository.repo_name"))?;
    // Official images live in the `library` namespace.
    let repository = if name.contains('/') {
        name
    } else {
        format!("library/{name}")
    };
    Ok(Event::ImagePush(vec![ImagePush {
        repository,
        tag: Some(tag),
        digest: None,
        time: data.pushed_at.as_ref().and_then(epoch_secs_ms),
        event_id: None,
    }]))
}

/// The `callback_url` of a stored push, if it has one: where Docker Hub expects the outcome of
/// the webhook chain. A payload value: the caller checks it against the app's
/// `dockerhub_callback` prefix before calling it.
pub(crate) fn callback_url(body: &[u8]) -> Option<String> {
    let push: Value = serde_json::from_slice(body).ok()?;
    push.get("callback_url")?.as_str().map(str::to_string)
}

/// `ferry hooks`: the webhook URL, named `?source=dockerhub` (apps with images).
pub(crate) fn setup(s: &Setup<'_>) -> String {
    format!(
        "Docker Hub (Repository → Webhooks): Webhook URL {}?source=dockerhub{}",
        s.url,
        s.no_credentials_note()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_push() {
        let body = include_bytes!("../../tests/fixtures/dockerhub/push.json");
        assert_eq!(
            parse(body).unwrap(),
            Event::ImagePush(vec![ImagePush {
                repository: "svendowideit/testhook".into(),
                tag: Some("latest".into()),
                digest: None,
                time: Some(1_417_566_161_000),
                event_id: None,
            }])
        );
    }

    #[test]
    fn official_images_fallbacks_and_errors() {
        let Event::ImagePush(p) =
            parse(br#"{"push_data":{"tag":"1.27","pushed_at":1700000000.5},"repository":{"repo_name":"nginx"}}"#)
                .unwrap()
        else {
            panic!("not an image push")
        };
        assert_eq!(p[0].repository, "library/nginx");
        assert_eq!(p[0].time, Some(1_700_000_000_500));
        let Event::ImagePush(p) =
            parse(br#"{"push_data":{"tag":"v1"},"repository":{"namespace":"acme","name":"api"}}"#)
                .unwrap()
        else {
            panic!("not an image push")
        };
        assert_eq!(p[0].repository, "acme/api");
        assert_eq!(p[0].time, None);
        assert_eq!(
            parse(br#"{"push_data":{"pushed_at":1},"repository":{"repo_name":"a/b"}}"#),
            Err(ParseError::Field("push_data.tag"))
        );
        assert_eq!(
            parse(br#"{"push_data":{"tag":"bad tag"},"repository":{"repo_name":"a/b"}}"#),
            Err(ParseError::Field("push_data.tag"))
        );
        assert_eq!(
            parse(br#"{"push_data":{"tag":"v1"},"repository":{}}"#),
            Err(ParseError::Field("repository.repo_name"))
        );
        assert_eq!(parse(b"{}"), Err(ParseError::Field("push_data")));
        assert!(matches!(parse(b"not json"), Err(ParseError::Json(_))));
    }

    #[test]
    fn callback_urls() {
        let body = include_bytes!("../../tests/fixtures/dockerhub/push.json");
        assert_eq!(
            callback_url(body).as_deref(),
            Some(
                "https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/"
            )
        );
        assert_eq!(callback_url(br#"{"callback_url":1}"#), None);
        assert_eq!(callback_url(b"{}"), None);
        assert_eq!(callback_url(b"not json"), None);
    }
}
