//! Quay (quay.io and Red Hat Quay) repository notifications, method "webhook".
//!
//! Quay sends only `Content-type: application/json`: no identifying header, no signature, no
//! delivery id, so a hook names it with `?source=quay` and its URL token is the only secret.
//! A `repo_push` carries `repository` (`ns/name`), `docker_url` (`host/ns/name`) and
//! `updated_tags` (a list of tag names; early Quay sent a map of tag → image id). No digest and
//! no time: tags are resolved against the registry later. Other notification kinds (builds,
//! vulnerabilities) have no `updated_tags` and deploy nothing.

use serde::Deserialize;
use serde_json::Value;

use super::setup::Setup;
use super::{Event, ImagePush, ParseError, image_repository, image_tag};

#[derive(Deserialize)]
struct Notification {
    repository: Option<String>,
    docker_url: Option<String>,
    updated_tags: Option<Value>,
}

pub(crate) fn parse(body: &[u8]) -> Result<Event, ParseError> {
    let n: Notification =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let Some(updated) = n.updated_tags else {
        return Ok(Event::Ignored("quay: not a repo_push".into()));
    };
    let tags: Vec<String> = match &updated {
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .filter_map(image_tag)
            .collect(),
        Value::Object(map) => map.keys().filter_map(|t| image_tag(t)).collect(),
        _ => return Err(ParseError::Field("updated_tags")),
    };
    let repository = n
        .docker_url
        .as_deref()
        .and_then(image_repository)
        .or_else(|| n.repository.as_deref().and_then(image_repository))
        .ok_or(ParseError::Field("repository"))?;
    if tags.is_empty() {
        return Ok(Event::Ignored("quay: repo_push without tags".into()));
    }
    Ok(Event::ImagePush(
        tags.into_iter()
            .map(|tag| ImagePush {
                repository: repository.clone(),
                tag: Some(tag),
                digest: None,
                time: None,
                event_id: None,
            })
            .collect(),
    ))
}

/// `ferry hooks`: the notification's URL, named `?source=quay` (apps with images).
pub(crate) fn setup(s: &Setup<'_>) -> String {
    format!(
        "Quay (Repository → Settings → Create Notification → Push to Repository → Webhook POST): {}?source=quay{}",
        s.url,
        s.no_credentials_note()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_repo_push() {
        let body = include_bytes!("../../tests/fixtures/quay/repo-push.json");
        assert_eq!(
            parse(body).unwrap(),
            Event::ImagePush(vec![ImagePush {
                repository: "quay.io/dgangaia/test".into(),
                tag: Some("latest".into()),
                digest: None,
                time: None,
                event_id: None,
            }])
        );
    }

    #[test]
    fn tag_map_fallbacks_and_other_notifications() {
        let Event::ImagePush(p) =
            parse(br#"{"repository":"acme/api","updated_tags":{"v1":"abc123","latest":"abc123"}}"#)
                .unwrap()
        else {
            panic!("not an image push")
        };
        let mut tags: Vec<_> = p.iter().filter_map(|i| i.tag.as_deref()).collect();
        tags.sort();
        assert_eq!(tags, ["latest", "v1"]);
        assert!(p.iter().all(|i| i.repository == "acme/api"));
        assert_eq!(
            parse(br#"{"repository":"acme/api","build_id":"x","docker_tags":["v1"]}"#).unwrap(),
            Event::Ignored("quay: not a repo_push".into())
        );
        assert_eq!(
            parse(br#"{"repository":"acme/api","updated_tags":[]}"#).unwrap(),
            Event::Ignored("quay: repo_push without tags".into())
        );
        assert_eq!(
            parse(br#"{"updated_tags":["v1"]}"#),
            Err(ParseError::Field("repository"))
        );
        assert_eq!(
            parse(br#"{"repository":"a/b","updated_tags":"v1"}"#),
            Err(ParseError::Field("updated_tags"))
        );
    }
}
