//! The freeze journal: what the sidecar froze, written down (and fsynced) before it freezes it, so
//! a sidecar killed mid-freeze can thaw it at its next start.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::engine::plan::{Member, Quiesce};

/// Durable record of containers we froze, one file per container under `STATE_DIR/frozen/`.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Opens (creating) the journal under the state directory.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.join("frozen");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let probe = dir.join(".probe");
        std::fs::write(&probe, b"")
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        std::fs::remove_file(&probe).ok();
        Ok(Journal { dir })
    }

    /// Writes down that `member` is about to be frozen, durably, before it is.
    pub fn record(&self, member: &Member) -> Result<()> {
        let path = self.dir.join(&member.id);
        let mut file = std::fs::File::create(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(file, "{} {}", member.quiesce, member.name)?;
        file.sync_all()?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// Drops the entry of container `id` once it is thawed; a missing entry is fine.
    pub fn forget(&self, id: &str) {
        let path = self.dir.join(id);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove journal entry");
        }
    }

    /// The containers recorded as frozen; unreadable or unknown entries are left out.
    pub fn entries(&self) -> Vec<Member> {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        read.filter_map(|e| e.ok())
            .filter_map(|entry| {
                let id = entry.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(entry.path()).ok()?;
                let (how, name) = text.trim().split_once(' ')?;
                // Only members are recorded, and members pause or stop: any other word is not
                // an entry we wrote, so we do not act on it.
                let quiesce = match how.parse() {
                    Ok(q @ (Quiesce::Pause | Quiesce::Stop)) => q,
                    _ => return None,
                };
                Some(Member {
                    name: name.to_string(),
                    id,
                    quiesce,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_pause_and_stop_only() {
        let state = tempfile::tempdir().unwrap();
        let journal = Journal::open(state.path()).unwrap();
        let paused = Member {
            name: "app".into(),
            id: "a".repeat(64),
            quiesce: Quiesce::Pause,
        };
        let stopped = Member {
            name: "db".into(),
            id: "b".repeat(64),
            quiesce: Quiesce::Stop,
        };
        journal.record(&paused).unwrap();
        journal.record(&stopped).unwrap();
        let frozen = state.path().join("frozen");
        std::fs::write(frozen.join("c".repeat(64)), "none web\n").unwrap();
        std::fs::write(frozen.join("d".repeat(64)), "freeze web\n").unwrap();
        std::fs::write(frozen.join("e".repeat(64)), "pause\n").unwrap();

        let mut entries = journal.entries();
        entries.sort();
        assert_eq!(entries, vec![paused.clone(), stopped]);

        journal.forget(&"b".repeat(64));
        journal.forget("never-recorded");
        let ids: Vec<String> = journal.entries().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![paused.id]);
    }
}
