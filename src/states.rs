//! The states of deployments, deliveries and notifications, and the types of the events their
//! changes cause, as shared types.
//!
//! The bottom layer: this module imports nothing of ferry's, so the store, the planner, the
//! lanes, notifications, the config, the API and the CLI all speak the same enums. Each state
//! has one name (`as_str`), used alike in the database (TEXT), the API's JSON, the CLI and
//! logs; an unknown name is a typed [`UnknownState`] error wherever it is read.

use std::fmt;
use std::str::FromStr;

/// A name that is no known state (of `what`: "deployment state", "delivery status").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?} (known: {known})")]
pub(crate) struct UnknownState {
    pub(crate) what: &'static str,
    pub(crate) name: String,
    pub(crate) known: String,
}

/// Defines a state enum from `Variant => "name"` pairs: `as_str`, `ALL`, `Display`, `FromStr`,
/// serde and sqlx (TEXT, any database whose strings sqlx maps) all from the one list.
macro_rules! states {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub(crate) enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every state, in declaration order. (Outside tests, not every enum needs it: the
            /// outbox's event types and notification states do, delivery statuses do not.)
            #[cfg_attr(not(test), allow(dead_code))]
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name stored in the database and shown in the API.
            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownState {
                        what: $what,
                        name: s.to_string(),
                        known: [$($text),+].join(", "),
                    }),
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = UnknownState;

            fn try_from(s: &str) -> Result<Self, UnknownState> {
                s.parse()
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            &'static str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut DB::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'static str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let s = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
                Ok(s.parse()?)
            }
        }
    };
}

states! {
    /// Where a deployment is: `queued → running → succeeded | failed | timed_out | cancelled |
    /// rolled_back | interrupted`; `queued → superseded | cancelled`; planned as `skipped`.
    DeploymentState, "deployment state" {
        /// Planned; waits for its service's lane.
        Queued => "queued",
        /// Its executor runs (at most one per service).
        Running => "running",
        Succeeded => "succeeded",
        /// The command exited non-zero, or ferry could not run it (the reason says which).
        Failed => "failed",
        /// The service's timeout passed; the process group was killed.
        TimedOut => "timed_out",
        /// Cancelled through the API (`ferry cancel`): never ran, or was stopped (process
        /// group killed, a container replacement rolled back).
        Cancelled => "cancelled",
        /// A newer deployment of the service started first.
        Superseded => "superseded",
        /// Planned as nothing to do, with a reason.
        Skipped => "skipped",
        /// ferry stopped while it ran; it may have been queued again as a retry.
        Interrupted => "interrupted",
        /// The new container was not healthy; the old one runs again.
        RolledBack => "rolled_back",
    }
}

/// A new deployment starts queued.
impl Default for DeploymentState {
    fn default() -> Self {
        DeploymentState::Queued
    }
}

impl DeploymentState {
    /// Whether the deployment has ended: nothing will change its state any more.
    pub(crate) const fn is_final(self) -> bool {
        !matches!(self, DeploymentState::Queued | DeploymentState::Running)
    }

    /// Whether it ended as hoped (`ferry deploy --wait` exits 0): it ran and succeeded, or
    /// there was nothing to do.
    pub(crate) const fn is_success(self) -> bool {
        matches!(self, DeploymentState::Succeeded | DeploymentState::Skipped)
    }
}

states! {
    /// Where a delivery is: `received` (stored, not yet planned) → `planned`; or `rejected`
    /// (refused on the request path, or by the planner's value checks).
    DeliveryStatus, "delivery status" {
        Received => "received",
        Planned => "planned",
        Rejected => "rejected",
    }
}

impl DeliveryStatus {
    /// Whether the planner is done with it.
    pub(crate) const fn is_final(self) -> bool {
        !matches!(self, DeliveryStatus::Received)
    }
}

states! {
    /// Where an outgoing notification is: `pending` (waiting for its turn, or for its next try)
    /// → `sent`; or `dead` (refused for good, or still failing when `server.notify_retry_for`
    /// ran out). A manual retry (`POST /api/v1/notifications/ID/retry`) makes it `pending` again.
    NotificationState, "notification state" {
        Pending => "pending",
        Sent => "sent",
        Dead => "dead",
    }
}

states! {
    /// A step of a deployment's run, as executors record them (`deployment_steps`, migration
    /// 0011) and the API shows them. A step may repeat (docker: each replaced container).
    StepName, "step name" {
        /// The command executor: the whole command.
        Run => "run",
        /// Fetching the image (docker's pull, `compose pull`).
        Pull => "pull",
        /// docker: the old container moved aside, the new one created.
        Create => "create",
        /// docker: the new container started.
        Start => "start",
        /// The health gate (docker, compose).
        Health => "health",
        /// docker: the old container removed once the new one is healthy.
        Remove => "remove",
        /// docker: the new container removed and the old one restored.
        Rollback => "rollback",
        /// compose: `compose up -d --no-deps`.
        Up => "up",
        /// swarm: the service pointed at the new image.
        Update => "update",
        /// docker, for an alert rule's `restart`: a container restarted in place.
        Restart => "restart",
        /// swarm: waiting for Swarm's rollout to end.
        Rollout => "rollout",
        /// command with `checkout`: the work tree set to the deployment's commit.
        Checkout => "checkout",
    }
}

