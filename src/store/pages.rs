//! Reads for the dashboard's lists when they filter by a state or status that no index leads
//! with (no migration may add one in this issue): each page looks at a bounded window of ids
//! below `before`, so a rare state over a million rows costs one window, not a scan. A page
//! may then hold fewer rows than asked for; `next_before` says where the next window starts
//! (`None`: the oldest row has been looked at).

use super::deliveries::Delivery;
use super::deployments::{DEPLOYMENT_COLUMNS, Deployment};
use super::{DeliveryStatus, ListFilter, Store, StoreError};

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
    /// A page of deliveries with `status` (and `app` when given), newest first.
    pub(crate) async fn deliveries_with_status(
        &self,
        app: Option<&str>,
        status: DeliveryStatus,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Page<Delivery>, StoreError> {
        let before = match before {
            Some(b) => b,
            None => self.newest_delivery_id().await? + 1,
        };
        let floor = (before - SCAN_WINDOW).max(1);
        let rows = sqlx::query_as::<_, Delivery>(
            "SELECT id, app, source, event, source_delivery_id, received_at, verified, status, error, query, replay_of, note
             FROM deliveries WHERE id < ?1 AND id >= ?2 AND status = ?3 AND (?4 IS NULL OR app = ?4)
             ORDER BY id DESC LIMIT ?5",
        )
        .bind(before)
        .bind(floor)
        .bind(status)
        .bind(app)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let next_before = next_before(&rows, |d| d.id, limit, floor);
        Ok(Page { rows, next_before })
    }

    /// A page of deployments whose filter names a state, newest first.
    pub(crate) async fn deployments_in_state(
        &self,
        f: &ListFilter,
    ) -> Result<Page<Deployment>, StoreError> {
        let before = match f.before {
            Some(b) => b,
            None => self.newest_deployment_id().await? + 1,
        };
        let floor = (before - SCAN_WINDOW).max(1);
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments
             WHERE id < ?1 AND id >= ?2 AND (?3 IS NULL OR state = ?3)
               AND (?4 IS NULL OR app = ?4) AND (?5 IS NULL OR service = ?5)
             ORDER BY id DESC LIMIT ?6"
        ));
        let rows = sqlx::query_as::<_, Deployment>(sql)
            .bind(before)
            .bind(floor)
            .bind(f.state)
            .bind(&f.app)
            .bind(&f.service)
            .bind(f.limit)
            .fetch_all(&self.pool)
            .await?;
        let next_before = next_before(&rows, |d| d.id, f.limit, floor);
        Ok(Page { rows, next_before })
    }

    async fn newest_delivery_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM deliveries")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }

    async fn newest_deployment_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM deployments")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }
}
