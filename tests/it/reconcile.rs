//! `reconcile = "…"` (issue 15): a service's last successful deployment runs again on a
//! schedule, recorded as deployments with event `reconcile`, never overlapping another
//! deployment of the service (a skip is recorded instead), and continuing from the store
//! across a restart. Each test runs the real `ferry serve` with the recording deploy script
//! and watches what users see: the API's deployments, the command's environment, the
//! delivery inspector and the CLI; with a GitOps checkout, a reconcile puts a drifted work tree
//! back (a real `git daemon`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// App `shop`: `web` follows [`REPO`]'s `master` and reconciles every `{every}`; `worker`
/// does not reconcile.
const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.shop]
token = "secret-token-1"

[apps.shop.verify]
github = "It's a Secret to Everybody"
allow_unsigned = true

[apps.shop.services.web]
git = { repo = "Codertocat/Hello-World", branch = "master" }
command = ["{dir}/deploy.sh"]
timeout = "60s"
reconcile = "{every}"

[apps.shop.services.worker]
command = ["{dir}/deploy.sh", "worker"]
timeout = "60s"
"#;

async fn start(every: &str) -> Ferry {
    Ferry::with_config(&CONFIG.replace("{every}", every))
        .start()
        .await
}

/// Pushes commit `n` of `master` and waits for web's deployment of it to end; returns it.
async fn push(ferry: &Ferry, n: u64) -> Value {
    let delivery = ferry.push("master", &sha(n), &commit_time(n as i64)).await;
    let deployments = ferry.settle(delivery).await;
    only(&deployments, "web").clone()
}

/// Web's deployments with event `reconcile`, oldest first.
async fn reconciles(ferry: &Ferry) -> Vec<Value> {
    let mut list: Vec<Value> = ferry
        .deployments("app=shop&service=web")
        .await
        .into_iter()
        .filter(|d| d["event"] == "reconcile")
        .collect();
    list.reverse();
    list
}

/// Waits until web has `n` reconcile deployments that succeeded; returns them, oldest first.
async fn wait_succeeded(ferry: &Ferry, n: usize, timeout: Duration) -> Vec<Value> {
    eventually(
        &format!("{n} successful reconciles of web"),
        timeout,
        async || {
            let ok: Vec<Value> = reconciles(ferry)
                .await
                .into_iter()
                .filter(|d| d["state"] == "succeeded")
                .collect();
            if ok.len() >= n {
                Ok(ok)
            } else {
                Err(format!("{ok:#?}"))
            }
        },
    )
    .await
}

fn id(d: &Value) -> i64 {
    d["id"].as_i64().expect("deployment id")
}

/// Every deployment of web that ran, by start: none started before the one before it ended
/// (plus `gap` ms, for reconciles); returns how many ran.
async fn assert_runs_never_overlap(ferry: &Ferry, gap: i128) -> usize {
    let mut ran: Vec<Value> = ferry
        .deployments("app=shop&service=web")
        .await
        .into_iter()
        .filter(|d| !d["started_at"].is_null())
        .collect();
    ran.sort_by_key(|d| ts_ms(&d["started_at"]));
    for pair in ran.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(
            !before["finished_at"].is_null(),
            "{} started while {} still ran: {ran:#?}",
            after["id"],
            before["id"]
        );
        let wait = if after["event"] == "reconcile" {
            gap
        } else {
            0
        };
        assert!(
            ts_ms(&after["started_at"]) >= ts_ms(&before["finished_at"]) + wait,
            "{} started {} ms after {} ended (want ≥ {wait}): {ran:#?}",
            after["id"],
            ts_ms(&after["started_at"]) - ts_ms(&before["finished_at"]),
            before["id"]
        );
    }
    ran.len()
}

