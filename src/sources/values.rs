//! Value checks: what a parsed event may carry before the planner acts on it.
//!
//! Payload values end up as `FERRY_*` variables of deploy commands, which pass them to git,
//! docker and shell scripts. A commit id that reads as an option (`--upload-pack=…`) or a ref
//! holding a newline is an injection into whatever reads it, so the planner runs
//! [`check_event`] on every event that [`super::parse()`] returns, before planning: a value that
//! fails rejects the whole delivery (status `rejected`, with a [`ValueError`] naming the field,
//! the value and the rule). The rules:
//! - commit ids are 40 (SHA-1) or 64 (SHA-256) hex digits, stored lower-case;
//! - refs, branches and tags follow git's ref-name rules ([`ref_name`]) and never start with `-`;
//! - repository names hold no control character or whitespace, never start with `-`, and are
//!   at most [`MAX_REPOSITORY`] bytes long;
//! - image tags and digests pass [`super::image_tag`] and [`super::digest`] (the parsers
//!   already apply them; checking again keeps this the one place that decides).
//!
//! The same checks serve the `?git_ref=` modifier ([`git_ref_or_commit`], a 400 on the request
//! path) and the lanes' last look at every `FERRY_*` value ([`env_value`]). They are pure
//! string functions, cheap enough for the request path.
//!
//! [`clamp_future_times`] keeps event times from the future out of ordering: a time later than
//! the time received plus [`FUTURE_TOLERANCE_MS`] is replaced by the time received.

use super::{Alert, Event, GitRef};

/// The longest ref name accepted, in bytes. git itself has no limit; file systems cap each
/// component at 255 bytes, and hosts cap branch names at about that.
pub const MAX_REF: usize = 1024;

/// The longest repository name accepted, in bytes (GitLab's nested groups make long paths).
pub const MAX_REPOSITORY: usize = 512;

/// How far in the future an event time may lie and still be trusted for ordering: 5 minutes,
/// the clock skew Standard Webhooks tolerates too. Commit times come from the committer's
/// clock, which may run a little ahead of ours; anything later than this is a wrong clock or a
/// time bomb (one push dated 2999 would make every later push of the service `stale`).
pub const FUTURE_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// A value that failed a check: `FIELD: "VALUE" PROBLEM`, the value quoted with escapes (so
/// control characters show as `\n`) and cut at 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value} {problem}")]
pub struct ValueError {
    pub field: String,
    pub value: String,
    pub problem: String,
}

impl ValueError {
    fn new(field: impl Into<String>, value: &str, problem: impl Into<String>) -> ValueError {
        let shown: String = value.chars().take(100).collect();
        let cut = if shown.len() < value.len() { "…" } else { "" };
        ValueError {
            field: field.into(),
            value: format!("{shown:?}{cut}"),
            problem: problem.into(),
        }
    }
}

/// A commit id: exactly 40 or 64 hex digits, either case. Returns it lower-case (what git
/// prints and GitHub sends), so that stored commits compare equal.
pub fn commit_id(text: &str) -> Result<String, String> {
    if (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("is not a commit id (40 or 64 hex digits)".into())
    }
}

