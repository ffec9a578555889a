//! An adnanh/webhook hooks file → `ferry.toml` text. Each hook becomes `[apps.ID]` (the id made
//! a valid app name) with one command service `run`:
//!
//! - `payload-hmac-*` (and the older `payload-hash-*`) on `X-Hub-Signature-256`, or SHA-1 on
//!   `X-Hub-Signature` → `verify.github`; SHA-256 on `X-Hub-Signature` → `verify.bitbucket`;
//!   on any other header → `verify.hmac`. A `value` match on `X-Gitlab-Token` → `verify.gitlab`;
//!   `ip-whitelist` → `verify.allow_ips`. `{{ getenv "X" }}` secrets become `"${X}"`.
//! - A `value` match on the payload's `ref` → `git = { repo = "*", branch }` (the rule matched
//!   the ref in any repository, and so does the service).
//! - `execute-command`, `command-working-directory` → `command`, `workdir`; arguments and
//!   variables taken from the event map to ferry's `FERRY_*` variables (a `# note:` says so).
//!
//! Anything else is an omission, named by hook and rule (`trigger-rule.and[1].match`).

use serde_json::{Map, Value};

/// The converted file and what it could not express.
pub(super) struct Imported {
    pub(super) text: String,
    /// `hook "ID": RULE: why`: each left out of the config; any of them makes exit status 2.
    pub(super) omissions: Vec<String>,
    /// What works differently now (arguments that arrive as variables, renamed hooks).
    pub(super) notes: Vec<String>,
}

/// Hook keys that only shape the peer's HTTP answer or request parsing, with why ferry leaves
/// them out.
const ANSWER_KEYS: [(&str, &str); 10] = [
    (
        "response-message",
        "ferry answers with its own JSON (the delivery id)",
    ),
    ("response-headers", "ferry sets its own response headers"),
    (
        "success-http-response-code",
        "ferry answers 202 to an accepted delivery",
    ),
    (
        "trigger-rule-mismatch-http-response-code",
        "ferry answers a refused delivery with 401 (bad signature) or records it as skipped",
    ),
    (
        "include-command-output-in-response",
        "deployments run after the answer: see `ferry logs ID`",
    ),
    (
        "include-command-output-in-response-on-error",
        "deployments run after the answer: see `ferry logs ID`",
    ),
    ("http-methods", "ferry takes POST only"),
    (
        "incoming-payload-content-type",
        "ferry reads the content type the sender declares",
    ),
    (
        "parse-parameters-as-json",
        "ferry does not parse values nested in the payload",
    ),
    (
        "trigger-signature-soft-failures",
        "a signature that fails is always refused (401)",
    ),
];

/// Converts the parsed hooks file; `token` makes each app's fresh URL token. An input error
/// (not a list of hooks, a hook without id or command) is returned.
pub(super) fn convert(
    hooks: &Value,
    admin: &str,
    mut token: impl FnMut() -> anyhow::Result<String>,
) -> anyhow::Result<Imported> {
    let list = hooks
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("expected a list of hooks at the top"))?;
    if list.is_empty() {
        return Err(anyhow::anyhow!("the file holds no hooks"));
    }
    let mut out = Imported {
        text: header(admin),
        omissions: Vec::new(),
        notes: Vec::new(),
    };
    let mut names: Vec<String> = Vec::new();
    for (i, hook) in list.iter().enumerate() {
        let obj = hook
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("hook {} is not an object", i + 1))?;
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("hook {} has no \"id\"", i + 1))?;
        let name = app_name(id, &names);
        if name != id {
            out.notes.push(format!(
                "hook {id:?} is app {name:?} (app names use only letters, digits, '-' and '_')"
            ));
        }
        names.push(name.clone());
        let app = App::from_hook(id, obj)?;
        out.text.push_str(&app.render(&name, &token()?));
        out.omissions
            .extend(app.omissions.iter().map(|o| format!("hook {id:?}: {o}")));
        out.notes
            .extend(app.notes.iter().map(|n| format!("hook {id:?}: {n}")));
    }
    Ok(out)
}

fn header(admin: &str) -> String {
    format!(
        r#"# ferry: imported by `ferry import webhook` from an adnanh/webhook hooks file.
# What it could not express is listed on stderr and below as `# omitted:`.
# It holds secrets: keep it private (mode 600). Check it with `ferry check`.

[server]
listen = "127.0.0.1:8080"          # "0.0.0.0:8080" to take requests from other hosts
public_url = "http://127.0.0.1:8080"  # the address senders reach ferry at
data_dir = "./ferry-data"           # the database and deploy logs, relative to this file
admin_token = "{admin}"  # the API, dashboard and CLI
"#
    )
}

