//! Harbor webhooks, in either of Harbor's payload formats.
//!
//! Harbor sends no identifying header (the Default format is plain `application/json`), so a
//! hook names it with `?source=harbor`. It signs nothing: the policy's "Auth Header" arrives
//! verbatim as `Authorization`, checked by the `bearer`/`basic` schemes.
//!
//! - Default: `type` (`PUSH_ARTIFACT`, `DELETE_ARTIFACT`, `PULL_ARTIFACT`, scans, quotas, …),
//!   `occur_at` (unix seconds), `event_data.resources[]{digest, tag, resource_url}`. No id.
//! - CloudEvents (`application/cloudevents+json`): `specversion`, `id`, `type`
//!   (`harbor.artifact.pushed`, …), `time` (RFC 3339), `data` = the Default `event_data`.
//!
//! An artifact push becomes one [`ImagePush`] per resource; every other type deploys nothing.
//! An artifact pushed by digest has its digest in `tag`: such a push has no tag.

use serde::Deserialize;
use serde_json::Value;

use super::setup::Setup;
use super::{Event, ImagePush, ParseError, digest, epoch_secs_ms, image_repository, image_tag};

/// The CloudEvents format's content type (structured mode).
pub(crate) const CLOUDEVENTS: &str = "application/cloudevents+json";

const PUSH_DEFAULT: &str = "PUSH_ARTIFACT";
const PUSH_CLOUDEVENTS: &str = "harbor.artifact.pushed";

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: Option<String>,
    // Default format.
    occur_at: Option<Value>,
    event_data: Option<EventData>,
    // CloudEvents format.
    specversion: Option<Value>,
    id: Option<String>,
    time: Option<String>,
    data: Option<EventData>,
}

#[derive(Deserialize)]
struct EventData {
    resources: Option<Vec<Resource>>,
}

#[derive(Deserialize)]
struct Resource {
    digest: Option<String>,
    tag: Option<String>,
    resource_url: Option<String>,
}

pub(crate) fn parse(body: &[u8]) -> Result<Event, ParseError> {
    let p: Payload = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let kind = p.kind.ok_or(ParseError::Field("type"))?;
    let cloudevents = p.specversion.is_some();
    let (push_type, data, time, event_id) = if cloudevents {
        (
            PUSH_CLOUDEVENTS,
            p.data,
            p.time.as_deref().and_then(super::rfc3339_ms),
            p.id.filter(|id| !id.trim().is_empty())
                .map(|id| id.trim().chars().take(200).collect::<String>()),
        )
    } else {
        (
            PUSH_DEFAULT,
            p.event_data,
            p.occur_at.as_ref().and_then(epoch_secs_ms),
            None,
        )
    };
    if kind != push_type {
        return Ok(Event::Ignored(kind.chars().take(100).collect()));
    }
    let resources = data
        .and_then(|d| d.resources)
        .ok_or(ParseError::Field(if cloudevents {
            "data.resources"
        } else {
            "event_data.resources"
        }))?;
    let pushes: Vec<ImagePush> = resources
        .into_iter()
        .filter_map(|r| {
            Some(ImagePush {
                repository: image_repository(r.resource_url.as_deref()?)?,
                tag: r.tag.as_deref().and_then(image_tag),
                digest: r.digest.as_deref().and_then(digest),
                time,
                event_id: event_id.clone(),
            })
        })
        .collect();
    if pushes.is_empty() {
        return Ok(Event::Ignored(
            "harbor: artifact push without resources".into(),
        ));
    }
    Ok(Event::ImagePush(pushes))
}

/// `ferry hooks`: the endpoint URL, named `?source=harbor` (apps with images).
pub(crate) fn setup(s: &Setup<'_>) -> String {
    format!(
        "Harbor (Project → Webhooks): Endpoint URL {}?source=harbor",
        s.url
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_push_by_digest() {
        let body = include_bytes!("../../tests/fixtures/harbor/push-artifact-default.json");
        assert_eq!(
            parse(body).unwrap(),
            Event::ImagePush(vec![ImagePush {
                repository: "localhost/harbor/alpine".into(),
                tag: None,
                digest: Some(
                    "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"
                        .into()
                ),
                time: Some(1_680_501_893_000),
                event_id: None,
            }])
        );
    }

    #[test]
    fn deletes_are_ignored() {
        let body = include_bytes!("../../tests/fixtures/harbor/delete-artifact-default.json");
        assert_eq!(
            parse(body).unwrap(),
            Event::Ignored("DELETE_ARTIFACT".into())
        );
        let body = include_bytes!("../../tests/fixtures/harbor/delete-artifact-cloudevents.json");
        assert_eq!(
            parse(body).unwrap(),
            Event::Ignored("harbor.artifact.deleted".into())
        );
    }

    #[test]
    fn cloudevents_push_with_tag() {
        // The delete example with the push type: Harbor's own CloudEvents push example is not
        // valid JSON (see tests/fixtures/harbor/SOURCES.md).
        let body = include_bytes!("../../tests/fixtures/harbor/delete-artifact-cloudevents.json");
        let mut v: Value = serde_json::from_slice(body).unwrap();
        v["type"] = PUSH_CLOUDEVENTS.into();
        v["data"]["resources"][0]["resource_url"] =
            "harbor.example.com:8443/harbor/alpine:3.8".into();
        let Event::ImagePush(p) = parse(&serde_json::to_vec(&v).unwrap()).unwrap() else {
            panic!("not an image push")
        };
        assert_eq!(
            p,
            vec![ImagePush {
                repository: "harbor.example.com:8443/harbor/alpine".into(),
                tag: Some("3.8".into()),
                digest: Some(
                    "sha256:2bb501e6173d9d006e56de5bce2720eb06396803300fe1687b58a7ff32bf4c14"
                        .into()
                ),
                time: super::super::rfc3339_ms("2023-04-03T06:16:38Z"),
                event_id: Some("343f1623-7cba-487c-88f1-c5ebf55e93aa".into()),
            }]
        );
        // A push in the Default format's type name is not a CloudEvents push, and vice versa.
        v["type"] = PUSH_DEFAULT.into();
        assert_eq!(
            parse(&serde_json::to_vec(&v).unwrap()).unwrap(),
            Event::Ignored(PUSH_DEFAULT.into())
        );
    }

    #[test]
    fn malformed_payloads() {
        assert_eq!(parse(b"{}"), Err(ParseError::Field("type")));
        assert_eq!(
            parse(br#"{"type":"PUSH_ARTIFACT"}"#),
            Err(ParseError::Field("event_data.resources"))
        );
        assert_eq!(
            parse(br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"v1"}]}}"#)
                .unwrap(),
            Event::Ignored("harbor: artifact push without resources".into())
        );
        assert!(matches!(parse(b"{\"type\":"), Err(ParseError::Json(_))));
    }
}
