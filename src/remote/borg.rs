//! Snapshot: `borg create` of the whole mirror on the remote, then `borg prune` and `borg compact`,
//! all through the run's ssh connection (through a guard: its snapshot verb, which creates and
//! prunes; nobody compacts through the key). The passphrase travels on stdin.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Borg, Config};
use crate::remote::fault::classify;
use crate::remote::process;
use crate::remote::ssh::Ssh;

/// A created archive.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// Archive name.
    pub archive: String,
    /// Time `borg create` took, from here.
    pub seconds: f64,
    /// Time borg itself says it took to create the archive: what `seconds` has more is the
    /// connection, borg's start and the wait for another host's lock.
    pub borg_seconds: f64,
    /// Size of the archived files.
    pub original_bytes: u64,
    /// What this archive added to the repository.
    pub deduplicated_bytes: u64,
}

/// `PREFIX-YYYY-MM-DDTHH:MM:SS` in UTC.
pub fn archive_name(prefix: &str, now: DateTime<Utc>) -> String {
    format!("{prefix}-{}", now.format("%Y-%m-%dT%H:%M:%S"))
}

/// What goes to a remote borg's stdin: the passphrase, if any.
fn stdin_for(borg: &Borg) -> Option<Vec<u8>> {
    borg.passphrase
        .as_ref()
        .map(|p| p.expose().as_bytes().to_vec())
}

#[derive(Deserialize)]
struct CreateOutput {
    archive: CreatedArchive,
}

/// The archive `borg create --json` made.
#[derive(Deserialize)]
struct CreatedArchive {
    name: String,
    stats: Sizes,
    /// Seconds.
    duration: f64,
}

/// An archive with its sizes, as `borg create --json` and `borg info --json` show it.
#[derive(Deserialize)]
struct ArchiveOutput {
    name: String,
    stats: Sizes,
}

/// An archive's sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Sizes {
    /// Size of the archived files.
    #[serde(rename = "original_size")]
    pub original: u64,
    /// What the archive added to the repository.
    #[serde(rename = "deduplicated_size")]
    pub deduplicated: u64,
}

/// Runs a borg command line on the remote with the passphrase on stdin; returns stdout, or the
/// classified failure.
pub async fn remote_borg(
    ssh: &Ssh,
    borg_config: &Borg,
    what: &str,
    command: &str,
    cancel: &CancellationToken,
) -> Result<String> {
    let done = ssh.run(command, stdin_for(borg_config), cancel).await?;
    if !done.success() {
        return Err(classify(what, done.code, &done.stderr).into());
    }
    Ok(done.stdout)
}

/// Streams an archive's listing (`borg list --json-lines`, one item per line) to `line` as it
/// comes, without keeping it: an archive of a million files lists a quarter of a gigabyte.
pub async fn stream_archive(
    ssh: &Ssh,
    borg_config: &Borg,
    archive: &str,
    line: &mut (dyn FnMut(&str) + Send),
    cancel: &CancellationToken,
) -> Result<()> {
    let watch = process::Watch {
        stdout: &mut |text| {
            line(text);
            true
        },
        stderr: &mut |text| Some(text.to_string()),
    };
    let command = ssh.borg_list_archive(borg_config, archive);
    let done = ssh
        .run_watched(&command, stdin_for(borg_config), cancel, watch)
        .await?;
    if !done.success() {
        return Err(classify("borg list", done.code, &done.stderr).into());
    }
    Ok(())
}

/// How far `borg create` has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateProgress {
    /// Bytes of the mirror read so far.
    pub bytes: u64,
    /// Files read so far.
    pub files: u64,
}

/// One line of `borg create --log-json --progress`'s stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StderrLine {
    /// Its progress.
    Progress(CreateProgress),
    /// A progress message of no interest (cache transactions and such).
    Noise,
    /// A line for people: a log message's text, or a line that is not borg's JSON (the shell's).
    Text(String),
}

#[derive(Deserialize)]
struct JsonLine {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    original_size: u64,
    #[serde(default)]
    nfiles: u64,
    #[serde(default)]
    finished: bool,
}

/// Reads one stderr line. Log messages become their text again, so that fault classification and
/// error messages read what borg said, as without `--log-json`.
fn read_stderr(line: &str) -> StderrLine {
    let Ok(json) = serde_json::from_str::<JsonLine>(line) else {
        return StderrLine::Text(line.to_string());
    };
    match json.kind.as_str() {
        "archive_progress" if !json.finished => StderrLine::Progress(CreateProgress {
            bytes: json.original_size,
            files: json.nfiles,
        }),
        "log_message" => StderrLine::Text(json.message.unwrap_or_default()),
        _ => StderrLine::Noise,
    }
}

