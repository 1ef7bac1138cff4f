//! One run: discover, plan, open ssh, pre command, each group (live pass, freeze, catch-up pass,
//! thaw), snapshot when asked and everything mirrored, post command, one summary line.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use bollard::Docker;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::{Config, Retry};
use crate::engine::discover;
use crate::engine::freeze;
use crate::engine::journal::Journal;
use crate::engine::plan::{self, Group, Plan, PlannedVolume};
use crate::format::human_bytes;
use crate::remote::borg::{self, COMPLETE_STAMP};
use crate::remote::fault::{classify, is_transient};
use crate::remote::ssh::{Session, Ssh, quote};
use crate::remote::transfer::{self, Pass, PassResult};
use crate::schedule::Trigger;

/// How long the post command may take once the sidecar is shutting down.
const POST_COMMAND_GRACE: Duration = Duration::from_secs(3);

/// What the daemon needs for a run.
pub struct Context {
    /// Validated configuration.
    pub config: Config,
    /// Docker client.
    pub docker: Docker,
    /// Freeze journal.
    pub journal: Journal,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Volumes mirrored completely.
    pub volumes: usize,
    /// Their total size.
    pub bytes: u64,
    /// Longest time any group was frozen.
    pub max_pause: Duration,
    /// The archive created, if any.
    pub archive: Option<String>,
    /// Why the run failed, if it did.
    pub error: Option<String>,
}

/// Runs once and logs `run started` ... `run finished`.
pub async fn run(ctx: &Context, trigger: Trigger, cancel: &CancellationToken) -> Summary {
    let span = info_span!("run", trigger = %trigger.kind, snapshot = trigger.snapshot);
    async {
        info!(trigger = %trigger.kind, snapshot = trigger.snapshot, "run started");
        let started = Instant::now();
        let mut summary = Summary::default();
        if let Err(e) = run_inner(ctx, trigger, &mut summary, cancel).await {
            summary.error = Some(format!("{e:#}"));
        }
        let max_pause_ms = summary.max_pause.as_millis() as u64;
        let archive = summary.archive.clone().unwrap_or_default();
        let seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        let mut line = format!(
            "{} volume(s), {}, longest freeze {max_pause_ms} ms, {}, {seconds} s",
            summary.volumes,
            human_bytes(summary.bytes),
            if archive.is_empty() {
                "no archive".to_string()
            } else {
                format!("archive {archive}")
            },
        );
        match &summary.error {
            None => info!(
                outcome = "success",
                volumes = summary.volumes,
                bytes = summary.bytes,
                max_pause_ms,
                archive = %archive,
                seconds,
                summary = %line,
                "run finished"
            ),
            Some(e) => {
                line.push_str(&format!(": FAILED: {e}"));
                error!(
                    outcome = "failed",
                    volumes = summary.volumes,
                    bytes = summary.bytes,
                    max_pause_ms,
                    archive = %archive,
                    seconds,
                    error = %e,
                    summary = %line,
                    "run finished"
                )
            }
        }
        summary
    }
    .instrument(span)
    .await
}

async fn run_inner(
    ctx: &Context,
    trigger: Trigger,
    summary: &mut Summary,
    cancel: &CancellationToken,
) -> Result<()> {
    let config = &ctx.config;
    freeze::repair(&ctx.journal, &ctx.docker).await;
    let inventory = discover::inventory(&ctx.docker).await?;
    let plan = plan::plan(&inventory, config.projects.as_deref(), &config.exclude);
    for skip in &plan.skipped {
        warn!(volume = %skip.volume, reason = %skip.reason, "volume skipped");
    }
    if plan.groups.is_empty() {
        warn!("no volumes selected: label a volume or a container backup.enable=true");
    }
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
    let result = mirror_and_snapshot(ctx, &session.ssh, &plan, trigger, summary, cancel).await;
    let post = match &config.post_command {
        Some(command) => {
            remote_hook(&session.ssh, "BACKUP_REMOTE_POST_COMMAND", command, cancel).await
        }
        None => Ok(()),
    };
    session.close().await;
    match (result, post) {
        (Ok(()), post) => post,
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(post)) => Err(e.context(format!("and then {post:#}"))),
    }
}