states! {
    /// What ferry decided for an Alertmanager alert and one of the app's alert rules
    /// (`alerts.outcome`, migration 0016).
    AlertOutcome, "alert outcome" {
        /// The rule's action was planned as a deployment.
        Acted => "acted",
        /// The rule already acted on this firing of the alert (fingerprint, `startsAt`, status).
        Duplicate => "duplicate",
        /// The rule acted on the alert less than its `cooldown` ago.
        Cooldown => "cooldown",
        /// The rule acted `max_per_hour` times in the last hour.
        Capped => "capped",
        /// No rule of the app matches the alert's labels.
        Unmatched => "unmatched",
        /// A resolved alert whose rule has no `on_resolved`.
        NoAction => "no_action",
    }
}

states! {
    /// How a deployment step ended (a step still going has none).
    StepOutcome, "step outcome" {
        Ok => "ok",
        Failed => "failed",
    }
}

states! {
    /// What happened, as outgoing notifications name it (`[[notify]] events`, the `type` of a
    /// Standard Webhooks body). The store's triggers write these names into the `events`
    /// journal (migration 0008), one per deployment state change and refused delivery; the
    /// container watcher writes the `container.*` ones.
    EventType, "event type" {
        /// A delivery was refused (on the request path, or by the planner's value checks).
        DeliveryRejected => "delivery.rejected",
        DeploymentQueued => "deployment.queued",
        /// The deployment's executor started (state `running`).
        DeploymentStarted => "deployment.started",
        DeploymentSucceeded => "deployment.succeeded",
        DeploymentFailed => "deployment.failed",
        DeploymentTimedOut => "deployment.timed_out",
        DeploymentCancelled => "deployment.cancelled",
        DeploymentRolledBack => "deployment.rolled_back",
        /// A queued deployment that never ran: a newer one of its service started first.
        DeploymentSuperseded => "deployment.superseded",
        /// Planned as nothing to do (another branch, stale, not selected), with a reason.
        DeploymentSkipped => "deployment.skipped",
        /// ferry stopped while it ran; a retry may have been queued.
        DeploymentInterrupted => "deployment.interrupted",
        /// A managed container exited (or was killed) and Docker does not start it again
        /// (`crate::watch` writes the container events, not a trigger).
        ContainerDied => "container.died",
        /// A managed container's healthcheck turned `unhealthy`.
        ContainerUnhealthy => "container.unhealthy",
        /// A managed container exited and Docker started it again (restart policy, or
        /// `docker restart`).
        ContainerRestarted => "container.restarted",
    }
}

impl EventType {
    /// The event a deployment's move into `state` causes.
    pub(crate) const fn of_deployment(state: DeploymentState) -> EventType {
        match state {
            DeploymentState::Queued => EventType::DeploymentQueued,
            DeploymentState::Running => EventType::DeploymentStarted,
            DeploymentState::Succeeded => EventType::DeploymentSucceeded,
            DeploymentState::Failed => EventType::DeploymentFailed,
            DeploymentState::TimedOut => EventType::DeploymentTimedOut,
            DeploymentState::Cancelled => EventType::DeploymentCancelled,
            DeploymentState::Superseded => EventType::DeploymentSuperseded,
            DeploymentState::Skipped => EventType::DeploymentSkipped,
            DeploymentState::Interrupted => EventType::DeploymentInterrupted,
            DeploymentState::RolledBack => EventType::DeploymentRolledBack,
        }
    }

    /// Whether it is about a container (`container.*`), rather than a deployment or delivery.
    pub(crate) const fn is_container(self) -> bool {
        matches!(
            self,
            EventType::ContainerDied
                | EventType::ContainerUnhealthy
                | EventType::ContainerRestarted
        )
    }

    /// The deployment state this event reports, for deployment events.
    pub(crate) fn deployment_state(self) -> Option<DeploymentState> {
        DeploymentState::ALL
            .iter()
            .copied()
            .find(|s| EventType::of_deployment(*s) == self)
    }

    /// Whether a `[[notify]]` entry without `events` gets it: every type but
    /// `deployment.skipped`, which every push to an unrelated branch causes (a receiver that
    /// got `deployment.queued` still gets how that deployment ended, whatever it was).
    pub(crate) const fn is_default(self) -> bool {
        !matches!(self, EventType::DeploymentSkipped)
    }
}

/// The prefix of the pseudo-services that run alert rules' commands (`alert:RULE`; see
/// `config::alerts`).
pub(crate) const ALERT_SERVICE_PREFIX: &str = "alert:";