/// git's ref-name rules (`man git-check-ref-format`, as with `--allow-onelevel`, so a bare
/// branch name such as `main` passes too), plus ferry's own: no leading `-` (git refuses such
/// branch names too, `git check-ref-format --branch`), and at most [`MAX_REF`] bytes.
/// Returns which rule the name breaks.
pub fn ref_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_REF {
        return Err(format!("is longer than {MAX_REF} bytes"));
    }
    if name.starts_with('-') {
        return Err("starts with '-' (it would read as an option)".into());
    }
    // Rule 4: no ASCII control characters (< 0x20, DEL), space, `~`, `^` or `:`. Unicode
    // control characters (C1) are refused as well: no FERRY_* value may hold one.
    if name.chars().any(char::is_control) {
        return Err("holds a control character (git rule 4)".into());
    }
    if name.contains(' ') {
        return Err("holds a space (git rule 4)".into());
    }
    // Rules 4, 5 and 10: `~ ^ :`, `? * [`, `\`.
    if let Some(c) = name.chars().find(|c| "~^:?*[\\".contains(*c)) {
        return Err(format!("holds {c:?} (git rules 4, 5, 10)"));
    }
    // Rule 3.
    if name.contains("..") {
        return Err("holds '..' (git rule 3)".into());
    }
    // Rule 8.
    if name.contains("@{") {
        return Err("holds '@{' (git rule 8)".into());
    }
    // Rule 9.
    if name == "@" {
        return Err("is '@' (git rule 9)".into());
    }
    // Rule 6 (no leading, trailing or doubled `/`: no empty component).
    if name.split('/').any(str::is_empty) {
        return Err("has an empty component (leading, trailing or '//'; git rule 6)".into());
    }
    // Rule 7.
    if name.ends_with('.') {
        return Err("ends with '.' (git rule 7)".into());
    }
    // Rule 1.
    for component in name.split('/') {
        if component.starts_with('.') {
            return Err("has a component starting with '.' (git rule 1)".into());
        }
        if component.ends_with(".lock") {
            return Err("has a component ending with '.lock' (git rule 1)".into());
        }
    }
    Ok(())
}

/// A repository name (`owner/name`, `PROJECT/slug`, an image repository): no control
/// characters or whitespace, no leading `-`, not empty, at most [`MAX_REPOSITORY`] bytes.
pub fn repository(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_REPOSITORY {
        return Err(format!("is longer than {MAX_REPOSITORY} bytes"));
    }
    if name.starts_with('-') {
        return Err("starts with '-' (it would read as an option)".into());
    }
    if name.chars().any(char::is_control) {
        return Err("holds a control character".into());
    }
    if name.chars().any(char::is_whitespace) {
        return Err("holds whitespace".into());
    }
    Ok(())
}

/// The `?git_ref=` modifier (and the API's `ref`): a ref name or a commit id.
pub fn git_ref_or_commit(value: &str) -> Result<(), ValueError> {
    if commit_id(value).is_ok() {
        return Ok(());
    }
    ref_name(value).map_err(|why| {
        ValueError::new(
            "git_ref",
            value,
            format!("is neither a ref name nor a commit id: it {why}"),
        )
    })
}

/// The last check before a value becomes the `FERRY_*` variable `name`: no control characters
/// (a newline in an environment value splits lines in every `env` dump and `.env` file).
pub fn env_value(name: &str, value: &str) -> Result<(), ValueError> {
    if value.chars().any(char::is_control) {
        return Err(ValueError::new(name, value, "holds a control character"));
    }
    Ok(())
}

/// Checks every value of a parsed event (see the module doc) and lower-cases commit ids. An
/// error names the first value that fails.
pub fn check_event(event: &mut Event) -> Result<(), ValueError> {
    match event {
        Event::Push(changes) => {
            for c in changes {
                repository(&c.repo).map_err(|why| ValueError::new("repository", &c.repo, why))?;
                ref_name(&c.full_ref).map_err(|why| ValueError::new("ref", &c.full_ref, why))?;
                // `refs/heads/-x` is a valid ref, but FERRY_GIT_BRANCH would be `-x`.
                match &c.git_ref {
                    GitRef::Branch(b) => {
                        ref_name(b).map_err(|why| ValueError::new("branch", b, why))?
                    }
                    GitRef::Tag(t) => ref_name(t).map_err(|why| ValueError::new("tag", t, why))?,
                    GitRef::Other(_) => {}
                }
                if let Some(commit) = &mut c.commit {
                    *commit = commit_id(commit).map_err(|why| {
                        ValueError::new(
                            "commit (`after`, `head_commit.id` or the sender's equivalent)",
                            commit,
                            why,
                        )
                    })?;
                }
            }
        }
        Event::ImagePush(pushes) => {
            for p in pushes {
                repository(&p.repository)
                    .map_err(|why| ValueError::new("image repository", &p.repository, why))?;
                if let Some(t) = &p.tag
                    && super::image_tag(t).as_deref() != Some(t.as_str())
                {
                    return Err(ValueError::new(
                        "image tag",
                        t,
                        "is not a tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})",
                    ));
                }
                if let Some(d) = &p.digest
                    && super::digest(d).as_deref() != Some(d.as_str())
                {
                    return Err(ValueError::new(
                        "image digest",
                        d,
                        "is not a digest (sha256: + 64 or sha512: + 128 lower-case hex digits)",
                    ));
                }
            }
        }
        Event::Deployment(d) => check_deployment(d)?,
        Event::Rollback { service, .. } | Event::Reconcile { service } => {
            env_value("service", service)?;
        }
        Event::Alerts(alerts) => check_alerts(alerts)?,
        // Nothing from the payload reaches a deployment.
        Event::Ping | Event::Ignored(_) | Event::Redeploy { .. } => {}
    }
    Ok(())
}

