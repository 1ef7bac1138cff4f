//! Transfer: the rsync passes of one volume to its mirror directory on the remote: a whole pass
//! (live, or while frozen), and the upload of a capture.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use crate::capture::Capture;
use crate::config::Link;
use crate::remote::commands::{self, Push};
use crate::remote::fault::classify;
use crate::remote::process::{self, Cmd};
use crate::remote::ssh::Ssh;

/// Which pass this is; it decides which rsync results are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// While the volume's users run: files vanishing or changing under rsync are expected.
    Live,
    /// While the users are frozen (or when nothing uses the volume): must be clean.
    Final,
}

/// How rsync ended, as far as we need to branch on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RsyncExit {
    /// Everything transferred.
    Complete,
    /// Exit 24: some source files vanished during the transfer.
    Vanished,
    /// Exit 23: some files could not be transferred (for example changed or removed while read).
    Partial,
    /// Anything else: the pass failed.
    Failed(Option<i32>),
}

impl RsyncExit {
    /// Classifies rsync's exit code.
    pub fn from_code(code: Option<i32>) -> Self {
        match code {
            Some(0) => RsyncExit::Complete,
            Some(24) => RsyncExit::Vanished,
            Some(23) => RsyncExit::Partial,
            other => RsyncExit::Failed(other),
        }
    }

    /// Whether the pass counts as done. A live pass only prepares the catch-up pass, so files that
    /// changed under it are fine; a final pass must be complete (vanished files are then already
    /// gone from the source and are deleted from the mirror by the next run).
    pub fn acceptable(&self, pass: Pass) -> bool {
        matches!(
            (self, pass),
            (RsyncExit::Complete | RsyncExit::Vanished, _) | (RsyncExit::Partial, Pass::Live)
        )
    }
}

/// Figures from rsync's `--stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Number of files (all types) in the source.
    pub files: u64,
    /// Total size of the source's files.
    pub bytes: u64,
    /// Number of regular files that were sent.
    pub files_sent: u64,
    /// Size of the files that were sent (before rsync's delta compression).
    pub bytes_sent: u64,
}

fn number_after(stats: &str, label: &str) -> u64 {
    stats
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
                .filter(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

impl Stats {
    /// Parses the `--stats` block.
    pub fn parse(output: &str) -> Self {
        Stats {
            files: number_after(output, "Number of files:"),
            bytes: number_after(output, "Total file size:"),
            files_sent: number_after(output, "Number of regular files transferred:"),
            bytes_sent: number_after(output, "Total transferred file size:"),
        }
    }
}

/// How far a pass has come, from rsync's `--info=progress2` line
/// `  1,234,567  45%   12.34MB/s    0:01:23 (xfr#12, to-chk=100/2000)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Bytes transferred (or found current) so far.
    pub bytes: u64,
    /// rsync's estimate of the whole, in percent.
    pub percent: u8,
    /// rsync's rate, as it prints it (`12.34MB/s`).
    pub rate: String,
    /// rsync's estimate of the time left (`0:01:23`), or the time taken once done.
    pub eta: String,
}

impl Progress {
    /// Parses one progress line; `None` for any other line.
    pub fn parse(line: &str) -> Option<Progress> {
        let mut words = line.split_whitespace();
        let bytes = words.next()?.replace(',', "").parse().ok()?;
        let percent = words.next()?.strip_suffix('%')?.parse().ok()?;
        let rate = words.next()?;
        let eta = words.next()?;
        if !rate.ends_with("/s") || !eta.contains(':') {
            return None;
        }
        Some(Progress {
            bytes,
            percent,
            rate: rate.to_string(),
            eta: eta.to_string(),
        })
    }
}

/// Result of one pass.
#[derive(Debug, Clone, Copy)]
pub struct PassResult {
    /// rsync's figures.
    pub stats: Stats,
    /// Wall time of the pass.
    pub seconds: f64,
    /// rsync read everything it listed (a live pass may not, when files change under it).
    pub complete: bool,
}

/// Where the mirror is and how the link is used.
#[derive(Clone, Copy)]
pub struct Mirror<'a> {
    /// The session to the remote.
    pub ssh: &'a Ssh,
    /// rsync's options for the link.
    pub link: &'a Link,
    /// `BACKUP_REMOTE_DIR`.
    pub remote_dir: &'a str,
}

