//! One run: discover, plan, open ssh, pre command, each group ([`group`]: live pass, freeze with
//! the catch-up, thaw, upload), snapshot when asked and everything mirrored, post command; one
//! report out.

mod files;
mod group;
mod passes;
mod steps;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::capture::changes::Changes;
use crate::config::{Config, Retry};
use crate::engine::discover;
use crate::engine::exec;
use crate::engine::freeze::{self, Frozen};
use crate::engine::journal::Journal;
use crate::engine::newcomers::{self, Redo};
use crate::engine::plan::HookStage;
use crate::engine::plan::{self, Group, Plan};
use crate::format::millis;
use crate::ops::history::Store;
use crate::ops::progress::{Subject, Watcher};
use crate::remote::borg::{self, CreateProgress, Created};
use crate::remote::claim::claim;
use crate::remote::commands::Hook;
use crate::remote::fault::{classify, is_transient};
use crate::remote::ssh::{Session, Ssh};
use crate::report::Trigger;
use crate::report::events;
use crate::report::{Failure, FailureKind, RunReport, Stage};
use crate::tasks::layout;
use chrono::{DateTime, Utc};
use group::{VolumeResults, sync_group};
use steps::Steps;

/// How long the post command may take once the sidecar is shutting down.
const POST_COMMAND_GRACE: Duration = Duration::from_secs(3);

/// What the daemon needs for a run.
pub struct Sidecar {
    /// Validated configuration.
    pub config: Config,
    /// Docker client.
    pub docker: Docker,
    /// Freeze journal.
    pub journal: Journal,
    /// Run history and the run in progress.
    pub store: Store,
    /// This host's name (the engine's): it owns `BACKUP_REMOTE_DIR` on the remote.
    pub host: String,
    /// The change journal, when `BACKUP_CHANGE_JOURNAL` is on.
    pub changes: Option<Changes>,
    /// When `BACKUP_FULL_SCAN_SCHEDULE` next makes a run walk every volume in full.
    pub full_scan_at: std::sync::Mutex<Option<DateTime<Utc>>>,
}

/// Why a run the full-pass schedule chose walks every volume.
pub const SCHEDULED_FULL_PASS: &str = "the scheduled full pass (BACKUP_FULL_SCAN_SCHEDULE)";

impl Sidecar {
    /// Whether this run walks every volume in full: `BACKUP_FULL_SCAN_SCHEDULE` fired since the
    /// last run that did (the daemon's first run walks every volume anyway).
    fn full_scan_due(&self) -> Option<&'static str> {
        let now = Utc::now();
        let config = &self.config;
        let next = config
            .full_scan_schedule
            .find_next_occurrence(&now.with_timezone(&config.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc));
        let mut at = self
            .full_scan_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match *at {
            Some(due) if now < due => None,
            Some(_) => {
                *at = next;
                Some(SCHEDULED_FULL_PASS)
            }
            None => {
                *at = next;
                None
            }
        }
    }
}

/// Runs once: logs `run started`, and returns the report (the daemon publishes it).
pub async fn run(ctx: &Sidecar, trigger: Trigger, cancel: &CancellationToken) -> RunReport {
    let span = info_span!("run", trigger = %trigger.kind, snapshot = trigger.snapshot);
    async {
        info!(message = events::RUN_STARTED, trigger = %trigger.kind, snapshot = trigger.snapshot);
        let started = Instant::now();
        let mut report = RunReport::new(trigger);
        if let Err(e) = run_inner(ctx, &mut report, cancel).await {
            let mut failure = Failure::of(&e);
            if cancel.is_cancelled() {
                failure.kind = FailureKind::Cancelled;
            }
            report.failure = Some(failure);
        }
        report.duration = started.elapsed();
        report
    }
    .instrument(span)
    .await
}

async fn run_inner(
    ctx: &Sidecar,
    report: &mut RunReport,
    cancel: &CancellationToken,
) -> Result<()> {
    // Containers started from here on were not in the plan (see `engine::newcomers`).
    let planned_at = SystemTime::now();
    let (plan, session) = prepare(ctx, report, cancel).await?;
    if let Some(changes) = &ctx.changes {
        let sources: Vec<_> = plan
            .groups
            .iter()
            .flat_map(|g| &g.volumes)
            .map(|v| crate::tasks::layout::source_path(&ctx.config, v))
            .collect();
        changes.keep_only(&sources);
    }
    let mut live = Live {
        ctx,
        ssh: &session.ssh,
        full: ctx.full_scan_due(),
        looked_at: planned_at,
    };
    let result = steps::drive(&mut live, &plan, report, cancel).await;
    session.close().await;
    result
}

