//! `[server]`: where ferry listens and what its links say, its data dir and admin token, how
//! long it waits and retries, the connection and request limits (read by `listener` and
//! `edges`) and HTTPS. Every key has a default, so the section may be left out.

use std::path::Path;

use toml::Spanned;

use super::raw;
use super::validator::Validator;
use super::values::parse_size;
use super::{
    DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT, DEFAULT_FAILURES_PER_CLIENT, DEFAULT_HEADER_TIMEOUT,
    DEFAULT_LEASE, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_NOTIFY_RETRY_FOR,
    DEFAULT_RATE_PER_CLIENT, DEFAULT_SHUTDOWN_GRACE, MIN_TOKEN_LEN, Server,
};
use crate::secret::Secret;
use crate::tls::{TlsError, TlsSettings};

/// `[server]` as it is when the file sets nothing.
fn defaults(dir: &Path) -> Server {
    Server {
        listen: DEFAULT_LISTEN.to_string(),
        public_url: String::new(),
        data_dir: dir.join("ferry-data"),
        database: None,
        node: default_node(),
        lease: DEFAULT_LEASE,
        admin_token: None,
        body_limit: DEFAULT_BODY_LIMIT,
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        retry_interrupted: 1,
        keep: None,
        header_timeout: DEFAULT_HEADER_TIMEOUT,
        body_timeout: DEFAULT_BODY_TIMEOUT,
        max_connections: DEFAULT_MAX_CONNECTIONS,
        trusted_proxies: Vec::new(),
        rate_per_client: Some(DEFAULT_RATE_PER_CLIENT),
        failures_per_client: Some(DEFAULT_FAILURES_PER_CLIENT),
        tls: None,
        admin_listen: None,
        notify_retry_for: DEFAULT_NOTIFY_RETRY_FOR,
    }
}

