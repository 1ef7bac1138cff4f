//! The daemon: repair what a killed predecessor left frozen, then run on schedule, on start and on
//! request, one run at a time, until cancelled from outside.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::capture;
use crate::capture::changes::Changes;
use crate::config::{Config, ConfigError};
use crate::engine::discover;
use crate::engine::freeze;
use crate::engine::freeze::FreezeFault;
use crate::engine::journal::Journal;
use crate::engine::plan;
use crate::ops::health::BEAT_INTERVAL;
use crate::ops::history::{Running, Store};
use crate::ops::logging;
use crate::ops::notify::{self, Notifier};
use crate::ops::{self, Outputs, metrics};
use crate::report::{Failure, FailureKind, Report, RunReport, VerifyReport};
use crate::report::{Trigger, TriggerKind};
use crate::tasks::browse::Indexer;
use crate::tasks::copy::{Copier, Job};
use crate::tasks::layout;
use crate::tasks::lock::RunLock;
use crate::tasks::request::PidFile;
use crate::tasks::run::{self, Sidecar};
use crate::tasks::schedule;
use crate::tasks::verify;
use crate::tasks::web;

/// `backup-sidecar run`: checks the state and volumes directories, connects to the engine and
/// serves until `cancel` fires.
pub async fn daemon(
    config: Config,
    mut requests: mpsc::UnboundedReceiver<Trigger>,
    cancel: CancellationToken,
) -> Result<()> {
    // The web page's password is hashed and dropped before the configuration is copied around.
    let mut config = config;
    let web_password = config.web.as_mut().and_then(|w| w.password.take());
    let journal = Journal::open(&config.state_dir).map_err(|e| ConfigError {
        variable: "BACKUP_STATE_DIR".into(),
        message: format!("{e:#}"),
    })?;
    if let Err(e) = std::fs::read_dir(&config.volumes_dir) {
        return Err(ConfigError {
            variable: "BACKUP_VOLUMES_DIR".into(),
            message: format!(
                "cannot read {}: {e} (mount the host's volumes directory there, read-only)",
                config.volumes_dir.display()
            ),
        }
        .into());
    }
    let _pid = PidFile::write(&config.state_dir).map_err(|e| ConfigError {
        variable: "BACKUP_STATE_DIR".into(),
        message: format!("{e:#}"),
    })?;
    let notifier = Notifier::from_config(&config)?;
    let docker = match discover::connect().await {
        Ok(docker) => docker,
        Err(e) => {
            ops::notify_start_failure(&config, "docker", &e).await;
            return Err(e);
        }
    };
    let host = discover::engine_name(&docker)
        .await
        .unwrap_or_else(|_| "docker".into());
    let config = config.for_host(&host);
    let store = Store::new(&config.state_dir);
    let outputs = Arc::new(Outputs::new(&config, store.clone(), notifier, host.clone()));
    // Bound before anything runs, so a port in use stops the sidecar at start.
    let metrics = match config.metrics_addr {
        Some(addr) => {
            let listener = metrics::bind(addr).await?;
            // Series for every planned volume from the start, zeros until its first backup.
            let planned = planned_volumes(&docker, &config).await;
            let source = metrics::Source::new(store.clone(), move || planned.clone());
            info!(addr = %addr, "serving metrics at /metrics");
            Some(tokio::spawn(metrics::serve_on(
                listener,
                source,
                cancel.clone(),
            )))
        }
        None => None,
    };
    let web_listener = match &config.web {
        Some(web) => Some(web::bind(web.addr).await.map_err(|e| ConfigError {
            variable: "BACKUP_WEB_ADDR".into(),
            message: format!("{e:#}"),
        })?),
        None => None,
    };
    let indexer = Indexer::start(config.clone(), cancel.clone());
    // Runs and verifications are asked for by signals, the schedules and the page alike.
    let (run_tx, runs) = mpsc::unbounded_channel();
    let forward = run_tx.clone();
    tokio::spawn(async move {
        while let Some(trigger) = requests.recv().await {
            if forward.send(trigger).is_err() {
                return;
            }
        }
    });
    let (check_tx, checks) = mpsc::unbounded_channel();
    let page = web_listener.map(|listener| {
        let app = web::App::new(
            config.clone(),
            web_password,
            store.clone(),
            (run_tx, check_tx.clone()),
            indexer.clone(),
            (host.clone(), docker.clone()),
        );
        info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving the web page");
        tokio::spawn(web::serve(listener, Arc::new(app), cancel.clone()))
    });
    let changes = if config.change_journal {
        match Changes::start() {
            Ok(changes) => Some(changes),
            Err(e) => {
                warn!(error = %e, "cannot start the change journal: every run walks every volume");
                None
            }
        }
    } else {
        None
    };
    let ctx = Sidecar {
        config,
        docker,
        journal,
        store,
        host,
        changes,
        full_scan_at: Default::default(),
    };
    let served = serve(ctx, outputs, (runs, check_tx, checks), indexer, cancel).await;
    if let Some(page) = page {
        page.abort();
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    served
}

/// The configuration for the host this runs on ([`Config::for_host`] with the Docker engine's
/// name).
pub async fn on_this_host(config: Config) -> Result<Config> {
    let docker = discover::connect().await?;
    let host = discover::engine_name(&docker).await?;
    Ok(config.for_host(&host))
}

/// The names of the volumes the plan selects now; none when the engine cannot say.
async fn planned_volumes(docker: &bollard::Docker, config: &Config) -> Vec<String> {
    match discover::inventory(docker, config.host_root.as_deref()).await {
        Ok(inventory) => {
            plan::plan(&inventory, config.projects.as_deref(), &config.exclude).volume_names()
        }
        Err(_) => Vec::new(),
    }
}

/// Runs the daemon until `cancel` fires. `requests` carries SIGUSR1 (a mirror + snapshot run now).
/// Triggers that arrive during a run are merged into one run after it.
async fn serve(
    ctx: Sidecar,
    outputs: Arc<Outputs>,
    (mut requests, check_tx, mut checks): (
        mpsc::UnboundedReceiver<Trigger>,
        mpsc::UnboundedSender<()>,
        mpsc::UnboundedReceiver<()>,
    ),
    indexer: Indexer,
    cancel: CancellationToken,
) -> Result<()> {
    let ctx = Arc::new(ctx);
    let mut history = ctx.store.load();
    if history.since.is_none() {
        history.since = Some(Utc::now());
        if let Err(e) = ctx.store.save(&history) {
            warn!(error = %format!("{e:#}"), "cannot write the run history in BACKUP_STATE_DIR");
        }
    }
    // A run in progress when the predecessor died is not in progress any more, and the copies it
    // staged are of no use: each capture starts from an empty staging area.
    ctx.store.clear_running();
    let staging = layout::staging(&ctx.config);
    if staging.exists() {
        match capture::clear(&staging) {
            Ok(()) => {
                info!(path = %staging.display(), "removed the staging area a previous run left")
            }
            Err(e) => warn!(error = %e, path = %staging.display(), "cannot empty the staging area"),
        }
    }
    let stale = crate::remote::ssh::clear_stale_control_dirs(&std::env::temp_dir());
    if stale > 0 {
        info!(
            count = stale,
            "removed ssh control directories a killed process left"
        );
    }
    let heart = tokio::spawn(beat(ctx.store.clone(), cancel.clone()));
    if let Ok(Some(_lock)) = RunLock::try_acquire(&ctx.config.state_dir) {
        for name in crate::engine::helper::remove_left(&ctx.docker).await {
            info!(container = %name, "removed a restore helper a killed restore left");
        }
    }
    let repaired = freeze::repair(&ctx.journal, &ctx.docker).await;
    if !repaired.is_empty() {
        info!(containers = %repaired.join(","), "repaired containers left frozen by a previous run");
    }
    let stuck: Vec<String> = ctx.journal.entries().into_iter().map(|m| m.name).collect();
    if !stuck.is_empty() {
        outputs.failure(
            "start",
            FreezeFault::Thaw.as_str(),
            format!(
                "containers left frozen by a previous run could not be thawed: {} \
                 (the next run tries again)",
                stuck.join(", ")
            ),
        );
    }

    let (tx, mut scheduled) = mpsc::unbounded_channel();
    let config = &ctx.config;
    let scheduler = tokio::spawn(schedule::drive(
        config.sync_schedule.clone(),
        config.snapshot_schedule.clone(),
        config.tz,
        tx,
        cancel.clone(),
    ));
    info!(
        remote = %config.remote.destination(),
        remote_dir = %config.remote_dir,
        sync_schedule = %config.sync_schedule.pattern,
        snapshot_schedule = %config.snapshot_schedule.pattern,
        tz = %config.tz,
        check_schedule = %config.check_schedule.pattern,
        snapshots = config.borg.is_some(),
        "backup-sidecar started"
    );

    let checker = tokio::spawn(schedule::ticks(
        config.check_schedule.clone(),
        config.tz,
        check_tx,
        cancel.clone(),
    ));

    // The second copy: after each snapshot, or on its own schedule.
    let copier = Copier::start(
        config.clone(),
        ctx.store.clone(),
        Arc::clone(&outputs),
        cancel.clone(),
    );
    let copy_ticker = config.copy_schedule.clone().map(|cron| {
        let (tick_tx, mut ticks) = mpsc::unbounded_channel();
        tokio::spawn(schedule::ticks(cron, config.tz, tick_tx, cancel.clone()));
        let copier = copier.clone();
        tokio::spawn(async move {
            while ticks.recv().await.is_some() {
                copier.ask(Job::Copy);
            }
        })
    });

    let mut pending = config.run_on_start.then_some(Trigger {
        kind: TriggerKind::Start,
        snapshot: true,
    });
    let mut check_pending = false;
    loop {
        if let Some(trigger) = pending.take() {
            let done = exclusive(&ctx, &outputs, &cancel, Some(trigger), move |ctx, cancel| async move {
                let now = Utc::now();
                let running = Running {
                    started: now,
                    moved: now,
                    bytes: 0,
                };
                if let Err(e) = ctx.store.set_running(&running) {
                    warn!(error = %format!("{e:#}"), "cannot record the run in BACKUP_STATE_DIR");
                }
                let report = run::run(&ctx, trigger, &cancel).await;
                ctx.store.clear_running();
                Some(Report::Run(report))
            })
            .await;
            if let Some(Report::Run(RunReport {
                archive: Some(created),
                ..
            })) = done
            {
                indexer.index(&created.archive);
                if ctx.config.copy_schedule.is_none() {
                    copier.ask(Job::Copy);
                }
            }
        } else if check_pending {
            check_pending = false;
            exclusive(&ctx, &outputs, &cancel, None, |ctx, cancel| async move {
                Some(Report::Verification(
                    verify::verify(&ctx.config, &cancel).await,
                ))
            })
            .await;
            copier.ask(Job::Check);
        } else {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(t) = requests.recv() => pending = Some(t),
                Some(t) = scheduled.recv() => pending = Some(t),
                Some(()) = checks.recv() => check_pending = true,
            }
            continue;
        }
        if cancel.is_cancelled() {
            break;
        }
        // Whatever arrived meanwhile becomes one more run (and one verification).
        let arrived =
            std::iter::from_fn(|| requests.try_recv().or_else(|_| scheduled.try_recv()).ok());
        pending = coalesce(pending, arrived);
        while checks.try_recv().is_ok() {
            check_pending = true;
        }
        if let Some(t) = pending {
            info!(trigger = %t.kind, snapshot = t.snapshot, "a run was asked for during the last one; running it now");
        }
    }
    heart.abort();
    checker.abort();
    if let Some(ticker) = copy_ticker {
        ticker.abort();
    }
    scheduler.abort();
    info!("backup-sidecar stopped");
    Ok(())
}

