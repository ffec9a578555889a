//! Several ferry replicas on one PostgreSQL database (issue 13): deliveries taken by any of
//! them are stored once and planned once, a service never deploys on two replicas at once, a
//! replica killed mid-deploy has its run taken over after its lease, and `runs_on` pins a
//! service to its replica. Each test starts a throwaway PostgreSQL cluster's fresh database
//! (`tests/common/postgres.rs`) and real `ferry serve` processes sharing it.
//!
//! The deploy script every replica runs ([`REPLICA_SH`]) writes, in a directory all replicas
//! share, which replica ran which deployment, and notes an overlap when it starts while a
//! live process of another run of the same service still holds the service's lock file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::postgres;
use crate::support::*;

/// The deploy command: `lock-SERVICE` holds the pid of the run in progress; a run that finds a
/// live pid there records an overlap. `hold-SERVICE` holds a run until it is removed.
const REPLICA_SH: &str = r#"#!/bin/sh
set -u
d="{shared}"
lock="$d/lock-$FERRY_SERVICE"
if [ -e "$lock" ] && kill -0 "$(cat "$lock")" 2>/dev/null; then
  echo "$FERRY_DEPLOYMENT_ID overlaps $(cat "$lock")" >> "$d/overlaps"
fi
echo $$ > "$lock"
echo "$FERRY_DEPLOYMENT_ID $FERRY_SERVICE $NODE $$" >> "$d/runs"
while [ -e "$d/hold-$FERRY_SERVICE" ]; do sleep 0.05; done
sleep 0.05
rm -f "$lock"
echo "$FERRY_DEPLOYMENT_ID done" >> "$d/ends"
"#;

/// A replica's config: app `shop` with `worker` (any replica) and `pinned` (only node `b`),
/// both deployed by the shared script; a short lease so a dead replica is noticed quickly.
const REPLICA: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"
node = "${NODE}"
lease = "2s"

[apps.shop]
token = "secret-token-1"

[apps.shop.services.worker]
command = ["{shared}/replica.sh"]
timeout = "60s"

[apps.shop.services.pinned]
command = ["{shared}/replica.sh"]
timeout = "60s"
runs_on = ["b"]
"#;

/// What the replicas of one test share: the database and the script's directory.
struct Cluster {
    url: String,
    shared: tempfile::TempDir,
}

impl Cluster {
    /// `None` (the test skips) when PostgreSQL cannot run here and `CI` is unset.
    fn new() -> Option<Cluster> {
        let url = match postgres::database() {
            Ok(url) => url,
            Err(why) => {
                unavailable(&format!("PostgreSQL: {why}"));
                return None;
            }
        };
        let shared = tempfile::tempdir().expect("shared dir");
        let script = shared.path().join("replica.sh");
        std::fs::write(
            &script,
            REPLICA_SH.replace("{shared}", &self_path(shared.path())),
        )
        .expect("script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Some(Cluster { url, shared })
    }

    async fn replica(&self, node: &str) -> Ferry {
        Ferry::with_config(&REPLICA.replace("{shared}", &self_path(self.shared.path())))
            .env("FERRY_DATABASE", &self.url)
            .env("NODE", node)
            .start()
            .await
    }

    fn path(&self, name: &str) -> PathBuf {
        self.shared.path().join(name)
    }

    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// (deployment id, node) of every run started, in order.
    fn runs(&self) -> Vec<(i64, String)> {
        self.lines("runs")
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[0].parse().expect("id"), f[2].to_string())
            })
            .collect()
    }

    fn assert_no_overlap(&self) {
        let overlaps = self.lines("overlaps");
        assert!(
            overlaps.is_empty(),
            "runs of one service overlapped: {overlaps:?}"
        );
    }
}

