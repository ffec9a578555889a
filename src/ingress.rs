//! Ingress: the redeploy hook, `POST /hooks/APP/TOKEN`.
//!
//! A hook request only authenticates, stores and answers: token (constant time), address
//! allowlist and app rate (`crate::edges`; per-client limits ran before, in `edges::guard`),
//! client certificate (`verify.client_cert`), body limit and timeout, sender detection and
//! signature, modifiers checked against the config, then the delivery is committed (group
//! commit, fsync'd) and the answer goes out. Parsing the payload, planning and deploying happen
//! afterwards in the background (`crate::planner`, `crate::lanes`), so the answer takes
//! milliseconds whatever the deployment does.

use std::sync::Arc;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::App;
use crate::logging::Escaped;
use crate::metrics::Answer;
use crate::plan::Modifiers;
use crate::shared::Shared;
use crate::sources::{self, BodyError, Source, Verdict};
use crate::store::{DeliveryStatus, Inserted, NewDelivery, now_ms};
use crate::tls::PeerCertificate;

/// The one answer for an unknown app and a wrong token, so apps cannot be probed.
fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": "not found"})),
    )
        .into_response()
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, axum::Json(json!({"error": message.into()}))).into_response()
}

/// Finds the app whose name and token match, comparing the token in constant time. An unknown
/// app is compared against a dummy token so both failures take the same path.
fn authenticate<'a>(shared: &'a Shared, app: &str, token: &str) -> Option<&'a App> {
    let found = shared.config.apps.get(app);
    let expected = found
        .map(|a| a.token.expose())
        .unwrap_or("-no-such-app-token-");
    let ok = crate::secret::equal(expected.as_bytes(), token.as_bytes());
    found.filter(|_| ok)
}

/// `verify.client_cert = true`: the connection must have presented a client certificate that
/// the TLS layer verified against `server.client_ca` (a wrong CA or an expired certificate never
/// gets this far: the handshake fails). Checked before the body is read; such a refusal is not
/// stored as a delivery (like a wrong token, it says nothing about the sender's payload).
/// Returns the refusal, if any.
fn check_client_cert(app: &App, peer: Option<&PeerCertificate>) -> Option<Response> {
    if !app.verify.client_cert || peer.is_some() {
        return None;
    }
    tracing::warn!(app = %app.name, "hook refused: no client certificate (verify.client_cert = true)");
    Some(error(
        StatusCode::UNAUTHORIZED,
        "this hook requires a client certificate signed by the server's client CA \
         (verify.client_cert = true); the connection presented none",
    ))
}

/// The hook handler: each step below either passes the request on or answers it, in the
/// order `ARCHITECTURE.md` documents (`src/ingress.rs`).
pub(crate) async fn hook(
    State(shared): State<Arc<Shared>>,
    Path((app_name, token)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    client: Option<Extension<crate::edges::ClientAddr>>,
    peer_cert: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(app) = authenticate(&shared, &app_name, &token) else {
        shared.metrics.answer(Answer::NotFound);
        return not_found();
    };
    let peer_cert = peer_cert.as_ref().map(|e| &e.0);
    if let Some(refused) = admit(&shared, app, client.map(|c| c.0), peer_cert) {
        return refused;
    }
    let body = match read_body(shared.config.server.body_limit, &headers, body).await {
        Ok(body) => body,
        Err(refused) => {
            shared.metrics.answer(Answer::Rejected);
            return refused;
        }
    };
    let source = match source_hint(query.as_deref()) {
        Ok(hint) => sources::detect_with_hint(&headers, hint.as_deref()),
        Err(message) => {
            shared.metrics.answer(Answer::Rejected);
            return error(StatusCode::BAD_REQUEST, message);
        }
    };
    let mut delivery = new_delivery(app, source, &headers, query, body);
    let verdict = match check(app, source, &headers, &mut delivery) {
        Ok(verdict) => verdict,
        Err((code, message)) => return reject(&shared, source, delivery, code, message).await,
    };
    delivery.dedupe_key = sources::dedupe_key(source, verdict, &headers, &delivery.body);
    store(&shared, app, source, delivery).await
}

/// Whether the app takes this caller, before the body is read or anything stored (none of
/// these refusals is stored): the allowlist and the app's rate (`Edges::admit`: 403, 429),
/// then the client certificate (401). Returns the refusal, if any.
fn admit(
    shared: &Shared,
    app: &App,
    client: Option<crate::edges::ClientAddr>,
    peer_cert: Option<&PeerCertificate>,
) -> Option<Response> {
    if let Some(refused) = shared.edges.admit(&shared.metrics, app, client) {
        return Some(refused);
    }
    let refused = check_client_cert(app, peer_cert)?;
    shared.metrics.answer(Answer::Rejected);
    Some(refused)
}

/// The whole body, within `server.body_limit` (413, also when `Content-Length` announces more)
/// and `server.body_timeout` (408, and the connection is closed).
async fn read_body(limit: usize, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than the limit of {limit} bytes (server.body_limit)"),
        )
    };
    if let Some(len) = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // `to_bytes` reports an over-limit body as a length-limit error in its source chain.
        let over = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over {
            return too_large();
        }
        if let Some(t) = crate::listener::BodyTimeout::in_chain(&e) {
            let mut r = error(StatusCode::REQUEST_TIMEOUT, t.to_string());
            r.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return r;
        }
        error(StatusCode::BAD_REQUEST, format!("cannot read body: {e}"))
    })
}

