//! `ferry init`: a commented starter config with fresh random secrets, for the sender the
//! user names, and the next steps — start, what to paste into the sender (the same lines
//! `ferry hooks --show-secrets` prints), and a `curl` that proves the secret works end to end
//! (a signed event ferry verifies and records, but which deploys nothing).
//!
//! The file is created, never overwritten (`create_new`), with mode 0600 since it holds the
//! secrets; it is then read back through the config loader, so what is printed is what
//! `ferry check` and `ferry serve` will see.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow};

/// The sender a starter config is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Sender {
    Github,
    Gitlab,
    Bitbucket,
    Gitea,
    /// A CNCF distribution registry's notifications (`docker-registry`).
    Registry,
    Dockerhub,
}

const APP: &str = "app";
const URL: &str = "http://127.0.0.1:8080";

/// Writes the starter config to `path` (refusing to overwrite anything) and prints the next
/// steps.
pub(crate) fn init(path: &Path, sender: Sender) -> anyhow::Result<ExitCode> {
    let secrets = Secrets::new()?;
    let text = starter(sender, &secrets);
    write_new(path, &text, "--config")?;
    let config = super::load_config(path)
        .with_context(|| format!("{} was written but does not load", path.display()))?;
    let app = config
        .apps
        .get(APP)
        .ok_or_else(|| anyhow!("{} was written without apps.{APP}", path.display()))?;
    let hook = format!("{URL}/hooks/{APP}/{}", secrets.hook_token);
    println!(
        "wrote {} (mode 600: it holds the secrets)\n",
        path.display()
    );
    println!("Next:");
    println!(
        "1. Start ferry:\n     ferry serve --config {}",
        path.display()
    );
    println!("2. Set up the sender (`ferry hooks --show-secrets` prints this again):");
    for line in crate::sources::setup_lines(app, &hook, true) {
        println!("     {line}");
    }
    println!(
        "   Behind a proxy or on another host, set server.listen and server.public_url first."
    );
    println!(
        "3. Test it: this request is verified and recorded as the sender's would be, and deploys nothing:"
    );
    println!("     {}", test_request(sender, &secrets, &hook));
    println!(
        "   then `ferry deliveries --config {}` shows it.",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Fresh random secrets: 128 bits for URL tokens, 256 for the admin token and signing keys.
struct Secrets {
    hook_token: String,
    admin_token: String,
    sender: String,
}

impl Secrets {
    fn new() -> anyhow::Result<Secrets> {
        Ok(Secrets {
            hook_token: random_hex(16)?,
            admin_token: random_hex(32)?,
            sender: random_hex(32)?,
        })
    }
}

pub(super) fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow!("cannot read random bytes: {e}"))?;
    Ok(hex::encode(buf))
}