/// `id` made a valid app name (letters, digits, `-`, `_`), distinct from those in `taken`.
fn app_name(id: &str, taken: &[String]) -> String {
    let mut base: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if base.trim_matches('-').is_empty() {
        base = "hook".into();
    }
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// One hook as ferry config, before rendering.
#[derive(Default)]
struct App {
    /// `key = value` lines of `[apps.X.verify]` (values already TOML).
    verify: Vec<String>,
    allow_ips: Vec<String>,
    hmac: bool,
    /// The full ref the trigger rule matched (`refs/heads/main`, `refs/tags/v1`).
    branch: Option<String>,
    /// The rule that named the branch, for an omission if no sender of ferry's reads it.
    branch_rule: Option<String>,
    command: Vec<String>,
    workdir: Option<String>,
    env: Vec<(String, String)>,
    notes: Vec<String>,
    omissions: Vec<String>,
}

impl App {
    fn from_hook(id: &str, hook: &Map<String, Value>) -> anyhow::Result<App> {
        let mut app = App::default();
        let program = hook
            .get("execute-command")
            .and_then(Value::as_str)
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| anyhow::anyhow!("hook {id:?} has no \"execute-command\""))?;
        app.command.push(program.to_string());
        for (key, value) in hook {
            match key.as_str() {
                "id" | "execute-command" => {}
                "command-working-directory" => app.workdir = value.as_str().map(str::to_string),
                "pass-arguments-to-command" => app.arguments(value),
                "pass-environment-to-command" => app.environment(value),
                "trigger-rule" => app.rule(value, "trigger-rule", true),
                "pass-file-to-command" => app.omit(
                    key,
                    "ferry passes no files: the whole body is in $FERRY_PAYLOAD",
                ),
                other => match ANSWER_KEYS.iter().find(|(k, _)| *k == other) {
                    Some((_, why)) => app.omit(key, why),
                    None => app.omit(key, "unknown to this importer"),
                },
            }
        }
        if app.branch.is_some() && app.verify.is_empty() {
            // `repo = "*"` lets the delivery name the repository: `ferry check` refuses it on
            // an app anyone holding the hook URL may call.
            app.branch = None;
            if let Some(rule) = app.branch_rule.take() {
                app.omit(
                    &rule,
                    "without a signature rule the hook URL alone would let anyone name the repository to deploy: the service redeploys on every delivery; add a verify scheme and `git = { repo = \"owner/name\", branch = … }`",
                );
            }
        }
        if app.branch.is_some() && app.hmac && app.verify.len() == 1 {
            if let Some(rule) = app.branch_rule.take() {
                app.omit(
                    &rule,
                    "ferry reads the ref only from senders it knows (GitHub, GitLab, Bitbucket, Gitea); a delivery verified by `verify.hmac` deploys the configured branch whatever it names, with no FERRY_GIT_COMMIT",
                );
            }
        }
        Ok(app)
    }

    fn omit(&mut self, rule: &str, why: &str) {
        self.omissions.push(format!("{rule}: {why}"));
    }

    /// `pass-arguments-to-command`: literal strings stay in the argv; values from the event
    /// arrive as `FERRY_*` variables, or are reported.
    fn arguments(&mut self, value: &Value) {
        for (i, arg) in value.as_array().into_iter().flatten().enumerate() {
            let rule = format!("pass-arguments-to-command[{i}]");
            let (source, name) = source_name(arg);
            match (source, ferry_var(source, name)) {
                ("string", _) => self.command.push(name.to_string()),
                (_, Some(var)) => self.notes.push(format!(
                    "argument {} ({source} {name:?}) now arrives as ${var}, not in the argv (later arguments move up)",
                    i + 1
                )),
                (_, None) => self.omit(
                    &rule,
                    &format!("{source} {name:?} has no FERRY_* equivalent (the body is in $FERRY_PAYLOAD)"),
                ),
            }
        }
    }

    /// `pass-environment-to-command`: literal strings become `env`; values from the event
    /// arrive as `FERRY_*` variables, or are reported.
    fn environment(&mut self, value: &Value) {
        for (i, var) in value.as_array().into_iter().flatten().enumerate() {
            let rule = format!("pass-environment-to-command[{i}]");
            let (source, name) = source_name(var);
            let envname = var
                .get("envname")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("HOOK_{name}"));
            match (source, ferry_var(source, name)) {
                ("string", _) => self.env.push((envname, name.to_string())),
                (_, Some(ferry)) => self.notes.push(format!(
                    "${envname} ({source} {name:?}) is now ${ferry}"
                )),
                (_, None) => self.omit(
                    &rule,
                    &format!("{source} {name:?} has no FERRY_* equivalent (the body is in $FERRY_PAYLOAD)"),
                ),
            }
        }
    }

    /// A trigger rule: the top-level `and` is a list of conditions ferry checks one by one;
    /// `or` and `not` (and `and` below them) are not expressible.
    fn rule(&mut self, rule: &Value, path: &str, top: bool) {
        let Some(obj) = rule.as_object() else {
            return self.omit(path, "is not an object");
        };
        for (key, value) in obj {
            let here = format!("{path}.{key}");
            match key.as_str() {
                "and" if top => {
                    for (i, r) in value.as_array().into_iter().flatten().enumerate() {
                        self.rule(r, &format!("{here}[{i}]"), true);
                    }
                }
                "match" => self.matched(value, &here),
                "and" | "or" | "not" => self.omit(
                    &here,
                    "ferry has no `or`/`not` rules: every configured check must pass",
                ),
                _ => self.omit(&here, "unknown rule"),
            }
        }
    }
}

