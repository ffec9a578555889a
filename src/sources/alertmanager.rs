//! Prometheus Alertmanager's webhook receiver (`webhook_configs`).
//!
//! Alertmanager identifies itself by `User-Agent: Alertmanager/<version>` (a hook may also
//! name it with `?source=alertmanager`) and signs nothing: its `http_config` sends
//! `Authorization: Bearer …` (`authorization.credentials`) or basic auth, which the
//! sender-independent `bearer`/`basic` schemes check. The body (`version: "4"`) is a group
//! notification: `status`, `groupKey`, … and `alerts[]{status, labels, annotations,
//! startsAt, endsAt, generatorURL, fingerprint}`. Each alert becomes one [`Alert`]; what the
//! app's `[[apps.X.alerts]]` rules do with it is decided by the planner (`plan::alerts`).
//!
//! Alertmanager re-sends a firing group every `repeat_interval`: the delivery is deduplicated
//! by a hash of its body (`dedupe.rs`), and each alert by its fingerprint and `startsAt`.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde::Deserialize;

use super::setup::Setup;
use super::{Alert, AlertStatus, Event, ParseError, header, rfc3339_ms};

/// The `User-Agent` prefix Alertmanager sends (`notify/util.go`).
const USER_AGENT_PREFIX: &str = "Alertmanager/";

/// The only message version ferry reads.
const VERSION: &str = "4";

/// Whether the request comes from Alertmanager (its `User-Agent`).
pub(crate) fn detect(headers: &HeaderMap) -> bool {
    header(headers, "user-agent").is_some_and(|ua| ua.starts_with(USER_AGENT_PREFIX))
}

#[derive(Deserialize)]
struct Message {
    version: Option<String>,
    status: Option<String>,
    alerts: Option<Vec<RawAlert>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAlert {
    status: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
    fingerprint: Option<String>,
}

/// Reads a notification: one [`Alert`] per entry of `alerts`.
pub(crate) fn parse(body: &[u8]) -> Result<Event, ParseError> {
    let m: Message = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    match m.version.as_deref() {
        Some(VERSION) => {}
        Some(other) => {
            let shown: String = other.chars().take(20).collect();
            return Err(ParseError::Unsupported(format!(
                "Alertmanager message version {shown:?}: ferry reads version \"4\""
            )));
        }
        None => return Err(ParseError::Field("version")),
    }
    let group_status = m.status.as_deref().and_then(AlertStatus::from_name);
    let raw = m.alerts.ok_or(ParseError::Field("alerts"))?;
    let alerts = raw
        .into_iter()
        .map(|a| alert(a, group_status))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Event::Alerts(alerts))
}

fn alert(a: RawAlert, group_status: Option<AlertStatus>) -> Result<Alert, ParseError> {
    let status = match a.status.as_deref() {
        Some(s) => AlertStatus::from_name(s).ok_or(ParseError::Field("alerts[].status"))?,
        None => group_status.ok_or(ParseError::Field("alerts[].status"))?,
    };
    let starts_at = a.starts_at.ok_or(ParseError::Field("alerts[].startsAt"))?;
    // Alertmanager writes Go's zero time for "not ended" (and older versions for firing ones).
    let ends_at = a.ends_at.filter(|e| rfc3339_ms(e).is_none_or(|ms| ms > 0));
    let fingerprint = match a.fingerprint {
        Some(f) => f,
        None => fingerprint(&a.labels),
    };
    Ok(Alert {
        status,
        labels: a.labels,
        annotations: a.annotations,
        starts_at,
        ends_at,
        fingerprint,
        generator_url: a.generator_url.filter(|u| !u.is_empty()),
    })
}

/// Alertmanager's own fingerprint of a label set (`model.LabelSet.Fingerprint`: FNV-1a 64
/// over the sorted names and values, each followed by 0xff), for a message that carries none
/// (versions before 0.16 did not send it).
pub(crate) fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(value.as_bytes());
    }
    format!("{h:016x}")
}

