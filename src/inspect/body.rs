//! A stored body as the inspector shows it: raw (UTF-8, lossy), and pretty — JSON
//! pretty-printed, a form decoded into its fields (GitHub's and Gitea's `payload=` JSON
//! pretty-printed too), XML indented (quick-xml) — with the format it was read as. Display
//! only: nothing here decides what a delivery means (`sources::parse` does).

use serde::Serialize;

/// A body for display.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct BodyView {
    /// The stored bytes as text (invalid UTF-8 replaced by U+FFFD).
    pub(crate) raw: String,
    /// The size received, in bytes.
    pub(crate) size: i64,
    /// Only the start was stored (refused deliveries keep 4 KiB): `raw` is that start.
    pub(crate) truncated: bool,
    /// The bytes are not UTF-8: `raw` is lossy.
    pub(crate) binary: bool,
    /// What it was read as: `json`, `form`, `xml`, `text`, `binary` or `empty`; `unreadable`
    /// when the stored body cannot be decoded (`pretty_error` says why).
    pub(crate) format: &'static str,
    /// The `Content-Type` it was stored with, if any.
    pub(crate) content_type: Option<String>,
    /// Pretty-printed (JSON, XML), or the form's fields one per line; `None` when the body is
    /// not well-formed in its format (then `pretty_error` says why) or has no pretty form.
    pub(crate) pretty: Option<String>,
    pub(crate) pretty_error: Option<String>,
    /// A form's fields, in order, decoded.
    pub(crate) form: Option<Vec<FormField>>,
}

/// One field of a form body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct FormField {
    pub(crate) name: String,
    pub(crate) value: String,
    /// The value pretty-printed, when it is JSON (GitHub's `payload`).
    pub(crate) json: Option<String>,
}

impl BodyView {
    /// Marks the view of a body the store could not decode (`error`, if any).
    pub(crate) fn unreadable(mut self, error: Option<&str>) -> BodyView {
        if let Some(e) = error {
            self.format = "unreadable";
            self.pretty_error = Some(format!("the stored body cannot be read: {e}"));
        }
        self
    }
}

/// Reads a stored body. `size` is the size received (`None`: all of it was stored).
pub(crate) fn view(body: &[u8], size: Option<i64>, content_type: Option<&str>) -> BodyView {
    let text = std::str::from_utf8(body).ok();
    let essence = content_type.map(essence).unwrap_or_default();
    let mut v = BodyView {
        raw: String::from_utf8_lossy(body).into_owned(),
        size: size.unwrap_or(body.len() as i64),
        truncated: size.is_some(),
        binary: text.is_none(),
        format: "text",
        content_type: content_type.map(str::to_string),
        pretty: None,
        pretty_error: None,
        form: None,
    };
    let Some(text) = text else {
        v.format = "binary";
        return v;
    };
    if text.trim().is_empty() {
        v.format = if body.is_empty() { "empty" } else { "text" };
        return v;
    }
    let result = match detect(&essence, text) {
        Format::Json => {
            v.format = "json";
            pretty_json(text)
        }
        Format::Form => {
            v.format = "form";
            let fields = form(text);
            let shown = show_form(&fields);
            v.form = Some(fields);
            Ok(shown)
        }
        Format::Xml => {
            v.format = "xml";
            pretty_xml(text)
        }
        Format::Text => return v,
    };
    match result {
        Ok(p) => v.pretty = Some(p),
        Err(e) => v.pretty_error = Some(e),
    }
    v
}

enum Format {
    Json,
    Form,
    Xml,
    Text,
}

/// The format by content type first (`application/json`, `…+json`, forms, `…/xml`,
/// `…+xml`); without one that names a format, by the first character (`{`/`[`, `<`).
fn detect(essence: &str, text: &str) -> Format {
    if essence == "application/json" || essence.ends_with("+json") {
        return Format::Json;
    }
    if essence == "application/x-www-form-urlencoded" {
        return Format::Form;
    }
    if essence.ends_with("/xml") || essence.ends_with("+xml") {
        return Format::Xml;
    }
    match text.trim_start().chars().next() {
        Some('{' | '[') if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
            Format::Json
        }
        Some('<') if pretty_xml(text).is_ok() => Format::Xml,
        _ => Format::Text,
    }
}

fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn pretty_json(text: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not well-formed JSON: {e}"))?;
    serde_json::to_string_pretty(&value).map_err(|e| e.to_string())
}