/// The `source` and `name` of an argument or rule parameter (`""` when missing).
fn source_name(v: &Value) -> (&str, &str) {
    let get = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    (get("source"), get("name"))
}

/// The `FERRY_*` variable that carries the same value as the peer's `source`/`name`, if any.
fn ferry_var(source: &str, name: &str) -> Option<&'static str> {
    match (source, name) {
        ("payload", "head_commit.id" | "after" | "checkout_sha") => Some("FERRY_GIT_COMMIT"),
        ("payload", "ref") => Some("FERRY_GIT_REF"),
        (
            "payload",
            "repository.full_name"
            | "project.path_with_namespace"
            | "repository.path_with_namespace",
        ) => Some("FERRY_GIT_REPO"),
        ("entire-payload" | "raw-request-body", _) => Some("FERRY_PAYLOAD"),
        ("header", h)
            if ["X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event"]
                .iter()
                .any(|e| e.eq_ignore_ascii_case(h)) =>
        {
            Some("FERRY_EVENT")
        }
        _ => None,
    }
}

impl App {
    /// One `match` rule.
    fn matched(&mut self, m: &Value, path: &str) {
        let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
        let param = m.get("parameter").unwrap_or(&Value::Null);
        let (source, name) = source_name(param);
        let path = format!("{path} ({kind})");
        let algorithm = kind
            .strip_prefix("payload-hmac-")
            .or_else(|| kind.strip_prefix("payload-hash-"));
        match (kind, algorithm) {
            (_, Some(alg)) if source == "header" => self.signature(m, alg, name, &path),
            (_, Some(_)) => self.omit(
                &path,
                &format!(
                    "a signature in the {source} {name:?}: ferry reads signatures from headers"
                ),
            ),
            ("value", _) => self.value(m, source, name, &path),
            ("ip-whitelist", _) => match m.get("ip-range").and_then(Value::as_str) {
                Some(range) => self.allow_ips.push(range.to_string()),
                None => self.omit(&path, "has no ip-range"),
            },
            ("regex", _) => self.omit(
                &path,
                &format!("ferry has no regex rules (on {source} {name:?})"),
            ),
            ("scalr-signature", _) => self.omit(&path, "ferry does not verify Scalr signatures"),
            _ => self.omit(&path, "unknown match type"),
        }
    }

    /// A `payload-hmac-ALG` on header `header`.
    fn signature(&mut self, m: &Value, alg: &str, header: &str, path: &str) {
        if !matches!(alg, "sha1" | "sha256" | "sha512") {
            return self.omit(path, &format!("unknown algorithm {alg:?}"));
        }
        let Some(secret) = self.secret(m.get("secret"), path) else {
            return;
        };
        let sender = match (header.to_ascii_lowercase().as_str(), alg) {
            ("x-hub-signature-256", "sha256") | ("x-hub-signature", "sha1") => Some("github"),
            ("x-hub-signature", "sha256") => Some("bitbucket"),
            _ => None,
        };
        if let Some(sender) = sender {
            return self.verify_key(sender, secret, path);
        }
        if self.hmac {
            return self.omit(
                path,
                "ferry takes one `verify.hmac` per app: only the first is kept",
            );
        }
        self.hmac = true;
        self.notes.push(format!(
            "{path}: the peer also accepts a `{alg}=` prefix on {header}; ferry requires exactly `prefix` (here none)"
        ));
        self.verify.push(format!(
            "hmac = {{ header = {}, algorithm = \"{alg}\", encoding = \"hex\", prefix = \"\", secret = {secret} }}",
            quote(header)
        ));
    }

