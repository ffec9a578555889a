//! The data dir is private: ferry creates it and every directory in it `0700` and every file
//! `0600` (the database and its `-wal`/`-shm`, deployment logs, payload files, `running/`
//! notes), because they hold payloads, headers and logs that may reveal more than they should.
//!
//! Modes are set explicitly where things are created, not through the process umask: deploy
//! commands inherit ferry's umask, and what *they* create (build output, releases) is theirs to
//! decide. SQLite creates `-wal` and `-shm` with the database file's mode, so creating the
//! database `0600` covers them. A data dir left by an older ferry (or made by hand) with looser
//! modes is tightened at start ([`tighten`]); what cannot be changed (another owner) is logged.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory ferry creates under the data dir.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file ferry creates under the data dir.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents, each `0700`.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Async [`create_dir`].
pub(crate) async fn create_dir_async(dir: &Path) -> io::Result<()> {
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .await
}

/// Options that create a file `0600`.
pub(crate) fn file_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Async [`file_options`].
pub(crate) fn file_options_async() -> tokio::fs::OpenOptions {
    let mut o = tokio::fs::OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Creates the database file `0600` if it does not exist yet (SQLite takes an empty file for a
/// new database, and gives its `-wal` and `-shm` the same mode).
pub(crate) fn create_private_file(path: &Path) -> io::Result<()> {
    file_options()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
}

/// What ferry keeps in the data dir: the database files, and directories it alone writes.
const OWN_FILES: &[&str] = &[
    "ferry.db",
    "ferry.db-wal",
    "ferry.db-shm",
    "ferry.db-journal",
];
const OWN_DIRS: &[&str] = &["logs", "payloads", "running", "checkout-keys"];

/// Takes group and other permissions away from the data dir `dir` and what ferry keeps in it
/// (the database files; `logs/`, `payloads/`, `running/` and everything in them). Anything else
/// there is left alone: a data dir shared with other files (deploy scripts) must not lose their
/// execute bits. Symbolic links are not followed. Returns how many entries were changed;
/// entries that cannot be changed are logged and skipped.
pub(crate) fn tighten(dir: &Path) -> usize {
    let mut changed = 0;
    let mut pending: Vec<_> = OWN_FILES
        .iter()
        .chain(OWN_DIRS)
        .map(|name| dir.join(name))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && m.permissions().mode() & 0o077 != 0 => {
            match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)) {
                Ok(()) => changed += 1,
                Err(e) => {
                    tracing::warn!(path = %dir.display(), error = %e, "the data dir is readable by others and its mode cannot be changed")
                }
            }
        }
        _ => {}
    }
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot check the mode of a data dir entry");
                continue;
            }
        };
        let want = if meta.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => pending.extend(entries.flatten().map(|e| e.path())),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot list a data dir directory")
                }
            }
            DIR_MODE
        } else if meta.is_file() {
            FILE_MODE
        } else {
            continue; // Symbolic links, sockets: not ours to change.
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want)) {
            Ok(()) => changed += 1,
            Err(e) => {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), error = %e, "data dir entry is readable by others and its mode cannot be changed")
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_and_tightens_loose_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("a/data");
        create_dir(&data.join("logs")).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("logs")), 0o700);
        create_private_file(&data.join("ferry.db")).unwrap();
        assert_eq!(mode(&data.join("ferry.db")), 0o600);

        let loose = data.join("logs/1.log");
        std::fs::write(&loose, "x").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "y").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("logs/link")).unwrap();
        let script = data.join("deploy.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

        assert_eq!(tighten(&data), 2);
        assert_eq!(mode(&script), 0o755, "not ferry's: left alone");
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&loose), 0o600);
        assert_eq!(mode(&outside), 0o644, "symbolic links are not followed");
        assert_eq!(tighten(&data), 0);
    }
}
