//! The spill folder of a command: where DataFusion's sorts and joins, and the rows an ingest
//! stages, go when they do not fit in the memory budget. One folder per process under
//! `[ingest] spill_dir` (default: the system's temporary folder), holding a lock for as long as
//! the process runs. A folder whose lock nobody holds belongs to a process that was killed: the
//! next command removes it, so killed runs do not fill the disk.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

const PREFIX: &str = "cslake-spill-";
const LOCK: &str = ".lock";

pub struct SpillDir {
    dir: tempfile::TempDir,
    /// Held while the process runs: the folder is in use.
    _lock: std::fs::File,
}

impl std::fmt::Debug for SpillDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SpillDir").field(&self.dir.path()).finish()
    }
}

impl SpillDir {
    /// A new folder under `root`, after removing the folders killed processes left there.
    pub fn create(root: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: root.display().to_string(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io)?;
        let removed = remove_abandoned(root);
        if removed > 0 {
            tracing::info!(folder = %root.display(), removed, "spill folders of killed runs removed");
        }
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(root)
            .map_err(io)?;
        let lock = std::fs::File::create(dir.path().join(LOCK)).map_err(io)?;
        lock.try_lock().map_err(|e| Error::Io {
            path: dir.path().join(LOCK).display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new empty folder inside this one.
    pub fn subfolder(&self, prefix: &str) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.path())
            .map_err(|source| Error::Io {
                path: self.path().display().to_string(),
                source,
            })
    }
}

/// The default root: the system's temporary folder.
pub fn default_root() -> PathBuf {
    std::env::temp_dir()
}

/// Removes the spill folders under `root` whose process is gone (their lock is free); a folder
/// without a lock file is removed once it is an hour old (a process killed while creating it).
pub fn remove_abandoned(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with(PREFIX);
        if !ours || !path.is_dir() {
            continue;
        }
        let abandoned = match std::fs::File::open(path.join(LOCK)) {
            Ok(f) => f.try_lock().is_ok(),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 3600)),
        };
        if abandoned && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_runs_folder_is_removed_and_a_live_one_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let live = SpillDir::create(root.path()).unwrap();
        std::fs::write(live.path().join("part-0.parquet"), b"x").unwrap();
        // a folder left by a killed process: its lock file exists, nobody holds it
        let dead = root.path().join("cslake-spill-dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(LOCK), b"").unwrap();
        std::fs::write(dead.join("part-0.parquet"), b"x").unwrap();
        // something else in the folder is not ours to touch
        std::fs::create_dir(root.path().join("other")).unwrap();
        let next = SpillDir::create(root.path()).unwrap();
        assert!(!dead.exists());
        assert!(live.path().join("part-0.parquet").exists());
        assert!(root.path().join("other").exists());
        let (a, b) = (live.path().to_path_buf(), next.path().to_path_buf());
        drop(live);
        drop(next);
        assert!(
            !a.exists() && !b.exists(),
            "a finished command leaves nothing behind"
        );
    }
}