impl Mirror<'_> {
    fn target(&self, volume: &str) -> String {
        format!("{}/{volume}/", self.remote_dir)
    }
}

/// A callback for rsync's progress reports.
pub type OnProgress<'a> = &'a mut (dyn FnMut(Progress) + Send);

/// Mirrors `source` (a volume's `_data`) to `remote_dir/<volume>/`. With `progress`, rsync
/// reports its progress and each report goes there as it comes.
pub async fn sync_volume(
    mirror: &Mirror<'_>,
    source: &Path,
    volume: &str,
    excludes: &[String],
    pass: Pass,
    progress: Option<OnProgress<'_>>,
    cancel: &CancellationToken,
) -> Result<PassResult> {
    if !source.is_dir() {
        bail!(
            "{} is not there: the volume was removed after the plan, or the volumes directory \
             is not mounted at BACKUP_VOLUMES_DIR",
            source.display()
        );
    }
    let cmd = commands::rsync_push(
        mirror.ssh,
        mirror.link,
        Push::Whole,
        source,
        &mirror.target(volume),
        excludes,
        progress.is_some(),
    );
    run_pass(&cmd, pass, progress, cancel).await
}

/// A whole live pass that also returns rsync's itemized list of what it changed in the mirror
/// (see [`Push::Audit`]).
pub async fn sync_volume_audited(
    mirror: &Mirror<'_>,
    source: &Path,
    volume: &str,
    excludes: &[String],
    progress: Option<OnProgress<'_>>,
    cancel: &CancellationToken,
) -> Result<(PassResult, String)> {
    live_push(
        mirror,
        Push::Audit,
        source,
        volume,
        excludes,
        progress,
        cancel,
    )
    .await
}

/// A live pass of only the entries of `list` (paths below `source`, NUL-separated): what the
/// change journal says changed since the mirror's state.
pub async fn sync_listed(
    mirror: &Mirror<'_>,
    source: &Path,
    volume: &str,
    excludes: &[String],
    list: &Path,
    progress: Option<OnProgress<'_>>,
    cancel: &CancellationToken,
) -> Result<PassResult> {
    let kind = Push::Listed { list };
    let (result, _) = live_push(mirror, kind, source, volume, excludes, progress, cancel).await?;
    Ok(result)
}

/// A live pass of `kind` from `source` to the volume's mirror, with rsync's output.
async fn live_push(
    mirror: &Mirror<'_>,
    kind: Push<'_>,
    source: &Path,
    volume: &str,
    excludes: &[String],
    progress: Option<OnProgress<'_>>,
    cancel: &CancellationToken,
) -> Result<(PassResult, String)> {
    let cmd = commands::rsync_push(
        mirror.ssh,
        mirror.link,
        kind,
        source,
        &mirror.target(volume),
        excludes,
        progress.is_some(),
    );
    run_pass_output(&cmd, Pass::Live, progress, cancel).await
}

/// Brings `remote_dir/<volume>/` to the state a capture copied: sends the copies, then deletes,
/// in each copied directory, what it did not hold while frozen, and sets the directories' times.
/// Runs after the thaw.
pub async fn upload(
    mirror: &Mirror<'_>,
    volume: &str,
    excludes: &[String],
    capture: &Capture,
    progress: Option<OnProgress<'_>>,
    cancel: &CancellationToken,
) -> Result<PassResult> {
    let target = mirror.target(volume);
    let started = Instant::now();
    let mut sent = None;
    let mut progress = progress;
    for step in capture.steps().context("writing the upload's lists")? {
        let kind = if step.prune {
            Push::Prune { list: &step.list }
        } else {
            Push::Upload { list: &step.list }
        };
        let watched = !step.prune && progress.is_some();
        let cmd = commands::rsync_push(
            mirror.ssh,
            mirror.link,
            kind,
            &step.source,
            &target,
            excludes,
            watched,
        );
        let report = if watched { progress.take() } else { None };
        let result = run_pass(&cmd, Pass::Final, report, cancel).await;
        if step.prune {
            result.context("deleting what no longer existed")?;
        } else {
            sent = Some(result?);
        }
    }
    Ok(PassResult {
        seconds: started.elapsed().as_secs_f64(),
        ..sent.unwrap_or(PassResult {
            stats: Stats::default(),
            seconds: 0.0,
            complete: true,
        })
    })
}