fn self_path(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// A redeploy of `service` through `ferry`'s hook, answered 202: the delivery id.
async fn redeploy(ferry: &Ferry, service: &str) -> i64 {
    ferry
        .hook("shop")
        .query(&format!("services={service}"))
        .send()
        .await
        .accepted()
}

/// Deliveries sent to either of two replicas are stored once and planned once, and every
/// deployment runs on one of them, never two runs of a service at once; both replicas serve
/// the same lists.
#[tokio::test]
async fn deliveries_to_two_replicas_are_stored_once_and_never_deploy_twice_at_once() {
    spread_over(&["a", "b"]).await;
}

/// The same with three replicas.
#[tokio::test]
async fn deliveries_to_three_replicas_are_stored_once_and_never_deploy_twice_at_once() {
    spread_over(&["a", "b", "c"]).await;
}

/// Sends 30 redeploys of `worker` round-robin to replicas named `nodes` and checks the
/// outcome through their APIs and the script's notes.
async fn spread_over(nodes: &[&str]) {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let mut replicas = Vec::new();
    for node in nodes {
        replicas.push(cluster.replica(node).await);
    }
    let (a, b) = (&replicas[0], &replicas[replicas.len() - 1]);
    let mut sent = Vec::new();
    for i in 0..30 {
        sent.push(redeploy(&replicas[i % replicas.len()], "worker").await);
    }
    let mut ids = sent.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), sent.len(), "every delivery has its own id");

    // Every delivery planned exactly once: one `worker` deployment each (run, superseded or
    // skipped), and the newest one succeeds.
    let all = b
        .wait_deployments(
            "service=worker",
            "every delivery planned and settled",
            |list| list.len() >= sent.len() && list.iter().all(|d| is_final(&d["state"])),
        )
        .await;
    for id in &sent {
        let of: Vec<&Value> = all
            .iter()
            .filter(|d| d["delivery_id"].as_i64() == Some(*id))
            .collect();
        assert_eq!(of.len(), 1, "delivery {id} planned once: {of:#?}");
    }
    let newest = all
        .iter()
        .max_by_key(|d| d["id"].as_i64())
        .expect("a deployment");
    assert_eq!(newest["state"], "succeeded", "{newest:#}");

    // The first and the last replica show the same deliveries.
    let from_a: Vec<i64> = a
        .deliveries("")
        .await
        .iter()
        .filter_map(|d| d["id"].as_i64())
        .collect();
    let from_b: Vec<i64> = b
        .deliveries("")
        .await
        .iter()
        .filter_map(|d| d["id"].as_i64())
        .collect();
    assert_eq!(from_a, from_b);
    assert_eq!(from_a.len(), sent.len());

    // Each run ran once, on the replica the store names.
    let runs = cluster.runs();
    for (id, node) in &runs {
        let d = a.deployment(*id).await;
        assert_eq!(d["node"], node.as_str(), "{d:#}");
    }
    let mut run_ids: Vec<i64> = runs.iter().map(|(id, _)| *id).collect();
    run_ids.sort();
    run_ids.dedup();
    assert_eq!(
        run_ids.len(),
        runs.len(),
        "no deployment ran twice: {runs:?}"
    );
    cluster.assert_no_overlap();
}

