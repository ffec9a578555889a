//! The `generic` source: any request that no other source recognises (curl, CI jobs, scripts,
//! monitoring), and the configurable HMAC scheme for senders ferry has no module for.
//!
//! A generic delivery carries no git or image information that ferry trusts, so it redeploys
//! the app's services (or those chosen with `?services=` / `?deployment_profile=`), like a
//! Cloud 66 redeploy hook. Its body is stored and handed to deploy commands in `FERRY_PAYLOAD`,
//! never interpreted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

use super::setup::Setup;
use super::signature::{hmac_matches, keys};
use super::{Event, VerifyError, header};
use crate::config::{Encoding, HmacScheme};

pub(crate) fn parse(_body: &[u8]) -> Event {
    Event::Redeploy { time: None }
}

/// `HEADER: <prefix><hex or base64 of HMAC-alg(secret, body)>`, as configured.
pub(crate) fn verify_hmac(
    h: &HmacScheme,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), VerifyError> {
    let name = h.header.as_str();
    let value = header(headers, name).ok_or_else(|| VerifyError::Missing {
        header: name.into(),
    })?;
    let encoded = value
        .strip_prefix(h.prefix.as_str())
        .ok_or_else(|| VerifyError::Malformed {
            header: name.into(),
            why: format!("expected the prefix {:?}", h.prefix),
        })?;
    let digest = match h.encoding {
        Encoding::Hex => hex::decode(encoded).ok(),
        Encoding::Base64 => STANDARD.decode(encoded).ok(),
    }
    .ok_or_else(|| VerifyError::Malformed {
        header: name.into(),
        why: format!("digest is not {:?}", h.encoding).to_lowercase(),
    })?;
    if hmac_matches(h.algorithm, &keys(&h.secrets), &[body], &digest) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch {
            header: name.into(),
        })
    }
}

/// `ferry hooks`: the sender-independent schemes the app configures (custom HMAC header,
/// `Authorization`), and unsigned redeploys when `allow_unsigned` takes them.
pub(crate) fn setup(s: &Setup<'_>) -> Vec<String> {
    let v = s.verify();
    let mut out = Vec::new();
    if let Some(h) = &v.hmac {
        out.push(format!(
            "Custom HMAC: send header {}: {}<{} of HMAC-{:?}(secret, body)> with secret {}",
            h.header,
            h.prefix,
            format!("{:?}", h.encoding).to_lowercase(),
            h.algorithm,
            s.secret(&h.secrets, "hmac.secret")
        ));
    }
    out.extend(super::auth::setup(s));
    if v.allow_unsigned {
        out.push(format!(
            "Unsigned redeploys (verify.allow_unsigned): curl -X POST {} (redeploys what is configured, never a version the request names)",
            s.url
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HmacAlgorithm;
    use crate::secret::Secret;

    fn scheme(alg: HmacAlgorithm, enc: Encoding, prefix: &str) -> HmacScheme {
        HmacScheme {
            header: "X-Signature".into(),
            algorithm: alg,
            encoding: enc,
            prefix: prefix.into(),
            secrets: vec![Secret::new("0123456789abcdef")],
        }
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-signature", value.parse().unwrap());
        h
    }

    #[test]
    fn configurable_schemes() {
        let body = br#"{"yo":true}"#;
        let sha1 = scheme(HmacAlgorithm::Sha1, Encoding::Hex, "sha1=");
        assert_eq!(
            verify_hmac(
                &sha1,
                &with("sha1=126f2c800419c60137ce748d7672e77b65cf16d6"),
                body
            ),
            Ok(())
        );
        let sha512 = scheme(HmacAlgorithm::Sha512, Encoding::Hex, "");
        assert_eq!(
            verify_hmac(
                &sha512,
                &with(
                    "8456767023c1195682e182a23b3f5d19150ecea598fde8cb85918f7281b16079471b1329f92b912c4d8bd7455cb159777db8f29608b20c7c87323ba65ae62e1f"
                ),
                body
            ),
            Ok(())
        );
        let b64 = scheme(HmacAlgorithm::Sha256, Encoding::Base64, "");
        let digest =
            hex::decode("b1f8020f5b4cd42042f807dd939015c4a418bc1ff7f604dd55b0a19b5d953d9b")
                .unwrap();
        assert_eq!(
            verify_hmac(&b64, &with(&STANDARD.encode(&digest)), body),
            Ok(())
        );
        assert!(matches!(
            verify_hmac(&b64, &with(&STANDARD.encode(&digest)), b"{}"),
            Err(VerifyError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_hmac(
                &sha1,
                &with("126f2c800419c60137ce748d7672e77b65cf16d6"),
                body
            ),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            verify_hmac(&sha1, &HeaderMap::new(), body),
            Err(VerifyError::Missing { .. })
        ));
    }
}
