//! Issue 8, part 6: slow clients, too many connections, rate limits, IP allowlists and
//! `X-Forwarded-For`. Each test is an attack that got through before: it talks to the real
//! server over raw TCP where HTTP clients would be too polite, and from a second loopback
//! address (127.0.0.2) where a second client address is needed.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Ferry, WAIT};

const BLOG_TOKEN: &str = "blog-token-123456";
const DOCS_TOKEN: &str = "docs-token-123456";
const SIGNED_TOKEN: &str = "signed-token-12345";
const SIGNED_SECRET: &str = "signed-secret";

/// Two apps without a `verify` scheme (`blog`, `docs`: plain POSTs are deliveries) and one
/// with GitHub signatures (`signed`). `@SERVER@` and `@BLOG@` take extra lines.
const EDGES: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
admin_token = "${FERRY_ADMIN_TOKEN}"
@SERVER@

[apps.blog]
token = "blog-token-123456"
@BLOG@

[apps.blog.services.site]
command = ["{dir}/deploy.sh", "site"]
timeout = "60s"

[apps.docs]
token = "docs-token-123456"

[apps.docs.services.site]
command = ["{dir}/deploy.sh", "docs"]
timeout = "60s"

[apps.signed]
token = "signed-token-12345"

[apps.signed.verify]
github = "signed-secret"

[apps.signed.services.site]
command = ["{dir}/deploy.sh", "signed"]
timeout = "60s"
"#;

fn config(server: &str, blog: &str) -> String {
    EDGES.replace("@SERVER@", server).replace("@BLOG@", blog)
}

/// `IP:PORT` of the server.
fn addr(ferry: &Ferry) -> String {
    ferry.base_url().trim_start_matches("http://").to_string()
}

/// An HTTP client whose connections come from `source` (any 127.x address is loopback).
fn client_from(source: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(source))
        .timeout(WAIT)
        .build()
        .expect("http client")
}

fn second_address() -> reqwest::Client {
    client_from(Ipv4Addr::new(127, 0, 0, 2))
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    text: String,
}

/// POSTs `{}` to `/hooks/APP/TOKEN` with extra headers.
async fn post(
    client: &reqwest::Client,
    ferry: &Ferry,
    app: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = client
        .post(ferry.url(&format!("/hooks/{app}/{token}")))
        .header("Content-Type", "application/json")
        .body("{}");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("hook request failed: {e}\n{}", ferry.stderr_text()));
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().expect("Retry-After in seconds"));
    let text = resp.text().await.unwrap();
    Answer {
        status,
        retry_after,
        text,
    }
}

async fn healthz(client: &reqwest::Client, ferry: &Ferry) -> u16 {
    let resp = client
        .get(ferry.url("/healthz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/healthz failed: {e}\n{}", ferry.stderr_text()));
    resp.status().as_u16()
}

/// Writes `first`, then one byte of `trickle` every 200 ms (a slowloris client), until the
/// server closes the connection; returns what the server sent and how long it took. Fails
/// the test if the connection is still open after [`WAIT`].
async fn trickle_until_closed(ferry: &Ferry, first: &[u8], trickle: u8) -> (String, Duration) {
    let mut stream = TcpStream::connect(addr(ferry)).await.expect("connect");
    stream.write_all(first).await.expect("write");
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            started.elapsed() < WAIT,
            "the server kept a slow client's connection open for {WAIT:?}; got so far: {:?}\n{}",
            String::from_utf8_lossy(&got),
            ferry.stderr_text()
        );
        tokio::select! {
            n = stream.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                // Errors once the server has closed; the read above then sees it.
                let _ = stream.write_all(&[trickle]).await;
            }
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_half_sent_header_is_cut_off_while_healthz_answers() {
    let ferry = Ferry::with_config(&config("header_timeout = \"1s\"", ""))
        .start()
        .await;
    let head = format!("POST /hooks/blog/{BLOG_TOKEN} HTTP/1.1\r\nHost: ferry\r\nX-Slow: ");
    let slow = trickle_until_closed(&ferry, head.as_bytes(), b'a');
    let check_health = async {
        // /healthz answers while the slow client holds its connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
        healthz(ferry.http(), &ferry).await
    };
    let ((_, took), health) = tokio::join!(slow, check_health);
    assert_eq!(health, 200);
    // Cut off by the header timeout (1 s), although a byte arrived every 200 ms.
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(took < Duration::from_secs(10), "closed only after {took:?}");
    assert!(ferry.deliveries("app=blog").await.is_empty());
}

