//! Alertmanager alerts as received and decided (`alerts`, migration 0016): one row per alert
//! and matching rule (one without a rule when none matches), with the outcome and reason.
//!
//! The planner writes them in its planning transaction ([`Planning::record_alert`]) and reads
//! what its decisions need through the same transaction ([`Planning::alert_facts`]: earlier
//! rows of the same batch included), so decisions are durable and in delivery order. The API
//! (`GET /api/v1/alerts`), the inspector (the alerts of a delivery) and the lanes (the alert
//! a deployment acts on, for `FERRY_ALERT_*` and a restart) read them here. Rows go with their
//! delivery (`ON DELETE CASCADE`).

use serde_json::{Value, json};

use super::db::{with_db, with_tx};
use super::{Planning, Store, StoreError};
use crate::states::AlertOutcome;
use crate::timefmt::json_time;

/// One alert row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewAlert {
    pub(crate) delivery_id: i64,
    pub(crate) app: String,
    pub(crate) rule: Option<String>,
    pub(crate) fingerprint: String,
    pub(crate) alertname: String,
    /// `firing` or `resolved`.
    pub(crate) status: String,
    pub(crate) starts_at: String,
    pub(crate) ends_at: Option<String>,
    /// JSON objects.
    pub(crate) labels: String,
    pub(crate) annotations: String,
    /// What the rule does (`restart web`, …), when a rule matched.
    pub(crate) action: Option<String>,
    pub(crate) outcome: AlertOutcome,
    pub(crate) reason: Option<String>,
    pub(crate) deployment_id: Option<i64>,
}

/// One alert row as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct AlertRow {
    pub(crate) id: i64,
    pub(crate) delivery_id: i64,
    pub(crate) app: String,
    pub(crate) rule: Option<String>,
    pub(crate) fingerprint: String,
    pub(crate) alertname: String,
    pub(crate) status: String,
    pub(crate) starts_at: String,
    pub(crate) ends_at: Option<String>,
    pub(crate) labels: String,
    pub(crate) annotations: String,
    pub(crate) action: Option<String>,
    pub(crate) outcome: AlertOutcome,
    pub(crate) reason: Option<String>,
    pub(crate) deployment_id: Option<i64>,
    pub(crate) created_at: i64,
}

const ALERT_COLUMNS: &str = "id, delivery_id, app, rule, fingerprint, alertname, status, starts_at, ends_at, labels, annotations, action, outcome, reason, deployment_id, created_at";

impl AlertRow {
    /// How the API shows an alert (labels and annotations as objects).
    pub(crate) fn json(&self) -> Value {
        let object = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        json!({
            "id": self.id,
            "delivery_id": self.delivery_id,
            "app": self.app,
            "alertname": self.alertname,
            "status": self.status,
            "fingerprint": self.fingerprint,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "labels": object(&self.labels),
            "annotations": object(&self.annotations),
            "rule": self.rule,
            "action": self.action,
            "outcome": self.outcome,
            "reason": self.reason,
            "deployment_id": self.deployment_id,
            "created_at": json_time(Some(self.created_at)),
        })
    }
}

/// What a rule's decision on one alert needs to know of the rule's past actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AlertFacts {
    /// The rule already acted on this alert's fingerprint, `startsAt` and status.
    pub(crate) duplicate: bool,
    /// When the rule last acted on this fingerprint with this status (unix ms).
    pub(crate) last_action: Option<i64>,
    /// The rule's actions since `since` (the last hour), across fingerprints.
    pub(crate) recent_actions: i64,
}

/// `GET /api/v1/alerts` filters: newest first, `before` an id.
#[derive(Debug, Clone, Default)]
pub(crate) struct AlertFilter {
    pub(crate) app: Option<String>,
    pub(crate) outcome: Option<AlertOutcome>,
    pub(crate) before: Option<i64>,
    pub(crate) limit: i64,
}

