//! `checkout = { url, path, token, username, key, known_hosts, submodules }` of a git service
//! with the `command` executor: the git work tree ferry keeps at exactly the deployment's
//! commit (`executors::checkout` does the work).
//!
//! What is refused here, with the key and the line: a checkout on a service that follows no
//! git repository or is not run by `command`; a URL git would not fetch from as configured
//! (schemes other than https, http, ssh, git and file; remote helpers `transport::address`;
//! plain local paths) or one holding credentials (a URL is shown in logs and process lists:
//! the token goes in `token`); a relative `path`, or one that overlaps another checkout, the
//! data dir or the config file (`git clean` empties whatever is not in the commit); a token
//! for a non-http URL or a key for a non-ssh one; a `known_hosts` for a non-ssh URL, or one
//! that is not a readable file of `host key-type key` lines (ssh then trusts it alone).

use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use super::validator::Validator;
use super::{CheckoutAuth, CheckoutSpec, raw};
use crate::secret::Secret;

/// The user name sent with a token when none is configured: what GitHub documents for
/// tokens; GitLab, Gitea and Bitbucket accept any name with an access token.
pub(super) const DEFAULT_USERNAME: &str = "x-access-token";

/// How git reaches a repository, as far as credentials go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// `https://`, `http://`: a token, as basic auth.
    Http,
    /// `ssh://` and scp-like `user@host:path`: a key.
    Ssh,
    /// `git://`, `file://`: no credentials.
    Plain,
}

impl CheckoutSpec {
    /// Whether git reaches the repository over ssh (where host keys matter).
    pub fn over_ssh(&self) -> bool {
        transport(&self.url) == Ok(Transport::Ssh)
    }
}

