//! Every HTTP client ferry builds for its own outgoing calls (Docker Hub callbacks, health
//! probes, the CLI's API calls) starts here, so they share one rule: redirects are not
//! followed. A callback or probe target answering 3xx gets that status as its answer; it
//! cannot bounce ferry's request (and the data in it) to an address nobody configured.

use std::time::Duration;

/// A client builder with ferry's rules and `timeout` per request.
pub(crate) fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
}

/// A client builder with ferry's rules for long-lived streams (Server-Sent Events): no
/// deadline for the whole response, but a connection silent for `idle` is given up (ferry's
/// streams send a keep-alive every 15 s).
pub(crate) fn stream_builder(idle: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(idle)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A real peer answering every request with a 302 to another path, recording the paths.
    #[tokio::test]
    async fn a_redirect_is_answered_not_followed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push(path);
                let answer = format!(
                    "HTTP/1.1 302 Found\r\nLocation: http://{addr}/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        let client = super::builder(std::time::Duration::from_secs(5))
            .no_proxy()
            .build()
            .unwrap();
        let r = client
            .post(format!("http://{addr}/callback"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 302);
        assert_eq!(*seen.lock().unwrap(), vec!["/callback".to_string()]);
    }
}