async fn run_pass(
    cmd: &Cmd,
    pass: Pass,
    progress: Option<OnProgress<'_>>,
    cancel: &CancellationToken,
) -> Result<PassResult> {
    Ok(run_pass_output(cmd, pass, progress, cancel).await?.0)
}

/// [`run_pass`], with rsync's output (but its progress lines).
async fn run_pass_output(
    cmd: &Cmd,
    pass: Pass,
    mut progress: Option<OnProgress<'_>>,
    cancel: &CancellationToken,
) -> Result<(PassResult, String)> {
    let started = Instant::now();
    let watch = process::Watch {
        stdout: &mut |line| match (Progress::parse(line), progress.as_deref_mut()) {
            (Some(p), Some(report)) => {
                report(p);
                true
            }
            (Some(_), None) => true,
            (None, _) => false,
        },
        stderr: &mut |line| Some(line.to_string()),
    };
    let done = process::run_watched(cmd, cancel, watch).await?;
    let exit = RsyncExit::from_code(done.code);
    let seconds = started.elapsed().as_secs_f64();
    if !exit.acceptable(pass) {
        return Err(classify("rsync", done.code, &done.stderr).into());
    }
    if exit != RsyncExit::Complete {
        tracing::info!(
            exit_code = done.code,
            "files changed or vanished during the live pass; the catch-up takes them"
        );
    }
    let result = PassResult {
        stats: Stats::parse(&done.stdout),
        seconds,
        complete: exit != RsyncExit::Partial,
    };
    Ok((result, done.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_exit_codes() {
        assert!(RsyncExit::from_code(Some(0)).acceptable(Pass::Final));
        assert!(RsyncExit::from_code(Some(24)).acceptable(Pass::Live));
        assert!(RsyncExit::from_code(Some(24)).acceptable(Pass::Final));
        assert!(RsyncExit::from_code(Some(23)).acceptable(Pass::Live));
        assert!(!RsyncExit::from_code(Some(23)).acceptable(Pass::Final));
        assert!(!RsyncExit::from_code(Some(12)).acceptable(Pass::Live));
        assert!(!RsyncExit::from_code(Some(255)).acceptable(Pass::Live));
        assert!(!RsyncExit::from_code(None).acceptable(Pass::Live));
    }

    #[test]
    fn parses_progress_lines() {
        assert_eq!(
            Progress::parse(
                "      1,234,567  45%   12.34MB/s    0:01:23 (xfr#12, to-chk=100/2000)"
            ),
            Some(Progress {
                bytes: 1_234_567,
                percent: 45,
                rate: "12.34MB/s".into(),
                eta: "0:01:23".into()
            })
        );
        assert_eq!(
            Progress::parse(
                "  131,072,000 100%  118.52MB/s    0:00:01 (xfr#10000, to-chk=0/10002)"
            )
            .map(|p| (p.bytes, p.percent)),
            Some((131_072_000, 100))
        );
        assert_eq!(
            Progress::parse("Number of files: 10,002 (reg: 10,000, dir: 2)"),
            None
        );
        assert_eq!(Progress::parse("Total file size: 131,072,000 bytes"), None);
        assert_eq!(Progress::parse(""), None);
    }

    #[test]
    fn parses_stats() {
        let out = "\nNumber of files: 10,002 (reg: 10,000, dir: 2)\n\
            Number of created files: 0\n\
            Number of regular files transferred: 101\n\
            Total file size: 131,072,000 bytes\n\
            Total transferred file size: 1,310,720 bytes\n\
            Literal data: 0 bytes\n";
        assert_eq!(
            Stats::parse(out),
            Stats {
                files: 10_002,
                bytes: 131_072_000,
                files_sent: 101,
                bytes_sent: 1_310_720
            }
        );
        assert_eq!(Stats::parse(""), Stats::default());
    }
}