impl Validator<'_> {
    /// The service's checkout (`key` is the service's). The outer `None`: set but unusable
    /// (reported); `Some(None)`: not set.
    pub(super) fn checkout(
        &mut self,
        raw: &raw::Service,
        key: &str,
    ) -> Option<Option<CheckoutSpec>> {
        let Some(c) = &raw.checkout else {
            return Some(None);
        };
        let ckey = format!("{key}.checkout");
        if raw.git.is_none() {
            self.error(
                Some(c.span()),
                &ckey,
                "needs `git = { repo = \"owner/name\", branch = \"main\" }`: a checkout holds the commits a git service deploys".into(),
            );
            return None;
        }
        if raw.command.is_none()
            && (raw.docker.is_some() || raw.compose.is_some() || raw.swarm.is_some())
        {
            self.error(
                Some(c.span()),
                &ckey,
                "works with the `command` executor only: ferry checks the commit out, then runs the command there".into(),
            );
            return None;
        }
        let c = c.get_ref();
        let (url, transport) = self.checkout_url(&c.url, &ckey)?;
        let path = self.checkout_path(&c.path, &ckey)?;
        let auth = self.checkout_auth(c, &ckey, transport)?;
        let known_hosts = match &c.known_hosts {
            Some(k) => Some(self.checkout_known_hosts(k, &ckey, transport)?),
            None => None,
        };
        self.checkout_paths
            .push((format!("{ckey}.path"), path.clone(), c.path.span()));
        Some(Some(CheckoutSpec {
            url,
            path,
            auth,
            known_hosts,
            submodules: c.submodules.as_ref().is_some_and(|s| *s.get_ref()),
        }))
    }

    fn checkout_url(&mut self, raw: &Spanned<String>, ckey: &str) -> Option<(String, Transport)> {
        let ukey = format!("{ckey}.url");
        let url = self.expand(raw, &ukey, false)?;
        match transport(&url) {
            Ok(t) => Some((url, t)),
            Err(why) => {
                self.error(Some(raw.span()), &ukey, why);
                None
            }
        }
    }

    /// An absolute path without `..`, not `/`; a trailing `/` is dropped.
    fn checkout_path(&mut self, raw: &Spanned<String>, ckey: &str) -> Option<PathBuf> {
        let pkey = format!("{ckey}.path");
        let text = self.expand(raw, &pkey, false)?;
        let path = PathBuf::from(text.trim_end_matches('/'));
        let problem = if !Path::new(&text).is_absolute() {
            Some("must be an absolute path, e.g. \"/srv/app\"")
        } else if path.as_os_str().is_empty() {
            Some("is `/`: ferry empties what is not in the commit; name a directory of its own")
        } else if path.components().any(|c| c == Component::ParentDir) {
            Some("must not contain `..`")
        } else {
            None
        };
        match problem {
            Some(why) => {
                self.error(Some(raw.span()), &pkey, why.into());
                None
            }
            None => Some(path),
        }
    }

    /// `token` (with `username`) for http(s), or `key` for ssh; neither is fine.
    fn checkout_auth(
        &mut self,
        c: &raw::Checkout,
        ckey: &str,
        transport: Transport,
    ) -> Option<CheckoutAuth> {
        if let Some(u) = c.username.as_ref().filter(|_| c.token.is_none()) {
            self.error(
                Some(u.span()),
                &format!("{ckey}.username"),
                "is sent only with `token`".into(),
            );
            return None;
        }
        match (&c.token, &c.key) {
            (Some(_), Some(k)) => {
                self.error(
                    Some(k.span()),
                    ckey,
                    "`token` and `key` are exclusive: a token for https, a key for ssh".into(),
                );
                None
            }
            (Some(t), None) => self.checkout_token(t, c.username.as_ref(), ckey, transport),
            (None, Some(k)) => self.checkout_key(k, ckey, transport),
            (None, None) => Some(CheckoutAuth::None),
        }
    }

    fn checkout_token(
        &mut self,
        t: &Spanned<raw::SecretValue>,
        username: Option<&Spanned<String>>,
        ckey: &str,
        transport: Transport,
    ) -> Option<CheckoutAuth> {
        let tkey = format!("{ckey}.token");
        if transport != Transport::Http {
            self.error(
                Some(t.span()),
                &tkey,
                "is sent only over https (or http); this URL is not: use `key` for ssh".into(),
            );
            return None;
        }
        let username = match username {
            Some(u) => {
                let ukey = format!("{ckey}.username");
                let name = self.expand(u, &ukey, false)?;
                if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
                    self.error(
                        Some(u.span()),
                        &ukey,
                        "must be a non-empty name without ':' or control characters".into(),
                    );
                    return None;
                }
                name
            }
            None => DEFAULT_USERNAME.to_string(),
        };
        let token = self.secret_value(t, &tkey)?;
        if token.is_empty() || token.chars().any(char::is_control) {
            self.error(
                Some(t.span()),
                &tkey,
                "must be a non-empty token without control characters".into(),
            );
            return None;
        }
        Some(CheckoutAuth::Token {
            username,
            token: Secret::new(token),
        })
    }

    fn checkout_key(
        &mut self,
        k: &Spanned<raw::SecretValue>,
        ckey: &str,
        transport: Transport,
    ) -> Option<CheckoutAuth> {
        let kkey = format!("{ckey}.key");
        if transport != Transport::Ssh {
            self.error(
                Some(k.span()),
                &kkey,
                "is used only over ssh (ssh://… or user@host:path); use `token` for https".into(),
            );
            return None;
        }
        let key = self.secret_value(k, &kkey)?;
        if !(key.contains("-----BEGIN ") && key.contains("PRIVATE KEY-----")) {
            self.error(
                Some(k.span()),
                &kkey,
                "is not a private key (-----BEGIN … PRIVATE KEY-----), e.g. key = { file = \"/etc/ferry/deploy_key\" }".into(),
            );
            return None;
        }
        Some(CheckoutAuth::Key(Secret::new(key)))
    }

    /// `known_hosts`: a file (relative to the config's directory) of `host key-type key` lines,
    /// read here to check it; ssh reads it again at every fetch.
    fn checkout_known_hosts(
        &mut self,
        raw: &Spanned<String>,
        ckey: &str,
        transport: Transport,
    ) -> Option<PathBuf> {
        let kkey = format!("{ckey}.known_hosts");
        let text = self.expand(raw, &kkey, false)?;
        let problem = if transport != Transport::Ssh {
            Err("is used only over ssh (ssh://… or user@host:path)".to_string())
        } else if text.is_empty() {
            Err("is empty: name a known_hosts file, e.g. \"/etc/ferry/known_hosts\"".to_string())
        } else {
            let path = self.config_dir.join(&text);
            known_hosts_file(&path).map(|()| path)
        };
        match problem {
            Ok(path) => Some(path),
            Err(why) => {
                self.error(Some(raw.span()), &kkey, why);
                None
            }
        }
    }

    /// Once every app is read: no checkout path overlaps another, the data dir or the config
    /// file (each checkout is emptied of what its commit does not hold).
    pub(super) fn check_checkout_paths(&mut self, data_dir: &Path, config: &Path) {
        let paths = std::mem::take(&mut self.checkout_paths);
        for (i, (key, path, span)) in paths.iter().enumerate() {
            let clash = paths[..i]
                .iter()
                .find(|(_, other, _)| overlap(path, other))
                .map(|(other_key, other, _)| {
                    format!(
                        "overlaps {other_key} ({}): each checkout is cleaned of files its commit does not hold, so they would delete each other's",
                        other.display()
                    )
                });
            let clash = clash.or_else(|| own_files(path, data_dir, config));
            if let Some(why) = clash {
                self.error(Some(span.clone()), key, why);
            }
        }
    }
}

