//! The dashboard in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver` (WebDriver, with the `fantoccini` client), both started by the test itself
//! on a free port. Log in, see the apps, deploy and watch the log arrive live, reload in the
//! middle of it, replay a delivery, cancel a queued deployment, a forged CSRF token refused,
//! log out — and a screenshot of each page in `target/screenshots/`.
//!
//! Marked `#[ignore = "needs chromium …"]` like the other tests that need what not every
//! machine has (see `support::unavailable`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::*;

/// A deploy command that prints `tick 1` … `tick 40`, four a second (10 s: long enough to be
/// seen running on a loaded machine).
const TICK_SH: &str =
    "#!/bin/sh\nfor i in $(seq 1 \"${TICKS:-40}\"); do echo \"tick $i\"; sleep 0.25; done\n";

/// [`SHOP`] plus an app `clock` whose service `tick` runs [`TICK_SH`].
fn config() -> String {
    format!(
        "{SHOP}\n[apps.clock]\ntoken = \"clock-token-123456\"\n\n[apps.clock.services.tick]\ncommand = [\"{{dir}}/tick.sh\"]\ntimeout = \"60s\"\n"
    )
}

async fn ferry() -> Ferry {
    Ferry::with_config(&config())
        .script("tick.sh", TICK_SH)
        .start()
        .await
}

/// `chromedriver` (its own process group, so chromium goes with it) and a session.
struct Browser {
    client: Client,
    driver: Child,
}

impl Browser {
    /// `None` (after `support::unavailable`) when chromium or chromedriver is missing.
    async fn start() -> Option<Browser> {
        for tool in ["chromedriver", "chromium"] {
            if Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
            {
                unavailable(&format!(
                    "{tool} is not installed (apt-get install chromium chromium-driver)"
                ));
                return None;
            }
        }
        let port = free_port();
        use std::os::unix::process::CommandExt;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let caps = json!({
            "goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--window-size=1280,900", "--disable-dev-shm-usage"],
            }
        });
        let caps = caps.as_object().expect("object").clone();
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually("chromedriver to accept a session", WAIT, async || {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        Some(Browser { client, driver })
    }

    async fn goto(&self, ferry: &Ferry, path: &str) {
        self.client.goto(&ferry.url(path)).await.expect("goto");
    }

    async fn path(&self) -> String {
        let u = self.client.current_url().await.expect("url");
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Clicks `css` once it is on the page (it may still be loading, or a live refresh may
    /// just have replaced it: then it is found again).
    async fn click(&self, css: &str) {
        eventually(&format!("a click on {css}"), WAIT, async || {
            let e = self
                .client
                .find(Locator::Css(css))
                .await
                .map_err(|e| e.to_string())?;
            e.click().await.map_err(|e| e.to_string())
        })
        .await
    }

    /// Waits until the element `css` holds `needle`; returns its text.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        eventually(&format!("{css} to contain {needle:?}"), WAIT, async || {
            let t = self.text(css).await;
            if t.contains(needle) { Ok(t) } else { Err(t) }
        })
        .await
    }

    async fn wait_path(&self, prefix: &str) -> String {
        eventually(&format!("a page under {prefix}"), WAIT, async || {
            let p = self.path().await;
            if p.starts_with(prefix) { Ok(p) } else { Err(p) }
        })
        .await
    }

    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn login(&self, ferry: &Ferry, token: &str) {
        self.goto(ferry, "/login").await;
        let field = self
            .client
            .find(Locator::Id("token"))
            .await
            .expect("token field");
        field.send_keys(token).await.expect("type token");
        self.click("form.login button[type=submit]").await;
        // The answer: another page, or the form again with the reason.
        eventually("the login's answer", WAIT, async || {
            let error = self.client.find(Locator::Id("login-error")).await.is_ok();
            let p = self.path().await;
            if error || !p.starts_with("/login") {
                Ok(())
            } else {
                Err(p)
            }
        })
        .await;
    }

    async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.driver.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test does not reach `stop`: chromedriver and chromium go with their group.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.driver.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.driver.wait();
    }
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: cargo test -- --include-ignored"]
async fn log_in_see_the_apps_and_log_out() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let ferry = ferry().await;
    let (_, _) = ferry.hook("shop").query("services=worker").deliver().await;
    let push = ferry
        .signed_push(&push_value(REPO, "master", &sha(1), &commit_time(1)))
        .await;
    ferry.settle(push).await;

    b.goto(&ferry, "/deployments").await;
    assert!(
        b.path().await.starts_with("/login?next="),
        "{}",
        b.path().await
    );
    b.screenshot("login").await;
    b.login(&ferry, "not-the-admin-token").await;
    b.wait_text("#login-error", "wrong admin token").await;
    assert!(b.path().await.starts_with("/login"));

    b.login(&ferry, ADMIN_TOKEN).await;
    b.wait_text("h1", "Overview").await;
    let table = b.wait_text("#services table", "clock").await;
    for name in [
        "shop",
        "web",
        "worker",
        "tick",
        "succeeded",
        "delivery #1 from generic",
    ] {
        assert!(table.contains(name), "{name} in {table}");
    }
    assert_eq!(b.text("h1").await, "Overview");
    b.screenshot("overview").await;

    for (path, name) in [
        ("/deployments", "deployments"),
        ("/deliveries", "deliveries"),
        ("/notifications", "notifications"),
    ] {
        b.goto(&ferry, path).await;
        assert!(!b.text("h1").await.is_empty(), "{path}");
        b.screenshot(name).await;
    }

    // Phone width: nothing but the tables' own scrolling boxes is wider than the screen.
    b.client.set_window_size(360, 780).await.expect("resize");
    b.goto(&ferry, "/").await;
    let overflow = b
        .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        .await;
    let wide = b.js("return [window.innerWidth, document.documentElement.clientWidth, ...Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1).slice(0, 8).map(e => e.tagName + '.' + e.className + ':' + Math.round(e.getBoundingClientRect().right))]").await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "page wider than 360 px by {overflow}: {wide}"
    );
    b.screenshot("overview-phone").await;
    b.client.set_window_size(1280, 900).await.expect("resize");

    b.click("form.logout button").await;
    b.wait_path("/login").await;
    b.goto(&ferry, "/").await;
    assert!(
        b.path().await.starts_with("/login"),
        "logged out: {}",
        b.path().await
    );
    b.stop().await;
}

