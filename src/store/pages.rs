//! The dashboard's list of deliveries filtered by status. Refused and unplanned deliveries
//! have partial indexes of their own and are read through them; `planned`, which no index
//! leads with (the dashboard adds no migration), is read a bounded window of ids below
//! `before` at a time, so a page never scans a million rows. A page
//! may then hold fewer rows than asked for; `next_before` says where the next window starts
//! (`None`: the oldest row has been looked at).

use super::db::with_db;
use super::deliveries::Delivery;
use super::{DeliveryStatus, Store, StoreError};

/// Ids looked at per page at most when a filter has no index of its own.
pub(crate) const SCAN_WINDOW: i64 = 20_000;

/// One page of a list: its rows, newest first, and the `before` of the next page.
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub(crate) rows: Vec<T>,
    pub(crate) next_before: Option<i64>,
}

/// The next page's `before`: the last row's id when the page is full, else the window's floor
/// (unless the window reached id 1, so nothing older is left).
fn next_before<T>(rows: &[T], id: impl Fn(&T) -> i64, limit: i64, floor: i64) -> Option<i64> {
    if rows.len() as i64 == limit {
        rows.last().map(id)
    } else {
        (floor > 1).then_some(floor)
    }
}

impl Store {
    /// A page of deliveries with `status` (and `app` when given), newest first. `rejected`
    /// and `received` walk their partial indexes (each small: refused deliveries are capped
    /// per app, received ones wait only for the planner), so their pages are exact; `planned`,
    /// nearly every delivery, reads a bounded window.
    pub(crate) async fn deliveries_with_status(
        &self,
        app: Option<&str>,
        status: DeliveryStatus,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Page<Delivery>, StoreError> {
        const COLUMNS: &str = "id, app, source, event, source_delivery_id, received_at, verified, scheme, status, error, query, replay_of, note, duplicates, duplicate_at, planned_at, refused_with";
        // `Delivery`'s columns, as in `deliveries.rs` (the tests below read through each arm).
        // The literals let SQLite use the partial indexes (it matches them only against
        // literals), as in `deliveries.rs`.
        let indexed = match status {
            DeliveryStatus::Rejected => {
                Some("INDEXED BY deliveries_rejected WHERE status = 'rejected'")
            }
            DeliveryStatus::Received => {
                Some("INDEXED BY deliveries_unplanned WHERE status = 'received'")
            }
            DeliveryStatus::Planned => None,
        };
        let (sql, floor) = match indexed {
            Some(index) => (
                format!(
                    "SELECT {COLUMNS} FROM deliveries {index} AND id < ?1 AND id >= ?2
                     AND (?4 IS NULL OR app = ?4) ORDER BY id DESC LIMIT ?5"
                ),
                1,
            ),
            None => {
                let top = match before {
                    Some(b) => b,
                    None => self.newest_delivery_id().await? + 1,
                };
                let sql = format!(
                    "SELECT {COLUMNS} FROM deliveries WHERE id < ?1 AND id >= ?2 AND status = ?3
                     AND (?4 IS NULL OR app = ?4) ORDER BY id DESC LIMIT ?5"
                );
                (sql, (top - SCAN_WINDOW).max(1))
            }
        };
        let rows = with_db!(&self.db, pool, q => sqlx::query_as::<_, Delivery>(q(sqlx::AssertSqlSafe(sql)))
            .bind(before.unwrap_or(i64::MAX))
            .bind(floor)
            .bind(status)
            .bind(app)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        let next_before = next_before(&rows, |d| d.id, limit, floor);
        Ok(Page { rows, next_before })
    }

    async fn newest_delivery_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = with_db!(&self.db, pool, q => sqlx::query_scalar(q("SELECT MAX(id) FROM deliveries"))
            .fetch_one(pool)
            .await)?;
        Ok(id.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use crate::store::db::{with_db, with_tx};
    use bytes::Bytes;

    use super::*;
    use crate::store::{Inserted, NewDelivery};

    fn delivery(app: &str, status: DeliveryStatus) -> NewDelivery {
        NewDelivery {
            app: app.into(),
            source: "generic".into(),
            event: None,
            source_delivery_id: None,
            dedupe_key: None,
            received_at: 1,
            verified: false,
            scheme: None,
            status,
            error: None,
            query: None,
            headers: "{}".into(),
            body: Bytes::new(),
            replay_of: None,
            refused_with: None,
        }
    }

    #[tokio::test]
    async fn status_pages_walk_bounded_windows_down_to_the_oldest() {
        for (_dir, store, intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let mut rejected = Vec::new();
            for i in 0..6 {
                let status = if i % 2 == 0 {
                    DeliveryStatus::Rejected
                } else {
                    DeliveryStatus::Received
                };
                let app = if i < 4 { "a" } else { "b" };
                match intake.insert(delivery(app, status)).await.expect("insert") {
                    Inserted::New(id) if status == DeliveryStatus::Rejected => rejected.push(id),
                    _ => {}
                }
            }
            let page = store
                .deliveries_with_status(None, DeliveryStatus::Rejected, None, 2)
                .await
                .expect("page");
            let ids: Vec<i64> = page.rows.iter().map(|d| d.id).collect();
            assert_eq!(ids, [rejected[2], rejected[1]]);
            let next = page.next_before.expect("a full page has a next one");
            let page = store
                .deliveries_with_status(None, DeliveryStatus::Rejected, Some(next), 2)
                .await
                .expect("page");
            assert_eq!(page.rows.len(), 1);
            assert_eq!(page.next_before, None, "the window reached the oldest id");
            let of_b = store
                .deliveries_with_status(Some("b"), DeliveryStatus::Rejected, None, 10)
                .await
                .expect("page");
            assert_eq!(of_b.rows.len(), 1);
            assert_eq!(of_b.rows[0].app, "b");
            let planned = store
                .deliveries_with_status(None, DeliveryStatus::Planned, None, 10)
                .await
                .expect("page");
            assert!(planned.rows.is_empty() && planned.next_before.is_none());
            let received = store
                .deliveries_with_status(Some("a"), DeliveryStatus::Received, None, 10)
                .await
                .expect("page");
            assert_eq!(received.rows.len(), 2, "{:?}", received.rows);
        }
    }

    #[test]
    fn a_window_short_of_a_page_points_below_itself() {
        let rows = [5_i64, 3];
        assert_eq!(next_before(&rows, |r| *r, 2, 100), Some(3));
        assert_eq!(next_before(&rows, |r| *r, 10, 100), Some(100));
        assert_eq!(next_before(&rows, |r| *r, 10, 1), None);
    }
}
