//! The daemon: repair what a killed predecessor left frozen, then run on schedule, on start and on
//! request, one run at a time, until cancelled from outside.

use std::sync::Arc;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::freeze::RunLock;
use crate::run::{self, Context, Trigger, TriggerKind};
use crate::schedule;

/// Runs the daemon until `cancel` fires. `requests` carries SIGUSR1 (a mirror + snapshot run now).
/// Triggers that arrive during a run are merged into one run after it.
pub async fn serve(
    ctx: Context,
    mut requests: mpsc::UnboundedReceiver<Trigger>,
    cancel: CancellationToken,
) -> Result<()> {
    let ctx = Arc::new(ctx);
    let repaired = ctx.journal.repair(&ctx.docker).await;
    if !repaired.is_empty() {
        info!(containers = %repaired.join(","), "repaired containers left frozen by a previous run");
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
        snapshots = config.borg.is_some(),
        "backup-sidecar started"
    );

    let mut pending = config.run_on_start.then_some(Trigger {
        kind: TriggerKind::Start,
        snapshot: true,
    });
    loop {
        if let Some(trigger) = pending.take() {
            // A run in a task of its own: a bug that panics in it fails that run, not the daemon
            // (the freeze thaws on panics itself; the journal repairs anything left at the next run).
            let run = tokio::spawn({
                let ctx = Arc::clone(&ctx);
                let cancel = cancel.clone();
                async move {
                    // A restore started with `docker exec` holds the lock: the run waits for it.
                    let _lock = tokio::select! {
                        lock = RunLock::acquire(&ctx.config.state_dir) => lock,
                        _ = cancel.cancelled() => return,
                    };
                    match _lock {
                        Ok(_lock) => {
                            run::run(&ctx, trigger, &cancel).await;
                        }
                        Err(e) => {
                            error!(outcome = "failed", error = %format!("{e:#}"), "run finished")
                        }
                    }
                }
            });
            if let Err(e) = run.await {
                error!(outcome = "failed", error = %e, "run finished");
            }
            if cancel.is_cancelled() {
                break;
            }
            // Whatever arrived during the run becomes one more run.
            while let Ok(t) = requests.try_recv().or_else(|_| scheduled.try_recv()) {
                pending = Some(pending.map_or(t, |p| p.merge(t)));
            }
            if let Some(t) = pending {
                info!(trigger = %t.kind, snapshot = t.snapshot, "a run was asked for during the last one; running it now");
            }
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(t) = requests.recv() => pending = Some(t),
            Some(t) = scheduled.recv() => pending = Some(t),
        }
    }
    scheduler.abort();
    info!("backup-sidecar stopped");
    Ok(())
}