/// The `ferry hooks` line of an app with alert rules: an Alertmanager receiver
/// (`alertmanager.yml`) with the app's credential (`verify.bearer`, else `verify.basic`).
pub(crate) fn setup(s: &Setup<'_>) -> Option<String> {
    if s.app.alerts.is_empty() {
        return None;
    }
    let v = s.verify();
    let auth = if !v.bearer.is_empty() {
        format!(
            "\n              http_config:\n                authorization:\n                  credentials: {}",
            s.secret(&v.bearer, "bearer")
        )
    } else if !v.basic.is_empty() {
        let pair = s.secret(&v.basic, "basic");
        let (user, password) = match pair.split_once(':') {
            Some((u, p)) if s.show_secrets => (u.to_string(), p.to_string()),
            _ => (
                format!("<the user in apps.{}.verify.basic>", s.app.name),
                format!("<the password in apps.{}.verify.basic>", s.app.name),
            ),
        };
        format!(
            "\n              http_config:\n                basic_auth:\n                  username: {user}\n                  password: {password}"
        )
    } else {
        format!(
            " (add an http_config credential, and set apps.{}.verify.bearer to it: without one, anyone holding the hook URL can send alerts)",
            s.app.name
        )
    };
    Some(format!(
        "Alertmanager (alertmanager.yml):\n      receivers:\n        - name: ferry\n          webhook_configs:\n            - url: {url}\n              send_resolved: true{auth}",
        url = s.url
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_headers as headers;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/alertmanager/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn detected_by_its_user_agent() {
        assert!(detect(&headers(&[("User-Agent", "Alertmanager/0.25.0")])));
        assert!(!detect(&headers(&[("User-Agent", "curl/8.0")])));
        assert!(!detect(&headers(&[])));
    }

    #[test]
    fn a_notification_is_one_alert_per_entry() {
        let Event::Alerts(alerts) = parse(&fixture("firing.json")).unwrap() else {
            panic!("not alerts");
        };
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        // No per-alert status or fingerprint in this (older) payload: the group's status, and
        // Alertmanager's fingerprint of the labels.
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.labels["alertname"], "high_memory_load");
        assert_eq!(a.annotations["summary"], "Server High Memory usage");
        assert_eq!(a.starts_at, "2018-03-07T06:33:21.873077559-05:00");
        assert_eq!(a.ends_at, None);
        assert_eq!(a.fingerprint.len(), 16);

        let Event::Alerts(alerts) = parse(&fixture("resolved-0.25.json")).unwrap() else {
            panic!("not alerts");
        };
        let a = &alerts[0];
        assert_eq!(a.status, AlertStatus::Resolved);
        assert_eq!(a.fingerprint, "c762dda1bc97bb22");
        assert_eq!(a.starts_at, "2026-12-04T17:39:06Z");
        assert_eq!(a.ends_at.as_deref(), Some("2026-12-04T17:39:12Z"));
        assert_eq!(
            a.generator_url.as_deref(),
            Some("http://prometheus:9090/graph")
        );
        // A real firing message: Go's zero time for endsAt reads as not ended.
        let Event::Alerts(alerts) = parse(&fixture("firing-0.25.json")).unwrap() else {
            panic!("not alerts");
        };
        assert_eq!(alerts[0].status, AlertStatus::Firing);
        assert_eq!(alerts[0].ends_at, None);
        assert_eq!(alerts[0].labels["instance"], "web-1:9100");
    }

    #[test]
    fn fingerprints_are_alertmanagers() {
        // The fingerprint Alertmanager 0.25 sent for these labels (`firing-0.25.json`).
        let labels: BTreeMap<String, String> = [
            ("alertname", "InstanceDown"),
            ("instance", "web-1:9100"),
            ("severity", "critical"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(fingerprint(&labels), "c762dda1bc97bb22");
        // The empty set hashes to FNV-1a's offset basis.
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        let mut l = BTreeMap::new();
        l.insert("alertname".to_string(), "a".to_string());
        let one = fingerprint(&l);
        l.insert("job".to_string(), "b".to_string());
        assert_ne!(one, fingerprint(&l));
    }

    #[test]
    fn other_versions_and_shapes_are_refused_with_a_reason() {
        let e = parse(br#"{"version":"5","status":"firing","alerts":[]}"#).unwrap_err();
        assert!(e.to_string().contains("version \"5\""), "{e}");
        assert_eq!(
            parse(br#"{"status":"firing","alerts":[]}"#).unwrap_err(),
            ParseError::Field("version")
        );
        assert_eq!(
            parse(br#"{"version":"4","alerts":[{"labels":{}}]}"#).unwrap_err(),
            ParseError::Field("alerts[].status")
        );
        assert_eq!(
            parse(br#"{"version":"4","status":"firing","alerts":[{"labels":{}}]}"#).unwrap_err(),
            ParseError::Field("alerts[].startsAt")
        );
        assert!(matches!(
            parse(br#"{"version":"4","status":"firing","alerts":[{"labels":{"a":1}}]}"#),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn setup_names_the_credential_alertmanager_sends() {
        let app = |verify: &str| {
            let text = format!(
                "[apps.ops]\ntoken = \"tok-0123456789abcdef\"\n[apps.ops.verify]\n{verify}\n[apps.ops.services.web]\ncommand = [\"x\"]\n[[apps.ops.alerts]]\nname = \"r\"\nredeploy = \"web\"\n"
            );
            crate::config::parse(&text, std::path::Path::new("f.toml"), &|_| None)
                .unwrap()
                .apps
                .remove("ops")
                .unwrap()
        };
        let setup = |app: &crate::config::App, show_secrets: bool| {
            setup(&Setup {
                app,
                url: "https://d.example/hooks/ops/T",
                show_secrets,
            })
            .unwrap()
        };
        let bearer = app("bearer = \"am-secret\"");
        let line = setup(&bearer, false);
        assert!(
            line.contains("url: https://d.example/hooks/ops/T"),
            "{line}"
        );
        assert!(
            line.contains("credentials: <the value of apps.ops.verify.bearer>"),
            "{line}"
        );
        assert!(setup(&bearer, true).contains("credentials: am-secret"));
        let basic = app("basic = \"am:pw\"");
        assert!(setup(&basic, false).contains("username: <the user in apps.ops.verify.basic>"));
        let shown = setup(&basic, true);
        assert!(
            shown.contains("username: am") && shown.contains("password: pw"),
            "{shown}"
        );
        let none = app("");
        assert!(setup(&none, false).contains("set apps.ops.verify.bearer"));
        let mut quiet = none.clone();
        quiet.alerts.clear();
        assert!(
            super::setup(&Setup {
                app: &quiet,
                url: "u",
                show_secrets: false
            })
            .is_none()
        );
    }
}
