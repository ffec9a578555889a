//! `ferry migrate --to postgres://…`: copies a SQLite store into an empty PostgreSQL database,
//! for a user moving from one ferry to several replicas that share PostgreSQL.
//!
//! How it fits: this is the one place that reads both engines at once, and it runs outside a
//! [`super::Store`] (no intake writer, no write gate, no live hub). The source is
//! `DATA_DIR/ferry.db`, opened read-only on one connection and read in one transaction, so
//! every table comes from the same snapshot; it must be at this ferry's SQLite migration (a
//! store from an older ferry is migrated by starting that ferry's successor once). The target
//! is brought up to date by the same migrations [`super::Store`] runs at start
//! (`migrations/postgres/`), then everything is written in **one** PostgreSQL transaction:
//!
//! 1. every table locked (`EXCLUSIVE`: no other writer meanwhile) and checked empty: a
//!    database with any row is refused, and nothing is copied;
//! 2. the tables' own triggers disabled for the transaction (`ALTER TABLE … DISABLE TRIGGER
//!    USER`, undone before the commit), so that the journal's triggers do not journal the
//!    copied deployments again — `events` is copied as it is. Foreign keys stay checked (they
//!    are system triggers). `SET LOCAL session_replication_role = replica` would do the same
//!    for a superuser only, and would skip the foreign keys too; a table's owner may alter it;
//! 3. each table in key order, with its ids, read in pages and written as multi-row INSERTs
//!    (below PostgreSQL's 65,535 bind parameters per statement; [`TABLES`] lists every column);
//! 4. each deploy log file (`DATA_DIR/logs/ID.log`, see `crate::deploylog`) into `deploy_logs`
//!    (migration 0002, PostgreSQL only) as chunks of at most [`LOG_CHUNK`] bytes, cut after a
//!    line where one ends;
//! 5. every identity sequence set past the highest id ever given — SQLite's `sqlite_sequence`
//!    too, so an id whose row was pruned is not given again;
//! 6. each table's row count compared with the source's; then the triggers enabled again, and
//!    COMMIT. Any error before that rolls everything back.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, Postgres};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Connection, QueryBuilder, Row};
use tokio::io::AsyncReadExt;

/// The largest chunk of a deploy log in `deploy_logs`.
pub(crate) const LOG_CHUNK: usize = 64 * 1024;
/// PostgreSQL's limit of bind parameters in one statement.
const MAX_BINDS: usize = 65_535;
/// Rows read from SQLite (and written in one INSERT) at a time, unless a table says fewer.
const PAGE: usize = 1000;
/// Log chunks written in one INSERT (at most 4 MiB).
const LOG_ROWS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyError {
    #[error("no SQLite store at {path}: nothing to copy (is the config's data_dir right?)")]
    NoSource { path: String },
    #[error("cannot open the SQLite store {path}: {source}")]
    OpenSource { path: String, source: sqlx::Error },
    #[error("cannot read the migrations of {path} (is it a ferry store?): {source}")]
    NotAStore { path: String, source: sqlx::Error },
    #[error(
        "the SQLite store {path} is at migration {found}, this ferry's is {expected}: {advice}"
    )]
    SourceVersion {
        path: String,
        found: i64,
        expected: i64,
        advice: &'static str,
    },
    #[error("the target is not a PostgreSQL URL (postgres://… or postgresql://…)")]
    NotPostgres,
    #[error("cannot connect to the PostgreSQL database: {0}")]
    Connect(sqlx::Error),
    #[error("cannot migrate the PostgreSQL database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the PostgreSQL database is not empty ({table} has {rows} rows): ferry migrate copies \
         only into an empty database"
    )]
    NotEmpty { table: &'static str, rows: i64 },
    #[error("{what}: {source}")]
    Sql { what: String, source: sqlx::Error },
    #[error("{table}: {target} rows in PostgreSQL after the copy, but {expected} in SQLite")]
    Count {
        table: &'static str,
        expected: i64,
        target: i64,
    },
    #[error("cannot read deploy log {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
}

/// What a copy did, for its summary.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    /// Each table and the rows copied into it, in copy order.
    pub(crate) tables: Vec<(&'static str, i64)>,
    /// Deploy log files copied, and the chunks they made.
    pub(crate) logs: i64,
    pub(crate) log_chunks: i64,
    /// Files in `DATA_DIR/logs` not copied, and why (no such deployment, not a log file).
    pub(crate) skipped: Vec<String>,
}