impl Validator<'_> {
    pub(super) fn server(&mut self, raw: Option<Spanned<raw::Server>>, dir: &Path) -> Server {
        let mut server = defaults(dir);
        let Some(raw) = raw.map(Spanned::into_inner) else {
            server.public_url = format!("http://{}", server.listen);
            self.database(None, &mut server);
            return server;
        };
        self.server_addresses(&raw, &mut server, dir);
        self.database(raw.database.as_ref(), &mut server);
        self.replica(&raw, &mut server);
        self.admin_token(&raw, &mut server);
        self.server_work(&raw, &mut server);
        self.server_edges(&raw, &mut server);
        self.transport(&raw, &mut server, dir);
        server
    }

    /// `listen`, `public_url` (by default the listen address) and `data_dir`.
    fn server_addresses(&mut self, raw: &raw::Server, server: &mut Server, dir: &Path) {
        if let Some(v) = &raw.listen
            && let Some(s) = self.expand(v, "server.listen", false)
        {
            server.listen = s;
        }
        server.public_url = match &raw.public_url {
            Some(v) => match self.expand(v, "server.public_url", false) {
                Some(s) if s.starts_with("http://") || s.starts_with("https://") => {
                    s.trim_end_matches('/').to_string()
                }
                Some(s) => {
                    self.error(
                        Some(v.span()),
                        "server.public_url",
                        format!("{s:?} must start with http:// or https://"),
                    );
                    String::new()
                }
                None => String::new(),
            },
            None => format!("http://{}", server.listen),
        };
        if let Some(v) = &raw.data_dir
            && let Some(s) = self.expand(v, "server.data_dir", false)
        {
            server.data_dir = dir.join(s);
        }
    }

    /// `database`: PostgreSQL for replicas (`FERRY_DATABASE` when the key is not set); SQLite
    /// in `data_dir` without either.
    fn database(&mut self, raw: Option<&Spanned<raw::SecretValue>>, server: &mut Server) {
        const KEY: &str = "server.database";
        let (url, span) = match raw {
            Some(v) => (self.secret_value(v, KEY), Some(v.span())),
            None => match (self.env)("FERRY_DATABASE") {
                Some(url) if !url.is_empty() => {
                    // Kept from the deploy commands' environment, as secrets in `${…}` are.
                    self.secret_env_vars.push("FERRY_DATABASE".to_string());
                    (Some(url), None)
                }
                _ => return,
            },
        };
        let Some(url) = url else { return };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            server.database = Some(Secret::new(url));
        } else {
            // The value may hold a password: name its scheme only.
            let scheme = url.split_once("://").map_or("(none)", |(s, _)| s);
            let from = if raw.is_some() { KEY } else { "FERRY_DATABASE" };
            self.error(
                span,
                KEY,
                format!(
                    "{from} must be a postgres://… URL (SQLite, the default, needs no URL: leave it unset); its scheme is {scheme:?}"
                ),
            );
        }
    }

    /// `node` (this replica's name) and `lease` (how long its claims hold without a heartbeat).
    fn replica(&mut self, raw: &raw::Server, server: &mut Server) {
        if let Some(v) = &raw.node
            && let Some(name) = self.expand(v, "server.node", false)
        {
            match node_name_problem(&name) {
                None => server.node = name,
                Some(why) => self.error(Some(v.span()), "server.node", why),
            }
        }
        if let Some(v) = &raw.lease
            && let Some(d) = self.duration(v, "server.lease")
        {
            if d < std::time::Duration::from_secs(1) {
                self.error(
                    Some(v.span()),
                    "server.lease",
                    "must be at least 1s (it is renewed every third of it)".into(),
                );
            } else {
                server.lease = d;
            }
        }
    }

    /// `admin_token`, the API's bearer token.
    fn admin_token(&mut self, raw: &raw::Server, server: &mut Server) {
        if let Some(v) = &raw.admin_token
            && let Some(s) = self.secret_value(v, "server.admin_token")
        {
            if s.len() < MIN_TOKEN_LEN {
                self.error(
                    Some(v.span()),
                    "server.admin_token",
                    format!("must be at least {MIN_TOKEN_LEN} characters long"),
                );
            }
            server.admin_token = Some(Secret::new(s));
        }
    }

    /// How much ferry takes in and keeps, and how it ends and resumes work: `body_limit`,
    /// `shutdown_grace`, `keep`, `notify_retry_for`, `retry_interrupted`.
    fn server_work(&mut self, raw: &raw::Server, server: &mut Server) {
        if let Some(v) = &raw.body_limit {
            match parse_size(v.get_ref()) {
                Some(n) if n > 0 => server.body_limit = n,
                _ => self.error(
                    Some(v.span()),
                    "server.body_limit",
                    "invalid size (examples: 1048576, \"512KiB\", \"10MiB\")".into(),
                ),
            }
        }
        if let Some(v) = &raw.shutdown_grace
            && let Some(d) = self.duration(v, "server.shutdown_grace")
        {
            server.shutdown_grace = d;
        }
        if let Some(v) = &raw.keep {
            server.keep = self.duration(v, "server.keep");
        }
        if let Some(v) = &raw.notify_retry_for
            && let Some(d) = self.duration(v, "server.notify_retry_for")
        {
            server.notify_retry_for = d;
        }
        if let Some(v) = &raw.retry_interrupted {
            match u32::try_from(*v.get_ref()) {
                Ok(n) => server.retry_interrupted = n,
                Err(_) => self.error(
                    Some(v.span()),
                    "server.retry_interrupted",
                    "must be 0 or a positive number".into(),
                ),
            }
        }
    }

    /// `[server]` keys of the connection and request limits (see `listener` and `edges`).
    fn server_edges(&mut self, raw: &raw::Server, server: &mut Server) {
        if let Some(v) = &raw.header_timeout
            && let Some(d) = self.duration(v, "server.header_timeout")
        {
            server.header_timeout = d;
        }
        if let Some(v) = &raw.body_timeout
            && let Some(d) = self.duration(v, "server.body_timeout")
        {
            server.body_timeout = d;
        }
        if let Some(v) = &raw.max_connections {
            match usize::try_from(*v.get_ref()) {
                Ok(n) if n > 0 => server.max_connections = n,
                _ => self.error(
                    Some(v.span()),
                    "server.max_connections",
                    "must be a positive number".into(),
                ),
            }
        }
        server.trusted_proxies = self.cidrs(&raw.trusted_proxies, "server.trusted_proxies");
        if let Some(v) = &raw.rate_per_client {
            server.rate_per_client = self.rate(v, "server.rate_per_client", true);
        }
        if let Some(v) = &raw.failures_per_client {
            server.failures_per_client = self.rate(v, "server.failures_per_client", true);
        }
    }

    /// `server.tls`, `server.client_ca` and `server.admin_listen`. The TLS files are read and
    /// checked here, so `ferry check` finds a bad certificate before `ferry serve` does.
    fn transport(&mut self, raw: &raw::Server, server: &mut Server, dir: &Path) {
        self.admin_listen(raw, server);
        let Some(tls) = &raw.tls else {
            if let Some(ca) = &raw.client_ca {
                self.error(
                    Some(ca.span()),
                    "server.client_ca",
                    "needs server.tls: client certificates are only seen over HTTPS".into(),
                );
            }
            return;
        };
        let Some(settings) = self.tls_settings(raw, tls.get_ref(), dir) else {
            return;
        };
        if let Err(e) = crate::tls::server_config(&settings) {
            let (key, span) = tls_error_place(&e, &settings, raw, tls);
            self.error(Some(span), key, e.to_string());
        }
        // Links and the CLI's default server use the scheme the listener speaks.
        if raw.public_url.is_none()
            && let Some(rest) = server.public_url.strip_prefix("http://")
        {
            server.public_url = format!("https://{rest}");
        }
        server.tls = Some(settings);
    }

    /// `admin_listen`: the API's own plain-HTTP listener, on an address of its own.
    fn admin_listen(&mut self, raw: &raw::Server, server: &mut Server) {
        if let Some(v) = &raw.admin_listen
            && let Some(s) = self.expand(v, "server.admin_listen", false)
        {
            if s.trim().is_empty() {
                self.error(Some(v.span()), "server.admin_listen", "is empty".into());
            } else if s == server.listen && !s.ends_with(":0") {
                self.error(
                    Some(v.span()),
                    "server.admin_listen",
                    format!(
                        "{s:?} is also server.listen; the admin listener needs its own address"
                    ),
                );
            } else {
                server.admin_listen = Some(s);
            }
        }
    }

    /// The paths of `server.tls` and `server.client_ca`, relative to the config's directory;
    /// `None` when one of them could not be expanded (reported).
    fn tls_settings(
        &mut self,
        raw: &raw::Server,
        tls: &raw::Tls,
        dir: &Path,
    ) -> Option<TlsSettings> {
        let cert = self.expand(&tls.cert, "server.tls.cert", false);
        let key = self.expand(&tls.key, "server.tls.key", false);
        let client_ca = match &raw.client_ca {
            Some(v) => Some(dir.join(self.expand(v, "server.client_ca", false)?)),
            None => None,
        };
        Some(TlsSettings {
            cert: dir.join(cert?),
            key: dir.join(key?),
            client_ca,
        })
    }
}

