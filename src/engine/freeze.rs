//! Freeze: hold a group's containers still around a piece of work, and thaw them on every path
//! (success, error, timeout, cancellation, panic). What is frozen is written to a journal first, so
//! a sidecar killed mid-freeze repairs it at its next start. Everything goes through the
//! [`Containers`] seam, so all of this is unit-tested against a fake engine.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::engine::containers::{Containers, Refusal};
use crate::engine::journal::Journal;
use crate::engine::plan::{Group, Member, Quiesce};

/// Why a freeze failed, as code and users branch on it (the work's own failure is not one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeFault {
    /// The journal could not be written: nothing was frozen.
    Journal,
    /// The engine refused to pause or stop a member: the others were thawed, the work never ran.
    Freeze,
    /// The work did not end within the pause timeout.
    Timeout,
    /// The sidecar was stopped while the group was frozen.
    Cancelled,
    /// The work panicked.
    Panicked,
    /// A member was removed while frozen.
    Removed,
    /// A member was unpaused or restarted by someone else while frozen.
    Restarted,
    /// A member could not be thawed: the journal keeps it for the next run.
    Thaw,
}

impl FreezeFault {
    /// A stable name, for machines.
    pub fn as_str(self) -> &'static str {
        match self {
            FreezeFault::Journal => "journal",
            FreezeFault::Freeze => "freeze",
            FreezeFault::Timeout => "pause_timeout",
            FreezeFault::Cancelled => "cancelled",
            FreezeFault::Panicked => "panicked",
            FreezeFault::Removed => "removed_while_frozen",
            FreezeFault::Restarted => "restarted_while_frozen",
            FreezeFault::Thaw => "thaw",
        }
    }
}

/// A failed freeze or thaw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeError {
    /// What kind of failure (the most serious one, when several happened).
    pub fault: FreezeFault,
    /// For people.
    pub message: String,
}

impl fmt::Display for FreezeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FreezeError {}

fn failed(fault: FreezeFault, message: impl Into<String>) -> anyhow::Error {
    FreezeError {
        fault,
        message: message.into(),
    }
    .into()
}

/// What a freeze did, besides the work's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frozen {
    /// From the first freeze call to the last member thawed; zero when nothing was frozen.
    pub duration: Duration,
    /// The containers that were frozen.
    pub containers: Vec<String>,
    /// Every frozen container was thawed (or is gone); false means the journal keeps some.
    pub thawed: bool,
}

impl Default for Frozen {
    /// Nothing was frozen, so nothing is left frozen.
    fn default() -> Self {
        Frozen {
            duration: Duration::ZERO,
            containers: Vec::new(),
            thawed: true,
        }
    }
}

