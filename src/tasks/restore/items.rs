//! What every restore is made of: items (a source in the mirror or an archive, and the volume or
//! host directory it goes to), each checked and prepared while connected, then run by a helper
//! container one after another, with the running users stopped for all of them.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use bollard::Docker;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::Source;
use crate::config::Config;
use crate::engine::discover;
use crate::engine::freeze;
use crate::engine::helper::{HELPER_SCRIPT, Helper, PASSCOMMAND, RESTORE_ROOT, SECRETS};
use crate::engine::journal::Journal;
use crate::engine::plan::{Group, Member, Quiesce};
use crate::format::millis;
use crate::remote::borg::{self, list_archives, remote_borg};
use crate::remote::commands::{self, Passphrase};
use crate::remote::fault::last_line;
use crate::remote::ssh::Ssh;
use crate::report::events;

/// How long a restore may hold the users stopped.
const RESTORE_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where the helper reads the list of a project's files to restore from the mirror.
const FILES_LIST: &str = "/tmp/restore-files";

/// One thing to bring back.
#[derive(Debug, Clone)]
pub(super) struct Item {
    /// Its name in the mirror and in archives: a volume's name, a bind's `_bind-...`, a
    /// project's `_project-...`.
    pub source: String,
    /// Where it goes: a volume's name, or an absolute host path.
    pub target: String,
    /// What of the source.
    pub part: Part,
}

/// What of a source a restore brings back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    /// All of it, which replaces the target's content.
    Whole,
    /// A project's files, by path relative to its `files/` directory: added or replaced, nothing
    /// else touched.
    Files(Vec<String>),
    /// One file or directory by its path in the source, with its subtree: added or replaced at
    /// the same path in the target, nothing else touched.
    Path(String),
}

impl Item {
    /// Whether the target is a volume (not a host path).
    pub fn is_volume(&self) -> bool {
        !self.target.starts_with('/')
    }

    /// The target, for people.
    pub fn target_desc(&self) -> String {
        if self.is_volume() {
            format!("volume {}", self.target)
        } else {
            format!("host directory {}", self.target)
        }
    }
}

/// Where a restore reads from, once the latest archive has a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
    /// `BACKUP_REMOTE_DIR`.
    Mirror,
    /// One archive.
    Archive(String),
}

impl Origin {
    /// Names the latest archive.
    pub async fn resolve(
        config: &Config,
        ssh: &Ssh,
        source: &Source,
        cancel: &CancellationToken,
    ) -> Result<Origin> {
        Ok(match source {
            Source::Mirror => Origin::Mirror,
            Source::Archive(name) => Origin::Archive(name.clone()),
            Source::Latest => {
                let borg = borg::repository(config)?;
                let prefix = borg.archive_prefix.as_deref();
                let newest_first = list_archives(ssh, borg, cancel).await?;
                let name =
                    latest(newest_first.into_iter().map(|a| a.name), prefix).ok_or_else(|| {
                        anyhow!(
                            "the repository {} holds no archive of {}",
                            borg.repo,
                            prefix.unwrap_or("any host")
                        )
                    })?;
                Origin::Archive(name)
            }
        })
    }

    /// The mirror or the archive, for people.
    pub fn describe(&self, config: &Config, source: &str) -> String {
        match self {
            Origin::Mirror => format!("the mirror {}/{source}", config.remote_dir),
            Origin::Archive(name) => format!("archive {name}"),
        }
    }
}

/// The first of `newest_first` (archive names) that `prefix` names, or the first of all without
/// one: a shared repository holds other hosts' archives too.
fn latest(newest_first: impl IntoIterator<Item = String>, prefix: Option<&str>) -> Option<String> {
    newest_first
        .into_iter()
        .find(|name| prefix.is_none_or(|p| borg::of_prefix(name, p)))
}

/// The entries and bytes the helper's last `RESTORED <entries> <bytes>` line gives, if any.
fn restored(output: &str) -> Option<(u64, u64)> {
    output
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESTORED "))
        .and_then(|rest| {
            let mut parts = rest.split_whitespace().map(|p| p.parse::<u64>().ok());
            Some((parts.next()??, parts.next()??))
        })
}

/// An item's own directory in an archive: that it is there says the archive holds the item.
#[derive(Debug, Clone, Deserialize)]
struct RootItem {
    path: String,
}

/// An item ready for its helper.
pub(super) struct Prepared {
    pub item: Item,
    /// Where it comes from, for people.
    pub from: String,
    args: Vec<String>,
}

