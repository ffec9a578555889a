//! Commit statuses on GitLab, Gitea/Forgejo and Bitbucket Cloud: what the three targets
//! (`gitlab.rs`, `gitea.rs`, `bitbucket.rs`) share. Each host file only knows its endpoint, its
//! body and its auth header; here are the rules that make them one feature:
//!
//! - **Which events**: a deployment's every state change ([`status`]), when the deployment
//!   was caused by a push from that host (`deployments.source`), deploys a commit of a
//!   repository (`git_repo`, `git_commit`: both set by the planner from the config and the
//!   value-checked push), and its app has the host's table (`[apps.X.gitlab]`, …).
//! - **What a status says**: the host's state for ferry's ([`states`], one table for the
//!   three hosts, as in the README), the context `ferry/APP/SERVICE`, a link to the
//!   deployment, a description cut to [`DESCRIPTION_MAX`] characters.
//! - **Where it goes**: one queue per (host, app) (`gitlab:APP`, …), so an app's statuses
//!   reach the host in the order they happened (a `success` never overtakes its `running`).
//!   The stored `url` is the request's path under `api_url` (repository and commit
//!   percent-encoded), never the token: each try reads the token and `api_url` from the
//!   config again, so after a restart with a new token or a corrected URL, waiting (and
//!   manually retried) statuses use it.
//! - **How answers count** ([`answer`]): 2xx sent; 429, a 403 that says it is a rate limit,
//!   408 and 5xx tried again (after `Retry-After` or the rate limit's reset when given);
//!   any other answer is a refusal recorded with the host's own message and not tried again
//!   — e.g. GitLab's 400 for a status that would move backwards.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::retry::{MAX_DELAY, retry_after};
use super::target::{self, Context, Kind, Outcome, Subject};
use crate::config::{App, CommitStatuses, receiver_of};
use crate::logging::Escaped;
use crate::sources::Source;
use crate::states::DeploymentState;
use crate::store::{Deployment, NewNotification, Notification};

/// The hosts ferry posts commit statuses to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    Gitlab,
    /// Gitea and Forgejo (one API).
    Gitea,
    /// Bitbucket Cloud only: Data Center has another API (see `bitbucket.rs`).
    Bitbucket,
}

impl Host {
    pub(crate) fn kind(self) -> Kind {
        match self {
            Host::Gitlab => Kind::Gitlab,
            Host::Gitea => Kind::Gitea,
            Host::Bitbucket => Kind::Bitbucket,
        }
    }

    /// The sender whose pushes get this host's statuses.
    fn source(self) -> Source {
        match self {
            Host::Gitlab => Source::Gitlab,
            Host::Gitea => Source::Gitea,
            Host::Bitbucket => Source::Bitbucket,
        }
    }

    /// The app's table for this host.
    fn settings(self, app: &App) -> Option<&CommitStatuses> {
        let s = &app.commit_statuses;
        match self {
            Host::Gitlab => s.gitlab.as_ref(),
            Host::Gitea => s.gitea.as_ref(),
            Host::Bitbucket => s.bitbucket.as_ref(),
        }
    }

    /// The config table's name (`[apps.X.gitlab]`).
    fn table(self) -> &'static str {
        match self {
            Host::Gitlab => "gitlab",
            Host::Gitea => "gitea",
            Host::Bitbucket => "bitbucket",
        }
    }

    /// The host's state for ferry's `state` (a column of [`states`]).
    pub(crate) fn state(self, state: DeploymentState) -> &'static str {
        let [gitlab, gitea, bitbucket] = states(state);
        match self {
            Host::Gitlab => gitlab,
            Host::Gitea => gitea,
            Host::Bitbucket => bitbucket,
        }
    }
}

/// Each host's state for a ferry state: `[GitLab, Gitea, Bitbucket]` (the README's table).
/// A deployment that ended badly is `failed`; one that was stopped before it could end
/// (cancelled, or cut off by ferry's shutdown — a retry posts its own statuses) is
/// cancelled/`error`/`STOPPED`; one that never ran because another went instead (superseded,
/// skipped) is cancelled or skipped on GitLab, `warning` on Gitea (the commit was not
/// deployed, which is no failure of it), `STOPPED` on Bitbucket. Gitea has no running state:
/// a running deployment stays `pending` there.
pub(crate) const fn states(state: DeploymentState) -> [&'static str; 3] {
    match state {
        DeploymentState::Queued => ["pending", "pending", "INPROGRESS"],
        DeploymentState::Running => ["running", "pending", "INPROGRESS"],
        DeploymentState::Succeeded => ["success", "success", "SUCCESSFUL"],
        DeploymentState::Failed | DeploymentState::TimedOut | DeploymentState::RolledBack => {
            ["failed", "failure", "FAILED"]
        }
        DeploymentState::Cancelled | DeploymentState::Interrupted => {
            ["canceled", "error", "STOPPED"]
        }
        DeploymentState::Superseded => ["canceled", "warning", "STOPPED"],
        DeploymentState::Skipped => ["skipped", "warning", "STOPPED"],
    }
}

