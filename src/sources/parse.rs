//! Parsing (planner only, never on the request path): a stored delivery becomes an [`Event`]
//! through its sender's parser, dispatched here by sender.

use super::{
    Event, Source, alertmanager, bitbucket, dockerhub, generic, gitea, github, gitlab, harbor,
    quay, registry, standard,
};

/// Why a stored delivery could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("form body has no `payload` field")]
    NoFormPayload,
    #[error("payload field `{0}` is missing or has the wrong type")]
    Field(&'static str),
    /// A payload ferry cannot read, with why (e.g. an Alertmanager message version).
    #[error("{0}")]
    Unsupported(String),
}

/// What the planner knows of a stored delivery.
pub struct Stored<'a> {
    pub event: Option<&'a str>,
    /// Looks up a stored header by lower-case name.
    pub header: &'a (dyn Fn(&str) -> Option<String> + Sync),
    pub body: &'a [u8],
}

/// Turns a stored delivery into an event.
pub fn parse(source: Source, d: &Stored<'_>) -> Result<Event, ParseError> {
    let ct = (d.header)("content-type");
    let event = d.event.unwrap_or("");
    match source {
        Source::Github => github::parse(event, ct.as_deref(), d.body),
        Source::Gitlab => gitlab::parse(event, d.body),
        Source::Bitbucket => bitbucket::parse(event, d.body),
        Source::Gitea => gitea::parse(event, ct.as_deref(), d.body),
        Source::Standard => Ok(standard::parse(d)),
        Source::Registry => registry::parse(d.body),
        Source::Dockerhub => dockerhub::parse(d.body),
        Source::Harbor => harbor::parse(d.body),
        Source::Quay => quay::parse(d.body),
        Source::Alertmanager => alertmanager::parse(d.body),
        Source::Manual if d.event == Some(ROLLBACK_EVENT) => rollback(d.body),
        Source::Manual if d.event == Some(RECONCILE_EVENT) => reconcile(d.body),
        Source::Generic | Source::Manual => Ok(generic::parse(d.body)),
    }
}

/// The event name of the manual deliveries that `ferry rollback` stores.
pub(crate) const ROLLBACK_EVENT: &str = "rollback";

/// The body of a rollback delivery, as the API writes it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct RollbackRequest {
    pub(crate) service: String,
    pub(crate) to: Option<i64>,
}

fn rollback(body: &[u8]) -> Result<Event, ParseError> {
    let r: RollbackRequest =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(Event::Rollback {
        service: r.service,
        to: r.to,
    })
}

/// The event name of the manual deliveries that the reconcile task (`crate::reconcile`) stores.
pub(crate) const RECONCILE_EVENT: &str = "reconcile";

/// The body of a reconcile delivery, as the reconcile task writes it.
#[derive(Debug, serde::Deserialize)]
struct ReconcileRequest {
    service: String,
}

fn reconcile(body: &[u8]) -> Result<Event, ParseError> {
    let r: ReconcileRequest =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(Event::Reconcile { service: r.service })
}
