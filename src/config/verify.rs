//! `[apps.X.verify]`: how an app's deliveries are verified — each sender's secrets, the
//! custom `hmac` scheme, `require` / `allow_unsigned` — and who may call the hook at all
//! (`allow_ips`, `client_cert`). `sources` applies these; here they are only read and checked.

use toml::Spanned;

use super::validator::Validator;
use super::{DEFAULT_STANDARD_TOLERANCE, Encoding, HmacAlgorithm, HmacScheme, Server, Verify, raw};

impl Validator<'_> {
    pub(super) fn verify(&mut self, raw: &raw::Verify, key: &str) -> Verify {
        let mut v = Verify {
            github: self.secrets(&raw.github, &format!("{key}.github")),
            gitlab: self.secrets(&raw.gitlab, &format!("{key}.gitlab")),
            bitbucket: self.secrets(&raw.bitbucket, &format!("{key}.bitbucket")),
            gitea: self.secrets(&raw.gitea, &format!("{key}.gitea")),
            standard: self.secrets(&raw.standard, &format!("{key}.standard")),
            standard_tolerance: DEFAULT_STANDARD_TOLERANCE,
            hmac: None,
            bearer: self.secrets(&raw.bearer, &format!("{key}.bearer")),
            basic: self.secrets(&raw.basic, &format!("{key}.basic")),
            require: false,
            allow_unsigned: false,
            allow_ips: self.cidrs(&raw.allow_ips, &format!("{key}.allow_ips")),
            client_cert: false,
        };
        if let Some(c) = &raw.client_cert
            && *c.get_ref()
        {
            v.client_cert = true;
            self.client_cert_apps
                .push((format!("{key}.client_cert"), c.span()));
        }
        if let Some(t) = &raw.standard_tolerance
            && let Some(d) = self.duration(t, &format!("{key}.standard_tolerance"))
        {
            v.standard_tolerance = d;
        }
        self.secret_formats(raw, key, &v);
        if let Some(h) = &raw.hmac {
            v.hmac = Some(self.hmac(h.get_ref(), &format!("{key}.hmac")));
        }
        self.require(raw, key, &mut v);
        v
    }

    /// Secrets whose form is fixed: Standard Webhooks' `whsec_…` and Basic's `user:password`.
    fn secret_formats(&mut self, raw: &raw::Verify, key: &str, v: &Verify) {
        for s in &v.standard {
            if crate::secret::decode_secret(s.expose()).is_none() {
                self.error(
                    raw.standard.as_ref().map(|r| r.span()),
                    &format!("{key}.standard"),
                    "is not a Standard Webhooks secret (expected whsec_ followed by base64)".into(),
                );
            }
        }
        for s in &v.basic {
            if !s.expose().contains(':') {
                self.error(
                    raw.basic.as_ref().map(|r| r.span()),
                    &format!("{key}.basic"),
                    "must be \"user:password\"".into(),
                );
            }
        }
    }

    /// `hmac = { header, algorithm, encoding, prefix, secret }`, for senders ferry does not
    /// know. An unknown algorithm or encoding is reported and read as the default.
    fn hmac(&mut self, h: &raw::Hmac, hkey: &str) -> HmacScheme {
        let header = h.header.get_ref().trim().to_string();
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            self.error(
                Some(h.header.span()),
                &format!("{hkey}.header"),
                format!("{header:?} is not a valid header name"),
            );
        }
        let algorithm = match h.algorithm.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("sha256") => HmacAlgorithm::Sha256,
            Some("sha1") => HmacAlgorithm::Sha1,
            Some("sha512") => HmacAlgorithm::Sha512,
            Some(other) => {
                self.error(
                    h.algorithm.as_ref().map(|a| a.span()),
                    &format!("{hkey}.algorithm"),
                    format!("unknown algorithm {other:?} (sha1, sha256 or sha512)"),
                );
                HmacAlgorithm::Sha256
            }
        };
        let encoding = match h.encoding.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("hex") => Encoding::Hex,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                self.error(
                    h.encoding.as_ref().map(|a| a.span()),
                    &format!("{hkey}.encoding"),
                    format!("unknown encoding {other:?} (hex or base64)"),
                );
                Encoding::Hex
            }
        };
        let prefix = match &h.prefix {
            Some(p) => self
                .expand(p, &format!("{hkey}.prefix"), false)
                .unwrap_or_default(),
            None => String::new(),
        };
        let secret: Option<Spanned<raw::Secrets>> = Some(h.secret.clone());
        let secrets = self.secrets(&secret, &format!("{hkey}.secret"));
        HmacScheme {
            header,
            algorithm,
            encoding,
            prefix,
            secrets,
        }
    }

    /// `require` and `allow_unsigned`. With any scheme configured every delivery must be
    /// verified by one of them, so `require` defaults to true there, and `require = false`
    /// (which used to let unsigned deliveries through with their git information) is an error
    /// that points to `allow_unsigned`, whose unsigned deliveries carry no version.
    fn require(&mut self, raw: &raw::Verify, key: &str, v: &mut Verify) {
        let configured = v.configured();
        v.require = configured;
        v.allow_unsigned = raw.allow_unsigned.as_ref().is_some_and(|a| *a.get_ref());
        match raw.require.as_ref().map(|r| (r.span(), *r.get_ref())) {
            Some((span, false)) if configured => self.error(
                Some(span),
                &format!("{key}.require"),
                format!(
                    "cannot be false while a scheme is configured ({}): every delivery of this app must be verified; to also take unsigned token-only redeploys (which never carry a branch, commit or image), set `allow_unsigned = true` instead",
                    v.schemes().join(", ")
                ),
            ),
            Some((span, true)) if !configured => self.error(
                Some(span),
                &format!("{key}.require"),
                "is true but no scheme is configured, so every delivery would be refused: add one (github, gitlab, bitbucket, gitea, standard, hmac, bearer or basic)".into(),
            ),
            _ => {}
        }
    }

    /// `verify.client_cert = true` is meaningless without a CA to verify certificates against.
    /// Checked once `[server]` and every app are read.
    pub(super) fn check_client_cert_apps(&mut self, server: &Server) {
        let has_ca = server.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        for (key, span) in std::mem::take(&mut self.client_cert_apps) {
            if !has_ca {
                self.error(
                    Some(span),
                    &key,
                    "needs server.client_ca (and server.tls): there is no CA to verify client certificates against".into(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Modifier;
    use crate::config::testing::{GOOD, check, errors};

    #[test]
    fn schemes_make_verification_required() {
        let shop = check(GOOD).unwrap().apps.remove("shop").unwrap();
        assert!(shop.verify.require && !shop.verify.allow_unsigned);
        assert_eq!(shop.modifiers, Modifier::DEFAULT);
        let open = check(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ncommand = [\"x\"]\n",
        )
        .unwrap()
        .apps
        .remove("shop")
        .unwrap();
        assert!(!open.verify.require && !open.verify.configured());
        let lax = check(&GOOD.replace(
            "verify = { github = \"${SECRET}\" }",
            "verify = { github = \"${SECRET}\", allow_unsigned = true }",
        ))
        .unwrap()
        .apps
        .remove("shop")
        .unwrap();
        assert!(lax.verify.require && lax.verify.allow_unsigned);
    }

    #[test]
    fn require_false_with_a_scheme_points_to_allow_unsigned() {
        let e = errors(&GOOD.replace(
            "verify = { github = \"${SECRET}\" }",
            "\n[apps.shop.verify]\ngithub = \"${SECRET}\"\nrequire = false",
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/etc/ferry/ferry.toml:11: apps.shop.verify.require: cannot be false"),
            "{e:?}"
        );
        assert!(e[0].contains("allow_unsigned = true"), "{e:?}");
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\nverify = { require = true }\n[apps.shop.services.web]\ncommand = [\"x\"]\n",
        );
        assert!(
            e[0].starts_with(
                "/etc/ferry/ferry.toml:3: apps.shop.verify.require: is true but no scheme"
            ),
            "{e:?}"
        );
    }
}
