//! Restore: a volume, a bind-mounted directory or a whole compose project back from the mirror
//! (rsync) or from a borg archive (`borg extract` over ssh, run on this side, which keeps xattrs
//! and ACLs), each item written through a short-lived helper container that mounts only its
//! target ([`items`]). The sidecar's own view of the host stays read-only. Restoring in place
//! stops the running users through the freeze journal and starts them again after.

mod items;
mod project;

use std::fmt;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::engine::discover;
use crate::engine::journal::Journal;
use crate::engine::plan::{BIND_PREFIX, PROJECT_PREFIX};
use crate::format::human_bytes;
use crate::remote::borg::{self, list_archives};
use crate::remote::ssh::Session;
use crate::tasks::lock::RunLock;
use items::{Item, Origin, Part, prepare, run_all, running_users};

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

/// What to bring back.
#[derive(Debug, Clone)]
pub enum What {
    /// One backed-up source by its name in the mirror (a volume's name, or a bind's
    /// `_bind-...`), into `to` (a volume's name or an absolute host path), or in place.
    Volume {
        /// The name in the mirror.
        name: String,
        /// Where it goes instead.
        to: Option<String>,
        /// Only this file or directory of it (a relative path), added or replaced at the same
        /// path; the rest of the target is left as it is.
        path: Option<String>,
    },
    /// Every volume, bind-mounted directory and file of a compose project, in place, or below
    /// `to_dir` (a host path) to look at first.
    Project {
        /// The compose project's name.
        name: String,
        /// Where everything goes instead.
        to_dir: Option<String>,
    },
}

/// What to restore, from the command line.
#[derive(Debug, Clone)]
pub struct Request {
    /// A volume or a project.
    pub what: What,
    /// Mirror or archive.
    pub from: Source,
    /// Another host's backups (`--host`): its archives, and its mirror when each host has its
    /// own directory (`BACKUP_REMOTE_DIR=.../{host}`).
    pub host: Option<String>,
    /// List what would change; change nothing.
    pub dry_run: bool,
    /// Go ahead without asking.
    pub yes: bool,
}

/// `config` reading `host`'s backups: its archive prefix, its mirror directory.
fn for_other_host(config: &Config, host: &str, from: &Source) -> Result<Config> {
    let mut config = config.clone();
    if let Some(borg) = &mut config.borg {
        borg.archive_prefix = Some(host.to_string());
    }
    if config.per_host() {
        config.remote_dir = format!("{}/{host}", config.mirror_root);
    } else if *from == Source::Mirror {
        bail!(
            "--host {host} --from mirror: another host's mirror is known only when \
             BACKUP_REMOTE_DIR ends with /{{host}}; restore from its archives (--from latest or \
             an archive's name)"
        );
    }
    Ok(config)
}

/// `backup-sidecar restore`: takes the run lock (a running backup makes it refuse), then
/// restores.
pub async fn restore(config: &Config, request: &Request, cancel: &CancellationToken) -> Result<()> {
    let journal = Journal::open(&config.state_dir)?;
    let Some(_lock) = RunLock::try_acquire(&config.state_dir)? else {
        bail!("a backup run is in progress; restore again when it has finished");
    };
    let docker = discover::connect().await?;
    // Holding the lock, no restore of ours runs: a helper of ours is a killed restore's.
    for name in crate::engine::helper::remove_left(&docker).await {
        tracing::info!(container = %name, "removed a restore helper a killed restore left");
    }
    let other;
    let config = match &request.host {
        Some(host) => {
            other = for_other_host(config, host, &request.from)?;
            &other
        }
        None => config,
    };
    match &request.what {
        What::Volume { name, to, path } => {
            let part = match path {
                Some(path) => Part::Path(inside(path)?),
                None => Part::Whole,
            };
            restore_one(
                config,
                &docker,
                &journal,
                request,
                (name, part),
                to.as_deref(),
                cancel,
            )
            .await
        }
        What::Project { name, to_dir } => {
            project::restore_project(
                config,
                &docker,
                &journal,
                request,
                name,
                to_dir.as_deref(),
                cancel,
            )
            .await
        }
    }
}

