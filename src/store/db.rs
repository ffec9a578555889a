//! The two engines behind [`super::Store`]: SQLite (embedded, the default) and PostgreSQL
//! (`[server] database = "postgres://…"`, for replicas that share one database).
//!
//! SQL is written once, in SQLite's dialect, and translated for PostgreSQL by rule
//! ([`postgres_sql`]): `?N` placeholders become `$N`, and SQLite's `INDEXED BY` hints (which
//! PostgreSQL's planner does without) are dropped. What no rule covers is written so that both
//! engines read it the same (`ON CONFLICT`, `CASE`, `TRUE`), or spelled per engine in one
//! function, side by side. SQLite runs its SQL untranslated: the embedded default pays nothing
//! for the second engine.
//!
//! [`with_db!`] and [`with_tx!`] run one body against whichever engine the store has. The body
//! is compiled once per engine, so each keeps sqlx's native types and speed (sqlx's `Any`
//! driver would convert every row, body included, on the hot paths).

use sqlx::{AssertSqlSafe, PgPool, Postgres, SqlSafeStr, Sqlite, SqlitePool, Transaction};

/// A store's database: the pool the planner, lanes and API share.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A transaction on either engine.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Db {
    pub(crate) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Which engine this is, as the config and logs name it.
    pub(crate) fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Runs `$body` with `$pool` bound to the store's pool (`&SqlitePool` or `&PgPool`) and `$q`
/// to the function that makes SQL written in SQLite's dialect right for that engine
/// ([`sqlite_sql`] or [`postgres_sql`]). The body's value must have one type on both engines:
/// rows decoded into Rust types, not the engine's own result types.
macro_rules! with_db {
    ($db:expr, $pool:ident, $q:ident => $body:expr) => {
        match $db {
            $crate::store::db::Db::Sqlite($pool) => {
                #[allow(unused_imports)]
                use $crate::store::db::sqlite_sql as $q;
                $body
            }
            $crate::store::db::Db::Postgres($pool) => {
                #[allow(unused_imports)]
                use $crate::store::db::postgres_sql as $q;
                $body
            }
        }
    };
}

/// [`with_db!`] for a transaction (`&mut Tx`): `$conn` is the engine's `&mut …Connection`.
macro_rules! with_tx {
    ($tx:expr, $conn:ident, $q:ident => $body:expr) => {
        match $tx {
            $crate::store::db::Tx::Sqlite(tx) => {
                #[allow(unused_imports)]
                use $crate::store::db::sqlite_sql as $q;
                let $conn: &mut sqlx::SqliteConnection = &mut **tx;
                $body
            }
            $crate::store::db::Tx::Postgres(tx) => {
                #[allow(unused_imports)]
                use $crate::store::db::postgres_sql as $q;
                let $conn: &mut sqlx::PgConnection = &mut **tx;
                $body
            }
        }
    };
}

pub(crate) use {with_db, with_tx};

/// SQLite's SQL, as written.
pub(crate) fn sqlite_sql<T: SqlSafeStr>(sql: T) -> T {
    sql
}

/// SQL written in SQLite's dialect, for PostgreSQL: see [`translate`].
pub(crate) fn postgres_sql<T: SqlSafeStr>(sql: T) -> AssertSqlSafe<String> {
    AssertSqlSafe(translate(sql.into_sql_str().as_str()))
}

/// Translates SQL written in SQLite's dialect for PostgreSQL: `?N` (and a bare `?`, numbered
/// in order) becomes `$N`, and `INDEXED BY name` is dropped. String literals and quoted
/// identifiers are copied as they are.
pub(crate) fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.char_indices().peekable();
    let mut bare = 0;
    while let Some((at, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break; // A doubled quote reopens the literal on the next turn.
                    }
                }
            }
            '?' => {
                out.push('$');
                let mut digits = false;
                while let Some(&(_, d)) = chars.peek().filter(|(_, d)| d.is_ascii_digit()) {
                    out.push(d);
                    digits = true;
                    chars.next();
                }
                if !digits {
                    bare += 1;
                    out.push_str(&bare.to_string());
                }
            }
            'I' if sql[at..].starts_with("INDEXED BY ") && word_start(sql, at) => {
                // Skip the keywords, the index's name and the space after it.
                let rest = &sql[at + "INDEXED BY ".len()..];
                let name = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let skip = "INDEXED BY ".len() + name;
                let end = at + skip;
                while chars.peek().is_some_and(|&(i, _)| i < end) {
                    chars.next();
                }
                if chars.peek().is_some_and(|&(_, c)| c == ' ') {
                    chars.next();
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Whether `at` starts a word (not the middle of an identifier).
fn word_start(sql: &str, at: usize) -> bool {
    sql[..at]
        .chars()
        .next_back()
        .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn placeholders_and_index_hints_are_translated_outside_literals() {
        assert_eq!(
            translate(
                "SELECT id FROM deployments INDEXED BY deployments_service WHERE app = ?1 AND reason = 'why?2' AND id < ?12"
            ),
            "SELECT id FROM deployments WHERE app = $1 AND reason = 'why?2' AND id < $12"
        );
        assert_eq!(
            translate("UPDATE t SET a = ?, b = ? WHERE c = 'it''s ?'"),
            "UPDATE t SET a = $1, b = $2 WHERE c = 'it''s ?'"
        );
        assert_eq!(
            translate("SELECT x_INDEXED BY_y FROM \"INDEXED BY q\""),
            "SELECT x_INDEXED BY_y FROM \"INDEXED BY q\""
        );
        assert_eq!(translate("FROM d INDEXED BY i\n WHERE"), "FROM d \n WHERE");
    }
}
