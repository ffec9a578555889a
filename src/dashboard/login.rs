//! `GET /login` (the form), `POST /login` (the admin token for a session cookie; failures
//! rate-limited per client address by `crate::session`) and `POST /logout`.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Layout, Viewer, html, over_tls};
use crate::session::{self, LoginError};
use crate::shared::Shared;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// Where to go after logging in: a local path only (`/…`, not `//host` or `/\host`, no
/// control characters), else the overview.
fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn login_page(status: StatusCode, next: String, error: Option<String>) -> Response {
    let page = LoginPage {
        l: Layout::new("Log in".into(), "", None),
        next,
        error,
    };
    html(status, &page)
}

/// `GET /login[?next=PATH]`: the form (or straight on, when already logged in).
pub(crate) async fn form(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = local_next(q.next.as_deref());
    let admin = shared.config.server.admin_token.as_ref();
    if shared.sessions.check(admin, &headers).is_some() {
        return Redirect::to(&next).into_response();
    }
    let error = admin.is_none().then(|| LoginError::Disabled.to_string());
    login_page(StatusCode::OK, next, error)
}

/// `POST /login`: `token` and `next` from the form.
pub(crate) async fn submit(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let fields: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&body).into_owned().collect();
    let next = local_next(fields.get("next").map(String::as_str));
    let token = fields.get("token").map_or("", String::as_str);
    let client = shared.edges.client_addr(peer.ip(), &headers);
    let admin = shared.config.server.admin_token.as_ref();
    match shared.sessions.login(admin, token.as_bytes(), client) {
        Ok(cookie) => {
            tracing::info!(client = %client, "dashboard login");
            let set = session::set_cookie(&cookie, over_tls(&shared));
            ([(header::SET_COOKIE, set)], Redirect::to(&next)).into_response()
        }
        Err(e) => {
            tracing::warn!(client = %client, reason = %e, "dashboard login refused");
            let (status, retry) = match &e {
                LoginError::Limited(secs) => (StatusCode::TOO_MANY_REQUESTS, Some(*secs)),
                LoginError::Wrong => (StatusCode::UNAUTHORIZED, None),
                LoginError::Disabled => (StatusCode::FORBIDDEN, None),
                LoginError::Random(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
            };
            let mut r = login_page(status, next, Some(e.to_string()));
            if let Some(secs) = retry
                && let Ok(v) = secs.to_string().parse()
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

/// `POST /logout` (with the CSRF token): the session is refused from now on.
pub(crate) async fn logout(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = viewer.form(&shared, &body) {
        return *refused;
    }
    shared.sessions.logout(&viewer.session);
    let clear = session::clear_cookie(over_tls(&shared));
    ([(header::SET_COOKIE, clear)], Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::local_next;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_next(Some("/deployments?app=a")), "/deployments?app=a");
        for bad in [
            "//evil.example",
            "/\\evil",
            "https://evil.example/",
            "evil",
            "/a\nb",
        ] {
            assert_eq!(local_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_next(None), "/");
    }
}
