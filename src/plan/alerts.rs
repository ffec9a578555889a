//! Alert rules applied to Alertmanager alerts (issue 15): which rules match an alert, whether
//! a matching rule acts now or is held back (a duplicate re-send, its cooldown, its hourly
//! cap), and the deployment an action becomes. Pure: the planner reads each rule's past
//! actions through its planning transaction (`Planning::alert_facts`), calls [`decide`], and
//! records the alert row and the deployment in the same transaction.
//!
//! - A firing alert runs the rule's action; a resolved one its `on_resolved`, if any.
//! - Duplicate: the rule already acted on this fingerprint, `startsAt` and status
//!   (Alertmanager re-sends a firing group every `repeat_interval`).
//! - Cooldown: per rule, fingerprint and status — a resolution's action is not held back by
//!   the firing action just before it.
//! - Cap: `max_per_hour` actions of the rule in the last hour, across fingerprints.

use std::collections::BTreeMap;

use super::{Modifiers, plan_service};
use crate::config::{AlertAction, AlertRule, App};
use crate::sources::{Alert, AlertStatus, Event, Source};
use crate::states::AlertOutcome;
use crate::store::{AlertFacts, DeploymentState, NewAlert, NewDeployment};
use crate::timefmt::fmt_ms;

/// One hour, the cap's window (ms).
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// What a matching rule does with an alert now.
#[derive(Debug)]
pub(crate) enum Verdict<'a> {
    Act(&'a AlertAction),
    Skip(AlertOutcome, String),
}

/// The app's rules that match the alert's labels, in the order written.
pub(crate) fn matching<'a>(app: &'a App, alert: &Alert) -> Vec<&'a AlertRule> {
    app.alerts
        .iter()
        .filter(|r| r.matches(&alert.labels))
        .collect()
}

/// Whether `rule` acts on `alert` now (`now`, unix ms), given its past actions.
pub(crate) fn decide<'a>(
    rule: &'a AlertRule,
    alert: &Alert,
    facts: &AlertFacts,
    now: i64,
) -> Verdict<'a> {
    let action = match (alert.status, &rule.on_resolved) {
        (AlertStatus::Firing, _) => &rule.action,
        (AlertStatus::Resolved, Some(a)) => a,
        (AlertStatus::Resolved, None) => {
            return Verdict::Skip(
                AlertOutcome::NoAction,
                format!("resolved: rule {} has no on_resolved action", rule.name),
            );
        }
    };
    if facts.duplicate {
        return Verdict::Skip(
            AlertOutcome::Duplicate,
            format!(
                "duplicate: rule {} already acted on this alert ({}, startsAt {})",
                rule.name,
                alert.status.as_str(),
                alert.starts_at
            ),
        );
    }
    let cooldown = i64::try_from(rule.cooldown.as_millis()).unwrap_or(i64::MAX);
    if let Some(last) = facts.last_action
        && now < last.saturating_add(cooldown)
    {
        return Verdict::Skip(
            AlertOutcome::Cooldown,
            format!(
                "cooldown until {}: rule {} acted on this alert ({}) at {}",
                fmt_ms(last.saturating_add(cooldown)),
                rule.name,
                alert.status.as_str(),
                fmt_ms(last)
            ),
        );
    }
    if facts.recent_actions >= i64::from(rule.max_per_hour) {
        return Verdict::Skip(
            AlertOutcome::Capped,
            format!(
                "cap: {} actions in the last hour (rule {}, max_per_hour = {})",
                facts.recent_actions, rule.name, rule.max_per_hour
            ),
        );
    }
    Verdict::Act(action)
}

/// The row of an alert, before its rule and outcome are known: unmatched.
pub(crate) fn row(app: &App, delivery: i64, alert: &Alert) -> NewAlert {
    NewAlert {
        delivery_id: delivery,
        app: app.name.clone(),
        rule: None,
        fingerprint: alert.fingerprint.clone(),
        alertname: alert.name().to_string(),
        status: alert.status.as_str().to_string(),
        starts_at: alert.starts_at.clone(),
        ends_at: alert.ends_at.clone(),
        labels: json_object(&alert.labels),
        annotations: json_object(&alert.annotations),
        action: None,
        outcome: AlertOutcome::Unmatched,
        reason: Some("no rule matches its labels".into()),
        deployment_id: None,
    }
}