/// A replica killed with SIGKILL while it deploys: its deploy command dies with it, the other
/// replica records the run `interrupted` once the lease has run out, and runs the retry; the
/// two runs never overlap.
#[tokio::test]
async fn a_replica_killed_mid_deploy_is_taken_over_after_its_lease() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let a = cluster.replica("a").await;
    let b = cluster.replica("b").await;
    std::fs::write(cluster.path("hold-worker"), "").expect("hold");
    // The run goes to whichever replica claims it first: that one is killed.
    let delivery = redeploy(&a, "worker").await;
    let first = eventually("the first run to start", WAIT, async || {
        match cluster.runs().first() {
            Some(run) => Ok(run.clone()),
            None => Err("no run yet".to_string()),
        }
    })
    .await;
    let (first_id, first_node) = first;
    let (mut owner, other) = if first_node == "a" { (a, b) } else { (b, a) };
    let pid: i32 = cluster.lines("runs")[0]
        .split(' ')
        .nth(3)
        .and_then(|p| p.parse().ok())
        .expect("pid");
    owner.kill9();
    // The command dies with its replica (PR_SET_PDEATHSIG), before any lease runs out.
    eventually(
        "the deploy command to die with its replica",
        WAIT,
        async || {
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
                Ok(())
            } else {
                Err(format!("pid {pid} still alive"))
            }
        },
    )
    .await;
    std::fs::remove_file(cluster.path("hold-worker")).expect("release");
    let interrupted = other.wait_state(first_id, "interrupted").await;
    assert_eq!(interrupted["node"], first_node.as_str());
    let retry = eventually("the retry to succeed", WAIT, async || {
        let list = other.deployments("service=worker").await;
        match list
            .iter()
            .find(|d| d["retry_of"].as_i64() == Some(first_id))
        {
            Some(d) if d["state"] == "succeeded" => Ok(d.clone()),
            other => Err(format!("{other:#?}")),
        }
    })
    .await;
    assert_ne!(retry["node"], first_node.as_str(), "{retry:#}");
    assert_eq!(retry["delivery_id"].as_i64(), Some(delivery));
    cluster.assert_no_overlap();
    let runs = cluster.runs();
    assert_eq!(runs.len(), 2, "the first run and its retry: {runs:?}");
}

/// `runs_on = ["b"]`: a delivery taken by replica `a` deploys on `b`.
#[tokio::test]
async fn runs_on_pins_a_service_to_its_replica() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let a = cluster.replica("a").await;
    let b = cluster.replica("b").await;
    for _ in 0..3 {
        let delivery = redeploy(&a, "pinned").await;
        let d = eventually("the pinned deployment to succeed", WAIT, async || {
            let list = a.deployments("service=pinned").await;
            match list
                .iter()
                .find(|d| d["delivery_id"].as_i64() == Some(delivery))
            {
                Some(d) if d["state"] == "succeeded" => Ok(d.clone()),
                other => Err(format!("{other:#?}")),
            }
        })
        .await;
        assert_eq!(d["node"], "b", "{d:#}");
    }
    assert!(cluster.runs().iter().all(|(_, node)| node == "b"));
    drop(b);
}