    /// `verify.KEY = secret`, once per sender.
    fn verify_key(&mut self, key: &str, secret: String, path: &str) {
        let line = format!("{key} = {secret}");
        if self
            .verify
            .iter()
            .any(|v| v.starts_with(&format!("{key} =")))
        {
            if !self.verify.contains(&line) {
                self.omit(
                    path,
                    &format!("a second `verify.{key}` secret: only the first is kept"),
                );
            }
            return;
        }
        self.verify.push(line);
    }

    /// A `value` match: the payload's `ref` (the branch) or GitLab's token header.
    fn value(&mut self, m: &Value, source: &str, name: &str, path: &str) {
        let value = match m.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return self.omit(path, "has no value"),
        };
        match (source, name) {
            ("payload", "ref") if self.branch.is_none() && git_spec(&value).is_some() => {
                self.branch = Some(value);
                self.branch_rule = Some(path.to_string());
            }
            ("payload", "ref") => self.omit(
                path,
                &format!("ref {value:?}: ferry follows one branch or tag pattern per service"),
            ),
            ("header", h) if h.eq_ignore_ascii_case("X-Gitlab-Token") => {
                if let Some(secret) = self.secret(m.get("value"), path) {
                    self.verify_key("gitlab", secret, path);
                }
            }
            ("header", h) if h.eq_ignore_ascii_case("X-GitHub-Event") && value == "push" => {
                self.notes.push(format!("{path}: ferry deploys on pushes only already"));
            }
            ("url" | "query", "token") => self.omit(
                path,
                "a token in the URL query: ferry's hook URL holds its own secret token (printed by `ferry hooks`)",
            ),
            _ => self.omit(
                path,
                &format!("ferry matches no value in the {source} {name:?} (only the payload's ref, as the branch)"),
            ),
        }
    }

    /// A secret as a TOML value: `{{ getenv "X" }}` becomes `"${X}"`, a literal is quoted with
    /// `$` doubled (ferry expands `${VAR}`); `None` (reported) when missing or another template.
    fn secret(&mut self, secret: Option<&Value>, path: &str) -> Option<String> {
        let Some(text) = secret.and_then(Value::as_str).filter(|s| !s.is_empty()) else {
            self.omit(path, "has no secret");
            return None;
        };
        if let Some(var) = getenv(text) {
            return Some(quote(&format!("${{{var}}}")));
        }
        if text.contains("{{") {
            self.omit(path, "a templated secret other than {{ getenv \"VAR\" }}");
            return None;
        }
        Some(literal(text))
    }
}

/// `VAR` of a `{{ getenv "VAR" }}` template.
fn getenv(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let quoted = inner.strip_prefix("getenv")?.trim();
    let var = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let valid = !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(var)
}