/// One run for everything that arrived while another ran: the pending trigger merged with each
/// (the first one's kind; a snapshot if any asked for one).
fn coalesce(
    pending: Option<Trigger>,
    arrived: impl IntoIterator<Item = Trigger>,
) -> Option<Trigger> {
    arrived
        .into_iter()
        .fold(pending, |p, t| Some(p.map_or(t, |p| p.merge(t))))
}

/// Runs `job` in a task of its own, holding the run lock (a restore started with `docker exec`
/// holds it too: the job waits for it), and publishes its report. A bug that panics in the job
/// fails that job, not the daemon: the freeze thaws on panics itself, and the journal repairs
/// anything left at the next run. A panicked run still reports, as failed.
async fn exclusive<F, Fut>(
    ctx: &Arc<Sidecar>,
    outputs: &Outputs,
    cancel: &CancellationToken,
    run: Option<Trigger>,
    job: F,
) -> Option<Report>
where
    F: FnOnce(Arc<Sidecar>, CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<Report>> + Send + 'static,
{
    let run_id = notify::new_run_id();
    let log_mark = logging::mark();
    if run.is_some() {
        outputs.run_started(&run_id);
    }
    let task = tokio::spawn({
        let ctx = Arc::clone(ctx);
        let cancel = cancel.clone();
        async move {
            let lock = tokio::select! {
                lock = RunLock::acquire(&ctx.config.state_dir) => lock,
                _ = cancel.cancelled() => return None,
            };
            match lock {
                Ok(_lock) => job(ctx, cancel).await,
                Err(e) => {
                    error!(error = %format!("{e:#}"), "cannot take the run lock");
                    None
                }
            }
        }
    });
    match task.await {
        Ok(Some(report)) => {
            outputs.publish(&report, &run_id, log_mark);
            Some(report)
        }
        Ok(None) => None,
        Err(e) => {
            let failure = Failure {
                kind: FailureKind::Other,
                message: e.to_string(),
            };
            match run {
                Some(trigger) => outputs.publish(
                    &Report::Run(RunReport {
                        failure: Some(failure),
                        ..RunReport::new(trigger)
                    }),
                    &run_id,
                    log_mark,
                ),
                None => outputs.publish(
                    &Report::Verification(VerifyReport {
                        outcome: Err(failure),
                        duration: Duration::ZERO,
                    }),
                    &run_id,
                    log_mark,
                ),
            }
            None
        }
    }
}

/// Says the daemon's loop is alive, every `BEAT_INTERVAL`, until cancelled. A heartbeat that cannot
/// be written is warned about once: health then reports the daemon as stuck, which it cannot tell
/// apart from a full state directory.
async fn beat(store: Store, cancel: CancellationToken) {
    let mut warned = false;
    loop {
        if let Err(e) = store.beat(Utc::now())
            && !warned
        {
            warn!(error = %format!("{e:#}"), "cannot write the heartbeat in BACKUP_STATE_DIR");
            warned = true;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(BEAT_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(kind: TriggerKind, snapshot: bool) -> Trigger {
        Trigger { kind, snapshot }
    }

    #[test]
    fn triggers_during_a_run_become_one_run() {
        let sync = trigger(TriggerKind::Schedule, false);
        let signal = trigger(TriggerKind::Signal, true);
        assert_eq!(coalesce(None, []), None);
        assert_eq!(coalesce(Some(sync), []), Some(sync));
        assert_eq!(coalesce(None, [sync, sync]), Some(sync));
        // The first one's kind, a snapshot when any asks for one.
        assert_eq!(
            coalesce(Some(sync), [signal, sync]),
            Some(trigger(TriggerKind::Schedule, true))
        );
        assert_eq!(coalesce(None, [signal, sync]), Some(signal));
    }

    #[tokio::test(start_paused = true)]
    async fn the_heart_beats_until_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let cancel = CancellationToken::new();
        let heart = tokio::spawn(beat(store.clone(), cancel.clone()));
        tokio::time::sleep(BEAT_INTERVAL / 2).await;
        assert!(store.heartbeat().is_some(), "a beat at once");
        // Gone, and back after the next interval.
        std::fs::remove_file(dir.path().join("heartbeat")).unwrap();
        tokio::time::sleep(BEAT_INTERVAL / 4).await;
        assert!(store.heartbeat().is_none());
        tokio::time::sleep(BEAT_INTERVAL).await;
        assert!(store.heartbeat().is_some(), "a beat each interval");
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), heart)
            .await
            .expect("the heart stops when cancelled")
            .unwrap();
    }
}