/// The longest description posted: GitHub's limit, short enough for every host.
pub(crate) const DESCRIPTION_MAX: usize = 140;
/// The most of a host's refusal that is recorded.
const MESSAGE_MAX: usize = 500;
/// The most of an answer's body that is read.
const BODY_MAX: usize = 16 * 1024;

/// One status, as every host says it.
pub(crate) struct Status<'a> {
    pub(crate) deployment: &'a Deployment,
    /// The deployment's state when the event happened (not now).
    pub(crate) state: DeploymentState,
    /// `ferry/APP/SERVICE`.
    pub(crate) context: String,
    /// The deployment's page (its JSON in the API until the dashboard exists).
    pub(crate) target_url: String,
    pub(crate) description: String,
    /// The repository's path segments (`group/sub/project` → 3), each non-empty and none
    /// `.` or `..` (a URL parser would resolve those).
    pub(crate) repo: Vec<&'a str>,
    pub(crate) commit: &'a str,
}

impl Status<'_> {
    /// The branch or tag the deployment follows, short (`main`, `v1.2`), if it says.
    pub(crate) fn short_ref(&self) -> Option<&str> {
        let d = self.deployment;
        let full = d.git_ref.as_deref()?;
        full.strip_prefix("refs/heads/")
            .or_else(|| full.strip_prefix("refs/tags/"))
            .or(d.git_branch.as_deref())
    }
}

/// The status `host` gets for this event, if any: a deployment's change of state, of a
/// deployment caused by a push from `host` to an app with `host`'s table, that names a
/// repository and a commit fit for the host's URL.
pub(crate) fn status<'a>(ctx: &Context, s: &Subject<'a>, host: Host) -> Option<Status<'a>> {
    let state = s.event.event.deployment_state()?;
    let d = s.deployment?;
    if d.source != host.source().as_str() {
        return None;
    }
    ctx.config.apps.get(&d.app).and_then(|a| host.settings(a))?;
    let (repo, commit) = (d.git_repo.as_deref()?, d.git_commit.as_deref()?);
    let Some(segments) = segments(repo) else {
        unusable(d, host, "its repository is not a path of names");
        return None;
    };
    if !is_commit(commit) {
        unusable(d, host, "its commit is not a hexadecimal id");
        return None;
    }
    Some(Status {
        deployment: d,
        state,
        context: context(&d.app, &d.service),
        target_url: ctx.deployment_url(d.id),
        description: description(d.id, state, s.event.reason.as_deref()),
        repo: segments,
        commit,
    })
}

/// Logs why a deployment gets no status from `host` (once per event).
pub(crate) fn unusable(d: &Deployment, host: Host, why: &str) {
    tracing::warn!(
        deployment = d.id,
        app = %d.app,
        repo = %Escaped(d.git_repo.as_deref().unwrap_or_default()),
        "no {} commit status: {why}",
        host.table()
    );
}

/// The context (GitLab `name`, Bitbucket `name`) of a service's statuses.
pub(crate) fn context(app: &str, service: &str) -> String {
    format!("ferry/{app}/{service}")
}

/// `Deployment 42 failed: command exited with status 7`: the state, and for an end other than
/// success the reason, cut to [`DESCRIPTION_MAX`] characters.
pub(crate) fn description(id: i64, state: DeploymentState, reason: Option<&str>) -> String {
    let mut text = format!("Deployment {id} {}", state.as_str().replace('_', " "));
    if state.is_final() && state != DeploymentState::Succeeded {
        if let Some(r) = reason.filter(|r| !r.is_empty()) {
            text.push_str(": ");
            text.push_str(r);
        }
    }
    cut(&text, DESCRIPTION_MAX)
}

