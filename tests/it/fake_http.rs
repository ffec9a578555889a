//! A local HTTP stand-in for the services ferry calls out to, which cannot run here: the
//! `[[notify]]` receivers, GitHub's deployments API, the commit-status APIs of GitLab, Gitea
//! and Bitbucket, Docker Hub's callback, and the endpoint a registry notifies.
//!
//! ```ignore
//! let fake = FakeHttp::start();                          // answers 200 until told otherwise
//! fake.then([Reply::json(500, json!({"message": "no"}))]) // the next request gets this
//!     .answer(Reply::status(201));                       // and every one after it this
//! let calls = fake.wait_ok(2, WAIT).await;               // the first two answered 2xx
//! assert_eq!(calls[0].header("content-type"), "application/json");
//! ```
//!
//! Each connection is served on its own thread: one HTTP/1.1 request (head, then a
//! `content-length` body), recorded as a [`Call`] (method, target as sent, lower-cased
//! headers, body, arrival time, the [`Reply`]) before it is answered, then `connection: close`.
//! The replies scripted with [`FakeHttp::then`] go first, one per request, in order; then the
//! default ([`FakeHttp::answer`], or computed from the request with [`FakeHttp::answer_with`]).
//! [`FakeHttp::down`] chooses the port but listens only from [`FakeHttp::up`] on, so ferry's
//! connections are refused until then. The listener stops when the last handle is dropped.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::support::{eventually, free_port};

/// How long a [`Reply::Hang`] holds its connection (longer than any timeout of ferry's).
const HANG: Duration = Duration::from_secs(60);

/// What the stand-in answers to one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// This status, these headers and this body (`content-length` and `connection: close` are
    /// added).
    Send {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Reads the request and never answers (holds the connection).
    Hang,
}

impl Reply {
    /// `status` with no body.
    pub fn status(status: u16) -> Reply {
        Reply::Send {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// `status` with a JSON body (and `content-type: application/json`).
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::status(status)
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    /// The same reply with this body.
    pub fn body(self, text: impl Into<String>) -> Reply {
        match self {
            Reply::Send {
                status, headers, ..
            } => Reply::Send {
                status,
                headers,
                body: text.into(),
            },
            Reply::Hang => panic!("a hanging reply has no body"),
        }
    }

    /// The same reply with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        match &mut self {
            Reply::Send { headers, .. } => headers.push((name.into(), value.into())),
            Reply::Hang => panic!("a hanging reply has no headers"),
        }
        self
    }

    /// The status answered; `None` for [`Reply::Hang`].
    pub fn code(&self) -> Option<u16> {
        match self {
            Reply::Send { status, .. } => Some(*status),
            Reply::Hang => None,
        }
    }
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target exactly as sent (percent-encoding kept).
    pub target: String,
    /// Names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Request {
    /// Header `name` (any case), `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A request the stand-in got (its fields through `Deref`), when, and what it answered.
#[derive(Clone, Debug)]
pub struct Call {
    pub request: Request,
    /// When it had been read (monotonic, for intervals).
    pub at: Instant,
    /// The same moment by the wall clock (to compare with epoch seconds, e.g. rate-limit resets).
    pub wall: SystemTime,
    pub reply: Reply,
}

impl Deref for Call {
    type Target = Request;

    fn deref(&self) -> &Request {
        &self.request
    }
}

impl Call {
    /// The status answered; `None` if the stand-in hung.
    pub fn status(&self) -> Option<u16> {
        self.reply.code()
    }

    /// Answered 2xx.
    pub fn ok(&self) -> bool {
        self.status().is_some_and(|s| (200..300).contains(&s))
    }

    /// The body answered, as JSON (`Null` if none or not JSON).
    pub fn reply_json(&self) -> Value {
        match &self.reply {
            Reply::Send { body, .. } => serde_json::from_str(body).unwrap_or(Value::Null),
            Reply::Hang => Value::Null,
        }
    }
}

type Answerer = dyn Fn(&Request) -> Reply + Send + Sync;

struct State {
    addr: String,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Arc<Answerer>>,
    calls: Mutex<Vec<Call>>,
    stop: AtomicBool,
}

/// Held by the handles only: stops the accept loop when the last one goes.
struct StopOnDrop(Arc<State>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so its thread ends (refused if it never listened).
        let _ = TcpStream::connect(&self.0.addr);
    }
}

