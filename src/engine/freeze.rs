//! Freeze: hold a group's containers still around a piece of work, and thaw them on every path
//! (success, error, timeout, cancellation, panic). What is frozen is written to a journal first, so
//! a sidecar killed mid-freeze repairs it at its next start.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bollard::Docker;
use bollard::query_parameters::{StartContainerOptions, StopContainerOptions};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::engine::journal::Journal;
use crate::engine::plan::{Group, Member, Quiesce};

/// Undoes what a killed predecessor left frozen: unpauses what it paused, starts what it
/// stopped. Returns the names of the containers repaired.
pub async fn repair(journal: &Journal, docker: &Docker) -> Vec<String> {
    let mut repaired = Vec::new();
    for member in journal.entries() {
        let state = match docker.inspect_container(&member.id, None).await {
            Ok(container) => container.state.unwrap_or_default(),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                tracing::warn!(container = %member.name, "container in the freeze journal no longer exists");
                journal.forget(&member.id);
                continue;
            }
            Err(e) => {
                tracing::error!(container = %member.name, error = %e, "cannot look at a container left frozen by a previous run; trying again next run");
                continue;
            }
        };
        let needs_thaw = match member.quiesce {
            Quiesce::Pause => state.paused == Some(true),
            _ => state.running != Some(true),
        };
        if needs_thaw {
            match thaw_one(docker, &member).await {
                Ok(_) => {
                    tracing::warn!(container = %member.name, how = %member.quiesce, "thawed a container left frozen by a previous run");
                    repaired.push(member.name.clone());
                }
                Err(e) => {
                    tracing::error!(container = %member.name, error = %format!("{e:#}"), "cannot thaw a container left frozen by a previous run");
                    continue;
                }
            }
        }
        journal.forget(&member.id);
    }
    repaired
}

async fn freeze_one(docker: &Docker, member: &Member) -> Result<()> {
    match member.quiesce {
        Quiesce::Pause => docker.pause_container(&member.id).await,
        Quiesce::Stop => {
            docker
                .stop_container(&member.id, None::<StopContainerOptions>)
                .await
        }
        Quiesce::None => Ok(()),
    }
    .with_context(|| format!("cannot {} container {}", member.quiesce, member.name))
}

/// What a thaw found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Thawed {
    /// Unpaused or started by us.
    Done,
    /// The container no longer exists.
    Removed,
    /// It was already running: somebody restarted or unpaused it while we held it.
    AlreadyRunning,
}

/// Thaws one container. The Docker API may be briefly unreachable (a restarting socket proxy):
/// retried with backoff for a few seconds; past that the journal keeps the entry and the next run
/// or start repairs it.
async fn thaw_one(docker: &Docker, member: &Member) -> Result<Thawed> {
    let mut last = None;
    for attempt in 0..6u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        let result = match member.quiesce {
            Quiesce::Pause => docker.unpause_container(&member.id).await,
            Quiesce::Stop => {
                docker
                    .start_container(&member.id, None::<StartContainerOptions>)
                    .await
            }
            Quiesce::None => Ok(()),
        };
        let error = match result {
            Ok(()) => return Ok(Thawed::Done),
            Err(e) => e,
        };
        if let bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } = &error
        {
            // The engine answers 404 for a removed container, and 304, 409 or 500 with "is not
            // paused" / "already started" for one that somebody else thawed or restarted.
            if *status_code == 404 || message.contains("No such container") {
                return Ok(Thawed::Removed);
            }
            if *status_code == 304
                || message.contains("is not paused")
                || message.contains("already started")
            {
                return Ok(Thawed::AlreadyRunning);
            }
        }
        tracing::warn!(container = %member.name, attempt = attempt + 1, error = %error, "thaw failed, retrying");
        last = Some(error);
    }
    Err(anyhow!(
        "cannot thaw container {}: {}",
        member.name,
        last.map_or_else(|| "no attempt".to_string(), |e| e.to_string())
    ))
}