/// The `git` line that follows the full ref `r` (`refs/heads/B` or `refs/tags/T`) in any
/// repository.
fn git_spec(r: &str) -> Option<String> {
    if let Some(branch) = r.strip_prefix("refs/heads/") {
        return Some(format!(
            "git = {{ repo = \"*\", branch = {} }}",
            literal(branch)
        ));
    }
    let tag = r.strip_prefix("refs/tags/")?;
    // A tag glob: the exact tag, its glob characters escaped.
    let glob: String = tag
        .chars()
        .map(|c| match c {
            '*' | '?' | '[' | ']' | '{' | '}' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect();
    Some(format!(
        "git = {{ repo = \"*\", tags = {} }}",
        literal(&glob)
    ))
}

/// A TOML string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML string of a literal ferry would otherwise expand (`$` doubled).
fn literal(s: &str) -> String {
    quote(&s.replace('$', "$$"))
}

impl App {
    /// The app's tables.
    fn render(&self, name: &str, token: &str) -> String {
        let mut t = format!(
            "\n[apps.{name}]\ntoken = \"{token}\"  # the secret part of the hook URL: /hooks/{name}/TOKEN\n"
        );
        for o in &self.omissions {
            t.push_str(&format!("# omitted: {o}\n"));
        }
        if !self.verify.is_empty() || !self.allow_ips.is_empty() {
            t.push_str(&format!("\n[apps.{name}.verify]\n"));
            for v in &self.verify {
                t.push_str(v);
                t.push('\n');
            }
            if !self.allow_ips.is_empty() {
                let ips: Vec<String> = self.allow_ips.iter().map(|i| quote(i)).collect();
                t.push_str(&format!("allow_ips = [{}]\n", ips.join(", ")));
            }
        }
        t.push_str(&format!("\n[apps.{name}.services.run]\n"));
        if let Some(git) = self.branch.as_deref().and_then(git_spec) {
            t.push_str(&format!(
                "{git}  # pushed to any repository (as the hook's rule)\n"
            ));
        }
        for n in &self.notes {
            t.push_str(&format!("# note: {n}\n"));
        }
        let argv: Vec<String> = self.command.iter().map(|a| literal(a)).collect();
        t.push_str(&format!("command = [{}]\n", argv.join(", ")));
        if let Some(dir) = &self.workdir {
            t.push_str(&format!("workdir = {}\n", literal(dir)));
        }
        if !self.env.is_empty() {
            let env: Vec<String> = self
                .env
                .iter()
                .map(|(k, v)| format!("{} = {}", quote(k), literal(v)))
                .collect();
            t.push_str(&format!("env = {{ {} }}\n", env.join(", ")));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(hooks: &str) -> Imported {
        let value: Value = serde_json::from_str(hooks).expect("json");
        convert(&value, "admin", || Ok("tok".into())).expect("converts")
    }

    #[test]
    fn ids_become_distinct_app_names() {
        let taken = vec!["a-b".to_string()];
        assert_eq!(app_name("a.b", &taken), "a-b-2");
        assert_eq!(app_name("deploy", &taken), "deploy");
        assert_eq!(app_name("...", &[]), "hook");
        let out =
            import(r#"[{"id":"x y","execute-command":"/a"},{"id":"x/y","execute-command":"/b"}]"#);
        assert!(out.text.contains("[apps.x-y]\n") && out.text.contains("[apps.x-y-2]\n"));
        assert_eq!(out.notes.len(), 2, "{:?}", out.notes);
    }

    #[test]
    fn secrets_from_the_environment_and_literal_dollars() {
        assert_eq!(getenv(r#"{{ getenv "GH_SECRET" }}"#), Some("GH_SECRET"));
        assert_eq!(getenv(r#"{{getenv "A B"}}"#), None);
        assert_eq!(getenv("plain"), None);
        let out = import(
            r#"[{"id":"a","execute-command":"/run $HOME","trigger-rule":{"match":{"type":"payload-hmac-sha256","secret":"p$ss","parameter":{"source":"header","name":"X-Hub-Signature-256"}}}}]"#,
        );
        assert!(out.text.contains("github = \"p$$ss\""), "{}", out.text);
        assert!(
            out.text.contains("command = [\"/run $$HOME\"]"),
            "{}",
            out.text
        );
        assert!(out.omissions.is_empty(), "{:?}", out.omissions);
    }

    #[test]
    fn or_not_and_nested_and_are_omissions_by_rule() {
        let out = import(
            r#"[{"id":"a","execute-command":"/a","trigger-rule":{"and":[{"or":[]},{"not":{}},{"match":{"type":"value","value":"refs/tags/v1.0","parameter":{"source":"payload","name":"ref"}}},{"match":{"type":"payload-hmac-sha256","secret":"s3cr3t","parameter":{"source":"header","name":"X-Hub-Signature-256"}}}]}}]"#,
        );
        assert_eq!(
            out.omissions,
            vec![
                "hook \"a\": trigger-rule.and[0].or: ferry has no `or`/`not` rules: every configured check must pass",
                "hook \"a\": trigger-rule.and[1].not: ferry has no `or`/`not` rules: every configured check must pass",
            ]
        );
        assert!(
            out.text.contains("git = { repo = \"*\", tags = \"v1.0\" }"),
            "{}",
            out.text
        );
    }

    #[test]
    fn input_errors() {
        let err = |v: &str| {
            let value: Value = serde_json::from_str(v).expect("json");
            convert(&value, "admin", || Ok("tok".into()))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("{}").contains("a list of hooks"));
        assert!(err("[]").contains("no hooks"));
        assert!(err(r#"[{"execute-command":"/a"}]"#).contains("hook 1 has no \"id\""));
        assert!(err(r#"[{"id":"a"}]"#).contains("no \"execute-command\""));
    }
}