/// The sender named by `?source=`, for registries that send nothing recognisable (Docker Hub,
/// Harbor, Quay: `?source=dockerhub`). A value that names no such sender is refused (400, not
/// stored) with this message.
fn source_hint(query: Option<&str>) -> Result<Option<String>, String> {
    let hint = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "source")
            .map(|(_, v)| v.into_owned())
    });
    if let Some(h) = &hint
        && Source::from_hint(h).is_none()
    {
        let known: Vec<&str> = Source::HINTABLE.iter().map(|s| s.as_str()).collect();
        return Err(format!(
            "unknown source {h:?} in ?source= (one of: {})",
            known.join(", ")
        ));
    }
    Ok(hint)
}

/// The delivery as it will be stored, received now: not yet verified, no dedupe key.
fn new_delivery(
    app: &App,
    source: Source,
    headers: &HeaderMap,
    query: Option<String>,
    body: Bytes,
) -> NewDelivery {
    NewDelivery {
        app: app.name.clone(),
        source: source.as_str().to_string(),
        event: sources::event_name(source, headers),
        source_delivery_id: sources::delivery_id(source, headers),
        dedupe_key: None,
        received_at: now_ms(),
        verified: false,
        scheme: None,
        status: DeliveryStatus::Received,
        error: None,
        query: query.filter(|q| !q.is_empty()),
        headers: crate::redact::headers_json(headers, app),
        body,
        replay_of: None,
        refused_with: None,
    }
}

/// What the request says, checked against the app (a refusal is stored as `rejected`, with
/// its status and reason): the signature (401) before anything is read from the body, then the
/// body (415, 400), then the modifiers against the config and the app's allowlist (400).
/// Records on `delivery` whether it was verified, and by which scheme.
fn check(
    app: &App,
    source: Source,
    headers: &HeaderMap,
    delivery: &mut NewDelivery,
) -> Result<Verdict, (StatusCode, String)> {
    let now_secs = delivery.received_at / 1000;
    let verdict = sources::verify(source, &app.verify, headers, &delivery.body, now_secs)
        .map_err(|e| (StatusCode::UNAUTHORIZED, e.to_string()))?;
    if let Verdict::Verified(scheme) = verdict {
        delivery.verified = true;
        delivery.scheme = Some(scheme.as_str().to_string());
    }
    sources::check_body(source, headers, &delivery.body).map_err(|e| {
        let code = match e {
            BodyError::ContentType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::Unreadable { .. } => StatusCode::BAD_REQUEST,
        };
        (code, e.to_string())
    })?;
    let modifiers = Modifiers::parse(delivery.query.as_deref().unwrap_or(""));
    modifiers
        .check_hook(app, delivery.verified)
        .and_then(|()| modifiers.validate(app))
        .map_err(|message| (StatusCode::BAD_REQUEST, message))?;
    Ok(verdict)
}

/// Stores an accepted delivery and answers: 202 (200 `pong` for a ping), 200 `duplicate`
/// when its dedupe key is already stored, 503 when the store cannot take it.
async fn store(shared: &Shared, app: &App, sender: Source, delivery: NewDelivery) -> Response {
    let source = sender.as_str();
    let count = |outcome| shared.metrics.delivery(&app.name, source, outcome);
    let event = delivery.event.clone();
    let verified = delivery.verified;
    let is_ping = event.as_deref() == Some("ping");
    match shared.intake.insert(delivery).await {
        Ok(Inserted::New(id)) => {
            count(Answer::Accepted);
            tracing::info!(delivery = id, app = %app.name, source, event = event.as_deref().unwrap_or(""), verified, "delivery accepted");
            if is_ping {
                return (
                    StatusCode::OK,
                    axum::Json(json!({"status": "pong", "delivery_id": id})),
                )
                    .into_response();
            }
            accepted(&shared.config.server.public_url, id)
        }
        Ok(Inserted::Duplicate(original)) => {
            count(Answer::Duplicate);
            tracing::info!(delivery = original, app = %app.name, source, "duplicate delivery; nothing to do");
            (
                StatusCode::OK,
                axum::Json(json!({"status": "duplicate", "delivery_id": original})),
            )
                .into_response()
        }
        Err(e) => {
            count(Answer::Unavailable);
            tracing::error!(app = %app.name, error = %e, "cannot store delivery; answering 503");
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store the delivery right now; retry later",
            );
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            );
            r
        }
    }
}

/// The 202 answer: the delivery is durable and will be planned.
pub(crate) fn accepted(public_url: &str, id: i64) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "status": "accepted",
            "delivery_id": id,
            "status_url": format!("{public_url}/api/v1/deliveries/{id}"),
        })),
    )
        .into_response()
}

/// Records a refused delivery (so the user can see why their webhook failed) and answers.
async fn reject(
    shared: &Shared,
    sender: Source,
    mut delivery: NewDelivery,
    code: StatusCode,
    message: String,
) -> Response {
    shared
        .metrics
        .delivery(&delivery.app, sender.as_str(), Answer::Rejected);
    // The reason may quote request values (a query modifier, a header): escaped.
    tracing::warn!(app = %delivery.app, source = %delivery.source, status = code.as_u16(), reason = %Escaped(&message), "delivery rejected");
    delivery.status = DeliveryStatus::Rejected;
    delivery.error = Some(message.clone());
    delivery.refused_with = Some(code.as_u16());
    delivery.dedupe_key = None;
    if let Err(e) = shared.intake.insert(delivery).await {
        tracing::warn!(error = %e, "cannot record rejected delivery");
    }
    error(code, message)
}
