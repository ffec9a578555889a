//! The request path's only look at a body: that a known sender's body has a content type it
//! uses and is well-formed JSON (or a form holding it), so a truncated body is refused now
//! rather than silently ignored by the planner later. What the payload means is `parse`'s.

use std::borrow::Cow;

use http::HeaderMap;

use super::{Source, content_type, essence};

/// Why a known sender's body cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Answered 415.
    #[error("{sender} sends {expected}, not {got:?}")]
    ContentType {
        sender: &'static str,
        expected: String,
        got: String,
    },
    /// Answered 400.
    #[error("cannot read the {sender} payload: {why}")]
    Unreadable { sender: &'static str, why: String },
}

/// Checks, on the request path, that a known sender's body is one it would send: the content
/// type it uses and well-formed JSON (the form's `payload` field for form deliveries). Only
/// well-formedness is checked here; what the payload means is read later by the planner.
pub fn check_body(source: Source, headers: &HeaderMap, body: &[u8]) -> Result<(), BodyError> {
    let Some(allowed) = source.content_types() else {
        return Ok(());
    };
    let sender = source.as_str();
    let ct = content_type(headers).unwrap_or_default();
    let essence = essence(&ct);
    // A missing content type is tolerated (curl tests of a hook); a wrong one is not.
    if !essence.is_empty() && !allowed.contains(&essence.as_str()) {
        return Err(BodyError::ContentType {
            sender,
            expected: allowed.join(" or "),
            got: ct,
        });
    }
    let json =
        json_document(Some(&essence), body).map_err(|why| BodyError::Unreadable { sender, why })?;
    serde_json::from_slice::<serde::de::IgnoredAny>(&json)
        .map(|_| ())
        .map_err(|e| BodyError::Unreadable {
            sender,
            why: format!("body is not valid JSON ({e})"),
        })
}

/// The JSON document of a body: the body itself (borrowed: no copy of a push on the request
/// path), or the decoded `payload` field of a form.
pub(crate) fn json_document<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
) -> Result<Cow<'a, [u8]>, String> {
    let is_form = content_type
        .map(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    if !is_form {
        return Ok(Cow::Borrowed(body));
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| Cow::Owned(v.into_owned().into_bytes()))
        .ok_or_else(|| "form body has no `payload` field".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_headers as headers;

    #[test]
    fn body_checks() {
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert_eq!(check_body(Source::Github, &json, b"{}"), Ok(()));
        assert!(matches!(
            check_body(Source::Github, &json, b"{\"truncated\": "),
            Err(BodyError::Unreadable { .. })
        ));
        let xml = headers(&[("content-type", "application/xml")]);
        assert!(matches!(
            check_body(Source::Gitlab, &xml, b"<a/>"),
            Err(BodyError::ContentType { .. })
        ));
        assert_eq!(check_body(Source::Generic, &xml, b"<a/>"), Ok(()));
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(
            check_body(Source::Github, &form, b"payload=%7B%22yo%22%3Atrue%7D"),
            Ok(())
        );
        assert!(matches!(
            check_body(Source::Github, &form, b"other=1"),
            Err(BodyError::Unreadable { .. })
        ));
        assert!(matches!(
            check_body(Source::Bitbucket, &form, b"payload=%7B%7D"),
            Err(BodyError::ContentType { .. })
        ));
        let events = headers(&[(
            "content-type",
            "application/vnd.docker.distribution.events.v2+json",
        )]);
        assert_eq!(
            check_body(Source::Registry, &events, br#"{"events":[]}"#),
            Ok(())
        );
        assert_eq!(check_body(Source::Registry, &json, b"{}"), Ok(()));
        assert!(matches!(
            check_body(Source::Registry, &events, b"{\"events\":["),
            Err(BodyError::Unreadable {
                sender: "registry",
                ..
            })
        ));
        let cloudevents = headers(&[("content-type", "application/cloudevents+json")]);
        assert_eq!(check_body(Source::Harbor, &cloudevents, b"{}"), Ok(()));
        assert_eq!(check_body(Source::Harbor, &json, b"{}"), Ok(()));
        for source in [Source::Dockerhub, Source::Quay] {
            assert_eq!(check_body(source, &json, b"{}"), Ok(()));
            assert!(matches!(
                check_body(source, &cloudevents, b"{}"),
                Err(BodyError::ContentType { .. })
            ));
            assert!(matches!(
                check_body(source, &json, b"{"),
                Err(BodyError::Unreadable { .. })
            ));
        }
        assert!(matches!(
            check_body(Source::Harbor, &xml, b"<a/>"),
            Err(BodyError::ContentType { .. })
        ));
    }
}
