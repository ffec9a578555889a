//! The steps of a deployment's run (`deployment_steps`, migration 0011): what the executor did,
//! in order, with times and how each ended — written by the executors as they go
//! (`executors::Steps`), read by the API (`GET /api/v1/deployments/ID`) and published live.
//! Rows go with their deployment (`ON DELETE CASCADE`).

use serde_json::{Value, json};

use super::db::with_db;
use super::{Store, StoreError, now_ms};
use crate::live::{Change, Kind};
use crate::states::{StepName, StepOutcome};
use crate::timefmt::json_time;

/// One step as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct Step {
    pub(crate) deployment_id: i64,
    /// Its place in the run, from 1.
    pub(crate) seq: i64,
    pub(crate) name: StepName,
    pub(crate) started_at: i64,
    pub(crate) ended_at: Option<i64>,
    pub(crate) outcome: Option<StepOutcome>,
    /// What it acted on (a container), or why it failed.
    pub(crate) detail: Option<String>,
}

impl Step {
    /// How the API shows a step (times as RFC 3339; `duration_ms` once it ended).
    pub(crate) fn json(&self) -> Value {
        json!({
            "name": self.name,
            "started_at": json_time(Some(self.started_at)),
            "ended_at": json_time(self.ended_at),
            "duration_ms": self.ended_at.map(|e| (e - self.started_at).max(0)),
            "outcome": self.outcome,
            "detail": self.detail,
        })
    }
}

const STEP_COLUMNS: &str = "deployment_id, seq, name, started_at, ended_at, outcome, detail";

impl Store {
    /// A deployment's steps, in the order they were taken.
    pub(crate) async fn steps_of(&self, deployment_id: i64) -> Result<Vec<Step>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {STEP_COLUMNS} FROM deployment_steps WHERE deployment_id = ?1 ORDER BY seq"
        ));
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, Step>(q(sql))
            .bind(deployment_id)
            .fetch_all(pool)
            .await)?,
        )
    }

    /// Records that step `seq` (`name`, about `detail`) of a deployment started now.
    pub(crate) async fn begin_step(
        &self,
        deployment_id: i64,
        seq: i64,
        name: StepName,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let _gate = self.gate.lock().await;
        with_db!(&self.db, pool, q => sqlx::query(
            q("INSERT INTO deployment_steps (deployment_id, seq, name, started_at, detail) VALUES (?1, ?2, ?3, ?4, ?5)"),
        )
        .bind(deployment_id)
        .bind(seq)
        .bind(name)
        .bind(now_ms())
        .bind(detail)
        .execute(pool)
        .await.map(drop))?;
        self.publish_step(deployment_id, seq).await;
        Ok(())
    }

    /// Records how step `seq` ended; `detail` (why it failed) replaces the one it began with.
    pub(crate) async fn end_step(
        &self,
        deployment_id: i64,
        seq: i64,
        outcome: StepOutcome,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let _gate = self.gate.lock().await;
        with_db!(&self.db, pool, q => sqlx::query(
            q("UPDATE deployment_steps SET ended_at = ?3, outcome = ?4, detail = COALESCE(?5, detail)
             WHERE deployment_id = ?1 AND seq = ?2 AND ended_at IS NULL"),
        )
        .bind(deployment_id)
        .bind(seq)
        .bind(now_ms())
        .bind(outcome)
        .bind(detail)
        .execute(pool)
        .await.map(drop))?;
        self.publish_step(deployment_id, seq).await;
        Ok(())
    }

    /// `event: step`, here and (announced) on the other replicas.
    async fn publish_step(&self, deployment_id: i64, seq: i64) {
        self.announce(super::broadcast::Announced {
            steps: vec![(deployment_id, seq)],
            ..Default::default()
        })
        .await;
        self.publish_step_here(deployment_id, seq).await;
    }

    /// `event: step`: the step with its deployment's id, app and service (read only when
    /// somebody watches, under the gate the caller holds).
    pub(super) async fn publish_step_here(&self, deployment_id: i64, seq: i64) {
        if !self.live.listening() {
            return;
        }
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT s.{}, d.app, d.service FROM deployment_steps s JOIN deployments d ON d.id = s.deployment_id
             WHERE s.deployment_id = ?1 AND s.seq = ?2",
            STEP_COLUMNS.replace(", ", ", s.")
        ));
        let row: Result<Option<(Step, String, String)>, sqlx::Error> = async {
            use sqlx::{FromRow, Row};
            with_db!(&self.db, pool, q => {
                let Some(row) = sqlx::query(q(sql))
                    .bind(deployment_id)
                    .bind(seq)
                    .fetch_optional(pool)
                    .await?
                else {
                    return Ok(None);
                };
                Ok(Some((
                    Step::from_row(&row)?,
                    row.try_get("app")?,
                    row.try_get("service")?,
                )))
            })
        }
        .await;
        match row {
            Ok(Some((step, app, service))) => self.live.publish(|| {
                Change::new(Kind::Step, app.clone(), move || {
                    let mut v = step.json();
                    v["deployment_id"] = json!(step.deployment_id);
                    v["seq"] = json!(step.seq);
                    v["app"] = json!(app);
                    v["service"] = json!(service);
                    v
                })
            }),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read a step for live viewers"),
        }
    }
}

