//! The binary: configuration, logs and signals at the edge; everything else is in the library.

use std::process::ExitCode;

use anyhow::Result;
use backup_sidecar::{
    Config, ConfigError, RestoreRequest, RestoreSource, RestoreWhat, Trigger, TriggerKind,
};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Mirrors labelled Docker volumes to a remote with rsync over ssh, freezing their containers only
/// for a short catch-up pass, and snapshots the mirror with borg.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// The daemon (default): run on schedule, on start if asked, and on SIGUSR1.
    Run,
    /// Print the groups, containers and volumes a run would touch, and how; changes nothing.
    Plan,
    /// Preflight: Docker, volumes, ssh with the pinned host key, remote rsync and borg, repository.
    Check,
    /// Prepare the remote once, with a key that still logs in normally: install the guard, create
    /// the mirror directory and the append-only repository, print the repository key, and narrow
    /// the key to the guard. Shows what it will change; changes it with --yes.
    Init {
        /// The remote's host key fingerprint (SHA256:...), read on the remote with
        /// `ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub`.
        #[arg(long)]
        host_key: String,
        /// Go ahead (without it, init says what it would change and stops).
        #[arg(long)]
        yes: bool,
        /// A second copy for the remote's guard: `rclone` (the repository replicated) or `borg`
        /// (a second repository of the mirror). Its credentials stay on the remote.
        #[arg(long, requires = "copy_target")]
        copy: Option<String>,
        /// Where the second copy goes: an rclone remote of the remote's rclone config
        /// (`NAME:PATH`), or `ssh://USER@HOST/PATH` for borg.
        #[arg(long, requires = "copy")]
        copy_target: Option<String>,
    },
    /// The borg archives on the remote: name, time, size; newest first.
    Snapshots {
        /// Only this host's archives (its archive prefix).
        #[arg(long)]
        host: Option<String>,
    },
    /// Ask the daemon for a run now (as SIGUSR1 or the page's button does).
    Backup {
        /// Mirror + snapshot (without it: a mirror).
        #[arg(long)]
        snapshot: bool,
        /// Wait for the run, print its outcome, and exit 1 when it failed.
        #[arg(long)]
        wait: bool,
    },
    /// One folder of an archive: its entries with mode, owner, size and time, from the archive's
    /// index (built on first use; after that, any folder opens at once).
    Ls {
        /// The archive's name (`backup-sidecar snapshots` lists them).
        archive: String,
        /// The folder, as a path in the archive (`VOLUME/dir`); the top when left out.
        #[arg(default_value = "")]
        path: String,
    },
    /// Per volume: last mirrored, size, files, last freeze; the last run, archive and
    /// verification; the next runs; health. From the state directory: instant, no network.
    Status {
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when backups are current, 1 when not (the image's HEALTHCHECK).
    Health,
    /// Send a test message to each channel of BACKUP_NOTIFY_URLS; print delivered or why not.
    NotifyTest,
    /// Brings a volume, a bind-mounted directory (`_bind-...`) or a whole compose project back
    /// from the mirror or a borg archive.
    Restore {
        /// The backed-up volume, or a bind's name in the mirror.
        #[arg(required_unless_present = "project", conflicts_with = "project")]
        volume: Option<String>,
        /// Every volume, bind-mounted directory and file (compose files, .env, configs) of this
        /// compose project.
        #[arg(long)]
        project: Option<String>,
        /// `mirror`, `latest` or an archive name.
        #[arg(long, default_value = "mirror")]
        from: String,
        /// Another host's backups: `latest` is its newest archive, and `mirror` its mirror
        /// directory (with BACKUP_REMOTE_DIR=.../{host}); for a server whose data moves here.
        #[arg(long)]
        host: Option<String>,
        /// Restore into this volume (created if missing), or this absolute host path, instead of
        /// in place.
        #[arg(long, conflicts_with = "project")]
        to: Option<String>,
        /// Only this file or directory of the volume (a path inside it), added or replaced at
        /// the same path with its owner, mode and times; the rest is left as it is, and its
        /// containers keep running.
        #[arg(long, conflicts_with = "project")]
        path: Option<String>,
        /// With --project: everything below this host directory instead of in place (volumes
        /// in _volumes/), to look at first.
        #[arg(long, requires = "project")]
        to_dir: Option<String>,
        /// List what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Go ahead (without it, restore says what it would overwrite and stops).
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => return config_error(&e),
    };
    if let Err(e) = backup_sidecar::init_logging(config.log_format) {
        return config_error(&e);
    }
    // The health check runs every minute: it reads a few files and needs no runtime or signals.
    if let Some(Command::Health) = cli.command {
        return if backup_sidecar::health(&config) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(cli.command.unwrap_or(Command::Run), config)) {
        Ok(code) => code,
        Err(e) => {
            if let Some(config) = e.downcast_ref::<ConfigError>() {
                return config_error(config);
            }
            tracing::error!(error = %format!("{e:#}"), "backup-sidecar failed");
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("backup-sidecar: {e}");
    ExitCode::from(2)
}

async fn start(command: Command, config: Config) -> Result<ExitCode> {
    let cancel = CancellationToken::new();
    let (requests, received) = mpsc::unbounded_channel();
    let signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGUSR1, SIGUSR2])?;
    let handle = signals.handle();
    let watcher = tokio::spawn(watch_signals(signals, cancel.clone(), requests));

    let result = match command {
        Command::Run => backup_sidecar::daemon(config, received, cancel.clone()).await,
        Command::Plan => backup_sidecar::print_plan(&config).await,
        Command::Check => {
            // Without the engine, `{host}` stays unfilled and check says what else is wrong.
            let config = backup_sidecar::on_this_host(config.clone())
                .await
                .unwrap_or(config);
            backup_sidecar::check(&config, &cancel).await
        }
        Command::Snapshots { host } => {
            let config = backup_sidecar::on_this_host(config.clone())
                .await
                .unwrap_or(config);
            backup_sidecar::snapshots(&config, host.as_deref(), &cancel).await
        }
        Command::Backup { snapshot, wait } => {
            backup_sidecar::backup(&config, snapshot, wait, &cancel).await
        }
        Command::Ls { archive, path } => {
            let config = backup_sidecar::on_this_host(config.clone())
                .await
                .unwrap_or(config);
            backup_sidecar::ls(&config, &archive, &path, &cancel).await
        }
        Command::Init {
            host_key,
            yes,
            copy,
            copy_target,
        } => {
            let request = backup_sidecar::InitRequest {
                host_key,
                yes,
                copy: copy.zip(copy_target),
            };
            backup_sidecar::init(&config, &request, &cancel).await
        }
        Command::Status { json } => backup_sidecar::status(&config, json),
        Command::NotifyTest => backup_sidecar::notify_test(&config).await,
        Command::Health => unreachable!("answered in main, before the runtime starts"),
        Command::Restore {
            volume,
            project,
            from,
            host,
            to,
            path,
            to_dir,
            dry_run,
            yes,
        } => {
            let config = backup_sidecar::on_this_host(config).await?;
            let what = match (volume, project) {
                (_, Some(name)) => RestoreWhat::Project { name, to_dir },
                (Some(name), None) => RestoreWhat::Volume { name, to, path },
                (None, None) => unreachable!("clap requires a volume or --project"),
            };
            let request = RestoreRequest {
                what,
                from: RestoreSource::parse(&from),
                host,
                dry_run,
                yes,
            };
            backup_sidecar::restore(&config, &request, &cancel).await
        }
    }
    .map(|()| ExitCode::SUCCESS);
    handle.close();
    watcher.abort();
    result
}

/// Signals become cancellation (SIGTERM, SIGINT) or a run request (SIGUSR1 with a snapshot,
/// SIGUSR2 without).
async fn watch_signals(
    mut signals: signal_hook_tokio::Signals,
    cancel: CancellationToken,
    requests: mpsc::UnboundedSender<Trigger>,
) {
    while let Some(signal) = signals.next().await {
        match signal {
            SIGUSR1 | SIGUSR2 => {
                let snapshot = signal == SIGUSR1;
                tracing::info!(
                    snapshot,
                    "{}: a {} run was requested",
                    if snapshot { "SIGUSR1" } else { "SIGUSR2" },
                    if snapshot {
                        "mirror + snapshot"
                    } else {
                        "mirror"
                    }
                );
                let _ = requests.send(Trigger {
                    kind: TriggerKind::Signal,
                    snapshot,
                });
            }
            _ => {
                tracing::info!(
                    signal,
                    "stopping: children are stopped and frozen containers thawed"
                );
                cancel.cancel();
            }
        }
    }
}
