//! `Authorization` credentials as a verification scheme: `Bearer <token>` or `Basic
//! base64(user:password)`, as container registries, Harbor and Alertmanager send them.
//! Compared in constant time against every configured credential.

use super::setup::Setup;
use super::{Scheme, VerifyError, header};
use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

const HEADER: &str = "Authorization";

/// Returns the scheme that matched ([`Scheme::Bearer`] or [`Scheme::Basic`]).
pub(crate) fn verify(
    bearer: &[Secret],
    basic: &[Secret],
    headers: &HeaderMap,
) -> Result<Scheme, VerifyError> {
    let value = header(headers, HEADER).ok_or_else(|| VerifyError::Missing {
        header: HEADER.into(),
    })?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    let mismatch = || VerifyError::Mismatch {
        header: HEADER.into(),
    };
    if scheme.eq_ignore_ascii_case("bearer") && !bearer.is_empty() {
        return Secret::any_matches(bearer, rest.as_bytes())
            .then_some(Scheme::Bearer)
            .ok_or_else(mismatch);
    }
    if scheme.eq_ignore_ascii_case("basic") && !basic.is_empty() {
        let decoded = STANDARD.decode(rest).map_err(|_| VerifyError::Malformed {
            header: HEADER.into(),
            why: "Basic credentials are not base64".into(),
        })?;
        return Secret::any_matches(basic, &decoded)
            .then_some(Scheme::Basic)
            .ok_or_else(mismatch);
    }
    Err(mismatch())
}

/// `ferry hooks`: the `Authorization` credentials the app accepts.
pub(crate) fn setup(s: &Setup<'_>) -> Vec<String> {
    let v = s.verify();
    let mut out = Vec::new();
    if !v.bearer.is_empty() {
        out.push(format!(
            "Registries/Alertmanager: header Authorization: Bearer {}",
            s.secret(&v.bearer, "bearer")
        ));
    }
    if !v.basic.is_empty() {
        out.push(format!(
            "Registries/Alertmanager: basic auth {}",
            s.secret(&v.basic, "basic")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", value.parse().unwrap());
        h
    }

    #[test]
    fn bearer_and_basic() {
        let bearer = [Secret::new("reg-token")];
        let basic = [Secret::new("alice:s3cret")];
        assert_eq!(
            verify(&bearer, &basic, &h("Bearer reg-token")),
            Ok(Scheme::Bearer)
        );
        assert!(verify(&bearer, &basic, &h("Bearer other")).is_err());
        // "alice:s3cret" in base64
        assert_eq!(
            verify(&bearer, &basic, &h("Basic YWxpY2U6czNjcmV0")),
            Ok(Scheme::Basic)
        );
        assert!(verify(&bearer, &basic, &h("Basic YWxpY2U6d3Jvbmc=")).is_err());
        assert!(verify(&bearer, &[], &h("Basic YWxpY2U6czNjcmV0")).is_err());
        assert!(matches!(
            verify(&bearer, &basic, &HeaderMap::new()),
            Err(VerifyError::Missing { .. })
        ));
    }
}
