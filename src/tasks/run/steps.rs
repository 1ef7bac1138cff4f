//! The order of a run's steps, apart from what each step does: the remote's pre command, the
//! mirror claimed and its completion stamp removed, each group, each group again that containers
//! began to use unfrozen meanwhile (see [`crate::engine::newcomers`]), then (only when every
//! volume mirrored) the stamp written and the snapshot, and the post command on every path. The
//! real steps reach the engine and the remote ([`super::Live`]); the tests drive a fake.

use anyhow::{Context, Result, anyhow, bail};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::group::VolumeResults;
use crate::engine::freeze::Frozen;
use crate::engine::newcomers::Redo;
use crate::engine::plan::{Group, Plan};
use crate::remote::borg::Created;
use crate::report::events;
use crate::report::{Failure, GroupReport, RunReport, Stage, VolumeReport};

/// What a run does at each step.
pub(super) trait Steps {
    /// The remote's pre command, when there is one.
    async fn pre_command(&mut self, cancel: &CancellationToken) -> Result<()>;
    /// Claims the mirror directory for this host and removes the completion stamp: from here
    /// until every volume is mirrored, the mirror is incomplete.
    async fn begin_mirror(&mut self, cancel: &CancellationToken) -> Result<()>;
    /// Mirrors one group: each volume's result, and what its freeze did.
    async fn group(&mut self, group: &Group, cancel: &CancellationToken)
    -> (VolumeResults, Frozen);
    /// The groups to do again: containers began to use them since the last look (the plan, at
    /// first) and were not frozen (`redone`: the groups done again so far, whose members were).
    async fn newcomers(&mut self, plan: &Plan, redone: &[Group]) -> Result<Vec<Redo>>;
    /// Writes the completion stamp: every volume of the run is mirrored.
    async fn write_stamp(&mut self, cancel: &CancellationToken) -> Result<()>;
    /// `borg create` of the mirror (`total` bytes), when there is a repository.
    async fn snapshot(&mut self, total: u64, cancel: &CancellationToken)
    -> Result<Option<Created>>;
    /// The remote's post command, when there is one.
    async fn post_command(&mut self, cancel: &CancellationToken) -> Result<()>;
}

/// How many times a run does its groups again because containers began to use them unfrozen.
const REDO_LIMIT: usize = 2;

/// Runs the steps of `plan` in order, recording each group and volume in `report`; the post
/// command runs whatever happened before it.
pub(super) async fn drive(
    steps: &mut impl Steps,
    plan: &Plan,
    report: &mut RunReport,
    cancel: &CancellationToken,
) -> Result<()> {
    let result = mirror_and_snapshot(steps, plan, report, cancel).await;
    if result.is_ok() {
        report.stage = Stage::PostCommand;
    }
    let post = steps.post_command(cancel).await;
    match (result, post) {
        (Ok(()), post) => post,
        (Err(e), Ok(())) => Err(e),
        // The run's own failure first (it is the cause the user looks for), of its kind.
        (Err(e), Err(post)) => {
            let first = Failure::of(&e);
            Err(Failure {
                message: format!("{}; and then {post:#}", first.message),
                ..first
            }
            .into())
        }
    }
}

async fn mirror_and_snapshot(
    steps: &mut impl Steps,
    plan: &Plan,
    report: &mut RunReport,
    cancel: &CancellationToken,
) -> Result<()> {
    report.stage = Stage::PreCommand;
    steps.pre_command(cancel).await?;
    report.stage = Stage::Mirror;
    steps.begin_mirror(cancel).await?;
    for group in &plan.groups {
        if cancel.is_cancelled() {
            bail!("cancelled");
        }
        let (results, frozen) = steps.group(group, cancel).await;
        record(report, group, results, frozen);
    }
    redo_for_newcomers(steps, plan, report, cancel).await?;
    finish(steps, report, cancel).await
}

/// Does again, with them frozen, each group that containers began to use while the run copied
/// it unfrozen, until none did; past [`REDO_LIMIT`] times the run fails. Nothing to look for
/// when a volume failed (no snapshot comes anyway) or the run was cancelled.
async fn redo_for_newcomers(
    steps: &mut impl Steps,
    plan: &Plan,
    report: &mut RunReport,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut redone: Vec<Group> = Vec::new();
    for attempt in 0..=REDO_LIMIT {
        if cancel.is_cancelled() || report.volumes.iter().any(|v| v.outcome.is_err()) {
            return Ok(());
        }
        let redo = steps
            .newcomers(plan, &redone)
            .await
            .context("cannot tell whether containers began to use the volumes during the run")?;
        if redo.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = redo.iter().flat_map(|r| r.newcomers.clone()).collect();
        if attempt == REDO_LIMIT {
            bail!(
                "containers kept starting to use the volumes during the run ({}), so what was \
                 copied is not one instant; no snapshot taken",
                names.join(",")
            );
        }
        for Redo { group, newcomers } in redo {
            if cancel.is_cancelled() {
                bail!("cancelled");
            }
            warn!(
                message = events::GROUP_REDONE,
                group = %group.name,
                containers = %newcomers.join(","),
                attempt = attempt + 1,
            );
            let (results, frozen) = steps.group(&group, cancel).await;
            record(report, &group, results, frozen);
            redone.push(group);
        }
    }
    Ok(())
}

/// Writes down what a group did; a volume's failure is logged as `volume failed`.
fn record(report: &mut RunReport, group: &Group, results: VolumeResults, frozen: Frozen) {
    report.groups.push(GroupReport {
        name: group.name.clone(),
        frozen,
    });
    for (name, result) in results {
        // A group done again replaces what its volumes did before.
        report.volumes.retain(|v| v.name != name);
        let outcome = result.map_err(|e| {
            let failure = Failure::of(&e);
            error!(message = events::VOLUME_FAILED, volume = %name, error = %failure.message);
            failure
        });
        report.volumes.push(VolumeReport {
            name,
            group: group.name.clone(),
            outcome,
        });
    }
}

/// After the groups: no stamp and no snapshot unless every volume mirrored.
async fn finish(
    steps: &mut impl Steps,
    report: &mut RunReport,
    cancel: &CancellationToken,
) -> Result<()> {
    let failures: Vec<(&str, &Failure)> = report
        .volumes
        .iter()
        .filter_map(|v| v.outcome.as_ref().err().map(|f| (v.name.as_str(), f)))
        .collect();
    if let Some((_, first)) = failures.first() {
        let listed: Vec<String> = failures.iter().map(|(v, f)| format!("{v}: {f}")).collect();
        return Err(Failure {
            kind: first.kind,
            message: format!(
                "{} volume(s) failed, no snapshot taken: {}",
                failures.len(),
                listed.join("; ")
            ),
        }
        .into());
    }
    steps.write_stamp(cancel).await?;
    if report.trigger.snapshot {
        report.stage = Stage::Snapshot;
        report.archive = steps.snapshot(report.mirrored().1, cancel).await?;
    }
    Ok(())
}

/// Every volume of `group` failed for one reason, before anything of it was copied.
pub(super) fn all_failed(group: &Group, e: &anyhow::Error) -> VolumeResults {
    let message = format!("{e:#}");
    group
        .volumes
        .iter()
        .map(|v| (v.name.clone(), Err(anyhow!("{message}"))))
        .collect()
}

#[cfg(test)]
mod tests;