/// Hook deliveries hit both replicas at once while one of them is killed with SIGKILL: every
/// delivery answered 202 is stored exactly once (the dead replica's ones included), and the
/// survivor plans them all.
#[tokio::test]
async fn no_acknowledged_delivery_is_lost_when_a_replica_dies_under_load() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let mut a = cluster.replica("a").await;
    let b = cluster.replica("b").await;
    // Each request has its own key (stored as the delivery's `source_delivery_id`).
    let send = |ferry: &Ferry, n: usize| {
        let req = ferry
            .http()
            .post(ferry.url(&format!("/hooks/shop/{HOOK_TOKEN}?services=worker")))
            .header("Idempotency-Key", format!("load-{n}"));
        async move { req.send().await.ok().map(|r| r.status().as_u16()) }
    };
    let mut tasks = Vec::new();
    for n in 0..200 {
        let ferry = if n % 2 == 0 { &a } else { &b };
        tasks.push((n, tokio::spawn(send(ferry, n))));
        if n == 100 {
            a.kill9();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut acknowledged = Vec::new();
    for (n, t) in tasks {
        if t.await.expect("join") == Some(202) {
            acknowledged.push(format!("load-{n}"));
        }
    }
    assert!(
        acknowledged.len() >= 100,
        "only {} acknowledged",
        acknowledged.len()
    );
    // Every acknowledged delivery is stored, once, whichever replica took it.
    let stored = b.deliveries("").await;
    for key in &acknowledged {
        let copies = stored
            .iter()
            .filter(|d| d["source_delivery_id"] == key.as_str())
            .count();
        assert_eq!(copies, 1, "{key}: stored {copies} times");
    }
    // And stays deduplicated across replicas: the dead replica's ones resent to the survivor
    // are duplicates.
    let took_by_a: Vec<&String> = acknowledged
        .iter()
        .filter(|k| {
            k.trim_start_matches("load-")
                .parse::<usize>()
                .is_ok_and(|n| n % 2 == 0)
        })
        .take(5)
        .collect();
    assert!(
        !took_by_a.is_empty(),
        "replica a acknowledged nothing before it died"
    );
    for key in took_by_a {
        let again = b
            .hook("shop")
            .query("services=worker")
            .header("Idempotency-Key", key)
            .send()
            .await;
        assert_eq!(again.status, 200, "{key}: {}", again.text);
        assert_eq!(again.json()["status"], "duplicate", "{key}");
    }
    // The survivor plans every stored delivery (the dead one's unplanned ones too).
    eventually("every delivery planned", WAIT, async || {
        let list = b.deliveries("").await;
        let waiting = list.iter().filter(|d| d["status"] == "received").count();
        if waiting == 0 {
            Ok(())
        } else {
            Err(format!("{waiting} unplanned"))
        }
    })
    .await;
    cluster.assert_no_overlap();
}

/// Live views across replicas: a viewer of `GET /api/v1/events` on either replica sees what
/// the other one committed — the delivery replica `a` took, and the states of the deployment
/// replica `b` ran (`runs_on = ["b"]`).
#[tokio::test]
async fn each_replicas_live_events_show_the_others_changes() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let a = cluster.replica("a").await;
    let b = cluster.replica("b").await;
    let mut on_a = crate::live::Stream::open(&a, "/api/v1/events", &[]).await;
    let mut on_b = crate::live::Stream::open(&b, "/api/v1/events", &[]).await;
    let delivery = redeploy(&a, "pinned").await;
    let seen = on_b
        .until(|e| e.event == "delivery" && e.json()["id"].as_i64() == Some(delivery))
        .await;
    assert!(!seen.is_empty());
    let ran = on_a
        .until(|e| {
            let d = e.json();
            e.event == "deployment"
                && d["delivery_id"].as_i64() == Some(delivery)
                && d["state"] == "succeeded"
        })
        .await;
    let last = ran.last().expect("the deployment's end").json();
    assert_eq!(last["node"], "b", "{last:#}");
}

/// A replica that restarts after a crash recovers only what it ran itself: a deployment
/// another replica is running stays `running` there, and ends `succeeded`.
#[tokio::test]
async fn a_restarting_replica_leaves_the_others_runs_alone() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let a = cluster.replica("a").await;
    let mut b = cluster.replica("b").await;
    std::fs::write(cluster.path("hold-pinned"), "").expect("hold");
    // `pinned` runs on `b` only: `a` takes the delivery, and is killed while `b` runs it.
    let delivery = redeploy(&a, "pinned").await;
    let running = eventually("the pinned run to start on b", WAIT, async || {
        let list = b.deployments("service=pinned").await;
        match list
            .iter()
            .find(|d| d["delivery_id"].as_i64() == Some(delivery))
        {
            Some(d) if d["state"] == "running" => Ok(d.clone()),
            other => Err(format!("{other:#?}")),
        }
    })
    .await;
    let id = running["id"].as_i64().expect("id");
    drop(a); // SIGKILL
    let a = cluster.replica("a").await;
    // `a`'s recovery has run (it listens only after it): the run on `b` is untouched.
    assert_eq!(a.deployment(id).await["state"], "running");
    std::fs::remove_file(cluster.path("hold-pinned")).expect("release");
    let done = b.wait_state(id, "succeeded").await;
    assert_eq!(done["node"], "b");
    assert_eq!(cluster.runs().len(), 1, "{:?}", cluster.runs());
    b.kill9();
}

