//! `restore --project NAME`: reads the project's manifest (its volumes, bind-mounted directories
//! and files) from the mirror or the archive, then brings every one back, in place or below
//! `--to-dir`, with the project's running containers and the users of its sources stopped once
//! for all of them.

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::items::{Item, Origin, Part, Prepared, prepare, run_all, running_users};
use super::{Request, create_volume};
use crate::config::Config;
use crate::engine::journal::Journal;
use crate::engine::plan::{ProjectFiles, bind_name, project_dir_name};
use crate::format::millis;
use crate::remote::commands;
use crate::remote::process;
use crate::remote::ssh::{Session, Ssh};
use crate::report::events;
use crate::tasks::layout::MANIFEST;

/// Below `--to-dir`, where the project's volumes go (binds and files go to their host paths
/// below it).
const VOLUMES_BELOW: &str = "_volumes";

pub(super) async fn restore_project(
    config: &Config,
    docker: &Docker,
    journal: &Journal,
    request: &Request,
    name: &str,
    to_dir: Option<&str>,
    cancel: &CancellationToken,
) -> Result<()> {
    if let Some(dir) = to_dir
        && (!dir.starts_with('/') || dir.trim_end_matches('/').is_empty())
    {
        bail!("--to-dir {dir}: a host directory is an absolute path below /");
    }
    let started = Instant::now();
    let dir_name = project_dir_name(name);
    let session = Session::open(config, cancel).await?;
    let prepared = async {
        let ssh = &session.ssh;
        let origin = Origin::resolve(config, ssh, &request.from, cancel).await?;
        let manifest = read_manifest(config, ssh, &origin, &dir_name, cancel)
            .await
            .with_context(|| {
                format!(
                    "{} holds no files of compose project {name} ({dir_name}/{MANIFEST})",
                    origin.describe(config, &dir_name)
                )
            })?;
        let mut prepared = Vec::new();
        for item in items(&manifest, &dir_name, to_dir) {
            prepared.push(prepare(config, ssh, &origin, item, request.dry_run, cancel).await?);
        }
        Ok::<_, anyhow::Error>((manifest, prepared))
    }
    .await;
    session.close().await;
    let (manifest, prepared) = prepared?;

    let users = match to_dir {
        Some(_) => Vec::new(),
        None => {
            let mut targets: Vec<&str> = manifest.volumes.iter().map(String::as_str).collect();
            targets.extend(manifest.binds.iter().map(String::as_str));
            running_users(docker, &targets, Some(name)).await?
        }
    };
    if !request.yes && !request.dry_run {
        print_plan(name, &prepared, &users);
        println!(
            "Nothing was changed. Run again with --yes to restore, or --dry-run to list the changes."
        );
        return Ok(());
    }
    if !request.dry_run {
        for p in prepared.iter().filter(|p| p.item.is_volume()) {
            if docker.inspect_volume(&p.item.target).await.is_err() {
                create_volume(docker, &p.item.target).await?;
            }
        }
    }
    run_all(
        (config, docker, journal),
        &prepared,
        users,
        request.dry_run,
        &format!("project {name}"),
        cancel,
    )
    .await?;
    if !request.dry_run {
        info!(
            message = events::PROJECT_RESTORED,
            project = %name,
            items = prepared.len(),
            from = %prepared.first().map_or(String::new(), |p| p.from.clone()),
            working_dir = %manifest.working_dir,
            seconds = millis(started.elapsed().as_secs_f64()),
        );
    }
    Ok(())
}

