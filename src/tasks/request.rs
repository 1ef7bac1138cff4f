//! `backup-sidecar backup [--snapshot] [--wait]`: asks the daemon for a run from a shell (`docker
//! exec`), as the page's button does, and with `--wait` waits for it and exits with its outcome.
//! The daemon writes its process id into `BACKUP_STATE_DIR/daemon.pid` at start; the request is a
//! signal to it (SIGUSR1 for mirror + snapshot, SIGUSR2 for a mirror), and the run is found in the
//! history by its start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ops::history::Store;
use crate::report::Outcome;

/// The daemon's process id file, in `BACKUP_STATE_DIR`.
const PID_FILE: &str = "daemon.pid";

/// Writes the daemon's process id; removed again when `PidFile` is dropped.
pub struct PidFile(PathBuf);

impl PidFile {
    /// Writes this process's id into the state directory.
    pub fn write(state_dir: &Path) -> Result<PidFile> {
        let path = state_dir.join(PID_FILE);
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The daemon's process id, if it runs.
fn daemon_pid(state_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(state_dir.join(PID_FILE)).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    // SAFETY: signal 0 only asks whether the process exists.
    (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// How often `--wait` looks at the history.
const POLL: Duration = Duration::from_millis(500);

/// Asks for a run; with `wait`, waits for it and fails when it failed.
pub async fn backup(
    config: &Config,
    snapshot: bool,
    wait: bool,
    cancel: &CancellationToken,
) -> Result<()> {
    let Some(pid) = daemon_pid(&config.state_dir) else {
        bail!(
            "the daemon does not run (no live process in {}/{PID_FILE}): run this inside the \
             sidecar's container, with docker exec",
            config.state_dir.display()
        );
    };
    // A second before now: the history's times are the daemon's clock, to the nanosecond.
    let asked = Utc::now() - chrono::Duration::seconds(1);
    let signal = if snapshot {
        libc::SIGUSR1
    } else {
        libc::SIGUSR2
    };
    // SAFETY: sends a signal to the daemon's process.
    if unsafe { libc::kill(pid, signal) } != 0 {
        bail!(
            "cannot signal the daemon (process {pid}): {}",
            std::io::Error::last_os_error()
        );
    }
    println!(
        "asked for a {} run",
        if snapshot {
            "mirror + snapshot"
        } else {
            "mirror"
        }
    );
    if !wait {
        return Ok(());
    }
    let store = Store::new(&config.state_dir);
    loop {
        if let Some(run) = store.load().runs.iter().find(|r| r.started >= asked) {
            println!(
                "run {}: {} volume(s), {} bytes, longest freeze {} ms{}",
                run.outcome,
                run.volumes,
                run.bytes,
                run.max_pause_ms,
                run.archive
                    .as_ref()
                    .map(|a| format!(", archive {a}"))
                    .unwrap_or_default()
            );
            if run.outcome == Outcome::Failed {
                bail!(
                    "the run failed: {}",
                    run.error.as_deref().unwrap_or("see docker logs")
                );
            }
            return Ok(());
        }
        if daemon_pid(&config.state_dir).is_none() {
            bail!("the daemon stopped before the run finished");
        }
        tokio::select! {
            _ = cancel.cancelled() => bail!("stopped waiting (the run goes on)"),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
