//! Shared by the `parse_*` targets: one sender's parser, fed any body under every event name
//! and content type that sender could send (the selector byte picks them).

use ferry::fuzzing::{Source, Stored, parse};

const EVENTS: &[&str] = &[
    "push",
    "ping",
    "package",
    "registry_package",
    "Push Hook",
    "Tag Push Hook",
    "System Hook",
    "repo:push",
    "repo:refs_changed",
    "issues",
    "deployment",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/x-www-form-urlencoded",
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/cloudevents+json",
];

pub fn parse_as(source: Source, selector: u8, body: &[u8]) {
    let event = EVENTS[usize::from(selector) % EVENTS.len()];
    let ct = CONTENT_TYPES[usize::from(selector >> 4) % CONTENT_TYPES.len()];
    let header = |name: &str| match name {
        "content-type" => Some(ct.to_string()),
        // Standard Webhooks read their timestamp from a header.
        "webhook-timestamp" => std::str::from_utf8(body).ok().map(str::to_string),
        _ => None,
    };
    let stored = Stored {
        event: Some(event),
        header: &header,
        body,
    };
    let _ = parse(source, &stored);
}
