//! Restore: one volume back from the mirror (rsync) or from a borg archive (`borg extract` over
//! ssh, run on this side, which keeps xattrs and ACLs), written through a short-lived helper
//! container that mounts only the target volume. The sidecar's own view of the volumes stays
//! read-only. Restoring in place stops the volume's running users through the freeze journal and
//! starts them again after.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder, WaitContainerOptions,
};
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{Borg, Config};
use crate::discover;
use crate::freeze::{self, Journal};
use crate::plan::{Group, Member, Quiesce};
use crate::run::human_bytes;
use crate::snapshot::{borg_env, remote_borg};
use crate::ssh::{Session, Ssh, quote};
use crate::transfer;

/// Where the helper finds the ssh key, known_hosts and passphrase (copied in, never on a command
/// line or in its environment).
const SECRETS: &str = "/run/restore";
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
    archives: Vec<InfoEntry>,
}

#[derive(Deserialize)]
struct InfoEntry {
    name: String,
    stats: InfoStats,
}

#[derive(Deserialize)]
struct InfoStats {
    original_size: u64,
    deduplicated_size: u64,
}

fn borg_config(config: &Config) -> Result<&Borg> {
    config
        .borg
        .as_ref()
        .ok_or_else(|| anyhow!("BACKUP_BORG_REPO is not set: there are no archives"))
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

/// `backup-sidecar snapshots`: name, time and size of every archive, newest first.
pub async fn snapshots(config: &Config, cancel: &CancellationToken) -> Result<()> {
    let borg = borg_config(config)?;
    let session = Session::open(config, cancel).await?;
    let result = async {
        let out = remote_borg(
            &session.ssh,
            borg,
            "borg info",
            &format!(
                "{}borg info --json --glob-archives '*' {}",
                borg_env(borg),
                quote(&borg.repo)
            ),
            cancel,
        )
        .await;
        let sizes: HashMap<String, (u64, u64)> = match out {
            Ok(json) => serde_json::from_str::<InfoList>(&json)
                .map(|l| {
                    l.archives
                        .into_iter()
                        .map(|a| {
                            let s = a.stats;
                            (a.name, (s.original_size, s.deduplicated_size))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Err(_) => HashMap::new(),
        };
        let archives = list_archives(&session.ssh, borg, cancel).await?;
        println!(
            "{:<40} {:<20} {:>12} {:>12}",
            "ARCHIVE", "TIME", "SIZE", "ADDED"
        );
        for archive in &archives {
            let (size, added) = sizes
                .get(&archive.name)
                .map(|(o, d)| (human_bytes(*o), human_bytes(*d)))
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

/// The volume root's own metadata from the archive (`--strip-components` does not apply it).
#[derive(Debug, Clone, Deserialize)]
struct RootItem {
    path: String,
    mode: String,
    uid: u32,
    gid: u32,
    mtime: String,
}

/// `drwxr-x---` (with s/t bits) to octal.
fn mode_bits(mode: &str) -> Option<u32> {
    let chars: Vec<char> = mode.chars().collect();
    if chars.len() != 10 {
        return None;
    }
    let mut bits = 0;
    for (i, c) in chars[1..].iter().enumerate() {
        let shift = 8 - i as u32;
        match c {
            'r' | 'w' | 'x' => bits |= 1 << shift,
            's' | 't' => {
                bits |= 1 << shift;
                bits |= special(i);
            }
            'S' | 'T' => bits |= special(i),
            '-' => {}
            _ => return None,
        }
    }
    Some(bits)
}

fn special(index: usize) -> u32 {
    match index {
        2 => 0o4000,
        5 => 0o2000,
        8 => 0o1000,
        _ => 0,
    }
}

/// The running containers, other than the sidecar, that mount `volume`.
async fn running_users(docker: &Docker, volume: &str) -> Result<Vec<Member>> {
    let inventory = discover::inventory(docker).await?;
    let own = inventory.self_id.clone();
    Ok(inventory
        .containers
        .into_iter()
        .filter(|c| c.running && c.volumes.iter().any(|v| v == volume))
        .filter(|c| !own.as_deref().is_some_and(|o| c.id.starts_with(o)))
        .map(|c| Member {
            name: c.name,
            id: c.id,
            quiesce: Quiesce::Stop,
        })
        .collect())
}

/// The helper: the sidecar's own image, its network, the target volume at /target.
struct Helper<'a> {
    docker: &'a Docker,
    id: String,
}

impl<'a> Helper<'a> {
    async fn create(
        docker: &'a Docker,
        target: &str,
        script: &str,
        args: Vec<String>,
    ) -> Result<Helper<'a>> {
        let own = discover::own_container_id().ok_or_else(|| {
            anyhow!(
                "restore runs inside the sidecar container: \
                 docker exec backup-sidecar backup-sidecar restore ..."
            )
        })?;
        let me = docker
            .inspect_container(&own, None)
            .await
            .context("cannot inspect the sidecar's own container")?;
        let image = me
            .image
            .ok_or_else(|| anyhow!("the sidecar's image is unknown"))?;
        let mut cmd = vec![script.to_string(), "restore-helper".to_string()];
        cmd.extend(args);
        let body = ContainerCreateBody {
            image: Some(image),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(cmd),
            labels: Some(HashMap::from([(
                "backup-sidecar.restore-helper".to_string(),
                target.to_string(),
            )])),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{target}:/target")]),
                network_mode: Some(format!("container:{own}")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("backup-sidecar-restore-{target}");
        // A helper left by a killed restore holds nothing of value: replace it.
        let _ = docker
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .context("cannot create the restore helper container")?;
        Ok(Helper {
            docker,
            id: created.id,
        })
    }

    /// Copies the ssh key, known_hosts and passphrase into the helper (mode 0600).
    async fn upload_secrets(&self, config: &Config) -> Result<()> {
        let mut files: Vec<(&str, Vec<u8>)> = vec![
            (
                "id_ed25519",
                std::fs::read(&config.ssh_key_file).context("cannot read BACKUP_SSH_KEY_FILE")?,
            ),
            (
                "known_hosts",
                std::fs::read(&config.known_hosts_file)
                    .context("cannot read BACKUP_KNOWN_HOSTS_FILE")?,
            ),
        ];
        if let Some(passphrase) = config.borg.as_ref().and_then(|b| b.passphrase.as_ref()) {
            files.push(("passphrase", passphrase.expose().as_bytes().to_vec()));
        }
        let mut archive = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            archive.append_data(&mut header, format!("{}/{name}", &SECRETS[1..]), &data[..])?;
        }
        let bytes = archive.into_inner()?;
        self.docker
            .upload_to_container(
                &self.id,
                Some(UploadToContainerOptionsBuilder::new().path("/").build()),
                bollard::body_full(bytes.into()),
            )
            .await
            .context("cannot copy the ssh key into the restore helper")
    }

    /// Starts the helper, logs progress while it runs, returns its exit code and output.
    async fn run(&self, cancel: &CancellationToken) -> Result<(i64, String)> {
        self.docker
            .start_container(
                &self.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .context("cannot start the restore helper")?;
        let started = Instant::now();
        let mut wait = self
            .docker
            .wait_container(&self.id, None::<WaitContainerOptions>);
        let mut ticker = tokio::time::interval(Duration::from_secs(10));
        ticker.tick().await;
        let code = loop {
            tokio::select! {
                _ = cancel.cancelled() => bail!("cancelled"),
                _ = ticker.tick() => info!(seconds = started.elapsed().as_secs(), "restore in progress"),
                next = wait.next() => match next {
                    Some(Ok(response)) => break response.status_code,
                    // A non-zero exit arrives as an error carrying the code.
                    Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => break code,
                    Some(Err(e)) => return Err(e).context("cannot wait for the restore helper"),
                    None => bail!("the restore helper vanished"),
                },
            }
        };
        let mut logs = self.docker.logs(
            &self.id,
            Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
        );
        let mut output = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            output.push_str(&chunk.to_string());
        }
        Ok((code, output))
    }

    async fn remove(self) {
        if let Err(e) = self
            .docker
            .remove_container(
                &self.id,
                Some(
                    RemoveContainerOptionsBuilder::new()
                        .force(true)
                        .v(false)
                        .build(),
                ),
            )
            .await
        {
            tracing::warn!(error = %e, "cannot remove the restore helper");
        }
    }
}

/// The helper's script. `$1` is the mode (`mirror` or `archive`), `$2` dry-run (`0`/`1`); the rest
/// are the mode's arguments. It prints `RESTORED <entries> <bytes>` at the end.
const HELPER_SCRIPT: &str = r#"set -eu
mode=$1; dry=$2; shift 2
if [ "$mode" = mirror ]; then
  # $@: the rsync argv
  "$@"
else
  # $1 repository::archive  $2 volume  $3 BORG_RSH  $4 mode  $5 uid  $6 gid  $7 mtime
  repo=$1 volume=$2; export BORG_RSH=$3
  if [ -e /run/restore/passphrase ]; then export BORG_PASSCOMMAND='cat /run/restore/passphrase'; fi
  export BORG_RELOCATED_REPO_ACCESS_IS_OK=no BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
  cd /target
  if [ "$dry" = 1 ]; then
    borg extract --dry-run --list --strip-components 1 "$repo" "$volume"
    exit 0
  fi
  find /target -mindepth 1 -delete
  borg extract --numeric-ids --sparse --strip-components 1 "$repo" "$volume"
  chown "$5:$6" /target; chmod "$4" /target; touch -d "$7" /target
fi
if [ "$dry" = 0 ]; then
  echo "RESTORED $(find /target -mindepth 1 | wc -l) $(du -sb --apparent-size /target | cut -f1)"
fi
"#;

/// `backup-sidecar restore`.
pub async fn restore(
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
    let helper = Helper::create(docker, &target, HELPER_SCRIPT, helper_args).await?;
    let outcome = async {
        helper.upload_secrets(config).await?;
        if request.dry_run || users.is_empty() {
            return helper.run(cancel).await;
        }
        let group = Group {
            name: format!("restore of {target}"),
            members: users.clone(),
            volumes: Vec::new(),
        };
        let (result, _) =
            freeze::with_frozen(docker, journal, &group, RESTORE_LIMIT, cancel, |token| {
                let helper = &helper;
                async move { helper.run(&token).await }
            })
            .await;
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
        let last = output
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!("restore of {target} failed (helper exit {code}): {last}");
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
        volume = %target,
        source = %source_desc,
        files,
        bytes,
        seconds = (seconds * 1000.0).round() / 1000.0,
        mib_per_second = ((bytes as f64 / 1048576.0 / seconds) * 10.0).round() / 10.0,
        "volume restored"
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
    // The helper's own ssh: the same options, with the copied key and known_hosts.
    let mut helper_config = config.clone();
    helper_config.ssh_key_file = format!("{SECRETS}/id_ed25519").into();
    helper_config.known_hosts_file = format!("{SECRETS}/known_hosts").into();
    let helper_ssh = Ssh::new(&helper_config, std::path::Path::new("/tmp/restore-cm"));
    let volume = &request.volume;
    match &request.from {
        Source::Mirror => {
            let dir = format!("{}/{volume}", config.remote_dir);
            let done = ssh
                .run(&format!("test -d {}", quote(&dir)), None, cancel)
                .await?;
            if !done.success() {
                bail!("the mirror holds no {volume} (no directory {dir} on the remote)");
            }
            let extra: &[&str] = if request.dry_run {
                &["--dry-run", "--itemize-changes"]
            } else {
                &[]
            };
            let cmd = transfer::pull_command(&helper_ssh, &format!("{dir}/"), "/target/", extra);
            let mut args = vec!["mirror".to_string(), dry.to_string(), cmd.program.clone()];
            args.extend(cmd.args.iter().map(|a| a.to_string_lossy().into_owned()));
            Ok((format!("the mirror {dir}"), args))
        }
        source => {
            let borg = borg_config(config)?;
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
                &format!(
                    "{}borg list --json-lines {} {} | head -n 1",
                    borg_env(borg),
                    quote(&format!("{}::{archive}", borg.repo)),
                    quote(volume)
                ),
                cancel,
            )
            .await?;
            let root: RootItem = serde_json::from_str(listing.trim())
                .map_err(|_| anyhow!("archive {archive} holds no {volume}"))?;
            if root.path != *volume {
                bail!("archive {archive} holds no {volume}");
            }
            let mode = mode_bits(&root.mode)
                .ok_or_else(|| anyhow!("cannot read the mode {:?} of {volume}", root.mode))?;
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
                repo_url,
                volume.clone(),
                rsh,
                format!("{mode:o}"),
                root.uid.to_string(),
                root.gid.to_string(),
                root.mtime,
            ];
            Ok((format!("archive {archive}"), args))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_modes() {
        assert_eq!(mode_bits("drwxr-x---"), Some(0o750));
        assert_eq!(mode_bits("-rwsr-xr-x"), Some(0o4755));
        assert_eq!(mode_bits("drwxrwxrwt"), Some(0o1777));
        assert_eq!(mode_bits("d---------"), Some(0));
        assert_eq!(mode_bits("drwSr-S--T"), Some(0o7640));
        assert_eq!(mode_bits("bad"), None);
    }

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