/// The issue's basic accessibility, on every kind of page: a language, one h1 and no skipped
/// heading level, a label for every control, a name for every button and link, no control
/// taken out of the keyboard's reach, and body text contrast of at least 4.5:1.
#[tokio::test]
#[ignore = "needs chromium and chromium-driver: cargo test -- --include-ignored"]
async fn every_page_passes_basic_accessibility_checks() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let ferry = ferry().await;
    let (_, _) = ferry.hook("shop").query("services=worker").deliver().await;
    let push = ferry
        .signed_push(&push_value(REPO, "master", &sha(1), &commit_time(1)))
        .await;
    ferry.settle(push).await;
    b.goto(&ferry, "/login").await;
    let problems = b.js(A11Y).await;
    assert_eq!(problems, json!([]), "accessibility of /login");
    b.login(&ferry, ADMIN_TOKEN).await;
    b.wait_text("h1", "Overview").await;
    for path in [
        "/",
        "/deployments",
        "/deployments/1",
        "/deliveries",
        "/deliveries/1",
        "/notifications",
    ] {
        b.goto(&ferry, path).await;
        assert!(!b.path().await.starts_with("/login"), "{path}: logged in");
        let problems = b.js(A11Y).await;
        assert_eq!(problems, json!([]), "accessibility of {path}");
    }
    b.stop().await;
}

/// Returns the page's accessibility problems as a list of strings (empty: none found).
const A11Y: &str = r#"
const out = [];
if (!document.documentElement.lang) out.push('no lang on <html>');
const h1 = document.querySelectorAll('h1').length;
if (h1 !== 1) out.push(h1 + ' h1 elements');
let last = 0;
for (const h of document.querySelectorAll('h1,h2,h3,h4,h5,h6')) {
  const level = +h.tagName[1];
  if (level > last + 1) out.push('heading ' + h.tagName + ' "' + h.textContent.trim() + '" skips a level');
  last = level;
}
for (const c of document.querySelectorAll('input,select,textarea')) {
  if (c.type === 'hidden' || c.type === 'submit') continue;
  const named = (c.labels && c.labels.length) || c.getAttribute('aria-label') || c.getAttribute('aria-labelledby');
  if (!named) out.push('unlabelled ' + c.tagName + ' ' + (c.name || c.id));
}
for (const e of document.querySelectorAll('button,a[href],input[type=submit]')) {
  const name = (e.textContent || e.value || '').trim() || e.getAttribute('aria-label') || e.getAttribute('title');
  if (!name) out.push('nameless ' + e.tagName + ' ' + e.outerHTML.slice(0, 80));
  if (e.getAttribute('tabindex') === '-1') out.push('out of keyboard reach: ' + e.outerHTML.slice(0, 80));
}
const rgb = s => (s.match(/[\d.]+/g) || []).slice(0, 3).map(Number);
const lum = ([r, g, b]) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
let bg = getComputedStyle(document.body).backgroundColor;
if (bg === 'rgba(0, 0, 0, 0)') bg = getComputedStyle(document.documentElement).backgroundColor;
if (bg === 'rgba(0, 0, 0, 0)') bg = 'rgb(255, 255, 255)';
const fg = getComputedStyle(document.body).color;
const [a, b] = [lum(rgb(fg)), lum(rgb(bg))];
const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
if (ratio < 4.5) out.push('body text contrast ' + ratio.toFixed(2) + ' (' + fg + ' on ' + bg + ')');
return out;
"#;

