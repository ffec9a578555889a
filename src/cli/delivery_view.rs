//! `ferry deliveries ID`: one delivery printed like the dashboard's inspector, from the JSON
//! of `GET /api/v1/deliveries/ID` (`crate::inspect::Inspection` plus the route's older
//! fields): a header block (id, app, sender, event, received, verified by, status), the
//! outcomes (each service's deployment or why there is none), the headers as stored, then
//! the body — pretty, or raw with `--raw`.

use std::fmt::Write;

use serde_json::Value;

/// The whole text of one delivery.
pub(super) fn render(v: &Value, raw: bool) -> String {
    let mut out = String::new();
    header(&mut out, v);
    outcomes(&mut out, v);
    headers(&mut out, &v["request"]["headers"]);
    body(&mut out, &v["request"]["body"], raw);
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `label  value` lines, the labels padded to one width; `None` values are left out.
fn fields(out: &mut String, rows: &[(&str, Option<String>)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        if let Some(v) = v {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
    }
}

fn header(out: &mut String, v: &Value) {
    let req = &v["request"];
    let some = |x: &Value| (!x.is_null()).then(|| text(x));
    let sender = match v["source_delivery_id"].as_str() {
        Some(id) => format!("{} (delivery id {id})", text(&v["source"])),
        None => text(&v["source"]),
    };
    let duplicates = v["duplicates"]["count"]
        .as_i64()
        .filter(|n| *n > 0)
        .map(|n| format!("{n}, the last at {}", text(&v["duplicates"]["last_at"])));
    fields(
        out,
        &[
            ("delivery", Some(text(&v["id"]))),
            ("app", Some(text(&v["app"]))),
            ("sender", Some(sender)),
            ("event", Some(text(&v["event"]))),
            ("received", Some(text(&v["received_at"]))),
            (
                "request",
                Some(format!("{} {}", text(&req["method"]), text(&req["path"]))),
            ),
            ("made by", some(&req["made_by"])),
            ("verified", Some(text(&v["verification"]["summary"]))),
            ("status", Some(text(&v["status"]))),
            (
                "answered",
                req["refused_with"]
                    .as_i64()
                    .map(|c| format!("HTTP {c} (refused)")),
            ),
            ("error", some(&v["error"])),
            ("note", some(&v["note"])),
            ("replay of", some(&v["replay_of"])),
            ("duplicates", duplicates),
            ("parsed", Some(parsed(&v["parsed"]))),
        ],
    );
}

/// The parsed event in one line: its kind and what it names.
fn parsed(p: &Value) -> String {
    let e = &p["event"];
    if e.is_null() {
        return text(&p["error"]);
    }
    let mut parts = vec![text(&e["kind"])];
    let mut add = |x: &Value| {
        if !x.is_null() && x != "" {
            parts.push(text(x));
        }
    };
    match e["kind"].as_str() {
        Some("push") => {
            for c in e["changes"].as_array().into_iter().flatten() {
                add(&c["repository"]);
                add(&c["ref"]);
                add(&c["commit"]);
            }
        }
        Some("image_push") => {
            for i in e["images"].as_array().into_iter().flatten() {
                add(&i["repository"]);
                add(&i["tag"]);
                add(&i["digest"]);
            }
        }
        Some("deployment") => {
            add(&e["repository"]);
            add(&e["ref"]);
            add(&e["commit"]);
            add(&e["environment"]);
        }
        Some("rollback" | "reconcile") => add(&e["service"]),
        Some("alert") => {
            for a in e["alerts"].as_array().into_iter().flatten() {
                add(&a["alertname"]);
                add(&a["status"]);
            }
        }
        Some("ignored") => add(&e["event"]),
        _ => {}
    }
    if e["unverified"] == true {
        parts.push("(unverified: no version read)".into());
    }
    parts.join(" ")
}

fn outcomes(out: &mut String, v: &Value) {
    let o = &v["outcomes"];
    out.push_str("\nOutcomes\n");
    if let Some(why) = o["why"].as_str() {
        let _ = writeln!(out, "  nothing deployed: {why}");
    }
    let services = o["services"].as_array().cloned().unwrap_or_default();
    let deployments = o["deployments"].as_array().cloned().unwrap_or_default();
    let mut rows: Vec<[String; 5]> = services
        .iter()
        .filter(|s| !s["deployment"].is_null() || o["why"].is_null())
        .map(|s| {
            let version = deployments
                .iter()
                .find(|d| d["id"] == s["deployment"])
                .map_or("-".into(), |d| text(&d["version"]));
            [
                text(&s["service"]),
                text(&s["deployment"]),
                text(&s["state"]),
                version,
                text(&s["reason"]),
            ]
        })
        .collect();
    if !rows.is_empty() {
        rows.insert(
            0,
            ["SERVICE", "DEPLOYMENT", "STATE", "VERSION", "REASON"].map(String::from),
        );
        table(out, rows);
    }
    alerts(out, o);
}

/// An Alertmanager delivery's alerts, each with its rule, outcome, deployment and reason.
fn alerts(out: &mut String, o: &Value) {
    let list = o["alerts"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return;
    }
    out.push_str("\nAlerts\n");
    let mut rows: Vec<[String; 7]> = vec![
        [
            "ALERT",
            "STATUS",
            "FINGERPRINT",
            "RULE",
            "OUTCOME",
            "DEPLOYMENT",
            "REASON",
        ]
        .map(String::from),
    ];
    rows.extend(list.iter().map(|a| {
        [
            text(&a["alertname"]),
            text(&a["status"]),
            text(&a["fingerprint"]),
            text(&a["rule"]),
            text(&a["outcome"]),
            text(&a["deployment_id"]),
            text(&a["reason"]),
        ]
    }));
    table(out, rows);
}

/// Rows as aligned columns (the first row is the header).
fn table<const N: usize>(out: &mut String, rows: Vec<[String; N]>) {
    let mut widths = [0usize; N];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
}

fn headers(out: &mut String, h: &Value) {
    out.push_str("\nHeaders\n");
    match h.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                let _ = writeln!(out, "  {k}: {}", text(v));
            }
        }
        _ => out.push_str("  (none stored)\n"),
    }
}

