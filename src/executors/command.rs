//! The `command` executor: runs an argv from config (never through a shell) in its own process
//! group, streaming its output into the deployment log.
//!
//! Event data reaches the command only as environment variables and a payload file (both
//! prepared by `Job::prepare`), so nothing from a webhook can become shell syntax. The child
//! leads a new process group (`process.rs`): on timeout, on cancellation (cancel or shutdown)
//! and if the run is dropped, the whole group is killed, so a deploy script's background
//! children cannot outlive it. A command that finishes normally is different: whatever it left
//! running in the background is the user's business (a restarted server, say), so it is left
//! alone and only waited on briefly for its output (`output.rs`).

mod output;
mod process;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Outcome, Stop};
use crate::deploylog::LogWriter;
use output::Pipes;
pub(in crate::executors) use process::{GroupGuard, die_with_ferry};
pub(crate) use process::{kill_orphans, pid_file, running_dir};

/// Everything one run needs; built by `Job::prepare` from config and the deployment.
#[derive(Debug, Clone)]
pub(crate) struct CommandSpec {
    /// `argv[0]` is the program: a relative path containing `/` is taken from `workdir`, a bare
    /// name is looked up on `PATH`.
    pub(crate) argv: Vec<String>,
    /// The child's current directory.
    pub(crate) workdir: PathBuf,
    /// Added to the inherited environment (after `env_remove`, so these win).
    pub(crate) env: Vec<(String, String)>,
    /// Removed from the inherited environment (variables that held ferry's secrets, stale
    /// `FERRY_*`).
    pub(crate) env_remove: Vec<String>,
    /// From the start of the child to killing its process group.
    pub(crate) timeout: Duration,
    /// Where to note the process group while it runs, so that a ferry restarted after a crash
    /// can kill a deploy that outlived it (see [`kill_orphans`]) before starting another.
    pub(crate) pid_file: Option<PathBuf>,
}

/// Why a command could not be run at all. How a command that did run ended is an [`Outcome`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    #[error("the command is empty")]
    EmptyArgv,
    #[error("cannot use working directory {workdir}: {source}")]
    Workdir {
        workdir: String,
        source: std::io::Error,
    },
    #[error("cannot start `{program}` in {workdir}: {source}")]
    Spawn {
        program: String,
        workdir: String,
        source: std::io::Error,
    },
    #[error("waiting for `{program}` failed: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot write the deployment log: {0}")]
    Log(#[source] std::io::Error),
}

