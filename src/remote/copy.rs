//! The second copy: the guard brings a place its owner configured up to date, either the
//! repository replicated with rclone or a second borg repository made of the mirror. The sidecar
//! only asks; the place's address and credentials stay in the remote's own configuration, and
//! the guard's verbs take nothing that could name another place or delete anything there.

use anyhow::{Context, Result};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::Borg;
use crate::remote::borg::break_stale_lock;
use crate::remote::commands;
use crate::remote::fault::classify;
use crate::remote::process;
use crate::remote::ssh::Ssh;

/// How far a copy has come, as the guard reports it every few seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct CopyProgress {
    /// Bytes sent (rclone) or read from the mirror (a second borg repository) so far.
    pub bytes: u64,
    /// What there is to send, when known.
    pub total: Option<u64>,
    /// Bytes per second, when known.
    pub speed: Option<f64>,
    /// Seconds left, when known.
    pub eta: Option<u64>,
}

/// A copy done.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Copied {
    /// `rclone` or `borg`.
    pub kind: String,
    /// What went over the link: rclone's bytes, or what the archive added to the second
    /// repository.
    pub bytes: u64,
    /// Files sent (rclone) or archived (borg).
    pub files: u64,
    /// The guard's own time for it.
    pub seconds: f64,
    /// The archive made in the second repository.
    pub archive: Option<String>,
}

/// A check of the copy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Checked {
    /// `rclone` or `borg`.
    pub kind: String,
    /// Whether the copy is sound: every file there with its size (and hash, where the place keeps
    /// one), or a second repository that `borg check` passes.
    pub ok: bool,
    /// Files that differ, are missing or are extra (rclone).
    pub differences: Option<u64>,
    /// Files that match (rclone).
    pub matched: Option<u64>,
    /// Whether hashes were compared, not only sizes (rclone).
    pub hash: Option<bool>,
}

#[derive(Deserialize)]
struct ProgressLine {
    copy_progress: CopyProgress,
}

/// Brings the copy up to date: breaks a lock a killed run left in the repository (the copy of
/// a replica takes the lock for a moment), then asks the guard to copy; its progress goes to
/// `progress` as it comes.
pub async fn copy(
    ssh: &Ssh,
    borg: &Borg,
    prefix: &str,
    remote_dir: &str,
    progress: &mut (dyn FnMut(CopyProgress) + Send),
    cancel: &CancellationToken,
) -> Result<Copied> {
    break_stale_lock(ssh, borg, cancel).await?;
    let watch = process::Watch {
        stdout: &mut |_| false,
        stderr: &mut |line| match serde_json::from_str::<ProgressLine>(line) {
            Ok(p) => {
                progress(p.copy_progress);
                None
            }
            Err(_) => Some(line.to_string()),
        },
    };
    // The guard reads no passphrase for a copy: the second repository's is its own.
    let command = commands::copy(borg, prefix, remote_dir);
    let done = ssh.run_watched(&command, None, cancel, watch).await?;
    if !done.success() {
        return Err(classify("copy", done.code, &done.stderr).into());
    }
    serde_json::from_str(done.stdout.trim()).context("cannot read the guard's copy summary")
}

/// Checks the copy against what was copied (a differing copy is `ok: false`, not an error).
pub async fn check(ssh: &Ssh, borg: &Borg, cancel: &CancellationToken) -> Result<Checked> {
    let done = ssh.run(&commands::copy_check(borg), None, cancel).await?;
    // 1: the check ran and the copy differs; the summary says how.
    if !done.success() && done.code != Some(1) {
        return Err(classify("copy check", done.code, &done.stderr).into());
    }
    let checked: Checked = serde_json::from_str(done.stdout.trim())
        .with_context(|| format!("copy check: {}", done.last_error_line()))?;
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_guards_lines() {
        let line = r#"{"copy_progress": {"bytes": 10, "total": 100, "speed": 2.5, "eta": 36, "files": 1}}"#;
        let p: ProgressLine = serde_json::from_str(line).unwrap();
        assert_eq!(p.copy_progress.total, Some(100));
        let borg = r#"{"copy_progress": {"bytes": 10, "total": null, "speed": null, "eta": null, "files": 3}}"#;
        assert_eq!(
            serde_json::from_str::<ProgressLine>(borg)
                .unwrap()
                .copy_progress
                .total,
            None
        );
        let summary =
            r#"{"kind": "rclone", "bytes": 5, "files": 2, "seconds": 0.5, "archive": null}"#;
        let copied: Copied = serde_json::from_str(summary).unwrap();
        assert_eq!((copied.bytes, copied.files), (5, 2));
        let checked: Checked = serde_json::from_str(
            r#"{"kind": "rclone", "ok": false, "differences": 1, "matched": 7, "hash": true}"#,
        )
        .unwrap();
        assert!(!checked.ok);
    }
}
