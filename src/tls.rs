//! HTTPS on the main listener: the rustls configuration, its reload on SIGHUP, and the client
//! certificate a connection presented (mTLS).
//!
//! [`Tls`] holds the current `rustls::ServerConfig` behind a lock; every handshake takes the
//! config current at that moment ([`Tls::acceptor`]), so [`Tls::reload`] swaps certificate and
//! key for new handshakes while open connections keep the session they have. A reload that fails
//! (missing file, bad PEM, key not matching the certificate) keeps the old config and says why.
//!
//! Versions: TLS 1.3 and 1.2 only (rustls speaks nothing older). ALPN offers `h2` and
//! `http/1.1`. With `server.client_ca`, client certificates are verified against that CA during
//! the handshake (a wrong CA or an expired certificate ends the handshake), but clients without
//! one are let through: apps without `verify.client_cert` still work, and apps with it refuse
//! such requests in `crate::ingress`. [`handshake`], run by the accept loop (`crate::listener`),
//! hands the verified chain to handlers as a [`PeerCertificate`] request extension.
//!
//! One crypto provider for the whole tree: aws-lc-rs (reqwest's too), passed explicitly so the
//! library does not depend on a process-wide default.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Says that the connection presented a client certificate chain and rustls verified it
/// against `server.client_ca`. Inserted into every request of that connection; absent when
/// the client presented none. (No handler reads the certificate itself yet, so it is not kept.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerCertificate;

/// The files of `server.tls` and `server.client_ca` (absolute, or relative to the config's
/// directory). Read at start and again on SIGHUP. It lives here, not in `config`, so the
/// config's validation can try the files (`server_config`) without a cycle.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates signed by this CA are verified; see `crate::config::Verify::client_cert`.
    pub client_ca: Option<PathBuf>,
}

/// What can be wrong with the TLS files. Each names the file; `crate::config` adds the key and
/// line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid PEM file: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("{} holds a certificate rustls cannot use as a CA: {source}", path.display())]
    BadCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("client CA {}: {message}", path.display())]
    ClientVerifier { path: PathBuf, message: String },
    #[error("certificate {} and key {}: {source}", cert.display(), key.display())]
    CertKey {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

impl TlsError {
    /// Which of the settings' files the error is about, so config errors can name the key.
    pub(crate) fn path(&self) -> &Path {
        match self {
            TlsError::Read { path, .. }
            | TlsError::Pem { path, .. }
            | TlsError::NoCertificate { path }
            | TlsError::NoKey { path }
            | TlsError::BadCa { path, .. }
            | TlsError::ClientVerifier { path, .. } => path,
            TlsError::CertKey { cert, .. } => cert,
        }
    }
}

/// The one crypto provider ferry uses (aws-lc-rs, as reqwest does).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Every certificate in a PEM file, in order.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        e => pem_error(path, e),
    })
}

/// The CA certificates client certificates must chain to.
pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

/// Builds the server config from the files as they are now.
pub(crate) fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let certs = load_certs(&settings.cert)?;
    let key = load_key(&settings.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::CertKey {
            cert: settings.cert.clone(),
            key: settings.key.clone(),
            source,
        })?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                // Apps without `verify.client_cert` must keep working for clients without one.
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::ClientVerifier {
                    path: ca.clone(),
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::CertKey {
            cert: settings.cert.clone(),
            key: settings.key.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The listener's TLS: settings and the config new handshakes use.
pub(crate) struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    pub(crate) fn load(settings: &TlsSettings) -> Result<Arc<Tls>, TlsError> {
        let config = server_config(settings)?;
        Ok(Arc::new(Tls {
            settings: settings.clone(),
            current: RwLock::new(config),
        }))
    }

    /// An acceptor with the config current now (for one handshake).
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        TlsAcceptor::from(config)
    }

    /// Reads the files again; on success new handshakes use them, on failure nothing changes.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.settings)?;
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }
}

/// The TLS side of a newly accepted connection (for `crate::listener::serve_with`): the
/// handshake with the config current now, and the client's verified certificate, if it
/// presented one, as an extension for every request on the connection.
pub(crate) async fn handshake(
    tls: Arc<Tls>,
    tcp: TcpStream,
) -> std::io::Result<(TlsStream<TcpStream>, http::Extensions)> {
    let stream = tls.acceptor().accept(tcp).await?;
    let mut extensions = http::Extensions::new();
    if stream
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|chain| !chain.is_empty())
    {
        extensions.insert(PeerCertificate);
    }
    Ok((stream, extensions))
}

/// Reloads `tls` on every SIGHUP until `stop`. Without TLS a SIGHUP is logged and ignored (it
/// no longer terminates ferry, so `systemctl reload` is always safe).
pub(crate) async fn reload_on_sighup(tls: Option<Arc<Tls>>, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files will not be reloaded");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        let Some(tls) = &tls else {
            tracing::info!("SIGHUP received; nothing to reload (no server.tls)");
            continue;
        };
        match tls.reload() {
            Ok(()) => tracing::info!(
                cert = %tls.settings.cert.display(),
                key = %tls.settings.key.display(),
                "SIGHUP: TLS certificate and key reloaded; new connections use them"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "SIGHUP: cannot reload TLS files; keeping the certificate in use"
            ),
        }
    }
}