/// Checks that the item's source exists and builds its helper's arguments.
pub(super) async fn prepare(
    config: &Config,
    ssh: &Ssh,
    origin: &Origin,
    item: Item,
    dry_run: bool,
    cancel: &CancellationToken,
) -> Result<Prepared> {
    let dry = if dry_run { "1" } else { "0" };
    let source = &item.source;
    let mount = format!("{RESTORE_ROOT}/{source}");
    // The helper's own ssh: the same options, with the copied key and known_hosts.
    let mut helper_config = config.clone();
    helper_config.ssh_key_file = format!("{SECRETS}/id_ed25519").into();
    helper_config.known_hosts_file = format!("{SECRETS}/known_hosts").into();
    let helper_ssh =
        Ssh::new(&helper_config, std::path::Path::new("/tmp/restore-cm")).speaking_like(ssh);
    let from = origin.describe(config, source);
    let args = match origin {
        Origin::Mirror => {
            let dir = format!("{}/{source}", config.remote_dir);
            let done = ssh.run(&ssh.is_directory(&dir), None, cancel).await?;
            if !done.success() {
                bail!("the mirror holds no {source} (no directory {dir} on the remote)");
            }
            if let Part::Path(path) = &item.part {
                let at = format!("{dir}/{path}");
                let file = ssh.run(&ssh.size_and_mtime(&at), None, cancel).await?;
                let dir = ssh.run(&ssh.is_directory(&at), None, cancel).await?;
                if !file.success() && !dir.success() {
                    bail!("the mirror's {source} holds no {path}");
                }
            }
            let mut extra = vec![];
            if dry_run {
                extra.extend(["--dry-run", "--itemize-changes"]);
            }
            let (mode, cmd, mut args) = match &item.part {
                Part::Whole => (
                    "mirror",
                    commands::rsync_pull(
                        &helper_ssh,
                        &format!("{dir}/"),
                        &format!("{mount}/"),
                        &extra,
                    ),
                    vec![],
                ),
                Part::Path(path) => (
                    "path",
                    commands::rsync_pull_path(
                        &helper_ssh,
                        &dir,
                        path,
                        &format!("{mount}/"),
                        &extra,
                    ),
                    vec![],
                ),
                Part::Files(files) => {
                    let list = format!("--files-from={FILES_LIST}");
                    extra.extend(["--from0", list.as_str()]);
                    let cmd = commands::rsync_pull_listed(
                        &helper_ssh,
                        &format!("{dir}/{}/", crate::tasks::layout::FILES_DIR),
                        &format!("{mount}/"),
                        &extra,
                    );
                    let mut args = files.clone();
                    args.push("--".into());
                    ("files", cmd, args)
                }
            };
            let mut all = vec![mode.to_string(), dry.to_string(), mount];
            all.append(&mut args);
            all.push(cmd.program.clone());
            all.extend(cmd.args.iter().map(|a| a.to_string_lossy().into_owned()));
            all
        }
        Origin::Archive(archive) => {
            let borg = borg::repository(config)?;
            let path = match &item.part {
                Part::Whole => source.clone(),
                Part::Files(_) => format!("{source}/{}", crate::tasks::layout::FILES_DIR),
                Part::Path(path) => format!("{source}/{path}"),
            };
            let listing = remote_borg(
                ssh,
                borg,
                "borg list",
                &ssh.borg_list_root(borg, archive, &path),
                cancel,
            )
            .await?;
            let root: Option<RootItem> = serde_json::from_str(listing.trim()).ok();
            if root.is_none_or(|r| r.path != path) {
                bail!("archive {archive} holds no {path}");
            }
            let passphrase = match &borg.passphrase {
                Some(_) => Passphrase::Command(PASSCOMMAND),
                None => Passphrase::None,
            };
            let mut args = vec![
                match item.part {
                    Part::Whole => "archive",
                    Part::Files(_) => "archive-files",
                    Part::Path(_) => "archive-path",
                }
                .to_string(),
                dry.to_string(),
                mount,
                ssh.borg_archive_url(borg, archive),
                path,
            ];
            args.extend(
                helper_ssh
                    .borg_client_env(passphrase)
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}")),
            );
            args.push("--".into());
            args.extend(ssh.borg_read_options());
            args
        }
    };
    Ok(Prepared { item, from, args })
}

/// The running containers, other than the sidecar, that mount one of `targets` (volume names or
/// host paths) or belong to the compose project `project`.
pub(super) async fn running_users(
    docker: &Docker,
    targets: &[&str],
    project: Option<&str>,
) -> Result<Vec<Member>> {
    let inventory = discover::inventory(docker, None).await?;
    Ok(inventory
        .others()
        .filter(|c| c.running)
        .filter(|c| {
            let mounts = c.volumes.iter().chain(&c.binds);
            mounts.into_iter().any(|m| targets.contains(&m.as_str()))
                || (project.is_some() && c.project() == project)
        })
        .map(|c| Member {
            name: c.name.clone(),
            id: c.id.clone(),
            quiesce: Quiesce::Stop,
        })
        .collect())
}

