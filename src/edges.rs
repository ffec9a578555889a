//! The hook path's edge checks: who the client is, and the limits applied before a hook
//! request is read or stored.
//!
//! - [`Edges::client_addr`]: the TCP peer, or — only when the peer is one of
//!   `server.trusted_proxies` — the right-most address in `X-Forwarded-For` that is not a
//!   trusted proxy (entries to its left were written by the client and prove nothing).
//!   `Forwarded` (RFC 7239) is not read. IPv6 clients are limited per /64 (one host
//!   usually holds a whole /64, so single addresses would be free to rotate).
//! - [`guard`] (middleware on the hook route, before the handler reads anything): a client
//!   whose failed token or signature checks (404/401) on a hook URL's app exceeded
//!   `server.failures_per_client` gets 429 there without its token being checked; every client
//!   is held to `server.rate_per_client` over all apps. Afterwards a 404 or 401 answer is
//!   charged to the client and the app named in the URL. Per app, because senders share
//!   addresses: anyone can point a GitHub webhook with a wrong token at a ferry, and that must
//!   not lock GitHub out of every app (only out of the app whose name they used).
//! - [`Edges::admit`] (called by ingress once the token matched): `verify.allow_ips` (403)
//!   and `limits.rate` per app (429).
//!
//! Refused requests are not stored; they are counted in `/metrics` and logged.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use ipnet::IpNet;

use crate::config::{App, Config};
use crate::metrics::{Answer, Metrics};
use crate::ratelimit::{Limiter, retry_after_secs};

/// Client keys the per-client limiters hold at most (a few MiB); see `ratelimit`.
const CLIENT_KEYS: usize = 100_000;

/// The client's address as ferry decided it (see [`Edges::client_addr`]); a request extension
/// on hook requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub IpAddr);

/// Limiters and lists, built once from the config.
pub(crate) struct Edges {
    trusted_proxies: Vec<IpNet>,
    per_client: Option<Limiter<IpAddr>>,
    failures: Option<Limiter<(IpAddr, String)>>,
    per_app: HashMap<String, Limiter<()>>,
    /// The configured app names: failed checks are keyed by one of them, or by one bucket for
    /// every unknown name (so new names, or other spellings of one, buy no new guesses).
    apps: HashSet<String>,
}

impl Edges {
    pub(crate) fn new(config: &Config) -> Edges {
        let server = &config.server;
        Edges {
            trusted_proxies: server.trusted_proxies.clone(),
            per_client: server.rate_per_client.map(|r| Limiter::new(r, CLIENT_KEYS)),
            failures: server
                .failures_per_client
                .map(|r| Limiter::new(r, CLIENT_KEYS)),
            per_app: config
                .apps
                .values()
                .filter_map(|a| a.limits.rate.map(|r| (a.name.clone(), Limiter::new(r, 1))))
                .collect(),
            apps: config.apps.keys().cloned().collect(),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    /// right-most `X-Forwarded-For` entry that is not a trusted proxy (or the left-most entry
    /// if all are). An entry that is not an address stops the walk at the hop that wrote it.
    pub(crate) fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusted(client) {
            return client;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.trusted(ip) {
                return ip;
            }
        }
        client
    }

    /// The checks that need the app: its address allowlist, then its rate.
    pub(crate) fn admit(
        &self,
        metrics: &Metrics,
        app: &App,
        client: Option<ClientAddr>,
    ) -> Option<Response> {
        let allow = &app.verify.allow_ips;
        if !allow.is_empty() {
            let allowed = client.is_some_and(|c| allow.iter().any(|net| net.contains(&c.0)));
            if !allowed {
                metrics.answer(Answer::Forbidden);
                let who = client.map_or_else(|| "unknown".to_string(), |c| c.0.to_string());
                tracing::warn!(app = %app.name, client = %who, "hook request from an address outside verify.allow_ips refused");
                return Some(error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "address {who} may not call this hook (apps.{}.verify.allow_ips)",
                        app.name
                    ),
                ));
            }
        }
        if let Some(limiter) = self.per_app.get(&app.name)
            && let Err(wait) = limiter.check(&(), Instant::now())
        {
            metrics.answer(Answer::Limited);
            tracing::warn!(app = %app.name, rate = %limiter.rate(), "hook rate limit of the app reached; answering 429");
            return Some(too_many(
                wait,
                format!(
                    "too many hook requests for this app (apps.{}.limits.rate = \"{}\")",
                    app.name,
                    limiter.rate()
                ),
            ));
        }
        None
    }
}

/// One address in `X-Forwarded-For`: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<Ipv6Addr>().ok())
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

/// The app a failed check on `/hooks/APP/TOKEN` is charged to: the URL's app segment decoded
/// as the router decodes it (so `bl%6Fg` is `blog`), if it names a configured app; else the
/// empty name, one bucket for every unknown app.
fn hook_app(path: &str, apps: &HashSet<String>) -> String {
    let segment = path
        .strip_prefix("/hooks/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    if apps.contains(decoded.as_ref()) {
        decoded.into_owned()
    } else {
        String::new()
    }
}

