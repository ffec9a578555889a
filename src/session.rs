//! The dashboard's login sessions and CSRF tokens (interface 4 of issue 11): `POST /login`
//! trades the admin token for the cookie `ferry_session`, which the dashboard's pages and —
//! for GET and HEAD only — the API (`api::require_admin`) accept in place of the bearer token.
//!
//! A session is stateless: the cookie is `EXPIRY.NONCE.MAC`, the MAC an HMAC-SHA256 keyed by a
//! key derived from the admin token. So a restart keeps everyone logged in, replicas sharing a
//! config accept each other's cookies, and changing the admin token logs everybody out. Logout
//! puts the nonce in a bounded in-memory revocation set until the cookie would have expired
//! (lost at a restart: the trade-off is in ARCHITECTURE.md). The CSRF token of a session is an
//! HMAC of its nonce under the same key: bound to the session, nothing stored, compared in
//! constant time. Failed logins are rate-limited per client address (`crate::ratelimit`).
//!
//! Below `shared` and `api`, above the bottom layer: it only knows `secret` and `ratelimit`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

use crate::ratelimit::{Limiter, Rate};
use crate::secret::Secret;

/// The cookie's name.
pub(crate) const COOKIE: &str = "ferry_session";
/// How long a session lasts (the cookie's `Max-Age`).
pub(crate) const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Failed logins per client address: 10 at once, then one every 6 s.
const LOGIN_FAILURES: Rate = Rate {
    count: 10,
    period: Duration::from_secs(60),
};
/// Client addresses the failure limiter remembers at most.
const LIMITER_KEYS: usize = 10_000;
/// Logged-out sessions remembered at most (then the ones nearest expiry are forgotten first).
const MAX_REVOKED: usize = 10_000;

type HmacSha256 = Hmac<Sha256>;

/// Why a login was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum LoginError {
    #[error("the dashboard is disabled: set server.admin_token in the config")]
    Disabled,
    #[error("wrong admin token")]
    Wrong,
    #[error("too many failed logins from this address: try again in {0} s")]
    Limited(u64),
    #[error("no randomness for a session nonce: {0}")]
    Random(String),
}

/// A valid session, read from a request's cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    nonce: String,
    /// Unix seconds.
    expires: i64,
}

/// Logged-out sessions and the failed-login limiter; one per server, in `Shared`.
pub(crate) struct Sessions {
    revoked: Mutex<HashMap<String, i64>>,
    failures: Limiter<IpAddr>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            revoked: Mutex::new(HashMap::new()),
            failures: Limiter::new(LOGIN_FAILURES, LIMITER_KEYS),
        }
    }
}

/// The MAC key of sessions and CSRF tokens: derived from the admin token, so it changes with it.
fn key(admin: &Secret) -> HmacSha256 {
    let mut derive =
        HmacSha256::new_from_slice(admin.expose().as_bytes()).expect("HMAC takes any key length");
    derive.update(b"ferry dashboard session key v1");
    HmacSha256::new_from_slice(&derive.finalize().into_bytes()).expect("HMAC takes any key length")
}

