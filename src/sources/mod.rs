//! Sources: who sent a delivery, how to verify it, and what it means.
//!
//! One file per sender. Each knows its own headers, signature scheme and payload format, and
//! nothing of the store or planning. On the request path ingress calls [`detect`],
//! [`verify`], [`check_body`], [`delivery_id`] and [`dedupe_key`]: they read headers, hash the
//! body and check that a known sender's body is readable. [`parse`] runs later, in the planner, and turns a
//! stored delivery into an [`Event`] that planning understands.

pub mod auth;
pub mod bitbucket;
pub mod dockerhub;
pub mod generic;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod harbor;
pub mod quay;
pub mod registry;
pub mod setup;
pub mod signature;
pub mod standard;
pub mod values;

use http::HeaderMap;

use crate::config::Verify;
use crate::image_ref::image_repository;

pub use setup::setup_lines;

/// Who sent a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Github,
    Gitlab,
    /// Bitbucket Cloud and Bitbucket Data Center/Server.
    Bitbucket,
    /// Gitea and Forgejo (and Gogs).
    Gitea,
    /// Anything signed per standardwebhooks.com.
    Standard,
    /// CNCF distribution (`registry`) notifications, recognised by their `Content-Type`.
    Registry,
    /// Docker Hub repository webhooks (named by `?source=dockerhub`).
    Dockerhub,
    /// Harbor webhooks, Default or CloudEvents format (named by `?source=harbor`).
    Harbor,
    /// Quay repository notifications (named by `?source=quay`).
    Quay,
    /// Anything else: curl, CI, a monitoring system. The URL token is its authentication.
    Generic,
    /// `ferry deploy` / `POST /api/v1/apps/APP/deploy`.
    Manual,
}

impl Source {
    pub const ALL: [Source; 11] = [
        Source::Github,
        Source::Gitlab,
        Source::Bitbucket,
        Source::Gitea,
        Source::Standard,
        Source::Registry,
        Source::Dockerhub,
        Source::Harbor,
        Source::Quay,
        Source::Generic,
        Source::Manual,
    ];

    /// Senders that `?source=` may name: they send nothing that identifies them (or, for
    /// distribution, only a `Content-Type`), and they sign nothing.
    pub const HINTABLE: [Source; 4] = [
        Source::Registry,
        Source::Dockerhub,
        Source::Harbor,
        Source::Quay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Github => "github",
            Source::Gitlab => "gitlab",
            Source::Bitbucket => "bitbucket",
            Source::Gitea => "gitea",
            Source::Standard => "standard",
            Source::Registry => "registry",
            Source::Dockerhub => "dockerhub",
            Source::Harbor => "harbor",
            Source::Quay => "quay",
            Source::Generic => "generic",
            Source::Manual => "manual",
        }
    }

    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The sender a `?source=` value names, if it is one of [`Source::HINTABLE`] (ASCII case
    /// and surrounding spaces ignored). `None` for anything else, so the caller can refuse it.
    pub fn from_hint(hint: &str) -> Option<Source> {
        let hint = hint.trim();
        Source::HINTABLE
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(hint))
    }

    /// Senders without a signature of their own, verified only by the generic schemes (the
    /// custom HMAC header, `Authorization`), which are therefore required of them when
    /// configured.
    fn generic_auth(self) -> bool {
        matches!(
            self,
            Source::Generic | Source::Registry | Source::Dockerhub | Source::Harbor | Source::Quay
        )
    }

    /// Content types this sender uses; `None` for senders whose body ferry never interprets.
    fn content_types(self) -> Option<&'static [&'static str]> {
        const JSON: &[&str] = &["application/json"];
        const JSON_OR_FORM: &[&str] = &["application/json", "application/x-www-form-urlencoded"];
        const REGISTRY: &[&str] = &[registry::EVENTS_V1, registry::EVENTS_V2, "application/json"];
        const HARBOR: &[&str] = &["application/json", harbor::CLOUDEVENTS];
        match self {
            Source::Github | Source::Gitea => Some(JSON_OR_FORM),
            Source::Gitlab | Source::Bitbucket | Source::Standard => Some(JSON),
            Source::Registry => Some(REGISTRY),
            Source::Harbor => Some(HARBOR),
            Source::Dockerhub | Source::Quay => Some(JSON),
            Source::Generic | Source::Manual => None,
        }
    }
}

/// Recognises the sender from its headers. Gitea and Forgejo also send GitHub's headers, and
/// GitLab 19 also sends Standard Webhooks headers, so the more specific senders go first.
/// A distribution registry is recognised by its events media type; Docker Hub, Harbor and Quay
/// send nothing that identifies them (see [`detect_with_hint`]).
pub fn detect(headers: &HeaderMap) -> Source {
    if gitea::detect(headers) {
        Source::Gitea
    } else if headers.contains_key(github::EVENT_HEADER) {
        Source::Github
    } else if headers.contains_key(gitlab::EVENT_HEADER) {
        Source::Gitlab
    } else if headers.contains_key(bitbucket::EVENT_HEADER) {
        Source::Bitbucket
    } else if standard::detect(headers) {
        Source::Standard
    } else if registry::detect(headers) {
        Source::Registry
    } else {
        Source::Generic
    }
}

/// [`detect`], unless the hook URL names the sender with `?source=registry|dockerhub|harbor|quay`
/// (`hint`): Docker Hub, Harbor and Quay cannot be told apart from a generic sender by their
/// headers, so a hook meant for one of them names it in its URL. The hint forces the source
/// (it wins over headers). A hint that names no [`Source::HINTABLE`] sender is ignored here;
/// [`Source::from_hint`] tells the caller whether to refuse it instead.
///
/// Forcing is safe: these senders are verified like generic ones (the configured HMAC header
/// or `Authorization` is required of them), so a hint never skips a check that a generic
/// delivery would face.
pub fn detect_with_hint(headers: &HeaderMap, hint: Option<&str>) -> Source {
    hint.and_then(Source::from_hint)
        .unwrap_or_else(|| detect(headers))
}