/// Where a source goes back to in place: a volume to itself, a bind to its host path.
fn home_of(source: &str) -> Result<String> {
    if source.starts_with(PROJECT_PREFIX) {
        bail!("{source} is a project's files: restore --project NAME brings them back");
    }
    match source.strip_prefix(BIND_PREFIX) {
        Some(_) => crate::engine::plan::bind_path(source)
            .ok_or_else(|| anyhow::anyhow!("{source} is not the name of a bind's directory")),
        None => Ok(source.to_string()),
    }
}

/// `path` as a path inside a source: relative, without `.` or `..` (nothing outside the source
/// can be named), its components joined by one `/`.
pub fn inside(path: &str) -> Result<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        bail!("--path {path:?}: name a file or directory inside the volume");
    }
    if parts.iter().any(|p| *p == "." || *p == "..") {
        bail!("--path {path:?}: a path inside the volume has no . or .. in it");
    }
    Ok(parts.join("/"))
}

async fn restore_one(
    config: &Config,
    docker: &Docker,
    journal: &Journal,
    request: &Request,
    (name, part): (&str, Part),
    to: Option<&str>,
    cancel: &CancellationToken,
) -> Result<()> {
    let home = home_of(name)?;
    let whole = part == Part::Whole;
    let item = Item {
        source: name.to_string(),
        target: to.map_or(home.clone(), String::from),
        part,
    };
    if let Some(to) = to.filter(|t| t.contains('/'))
        && (!to.starts_with('/') || to.trim_end_matches('/').is_empty())
    {
        bail!("--to {to}: a host directory is an absolute path below /");
    }
    let in_place = item.target == home;
    let session = Session::open(config, cancel).await?;
    let prepared = async {
        let origin = Origin::resolve(config, &session.ssh, &request.from, cancel).await?;
        prepare(config, &session.ssh, &origin, item, request.dry_run, cancel).await
    }
    .await;
    session.close().await;
    let prepared = prepared?;
    let item = &prepared.item;

    // One path is added or replaced under the running app, as a user would copy it back; the
    // whole source replaces everything, with its users stopped.
    let users = if whole {
        running_users(docker, &[&item.target], None).await?
    } else {
        Vec::new()
    };
    if !in_place && !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "{} is in use by running containers ({}); stop them first, or restore in place",
            item.target_desc(),
            names.join(", ")
        );
    }
    let exists = !item.is_volume() || docker.inspect_volume(&item.target).await.is_ok();
    if !request.yes && !request.dry_run {
        let names: Vec<&str> = users.iter().map(|m| m.name.as_str()).collect();
        let what = match &item.part {
            Part::Path(path) => format!("{path} in"),
            _ => String::new(),
        };
        println!(
            "restore would {} {what}{} with {}{}.",
            match (exists, whole) {
                (true, true) => "overwrite",
                (true, false) => "add or replace",
                (false, _) => "create",
            },
            item.target_desc(),
            prepared.from,
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
            "volume {} does not exist: a restore would create it with all of {}.",
            item.target, prepared.from
        );
        return Ok(());
    }
    if !exists {
        create_volume(docker, &item.target).await?;
    }
    let label = item.target.clone();
    run_all(
        (config, docker, journal),
        std::slice::from_ref(&prepared),
        users,
        request.dry_run,
        &label,
        cancel,
    )
    .await
}

/// Creates the volume `name`.
async fn create_volume(docker: &Docker, name: &str) -> Result<()> {
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(name.to_string()),
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot create volume {name}"))?;
    info!(volume = %name, "created the target volume");
    Ok(())
}

/// `backup-sidecar snapshots`: name, time and size of every archive (of `host` only, when
/// given), newest first.
pub async fn snapshots(
    config: &Config,
    host: Option<&str>,
    cancel: &CancellationToken,
) -> Result<()> {
    let borg = borg::repository(config)?;
    let session = Session::open(config, cancel).await?;
    let result = async {
        // Sizes are a nicety: a listing without them is still a listing.
        let sizes = borg::archive_sizes(&session.ssh, borg, cancel)
            .await
            .unwrap_or_default();
        let mut archives = list_archives(&session.ssh, borg, cancel).await?;
        if let Some(host) = host {
            archives.retain(|a| borg::of_prefix(&a.name, host));
        }
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