/// Breaks the repository's lock when a killed borg left it (no borg process runs on the remote),
/// and says so; says too when a running borg holds it, which the next step waits for.
pub async fn break_stale_lock(
    ssh: &Ssh,
    borg_config: &Borg,
    cancel: &CancellationToken,
) -> Result<()> {
    let lock = remote_borg(
        ssh,
        borg_config,
        "borg break-lock",
        &ssh.break_stale_lock(borg_config),
        cancel,
    )
    .await?;
    match lock.trim() {
        "broken" => tracing::warn!(
            repo = %borg_config.repo,
            "broke a stale borg lock: no borg process runs on the remote"
        ),
        "held" => tracing::info!(
            repo = %borg_config.repo,
            wait = %humantime::format_duration(borg_config.lock_wait),
            "the borg repository is locked by a running borg process; waiting for it"
        ),
        _ => {}
    }
    Ok(())
}

/// Creates an archive of the mirror root, then prunes and compacts the repository. `borg create`'s
/// progress goes to `progress` as it comes.
pub async fn snapshot(
    ssh: &Ssh,
    borg_config: &Borg,
    prefix: &str,
    remote_dir: &str,
    progress: &mut (dyn FnMut(CreateProgress) + Send),
    cancel: &CancellationToken,
) -> Result<Created> {
    break_stale_lock(ssh, borg_config, cancel).await?;
    let started = Instant::now();
    let watch = process::Watch {
        stdout: &mut |_| false,
        stderr: &mut |line| match read_stderr(line) {
            StderrLine::Progress(p) => {
                progress(p);
                None
            }
            StderrLine::Noise => None,
            StderrLine::Text(text) => Some(text),
        },
    };
    let done = ssh
        .run_watched(
            &ssh.borg_create(
                borg_config,
                remote_dir,
                prefix,
                &archive_name(prefix, Utc::now()),
            ),
            stdin_for(borg_config),
            cancel,
            watch,
        )
        .await?;
    if !done.success() {
        return Err(classify("borg create", done.code, &done.stderr).into());
    }
    let stdout = done.stdout;
    let seconds = started.elapsed().as_secs_f64();
    let output: CreateOutput =
        serde_json::from_str(&stdout).context("cannot read borg create's --json output")?;
    let created = Created {
        archive: output.archive.name,
        seconds,
        borg_seconds: output.archive.duration,
        original_bytes: output.archive.stats.original,
        deduplicated_bytes: output.archive.stats.deduplicated,
    };
    if let Some(prune) = ssh.borg_prune(borg_config, prefix) {
        remote_borg(ssh, borg_config, "borg prune", &prune, cancel).await?;
    }
    if let Some(compact) = ssh.borg_compact(borg_config) {
        remote_borg(ssh, borg_config, "borg compact", &compact, cancel).await?;
    }
    Ok(created)
}

/// The repository settings, or an error when `BACKUP_BORG_REPO` is not set.
pub fn repository(config: &Config) -> Result<&Borg> {
    config
        .borg
        .as_ref()
        .ok_or_else(|| anyhow!("BACKUP_BORG_REPO is not set: there are no archives"))
}

/// Whether the archive `name` is one of the host whose prefix is `prefix`: `PREFIX-` and the
/// time, so that a prefix `nas` does not claim `nas-2`'s archives.
pub fn of_prefix(name: &str, prefix: &str) -> bool {
    archive_time(name, prefix).is_some()
}

/// When the archive `name` of the host whose prefix is `prefix` was made: the UTC time in its
/// name (the guard's clock, or the sidecar's on a remote whose key opens a shell).
pub fn archive_time(name: &str, prefix: &str) -> Option<DateTime<Utc>> {
    let time = name.strip_prefix(prefix)?.strip_prefix('-')?;
    chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

/// An archive as `borg list --json` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct ArchiveEntry {
    /// Archive name.
    pub name: String,
    /// Start time (local to the remote).
    pub start: String,
}

#[derive(Deserialize)]
struct ArchiveList {
    archives: Vec<ArchiveEntry>,
}

#[derive(Deserialize)]
struct InfoList {
    archives: Vec<ArchiveOutput>,
}