/// At most this many alerts in one Alertmanager notification (its `max_alerts` is unlimited
/// by default, but a group this large is a misconfiguration, not something to act on).
pub const MAX_ALERTS: usize = 1000;
/// At most this many labels (and as many annotations) per alert.
pub const MAX_LABELS: usize = 64;
/// The longest label value (annotations: [`MAX_ANNOTATION`]) and label name.
pub const MAX_LABEL_VALUE: usize = 4096;
pub const MAX_ANNOTATION: usize = 16 * 1024;

/// Alertmanager alerts: label names as Prometheus allows them, sizes bounded, the fingerprint
/// hex (lower-cased), the times RFC 3339, the `alertname` free of control characters (it is
/// `FERRY_ALERT_NAME`). Other label and annotation values may hold any text: they reach a
/// command only as JSON (and a label's own variable only without control characters).
fn check_alerts(alerts: &mut [Alert]) -> Result<(), ValueError> {
    if alerts.len() > MAX_ALERTS {
        let n = alerts.len().to_string();
        return Err(ValueError::new(
            "alerts",
            &n,
            format!("are more than {MAX_ALERTS}"),
        ));
    }
    for a in alerts {
        let fp = &a.fingerprint;
        if fp.is_empty() || fp.len() > 32 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ValueError::new(
                "alert fingerprint",
                fp,
                "is not 1 to 32 hex digits",
            ));
        }
        a.fingerprint = fp.to_ascii_lowercase();
        for (field, time) in [
            ("alert startsAt", Some(&a.starts_at)),
            ("alert endsAt", a.ends_at.as_ref()),
        ] {
            if let Some(t) = time
                && super::rfc3339_ms(t).is_none()
            {
                return Err(ValueError::new(field, t, "is not an RFC 3339 time"));
            }
        }
        labels("alert label", &a.labels, MAX_LABEL_VALUE, true)?;
        labels("alert annotation", &a.annotations, MAX_ANNOTATION, false)?;
        env_value("alert name (label alertname)", a.name())?;
        if let Some(u) = &a.generator_url {
            env_value("alert generatorURL", u)?;
        }
    }
    Ok(())
}

/// A label or annotation map: count, name syntax (labels) and sizes.
fn labels(
    field: &str,
    map: &std::collections::BTreeMap<String, String>,
    max_value: usize,
    label_names: bool,
) -> Result<(), ValueError> {
    if map.len() > MAX_LABELS {
        let n = map.len().to_string();
        return Err(ValueError::new(
            field,
            &n,
            format!("s are more than {MAX_LABELS}"),
        ));
    }
    for (name, value) in map {
        let bad_name = name.len() > MAX_LABEL_VALUE
            || if label_names {
                !crate::config::is_label_name(name)
            } else {
                name.chars().any(char::is_control) || name.is_empty()
            };
        if bad_name {
            return Err(ValueError::new(
                format!("{field} name"),
                name,
                "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)",
            ));
        }
        if value.len() > max_value {
            return Err(ValueError::new(
                format!("{field} {name}"),
                value,
                format!("is longer than {max_value} bytes"),
            ));
        }
    }
    Ok(())
}