/// Which key (and line) a TLS loading error is about: the pair, one of the files, or the CA.
fn tls_error_place(
    e: &TlsError,
    settings: &TlsSettings,
    raw: &raw::Server,
    tls: &Spanned<raw::Tls>,
) -> (&'static str, std::ops::Range<usize>) {
    let tls_span = tls.span();
    if matches!(e, TlsError::CertKey { .. }) {
        ("server.tls", tls_span)
    } else if e.path() == settings.cert {
        ("server.tls.cert", tls.get_ref().cert.span())
    } else if e.path() == settings.key {
        ("server.tls.key", tls.get_ref().key.span())
    } else {
        let span = raw.client_ca.as_ref().map_or(tls_span, |c| c.span());
        ("server.client_ca", span)
    }
}

/// The host name, as `server.node` defaults to (`ferry` when it cannot be read or is no valid
/// node name).
fn default_node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| node_name_problem(h).is_none())
        .unwrap_or_else(|| "ferry".to_string())
}

/// Why `name` cannot name a replica: node names are shown and matched against `runs_on`,
/// so they are short and plain.
pub(super) fn node_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 64 {
        return Some(format!("{name:?} must be 1 to 64 characters long"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Some(format!(
            "{name:?} may hold only letters, digits, '.', '-' and '_'"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::DEFAULT_RATE_PER_CLIENT;
    use crate::config::testing::{GOOD, check, errors};

    /// `server.tls` reads the files at check time; `public_url` then defaults to https; and
    /// `admin_listen` must differ from `listen`.
    #[test]
    fn transport_settings() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let d = dir.path().display();
        let tls = format!(
            "[server]\nlisten = \"127.0.0.1:9000\"\nadmin_listen = \"127.0.0.1:9001\"\ntls = {{ cert = \"{d}/cert.pem\", key = \"{d}/key.pem\" }}\n"
        );
        let text = GOOD.replace("[server]\nlisten = \"127.0.0.1:9000\"\n", &tls);
        let c = check(&text).unwrap();
        assert_eq!(c.server.public_url, "https://127.0.0.1:9000");
        assert_eq!(c.server.admin_listen.as_deref(), Some("127.0.0.1:9001"));
        assert!(c.server.tls.is_some_and(|t| t.client_ca.is_none()));

        let same = text.replace("127.0.0.1:9001", "127.0.0.1:9000");
        let e = errors(&same);
        assert!(e[0].contains(":4: server.admin_listen:"), "{e:?}");
    }

    /// `database`, `node`, `lease` and `runs_on`: defaults, and a precise error for each bad
    /// value — a database URL's password never in it.
    #[test]
    fn replica_settings() {
        let c = check(GOOD).unwrap();
        assert!(c.server.database.is_none(), "SQLite by default");
        assert!(!c.server.node.is_empty());
        assert_eq!(c.server.lease, Duration::from_secs(30));
        assert!(c.apps["shop"].services["web"].runs_on("any-node"));

        let text = GOOD.replace(
            "admin_token = \"${TOKEN}\"\n",
            "admin_token = \"${TOKEN}\"\ndatabase = \"postgres://ferry:pw@db/ferry\"\nnode = \"host-a\"\nlease = \"10s\"\n",
        )
        .replace("command = [\"make\", \"deploy\"]", "command = [\"make\", \"deploy\"]\nruns_on = [\"host-b\"]");
        let c = check(&text).unwrap();
        assert_eq!(
            c.server.database.as_ref().map(|s| s.expose()),
            Some("postgres://ferry:pw@db/ferry")
        );
        assert_eq!(c.server.node, "host-a");
        assert_eq!(c.server.lease, Duration::from_secs(10));
        let worker = &c.apps["shop"].services["worker"];
        assert!(worker.runs_on("host-b") && !worker.runs_on("host-a"));

        let bad = text
            .replace("postgres://ferry:pw@db/ferry", "mysql://ferry:pw@db/ferry")
            .replace("\"host-a\"", "\"host a\"")
            .replace("\"10s\"", "\"500ms\"")
            .replace("[\"host-b\"]", "[]");
        let e = errors(&bad);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[0].contains(":5: server.database:") && e[0].contains("\"mysql\""),
            "{e:?}"
        );
        assert!(e.iter().all(|m| !m.contains("pw@")), "no password in {e:?}");
        assert!(
            e[1].contains(":6: server.node:") && e[1].contains("letters, digits"),
            "{e:?}"
        );
        assert!(e[2].contains(":7: server.lease:"), "{e:?}");
        assert!(
            e[3].contains("apps.shop.services.worker.runs_on:") && e[3].contains("is empty"),
            "{e:?}"
        );
    }

    #[test]
    fn edge_limits_have_defaults_and_parse() {
        let c = check(GOOD).unwrap();
        assert_eq!(c.server.header_timeout, Duration::from_secs(10));
        assert_eq!(c.server.body_timeout, Duration::from_secs(30));
        assert_eq!(c.server.max_connections, 1024);
        assert_eq!(c.server.rate_per_client, Some(DEFAULT_RATE_PER_CLIENT));
        assert!(c.server.trusted_proxies.is_empty());
        assert!(c.apps["shop"].limits.rate.is_none());
        assert!(c.apps["shop"].verify.allow_ips.is_empty());
        let text = GOOD.replace(
            "admin_token = \"${TOKEN}\"\n",
            "admin_token = \"${TOKEN}\"\nheader_timeout = \"5s\"\nbody_timeout = \"1m\"\nmax_connections = 10\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nrate_per_client = \"off\"\nfailures_per_client = \"5/min\"\n",
        ) + "[apps.shop.limits]\nrate = \"120/min\"\n";
        let text = text.replace(
            "verify = { github = \"${SECRET}\" }",
            "verify = { github = \"${SECRET}\", allow_ips = [\"192.30.252.0/22\", \"127.0.0.2\"] }",
        );
        let c = check(&text).unwrap();
        assert_eq!(c.server.header_timeout, Duration::from_secs(5));
        assert_eq!(c.server.body_timeout, Duration::from_secs(60));
        assert_eq!(c.server.max_connections, 10);
        assert_eq!(c.server.trusted_proxies.len(), 2);
        assert_eq!(c.server.rate_per_client, None);
        assert_eq!(c.server.failures_per_client.unwrap().to_string(), "5/min");
        assert_eq!(c.apps["shop"].limits.rate.unwrap().to_string(), "120/min");
        let allow: Vec<String> = c.apps["shop"]
            .verify
            .allow_ips
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(allow, ["192.30.252.0/22", "127.0.0.2/32"]);
    }

    #[test]
    fn edge_limit_errors_name_key_and_line() {
        let e = errors(
            "[server]\nmax_connections = 0\ntrusted_proxies = [\"10.0.0.1/8\", \"proxy.local\"]\nrate_per_client = \"lots\"\nheader_timeout = \"soon\"\n[apps.shop]\ntoken = \"${TOKEN}\"\nverify = { allow_ips = [\"1.2.3.4/33\"] }\nlimits = { rate = \"off\" }\n[apps.shop.services.web]\ncommand = [\"x\"]\n",
        );
        let expect = [
            "ferry.toml:2: server.max_connections: must be a positive number",
            "ferry.toml:3: server.trusted_proxies: \"10.0.0.1/8\" has bits set after the prefix; did you mean \"10.0.0.0/8\"?",
            "ferry.toml:3: server.trusted_proxies: \"proxy.local\" is not an address or CIDR",
            "ferry.toml:4: server.rate_per_client: invalid rate \"lots\"",
            "ferry.toml:5: server.header_timeout: invalid duration \"soon\"",
            "ferry.toml:8: apps.shop.verify.allow_ips: \"1.2.3.4/33\" is not an address or CIDR",
            "ferry.toml:9: apps.shop.limits.rate: invalid rate \"off\"",
        ];
        for x in expect {
            assert!(e.iter().any(|l| l.contains(x)), "missing {x:?} in {e:#?}");
        }
        assert_eq!(e.len(), expect.len(), "{e:#?}");
    }
}