/// Runs a pre or post command on the remote. The post command still runs, briefly, on shutdown.
async fn remote_hook(
    ssh: &Ssh,
    variable: &str,
    command: &str,
    cancel: &CancellationToken,
) -> Result<()> {
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

async fn mirror_and_snapshot(
    ctx: &Context,
    ssh: &Ssh,
    plan: &Plan,
    trigger: Trigger,
    summary: &mut Summary,
    cancel: &CancellationToken,
) -> Result<()> {
    let config = &ctx.config;
    if let Some(command) = &config.pre_command {
        remote_hook(ssh, "BACKUP_REMOTE_PRE_COMMAND", command, cancel).await?;
    }
    // From here until every volume is mirrored, the mirror is incomplete.
    let stamp = format!("{}/{COMPLETE_STAMP}", config.remote_dir);
    remote_step(
        ssh,
        "removing the completion stamp",
        &format!("rm -f {}", quote(&stamp)),
        cancel,
    )
    .await?;
    let mut failures = Vec::new();
    for group in &plan.groups {
        if cancel.is_cancelled() {
            bail!("cancelled");
        }
        let first_transient = |(results, _): &(VolumeResults, Duration)| {
            results
                .iter()
                .find_map(|(_, r)| r.as_ref().err().filter(|e| is_transient(e)))
                .map(|e| format!("{e:#}"))
        };
        let (results, paused) =
            with_retries(config.retry, "group", cancel, first_transient, || {
                sync_group(ctx, ssh, group, cancel)
            })
            .instrument(info_span!("group", group = %group.name))
            .await;
        summary.max_pause = summary.max_pause.max(paused);
        for (volume, result) in results {
            match result {
                Ok(bytes) => {
                    summary.volumes += 1;
                    summary.bytes += bytes;
                }
                Err(e) => {
                    error!(volume = %volume, error = %format!("{e:#}"), "volume failed");
                    failures.push(format!("{volume}: {e:#}"));
                }
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} volume(s) failed, no snapshot taken: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    remote_step(
        ssh,
        "writing the completion stamp",
        &format!("date -u +%Y-%m-%dT%H:%M:%SZ > {}", quote(&stamp)),
        cancel,
    )
    .await?;
    if trigger.snapshot {
        match &config.borg {
            Some(borg) => {
                let prefix = match &borg.archive_prefix {
                    Some(p) => p.clone(),
                    None => engine_name(&ctx.docker).await?,
                };
                let created =
                    borg::snapshot(ssh, borg, &prefix, &config.remote_dir, cancel).await?;
                info!(
                    archive = %created.archive,
                    seconds = (created.seconds * 1000.0).round() / 1000.0,
                    original_bytes = created.original_bytes,
                    deduplicated_bytes = created.deduplicated_bytes,
                    "snapshot created"
                );
                summary.archive = Some(created.archive);
            }
            None => info!("no snapshot: BACKUP_BORG_REPO is not set"),
        }
    }
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

/// The engine's host name, the default archive prefix.
async fn engine_name(docker: &Docker) -> Result<String> {
    let name = docker
        .info()
        .await
        .context("cannot ask the Docker engine for its name")?
        .name
        .unwrap_or_default();
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Ok(if name.is_empty() {
        "docker".into()
    } else {
        name
    })
}

type VolumeResults = Vec<(String, Result<u64>)>;

fn log_synced(volume: &PlannedVolume, live: Option<PassResult>, last: PassResult) -> u64 {
    let seconds = live.map_or(0.0, |l| l.seconds) + last.seconds;
    info!(
        volume = %volume.name,
        bytes = last.stats.bytes,
        files = last.stats.files,
        seconds = (seconds * 1000.0).round() / 1000.0,
        live_seconds = live.map(|l| (l.seconds * 1000.0).round() / 1000.0),
        sent_bytes = live.map_or(0, |l| l.stats.bytes_sent) + last.stats.bytes_sent,
        "volume synced"
    );
    last.stats.bytes
}

/// Mirrors one group: a live pass of each volume, then the freeze with a catch-up pass of each,
/// or a single pass when nothing is to be frozen. Returns each volume's result and the freeze time.
async fn sync_group(
    ctx: &Context,
    ssh: &Ssh,
    group: &Group,
    cancel: &CancellationToken,
) -> (VolumeResults, Duration) {
    let config = &ctx.config;
    let pass = |volume: &PlannedVolume, kind: Pass, token: CancellationToken| {
        let ssh = ssh.clone();
        let name = volume.name.clone();
        let excludes = volume.excludes.clone();
        async move {
            transfer::sync_volume(
                &ssh,
                &config.volumes_dir,
                &config.remote_dir,
                &name,
                &excludes,
                kind,
                &token,
            )
            .await
            .with_context(|| format!("{} pass", if kind == Pass::Live { "live" } else { "final" }))
        }
    };

    let mut results: VolumeResults = Vec::new();
    if group.members.is_empty() {
        for volume in &group.volumes {
            let result = pass(volume, Pass::Final, cancel.clone())
                .await
                .map(|done| log_synced(volume, None, done));
            results.push((volume.name.clone(), result));
        }
        return (results, Duration::ZERO);
    }

    let mut ready = Vec::new();
    for volume in &group.volumes {
        match pass(volume, Pass::Live, cancel.clone()).await {
            Ok(live) => ready.push((volume, live)),
            Err(e) => results.push((volume.name.clone(), Err(e))),
        }
    }
    if ready.is_empty() {
        return (results, Duration::ZERO);
    }
    let (caught_up, paused) = freeze::with_frozen(
        &ctx.docker,
        &ctx.journal,
        group,
        config.pause_timeout,
        cancel,
        |token| {
            let ready = &ready;
            async move {
                let mut out = Vec::new();
                for (volume, _) in ready {
                    out.push(pass(volume, Pass::Final, token.clone()).await);
                }
                Ok(out)
            }
        },
    )
    .await;
    match caught_up {
        Ok(passes) => {
            for ((volume, live), result) in ready.iter().zip(passes) {
                let result = result.map(|last| log_synced(volume, Some(*live), last));
                results.push((volume.name.clone(), result));
            }
        }
        Err(e) => {
            let message = format!("{e:#}");
            for (volume, _) in &ready {
                results.push((volume.name.clone(), Err(anyhow!(message.clone()))));
            }
        }
    }
    (results, paused)
}
