//! The health gate: how a new container proves it works — before the docker executor removes
//! the old one, and before a Compose deployment counts as succeeded.
//!
//! One probe applies, the first of: the container's own Docker healthcheck, the configured
//! HTTP probe (a 2xx answer, from ferry's host), running without a restart for `stable_for`
//! (see [`HealthGate`]). A container that exits fails at once; the gate gives up after the
//! gate's `timeout`, and stops waiting when the run is stopped (cancel or shutdown).
//!
//! The gate looks at the container (inspects it) every [`LOOK_EVERY`], and at once when Docker
//! reports the container's healthcheck verdict or exit (its event stream, [`changes`]): with
//! looks alone, a check that passed was seen up to 250 ms late — about 250 ms every time with
//! a 1 s check interval, whose checks end just after a look. The verdict always comes from a
//! look, so an event can only make it sooner; without events (the stream failed, or the HTTP
//! and stability probes, which Docker knows nothing of) the looks go on as before.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, EventMessage, HealthStatusEnum};
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::Stop;
use crate::config::HealthGate;
use crate::deploylog::LogWriter;

/// How the wait for a new container ended.
pub(crate) enum Health {
    Healthy(Duration),
    Failed(String),
    /// The run was stopped; the reason is [`Stop::why`].
    Cancelled(String),
}

/// Waits until a new container is healthy (see [`HealthGate`]), or fails, or the time is up.
pub(crate) async fn wait_healthy(
    docker: &Docker,
    spec: &HealthGate,
    log: &LogWriter,
    cancel: &Stop,
    id: &str,
) -> Health {
    let mut gate = Gate::new(spec);
    let mut announced = false;
    let mut changes = Some(changes(docker, id));
    loop {
        let c = match docker.inspect_container(id, None).await {
            Ok(c) => c,
            Err(e) => return Health::Failed(format!("cannot inspect the new container: {e}")),
        };
        if let Some(exited) = exited(&c) {
            return exited;
        }
        let probe = Probe::of(&c, spec);
        if !announced {
            let waits = format!(
                "started; waiting for {} (at most {})",
                probe.waits_for(),
                secs(spec.timeout)
            );
            let _ = log.ferry(&waits).await;
            announced = true;
        }
        if let Some(verdict) = gate.look(probe, &c).await {
            return verdict;
        }
        if Instant::now() >= gate.deadline {
            return gate.timed_out(probe, &c);
        }
        let events_flow = tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => true,
            event = next_change(&mut changes) => matches!(event, Some(Ok(_))),
            _ = cancel.cancelled() => return Health::Cancelled(cancel.why().to_string()),
        };
        if !events_flow {
            // The stream ended or failed: looks every LOOK_EVERY alone, as without events.
            changes = None;
        }
    }
}

/// How often the gate looks at the container when Docker reports nothing.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// What Docker reports of container `id` that may end the wait: its healthcheck's verdicts
/// (`health_status: …`, matched by prefix) and its exit. From a second before the wait began:
/// the stream connects when first polled, after the first look, and `since` replays what
/// happened meanwhile.
fn changes<'a>(
    docker: &'a Docker,
    id: &str,
) -> BoxStream<'a, Result<EventMessage, bollard::errors::Error>> {
    let since = time::OffsetDateTime::now_utc().unix_timestamp() - 1;
    let filters = HashMap::from([
        ("type", vec!["container"]),
        ("container", vec![id]),
        ("event", vec!["health_status", "die"]),
    ]);
    let options = EventsOptionsBuilder::new()
        .since(&since.to_string())
        .filters(&filters)
        .build();
    docker.events(Some(options)).boxed()
}

/// The next event of [`changes`]; never, once there is no stream.
async fn next_change(
    changes: &mut Option<BoxStream<'_, Result<EventMessage, bollard::errors::Error>>>,
) -> Option<Result<EventMessage, bollard::errors::Error>> {
    match changes {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// Which of the three probes applies to a container.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// The container has a Docker healthcheck (its own, or its image's).
    Healthcheck,
    /// The configured HTTP URL.
    Http,
    /// Running without a restart for `stable_for`.
    Stable,
}

impl Probe {
    fn of(c: &ContainerInspectResponse, spec: &HealthGate) -> Probe {
        let has_check = c
            .config
            .as_ref()
            .and_then(|c| c.healthcheck.as_ref())
            .and_then(|h| h.test.as_ref())
            .is_some_and(|t| t.first().is_some_and(|x| x != "NONE"));
        if has_check {
            Probe::Healthcheck
        } else if spec.probe.is_some() {
            Probe::Http
        } else {
            Probe::Stable
        }
    }

    /// What the log says the gate waits for.
    fn waits_for(self) -> &'static str {
        match self {
            Probe::Healthcheck => "its healthcheck",
            Probe::Http => "the HTTP probe",
            Probe::Stable => "it to keep running",
        }
    }
}

