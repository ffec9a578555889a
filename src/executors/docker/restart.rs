//! The docker executor's restart mode, for an alert rule's `restart = "SERVICE"` (issue 15):
//! restart the service's containers in place (Docker Engine restart: stop with a grace period,
//! start again, same container and image), one at a time, each through the same health gate
//! as a deployment (`executors::health`). Nothing is replaced, so nothing can be rolled back:
//! a container that is not healthy after its restart fails the deployment, and the reason
//! says so.

use bollard::query_parameters::RestartContainerOptions;

use super::super::health::{Health, wait_healthy};
use super::super::{Outcome, Steps, Stop};
use super::{DockerError, connect, select};
use crate::config::DockerSpec;
use crate::deploylog::LogWriter;
use crate::states::StepName;

/// Seconds Docker waits after the stop signal before it kills a restarting container.
const STOP_GRACE_SECS: i32 = 10;

/// Restarts the containers `spec` selects, health-gated; see the module documentation.
pub(crate) async fn restart(
    spec: &DockerSpec,
    log: &LogWriter,
    cancel: &Stop,
    steps: &Steps,
) -> Result<Outcome, DockerError> {
    let docker = connect().await?;
    let targets = select(&docker, &spec.select).await?;
    for name in &targets {
        if cancel.is_cancelled() {
            log.ferry(&format!(
                "cancelled before restarting {name}: {}",
                cancel.why()
            ))
            .await?;
            return Ok(Outcome::Cancelled);
        }
        log.ferry(&format!("restarting container {name} (alert action)"))
            .await?;
        let options = RestartContainerOptions {
            t: Some(STOP_GRACE_SECS),
            ..Default::default()
        };
        let restarted = docker.restart_container(name, Some(options));
        steps
            .run(StepName::Restart, Some(name), async {
                restarted.await.map_err(DockerError::from)
            })
            .await?;
        let step = steps.begin(StepName::Health, Some(name)).await;
        let health = wait_healthy(&docker, &spec.health, log, cancel, name).await;
        match health {
            Health::Healthy(_) => steps.end(step, true, None).await,
            Health::Cancelled(reason) => {
                steps.end(step, false, Some(&reason)).await;
                return Ok(Outcome::Cancelled);
            }
            Health::Failed(reason) => {
                steps.end(step, false, Some(&reason)).await;
                return Err(DockerError::RestartUnhealthy {
                    container: name.clone(),
                    reason,
                });
            }
        }
    }
    Ok(Outcome::Succeeded)
}