/// `text` in at most `max` characters, with `…` where it was cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A repository's path segments, if every one is a usable name.
fn segments(repo: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = repo.split('/').collect();
    let ok = parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.chars().any(char::is_control));
    ok.then_some(parts)
}

/// A commit id: 7 to 64 hexadecimal digits (SHA-1 or SHA-256, maybe abbreviated).
fn is_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Everything but RFC 3986's unreserved characters is encoded, `/` too.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one path segment.
pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The notification of `status` for `host`: its queue is `HOST:APP`, its `url` the request's
/// `path` under the app's `api_url`, its body `body`.
pub(crate) fn notification(
    ctx: &Context,
    s: &Subject<'_>,
    host: Host,
    path: String,
    body: &Value,
) -> Option<NewNotification> {
    let app = &s.event.app;
    let settings = ctx.config.apps.get(app).and_then(|a| host.settings(a))?;
    Some(target::notification(
        s,
        &format!("{}:{app}", host.table()),
        host.kind(),
        &receiver_of(&settings.api_url),
        Some(path),
        body.to_string(),
    ))
}

/// One try of `n` for `host`: POST its body to `api_url` + its path, with the header `auth`
/// makes of the token (marked sensitive, so no debug output shows it).
pub(crate) async fn send(
    ctx: &Context,
    n: &Notification,
    host: Host,
    auth: fn(&str) -> (HeaderName, String),
) -> Outcome {
    let settings = ctx.config.apps.get(&n.app).and_then(|a| host.settings(a));
    let Some(settings) = settings else {
        return refused(format!(
            "[apps.{}.{}] is not configured any more",
            n.app,
            host.table()
        ));
    };
    let Some(path) = n.url.as_deref() else {
        return refused("no request path stored".into());
    };
    let token = settings.token.expose();
    let (name, value) = auth(token);
    let Ok(mut value) = HeaderValue::from_str(&value) else {
        return refused(format!(
            "[apps.{}.{}] token cannot be sent in a header",
            n.app,
            host.table()
        ));
    };
    value.set_sensitive(true);
    let reply = ctx
        .client
        .post(format!("{}/{path}", settings.api_url))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("ferry/", env!("CARGO_PKG_VERSION")),
        )
        .header(name, value)
        .body(n.body.clone())
        .send()
        .await;
    match reply {
        Ok(r) if r.status().is_success() => Outcome::Sent {
            status: r.status().as_u16(),
        },
        Ok(r) => {
            let (status, headers) = (r.status(), r.headers().clone());
            let body = read_body(r).await;
            answer(status, &headers, &body, token)
        }
        Err(e) => Outcome::Retry {
            status: None,
            error: target::describe(e),
            after: None,
        },
    }
}

fn refused(error: String) -> Outcome {
    Outcome::Permanent {
        status: None,
        error,
    }
}

/// The start of an answer's body ([`BODY_MAX`] bytes at most), as text.
async fn read_body(mut r: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < BODY_MAX {
        match r.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(BODY_MAX);
    String::from_utf8_lossy(&buf).into_owned()
}

/// What a host's answer other than 2xx means: rate limits (429; 403 with rate-limit headers),
/// 408 and 5xx are tried again, after the wait the host asked for if it did; anything else
/// is a refusal that trying again cannot change, recorded with the host's message (with the
/// token, should a host echo it, redacted).
pub(crate) fn answer(status: StatusCode, headers: &HeaderMap, body: &str, token: &str) -> Outcome {
    let code = Some(status.as_u16());
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && is_rate_limit(headers));
    if rate_limited {
        return Outcome::Retry {
            status: code,
            error: format!("answered {status} (rate limited)"),
            after: rate_limit_wait(headers),
        };
    }
    let mut error = format!("answered {status}");
    if let Some(m) = host_message(body) {
        let m = if token.is_empty() {
            m
        } else {
            m.replace(token, "[redacted]")
        };
        error.push_str(": ");
        error.push_str(&cut(&m, MESSAGE_MAX));
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Outcome::Retry {
            status: code,
            error,
            after: retry_after(headers),
        };
    }
    if status.is_redirection() {
        error.push_str(" (redirects are not followed: check api_url)");
    }
    Outcome::Permanent {
        status: code,
        error,
    }
}

/// Whether a 403 is a rate limit: it says when to come back, or that nothing remains
/// (GitLab's `RateLimit-Remaining`, GitHub-style `X-RateLimit-Remaining`).
fn is_rate_limit(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::RETRY_AFTER)
        || ["ratelimit-remaining", "x-ratelimit-remaining"]
            .iter()
            .any(|h| headers.get(*h).and_then(|v| v.to_str().ok()).map(str::trim) == Some("0"))
}