#[tokio::test]
async fn a_slow_body_is_cut_off_with_408_and_nothing_is_stored() {
    let ferry = Ferry::with_config(&config("body_timeout = \"1s\"", ""))
        .start()
        .await;
    let head = format!(
        "POST /hooks/blog/{BLOG_TOKEN} HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    let (answer, took) = trickle_until_closed(&ferry, head.as_bytes(), b' ').await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("server.body_timeout"), "{answer}");
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "answered only after {took:?}"
    );
    assert!(ferry.deliveries("app=blog").await.is_empty());
    // A client that sends its body in time is served as before.
    assert_eq!(
        post(ferry.http(), &ferry, "blog", BLOG_TOKEN, &[])
            .await
            .status,
        202
    );
}

#[tokio::test]
async fn idle_connections_at_a_file_limit_of_64_do_not_stop_healthz_or_hooks() {
    // A long header timeout, so only the connection cap can keep ferry answering.
    let ferry = Ferry::with_config(&config("header_timeout = \"60s\"", ""))
        .nofile_limit(64)
        .start()
        .await;
    assert!(
        ferry
            .stderr_text()
            .contains("does not fit the open-file limit"),
        "max_connections was not lowered to fit 64 descriptors:\n{}",
        ferry.stderr_text()
    );
    let mut idle = Vec::new();
    for _ in 0..80 {
        idle.push(TcpStream::connect(addr(&ferry)).await.expect("connect"));
    }
    // A new connection per request: what must get through is a new client. (A pooled
    // keep-alive connection is idle, so new connections rightly push it out, and a request
    // sent on it just then fails as on any server that closes idle connections.)
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(WAIT)
        .build()
        .unwrap();
    let started = Instant::now();
    assert_eq!(healthz(&client, &ferry).await, 200);
    // A delivery still gets stored (the store keeps its descriptors).
    let hook = post(&client, &ferry, "blog", BLOG_TOKEN, &[]).await;
    assert_eq!(hook.status, 202, "{}", hook.text);
    assert!(
        started.elapsed() < WAIT,
        "answers took {:?}",
        started.elapsed()
    );
    // More idle connections keep coming; ferry keeps answering.
    for _ in 0..40 {
        idle.push(TcpStream::connect(addr(&ferry)).await.expect("connect"));
    }
    assert_eq!(healthz(&client, &ferry).await, 200);
    crate::support::eventually("the cap to be reported", WAIT, async || {
        let logs = ferry.stderr_text();
        if logs.contains("connection cap reached") {
            Ok(())
        } else {
            Err(logs)
        }
    })
    .await;
    drop(idle);
}

