//! Snapshot: `borg create` of the whole mirror on the remote, then `borg prune` and `borg compact`,
//! all through the run's ssh connection. The passphrase travels on stdin (`BORG_PASSPHRASE_FD=0`).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Borg, Config};
use crate::remote::fault::classify;
use crate::remote::ssh::{Ssh, quote};

/// The file in `BACKUP_REMOTE_DIR` that says the mirror's last run completed. Removed when a run
/// starts changing the mirror, written when every volume of the run mirrored without error.
pub const COMPLETE_STAMP: &str = ".backup-sidecar-complete";

/// A created archive.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// Archive name.
    pub archive: String,
    /// Time `borg create` took.
    pub seconds: f64,
    /// Size of the archived files.
    pub original_bytes: u64,
    /// What this archive added to the repository.
    pub deduplicated_bytes: u64,
}

/// `PREFIX-YYYY-MM-DDTHH:MM:SS` in UTC.
pub fn archive_name(prefix: &str, now: DateTime<Utc>) -> String {
    format!("{prefix}-{}", now.format("%Y-%m-%dT%H:%M:%S"))
}

/// The environment assignments that go before every borg command on the remote: no prompts ever
/// (borg would read the answer from stdin, where the passphrase is), and the passphrase from stdin.
pub fn borg_env(borg: &Borg) -> String {
    let mut env = String::from(
        "BORG_RELOCATED_REPO_ACCESS_IS_OK=no BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no ",
    );
    if borg.passphrase.is_some() {
        env.push_str("BORG_PASSPHRASE_FD=0 ");
    }
    env
}

/// What goes to a remote borg's stdin: the passphrase, if any.
fn stdin_for(borg: &Borg) -> Option<Vec<u8>> {
    borg.passphrase
        .as_ref()
        .map(|p| p.expose().as_bytes().to_vec())
}

fn lock_wait(borg: &Borg) -> u64 {
    borg.lock_wait.as_secs().max(1)
}

/// The remote command line for `borg create` of the mirror root. It refuses a mirror without the
/// completion stamp.
pub fn create_command(borg: &Borg, remote_dir: &str, archive: &str) -> String {
    format!(
        "cd {dir} && if ! test -f {COMPLETE_STAMP}; then echo 'refusing to snapshot: the last run \
         of the mirror did not complete (no {COMPLETE_STAMP})' >&2; exit 3; fi && \
         {env}borg create --json --lock-wait {wait} {target} .",
        dir = quote(remote_dir),
        env = borg_env(borg),
        wait = lock_wait(borg),
        target = quote(&format!("{}::{archive}", borg.repo)),
    )
}

/// The remote command line that breaks a stale lock: when the repository is locked and no borg
/// process runs on the remote, the lock was left by a killed run. Prints `held` or `broken`.
pub fn stale_lock_command(borg: &Borg) -> String {
    // A running borg shows as "/usr/bin/borg create ..." in /proc. This script's own command line
    // names borg too; it is the only one that says "break-lock", so such lines are left out.
    format!(
        "test -e {repo}/lock.exclusive || exit 0; \
         if for f in /proc/[0-9]*/cmdline; do tr '\\000' ' ' < \"$f\"; echo; done 2>/dev/null \
         | grep -av 'break[-]lock' | grep -aEq '(^|/)[b]org( |$)'; then echo held; \
         else {env}borg break-lock {repo} && echo broken; fi",
        repo = quote(&borg.repo),
        env = borg_env(borg),
    )
}

/// The remote command line for `borg prune`, or `None` when every retention rule is off.
pub fn prune_command(borg: &Borg, prefix: &str) -> Option<String> {
    let rules: Vec<String> = [
        ("--keep-daily", borg.keep.daily),
        ("--keep-weekly", borg.keep.weekly),
        ("--keep-monthly", borg.keep.monthly),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(flag, n)| format!("{flag} {n}"))
    .collect();
    if rules.is_empty() {
        return None;
    }
    Some(format!(
        "{}borg prune --lock-wait {} --glob-archives {} {} {}",
        borg_env(borg),
        lock_wait(borg),
        quote(&format!("{prefix}-*")),
        rules.join(" "),
        quote(&borg.repo)
    ))
}

