//! `ferry migrate --to postgres://…`: a store made by a real ferry on SQLite, copied into
//! PostgreSQL (the throwaway cluster of `tests/common/postgres.rs`), then served by a real
//! ferry on PostgreSQL. Without PostgreSQL these tests are skipped with the reason, or fail
//! when `CI` is set (see `support::unavailable`).

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::Connection;

use crate::postgres;
use crate::support::*;

/// A fresh database of the test cluster with a password in its URL (the cluster trusts every
/// login, so any password works): the URL and the password, which must never be printed.
/// `None` when PostgreSQL cannot run here (`unavailable` has said why).
fn target() -> Option<(String, String)> {
    match postgres::database() {
        Ok(url) => {
            let password = unique("pw-Secret");
            let url = url.replacen(
                "postgres://ferry@",
                &format!("postgres://ferry:{password}@"),
                1,
            );
            Some((url, password))
        }
        Err(why) => {
            unavailable(&format!("no PostgreSQL for ferry migrate: {why}"));
            None
        }
    }
}

/// `ferry migrate --config … --to URL`.
async fn migrate(ferry: &Ferry, url: &str) -> CliOutput {
    let config = ferry.config_path().to_str().expect("utf-8").to_string();
    Cli::new(&["migrate", "--config", &config, "--to", url])
        .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
        .run()
        .await
}

/// Neither output holds the password.
fn never_shows(out: &CliOutput, password: &str) {
    assert!(
        !out.stdout.contains(password) && !out.stderr.contains(password),
        "the password was printed: {out:#?}"
    );
}

/// The rows each table has, read from PostgreSQL.
async fn pg_counts(url: &str) -> BTreeMap<String, i64> {
    let mut pg = sqlx::PgConnection::connect(url).await.expect("connect");
    let mut out = BTreeMap::new();
    for table in [
        "deliveries",
        "delivery_bodies",
        "deployments",
        "deployment_steps",
        "events",
        "notifications",
        "github_deployments",
        "deploy_logs",
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut pg)
                .await
                .expect("count");
        out.insert(table.to_string(), n);
    }
    out
}

/// The journal (events: id, type, deployment) as PostgreSQL holds it.
async fn journal(pg: &mut sqlx::PgConnection) -> Vec<(i64, String, Option<i64>)> {
    sqlx::query_as("SELECT id, type, deployment_id FROM events ORDER BY id")
        .fetch_all(pg)
        .await
        .expect("events")
}

/// The journal as the SQLite store at `path` holds it (read-only).
async fn sqlite_journal(path: &std::path::Path) -> Vec<(i64, String, Option<i64>)> {
    let url = format!("sqlite://{}?mode=ro", path.display());
    let mut sqlite = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open SQLite");
    let events = sqlx::query_as("SELECT id, type, deployment_id FROM events ORDER BY id")
        .fetch_all(&mut sqlite)
        .await
        .expect("events");
    sqlite.close().await.expect("close SQLite");
    events
}