/// The archives, newest first.
pub async fn list_archives(
    ssh: &Ssh,
    borg: &Borg,
    cancel: &CancellationToken,
) -> Result<Vec<ArchiveEntry>> {
    let out = remote_borg(ssh, borg, "borg list", &ssh.borg_list(borg), cancel).await?;
    let mut list: ArchiveList =
        serde_json::from_str(&out).context("cannot read borg list --json")?;
    list.archives.reverse();
    Ok(list.archives)
}

/// Every archive's sizes, by name (`borg info`).
pub async fn archive_sizes(
    ssh: &Ssh,
    borg: &Borg,
    cancel: &CancellationToken,
) -> Result<HashMap<String, Sizes>> {
    let json = remote_borg(ssh, borg, "borg info", &ssh.borg_info(borg), cancel).await?;
    let list: InfoList = serde_json::from_str(&json).context("cannot read borg info --json")?;
    Ok(list
        .archives
        .into_iter()
        .map(|a| (a.name, a.stats))
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn archives_belong_to_their_own_prefix_only() {
        assert!(of_prefix("nas-2026-11-30T03:00:00", "nas"));
        assert!(!of_prefix("nas-2-2026-11-30T03:00:00", "nas"));
        assert!(of_prefix("nas-2-2026-11-30T03:00:00", "nas-2"));
        assert!(!of_prefix("nas-2026-11-30T03:00:00.checkpoint", "nas"));
        assert!(!of_prefix("nasa-2026-11-30T03:00:00", "nas"));
    }

    use super::*;
    use crate::config::{Keep, Secret};
    use chrono::TimeZone;

    #[test]
    fn passphrase_goes_to_stdin() {
        let mut borg = Borg {
            repo: "/mnt/backup/borg".into(),
            passphrase: Some(Secret::new("pw".into())),
            archive_prefix: None,
            keep: Keep {
                daily: 7,
                weekly: 4,
                monthly: 6,
            },
            lock_wait: std::time::Duration::from_secs(120),
        };
        assert_eq!(stdin_for(&borg), Some(b"pw".to_vec()));
        borg.passphrase = None;
        assert_eq!(stdin_for(&borg), None);
    }

    #[test]
    fn names_archives_in_utc() {
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 7).unwrap();
        assert_eq!(archive_name("nas", now), "nas-2026-11-01T03:00:07");
    }

    #[test]
    fn reads_create_stderr() {
        assert_eq!(
            read_stderr(
                r#"{"original_size": 1048576, "compressed_size": 0, "deduplicated_size": 0, "nfiles": 12, "path": "v/f", "time": 1.5, "type": "archive_progress", "finished": false}"#
            ),
            StderrLine::Progress(CreateProgress {
                bytes: 1_048_576,
                files: 12
            })
        );
        assert_eq!(
            read_stderr(r#"{"type": "archive_progress", "time": 2.0, "finished": true}"#),
            StderrLine::Noise
        );
        assert_eq!(
            read_stderr(
                r#"{"message": "Saving cache config", "operation": 2, "msgid": "cache.commit", "type": "progress_message", "finished": false, "time": 1.0}"#
            ),
            StderrLine::Noise
        );
        // The lock failure reads as it did without --log-json, so it classifies the same.
        let locked = read_stderr(
            r#"{"type": "log_message", "time": 1.0, "message": "Failed to create/acquire the lock /r/lock.exclusive (timeout).", "levelname": "ERROR", "name": "borg.archiver", "msgid": "LockTimeout"}"#,
        );
        let StderrLine::Text(text) = locked else {
            panic!("{locked:?}");
        };
        assert_eq!(
            classify("borg create", Some(2), &text).fault,
            crate::remote::fault::Fault::RepositoryLocked
        );
        assert_eq!(
            read_stderr("refusing to snapshot: the last run of the mirror did not complete"),
            StderrLine::Text(
                "refusing to snapshot: the last run of the mirror did not complete".into()
            )
        );
    }

    #[test]
    fn reads_create_json() {
        let json = r#"{"archive": {"name": "a", "duration": 1.5, "stats": {"compressed_size": 10,
            "deduplicated_size": 5, "nfiles": 3, "original_size": 20}}, "repository": {}}"#;
        let out: CreateOutput = serde_json::from_str(json).unwrap();
        assert_eq!(
            out.archive.stats,
            Sizes {
                original: 20,
                deduplicated: 5
            }
        );
    }
}
