//! Restore: one volume back from the mirror (rsync) or from a borg archive (`borg extract` over
//! ssh, run on this side, which keeps xattrs and ACLs), written through a short-lived helper
//! container that mounts only the target volume. The sidecar's own view of the volumes stays
//! read-only. Restoring in place stops the volume's running users through the freeze journal and
//! starts them again after.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::engine::discover;
use crate::engine::freeze;
use crate::engine::helper::{HELPER_SCRIPT, Helper, RESTORE_ROOT, SECRETS};
use crate::engine::journal::Journal;
use crate::engine::plan::{Group, Member, Quiesce};
use crate::events;
use crate::format::{human_bytes, millis};
use crate::lock::RunLock;
use crate::remote::borg::{self, list_archives, remote_borg};
use crate::remote::commands;
use crate::remote::fault::last_line;
use crate::remote::guard::Dialect;
use crate::remote::ssh::{Session, Ssh};

/// How long a restore may hold the volume's users stopped.
const RESTORE_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where a restore reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `BACKUP_REMOTE_DIR/<volume>/`.
    Mirror,
    /// The newest archive.
    Latest,
    /// A named archive.
    Archive(String),
}

impl Source {
    /// `mirror`, `latest` or an archive name.
    pub fn parse(value: &str) -> Self {
        match value {
            "mirror" => Source::Mirror,
            "latest" => Source::Latest,
            name => Source::Archive(name.to_string()),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Mirror => f.write_str("the mirror"),
            Source::Latest => f.write_str("the latest archive"),
            Source::Archive(name) => write!(f, "archive {name}"),
        }
    }
}

/// What to restore, from the command line.
#[derive(Debug, Clone)]
pub struct Request {
    /// The backed-up volume.
    pub volume: String,
    /// Mirror or archive.
    pub from: Source,
    /// Target volume; `None` restores in place.
    pub to: Option<String>,
    /// List what would change; change nothing.
    pub dry_run: bool,
    /// Go ahead without asking.
    pub yes: bool,
}

/// The volume's own directory in an archive: that it is there says the archive holds the volume.
#[derive(Debug, Clone, Deserialize)]
struct RootItem {
    path: String,
}

/// The running containers, other than the sidecar, that mount `volume`.
async fn running_users(docker: &Docker, volume: &str) -> Result<Vec<Member>> {
    let inventory = discover::inventory(docker, None).await?;
    Ok(inventory
        .others()
        .filter(|c| c.running && c.volumes.iter().any(|v| v == volume))
        .map(|c| Member {
            name: c.name.clone(),
            id: c.id.clone(),
            quiesce: Quiesce::Stop,
        })
        .collect())
}

/// `backup-sidecar restore`: takes the run lock (a running backup makes it refuse), then
/// restores.
pub async fn restore(config: &Config, request: &Request, cancel: &CancellationToken) -> Result<()> {
    let journal = Journal::open(&config.state_dir)?;
    let Some(_lock) = RunLock::try_acquire(&config.state_dir)? else {
        bail!("a backup run is in progress; restore again when it has finished");
    };
    let docker = discover::connect().await?;
    restore_volume(config, &docker, &journal, request, cancel).await
}

