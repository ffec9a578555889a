//! Fuzzes every signature header parser and verifier: arbitrary values for the headers each
//! sender signs with, against an app that configures every scheme.
#![no_main]

use std::time::Duration;

use ferry::fuzzing::{Encoding, HmacAlgorithm, HmacScheme, Verify};
use ferry::fuzzing::Secret;
use ferry::fuzzing::{check_body, dedupe_key, delivery_id, detect, verify};
use libfuzzer_sys::fuzz_target;

const HEADERS: &[&str] = &[
    "x-github-event", "x-hub-signature-256", "x-hub-signature", "x-gitlab-event",
    "x-gitlab-token", "x-event-key", "x-gitea-event", "x-gitea-signature",
    "x-forgejo-signature", "webhook-id", "webhook-timestamp", "webhook-signature",
    "x-signature", "authorization", "content-type",
];

fuzz_target!(|input: (Vec<(u8, String)>, &[u8], i64)| {
    let (values, body, now) = input;
    let mut h = http::HeaderMap::new();
    for (i, v) in values {
        if let Ok(value) = http::HeaderValue::from_str(&v) {
            h.insert(HEADERS[usize::from(i) % HEADERS.len()], value);
        }
    }
    let s = |v: &str| vec![Secret::new(v)];
    let schemes = Verify {
        github: s("gh"),
        gitlab: vec![Secret::new("gl"), Secret::new("whsec_AAECAwQ=")],
        bitbucket: s("bb"),
        gitea: s("gt"),
        standard: s("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        standard_tolerance: Duration::from_secs(300),
        hmac: Some(HmacScheme {
            header: "x-signature".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: Encoding::Base64,
            prefix: "sha256=".into(),
            secrets: s("h"),
        }),
        bearer: s("b"),
        basic: s("u:p"),
        require: true,
        allow_unsigned: true,
        // Transport and edge settings are not checked by `verify`.
        ..Verify::default()
    };
    let source = detect(&h);
    let _ = delivery_id(source, &h);
    if let Ok(verdict) = verify(source, &schemes, &h, body, now) {
        let _ = dedupe_key(source, verdict, &h, body);
    }
    let _ = check_body(source, &h, body);
});
