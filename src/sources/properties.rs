//! No body and no header value makes a parser or a verifier panic: property tests over every
//! entry point of `sources`, for every sender.

use std::time::Duration;

use http::HeaderMap;
use proptest::prelude::*;

use super::*;
use crate::config::{Encoding, HmacAlgorithm, HmacScheme, Verify};
use crate::secret::Secret;

fn all_schemes() -> Verify {
    let s = |v: &str| vec![Secret::new(v)];
    Verify {
        github: s("gh"),
        gitlab: vec![Secret::new("gl"), Secret::new("whsec_AAECAwQ=")],
        bitbucket: s("bb"),
        gitea: s("gt"),
        standard: s("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        standard_tolerance: Duration::from_secs(300),
        hmac: Some(HmacScheme {
            header: "x-signature".into(),
            algorithm: HmacAlgorithm::Sha512,
            encoding: Encoding::Base64,
            prefix: "sha512=".into(),
            secrets: s("h"),
        }),
        bearer: s("b"),
        basic: s("u:p"),
        require: true,
        allow_ips: Vec::new(),
        client_cert: false,
        allow_unsigned: false,
    }
}

const HEADERS: &[&str] = &[
    "x-github-event",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-gitlab-event",
    "x-gitlab-token",
    "x-event-key",
    "x-gitea-event",
    "x-gitea-signature",
    "x-forgejo-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-signature",
    "authorization",
    "content-type",
    "idempotency-key",
    "user-agent",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/x-www-form-urlencoded",
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json; charset=utf-8",
    "application/cloudevents+json",
    "",
];

const EVENTS: &[&str] = &[
    "push",
    "ping",
    "Push Hook",
    "Tag Push Hook",
    "System Hook",
    "repo:push",
    "repo:refs_changed",
    "issues",
    "package",
    "registry_package",
    "deployment",
];

fn header_map(values: &[(usize, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (i, v) in values {
        if let Ok(value) = http::HeaderValue::from_str(v) {
            h.insert(HEADERS[i % HEADERS.len()], value);
        }
    }
    h
}

proptest! {
    #[test]
    fn request_path_never_panics(
        values in proptest::collection::vec((0usize..64, ".{0,80}"), 0..8),
        ct in 0usize..8,
        hint in proptest::option::of(prop_oneof![
            Just("registry".to_string()), Just("dockerhub".to_string()),
            Just("harbor".to_string()), Just("quay".to_string()),
            Just("alertmanager".to_string()), ".{0,12}"
        ]),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        now in any::<i64>(),
    ) {
        let mut h = header_map(&values);
        if let Some(ct) = CONTENT_TYPES.get(ct) {
            h.insert("content-type", http::HeaderValue::from_static(ct));
        }
        let detected = detect_with_hint(&h, hint.as_deref());
        // Every sender's request-path checks, not only the detected one's.
        for source in std::iter::once(detected).chain(Source::ALL) {
            let _ = event_name(source, &h);
            let _ = delivery_id(source, &h);
            if let Ok(verdict) = verify(source, &all_schemes(), &h, &body, now) {
                let _ = dedupe_key(source, verdict, &h, &body);
            }
            let _ = check_body(source, &h, &body);
        }
    }

    #[test]
    fn parsers_never_panic(
        event in 0usize..64,
        body in proptest::collection::vec(any::<u8>(), 0..512),
        ct in 0usize..CONTENT_TYPES.len(),
        ts in ".{0,20}",
    ) {
        let header = |name: &str| match name {
            "content-type" => Some(CONTENT_TYPES[ct].to_string()),
            "webhook-timestamp" => Some(ts.clone()),
            _ => None,
        };
        for source in Source::ALL {
            let stored = Stored { event: Some(EVENTS[event % EVENTS.len()]), header: &header, body: &body };
            let _ = parse(source, &stored);
        }
    }

    #[test]
    fn json_shaped_bodies_never_panic(
        r in "(refs/(heads|tags)/)?[a-z0-9/.-]{0,12}",
        after in "[0-9a-f]{0,40}",
        ts in ".{0,30}",
    ) {
        let bodies = [
            format!(r#"{{"ref":"{r}","after":"{after}","repository":{{"full_name":"a/b"}},"head_commit":{{"id":"{after}","timestamp":"{ts}"}}}}"#),
            format!(r#"{{"object_kind":"push","ref":"{r}","after":"{after}","checkout_sha":"{after}","project":{{"path_with_namespace":"a/b"}},"commits":[{{"id":"{after}","timestamp":"{ts}"}}]}}"#),
            format!(r#"{{"repository":{{"full_name":"a/b"}},"push":{{"changes":[{{"new":{{"type":"{r}","name":"{r}","target":{{"hash":"{after}","date":"{ts}"}}}},"old":null}}]}}}}"#),
            format!(r#"{{"date":"{ts}","repository":{{"slug":"s","project":{{"key":"K"}}}},"changes":[{{"ref":{{"id":"{r}"}},"toHash":"{after}","type":"{r}"}}]}}"#),
        ];
        let header = |_: &str| None;
        for body in &bodies {
            for event in EVENTS {
                for source in Source::ALL {
                    let stored = Stored { event: Some(event), header: &header, body: body.as_bytes() };
                    let _ = parse(source, &stored);
                }
            }
        }
    }

    #[test]
    fn image_shaped_bodies_never_panic_and_stay_well_formed(
        repo in "[a-zA-Z0-9:/@._ -]{0,24}",
        tag in "[a-zA-Z0-9:._ -]{0,20}",
        hex in "[0-9a-fA-F]{0,66}",
        ts in ".{0,30}",
        secs in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), any::<f64>().prop_map(|f| format!("{f:e}")), Just("null".to_string())],
        action in prop_oneof![Just("push"), Just("pull"), Just("published"), Just("updated"), Just("PUSH_ARTIFACT"), Just("harbor.artifact.pushed")],
    ) {
        let d = format!("sha256:{hex}");
        let bodies = [
            format!(r#"{{"events":[{{"id":"{ts}","action":"{action}","timestamp":"{ts}","target":{{"mediaType":"application/vnd.oci.image.index.v1+json","repository":"{repo}","tag":"{tag}","digest":"{d}"}},"request":{{"host":"{repo}"}}}}]}}"#),
            format!(r#"{{"push_data":{{"tag":"{tag}","pushed_at":{secs}}},"repository":{{"repo_name":"{repo}","namespace":"{repo}","name":"{tag}"}}}}"#),
            format!(r#"{{"type":"{action}","occur_at":{secs},"event_data":{{"resources":[{{"digest":"{d}","tag":"{tag}","resource_url":"{repo}"}}]}}}}"#),
            format!(r#"{{"specversion":"1.0","id":"{ts}","type":"{action}","time":"{ts}","data":{{"resources":[{{"digest":"{d}","tag":"{tag}","resource_url":"{repo}"}}]}}}}"#),
            format!(r#"{{"repository":"{repo}","docker_url":"{repo}","updated_tags":["{tag}"]}}"#),
            format!(r#"{{"repository":"{repo}","updated_tags":{{"{tag}":"{hex}"}}}}"#),
            format!(r#"{{"action":"{action}","package":{{"name":"{tag}","namespace":"{repo}","ecosystem":"CONTAINER","package_version":{{"version":"{d}","updated_at":"{ts}","package_url":"{repo}","container_metadata":{{"tag":{{"name":"{tag}","digest":"{d}"}}}}}}}}}}"#),
        ];
        let header = |_: &str| None;
        for body in &bodies {
            for event in ["package", "registry_package", "push"] {
                for source in Source::ALL {
                    let stored = Stored { event: Some(event), header: &header, body: body.as_bytes() };
                    if let Ok(Event::ImagePush(pushes)) = parse(source, &stored) {
                        for p in pushes {
                            prop_assert!(!p.repository.is_empty());
                            prop_assert!(p.tag.as_deref().is_none_or(|t| image_tag(t).as_deref() == Some(t)), "{p:?}");
                            prop_assert!(p.digest.as_deref().is_none_or(|x| digest(x).as_deref() == Some(x)), "{p:?}");
                        }
                    }
                }
            }
        }
    }

    /// Alertmanager-shaped bodies: parsing never panics, and what passes the value checks
    /// has label names Prometheus allows, a lower-case hex fingerprint and RFC 3339 times.
    #[test]
    fn alert_shaped_bodies_never_panic_and_stay_well_formed(
        version in prop_oneof![Just("4".to_string()), ".{0,3}"],
        status in prop_oneof![Just("firing".to_string()), Just("resolved".to_string()), ".{0,8}"],
        name in ".{0,12}",
        value in ".{0,24}",
        ts in prop_oneof![Just("2026-12-04T17:00:00Z".to_string()), Just("0001-01-01T00:00:00Z".to_string()), ".{0,30}"],
        fp in "[0-9a-fA-Fx]{0,34}",
    ) {
        let name = serde_json::to_string(&name).unwrap_or_default();
        let value = serde_json::to_string(&value).unwrap_or_default();
        let body = format!(
            r#"{{"version":"{version}","status":"{status}","alerts":[{{"status":"{status}","labels":{{{name}:{value},"alertname":{value}}},"annotations":{{{name}:{value}}},"startsAt":"{ts}","endsAt":"{ts}","fingerprint":"{fp}","generatorURL":{value}}}]}}"#
        );
        let header = |_: &str| None;
        let stored = Stored { event: None, header: &header, body: body.as_bytes() };
        if let Ok(mut event) = parse(Source::Alertmanager, &stored)
            && super::values::check_event(&mut event).is_ok()
            && let Event::Alerts(alerts) = event
        {
            for a in alerts {
                prop_assert!(a.labels.keys().all(|k| crate::config::is_label_name(k)), "{a:?}");
                prop_assert!(a.fingerprint.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{a:?}");
                prop_assert!(super::rfc3339_ms(&a.starts_at).is_some(), "{a:?}");
                prop_assert!(!a.name().chars().any(char::is_control), "{a:?}");
            }
        }
    }
}