/// A database that cannot be reached: ferry listens in degraded mode, answers every hook and
/// `/readyz` 503 (never 2xx: nothing is stored), logs why the connection failed — and never the
/// URL's password.
#[tokio::test]
async fn an_unreachable_database_is_a_503_with_the_reason_and_no_password() {
    let url = format!(
        "postgres://ferry:hunter2-secret@127.0.0.1:{}/ferry",
        free_port()
    );
    let ferry = Ferry::shop().env("FERRY_DATABASE", &url).start().await;
    let r = ferry.hook("shop").send().await;
    assert_eq!(r.status, 503, "{}", r.text);
    let ready = ferry
        .http()
        .get(ferry.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let log = ferry.stderr_text();
    assert!(
        log.contains("server.database") && log.contains("Connection refused"),
        "{log}"
    );
    assert!(!log.contains("hunter2"), "the password was logged:\n{log}");
    assert!(!r.text.contains("hunter2"), "{}", r.text);
}

/// A service pinned to replica `a` whose command prints lines on both streams, holds while
/// `hold-chatty` exists (its first lines already out), then prints a few hundred more.
const CHATTY: &str = r#"
[apps.shop.services.chatty]
command = ["{shared}/chatty.sh"]
timeout = "60s"
runs_on = ["a"]
"#;

const CHATTY_SH: &str = r#"#!/bin/sh
echo "first line"
echo "second line, on stderr" >&2
echo "third line"
while [ -e "{shared}/hold-chatty" ]; do sleep 0.05; done
echo "after the hold"
i=0
while [ $i -lt 300 ]; do echo "bulk line $i"; i=$((i+1)); done
echo "last line"
"#;

impl Cluster {
    /// A replica whose config also has `extra` (services), its scripts in the shared dir.
    async fn replica_with(&self, node: &str, extra: &str) -> Ferry {
        let shared = self_path(self.shared.path());
        Ferry::with_config(&format!("{REPLICA}{extra}").replace("{shared}", &shared))
            .env("FERRY_DATABASE", &self.url)
            .env("NODE", node)
            .start()
            .await
    }

    fn script(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(
            &path,
            body.replace("{shared}", &self_path(self.shared.path())),
        )
        .expect("script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// One Server-Sent Event of a log stream: its `event:` (empty for a line), data and id.
#[derive(Debug)]
struct LogEvent {
    event: String,
    data: String,
    id: Option<String>,
}

/// A deployment's live log (`Accept: text/event-stream`) on one replica.
struct LogStream {
    resp: reqwest::Response,
    buf: String,
}

impl LogStream {
    async fn open(ferry: &Ferry, id: i64, last_event_id: Option<&str>) -> LogStream {
        let mut req = ferry
            .http()
            .get(ferry.url(&format!("/api/v1/deployments/{id}/logs")))
            .bearer_auth(ADMIN_TOKEN)
            .header("accept", "text/event-stream");
        if let Some(last) = last_event_id {
            req = req.header("last-event-id", last);
        }
        let resp = req.send().await.expect("log stream");
        assert_eq!(resp.status(), 200, "log stream of {id}");
        LogStream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event; fails after [`WAIT`] or when the stream ends first.
    async fn next(&mut self) -> LogEvent {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut e = LogEvent {
                        event: String::new(),
                        data: String::new(),
                        id: None,
                    };
                    let mut data = false;
                    for line in block.lines() {
                        let (field, value) = line.split_once(':').unwrap_or((line, ""));
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "event" => e.event = value.to_string(),
                            "id" => e.id = Some(value.to_string()),
                            "data" => {
                                e.data.push_str(value);
                                data = true;
                            }
                            _ => {}
                        }
                    }
                    if data {
                        return e;
                    }
                    continue;
                }
                match self.resp.chunk().await.expect("read the stream") {
                    Some(chunk) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                    None => panic!("the log stream ended early"),
                }
            }
        })
        .await
        .expect("no log event within the wait")
    }

    /// Events up to the first that satisfies `done` (included).
    async fn until(&mut self, done: impl Fn(&LogEvent) -> bool) -> Vec<LogEvent> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await;
            let stop = done(&e);
            seen.push(e);
            if stop {
                return seen;
            }
        }
    }
}

