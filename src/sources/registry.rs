//! CNCF distribution (the `registry` of Docker and most self-hosted registries) notifications.
//!
//! Recognised by `Content-Type`: `application/vnd.docker.distribution.events.v1+json` (registry
//! 2.x) or `…events.v2+json` (distribution 3.x). Nothing is signed; operators configure a static
//! `Authorization` header on the endpoint, checked by the `bearer`/`basic` schemes.
//!
//! The body is an envelope `{"events": […]}`: 2.x batches several unrelated events, 3.x sends
//! one per envelope. A `docker push` produces one event per blob and one for the manifest; only
//! `push` events of a manifest or index that carry a `target.tag` matter to a deployer (a
//! multi-platform push also puts each platform's manifest by digest, without a tag). Each
//! becomes one [`ImagePush`], with the event's own `id` (the sender's idempotency key).

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::setup::Setup;
use super::{Event, ImagePush, ParseError, content_type, digest, essence, image_tag, rfc3339_ms};

pub(crate) const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";
pub(crate) const EVENTS_V2: &str = "application/vnd.docker.distribution.events.v2+json";

/// Manifest and index media types: the pushes that name an image (not its blobs).
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// The registry's own events media type (plain `application/json` is too broad to tell).
pub(crate) fn detect(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|ct| {
        let e = essence(&ct);
        e == EVENTS_V1 || e == EVENTS_V2
    })
}

#[derive(Deserialize)]
struct Envelope {
    // Each event is read on its own, so one odd event does not hide the others.
    events: Option<Vec<Value>>,
}

pub(crate) fn parse(body: &[u8]) -> Result<Event, ParseError> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let events = envelope.events.ok_or(ParseError::Field("events"))?;
    let pushes: Vec<ImagePush> = events.iter().filter_map(image_push).collect();
    if pushes.is_empty() {
        return Ok(Event::Ignored("registry: no tagged manifest push".into()));
    }
    Ok(Event::ImagePush(pushes))
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).map(str::trim)
}

fn image_push(event: &Value) -> Option<ImagePush> {
    if text(event, "action") != Some("push") {
        return None;
    }
    let target = event.get("target")?;
    let media_type = essence(text(target, "mediaType")?);
    if !MANIFEST_TYPES.contains(&media_type.as_str()) {
        return None;
    }
    let tag = image_tag(text(target, "tag")?)?;
    let name = text(target, "repository").filter(|r| !r.is_empty())?;
    let repository = match event
        .get("request")
        .and_then(|r| text(r, "host"))
        .filter(|h| !h.is_empty())
    {
        Some(host) => format!("{host}/{name}"),
        None => name.to_string(),
    };
    let repository = super::image_repository(&repository)?;
    Some(ImagePush {
        repository,
        tag: Some(tag),
        digest: text(target, "digest").and_then(digest),
        time: text(event, "timestamp").and_then(rfc3339_ms),
        event_id: text(event, "id")
            .filter(|id| !id.is_empty())
            .map(|id| id.chars().take(200).collect()),
    })
}

/// `ferry hooks`: the registry's notification endpoint (apps with images). It is recognised by
/// its media type, so its URL needs no `?source=`; it can send the app's `Authorization`.
pub(crate) fn setup(s: &Setup<'_>) -> String {
    let v = s.verify();
    format!(
        "Docker registry (config.yml notifications.endpoints): url {}{}",
        s.url,
        if v.bearer.is_empty() && v.basic.is_empty() {
            ""
        } else {
            " · headers: Authorization as above"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUSH: &[u8] =
        include_bytes!("../../tests/fixtures/distribution/push-envelope-3-events.json");
    const PULL: &[u8] = include_bytes!("../../tests/fixtures/distribution/manifest-pull.json");

    /// The documented example with `tag` set on its manifest event, as `docker push name:tag`
    /// sends it (the docs' example is a push by digest).
    fn tagged_push() -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(PUSH).unwrap();
        v["events"][0]["target"]["tag"] = "1.0".into();
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn one_manifest_and_two_layers_give_one_image_push() {
        let Event::ImagePush(p) = parse(&tagged_push()).unwrap() else {
            panic!("not an image push")
        };
        assert_eq!(
            p,
            vec![ImagePush {
                repository: "registrycluster.local/library/test".into(),
                tag: Some("1.0".into()),
                digest: Some(
                    "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf"
                        .into()
                ),
                time: rfc3339_ms("2006-01-02T15:04:05Z"),
                event_id: Some("asdf-asdf-asdf-asdf-0".into()),
            }]
        );
    }

    #[test]
    fn documented_push_by_digest_is_ignored() {
        // The fixture's manifest event has no `target.tag`: nothing names a version to deploy.
        assert_eq!(
            parse(PUSH).unwrap(),
            Event::Ignored("registry: no tagged manifest push".into())
        );
    }

    #[test]
    fn pulls_are_ignored() {
        assert_eq!(
            parse(PULL).unwrap(),
            Event::Ignored("registry: no tagged manifest push".into())
        );
    }

    #[test]
    fn batches_media_types_and_hosts() {
        let body = br#"{"events":[
            {"id":"a","action":"push","timestamp":"2024-01-01T00:00:00Z",
             "target":{"mediaType":"application/vnd.oci.image.index.v1+json","repository":"acme/api","tag":"v2",
                       "digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001"}},
            {"id":"b","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"acme/api",
                       "digest":"sha256:0000000000000000000000000000000000000000000000000000000000000002"}},
            {"id":"c","action":"delete","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"acme/api","tag":"v1"}},
            {"id":"d","action":"push","request":{"host":"reg.local:5000"},
             "target":{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","repository":"acme/web","tag":"latest","digest":"md5:x"}},
            "not an event",
            {"id":"e","action":"push","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":"acme/x","tag":"sha256:abc"}}
        ]}"#;
        let Event::ImagePush(p) = parse(body).unwrap() else {
            panic!("not an image push")
        };
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].repository, "acme/api");
        assert_eq!(p[0].tag.as_deref(), Some("v2"));
        assert_eq!(p[0].time, Some(1_704_067_200_000));
        assert_eq!(p[1].repository, "reg.local:5000/acme/web");
        assert_eq!(p[1].digest, None, "not a digest");
        assert_eq!(p[1].time, None);
        assert_eq!(p[1].event_id.as_deref(), Some("d"));
    }

    #[test]
    fn malformed_envelopes() {
        assert!(matches!(parse(b"{\"events\":"), Err(ParseError::Json(_))));
        assert_eq!(parse(b"{}"), Err(ParseError::Field("events")));
        assert!(matches!(parse(b"[]"), Err(ParseError::Json(_))));
        assert_eq!(
            parse(br#"{"events":[]}"#).unwrap(),
            Event::Ignored("registry: no tagged manifest push".into())
        );
    }

    #[test]
    fn detection_by_media_type() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert("content-type", ct.parse().unwrap());
            h
        };
        assert!(detect(&with(EVENTS_V1)));
        assert!(detect(&with(
            "Application/VND.docker.distribution.events.v2+json; charset=utf-8"
        )));
        assert!(!detect(&with("application/json")));
        assert!(!detect(&HeaderMap::new()));
    }
}