#[cfg(test)]
impl Store {
    /// A delivery and a running deployment `id` of service `a/s` (tests of step writers).
    pub(crate) async fn insert_running_deployment(&self, id: i64) {
        with_db!(&self.db, pool, q => sqlx::query(q("INSERT INTO deliveries (id, app, source, received_at, verified, status, headers) VALUES (?1, 'a', 'generic', 1, TRUE, 'planned', '{}')"))
            .bind(id)
            .execute(pool)
            .await.map(drop))
            .expect("delivery");
        with_db!(&self.db, pool, q => sqlx::query(q("INSERT INTO deployments (id, app, service, delivery_id, state, source, event, created_at) VALUES (?1, 'a', 's', ?1, 'running', 'generic', 'e', 1)"))
            .bind(id)
            .execute(pool)
            .await.map(drop))
            .expect("deployment");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::store::db::{with_db, with_tx};

    #[tokio::test]
    async fn steps_are_recorded_in_order_with_their_ends() {
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            store.insert_running_deployment(9).await;
            let mut live = store.live().subscribe();
            store.begin_step(9, 1, StepName::Pull, None).await.unwrap();
            store.end_step(9, 1, StepOutcome::Ok, None).await.unwrap();
            store
                .begin_step(9, 2, StepName::Create, Some("api"))
                .await
                .unwrap();
            store
                .end_step(9, 2, StepOutcome::Failed, Some("no such network"))
                .await
                .unwrap();
            // A second end changes nothing.
            store.end_step(9, 2, StepOutcome::Ok, None).await.unwrap();
            store
                .begin_step(9, 3, StepName::Rollback, Some("api"))
                .await
                .unwrap();
            let steps = store.steps_of(9).await.unwrap();
            let names: Vec<_> = steps.iter().map(|s| (s.seq, s.name, s.outcome)).collect();
            assert_eq!(
                names,
                [
                    (1, StepName::Pull, Some(StepOutcome::Ok)),
                    (2, StepName::Create, Some(StepOutcome::Failed)),
                    (3, StepName::Rollback, None),
                ]
            );
            assert_eq!(steps[1].detail.as_deref(), Some("no such network"));
            let open = steps[2].json();
            assert_eq!(open["ended_at"], Value::Null);
            assert_eq!(open["duration_ms"], Value::Null);
            assert_eq!(open["detail"], "api");
            assert!(steps[0].json()["duration_ms"].as_i64().unwrap() >= 0);
            let batch = live.recv().await.unwrap();
            let text = String::from_utf8_lossy(&batch.part(Some("a")).unwrap().bytes).into_owned();
            let first = text.split("\n\n").next().unwrap();
            let data = first.strip_prefix("event: step\ndata: ").unwrap();
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(
                (v["deployment_id"].as_i64(), v["name"].as_str()),
                (Some(9), Some("pull"))
            );
            assert_eq!(
                (v["app"].as_str(), v["service"].as_str()),
                (Some("a"), Some("s"))
            );

            // Steps go with their deployment.
            with_db!(&store.db, pool, q => sqlx::query(q("DELETE FROM deployments WHERE id = 9"))
            .execute(pool)
            .await.map(drop))
            .unwrap();
            assert!(store.steps_of(9).await.unwrap().is_empty());
        }
    }
}
