//! What ferry counts and times for `/metrics`, through the Prometheus client (`prometheus-client`).
//!
//! [`Metrics`] is the one handle: created at start (the apps' label values resolved from the
//! config then), held in `Shared` and handed as an `Arc` to what records: the edge and the
//! hook handler (answers, deliveries, answer latency), the intake writer (`store::batch`:
//! batch sizes, commit and fsync times), the lanes (deployment runs by executor and final
//! state). No global registry, so servers in one process (tests) count apart.
//!
//! What the store already knows (deployments by state, queued deployments per lane, the
//! outbox's backlog) is not tracked here: `api::metrics` reads it at scrape time into a
//! registry of its own and hands it to [`Metrics::encode`].
//!
//! Cost on the hook path: an answer is one atomic add on a counter resolved at start; a
//! delivery is a map lookup of the app (its label value shared, not copied), then the
//! family's read-locked lookup — no allocation after the first delivery of each app, sender
//! and outcome. This module imports nothing of ferry's (edges and store sit above it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// How a hook request was answered (`ferry_hook_requests_total{outcome}`): every answer of
/// the hook route, also those with no app (unknown app or token, per-client limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 202 (or 200 for a ping): stored.
    Accepted,
    /// 200: a delivery with this dedupe key is already stored.
    Duplicate,
    /// 4xx for a request with a valid token: a check failed (stored as `rejected` unless it
    /// failed before the body was read).
    Rejected,
    /// 404: unknown app or wrong token.
    NotFound,
    /// 503: the store could not take the delivery.
    Unavailable,
    /// 429: a rate limit (per client, failed checks, per app).
    Limited,
    /// 403: outside the app's `verify.allow_ips`.
    Forbidden,
}

impl Answer {
    const ALL: [Answer; 7] = [
        Answer::Accepted,
        Answer::Duplicate,
        Answer::Rejected,
        Answer::NotFound,
        Answer::Unavailable,
        Answer::Limited,
        Answer::Forbidden,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Answer::Accepted => "accepted",
            Answer::Duplicate => "duplicate",
            Answer::Rejected => "rejected",
            Answer::NotFound => "not_found",
            Answer::Unavailable => "unavailable",
            Answer::Limited => "limited",
            Answer::Forbidden => "forbidden",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    outcome: &'static str,
}

/// A delivery's app, sender and what became of it (`ferry_deliveries_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    app: Arc<str>,
    source: &'static str,
    outcome: &'static str,
}

/// A deployment run's executor and final state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    executor: &'static str,
    state: &'static str,
}

/// Hook answers: 0.1 ms (an answer from memory) to 1 s (a slow disk's fsync under load).
const ANSWER_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Deployment runs: a second (a quick command) to an hour (a slow image pull and health gate).
const RUN_BUCKETS: [f64; 13] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Deliveries per group commit: 1 when idle, up to the writer's cap of 512 under load.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

fn run_histogram() -> Histogram {
    Histogram::new(RUN_BUCKETS)
}

/// The metrics ferry records itself (see the module doc for who records what).
pub(crate) struct Metrics {
    registry: Registry,
    answers: [Counter; Answer::ALL.len()],
    deliveries: Family<DeliveryLabels, Counter>,
    /// Each configured app's label value, resolved once.
    apps: HashMap<String, Arc<str>>,
    answer_seconds: Histogram,
    runs: Family<RunLabels, Counter>,
    run_seconds: Family<RunLabels, Histogram, fn() -> Histogram>,
    batch_deliveries: Histogram,
    commit_seconds: Histogram,
    fsync_seconds: Histogram,
}

impl Default for Metrics {
    /// Metrics with no app known in advance (tests of the store and the lanes).
    fn default() -> Metrics {
        Metrics::new(std::iter::empty())
    }
}

