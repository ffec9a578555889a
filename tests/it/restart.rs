//! Crashes and shutdowns: nothing acknowledged is lost to `kill -9`, deployments cut off are
//! marked `interrupted` and retried once, SIGTERM drains within the grace period.

use std::time::Duration;

use crate::support::*;

/// App `batch` with one service `job` whose script hangs on its first run (or on every run when
/// `{dir}/always-hang` exists) and records each run in `{dir}/job-runs.log`.
const HANGING: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"
RETRY

[apps.batch]
token = "batch-token-1234"

[apps.batch.services.job]
command = ["{dir}/job.sh"]
timeout = "10m"
"#;

const JOB_SH: &str = r#"#!/bin/sh
echo "$FERRY_DEPLOYMENT_ID" >> "{dir}/job-runs.log"
if [ -e "{dir}/always-hang" ] || [ ! -e "{dir}/hung-once" ]; then
  touch "{dir}/hung-once"
  echo "hanging"
  while true; do sleep 0.1; done
fi
echo "done"
"#;

pub(crate) fn hanging(retry: Option<u32>) -> FerryBuilder {
    let retry = retry
        .map(|n| format!("retry_interrupted = {n}"))
        .unwrap_or_default();
    Ferry::with_config(&HANGING.replace("RETRY", &retry)).script("job.sh", JOB_SH)
}