/// A deployment requested in the git host: its repository, commit (lower-cased) and ref as
/// a push's; its environment and task (compared with the config, quoted in reasons) free of
/// control characters.
fn check_deployment(d: &mut super::GitDeployment) -> Result<(), ValueError> {
    repository(&d.repo).map_err(|why| ValueError::new("repository", &d.repo, why))?;
    d.commit =
        commit_id(&d.commit).map_err(|why| ValueError::new("deployment.sha", &d.commit, why))?;
    if commit_id(&d.git_ref).is_err() {
        ref_name(&d.git_ref).map_err(|why| {
            ValueError::new(
                "deployment.ref",
                &d.git_ref,
                format!("is neither a ref name nor a commit id: it {why}"),
            )
        })?;
    }
    env_value("deployment.environment", &d.environment)?;
    env_value("deployment.task", &d.task)
}

/// Replaces event times later than `received_at` + [`FUTURE_TOLERANCE_MS`] by `received_at`
/// (all unix ms), so a wrong or hostile clock cannot order this event after every later one.
/// Returns a note for the delivery when it replaced any.
pub fn clamp_future_times(event: &mut Event, received_at: i64) -> Option<String> {
    let limit = received_at.saturating_add(FUTURE_TOLERANCE_MS);
    let mut latest: Option<i64> = None;
    let mut clamp = |time: &mut Option<i64>| {
        if let Some(t) = *time
            && t > limit
        {
            latest = latest.max(Some(t));
            *time = Some(received_at);
        }
    };
    match event {
        Event::Push(changes) => changes.iter_mut().for_each(|c| clamp(&mut c.time)),
        Event::ImagePush(pushes) => pushes.iter_mut().for_each(|p| clamp(&mut p.time)),
        Event::Redeploy { time } => clamp(time),
        // A requested deployment carries no time: it is never ordered against pushes.
        // Alerts are ordered by the planner's transaction, not by their times.
        Event::Ping
        | Event::Ignored(_)
        | Event::Rollback { .. }
        | Event::Reconcile { .. }
        | Event::Deployment(_)
        | Event::Alerts(_) => {}
    }
    let t = latest?;
    Some(format!(
        "event time {} is later than the time received plus {} min; ordered by the time received ({}) instead",
        crate::timefmt::fmt_ms(t),
        FUTURE_TOLERANCE_MS / 60_000,
        crate::timefmt::fmt_ms(received_at),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{GitPush, ImagePush};

    fn push(full_ref: &str, commit: Option<&str>) -> Event {
        Event::Push(vec![GitPush {
            repo: "acme/shop".into(),
            full_ref: full_ref.into(),
            git_ref: GitRef::parse(full_ref),
            commit: commit.map(str::to_string),
            time: Some(1),
            deleted: commit.is_none(),
            forced: false,
        }])
    }

    #[test]
    fn commit_ids_are_40_or_64_hex_digits_stored_lower_case() {
        let sha1 = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
        assert_eq!(commit_id(sha1).as_deref(), Ok(sha1));
        assert_eq!(commit_id(&sha1.to_uppercase()).as_deref(), Ok(sha1));
        let sha256 = "ab".repeat(32);
        assert_eq!(commit_id(&sha256), Ok(sha256.clone()));
        for bad in [
            "",
            "6113728",
            "--upload-pack=touch /tmp/x",
            &format!("{sha1}0"),
            &format!("-{}", &sha1[1..]),
            &format!("{}g", &sha1[1..]),
            &format!("{}\n", &sha1[1..]),
            &"a".repeat(63),
        ] {
            assert!(commit_id(bad).is_err(), "{bad:?}");
        }
    }

    /// Each rule of `man git-check-ref-format`, in its order, with ferry's additions.
    #[test]
    fn ref_names_follow_git_check_ref_format() {
        for good in [
            "main",
            "refs/heads/main",
            "refs/heads/feature/x-1",
            "refs/tags/v1.2.3",
            "refs/heads/a.b",
            "refs/heads/ünïcode",
            "refs/heads/$(touch${IFS}x);`id`",
            "a@b",
            "refs/heads/with-dash-",
        ] {
            assert_eq!(ref_name(good), Ok(()), "{good:?}");
        }
        let bad = [
            // 1: no component starts with `.` or ends with `.lock`.
            ("refs/heads/.hidden", "rule 1"),
            ("refs/heads/x.lock", "rule 1"),
            ("refs/x.lock/y", "rule 1"),
            // 3: no `..`.
            ("refs/heads/a..b", "rule 3"),
            // 4: no control characters, space, `~`, `^`, `:`.
            ("refs/heads/a\nb", "rule 4"),
            ("refs/heads/a\tb", "rule 4"),
            ("refs/heads/a\u{7f}", "rule 4"),
            ("refs/heads/a\u{85}", "rule 4"),
            ("refs/heads/a b", "rule 4"),
            ("refs/heads/a~1", "rule"),
            ("refs/heads/a^", "rule"),
            ("refs/heads/a:b", "rule"),
            // 5: no `?`, `*`, `[`.
            ("refs/heads/a?", "rule"),
            ("refs/heads/*", "rule"),
            ("refs/heads/[a]", "rule"),
            // 6: no leading or trailing `/`, no `//`.
            ("/refs/heads/a", "rule 6"),
            ("refs/heads/a/", "rule 6"),
            ("refs//heads/a", "rule 6"),
            // 7: not ending with `.`.
            ("refs/heads/a.", "rule 7"),
            // 8: no `@{`.
            ("refs/heads/a@{1}", "rule 8"),
            // 9: not `@`.
            ("@", "rule 9"),
            // 10: no `\`.
            ("refs/heads/a\\b", "rule"),
            // ferry: no leading `-`, not empty, not too long.
            ("-x", "'-'"),
            ("--upload-pack=x", "'-'"),
            ("", "empty"),
            (&"a".repeat(MAX_REF + 1), "longer"),
        ];
        for (name, why) in bad {
            let err = ref_name(name).expect_err(name);
            assert!(err.contains(why), "{name:?}: {err}");
        }
        assert_eq!(ref_name(&"a".repeat(MAX_REF)), Ok(()));
    }

    #[test]
    fn repositories() {
        assert_eq!(repository("acme/shop"), Ok(()));
        assert_eq!(repository("registry.example.com:5000/a/b"), Ok(()));
        for bad in [
            "",
            "-acme/shop",
            "acme/\nshop",
            "acme shop",
            &"a".repeat(513),
        ] {
            assert!(repository(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn git_ref_modifier_takes_refs_and_commits() {
        assert_eq!(git_ref_or_commit("v2.3.4"), Ok(()));
        assert_eq!(git_ref_or_commit("refs/heads/main"), Ok(()));
        assert_eq!(git_ref_or_commit(&"a".repeat(40)), Ok(()));
        let err = git_ref_or_commit("-x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "git_ref: \"-x\" is neither a ref name nor a commit id: it starts with '-' (it would read as an option)"
        );
    }

    #[test]
    fn events_are_checked_and_commits_lower_cased() {
        let upper = "6113728F27AE82C7B1A177C8D03F9E96E0ADF246";
        let mut e = push("refs/heads/main", Some(upper));
        assert_eq!(check_event(&mut e), Ok(()));
        let Event::Push(p) = &e else { unreachable!() };
        assert_eq!(p[0].commit.as_deref(), Some(upper.to_lowercase().as_str()));
        // A deleted ref has no commit.
        assert_eq!(check_event(&mut push("refs/heads/gone", None)), Ok(()));

        let err = check_event(&mut push(
            "refs/heads/main",
            Some("--upload-pack=touch /tmp/x"),
        ))
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "commit (`after`, `head_commit.id` or the sender's equivalent): \"--upload-pack=touch /tmp/x\" is not a commit id"
            ),
            "{err}"
        );
        let err = check_event(&mut push("refs/heads/a\nb", Some(&"a".repeat(40)))).unwrap_err();
        assert_eq!(err.field, "ref");
        assert_eq!(err.value, "\"refs/heads/a\\nb\"", "escaped, on one line");
        let err = check_event(&mut push("refs/heads/-x", Some(&"a".repeat(40)))).unwrap_err();
        assert_eq!(err.field, "branch");
        let err = check_event(&mut push("refs/tags/-x", Some(&"a".repeat(40)))).unwrap_err();
        assert_eq!(err.field, "tag");

        let image = |tag: &str, digest: &str| {
            Event::ImagePush(vec![ImagePush {
                repository: "ghcr.io/acme/api".into(),
                tag: Some(tag.into()),
                digest: Some(digest.into()),
                time: None,
                event_id: None,
            }])
        };
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(check_event(&mut image("v1", &d)), Ok(()));
        assert_eq!(
            check_event(&mut image("-v1", &d)).unwrap_err().field,
            "image tag"
        );
        assert_eq!(
            check_event(&mut image("v1", "sha256:abc"))
                .unwrap_err()
                .field,
            "image digest"
        );
    }

    /// A deployment requested in GitHub: its sha and ref are checked as a push's (the ref may
    /// also be the commit itself), the sha lower-cased; environment and task hold no control
    /// character.
    #[test]
    fn requested_deployments_are_checked() {
        let dep = |commit: &str, git_ref: &str, environment: &str| {
            Event::Deployment(crate::sources::GitDeployment {
                repo: "acme/shop".into(),
                commit: commit.into(),
                git_ref: git_ref.into(),
                environment: environment.into(),
                task: "deploy".into(),
                id: 1,
                created_by_ferry: None,
            })
        };
        let upper = "6113728F27AE82C7B1A177C8D03F9E96E0ADF246";
        let mut e = dep(upper, "main", "production");
        assert_eq!(check_event(&mut e), Ok(()));
        let Event::Deployment(d) = &e else {
            unreachable!()
        };
        assert_eq!(d.commit, upper.to_lowercase());
        assert_eq!(check_event(&mut dep(upper, upper, "production")), Ok(()));
        let sha = "a".repeat(40);
        let err = check_event(&mut dep("--upload-pack=x", "main", "p")).unwrap_err();
        assert_eq!(err.field, "deployment.sha");
        let err = check_event(&mut dep(&sha, "-main", "p")).unwrap_err();
        assert_eq!(err.field, "deployment.ref");
        assert!(
            err.problem.contains("neither a ref name nor a commit id"),
            "{err}"
        );
        let err = check_event(&mut dep(&sha, "main", "prod\nuction")).unwrap_err();
        assert_eq!(err.field, "deployment.environment");
        let mut bad_repo = dep(&sha, "main", "p");
        if let Event::Deployment(d) = &mut bad_repo {
            d.repo = "-acme/shop".into();
        }
        assert_eq!(check_event(&mut bad_repo).unwrap_err().field, "repository");
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let err = check_event(&mut push(&format!("-{}", "a".repeat(5000)), None)).unwrap_err();
        assert!(err.value.chars().count() < 110, "{}", err.value);
        assert!(err.value.ends_with('…'));
    }

    #[test]
    fn future_times_are_replaced_by_the_time_received() {
        let received = 1_800_000_000_000;
        let year_2999 = 32_472_144_000_000;
        let mut e = push("refs/heads/main", Some(&"a".repeat(40)));
        if let Event::Push(p) = &mut e {
            p[0].time = Some(year_2999);
        }
        let note = clamp_future_times(&mut e, received).expect("a note");
        assert!(note.contains("2999-01-01T00:00:00Z"), "{note}");
        let Event::Push(p) = &e else { unreachable!() };
        assert_eq!(p[0].time, Some(received));

        // Within the tolerance, and in the past: kept.
        for t in [
            received + FUTURE_TOLERANCE_MS,
            received - 1,
            i64::MIN,
            received - 86_400_000,
        ] {
            let mut e = Event::Redeploy { time: Some(t) };
            assert_eq!(clamp_future_times(&mut e, received), None);
            assert_eq!(e, Event::Redeploy { time: Some(t) });
        }
        let mut e = Event::Redeploy {
            time: Some(i64::MAX),
        };
        assert!(clamp_future_times(&mut e, i64::MAX - 1).is_none());
        assert!(clamp_future_times(&mut e, received).is_some());
        assert_eq!(
            e,
            Event::Redeploy {
                time: Some(received)
            }
        );
    }
}

/// The checks never let through what they exist to stop, and never refuse a real commit id.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::sources::{GitPush, ImagePush};

    /// Strings that often hold what the checks refuse.
    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,40}",
            "[-a-z0-9./@{}~^:?*\\[\\\\ \n\t\u{7f}\u{85}]{0,24}",
            "(refs/(heads|tags)/)?-?[a-z.]{0,6}(\\.\\.|\n|/)?[a-z]{0,4}",
        ]
    }

    fn has_control(s: &str) -> bool {
        s.chars().any(char::is_control)
    }

    proptest! {
        #[test]
        fn refs_never_hold_control_chars_leading_dash_or_dot_dot(name in hostile()) {
            if ref_name(&name).is_ok() {
                prop_assert!(!has_control(&name), "{name:?}");
                prop_assert!(!name.starts_with('-'), "{name:?}");
                prop_assert!(!name.contains(".."), "{name:?}");
                prop_assert!(!name.is_empty());
            }
            if git_ref_or_commit(&name).is_ok() {
                prop_assert!(!has_control(&name) && !name.starts_with('-') && !name.contains(".."), "{name:?}");
            }
            if repository(&name).is_ok() {
                prop_assert!(!has_control(&name) && !name.starts_with('-'), "{name:?}");
            }
            if let Ok(id) = commit_id(&name) {
                prop_assert!(id.len() == 40 || id.len() == 64);
                prop_assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            }
        }

        #[test]
        fn every_hex_commit_id_is_accepted(id in "[0-9a-fA-F]{40}|[0-9a-fA-F]{64}") {
            prop_assert_eq!(commit_id(&id), Ok(id.to_ascii_lowercase()));
            prop_assert_eq!(git_ref_or_commit(&id), Ok(()));
        }

        /// Whatever an event holds, one that passes the checks gives FERRY_* values without
        /// control characters and without a leading `-`.
        #[test]
        fn checked_events_give_clean_ferry_values(
            repo in hostile(), full_ref in hostile(),
            commit in prop_oneof![hostile(), "[0-9a-fA-F]{40}"],
            tag in hostile(), digest in prop_oneof![hostile(), "sha256:[0-9a-f]{64}"],
        ) {
            let mut git = Event::Push(vec![GitPush {
                repo: repo.clone(),
                git_ref: GitRef::parse(&full_ref),
                full_ref,
                commit: Some(commit),
                time: None,
                deleted: false,
                forced: false,
            }]);
            if check_event(&mut git).is_ok() {
                let Event::Push(changes) = &git else { unreachable!() };
                for c in changes {
                    let branch = match &c.git_ref { GitRef::Branch(b) | GitRef::Tag(b) => Some(b.as_str()), GitRef::Other(_) => None };
                    for v in [Some(c.repo.as_str()), Some(c.full_ref.as_str()), branch, c.commit.as_deref()].into_iter().flatten() {
                        prop_assert!(env_value("FERRY_X", v).is_ok(), "{v:?}");
                        prop_assert!(!v.starts_with('-'), "{v:?}");
                    }
                }
            }
            let mut image = Event::ImagePush(vec![ImagePush {
                repository: repo,
                tag: Some(tag),
                digest: Some(digest),
                time: None,
                event_id: None,
            }]);
            if check_event(&mut image).is_ok() {
                let Event::ImagePush(pushes) = &image else { unreachable!() };
                for p in pushes {
                    for v in [Some(p.repository.as_str()), p.tag.as_deref(), p.digest.as_deref()].into_iter().flatten() {
                        prop_assert!(env_value("FERRY_X", v).is_ok(), "{v:?}");
                        prop_assert!(!v.starts_with('-'), "{v:?}");
                    }
                }
            }
        }

        /// The property above through a real parser: a GitHub push carrying any values.
        #[test]
        fn parsed_pushes_that_pass_give_clean_ferry_values(
            repo in hostile(), full_ref in hostile(),
            commit in prop_oneof![hostile(), "[0-9a-fA-F]{40}"],
        ) {
            let body = serde_json::json!({
                "ref": full_ref, "after": commit, "repository": {"full_name": repo},
                "head_commit": {"id": commit, "timestamp": "2026-01-01T00:00:00Z"},
            })
            .to_string();
            let header = |_: &str| None;
            let stored = crate::sources::Stored { event: Some("push"), header: &header, body: body.as_bytes() };
            if let Ok(mut event) = crate::sources::parse(crate::sources::Source::Github, &stored)
                && check_event(&mut event).is_ok()
            {
                let Event::Push(changes) = &event else { unreachable!() };
                for c in changes {
                    for v in [Some(c.repo.as_str()), Some(c.full_ref.as_str()), c.commit.as_deref()].into_iter().flatten() {
                        prop_assert!(env_value("FERRY_X", v).is_ok() && !v.starts_with('-'), "{v:?}");
                    }
                }
            }
        }

        /// And through the planner's rules: the deployments planned from a checked event (and
        /// a `?git_ref=` that passed) carry only clean FERRY_* values.
        #[test]
        fn planned_deployments_carry_clean_ferry_values(
            tag in hostile(),
            commit in prop_oneof![hostile(), "[0-9a-fA-F]{40}"],
            git_ref in prop_oneof![hostile(), Just(String::new())],
        ) {
            let config = crate::config::parse(
                "[apps.a]\ntoken = \"tok-0123456789abcdef\"\n\
                 [apps.a.services.tags]\ngit = { repo = \"acme/shop\", tags = \"*\" }\ncommand = [\"x\"]\n\
                 [apps.a.services.plain]\ncommand = [\"x\"]\n",
                std::path::Path::new("f.toml"),
                &|_| None,
            )
            .expect("config");
            let app = &config.apps["a"];
            let full_ref = format!("refs/tags/{tag}");
            let mut event = Event::Push(vec![GitPush {
                repo: "acme/shop".into(),
                git_ref: GitRef::parse(&full_ref),
                full_ref,
                commit: Some(commit),
                time: Some(1),
                deleted: false,
                forced: false,
            }]);
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("git_ref", &git_ref)
                .finish();
            let m = crate::plan::Modifiers::parse(&query);
            if check_event(&mut event).is_ok()
                && let Ok(planned) = crate::plan::plan(app, crate::sources::Source::Github, &event, &m, &|_: &str| None)
            {
                for d in planned {
                    let values = [&d.git_repo, &d.git_branch, &d.git_ref, &d.git_commit, &d.image, &d.image_tag, &d.image_digest, &d.profile];
                    for v in values.into_iter().flatten().map(String::as_str).chain([d.event.as_str()]) {
                        prop_assert!(env_value("FERRY_X", v).is_ok() && !v.starts_with('-'), "{v:?} in {d:?}");
                    }
                }
            }
        }

        #[test]
        fn clamped_times_never_exceed_the_limit(t in any::<i64>(), received in any::<i64>()) {
            let mut e = Event::Redeploy { time: Some(t) };
            let note = clamp_future_times(&mut e, received);
            let Event::Redeploy { time: Some(after) } = e else { unreachable!() };
            prop_assert!(after <= received.saturating_add(FUTURE_TOLERANCE_MS));
            prop_assert_eq!(note.is_some(), after != t);
        }
    }
}
