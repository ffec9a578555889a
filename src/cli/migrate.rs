//! `ferry migrate --to postgres://…`: copies the SQLite store of the config's `data_dir` (its
//! deploy logs too) into an empty PostgreSQL database, for a move from one ferry to replicas
//! (`crate::store::copy` does the work). Prints one line per table and one for the logs.
//!
//! The URL may hold a password: it is never printed, in errors neither; only the host and the
//! database name are.

use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::anyhow;
use sqlx::postgres::PgConnectOptions;

use crate::store::copy;

pub(crate) async fn migrate(config: &Path, to: &str) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config)?;
    let data_dir = &config.server.data_dir;
    let target = describe(to)?;
    println!(
        "copying {} into {target}",
        data_dir.join("ferry.db").display()
    );
    let copied = copy::sqlite_to_postgres(data_dir, to)
        .await
        .map_err(|e| anyhow!("{e}\nnothing was copied into {target}"))?;
    let width = copied
        .tables
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0)
        .max("deploy logs".len());
    for (table, rows) in &copied.tables {
        println!("  {table:<width$}  {rows} rows");
    }
    println!(
        "  {:<width$}  {} files ({} chunks)",
        "deploy logs", copied.logs, copied.log_chunks
    );
    for skipped in &copied.skipped {
        println!("  not copied: logs/{skipped}");
    }
    println!(
        "done, in one transaction. Point ferry at it (server.database, or FERRY_DATABASE) and \
         start it; the SQLite store is left as it was."
    );
    Ok(ExitCode::SUCCESS)
}

/// The target as it may be printed: `PostgreSQL database "NAME" on HOST` (no user, no
/// password). An error never repeats the URL.
fn describe(url: &str) -> anyhow::Result<String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(anyhow!(
            "--to must be a PostgreSQL URL (postgres://USER:PASSWORD@HOST/DATABASE)"
        ));
    }
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| anyhow!("--to is not a valid PostgreSQL URL: {e}"))?;
    Ok(crate::store::describe_postgres(&options))
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn the_target_is_described_without_user_or_password() {
        let shown = describe("postgres://alice:s3cret@db.example:5433/ferry").unwrap();
        assert_eq!(shown, "PostgreSQL database \"ferry\" on db.example");
        let error = describe("mysql://alice:s3cret@db/ferry")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("s3cret"), "{error}");
        let error = describe("postgres://alice:s3cret@db:notaport/ferry")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("s3cret"), "{error}");
    }
}
