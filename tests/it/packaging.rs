//! What a package ships besides the binary: `ferry --version` with the commit, shell
//! completions and man pages generated from the CLI's own definitions; and the packages
//! themselves (`packaging/`): the Debian package `packaging/build-deb` makes, and the container
//! image `packaging/build-image` makes without pulling anything.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dockerenv::{TEST_LABEL, published, try_docker, wait_health};
use crate::support::*;

#[tokio::test]
async fn version_names_the_commit_it_was_built_from() {
    let out = Cli::new(&["--version"]).run().await;
    let version = out.success().trim().to_string();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let expected = match head {
        Some(commit) => format!("ferry {} (commit {commit})", env!("CARGO_PKG_VERSION")),
        None => format!("ferry {} (unknown commit)", env!("CARGO_PKG_VERSION")),
    };
    assert_eq!(version, expected);
}

#[tokio::test]
async fn completions_cover_every_command_and_parse() {
    let bash = Cli::new(&["completions", "bash"]).run().await;
    let script = bash.success();
    for command in ["init", "serve", "check", "deploy", "completions", "man"] {
        assert!(script.contains(command), "bash completion lacks {command}");
    }
    // The script is valid bash.
    let mut check = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let checked = check.wait_with_output().expect("bash -n");
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let zsh = Cli::new(&["completions", "zsh"]).run().await;
    assert!(zsh.success().starts_with("#compdef ferry"));
    let fish = Cli::new(&["completions", "fish"]).run().await;
    assert!(fish.success().contains("complete -c ferry"));
    let nope = Cli::new(&["completions", "tcsh"]).run().await;
    assert!(nope.failure().contains("invalid value 'tcsh'"), "{nope:?}");
}

#[tokio::test]
async fn man_pages_for_ferry_and_each_command() {
    let main = Cli::new(&["man"]).run().await;
    let page = main.success();
    assert!(page.contains(".TH ferry 1"), "{page}");
    assert!(
        page.contains(".SH SUBCOMMANDS") && page.contains("init"),
        "{page}"
    );
    let init = Cli::new(&["man", "init"]).run().await;
    let page = init.success();
    assert!(page.contains(".TH ferry-init 1"), "{page}");
    assert!(page.contains("\\-\\-sender"), "{page}");
    let nope = Cli::new(&["man", "nope"]).run().await;
    assert!(
        nope.failure().contains("ferry has no command \"nope\""),
        "{nope:?}"
    );
}

/// The repository root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The target dir the test build lives in (`…/debug/ferry` → `…`), so the packaging scripts
/// package this very build instead of building another.
fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_ferry"));
    bin.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in TARGET/PROFILE/")
        .to_path_buf()
}

/// Runs `cmd` (stdin closed) and returns its stdout; fails the test with its stderr otherwise.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `program` runs (`program ARGS` exits 0).
fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn the_packages_example_configs_pass_check() {
    // The Debian package's /etc/ferry/ferry.toml and the container's (compose.yaml).
    let deb = repo().join("packaging/ferry.toml");
    let out = Cli::new(&["check", "--config", deb.to_str().expect("utf-8")])
        .run()
        .await;
    out.success();
    let container = repo().join("packaging/ferry.container.toml");
    let out = Cli::new(&["check", "--config", container.to_str().expect("utf-8")])
        .env("FERRY_ADMIN_TOKEN", "an-admin-token-from-compose")
        .run()
        .await;
    out.success();
}

