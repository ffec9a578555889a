//! How ferry shows a time: unix milliseconds as RFC 3339 (UTC). A bottom-layer helper, so
//! `sources`, `plan` and `api` format times alike without importing each other.

/// Formats unix milliseconds as RFC 3339 (UTC).
pub(crate) fn fmt_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// A time for JSON: RFC 3339, or `null` when there is none.
pub(crate) fn json_time(ms: Option<i64>) -> serde_json::Value {
    ms.map_or(serde_json::Value::Null, |m| {
        serde_json::Value::String(fmt_ms(m))
    })
}
