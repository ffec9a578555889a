//! Readers of single values that every section shares: `${VAR}` expansion, durations, rates,
//! address lists, byte sizes and names that go into URLs.
//!
//! `${VAR}` is expanded here, after TOML parsing and on string values only, so an environment
//! value can never inject TOML. Each reader records its own error with the key and line it was
//! given and returns `None`, leaving the caller to keep its default or drop what it builds.

use std::time::Duration;

use toml::Spanned;

use super::raw::Size;
use super::validator::Validator;
use crate::ratelimit::Rate;

impl Validator<'_> {
    /// Replaces `${VAR}` with the variable's value. `$$` is a literal `$`. With `secret`, the
    /// names of the variables used are recorded: deploy commands do not inherit them.
    pub(super) fn expand(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        secret: bool,
    ) -> Option<String> {
        let s = value.get_ref();
        let mut out = String::with_capacity(s.len());
        let mut rest = s.as_str();
        let mut ok = true;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(inner) = after.strip_prefix('{') {
                let Some(close) = inner.find('}') else {
                    self.error(Some(value.span()), key, "unclosed `${` in value".into());
                    return None;
                };
                let name = &inner[..close];
                match self.variable(name, value, key, secret) {
                    Some(v) => out.push_str(&v),
                    None => ok = false,
                }
                rest = &inner[close + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        ok.then_some(out)
    }

    /// The value of `${name}` in `value`, or the reason there is none.
    fn variable(
        &mut self,
        name: &str,
        value: &Spanned<String>,
        key: &str,
        secret: bool,
    ) -> Option<String> {
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            self.error(
                Some(value.span()),
                key,
                format!("`${{{name}}}` is not a valid environment variable name"),
            );
            return None;
        }
        let Some(v) = (self.env)(name) else {
            self.error(
                Some(value.span()),
                key,
                format!("environment variable {name} is not set"),
            );
            return None;
        };
        if secret {
            self.secret_env_vars.push(name.to_string());
        }
        Some(v)
    }

    /// A duration above zero, as humantime reads it (`"90s"`, `"1h 30m"`).
    pub(super) fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<Duration> {
        let text = self.expand(value, key, false)?;
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.error(
                    Some(value.span()),
                    key,
                    "duration must be above zero".into(),
                );
                None
            }
            Err(_) => {
                self.error(
                    Some(value.span()),
                    key,
                    format!("invalid duration {text:?} (examples: \"90s\", \"10m\", \"1h 30m\")"),
                );
                None
            }
        }
    }

    /// A rate such as `"120/min"`; `"off"` (where allowed) turns the limit off.
    pub(super) fn rate(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        may_be_off: bool,
    ) -> Option<Rate> {
        let text = self.expand(value, key, false)?;
        if may_be_off && text.trim() == "off" {
            return None;
        }
        match Rate::parse(&text) {
            Ok(r) => Some(r),
            Err(e) => {
                let e = if may_be_off {
                    format!("{e}, or \"off\"")
                } else {
                    e
                };
                self.error(Some(value.span()), key, e);
                None
            }
        }
    }

    /// A list of CIDRs (`"10.0.0.0/8"`) or single addresses (`"::1"`).
    pub(super) fn cidrs(
        &mut self,
        raw: &Option<Spanned<Vec<Spanned<String>>>>,
        key: &str,
    ) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for entry in raw.iter().flat_map(|list| list.get_ref()) {
            let Some(text) = self.expand(entry, key, false) else {
                continue;
            };
            let text = text.trim();
            let net = match text.parse::<ipnet::IpNet>() {
                Ok(net) => net,
                Err(_) => match text.parse::<std::net::IpAddr>() {
                    Ok(ip) => ipnet::IpNet::from(ip),
                    Err(_) => {
                        self.error(
                            Some(entry.span()),
                            key,
                            format!("{text:?} is not an address or CIDR (examples: \"192.30.252.0/22\", \"10.0.0.1\", \"::1\")"),
                        );
                        continue;
                    }
                },
            };
            // "192.30.252.1/22" is usually a typo for the network; say so rather than guess.
            if net.trunc() != net {
                self.error(
                    Some(entry.span()),
                    key,
                    format!(
                        "{text:?} has bits set after the prefix; did you mean \"{}\"?",
                        net.trunc()
                    ),
                );
                continue;
            }
            out.push(net);
        }
        out
    }
}

/// A size in bytes: an integer, or a number with a unit (`"512KiB"`, `"10MB"`).
pub(super) fn parse_size(size: &Size) -> Option<usize> {
    match size {
        Size::Bytes(n) => usize::try_from(*n).ok(),
        Size::Text(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: usize = num.parse().ok()?;
            let mult = match unit.trim() {
                "" | "B" => 1,
                "KB" | "kB" => 1000,
                "KiB" => 1024,
                "MB" => 1000 * 1000,
                "MiB" => 1024 * 1024,
                "GB" => 1000 * 1000 * 1000,
                "GiB" => 1024 * 1024 * 1024,
                _ => return None,
            };
            n.checked_mul(mult)
        }
    }
}

/// App and service names are path segments of hook URLs and API paths.
pub(super) fn is_url_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::testing::{check, errors};
    use crate::config::{Executor, parse};

    #[test]
    fn missing_variable_names_variable_key_and_line() {
        let e = errors(
            "[apps.shop]\n\ntoken = \"${NOPE}\"\n[apps.shop.services.web]\ncommand = [\"x\"]\n",
        );
        assert_eq!(
            e,
            ["/etc/ferry/ferry.toml:3: apps.shop.token: environment variable NOPE is not set"]
        );
    }

    #[test]
    fn bad_duration() {
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ncommand = [\"x\"]\ntimeout = \"10 parsecs\"\n",
        );
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(
                "/etc/ferry/ferry.toml:5: apps.shop.services.web.timeout: invalid duration \"10 parsecs\""
            ),
            "{e:?}"
        );
    }

    #[test]
    fn env_values_cannot_inject_toml() {
        let env = |name: &str| (name == "X").then(|| "x\"\n[apps.evil]\ntoken = \"y".to_string());
        let c = parse(
            "[apps.shop]\ntoken = \"tok-0123456789abcdef\"\n[apps.shop.services.web]\ncommand = [\"${X}\"]\n",
            Path::new("f.toml"),
            &env,
        )
        .unwrap();
        assert_eq!(c.apps.len(), 1);
    }

    #[test]
    fn dollar_escapes_and_sizes() {
        let c = check(
            "[server]\nbody_limit = \"2MiB\"\n[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ncommand = [\"echo\", \"$$HOME\", \"a$b\"]\n",
        )
        .unwrap();
        assert_eq!(c.server.body_limit, 2 * 1024 * 1024);
        let Executor::Command { argv, .. } = &c.apps["shop"].services["web"].executor else {
            panic!("command executor expected")
        };
        assert_eq!(argv, &["echo", "$HOME", "a$b"]);
    }
}
