//! Container events: what happens to the containers ferry manages between its deployments.
//!
//! One background task follows the Docker Engine's event stream ([`follow`]: it reconnects
//! with backoff after the engine restarts or the stream ends, asking with `since=` for what
//! it missed), keeps the events of containers that belong to a `docker` or `compose` service
//! ([`services`]), and records the ones worth telling in the outbox's `events` journal, from
//! where the notify worker sends them to `[[notify]]` receivers like every other event:
//!
//! - `container.died`: the container exited or was killed, and Docker does not start it again;
//! - `container.restarted`: it exited and Docker started it again (its restart policy, or a
//!   `docker restart`);
//! - `container.unhealthy`: its healthcheck turned `unhealthy`.
//!
//! Docker reports an exit as `die`, and a restart by the restart policy only as that `die`
//! followed by `start` (its `restart` event comes from `docker restart` alone). So a `die` is
//! held for [`SETTLE`], then the container is inspected: restarting, or running again since
//! the `die` → restarted; stopped or gone → died.
//!
//! Each journal row names the service and its current deployment (its newest success), so the
//! notification says which version was running. What ferry itself does to containers is not
//! reported: an event of a service's container at a time when a deployment of that service
//! ran (from its start to its end, ± [`MARGIN`]) is ignored, and so is every event of a
//! container under the docker executor's aside name (`NAME-ferry-old-N`). At most one event
//! per container and type goes out per [`limit::WINDOW`]; the next one says how many were
//! held back in between ([`limit`]).
//!
//! Nothing waits for this task: it has its own connections to Docker, and writes a journal row
//! only after letting waiting hook deliveries go first. It stops at shutdown with the planner;
//! a `die` still held then is not reported.

mod follow;
mod limit;
mod services;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, EventMessage};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::logging::Escaped;
use crate::states::EventType;
use crate::store::{ContainerDetail, ContainerEvent, Store};
use follow::{Engine, Follow, Source, event_ns};
use limit::Limiter;
use services::{Managed, ServiceRef};

/// How long a `die` is held before the container is inspected: long enough for `docker
/// restart` (stop, then start) and the restart policy's first tries to have started it again.
const SETTLE: Duration = Duration::from_secs(2);
/// Tolerance around a deployment's start and end, for Docker's clock against ferry's.
const MARGIN: Duration = Duration::from_secs(1);
/// `oom` events are remembered this long for the `die` that follows them.
const OOM_MEMORY: Duration = Duration::from_secs(60);
/// At most this much of a failing healthcheck's output goes into the event.
const HEALTH_OUTPUT_MAX: usize = 500;

/// Starts the watcher if any service runs containers ferry manages (`docker` or `compose`);
/// it runs until `stop`.
pub(crate) fn spawn(
    config: &Arc<Config>,
    store: &Store,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let managed = Managed::of(config);
    if managed.is_empty() {
        return None;
    }
    let watcher = Watcher::new(managed, store.clone());
    Some(tokio::spawn(run(watcher, Follow::new(Engine), stop)))
}

/// Runs until `stop`: hands each event to the watcher, and each held `die` once it is due.
async fn run<S: Source>(mut w: Watcher, mut events: Follow<S>, stop: CancellationToken) {
    loop {
        let due = w.held.front().map(|h| h.due);
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = until(due) => {
                if let Some(held) = w.held.pop_front() {
                    w.settle(held).await;
                }
            }
            event = events.next() => w.seen(event).await,
        }
    }
}

async fn until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A container event of a managed container, as read from Docker's message.
#[derive(Debug, Clone)]
struct Seen {
    action: String,
    id: String,
    name: String,
    /// Docker's time (ns).
    at: i64,
    attributes: HashMap<String, String>,
    services: Vec<ServiceRef>,
}

/// A `die`, held until [`SETTLE`] has passed.
#[derive(Debug)]
struct Held {
    due: Instant,
    seen: Seen,
}

/// What the task keeps between events.
struct Watcher {
    managed: Managed,
    store: Store,
    limiter: Limiter,
    /// Held `die`s, oldest (so first due) first.
    held: VecDeque<Held>,
    /// Containers (ids) with a recent `oom`, and when.
    oom: HashMap<String, Instant>,
    /// For inspecting containers; connected when first needed, dropped after an error.
    docker: Option<Docker>,
}

impl Watcher {
    fn new(managed: Managed, store: Store) -> Watcher {
        Watcher {
            managed,
            store,
            limiter: Limiter::default(),
            held: VecDeque::new(),
            oom: HashMap::new(),
            docker: None,
        }
    }

    /// One event from Docker: a managed container's `die` is held, its `oom` noted, its
    /// turn to `unhealthy` reported.
    async fn seen(&mut self, event: EventMessage) {
        let Some(seen) = self.read(event) else {
            return;
        };
        match seen.action.as_str() {
            "die" => self.held.push_back(Held {
                due: Instant::now() + SETTLE,
                seen,
            }),
            "oom" => {
                let now = Instant::now();
                self.oom
                    .retain(|_, at| now.duration_since(*at) < OOM_MEMORY);
                self.oom.insert(seen.id, now);
            }
            "health_status: unhealthy" => self.unhealthy(seen).await,
            _ => {}
        }
    }