/// A local HTTP server on 127.0.0.1 that records every request and answers as scripted (see
/// the module's doc). Clones share the server.
#[derive(Clone)]
pub struct FakeHttp {
    state: Arc<State>,
    _stop: Arc<StopOnDrop>,
}

impl FakeHttp {
    /// Listening now; answers 200 with no body until told otherwise.
    pub fn start() -> FakeHttp {
        let fake = FakeHttp::down();
        fake.up();
        fake
    }

    /// Its port is chosen, but nothing listens on it until [`FakeHttp::up`].
    pub fn down() -> FakeHttp {
        let state = Arc::new(State {
            addr: format!("127.0.0.1:{}", free_port()),
            script: Mutex::default(),
            default: Mutex::new(Arc::new(|_: &Request| Reply::status(200))),
            calls: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        FakeHttp {
            _stop: Arc::new(StopOnDrop(state.clone())),
            state,
        }
    }

    /// Starts listening on the port chosen before.
    pub fn up(&self) {
        let listener = TcpListener::bind(&self.state.addr).expect("bind the stand-in's port");
        let state = self.state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { break };
                let state = state.clone();
                std::thread::spawn(move || serve(&state, stream));
            }
        });
    }

    /// Answers the next requests with `replies`, one each, in order (after those scripted
    /// before), then goes back to the default.
    pub fn then(&self, replies: impl IntoIterator<Item = Reply>) -> &Self {
        self.state.script.lock().unwrap().extend(replies);
        self
    }

    /// Answers `reply` to every request the script does not cover, from now on.
    pub fn answer(&self, reply: Reply) -> &Self {
        self.answer_with(move |_| reply.clone())
    }

    /// Answers what `reply` makes of each request the script does not cover, from now on.
    pub fn answer_with(&self, reply: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> &Self {
        *self.state.default.lock().unwrap() = Arc::new(reply);
        self
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.state.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.state.addr)
    }

    /// Every request so far, in the order they were read.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The requests answered 2xx so far.
    pub fn ok_calls(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::ok).collect()
    }

    /// Waits until `n` requests came (however answered); returns them all.
    pub async fn wait_calls(&self, n: usize, timeout: Duration) -> Vec<Call> {
        self.wait(&format!("{n} requests"), timeout, || {
            let calls = self.calls();
            (calls.len() >= n).then_some(calls)
        })
        .await
    }

    /// Waits until `n` requests were answered 2xx; returns those.
    pub async fn wait_ok(&self, n: usize, timeout: Duration) -> Vec<Call> {
        self.wait(&format!("{n} requests answered 2xx"), timeout, || {
            let ok = self.ok_calls();
            (ok.len() >= n).then_some(ok)
        })
        .await
    }

    /// Waits for a request that `matches`; returns the first.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Call) -> bool,
    ) -> Call {
        self.wait(what, timeout, || self.calls().into_iter().find(&matches))
            .await
    }

    /// [`eventually`] `found` gives something; on a timeout it shows every request.
    async fn wait<T>(&self, what: &str, timeout: Duration, found: impl Fn() -> Option<T>) -> T {
        let what = format!("{what} at {}", self.state.addr);
        eventually(&what, timeout, async || {
            found().ok_or_else(|| format!("{:#?}", self.calls()))
        })
        .await
    }
}

/// Reads one request from `s`, records it with its reply, and answers (or hangs).
fn serve(state: &State, mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(request) = read_request(&mut s) else {
        return;
    };
    let (at, wall) = (Instant::now(), SystemTime::now());
    let scripted = state.script.lock().unwrap().pop_front();
    let reply = scripted.unwrap_or_else(|| {
        let default = state.default.lock().unwrap().clone();
        default(&request)
    });
    state.calls.lock().unwrap().push(Call {
        request,
        at,
        wall,
        reply: reply.clone(),
    });
    match reply {
        Reply::Send {
            status,
            headers,
            body,
        } => {
            let reason = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("X");
            let mut answer = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                answer.push_str(&format!("{name}: {value}\r\n"));
            }
            answer.push_str("\r\n");
            answer.push_str(&body);
            let _ = s.write_all(answer.as_bytes());
        }
        Reply::Hang => std::thread::sleep(HANG),
    }
}

/// One HTTP/1.1 request: the head, then as much body as `content-length` says.
fn read_request(s: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < end + 4 + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}
