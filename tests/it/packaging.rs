//! What a package ships besides the binary: `ferry --version` with the commit, shell
//! completions and man pages generated from the CLI's own definitions.

use std::io::Write;
use std::process::{Command, Stdio};

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