/// How a column is read from SQLite and bound for PostgreSQL.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Int,
    Text,
    /// INTEGER 0/1 on SQLite, BOOLEAN on PostgreSQL (`deliveries.verified`).
    Bool,
    Blob,
}

/// One table to copy: its leading `keys` columns (integers) order and page it.
struct Table {
    name: &'static str,
    keys: usize,
    columns: &'static [(&'static str, Kind)],
    /// Rows per page, when fewer than [`PAGE`] (large values).
    page: usize,
    /// Whether `id` is an identity column whose sequence must follow the copied ids.
    identity: bool,
}

use Kind::{Blob, Bool, Int, Text};

/// Every table of the store, in an order that satisfies the foreign keys, with every column
/// (`tests::every_column_of_both_schemas_is_copied` holds this to both schemas).
const TABLES: &[Table] = &[
    Table {
        name: "deliveries",
        keys: 1,
        columns: &[
            ("id", Int),
            ("app", Text),
            ("source", Text),
            ("event", Text),
            ("source_delivery_id", Text),
            ("dedupe_key", Text),
            ("received_at", Int),
            ("verified", Bool),
            ("status", Text),
            ("error", Text),
            ("query", Text),
            ("headers", Text),
            ("replay_of", Int),
            ("planned_at", Int),
            ("note", Text),
            ("body_size", Int),
            ("scheme", Text),
            ("refused_with", Int),
            ("duplicates", Int),
            ("duplicate_at", Int),
        ],
        page: PAGE,
        identity: true,
    },
    Table {
        name: "delivery_bodies",
        keys: 1,
        columns: &[("delivery_id", Int), ("body", Blob), ("codec", Text)],
        // Bodies are up to `server.body_limit` each.
        page: 32,
        identity: false,
    },
    Table {
        name: "deployments",
        keys: 1,
        columns: &[
            ("id", Int),
            ("app", Text),
            ("service", Text),
            ("delivery_id", Int),
            ("state", Text),
            ("reason", Text),
            ("source", Text),
            ("event", Text),
            ("git_repo", Text),
            ("git_branch", Text),
            ("git_ref", Text),
            ("git_commit", Text),
            ("event_time", Int),
            ("profile", Text),
            ("attempt", Int),
            ("retry_of", Int),
            ("exit_code", Int),
            ("created_at", Int),
            ("started_at", Int),
            ("finished_at", Int),
            ("image", Text),
            ("image_tag", Text),
            ("image_digest", Text),
            ("rollback_of", Int),
            ("cancel_requested_at", Int),
            ("node", Text),
            ("lease_until", Int),
        ],
        page: PAGE,
        identity: true,
    },
    Table {
        name: "deployment_steps",
        keys: 2,
        columns: &[
            ("deployment_id", Int),
            ("seq", Int),
            ("name", Text),
            ("started_at", Int),
            ("ended_at", Int),
            ("outcome", Text),
            ("detail", Text),
        ],
        page: PAGE,
        identity: false,
    },
    Table {
        name: "events",
        keys: 1,
        columns: &[
            ("id", Int),
            ("at", Int),
            ("type", Text),
            ("app", Text),
            ("service", Text),
            ("deployment_id", Int),
            ("delivery_id", Int),
            ("reason", Text),
            ("fanned_out", Int),
            ("detail", Text),
        ],
        page: PAGE,
        identity: true,
    },
    Table {
        name: "notifications",
        keys: 1,
        columns: &[
            ("id", Int),
            ("uid", Text),
            ("event_id", Int),
            ("target", Text),
            ("kind", Text),
            ("event", Text),
            ("app", Text),
            ("service", Text),
            ("deployment_id", Int),
            ("delivery_id", Int),
            ("receiver", Text),
            ("url", Text),
            ("body", Text),
            ("state", Text),
            ("attempts", Int),
            ("next_at", Int),
            ("created_at", Int),
            ("retried_at", Int),
            ("sent_at", Int),
            ("last_error", Text),
            ("last_status", Int),
        ],
        page: PAGE,
        identity: true,
    },
    Table {
        name: "github_deployments",
        keys: 1,
        columns: &[
            ("deployment_id", Int),
            ("github_id", Int),
            ("notification_id", Int),
            ("created_at", Int),
        ],
        page: PAGE,
        identity: false,
    },
    Table {
        name: "alerts",
        keys: 1,
        columns: &[
            ("id", Int),
            ("delivery_id", Int),
            ("app", Text),
            ("rule", Text),
            ("fingerprint", Text),
            ("alertname", Text),
            ("status", Text),
            ("starts_at", Text),
            ("ends_at", Text),
            ("labels", Text),
            ("annotations", Text),
            ("action", Text),
            ("outcome", Text),
            ("reason", Text),
            ("deployment_id", Int),
            ("created_at", Int),
        ],
        page: PAGE,
        identity: true,
    },
];