impl Planning {
    /// What the rule `rule` of `app` did before, for an alert (`fingerprint`, `starts_at`,
    /// `status`): read through the planning transaction, so earlier rows of the batch count.
    pub(crate) async fn alert_facts(
        &mut self,
        key: (&str, &str),
        alert: (&str, &str, &str),
        since: i64,
    ) -> Result<AlertFacts, StoreError> {
        let (app, rule) = key;
        let (fingerprint, starts_at, status) = alert;
        with_tx!(&mut self.tx, tx, q => {
            let duplicate: Option<i64> = sqlx::query_scalar(q(
                "SELECT id FROM alerts WHERE outcome = 'acted' AND app = ?1 AND rule = ?2 AND fingerprint = ?3 AND starts_at = ?4 AND status = ?5 LIMIT 1",
            ))
            .bind(app).bind(rule).bind(fingerprint).bind(starts_at).bind(status)
            .fetch_optional(&mut *tx)
            .await?;
            let last_action: Option<i64> = sqlx::query_scalar(q(
                "SELECT MAX(created_at) FROM alerts WHERE outcome = 'acted' AND app = ?1 AND rule = ?2 AND fingerprint = ?3 AND status = ?4",
            ))
            .bind(app).bind(rule).bind(fingerprint).bind(status)
            .fetch_one(&mut *tx)
            .await?;
            let recent_actions: i64 = sqlx::query_scalar(q(
                "SELECT COUNT(*) FROM alerts WHERE outcome = 'acted' AND app = ?1 AND rule = ?2 AND created_at > ?3",
            ))
            .bind(app).bind(rule).bind(since)
            .fetch_one(&mut *tx)
            .await?;
            Ok(AlertFacts { duplicate: duplicate.is_some(), last_action, recent_actions })
        })
    }

