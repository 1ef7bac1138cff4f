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

    pub fn record(&self, member: &Member) -> Result<()> {
        let path = self.dir.join(&member.id);
        let mut file = std::fs::File::create(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(file, "{} {}", member.quiesce, member.name)?;
        file.sync_all()?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    pub fn forget(&self, id: &str) {
        let path = self.dir.join(id);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove journal entry");
        }
    }

    pub fn entries(&self) -> Vec<Member> {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        read.filter_map(|e| e.ok())
            .filter_map(|entry| {
                let id = entry.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(entry.path()).ok()?;
                let (how, name) = text.trim().split_once(' ')?;
                let quiesce = match how {
                    "pause" => Quiesce::Pause,
                    "stop" => Quiesce::Stop,
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