/// Before anything is copied: frozen containers a crash left are thawed, the plan is made (its
/// warnings logged), and the connection opened, with retries.
async fn prepare(
    ctx: &Sidecar,
    report: &mut RunReport,
    cancel: &CancellationToken,
) -> Result<(Plan, Session)> {
    let config = &ctx.config;
    report.stage = Stage::Discover;
    freeze::repair(&ctx.journal, &ctx.docker).await;
    let inventory = discover::inventory(&ctx.docker, config.host_root.as_deref()).await?;
    let plan = plan::plan(&inventory, config.projects.as_deref(), &config.exclude);
    report.planned = plan.volume_names();
    for skip in &plan.skipped {
        warn!(message = events::VOLUME_SKIPPED, volume = %skip.volume, reason = %skip.reason);
    }
    for warning in &plan.warnings {
        warn!("{warning}");
    }
    if plan.groups.is_empty() {
        warn!("no volumes selected: label a volume or a container backup.enable=true");
    }
    report.stage = Stage::Connect;
    let session = with_retries(
        config.retry,
        "ssh connection",
        cancel,
        |r: &Result<Session>| {
            r.as_ref()
                .err()
                .filter(|e| is_transient(e))
                .map(|e| format!("{e:#}"))
        },
        || Session::open(config, cancel),
    )
    .await?;
    warn_about_the_remote(config, &session.ssh);
    Ok((plan, session))
}

/// Says, once per process, what is wrong with how the remote is set up: a key that opens a shell
/// (whoever takes this host can delete every backup), or settings a guarded remote does not take
/// from the sidecar.
fn warn_about_the_remote(config: &Config, ssh: &Ssh) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if WARNED.swap(true, Ordering::Relaxed) {
        return;
    }
    if ssh.guard().is_none() {
        warn!(
            message = events::REMOTE_UNGUARDED,
            remote = %config.remote.destination(),
            risk = "this key opens a shell there: whoever takes this host can delete the mirror \
                    and every archive",
            fix = "backup-sidecar init (README: Prepare the remote)",
        );
    } else if config.pre_command.is_some() || config.post_command.is_some() {
        warn!(
            "BACKUP_REMOTE_PRE_COMMAND and BACKUP_REMOTE_POST_COMMAND are not sent to a guarded \
             remote: it runs the pre_command and post_command of its own guard.conf"
        );
    }
}

/// Says, once per process, that the engine's events cannot be read (a socket proxy that refuses
/// `/events`): runs then see only the newcomers still running when they look.
fn warn_without_events(error: &anyhow::Error) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        warn!(
            error = %format!("{error:#}"),
            "the engine's events cannot be read: a container that starts using a volume during a \
             run and stops before it ends is not seen (allow GET /events in the socket proxy)"
        );
    }
}

/// The steps of a run against the real engine and remote.
struct Live<'a> {
    ctx: &'a Sidecar,
    ssh: &'a Ssh,
    /// Why every volume is walked in full this run, if it is.
    full: Option<&'static str>,
    /// When the engine was last looked at for containers that began to use the volumes (the
    /// plan's time at first).
    looked_at: SystemTime,
}