#[derive(Deserialize)]
struct CreateOutput {
    archive: ArchiveOutput,
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

/// Creates an archive of the mirror root, then prunes and compacts the repository.
pub async fn snapshot(
    ssh: &Ssh,
    borg_config: &Borg,
    prefix: &str,
    remote_dir: &str,
    cancel: &CancellationToken,
) -> Result<Created> {
    let lock = remote_borg(
        ssh,
        borg_config,
        "borg break-lock",
        &stale_lock_command(borg_config),
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
    let archive = archive_name(prefix, Utc::now());
    let started = Instant::now();
    let stdout = remote_borg(
        ssh,
        borg_config,
        "borg create",
        &create_command(borg_config, remote_dir, &archive),
        cancel,
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let output: CreateOutput =
        serde_json::from_str(&stdout).context("cannot read borg create's --json output")?;
    let created = Created {
        archive: output.archive.name,
        seconds,
        original_bytes: output.archive.stats.original,
        deduplicated_bytes: output.archive.stats.deduplicated,
    };
    if let Some(prune) = prune_command(borg_config, prefix) {
        remote_borg(ssh, borg_config, "borg prune", &prune, cancel).await?;
    }
    let compact = format!(
        "{}borg compact --lock-wait {} {}",
        borg_env(borg_config),
        lock_wait(borg_config),
        quote(&borg_config.repo)
    );
    remote_borg(ssh, borg_config, "borg compact", &compact, cancel).await?;
    Ok(created)
}

/// The repository settings, or an error when `BACKUP_BORG_REPO` is not set.
pub fn repository(config: &Config) -> Result<&Borg> {
    config
        .borg
        .as_ref()
        .ok_or_else(|| anyhow!("BACKUP_BORG_REPO is not set: there are no archives"))
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
    let out = remote_borg(
        ssh,
        borg,
        "borg list",
        &format!("{}borg list --json {}", borg_env(borg), quote(&borg.repo)),
        cancel,
    )
    .await?;
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
    let json = remote_borg(
        ssh,
        borg,
        "borg info",
        &format!(
            "{}borg info --json --glob-archives '*' {}",
            borg_env(borg),
            quote(&borg.repo)
        ),
        cancel,
    )
    .await?;
    let list: InfoList = serde_json::from_str(&json).context("cannot read borg info --json")?;
    Ok(list
        .archives
        .into_iter()
        .map(|a| (a.name, a.stats))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Keep, Secret};
    use chrono::TimeZone;

    const KEEP: Keep = Keep {
        daily: 7,
        weekly: 4,
        monthly: 6,
    };

    fn borg(passphrase: bool, keep: Keep) -> Borg {
        Borg {
            repo: "/mnt/backup/borg".into(),
            passphrase: passphrase.then(|| Secret::new("pw".into())),
            archive_prefix: None,
            keep,
            lock_wait: std::time::Duration::from_secs(120),
        }
    }

    #[test]
    fn names_archives_in_utc() {
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 7).unwrap();
        assert_eq!(archive_name("nas", now), "nas-2026-11-01T03:00:07");
    }

    #[test]
    fn passphrase_never_in_the_command_line() {
        let b = borg(true, KEEP);
        let cmd = create_command(&b, "/mnt/backup/data", "nas-2026-11-01T03:00:07");
        assert!(cmd.starts_with("cd /mnt/backup/data && if ! test -f .backup-sidecar-complete"));
        assert!(
            cmd.ends_with(
                "BORG_RELOCATED_REPO_ACCESS_IS_OK=no \
                 BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no BORG_PASSPHRASE_FD=0 borg create \
                 --json --lock-wait 120 /mnt/backup/borg::nas-2026-11-01T03:00:07 ."
            ),
            "{cmd}"
        );
        assert!(!cmd.contains("pw"));
        assert_eq!(stdin_for(&b), Some(b"pw".to_vec()));
        assert_eq!(stdin_for(&borg(false, b.keep)), None);
        assert!(!create_command(&borg(false, b.keep), "/d", "a").contains("PASSPHRASE"));
    }

    #[test]
    fn remote_command_lines_are_valid_shell() {
        let b = borg(true, KEEP);
        for cmd in [
            create_command(&b, "/mnt/my backup", "nas-2026-11-01T03:00:07"),
            stale_lock_command(&b),
            prune_command(&b, "nas").unwrap(),
        ] {
            let status = std::process::Command::new("sh")
                .args(["-n", "-c", &cmd])
                .status()
                .unwrap();
            assert!(status.success(), "not valid sh: {cmd}");
        }
    }

    #[test]
    fn prune_rules() {
        let b = borg(
            false,
            Keep {
                daily: 7,
                weekly: 0,
                monthly: 6,
            },
        );
        let cmd = prune_command(&b, "nas").unwrap();
        assert!(
            cmd.ends_with(
                "--glob-archives 'nas-*' --keep-daily 7 --keep-monthly 6 /mnt/backup/borg"
            ),
            "{cmd}"
        );
        assert_eq!(
            prune_command(
                &borg(
                    false,
                    Keep {
                        daily: 0,
                        weekly: 0,
                        monthly: 0
                    }
                ),
                "nas"
            ),
            None
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