/// What the gate keeps between two looks at the container.
struct Gate<'a> {
    spec: &'a HealthGate,
    started: Instant,
    deadline: Instant,
    http: Option<reqwest::Client>,
    /// Since when it runs with `restarts` restarts (the stable probe).
    running_since: Option<Instant>,
    restarts: Option<i64>,
}

impl Gate<'_> {
    fn new(spec: &HealthGate) -> Gate<'_> {
        let started = Instant::now();
        Gate {
            spec,
            started,
            deadline: started + spec.timeout,
            http: crate::outgoing::builder(Duration::from_secs(2))
                .build()
                .ok(),
            running_since: None,
            restarts: None,
        }
    }

    /// The verdict of one look, if there is one yet.
    async fn look(&mut self, probe: Probe, c: &ContainerInspectResponse) -> Option<Health> {
        let healthy = Health::Healthy(self.started.elapsed());
        match (probe, &self.spec.probe, &self.http) {
            (Probe::Healthcheck, _, _) => healthcheck(c, healthy),
            (Probe::Http, Some(url), Some(http)) => {
                let answer = http.get(url).send().await;
                answer
                    .is_ok_and(|r| r.status().is_success())
                    .then(|| Health::Healthy(self.started.elapsed()))
            }
            // Without an HTTP client the probe cannot run: only stability counts then.
            (Probe::Http | Probe::Stable, _, _) => self.stable(c).then_some(healthy),
        }
    }

    /// Whether the container has run without a restart for `stable_for`.
    fn stable(&mut self, c: &ContainerInspectResponse) -> bool {
        let count = c.restart_count.unwrap_or(0);
        if self.restarts != Some(count) {
            self.restarts = Some(count);
            self.running_since = Some(Instant::now());
        }
        self.running_since
            .is_some_and(|t| t.elapsed() >= self.spec.stable_for)
    }

    fn timed_out(&self, probe: Probe, c: &ContainerInspectResponse) -> Health {
        let status = health_status(c)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "running".into());
        Health::Failed(format!(
            "the new container was not healthy after {} (waited for {}; status {status})",
            secs(self.spec.timeout),
            probe.waits_for()
        ))
    }
}

/// A container that is neither running nor restarting has failed.
fn exited(c: &ContainerInspectResponse) -> Option<Health> {
    let state = c.state.clone().unwrap_or_default();
    if state.running.unwrap_or(false) || state.restarting.unwrap_or(false) {
        return None;
    }
    Some(Health::Failed(format!(
        "the new container exited (code {}){}",
        state.exit_code.unwrap_or(-1),
        state
            .error
            .filter(|e| !e.is_empty())
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    )))
}

fn health_status(c: &ContainerInspectResponse) -> Option<HealthStatusEnum> {
    c.state.as_ref()?.health.as_ref()?.status
}

/// The Docker healthcheck's verdict: `healthy` when it says so, a failure (with the last
/// check's output) when it says unhealthy, none while it starts.
fn healthcheck(c: &ContainerInspectResponse, healthy: Health) -> Option<Health> {
    match health_status(c) {
        Some(HealthStatusEnum::HEALTHY) => Some(healthy),
        Some(HealthStatusEnum::UNHEALTHY) => {
            let output = c
                .state
                .as_ref()
                .and_then(|s| s.health.as_ref())
                .and_then(|h| h.log.as_ref())
                .and_then(|l| l.last().and_then(|r| r.output.clone()))
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .map(|o| format!(" (last check: {o})"))
                .unwrap_or_default();
            Some(Health::Failed(format!(
                "the new container is unhealthy{output}"
            )))
        }
        _ => None,
    }
}

/// Seconds with one decimal, as the container logs show them.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