    /// The event, if it is about a container of a managed service.
    fn read(&self, event: EventMessage) -> Option<Seen> {
        let at = event_ns(&event)?;
        let action = event.action?.trim().to_string();
        let actor = event.actor?;
        let attributes = actor.attributes.unwrap_or_default();
        let name = attributes.get("name")?.trim_start_matches('/').to_string();
        let services = self.managed.services_of(&name, &attributes);
        if services.is_empty() {
            return None;
        }
        Some(Seen {
            action,
            id: actor.id?,
            name,
            at,
            attributes,
            services,
        })
    }

    /// A held `die` is due: restarted if Docker is starting it again, else died.
    async fn settle(&mut self, held: Held) {
        let seen = held.seen;
        let state = self.inspect(&seen.id).await;
        let st = state.as_ref().and_then(|c| c.state.as_ref());
        let restarting = st.and_then(|s| s.restarting).unwrap_or(false);
        let running_again = st.is_some_and(|s| {
            s.running == Some(true)
                && s.started_at
                    .as_deref()
                    .and_then(rfc3339_ns)
                    .is_some_and(|t| t > seen.at)
        });
        let oom =
            self.oom.remove(&seen.id).is_some() || st.and_then(|s| s.oom_killed).unwrap_or(false);
        let mut detail = detail(&seen);
        detail.exit_code = seen.attributes.get("exitCode").and_then(|c| c.parse().ok());
        detail.oom_killed = oom;
        let event = if restarting || running_again {
            detail.restart_count = state.as_ref().and_then(|c| c.restart_count);
            EventType::ContainerRestarted
        } else {
            EventType::ContainerDied
        };
        self.report(event, &seen, detail).await;
    }

    /// The container turned unhealthy: reported with its healthcheck's last output.
    async fn unhealthy(&mut self, seen: Seen) {
        let state = self.inspect(&seen.id).await;
        let output = state
            .as_ref()
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.log.as_ref())
            .and_then(|log| log.last())
            .and_then(|r| r.output.as_deref())
            .map(|o| cut(o.trim(), HEALTH_OUTPUT_MAX))
            .filter(|o| !o.is_empty());
        let mut detail = detail(&seen);
        detail.health_output = output;
        self.report(EventType::ContainerUnhealthy, &seen, detail)
            .await;
    }

    /// Records `event` for each of the container's services that was not being deployed at
    /// the time, if the rate limit lets it out.
    async fn report(&mut self, event: EventType, seen: &Seen, mut detail: ContainerDetail) {
        let at_ms = seen.at.div_euclid(1_000_000);
        let margin = i64::try_from(MARGIN.as_millis()).unwrap_or(i64::MAX);
        let mut quiet = Vec::new();
        for s in &seen.services {
            match self
                .store
                .deploying_at(&s.app, &s.service, at_ms, margin)
                .await
            {
                Ok(false) => quiet.push(s),
                Ok(true) => tracing::debug!(
                    app = %Escaped(&s.app), service = %Escaped(&s.service),
                    container = %Escaped(&seen.name), event = event.as_str(),
                    "container event during a deployment of its service: ferry's own doing, not reported"
                ),
                Err(e) => {
                    tracing::error!(error = %e, container = %Escaped(&seen.name), event = event.as_str(), "cannot record a container event")
                }
            }
        }
        if quiet.is_empty() {
            return;
        }
        let Some(held_back) = self.limiter.admit(&seen.name, event, Instant::now()) else {
            tracing::info!(
                container = %Escaped(&seen.name), event = event.as_str(),
                "container event held back: at most one per container and type per minute"
            );
            return;
        };
        detail.suppressed = held_back;
        for s in quiet {
            let e = ContainerEvent {
                at: at_ms,
                event,
                app: s.app.clone(),
                service: s.service.clone(),
                detail: detail.clone(),
            };
            match self.store.record_container_event(&e).await {
                Ok(()) => tracing::info!(
                    app = %Escaped(&s.app), service = %Escaped(&s.service),
                    container = %Escaped(&seen.name), event = event.as_str(),
                    exit_code = detail.exit_code, "container event"
                ),
                Err(e) => {
                    tracing::error!(error = %e, container = %Escaped(&seen.name), event = event.as_str(), "cannot record a container event")
                }
            }
        }
    }

    /// The container as Docker sees it now; `None` if it is gone or Docker cannot say.
    async fn inspect(&mut self, id: &str) -> Option<ContainerInspectResponse> {
        if self.docker.is_none() {
            self.docker = crate::executors::docker::connect().await.ok();
        }
        let docker = self.docker.as_ref()?;
        match docker.inspect_container(id, None).await {
            Ok(c) => Some(c),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => None,
            Err(e) => {
                tracing::debug!(error = %e, "cannot inspect a container after its event");
                self.docker = None;
                None
            }
        }
    }
}

/// What every container event says of the container.
fn detail(seen: &Seen) -> ContainerDetail {
    ContainerDetail {
        container: seen.name.clone(),
        container_id: seen.id.clone(),
        image: seen.attributes.get("image").cloned(),
        ..ContainerDetail::default()
    }
}

/// An RFC 3339 time (Docker's `StartedAt`) in ns since the epoch.
fn rfc3339_ns(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