fn mac(admin: &Secret, label: &str, data: &str) -> HmacSha256 {
    let mut m = key(admin);
    m.update(label.as_bytes());
    m.update(b"\0");
    m.update(data.as_bytes());
    m
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Sessions {
    /// Checks `given` against the admin token (constant time) unless `client` has failed too
    /// often; on success returns the new cookie's value.
    pub(crate) fn login(
        &self,
        admin: Option<&Secret>,
        given: &[u8],
        client: IpAddr,
    ) -> Result<String, LoginError> {
        let admin = admin.ok_or(LoginError::Disabled)?;
        let now = Instant::now();
        let limited = |wait| LoginError::Limited(crate::ratelimit::retry_after_secs(wait));
        self.failures.peek(&client, now).map_err(limited)?;
        if !admin.matches(given) {
            // Charged after the comparison: the next guess is refused before it is compared.
            let _ = self.failures.check(&client, now);
            return Err(LoginError::Wrong);
        }
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| LoginError::Random(e.to_string()))?;
        Ok(issue(
            admin,
            &hex::encode(nonce),
            now_secs() + LIFETIME.as_secs() as i64,
        ))
    }

    /// The session a request's `Cookie` header carries, if it is valid: well-formed, signed
    /// with the current admin token, not expired, not logged out.
    pub(crate) fn check(&self, admin: Option<&Secret>, headers: &HeaderMap) -> Option<Session> {
        let admin = admin?;
        cookie_values(headers).find_map(|v| self.check_value(admin, v, now_secs()))
    }

    fn check_value(&self, admin: &Secret, value: &str, now: i64) -> Option<Session> {
        let (signed, tag) = value.rsplit_once('.')?;
        let (expires, nonce) = signed.split_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        let tag = hex::decode(tag).ok()?;
        mac(admin, "session", signed).verify_slice(&tag).ok()?;
        if expires <= now || self.lock().contains_key(nonce) {
            return None;
        }
        Some(Session {
            nonce: nonce.to_string(),
            expires,
        })
    }

    /// Logs `session` out: its cookie is refused from now on (until it would have expired).
    pub(crate) fn logout(&self, session: &Session) {
        let mut revoked = self.lock();
        if revoked.len() >= MAX_REVOKED {
            let now = now_secs();
            revoked.retain(|_, expires| *expires > now);
        }
        if revoked.len() >= MAX_REVOKED
            && let Some(first) = revoked
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(n, _)| n.clone())
        {
            revoked.remove(&first);
        }
        revoked.insert(session.nonce.clone(), session.expires);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The cookie value of a session with `nonce` that expires at `expires` (unix seconds).
fn issue(admin: &Secret, nonce: &str, expires: i64) -> String {
    let signed = format!("{expires}.{nonce}");
    let tag = hex::encode(mac(admin, "session", &signed).finalize().into_bytes());
    format!("{signed}.{tag}")
}

/// Every `ferry_session` value in the request's `Cookie` headers.
fn cookie_values(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The CSRF token of `session`: every dashboard form carries it.
pub(crate) fn csrf_token(admin: &Secret, session: &Session) -> String {
    hex::encode(mac(admin, "csrf", &session.nonce).finalize().into_bytes())
}

/// Whether `given` is the CSRF token of `session` (constant time).
pub(crate) fn csrf_ok(admin: &Secret, session: &Session, given: &str) -> bool {
    let Ok(tag) = hex::decode(given) else {
        return false;
    };
    mac(admin, "csrf", &session.nonce)
        .verify_slice(&tag)
        .is_ok()
}

/// The `Set-Cookie` value that stores `value` (`Secure` when the page came over TLS).
pub(crate) fn set_cookie(value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={value}; Max-Age={}; Path=/; HttpOnly; SameSite=Strict{secure}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the cookie.
pub(crate) fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Secret {
        Secret::new("the-admin-token")
    }

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, cookie.parse().unwrap());
        h
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_login_gives_a_cookie_that_checks_until_logout() {
        let s = Sessions::default();
        let value = s.login(Some(&admin()), b"the-admin-token", CLIENT).unwrap();
        let h = headers(&format!("other=1; {COOKIE}={value}"));
        let session = s.check(Some(&admin()), &h).expect("valid session");
        s.logout(&session);
        assert_eq!(s.check(Some(&admin()), &h), None);
    }

    #[test]
    fn a_new_admin_token_refuses_old_cookies() {
        let s = Sessions::default();
        let value = s.login(Some(&admin()), b"the-admin-token", CLIENT).unwrap();
        let h = headers(&format!("{COOKIE}={value}"));
        assert!(s.check(Some(&Secret::new("another-token-1")), &h).is_none());
        assert!(s.check(None, &h).is_none());
    }

    #[test]
    fn forged_expired_and_malformed_cookies_are_refused() {
        let s = Sessions::default();
        let a = admin();
        let good = issue(&a, "00ff", now_secs() + 60);
        assert!(s.check_value(&a, &good, now_secs()).is_some());
        // Same MAC, later expiry: the MAC covers the expiry.
        let (_, rest) = good.split_once('.').unwrap();
        let stretched = format!("{}.{rest}", now_secs() + 999_999);
        assert!(s.check_value(&a, &stretched, now_secs()).is_none());
        let expired = issue(&a, "00ff", now_secs() - 1);
        assert!(s.check_value(&a, &expired, now_secs()).is_none());
        for bad in ["", ".", "..", "1.2", "x.y.z", "1.00ff.zz"] {
            assert!(s.check_value(&a, bad, now_secs()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn wrong_tokens_are_refused_and_then_limited() {
        let s = Sessions::default();
        for _ in 0..LOGIN_FAILURES.count {
            assert_eq!(
                s.login(Some(&admin()), b"guess", CLIENT),
                Err(LoginError::Wrong)
            );
        }
        // Limited before the comparison: even the right token waits now.
        assert!(matches!(
            s.login(Some(&admin()), b"the-admin-token", CLIENT),
            Err(LoginError::Limited(_))
        ));
        assert_eq!(
            s.login(None, b"x", CLIENT),
            Err(LoginError::Disabled),
            "no admin token, no dashboard"
        );
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let a = admin();
        let one = Session {
            nonce: "aa".into(),
            expires: 1,
        };
        let two = Session {
            nonce: "bb".into(),
            expires: 1,
        };
        let token = csrf_token(&a, &one);
        assert!(csrf_ok(&a, &one, &token));
        assert!(!csrf_ok(&a, &two, &token));
        assert!(!csrf_ok(&a, &one, ""));
        assert!(!csrf_ok(&a, &one, "not hex"));
    }

    #[test]
    fn the_revocation_set_stays_bounded() {
        let s = Sessions::default();
        let far = now_secs() + 1000;
        for i in 0..MAX_REVOKED + 5 {
            s.logout(&Session {
                nonce: format!("{i}"),
                expires: far + i as i64,
            });
        }
        assert_eq!(s.lock().len(), MAX_REVOKED);
    }

    #[test]
    fn cookies_carry_the_required_attributes() {
        let c = set_cookie("v", true);
        for attr in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Secure",
            "Max-Age=43200",
        ] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(!set_cookie("v", false).contains("Secure"));
    }
}