/// How long a rate limit lasts: `Retry-After`, else until its reset (`RateLimit-Reset` /
/// `X-RateLimit-Reset`, unix seconds), within 1 s and [`MAX_DELAY`].
pub(crate) fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    if let Some(d) = retry_after(headers) {
        return Some(d);
    }
    let reset: i64 = ["ratelimit-reset", "x-ratelimit-reset"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok()?.trim().parse().ok())?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let secs = u64::try_from(reset.saturating_sub(now)).unwrap_or(0);
    Some(Duration::from_secs(secs).clamp(Duration::from_secs(1), MAX_DELAY))
}

/// The host's own words in an error body: GitLab's and Gitea's `message` (GitLab's may be an
/// object of field errors) or `error`, Bitbucket's `error.message` (and `error.detail`);
/// else the body's text, if it has any.
pub(crate) fn host_message(body: &str) -> Option<String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        let body = body.trim();
        return (!body.is_empty()).then(|| body.to_string());
    };
    if let Some(e) = v.get("error").filter(|e| e.is_object()) {
        let message = e.get("message").and_then(text);
        let detail = e.get("detail").and_then(text);
        return match (message, detail) {
            (Some(m), Some(d)) => Some(format!("{m} ({d})")),
            (m, d) => m.or(d),
        };
    }
    v.get("message")
        .and_then(text)
        .or_else(|| v.get("error").and_then(text))
        .or_else(|| (!v.is_null()).then(|| v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_state_on_every_host() {
        use DeploymentState::*;
        let table: Vec<_> = DeploymentState::ALL
            .iter()
            .map(|s| (s.as_str(), states(*s)))
            .collect();
        assert_eq!(
            table,
            [
                ("queued", ["pending", "pending", "INPROGRESS"]),
                ("running", ["running", "pending", "INPROGRESS"]),
                ("succeeded", ["success", "success", "SUCCESSFUL"]),
                ("failed", ["failed", "failure", "FAILED"]),
                ("timed_out", ["failed", "failure", "FAILED"]),
                ("cancelled", ["canceled", "error", "STOPPED"]),
                ("superseded", ["canceled", "warning", "STOPPED"]),
                ("skipped", ["skipped", "warning", "STOPPED"]),
                ("interrupted", ["canceled", "error", "STOPPED"]),
                ("rolled_back", ["failed", "failure", "FAILED"]),
            ]
        );
        assert_eq!(Host::Gitea.state(Running), "pending");
        assert_eq!(Host::Bitbucket.state(Failed), "FAILED");
        assert_eq!(Host::Gitlab.state(Skipped), "skipped");
    }

    #[test]
    fn descriptions_say_the_state_and_why_it_ended_so_within_140_characters() {
        use DeploymentState::*;
        assert_eq!(description(42, Queued, None), "Deployment 42 queued");
        assert_eq!(
            description(42, Running, Some("a note")),
            "Deployment 42 running"
        );
        assert_eq!(
            description(42, Succeeded, Some("a note")),
            "Deployment 42 succeeded"
        );
        assert_eq!(
            description(42, Failed, Some("command exited with status 7")),
            "Deployment 42 failed: command exited with status 7"
        );
        assert_eq!(description(42, TimedOut, None), "Deployment 42 timed out");
        let long = description(42, Failed, Some(&"é".repeat(300)));
        assert_eq!(long.chars().count(), DESCRIPTION_MAX);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn repositories_and_commits_fit_for_a_url_only() {
        assert_eq!(segments("acme/shop"), Some(vec!["acme", "shop"]));
        assert_eq!(segments("a/b/c"), Some(vec!["a", "b", "c"]));
        for bad in ["shop", "acme//shop", "acme/..", "./shop", "acme/", "a/b\nc"] {
            assert_eq!(segments(bad), None, "{bad:?}");
        }
        assert!(is_commit("6113728f27ae82c7b1a177c8d03f9e96e0adf246"));
        assert!(is_commit(&"a".repeat(64)));
        for bad in ["", "abc", "6113728g", "-1234567", &"a".repeat(65)] {
            assert!(!is_commit(bad), "{bad:?}");
        }
        assert_eq!(encode("acme/platform/shop"), "acme%2Fplatform%2Fshop");
        assert_eq!(encode("my.repo_name-1~"), "my.repo_name-1~");
        assert_eq!(encode("a b?c#d%"), "a%20b%3Fc%23d%25");
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn outcome(status: u16, h: &[(&str, &str)], body: &str) -> Outcome {
        answer(
            StatusCode::from_u16(status).unwrap(),
            &headers(h),
            body,
            "tok-123",
        )
    }

    #[test]
    fn refusals_are_permanent_with_the_hosts_message() {
        let gitlab = r#"{"message":"Cannot transition status via :run from :success"}"#;
        assert_eq!(
            outcome(400, &[], gitlab),
            Outcome::Permanent {
                status: Some(400),
                error: "answered 400 Bad Request: Cannot transition status via :run from :success"
                    .into()
            }
        );
        let fields = r#"{"message":{"state":["is not included in the list"]}}"#;
        let Outcome::Permanent { error, .. } = outcome(400, &[], fields) else {
            panic!()
        };
        assert!(
            error.ends_with(r#"{"state":["is not included in the list"]}"#),
            "{error}"
        );
        let gitea =
            r#"{"message":"token is required","url":"https://git.example.com/api/swagger"}"#;
        assert_eq!(
            outcome(401, &[], gitea),
            Outcome::Permanent {
                status: Some(401),
                error: "answered 401 Unauthorized: token is required".into()
            }
        );
        let bitbucket = r#"{"type":"error","error":{"message":"Resource not found","detail":"There is no commit with hash abc"}}"#;
        let Outcome::Permanent { error, .. } = outcome(404, &[], bitbucket) else {
            panic!()
        };
        assert_eq!(
            error,
            "answered 404 Not Found: Resource not found (There is no commit with hash abc)"
        );
        let Outcome::Permanent { error, .. } = outcome(422, &[], "<html>nope</html>") else {
            panic!()
        };
        assert_eq!(
            error,
            "answered 422 Unprocessable Entity: <html>nope</html>"
        );
        let Outcome::Permanent { error, .. } =
            outcome(403, &[], r#"{"message":"bad token tok-123"}"#)
        else {
            panic!()
        };
        assert_eq!(
            error, "answered 403 Forbidden: bad token [redacted]",
            "a 403 without rate-limit headers"
        );
        let Outcome::Permanent { error, .. } = outcome(301, &[("location", "https://x")], "")
        else {
            panic!()
        };
        assert!(error.contains("redirects are not followed"), "{error}");
        let Outcome::Permanent { error, .. } = outcome(
            400,
            &[],
            &format!(r#"{{"message":"{}"}}"#, "x".repeat(2000)),
        ) else {
            panic!()
        };
        assert!(error.chars().count() < 600, "{error}");
    }

    #[test]
    fn rate_limits_server_errors_and_timeouts_are_retried() {
        let retry = |o: Outcome| match o {
            Outcome::Retry { status, after, .. } => (status, after),
            other => panic!("{other:?}"),
        };
        let s = Duration::from_secs;
        assert_eq!(
            retry(outcome(429, &[("retry-after", "30")], "")),
            (Some(429), Some(s(30)))
        );
        assert_eq!(retry(outcome(429, &[], "")), (Some(429), None));
        assert_eq!(
            retry(outcome(403, &[("retry-after", "7")], "")),
            (Some(403), Some(s(7)))
        );
        let reset = (time::OffsetDateTime::now_utc().unix_timestamp() + 120).to_string();
        let (status, after) = retry(outcome(
            403,
            &[("ratelimit-remaining", "0"), ("ratelimit-reset", &reset)],
            "",
        ));
        assert_eq!(status, Some(403));
        assert!(
            after.is_some_and(|a| a > s(100) && a <= s(120)),
            "{after:?}"
        );
        let (_, after) = retry(outcome(
            403,
            &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1")],
            "",
        ));
        assert_eq!(after, Some(s(1)), "a reset in the past: soon");
        assert_eq!(retry(outcome(500, &[], "{}")), (Some(500), None));
        assert_eq!(
            retry(outcome(503, &[("retry-after", "5")], "")),
            (Some(503), Some(s(5)))
        );
        assert_eq!(retry(outcome(408, &[], "")), (Some(408), None));
        let Outcome::Retry { error, .. } = outcome(502, &[], "Bad Gateway") else {
            panic!()
        };
        assert_eq!(error, "answered 502 Bad Gateway: Bad Gateway");
    }
}