/// The sender's event name, from its headers.
pub fn event_name(source: Source, headers: &HeaderMap) -> Option<String> {
    let name = match source {
        Source::Github => header(headers, github::EVENT_HEADER),
        Source::Gitlab => header(headers, gitlab::EVENT_HEADER),
        Source::Bitbucket => header(headers, bitbucket::EVENT_HEADER),
        Source::Gitea => gitea::event(headers),
        // Registries name their events in the body only.
        Source::Standard
        | Source::Registry
        | Source::Dockerhub
        | Source::Harbor
        | Source::Quay
        | Source::Generic
        | Source::Manual => None,
    };
    name.map(|n| n.chars().take(100).collect())
}

/// The sender's own delivery id: the idempotency key. Any client may send `Idempotency-Key`.
pub fn delivery_id(source: Source, headers: &HeaderMap) -> Option<String> {
    let id = match source {
        Source::Github => header(headers, github::DELIVERY_HEADER),
        // Idempotency-Key is stable across GitLab's retries and resends; the event UUID is
        // shared by recursive hooks, so it only stands in on old versions.
        Source::Gitlab => header(headers, "idempotency-key")
            .or_else(|| header(headers, gitlab::EVENT_UUID_HEADER)),
        Source::Bitbucket => {
            header(headers, "x-request-uuid").or_else(|| header(headers, "x-request-id"))
        }
        Source::Gitea => gitea::delivery(headers),
        Source::Standard => header(headers, standard::ID_HEADER),
        // Registries send no delivery id in their headers: distribution and Harbor CloudEvents
        // carry per-event ids in the body (`ImagePush::event_id`), Docker Hub and Quay none.
        Source::Registry
        | Source::Dockerhub
        | Source::Harbor
        | Source::Quay
        | Source::Generic
        | Source::Manual => None,
    }
    .or_else(|| header(headers, "idempotency-key"));
    id.map(|s| s.chars().take(200).collect())
}

/// The dedupe key of senders that send no delivery id but whose every event body is unique:
/// a hash of the body, so a redelivery (the same body again) is a duplicate. Distribution and
/// Harbor bodies carry per-event ids, Docker Hub's carry `pushed_at`. Quay's carry neither id
/// nor time — two real pushes of one tag look the same — so Quay is not deduplicated here;
/// the docker executor then finds the container already runs the digest and does nothing.
pub fn body_key(source: Source, body: &[u8]) -> Option<String> {
    use sha2::Digest;
    match source {
        Source::Registry | Source::Harbor | Source::Dockerhub if !body.is_empty() => Some(format!(
            "body-sha256:{}",
            hex::encode(sha2::Sha256::digest(body))
        )),
        _ => None,
    }
}

/// Why a delivery failed verification (answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{header} is missing: this app requires signed deliveries")]
    Missing { header: String },
    #[error("{header} is malformed: {why}")]
    Malformed { header: String, why: String },
    #[error("{header} does not match the body: check the webhook secret")]
    Mismatch { header: String },
    #[error("{header} {why}; refusing a possible replay")]
    Expired { header: String, why: String },
    /// Nothing verified the delivery, and no configured scheme applies to the sender it claims.
    #[error(
        "this app requires a verified delivery (configured: {schemes}), and none of them can verify this {sender} delivery: {hint}"
    )]
    Required {
        sender: &'static str,
        schemes: String,
        hint: String,
    },
}

/// What verification established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A configured scheme matched (its name; `gitlab-signing` for a GitLab `whsec_` token).
    Verified(&'static str),
    /// Accepted on the URL token alone: the app configures no scheme, or it allows unsigned
    /// requests (`verify.allow_unsigned`) and this one claims no sender.
    Unverified,
}