/// Runs the command to its end, its timeout, or cancellation.
///
/// Fails only if the command cannot be started (or waited for); a log that cannot be written
/// once the command runs is reported through `tracing` rather than hiding the outcome.
pub(crate) async fn run(
    spec: &CommandSpec,
    log: &LogWriter,
    cancel: &Stop,
) -> Result<Outcome, CommandError> {
    let program = spec.argv.first().ok_or(CommandError::EmptyArgv)?;
    let workdir = workdir(spec, log).await?;
    if cancel.is_cancelled() {
        note(
            log,
            &format!("cancelled before it started: {}", cancel.why()),
        )
        .await;
        return Ok(Outcome::Cancelled);
    }
    let started = Instant::now();
    let mut child = spawn(spec, program, &workdir)?;
    let mut group = GroupGuard::of(child.id());
    let _pid_file = spec.pid_file.as_deref().and_then(|path| group.note(path));
    // The pumps run inside this future (not as tasks), so dropping the run stops them too.
    let stop_reading = CancellationToken::new();
    let output = output::copy(
        (child.stdout.take(), child.stderr.take()),
        log,
        &stop_reading,
    );
    tokio::pin!(output);
    let (end, left_open) = match wait(&mut child, output.as_mut(), spec.timeout, cancel).await {
        Ok(ended) => ended,
        // The guard kills the group on the way out.
        Err(source) => {
            return Err(CommandError::Wait {
                program: program.clone(),
                source,
            });
        }
    };
    let elapsed = started.elapsed();
    let killed = group.killed();
    if !matches!(end, End::Exited(_)) {
        group.kill();
        // In case the child left its group; harmless if it is already dead.
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    // The child is reaped: see `GroupGuard::disarm`.
    group.disarm();
    output::after_exit(left_open, output, &stop_reading, log).await;
    Ok(report(end, spec.timeout, cancel, &killed, elapsed, log).await)
}

/// The working directory, made absolute and checked; logs the line that starts the run.
async fn workdir(spec: &CommandSpec, log: &LogWriter) -> Result<PathBuf, CommandError> {
    // Absolute, so a relative program path resolved against it does not depend on how the
    // platform combines `current_dir` with a relative program.
    let workdir = std::path::absolute(&spec.workdir).map_err(|source| CommandError::Workdir {
        workdir: spec.workdir.display().to_string(),
        source,
    })?;
    log.ferry(&format!(
        "running {:?} in {} (timeout {})",
        spec.argv,
        workdir.display(),
        humantime::format_duration(spec.timeout)
    ))
    .await
    .map_err(CommandError::Log)?;
    // A missing directory would otherwise surface as "cannot start `./deploy.sh`: No such file
    // or directory", blaming the script.
    let checked = match tokio::fs::metadata(&workdir).await {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(std::io::ErrorKind::NotADirectory.into()),
        Err(source) => Err(source),
    };
    match checked {
        Ok(()) => Ok(workdir),
        Err(source) => Err(CommandError::Workdir {
            workdir: workdir.display().to_string(),
            source,
        }),
    }
}

/// Starts the program in `workdir`, leading a new process group, with the spec's environment.
fn spawn(spec: &CommandSpec, program: &str, workdir: &Path) -> Result<Child, CommandError> {
    let mut cmd = Command::new(resolve_program(program, workdir));
    cmd.args(&spec.argv[1..])
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for name in &spec.env_remove {
        cmd.env_remove(name);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    // The command dies with ferry: after a `kill -9` of ferry, another replica (or this one,
    // restarted) may run the service again, and two runs must never overlap. The kernel sends
    // the signal when the thread that forked the command ends; that is a tokio worker here,
    // which lives as long as ferry. (What the command itself left running in its process group
    // is killed by the next start of this ferry: `kill_orphans`.)
    process::die_with_ferry(&mut cmd);
    cmd.spawn().map_err(|source| CommandError::Spawn {
        program: program.to_string(),
        workdir: workdir.display().to_string(),
        source,
    })
}

/// How the wait for a command ended.
enum End {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
}

/// Waits for the child to exit, the timeout to pass or the run to be stopped. Returns the
/// pipes too if `output` ended first (the command closed or redirected its streams).
async fn wait<O: Future<Output = Pipes>>(
    child: &mut Child,
    mut output: Pin<&mut O>,
    timeout: Duration,
    cancel: &Stop,
) -> std::io::Result<(End, Option<Pipes>)> {
    let mut left_open = None;
    let timeout = tokio::time::sleep(timeout);
    tokio::pin!(timeout);
    let end = loop {
        tokio::select! {
            status = child.wait() => break End::Exited(status?),
            pipes = &mut output, if left_open.is_none() => left_open = Some(pipes),
            () = &mut timeout => break End::TimedOut,
            () = cancel.cancelled() => break End::Cancelled,
        }
    };
    Ok((end, left_open))
}

/// Logs how the command ended and says what that means for the deployment.
async fn report(
    end: End,
    timeout: Duration,
    cancel: &Stop,
    killed: &str,
    elapsed: Duration,
    log: &LogWriter,
) -> Outcome {
    match end {
        End::Exited(status) => {
            let text = format!("{} after {}", describe(status), format_elapsed(elapsed));
            note(log, &text).await;
            if status.success() {
                Outcome::Succeeded
            } else {
                Outcome::Failed {
                    exit_code: status.code(),
                    signal: status.signal(),
                }
            }
        }
        End::TimedOut => {
            let after = humantime::format_duration(timeout);
            note(log, &format!("timed out after {after}; {killed}")).await;
            Outcome::TimedOut { after: timeout }
        }
        End::Cancelled => {
            let text = format!(
                "cancelled: {}; {killed} after {}",
                cancel.why(),
                format_elapsed(elapsed)
            );
            note(log, &text).await;
            Outcome::Cancelled
        }
    }
}

/// `./deploy.sh` and `bin/x` are relative to the working directory; bare names use PATH.
fn resolve_program(program: &str, workdir: &Path) -> PathBuf {
    let path = Path::new(program);
    if path.is_relative() && program.contains('/') {
        workdir.join(path)
    } else {
        path.to_path_buf()
    }
}

/// A ferry line; once the command has run, a failing log must not hide its outcome.
async fn note(log: &LogWriter, text: &str) {
    if let Err(e) = log.ferry(text).await {
        tracing::warn!(error = %e, "cannot write the deployment log");
    }
}

/// "exited with status 3", "killed by signal 9 (SIGKILL)".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(name) => format!("killed by signal {signal} ({name})"),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => "ended".to_string(),
    }
}