/// Thaws `frozen` (every one, whatever fails) and forgets them in the journal. Fails when a thaw
/// failed, or when a container was removed or restarted while frozen: then the catch-up pass did
/// not see one still instant.
async fn thaw_all(docker: &Docker, journal: &Journal, frozen: &[&Member]) -> Result<()> {
    // All at once: the group's freeze window ends when its last member is thawed.
    let outcomes = futures::future::join_all(frozen.iter().map(|m| thaw_one(docker, m))).await;
    let mut failures = Vec::new();
    for (member, outcome) in frozen.iter().zip(outcomes) {
        match outcome {
            Ok(thawed) => {
                journal.forget(&member.id);
                match thawed {
                    Thawed::Done => {}
                    Thawed::Removed => failures.push(format!(
                        "container {} was removed while frozen",
                        member.name
                    )),
                    Thawed::AlreadyRunning => failures.push(format!(
                        "container {} was restarted or unpaused by someone else while frozen",
                        member.name
                    )),
                }
            }
            Err(e) => {
                tracing::error!(container = %member.name, error = %format!("{e:#}"), "thaw failed; the journal keeps it for the next run");
                failures.push(format!("{e:#}"));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

/// Freezes the group's members, runs `work`, thaws. `work` gets a token that is cancelled when the
/// freeze must end early; its future is dropped (killing its children) on timeout, cancellation or
/// panic, and the thaw happens after. Returns the work's result and how long the group was frozen.
pub async fn with_frozen<T, F, Fut>(
    docker: &Docker,
    journal: &Journal,
    group: &Group,
    timeout: Duration,
    cancel: &CancellationToken,
    work: F,
) -> (Result<T>, Duration)
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let members: Vec<&Member> = group
        .members
        .iter()
        .filter(|m| m.quiesce != Quiesce::None)
        .collect();
    for member in &members {
        if let Err(e) = journal.record(member) {
            for m in &members {
                journal.forget(&m.id);
            }
            return (
                Err(e.context("cannot record the freeze in BACKUP_STATE_DIR")),
                Duration::ZERO,
            );
        }
    }

    let work_cancel = cancel.child_token();
    let started = Instant::now();
    // All at once, so the first member is not frozen longer than it must be.
    let mut frozen: Vec<&Member> = Vec::new();
    let mut result: Result<T> = Err(anyhow!("cancelled before the freeze"));
    let mut freeze_failed = cancel.is_cancelled();
    if !freeze_failed {
        let outcomes =
            futures::future::join_all(members.iter().map(|m| freeze_one(docker, m))).await;
        for (member, outcome) in members.iter().zip(outcomes) {
            match outcome {
                Ok(()) => frozen.push(member),
                Err(e) => {
                    // A member that was never frozen leaves the journal now.
                    journal.forget(&member.id);
                    if !freeze_failed {
                        result = Err(e);
                    }
                    freeze_failed = true;
                }
            }
        }
    } else {
        for member in &members {
            journal.forget(&member.id);
        }
    }
    if !freeze_failed {
        let work = AssertUnwindSafe(work(work_cancel.clone())).catch_unwind();
        let remaining = timeout.saturating_sub(started.elapsed());
        result = tokio::select! {
            outcome = work => match outcome {
                Ok(r) => r,
                Err(_) => Err(anyhow!("the catch-up pass panicked")),
            },
            _ = tokio::time::sleep(remaining) => Err(anyhow!(
                "catch-up pass abandoned: the group was frozen for BACKUP_PAUSE_TIMEOUT ({})",
                humantime::format_duration(timeout)
            )),
            _ = cancel.cancelled() => Err(anyhow!("cancelled while frozen")),
        };
        work_cancel.cancel();
    }
    let thawed = thaw_all(docker, journal, &frozen).await;
    let paused_for = started.elapsed();
    if !frozen.is_empty() {
        let containers: Vec<&str> = frozen.iter().map(|m| m.name.as_str()).collect();
        tracing::info!(
            group = %group.name,
            containers = %containers.join(","),
            pause_ms = paused_for.as_millis() as u64,
            "group thawed"
        );
    }
    let result = match (result, thawed) {
        (r, Ok(())) => r,
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(thaw)) => Err(e.context(format!("and thawing failed: {thaw:#}"))),
    };
    (result, paused_for)
}
