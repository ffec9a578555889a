//! [`Steps`]: how an executor records the steps of its run (pull, create, start, health,
//! remove or rollback; `run` for a command) as it takes them, for the API, the dashboard and
//! `ferry deploy --wait`. The lanes give each job one bound to its deployment; executors only
//! say when a step begins and how it ended. Recording is best effort: a store that cannot
//! write a step is logged, never a reason to fail the deployment.

use std::sync::{Arc, Mutex};

use super::Outcome;
use crate::states::{StepName, StepOutcome};
use crate::store::Store;

/// The step recorder of one run. The default records nothing (unit tests).
#[derive(Clone, Debug, Default)]
pub(crate) struct Steps(Option<Arc<Recorder>>);

struct Recorder {
    store: Store,
    deployment: i64,
    /// The last step's number, and the steps begun and not yet ended.
    state: Mutex<(i64, Vec<i64>)>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("deployment", &self.deployment)
            .finish_non_exhaustive()
    }
}

/// A step begun: what [`Steps::end`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StepId(i64);

impl Steps {
    /// Records the steps of deployment `deployment` in `store`.
    pub(crate) fn new(store: Store, deployment: i64) -> Steps {
        Steps(Some(Arc::new(Recorder {
            store,
            deployment,
            state: Mutex::new((0, Vec::new())),
        })))
    }

    /// Begins step `name` (about `detail`, e.g. a container's name).
    pub(crate) async fn begin(&self, name: StepName, detail: Option<&str>) -> StepId {
        let Some(r) = &self.0 else {
            return StepId(0);
        };
        let seq = {
            let mut state = r.lock();
            state.0 += 1;
            let seq = state.0;
            state.1.push(seq);
            seq
        };
        if let Err(e) = r.store.begin_step(r.deployment, seq, name, detail).await {
            tracing::warn!(deployment = r.deployment, step = %name, error = %e, "cannot record a deployment step");
        }
        StepId(seq)
    }

    /// Ends a step: `ok`, or failed with why (`detail`).
    pub(crate) async fn end(&self, step: StepId, ok: bool, detail: Option<&str>) {
        let Some(r) = &self.0 else {
            return;
        };
        r.lock().1.retain(|s| *s != step.0);
        let outcome = if ok {
            StepOutcome::Ok
        } else {
            StepOutcome::Failed
        };
        if let Err(e) = r
            .store
            .end_step(r.deployment, step.0, outcome, detail)
            .await
        {
            tracing::warn!(deployment = r.deployment, error = %e, "cannot record the end of a deployment step");
        }
    }

    /// Runs `work` as step `name`: ok when it returns `Ok`, failed with its error otherwise.
    pub(crate) async fn run<T, E: std::fmt::Display>(
        &self,
        name: StepName,
        detail: Option<&str>,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let step = self.begin(name, detail).await;
        let result = work.await;
        match &result {
            Ok(_) => self.end(step, true, None).await,
            Err(e) => self.end(step, false, Some(&e.to_string())).await,
        }
        result
    }

    /// Ends a step by an executor's outcome: ok only if it succeeded.
    pub(crate) async fn end_with(&self, step: StepId, outcome: &Outcome) {
        self.end(
            step,
            *outcome == Outcome::Succeeded,
            describe(outcome).as_deref(),
        )
        .await;
    }

    /// Ends every step still open as failed with `why` (a run that stopped half-way).
    pub(crate) async fn close_open(&self, why: &str) {
        let Some(r) = &self.0 else {
            return;
        };
        let open = std::mem::take(&mut r.lock().1);
        for seq in open {
            self.end(StepId(seq), false, Some(why)).await;
        }
    }
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, (i64, Vec<i64>)> {
        // A counter and a list: consistent whatever panicked while holding them.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a step's detail says of an outcome other than success.
pub(crate) fn describe(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Succeeded => None,
        Outcome::Failed {
            exit_code: Some(c), ..
        } => Some(format!("exited with status {c}")),
        Outcome::Failed {
            signal: Some(s), ..
        } => Some(format!("killed by signal {s}")),
        Outcome::Failed { .. } => Some("failed".into()),
        Outcome::TimedOut { after } => Some(format!(
            "timed out after {}",
            humantime::format_duration(*after)
        )),
        Outcome::Cancelled => Some("cancelled".into()),
        Outcome::RolledBack { reason } => Some(reason.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recorder_numbers_steps_and_closes_what_was_left_open() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _intake) = Store::open(dir.path()).await.unwrap();
        store.insert_running_deployment(5).await;
        let steps = Steps::new(store.clone(), 5);
        let pulled: Result<(), String> = steps.run(StepName::Pull, None, async { Ok(()) }).await;
        assert!(pulled.is_ok());
        let failed: Result<(), String> = steps
            .run(StepName::Create, Some("api"), async {
                Err("no room".to_string())
            })
            .await;
        assert!(failed.is_err());
        let health = steps.begin(StepName::Health, Some("api")).await;
        let _rollback = steps.begin(StepName::Rollback, Some("api")).await;
        steps.end_with(health, &Outcome::Cancelled).await;
        steps.close_open("ferry is shutting down").await;
        let got: Vec<_> = store
            .steps_of(5)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.seq, s.name, s.outcome, s.detail))
            .collect();
        let failed = Some(StepOutcome::Failed);
        assert_eq!(
            got,
            [
                (1, StepName::Pull, Some(StepOutcome::Ok), None),
                (2, StepName::Create, failed, Some("no room".into())),
                (3, StepName::Health, failed, Some("cancelled".into())),
                (
                    4,
                    StepName::Rollback,
                    failed,
                    Some("ferry is shutting down".into())
                ),
            ]
        );
        // The default records nothing and never fails.
        let none = Steps::default();
        let s = none.begin(StepName::Run, None).await;
        none.end(s, true, None).await;
    }
}