/// What the manifest asks for, in this order: its volumes, its binds, the project's files. The
/// files come last: they bring back the times of the directories they are in, which restoring a
/// bind directory inside one would change again.
fn items(manifest: &ProjectFiles, dir_name: &str, to_dir: Option<&str>) -> Vec<Item> {
    let below = |path: &str| match to_dir {
        Some(dir) => format!(
            "{}/{}",
            dir.trim_end_matches('/'),
            path.trim_start_matches('/')
        ),
        None => path.to_string(),
    };
    let mut items = Vec::new();
    for volume in &manifest.volumes {
        items.push(Item {
            source: volume.clone(),
            target: match to_dir {
                Some(_) => below(&format!("{VOLUMES_BELOW}/{volume}")),
                None => volume.clone(),
            },
            part: Part::Whole,
        });
    }
    for path in &manifest.binds {
        items.push(Item {
            source: bind_name(path),
            target: below(path),
            part: Part::Whole,
        });
    }
    if !manifest.files.is_empty() {
        items.push(Item {
            source: dir_name.to_string(),
            target: below("/"),
            part: Part::Files(
                manifest
                    .files
                    .iter()
                    .map(|f| f.trim_start_matches('/').to_string())
                    .collect(),
            ),
        });
    }
    items
}

fn print_plan(name: &str, prepared: &[Prepared], users: &[crate::engine::plan::Member]) {
    println!("restore of compose project {name} would write:");
    for p in prepared {
        match &p.item.part {
            Part::Files(files) => println!(
                "  {} file(s) ({}) below {}, from {}",
                files.len(),
                files.join(", "),
                p.item.target,
                p.from
            ),
            _ => println!("  {} with {}", p.item.target_desc(), p.from),
        }
    }
    if !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|m| m.name.as_str()).collect();
        println!(
            "stopping and then starting {} (running containers of the project or its sources)",
            names.join(", ")
        );
    }
}

/// The project's manifest, from the mirror (a local rsync of the one file) or from the archive
/// (a local `borg extract --stdout` over ssh, as the helper does).
async fn read_manifest(
    config: &Config,
    ssh: &Ssh,
    origin: &Origin,
    dir_name: &str,
    cancel: &CancellationToken,
) -> Result<ProjectFiles> {
    let scratch = tempfile::tempdir_in(&config.state_dir)
        .context("cannot make a scratch directory in BACKUP_STATE_DIR")?;
    let cmd = match origin {
        Origin::Mirror => commands::rsync_pull(
            ssh,
            &format!("{}/{dir_name}/{MANIFEST}", config.remote_dir),
            &scratch.path().join(MANIFEST).display().to_string(),
            &[],
        ),
        Origin::Archive(archive) => ssh.borg_extract_stdout(
            crate::remote::borg::repository(config)?,
            archive,
            &format!("{dir_name}/{MANIFEST}"),
            scratch.path(),
        ),
    };
    let done = process::run(&cmd, cancel).await?;
    if !done.success() {
        bail!("{}", done.last_error_line());
    }
    let text = match origin {
        Origin::Mirror => std::fs::read_to_string(scratch.path().join(MANIFEST))?,
        Origin::Archive(_) => done.stdout,
    };
    let manifest: ProjectFiles =
        serde_json::from_str(&text).map_err(|e| anyhow!("its {MANIFEST} cannot be read: {e}"))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> ProjectFiles {
        ProjectFiles {
            project: "app".into(),
            working_dir: "/srv/app".into(),
            files: vec!["/srv/app/.env".into(), "/srv/app/compose.yaml".into()],
            volumes: vec!["app_db".into()],
            binds: vec!["/srv/app/data".into()],
        }
    }

    #[test]
    fn in_place_everything_goes_home() {
        let items = items(&manifest(), "_project-app", None);
        let got: Vec<(&str, &str, Part)> = items
            .iter()
            .map(|i| (i.source.as_str(), i.target.as_str(), i.part.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("app_db", "app_db", Part::Whole),
                ("_bind-srv-app-data", "/srv/app/data", Part::Whole),
                (
                    "_project-app",
                    "/",
                    Part::Files(vec!["srv/app/.env".into(), "srv/app/compose.yaml".into()])
                ),
            ]
        );
    }

    #[test]
    fn below_a_directory_nothing_touches_the_engine() {
        let items = items(&manifest(), "_project-app", Some("/tmp/look/"));
        let targets: Vec<&str> = items.iter().map(|i| i.target.as_str()).collect();
        assert_eq!(
            targets,
            vec![
                "/tmp/look/_volumes/app_db",
                "/tmp/look/srv/app/data",
                "/tmp/look/",
            ]
        );
        assert!(items.iter().all(|i| !i.is_volume()));
    }
}