fn json_object(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

/// The deployment that carries out `action` of `rule` for `alert`: a redeploy of the service
/// at what it runs now (a restart too: the executor restarts in place), or a run of the
/// rule's command pseudo-service. Its reason names the rule and the alert.
pub(crate) fn deployment(
    app: &App,
    source: Source,
    rule: &AlertRule,
    action: &AlertAction,
    alert: &Alert,
    history: &dyn super::History,
) -> NewDeployment {
    let reason = format!(
        "alert {} {} (fingerprint {}): rule {}: {}",
        alert.name(),
        alert.status.as_str(),
        alert.fingerprint,
        rule.name,
        action.describe()
    );
    let redeploy = |service: &str| {
        let event = Event::Redeploy { time: None };
        plan_service(app, service, source, &event, &Modifiers::default(), history)
    };
    let mut d = match action {
        AlertAction::Redeploy(service) => redeploy(service),
        // What it runs now, for the record; a restart needs no image deployed by ferry (it
        // restarts the containers as they are), so it is never skipped for want of one.
        AlertAction::Restart(service) => NewDeployment {
            state: DeploymentState::Queued,
            reason: None,
            ..redeploy(service)
        },
        AlertAction::Command(svc) => NewDeployment {
            app: app.name.clone(),
            service: svc.name.clone(),
            state: DeploymentState::Queued,
            source: source.as_str().to_string(),
            ..NewDeployment::default()
        },
    };
    d.event = Event::Alerts(Vec::new()).name(source).to_string();
    d.note(&reason);
    d
}

#[cfg(test)]
mod tests {

    use super::*;

    fn app() -> App {
        let text = r#"
[apps.shop]
token = "tok-0123456789abcdef"
[apps.shop.services.web]
command = ["true"]
[[apps.shop.alerts]]
name = "heal"
match = { alertname = "Down" }
redeploy = "web"
on_resolved = { command = ["./resolved.sh"] }
cooldown = "10m"
max_per_hour = 2
[[apps.shop.alerts]]
name = "page"
match_re = { severity = "crit.*" }
command = ["./page.sh"]
"#;
        crate::config::test_app(text, "shop")
    }

    fn alert(status: AlertStatus, labels: &[(&str, &str)]) -> Alert {
        Alert {
            status,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            starts_at: "2026-12-04T17:00:00Z".into(),
            ends_at: None,
            fingerprint: "00aa".into(),
            generator_url: None,
        }
    }

    fn outcome(v: &Verdict<'_>) -> (AlertOutcome, String) {
        match v {
            Verdict::Act(a) => (AlertOutcome::Acted, a.describe()),
            Verdict::Skip(o, why) => (*o, why.clone()),
        }
    }

    #[test]
    fn outcomes_have_one_name_each() {
        for o in AlertOutcome::ALL {
            assert_eq!(o.as_str().parse::<AlertOutcome>().ok(), Some(*o));
        }
    }

    #[test]
    fn rules_match_by_labels_in_order() {
        let app = app();
        let both = alert(
            AlertStatus::Firing,
            &[("alertname", "Down"), ("severity", "critical")],
        );
        let names: Vec<&str> = matching(&app, &both)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["heal", "page"]);
        let none = alert(
            AlertStatus::Firing,
            &[("alertname", "Up"), ("severity", "warning")],
        );
        assert!(matching(&app, &none).is_empty());
    }

    #[test]
    fn duplicate_then_cooldown_then_cap() {
        let app = app();
        let rule = &app.alerts[0];
        let firing = alert(AlertStatus::Firing, &[("alertname", "Down")]);
        let now = 10 * HOUR_MS;
        let fresh = AlertFacts::default();
        assert_eq!(
            outcome(&decide(rule, &firing, &fresh, now)).0,
            AlertOutcome::Acted
        );
        // A re-send of the same firing: a duplicate, whatever the time.
        let dup = AlertFacts {
            duplicate: true,
            last_action: Some(now - HOUR_MS),
            recent_actions: 0,
        };
        let (o, why) = outcome(&decide(rule, &firing, &dup, now));
        assert_eq!(o, AlertOutcome::Duplicate);
        assert!(why.contains("already acted"), "{why}");
        // A new firing 9 minutes after the last action: cooldown (10m) until a minute later.
        let cool = AlertFacts {
            duplicate: false,
            last_action: Some(now - 9 * 60_000),
            recent_actions: 1,
        };
        let (o, why) = outcome(&decide(rule, &firing, &cool, now));
        assert_eq!(o, AlertOutcome::Cooldown);
        assert!(
            why.starts_with(&format!("cooldown until {}", fmt_ms(now + 60_000))),
            "{why}"
        );
        // 10 minutes after: acts again, unless the cap (2 an hour) is reached.
        let after = AlertFacts {
            last_action: Some(now - 10 * 60_000),
            ..cool
        };
        assert_eq!(
            outcome(&decide(rule, &firing, &after, now)).0,
            AlertOutcome::Acted
        );
        let capped = AlertFacts {
            recent_actions: 2,
            ..after
        };
        let (o, why) = outcome(&decide(rule, &firing, &capped, now));
        assert_eq!(o, AlertOutcome::Capped);
        assert_eq!(
            why,
            "cap: 2 actions in the last hour (rule heal, max_per_hour = 2)"
        );
    }

    #[test]
    fn resolved_alerts_run_on_resolved_or_nothing() {
        let app = app();
        let resolved = alert(
            AlertStatus::Resolved,
            &[("alertname", "Down"), ("severity", "critical")],
        );
        let (o, what) = outcome(&decide(
            &app.alerts[0],
            &resolved,
            &AlertFacts::default(),
            0,
        ));
        assert_eq!(
            (o, what.as_str()),
            (AlertOutcome::Acted, "command alert:heal")
        );
        let (o, why) = outcome(&decide(
            &app.alerts[1],
            &resolved,
            &AlertFacts::default(),
            0,
        ));
        assert_eq!(o, AlertOutcome::NoAction);
        assert_eq!(why, "resolved: rule page has no on_resolved action");
    }

    #[test]
    fn actions_become_deployments_named_for_the_alert() {
        let app = app();
        let firing = alert(
            AlertStatus::Firing,
            &[("alertname", "Down"), ("severity", "critical")],
        );
        let none = |_: &str| None;
        let d = deployment(
            &app,
            Source::Alertmanager,
            &app.alerts[0],
            &app.alerts[0].action,
            &firing,
            &none,
        );
        assert_eq!(
            (d.service.as_str(), d.state, d.event.as_str()),
            ("web", DeploymentState::Queued, "alert")
        );
        assert_eq!(d.source, "alertmanager");
        assert_eq!(
            d.reason.as_deref(),
            Some("alert Down firing (fingerprint 00aa): rule heal: redeploy web")
        );
        let d = deployment(
            &app,
            Source::Alertmanager,
            &app.alerts[1],
            &app.alerts[1].action,
            &firing,
            &none,
        );
        assert_eq!(d.service, "alert:page");
        assert!(app.runnable("alert:page").is_some());
        assert!(
            app.runnable("alert:heal").is_some(),
            "its on_resolved command"
        );
        assert!(app.alert_command("alert:heal", false).is_none());
        assert!(app.alert_command("alert:page", true).is_none());
        assert!(app.runnable("alert:nope").is_none());
        let row = row(&app, 3, &firing);
        assert_eq!(
            (row.outcome, row.alertname.as_str()),
            (AlertOutcome::Unmatched, "Down")
        );
        assert_eq!(row.labels, r#"{"alertname":"Down","severity":"critical"}"#);
    }
}