/// Creates `path` with mode 0600, failing if anything is there already (`flag` is the option
/// that names another path, for the message).
pub(super) fn write_new(path: &Path, text: &str, flag: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow!(
                "{} exists; not overwriting it (write elsewhere with {flag} PATH)",
                path.display()
            ),
            _ => anyhow!("cannot create {}: {e}", path.display()),
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The config text: the server, one app with the sender's verify key and one service that
/// deploys what that sender announces.
fn starter(sender: Sender, s: &Secrets) -> String {
    let (verify, service) = sender_parts(sender, &s.sender);
    format!(
        r#"# ferry: a starter config written by `ferry init --sender {sender}`.
# It holds secrets: keep it private (mode 600), or move them to the environment
# ("${{VAR}}") or to files ({{ file = "/run/secrets/…" }}). Check it with `ferry check`.

[server]
listen = "127.0.0.1:8080"          # where ferry listens; "0.0.0.0:8080" to take requests from other hosts
public_url = "{URL}"  # the address senders reach ferry at (printed hook URLs use it)
data_dir = "./ferry-data"           # the database and deploy logs, relative to this file
admin_token = "{admin}"  # the API, dashboard and CLI

[apps.{APP}]
token = "{hook}"  # the secret part of the hook URL

[apps.{APP}.verify]
{verify}

[apps.{APP}.services.web]
{service}
# What a deployment runs: an argv, no shell; the event arrives as FERRY_* variables
# (FERRY_GIT_COMMIT, FERRY_IMAGE, …). Replace it with your deploy script.
command = ["/bin/echo", "deploying: replace this with your deploy command"]
timeout = "10m"
"#,
        sender = sender_name(sender),
        admin = s.admin_token,
        hook = s.hook_token,
    )
}

/// The sender as `--sender` spells it.
fn sender_name(sender: Sender) -> String {
    use clap::ValueEnum;
    sender
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// The `[verify]` lines and the service's source for `sender`.
fn sender_parts(sender: Sender, secret: &str) -> (String, &'static str) {
    let git =
        r#"git = { repo = "owner/repo", branch = "main" }   # the repository and branch to follow"#;
    let image = r#"image = { repository = "registry.example.com/owner/app", tags = "latest" }  # the image and tag policy to follow"#;
    match sender {
        Sender::Registry => (
            format!(
                r#"bearer = "{secret}"  # the registry sends it: notifications.endpoints[].headers.Authorization = ["Bearer …"]"#
            ),
            image,
        ),
        Sender::Dockerhub => (
            "# Docker Hub sends no credentials: the hook URL's token is the only secret, and\n\
             # `ferry check` warns about that. Keep the URL private."
                .into(),
            image,
        ),
        // The forges: the key is the sender's name, the value the webhook's secret.
        _ => (
            format!(
                r#"{} = "{secret}"  # the webhook's secret"#,
                sender_name(sender)
            ),
            git,
        ),
    }
}

/// A `curl` that the sender's verification accepts, of an event that deploys nothing.
fn test_request(sender: Sender, s: &Secrets, hook: &str) -> String {
    let delivery = format!("ferry-init-{}", &s.hook_token[..8]);
    let body = match sender {
        Sender::Github => r#"{"zen":"ferry init"}"#,
        Sender::Gitlab => r#"{"object_kind":"ferry_init"}"#,
        Sender::Bitbucket | Sender::Gitea => r#"{"ferry":"init"}"#,
        Sender::Registry => r#"{"events":[]}"#,
        Sender::Dockerhub => {
            r#"{"push_data":{"tag":"ferry-init-test"},"repository":{"repo_name":"ferry/init-test"}}"#
        }
    };
    let signature = sign(&s.sender, body);
    let headers: Vec<String> = match sender {
        Sender::Github => vec![
            "X-GitHub-Event: ping".into(),
            format!("X-GitHub-Delivery: {delivery}"),
            format!("X-Hub-Signature-256: sha256={signature}"),
        ],
        Sender::Gitlab => vec![
            "X-Gitlab-Event: Test Hook".into(),
            format!("X-Gitlab-Token: {}", s.sender),
        ],
        Sender::Bitbucket => vec![
            "X-Event-Key: diagnostics:ping".into(),
            format!("X-Request-UUID: {delivery}"),
            format!("X-Hub-Signature: sha256={signature}"),
        ],
        Sender::Gitea => vec![
            "X-Gitea-Event: ping".into(),
            format!("X-Gitea-Delivery: {delivery}"),
            format!("X-Gitea-Signature: {signature}"),
        ],
        Sender::Registry => vec![
            "Content-Type: application/vnd.docker.distribution.events.v2+json".into(),
            format!("Authorization: Bearer {}", s.sender),
        ],
        Sender::Dockerhub => vec![],
    };
    let url = match sender {
        Sender::Dockerhub => format!("{hook}?source=dockerhub"),
        _ => hook.to_string(),
    };
    let mut curl = String::from("curl -i -X POST");
    if sender != Sender::Registry {
        curl.push_str(" -H 'Content-Type: application/json'");
    }
    for h in headers {
        curl.push_str(&format!(" -H '{h}'"));
    }
    curl.push_str(&format!(" --data '{body}' '{url}'"));
    curl
}

/// Lower-case hex HMAC-SHA256 of `body` under `secret`.
fn sign(secret: &str, body: &str) -> String {
    let mac = crate::sources::signature::hmac(
        crate::config::HmacAlgorithm::Sha256,
        secret.as_bytes(),
        &[body.as_bytes()],
    );
    hex::encode(mac)
}