/// Verifies a delivery with the app's configured schemes. One rule, whatever the sender
/// claims to be: once an app configures any scheme, a delivery must be verified by one of them.
///
/// - The claimed sender's own scheme (github, gitlab, bitbucket, gitea, standard), when
///   configured, must match: it is what that sender sends.
/// - Otherwise the sender-independent schemes apply to any claimed sender: the custom HMAC
///   header, `Authorization` (bearer/basic), and a Standard Webhooks signature when its headers
///   are present. Any presented scheme that fails is a 401; one success verifies.
/// - Nothing verified: accepted unverified only if the app configures no scheme at all, or if
///   it sets `allow_unsigned` and the request claims no sender (then it carries no version:
///   the planner redeploys what is configured). Anything else is a 401 that names what is
///   missing, e.g. a GitLab-looking request to an app that only verifies GitHub.
pub fn verify(
    source: Source,
    v: &Verify,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<Verdict, VerifyError> {
    let own = match source {
        Source::Github if !v.github.is_empty() => {
            Some(("github", github::verify(&v.github, headers, body)))
        }
        Source::Gitlab if !v.gitlab.is_empty() => {
            let scheme = if gitlab::signing(&v.gitlab, headers) {
                GITLAB_SIGNING
            } else {
                "gitlab"
            };
            Some((
                scheme,
                gitlab::verify(&v.gitlab, headers, body, now_secs, v.standard_tolerance),
            ))
        }
        Source::Bitbucket if !v.bitbucket.is_empty() => {
            Some(("bitbucket", bitbucket::verify(&v.bitbucket, headers, body)))
        }
        Source::Gitea if !v.gitea.is_empty() => {
            Some(("gitea", gitea::verify(&v.gitea, headers, body)))
        }
        Source::Standard if !v.standard.is_empty() => Some((
            "standard",
            standard::verify(&v.standard, headers, body, now_secs, v.standard_tolerance),
        )),
        _ => None,
    };
    if let Some((scheme, result)) = own {
        result?;
        return Ok(Verdict::Verified(scheme));
    }

    // Sender-independent schemes: checked when presented, whoever the request claims to be.
    let mut verified = None;
    let mut missing = None;
    if !v.standard.is_empty() && headers.contains_key(standard::SIGNATURE_HEADER) {
        standard::verify(&v.standard, headers, body, now_secs, v.standard_tolerance)?;
        verified = Some("standard");
    }
    if let Some(h) = &v.hmac {
        match generic::verify_hmac(h, headers, body) {
            Ok(()) => verified = verified.or(Some("hmac")),
            Err(VerifyError::Missing { header }) => {
                missing.get_or_insert(VerifyError::Missing { header });
            }
            Err(e) => return Err(e),
        }
    }
    if !v.bearer.is_empty() || !v.basic.is_empty() {
        match auth::verify(&v.bearer, &v.basic, headers) {
            Ok(scheme) => verified = verified.or(Some(scheme)),
            Err(VerifyError::Missing { header }) => {
                missing.get_or_insert(VerifyError::Missing { header });
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(scheme) = verified {
        return Ok(Verdict::Verified(scheme));
    }
    let schemes = v.schemes();
    if !v.require && schemes.is_empty() {
        return Ok(Verdict::Unverified);
    }
    if v.allow_unsigned && source == Source::Generic {
        return Ok(Verdict::Unverified);
    }
    // The header a configured sender-independent scheme wants, if any: the most useful answer.
    if let Some(e) = missing {
        return Err(e);
    }
    let hint = match source {
        Source::Generic | Source::Manual => {
            "sign it with a scheme for your client (verify.hmac, verify.bearer or verify.basic), or set verify.allow_unsigned = true to let unsigned requests redeploy what is configured (never a version they name)".to_string()
        }
        s if s.generic_auth() => format!(
            "{} signs nothing; set verify.bearer, verify.basic or verify.hmac and send those credentials",
            s.as_str()
        ),
        s => format!(
            "set verify.{} to the webhook's secret (or the request is not from the sender it claims to be)",
            s.as_str()
        ),
    };
    Err(VerifyError::Required {
        sender: source.as_str(),
        schemes: if schemes.is_empty() {
            "none".into()
        } else {
            schemes.join(", ")
        },
        hint,
    })
}

/// The scheme name of a GitLab delivery verified by a `whsec_` signing token (Standard
/// Webhooks: its id and timestamp are signed).
const GITLAB_SIGNING: &str = "gitlab-signing";

/// The idempotency key of an accepted delivery (the unique index on `(app, dedupe_key)`).
///
/// GitHub, Gitea and Bitbucket sign the body but no id or time, and GitLab's plain
/// `X-Gitlab-Token` signs nothing; their delivery id headers are not covered by anything. So a
/// delivery verified by one of those schemes is keyed by a hash of its body: a captured body
/// sent again under a new delivery id is a duplicate, and so is the sender's own redelivery
/// (same id, same body). Distinct pushes have distinct bodies (another `after`, another
/// `before`, GitHub's `pushed_at`). The key does not name the sender, so the same signed body
/// presented as another sender (GitHub's signature under Gitea's header) is a duplicate too.
/// The custom `hmac` scheme verifies any claimed sender: where that sender's body names a
/// version, it is keyed the same way; a generic sender's body names none (a plain redeploy),
/// so a CI job may send the same body twice. Deliveries verified by a Standard Webhooks
/// signature are keyed by their signed `webhook-id`. Everything else keeps the sender's
/// delivery id (or `Idempotency-Key`) — prefixed `unverified:` when nothing verified it, so
/// that a request holding only the hook URL can never take the key of a signed delivery.
pub fn dedupe_key(
    source: Source,
    verdict: Verdict,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<String> {
    use sha2::Digest;
    let signed_body = || {
        format!(
            "signed-body-sha256:{}",
            hex::encode(sha2::Sha256::digest(body))
        )
    };
    let signed = match verdict {
        Verdict::Verified("github" | "gitea" | "bitbucket" | "gitlab") => Some(signed_body()),
        Verdict::Verified("hmac") if source != Source::Generic => Some(signed_body()),
        Verdict::Verified("standard" | GITLAB_SIGNING) => header(headers, standard::ID_HEADER)
            .map(|id| format!("signed-id:{}", id.chars().take(200).collect::<String>())),
        _ => None,
    };
    signed.or_else(|| {
        let key = delivery_id(source, headers).or_else(|| body_key(source, body))?;
        Some(match verdict {
            Verdict::Unverified => format!("unverified:{key}"),
            Verdict::Verified(_) => key,
        })
    })
}

/// Why a known sender's body cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Answered 415.
    #[error("{sender} sends {expected}, not {got:?}")]
    ContentType {
        sender: &'static str,
        expected: String,
        got: String,
    },
    /// Answered 400.
    #[error("cannot read the {sender} payload: {why}")]
    Unreadable { sender: &'static str, why: String },
}

/// Checks, on the request path, that a known sender's body is one it would send: the content
/// type it uses and well-formed JSON (the form's `payload` field for form deliveries). Only
/// well-formedness is checked here; what the payload means is read later by the planner.
pub fn check_body(source: Source, headers: &HeaderMap, body: &[u8]) -> Result<(), BodyError> {
    let Some(allowed) = source.content_types() else {
        return Ok(());
    };
    let sender = source.as_str();
    let ct = content_type(headers).unwrap_or_default();
    let essence = essence(&ct);
    // A missing content type is tolerated (curl tests of a hook); a wrong one is not.
    if !essence.is_empty() && !allowed.contains(&essence.as_str()) {
        return Err(BodyError::ContentType {
            sender,
            expected: allowed.join(" or "),
            got: ct,
        });
    }
    let json =
        json_document(Some(&essence), body).map_err(|why| BodyError::Unreadable { sender, why })?;
    serde_json::from_slice::<serde::de::IgnoredAny>(&json)
        .map(|_| ())
        .map_err(|e| BodyError::Unreadable {
            sender,
            why: format!("body is not valid JSON ({e})"),
        })
}

/// The JSON document of a body: the body itself, or the decoded `payload` field of a form.
pub(crate) fn json_document(content_type: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    let is_form = content_type
        .map(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    if !is_form {
        return Ok(body.to_vec());
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned().into_bytes())
        .ok_or_else(|| "form body has no `payload` field".to_string())
}

/// A git ref as pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
    Other(String),
}

impl GitRef {
    pub fn parse(full: &str) -> GitRef {
        if let Some(b) = full.strip_prefix("refs/heads/") {
            GitRef::Branch(b.to_string())
        } else if let Some(t) = full.strip_prefix("refs/tags/") {
            GitRef::Tag(t.to_string())
        } else {
            GitRef::Other(full.to_string())
        }
    }
}

/// One ref update in a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitPush {
    /// `owner/name` (Bitbucket Data Center: `PROJECT/slug`).
    pub repo: String,
    /// The full ref, e.g. `refs/heads/main`.
    pub full_ref: String,
    pub git_ref: GitRef,
    /// The commit to deploy (for annotated tags the commit, not the tag object).
    pub commit: Option<String>,
    /// Commit time (or the sender's event time), unix milliseconds: orders events per service.
    pub time: Option<i64>,
    /// The ref was deleted: nothing to deploy.
    pub deleted: bool,
    /// History was rewritten on purpose: never stale.
    pub forced: bool,
}

/// One pushed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePush {
    /// Repository as the registry names it, e.g. `registry.example.com/acme/api` when the
    /// sender gives a host, else `acme/api` (Docker Hub: `namespace/name`; official images
    /// `library/name`).
    pub repository: String,
    /// The pushed tag; `None` when the image was pushed by digest only. Always a valid tag
    /// (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
    pub tag: Option<String>,
    /// `sha256:…` manifest digest when the sender gives one (distribution, Harbor, GHCR); None
    /// for Docker Hub and Quay (resolved later against the registry). Always well-formed
    /// (`sha256:` + 64 or `sha512:` + 128 lower-case hex digits).
    pub digest: Option<String>,
    /// Event time, unix ms, when given.
    pub time: Option<i64>,
    /// The sender's per-event id, when it has one (distribution `events[].id`, CloudEvents
    /// `id`).
    pub event_id: Option<String>,
}

/// What a delivery means once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The sender checks the hook works; deploys nothing.
    Ping,
    /// A push: one or more ref updates (Bitbucket pushes can carry several).
    Push(Vec<GitPush>),
    /// Images pushed to a registry: one or more references (distribution batches several).
    ImagePush(Vec<ImagePush>),
    /// A sender event that never deploys (e.g. GitHub `issues`); named for the record.
    Ignored(String),
    /// No git or image information: redeploy the (selected) services. `time` is the sender's
    /// event time when it gives one (e.g. `webhook-timestamp`).
    Redeploy { time: Option<i64> },
    /// `ferry rollback`: deploy a service's previous successful version again (or the version
    /// of deployment `to`). Only ever stored by the API, never parsed from a hook.
    Rollback { service: String, to: Option<i64> },
}

impl Event {
    /// The `FERRY_EVENT` name of deployments this event causes.
    pub fn name(&self, source: Source) -> &str {
        match (self, source) {
            (Event::Ping, _) => "ping",
            (Event::Push(_), _) => "push",
            (Event::ImagePush(_), _) => "image_push",
            (Event::Ignored(name), _) => name,
            (Event::Redeploy { .. }, Source::Manual) => "manual",
            (Event::Redeploy { .. }, _) => "redeploy",
            (Event::Rollback { .. }, _) => "rollback",
        }
    }
}

/// The event name of the manual deliveries that `ferry rollback` stores.
pub const ROLLBACK_EVENT: &str = "rollback";

/// The body of a rollback delivery, as the API writes it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RollbackRequest {
    pub service: String,
    pub to: Option<i64>,
}

fn rollback(body: &[u8]) -> Result<Event, ParseError> {
    let r: RollbackRequest =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(Event::Rollback {
        service: r.service,
        to: r.to,
    })
}

/// Why a stored delivery could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("form body has no `payload` field")]
    NoFormPayload,
    #[error("payload field `{0}` is missing or has the wrong type")]
    Field(&'static str),
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
        Source::Manual if d.event == Some(ROLLBACK_EVENT) => rollback(d.body),
        Source::Generic | Source::Manual => Ok(generic::parse(d.body)),
    }
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    header(headers, "content-type").map(str::to_string)
}