#[tokio::test]
async fn a_burst_beyond_the_app_rate_gets_429_with_retry_after_and_is_not_stored() {
    let ferry = Ferry::with_config(&config("", "[apps.blog.limits]\nrate = \"3/min\""))
        .start()
        .await;
    for _ in 0..3 {
        let a = post(ferry.http(), &ferry, "blog", BLOG_TOKEN, &[]).await;
        assert_eq!(a.status, 202, "{}", a.text);
    }
    for _ in 0..2 {
        let a = post(ferry.http(), &ferry, "blog", BLOG_TOKEN, &[]).await;
        assert_eq!(a.status, 429, "{}", a.text);
        assert!(a.text.contains("apps.blog.limits.rate"), "{}", a.text);
        // 3/min: the next one is allowed 20 s after the burst.
        let retry = a.retry_after.expect("Retry-After");
        assert!((1..=20).contains(&retry), "Retry-After: {retry}");
    }
    assert_eq!(ferry.deliveries("app=blog").await.len(), 3);
    // Another app is not limited by blog's rate.
    assert_eq!(
        post(ferry.http(), &ferry, "docs", DOCS_TOKEN, &[])
            .await
            .status,
        202
    );
    let metrics = ferry
        .http()
        .get(ferry.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ferry_hook_requests_total{outcome=\"limited\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_burst_from_one_address_gets_429_while_another_address_is_served() {
    let ferry = Ferry::with_config(&config("rate_per_client = \"2/min\"", ""))
        .start()
        .await;
    for _ in 0..2 {
        assert_eq!(
            post(ferry.http(), &ferry, "blog", BLOG_TOKEN, &[])
                .await
                .status,
            202
        );
    }
    // The limit is per address, over every app.
    let a = post(ferry.http(), &ferry, "docs", DOCS_TOKEN, &[]).await;
    assert_eq!(a.status, 429, "{}", a.text);
    assert!(a.text.contains("server.rate_per_client"), "{}", a.text);
    assert!(a.retry_after.is_some_and(|s| (1..=30).contains(&s)));
    let other = post(&second_address(), &ferry, "docs", DOCS_TOKEN, &[]).await;
    assert_eq!(other.status, 202, "{}", other.text);
    assert_eq!(ferry.deliveries("app=docs").await.len(), 1);
}

#[tokio::test]
async fn repeated_wrong_tokens_for_an_app_get_429_before_the_token_is_even_checked() {
    let ferry = Ferry::with_config(&config("failures_per_client = \"3/min\"", ""))
        .start()
        .await;
    for guess in ["guess-000000001", "guess-000000002", "guess-000000003"] {
        assert_eq!(
            post(ferry.http(), &ferry, "blog", guess, &[]).await.status,
            404
        );
    }
    let a = post(ferry.http(), &ferry, "blog", "guess-000000004", &[]).await;
    assert_eq!(a.status, 429, "{}", a.text);
    assert!(a.text.contains("server.failures_per_client"), "{}", a.text);
    assert!(a.retry_after.is_some_and(|s| (1..=20).contains(&s)));
    // Even the right token is refused now: a guess that happens to be right tells nothing.
    let right = post(ferry.http(), &ferry, "blog", BLOG_TOKEN, &[]).await;
    assert_eq!(right.status, 429, "{}", right.text);
    // Another address is unaffected.
    let other = post(&second_address(), &ferry, "blog", BLOG_TOKEN, &[]).await;
    assert_eq!(other.status, 202, "{}", other.text);
    assert_eq!(ferry.deliveries("app=blog").await.len(), 1);
    // So is another app from the same address: senders share addresses (GitHub's), and a
    // stranger's wrong token for one app must not lock that sender out of the others.
    let docs = post(ferry.http(), &ferry, "docs", DOCS_TOKEN, &[]).await;
    assert_eq!(docs.status, 202, "{}", docs.text);
}

#[tokio::test]
async fn repeated_wrong_signatures_get_429() {
    let ferry = Ferry::with_config(&config("failures_per_client = \"2/min\"", ""))
        .start()
        .await;
    let send = |secret: &str| {
        ferry
            .hook("signed")
            .token(SIGNED_TOKEN)
            .github("ping")
            .body("{}")
            .signed(secret)
            .send()
    };
    for _ in 0..2 {
        let r = send("a guess").await;
        assert_eq!(r.status, 401, "{}", r.text);
    }
    // Now even the right signature is refused: a right guess would tell nothing.
    let r = send(SIGNED_SECRET).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(
        r.error().contains("server.failures_per_client"),
        "{}",
        r.text
    );
    // The two 401s were recorded as rejected (as before); the 429 was not stored.
    assert_eq!(ferry.deliveries("app=signed").await.len(), 2);
}

#[tokio::test]
async fn allow_ips_refuses_an_address_outside_the_list_and_stores_nothing() {
    let ferry = Ferry::with_config(&config(
        "",
        "[apps.blog.verify]\nallow_ips = [\"127.0.0.1\"]",
    ))
    .start()
    .await;
    let outside = post(&second_address(), &ferry, "blog", BLOG_TOKEN, &[]).await;
    assert_eq!(outside.status, 403, "{}", outside.text);
    assert!(outside.text.contains("127.0.0.2"), "{}", outside.text);
    assert!(
        outside.text.contains("apps.blog.verify.allow_ips"),
        "{}",
        outside.text
    );
    let inside = post(ferry.http(), &ferry, "blog", BLOG_TOKEN, &[]).await;
    assert_eq!(inside.status, 202, "{}", inside.text);
    assert_eq!(ferry.deliveries("app=blog").await.len(), 1);
    // Other apps have no list.
    let docs = post(&second_address(), &ferry, "docs", DOCS_TOKEN, &[]).await;
    assert_eq!(docs.status, 202, "{}", docs.text);
}

#[tokio::test]
async fn x_forwarded_for_is_honoured_only_from_a_trusted_proxy() {
    let ferry = Ferry::with_config(&config(
        "trusted_proxies = [\"127.0.0.1\"]",
        "[apps.blog.verify]\nallow_ips = [\"203.0.113.0/24\"]",
    ))
    .start()
    .await;
    let xff = |v: &'static str| [("X-Forwarded-For", v)];
    // From the trusted proxy: the address it saw is the client's.
    let via_proxy = post(
        ferry.http(),
        &ferry,
        "blog",
        BLOG_TOKEN,
        &xff("203.0.113.5"),
    )
    .await;
    assert_eq!(via_proxy.status, 202, "{}", via_proxy.text);
    // From anyone else the header is ignored: the client is the TCP peer.
    let direct = post(
        &second_address(),
        &ferry,
        "blog",
        BLOG_TOKEN,
        &xff("203.0.113.5"),
    )
    .await;
    assert_eq!(direct.status, 403, "{}", direct.text);
    assert!(direct.text.contains("127.0.0.2"), "{}", direct.text);
    // Entries left of the proxy's own are the client's word: the right-most one counts.
    let forged = post(
        ferry.http(),
        &ferry,
        "blog",
        BLOG_TOKEN,
        &xff("203.0.113.5, 198.51.100.1"),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    assert!(forged.text.contains("198.51.100.1"), "{}", forged.text);
    // The proxy itself is not on the list.
    let no_header = post(ferry.http(), &ferry, "blog", BLOG_TOKEN, &[]).await;
    assert_eq!(no_header.status, 403, "{}", no_header.text);
    assert_eq!(ferry.deliveries("app=blog").await.len(), 1);
}

#[tokio::test]
async fn at_max_connections_with_every_connection_busy_new_ones_wait_and_are_served() {
    let ferry = Ferry::with_config(&config("max_connections = 2\nbody_timeout = \"2s\"", ""))
        .start()
        .await;
    let head = format!(
        "POST /hooks/blog/{BLOG_TOKEN} HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    let started = Instant::now();
    // Two connections with a request in progress (a slow body): the cap is reached and
    // neither may be pushed out.
    let slow = futures_util::future::join(
        trickle_until_closed(&ferry, head.as_bytes(), b' '),
        trickle_until_closed(&ferry, head.as_bytes(), b' '),
    );
    let check_health = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = healthz(ferry.http(), &ferry).await;
        (status, started.elapsed())
    };
    let (((a, _), (b, _)), (health, answered_after)) = tokio::join!(slow, check_health);
    assert!(
        a.starts_with("HTTP/1.1 408") && b.starts_with("HTTP/1.1 408"),
        "{a}\n{b}"
    );
    // Not refused: it waited until a busy connection ended (the body timeout, 2 s).
    assert_eq!(health, 200);
    assert!(
        answered_after >= Duration::from_millis(1900),
        "/healthz was answered after {answered_after:?}, while both connections were busy"
    );
}

/// HTTP/2 spoken frame by frame over plain TCP ("prior knowledge", which ferry's listener
/// accepts like HTTP/2 by ALPN), for what h2 clients are too polite to do.
mod h2 {
    use super::*;

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const END_HEADERS: u8 = 4;
    pub const ACK: u8 = 1;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut f = len[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// HPACK with every header a literal without indexing, new name, no Huffman (RFC 7541,
    /// 6.2.2): no table state to get wrong.
    pub fn headers(list: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in list {
            out.push(0);
            for s in [name, value] {
                out.push(u8::try_from(s.len()).ok().filter(|n| *n < 127).unwrap());
                out.extend_from_slice(s.as_bytes());
            }
        }
        out
    }

    pub struct Frame {
        pub kind: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
        /// When it arrived, since the test's start.
        pub at: Duration,
    }

    /// Reads frames until the server closes the connection, acknowledging its SETTINGS and
    /// answering its PINGs as a live client does (so only ferry's own limits can close it).
    /// Fails the test if the connection is still open after [`WAIT`].
    pub async fn until_closed(stream: &mut TcpStream, started: Instant) -> Vec<Frame> {
        let (mut buf, mut frames, mut chunk) = (Vec::new(), Vec::new(), [0u8; 4096]);
        loop {
            let n = match tokio::time::timeout_at((started + WAIT).into(), stream.read(&mut chunk))
                .await
            {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => 0,
                Err(_) => panic!("the HTTP/2 connection was still open after {WAIT:?}"),
            };
            if n == 0 {
                return frames;
            }
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (buf[3], buf[4]);
                let id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                let payload = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                let reply = match (kind, flags & ACK) {
                    (SETTINGS, 0) => Some(frame(SETTINGS, ACK, 0, &[])),
                    (PING, 0) => Some(frame(PING, ACK, 0, &payload)),
                    _ => None,
                };
                if let Some(reply) = reply {
                    // Fails once the server has closed; the next read sees that.
                    let _ = stream.write_all(&reply).await;
                }
                frames.push(Frame {
                    kind,
                    stream: id,
                    payload,
                    at: started.elapsed(),
                });
            }
        }
    }
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_header_timeout() {
    let ferry = Ferry::with_config(&config("header_timeout = \"1s\"", ""))
        .start()
        .await;
    let mut stream = TcpStream::connect(addr(&ferry)).await.expect("connect");
    let started = Instant::now();
    let mut hello = h2::PREFACE.to_vec();
    hello.extend(h2::frame(h2::SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.expect("write");
    // A live client that answers pings but sends no request.
    let frames = h2::until_closed(&mut stream, started).await;
    let closed = started.elapsed();
    assert!(
        frames.iter().any(|f| f.kind == h2::SETTINGS),
        "the server did not speak HTTP/2"
    );
    assert!(
        frames.iter().any(|f| f.kind == h2::GOAWAY),
        "closed without GOAWAY: {:?}\n{}",
        frames.iter().map(|f| (f.kind, f.at)).collect::<Vec<_>>(),
        ferry.stderr_text()
    );
    assert!(
        closed >= Duration::from_millis(900),
        "closed after {closed:?}"
    );
    assert!(
        closed < Duration::from_secs(10),
        "closed only after {closed:?}"
    );
}

#[tokio::test]
async fn a_slow_http2_body_is_cut_off_with_408_and_nothing_is_stored() {
    let ferry = Ferry::with_config(&config(
        "body_timeout = \"1s\"\nheader_timeout = \"2s\"",
        "",
    ))
    .start()
    .await;
    let mut stream = TcpStream::connect(addr(&ferry)).await.expect("connect");
    let started = Instant::now();
    let path = format!("/hooks/blog/{BLOG_TOKEN}");
    let mut request = h2::PREFACE.to_vec();
    request.extend(h2::frame(h2::SETTINGS, 0, 0, &[]));
    let head = h2::headers(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", &path),
        (":authority", "ferry"),
        ("content-type", "application/json"),
        ("content-length", "1000"),
    ]);
    request.extend(h2::frame(h2::HEADERS, h2::END_HEADERS, 1, &head));
    // One byte of the promised 1000, then nothing.
    request.extend(h2::frame(h2::DATA, 0, 1, b"{"));
    stream.write_all(&request).await.expect("write");
    let frames = h2::until_closed(&mut stream, started).await;
    let answer = frames
        .iter()
        .find(|f| f.kind == h2::DATA && f.stream == 1)
        .unwrap_or_else(|| panic!("no answer on the stream\n{}", ferry.stderr_text()));
    let text = String::from_utf8_lossy(&answer.payload);
    assert!(text.contains("server.body_timeout"), "{text}");
    assert!(
        answer.at >= Duration::from_millis(900),
        "answered after {:?}",
        answer.at
    );
    assert!(
        answer.at < Duration::from_secs(10),
        "answered only after {:?}",
        answer.at
    );
    assert!(ferry.deliveries("app=blog").await.is_empty());
}
