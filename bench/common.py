"""Shared helpers of the bench/ scripts: build ferry, write its config, start and stop it, sign
payloads, read the API, parse its times, summarise samples. Only the standard library; loopback
only."""

import atexit
import calendar
import ctypes
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
PAYLOAD = os.path.join(BENCH_DIR, "push-main.json")

APP = "bench"
HOOK_TOKEN = "bench-hook-token-0123"
ADMIN_TOKEN = "bench-admin-token"
SECRET = "It's a Secret to Everybody"
HOST = "127.0.0.1"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def die(msg, code=2):
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")


def ferry_bin():
    return os.path.join(target_dir(), "release", "ferry")


def build(no_build=False):
    """Builds ferry in release mode (one cargo command) and returns the binary's path.

    FERRY_BIN names a binary to use instead, built no matter how: CI's smoke runs use the debug
    build that the tests need anyway, rather than spend minutes on a release build whose speed
    they do not measure."""
    if os.environ.get("FERRY_BIN"):
        path = os.environ["FERRY_BIN"]
        if not os.access(path, os.X_OK):
            die(f"FERRY_BIN={path} is not an executable file")
        log(f"using FERRY_BIN={path}")
        return path
    path = ferry_bin()
    if no_build:
        if not os.access(path, os.X_OK):
            die(f"--no-build given but {path} does not exist; build it first")
        log(f"using existing {path} (--no-build)")
        return path
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir())
    log(f"building ferry: cargo build --release (CARGO_TARGET_DIR={env['CARGO_TARGET_DIR']})")
    t0 = time.monotonic()
    r = subprocess.run(["cargo", "build", "--release", "--bin", "ferry"], cwd=REPO, env=env)
    if r.returncode != 0:
        die("cargo build --release failed (see above); fix the build or pass --no-build "
            "to use the binary already in target/release")
    log(f"build done in {time.monotonic() - t0:.1f} s")
    return path


def git_describe():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml",
                                "Cargo.lock", "migrations"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return rev + ("+uncommitted changes" if dirty else "")
    except Exception:
        return "unknown"


def insert_deliveries(con, columns, rows):
    """Bulk-inserts delivery rows given with a `body` column, in the store's schema: since
    migration 0014 a body is a row of `delivery_bodies`, so rows get explicit ids (the next
    ones) and their bodies go there."""
    split = con.execute(
        "SELECT 1 FROM sqlite_master WHERE name = 'delivery_bodies'").fetchone() is not None
    if not split:
        marks = ",".join("?" * len(columns))
        con.executemany(f"INSERT INTO deliveries ({', '.join(columns)}) VALUES ({marks})", rows)
        return
    at = columns.index("body")
    rest = columns[:at] + columns[at + 1:]
    first = con.execute(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0),"
        " COALESCE((SELECT MAX(id) FROM deliveries), 0)) + 1").fetchone()[0]
    marks = ",".join("?" * (len(rest) + 1))
    con.executemany(f"INSERT INTO deliveries (id, {', '.join(rest)}) VALUES ({marks})",
                    ((first + k,) + tuple(r[:at]) + tuple(r[at + 1:]) for k, r in enumerate(rows)))
    con.executemany("INSERT INTO delivery_bodies (delivery_id, body) VALUES (?, ?)",
                    ((first + k, r[at]) for k, r in enumerate(rows)))


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def sign(body):
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def write_config(path, port, data_dir, command, timeout="1m", database=None, node=None,
                 lease=None):
    """A ferry config: app `bench`, service `web` running `command`. Without database, node
    and lease it is the single SQLite ferry every bench has used; with them, one replica of
    several sharing a PostgreSQL database (`[server] database`, `node`, `lease`)."""
    cmd = ", ".join(json.dumps(c) for c in command)
    replica = "".join(f'{key} = "{value}"\n' for key, value in
                      (("database", database), ("node", node), ("lease", lease)) if value)
    with open(path, "w") as f:
        f.write(f"""# written by bench/{os.path.basename(sys.argv[0])}
[server]
listen = "{HOST}:{port}"
data_dir = "{data_dir}"
{replica}admin_token = "{ADMIN_TOKEN}"
body_limit = "1MiB"
# one load generator on one address: the per-client rate limit would measure itself
rate_per_client = "off"
max_connections = 4096   # wrk runs up to 2000 connections

[apps.{APP}]
token = "{HOOK_TOKEN}"
[apps.{APP}.verify]
github = "{SECRET}"

[apps.{APP}.services.web]
git = {{ repo = "Codertocat/Hello-World", branch = "main" }}
command = [{cmd}]
timeout = "{timeout}"
""")


