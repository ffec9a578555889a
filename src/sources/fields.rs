//! Small readers the senders' files share: request headers (trimmed, non-empty), media types,
//! and payload fields that must be well-formed before they go anywhere (image tags, digests,
//! times).

use http::HeaderMap;

/// A request header's value, trimmed; `None` when absent, empty or not visible ASCII.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The `Content-Type` as sent (parameters and case kept; see [`essence`]).
pub(crate) fn content_type(headers: &HeaderMap) -> Option<String> {
    header(headers, "content-type").map(str::to_string)
}

/// A media type without its parameters, lower-cased: `Application/JSON; charset=utf-8` →
/// `application/json`.
pub(crate) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `sha256:` + 64 or `sha512:` + 128 lower-case hex digits: a digest ferry may hand to a
/// registry client. Anything else (GitHub examples carry 40-hex "digests") is not one.
pub(crate) fn digest(text: &str) -> Option<String> {
    let (algorithm, hex) = text.trim().split_once(':')?;
    let len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| format!("{algorithm}:{hex}"))
}

/// A tag as registries accept it (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`); `None` for anything
/// else, including a digest sent in a tag field (Harbor does that for pushes by digest).
pub(crate) fn image_tag(text: &str) -> Option<String> {
    let t = text.trim();
    let mut bytes = t.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    (first_ok && rest_ok && t.len() <= 128).then(|| t.to_string())
}

/// Unix seconds (an integer, or a float as some senders write them) as unix milliseconds.
pub(crate) fn epoch_secs_ms(value: &serde_json::Value) -> Option<i64> {
    if let Some(s) = value.as_i64() {
        return s.checked_mul(1000);
    }
    let f = value.as_f64()?;
    // Beyond ±2^53 ms a float is not a time anyone sent; the range check keeps the cast exact.
    let ms = (f * 1000.0).round();
    (ms.is_finite() && ms.abs() < 9_007_199_254_740_992.0).then_some(ms as i64)
}

/// Parses an RFC 3339 time (also `+hhmm` offsets, as Bitbucket Data Center writes them) into
/// unix milliseconds.
pub(crate) fn rfc3339_ms(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .or_else(|| {
            // 2019-06-17T19:37:57+1000 → 2019-06-17T19:37:57+10:00
            let cut = text.len().checked_sub(5)?;
            let (head, tail) = text.split_at_checked(cut)?;
            let offset =
                tail.starts_with(['+', '-']) && tail[1..].bytes().all(|b| b.is_ascii_digit());
            offset
                .then(|| format!("{head}{}:{}", &tail[..3], &tail[3..]))
                .and_then(|fixed| time::OffsetDateTime::parse(&fixed, &Rfc3339).ok())
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

pub(crate) const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("v1.2.3-rc_1").as_deref(), Some("v1.2.3-rc_1"));
        assert_eq!(image_tag(".hidden"), None);
        assert_eq!(image_tag("sha256:abc"), None);
        assert_eq!(image_tag(&"a".repeat(129)), None);
        assert_eq!(image_tag(""), None);
        let hex64 = "ab".repeat(32);
        assert_eq!(
            digest(&format!("sha256:{hex64}")),
            Some(format!("sha256:{hex64}"))
        );
        assert_eq!(
            digest("sha256:6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b"),
            None
        );
        assert_eq!(digest(&format!("sha256:{}", hex64.to_uppercase())), None);
        assert_eq!(digest(&format!("md5:{hex64}")), None);
        assert_eq!(epoch_secs_ms(&serde_json::json!(1)), Some(1000));
        assert_eq!(epoch_secs_ms(&serde_json::json!(1.25)), Some(1250));
        assert_eq!(epoch_secs_ms(&serde_json::json!(i64::MAX)), None);
        assert_eq!(epoch_secs_ms(&serde_json::json!(1e300)), None);
        assert_eq!(epoch_secs_ms(&serde_json::json!("1")), None);
    }
    #[test]
    fn times_with_compact_offsets() {
        assert_eq!(
            rfc3339_ms("2019-06-17T19:37:57+1000"),
            rfc3339_ms("2019-06-17T09:37:57Z")
        );
        assert_eq!(
            rfc3339_ms("2015-06-09T03:34:49+00:00"),
            Some(1_433_820_889_000)
        );
        assert_eq!(rfc3339_ms("yesterday"), None);
        assert_eq!(rfc3339_ms(""), None);
        // Found by the property test: a multi-byte character where the offset would be.
        assert_eq!(rfc3339_ms("Ѩ񺾮"), None);
    }
}
