//! Preflight: `backup-sidecar check` prints one line per check and fails if any failed.

use std::fmt::Display;

use anyhow::{Result, anyhow, bail};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::discover;
use crate::engine::plan::{self, Origin};
use crate::remote::borg;
use crate::remote::commands;
use crate::remote::guard::{Guard, Versions};
use crate::remote::ssh::{Session, Ssh};

fn report<T: Display>(name: &str, result: &Result<T>) -> bool {
    match result {
        Ok(detail) => println!("ok    {name}: {detail}"),
        Err(e) => println!("FAIL  {name}: {e:#}"),
    }
    result.is_ok()
}

/// `backup-sidecar plan`: prints the groups, containers and volumes a run would touch.
pub async fn print_plan(config: &Config) -> Result<()> {
    let docker = discover::connect().await?;
    let inventory = discover::inventory(&docker, config.host_root.as_deref()).await?;
    print!(
        "{}",
        plan::plan(&inventory, config.projects.as_deref(), &config.exclude)
    );
    Ok(())
}

/// `backup-sidecar check`: runs every check; `Err` when any failed.
pub async fn check(config: &Config, cancel: &CancellationToken) -> Result<()> {
    let mut ok = true;

    let docker = discover::connect().await;
    let version = match &docker {
        Ok(d) => d
            .version()
            .await
            .map(|v| format!("engine {}", v.version.unwrap_or_default()))
            .map_err(|e| anyhow!(e)),
        Err(e) => Err(anyhow!("{e:#}")),
    };
    ok &= report("docker", &version);

    if let Ok(docker) = &docker {
        let volumes = async {
            let inventory = discover::inventory(docker, config.host_root.as_deref()).await?;
            let plan = plan::plan(&inventory, config.projects.as_deref(), &config.exclude);
            let mut unreadable = Vec::new();
            let (mut volumes, mut binds, mut files) = (0, 0, 0);
            for volume in plan.groups.iter().flat_map(|g| &g.volumes) {
                let readable = match &volume.origin {
                    // A project's files are read from the host at each run.
                    Origin::Project(project) => {
                        files += project.files.len();
                        project
                            .files
                            .iter()
                            .map(|f| crate::tasks::layout::host_path(config, f))
                            .filter(|path| std::fs::File::open(path).is_err())
                            .collect()
                    }
                    origin => {
                        match origin {
                            Origin::Bind(_) => binds += 1,
                            _ => volumes += 1,
                        }
                        let dir = crate::tasks::layout::source_path(config, volume);
                        match std::fs::read_dir(&dir) {
                            Ok(_) => Vec::new(),
                            Err(_) => vec![dir],
                        }
                    }
                };
                unreadable.extend(readable.into_iter().map(|p| p.display().to_string()));
            }
            if !unreadable.is_empty() {
                bail!("cannot read {}", unreadable.join(", "));
            }
            Ok((
                format!(
                    "{volumes} volume(s), {binds} bind directory(ies) and {files} project \
                     file(s) selected and readable"
                ),
                plan,
            ))
        }
        .await;
        let (line, plan) = match volumes {
            Ok((line, plan)) => (Ok(line), Some(plan)),
            Err(e) => (Err(e), None),
        };
        ok &= report("volumes", &line);
        if let Some(plan) = &plan {
            print_kept_files(plan);
            if config.change_journal {
                print_watches(config, plan).await;
            }
        }
    }

    let session = Session::open(config, cancel).await;
    ok &= report(
        "ssh",
        &session
            .as_ref()
            .map(|_| format!("{} with the pinned host key", config.remote.destination()))
            .map_err(|e| anyhow!("{e:#}")),
    );
    if let Ok(session) = session {
        let ssh = &session.ssh;
        match ssh.guard() {
            Some(guard) => ok &= guarded(config, guard, ssh, cancel).await,
            None => ok &= unguarded(config, ssh, cancel).await,
        }
        if let Some(borg) = &config.borg {
            let command = ssh.borg_list_last(borg);
            let result = borg::remote_borg(ssh, borg, "borg list", &command, cancel)
                .await
                .map(|_| format!("{} is reachable", borg.repo));
            ok &= report("borg repository", &result);
        }
        if let Some(guard) = ssh.guard() {
            ok &= report("second copy", &second_copy(config, guard));
        }
        session.close().await;
    }
    if ok {
        Ok(())
    } else {
        bail!("some checks failed")
    }
}

/// Where the remote copies its backups (kind and redacted target: the address and credentials
/// stay on the remote) and how the last copy went, from the state directory. A remote without a
/// copy is not an error, only said; a last copy that failed is.
fn second_copy(config: &Config, guard: &Guard) -> Result<String> {
    let Some(place) = &guard.copy else {
        return Ok(format!(
            "none configured on the remote (guard {}; README: A second copy)",
            guard.guard
        ));
    };
    let history = crate::ops::history::Store::new(&config.state_dir).load();
    match history.copy {
        Some(record) if record.failing() => bail!(
            "{place}: the last copy failed: {}",
            record.last_error.unwrap_or_default()
        ),
        Some(record) => Ok(match (record.last_success, &record.newest_archive) {
            (Some(at), Some(newest)) => {
                format!("{place}; the last copy succeeded at {at}, newest archive {newest}")
            }
            _ => format!("{place}; no copy has completed yet"),
        }),
        None => Ok(format!("{place}; no copy made yet")),
    }
}