class Ferry:
    """One ferry process: started on a config, its stderr in a file."""

    LISTENING = re.compile(r"listening addr=(\S+)")

    def __init__(self, binary, config, port, log_path, rust_log="warn,ferry::server=info"):
        self.binary, self.config, self.port, self.log_path = binary, config, port, log_path
        self.rust_log = rust_log
        self.proc = None

    def start(self, timeout=30.0):
        logf = open(self.log_path, "ab")
        start_at = logf.tell()
        env = dict(os.environ)
        # None: RUST_LOG unset, so ferry logs at its default level (what users run).
        env.pop("RUST_LOG", None)
        if self.rust_log is not None:
            env["RUST_LOG"] = self.rust_log
        self.proc = subprocess.Popen([self.binary, "serve", "--config", self.config],
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                die(f"ferry exited with {self.proc.returncode} at start; log: {self.log_path}\n"
                    + self.log_tail())
            with open(self.log_path, "rb") as f:
                f.seek(start_at)
                if self.LISTENING.search(f.read().decode("utf-8", "replace")):
                    return self
            time.sleep(0.02)
        self.kill()
        die(f"ferry did not log 'listening' within {timeout} s; log: {self.log_path}")

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def stop(self):
        """SIGTERM (graceful), then SIGKILL if it takes too long."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def request(port, method, path, body=None, headers=None, timeout=30.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def api(port, path, timeout=60.0):
    status, body = request(port, "GET", path,
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=timeout)
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}: {body[:200]!r}")
    return json.loads(body)


def list_all(port, kind, max_pages=1000):
    """Every delivery (kind="deliveries", of the bench app) or deployment, following
    next_before; bounded to max_pages pages of 10000."""
    out = []
    before = None
    for _ in range(max_pages):
        q = f"/api/v1/{kind}?limit=10000" + (f"&app={APP}" if kind == "deliveries" else "")
        if before is not None:
            q += f"&before={before}"
        page = api(port, q, timeout=300.0)
        out.extend(page[kind])
        before = page.get("next_before")
        if before is None:
            return out
    raise RuntimeError(f"more than {max_pages} pages of {kind}")


_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_time(text):
    """Seconds since the epoch (float) of an RFC 3339 time: ferry's (milliseconds, `Z`) or
    Docker's (nanoseconds, `Z` or an offset). None for None or an empty string."""
    if not text:
        return None
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    frac = m.group(7) or "0"
    secs += int(frac) / 10 ** len(frac)
    tz = m.group(8)
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs


def percentile(values, p):
    """The p-th percentile (0-100) of values by the nearest-rank method (a value that occurred:
    with 10 samples, p90 is the 9th smallest); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def metrics(port):
    status, body = request(port, "GET", "/metrics",
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r'(\w+)\{(\w+)="(\w+)"\} (\d+)', line)
        if m:
            out[(m.group(1), m.group(3))] = int(m.group(4))
    return out


def wait_idle(port, timeout):
    """Waits until ferry has planned every delivery (the newest delivery is planned: the planner
    goes oldest first) and no deployment is queued or running. Returns seconds waited, or None
    on timeout."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        try:
            newest = api(port, f"/api/v1/deliveries?app={APP}&limit=1")["deliveries"]
            planned = not newest or newest[0]["status"] != "received"
            m = metrics(port)
            active = m.get(("ferry_deployments", "queued"), 0) + \
                m.get(("ferry_deployments", "running"), 0)
            if planned and active == 0:
                return time.monotonic() - t0
        except (OSError, RuntimeError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    return None


def proc_status(pid):
    """VmRSS and VmHWM in KiB from /proc/PID/status (None when gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out


def _stat(path):
    """(name, fields after the name) of a /proc stat file, or None when it is gone. After the
    ")": state is fields[0]; utime is field 14 of stat, i.e. fields[11]."""
    try:
        with open(path) as f:
            head, rest = f.read().rsplit(")", 1)
    except OSError:
        return None
    return head.split("(", 1)[1], rest.split()


def proc_cpu(pid):
    """(own utime+stime, waited-for children's cutime+cstime) in seconds."""
    stat = _stat(f"/proc/{pid}/stat")
    if stat is None:
        return (0.0, 0.0)
    tick = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(x) for x in stat[1][11:15])
    return ((utime + stime) / tick, (cutime + cstime) / tick)


def thread_cpu(pid):
    """CPU seconds (utime+stime) of a process's live threads, summed by thread name
    (/proc/PID/task/*/stat; tokio's workers all share one name). Empty when gone."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        stat = _stat(f"/proc/{pid}/task/{tid}/stat")
        if stat is None:
            continue  # the thread ended meanwhile
        name, fields = stat
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def proc_io(pid):
    """Bytes the process caused to be written to storage (/proc/PID/io `write_bytes`: counted
    when a page is dirtied, so a page written twice before writeback counts twice), or None."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_info():
    info = {"nproc": os.cpu_count()}
    try:
        info["loadavg"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["mem_total_mib"] = int(line.split()[1]) // 1024
    except OSError:
        pass
    return info


def fs_type(path):
    try:
        r = subprocess.run(["df", "-T", path], capture_output=True, text=True, timeout=10)
        return r.stdout.splitlines()[-1].split()[1]
    except Exception:
        return "unknown"


PG_INSTALLS = "/usr/lib/postgresql"
PR_SET_PDEATHSIG = 1


def stop_on_sigterm():
    """Makes SIGTERM (and SIGHUP) end the bench like Ctrl-C does, so `finally` blocks and atexit
    handlers run (they stop PostgreSQL and the ferry processes)."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


class Postgres:
    """A throwaway PostgreSQL cluster for a bench: initdb in a temp dir, one `postgres` on a free
    loopback port, removed at the end.

    Unlike the tests' cluster (tests/common/postgres.rs: fsync=off), this one keeps PostgreSQL's
    defaults for durability — fsync on, synchronous_commit on, full_page_writes on — because
    the benches measure what an acknowledged delivery costs when it is durable. (`initdb
    --no-sync` only skips syncing initdb's own files, before anything is measured.)

    Stopped by stop() (fast shutdown, then SIGKILL), by an atexit handler (an exception,
    Ctrl-C, SIGTERM with stop_on_sigterm()), and, should the bench itself be killed with
    SIGKILL, by the kernel: the server is started with PR_SET_PDEATHSIG=SIGKILL (its backends
    notice the postmaster's death and exit). As root, initdb and postgres run as the `postgres`
    user (PostgreSQL refuses root)."""

    def __init__(self, max_connections=300, settings=()):
        self.bin = self.binaries()
        self.max_connections = max_connections
        self.settings = list(settings)  # more `-c name=value` for the server
        self.dir = None
        self.proc = None
        self.port = None
        self.owner = None
        self.version = None

    @staticmethod
    def binaries():
        best = None
        try:
            names = os.listdir(PG_INSTALLS)
        except OSError:
            names = []
        for name in names:
            try:
                v = tuple(int(x) for x in name.split("."))
            except ValueError:
                continue
            b = os.path.join(PG_INSTALLS, name, "bin")
            if os.access(os.path.join(b, "initdb"), os.X_OK) and (best is None or v > best[0]):
                best = (v, b)
        if best is None:
            die(f"PostgreSQL is not installed: no {PG_INSTALLS}/*/bin/initdb "
                "(Debian: apt-get install -y postgresql)")
        return best[1]

    @staticmethod
    def remove_leftovers():
        """Removes the clusters of benches that were killed (their pid is in the name)."""
        for name in os.listdir("/tmp"):
            m = re.match(r"ferry-bench-pg-(\d+)-", name)
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                shutil.rmtree(os.path.join("/tmp", name), ignore_errors=True)

    def _preexec(self, death_signal):
        owner = self.owner

        def run():
            if owner is not None:
                os.setgroups([])
                os.setgid(owner[1])
                os.setuid(owner[0])
            if death_signal:
                # After the uid change, which would clear it. Fires when this (the main)
                # thread of the bench exits.
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
                    os._exit(126)
        return run

    @staticmethod
    def _env():
        return {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    def start(self, timeout=30.0):
        if os.geteuid() == 0:
            import pwd
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                die("running as root, so PostgreSQL must run as the postgres user, "
                    "and there is none")
            self.owner = (pw.pw_uid, pw.pw_gid)
        self.remove_leftovers()
        self.dir = tempfile.mkdtemp(prefix=f"ferry-bench-pg-{os.getpid()}-", dir="/tmp")
        atexit.register(self.stop)
        data = os.path.join(self.dir, "data")
        os.makedirs(data)
        if self.owner:
            for p in (self.dir, data):
                os.chown(p, *self.owner)
        r = subprocess.run([os.path.join(self.bin, "initdb"), "-D", data, "-A", "trust",
                            "-U", "ferry", "--no-sync", "-E", "UTF8", "--locale=C"],
                           cwd=self.dir, env=self._env(), capture_output=True, text=True,
                           preexec_fn=self._preexec(False), stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            die(f"initdb failed ({r.returncode}): {r.stderr.strip()}{r.stdout.strip()}")
        self.log_path = os.path.join(self.dir, "server.log")
        for _ in range(5):
            port = free_port()
            logf = open(self.log_path, "ab")
            at = logf.tell()
            self.proc = subprocess.Popen(
                [os.path.join(self.bin, "postgres"), "-D", data, "-p", str(port), "-k",
                 self.dir, "-c", "listen_addresses=127.0.0.1",
                 "-c", f"max_connections={self.max_connections}",
                 "-c", "dynamic_shared_memory_type=mmap",
                 # durability as shipped: said explicitly, so the log and the report show it
                 "-c", "fsync=on", "-c", "synchronous_commit=on"]
                + [x for kv in self.settings for x in ("-c", kv)],
                cwd=self.dir, env=self._env(), stdin=subprocess.DEVNULL, stdout=logf,
                stderr=logf, preexec_fn=self._preexec(True))
            logf.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                ready = subprocess.run(
                    [os.path.join(self.bin, "pg_isready"), "-q", "-h", self.dir, "-p",
                     str(port), "-U", "ferry", "-d", "postgres"], env=self._env(),
                    stdin=subprocess.DEVNULL).returncode == 0
                if ready:
                    self.port = port
                    self.version = self.query("postgres", "SHOW server_version")
                    log(f"PostgreSQL {self.version} on {HOST}:{port} (fsync on, "
                        f"synchronous_commit on), cluster in {self.dir}")
                    return self
                time.sleep(0.05)
            with open(self.log_path, "rb") as f:
                f.seek(at)
                tail = f.read().decode("utf-8", "replace")
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
                die(f"postgres did not accept connections within {timeout:g} s:\n{tail}")
            if "already in use" not in tail:
                die(f"postgres exited ({self.proc.returncode}) at start:\n{tail}")
        die("postgres found no free port in 5 attempts")

    def query(self, db, sql):
        r = subprocess.run([os.path.join(self.bin, "psql"), "-h", self.dir, "-p",
                            str(self.port), "-U", "ferry", "-d", db, "-XAtq", "-c", sql],
                           env=self._env(), capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {r.stderr.strip()}")
        return r.stdout.strip()

    def create_database(self, name):
        """A new, empty database; returns its URL (TCP on loopback, as ferry connects)."""
        r = subprocess.run([os.path.join(self.bin, "createdb"), "-h", HOST, "-p",
                            str(self.port), "-U", "ferry", "-w", name],
                           env=self._env(), capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            die(f"createdb {name} failed: {r.stderr.strip()}")
        return f"postgres://ferry@{HOST}:{self.port}/{name}"

    def backend_pids(self):
        """The pids of the server's processes (postmaster's children: backends and helpers)."""
        if not self.proc:
            return []
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(x) for x in f.read().split()] + [self.proc.pid]
        except OSError:
            return [self.proc.pid]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
