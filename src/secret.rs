//! Secrets (hook tokens, HMAC secrets, the admin token) and the one way ferry compares a
//! given value with one: in constant time. A bottom-layer module: `config` holds secrets,
//! `sources`, `ingress`, `api` and `redact` compare them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use subtle::ConstantTimeEq;

/// A secret string (hook token, HMAC secret, admin token). `Debug` never shows the value, so a
/// stray `{:?}` in a log line cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The secret's bytes, as an HMAC key or to show in setup text.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether `given` is this secret, compared in constant time.
    pub fn matches(&self, given: &[u8]) -> bool {
        equal(self.0.as_bytes(), given)
    }
    /// Whether any of `secrets` is `given`, comparing against every one without stopping
    /// early (so the time does not say which matched).
    pub fn any_matches(secrets: &[Secret], given: &[u8]) -> bool {
        secrets.iter().fold(false, |acc, s| acc | s.matches(given))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Whether `a` and `b` are equal, in constant time (a different length answers at once: the
/// length of a secret is not kept from the caller).
pub(crate) fn equal(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// The HMAC key of a `whsec_…` secret (the bare base64, padded or not, is accepted too).
pub(crate) fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .ok()
        .filter(|k| !k.is_empty())
}
