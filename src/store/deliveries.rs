//! Deliveries as stored, and the queries that read them: one for replays and notifications,
//! the API's list, and the planner's queue of unplanned ones. They are written by the intake
//! writer (`super::batch`) and get their status from planning (`super::planning`). A body is
//! a row of `delivery_bodies`, apart from the row those updates rewrite (migration 0014).

use serde::Serialize;
use sqlx::{FromRow, Row};

use super::db::with_db;
use super::{DeliveryStatus, ListFilter, Store, StoreError};

/// A delivery as stored (without its body, which list calls do not need).
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub(crate) struct Delivery {
    pub(crate) id: i64,
    pub(crate) app: String,
    pub(crate) source: String,
    pub(crate) event: Option<String>,
    pub(crate) source_delivery_id: Option<String>,
    pub(crate) received_at: i64,
    pub(crate) verified: bool,
    /// Which scheme verified it (migration 0012); `None` when nothing did, or before 0012.
    pub(crate) scheme: Option<String>,
    pub(crate) status: DeliveryStatus,
    pub(crate) error: Option<String>,
    pub(crate) query: Option<String>,
    pub(crate) replay_of: Option<i64>,
    /// What the planner noted, e.g. that an event time from the future was not trusted.
    pub(crate) note: Option<String>,
    /// How many duplicates of it were received (not stored), and when the last one was.
    pub(crate) duplicates: i64,
    pub(crate) duplicate_at: Option<i64>,
    /// When the planner was done with it (`None`: not yet, or refused at the hook).
    pub(crate) planned_at: Option<i64>,
    /// The HTTP status a refused hook request was answered with (migration 0012).
    pub(crate) refused_with: Option<i64>,
}

/// A delivery with everything needed to plan or replay it.
#[derive(Debug, Clone)]
pub(crate) struct FullDelivery {
    pub(crate) delivery: Delivery,
    pub(crate) headers: String,
    pub(crate) body: Vec<u8>,
    /// The size of the body as received, when `body` holds only its start (refused
    /// deliveries keep at most [`super::batch::REJECTED_BODY_KEEP`] bytes).
    pub(crate) body_size: Option<i64>,
    /// Why the stored body cannot be decoded (a damaged row; `body.rs`), when it cannot: then
    /// `body` is empty. One such row must not stop the planner or a list from reading the rest.
    pub(crate) unreadable: Option<String>,
}

/// A delivery's columns with its headers and body, for a `deliveries d` joined with its
/// `delivery_bodies b` (migration 0014; no body row reads as an empty body, see
/// [`full_delivery`]; `b.codec` says how the body is stored, see `body.rs`).
macro_rules! full_columns {
    () => {
        "d.id, d.app, d.source, d.event, d.source_delivery_id, d.received_at, d.verified, d.scheme, d.status, d.error, d.query, d.replay_of, d.note, d.duplicates, d.duplicate_at, d.planned_at, d.refused_with, d.headers, b.body, b.codec, d.body_size"
    };
}

impl Store {
    /// One delivery with its headers and body (replays, notifications, the lanes' payload).
    pub(crate) async fn delivery(&self, id: i64) -> Result<Option<FullDelivery>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            full_columns!(),
            " FROM deliveries d LEFT JOIN delivery_bodies b ON b.delivery_id = d.id WHERE d.id = ?1"
        );
        with_db!(&self.db, pool, q => {
            let row = sqlx::query(q(SQL)).bind(id).fetch_optional(pool).await?;
            row.map(|row| full_delivery(&row)).transpose()
        })
    }

    /// A page of deliveries, newest first, for the API.
    pub(crate) async fn deliveries(&self, f: &ListFilter) -> Result<Vec<Delivery>, StoreError> {
        const COLUMNS: &str = "SELECT id, app, source, event, source_delivery_id, received_at, verified, scheme, status, error, query, replay_of, note, duplicates, duplicate_at, planned_at, refused_with FROM deliveries";
        // One statement per filter shape, so SQLite walks an index backwards from `before`
        // instead of scanning: list calls stay flat however many deliveries are stored.
        let before = f.before.unwrap_or(i64::MAX);
        let rows = with_db!(&self.db, pool, q => match &f.app {
            Some(app) => {
                let sql = sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE app = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
                ));
                sqlx::query_as::<_, Delivery>(q(sql))
                    .bind(app)
                    .bind(before)
                    .bind(f.limit)
                    .fetch_all(pool)
                    .await?
            }
            None => {
                let sql = sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
                ));
                sqlx::query_as::<_, Delivery>(q(sql))
                    .bind(before)
                    .bind(f.limit)
                    .fetch_all(pool)
                    .await?
            }
        });
        Ok(rows)
    }

    /// Deliveries accepted but not yet planned, oldest first, from the one after `after` on
    /// (0: from the oldest). The planner passes the last one it holds already.
    pub(crate) async fn unplanned(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FullDelivery>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            full_columns!(),
            " FROM deliveries d LEFT JOIN delivery_bodies b ON b.delivery_id = d.id
                 WHERE d.status = 'received' AND d.id > ?1 ORDER BY d.id LIMIT ?2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        with_db!(&self.db, pool, q => {
            let rows = sqlx::query(q(SQL)).bind(after).bind(limit).fetch_all(pool).await?;
            rows.iter().map(full_delivery).collect()
        })
    }
}

/// A row of [`full_columns`], on either engine.
fn full_delivery<'r, R>(row: &'r R) -> Result<FullDelivery, StoreError>
where
    R: Row,
    Delivery: sqlx::FromRow<'r, R>,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<&'r str>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let delivery = Delivery::from_row(row)?;
    let (body, unreadable) = match super::body::decode(row.try_get("body")?, row.try_get("codec")?)
    {
        Ok(body) => (body, None),
        Err(e) => {
            tracing::warn!(delivery = delivery.id, error = %e, "a stored delivery body cannot be read");
            (Vec::new(), Some(e.to_string()))
        }
    };
    Ok(FullDelivery {
        delivery,
        headers: row.try_get("headers")?,
        body,
        body_size: row.try_get("body_size")?,
        unreadable,
    })
}

#[cfg(test)]
impl Store {
    /// Gives delivery `id`'s stored body a codec nothing can decode: a damaged row, for tests.
    pub(crate) async fn damage_body(&self, id: i64) {
        with_db!(&self.db, pool, q => sqlx::query(q("UPDATE delivery_bodies SET codec = 'zip' WHERE delivery_id = ?1"))
            .bind(id)
            .execute(pool)
            .await
            .map(drop))
        .expect("damage the body");
    }
}