fn job_runs(ferry: &Ferry) -> Vec<i64> {
    std::fs::read_to_string(ferry.path("job-runs.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().expect("deployment id"))
        .collect()
}

/// Starts a `job` deployment and waits until its command is running.
async fn start_job(ferry: &Ferry) -> i64 {
    let id = ferry
        .hook("batch")
        .token("batch-token-1234")
        .send()
        .await
        .accepted();
    let dep = ferry.planned_deployment(id, "job").await["id"]
        .as_i64()
        .unwrap();
    ferry.wait_state(dep, "running").await;
    eventually("the job's command to run", WAIT, async || {
        if job_runs(ferry).contains(&dep) {
            Ok(())
        } else {
            Err(format!("{:?}", job_runs(ferry)))
        }
    })
    .await;
    dep
}

/// `kill -9` and start again: the new server itself stops what the dead one left running.
async fn crash_and_restart(ferry: &mut Ferry) {
    ferry.kill9();
    ferry.restart().await;
}

#[tokio::test]
async fn kill_9_right_after_the_answer_loses_no_delivery() {
    loses_no_acknowledged_delivery(Ferry::shop().start().await).await;
}

/// `kill -9` of `ferry` ([`SHOP`]) right after it answered: every delivery it acknowledged is
/// there after the restart, planned, the push deployed, and what it deduplicated still is.
/// (Also run on PostgreSQL: `postgres.rs`.)
pub(crate) async fn loses_no_acknowledged_delivery(mut ferry: Ferry) {
    let mut generic = Vec::new();
    for i in 0..10 {
        let key = format!("durable-{i}");
        let id = ferry
            .hook("shop")
            .query("services=worker")
            .header("Idempotency-Key", &key)
            .send()
            .await
            .accepted();
        generic.push((key, id));
    }
    let push = ferry.push("master", &sha(9), &commit_time(9)).await;
    ferry.kill9();
    ferry.kill_orphans();
    ferry.restart().await;

    for (key, id) in &generic {
        let d = ferry.delivery(*id).await;
        assert_eq!(d["source_delivery_id"], key.as_str(), "{d:#}");
    }
    let d = ferry.delivery(push).await;
    assert_eq!(d["event"], "push");

    // Every acknowledged delivery is planned, and the push gets deployed.
    for (_, id) in &generic {
        ferry.wait_planned(*id).await;
    }
    ferry.wait_planned(push).await;
    let sha9 = sha(9);
    ferry
        .wait_deployments(
            "app=shop&service=web",
            "the pushed commit to be deployed",
            |l| {
                l.iter()
                    .any(|d| d["state"] == "succeeded" && d["commit"] == sha9.as_str())
            },
        )
        .await;
    ferry.settled("shop").await;
    assert_eq!(ferry.deliveries("app=shop").await.len(), 11);
    assert!(
        ferry
            .runs_of("web")
            .iter()
            .any(|r| r.commit.as_deref() == Some(sha9.as_str())),
        "{:?}",
        ferry.runs()
    );

    // What was deduplicated before the crash still is.
    let again = ferry
        .hook("shop")
        .query("services=worker")
        .header("Idempotency-Key", &generic[3].0)
        .send()
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["status"], "duplicate");
    assert_eq!(again.delivery_id(), generic[3].1);
}

#[tokio::test]
async fn kill_9_during_a_deployment_marks_it_interrupted_and_retries_it_once() {
    interrupted_and_retried_once(hanging(None).start().await).await;
}

/// `kill -9` of `ferry` ([`hanging`]) while its `job` runs: after the restart that run is
/// `interrupted` and retried once, as a new deployment that says what it retries.
/// (Also run on PostgreSQL: `postgres.rs`.)
pub(crate) async fn interrupted_and_retried_once(mut ferry: Ferry) {
    let first = start_job(&ferry).await;
    crash_and_restart(&mut ferry).await;

    let interrupted = ferry.wait_state(first, "interrupted").await;
    assert!(!interrupted["finished_at"].is_null(), "{interrupted:#}");
    let list = ferry
        .wait_deployments("app=batch&service=job", "the retry to succeed", |l| {
            l.iter()
                .any(|d| d["retry_of"] == first && d["state"] == "succeeded")
        })
        .await;
    let retry = list
        .iter()
        .find(|d| d["retry_of"] == first)
        .expect("the retry");
    assert_eq!(retry["attempt"], 2, "{retry:#}");
    assert!(
        retry["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&first.to_string())),
        "{retry:#}"
    );
    let retry_id = retry["id"].as_i64().unwrap();
    assert_ne!(retry_id, first, "a retry is a new deployment");

    ferry.settled("batch").await;
    assert_eq!(
        ferry.deployments("app=batch").await.len(),
        2,
        "retried once"
    );
    assert_eq!(job_runs(&ferry), vec![first, retry_id]);
}

/// `job.sh` as in [`JOB_SH`], but its hanging run also leaves a process of its own behind in
/// its process group (`leftover.sh`), which outlives the script itself.
const JOB_WITH_LEFTOVER_SH: &str = r#"#!/bin/sh
echo "$FERRY_DEPLOYMENT_ID" >> "{dir}/job-runs.log"
if [ ! -e "{dir}/hung-once" ]; then
  touch "{dir}/hung-once"
  "{dir}/leftover.sh" &
  echo "hanging"
  while true; do sleep 0.1; done
fi
echo "done"
"#;

const LEFTOVER_SH: &str = "#!/bin/sh\nwhile true; do sleep 0.1; done\n";

/// A deploy command dies with its ferry (`kill -9` included); what it started in its process
/// group outlives it, and the next start kills that before the deployment's retry runs.
#[tokio::test]
async fn a_deploy_command_that_outlived_a_crash_is_killed_before_its_retry_runs() {
    let mut ferry = hanging(None)
        .script("job.sh", JOB_WITH_LEFTOVER_SH)
        .script("leftover.sh", LEFTOVER_SH)
        .start()
        .await;
    let first = start_job(&ferry).await;
    // Past its `echo`: a write after ferry died would end it by SIGPIPE, not by ferry.
    eventually("the job to hang", WAIT, async || {
        let log = ferry.log(first).await;
        if log.contains("hanging") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    let script = ferry.path("job.sh").display().to_string();
    let leftover = ferry.path("leftover.sh").display().to_string();
    assert!(!procs_matching(&script).is_empty(), "the job runs");
    let orphans = procs_matching(&leftover);
    assert!(!orphans.is_empty(), "its leftover runs");
    ferry.kill9();
    // The command itself dies with ferry (PR_SET_PDEATHSIG) …
    eventually(
        "the deploy command to die with ferry",
        WAIT,
        async || match procs_matching(&script).as_slice() {
            [] => Ok(()),
            alive => Err(format!("{alive:?}")),
        },
    )
    .await;
    // … what it left in its process group does not.
    assert!(
        orphans
            .iter()
            .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists()),
        "the leftover outlives its command"
    );

    ferry.restart().await;
    ferry.wait_state(first, "interrupted").await;
    for pid in &orphans {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or at most a zombie waiting for init to reap it.
        assert!(
            stat.is_empty()
                || stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z'),
            "process {pid} of the interrupted deployment still runs: {stat}"
        );
    }
    assert!(
        ferry
            .stderr_text()
            .contains("killed a deploy command left running by a previous ferry"),
        "{}",
        ferry.stderr_text()
    );
    let list = ferry
        .wait_deployments("app=batch&service=job", "the retry to succeed", |l| {
            l.iter()
                .any(|d| d["retry_of"] == first && d["state"] == "succeeded")
        })
        .await;
    assert_eq!(list.len(), 2, "{list:#?}");
}

#[tokio::test]
async fn an_interrupted_retry_is_not_retried_again() {
    let mut ferry = hanging(None).start().await;
    std::fs::write(ferry.path("always-hang"), "").unwrap();
    let first = start_job(&ferry).await;
    crash_and_restart(&mut ferry).await;

    ferry.wait_state(first, "interrupted").await;
    let list = ferry
        .wait_deployments("app=batch&service=job", "the retry to run", |l| {
            l.iter()
                .any(|d| d["retry_of"] == first && d["state"] == "running")
        })
        .await;
    let retry = list.iter().find(|d| d["retry_of"] == first).unwrap()["id"]
        .as_i64()
        .unwrap();
    eventually("the retry's command to run", WAIT, async || {
        if job_runs(&ferry).contains(&retry) {
            Ok(())
        } else {
            Err(format!("{:?}", job_runs(&ferry)))
        }
    })
    .await;
    crash_and_restart(&mut ferry).await;

    let again = ferry.wait_state(retry, "interrupted").await;
    assert_eq!(again["attempt"], 2);
    ferry.settled("batch").await;
    let all = ferry.deployments("app=batch").await;
    assert_eq!(all.len(), 2, "no third attempt: {all:#?}");
    assert_eq!(job_runs(&ferry), vec![first, retry]);
}

#[tokio::test]
async fn retry_interrupted_0_only_marks_the_deployment_interrupted() {
    let mut ferry = hanging(Some(0)).start().await;
    let first = start_job(&ferry).await;
    crash_and_restart(&mut ferry).await;

    ferry.wait_state(first, "interrupted").await;
    ferry.settled("batch").await;
    let all = ferry.deployments("app=batch").await;
    assert_eq!(all.len(), 1, "no retry: {all:#?}");
    assert_eq!(job_runs(&ferry), vec![first]);
}

/// Whether a fresh connection to the hook is refused or gets no 2xx.
async fn hook_refused(ferry: &Ferry) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match client
        .post(ferry.url(&format!("/hooks/shop/{HOOK_TOKEN}?services=worker")))
        .send()
        .await
    {
        Err(_) => Ok(()),
        Ok(r) if !r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("still accepted: {}", r.status())),
    }
}

#[tokio::test]
async fn sigterm_lets_the_running_deployment_finish_and_exits_0() {
    let mut ferry = Ferry::shop().start().await;
    ferry.hold("web");
    let id = ferry
        .hook("shop")
        .query("services=web")
        .send()
        .await
        .accepted();
    let dep = ferry.planned_deployment(id, "web").await["id"]
        .as_i64()
        .unwrap();
    ferry.wait_state(dep, "running").await;
    ferry.wait_run(dep).await;

    ferry.sigterm();
    eventually("ferry to stop accepting hooks", WAIT, async || {
        hook_refused(&ferry).await
    })
    .await;
    assert!(
        ferry.is_running(),
        "ferry waits for the running deployment before exiting:\n{}",
        ferry.stderr_text()
    );

    ferry.release("web");
    let status = ferry.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", ferry.stderr_text());

    ferry.restart().await;
    let d = ferry.deployment(dep).await;
    assert_eq!(d["state"], "succeeded", "{d:#}");
    assert_eq!(ferry.runs_of("web").len(), 1);
}

#[tokio::test]
async fn sigterm_after_the_grace_period_interrupts_the_running_deployment() {
    let config = SHOP.replace(
        "admin_token = \"${FERRY_ADMIN_TOKEN}\"",
        "admin_token = \"${FERRY_ADMIN_TOKEN}\"\nshutdown_grace = \"1s\"\nretry_interrupted = 0",
    );
    let mut ferry = Ferry::with_config(&config).start().await;
    ferry.hold("web");
    let id = ferry
        .hook("shop")
        .query("services=web")
        .send()
        .await
        .accepted();
    let dep = ferry.planned_deployment(id, "web").await["id"]
        .as_i64()
        .unwrap();
    ferry.wait_state(dep, "running").await;
    ferry.wait_run(dep).await;
    let script = format!("{}/deploy.sh", ferry.dir_str());
    assert!(
        !procs_matching(&script).is_empty(),
        "the deploy command runs"
    );

    ferry.sigterm();
    ferry.wait_exit(WAIT).await;
    eventually("the deploy command to be killed", WAIT, async || {
        let left = procs_matching(&script);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;

    ferry.restart().await;
    let d = ferry.deployment(dep).await;
    assert_eq!(d["state"], "interrupted", "{d:#}");
}
