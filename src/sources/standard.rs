//! Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp`,
//! `webhook-signature`.
//!
//! The signature is HMAC-SHA256 over `id.timestamp.body` with the base64-decoded `whsec_`
//! secret, sent as a space-separated list of `v1,<base64>` entries (several during a key
//! rotation; other versions are ignored). A timestamp outside the tolerance, in the past or the
//! future, is refused as a replay before anything is stored. GitLab's signing tokens use the
//! same scheme, so `gitlab.rs` calls into this module.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

use super::setup::Setup;
use super::signature::hmac_matches;
use super::{Event, Stored, VerifyError, header};
use crate::config::HmacAlgorithm;
use crate::secret::{Secret, decode_secret};

pub(crate) const ID_HEADER: &str = "webhook-id";
pub(crate) const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub(crate) const SIGNATURE_HEADER: &str = "webhook-signature";

pub(crate) fn detect(headers: &HeaderMap) -> bool {
    headers.contains_key(ID_HEADER)
        && headers.contains_key(TIMESTAMP_HEADER)
        && headers.contains_key(SIGNATURE_HEADER)
}

pub(crate) fn verify(
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let missing = |h: &str| VerifyError::Missing { header: h.into() };
    let id = header(headers, ID_HEADER).ok_or_else(|| missing(ID_HEADER))?;
    let ts_text = header(headers, TIMESTAMP_HEADER).ok_or_else(|| missing(TIMESTAMP_HEADER))?;
    let signatures = header(headers, SIGNATURE_HEADER).ok_or_else(|| missing(SIGNATURE_HEADER))?;
    let ts: i64 = ts_text.parse().map_err(|_| VerifyError::Malformed {
        header: TIMESTAMP_HEADER.into(),
        why: "not a Unix time in seconds".into(),
    })?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    let age = now_secs.saturating_sub(ts);
    if age > tolerance {
        return Err(VerifyError::Expired {
            header: TIMESTAMP_HEADER.into(),
            why: format!("is {age}s old (tolerance {tolerance}s)"),
        });
    }
    // Not `-age`: it overflows when `age` saturated at i64::MIN (found by fuzzing).
    let ahead = ts.saturating_sub(now_secs);
    if ahead > tolerance {
        return Err(VerifyError::Expired {
            header: TIMESTAMP_HEADER.into(),
            why: format!("is {ahead}s in the future (tolerance {tolerance}s)"),
        });
    }
    let keys: Vec<Vec<u8>> = secrets
        .iter()
        .filter_map(|s| decode_secret(s.expose()))
        .collect();
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", body];
    let mut saw_v1 = false;
    for entry in signatures.split_whitespace() {
        let Some(b64) = entry.strip_prefix("v1,") else {
            continue; // other versions (v1a, future ones) are not ours to check
        };
        saw_v1 = true;
        if let Ok(digest) = STANDARD.decode(b64)
            && hmac_matches(HmacAlgorithm::Sha256, &keys, &parts, &digest)
        {
            return Ok(());
        }
    }
    if saw_v1 {
        Err(VerifyError::Mismatch {
            header: SIGNATURE_HEADER.into(),
        })
    } else {
        Err(VerifyError::Malformed {
            header: SIGNATURE_HEADER.into(),
            why: "no `v1,<base64>` signature".into(),
        })
    }
}

/// Standard Webhooks carry no git information ferry trusts: a redeploy, ordered by the
/// sender's timestamp.
pub(crate) fn parse(d: &Stored<'_>) -> Event {
    let time = (d.header)(TIMESTAMP_HEADER)
        .and_then(|t| t.trim().parse::<i64>().ok())
        .and_then(|s| s.checked_mul(1000));
    Event::Redeploy { time }
}

/// `ferry hooks`: the endpoint, for apps that verify Standard Webhooks.
pub(crate) fn setup(s: &Setup<'_>) -> Option<String> {
    let v = s.verify();
    (!v.standard.is_empty()).then(|| {
        format!(
            "Standard Webhooks sender: endpoint {} · signing secret {} (tolerance {})",
            s.url,
            s.secret(&v.standard, "standard"),
            humantime::format_duration(v.standard_tolerance)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ID_HEADER, id.parse().unwrap());
        h.insert(TIMESTAMP_HEADER, ts.parse().unwrap());
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        h
    }

    const FIVE_MIN: Duration = Duration::from_secs(300);

    fn vector_one(sig: &str, now: i64) -> Result<(), VerifyError> {
        let s = [Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")];
        let h = headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", sig);
        verify(&s, &h, br#"{"test": 2432232314}"#, now, FIVE_MIN)
    }

    #[test]
    fn published_vectors() {
        assert_eq!(
            vector_one(
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                1614265330
            ),
            Ok(())
        );
        let s = [Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")];
        let h = headers(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            "1649367553",
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        );
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(verify(&s, &h, body, 1649367553, FIVE_MIN), Ok(()));
    }

    #[test]
    fn extreme_clocks_and_timestamps_are_refused_without_overflow() {
        // Found by `cargo fuzz run verify_signatures`: `now - ts` saturating at i64::MIN and
        // then negated.
        let s = [Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")];
        let h = headers("msg_1", &i64::MAX.to_string(), "v1,AAAA");
        assert!(matches!(
            verify(&s, &h, b"{}", i64::MIN, FIVE_MIN),
            Err(VerifyError::Expired { .. })
        ));
        let h = headers("msg_1", &i64::MIN.to_string(), "v1,AAAA");
        assert!(matches!(
            verify(&s, &h, b"{}", i64::MAX, FIVE_MIN),
            Err(VerifyError::Expired { .. })
        ));
    }

    #[test]
    fn negative_vector_and_multiple_signatures() {
        assert!(matches!(
            vector_one(
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
                1614265330
            ),
            Err(VerifyError::Mismatch { .. })
        ));
        // Decoys and unknown versions around the good one.
        assert_eq!(
            vector_one(
                "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                1614265330
            ),
            Ok(())
        );
        assert!(matches!(
            vector_one(
                "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                1614265330
            ),
            Err(VerifyError::Malformed { .. })
        ));
    }

    #[test]
    fn replays_outside_the_tolerance_are_refused() {
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(vector_one(good, 1614265330 + 300), Ok(()));
        assert!(matches!(
            vector_one(good, 1614265330 + 301),
            Err(VerifyError::Expired { .. })
        ));
        assert!(matches!(
            vector_one(good, 1614265330 - 301),
            Err(VerifyError::Expired { .. })
        ));
    }

    #[test]
    fn secrets_decode_with_or_without_prefix_and_padding() {
        assert_eq!(decode_secret("whsec_AAEC").unwrap(), vec![0, 1, 2]);
        assert_eq!(decode_secret("AAEC").unwrap(), vec![0, 1, 2]);
        assert_eq!(decode_secret("whsec_AAE").unwrap(), vec![0, 1]);
        assert!(decode_secret("whsec_!!").is_none());
    }
}
