//! Shared signature arithmetic: keyed HMACs over message parts, compared in constant time.
//!
//! Senders differ only in which bytes they sign, which algorithm, and how the digest is
//! written into a header; the comparison is always `Mac::verify_slice` (constant time) against
//! each accepted secret, so a secret rotation is just a second entry.

use hmac::{Hmac, Mac};

use crate::config::HmacAlgorithm;
use crate::secret::Secret;

/// Whether `digest` is the HMAC of the concatenated `parts` under any of `keys`.
pub(crate) fn hmac_matches(
    alg: HmacAlgorithm,
    keys: &[&[u8]],
    parts: &[&[u8]],
    digest: &[u8],
) -> bool {
    keys.iter().any(|key| match alg {
        HmacAlgorithm::Sha1 => check::<Hmac<sha1::Sha1>>(key, parts, digest),
        HmacAlgorithm::Sha256 => check::<Hmac<sha2::Sha256>>(key, parts, digest),
        HmacAlgorithm::Sha512 => check::<Hmac<sha2::Sha512>>(key, parts, digest),
    })
}

fn check<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]], digest: &[u8]) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(digest).is_ok()
}

/// The secrets as HMAC keys (their UTF-8 bytes).
pub(crate) fn keys(secrets: &[Secret]) -> Vec<&[u8]> {
    secrets.iter().map(|s| s.expose().as_bytes()).collect()
}

/// Computes an HMAC: what a sender signs with (`ferry init`'s test request, tests).
pub(crate) fn hmac(alg: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
            return Vec::new();
        };
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        HmacAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        HmacAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_github_vectors_for_every_algorithm() {
        let key: &[u8] = b"0123456789abcdef";
        let body: &[u8] = br#"{"yo":true}"#;
        for (alg, hex_digest) in [
            (
                HmacAlgorithm::Sha1,
                "126f2c800419c60137ce748d7672e77b65cf16d6",
            ),
            (
                HmacAlgorithm::Sha256,
                "b1f8020f5b4cd42042f807dd939015c4a418bc1ff7f604dd55b0a19b5d953d9b",
            ),
            (
                HmacAlgorithm::Sha512,
                "8456767023c1195682e182a23b3f5d19150ecea598fde8cb85918f7281b16079471b1329f92b912c4d8bd7455cb159777db8f29608b20c7c87323ba65ae62e1f",
            ),
        ] {
            let digest = hex::decode(hex_digest).unwrap();
            assert!(
                hmac_matches(alg, &[b"wrong", key], &[body], &digest),
                "{alg:?}"
            );
            assert!(!hmac_matches(alg, &[b"wrong"], &[body], &digest), "{alg:?}");
            assert_eq!(hmac(alg, key, &[b"{\"yo\"", b":true}"]), digest);
        }
    }
}
