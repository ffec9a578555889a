//! ferry: a self-hosted continuous-deployment server.
//!
//! Every app gets a secret redeploy hook URL. A request to it is verified, stored durably and
//! answered at once; in the background it is parsed, planned and deployed. The map (see also
//! `ARCHITECTURE.md`):
//!
//! - [`states`]: `DeploymentState`, `DeliveryStatus`, `NotificationState` and `EventType`,
//!   the bottom layer every other module shares (names, serde, sqlx, `is_final`).
//! - [`secret`]: `Secret` and the one constant-time comparison; [`image_ref`]: image reference
//!   parsing and Docker Hub's aliases; [`timefmt`]: RFC 3339 times. Bottom layer too.
//! - [`config`]: `ferry.toml` → a validated [`config::Config`]; errors name key and line.
//! - [`server`]: wires everything together; start-up recovery and ordered shutdown.
//! - [`shared`]: what request handlers share; [`metrics`]: the hook answers' counters.
//! - [`listener`]: the accept loop of every listener: TLS handshake, HTTP/1.1 + HTTP/2,
//!   header and body timeouts, the connection cap, the client's address and certificate on
//!   each request, graceful shutdown.
//! - [`tls`]: rustls config from `server.tls`/`server.client_ca`, reloaded on SIGHUP.
//! - [`edges`]: the client's address (trusted proxies), rate limits and IP allowlists.
//! - [`ratelimit`]: a keyed rate limiter with bounded memory; the `"120/min"` syntax.
//! - [`ingress`]: `POST /hooks/APP/TOKEN` — authenticate, verify, store, answer. Nothing else.
//! - [`redact`]: what is stored of request headers (secret-carrying ones as `[redacted]`).
//! - [`sources`]: one file per sender: detection, signature verification, payload → event.
//! - [`store`]: SQLite; group commit for deliveries; the only module that knows SQL.
//! - [`planner`]: background task: stored deliveries → deployments, using [`plan`]'s rules.
//! - [`plan`]: pure planning rules (Cloud 66 semantics, modifiers, staleness, image tag
//!   policies, rollbacks).
//! - [`reconcile`]: the `reconcile` schedule: re-runs a service's last success when due, as a
//!   delivery through the planner.
//! - [`retention`]: prunes deliveries, deployments and logs older than `server.keep`.
//! - [`lanes`]: one deployment at a time per service; bursts collapse to the newest.
//! - [`executors`]: how a deployment runs: `command` (argv, process group, timeout), `docker`
//!   (health-gated container replacement with rollback), `compose`, `swarm`.
//! - [`notify`]: the outbox's worker: every deployment state change and refused delivery
//!   (journalled by the store) sent to `[[notify]]` webhooks and Docker Hub
//!   callbacks, in order per receiver, retried until `notify_retry_for`.
//! - [`watch`]: the container watcher: Docker's events of the containers of `docker` and
//!   `compose` services, journalled as `container.died`, `.restarted`, `.unhealthy` (not
//!   during the service's deployments; rate-limited per container).
//! - [`outgoing`]: the one builder of ferry's outgoing HTTP clients (no redirects).
//! - [`deploylog`]: per-deployment log files with timestamped lines; following one live.
//! - [`live`]: the hub that broadcasts every committed change to live viewers (SSE).
//! - [`datadir`]: the data dir is private (dirs 0700, files 0600).
//! - [`api`]: the JSON API under `/api/v1` and health endpoints.
//! - [`cli`]: the top: the binary's `main`, command-line parsing, `serve`, the client commands.
//! - [`logging`]: ferry's own structured logs (text or JSON).

// Items are `pub(crate)` unless the fuzz targets need them (`fuzzing`): this lint says which
// `pub` is wider than it can be, and the compiler's dead-code lint then sees every module.
#![warn(unreachable_pub)]
// The docs are for contributors and link private items: `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

mod api;
mod cli;
mod config;
mod dashboard;
mod datadir;
mod deploylog;
mod edges;
mod executors;
mod image_ref;
mod ingress;
mod inspect;
mod lanes;
#[cfg(test)]
mod layering;
mod listener;
mod live;
mod logging;
mod metrics;
mod notify;
mod outgoing;
mod plan;
mod planner;
mod ratelimit;
mod reconcile;
mod redact;
mod retention;
mod secret;
mod server;
mod session;
mod shared;
mod sources;
mod states;
mod store;
mod timefmt;
mod tls;
mod watch;

pub use cli::main;

/// What the fuzz targets (`fuzz/`) call, and nothing else outside this crate may rely on: every
/// other module is private, so the compiler reports what no code uses.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::config::{Encoding, HmacAlgorithm, HmacScheme, Verify, parse as parse_config};
    pub use crate::secret::Secret;
    pub use crate::sources::values;
    pub use crate::sources::{
        Alert, AlertStatus, BodyError, Event, GitDeployment, GitPush, GitRef, ImagePush,
        ParseError, Scheme, Source, Stored, Verdict, VerifyError, check_body, dedupe_key,
        delivery_id, detect, parse, verify,
    };
}
