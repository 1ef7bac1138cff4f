//! The run lock: one backup run, verification, restore or copy of the mirror at a time.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

/// One backup run or restore at a time: an exclusive `flock` on `STATE_DIR/run.lock`, held by the
/// daemon for each run and by `restore`, which share the state directory inside the container.
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock if it is free.
    pub fn try_acquire(state_dir: &Path) -> Result<Option<RunLock>> {
        let path = state_dir.join("run.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; released when the file is closed.
        let taken = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } == 0;
        Ok(taken.then_some(RunLock { _file: file }))
    }

    /// Waits for the lock.
    pub async fn acquire(state_dir: &Path) -> Result<RunLock> {
        let mut said = false;
        loop {
            if let Some(lock) = Self::try_acquire(state_dir)? {
                return Ok(lock);
            }
            if !said {
                tracing::info!(
                    "a restore, a run or a copy of the mirror holds the run lock; waiting for it"
                );
                said = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
