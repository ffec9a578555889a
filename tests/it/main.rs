//! Integration tests of "the spine": a real `ferry serve` per test, driven through its hook
//! URL, its admin API and its CLI, exactly as users drive it. See `support.rs` for the harness
//! and `fake_http.rs` for the services ferry calls out to.

/// Bytes that do not compress (the store's unit tests include the same file).
#[path = "../common/noise.rs"]
mod noise;
/// The throwaway PostgreSQL cluster, one per test process (the library's unit tests include
/// the same file): `migrate`, `replicas` and the harness (`support::Engine`) use it.
#[path = "../common/postgres.rs"]
mod postgres;
mod support;

mod alerts;
mod api_cli;
mod browser;
mod cancel;
mod checkout;
mod commit_statuses;
mod config_cli;
mod container_events;
mod containers;
mod dashboard;
mod dockerenv;
mod doctor;
mod executor;
mod fake_http;
mod git_server;
mod github_deployments;
mod import;
mod init;
mod inspect;
mod intake;
mod live;
mod metrics;
mod migrate;
mod notifications;
/// `postgres.rs`: what users see on PostgreSQL (`mod postgres` is the cluster).
#[path = "postgres.rs"]
mod on_postgres;
mod packaging;
mod planning;
mod reconcile;
mod replicas;
mod restart;
mod security_edges;
mod security_hygiene;
mod security_tls;
mod security_values;
mod security_verify;
mod senders;
mod storage;