/// The key an address is limited under: IPv4 as is, IPv6 by its /64.
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

fn error(code: StatusCode, message: String) -> Response {
    (code, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn too_many(wait: std::time::Duration, message: String) -> Response {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, message);
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs(wait)),
    );
    r
}

/// Middleware on the hook route: decides the client address, applies the per-client limits
/// before the handler runs, and charges failed token and signature checks afterwards.
pub(crate) async fn guard(
    edges: &Edges,
    metrics: &Metrics,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let Some(peer) = peer else {
        // Only a router driven without a listener (unit tests) lacks the peer.
        return next.run(req).await;
    };
    let client = edges.client_addr(peer, req.headers());
    req.extensions_mut().insert(ClientAddr(client));
    let key = limit_key(client);
    let failure_key = (key, hook_app(req.uri().path(), &edges.apps));
    if let Some(failures) = &edges.failures
        && let Err(wait) = failures.peek(&failure_key, Instant::now())
    {
        metrics.answer(Answer::Limited);
        tracing::debug!(%client, "client over its failed-check limit; answering 429");
        return too_many(
            wait,
            format!(
                "too many failed token or signature checks from {client} on this hook URL (server.failures_per_client = \"{}\")",
                failures.rate()
            ),
        );
    }
    if let Some(per_client) = &edges.per_client
        && let Err(wait) = per_client.check(&key, Instant::now())
    {
        metrics.answer(Answer::Limited);
        tracing::debug!(%client, "client over its request rate; answering 429");
        return too_many(
            wait,
            format!(
                "too many hook requests from {client} (server.rate_per_client = \"{}\")",
                per_client.rate()
            ),
        );
    }
    let response = next.run(req).await;
    if matches!(
        response.status(),
        StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED
    ) && let Some(failures) = &edges.failures
    {
        let now = Instant::now();
        // Charged after the answer: a concurrent burst of guesses can overshoot the budget by
        // the requests already in progress (bounded by rate_per_client and max_connections).
        let _ = failures.check(&failure_key, now);
        if let Err(wait) = failures.peek(&failure_key, now) {
            tracing::warn!(%client, retry_after_secs = retry_after_secs(wait), "client reached its limit of failed token or signature checks; refusing its hook requests for now");
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(trusted: &[&str]) -> Edges {
        Edges {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            per_client: None,
            failures: None,
            per_app: HashMap::new(),
            apps: HashSet::new(),
        }
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let e = edges(&["10.0.0.0/8"]);
        assert_eq!(
            e.client_addr(ip("192.0.2.7"), &xff(&["1.1.1.1"])),
            ip("192.0.2.7")
        );
        assert_eq!(
            edges(&[]).client_addr(ip("10.0.0.1"), &xff(&["1.1.1.1"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn right_most_untrusted_hop_is_the_client() {
        let e = edges(&["10.0.0.0/8", "::1/128"]);
        // The client forged "6.6.6.6"; the proxy appended the address it saw.
        let h = xff(&["6.6.6.6, 203.0.113.9", "10.1.2.3"]);
        assert_eq!(e.client_addr(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        // Ports and brackets are accepted; an IPv4-mapped peer counts as IPv4.
        let h = xff(&["[2001:db8::5]:443"]);
        assert_eq!(e.client_addr(ip("::ffff:10.0.0.1"), &h), ip("2001:db8::5"));
        assert_eq!(
            e.client_addr(ip("::1"), &xff(&["198.51.100.1:8080"])),
            ip("198.51.100.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            e.client_addr(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // All hops trusted: the left-most.
        assert_eq!(
            e.client_addr(ip("10.0.0.1"), &xff(&["10.9.9.9, 10.8.8.8"])),
            ip("10.9.9.9")
        );
        // Garbage stops the walk at the last trusted hop that wrote it.
        assert_eq!(
            e.client_addr(ip("10.0.0.1"), &xff(&["1.1.1.1, unknown"])),
            ip("10.0.0.1")
        );
        assert_eq!(
            e.client_addr(ip("10.0.0.1"), &xff(&["garbage, 10.2.2.2"])),
            ip("10.2.2.2")
        );
    }

    #[test]
    fn failures_are_keyed_by_the_app_in_the_url() {
        let apps: HashSet<String> = ["blog".to_string()].into();
        assert_eq!(hook_app("/hooks/blog/tok", &apps), "blog");
        // Another spelling of the same app is the same key (found in review: percent-encoding
        // used to buy a fresh budget of guesses).
        assert_eq!(hook_app("/hooks/bl%6Fg/tok", &apps), "blog");
        // Every unknown name shares one bucket.
        assert_eq!(hook_app("/hooks/nope/tok", &apps), "");
        assert_eq!(hook_app("/hooks/nope2/tok", &apps), "");
        assert_eq!(hook_app("/hooks/", &apps), "");
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
