//! The config file: `ferry check` and `ferry serve` name the key and the line of every error,
//! `ferry hooks` prints the hook URLs, `${VAR}` and relative paths resolve as documented.

use crate::support::*;

/// A valid config whose lines the tests below edit. No `{dir}`: only `check` reads it.
const GOOD: &str = r#"[server]
listen = "127.0.0.1:0"
public_url = "https://deploy.example.com"
data_dir = "data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.shop]
token = "secret-token-1"

[apps.shop.verify]
github = "It's a Secret to Everybody"

[apps.shop.services.web]
git = { repo = "Codertocat/Hello-World", branch = "master" }
command = ["./deploy.sh", "web"]
timeout = "10m"

[apps.shop.services.worker]
command = ["./deploy.sh", "worker"]

[apps.shop.profiles.hotfix]
services = ["web"]

[apps.blog]
token = "blog-token-123456"

[apps.blog.services.site]
command = ["/bin/true"]
"#;

/// Runs `ferry check` on `config` and asserts that it fails naming `ferry.toml:LINE` and every
/// one of `mentions` on stderr. Returns stderr.
async fn check_fails(config: &str, line: usize, mentions: &[&str]) -> String {
    let file = ConfigFile::new(config);
    let out = file.check().await;
    assert_eq!(out.code, Some(1), "ferry check must exit 1: {out:#?}");
    let stderr = out.stderr.clone();
    let at = format!("ferry.toml:{line}");
    assert!(
        stderr.contains(&at),
        "the error names the line ({at}):\n{stderr}\nconfig:\n{config}"
    );
    for m in mentions {
        assert!(stderr.contains(m), "the error mentions {m:?}:\n{stderr}");
    }
    stderr
}

#[tokio::test]
async fn check_accepts_a_good_config() {
    let file = ConfigFile::new(GOOD);
    let out = file.check().await;
    let stdout = out.success();
    assert!(stdout.contains("ok"), "{out:#?}");
}

#[tokio::test]
async fn check_names_an_unknown_key_and_its_line() {
    let config = GOOD.replace(
        "command = [\"./deploy.sh\", \"worker\"]",
        "comand = [\"./deploy.sh\", \"worker\"]",
    );
    let line = line_of(&config, "comand =", 1);
    check_fails(&config, line, &["comand"]).await;
}

#[tokio::test]
async fn check_names_a_missing_environment_variable_and_its_key() {
    let config = GOOD.replace(
        "token = \"secret-token-1\"",
        "token = \"${FERRY_TEST_SURELY_UNSET_VAR}\"",
    );
    let line = line_of(&config, "FERRY_TEST_SURELY_UNSET_VAR", 1);
    check_fails(
        &config,
        line,
        &["FERRY_TEST_SURELY_UNSET_VAR", "apps.shop.token"],
    )
    .await;
}

#[tokio::test]
async fn check_names_a_bad_duration_its_key_and_its_line() {
    let config = GOOD.replace("timeout = \"10m\"", "timeout = \"10 parsecs\"");
    let line = line_of(&config, "10 parsecs", 1);
    check_fails(
        &config,
        line,
        &["apps.shop.services.web.timeout", "10 parsecs"],
    )
    .await;
}

#[tokio::test]
async fn check_refuses_a_service_without_an_executor() {
    let config = GOOD.replace("command = [\"./deploy.sh\", \"worker\"]\n", "");
    let line = line_of(&config, "[apps.shop.services.worker]", 1);
    check_fails(&config, line, &["apps.shop.services.worker"]).await;
}

#[tokio::test]
async fn check_refuses_a_duplicate_key() {
    let config = GOOD.replace(
        "token = \"secret-token-1\"\n",
        "token = \"secret-token-1\"\ntoken = \"secret-token-2\"\n",
    );
    let line = line_of(&config, "secret-token-2", 1);
    check_fails(&config, line, &["token"]).await;
}

#[tokio::test]
async fn check_refuses_a_duplicate_table() {
    let config = format!("{GOOD}\n[apps.shop]\ntoken = \"another-token-123\"\n");
    let first = line_of(&config, "[apps.shop]", 1);
    let second = line_of(&config, "[apps.shop]", first + 1);
    check_fails(&config, second, &["shop"]).await;
}

#[tokio::test]
async fn check_refuses_a_profile_naming_an_unknown_service() {
    let config = GOOD.replace(
        "services = [\"web\"]",
        "services = [\"web\", \"nosuchservice\"]",
    );
    let line = line_of(&config, "nosuchservice", 1);
    check_fails(&config, line, &["nosuchservice", "hotfix"]).await;
}

#[tokio::test]
async fn serve_refuses_a_bad_config_with_the_same_message() {
    let config = GOOD.replace("timeout = \"10m\"", "timeout = \"10 parsecs\"");
    let line = line_of(&config, "10 parsecs", 1);
    let file = ConfigFile::new(&config);
    let checked = file.check().await;
    assert_eq!(checked.code, Some(1));

    let out = Cli::new(&["serve", "--config", file.path_str()])
        .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
        .cwd(file.dir.path())
        .run()
        .await;
    out.failure();
    assert!(
        out.stderr.contains(&format!("ferry.toml:{line}"))
            && out.stderr.contains("apps.shop.services.web.timeout")
            && out.stderr.contains("10 parsecs"),
        "serve says what check says:\n{}\ncheck said:\n{}",
        out.stderr,
        checked.stderr
    );
    assert!(
        !out.stderr.contains("listening"),
        "it never starts: {}",
        out.stderr
    );
}

