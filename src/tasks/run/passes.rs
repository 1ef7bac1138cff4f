//! A volume's rsync passes: whole, of what the change journal named, the scheduled full pass's
//! audited one, and a capture's upload; each reports its progress.

use std::collections::HashSet;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Sidecar;
use crate::capture::Capture;
use crate::capture::changes;
use crate::engine::plan::PlannedVolume;
use crate::ops::progress::{Subject, Watcher};
use crate::remote::transfer::{self, Mirror, OnProgress, Pass, PassResult, Progress};
use crate::report::events;
use crate::tasks::layout::{self, source_path};

/// One rsync pass of a volume; `watched` passes (those not inside a freeze) report their progress.
pub(super) async fn pass(
    ctx: &Sidecar,
    mirror: &Mirror<'_>,
    volume: &PlannedVolume,
    kind: Pass,
    watched: bool,
    cancel: &CancellationToken,
) -> Result<PassResult> {
    let config = &ctx.config;
    let mut watcher = watcher(ctx, volume);
    let mut report = |p: Progress| watcher.pass(p);
    transfer::sync_volume(
        mirror,
        &source_path(config, volume),
        &volume.name,
        &volume.excludes,
        kind,
        watched.then_some(&mut report as OnProgress),
        cancel,
    )
    .await
    .with_context(|| format!("{} pass", if kind == Pass::Live { "live" } else { "final" }))
}

/// What reports a volume's pass progress (log lines, the run in progress).
fn watcher(ctx: &Sidecar, volume: &PlannedVolume) -> Watcher {
    Watcher::new(
        Subject::Volume(volume.name.clone()),
        ctx.config.progress_interval,
        ctx.store.clone(),
    )
}

/// The scheduled full pass's live pass: whole, and compared with what the change journal named
/// since the mirror's state; logs `journal checked` with what it missed.
pub(super) async fn audited_pass(
    ctx: &Sidecar,
    mirror: &Mirror<'_>,
    volume: &PlannedVolume,
    expected: &HashSet<Vec<u8>>,
    cancel: &CancellationToken,
) -> Result<(PassResult, Option<u64>)> {
    let mut watcher = watcher(ctx, volume);
    let mut report = |p: Progress| watcher.pass(p);
    let (result, itemized) = transfer::sync_volume_audited(
        mirror,
        &source_path(&ctx.config, volume),
        &volume.name,
        &volume.excludes,
        Some(&mut report as OnProgress),
        cancel,
    )
    .await
    .context("live pass")?;
    let missed = changes::missed(&itemized, expected);
    let examples = missed
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if missed.is_empty() {
        info!(
            message = events::JOURNAL_CHECKED,
            volume = %volume.name,
            named = expected.len(),
            missed = 0,
        );
    } else {
        warn!(
            message = events::JOURNAL_CHECKED,
            volume = %volume.name,
            named = expected.len(),
            missed = missed.len(),
            examples = %examples,
        );
    }
    Ok((result, Some(missed.len() as u64)))
}

/// A live pass of the entries the change journal named (none: nothing to send).
pub(super) async fn listed_pass(
    ctx: &Sidecar,
    mirror: &Mirror<'_>,
    volume: &PlannedVolume,
    entries: &[Vec<u8>],
    cancel: &CancellationToken,
) -> Result<PassResult> {
    if entries.is_empty() {
        return Ok(PassResult {
            stats: Default::default(),
            seconds: 0.0,
            complete: true,
        });
    }
    let staging = layout::staging(&ctx.config);
    std::fs::create_dir_all(&staging).context("creating the staging area")?;
    let list = staging.join(format!("{}.live-list", volume.name));
    let mut text = Vec::new();
    for path in entries {
        text.extend_from_slice(path);
        text.push(0);
    }
    std::fs::write(&list, text).context("writing the live pass's list")?;
    let mut watcher = watcher(ctx, volume);
    let mut report = |p: Progress| watcher.pass(p);
    let result = transfer::sync_listed(
        mirror,
        &source_path(&ctx.config, volume),
        &volume.name,
        &volume.excludes,
        &list,
        Some(&mut report as OnProgress),
        cancel,
    )
    .await
    .context("live pass");
    std::fs::remove_file(&list).ok();
    result
}

/// After the thaw: uploads a volume's capture, reporting progress.
pub(super) async fn upload(
    ctx: &Sidecar,
    mirror: &Mirror<'_>,
    volume: &PlannedVolume,
    capture: &Capture,
    cancel: &CancellationToken,
) -> Result<PassResult> {
    let mut watcher = watcher(ctx, volume);
    let mut report = |p: Progress| watcher.pass(p);
    transfer::upload(
        mirror,
        &volume.name,
        &volume.excludes,
        capture,
        Some(&mut report as OnProgress),
        cancel,
    )
    .await
    .context("upload of the capture")
}