impl Steps for Live<'_> {
    async fn pre_command(&mut self, cancel: &CancellationToken) -> Result<()> {
        let configured = self.ctx.config.pre_command.as_deref();
        match self.ssh.hook_line(Hook::Pre, configured) {
            Some(command) => remote_hook(self.ssh, Hook::Pre, &command, cancel).await,
            None => Ok(()),
        }
    }

    async fn begin_mirror(&mut self, cancel: &CancellationToken) -> Result<()> {
        let config = &self.ctx.config;
        let dir = &config.remote_dir;
        claim(self.ssh, dir, &self.ctx.host, config.per_host(), cancel).await?;
        let clear = self.ssh.clear_stamp(dir);
        remote_step(self.ssh, "removing the completion stamp", &clear, cancel).await
    }

    /// The group's exec hooks around its passes, which are tried again on a network failure.
    async fn group(
        &mut self,
        group: &Group,
        cancel: &CancellationToken,
    ) -> (VolumeResults, Frozen) {
        let ctx = self.ctx;
        let first_transient = |(results, _): &(VolumeResults, Frozen)| {
            results
                .iter()
                .find_map(|(_, r)| r.as_ref().err().filter(|e| is_transient(e)))
                .map(|e| format!("{e:#}"))
        };
        let span = info_span!("group", group = %group.name);
        let hooks = &group.hooks;
        let pre = exec::run_stage(
            &ctx.docker,
            hooks,
            HookStage::Pre,
            POST_COMMAND_GRACE,
            cancel,
        )
        .instrument(span.clone())
        .await;
        let done = match pre {
            Ok(()) => {
                with_retries(ctx.config.retry, "group", cancel, first_transient, || {
                    sync_group(ctx, self.ssh, group, self.full, cancel)
                })
                .instrument(span.clone())
                .await
            }
            // A dump that failed: nothing of the group is copied, so no snapshot is taken.
            Err(e) => (steps::all_failed(group, &e), Frozen::default()),
        };
        // After the thaw, on every path.
        let post = HookStage::Post;
        let _ = exec::run_stage(&ctx.docker, hooks, post, POST_COMMAND_GRACE, cancel)
            .instrument(span)
            .await;
        done
    }

    async fn newcomers(&mut self, plan: &Plan, redone: &[Group]) -> Result<Vec<Redo>> {
        let ctx = self.ctx;
        let config = &ctx.config;
        let since = std::mem::replace(&mut self.looked_at, SystemTime::now());
        let inventory = discover::inventory(&ctx.docker, config.host_root.as_deref()).await?;
        let started = match newcomers::started_since(&ctx.docker, since).await {
            Ok(started) => started,
            Err(e) => {
                warn_without_events(&e);
                Vec::new()
            }
        };
        let frozen = plan.groups.iter().chain(redone).flat_map(|g| &g.members);
        let looked = newcomers::Look {
            frozen: frozen.map(|m| m.id.clone()).collect(),
            planned: plan.volume_names().into_iter().collect(),
            projects: config.projects.as_deref(),
            exclude: &config.exclude,
        };
        let redo = looked.redo(&inventory, &started);
        // What was copied while they wrote is not one instant, and the change journal cannot
        // vouch for it: the next pass of each of those volumes is whole.
        if let Some(changes) = &ctx.changes {
            for volume in redo.iter().flat_map(|r| &r.group.volumes) {
                changes.completed(&layout::source_path(config, volume), None);
            }
        }
        Ok(redo)
    }

    async fn write_stamp(&mut self, cancel: &CancellationToken) -> Result<()> {
        let write = self.ssh.write_stamp(&self.ctx.config.remote_dir);
        remote_step(self.ssh, "writing the completion stamp", &write, cancel).await
    }

    async fn snapshot(
        &mut self,
        total: u64,
        cancel: &CancellationToken,
    ) -> Result<Option<Created>> {
        let ctx = self.ctx;
        let config = &ctx.config;
        let Some(borg) = &config.borg else {
            info!("no snapshot: BACKUP_BORG_REPO is not set");
            return Ok(None);
        };
        // The daemon's configuration has it filled in (Config::for_host).
        let prefix = borg.archive_prefix.as_ref().unwrap_or(&ctx.host);
        let subject = Subject::Snapshot { total };
        let mut watcher = Watcher::new(subject, config.progress_interval, ctx.store.clone());
        let mut progress = |p: CreateProgress| watcher.snapshot(p);
        let dir = &config.remote_dir;
        let created = borg::snapshot(self.ssh, borg, prefix, dir, &mut progress, cancel).await?;
        info!(
            message = events::SNAPSHOT_CREATED,
            archive = %created.archive,
            seconds = millis(created.seconds),
            borg_seconds = millis(created.borg_seconds),
            original_bytes = created.original_bytes,
            deduplicated_bytes = created.deduplicated_bytes,
        );
        Ok(Some(created))
    }

    async fn post_command(&mut self, cancel: &CancellationToken) -> Result<()> {
        let configured = self.ctx.config.post_command.as_deref();
        match self.ssh.hook_line(Hook::Post, configured) {
            Some(command) => remote_hook(self.ssh, Hook::Post, &command, cancel).await,
            None => Ok(()),
        }
    }
}

/// Runs a pre or post command on the remote. The post command still runs, briefly, on shutdown.
async fn remote_hook(
    ssh: &Ssh,
    hook: Hook,
    command: &str,
    cancel: &CancellationToken,
) -> Result<()> {
    let variable = ssh.hook_name(hook);
    let own = CancellationToken::new();
    let finished = if cancel.is_cancelled() {
        tokio::time::timeout(POST_COMMAND_GRACE, ssh.run(command, None, &own))
            .await
            .map_err(|_| anyhow!("{variable} did not finish during shutdown"))?
    } else {
        ssh.run(command, None, cancel).await
    }?;
    if !finished.success() {
        bail!(
            "{variable} failed (exit {}): {}",
            finished.code.unwrap_or(-1),
            finished.last_error_line()
        );
    }
    info!(hook = variable, "remote command done");
    Ok(())
}

/// Runs a short remote command that must succeed.
async fn remote_step(
    ssh: &Ssh,
    what: &str,
    command: &str,
    cancel: &CancellationToken,
) -> Result<()> {
    let done = ssh.run(command, None, cancel).await?;
    if !done.success() {
        return Err(anyhow::Error::new(classify("ssh", done.code, &done.stderr)))
            .with_context(|| format!("{what} in BACKUP_REMOTE_DIR"));
    }
    Ok(())
}

/// Runs `attempt` until `transient` finds no network failure in its result, at most
/// `retry.attempts` times, waiting `retry.delay`, doubled each time, in between. Returns the last
/// result.
async fn with_retries<T, Fut>(
    retry: Retry,
    what: &str,
    cancel: &CancellationToken,
    transient: impl Fn(&T) -> Option<String>,
    mut attempt: impl FnMut() -> Fut,
) -> T
where
    Fut: std::future::Future<Output = T>,
{
    let mut number = 1;
    loop {
        let result = attempt().await;
        let Some(error) = transient(&result) else {
            return result;
        };
        if number >= retry.attempts || cancel.is_cancelled() {
            if retry.attempts > 1 {
                warn!(what, attempts = number, error = %error, "network failure; giving up");
            }
            return result;
        }
        number += 1;
        let delay = retry.delay_before(number);
        warn!(
            what,
            attempt = number,
            of = retry.attempts,
            delay = %humantime::format_duration(delay),
            error = %error,
            "network failure; retrying"
        );
        tokio::select! {
            _ = cancel.cancelled() => return result,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests;