/// Undoes what a killed predecessor left frozen: unpauses what it paused, starts what it
/// stopped. Returns the names of the containers repaired.
pub async fn repair(journal: &Journal, engine: &impl Containers) -> Vec<String> {
    let mut repaired = Vec::new();
    for member in journal.entries() {
        let state = match engine.inspect(&member.id).await {
            Ok(state) => state,
            Err(e) if e.refusal == Refusal::Gone => {
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
            Quiesce::Pause => state.paused,
            _ => !state.running,
        };
        if needs_thaw {
            match thaw_one(engine, &member).await {
                Ok(Thawed::Done) => {
                    tracing::warn!(container = %member.name, how = %member.quiesce, "thawed a container left frozen by a previous run");
                    repaired.push(member.name.clone());
                }
                // Gone or running again since: nothing left to repair.
                Ok(Thawed::Removed | Thawed::AlreadyRunning) => {}
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

async fn freeze_one(engine: &impl Containers, member: &Member) -> Result<()> {
    match member.quiesce {
        Quiesce::Pause => engine.pause(&member.id).await,
        Quiesce::Stop => engine.stop(&member.id).await,
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
async fn thaw_one(engine: &impl Containers, member: &Member) -> Result<Thawed> {
    let mut last = None;
    for attempt in 0..6u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        let result = match member.quiesce {
            Quiesce::Pause => engine.unpause(&member.id).await,
            Quiesce::Stop => engine.start(&member.id).await,
            Quiesce::None => Ok(()),
        };
        let error = match result {
            Ok(()) => return Ok(Thawed::Done),
            Err(e) => e,
        };
        match error.refusal {
            Refusal::Gone => return Ok(Thawed::Removed),
            Refusal::NotFrozen => return Ok(Thawed::AlreadyRunning),
            Refusal::Other => {}
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
async fn thaw_all(engine: &impl Containers, journal: &Journal, frozen: &[&Member]) -> Result<()> {
    // All at once: the group's freeze window ends when its last member is thawed.
    let outcomes = futures::future::join_all(frozen.iter().map(|m| thaw_one(engine, m))).await;
    let mut failures = Vec::new();
    // The most serious fault names the failure: a container left frozen beats one that moved.
    let mut fault = None;
    for (member, outcome) in frozen.iter().zip(outcomes) {
        match outcome {
            Ok(thawed) => {
                journal.forget(&member.id);
                match thawed {
                    Thawed::Done => {}
                    Thawed::Removed => {
                        fault = fault.or(Some(FreezeFault::Removed));
                        failures.push(format!(
                            "container {} was removed while frozen",
                            member.name
                        ))
                    }
                    Thawed::AlreadyRunning => {
                        fault = fault.or(Some(FreezeFault::Restarted));
                        failures.push(format!(
                            "container {} was restarted or unpaused by someone else while frozen",
                            member.name
                        ))
                    }
                }
            }
            Err(e) => {
                tracing::error!(container = %member.name, error = %format!("{e:#}"), "thaw failed; the journal keeps it for the next run");
                fault = Some(FreezeFault::Thaw);
                failures.push(format!("{e:#}"));
            }
        }
    }
    match fault {
        None => Ok(()),
        Some(fault) => Err(failed(fault, failures.join("; "))),
    }
}

/// Freezes the group's members, runs `work`, thaws. `work` gets a token that is cancelled when the
/// freeze must end early; its future is dropped (killing its children) on timeout, cancellation or
/// panic, and the thaw happens after. Returns the work's result and what the freeze did.
pub async fn with_frozen<T, F, Fut>(
    engine: &impl Containers,
    journal: &Journal,
    group: &Group,
    timeout: Duration,
    cancel: &CancellationToken,
    work: F,
) -> (Result<T>, Frozen)
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
            let error = failed(
                FreezeFault::Journal,
                format!("cannot record the freeze in BACKUP_STATE_DIR: {e:#}"),
            );
            return (Err(error), Frozen::default());
        }
    }

    let work_cancel = cancel.child_token();
    let started = Instant::now();
    // All at once, so the first member is not frozen longer than it must be.
    let mut frozen: Vec<&Member> = Vec::new();
    let mut result: Result<T> = Err(failed(
        FreezeFault::Cancelled,
        "cancelled before the freeze",
    ));
    let mut freeze_failed = cancel.is_cancelled();
    if !freeze_failed {
        let outcomes =
            futures::future::join_all(members.iter().map(|m| freeze_one(engine, m))).await;
        for (member, outcome) in members.iter().zip(outcomes) {
            match outcome {
                Ok(()) => frozen.push(member),
                Err(e) => {
                    // A member that was never frozen leaves the journal now.
                    journal.forget(&member.id);
                    if !freeze_failed {
                        result = Err(failed(FreezeFault::Freeze, format!("{e:#}")));
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
        // The closure is called inside the guarded future, so even a panic before it returns
        // its future is caught and the group thawed.
        let token = work_cancel.clone();
        let work = AssertUnwindSafe(async move { work(token).await }).catch_unwind();
        let remaining = timeout.saturating_sub(started.elapsed());
        result = tokio::select! {
            outcome = work => match outcome {
                Ok(r) => r,
                Err(_) => Err(failed(FreezeFault::Panicked, "the catch-up pass panicked")),
            },
            _ = tokio::time::sleep(remaining) => Err(failed(FreezeFault::Timeout, format!(
                "catch-up pass abandoned: the group was frozen for BACKUP_PAUSE_TIMEOUT ({})",
                humantime::format_duration(timeout)
            ))),
            _ = cancel.cancelled() => Err(failed(FreezeFault::Cancelled, "cancelled while frozen")),
        };
        work_cancel.cancel();
    }
    let thawed = thaw_all(engine, journal, &frozen).await;
    let outcome = Frozen {
        duration: if frozen.is_empty() {
            Duration::ZERO
        } else {
            started.elapsed()
        },
        containers: frozen.iter().map(|m| m.name.clone()).collect(),
        thawed: !matches!(&thawed, Err(e) if e.downcast_ref::<FreezeError>().is_some_and(|f| f.fault == FreezeFault::Thaw)),
    };
    let result = match (result, thawed) {
        (r, Ok(())) => r,
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(thaw)) => {
            // A container left frozen is the graver news: it names the failure's kind.
            let message = format!("and thawing failed: {thaw:#}");
            match thaw.downcast_ref::<FreezeError>() {
                Some(f) if f.fault == FreezeFault::Thaw => Err(e.context(FreezeError {
                    fault: FreezeFault::Thaw,
                    message,
                })),
                _ => Err(e.context(message)),
            }
        }
    };
    (result, outcome)
}

#[cfg(test)]
mod tests;