/// Whether ferry's own files are inside a checkout (which `git clean` would delete).
fn own_files(path: &Path, data_dir: &Path, config: &Path) -> Option<String> {
    if overlap(path, data_dir) {
        return Some(format!(
            "overlaps the data dir ({}): `git clean` would delete ferry's database and logs",
            data_dir.display()
        ));
    }
    config.starts_with(path).then(|| {
        format!(
            "holds the config file ({}): `git clean` would delete it",
            config.display()
        )
    })
}

/// Why ssh could not use `path` as its only known_hosts file, if it could not.
fn known_hosts_file(path: &Path) -> Result<(), String> {
    use std::io::Read;
    /// Thousands of hosts fit; more is the wrong file.
    const LIMIT: u64 = 1024 * 1024;
    let shown = path.display();
    // ssh splits the option's value on spaces, reads quotes and expands `%` and `~`.
    if shown
        .to_string()
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'\\%".contains(c))
    {
        return Err(format!(
            "{shown}: ssh cannot be given a path with spaces, quotes, `\\` or `%`: move the file"
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(LIMIT + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > LIMIT {
        return Err(format!(
            "{shown} is larger than 1 MiB; is it the right file?"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))?;
    let mut entries = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !known_hosts_line(line) {
            return Err(format!(
                "{shown}:{}: is not a known_hosts line (`host key-type base64-key`, as `ssh-keyscan HOST` prints)",
                n + 1
            ));
        }
        entries += 1;
    }
    if entries == 0 {
        return Err(format!(
            "{shown} holds no host key: add the server's, e.g. `ssh-keyscan -p PORT HOST >> {shown}`, and check its fingerprint"
        ));
    }
    Ok(())
}

/// `[@cert-authority|@revoked] hosts key-type base64-key [comment]`, as sshd(8) describes it.
fn known_hosts_line(line: &str) -> bool {
    let mut fields = line.split_whitespace().peekable();
    if fields
        .next_if(|f| f.starts_with('@'))
        .is_some_and(|m| m != "@cert-authority" && m != "@revoked")
    {
        return false;
    }
    let (Some(_hosts), Some(kind), Some(key)) = (fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let kind_ok = ["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|p| kind.starts_with(p));
    let key_ok = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    kind_ok && key_ok
}

fn overlap(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// How git would reach `url`, or why ferry does not fetch from it.
fn transport(url: &str) -> Result<Transport, String> {
    if url.is_empty() {
        return Err("is empty".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    if url.starts_with('-') {
        return Err("starts with '-' (git would read it as an option)".into());
    }
    match url.split_once("://") {
        Some((scheme, rest)) => scheme_transport(scheme, rest),
        None => scp_like(url),
    }
}

/// `scheme://[user@]host[:port]/path`.
fn scheme_transport(scheme: &str, rest: &str) -> Result<Transport, String> {
    let transport = match scheme.to_ascii_lowercase().as_str() {
        "https" | "http" => Transport::Http,
        "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
        "git" | "file" => Transport::Plain,
        other => {
            return Err(format!(
                "scheme `{other}` is not one ferry fetches from: use https, http, ssh, git or file"
            ));
        }
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if scheme.eq_ignore_ascii_case("file") {
        if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
            return Err("a file:// URL names a local path: file:///srv/git/app.git".into());
        }
    } else if authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .is_empty()
    {
        return Err("names no host".into());
    }
    if path.is_empty() {
        return Err("names no repository path".into());
    }
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        credentials(userinfo, transport)?;
    }
    Ok(transport)
}

/// scp-like `[user@]host:path`, which git reads so when no `/` comes before the first `:`.
fn scp_like(url: &str) -> Result<Transport, String> {
    let not_url = "is not a URL: use https://…, ssh://…, git://…, file:///path or user@host:path";
    // `user:password@host:path` would be read as host `user`; what was meant is a password.
    if let Some((userinfo, _)) = url.rsplit_once('@')
        && userinfo.contains(':')
        && !userinfo.contains('/')
    {
        credentials(userinfo, Transport::Ssh)?;
    }
    let Some((before, path)) = url.split_once(':') else {
        return Err(not_url.into());
    };
    if before.contains('/') {
        return Err(not_url.into());
    }
    if path.starts_with(':') {
        return Err(
            "names a git remote helper (`transport::address`), which may run programs: use a URL"
                .into(),
        );
    }
    let (userinfo, host) = match before.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, before),
    };
    if host.is_empty() || path.is_empty() {
        return Err("is not a complete user@host:path".into());
    }
    if let Some(userinfo) = userinfo {
        credentials(userinfo, Transport::Ssh)?;
    }
    Ok(Transport::Ssh)
}

/// The `user[:password]` part of a URL: a password (or, over http, a user name that may be a
/// token) belongs in the config's secrets, not in a URL that logs and `ps` show.
fn credentials(userinfo: &str, transport: Transport) -> Result<(), String> {
    if userinfo.contains(':') {
        return Err(
            "has a password in it: put the token in `token` (https) or use `key` (ssh); a URL is shown in logs and process lists".into(),
        );
    }
    // The message does not repeat the user part: it may be the token.
    if transport == Transport::Http && !userinfo.is_empty() {
        return Err(
            "has credentials in it (`…@` before the host): put the token in `token` and the name in `username`; a URL is shown in logs and process lists".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Executor;
    use crate::config::testing::{check, errors};

    #[test]
    fn urls_git_fetches_from_and_those_ferry_refuses() {
        for (url, t) in [
            ("https://github.com/acme/app.git", Transport::Http),
            ("http://127.0.0.1:8080/app.git", Transport::Http),
            ("ssh://git@github.com/acme/app.git", Transport::Ssh),
            ("ssh://git@[::1]:2222/app.git", Transport::Ssh),
            ("git@github.com:acme/app.git", Transport::Ssh),
            ("github.com:acme/app.git", Transport::Ssh),
            ("git://127.0.0.1/app.git", Transport::Plain),
            ("file:///srv/git/app.git", Transport::Plain),
        ] {
            assert_eq!(transport(url), Ok(t), "{url}");
        }
        for (url, why) in [
            ("", "is empty"),
            ("https://x-access-token:ghp_abc@github.com/a/b", "password"),
            (
                "https://ghp_abc@github.com/a/b",
                "credentials in it (`…@` before the host)",
            ),
            ("ssh://git:pw@github.com/a/b", "password"),
            ("git:pw@github.com:a/b", "password"),
            ("ext::sh -c touch% /tmp/x", "whitespace"),
            ("ext::sh", "remote helper"),
            ("fd::3", "remote helper"),
            ("ftp://example.com/a", "scheme `ftp`"),
            ("/srv/git/app.git", "is not a URL"),
            ("./app.git", "is not a URL"),
            ("-uhttps://x/y", "starts with '-'"),
            ("file://host/srv/a", "local path"),
            ("https:///a", "no host"),
            ("https://github.com", "no repository path"),
            ("git@github.com:", "complete"),
        ] {
            let e = transport(url).expect_err(url);
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("ghp_abc") && !e.contains(":pw"), "{e}");
        }
    }

    const BASE: &str = "[server]\ndata_dir = \"/var/lib/ferry\"\n[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\n";

    fn service(lines: &str) -> String {
        format!("{BASE}{lines}")
    }

    #[test]
    fn a_checkout_is_read_and_its_path_is_the_default_workdir() {
        let c = check(&service(
            "git = { repo = \"acme/shop\" }\ncommand = [\"./deploy.sh\"]\ncheckout = { url = \"https://git.example.com/acme/shop.git\", path = \"/srv/shop/\", token = \"${SECRET}\" }\n",
        ))
        .unwrap();
        let Executor::Command {
            workdir, checkout, ..
        } = &c.apps["shop"].services["web"].executor
        else {
            panic!()
        };
        let checkout = checkout.as_ref().unwrap();
        assert_eq!(workdir, Path::new("/srv/shop"));
        assert_eq!(checkout.path, Path::new("/srv/shop"));
        assert!(!checkout.submodules);
        let CheckoutAuth::Token { username, token } = &checkout.auth else {
            panic!("{:?}", checkout.auth)
        };
        assert_eq!(username, DEFAULT_USERNAME);
        assert_eq!(token.expose(), "gh-secret");
        // The token's variable is kept from deploy commands, like every secret's.
        assert!(c.secret_env_vars.contains(&"SECRET".to_string()));
        assert!(!format!("{c:?}").contains("gh-secret"));

        // A relative workdir is inside the checkout.
        let c = check(&service(
            "git = { repo = \"acme/shop\" }\ncommand = [\"./deploy.sh\"]\nworkdir = \"infra\"\ncheckout = { url = \"git@github.com:acme/shop.git\", path = \"/srv/shop\", submodules = true }\n",
        ))
        .unwrap();
        let Executor::Command {
            workdir, checkout, ..
        } = &c.apps["shop"].services["web"].executor
        else {
            panic!()
        };
        assert_eq!(workdir, Path::new("/srv/shop/infra"));
        assert!(checkout.as_ref().unwrap().submodules);
    }

    #[test]
    fn a_key_comes_from_a_file() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n";
        let (_dir, c) = crate::config::testing::with_files(
            "[apps.shop]\ntoken = \"tok-0123456789abcdef\"\n[apps.shop.services.web]\ngit = { repo = \"acme/shop\" }\ncommand = [\"./deploy.sh\"]\ncheckout = { url = \"ssh://git@example.com/acme/shop.git\", path = \"/srv/shop\", key = { file = \"deploy_key\" } }\n",
            &[("deploy_key", key.as_bytes())],
        );
        let c = c.unwrap();
        let Executor::Command { checkout, .. } = &c.apps["shop"].services["web"].executor else {
            panic!()
        };
        let CheckoutAuth::Key(k) = &checkout.as_ref().unwrap().auth else {
            panic!()
        };
        assert!(
            k.expose()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\nabc")
        );
    }

    const HOST_KEY: &str = "[git.example.com]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";

    /// An ssh checkout with `known_hosts = "{known_hosts}"` in a temp dir holding `files`.
    fn pinned(
        url: &str,
        known_hosts: &str,
        files: &[(&str, &[u8])],
    ) -> (
        tempfile::TempDir,
        Result<crate::config::Config, crate::config::ConfigError>,
    ) {
        crate::config::testing::with_files(
            &format!(
                "[apps.shop]\ntoken = \"tok-0123456789abcdef\"\n[apps.shop.services.web]\ngit = {{ repo = \"acme/shop\" }}\ncommand = [\"./deploy.sh\"]\ncheckout = {{ url = \"{url}\", path = \"/srv/shop\", known_hosts = \"{known_hosts}\" }}\n"
            ),
            files,
        )
    }

    #[test]
    fn known_hosts_is_a_file_of_host_keys_next_to_the_config() {
        let url = "ssh://git@git.example.com:2222/acme/shop.git";
        let text = format!(
            "# pinned by ops\n\n{HOST_KEY}@revoked * ssh-rsa AAAAB3Nza\n\
             |1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= ecdsa-sha2-nistp256 AAAAE2VjZHNh\n\
             @cert-authority *.example.com sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5 ca\n"
        );
        let (dir, c) = pinned(url, "known_hosts", &[("known_hosts", text.as_bytes())]);
        let c = c.unwrap();
        let Executor::Command { checkout, .. } = &c.apps["shop"].services["web"].executor else {
            panic!()
        };
        let checkout = checkout.as_ref().unwrap();
        assert_eq!(checkout.known_hosts, Some(dir.path().join("known_hosts")));
        assert!(checkout.over_ssh());

        // Without it, nothing is pinned (and `ferry check` warns).
        let c = check(&service(
            "git = { repo = \"acme/shop\" }\ncommand = [\"./d\"]\ncheckout = { url = \"git@h:a.git\", path = \"/srv/a\" }\n",
        ))
        .unwrap();
        let Executor::Command { checkout, .. } = &c.apps["shop"].services["web"].executor else {
            panic!()
        };
        assert_eq!(checkout.as_ref().unwrap().known_hosts, None);
    }

    #[test]
    fn a_known_hosts_ssh_cannot_use_is_refused_with_its_line() {
        let ssh = "ssh://git@git.example.com:2222/acme/shop.git";
        for (url, name, content, expected) in [
            (
                "https://git.example.com/a.git",
                "known_hosts",
                HOST_KEY,
                "checkout.known_hosts: is used only over ssh",
            ),
            (
                ssh,
                "missing",
                HOST_KEY,
                "checkout.known_hosts: cannot read {dir}/missing: ",
            ),
            (
                ssh,
                "known_hosts",
                "# nothing yet\n",
                "checkout.known_hosts: {dir}/known_hosts holds no host key: add the server's, e.g. `ssh-keyscan -p PORT HOST",
            ),
            (
                ssh,
                "known_hosts",
                "# one\ngit.example.com ssh-ed25519\n",
                "checkout.known_hosts: {dir}/known_hosts:2: is not a known_hosts line",
            ),
            (
                ssh,
                "known_hosts",
                "git.example.com not-a-type AAAA\n",
                "{dir}/known_hosts:1: is not a known_hosts line",
            ),
            (
                ssh,
                "known_hosts",
                "@trusted git.example.com ssh-ed25519 AAAA\n",
                "{dir}/known_hosts:1: is not a known_hosts line",
            ),
            (ssh, "", HOST_KEY, "checkout.known_hosts: is empty"),
            (
                ssh,
                "known hosts",
                HOST_KEY,
                "{dir}/known hosts: ssh cannot be given a path with spaces",
            ),
        ] {
            let (dir, c) = pinned(
                url,
                name,
                &[
                    ("known_hosts", content.as_bytes()),
                    ("known hosts", HOST_KEY.as_bytes()),
                ],
            );
            let Err(crate::config::ConfigError::Invalid(d)) = c else {
                panic!("{url} {name}: should be invalid")
            };
            let e: Vec<String> = d.iter().map(|d| d.to_string()).collect();
            assert_eq!(e.len(), 1, "{e:?}");
            let expected = expected.replace("{dir}", dir.path().to_str().unwrap());
            assert!(e[0].contains(&expected), "{e:?}\nwanted: {expected}");
            assert!(
                e[0].contains(":6: apps.shop.services.web.checkout.known_hosts: "),
                "{e:?}"
            );
        }
    }

    /// The one error of a service written as `lines`.
    fn error(lines: &str) -> String {
        let e = errors(&service(lines));
        assert_eq!(e.len(), 1, "{e:?}");
        e[0].clone()
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let git = "git = { repo = \"acme/shop\" }\ncommand = [\"./d\"]\n";
        let url = "url = \"https://git.example.com/a.git\"";
        for (lines, expected) in [
            (
                format!("command = [\"./d\"]\ncheckout = {{ {url}, path = \"/srv/a\" }}\n"),
                ":7: apps.shop.services.web.checkout: needs `git = {",
            ),
            (
                format!(
                    "{git}checkout = {{ url = \"https://u:p@git.example.com/a.git\", path = \"/srv/a\" }}\n"
                ),
                ":8: apps.shop.services.web.checkout.url: has a password in it: put the token in `token`",
            ),
            (
                format!("{git}checkout = {{ {url}, path = \"srv/a\" }}\n"),
                ":8: apps.shop.services.web.checkout.path: must be an absolute path",
            ),
            (
                format!("{git}checkout = {{ {url}, path = \"/srv/../etc\" }}\n"),
                "checkout.path: must not contain `..`",
            ),
            (
                format!("{git}checkout = {{ {url}, path = \"/\" }}\n"),
                "checkout.path: is `/`",
            ),
            (
                format!(
                    "{git}checkout = {{ {url}, path = \"/srv/a\", token = \"t\", key = \"k\" }}\n"
                ),
                "apps.shop.services.web.checkout: `token` and `key` are exclusive",
            ),
            (
                format!(
                    "{git}checkout = {{ url = \"git@h:a.git\", path = \"/srv/a\", token = \"t\" }}\n"
                ),
                "checkout.token: is sent only over https",
            ),
            (
                format!(
                    "{git}checkout = {{ {url}, path = \"/srv/a\", key = \"-----BEGIN OPENSSH PRIVATE KEY-----\" }}\n"
                ),
                "checkout.key: is used only over ssh",
            ),
            (
                format!(
                    "{git}checkout = {{ url = \"git@h:a.git\", path = \"/srv/a\", key = \"not a key\" }}\n"
                ),
                "checkout.key: is not a private key",
            ),
            (
                format!("{git}checkout = {{ {url}, path = \"/srv/a\", username = \"bot\" }}\n"),
                "checkout.username: is sent only with `token`",
            ),
            (
                format!("{git}checkout = {{ {url}, path = \"/srv/a\", token = \"\" }}\n"),
                "checkout.token: ",
            ),
            (
                format!(
                    "{git}checkout = {{ {url}, path = \"/srv/a\", token = {{ file = \"/nonexistent/t\" }} }}\n"
                ),
                "checkout.token: cannot read secret file /nonexistent/t",
            ),
            (
                format!("{git}checkout = {{ {url}, path = \"/srv/a\", depth = 1 }}\n"),
                "depth",
            ),
            (
                format!("{git}checkout = {{ {url}, path = \"/var/lib\" }}\n"),
                "checkout.path: overlaps the data dir (/var/lib/ferry)",
            ),
            (
                format!("{git}checkout = {{ {url}, path = \"/etc\" }}\n"),
                "checkout.path: holds the config file (/etc/ferry/ferry.toml)",
            ),
            (
                format!(
                    "git = {{ repo = \"a/b\" }}\ncompose = {{ project = \"p\" }}\ncheckout = {{ {url}, path = \"/srv/a\" }}\n"
                ),
                "checkout: works with the `command` executor only",
            ),
        ] {
            let e = error(&lines);
            assert!(e.contains(expected), "{lines}\n=> {e}\nwanted: {expected}");
            assert!(e.starts_with("/etc/ferry/ferry.toml:"), "{e}");
        }
    }

    #[test]
    fn two_checkouts_may_not_overlap() {
        let e = errors(&format!(
            "{BASE}git = {{ repo = \"a/b\" }}\ncommand = [\"./d\"]\ncheckout = {{ url = \"https://h/a.git\", path = \"/srv/a\" }}\n\
             [apps.shop.services.api]\ngit = {{ repo = \"a/c\" }}\ncommand = [\"./d\"]\ncheckout = {{ url = \"https://h/c.git\", path = \"/srv/a/c\" }}\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/etc/ferry/ferry.toml:8: apps.shop.services.web.checkout.path: overlaps apps.shop.services.api.checkout.path (/srv/a/c)"),
            "{e:?}"
        );
    }
}
