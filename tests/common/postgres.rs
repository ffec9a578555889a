//! A throwaway PostgreSQL cluster for tests: [`database`] returns the URL of a new, empty
//! database on a cluster this process starts on first use (`initdb` in
//! `$TMPDIR/ferry-pg-<pid>`, one `postgres` on a free port), or why it cannot (PostgreSQL's
//! binaries are missing). Included with `#[path = …] mod postgres;` by the library's unit
//! tests and by `tests/it`, so it uses std alone.
//!
//! Why it is built this way:
//! - Nothing runs destructors at exit, and a test binary can be killed: the server must die
//!   with the process by itself. `postgres` is started directly (not `pg_ctl`, which would
//!   detach it) with `prctl(PR_SET_PDEATHSIG, SIGKILL)` armed in `pre_exec`. That signal fires
//!   when the *thread* that forked the child exits, and each test runs on a thread of its own
//!   that ends, so the server is forked by a dedicated thread that never exits. (A killed
//!   postmaster's backends notice its death and exit on their own.)
//! - PostgreSQL refuses to run as root, and CI runs as root: then `initdb` and `postgres` run
//!   as the `postgres` user (`pre_exec` runs after the uid change, which would otherwise clear
//!   the death signal).
//! - `-A trust`, `--no-sync`, `fsync=off`: a test's database needs no password and no
//!   durability. `--locale=C`: the environment's locale may not exist, and text then orders
//!   bytewise, as on SQLite. Dynamic shared memory lives in the data directory (`mmap`), so
//!   a killed server leaves nothing in `/dev/shm`; the small SysV segment it keeps is removed
//!   with the directory by the next run.
//! - A directory left by a process that is gone is removed at the next start: one whose lock
//!   file no process holds (`claim_dir`; test processes in other PID namespaces may share
//!   /tmp, so the pid in its name cannot say whether its owner lives).

// Included by two crates (the library's unit tests, where `unreachable_pub` is on, and tests/it),
// each of which may not use all of it.
#![allow(dead_code, unreachable_pub)]

use std::ffi::c_void;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Where the Debian/Ubuntu packages install each major version (`15/bin/initdb`).
const INSTALLS: &str = "/usr/lib/postgresql";
const DIR_PREFIX: &str = "ferry-pg-";
/// How long the server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Attempts to start the server on a free port (another process may take the port first).
const PORT_ATTEMPTS: usize = 5;

unsafe extern "C" {
    fn prctl(option: i32, ...) -> i32;
    safe fn geteuid() -> u32;
    fn shmget(key: i32, size: usize, flags: i32) -> i32;
    fn shmctl(id: i32, cmd: i32, buf: *mut c_void) -> i32;
    fn flock(fd: i32, operation: i32) -> i32;
}
const PR_SET_PDEATHSIG: i32 = 1;
const LOCK_EX: i32 = 2;
const LOCK_NB: i32 = 4;
/// In a cluster's directory: locked by the test process that owns it, for as long as it lives.
const LOCK_FILE: &str = "owner.lock";
const SIGKILL: std::ffi::c_ulong = 9;
const IPC_RMID: i32 = 0;

struct Cluster {
    bin: PathBuf,
    port: u16,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A new, empty database on this process's cluster (started on first use):
/// `postgres://ferry@127.0.0.1:PORT/t_N`. Err says why there is none, e.g. PostgreSQL is not
/// installed.
pub fn database() -> Result<String, String> {
    let cluster = CLUSTER.get_or_init(start).as_ref().map_err(Clone::clone)?;
    let name = format!("t_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let port = cluster.port.to_string();
    let out = client(&cluster.bin, "createdb")
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "ferry", "-w", &name])
        .output()
        .map_err(|e| format!("running createdb: {e}"))?;
    check(&out, "createdb")?;
    Ok(format!("postgres://ferry@127.0.0.1:{port}/{name}"))
}