/// Runs each prepared item's helper in turn, with `users` stopped for all of them (not in a dry
/// run, which prints each listing). Logs `volume restored` for each; stops at the first failure.
pub(super) async fn run_all(
    (config, docker, journal): (&Config, &Docker, &Journal),
    prepared: &[Prepared],
    users: Vec<Member>,
    dry_run: bool,
    name: &str,
    cancel: &CancellationToken,
) -> Result<()> {
    let work = |token: CancellationToken| async move {
        for p in prepared {
            run_one(config, docker, p, dry_run, &token).await?;
        }
        Ok(())
    };
    if dry_run || users.is_empty() {
        return work(cancel.clone()).await;
    }
    let group = Group {
        name: format!("restore of {name}"),
        members: users,
        volumes: Vec::new(),
        hooks: Vec::new(),
    };
    let (result, frozen) =
        freeze::with_frozen(docker, journal, &group, RESTORE_LIMIT, cancel, work).await;
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

async fn run_one(
    config: &Config,
    docker: &Docker,
    prepared: &Prepared,
    dry_run: bool,
    cancel: &CancellationToken,
) -> Result<()> {
    let item = &prepared.item;
    let started = Instant::now();
    let created = Helper::create(
        docker,
        &item.target,
        &item.source,
        (HELPER_SCRIPT, prepared.args.clone()),
        dry_run,
    )
    .await;
    let helper = match created {
        // A dry run does not create a missing host directory to look into.
        Err(e) if dry_run && !item.is_volume() && format!("{e:#}").contains("does not exist") => {
            println!(
                "{} does not exist: a restore would create it with all of {}.",
                item.target_desc(),
                prepared.from
            );
            return Ok(());
        }
        created => created?,
    };
    let outcome = async {
        helper.upload_secrets(config).await?;
        helper.run(cancel).await
    }
    .await;
    helper.remove().await;
    let (code, output) = outcome?;
    if dry_run {
        println!("{} into {}:", item.source, item.target_desc());
        print!("{output}");
        if code != 0 {
            bail!("the dry run of {} failed (exit {code})", item.source);
        }
        return Ok(());
    }
    if code != 0 {
        bail!(
            "restore of {} into {} failed (helper exit {code}): {}",
            item.source,
            item.target_desc(),
            last_line(&output)
        );
    }
    let (files, bytes) = match &item.part {
        Part::Files(files) => (files.len() as u64, 0),
        _ => restored(&output).unwrap_or((0, 0)),
    };
    let seconds = started.elapsed().as_secs_f64();
    info!(
        message = events::VOLUME_RESTORED,
        volume = %item.target,
        item = %item.source,
        source = %prepared.from,
        files,
        bytes,
        seconds = millis(seconds),
        mib_per_second = ((bytes as f64 / 1048576.0 / seconds) * 10.0).round() / 10.0,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_archive_is_this_hosts_newest() {
        let names = || {
            [
                "nas-2-2026-11-30T03:00:00",
                "nas-2026-11-29T03:00:00",
                "nas-2026-11-28T03:00:00",
            ]
            .map(String::from)
        };
        assert_eq!(
            latest(names(), Some("nas")).as_deref(),
            Some("nas-2026-11-29T03:00:00")
        );
        assert_eq!(
            latest(names(), Some("nas-2")).as_deref(),
            Some("nas-2-2026-11-30T03:00:00")
        );
        assert_eq!(
            latest(names(), None).as_deref(),
            Some("nas-2-2026-11-30T03:00:00")
        );
        assert_eq!(latest(names(), Some("pi")), None);
    }

    #[test]
    fn the_helpers_count_is_its_last_restored_line() {
        assert_eq!(restored("x\nRESTORED 12 3456\n"), Some((12, 3456)));
        assert_eq!(restored("RESTORED 1 2\nRESTORED 3 4\nbye\n"), Some((3, 4)));
        assert_eq!(restored("RESTORED x 2\n"), None);
        assert_eq!(restored("RESTORED 5\n"), None);
        assert_eq!(restored(""), None);
    }

    #[test]
    fn a_target_is_a_volume_unless_it_is_a_path() {
        let item = |target: &str| Item {
            source: "s".into(),
            target: target.into(),
            part: Part::Whole,
        };
        assert!(item("app_db").is_volume());
        assert_eq!(item("app_db").target_desc(), "volume app_db");
        assert!(!item("/srv/app/data").is_volume());
        assert_eq!(
            item("/srv/app/data").target_desc(),
            "host directory /srv/app/data"
        );
    }
}
