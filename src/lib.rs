//! ferry: a self-hosted continuous-deployment server.
//!
//! Every app gets a secret redeploy hook URL. A request to it is verified, stored durably and
//! answered at once; in the background it is parsed, planned and deployed. The map (see also
//! `ARCHITECTURE.md`):
//!
//! - [`states`]: `DeploymentState` and `DeliveryStatus`, the bottom layer every other module
//!   shares (names, serde, sqlx, `is_final`).
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
//! - [`retention`]: prunes deliveries, deployments and logs older than `server.keep`.
//! - [`lanes`]: one deployment at a time per service; bursts collapse to the newest.
//! - [`executors`]: how a deployment runs: `command` (argv, process group, timeout), `docker`
//!   (health-gated container replacement with rollback), `compose`, `swarm`.
//! - [`notify`]: reporting back to senders when a deployment ends (Docker Hub callbacks).
//! - [`outgoing`]: the one builder of ferry's outgoing HTTP clients (no redirects).
//! - [`deploylog`]: per-deployment log files with timestamped lines.
//! - [`datadir`]: the data dir is private (dirs 0700, files 0600).
//! - [`api`]: the JSON API under `/api/v1` and health endpoints.
//! - [`cli`]: command-line parsing and the client commands.
//! - [`logging`]: ferry's own structured logs (text or JSON).

pub mod api;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod deploylog;
pub mod edges;
pub mod executors;
pub mod image_ref;
pub mod ingress;
pub mod lanes;
#[cfg(test)]
mod layering;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod outgoing;
pub mod plan;
pub mod planner;
pub mod ratelimit;
pub mod redact;
pub mod retention;
pub mod secret;
pub mod server;
pub mod shared;
pub mod sources;
pub mod states;
pub mod store;
pub mod timefmt;
pub mod tls;

pub use server::serve;
