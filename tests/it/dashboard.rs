//! The dashboard over plain HTTP, as a browser would see its answers: the login (wrong token
//! refused, rate-limited, the cookie's attributes, only local `next` paths), the security
//! headers of every page, the CSRF token on every POST, the session cookie accepted by the API
//! for GET only, and the static files' types and caching. What needs a real browser is in
//! `browser.rs`.

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use crate::support::*;

/// reqwest's `form` needs a feature ferry does not build it with.
trait FormBody {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
    }
}

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Logs in and returns the `Cookie` header value.
pub(crate) async fn login(ferry: &Ferry) -> String {
    let r = client()
        .post(ferry.url("/login"))
        .form_body(&[("token", ADMIN_TOKEN), ("next", "/deployments")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/deployments");
    let set = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    set.split(';').next().unwrap().to_string()
}

/// `GET path` as a browser with `cookie` (redirects not followed).
pub(crate) async fn get(ferry: &Ferry, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = client().get(ferry.url(path));
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    req.send().await.expect("GET")
}

/// The CSRF token the page at `path` puts in its forms.
async fn csrf_of(ferry: &Ferry, path: &str, cookie: &str) -> String {
    let page = get(ferry, path, Some(cookie)).await.text().await.unwrap();
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..at + 64].to_string()
}

fn assert_security_headers(h: &HeaderMap, what: &str) {
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for part in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "script-src 'self'",
    ] {
        assert!(csp.contains(part), "{what}: CSP {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: CSP {csp}");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{what}");
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{what}");
}

#[tokio::test]
async fn pages_need_a_login_and_the_login_needs_the_admin_token() {
    let ferry = Ferry::shop().start().await;
    let r = get(&ferry, "/deployments?app=shop", None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[header::LOCATION],
        "/login?next=%2Fdeployments%3Fapp%3Dshop"
    );
    assert_security_headers(r.headers(), "redirect");

    let wrong = client()
        .post(ferry.url("/login"))
        .form_body(&[("token", "not-the-token"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    assert!(wrong.text().await.unwrap().contains("wrong admin token"));

    let r = client()
        .post(ferry.url("/login"))
        .form_body(&[("token", ADMIN_TOKEN), ("next", "//evil.example/x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/", "only local paths");
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap();
    for attr in [
        "ferry_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP listener: {set}");

    let cookie = login(&ferry).await;
    let (_, _) = ferry.hook("shop").query("services=worker").deliver().await;
    for path in [
        "/",
        "/deployments",
        "/deployments?app=shop&service=worker&state=succeeded",
        "/deployments?state=queued&before=5",
        "/deployments/1",
        "/deliveries",
        "/deliveries?app=shop&status=planned",
        "/deliveries?status=rejected",
        "/deliveries/1",
        "/notifications",
        "/notifications?state=dead",
        "/login",
    ] {
        let r = get(&ferry, path, Some(&cookie)).await;
        assert_security_headers(r.headers(), path);
        if path == "/login" {
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "logged in already");
            continue;
        }
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
    }
    for (path, status) in [
        ("/deployments?state=exploded", StatusCode::BAD_REQUEST),
        ("/deliveries?status=lost", StatusCode::BAD_REQUEST),
        ("/deployments/999", StatusCode::NOT_FOUND),
        ("/deliveries/999", StatusCode::NOT_FOUND),
    ] {
        let r = get(&ferry, path, Some(&cookie)).await;
        assert_eq!(r.status(), status, "{path}");
        assert_security_headers(r.headers(), path);
    }
}

#[tokio::test]
async fn failed_logins_are_limited_per_client() {
    let ferry = Ferry::shop().start().await;
    let attempt = async |token: &str| {
        client()
            .post(ferry.url("/login"))
            .form_body(&[("token", token)])
            .send()
            .await
            .unwrap()
    };
    for _ in 0..10 {
        assert_eq!(attempt("guess-guess-guess").await.status(), 401);
    }
    let r = attempt(ADMIN_TOKEN).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right token waits"
    );
    assert!(r.headers().contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn every_post_needs_the_sessions_csrf_token() {
    let ferry = Ferry::shop().start().await;
    let cookie = login(&ferry).await;
    let token = csrf_of(&ferry, "/", &cookie).await;
    let post = async |path: &str, form: &[(&str, &str)]| {
        client()
            .post(ferry.url(path))
            .header(header::COOKIE, &cookie)
            .form_body(form)
            .send()
            .await
            .unwrap()
    };
    let deploy = [("app", "shop"), ("service", "worker")];
    for bad in [
        vec![],
        vec![("csrf", "00")],
        vec![("csrf", &*"ab".repeat(32))],
    ] {
        let mut form = bad.clone();
        form.extend(deploy);
        let r = post("/deploy", &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{bad:?}");
        assert!(r.text().await.unwrap().contains("CSRF"));
    }
    assert!(ferry.deliveries("").await.is_empty(), "nothing was stored");

    // Another session's token is refused too: tokens are bound to their session.
    let other = login(&ferry).await;
    let theirs = csrf_of(&ferry, "/", &other).await;
    assert_ne!(theirs, token);
    let mut form = vec![("csrf", theirs.as_str())];
    form.extend(deploy);
    assert_eq!(post("/deploy", &form).await.status(), StatusCode::FORBIDDEN);

    let mut form = vec![("csrf", token.as_str())];
    form.extend(deploy);
    let r = post("/deploy", &form).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let delivery = ferry.deliveries("").await[0]["id"].as_i64().unwrap();
    assert_eq!(
        r.headers()[header::LOCATION].to_str().unwrap(),
        format!("/deliveries/{delivery}")
    );
    let d = ferry.planned_deployment(delivery, "worker").await;
    assert_eq!(d["service"], "worker");

    // Logout needs the token too; afterwards the cookie opens nothing.
    assert_eq!(post("/logout", &[]).await.status(), StatusCode::FORBIDDEN);
    let r = post("/logout", &[("csrf", token.as_str())]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        get(&ferry, "/", Some(&cookie)).await.status(),
        StatusCode::SEE_OTHER
    );
    let api = get(&ferry, "/api/v1/deployments", Some(&cookie)).await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_api_takes_the_session_cookie_for_reads_only() {
    let ferry = Ferry::shop().start().await;
    let cookie = login(&ferry).await;
    let r = get(&ferry, "/api/v1/deployments", Some(&cookie)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = client()
        .post(ferry.url("/api/v1/apps/shop/deploy"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "never for POST");
    assert!(ferry.deliveries("").await.is_empty());
    let forged = "ferry_session=9999999999.00.00";
    let r = get(&ferry, "/api/v1/deployments", Some(forged)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn static_files_have_their_types_and_are_cached() {
    let ferry = Ferry::shop().start().await;
    let cookie = login(&ferry).await;
    let page = get(&ferry, "/", Some(&cookie)).await.text().await.unwrap();
    for (ext, ty) in [("css", "text/css"), ("js", "text/javascript")] {
        let start = page
            .find("/static/app-")
            .map(|i| &page[i..])
            .and_then(|rest| rest.split('"').find(|s| s.ends_with(&format!(".{ext}"))))
            .unwrap_or_else(|| panic!("no .{ext} link in the page"));
        let url = start.to_string();
        let r = get(&ferry, &url, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(ty)
        );
        let cache = r.headers()[header::CACHE_CONTROL].to_str().unwrap();
        assert!(cache.contains("immutable"), "{cache}");
        let etag = r.headers()[header::ETAG].clone();
        let again = client()
            .get(ferry.url(&url))
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }
    let r = get(&ferry, "/static/app-0000000000000000.css", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_an_admin_listener_the_dashboard_is_only_there() {
    let admin_port = free_port();
    let config = SHOP.replace(
        "admin_token = \"${FERRY_ADMIN_TOKEN}\"\n",
        &format!(
            "admin_token = \"${{FERRY_ADMIN_TOKEN}}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n"
        ),
    );
    let ferry = Ferry::with_config(&config).start().await;
    for path in ["/", "/login", "/deployments"] {
        let r = get(&ferry, path, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "main listener {path}");
    }
    let admin = format!("http://127.0.0.1:{admin_port}");
    let r = client().get(format!("{admin}/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/login?next=%2F");
    let r = client()
        .post(format!("{admin}/login"))
        .form_body(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        !set.contains("Secure"),
        "the admin listener is plain HTTP: {set}"
    );
}

#[tokio::test]
async fn over_https_the_cookie_is_secure() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&pem, key.signing_key.serialize_pem()).unwrap();
    let config = SHOP.replace(
        "admin_token = \"${FERRY_ADMIN_TOKEN}\"\n",
        &format!(
            "admin_token = \"${{FERRY_ADMIN_TOKEN}}\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
            cert.display(),
            pem.display()
        ),
    );
    let ferry = Ferry::with_config(&config).start().await;
    let port = ferry.base_url().rsplit(':').next().unwrap().to_string();
    let https = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = https
        .post(format!("https://127.0.0.1:{port}/login"))
        .form_body(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");
}

#[tokio::test]
async fn a_dead_notification_is_retried_from_its_page() {
    use crate::fake_http::{FakeHttp, Reply as Answer};
    let receiver = FakeHttp::start();
    receiver.answer(Answer::status(500).body("down"));
    let config = SHOP.replace(
        "admin_token = \"${FERRY_ADMIN_TOKEN}\"\n",
        "admin_token = \"${FERRY_ADMIN_TOKEN}\"\nnotify_retry_for = \"1s\"\n",
    ) + &crate::notifications::standard(
        &receiver.url("/in"),
        "events = [\"deployment.succeeded\"]",
    );
    let ferry = Ferry::with_config(&config).start().await;
    ferry.hook("shop").query("services=worker").deliver().await;
    let id = eventually("a dead notification", WAIT, async || {
        let list = ferry.get("/api/v1/notifications?state=dead").await;
        match list["notifications"][0]["id"].as_i64() {
            Some(id) => Ok(id),
            None => Err(list.to_string()),
        }
    })
    .await;

    let cookie = login(&ferry).await;
    let page = get(&ferry, "/notifications?state=dead", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    let action = format!("/notifications/{id}/retry");
    assert!(page.contains(&action), "a Retry button: {page}");
    assert!(page.contains("deployment.succeeded"), "{page}");
    let token = csrf_of(&ferry, "/notifications", &cookie).await;
    let r = client()
        .post(ferry.url(&action))
        .header(header::COOKIE, &cookie)
        .form_body(&[("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let n = ferry.get(&format!("/api/v1/notifications/{id}")).await;
    assert!(n["retried_at"].is_string(), "retried: {n:#}");
}