impl Metrics {
    /// The metrics of a server whose config names these apps.
    pub(crate) fn new<'a>(apps: impl Iterator<Item = &'a str>) -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            answers: Default::default(),
            deliveries: Family::default(),
            apps: apps.map(|a| (a.to_string(), Arc::from(a))).collect(),
            answer_seconds: Histogram::new(ANSWER_BUCKETS),
            runs: Family::default(),
            run_seconds: Family::new_with_constructor(run_histogram),
            batch_deliveries: Histogram::new(BATCH_BUCKETS),
            commit_seconds: Histogram::new(ANSWER_BUCKETS),
            fsync_seconds: Histogram::new(ANSWER_BUCKETS),
        };
        m.register();
        m
    }

    fn register(&mut self) {
        let answers: Family<AnswerLabels, Counter> = Family::default();
        // Every outcome is exported from the start, 0 until it happens.
        for (i, a) in Answer::ALL.into_iter().enumerate() {
            self.answers[i] = answers
                .get_or_create_owned(&AnswerLabels {
                    outcome: a.as_str(),
                })
                .clone();
        }
        let r = &mut self.registry;
        r.register(
            "ferry_hook_requests",
            "Hook requests answered, by outcome (every answer of the hook route, also those with no app: not_found, per-client limits)",
            answers,
        );
        r.register(
            "ferry_deliveries",
            "Hook requests with a valid token whose sender was identified, by app, sender (source) and outcome: accepted, duplicate, rejected (a check failed; stored as rejected), unavailable (the store could not take it)",
            self.deliveries.clone(),
        );
        r.register_with_unit(
            "ferry_hook_answer",
            "Time from a hook request reaching ferry's edge checks to its answer",
            Unit::Seconds,
            self.answer_seconds.clone(),
        );
        r.register(
            "ferry_deployments_finished",
            "Deployment runs that ended, by executor and final state (deployments that never ran, e.g. superseded or cancelled while queued, are not counted)",
            self.runs.clone(),
        );
        r.register_with_unit(
            "ferry_deployment_duration",
            "How long deployment runs took, from start to the recorded end, by executor and final state",
            Unit::Seconds,
            self.run_seconds.clone(),
        );
        r.register(
            "ferry_store_batch_deliveries",
            "Deliveries written per group commit of the intake writer",
            self.batch_deliveries.clone(),
        );
        r.register_with_unit(
            "ferry_store_commit",
            "Time the intake writer took to write and commit one batch of deliveries (without the fsync)",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
        r.register_with_unit(
            "ferry_store_fsync",
            "Time one fsync of the write-ahead log took (it makes every batch committed before it durable; on PostgreSQL: a batch's COMMIT, which waits for the flush)",
            Unit::Seconds,
            self.fsync_seconds.clone(),
        );
    }

    /// Counts a hook answer.
    pub(crate) fn answer(&self, a: Answer) {
        // `ALL` lists the variants in declaration order (tested).
        self.answers[a as usize].inc();
    }

    /// Counts a delivery of `app` from `source` (a sender's name) and counts the same outcome
    /// as a hook answer. `outcome` is one of accepted, duplicate, rejected, unavailable.
    pub(crate) fn delivery(&self, app: &str, source: &'static str, outcome: Answer) {
        self.answer(outcome);
        let app = match self.apps.get(app) {
            Some(a) => a.clone(),
            // Not in the config at start: cannot happen for hooks (the token matched an app).
            None => Arc::from(app),
        };
        let labels = DeliveryLabels {
            app,
            source,
            outcome: outcome.as_str(),
        };
        self.deliveries.get_or_create(&labels).inc();
    }

    /// Records how long a hook answer took.
    pub(crate) fn hook_answered(&self, took: Duration) {
        self.answer_seconds.observe(took.as_secs_f64());
    }

    /// Records a deployment run of `executor` that ended in `state` after `took`.
    pub(crate) fn run_ended(&self, executor: &'static str, state: &'static str, took: Duration) {
        let labels = RunLabels { executor, state };
        self.runs.get_or_create(&labels).inc();
        self.run_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records a group commit of `deliveries` deliveries that took `took`.
    pub(crate) fn batch_committed(&self, deliveries: usize, took: Duration) {
        self.batch_deliveries.observe(deliveries as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// Records an fsync of the write-ahead log.
    pub(crate) fn flushed(&self, took: Duration) {
        self.fsync_seconds.observe(took.as_secs_f64());
    }

    /// Writes these metrics, then those of `scraped` (read at scrape time), in the OpenMetrics
    /// text format when `openmetrics`, else Prometheus' text format 0.0.4. Returns the
    /// `Content-Type` of what was written.
    pub(crate) fn encode(
        &self,
        out: &mut String,
        scraped: &Registry,
        openmetrics: bool,
    ) -> Result<&'static str, std::fmt::Error> {
        use prometheus_client::encoding::{prometheus_text, text};
        if openmetrics {
            text::encode_registry(out, &self.registry)?;
            text::encode_registry(out, scraped)?;
            text::encode_eof(out)?;
            Ok("application/openmetrics-text; version=1.0.0; charset=utf-8")
        } else {
            prometheus_text::encode(out, &self.registry)?;
            prometheus_text::encode(out, scraped)?;
            Ok(prometheus_text::CONTENT_TYPE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        let mut out = String::new();
        m.encode(&mut out, &Registry::default(), false)
            .expect("encode");
        out
    }

    #[test]
    fn answers_are_listed_in_declaration_order() {
        for (i, a) in Answer::ALL.into_iter().enumerate() {
            assert_eq!(a as usize, i, "{a:?}");
        }
    }

    #[test]
    fn deliveries_count_by_app_source_and_outcome_and_as_answers() {
        let m = Metrics::new(["shop"].into_iter());
        m.delivery("shop", "github", Answer::Accepted);
        m.delivery("shop", "github", Answer::Accepted);
        m.delivery("shop", "gitlab", Answer::Rejected);
        m.answer(Answer::NotFound);
        let t = text(&m);
        for line in [
            r#"ferry_deliveries_total{app="shop",source="github",outcome="accepted"} 2"#,
            r#"ferry_deliveries_total{app="shop",source="gitlab",outcome="rejected"} 1"#,
            r#"ferry_hook_requests_total{outcome="accepted"} 2"#,
            r#"ferry_hook_requests_total{outcome="rejected"} 1"#,
            r#"ferry_hook_requests_total{outcome="not_found"} 1"#,
            r#"ferry_hook_requests_total{outcome="forbidden"} 0"#,
        ] {
            assert!(t.lines().any(|l| l == line), "{line} missing in\n{t}");
        }
    }

    #[test]
    fn openmetrics_ends_with_eof_and_declares_units() {
        let m = Metrics::default();
        m.hook_answered(Duration::from_micros(300));
        let mut out = String::new();
        let ct = m
            .encode(&mut out, &Registry::default(), true)
            .expect("encode");
        assert!(ct.starts_with("application/openmetrics-text"));
        assert!(out.ends_with("# EOF\n"), "{out}");
        assert!(
            out.contains("# UNIT ferry_hook_answer_seconds seconds"),
            "{out}"
        );
        assert!(
            out.contains(r#"ferry_hook_answer_seconds_bucket{le="0.0005"} 1"#),
            "{out}"
        );
    }
}