/// The PostgreSQL-only table of deploy logs (migration 0002), filled from the log files.
const DEPLOY_LOGS: &str = "deploy_logs";

/// A value read from SQLite, bound as it is for PostgreSQL.
#[derive(Debug)]
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Blob(Option<Vec<u8>>),
}

/// Copies the SQLite store in `data_dir` into the empty PostgreSQL database at `url` (see the
/// module's doc). On any error nothing is copied (the target's schema may have been created,
/// which is what ferry itself would do at start).
pub(crate) async fn sqlite_to_postgres(data_dir: &Path, url: &str) -> Result<Copied, CopyError> {
    let path = data_dir.join("ferry.db");
    let mut source = open_source(&path).await?;
    let mut target = open_target(url).await?;
    let sql = |what: &str| {
        let what = what.to_string();
        move |source| CopyError::Sql { what, source }
    };
    // One read transaction: every page of every table from the same snapshot.
    let mut snapshot = source
        .begin()
        .await
        .map_err(sql("starting a read of SQLite"))?;
    let mut tx = target
        .begin()
        .await
        .map_err(sql("starting the PostgreSQL transaction"))?;
    prepare_target(&mut tx).await?;
    let mut copied = Copied::default();
    for table in TABLES {
        let rows = copy_table(&mut snapshot, &mut tx, table).await?;
        let expected = count(&mut snapshot, table.name).await?;
        if rows != expected {
            return Err(CopyError::Count {
                table: table.name,
                expected,
                target: rows,
            });
        }
        copied.tables.push((table.name, rows));
    }
    copy_logs(&mut tx, data_dir, &mut copied).await?;
    for table in TABLES.iter().filter(|t| t.identity) {
        advance_sequence(&mut snapshot, &mut tx, table.name).await?;
    }
    for &(table, expected) in &copied.tables {
        let target = count_pg(&mut tx, table).await?;
        if target != expected {
            return Err(CopyError::Count {
                table,
                expected,
                target,
            });
        }
    }
    for table in TABLES {
        execute(
            &mut tx,
            &format!("ALTER TABLE {} ENABLE TRIGGER USER", table.name),
        )
        .await?;
    }
    tx.commit()
        .await
        .map_err(sql("committing the PostgreSQL transaction"))?;
    // The read transaction ends with the connection (nothing was written).
    drop(snapshot);
    let _ = source.close().await;
    let _ = target.close().await;
    Ok(copied)
}

/// The SQLite store at `path`, read-only, checked to be at this ferry's migration.
async fn open_source(path: &Path) -> Result<SqliteConnection, CopyError> {
    let shown = path.display().to_string();
    if !tokio::fs::try_exists(path).await.unwrap_or(false) {
        return Err(CopyError::NoSource { path: shown });
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|source| CopyError::OpenSource {
            path: shown.clone(),
            source,
        })?;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .map_err(|source| CopyError::NotAStore {
                path: shown.clone(),
                source,
            })?;
    let expected: Vec<i64> = sqlx::migrate!("./migrations/sqlite")
        .iter()
        .map(|m| m.version)
        .collect();
    if applied != expected {
        let found = applied.last().copied().unwrap_or(0);
        let newest = expected.last().copied().unwrap_or(0);
        let advice = if found > newest {
            "it was made by a newer ferry; migrate with that ferry"
        } else {
            "start this ferry on it once (ferry serve migrates it), stop it, then migrate"
        };
        return Err(CopyError::SourceVersion {
            path: shown,
            found,
            expected: newest,
            advice,
        });
    }
    Ok(conn)
}