/// A deployment that runs on replica `a` has its log served by replica `b`, which has no file
/// of it: live while it runs (lines as they are written, then `event: end`), whole and from
/// an offset once it ended — the same bytes as `a`'s file.
#[tokio::test]
async fn another_replica_serves_a_deployments_log_live_and_whole() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    cluster.script("chatty.sh", CHATTY_SH);
    std::fs::write(cluster.path("hold-chatty"), "").expect("hold");
    let a = cluster.replica_with("a", CHATTY).await;
    let b = cluster.replica_with("b", CHATTY).await;
    // Taken by `b`, run by `a` (runs_on).
    let delivery = redeploy(&b, "chatty").await;
    let running = b
        .wait_deployments("service=chatty", "the chatty deployment to run", |list| {
            list.iter()
                .any(|d| d["delivery_id"].as_i64() == Some(delivery) && d["state"] == "running")
        })
        .await;
    let d = running
        .iter()
        .find(|d| d["delivery_id"].as_i64() == Some(delivery))
        .expect("the deployment");
    let id = d["id"].as_i64().expect("id");
    assert_eq!(d["node"], "a", "{d:#}");
    let file = format!("data/logs/{id}.log");
    // The log file is created as the run starts, just after the deployment is `running`.
    eventually("a to write the log file", WAIT, async || {
        if a.path(&file).exists() {
            Ok(())
        } else {
            Err("no log file yet".to_string())
        }
    })
    .await;

    // Live on `b`: the lines printed before the hold arrive while the command still holds.
    let mut live = LogStream::open(&b, id, None).await;
    // stdout and stderr are read apart: their lines may come in either order.
    let mut before: Vec<LogEvent> = Vec::new();
    let wanted = ["stdout | third line", "stderr | second line, on stderr"];
    while !wanted
        .iter()
        .all(|w| before.iter().any(|e| e.data.ends_with(w)))
    {
        before.push(live.next().await);
    }
    assert!(before.iter().all(|e| e.event.is_empty()), "{before:#?}");
    assert_eq!(b.deployment(id).await["state"], "running");
    assert!(
        !b.path(&file).exists(),
        "b has no file of it: it reads the database"
    );

    std::fs::remove_file(cluster.path("hold-chatty")).expect("release");
    let after = live.until(|e| e.event == "end").await;
    let end = after.last().expect("end");
    assert_eq!(end.data, r#"{"state":"succeeded"}"#);

    // `b` serves the whole log, byte for byte what `a` wrote to its file.
    let text = a.log(id).await;
    assert_eq!(b.log(id).await, text);
    assert_eq!(
        std::fs::read_to_string(a.path(&file)).expect("a's file"),
        text
    );
    assert!(text.contains("stdout | bulk line 299\n"), "{text}");
    // The stream had every line once, in order, each named by the offset after it.
    let streamed: Vec<&LogEvent> = before.iter().chain(&after[..after.len() - 1]).collect();
    let got: Vec<&str> = streamed.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(got, text.lines().collect::<Vec<_>>());
    let mut offset = 0;
    for e in &streamed {
        offset += e.data.len() + 1;
        assert_eq!(e.id.as_deref(), Some(offset.to_string().as_str()), "{e:?}");
    }

    // A viewer that resumes on `b` mid-log gets the rest once, then the end.
    let third = before.last().and_then(|e| e.id.clone()).expect("an id");
    let mut resumed = LogStream::open(&b, id, Some(&third)).await;
    let rest = resumed.until(|e| e.event == "end").await;
    assert_eq!(rest.len(), after.len());
    assert!(
        rest.iter().any(|e| e.data.ends_with("| after the hold")),
        "{rest:#?}"
    );
    // And the plain log from an offset, as on `a`.
    let from = |ferry: &Ferry| {
        let url = ferry.url(&format!("/api/v1/deployments/{id}/logs?offset={third}"));
        let req = ferry.http().get(url).bearer_auth(ADMIN_TOKEN);
        async move {
            let r = req.send().await.expect("log from an offset");
            assert_eq!(r.status(), 200);
            let offset = r.headers()["x-ferry-log-offset"]
                .to_str()
                .expect("offset")
                .to_string();
            (r.text().await.expect("text"), offset)
        }
    };
    let on_b = from(&b).await;
    assert_eq!(on_b, from(&a).await);
    assert_eq!(on_b.1, text.len().to_string());
    // A resume that is no line end is refused on `b` as on `a`.
    let r = b
        .http()
        .get(b.url(&format!("/api/v1/deployments/{id}/logs")))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "text/event-stream")
        .header("last-event-id", "5")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
}

