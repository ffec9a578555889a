//! What every page's template shares: the layout (title, navigation, the asset URLs, the CSRF
//! token for its forms) and times shown relative to now with the absolute time beside them.

use crate::timefmt::fmt_ms;

/// The frame of every page (`templates/base.html`).
pub(crate) struct Layout {
    pub(crate) title: String,
    /// Which navigation entry is the current page (`""`: none).
    pub(crate) active: &'static str,
    /// The session's CSRF token; `None` on pages shown logged out (no logout button).
    pub(crate) csrf: Option<String>,
    pub(crate) css: &'static str,
    pub(crate) js: &'static str,
}

impl Layout {
    pub(crate) fn new(title: String, active: &'static str, csrf: Option<String>) -> Layout {
        Layout {
            title,
            active,
            csrf,
            css: super::assets::css_url(),
            js: super::assets::js_url(),
        }
    }

    /// The CSRF token for a form (empty when logged out: such a form is refused).
    pub(crate) fn token(&self) -> &str {
        self.csrf.as_deref().unwrap_or("")
    }

    pub(crate) fn current(&self, entry: &str) -> bool {
        self.active == entry
    }
}

/// A moment as a page shows it: `<time datetime=ISO title=ABSOLUTE>RELATIVE</time>`.
pub(crate) struct When {
    pub(crate) iso: String,
    pub(crate) absolute: String,
    pub(crate) relative: String,
}

impl When {
    pub(crate) fn at(ms: i64) -> When {
        When::relative_to(ms, crate::store::now_ms())
    }

    pub(crate) fn opt(ms: Option<i64>) -> Option<When> {
        ms.map(When::at)
    }

    /// From an RFC 3339 time (as `crate::inspect` gives them).
    pub(crate) fn rfc3339(text: &str) -> Option<When> {
        let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()?;
        Some(When::at((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    fn relative_to(ms: i64, now: i64) -> When {
        let iso = fmt_ms(ms);
        let absolute = iso.replacen('T', " ", 1).replace('Z', " UTC");
        When {
            iso,
            absolute,
            relative: ago(now - ms),
        }
    }
}

/// "just now", "42 s ago", "5 min ago", "3 h ago", "2 days ago" (and "in …" ahead).
fn ago(diff_ms: i64) -> String {
    let secs = diff_ms.abs() / 1000;
    let text = match secs {
        0..=4 => return "just now".into(),
        5..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h", secs / 3600),
        _ if secs < 2 * 86_400 => "1 day".into(),
        _ => format!("{} days", secs / 86_400),
    };
    if diff_ms < 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A duration between two moments, for steps and runs: "850 ms", "12.3 s", "4 min 05 s".
pub(crate) fn duration(ms: i64) -> String {
    match ms {
        ..1000 => format!("{} ms", ms.max(0)),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A version for a narrow column: a 40- or 64-hex commit cut to 12 characters (the whole one
/// is in the cell's title), tags and digests as they are.
pub(crate) fn short_version(v: &str) -> String {
    let hex = v.len() >= 40 && v.bytes().all(|b| b.is_ascii_hexdigit());
    if hex {
        v[..12].to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_relative_with_the_absolute_beside() {
        let w = When::relative_to(1_000_000, 1_000_000 + 125_000);
        assert_eq!(w.relative, "2 min ago");
        assert_eq!(w.iso, "1970-01-01T00:16:40Z");
        assert_eq!(w.absolute, "1970-01-01 00:16:40 UTC");
        assert_eq!(When::rfc3339("1970-01-01T00:16:40Z").unwrap().iso, w.iso);
        assert!(When::rfc3339("yesterday").is_none());
        assert_eq!(ago(1000), "just now");
        assert_eq!(ago(-7_200_000), "in 2 h");
        assert_eq!(ago(3 * 86_400_000), "3 days ago");
    }

    #[test]
    fn durations_and_versions_read_short() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
        assert_eq!(short_version(&"a".repeat(40)), "aaaaaaaaaaaa");
        assert_eq!(short_version("v1.2@sha256:ab"), "v1.2@sha256:ab");
    }
}