/// A connection to the PostgreSQL database at `url`, its schema brought up to date. Errors
/// never show the URL (it may hold a password).
async fn open_target(url: &str) -> Result<PgConnection, CopyError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(CopyError::NotPostgres);
    }
    let options = PgConnectOptions::from_str(url).map_err(CopyError::Connect)?;
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(CopyError::Connect)?;
    sqlx::migrate!("./migrations/postgres")
        .run(&mut conn)
        .await?;
    Ok(conn)
}

/// Locks every table, checks that none has a row, and disables the tables' own triggers
/// (the journal's) for this transaction.
async fn prepare_target(tx: &mut PgConnection) -> Result<(), CopyError> {
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).chain([DEPLOY_LOGS]).collect();
    execute(
        tx,
        &format!("LOCK TABLE {} IN EXCLUSIVE MODE", names.join(", ")),
    )
    .await?;
    for table in names {
        let rows = count_pg(tx, table).await?;
        if rows > 0 {
            // The name as a `&'static str`, from the list it came from.
            let table = TABLES
                .iter()
                .map(|t| t.name)
                .find(|n| *n == table)
                .unwrap_or(DEPLOY_LOGS);
            return Err(CopyError::NotEmpty { table, rows });
        }
    }
    for table in TABLES {
        execute(
            tx,
            &format!("ALTER TABLE {} DISABLE TRIGGER USER", table.name),
        )
        .await?;
    }
    Ok(())
}

/// Copies one table, page by page in key order; returns the rows copied.
async fn copy_table(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    table: &Table,
) -> Result<i64, CopyError> {
    let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let columns = columns.join(", ");
    let keys: Vec<&str> = columns.split(", ").take(table.keys).collect();
    let keys = keys.join(", ");
    let params: Vec<String> = (1..=table.keys).map(|n| format!("?{n}")).collect();
    let page = table.page.min(MAX_BINDS / table.columns.len());
    let select = format!(
        "SELECT {columns} FROM {name} WHERE ({keys}) > ({params}) ORDER BY {keys} LIMIT {page}",
        name = table.name,
        params = params.join(", "),
    );
    let mut after = vec![i64::MIN; table.keys];
    let mut copied = 0_i64;
    loop {
        let mut query = sqlx::query(AssertSqlSafe(select.as_str()));
        for key in &after {
            query = query.bind(*key);
        }
        let rows = query
            .fetch_all(&mut *source)
            .await
            .map_err(|source| CopyError::Sql {
                what: format!("reading {} from SQLite", table.name),
                source,
            })?;
        let Some(last) = rows.last() else {
            return Ok(copied);
        };
        for (i, key) in after.iter_mut().enumerate() {
            *key = last.try_get(i).map_err(|source| CopyError::Sql {
                what: format!("reading {} from SQLite", table.name),
                source,
            })?;
        }
        let values = rows
            .iter()
            .map(|row| decode(row, table.columns))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CopyError::Sql {
                what: format!("reading {} from SQLite (after key {after:?})", table.name),
                source,
            })?;
        copied += i64::try_from(values.len()).unwrap_or(i64::MAX);
        let mut insert =
            QueryBuilder::<Postgres>::new(format!("INSERT INTO {} ({columns}) ", table.name));
        insert.push_values(values, |mut b, row| {
            for value in row {
                match value {
                    Value::Int(v) => b.push_bind(v),
                    Value::Text(v) => b.push_bind(v),
                    Value::Bool(v) => b.push_bind(v),
                    Value::Blob(v) => b.push_bind(v),
                };
            }
        });
        insert
            .build()
            .execute(&mut *target)
            .await
            .map_err(|source| CopyError::Sql {
                what: format!("writing {} to PostgreSQL (up to key {after:?})", table.name),
                source,
            })?;
    }
}

/// A row's columns as their kinds say.
fn decode(row: &SqliteRow, columns: &[(&str, Kind)]) -> Result<Vec<Value>, sqlx::Error> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            Ok(match kind {
                Int => Value::Int(row.try_get(i)?),
                Text => Value::Text(row.try_get(i)?),
                Bool => Value::Bool(row.try_get(i)?),
                Blob => Value::Blob(row.try_get(i)?),
            })
        })
        .collect()
}