/// What each project keeps of its own files, and what the plan warns about: a user sees what a
/// restore would bring back before they need it.
fn print_kept_files(plan: &plan::Plan) {
    for volume in plan.groups.iter().flat_map(|g| &g.volumes) {
        if let Origin::Project(project) = &volume.origin {
            println!(
                "ok    project {}: keeps {}",
                project.project,
                if project.files.is_empty() {
                    "no files".to_string()
                } else {
                    project.files.join(", ")
                }
            );
        }
    }
    for warning in &plan.warnings {
        println!("WARN  plan: {warning}");
    }
}

/// Whether the change journal can watch every directory of the planned volumes: a warning (the
/// runs then walk every volume in full) when they have more than `fs.inotify.max_user_watches`.
async fn print_watches(config: &Config, plan: &plan::Plan) {
    let sources: Vec<(std::path::PathBuf, Vec<String>)> = plan
        .groups
        .iter()
        .filter(|g| !g.members.is_empty())
        .flat_map(|g| &g.volumes)
        .map(|v| {
            (
                crate::tasks::layout::source_path(config, v),
                v.excludes.clone(),
            )
        })
        .collect();
    let counted = tokio::task::spawn_blocking(move || {
        let stop = std::sync::atomic::AtomicBool::new(false);
        sources
            .iter()
            .map(|(source, excludes)| {
                let excludes = crate::capture::exclude::Excludes::new(excludes);
                crate::capture::scan::scan(source, &excludes, 2, &stop).map(|entries| {
                    entries
                        .iter()
                        .filter(|e| e.kind == crate::capture::scan::Kind::Dir)
                        .count()
                })
            })
            .sum::<std::io::Result<usize>>()
    })
    .await;
    let Ok(Ok(dirs)) = counted else {
        return;
    };
    match crate::capture::changes::max_user_watches() {
        Some(limit) if dirs as u64 >= limit => println!(
            "WARN  change journal: the frozen volumes have {dirs} directories, more than \
             fs.inotify.max_user_watches ({limit}) allows to watch: every run walks them in \
             full; raise it on the host (sysctl fs.inotify.max_user_watches=...)"
        ),
        Some(limit) => println!(
            "ok    change journal: {dirs} directories to watch, \
             fs.inotify.max_user_watches is {limit}"
        ),
        None => println!("ok    change journal: {dirs} directories to watch"),
    }
}

/// The checks of a guarded remote, from what its guard says about itself.
async fn guarded(config: &Config, guard: &Guard, ssh: &Ssh, cancel: &CancellationToken) -> bool {
    println!(
        "ok    remote guard: guarded (guard {}): rsync, borg and every step confined to {}{}",
        guard.guard,
        guard.mirror,
        match (&guard.repository, guard.append_only) {
            (Some(repo), Some(true)) => format!(" and the append-only repository {repo}"),
            (Some(repo), _) => format!(" and the repository {repo}"),
            (None, _) => String::new(),
        }
    );
    let versions = match ssh.run(&commands::guard_versions(), None, cancel).await {
        Ok(done) if done.success() => serde_json::from_str::<Versions>(done.stdout.trim())
            .map_err(|_| anyhow!("the guard's answer is not its versions: {}", done.stdout)),
        Ok(done) => Err(anyhow!("failed: {}", done.last_error_line())),
        Err(e) => Err(e),
    };
    let versions = match versions {
        Ok(versions) => versions,
        Err(e) => {
            report::<String>("remote versions", &Err(e));
            return false;
        }
    };
    let rsync = versions.rsync.ok_or_else(|| anyhow!("not found"));
    let mut ok = report("remote rsync", &rsync);
    if config.borg.is_some() {
        let borg = versions.borg.ok_or_else(|| anyhow!("not found"));
        ok &= report("remote borg", &borg);
        if guard.append_only != Some(true) {
            println!(
                "WARN  borg repository: not append-only: a prune or delete through this key frees data \
                 for good; run guard --setup on the remote"
            );
        }
    }
    let writable = if guard.writable {
        Ok(format!("{} is writable", config.mirror_root))
    } else {
        Err(anyhow!("{} is not writable", guard.mirror))
    };
    ok &= report("remote directory", &writable);
    ok
}

/// The checks of a remote whose key opens a shell: a loud warning, then the versions and the
/// directory through the shell.
async fn unguarded(config: &Config, ssh: &Ssh, cancel: &CancellationToken) -> bool {
    println!(
        "WARN  remote guard: NOT GUARDED: this key opens a shell on {}; whoever takes this host \
         can delete the mirror and every archive. Run backup-sidecar init (README: Prepare the \
         remote)",
        config.remote.destination()
    );
    let mut ok = true;
    for (name, command) in [
        ("remote rsync", commands::rsync_version()),
        ("remote borg", commands::borg_version()),
        (
            "remote directory",
            // A host's own directory is made by its first run, in the root.
            commands::directory_writable(&config.mirror_root),
        ),
    ] {
        if name == "remote borg" && config.borg.is_none() {
            continue;
        }
        let result = match ssh.run(&command, None, cancel).await {
            Ok(done) if done.success() => Ok(done.stdout.trim().to_string()),
            Ok(done) => Err(anyhow!("failed: {}", done.last_error_line())),
            Err(e) => Err(e),
        };
        ok &= report(name, &result);
    }
    ok
}
