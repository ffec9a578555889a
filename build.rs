//! Build script: records the git commit the binary is built from, for `ferry --version`
//! (`FERRY_COMMIT`; "unknown commit" outside a git checkout, e.g. from a source tarball); and
//! has the crate rebuilt when a file in `migrations/` is added (`sqlx::migrate!` embeds them).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .map(|c| format!("commit {c}"))
        .unwrap_or_else(|| "unknown commit".into());
    println!("cargo:rustc-env=FERRY_COMMIT={commit}");
    // sqlx::migrate! embeds migrations/ at compile time: a new migration file must rebuild.
    println!("cargo:rerun-if-changed=migrations");
    // Rebuilt when HEAD moves: a new commit, or another branch checked out.
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={p}");
    }
}