/// Copies every deploy log file of a copied deployment into `deploy_logs`.
async fn copy_logs(
    tx: &mut PgConnection,
    data_dir: &Path,
    copied: &mut Copied,
) -> Result<(), CopyError> {
    let dir = data_dir.join("logs");
    let log_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| CopyError::Log { path, source }
    };
    let mut entries = match tokio::fs::read_dir(&dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(log_error(&dir)(e)),
    };
    let mut logs: Vec<(i64, PathBuf)> = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(log_error(&dir))? {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = tokio::fs::symlink_metadata(&path)
            .await
            .map_err(log_error(&path))?
            .is_file();
        match log_id(&name) {
            Some(id) if is_file => logs.push((id, path)),
            _ => copied.skipped.push(format!("{name}: not a deploy log")),
        }
    }
    logs.sort();
    for (id, path) in logs {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM deployments WHERE id = $1)")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(|source| CopyError::Sql {
                    what: "looking up a deploy log's deployment".into(),
                    source,
                })?;
        if !exists {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            copied.skipped.push(format!("{name}: no such deployment"));
            continue;
        }
        copied.log_chunks += copy_log(tx, id, &path).await?;
        copied.logs += 1;
    }
    Ok(())
}

/// Copies one log file as chunks; returns how many.
async fn copy_log(tx: &mut PgConnection, id: i64, path: &Path) -> Result<i64, CopyError> {
    let log_error = |source| CopyError::Log {
        path: path.display().to_string(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(log_error)?;
    let modified = file
        .metadata()
        .await
        .and_then(|m| m.modified())
        .map_err(log_error)?;
    let modified = time::OffsetDateTime::from(modified);
    let modified = i64::try_from(modified.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut buf: Vec<u8> = Vec::with_capacity(2 * LOG_CHUNK);
    let mut rows: Vec<(i64, i64, Vec<u8>)> = Vec::new();
    let mut seq = 0_i64;
    let mut eof = false;
    loop {
        while !eof && buf.len() < LOG_CHUNK {
            let mut more = [0_u8; 16 * 1024];
            let n = file.read(&mut more).await.map_err(log_error)?;
            eof = n == 0;
            buf.extend_from_slice(&more[..n]);
        }
        let Some(cut) = chunk_end(&buf, eof) else {
            break;
        };
        let chunk: Vec<u8> = buf.drain(..cut).collect();
        let at = last_line_time(&chunk).unwrap_or(modified);
        rows.push((seq, at, chunk));
        seq += 1;
        if rows.len() == LOG_ROWS {
            insert_chunks(tx, id, &mut rows).await?;
        }
    }
    insert_chunks(tx, id, &mut rows).await?;
    Ok(seq)
}

/// Where the next chunk of `buf` ends: after the last newline within [`LOG_CHUNK`] bytes, or
/// at [`LOG_CHUNK`] for a longer line; at the end of a file, the rest. `None`: nothing left.
fn chunk_end(buf: &[u8], eof: bool) -> Option<usize> {
    if buf.is_empty() {
        return None;
    }
    if buf.len() <= LOG_CHUNK && eof {
        return Some(buf.len());
    }
    let window = &buf[..buf.len().min(LOG_CHUNK)];
    Some(
        window
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(window.len(), |i| i + 1),
    )
}

/// The time stamped on the last line that starts in `chunk` (`crate::deploylog`'s lines begin
/// with an RFC 3339 time), in unix ms.
fn last_line_time(chunk: &[u8]) -> Option<i64> {
    let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let line = &body[start..];
    let stamp = line.split(|b| *b == b' ').next()?;
    let stamp = std::str::from_utf8(stamp).ok()?;
    let at =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Writes the chunks gathered for deployment `id` in one INSERT, and empties `rows`.
async fn insert_chunks(
    tx: &mut PgConnection,
    id: i64,
    rows: &mut Vec<(i64, i64, Vec<u8>)>,
) -> Result<(), CopyError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = QueryBuilder::<Postgres>::new(format!(
        "INSERT INTO {DEPLOY_LOGS} (deployment_id, seq, at, chunk) "
    ));
    insert.push_values(rows.drain(..), |mut b, (seq, at, chunk)| {
        b.push_bind(id)
            .push_bind(seq)
            .push_bind(at)
            .push_bind(chunk);
    });
    insert
        .build()
        .execute(&mut *tx)
        .await
        .map_err(|source| CopyError::Sql {
            what: format!("writing the log of deployment {id} to PostgreSQL"),
            source,
        })?;
    Ok(())
}

/// Sets `table`'s identity sequence to the highest id SQLite ever gave (`sqlite_sequence`)
/// or copied, so that the next row gets a new id.
async fn advance_sequence(
    source: &mut SqliteConnection,
    tx: &mut PgConnection,
    table: &'static str,
) -> Result<(), CopyError> {
    // `sqlite_sequence` exists once any AUTOINCREMENT table has had a row.
    let has_sequences: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence')",
    )
    .fetch_one(&mut *source)
    .await
    .map_err(|source| CopyError::Sql {
        what: "reading SQLite's sequences".into(),
        source,
    })?;
    let given: Option<i64> = if has_sequences {
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?1")
            .bind(table)
            .fetch_optional(&mut *source)
            .await
            .map_err(|source| CopyError::Sql {
                what: format!("reading SQLite's sequence of {table}"),
                source,
            })?
    } else {
        None
    };
    let max: Option<i64> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT MAX(id) FROM {table}")))
            .fetch_one(&mut *tx)
            .await
            .map_err(|source| CopyError::Sql {
                what: format!("reading the highest id of {table}"),
                source,
            })?;
    let high = given.into_iter().chain(max).max().unwrap_or(0);
    if high < 1 {
        return Ok(()); // Nothing given yet: the sequence starts at 1.
    }
    sqlx::query("SELECT setval(pg_get_serial_sequence($1, 'id'), $2)")
        .bind(table)
        .bind(high)
        .execute(&mut *tx)
        .await
        .map_err(|source| CopyError::Sql {
            what: format!("setting the sequence of {table}"),
            source,
        })?;
    Ok(())
}

async fn count(conn: &mut SqliteConnection, table: &str) -> Result<i64, CopyError> {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(conn)
        .await
        .map_err(|source| CopyError::Sql {
            what: format!("counting the rows of {table} in SQLite"),
            source,
        })
}

async fn count_pg(conn: &mut PgConnection, table: &str) -> Result<i64, CopyError> {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(conn)
        .await
        .map_err(|source| CopyError::Sql {
            what: format!("counting the rows of {table} in PostgreSQL"),
            source,
        })
}

async fn execute(conn: &mut PgConnection, sql: &str) -> Result<(), CopyError> {
    sqlx::query(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map_err(|source| CopyError::Sql {
            what: sql.to_string(),
            source,
        })?;
    Ok(())
}

/// The deployment whose log a file in `DATA_DIR/logs` is, by its name (the inverse of
/// `deploylog::log_path`; the store does not import `deploylog`, which builds on the store):
/// `12.log` → 12; anything else → `None`.
pub(crate) fn log_id(file_name: &str) -> Option<i64> {
    let id = file_name.strip_suffix(".log")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_id_reads_back_log_path() {
        let path = crate::deploylog::log_path(std::path::Path::new("/d"), 42);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(super::log_id(name), Some(42));
        for other in [
            "42.log.tmp",
            ".log",
            "x.log",
            "-1.log",
            "+1.log",
            "1 .log",
            "link",
        ] {
            assert_eq!(super::log_id(other), None, "{other}");
        }
    }

    use std::collections::BTreeSet;

    use sqlx::Connection;

    use super::{DEPLOY_LOGS, LOG_CHUNK, TABLES, chunk_end, last_line_time, sqlite_to_postgres};
    use crate::store::Store;
    use crate::store::db::with_db;
    use crate::store::test_postgres;

    /// A fresh database of the test cluster, or `None` when PostgreSQL cannot run here (then
    /// the reason is printed; with `CI` set that is a failure).
    fn postgres() -> Option<String> {
        match test_postgres::database() {
            Ok(url) => Some(url),
            Err(reason) if std::env::var_os("CI").is_some() => {
                panic!("copy tests need PostgreSQL when CI is set: {reason}")
            }
            Err(reason) => {
                eprintln!("skipped: {reason}");
                None
            }
        }
    }

    fn listed() -> Vec<(&'static str, Vec<&'static str>)> {
        TABLES
            .iter()
            .map(|t| (t.name, t.columns.iter().map(|(c, _)| *c).collect()))
            .collect()
    }

    /// [`TABLES`] names every table and every column of both schemas (a new column or table
    /// must be copied too), and the PostgreSQL-only deploy logs.
    #[tokio::test]
    async fn every_column_of_both_schemas_is_copied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _intake) = Store::open(dir.path()).await.expect("open SQLite");
        let with = |mut names: Vec<&'static str>, extra: &[&'static str]| {
            names.extend(extra);
            names.into_iter().map(String::from).collect::<BTreeSet<_>>()
        };
        let tables = |extra: &[&'static str]| with(TABLES.iter().map(|t| t.name).collect(), extra);
        let crate::store::db::Db::Sqlite(pool) = &store.db else {
            panic!("SQLite")
        };
        let found: BTreeSet<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(pool)
        .await
        .expect("tables")
        .into_iter()
        .collect();
        assert_eq!(found, tables(&["_sqlx_migrations"]));
        for (table, columns) in listed() {
            let found: BTreeSet<String> =
                sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
                    .bind(table)
                    .fetch_all(pool)
                    .await
                    .expect("columns")
                    .into_iter()
                    .collect();
            assert_eq!(found, with(columns, &[]), "SQLite's {table}");
        }

        let Some(url) = postgres() else { return };
        let mut pg = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::migrate!("./migrations/postgres")
            .run(&mut pg)
            .await
            .expect("migrate");
        let found: BTreeSet<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&mut pg)
        .await
        .expect("tables")
        .into_iter()
        .collect();
        assert_eq!(found, tables(&["_sqlx_migrations", DEPLOY_LOGS]));
        for (table, columns) in listed() {
            let found: Vec<String> = sqlx::query_scalar(
                "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut pg)
            .await
            .expect("columns");
            assert_eq!(found, columns, "PostgreSQL's {table}, in order");
        }
    }

    /// The copy as a database's owner who is not a superuser (as in production): the journal's
    /// triggers are off for the copy (the events are SQLite's, no more), foreign keys are
    /// checked, ids and the journal's next id continue, and a log file becomes chunks.
    #[tokio::test]
    async fn copies_as_an_owner_who_is_no_superuser() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _intake) = Store::open(dir.path()).await.expect("open SQLite");
        with_db!(&store.db, pool, q => sqlx::raw_sql(q(
            "INSERT INTO deliveries (id, app, source, received_at, verified, status, headers) VALUES (5, 'a', 'generic', 1, 1, 'planned', '{}'), (7, 'a', 'github', 2, 0, 'rejected', '{}');
             INSERT INTO delivery_bodies (delivery_id, body) VALUES (5, x'00ff'), (7, x'');
             INSERT INTO deployments (id, app, service, delivery_id, state, source, event, created_at) VALUES (3, 'a', 's', 5, 'queued', 'generic', 'redeploy', 1);
             UPDATE deployments SET state = 'succeeded' WHERE id = 3;
             INSERT INTO deployment_steps (deployment_id, seq, name, started_at) VALUES (3, 0, 'command', 1), (3, 1, 'health', 2);
             INSERT INTO alerts (delivery_id, app, rule, fingerprint, alertname, status, starts_at, labels, annotations, action, outcome, reason, deployment_id, created_at) VALUES (5, 'a', 'heal', '00aa', 'Down', 'firing', '2026-12-04T17:00:00Z', '{}', '{}', 'redeploy s', 'acted', 'r', 3, 1), (7, 'a', NULL, '00bb', 'Up', 'firing', '2026-12-04T17:00:00Z', '{}', '{}', NULL, 'unmatched', 'r', NULL, 1);
             DELETE FROM deliveries WHERE id = 7;"))
            .execute(pool)
            .await
            .map(drop))
        .expect("rows");
        let log = "2026-11-23T01:02:03.123Z stdout | hello\n".repeat(3000);
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        std::fs::write(dir.path().join("logs/3.log"), &log).expect("log");
        std::fs::write(dir.path().join("logs/99.log"), "orphan").expect("orphan log");

        let Some(url) = postgres() else { return };
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
        let role = format!("owner_{}", std::process::id());
        let db = format!("{role}_db");
        for sql in [
            format!("CREATE ROLE {role} LOGIN NOSUPERUSER"),
            format!("CREATE DATABASE {db} OWNER {role}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .expect("role and database");
        }
        let (base, _) = url.rsplit_once('/').expect("database in URL");
        let owner_url = format!("{}/{db}", base.replacen("ferry@", &format!("{role}@"), 1));

        let copied = sqlite_to_postgres(dir.path(), &owner_url)
            .await
            .expect("copy");
        let rows: Vec<(&str, i64)> = copied.tables.clone();
        assert_eq!(
            rows,
            [
                ("deliveries", 1),
                ("delivery_bodies", 1),
                ("deployments", 1),
                ("deployment_steps", 2),
                ("events", 2),
                ("notifications", 0),
                ("github_deployments", 0),
                // The alert of the deleted delivery went with it (ON DELETE CASCADE).
                ("alerts", 1)
            ]
        );
        assert_eq!((copied.logs, copied.log_chunks), (1, 2));
        assert_eq!(copied.skipped, ["99.log: no such deployment"]);

        let mut pg = sqlx::PgConnection::connect(&owner_url)
            .await
            .expect("owner");
        // Why the triggers are disabled table by table: the owner may not do it for the
        // session (PostgreSQL 15: only superusers, or a `GRANT SET ON PARAMETER`).
        let denied = sqlx::raw_sql("BEGIN; SET LOCAL session_replication_role = replica")
            .execute(&mut pg)
            .await
            .expect_err("an owner may not set session_replication_role");
        assert!(denied.to_string().contains("permission denied"), "{denied}");
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut pg)
            .await
            .expect("rollback");
        let events: Vec<(i64, String)> = sqlx::query_as("SELECT id, type FROM events ORDER BY id")
            .fetch_all(&mut pg)
            .await
            .expect("events");
        assert_eq!(
            events,
            [
                (1, "deployment.queued".into()),
                (2, "deployment.succeeded".into())
            ]
        );
        let verified: bool = sqlx::query_scalar("SELECT verified FROM deliveries WHERE id = 5")
            .fetch_one(&mut pg)
            .await
            .expect("verified");
        assert!(verified);
        let chunks: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT chunk FROM deploy_logs WHERE deployment_id = 3 ORDER BY seq",
        )
        .fetch_all(&mut pg)
        .await
        .expect("chunks");
        assert!(
            chunks
                .iter()
                .all(|c| c.len() <= LOG_CHUNK && c.ends_with(b"\n"))
        );
        assert_eq!(chunks.concat(), log.as_bytes());
        // The ids go on past the highest SQLite gave (7, although its row is gone); a new
        // deployment is journalled again.
        let next: i64 = sqlx::query_scalar(
            "INSERT INTO deliveries (app, source, received_at, verified, status, headers) VALUES ('a', 'generic', 3, TRUE, 'planned', '{}') RETURNING id",
        )
        .fetch_one(&mut pg)
        .await
        .expect("new delivery");
        assert_eq!(next, 8);
        sqlx::query("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at) VALUES ('a', 's', 8, 'queued', 'generic', 'redeploy', 3)")
            .execute(&mut pg)
            .await
            .expect("new deployment");
        let last: (i64, i64) =
            sqlx::query_as("SELECT id, deployment_id FROM events ORDER BY id DESC LIMIT 1")
                .fetch_one(&mut pg)
                .await
                .expect("journalled");
        assert_eq!(last, (3, 4));

        // Copying again is refused: the database is not empty; nothing more is copied.
        let again = sqlite_to_postgres(dir.path(), &owner_url)
            .await
            .unwrap_err();
        assert!(again.to_string().contains("not empty"), "{again}");
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
            .fetch_one(&mut pg)
            .await
            .expect("count");
        assert_eq!(count, 2);
    }

    #[test]
    fn log_chunks_end_after_a_line_and_carry_its_time() {
        let line = |n: usize| format!("2026-11-23T01:02:03.{n:03}Z stdout | {}\n", "x".repeat(50));
        let text: String = (0..2000).map(|n| line(n % 1000)).collect();
        let buf = text.as_bytes();
        let cut = chunk_end(buf, false).expect("a chunk");
        assert!(cut <= LOG_CHUNK && buf[cut - 1] == b'\n');
        assert_eq!(chunk_end(&buf[..100], true), Some(100));
        assert_eq!(chunk_end(&[], true), None);
        // A line longer than a chunk is cut at the chunk's size.
        let long = vec![b'y'; LOG_CHUNK + 10];
        assert_eq!(chunk_end(&long, true), Some(LOG_CHUNK));
        assert_eq!(chunk_end(&long[LOG_CHUNK..], true), Some(10));
        assert_eq!(
            last_line_time(format!("{}{}", line(1), line(250)).as_bytes()),
            Some(1_795_395_723_250)
        );
        assert_eq!(last_line_time(b"no time here\n"), None);
    }
}