/// `id → status` (deliveries) or `id → state` (deployments) of a list.
fn by_id(list: &[Value], field: &str) -> BTreeMap<i64, String> {
    list.iter()
        .map(|v| {
            let id = v["id"].as_i64().expect("integer id");
            (id, v[field].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// The rows of `table` in a migrate summary line (`  deliveries   3 rows`).
fn rows_in(stdout: &str, table: &str) -> i64 {
    stdout
        .lines()
        .find_map(|l| {
            let rest = l.trim_start().strip_prefix(table)?.trim_start();
            rest.strip_suffix(" rows")?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no summary line for {table} in:\n{stdout}"))
}

/// A store with deliveries (deployed, failed, refused), deployments with their logs and the
/// journal, copied into PostgreSQL: a ferry started on it serves the same deliveries and
/// deployments, with the same ids and states, the journal as it was, the log (also in
/// `deploy_logs`, chunk by chunk), and gives new ids after the old ones.
#[tokio::test]
async fn a_sqlite_store_moves_to_postgres_and_is_served_from_there() {
    // On SQLite whatever FERRY_TEST_ENGINE says: its store is what is copied.
    let mut ferry = Ferry::shop().sqlite().start().await;
    let push = ferry.push("master", &sha(1), &commit_time(1)).await;
    let pushed = ferry.settle(push).await;
    let web = only(&pushed, "web")["id"].as_i64().expect("id");
    assert_eq!(only(&pushed, "web")["state"], "succeeded");
    ferry.fail("worker");
    let (_, redeployed) = ferry.hook("shop").deliver().await;
    assert_eq!(only(&redeployed, "worker")["state"], "failed");
    let refused = ferry
        .hook("shop")
        .github("push")
        .body(push_payload(REPO, "master", &sha(2), &commit_time(2)))
        .signed("not the secret")
        .send()
        .await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    ferry.settled("shop").await;
    let deliveries = by_id(&ferry.deliveries("").await, "status");
    let deployments = by_id(&ferry.deployments("").await, "state");
    assert!(
        deliveries.values().any(|s| s == "rejected"),
        "{deliveries:?}"
    );
    assert!(deployments.len() >= 3, "{deployments:?}");
    let log = ferry.log(web).await;
    assert!(log.contains("deploying web"), "{log}");
    // Stored LZ4-compressed (it is JSON of a few KB): PostgreSQL gets it as it is stored.
    let body = ferry.delivery(push).await["body"].clone();
    assert!(body.as_str().is_some_and(|b| b.len() > 1000), "{body}");
    ferry.sigterm();
    ferry.wait_exit(WAIT).await;

    let Some((url, password)) = target() else {
        return;
    };
    let events = sqlite_journal(&ferry.path("data/ferry.db")).await;
    assert!(events.len() >= 7, "{events:?}");

    let out = migrate(&ferry, &url).await;
    never_shows(&out, &password);
    let stdout = out.success();
    let database = url.rsplit('/').next().expect("database name");
    assert!(
        stdout.contains(&format!("PostgreSQL database \"{database}\" on 127.0.0.1")),
        "{stdout}"
    );
    assert_eq!(rows_in(stdout, "deliveries"), deliveries.len() as i64);
    assert_eq!(rows_in(stdout, "deployments"), deployments.len() as i64);
    assert_eq!(rows_in(stdout, "events"), events.len() as i64);
    assert!(stdout.contains("deploy logs"), "{stdout}");

    // In the database: the journal as it was (not journalled again), and the log, chunk by
    // chunk. (ferry still reads deploy logs from their files at run time.)
    let mut pg = sqlx::PgConnection::connect(&url).await.expect("connect");
    assert_eq!(journal(&mut pg).await, events);
    let chunks: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT chunk FROM deploy_logs WHERE deployment_id = $1 ORDER BY seq")
            .bind(web)
            .fetch_all(&mut pg)
            .await
            .expect("chunks");
    let file = std::fs::read(ferry.path(&format!("data/logs/{web}.log"))).expect("log file");
    assert_eq!(chunks.concat(), file);
    assert_eq!(String::from_utf8_lossy(&file), log);

    ferry.set_env("FERRY_DATABASE", &url);
    ferry.restart().await;
    let opened: Vec<String> = ferry
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("store opened"))
        .collect();
    assert!(
        opened.last().is_some_and(|l| l.contains("postgres")),
        "{opened:?}"
    );
    assert_eq!(by_id(&ferry.deliveries("").await, "status"), deliveries);
    assert_eq!(by_id(&ferry.deployments("").await, "state"), deployments);
    assert_eq!(ferry.log(web).await, log);
    let delivery = ferry.delivery(push).await;
    assert_eq!(delivery["verified"], true, "{delivery:#}");
    assert_eq!(delivery["body"], body, "the body read back as received");

    let (new, deployed) = ferry.hook("shop").deliver().await;
    let last_delivery = *deliveries.keys().last().expect("deliveries");
    let last_deployment = *deployments.keys().last().expect("deployments");
    assert!(new > last_delivery, "{new} after {last_delivery}");
    for d in &deployed {
        let id = d["id"].as_i64().expect("id");
        assert!(id > last_deployment, "{id} after {last_deployment}");
    }
    let after = journal(&mut pg).await;
    assert_eq!(after[..events.len()], events[..], "the old journal is kept");
    assert!(
        after.len() > events.len(),
        "the new deployments are journalled"
    );
    assert!(!ferry.stderr_text().contains(&password));
}

/// A database that already holds rows is refused: nothing is copied, the error says why, and
/// neither the password nor the SQLite store is touched. So are a missing store and an
/// unreachable server, without the password.
#[tokio::test]
async fn migrate_refuses_a_database_that_is_not_empty() {
    // On SQLite whatever FERRY_TEST_ENGINE says: its store is what would be copied.
    let mut ferry = Ferry::shop().sqlite().start().await;
    ferry.hook("shop").deliver().await;
    ferry.sigterm();
    ferry.wait_exit(WAIT).await;

    let Some((url, password)) = target() else {
        return;
    };
    let first = migrate(&ferry, &url).await;
    never_shows(&first, &password);
    first.success();
    let counts = pg_counts(&url).await;
    assert_eq!(counts["deliveries"], 1, "{counts:?}");
    let store = std::fs::read(ferry.path("data/ferry.db")).expect("store");

    let again = migrate(&ferry, &url).await;
    never_shows(&again, &password);
    let error = again.failure();
    assert!(
        error.contains("not empty") && error.contains("deliveries has 1 rows"),
        "{error}"
    );
    assert!(error.contains("nothing was copied"), "{error}");
    assert_eq!(pg_counts(&url).await, counts);
    assert_eq!(
        std::fs::read(ferry.path("data/ferry.db")).expect("store"),
        store
    );

    let nowhere = format!("postgres://ferry:{password}@127.0.0.1:1/nowhere");
    let out = migrate(&ferry, &nowhere).await;
    never_shows(&out, &password);
    assert!(
        out.failure()
            .contains("cannot connect to the PostgreSQL database"),
        "{out:#?}"
    );

    std::fs::rename(ferry.path("data"), ferry.path("moved")).expect("move the store away");
    let out = migrate(&ferry, &url).await;
    never_shows(&out, &password);
    assert!(out.failure().contains("no SQLite store at"), "{out:#?}");
}