fn start() -> Result<Cluster, String> {
    let bin = binaries()?;
    let owner = if geteuid() == 0 {
        Some(user("postgres").map_err(|e| {
            format!("running as root, so PostgreSQL must run as the postgres user: {e}")
        })?)
    } else {
        None
    };
    let tmp = std::env::temp_dir();
    remove_leftovers(&tmp);
    let dir = claim_dir(&tmp)?;
    let data = dir.join("data");
    fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    if let Some((uid, gid)) = owner {
        for path in [&dir, &data] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| format!("handing {} to postgres: {e}", path.display()))?;
        }
    }

    let mut initdb = server_command(&bin.join("initdb"), &dir, owner);
    initdb.args(["-D".as_ref(), data.as_os_str()]).args([
        "-A",
        "trust",
        "-U",
        "ferry",
        "--no-sync",
        "-E",
        "UTF8",
        "--locale=C",
    ]);
    let out = initdb
        .output()
        .map_err(|e| format!("running {}: {e}", bin.join("initdb").display()))?;
    check(&out, "initdb").map_err(|e| {
        format!(
            "{e} (the cluster is in {}; as root it must be reachable by postgres)",
            dir.display()
        )
    })?;

    // The server's parent is this thread, which never ends (see the module's doc).
    let (answer, answered) = mpsc::channel();
    let (bin2, dir2) = (bin.clone(), dir.clone());
    thread::Builder::new()
        .name("ferry-test-postgres".into())
        .spawn(move || {
            let (result, child) = serve(&bin2, &dir2, &data, owner);
            let _ = answer.send(result);
            let _child = child;
            loop {
                thread::park();
            }
        })
        .map_err(|e| format!("starting the postgres thread: {e}"))?;
    let port = answered
        .recv()
        .map_err(|_| "the postgres thread ended".to_string())??;
    Ok(Cluster { bin, port })
}

/// Starts the server on a free port and waits until it accepts connections, retrying on a
/// port another process took first. Returns the running server too: it must not be dropped.
fn serve(
    bin: &Path,
    dir: &Path,
    data: &Path,
    owner: Option<(u32, u32)>,
) -> (Result<u16, String>, Option<Child>) {
    let log_path = dir.join("server.log");
    let mut last = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = match free_port() {
            Ok(port) => port,
            Err(e) => return (Err(format!("finding a free port: {e}")), None),
        };
        let log = match fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
        {
            Ok(log) => log,
            Err(e) => return (Err(format!("creating {}: {e}", log_path.display())), None),
        };
        let start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = match log.try_clone() {
            Ok(stderr) => stderr,
            Err(e) => return (Err(format!("opening the server log: {e}")), None),
        };
        let mut server = server_command(&bin.join("postgres"), dir, owner);
        server
            .args(["-D".as_ref(), data.as_os_str()])
            .args(["-p", &port.to_string()])
            .args(["-k".as_ref(), dir.as_os_str()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"])
            .args(["-c", "max_connections=300"])
            .args(["-c", "dynamic_shared_memory_type=mmap"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
        unsafe {
            server.pre_exec(move || {
                if prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The test process died before the signal was armed.
                if std::os::unix::process::parent_id() != parent {
                    return Err(io::Error::other("the test process is gone"));
                }
                Ok(())
            });
        }
        let mut child = match server.spawn() {
            Ok(child) => child,
            Err(e) => {
                let error = format!("running {}: {e}", bin.join("postgres").display());
                return (Err(error), None);
            }
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                last = tail(&log_path, start);
                if last.contains("already in use") {
                    break; // another port
                }
                let error = format!("postgres exited ({status}) before it was ready:\n{last}");
                return (Err(error), None);
            }
            // Over the socket in our own directory: it is surely our server that answers.
            let ready = client(bin, "pg_isready")
                .arg("-q")
                .arg("-h")
                .arg(dir)
                .args(["-p", &port.to_string(), "-U", "ferry", "-d", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return (Ok(port), Some(child));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let error = format!(
                    "postgres did not accept connections within {READY_WITHIN:?}:\n{}",
                    tail(&log_path, start)
                );
                return (Err(error), None);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    let error = format!("postgres found no free port in {PORT_ATTEMPTS} attempts:\n{last}");
    (Err(error), None)
}

/// The bin directory of the highest PostgreSQL version installed.
fn binaries() -> Result<PathBuf, String> {
    let missing = || {
        format!(
            "PostgreSQL is not installed: no {INSTALLS}/*/bin/initdb (apt-get install postgresql)"
        )
    };
    let entries = fs::read_dir(INSTALLS).map_err(|_| missing())?;
    let version = |name: &str| -> Option<Vec<u32>> {
        name.split('.').map(|part| part.parse().ok()).collect()
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let v = version(entry.file_name().to_str()?)?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(missing)
}

/// A user's uid and gid, from /etc/passwd.
fn user(name: &str) -> Result<(u32, u32), String> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 3 && fields[0] == name)
        .and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
        .ok_or_else(|| format!("no user {name} in /etc/passwd"))
}

/// `initdb` or `postgres`, as `owner` when there is one, in `dir` (the test's working directory
/// may be closed to that user), without the caller's PG* settings.
fn server_command(program: &Path, dir: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir);
    without_pg_env(&mut command);
    if let Some((uid, gid)) = owner {
        // std drops root's supplementary groups when it changes the uid.
        command.uid(uid).gid(gid);
    }
    command
}

/// A client program of the same installation, run as this process's user.
fn client(bin: &Path, program: &str) -> Command {
    let mut command = Command::new(bin.join(program));
    without_pg_env(&mut command);
    command.stdin(Stdio::null());
    command
}

fn without_pg_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
}

fn check(out: &Output, what: &str) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    ))
}