/// After one successful push, web's commit runs again every 2s as `reconcile` deployments (the
/// same commit, `FERRY_EVENT=reconcile`, each at least 2s after the run before it ended);
/// `worker`, deployed too but without `reconcile`, gets none. The inspector and the CLI say
/// what a reconcile delivery is.
#[tokio::test]
async fn the_last_success_runs_again_on_schedule_and_only_where_configured() {
    let ferry = start("2s").await;
    let first = push(&ferry, 1).await;
    assert_eq!(first["state"], "succeeded", "{first:#}");
    let worker = ferry
        .hook("shop")
        .query("services=worker")
        .send()
        .await
        .accepted();
    assert_eq!(
        only(&ferry.settle(worker).await, "worker")["state"],
        "succeeded"
    );

    let ok = wait_succeeded(&ferry, 2, WAIT).await;
    let mut previous = id(&first);
    for d in &ok[..2] {
        assert_eq!(d["commit"], sha(1), "{d:#}");
        assert_eq!(d["version"], sha(1), "{d:#}");
        assert_eq!(d["source"], "manual", "{d:#}");
        // Each re-runs the newest success: the push, then the first reconcile.
        assert_eq!(
            d["reason"],
            format!("reconcile: re-run of deployment {previous}"),
            "{d:#}"
        );
        previous = id(d);
        let env = ferry.run_env(id(d));
        assert_eq!(env["FERRY_EVENT"], "reconcile", "{env:?}");
        assert_eq!(env["FERRY_GIT_COMMIT"], sha(1), "{env:?}");
        assert_eq!(env["FERRY_SERVICE"], "web", "{env:?}");
    }
    let ran = assert_runs_never_overlap(&ferry, 2000).await;
    assert!(ran >= 3, "the push and two reconciles ran");

    // Four seconds and more have passed since worker's success: it would have reconciled.
    let worker = ferry.deployments("app=shop&service=worker").await;
    assert!(
        worker.iter().all(|d| d["event"] != "reconcile"),
        "{worker:#?}"
    );
    assert_eq!(ferry.runs_of("worker").len(), 1, "{worker:#?}");

    // The schedule in the status: web's next reconcile one interval after its last one;
    // worker has none.
    let status = ferry.get("/api/v1/status?app=shop").await;
    let row = |name: &str| -> Value {
        status["services"]
            .as_array()
            .and_then(|l| l.iter().find(|r| r["service"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {status:#}"))
    };
    assert_eq!(row("worker")["reconcile"], Value::Null, "{status:#}");
    let web = row("web");
    assert_eq!(web["reconcile"]["every"], "2s", "{status:#}");
    let newest = reconciles(&ferry).await.pop().expect("a reconcile");
    let ended = if newest["finished_at"].is_string() {
        ts_ms(&newest["finished_at"])
    } else {
        0
    };
    let clock = ts_ms(&newest["created_at"]).max(ended);
    let next = ts_ms(&web["reconcile"]["next_at"]);
    assert!(
        next >= clock + 2000,
        "next {next} vs the newest reconcile {newest:#}"
    );
    let out = ferry.cli(&["status", "shop"]).run().await;
    let text = out.success();
    assert!(text.contains("NEXT RECONCILE"), "{text}");
    let worker_row = text
        .lines()
        .find(|l| l.starts_with("shop") && l.contains("worker"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(worker_row.trim_end().ends_with('-'), "{worker_row}");

    // What a reconcile delivery is, in the inspector and the CLI.
    let delivery = ok[0]["delivery_id"].as_i64().expect("delivery id");
    let v = ferry.delivery(delivery).await;
    assert_eq!(v["source"], "manual", "{v:#}");
    assert_eq!(v["event"], "reconcile", "{v:#}");
    assert_eq!(v["request"]["method"], "reconcile", "{v:#}");
    assert!(
        v["request"]["made_by"]
            .as_str()
            .is_some_and(|s| s.contains("reconcile schedule") && s.contains("shop/web")),
        "{v:#}"
    );
    assert_eq!(v["parsed"]["event"]["kind"], "reconcile", "{v:#}");
    assert_eq!(v["parsed"]["event"]["service"], "web", "{v:#}");
    assert_eq!(
        v["verification"]["summary"],
        "nothing to verify: made by ferry itself (the reconcile schedule)",
        "{v:#}"
    );
    assert_eq!(v["duplicates"]["count"], 0, "stored once: {v:#}");
    assert_eq!(v["deployments"], serde_json::json!([id(&ok[0])]), "{v:#}");
    // The dashboard lists it with its cause, and its inspector says the same.
    let cookie = crate::dashboard::login(&ferry).await;
    let page = crate::dashboard::get(&ferry, "/deployments?app=shop&service=web", Some(&cookie))
        .await
        .text()
        .await
        .expect("page");
    assert!(
        page.contains("manual <span class=\"muted\">(reconcile)</span>"),
        "{page}"
    );
    assert!(page.contains("reconcile: re-run of deployment"), "{page}");
    let page = crate::dashboard::get(&ferry, &format!("/deliveries/{delivery}"), Some(&cookie))
        .await
        .text()
        .await
        .expect("page");
    assert!(
        page.contains("made by ferry itself (the reconcile schedule)"),
        "{page}"
    );
    let out = ferry
        .cli(&["deliveries", &delivery.to_string()])
        .run()
        .await;
    let text = out.success();
    assert!(text.contains("reconcile web"), "{text}");
    assert!(text.contains("made by ferry itself"), "{text}");
}

/// The last deployment failed: a reconcile runs the last *successful* commit again, not the
/// failed one.
#[tokio::test]
async fn after_a_failed_deployment_the_last_success_runs_again() {
    let ferry = start("2s").await;
    let good = push(&ferry, 1).await;
    assert_eq!(good["state"], "succeeded", "{good:#}");
    ferry.fail("web");
    let bad = push(&ferry, 2).await;
    assert_eq!(bad["state"], "failed", "{bad:#}");
    std::fs::remove_file(ferry.path("fail-web")).expect("stop failing");

    let d = &wait_succeeded(&ferry, 1, WAIT).await[0];
    assert!(id(d) > id(&bad), "{d:#}");
    assert_eq!(d["commit"], sha(1), "{d:#}");
    assert_eq!(
        d["reason"],
        format!("reconcile: re-run of deployment {}", id(&good)),
        "{d:#}"
    );
    assert_eq!(ferry.run_env(id(d))["FERRY_GIT_COMMIT"], sha(1));
    // The failed run reset the clock: the reconcile came at least 2s after it ended.
    assert!(
        ts_ms(&d["started_at"]) >= ts_ms(&bad["finished_at"]) + 2000,
        "{d:#} after {bad:#}"
    );
}

/// A reconcile that falls due while another deployment of the service runs never overlaps it:
/// a `skipped` deployment says which one runs, at most one per interval, and the schedule
/// goes on once the run has ended (here the runs are the reconciles themselves, each longer
/// than the interval).
#[tokio::test]
async fn a_running_deployment_is_never_overlapped_and_the_skip_is_recorded() {
    let ferry = start("2s").await;
    let first = push(&ferry, 1).await;
    assert_eq!(first["state"], "succeeded", "{first:#}");
    // From now on each run of web takes 3 s: longer than the interval.
    ferry.slow("web", "3");
    let skips = eventually(
        "a reconcile skipped while one runs, and one run after it",
        WAIT,
        async || {
            let all = reconciles(&ferry).await;
            let skips: Vec<Value> = all
                .iter()
                .filter(|d| d["state"] == "skipped")
                .cloned()
                .collect();
            let ran_after = skips.first().is_some_and(|s| {
                all.iter()
                    .any(|d| id(d) > id(s) && d["state"] == "succeeded")
            });
            if ran_after {
                Ok(skips)
            } else {
                Err(format!("{all:#?}"))
            }
        },
    )
    .await;
    let all = reconciles(&ferry).await;
    for s in &skips {
        let reason = s["reason"].as_str().unwrap_or_default();
        let blocker: i64 = reason
            .strip_prefix("reconcile: deployment ")
            .and_then(|r| r.strip_suffix(" is running"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("skip reason {reason:?}"));
        let running = all
            .iter()
            .find(|d| id(d) == blocker)
            .unwrap_or_else(|| panic!("{blocker} is not a reconcile of web: {all:#?}"));
        // It did run while the skip was recorded.
        let at = ts_ms(&s["created_at"]);
        assert!(
            ts_ms(&running["started_at"]) <= at && at <= ts_ms(&running["finished_at"]),
            "{s:#} while {running:#}"
        );
        assert!(
            ferry.runs().iter().all(|r| r.deployment != id(s)),
            "a skip runs nothing"
        );
    }
    // At most one skip (or reconcile) per interval.
    let planned: Vec<i128> = all.iter().map(|d| ts_ms(&d["created_at"])).collect();
    for pair in planned.windows(2) {
        assert!(pair[1] - pair[0] >= 2000, "reconciles {all:#?}");
    }
    assert_runs_never_overlap(&ferry, 2000).await;
}

/// A push while a reconcile runs waits for it, runs next, and resets the clock: the following
/// reconciles re-run the pushed commit, one interval after it ended.
#[tokio::test]
async fn a_push_during_a_reconcile_runs_after_it_and_is_what_is_reconciled_next() {
    let ferry = start("2s").await;
    assert_eq!(push(&ferry, 1).await["state"], "succeeded");
    ferry.hold("web");
    let held = eventually("a reconcile to run (held)", WAIT, async || {
        let all = reconciles(&ferry).await;
        match all.iter().find(|d| d["state"] == "running") {
            Some(d) => Ok(d.clone()),
            None => Err(format!("{all:#?}")),
        }
    })
    .await;
    ferry.wait_run(id(&held)).await;
    let delivery = ferry.push("master", &sha(2), &commit_time(2)).await;
    let pushed = ferry.planned_deployment(delivery, "web").await;
    assert_eq!(
        pushed["state"], "queued",
        "behind the reconcile: {pushed:#}"
    );
    ferry.release("web");
    let pushed = ferry.wait_state(id(&pushed), "succeeded").await;
    let held = ferry.deployment(id(&held)).await;
    assert_eq!(held["state"], "succeeded", "{held:#}");
    assert!(ts_ms(&pushed["started_at"]) >= ts_ms(&held["finished_at"]));
    assert_eq!(ferry.run_env(id(&pushed))["FERRY_GIT_COMMIT"], sha(2));

    let next = eventually("a reconcile of the pushed commit", WAIT, async || {
        let all = reconciles(&ferry).await;
        match all
            .iter()
            .find(|d| id(d) > id(&pushed) && d["state"] == "succeeded")
        {
            Some(d) => Ok(d.clone()),
            None => Err(format!("{all:#?}")),
        }
    })
    .await;
    assert_eq!(next["commit"], sha(2), "{next:#}");
    assert_eq!(
        next["reason"],
        format!("reconcile: re-run of deployment {}", id(&pushed)),
        "{next:#}"
    );
    assert_eq!(ferry.run_env(id(&next))["FERRY_GIT_COMMIT"], sha(2));
    assert!(ts_ms(&next["started_at"]) >= ts_ms(&pushed["finished_at"]) + 2000);
    assert_runs_never_overlap(&ferry, 2000).await;
}

/// The schedule lives in the store: a ferry stopped after a reconcile and started again before
/// the next is due neither reconciles at start nor starts the interval over; the next one
/// comes one interval after the last run ended.
#[tokio::test]
async fn after_a_restart_the_schedule_continues_from_the_store() {
    let mut ferry = start("6s").await;
    assert_eq!(push(&ferry, 1).await["state"], "succeeded");
    let last = wait_succeeded(&ferry, 1, WAIT).await[0].clone();
    let ended = ts_ms(&last["finished_at"]);
    ferry.sigterm();
    ferry.wait_exit(WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i128;
    let launched = Instant::now();
    ferry.restart().await;
    let next = eventually("the next reconcile after the restart", WAIT, async || {
        let all = reconciles(&ferry).await;
        match all
            .iter()
            .find(|d| id(d) > id(&last) && !d["started_at"].is_null())
        {
            Some(d) => Ok(d.clone()),
            None => Err(format!("{all:#?}")),
        }
    })
    .await;
    let started = ts_ms(&next["started_at"]);
    assert!(
        started >= ended + 6000,
        "not at start: {} ms after the last run ended",
        started - ended
    );
    // Counted from the stored end, not from the restart (which came 3 s later).
    assert!(
        started < restarted_at + 6000,
        "{} ms after the restart (launch took {:?}): the interval started over",
        started - restarted_at,
        launched.elapsed()
    );
    assert_eq!(next["commit"], sha(1), "{next:#}");
    assert_eq!(
        next["reason"],
        format!("reconcile: re-run of deployment {}", id(&last)),
        "{next:#}"
    );
}

/// A service that never deployed successfully has nothing to reconcile: no delivery and no
/// deployment, however long ferry waits.
#[tokio::test]
async fn a_service_that_never_succeeded_is_not_reconciled() {
    let ferry = start("1s").await;
    ferry.fail("web");
    assert_eq!(push(&ferry, 1).await["state"], "failed");
    // Three intervals: a reconcile would have been stored by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ferry.settled("shop").await;
    let deliveries = ferry.deliveries("app=shop").await;
    assert_eq!(deliveries.len(), 1, "only the push: {deliveries:#?}");
    assert!(reconciles(&ferry).await.is_empty());
}

/// `ferry check` names the line of a `reconcile` that is too short or not a duration.
#[tokio::test]
async fn check_names_the_line_of_a_bad_reconcile() {
    let text = CONFIG.replace("{every}", "500ms");
    let config = ConfigFile::new(&text);
    let out = config.check().await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    let line = line_of(&text, "reconcile =", 0);
    let want = format!(
        "{}:{line}: apps.shop.services.web.reconcile: 500ms is too short: at least 1s",
        config.path_str()
    );
    assert!(out.stderr.contains(&want), "want {want:?} in {out:#?}");
}

/// With a GitOps checkout, a reconcile is drift correction: what was edited or added in the
/// checkout on the host since the deploy is put back to exactly the last successful commit,
/// and the command runs there again (a real `git daemon`, real commits).
#[tokio::test]
#[ignore = "needs git with `git daemon`: cargo test -- --include-ignored"]
async fn a_reconcile_puts_a_drifted_checkout_back_to_the_last_successful_commit() {
    use crate::git_server::{GitDaemon, Repos};
    if !has_git_daemon() {
        return unavailable("no `git daemon` (apt-get install git)");
    }
    let repos = Repos::new();
    let scratch = repos.create("site");
    let daemon = GitDaemon::start(repos.root());
    let c1 = scratch.commit_and_push("first", &[("index.html", Some("v1"))]);
    let config = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.shop]
token = "secret-token-1"

[apps.shop.verify]
github = "It's a Secret to Everybody"

[apps.shop.services.site]
git = { repo = "acme/site", branch = "main" }
command = ["{dir}/record.sh"]
timeout = "60s"
checkout = { url = "{url}", path = "{dir}/site" }
reconcile = "2s"
"#
    .replace("{url}", &daemon.url("site"));
    let record = "#!/bin/sh\nset -eu\necho \"$FERRY_DEPLOYMENT_ID $FERRY_EVENT $(git rev-parse HEAD) $(cat index.html) $(ls | tr '\\n' ,)\" >> {dir}/checkouts.log\n";
    let ferry = Ferry::with_config(&config)
        .script("record.sh", record)
        .start()
        .await;
    let delivery = ferry
        .signed_push(&push_value("acme/site", "main", &c1, &commit_time(1)))
        .await;
    let pushed = only(&ferry.settle(delivery).await, "site").clone();
    assert_eq!(pushed["state"], "succeeded", "{pushed:#}");

    // Drift on the host: an edit and a stray file.
    std::fs::write(ferry.path("site/index.html"), "edited on the host").expect("edit");
    std::fs::write(ferry.path("site/stray.txt"), "x").expect("stray");
    let log = eventually("a reconcile of the checkout", WAIT, async || {
        let text = std::fs::read_to_string(ferry.path("checkouts.log")).unwrap_or_default();
        if text.lines().any(|l| l.contains(" reconcile ")) {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    let line = log
        .lines()
        .find(|l| l.contains(" reconcile "))
        .expect("a reconcile line");
    assert!(
        line.ends_with(&format!("reconcile {c1} v1 index.html,")),
        "the command saw the commit's tree again: {line:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ferry.path("site/index.html")).expect("index"),
        "v1"
    );
    assert!(!ferry.path("site/stray.txt").exists());
}

/// Whether git and its `git daemon` are installed.
fn has_git_daemon() -> bool {
    std::process::Command::new("git")
        .arg("--exec-path")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .is_some_and(|dir| std::path::Path::new(&dir).join("git-daemon").is_file())
}