/// Each `tick N` line of the final log view, in order.
fn ticks(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.find("tick ").map(|i| l[i..].to_string()))
        .collect()
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: cargo test -- --include-ignored"]
async fn a_deploy_log_arrives_live_and_survives_a_reload() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let ferry = ferry().await;
    b.login(&ferry, ADMIN_TOKEN).await;
    b.wait_text("h1", "Overview").await;

    b.click("button[aria-label='Deploy clock/tick']").await;
    let delivery_page = b.wait_path("/deliveries/").await;
    // The page follows the events: the deployment shows up once planned.
    let link = eventually(
        "the deployment link on the delivery page",
        WAIT,
        async || match b
            .client
            .find(Locator::Css("#outcomes a[href^='/deployments/']"))
            .await
        {
            Ok(a) => Ok(a.attr("href").await.ok().flatten().unwrap_or_default()),
            Err(e) => Err(e.to_string()),
        },
    )
    .await;
    assert!(delivery_page.starts_with("/deliveries/"));
    b.goto(&ferry, &link).await;

    // Lines arrive while it runs.
    b.wait_text("#log", "tick 3").await;
    let state = ferry
        .deployment(link.trim_start_matches("/deployments/").parse().unwrap())
        .await;
    assert_eq!(
        state["state"], "running",
        "lines arrived before the end: {state:#}"
    );
    b.screenshot("deployment-live").await;

    // Reconnect in the middle: the new page's stream starts over; no line lost or doubled.
    b.js("location.reload(); return null").await;
    b.wait_text("#log-status", "ended: succeeded").await;
    let log = b.text("#log").await;
    let expected: Vec<String> = (1..=40).map(|i| format!("tick {i}")).collect();
    assert_eq!(ticks(&log), expected, "{log}");
    b.wait_text("#state", "succeeded").await;
    b.screenshot("deployment").await;
    b.stop().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: cargo test -- --include-ignored"]
async fn a_delivery_is_inspected_and_replayed() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let ferry = ferry().await;
    let payload = push_value(REPO, "master", &sha(1), &commit_time(1));
    let original = ferry.signed_push(&payload).await;
    ferry.settle(original).await;
    b.login(&ferry, ADMIN_TOKEN).await;
    b.wait_text("h1", "Overview").await;

    b.goto(&ferry, &format!("/deliveries/{original}")).await;
    let summary = b.wait_text("#summary", "github").await;
    assert!(summary.contains("verified"), "{summary}");
    let request = b.text("section[aria-labelledby='request-h']").await;
    assert!(request.contains("x-github-event"), "{request}");
    assert!(request.contains(&sha(1)), "the body: {request}");
    b.screenshot("delivery").await;

    b.click("#replay").await;
    let path = eventually("the replay's page", WAIT, async || {
        let p = b.path().await;
        if p != format!("/deliveries/{original}") && p.starts_with("/deliveries/") {
            Ok(p)
        } else {
            Err(p)
        }
    })
    .await;
    let replay: i64 = path.trim_start_matches("/deliveries/").parse().unwrap();
    b.wait_text("#replay-of", &format!("delivery #{original}"))
        .await;
    assert_eq!(ferry.delivery(replay).await["replay_of"], original);
    b.goto(&ferry, "/deliveries").await;
    b.wait_text("#list", &format!("replay of #{original}"))
        .await;
    b.stop().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: cargo test -- --include-ignored"]
async fn a_queued_deployment_is_cancelled_and_a_forged_form_refused() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let ferry = ferry().await;
    ferry.hold("worker");
    let first = ferry
        .hook("shop")
        .query("services=worker")
        .send()
        .await
        .accepted();
    let first = ferry.planned_deployment(first, "worker").await["id"]
        .as_i64()
        .unwrap();
    ferry.wait_state(first, "running").await;
    let second = ferry
        .hook("shop")
        .query("services=worker")
        .send()
        .await
        .accepted();
    let second = ferry.planned_deployment(second, "worker").await["id"]
        .as_i64()
        .unwrap();
    ferry.wait_state(second, "queued").await;

    b.login(&ferry, ADMIN_TOKEN).await;
    b.wait_text("h1", "Overview").await;
    b.goto(&ferry, &format!("/deployments/{second}")).await;
    b.wait_text("#state", "queued").await;

    // A POST from the page with a wrong token: 403, and the deployment is still queued.
    let status = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(location.pathname + '/cancel', {method: 'POST',
                   headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                   body: 'csrf=' + 'ab'.repeat(32)})
               .then(r => done(r.status), e => done(String(e)));",
            vec![],
        )
        .await
        .expect("fetch");
    assert_eq!(status, json!(403));
    assert_eq!(ferry.deployment(second).await["state"], "queued");

    b.click("#cancel").await;
    b.wait_text("#state", "cancelled").await;
    assert_eq!(ferry.deployment(second).await["state"], "cancelled");
    b.screenshot("deployment-cancelled").await;
    ferry.release("worker");
    ferry.wait_state(first, "succeeded").await;
    b.stop().await;
}