/// A media type without its parameters, lower-cased: `Application/JSON; charset=utf-8` →
/// `application/json`.
pub(crate) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `sha256:` + 64 or `sha512:` + 128 lower-case hex digits: a digest ferry may hand to a
/// registry client. Anything else (GitHub examples carry 40-hex "digests") is not one.
pub(crate) fn digest(text: &str) -> Option<String> {
    let (algorithm, hex) = text.trim().split_once(':')?;
    let len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| format!("{algorithm}:{hex}"))
}

/// A tag as registries accept it (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`); `None` for anything
/// else, including a digest sent in a tag field (Harbor does that for pushes by digest).
pub(crate) fn image_tag(text: &str) -> Option<String> {
    let t = text.trim();
    let mut bytes = t.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    (first_ok && rest_ok && t.len() <= 128).then(|| t.to_string())
}

/// Unix seconds (an integer, or a float as some senders write them) as unix milliseconds.
pub(crate) fn epoch_secs_ms(value: &serde_json::Value) -> Option<i64> {
    if let Some(s) = value.as_i64() {
        return s.checked_mul(1000);
    }
    let f = value.as_f64()?;
    // Beyond ±2^53 ms a float is not a time anyone sent; the range check keeps the cast exact.
    let ms = (f * 1000.0).round();
    (ms.is_finite() && ms.abs() < 9_007_199_254_740_992.0).then_some(ms as i64)
}

