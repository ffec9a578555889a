//! The HTML dashboard (issue 11, item 1): server-rendered pages (askama templates under
//! `templates/`, auto-escaped), one CSS and one small JS file embedded in the binary
//! (`assets.rs`), behind the login of `crate::session`. Served at `/` on the listener that
//! serves the API (`server.admin_listen` when set).
//!
//! One file per page: `overview.rs` (`/`), `deployments.rs` (list, one deployment with its
//! steps and live log, redeploy/cancel/roll back), `deliveries.rs` (list, inspector, replay),
//! `notifications.rs` (pending and dead, retry), `alerts.rs` (Alertmanager alerts and what
//! each caused), `login.rs` (`/login`, `/logout`). Handlers
//! read the store directly with keyset paging; the buttons go through the API's own handlers
//! (`crate::api`), so a click and an API call take the same path. Live updates are the JS
//! following `/api/v1/events` (the session cookie is accepted there for GET) and re-fetching
//! the parts of the page marked `data-refresh`.
//!
//! Every response carries a strict Content-Security-Policy (no inline script or style),
//! `nosniff`, `no-referrer` and `DENY` framing (`security_headers`); every POST needs the
//! session's CSRF token (`Viewer::form`).

mod alerts;
mod assets;
mod deliveries;
mod deployments;
mod login;
mod notifications;
mod overview;
mod view;

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::session::{self, Session};
use crate::shared::Shared;

pub(crate) use view::{Layout, When};

/// Rows per list page.
const PAGE: i64 = 50;

/// Every route of the dashboard.
pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/deployments", get(deployments::list))
        .route("/deployments/{id}", get(deployments::page))
        .route("/deploy", post(deployments::deploy))
        .route("/deployments/{id}/cancel", post(deployments::cancel))
        .route("/deployments/{id}/rollback", post(deployments::rollback))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", get(deliveries::page))
        .route("/deliveries/{id}/replay", post(deliveries::replay))
        .route("/notifications", get(notifications::list))
        .route("/alerts", get(alerts::list))
        .route("/notifications/{id}/retry", post(notifications::retry))
        .route("/static/{name}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
}

/// The headers every dashboard response carries.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
             object-src 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// A logged-in viewer: the session and its CSRF token. Extracting it from a request without
/// a valid session answers with a redirect to the login page (back here afterwards).
pub(crate) struct Viewer {
    session: Session,
    csrf: String,
}

impl FromRequestParts<Arc<Shared>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Viewer, Response> {
        let admin = shared.config.server.admin_token.as_ref();
        if let (Some(admin), Some(session)) = (admin, shared.sessions.check(admin, &parts.headers))
        {
            let csrf = session::csrf_token(admin, &session);
            return Ok(Viewer { session, csrf });
        }
        let next = if parts.method == axum::http::Method::GET {
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        } else {
            "/"
        };
        let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        Err(Redirect::to(&format!("/login?next={next}")).into_response())
    }
}

impl Viewer {
    /// The fields of a dashboard form, once its CSRF token is checked (403 page if it is
    /// missing or wrong: nothing is done).
    pub(crate) fn form(
        &self,
        shared: &Shared,
        body: &[u8],
    ) -> Result<HashMap<String, String>, Box<Response>> {
        let fields: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        let given = fields.get("csrf").map_or("", String::as_str);
        let ok = shared
            .config
            .server
            .admin_token
            .as_ref()
            .is_some_and(|admin| session::csrf_ok(admin, &self.session, given));
        if !ok {
            return Err(Box::new(error_page(
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form's security token (CSRF) is missing or does not belong to your \
                 session, so nothing was changed. Reload the page and try again.",
            )));
        }
        Ok(fields)
    }

    pub(crate) fn layout(&self, title: impl Into<String>, active: &'static str) -> Layout {
        Layout::new(title.into(), active, Some(self.csrf.clone()))
    }
}

/// Whether the dashboard's listener serves TLS (its cookie is then `Secure`).
fn over_tls(shared: &Shared) -> bool {
    shared.config.server.tls.is_some() && shared.config.server.admin_listen.is_none()
}

/// A rendered page with `status`.
pub(crate) fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error\n").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    l: Layout,
    heading: String,
    message: String,
}

/// A page that says what went wrong, with `status`.
pub(crate) fn error_page(status: StatusCode, heading: &str, message: &str) -> Response {
    let page = ErrorPage {
        l: Layout::new(heading.to_string(), "", None),
        heading: heading.to_string(),
        message: message.to_string(),
    };
    html(status, &page)
}

/// A store failure as a page (logged; no details for the browser).
pub(crate) fn store_error(e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "store error in dashboard page");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Store unavailable",
        "ferry cannot read its store right now. Try again in a moment.",
    )
}

/// What an API handler answered to a dashboard button: on success, a redirect to `to` (which
/// may use the delivery id a deploy, rollback or replay stored); on failure, the API's status
/// and message as a page.
pub(crate) async fn after_action(
    answer: Result<Response, crate::api::ApiError>,
    to: impl FnOnce(Option<i64>) -> String,
) -> Response {
    match answer {
        Ok(r) if r.status().is_success() => {
            let body = axum::body::to_bytes(r.into_body(), 64 * 1024)
                .await
                .unwrap_or_default();
            let delivery = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["delivery_id"].as_i64());
            Redirect::to(&to(delivery)).into_response()
        }
        Ok(r) => error_page(r.status(), "Not done", "ferry did not do it."),
        Err(crate::api::ApiError(status, message)) => error_page(status, "Not done", &message),
    }
}

/// A list filter's query value: `None` when absent or blank (an empty `<select>` sends `state=`).
pub(crate) fn blank(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// A list's state (or status) filter parsed, or the 400 page naming the unknown value.
pub(crate) fn state_filter<T>(value: Option<&str>, title: &str) -> Result<Option<T>, Box<Response>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value
        .map(str::parse::<T>)
        .transpose()
        .map_err(|e| Box::new(error_page(StatusCode::BAD_REQUEST, title, &e.to_string())))
}

/// The link to the next, older page of a list of `shown` rows cut at [`PAGE`]:
/// `path?KEY=VALUE&before=ID` with the list's filter kept (`filter`: a state's name, checked
/// by [`state_filter`], so nothing needs escaping), or none when the list ended.
pub(crate) fn older_link(
    path: &str,
    filter: Option<(&str, &str)>,
    shown: usize,
    last_id: Option<i64>,
) -> Option<String> {
    let before = last_id.filter(|_| shown as i64 == PAGE)?;
    Some(match filter {
        Some((key, value)) => format!("{path}?{key}={value}&before={before}"),
        None => format!("{path}?before={before}"),
    })
}

/// A page for an id that names nothing.
pub(crate) fn not_found(what: &str) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("There is no such {what}."),
    )
}

#[cfg(test)]
mod tests {
    use super::{PAGE, older_link};

    /// A full page links to the rows before its last, keeping the filter; a short one ends.
    #[test]
    fn a_full_page_links_to_the_older_rows_with_its_filter() {
        let full = PAGE as usize;
        assert_eq!(
            older_link("/alerts", Some(("outcome", "acted")), full, Some(41)),
            Some("/alerts?outcome=acted&before=41".to_string())
        );
        assert_eq!(
            older_link("/notifications", None, full, Some(7)),
            Some("/notifications?before=7".to_string())
        );
        assert_eq!(older_link("/alerts", None, full - 1, Some(7)), None);
        assert_eq!(older_link("/alerts", None, 0, None), None);
    }
}