async fn restore_volume(
    config: &Config,
    docker: &Docker,
    journal: &Journal,
    request: &Request,
    cancel: &CancellationToken,
) -> Result<()> {
    let target = request.to.clone().unwrap_or_else(|| request.volume.clone());
    let in_place = target == request.volume;
    let session = Session::open(config, cancel).await?;
    let prepared = prepare(config, &session.ssh, request, cancel).await;
    session.close().await;
    let (source_desc, helper_args) = prepared?;

    let users = running_users(docker, &target).await?;
    if !in_place && !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "volume {target} is in use by running containers ({}); stop them first, or restore in place",
            names.join(", ")
        );
    }
    let exists = docker.inspect_volume(&target).await.is_ok();
    if !request.yes && !request.dry_run {
        let names: Vec<&str> = users.iter().map(|m| m.name.as_str()).collect();
        println!(
            "restore would {} volume {target} with {source_desc}{}.",
            if exists { "overwrite" } else { "create" },
            if names.is_empty() {
                String::new()
            } else {
                format!(", stopping and then starting {}", names.join(", "))
            }
        );
        println!(
            "Nothing was changed. Run again with --yes to restore, or --dry-run to list the changes."
        );
        return Ok(());
    }
    if !exists && request.dry_run {
        println!(
            "volume {target} does not exist: a restore would create it with all of {source_desc}."
        );
        return Ok(());
    }
    if !exists {
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(target.clone()),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create volume {target}"))?;
        info!(volume = %target, "created the target volume");
    }

    let started = Instant::now();
    let helper =
        Helper::create(docker, &target, &request.volume, HELPER_SCRIPT, helper_args).await?;
    let outcome = async {
        helper.upload_secrets(config).await?;
        if request.dry_run || users.is_empty() {
            return helper.run(cancel).await;
        }
        let group = Group {
            name: format!("restore of {target}"),
            members: users.clone(),
            volumes: Vec::new(),
            hooks: Vec::new(),
        };
        let (result, frozen) =
            freeze::with_frozen(docker, journal, &group, RESTORE_LIMIT, cancel, |token| {
                let helper = &helper;
                async move { helper.run(&token).await }
            })
            .await;
        if !frozen.containers.is_empty() {
            info!(
                message = events::GROUP_THAWED,
                group = %group.name,
                containers = %frozen.containers.join(","),
                pause_ms = frozen.duration.as_millis() as u64,
            );
        }
        result
    }
    .await;
    helper.remove().await;
    let (code, output) = outcome?;
    if request.dry_run {
        print!("{output}");
        if code != 0 {
            bail!("the dry run failed (exit {code})");
        }
        return Ok(());
    }
    if code != 0 {
        bail!(
            "restore of {target} failed (helper exit {code}): {}",
            last_line(&output)
        );
    }
    let (files, bytes) = output
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESTORED "))
        .and_then(|rest| {
            let mut parts = rest.split_whitespace().map(|p| p.parse::<u64>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((0, 0));
    let seconds = started.elapsed().as_secs_f64();
    info!(
        message = events::VOLUME_RESTORED,
        volume = %target,
        source = %source_desc,
        files,
        bytes,
        seconds = millis(seconds),
        mib_per_second = ((bytes as f64 / 1048576.0 / seconds) * 10.0).round() / 10.0,
    );
    Ok(())
}

/// Checks the source exists and builds the helper's arguments.
async fn prepare(
    config: &Config,
    ssh: &Ssh,
    request: &Request,
    cancel: &CancellationToken,
) -> Result<(String, Vec<String>)> {
    let dry = if request.dry_run { "1" } else { "0" };
    let volume = &request.volume;
    let mount = format!("{RESTORE_ROOT}/{volume}");
    // The helper's own ssh: the same options, with the copied key and known_hosts.
    let mut helper_config = config.clone();
    helper_config.ssh_key_file = format!("{SECRETS}/id_ed25519").into();
    helper_config.known_hosts_file = format!("{SECRETS}/known_hosts").into();
    let helper_ssh = Ssh::new(&helper_config, std::path::Path::new("/tmp/restore-cm"))
        .with_dialect(ssh.dialect().clone());
    match &request.from {
        Source::Mirror => {
            let dir = format!("{}/{volume}", config.remote_dir);
            let done = ssh
                .run(&commands::is_directory(ssh.dialect(), &dir), None, cancel)
                .await?;
            if !done.success() {
                bail!("the mirror holds no {volume} (no directory {dir} on the remote)");
            }
            let extra: &[&str] = if request.dry_run {
                &["--dry-run", "--itemize-changes"]
            } else {
                &[]
            };
            let cmd =
                commands::rsync_pull(&helper_ssh, &format!("{dir}/"), &format!("{mount}/"), extra);
            let mut args = vec![
                "mirror".to_string(),
                dry.to_string(),
                mount,
                cmd.program.clone(),
            ];
            args.extend(cmd.args.iter().map(|a| a.to_string_lossy().into_owned()));
            Ok((format!("the mirror {dir}"), args))
        }
        source => {
            let borg = borg::repository(config)?;
            let archive = match source {
                Source::Archive(name) => name.clone(),
                _ => list_archives(ssh, borg, cancel)
                    .await?
                    .first()
                    .map(|a| a.name.clone())
                    .ok_or_else(|| anyhow!("the repository {} holds no archive", borg.repo))?,
            };
            let listing = remote_borg(
                ssh,
                borg,
                "borg list",
                &commands::borg_list_root(ssh.dialect(), borg, &archive, volume),
                cancel,
            )
            .await?;
            let root: RootItem = serde_json::from_str(listing.trim())
                .map_err(|_| anyhow!("archive {archive} holds no {volume}"))?;
            if root.path != *volume {
                bail!("archive {archive} holds no {volume}");
            }
            let remote = &config.remote;
            let repo_url = format!(
                "ssh://{}:{}{}{}::{archive}",
                remote.rsync_destination(),
                remote.port,
                if borg.repo.starts_with('/') {
                    ""
                } else {
                    "/./"
                },
                borg.repo
            );
            let rsh = helper_ssh.rsh();
            let args = vec![
                "archive".to_string(),
                dry.to_string(),
                mount,
                repo_url,
                volume.clone(),
                rsh,
                match ssh.dialect() {
                    Dialect::Guard(_) => "bypass".to_string(),
                    Dialect::Shell => "lock".to_string(),
                },
            ];
            Ok((format!("archive {archive}"), args))
        }
    }
}

/// `backup-sidecar snapshots`: name, time and size of every archive, newest first.
pub async fn snapshots(config: &Config, cancel: &CancellationToken) -> Result<()> {
    let borg = borg::repository(config)?;
    let session = Session::open(config, cancel).await?;
    let result = async {
        // Sizes are a nicety: a listing without them is still a listing.
        let sizes = borg::archive_sizes(&session.ssh, borg, cancel)
            .await
            .unwrap_or_default();
        let archives = list_archives(&session.ssh, borg, cancel).await?;
        println!(
            "{:<40} {:<20} {:>12} {:>12}",
            "ARCHIVE", "TIME", "SIZE", "ADDED"
        );
        for archive in &archives {
            let (size, added) = sizes
                .get(&archive.name)
                .map(|s| (human_bytes(s.original), human_bytes(s.deduplicated)))
                .unwrap_or_default();
            println!(
                "{:<40} {:<20} {:>12} {:>12}",
                archive.name,
                archive.start.chars().take(19).collect::<String>(),
                size,
                added
            );
        }
        if archives.is_empty() {
            println!("no archives in {}", borg.repo);
        }
        Ok(())
    }
    .await;
    session.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(Source::parse("mirror"), Source::Mirror);
        assert_eq!(Source::parse("latest"), Source::Latest);
        assert_eq!(
            Source::parse("nas-2026"),
            Source::Archive("nas-2026".into())
        );
    }
}