/// A port nobody listens on now (it may be taken again before the server binds it).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last lines the server logged after `from`.
fn tail(log: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(log) {
        let _ = file.seek(SeekFrom::Start(from));
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A new directory for this process's cluster, `ferry-pg-PID-NANOS`, whose lock file this
/// process holds (`flock`) until it ends: the kernel releases the lock when the process dies,
/// however it dies, and a lock is seen across PID namespaces (test processes of several
/// containers may share one /tmp, where a pid in the name says nothing). The directory is made
/// under a name no cleaner reads and renamed once locked.
fn claim_dir(tmp: &Path) -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("{DIR_PREFIX}{}-{nanos}", std::process::id());
    let making = tmp.join(format!(".{name}"));
    let dir = tmp.join(&name);
    fs::create_dir(&making).map_err(|e| format!("creating {}: {e}", making.display()))?;
    let file = fs::File::create(making.join(LOCK_FILE))
        .map_err(|e| format!("creating the lock file in {}: {e}", making.display()))?;
    if !try_lock(&file) {
        return Err(format!("cannot lock {}", making.display()));
    }
    fs::rename(&making, &dir).map_err(|e| format!("renaming {}: {e}", making.display()))?;
    // Held (open and locked) until the process ends.
    std::mem::forget(file);
    Ok(dir)
}

/// Takes `file`'s lock without waiting; false: another process holds it.
fn try_lock(file: &fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open file descriptor.
    unsafe { flock(file.as_raw_fd(), LOCK_EX | LOCK_NB) == 0 }
}

/// Removes the clusters of test processes that are gone: those whose lock file nobody holds.
/// A directory without one (made by an older version, named `ferry-pg-PID`) is removed only
/// when its log has not changed for a day: its pid may be of another PID namespace.
fn remove_leftovers(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(DIR_PREFIX)) {
            continue;
        }
        let path = entry.path();
        match fs::File::open(path.join(LOCK_FILE)) {
            Ok(lock) => {
                if try_lock(&lock) {
                    remove(&path);
                }
            }
            Err(_) => {
                let day = Duration::from_secs(24 * 60 * 60);
                let stale = fs::metadata(path.join("server.log"))
                    .or_else(|_| fs::metadata(&path))
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > day));
                if stale {
                    remove(&path);
                }
            }
        }
    }
}

/// Removes a cluster's directory and the SysV shared memory segment its killed server left
/// (named by line 7 of `postmaster.pid`: key and id; removed only if the key still has it).
fn remove(dir: &Path) {
    if let Ok(pid_file) = fs::read_to_string(dir.join("data/postmaster.pid")) {
        let segment: Vec<i32> = pid_file
            .lines()
            .nth(6)
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        if let [key, id] = segment[..] {
            // SAFETY: plain syscalls on integers; no buffer is passed.
            unsafe {
                if key != 0 && shmget(key, 0, 0) == id {
                    shmctl(id, IPC_RMID, std::ptr::null_mut());
                }
            }
        }
    }
    let _ = fs::remove_dir_all(dir);
}