#[tokio::test]
#[ignore = "needs cargo-deb and dpkg: cargo test -- --include-ignored"]
async fn debian_package_ships_binary_unit_config_man_pages_and_completions() {
    if !works("cargo", &["deb", "--version"]) {
        return unavailable("cargo-deb is missing (cargo install --locked cargo-deb)");
    }
    if !works("dpkg-deb", &["--version"]) {
        return unavailable("dpkg-deb is missing (a Debian system)");
    }
    let out = tempfile::tempdir().expect("temp dir");
    // The debug build the tests run, packaged as it is (no second build).
    let started = Instant::now();
    let printed = run(Command::new(repo().join("packaging/build-deb"))
        .args(["--dev", "--no-build", "--output"])
        .arg(out.path())
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(repo()));
    eprintln!("packaging/build-deb --dev took {:?}", started.elapsed());
    let deb = std::fs::read_dir(out.path())
        .expect("read the output dir")
        .map(|e| e.expect("dir entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| panic!("no .deb in the output dir; build-deb printed {printed}"));

    // What it holds, with modes and owners.
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let entry = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" .{path}")))
            .unwrap_or_else(|| panic!("the package lacks {path}:\n{listing}"))
            .to_string()
    };
    let owned_by_root = |line: String, mode: &str| {
        assert!(
            line.starts_with(&format!("{mode} 0/0 "))
                || line.starts_with(&format!("{mode} root/root ")),
            "{line}"
        )
    };
    owned_by_root(entry("/usr/bin/ferry"), "-rwxr-xr-x");
    let unit_path = [
        "/lib/systemd/system/ferry.service",
        "/usr/lib/systemd/system/ferry.service",
    ]
    .into_iter()
    .find(|p| listing.lines().any(|l| l.ends_with(&format!(" .{p}"))))
    .unwrap_or_else(|| panic!("the package lacks the unit ferry.service:\n{listing}"));
    // The config holds secrets: not for others to read (systemd hands the service a copy).
    owned_by_root(entry("/etc/ferry/ferry.toml"), "-rw-r-----");
    for page in [
        "ferry",
        "ferry-serve",
        "ferry-init",
        "ferry-check",
        "ferry-doctor",
        "ferry-man",
    ] {
        entry(&format!("/usr/share/man/man1/{page}.1.gz"));
    }
    entry("/usr/share/bash-completion/completions/ferry");
    entry("/usr/share/zsh/vendor-completions/_ferry");
    entry("/usr/share/fish/vendor_completions.d/ferry.fish");

    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains("Package: ferry"), "{info}");
    assert!(
        info.contains("Depends:") && info.contains("libc6"),
        "{info}"
    );
    let control = tempfile::tempdir().expect("temp dir");
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(control.path()));
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).expect("conffiles");
    assert!(
        conffiles.lines().any(|l| l == "/etc/ferry/ferry.toml"),
        "{conffiles}"
    );

    // Installed in a throwaway root: the binary runs, the example config passes its check.
    let root = tempfile::tempdir().expect("temp dir");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(root.path()));
    let ferry = root.path().join("usr/bin/ferry");
    let version = run(Command::new(&ferry).arg("--version"));
    assert!(
        version.starts_with(&format!("ferry {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let config = root.path().join("etc/ferry/ferry.toml");
    run(Command::new(&ferry)
        .arg("check")
        .arg("--config")
        .arg(&config));
    let page = run(Command::new("gzip")
        .arg("-dc")
        .arg(root.path().join("usr/share/man/man1/ferry-init.1.gz")));
    assert!(page.contains(".TH ferry-init 1"), "{page}");
    run(Command::new("bash").arg("-n").arg(
        root.path()
            .join("usr/share/bash-completion/completions/ferry"),
    ));

    // The unit: systemd's own check where it can run here, and its hardening in any case.
    let unit_file = root.path().join(unit_path.trim_start_matches('/'));
    let unit = std::fs::read_to_string(&unit_file).expect("read the unit");
    if works("systemd-analyze", &["--version"]) {
        // systemd's offline check, which wants ExecStart='s program to exist: the unit as
        // installed, with the program where the throwaway root has it.
        let copy = tempfile::tempdir().expect("temp dir");
        let installed = format!("{}", ferry.display());
        std::fs::write(
            copy.path().join("ferry.service"),
            unit.replace("/usr/bin/ferry", &installed),
        )
        .expect("write the unit's copy");
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(copy.path().join("ferry.service"))
            .stdin(Stdio::null())
            .output()
            .expect("systemd-analyze");
        let said = String::from_utf8_lossy(&verify.stderr);
        // Unknown keys are only warnings: any remark on the file fails the test too.
        assert!(
            verify.status.success() && !said.contains("ferry.service:"),
            "systemd-analyze verify: {said}"
        );
    } else {
        eprintln!("systemd-analyze is missing: only the unit's keys are checked");
    }
    let keys: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for key in [
        "ExecStart=/usr/bin/ferry serve --config %d/ferry.toml",
        "LoadCredential=ferry.toml:/etc/ferry/ferry.toml",
        "DynamicUser=yes",
        "StateDirectory=ferry",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "WantedBy=multi-user.target",
    ] {
        assert!(keys.contains(&key), "the unit lacks {key}:\n{unit}");
    }
    // The data dir the example config names is the one systemd gives the service.
    let example = std::fs::read_to_string(&config).expect("read the example config");
    assert!(
        example.contains("data_dir = \"/var/lib/ferry\""),
        "{example}"
    );
    assert!(
        unit.contains("SupplementaryGroups=docker"),
        "the Docker socket's note is gone"
    );
}

/// Removes the test's container (with its volume) and image, however the test ends.
struct ImageScope {
    image: String,
    container: String,
}

impl Drop for ImageScope {
    fn drop(&mut self) {
        let _ = try_docker(&["rm", "-f", "-v", &self.container]);
        let _ = try_docker(&["rmi", "-f", &self.image]);
    }
}

#[tokio::test]
#[ignore = "needs Docker: cargo test -- --include-ignored"]
async fn container_image_runs_as_non_root_takes_a_hook_and_turns_healthy() {
    if !works("docker", &["info"]) {
        return unavailable("Docker: `docker info` failed");
    }
    let id = unique("ferry-pkg");
    let scope = ImageScope {
        image: format!("ferry-packaging-test:{id}"),
        container: id.clone(),
    };
    let started = Instant::now();
    run(Command::new(repo().join("packaging/build-image"))
        .args(["--no-pull", "--binary", env!("CARGO_BIN_EXE_ferry")])
        .args(["--tag", &scope.image, "--label", TEST_LABEL])
        .current_dir(repo()));
    eprintln!(
        "packaging/build-image --no-pull took {:?}",
        started.elapsed()
    );

    // The image says what the Dockerfile users build from says.
    let dockerfile =
        std::fs::read_to_string(repo().join("packaging/Dockerfile")).expect("Dockerfile");
    let config = try_docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        &scope.image,
    ])
    .expect("inspect the image");
    let config: serde_json::Value = serde_json::from_str(&config).expect("JSON");
    assert_eq!(config["User"], "ferry:ferry");
    assert!(dockerfile.contains("USER ferry:ferry"));
    assert!(
        config["Env"]
            .as_array()
            .expect("Env")
            .iter()
            .any(|e| e == "FERRY_CONFIG=/etc/ferry/ferry.toml")
    );
    assert!(dockerfile.contains("ENV FERRY_CONFIG=/etc/ferry/ferry.toml"));
    assert!(config["Volumes"].get("/data").is_some(), "{config}");
    assert!(dockerfile.contains("VOLUME /data"));
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    assert!(dockerfile.contains("EXPOSE 8080"));
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/bin/ferry"]));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/bin/ferry"]"#));
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/usr/libexec/ferry/healthcheck"])
    );
    assert!(dockerfile.contains(r#"CMD ["/usr/libexec/ferry/healthcheck"]"#));

    // A config of the test's, read-only, as compose.yaml mounts one.
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("ferry.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"[server]
listen = "0.0.0.0:8080"
data_dir = "/data"

[apps.shop]
token = "{HOOK_TOKEN}"
[apps.shop.verify]
allow_unsigned = true
[apps.shop.services.web]
command = ["/bin/bash", "-c", "echo deployed"]
"#
        ),
    )
    .expect("write the config");
    // Readable by the container's user (10001), who is not the file's owner.
    std::fs::set_permissions(
        &config_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod the config");
    let mount = format!("{}:/etc/ferry/ferry.toml:ro", config_path.display());
    // The healthcheck every second instead of every 30 s: the image's command, sooner.
    run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &scope.container,
        "-p",
        "127.0.0.1::8080",
        "-v",
        &mount,
        "--health-interval=1s",
        "--health-start-period=1s",
        &scope.image,
    ]));
    let addr = published(&scope.container, 8080);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    eventually(
        "ferry in its container to answer /healthz",
        WAIT,
        async || {
            let resp = client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .map_err(|e| format!("{e}; logs: {:?}", try_docker(&["logs", &scope.container])))?;
            if resp.status() == 200 {
                Ok(())
            } else {
                Err(format!("{}", resp.status()))
            }
        },
    )
    .await;
    let resp = client
        .post(format!("http://{addr}/hooks/shop/{HOOK_TOKEN}"))
        .send()
        .await
        .expect("POST the hook");
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    wait_health(&scope.container, "healthy").await;
    // Not root inside, and its data on the volume it owns.
    let user = try_docker(&["inspect", "--format", "{{.Config.User}}", &scope.container])
        .expect("inspect");
    assert_eq!(user, "ferry:ferry");
}