/// Parses an RFC 3339 time (also `+hhmm` offsets, as Bitbucket Data Center writes them) into
/// unix milliseconds.
pub(crate) fn rfc3339_ms(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .or_else(|| {
            // 2019-06-17T19:37:57+1000 → 2019-06-17T19:37:57+10:00
            let cut = text.len().checked_sub(5)?;
            let (head, tail) = text.split_at_checked(cut)?;
            let offset =
                tail.starts_with(['+', '-']) && tail[1..].bytes().all(|b| b.is_ascii_digit());
            offset
                .then(|| format!("{head}{}:{}", &tail[..3], &tail[3..]))
                .and_then(|fixed| time::OffsetDateTime::parse(&fixed, &Rfc3339).ok())
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

pub(crate) const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn detection_prefers_specific_senders() {
        assert_eq!(
            detect(&headers(&[
                ("X-GitHub-Event", "push"),
                ("X-Gitea-Event", "push")
            ])),
            Source::Gitea
        );
        assert_eq!(
            detect(&headers(&[
                ("X-Forgejo-Event", "push"),
                ("X-GitHub-Event", "push")
            ])),
            Source::Gitea
        );
        assert_eq!(
            detect(&headers(&[("X-GitHub-Event", "push")])),
            Source::Github
        );
        assert_eq!(
            detect(&headers(&[
                ("X-Gitlab-Event", "Push Hook"),
                ("webhook-id", "a"),
                ("webhook-timestamp", "1"),
                ("webhook-signature", "v1,x")
            ])),
            Source::Gitlab
        );
        assert_eq!(
            detect(&headers(&[("X-Event-Key", "repo:push")])),
            Source::Bitbucket
        );
        assert_eq!(
            detect(&headers(&[
                ("webhook-id", "a"),
                ("webhook-timestamp", "1"),
                ("webhook-signature", "v1,x")
            ])),
            Source::Standard
        );
        assert_eq!(detect(&HeaderMap::new()), Source::Generic);
        let registry = headers(&[(
            "Content-Type",
            "application/vnd.docker.distribution.events.v1+json",
        )]);
        assert_eq!(detect(&registry), Source::Registry);
        assert_eq!(
            detect(&headers(&[("Content-Type", "application/json")])),
            Source::Generic
        );
        // Senders that identify themselves come first.
        assert_eq!(
            detect(&headers(&[
                ("X-GitHub-Event", "push"),
                (
                    "Content-Type",
                    "application/vnd.docker.distribution.events.v2+json"
                )
            ])),
            Source::Github
        );
    }

    #[test]
    fn hints_name_registries_only() {
        let none = HeaderMap::new();
        for (hint, source) in [
            ("dockerhub", Source::Dockerhub),
            ("harbor", Source::Harbor),
            (" Quay ", Source::Quay),
            ("registry", Source::Registry),
        ] {
            assert_eq!(Source::from_hint(hint), Some(source));
            assert_eq!(detect_with_hint(&none, Some(hint)), source);
        }
        for hint in ["github", "generic", "manual", "docker hub", ""] {
            assert_eq!(Source::from_hint(hint), None, "{hint}");
            assert_eq!(detect_with_hint(&none, Some(hint)), Source::Generic);
        }
        assert_eq!(detect_with_hint(&none, None), Source::Generic);
        // The hint wins over headers: the hook's URL says who it was given to.
        let github = headers(&[("X-GitHub-Event", "push")]);
        assert_eq!(detect_with_hint(&github, Some("harbor")), Source::Harbor);
        assert_eq!(detect_with_hint(&github, Some("nope")), Source::Github);
        for s in Source::HINTABLE {
            assert!(Source::ALL.contains(&s));
            assert_eq!(Source::from_name(s.as_str()), Some(s));
        }
    }

    #[test]
    fn registries_need_configured_credentials_like_generic_senders() {
        use crate::secret::Secret;
        let v = Verify {
            bearer: vec![Secret::new("token")],
            ..Verify::default()
        };
        let bare = HeaderMap::new();
        let bearer = headers(&[("Authorization", "Bearer token")]);
        let wrong = headers(&[("Authorization", "Bearer other")]);
        for source in [
            Source::Generic,
            Source::Registry,
            Source::Dockerhub,
            Source::Harbor,
            Source::Quay,
        ] {
            assert_eq!(
                verify(source, &v, &bare, b"{}", 0),
                Err(VerifyError::Missing {
                    header: "Authorization".into()
                }),
                "{source:?}"
            );
            assert_eq!(
                verify(source, &v, &bearer, b"{}", 0),
                Ok(Verdict::Verified("bearer"))
            );
            assert!(matches!(
                verify(source, &v, &wrong, b"{}", 0),
                Err(VerifyError::Mismatch { .. })
            ));
        }
        // Git senders too: with only `bearer` configured, bearer is what verifies them.
        assert_eq!(
            verify(Source::Github, &v, &bare, b"{}", 0),
            Err(VerifyError::Missing {
                header: "Authorization".into()
            })
        );
        assert_eq!(
            verify(Source::Github, &v, &bearer, b"{}", 0),
            Ok(Verdict::Verified("bearer"))
        );
    }

    /// Builds a `Verify` as the config does: `require` follows whether a scheme is set.
    fn verify_with(f: impl FnOnce(&mut Verify)) -> Verify {
        let mut v = Verify {
            standard_tolerance: std::time::Duration::from_secs(300),
            ..Verify::default()
        };
        f(&mut v);
        v.require = v.configured();
        v
    }

    fn github_signed(secret: &str, body: &[u8], event: &str) -> HeaderMap {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        headers(&[("X-GitHub-Event", event), ("X-Hub-Signature-256", &sig)])
    }

    /// The verification rule, claimed sender × configured schemes.
    #[test]
    fn every_claimed_sender_needs_a_configured_scheme() {
        use crate::secret::Secret;
        let body = br#"{"ref":"refs/heads/main"}"#;
        let github_only = verify_with(|v| v.github = vec![Secret::new("gh")]);
        let bearer_only = verify_with(|v| v.bearer = vec![Secret::new("tok")]);
        let nothing = verify_with(|_| {});
        let gitlab = headers(&[("X-Gitlab-Event", "Push Hook")]);
        let gitlab_token = headers(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "gh")]);
        let package = headers(&[("X-GitHub-Event", "package")]);
        let bearer = headers(&[
            ("X-GitHub-Event", "package"),
            ("Authorization", "Bearer tok"),
        ]);
        let wrong_bearer = headers(&[
            ("X-GitHub-Event", "package"),
            ("Authorization", "Bearer no"),
        ]);
        let bare = HeaderMap::new();

        // A spoofed GitLab push to an app that verifies only GitHub: nothing can verify it.
        let e = verify(Source::Gitlab, &github_only, &gitlab, body, 0).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::Required {
                    sender: "gitlab",
                    ..
                }
            ),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("configured: github") && text.contains("verify.gitlab"),
            "{text}"
        );
        // A token that happens to equal another scheme's secret verifies nothing either.
        assert!(verify(Source::Gitlab, &github_only, &gitlab_token, body, 0).is_err());
        // The claimed sender's own scheme decides when configured.
        let gh = github_signed("gh", body, "push");
        assert_eq!(
            verify(Source::Github, &github_only, &gh, body, 0),
            Ok(Verdict::Verified("github"))
        );
        assert!(matches!(
            verify(
                Source::Github,
                &github_only,
                &github_signed("x", body, "push"),
                body,
                0
            ),
            Err(VerifyError::Mismatch { .. })
        ));
        // A curl request to a GitHub-only app: refused, naming allow_unsigned.
        let e = verify(Source::Generic, &github_only, &bare, body, 0).unwrap_err();
        assert!(e.to_string().contains("allow_unsigned"), "{e}");

        // An unsigned `package` event to a bearer-only app: bearer is required of it.
        assert_eq!(
            verify(Source::Github, &bearer_only, &package, body, 0),
            Err(VerifyError::Missing {
                header: "Authorization".into()
            })
        );
        assert_eq!(
            verify(Source::Github, &bearer_only, &bearer, body, 0),
            Ok(Verdict::Verified("bearer"))
        );
        assert!(matches!(
            verify(Source::Github, &bearer_only, &wrong_bearer, body, 0),
            Err(VerifyError::Mismatch { .. })
        ));
        for source in [
            Source::Gitlab,
            Source::Bitbucket,
            Source::Gitea,
            Source::Quay,
        ] {
            assert!(
                verify(source, &bearer_only, &bare, body, 0).is_err(),
                "{source:?}"
            );
        }

        // No scheme at all: token-only, as before (`ferry check` warns).
        for source in Source::ALL {
            assert_eq!(
                verify(source, &nothing, &bare, body, 0),
                Ok(Verdict::Unverified),
                "{source:?}"
            );
        }
    }

    #[test]
    fn allow_unsigned_lets_only_senderless_requests_through() {
        use crate::secret::Secret;
        let body = b"{}";
        let v = verify_with(|v| {
            v.github = vec![Secret::new("gh")];
            v.bearer = vec![Secret::new("tok")];
            v.allow_unsigned = true;
        });
        let bare = HeaderMap::new();
        assert_eq!(
            verify(Source::Generic, &v, &bare, body, 0),
            Ok(Verdict::Unverified)
        );
        // Presented credentials that fail are still refused.
        let wrong = headers(&[("Authorization", "Bearer no")]);
        assert!(verify(Source::Generic, &v, &wrong, body, 0).is_err());
        let right = headers(&[("Authorization", "Bearer tok")]);
        assert_eq!(
            verify(Source::Generic, &v, &right, body, 0),
            Ok(Verdict::Verified("bearer"))
        );
        // A request claiming a sender gets no exemption: unsigned GitHub or GitLab is refused.
        let github = headers(&[("X-GitHub-Event", "push")]);
        assert!(verify(Source::Github, &v, &github, body, 0).is_err());
        let gitlab = headers(&[("X-Gitlab-Event", "Push Hook")]);
        assert!(verify(Source::Gitlab, &v, &gitlab, body, 0).is_err());
        for source in Source::HINTABLE {
            assert!(verify(source, &v, &bare, body, 0).is_err(), "{source:?}");
        }
    }

    #[test]
    fn a_standard_signature_verifies_any_claimed_sender() {
        use crate::secret::Secret;
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let v = verify_with(|v| v.standard = vec![Secret::new(secret)]);
        let body = br#"{"test": 2432232314}"#;
        // The Standard Webhooks spec's example.
        let signed = headers(&[
            ("X-Gitlab-Event", "Push Hook"),
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        assert_eq!(
            verify(Source::Gitlab, &v, &signed, body, 1614265330),
            Ok(Verdict::Verified("standard"))
        );
        assert!(verify(Source::Gitlab, &v, &signed, b"{}", 1614265330).is_err());
        let unsigned = headers(&[("X-Gitlab-Event", "Push Hook")]);
        assert!(verify(Source::Gitlab, &v, &unsigned, body, 1614265330).is_err());
    }

    #[test]
    fn signed_bodies_without_a_signed_id_dedupe_on_the_body() {
        let body = b"{\"after\":\"abc\"}";
        let a = headers(&[("X-GitHub-Delivery", "one")]);
        let b = headers(&[("X-GitHub-Delivery", "two")]);
        for scheme in ["github", "gitea", "bitbucket", "gitlab"] {
            let verified = Verdict::Verified(scheme);
            let ka = dedupe_key(Source::Github, verified, &a, body);
            assert!(
                ka.as_deref().is_some_and(|k| k.contains("body-sha256")),
                "{ka:?}"
            );
            // A new delivery id: the same key (a replay); another body: another key.
            assert_eq!(ka, dedupe_key(Source::Github, verified, &b, body));
            assert_ne!(ka, dedupe_key(Source::Github, verified, &a, b"{}"));
        }
        // The same signed body claimed by another sender: still the same key.
        assert_eq!(
            dedupe_key(Source::Github, Verdict::Verified("github"), &a, body),
            dedupe_key(Source::Gitea, Verdict::Verified("gitea"), &b, body)
        );
        // The custom HMAC on a sender whose body names a version: keyed on the body too (found
        // in review: it used to fall back to the unsigned delivery id).
        assert_eq!(
            dedupe_key(Source::Github, Verdict::Verified("hmac"), &b, body),
            dedupe_key(Source::Github, Verdict::Verified("github"), &a, body)
        );
        // A credential that signs nothing: the sender's id, as before.
        assert_eq!(
            dedupe_key(Source::Github, Verdict::Verified("bearer"), &a, body).as_deref(),
            Some("one")
        );
        // Unverified: the sender's id in a namespace of its own, so it can never take a signed
        // delivery's key.
        assert_eq!(
            dedupe_key(Source::Github, Verdict::Unverified, &a, body).as_deref(),
            Some("unverified:one")
        );
        assert_eq!(
            dedupe_key(
                Source::Generic,
                Verdict::Verified("hmac"),
                &HeaderMap::new(),
                b""
            ),
            None
        );
        // Standard Webhooks: the signed webhook-id.
        let std = headers(&[("webhook-id", "msg_1"), ("Idempotency-Key", "other")]);
        assert_eq!(
            dedupe_key(
                Source::Gitlab,
                Verdict::Verified("gitlab-signing"),
                &std,
                body
            )
            .as_deref(),
            Some("signed-id:msg_1")
        );
    }

    #[test]
    fn delivery_ids_per_sender() {
        let h = headers(&[("X-Gitlab-Event-UUID", "evt"), ("Idempotency-Key", "idem")]);
        assert_eq!(delivery_id(Source::Gitlab, &h).as_deref(), Some("idem"));
        let h = headers(&[("X-Gitlab-Event-UUID", "evt")]);
        assert_eq!(delivery_id(Source::Gitlab, &h).as_deref(), Some("evt"));
        let h = headers(&[("X-Request-Id", "bbs")]);
        assert_eq!(delivery_id(Source::Bitbucket, &h).as_deref(), Some("bbs"));
        let h = headers(&[("Idempotency-Key", "k")]);
        assert_eq!(delivery_id(Source::Generic, &h).as_deref(), Some("k"));
        for source in Source::HINTABLE {
            assert_eq!(delivery_id(source, &HeaderMap::new()), None);
            assert_eq!(delivery_id(source, &h).as_deref(), Some("k"));
        }
    }

    #[test]
    fn body_checks() {
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert_eq!(check_body(Source::Github, &json, b"{}"), Ok(()));
        assert!(matches!(
            check_body(Source::Github, &json, b"{\"truncated\": "),
            Err(BodyError::Unreadable { .. })
        ));
        let xml = headers(&[("content-type", "application/xml")]);
        assert!(matches!(
            check_body(Source::Gitlab, &xml, b"<a/>"),
            Err(BodyError::ContentType { .. })
        ));
        assert_eq!(check_body(Source::Generic, &xml, b"<a/>"), Ok(()));
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(
            check_body(Source::Github, &form, b"payload=%7B%22yo%22%3Atrue%7D"),
            Ok(())
        );
        assert!(matches!(
            check_body(Source::Github, &form, b"other=1"),
            Err(BodyError::Unreadable { .. })
        ));
        assert!(matches!(
            check_body(Source::Bitbucket, &form, b"payload=%7B%7D"),
            Err(BodyError::ContentType { .. })
        ));
        let events = headers(&[(
            "content-type",
            "application/vnd.docker.distribution.events.v2+json",
        )]);
        assert_eq!(
            check_body(Source::Registry, &events, br#"{"events":[]}"#),
            Ok(())
        );
        assert_eq!(check_body(Source::Registry, &json, b"{}"), Ok(()));
        assert!(matches!(
            check_body(Source::Registry, &events, b"{\"events\":["),
            Err(BodyError::Unreadable {
                sender: "registry",
                ..
            })
        ));
        let cloudevents = headers(&[("content-type", "application/cloudevents+json")]);
        assert_eq!(check_body(Source::Harbor, &cloudevents, b"{}"), Ok(()));
        assert_eq!(check_body(Source::Harbor, &json, b"{}"), Ok(()));
        for source in [Source::Dockerhub, Source::Quay] {
            assert_eq!(check_body(source, &json, b"{}"), Ok(()));
            assert!(matches!(
                check_body(source, &cloudevents, b"{}"),
                Err(BodyError::ContentType { .. })
            ));
            assert!(matches!(
                check_body(source, &json, b"{"),
                Err(BodyError::Unreadable { .. })
            ));
        }
        assert!(matches!(
            check_body(Source::Harbor, &xml, b"<a/>"),
            Err(BodyError::ContentType { .. })
        ));
    }

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("v1.2.3-rc_1").as_deref(), Some("v1.2.3-rc_1"));
        assert_eq!(image_tag(".hidden"), None);
        assert_eq!(image_tag("sha256:abc"), None);
        assert_eq!(image_tag(&"a".repeat(129)), None);
        assert_eq!(image_tag(""), None);
        let hex64 = "ab".repeat(32);
        assert_eq!(
            digest(&format!("sha256:{hex64}")),
            Some(format!("sha256:{hex64}"))
        );
        assert_eq!(
            digest("sha256:6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b"),
            None
        );
        assert_eq!(digest(&format!("sha256:{}", hex64.to_uppercase())), None);
        assert_eq!(digest(&format!("md5:{hex64}")), None);
        assert_eq!(epoch_secs_ms(&serde_json::json!(1)), Some(1000));
        assert_eq!(epoch_secs_ms(&serde_json::json!(1.25)), Some(1250));
        assert_eq!(epoch_secs_ms(&serde_json::json!(i64::MAX)), None);
        assert_eq!(epoch_secs_ms(&serde_json::json!(1e300)), None);
        assert_eq!(epoch_secs_ms(&serde_json::json!("1")), None);
    }

    #[test]
    fn image_pushes_are_named_for_deploy_commands() {
        assert_eq!(
            Event::ImagePush(Vec::new()).name(Source::Dockerhub),
            "image_push"
        );
    }

    #[test]
    fn times_with_compact_offsets() {
        assert_eq!(
            rfc3339_ms("2019-06-17T19:37:57+1000"),
            rfc3339_ms("2019-06-17T09:37:57Z")
        );
        assert_eq!(
            rfc3339_ms("2015-06-09T03:34:49+00:00"),
            Some(1_433_820_889_000)
        );
        assert_eq!(rfc3339_ms("yesterday"), None);
        assert_eq!(rfc3339_ms(""), None);
        // Found by the property test: a multi-byte character where the offset would be.
        assert_eq!(rfc3339_ms("Ѩ񺾮"), None);
    }
}