#[tokio::test]
async fn hooks_prints_every_apps_hook_url() {
    let file = ConfigFile::new(GOOD);
    let out = Cli::new(&["hooks", "--config", file.path_str()])
        .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
        .run()
        .await;
    let stdout = out.success();
    assert!(
        stdout.contains("https://deploy.example.com/hooks/shop/secret-token-1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("https://deploy.example.com/hooks/blog/blog-token-123456"),
        "{stdout}"
    );
}

/// Output piped into a reader that has gone (`ferry hooks | head -1`) ends the command
/// quietly, killed by SIGPIPE as other Unix tools are, not with a panic about a broken pipe.
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let file = ConfigFile::new(GOOD);
    // The read end is closed before ferry writes: its first write meets a broken pipe.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["hooks", "--config", file.path_str()])
        .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(writer)
        .output()
        .expect("run ferry hooks");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "{:?}: {stderr}", out.status);
}

#[tokio::test]
async fn hooks_tells_image_senders_their_url() {
    let config = format!(
        "{GOOD}\n[apps.shop.services.api]\nimage = {{ repository = \"registry.example.com/acme/api\", tags = \"semver:^1\" }}\ndocker = {{ container = \"shop-api\" }}\n"
    );
    let file = ConfigFile::new(&config);
    let out = Cli::new(&["hooks", "--config", file.path_str()])
        .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
        .run()
        .await;
    let stdout = out.success();
    let url = "https://deploy.example.com/hooks/shop/secret-token-1";
    for line in [
        format!("Docker Hub (Repository → Webhooks): Webhook URL {url}?source=dockerhub"),
        format!("Endpoint URL {url}?source=harbor"),
        format!("Webhook POST): {url}?source=quay"),
        format!("notifications.endpoints): url {url}"),
    ] {
        assert!(stdout.contains(&line), "missing {line:?} in:\n{stdout}");
    }
    // An app without image services is not told about registries.
    let blog = stdout.split("blog\t").nth(1).unwrap_or("");
    let blog = blog.split("\nshop\t").next().unwrap_or(blog);
    assert!(!blog.contains("?source=dockerhub"), "{stdout}");
}

#[tokio::test]
async fn environment_variables_are_substituted() {
    let config = GOOD.replace(
        "token = \"secret-token-1\"",
        "token = \"${SHOP_HOOK_TOKEN}\"",
    );
    let file = ConfigFile::new(&config);
    let out = Cli::new(&["hooks", "--config", file.path_str()])
        .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SHOP_HOOK_TOKEN", "token-from-the-env-42")
        .run()
        .await;
    let stdout = out.success();
    assert!(
        stdout.contains("https://deploy.example.com/hooks/shop/token-from-the-env-42"),
        "{stdout}"
    );

    // And in the server: the substituted token works, the placeholder does not.
    let ferry = Ferry::with_config(&SHOP.replace(
        "token = \"secret-token-1\"",
        "token = \"${SHOP_HOOK_TOKEN}\"",
    ))
    .env("SHOP_HOOK_TOKEN", "token-from-the-env-42")
    .start()
    .await;
    ferry
        .hook("shop")
        .token("token-from-the-env-42")
        .query("services=worker")
        .send()
        .await
        .accepted();
    let literal = ferry
        .hook("shop")
        .token("${SHOP_HOOK_TOKEN}")
        .query("services=worker")
        .send()
        .await;
    assert_eq!(literal.status, 404, "{}", literal.text);
}

#[tokio::test]
async fn relative_paths_are_relative_to_the_config_file() {
    let config = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "relative-data"
admin_token = "${FERRY_ADMIN_TOKEN}"

[apps.shop]
token = "secret-token-1"

[apps.shop.services.web]
command = ["{dir}/deploy.sh"]

[apps.shop.services.worker]
command = ["{dir}/deploy.sh"]
workdir = "wd"
"#;
    let ferry = Ferry::with_config(config).dir("wd").start().await;
    let id = ferry.hook("shop").send().await.accepted();
    let deployments = ferry.settle(id).await;
    let dir = ferry.dir().canonicalize().unwrap();

    let web = only(&deployments, "web");
    assert_eq!(web["state"], "succeeded", "{web:#}");
    let pwd = ferry.run_env(web["id"].as_i64().unwrap())["PWD"].clone();
    assert_eq!(
        std::path::Path::new(&pwd).canonicalize().unwrap(),
        dir,
        "the default workdir is the config file's directory"
    );

    let worker = only(&deployments, "worker");
    assert_eq!(worker["state"], "succeeded", "{worker:#}");
    let pwd = ferry.run_env(worker["id"].as_i64().unwrap())["PWD"].clone();
    assert_eq!(
        std::path::Path::new(&pwd).canonicalize().unwrap(),
        dir.join("wd"),
        "a relative workdir is relative to the config file"
    );

    assert!(
        ferry.path("relative-data").is_dir(),
        "data_dir beside the config"
    );
    assert!(
        !ferry.path("cwd/relative-data").exists(),
        "not in ferry's working directory"
    );
}
