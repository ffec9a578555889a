//! The accept loop every listener runs: TCP accept → TLS handshake (when configured, bounded by
//! [`Settings::handshake_timeout`]) → one hyper connection (HTTP/1.1 or HTTP/2, by ALPN or the
//! HTTP/2 preface) → the axum router.
//!
//! Every request carries axum's `ConnectInfo<SocketAddr>` (the client's address, for rate
//! limits and allowlists) and, when the client presented a verified certificate, a
//! [`PeerCertificate`]. Shutdown: on `stop` the listener closes, handshakes in progress are
//! dropped, open connections finish the requests they have (HTTP/1.1 closes after the current
//! response, HTTP/2 sends GOAWAY) and [`serve`] returns when the last one has closed.
//!
//! Per-connection limits belong in [`Settings`] and in [`serve`]'s loop (before `accept` for a
//! connection cap, in [`Settings::http`] for hyper's own timeouts).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::tls::{PeerCertificate, Tls};

/// How long a client may take to complete the TLS handshake after connecting. A client that
/// connects and never finishes the handshake (a slowloris on TLS) is cut off after this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How one listener serves its connections.
#[derive(Clone)]
pub struct Settings {
    /// HTTPS when set (the main listener with `server.tls`); plain HTTP otherwise.
    pub tls: Option<Arc<Tls>>,
    pub handshake_timeout: Duration,
}

impl Settings {
    /// The settings of one of `server`'s listeners; `tls` only for the main one. Limits read
    /// from `[server]` belong here, so both listeners get them.
    pub fn for_server(_server: &crate::config::Server, tls: Option<Arc<Tls>>) -> Settings {
        Settings {
            tls,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// Plain HTTP with the defaults (for tests and embedders).
    pub fn plain() -> Settings {
        Settings {
            tls: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// hyper's connection builder: HTTP/1.1 and HTTP/2 on the same port.
    fn http(&self) -> auto::Builder<TokioExecutor> {
        auto::Builder::new(TokioExecutor::new())
    }
}

/// Serves `router` on `listener` until `stop`, then waits for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let settings = Arc::new(settings);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning (as axum does).
                tracing::error!(error = %e, "cannot accept a connection");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let settings = settings.clone();
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Some(tls) = &settings.tls else {
                serve_stream(&settings, tcp, peer, None, router, watcher).await;
                return;
            };
            let handshake =
                tokio::time::timeout(settings.handshake_timeout, tls.acceptor().accept(tcp));
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                r = handshake => r,
            };
            let stream = match stream {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, timeout = ?settings.handshake_timeout, "TLS handshake timed out; connection closed");
                    return;
                }
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .filter(|c| !c.is_empty())
                .map(|c| PeerCertificate {
                    chain: Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()),
                });
            serve_stream(&settings, stream, peer, cert, router, watcher).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn serve_stream<S>(
    settings: &Settings,
    stream: S,
    peer: SocketAddr,
    cert: Option<PeerCertificate>,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = settings.http();
    let conn =
        http.serve_connection_with_upgrades(TokioIo::new(stream), service(router, peer, cert));
    finish(watcher.watch(conn).await, peer);
}

/// The router as a hyper service that adds the connection's facts to every request.
fn service(
    router: Router,
    peer: SocketAddr,
    cert: Option<PeerCertificate>,
) -> TowerToHyperService<
    impl tower::Service<
        http::Request<Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
        Future = impl Send,
    > + Clone,
> {
    TowerToHyperService::new(router.map_request(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(cert) = &cert {
            req.extensions_mut().insert(cert.clone());
        }
        req
    }))
}

fn finish(result: Result<(), Box<dyn std::error::Error + Send + Sync>>, peer: SocketAddr) {
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Errors of one connection that `accept` reports; the listener itself is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interface other layers rely on: every request carries the client's address as
    /// `ConnectInfo<SocketAddr>`; without TLS there is no `PeerCertificate`.
    #[tokio::test]
    async fn requests_carry_the_client_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/",
            axum::routing::get(
                |ConnectInfo(peer): ConnectInfo<SocketAddr>,
                 cert: Option<axum::Extension<PeerCertificate>>| async move {
                    format!("{peer} {}", cert.is_some())
                },
            ),
        );
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, Settings::plain(), router, stop.clone()));
        let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local = socket.local_addr().unwrap();
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, String>(TokioIo::new(socket))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/")
            .header("host", "x")
            .body(String::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(String::from_utf8_lossy(&body), format!("{local} false"));
        drop(send);
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