/// Whether a newer queued deployment of `service` supersedes its older queued ones. Not for an
/// alert rule's command: each run acts on its own alert (its `FERRY_ALERT_*`), so its lane
/// runs every queued one, oldest first (its cooldown and cap bound how many there are).
pub(crate) fn supersedes(service: &str) -> bool {
    !service.starts_with(ALERT_SERVICE_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_typed_errors() {
        for s in DeploymentState::ALL {
            assert_eq!(s.as_str().parse::<DeploymentState>(), Ok(*s));
            assert_eq!(DeploymentState::try_from(s.as_str()), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>(), Ok(*s));
        }
        for s in StepName::ALL {
            assert_eq!(s.as_str().parse::<StepName>(), Ok(*s));
        }
        for s in StepOutcome::ALL {
            assert_eq!(s.as_str().parse::<StepOutcome>(), Ok(*s));
        }
        assert!("cancelled".parse::<StepOutcome>().is_err());
        let e = "Queued".parse::<DeploymentState>().unwrap_err();
        assert_eq!(e.name, "Queued");
        assert_eq!(e.what, "deployment state");
        assert!(e.to_string().contains("timed_out"), "{e}");
        assert!("cancelled".parse::<DeliveryStatus>().is_err());
        assert!("".parse::<DeploymentState>().is_err());
    }

    #[test]
    fn names_are_the_ones_stored_and_served_today() {
        let names: Vec<&str> = DeploymentState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "queued",
                "running",
                "succeeded",
                "failed",
                "timed_out",
                "cancelled",
                "superseded",
                "skipped",
                "interrupted",
                "rolled_back"
            ]
        );
        let names: Vec<&str> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["received", "planned", "rejected"]);
    }

    #[test]
    fn every_deployment_state_has_its_event_and_back() {
        for s in DeploymentState::ALL {
            let e = EventType::of_deployment(*s);
            assert!(e.as_str().starts_with("deployment."), "{e}");
            assert_eq!(e.deployment_state(), Some(*s));
        }
        assert_eq!(EventType::DeliveryRejected.deployment_state(), None);
        assert_eq!(
            EventType::of_deployment(DeploymentState::Running).as_str(),
            "deployment.started"
        );
        let defaults: Vec<_> = EventType::ALL.iter().filter(|e| !e.is_default()).collect();
        assert_eq!(defaults, [&EventType::DeploymentSkipped]);
        let e = "deployment.exploded".parse::<EventType>().unwrap_err();
        assert!(e.to_string().contains("deployment.rolled_back"), "{e}");
        let names: Vec<&str> = NotificationState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["pending", "sent", "dead"]);
    }

    #[test]
    fn only_queued_and_running_are_not_final() {
        for s in DeploymentState::ALL {
            let open = matches!(s, DeploymentState::Queued | DeploymentState::Running);
            assert_eq!(s.is_final(), !open, "{s}");
        }
        assert!(!DeliveryStatus::Received.is_final());
        assert!(DeliveryStatus::Planned.is_final() && DeliveryStatus::Rejected.is_final());
    }

    #[test]
    fn serde_round_trip() {
        for s in DeploymentState::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<DeploymentState>(&json).unwrap(), *s);
        }
        for s in DeliveryStatus::ALL {
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(serde_json::from_value::<DeliveryStatus>(json).unwrap(), *s);
        }
        let e = serde_json::from_str::<DeploymentState>("\"done\"").unwrap_err();
        assert!(
            e.to_string().contains("unknown deployment state \"done\""),
            "{e}"
        );
    }

    /// Every variant is written and read back through a real SQLite database, as a bound
    /// value and as a column of a `FromRow` struct; a stored name that is no state is an error.
    #[tokio::test]
    async fn sqlite_round_trip() {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, state TEXT NOT NULL, status TEXT)")
            .execute(&mut db)
            .await
            .unwrap();
        for (i, s) in DeploymentState::ALL.iter().enumerate() {
            let status = DeliveryStatus::ALL[i % DeliveryStatus::ALL.len()];
            sqlx::query("INSERT INTO t (id, state, status) VALUES (?1, ?2, ?3)")
                .bind(i as i64)
                .bind(*s)
                .bind(status)
                .execute(&mut db)
                .await
                .unwrap();
            let raw: String = sqlx::query_scalar("SELECT state FROM t WHERE id = ?1")
                .bind(i as i64)
                .fetch_one(&mut db)
                .await
                .unwrap();
            assert_eq!(raw, s.as_str(), "stored as its name, as TEXT");
            #[derive(sqlx::FromRow)]
            struct Row {
                state: DeploymentState,
                status: DeliveryStatus,
            }
            let row: Row = sqlx::query_as("SELECT state, status FROM t WHERE state = ?1")
                .bind(*s)
                .fetch_one(&mut db)
                .await
                .unwrap();
            assert_eq!((row.state, row.status), (*s, status));
        }
        sqlx::query("INSERT INTO t (id, state) VALUES (99, 'exploded')")
            .execute(&mut db)
            .await
            .unwrap();
        let e = sqlx::query_scalar::<_, DeploymentState>("SELECT state FROM t WHERE id = 99")
            .fetch_one(&mut db)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("unknown deployment state"), "{e}");
    }
}