    /// Writes one alert row at `now` (the planning batch's time).
    pub(crate) async fn record_alert(&mut self, a: &NewAlert, now: i64) -> Result<(), StoreError> {
        with_tx!(&mut self.tx, tx, q => sqlx::query(q(
            "INSERT INTO alerts (delivery_id, app, rule, fingerprint, alertname, status, starts_at, ends_at, labels, annotations, action, outcome, reason, deployment_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        ))
        .bind(a.delivery_id)
        .bind(&a.app)
        .bind(&a.rule)
        .bind(&a.fingerprint)
        .bind(&a.alertname)
        .bind(&a.status)
        .bind(&a.starts_at)
        .bind(&a.ends_at)
        .bind(&a.labels)
        .bind(&a.annotations)
        .bind(&a.action)
        .bind(a.outcome)
        .bind(&a.reason)
        .bind(a.deployment_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map(drop))?;
        Ok(())
    }
}

impl Store {
    /// Alerts, newest first (`GET /api/v1/alerts`).
    pub(crate) async fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts
             WHERE (?1 IS NULL OR app = ?1) AND (?2 IS NULL OR outcome = ?2) AND (?3 IS NULL OR id < ?3)
             ORDER BY id DESC LIMIT ?4"
        ));
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, AlertRow>(q(sql))
            .bind(f.app.as_deref())
            .bind(f.outcome.map(|o| o.as_str()))
            .bind(f.before)
            .bind(f.limit)
            .fetch_all(pool)
            .await)?,
        )
    }

    /// The alerts of one delivery, in the order decided (the inspector).
    pub(crate) async fn alerts_of_delivery(
        &self,
        delivery_id: i64,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE delivery_id = ?1 ORDER BY id"
        ));
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, AlertRow>(q(sql))
            .bind(delivery_id)
            .fetch_all(pool)
            .await)?,
        )
    }

    /// The alert a deployment acts on: the row that planned it (or, for a retry of an
    /// interrupted run, the row that planned the first attempt: `retry_of` is followed).
    pub(crate) async fn alert_of_deployment(
        &self,
        deployment_id: i64,
    ) -> Result<Option<AlertRow>, StoreError> {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE deployment_id = ?1 LIMIT 1");
        let mut id = Some(deployment_id);
        // Bounded: retries are limited by `server.retry_interrupted`.
        for _ in 0..32 {
            let Some(at) = id else { break };
            let row = with_db!(&self.db, pool, q => sqlx::query_as::<_, AlertRow>(q(sqlx::AssertSqlSafe(sql.clone())))
                .bind(at)
                .fetch_optional(pool)
                .await)?;
            if row.is_some() {
                return Ok(row);
            }
            id = with_db!(&self.db, pool, q => sqlx::query_scalar::<_, Option<i64>>(q("SELECT retry_of FROM deployments WHERE id = ?1"))
                .bind(at)
                .fetch_optional(pool)
                .await)?
            .flatten();
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::with_db;

    fn alert(
        delivery_id: i64,
        rule: &str,
        fp: &str,
        starts: &str,
        outcome: AlertOutcome,
    ) -> NewAlert {
        NewAlert {
            delivery_id,
            app: "shop".into(),
            rule: Some(rule.into()),
            fingerprint: fp.into(),
            alertname: "Down".into(),
            status: "firing".into(),
            starts_at: starts.into(),
            ends_at: None,
            labels: r#"{"alertname":"Down"}"#.into(),
            annotations: "{}".into(),
            action: Some("restart web".into()),
            outcome,
            reason: None,
            deployment_id: (outcome == AlertOutcome::Acted).then_some(7),
        }
    }

    /// The facts a decision reads, on both engines: a duplicate is the same fingerprint,
    /// `startsAt` and status; the last action is per fingerprint and status; the cap counts
    /// the rule's actions since a time, across fingerprints; skipped rows count for nothing.
    #[tokio::test]
    async fn facts_and_reads_on_both_engines() {
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let delivery: i64 = with_db!(&store.db, pool, q => sqlx::query_scalar(q("INSERT INTO deliveries (app, source, received_at, verified, status, headers) VALUES ('shop', 'alertmanager', 1, TRUE, 'received', '{}') RETURNING id"))
                .fetch_one(pool)
                .await)
            .unwrap();
            let mut tx = store.begin_planning().await.unwrap();
            let key = ("shop", "r");
            let a = ("aa01", "2026-12-04T17:00:00Z", "firing");
            assert_eq!(
                tx.alert_facts(key, a, 0).await.unwrap(),
                AlertFacts::default()
            );
            tx.record_alert(
                &alert(delivery, "r", "aa01", a.1, AlertOutcome::Acted),
                1_000,
            )
            .await
            .unwrap();
            tx.record_alert(
                &alert(delivery, "r", "aa02", a.1, AlertOutcome::Acted),
                2_000,
            )
            .await
            .unwrap();
            tx.record_alert(
                &alert(
                    delivery,
                    "r",
                    "aa01",
                    "2026-12-04T18:00:00Z",
                    AlertOutcome::Cooldown,
                ),
                3_000,
            )
            .await
            .unwrap();
            tx.record_alert(
                &alert(delivery, "other", "aa01", a.1, AlertOutcome::Acted),
                4_000,
            )
            .await
            .unwrap();
            // Seen through the same transaction, before it commits.
            let f = tx.alert_facts(key, a, 0).await.unwrap();
            assert_eq!(
                f,
                AlertFacts {
                    duplicate: true,
                    last_action: Some(1_000),
                    recent_actions: 2
                }
            );
            let later = ("aa01", "2026-12-04T18:00:00Z", "firing");
            let f = tx.alert_facts(key, later, 1_500).await.unwrap();
            assert_eq!(
                f,
                AlertFacts {
                    duplicate: false,
                    last_action: Some(1_000),
                    recent_actions: 1
                }
            );
            let resolved = ("aa01", a.1, "resolved");
            let f = tx.alert_facts(key, resolved, 0).await.unwrap();
            assert_eq!((f.duplicate, f.last_action), (false, None));
            tx.commit().await.unwrap();

            let all = store
                .alerts(&AlertFilter {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(all.len(), 4);
            assert_eq!(all[0].rule.as_deref(), Some("other"), "newest first");
            let cooled = store
                .alerts(&AlertFilter {
                    outcome: Some(AlertOutcome::Cooldown),
                    app: Some("shop".into()),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(cooled.len(), 1);
            assert_eq!(cooled[0].json()["labels"]["alertname"], "Down");
            let none = store
                .alerts(&AlertFilter {
                    app: Some("nope".into()),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(none.is_empty());
            assert_eq!(store.alerts_of_delivery(delivery).await.unwrap().len(), 4);
            let of = store.alert_of_deployment(7).await.unwrap().unwrap();
            assert_eq!(of.fingerprint, "aa01");
            assert!(store.alert_of_deployment(8).await.unwrap().is_none());
        }
    }
}