/// "1.23s" for short runs, "12m 34s" for long ones.
fn format_elapsed(elapsed: Duration) -> String {
    if elapsed < Duration::from_secs(60) {
        format!("{:.2}s", elapsed.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(elapsed.as_secs())).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::output::MAX_LINE;
    use super::*;
    use nix::unistd::Pid;
    use std::sync::atomic::{AtomicU32, Ordering};

    const MINUTE: Duration = Duration::from_secs(60);

    /// A temporary working directory with `bin/script.sh` and a log.
    struct Fixture {
        dir: tempfile::TempDir,
        log_path: PathBuf,
        log: LogWriter,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let script = bin.join("script.sh");
        std::fs::write(&script, "#!/bin/sh\necho \"script $1 in $(pwd)\"\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let log_path = dir.path().join("logs/1.log");
        let log = LogWriter::create(&log_path).await.unwrap();
        Fixture { dir, log_path, log }
    }

    impl Fixture {
        fn spec(&self, argv: &[&str], timeout: Duration) -> CommandSpec {
            CommandSpec {
                argv: argv.iter().map(|s| s.to_string()).collect(),
                workdir: self.dir.path().to_path_buf(),
                env: Vec::new(),
                env_remove: Vec::new(),
                timeout,
                pid_file: Some(self.dir.path().join("running/test.pgid")),
            }
        }

        async fn run(
            &self,
            spec: &CommandSpec,
            cancel: &crate::executors::Stop,
        ) -> Result<Outcome, CommandError> {
            run(spec, &self.log, cancel).await
        }

        async fn run_argv(&self, argv: &[&str]) -> Result<Outcome, CommandError> {
            self.run(&self.spec(argv, MINUTE), &crate::executors::Stop::default())
                .await
        }

        fn log_text(&self) -> String {
            std::fs::read_to_string(&self.log_path).unwrap_or_default()
        }

        /// `(label, text)` of each log line, checking the time stamp on the way.
        fn lines(&self) -> Vec<(String, String)> {
            self.log_text()
                .lines()
                .map(|line| {
                    let (stamp, rest) = line.split_once(' ').unwrap();
                    time::OffsetDateTime::parse(
                        stamp,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .unwrap_or_else(|e| panic!("{line:.100}: {e}"));
                    assert_eq!(stamp.len(), "2026-11-23T01:02:03.123Z".len(), "{line:.100}");
                    let (label, text) = rest.split_once(" | ").unwrap();
                    assert_eq!(label.len(), 6, "{line:.100}");
                    (label.trim_end().to_string(), text.to_string())
                })
                .collect()
        }

        fn has(&self, label: &str, text: &str) -> bool {
            self.lines().iter().any(|(l, t)| l == label && t == text)
        }

        fn last_ferry_line(&self) -> String {
            self.lines()
                .into_iter()
                .rev()
                .find(|(l, _)| l == "ferry")
                .map(|(_, t)| t)
                .unwrap_or_default()
        }
    }

    /// A number nobody else passes to `sleep`, to find our processes in /proc.
    fn marker() -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        format!(
            "987654{:07}{:03}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Live `sleep <marker>` processes (zombies have an empty cmdline and do not count).
    fn sleepers(marker: &str) -> Vec<Pid> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                (args.first()?.ends_with(b"sleep") && args.contains(&marker.as_bytes()))
                    .then(|| Pid::from_raw(pid))
            })
            .collect()
    }

    async fn wait_for_sleepers(marker: &str, count: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = sleepers(marker).len();
            if n == count || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill_sleepers(marker: &str) {
        for pid in sleepers(marker) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }

    #[tokio::test]
    async fn success_logs_both_streams_with_labels_and_times() {
        let f = fixture().await;
        let outcome = f
            .run_argv(&[
                "/bin/sh",
                "-c",
                "echo out; echo err >&2; echo; printf 'a\\r\\nb\\n'; printf 'no newline'",
            ])
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Succeeded);
        let lines = f.lines();
        let workdir = f.dir.path().display();
        assert_eq!(lines[0].0, "ferry");
        assert!(
            lines[0].1.starts_with(&format!(
                "running [\"/bin/sh\", \"-c\", \"echo out; echo err >&2; echo; printf 'a\\\\r\\\\nb\\\\n'; printf 'no newline'\"] in {workdir} (timeout 1m)"
            )),
            "{}",
            lines[0].1
        );
        for (label, text) in [
            ("stdout", "out"),
            ("stderr", "err"),
            ("stdout", ""),
            ("stdout", "a"),
            ("stdout", "b"),
            ("stdout", "no newline"),
        ] {
            assert!(f.has(label, text), "{label} {text:?}\n{}", f.log_text());
        }
        let last = f.lines().pop().unwrap();
        assert_eq!(last.0, "ferry");
        assert!(
            last.1.starts_with("exited with status 0 after ") && last.1.ends_with('s'),
            "{}",
            last.1
        );
    }

    #[tokio::test]
    async fn failure_records_the_exit_code() {
        let f = fixture().await;
        let outcome = f.run_argv(&["/bin/sh", "-c", "exit 3"]).await.unwrap();
        assert_eq!(
            outcome,
            Outcome::Failed {
                exit_code: Some(3),
                signal: None
            }
        );
        assert!(
            f.last_ferry_line()
                .starts_with("exited with status 3 after ")
        );
    }

    #[tokio::test]
    async fn death_by_signal_is_recorded() {
        let f = fixture().await;
        let outcome = f
            .run_argv(&["/bin/sh", "-c", "kill -TERM $$"])
            .await
            .unwrap();
        assert_eq!(
            outcome,
            Outcome::Failed {
                exit_code: None,
                signal: Some(15)
            }
        );
        assert!(
            f.last_ferry_line()
                .starts_with("killed by signal 15 (SIGTERM) after "),
            "{}",
            f.log_text()
        );
    }

    #[tokio::test]
    async fn env_is_added_and_removed_and_never_logged() {
        let f = fixture().await;
        // A variable ferry itself has, to be hidden from the child.
        let inherited = std::env::vars()
            .map(|(k, _)| k)
            .find(|k| k != "PATH" && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or_else(|| "PATH".to_string());
        let mut spec = f.spec(
            &[
                "/bin/sh",
                "-c",
                &format!("echo \"app=$FERRY_APP inherited=${{{inherited}:-unset}}\""),
            ],
            MINUTE,
        );
        spec.env = vec![
            ("FERRY_APP".into(), "shop".into()),
            ("UNPRINTED".into(), "value-never-logged".into()),
        ];
        // Removing a variable that is also set: the set value wins.
        spec.env_remove = vec![inherited, "FERRY_APP".into()];
        let outcome = f
            .run(&spec, &crate::executors::Stop::default())
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Succeeded);
        assert!(
            f.has("stdout", "app=shop inherited=unset"),
            "{}",
            f.log_text()
        );
        assert!(!f.log_text().contains("value-never-logged"));
    }

    #[tokio::test]
    async fn relative_program_is_taken_from_the_workdir() {
        let f = fixture().await;
        let outcome = f.run_argv(&["./bin/script.sh", "x"]).await.unwrap();
        assert_eq!(outcome, Outcome::Succeeded);
        let workdir = f.dir.path().canonicalize().unwrap();
        let (_, text) = f.lines().into_iter().find(|(l, _)| l == "stdout").unwrap();
        let pwd = text.strip_prefix("script x in ").unwrap();
        assert_eq!(Path::new(pwd).canonicalize().unwrap(), workdir);
        // No `./` needed either, as long as there is a slash.
        assert_eq!(
            f.run_argv(&["bin/script.sh"]).await.unwrap(),
            Outcome::Succeeded
        );
    }

    #[tokio::test]
    async fn bare_program_is_looked_up_on_path() {
        let f = fixture().await;
        let outcome = f.run_argv(&["sh", "-c", "echo via path"]).await.unwrap();
        assert_eq!(outcome, Outcome::Succeeded);
        assert!(f.has("stdout", "via path"));
    }

    #[test]
    fn program_resolution() {
        let wd = Path::new("/srv/app");
        assert_eq!(
            resolve_program("./deploy.sh", wd),
            Path::new("/srv/app/./deploy.sh")
        );
        assert_eq!(resolve_program("bin/x", wd), Path::new("/srv/app/bin/x"));
        assert_eq!(resolve_program("make", wd), Path::new("make"));
        assert_eq!(
            resolve_program("/usr/bin/env", wd),
            Path::new("/usr/bin/env")
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_error() {
        let f = fixture().await;
        let e = f.run_argv(&["./nope.sh"]).await.unwrap_err();
        assert!(matches!(e, CommandError::Spawn { .. }), "{e:?}");
        let workdir = f.dir.path().display();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot start `./nope.sh` in {workdir}: No such file or directory (os error 2)"
            )
        );
        let e = f
            .run_argv(&["ferry-test-no-such-program"])
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot start `ferry-test-no-such-program` in "),
            "{e}"
        );
    }

    #[tokio::test]
    async fn missing_workdir_and_empty_argv_are_errors() {
        let f = fixture().await;
        let mut spec = f.spec(&["/bin/true"], MINUTE);
        spec.workdir = f.dir.path().join("gone");
        let e = f
            .run(&spec, &crate::executors::Stop::default())
            .await
            .unwrap_err();
        assert!(matches!(e, CommandError::Workdir { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with("cannot use working directory "),
            "{e}"
        );
        spec.workdir = f.dir.path().join("bin/script.sh");
        let e = f
            .run(&spec, &crate::executors::Stop::default())
            .await
            .unwrap_err();
        assert!(matches!(e, CommandError::Workdir { .. }), "{e:?}");
        let e = f.run_argv(&[]).await.unwrap_err();
        assert!(matches!(e, CommandError::EmptyArgv), "{e:?}");
    }

    #[tokio::test]
    async fn long_lines_are_logged_in_pieces() {
        let f = fixture().await;
        let outcome = f
            .run_argv(&[
                "/bin/sh",
                "-c",
                "head -c 200000 /dev/zero | tr '\\0' a; echo; \
                 head -c 65536 /dev/zero | tr '\\0' b; echo; echo short",
            ])
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Succeeded);
        let out: Vec<usize> = f
            .lines()
            .into_iter()
            .filter(|(l, _)| l == "stdout")
            .map(|(_, t)| t.len())
            .collect();
        assert_eq!(out, [MAX_LINE, MAX_LINE, MAX_LINE, 3392, MAX_LINE, 5]);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let f = fixture().await;
        let m = marker();
        let script = format!("sleep {m} & sleep {m} & wait");
        let started = Instant::now();
        let outcome = f
            .run(
                &f.spec(&["/bin/sh", "-c", &script], Duration::from_secs(1)),
                &crate::executors::Stop::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome,
            Outcome::TimedOut {
                after: Duration::from_secs(1)
            }
        );
        assert!(started.elapsed() < Duration::from_secs(4));
        let last = f.last_ferry_line();
        assert!(
            last.starts_with("timed out after 1s; killed process group "),
            "{}",
            f.log_text()
        );
        assert_eq!(wait_for_sleepers(&m, 0).await, 0, "sleep {m} survived");
    }

    #[tokio::test]
    async fn cancellation_kills_the_whole_process_group() {
        let f = fixture().await;
        let m = marker();
        let cancel = crate::executors::Stop::default();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            trigger.cancel();
        });
        let script = format!("sleep {m} & sleep {m}; wait");
        let started = Instant::now();
        let outcome = f
            .run(&f.spec(&["/bin/sh", "-c", &script], MINUTE), &cancel)
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(
            f.last_ferry_line()
                .starts_with("cancelled: ferry is shutting down; killed process group "),
            "{}",
            f.log_text()
        );
        assert_eq!(wait_for_sleepers(&m, 0).await, 0, "sleep {m} survived");
    }

    #[tokio::test]
    async fn nothing_starts_once_cancelled() {
        let f = fixture().await;
        let cancel = crate::executors::Stop::default();
        cancel.cancel();
        let outcome = f
            .run(
                &f.spec(&["/bin/sh", "-c", "touch started"], MINUTE),
                &cancel,
            )
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Cancelled);
        assert!(!f.dir.path().join("started").exists());
    }

    #[tokio::test]
    async fn dropping_the_run_kills_the_whole_process_group() {
        let f = fixture().await;
        let m = marker();
        let spec = f.spec(
            &["/bin/sh", "-c", &format!("sleep {m} & sleep {m}; wait")],
            MINUTE,
        );
        let log = f.log.clone();
        let task =
            tokio::spawn(async move { run(&spec, &log, &crate::executors::Stop::default()).await });
        assert_eq!(wait_for_sleepers(&m, 2).await, 2, "the command never ran");
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(wait_for_sleepers(&m, 0).await, 0, "sleep {m} survived");
    }

    #[tokio::test]
    async fn background_child_holding_output_does_not_hang_the_run() {
        let f = fixture().await;
        let m = marker();
        let started = Instant::now();
        let outcome = f
            .run_argv(&["/bin/sh", "-c", &format!("echo hi; sleep {m} &")])
            .await
            .unwrap();
        let took = started.elapsed();
        // Left running: only timeouts, cancellation and drops kill the group.
        let alive = sleepers(&m).len();
        kill_sleepers(&m);
        assert_eq!(outcome, Outcome::Succeeded);
        // The 2 s drain window plus slack for a busy machine.
        assert!(took < Duration::from_secs(4), "{took:?}");
        assert!(f.has("stdout", "hi"), "{}", f.log_text());
        assert!(
            f.log_text().contains("ferry  | output still open 2s after"),
            "{}",
            f.log_text()
        );
        assert!(
            f.last_ferry_line()
                .starts_with("exited with status 0 after ")
        );
        assert_eq!(alive, 1, "the background sleep was killed");
    }

    #[tokio::test]
    async fn background_child_without_our_output_is_not_waited_for() {
        let f = fixture().await;
        let m = marker();
        let started = Instant::now();
        let outcome = f
            .run_argv(&[
                "/bin/sh",
                "-c",
                &format!("sleep {m} >/dev/null 2>&1 & echo started"),
            ])
            .await
            .unwrap();
        let took = started.elapsed();
        let alive = sleepers(&m).len();
        kill_sleepers(&m);
        assert_eq!(outcome, Outcome::Succeeded);
        // Well under the 2 s drain window: nothing held our pipes.
        assert!(took < Duration::from_millis(1500), "{took:?}");
        assert!(!f.log_text().contains("output still open"));
        assert_eq!(alive, 1);
    }

    #[test]
    fn elapsed_formatting() {
        assert_eq!(format_elapsed(Duration::from_millis(1234)), "1.23s");
        assert_eq!(format_elapsed(Duration::from_millis(754_210)), "12m 34s");
    }
}