fn body(out: &mut String, b: &Value, raw: bool) {
    let mut about = vec![text(&b["format"]), format!("{} bytes", text(&b["size"]))];
    if b["truncated"] == true {
        about.push("only the start was stored".into());
    }
    if b["binary"] == true {
        about.push("not UTF-8: shown lossy".into());
    }
    let _ = writeln!(out, "\nBody ({})", about.join(", "));
    let shown = match (raw, b["pretty"].as_str()) {
        (false, Some(pretty)) => pretty.to_string(),
        _ => {
            if !raw && let Some(e) = b["pretty_error"].as_str() {
                let _ = writeln!(out, "({e}; shown raw)");
            }
            text(&b["raw"])
        }
    };
    out.push_str(&shown);
    if !shown.ends_with('\n') {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "id": 7, "app": "shop", "source": "github", "source_delivery_id": "abc",
            "event": "push", "received_at": "2026-01-01T00:00:00Z", "status": "planned",
            "error": null, "note": null, "replay_of": null,
            "duplicates": {"count": 2, "last_at": "2026-01-01T00:01:00Z"},
            "request": {"method": "POST", "path": "/hooks/shop/••••", "made_by": "POST to the hook URL",
                "headers": {"content-type": "application/json"},
                "body": {"raw": "{\"a\":1}", "size": 7, "truncated": false, "binary": false,
                         "format": "json", "pretty": "{\n  \"a\": 1\n}", "pretty_error": null}},
            "verification": {"summary": "verified by github"},
            "parsed": {"event": {"kind": "push", "changes": [{"repository": "o/r", "ref": "refs/heads/main", "commit": "c0ffee"}]}},
            "outcomes": {"why": null,
                "deployments": [{"id": 3, "version": "c0ffee"}],
                "services": [{"service": "web", "deployment": 3, "state": "succeeded", "reason": null},
                             {"service": "worker", "deployment": null, "state": null, "reason": "not selected: ?services=web"}]},
        })
    }

    #[test]
    fn header_outcomes_headers_then_pretty_body() {
        let out = render(&sample(), false);
        assert!(out.starts_with("delivery    7\n"), "{out}");
        assert!(
            out.contains("sender      github (delivery id abc)\n"),
            "{out}"
        );
        assert!(out.contains("verified    verified by github\n"), "{out}");
        assert!(
            out.contains("duplicates  2, the last at 2026-01-01T00:01:00Z\n"),
            "{out}"
        );
        assert!(
            out.contains("parsed      push o/r refs/heads/main c0ffee\n"),
            "{out}"
        );
        assert!(
            out.contains("  web      3           succeeded  c0ffee"),
            "{out}"
        );
        assert!(out.contains("not selected: ?services=web"), "{out}");
        assert!(
            out.contains("\nHeaders\n  content-type: application/json\n"),
            "{out}"
        );
        assert!(
            out.ends_with("\nBody (json, 7 bytes)\n{\n  \"a\": 1\n}\n"),
            "{out}"
        );
        let order: Vec<usize> = ["delivery", "\nOutcomes", "\nHeaders", "\nBody"]
            .iter()
            .map(|s| out.find(s).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    }

    #[test]
    fn raw_shows_the_body_as_stored_and_nothing_deployed_says_why() {
        let mut v = sample();
        v["outcomes"]["why"] = json!("rejected: X-Hub-Signature-256 does not match the body");
        v["outcomes"]["services"][0]["deployment"] = Value::Null;
        let out = render(&v, true);
        assert!(out.ends_with("{\"a\":1}\n"), "{out}");
        assert!(
            out.contains("  nothing deployed: rejected: X-Hub-Signature-256"),
            "{out}"
        );
        assert!(!out.contains("SERVICE"), "{out}");
    }
}
