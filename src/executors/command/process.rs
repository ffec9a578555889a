//! The process side of a command run: its own process group, killed as a whole, and the note
//! of that group in `DATA_DIR/running/` while it runs. The checkout's git commands
//! (`executors::checkout`) run the same way.
//!
//! The note (`PGID STARTTIME`) lets a ferry restarted after a crash kill a deploy that
//! outlived it ([`kill_orphans`]) before it starts another one; the start time, from `/proc`,
//! makes sure a reused pid is never hit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Where running deploy commands note their process group (see [`kill_orphans`]).
pub(crate) fn running_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("running")
}

/// The note of deployment `deployment`'s process group.
pub(crate) fn pid_file(data_dir: &Path, deployment: i64) -> PathBuf {
    running_dir(data_dir).join(format!("deployment-{deployment}.pgid"))
}

/// A note of a running process group: `PGID STARTTIME` (the leader's start time in clock ticks
/// since boot, from `/proc`, so a reused pid is never mistaken for it). Removed when dropped,
/// i.e. once the run is over however it ended.
pub(in crate::executors) struct PidFile(PathBuf);

impl PidFile {
    /// Written synchronously (a few bytes) right after the spawn, so the note exists before
    /// anything the command does can be observed.
    fn write(path: &Path, pgid: Pid) -> Option<PidFile> {
        let start = start_time(pgid.as_raw())?;
        if let Some(dir) = path.parent() {
            crate::datadir::create_dir(dir).ok()?;
        }
        let mut file = crate::datadir::file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .ok()?;
        std::io::Write::write_all(&mut file, format!("{pgid} {start}\n").as_bytes()).ok()?;
        Some(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A process's start time (field 22 of `/proc/PID/stat`), if it exists.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a process has exited but is not reaped yet (state `Z`).
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.get(stat.rfind(')')? + 1..)?.trim_start().to_string();
            rest.chars().next()
        })
        == Some('Z')
}

/// At start-up, before interrupted deployments are recovered: kills every process group that
/// a previous ferry noted in `dir` and that still runs (same leader, same start time). A
/// deploy that outlived a crash must not run alongside the one that replaces it. Returns the
/// groups killed.
pub(crate) fn kill_orphans(dir: &Path) -> Vec<i32> {
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return killed;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let noted = std::fs::read_to_string(&path).ok().and_then(|text| {
            let mut parts = text.split_whitespace();
            let pgid: i32 = parts.next()?.parse().ok()?;
            let start: u64 = parts.next()?.parse().ok()?;
            Some((pgid, start))
        });
        if let Some((pgid, start)) = noted
            && pgid > 1
            && start_time(pgid) == Some(start)
        {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            // Its parent died with the old ferry; init reaps it. Wait briefly for that.
            for _ in 0..100 {
                if start_time(pgid) != Some(start) || is_zombie(pgid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            killed.push(pgid);
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// Makes a child about to be spawned die with ferry (see `command::spawn` for why).
pub(in crate::executors) fn die_with_ferry(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec and only makes one syscall (prctl), which
    // is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// The process group of a spawned child, killed when dropped unless disarmed: an aborted run
/// leaves nothing behind.
pub(in crate::executors) struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    /// The group of a child spawned with `process_group(0)`: its id is the child's pid.
    pub(in crate::executors) fn of(child_id: Option<u32>) -> GroupGuard {
        GroupGuard {
            pgid: child_id
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
        }
    }

    /// Notes the group at `path` while the returned note lives.
    pub(in crate::executors) fn note(&self, path: &Path) -> Option<PidFile> {
        PidFile::write(path, self.pgid?)
    }

    /// What killing it did, for the log: "killed process group 123".
    pub(in crate::executors) fn killed(&self) -> String {
        match self.pgid {
            Some(pgid) => format!("killed process group {pgid}"),
            None => "killed it".to_string(),
        }
    }

    pub(in crate::executors) fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (the group is already gone) is fine.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    /// Once the child is reaped its group is either dead or the user's leftovers, and its id
    /// may be reused: the guard must not fire any more.
    pub(in crate::executors) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn orphans_noted_by_a_previous_ferry_are_killed_and_stale_notes_ignored() {
        use std::os::unix::process::CommandExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut orphan = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut bystander = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = orphan.id() as i32;
        let other = bystander.id() as i32;
        let start = start_time(pid).unwrap();
        std::fs::write(dir.path().join("a.pgid"), format!("{pid} {start}\n")).unwrap();
        // A note whose pid now belongs to another process (different start time).
        let wrong = start_time(other).unwrap() + 1;
        std::fs::write(dir.path().join("b.pgid"), format!("{other} {wrong}\n")).unwrap();
        std::fs::write(dir.path().join("c.pgid"), "garbage").unwrap();

        assert_eq!(kill_orphans(dir.path()), vec![pid]);
        let status = orphan.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
        assert!(
            bystander.try_wait().unwrap().is_none(),
            "a stale note killed a bystander"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "notes are removed"
        );
        let _ = bystander.kill();
        let _ = bystander.wait();
    }
}