fn form(text: &str) -> Vec<FormField> {
    form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| {
            let trimmed = v.trim_start();
            let json = (trimmed.starts_with('{') || trimmed.starts_with('['))
                .then(|| pretty_json(&v).ok())
                .flatten();
            FormField {
                name: k.into_owned(),
                value: v.into_owned(),
                json,
            }
        })
        .collect()
}

/// A form's fields one per line: `name = value`, a JSON value pretty-printed below its name.
fn show_form(fields: &[FormField]) -> String {
    let mut out = String::new();
    for f in fields {
        match &f.json {
            Some(json) => out.push_str(&format!("{} =\n{json}\n", f.name)),
            None => out.push_str(&format!("{} = {}\n", f.name, f.value)),
        }
    }
    out
}

/// XML indented by two spaces. quick-xml neither resolves external entities nor expands
/// entity definitions, so a hostile body costs one pass over it; an element left open at the
/// end, or a mismatched end tag, is an error.
fn pretty_xml(text: &str) -> Result<String, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut writer = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    let mut depth: usize = 0;
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        match &event {
            Event::Eof => break,
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        writer.write_event(event).map_err(|e| e.to_string())?;
    }
    if depth > 0 {
        return Err(format!(
            "not well-formed XML: {depth} element(s) not closed at the end"
        ));
    }
    String::from_utf8(writer.into_inner()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_printed() {
        let v = view(
            br#"{"ref":"refs/heads/main","n":[1,2]}"#,
            None,
            Some("application/json"),
        );
        assert_eq!(v.format, "json");
        let pretty = v.pretty.unwrap();
        assert!(
            pretty.contains("\n  \"ref\": \"refs/heads/main\""),
            "{pretty}"
        );
        assert!(!v.truncated && !v.binary);
    }

    #[test]
    fn a_truncated_json_body_says_so() {
        let v = view(br#"{"ref":"refs/he"#, Some(9000), Some("application/json"));
        assert_eq!(v.format, "json");
        assert!(v.truncated);
        assert_eq!(v.size, 9000);
        assert!(v.pretty.is_none());
        assert!(v.pretty_error.unwrap().contains("not well-formed JSON"));
    }

    #[test]
    fn forms_are_decoded_and_their_json_payload_pretty_printed() {
        let body = b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D&x=a+b";
        let v = view(body, None, Some("application/x-www-form-urlencoded"));
        assert_eq!(v.format, "form");
        let form = v.form.unwrap();
        assert_eq!(form[0].name, "payload");
        assert_eq!(form[0].value, r#"{"ref":"refs/heads/main"}"#);
        assert!(
            form[0]
                .json
                .as_deref()
                .unwrap()
                .contains("\"ref\": \"refs/heads/main\"")
        );
        assert_eq!(
            (form[1].name.as_str(), form[1].value.as_str()),
            ("x", "a b")
        );
        assert!(v.pretty.unwrap().starts_with("payload =\n{"));
    }

    #[test]
    fn xml_is_indented_and_broken_xml_named() {
        let v = view(
            b"<a><b x=\"1\">t</b><c/></a>",
            None,
            Some("application/xml"),
        );
        assert_eq!(v.format, "xml");
        assert_eq!(v.pretty.unwrap(), "<a>\n  <b x=\"1\">t</b>\n  <c/>\n</a>");
        let v = view(b"<a><b></a>", None, Some("text/xml"));
        assert!(v.pretty_error.unwrap().contains("not well-formed XML"));
        let v = view(b"<a><b>", None, Some("text/xml"));
        assert!(v.pretty_error.unwrap().contains("not closed"));
    }

    #[test]
    fn without_a_content_type_the_first_character_decides() {
        assert_eq!(view(b"{\"a\":1}", None, None).format, "json");
        assert_eq!(view(b"<a/>", None, Some("text/plain")).format, "xml");
        assert_eq!(view(b"{not json", None, None).format, "text");
        assert_eq!(view(b"hello", None, None).format, "text");
        assert_eq!(view(b"", None, None).format, "empty");
    }

    #[test]
    fn binary_bodies_are_flagged() {
        let v = view(&[0xff, 0xfe, 0x00, 0x41], None, Some("application/json"));
        assert_eq!(v.format, "binary");
        assert!(v.binary);
        assert!(v.raw.contains('\u{fffd}'));
    }
}