/// No body and no header value makes a parser or a verifier panic.
#[cfg(test)]
mod properties {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::config::{Encoding, HmacAlgorithm, HmacScheme, Verify};
    use crate::secret::Secret;

    fn all_schemes() -> Verify {
        let s = |v: &str| vec![Secret::new(v)];
        Verify {
            github: s("gh"),
            gitlab: vec![Secret::new("gl"), Secret::new("whsec_AAECAwQ=")],
            bitbucket: s("bb"),
            gitea: s("gt"),
            standard: s("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            standard_tolerance: Duration::from_secs(300),
            hmac: Some(HmacScheme {
                header: "x-signature".into(),
                algorithm: HmacAlgorithm::Sha512,
                encoding: Encoding::Base64,
                prefix: "sha512=".into(),
                secrets: s("h"),
            }),
            bearer: s("b"),
            basic: s("u:p"),
            require: true,
            allow_ips: Vec::new(),
            client_cert: false,
            allow_unsigned: false,
        }
    }

    const HEADERS: &[&str] = &[
        "x-github-event",
        "x-hub-signature-256",
        "x-hub-signature",
        "x-gitlab-event",
        "x-gitlab-token",
        "x-event-key",
        "x-gitea-event",
        "x-gitea-signature",
        "x-forgejo-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-signature",
        "authorization",
        "content-type",
        "idempotency-key",
    ];

    const CONTENT_TYPES: &[&str] = &[
        "application/json",
        "application/x-www-form-urlencoded",
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json; charset=utf-8",
        "application/cloudevents+json",
        "",
    ];

    const EVENTS: &[&str] = &[
        "push",
        "ping",
        "Push Hook",
        "Tag Push Hook",
        "System Hook",
        "repo:push",
        "repo:refs_changed",
        "issues",
        "package",
        "registry_package",
    ];

    fn header_map(values: &[(usize, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (i, v) in values {
            if let Ok(value) = http::HeaderValue::from_str(v) {
                h.insert(HEADERS[i % HEADERS.len()], value);
            }
        }
        h
    }

    proptest! {
        #[test]
        fn request_path_never_panics(
            values in proptest::collection::vec((0usize..64, ".{0,80}"), 0..8),
            ct in 0usize..8,
            hint in proptest::option::of(prop_oneof![
                Just("registry".to_string()), Just("dockerhub".to_string()),
                Just("harbor".to_string()), Just("quay".to_string()), ".{0,12}"
            ]),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            now in any::<i64>(),
        ) {
            let mut h = header_map(&values);
            if let Some(ct) = CONTENT_TYPES.get(ct) {
                h.insert("content-type", http::HeaderValue::from_static(ct));
            }
            let detected = detect_with_hint(&h, hint.as_deref());
            // Every sender's request-path checks, not only the detected one's.
            for source in std::iter::once(detected).chain(Source::ALL) {
                let _ = event_name(source, &h);
                let _ = delivery_id(source, &h);
                if let Ok(verdict) = verify(source, &all_schemes(), &h, &body, now) {
                    let _ = dedupe_key(source, verdict, &h, &body);
                }
                let _ = check_body(source, &h, &body);
            }
        }

        #[test]
        fn parsers_never_panic(
            event in 0usize..64,
            body in proptest::collection::vec(any::<u8>(), 0..512),
            ct in 0usize..CONTENT_TYPES.len(),
            ts in ".{0,20}",
        ) {
            let header = |name: &str| match name {
                "content-type" => Some(CONTENT_TYPES[ct].to_string()),
                "webhook-timestamp" => Some(ts.clone()),
                _ => None,
            };
            for source in Source::ALL {
                let stored = Stored { event: Some(EVENTS[event % EVENTS.len()]), header: &header, body: &body };
                let _ = parse(source, &stored);
            }
        }

        #[test]
        fn json_shaped_bodies_never_panic(
            r in "(refs/(heads|tags)/)?[a-z0-9/.-]{0,12}",
            after in "[0-9a-f]{0,40}",
            ts in ".{0,30}",
        ) {
            let bodies = [
                format!(r#"{{"ref":"{r}","after":"{after}","repository":{{"full_name":"a/b"}},"head_commit":{{"id":"{after}","timestamp":"{ts}"}}}}"#),
                format!(r#"{{"object_kind":"push","ref":"{r}","after":"{after}","checkout_sha":"{after}","project":{{"path_with_namespace":"a/b"}},"commits":[{{"id":"{after}","timestamp":"{ts}"}}]}}"#),
                format!(r#"{{"repository":{{"full_name":"a/b"}},"push":{{"changes":[{{"new":{{"type":"{r}","name":"{r}","target":{{"hash":"{after}","date":"{ts}"}}}},"old":null}}]}}}}"#),
                format!(r#"{{"date":"{ts}","repository":{{"slug":"s","project":{{"key":"K"}}}},"changes":[{{"ref":{{"id":"{r}"}},"toHash":"{after}","type":"{r}"}}]}}"#),
            ];
            let header = |_: &str| None;
            for body in &bodies {
                for event in EVENTS {
                    for source in Source::ALL {
                        let stored = Stored { event: Some(event), header: &header, body: body.as_bytes() };
                        let _ = parse(source, &stored);
                    }
                }
            }
        }

        #[test]
        fn image_shaped_bodies_never_panic_and_stay_well_formed(
            repo in "[a-zA-Z0-9:/@._ -]{0,24}",
            tag in "[a-zA-Z0-9:._ -]{0,20}",
            hex in "[0-9a-fA-F]{0,66}",
            ts in ".{0,30}",
            secs in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), any::<f64>().prop_map(|f| format!("{f:e}")), Just("null".to_string())],
            action in prop_oneof![Just("push"), Just("pull"), Just("published"), Just("updated"), Just("PUSH_ARTIFACT"), Just("harbor.artifact.pushed")],
        ) {
            let d = format!("sha256:{hex}");
            let bodies = [
                format!(r#"{{"events":[{{"id":"{ts}","action":"{action}","timestamp":"{ts}","target":{{"mediaType":"application/vnd.oci.image.index.v1+json","repository":"{repo}","tag":"{tag}","digest":"{d}"}},"request":{{"host":"{repo}"}}}}]}}"#),
                format!(r#"{{"push_data":{{"tag":"{tag}","pushed_at":{secs}}},"repository":{{"repo_name":"{repo}","namespace":"{repo}","name":"{tag}"}}}}"#),
                format!(r#"{{"type":"{action}","occur_at":{secs},"event_data":{{"resources":[{{"digest":"{d}","tag":"{tag}","resource_url":"{repo}"}}]}}}}"#),
                format!(r#"{{"specversion":"1.0","id":"{ts}","type":"{action}","time":"{ts}","data":{{"resources":[{{"digest":"{d}","tag":"{tag}","resource_url":"{repo}"}}]}}}}"#),
                format!(r#"{{"repository":"{repo}","docker_url":"{repo}","updated_tags":["{tag}"]}}"#),
                format!(r#"{{"repository":"{repo}","updated_tags":{{"{tag}":"{hex}"}}}}"#),
                format!(r#"{{"action":"{action}","package":{{"name":"{tag}","namespace":"{repo}","ecosystem":"CONTAINER","package_version":{{"version":"{d}","updated_at":"{ts}","package_url":"{repo}","container_metadata":{{"tag":{{"name":"{tag}","digest":"{d}"}}}}}}}}}}"#),
            ];
            let header = |_: &str| None;
            for body in &bodies {
                for event in ["package", "registry_package", "push"] {
                    for source in Source::ALL {
                        let stored = Stored { event: Some(event), header: &header, body: body.as_bytes() };
                        if let Ok(Event::ImagePush(pushes)) = parse(source, &stored) {
                            for p in pushes {
                                prop_assert!(!p.repository.is_empty());
                                prop_assert!(p.tag.as_deref().is_none_or(|t| image_tag(t).as_deref() == Some(t)), "{p:?}");
                                prop_assert!(p.digest.as_deref().is_none_or(|x| digest(x).as_deref() == Some(x)), "{p:?}");
                            }
                        }
                    }
                }
            }
        }
    }
}
