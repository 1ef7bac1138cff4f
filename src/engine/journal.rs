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

    fn member(name: &str, quiesce: Quiesce) -> Member {
        Member {
            name: name.into(),
            id: format!("{name}-id"),
            quiesce,
        }
    }

    fn sorted(mut entries: Vec<Member>) -> Vec<Member> {
        // read_dir has no order.
        entries.sort();
        entries
    }

    #[test]
    fn record_entries_forget_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        assert!(journal.entries().is_empty());

        let app = member("app", Quiesce::Pause);
        let db = member("db", Quiesce::Stop);
        journal.record(&app).unwrap();
        journal.record(&db).unwrap();
        assert_eq!(sorted(journal.entries()), vec![app.clone(), db.clone()]);

        // A second journal on the same directory is what the next start sees.
        let reopened = Journal::open(dir.path()).unwrap();
        assert_eq!(sorted(reopened.entries()), vec![app.clone(), db.clone()]);

        journal.forget(&app.id);
        assert_eq!(journal.entries(), vec![db.clone()]);
        // Forgetting twice is what a thaw after a failed freeze does: no error, no change.
        journal.forget(&app.id);
        journal.forget(&db.id);
        assert!(journal.entries().is_empty());
    }

    #[test]
    fn recording_again_overwrites_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.record(&member("app", Quiesce::Pause)).unwrap();
        journal.record(&member("app", Quiesce::Stop)).unwrap();
        assert_eq!(journal.entries(), vec![member("app", Quiesce::Stop)]);
    }

    #[test]
    fn entries_ignore_files_that_are_not_entries() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let app = member("app", Quiesce::Pause);
        journal.record(&app).unwrap();
        let frozen = dir.path().join("frozen");
        // Written by something else (or a future version): never thawed as if it were ours.
        std::fs::write(frozen.join("other-id"), "freeze other\n").unwrap();
        std::fs::write(frozen.join("noword-id"), "lonely\n").unwrap();
        std::fs::write(frozen.join("empty-id"), "").unwrap();
        assert_eq!(journal.entries(), vec![app]);
    }

    #[test]
    fn entries_of_a_vanished_directory_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        std::fs::remove_dir_all(dir.path().join("frozen")).unwrap();
        assert!(journal.entries().is_empty());
        // And recording there fails instead of pretending the freeze is journaled.
        assert!(journal.record(&member("app", Quiesce::Pause)).is_err());
    }

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