/// `reconcile` on two replicas sharing one database: only the replica that leads the
/// schedule stores reconciles, so the service reconciles once per interval, not once per
/// replica (no reconcile delivery is ever stored twice, every one plans one deployment, and
/// runs stay an interval apart); when that replica stops, the other takes the schedule over.
#[tokio::test]
async fn two_replicas_reconcile_once_per_interval_and_hand_the_schedule_over() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let extra = r#"
[apps.shop.services.recon]
command = ["{shared}/replica.sh"]
timeout = "60s"
reconcile = "2s"
"#;
    let a = cluster.replica_with("a", extra).await;
    let b = cluster.replica_with("b", extra).await;
    let first = redeploy(&a, "recon").await;
    let d = a.planned_deployment(first, "recon").await;
    a.wait_state(d["id"].as_i64().expect("id"), "succeeded")
        .await;
    let reconciles = |list: &[Value]| {
        list.iter()
            .filter(|d| d["event"] == "reconcile" && d["state"] == "succeeded")
            .count()
    };
    b.wait_deployments("service=recon", "three reconciles", |l| reconciles(l) >= 3)
        .await;

    // The leader stops; the other replica goes on with the schedule.
    let leads = |f: &Ferry| {
        f.stderr_lines()
            .iter()
            .any(|l| l.contains("this replica leads") && l.contains("Reconcile"))
    };
    let (mut leader, mut other) = match (leads(&a), leads(&b)) {
        (true, false) => (a, b),
        (false, true) => (b, a),
        both => panic!("exactly one replica leads the schedule: {both:?}"),
    };
    // A graceful stop: a run of its own ends first (killed, it would be taken over and
    // retried, which is not what this test is about).
    leader.sigterm();
    leader.wait_exit(WAIT).await;
    drop(leader);
    let before = reconciles(&other.deployments("service=recon").await);
    let all = other
        .wait_deployments("service=recon", "a reconcile after the hand-over", |l| {
            reconciles(l) > before && l.iter().all(|d| is_final(&d["state"]))
        })
        .await;
    assert!(leads(&other), "the other replica took the lead");

    // One deployment per reconcile delivery, none stored twice.
    let deliveries: Vec<Value> = other
        .deliveries("app=shop")
        .await
        .into_iter()
        .filter(|d| d["event"] == "reconcile")
        .collect();
    let planned = all.iter().filter(|d| d["event"] == "reconcile").count();
    assert_eq!(deliveries.len(), planned, "{deliveries:#?}\n{all:#?}");
    for d in &deliveries {
        let v = other.delivery(d["id"].as_i64().expect("id")).await;
        assert_eq!(
            v["duplicates"]["count"], 0,
            "stored by one replica only: {v:#}"
        );
    }
    let mut ran: Vec<&Value> = all.iter().filter(|d| !d["started_at"].is_null()).collect();
    ran.sort_by_key(|d| ts_ms(&d["started_at"]));
    for pair in ran.windows(2) {
        assert!(
            ts_ms(&pair[1]["started_at"]) >= ts_ms(&pair[0]["finished_at"]) + 2000,
            "runs less than an interval apart: {ran:#?}"
        );
    }
    cluster.assert_no_overlap();
    other.sigterm();
    other.wait_exit(WAIT).await;
}
