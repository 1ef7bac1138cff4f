//! One group: a live pass of each volume (of only what the change journal named, once it can
//! say), then the freeze with the catch-up (a capture into the staging area, or a network pass of
//! each volume), the thaw, and a capture's upload; or a single pass of each volume when nothing
//! is to be frozen. A volume that completed tells the journal the freeze's event number: the
//! mirror's state, from which the next run counts.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Sidecar;
use super::files::stage;
use super::passes::{audited_pass, listed_pass, pass, upload};
use crate::capture::changes::JournalView;
use crate::capture::group::{Captured, Job};
use crate::capture::{self, Capture, LiveView};
use crate::config::CatchUp;
use crate::engine::freeze::{self, Frozen};
use crate::engine::plan::{Group, PlannedVolume};
use crate::format::millis;
use crate::remote::ssh::Ssh;
use crate::remote::transfer::{Mirror, Pass, PassResult};
use crate::report::events;
use crate::report::{Failure, Synced};
use crate::tasks::layout::{self, source_path};

pub(super) type VolumeResults = Vec<(String, Result<Synced>)>;

/// The volume's figures from its passes, logged as `volume synced`. `totals` (entries, bytes)
/// replaces the last pass's when that pass sent only part of the volume (a capture's upload).
fn synced(
    volume: &PlannedVolume,
    live: Option<PassResult>,
    last: PassResult,
    totals: Option<(u64, u64)>,
    walked: Walked,
) -> Synced {
    let (files, bytes) = totals.unwrap_or((last.stats.files, last.stats.bytes));
    let synced = Synced {
        bytes,
        files,
        sent_bytes: live.map_or(0, |l| l.stats.bytes_sent) + last.stats.bytes_sent,
        seconds: live.map_or(0.0, |l| l.seconds) + last.seconds,
        live_seconds: live.map(|l| l.seconds),
        journal_missed: walked.missed,
    };
    info!(
        message = events::VOLUME_SYNCED,
        volume = %volume.name,
        bytes = synced.bytes,
        files = synced.files,
        seconds = millis(synced.seconds),
        live_seconds = synced.live_seconds.map(millis),
        sent_bytes = synced.sent_bytes,
        pass = walked.pass(),
        reason = walked.reason.as_deref(),
    );
    synced
}

/// How a run walked a volume: only what the change journal named, or in full (and why).
struct Walked {
    reason: Option<String>,
    /// What a scheduled full pass found that the journal had not named.
    missed: Option<u64>,
}

impl Walked {
    fn full(reason: impl Into<String>) -> Walked {
        Walked {
            reason: Some(reason.into()),
            missed: None,
        }
    }

    /// From what the journal said before the live pass and while frozen.
    fn of(view: &LiveView, capture: Option<&Capture>) -> Walked {
        let Some(journal) = &view.journal else {
            return Walked::full("the change journal is off");
        };
        let live = journal.reason.clone();
        let scanned = capture.and_then(|c| c.scanned.clone());
        Walked {
            reason: match (live, scanned) {
                (Some(l), Some(s)) if l == s => Some(l),
                (Some(l), Some(s)) => Some(format!("{l}; while frozen: {s}")),
                (l, s) => l.or(s),
            },
            missed: None,
        }
    }

    fn pass(&self) -> &'static str {
        if self.reason.is_none() {
            "journal"
        } else {
            "full"
        }
    }
}

/// How a frozen group caught up.
enum CaughtUp {
    /// Copies in the staging area, one per volume, to upload after the thaw.
    Captured(Captured),
    /// rsync passes over the network while frozen, one per volume; `reason`: why not a capture.
    Network {
        reason: String,
        passes: Vec<Result<PassResult>>,
    },
}

/// A volume that passed its live pass, waiting for the freeze.
struct Ready<'a> {
    volume: &'a PlannedVolume,
    live: PassResult,
    /// What the scheduled full pass found that the journal had not named.
    missed: Option<u64>,
}

/// Mirrors one group (see the module's notes). Returns each volume's result and what the freeze
/// did.
pub(super) async fn sync_group(
    ctx: &Sidecar,
    ssh: &Ssh,
    group: &Group,
    full: Option<&str>,
    cancel: &CancellationToken,
) -> (VolumeResults, Frozen) {
    let config = &ctx.config;
    let mirror = Mirror {
        ssh,
        link: &config.link,
        remote_dir: &config.remote_dir,
    };
    let mut results: VolumeResults = Vec::new();
    // A project's files are copied first; a source whose copy failed goes no further.
    let mut sources = Vec::new();
    for volume in &group.volumes {
        match stage(config, volume, cancel).await {
            Ok(()) => sources.push(volume),
            Err(e) => results.push((volume.name.clone(), Err(e))),
        }
    }
    if group.members.is_empty() {
        for volume in sources {
            let walked = Walked::full("no container to freeze uses it");
            let result = pass(ctx, &mirror, volume, Pass::Final, true, cancel)
                .await
                .map(|done| synced(volume, None, done, None, walked));
            results.push((volume.name.clone(), result));
        }
        return (results, Frozen::default());
    }

    let mut ready = Vec::new();
    let mut views = Vec::new();
    for volume in sources {
        let view = before_live_pass(ctx, volume, full).await;
        match live_pass(ctx, &mirror, volume, view.as_ref().ok(), cancel).await {
            Ok((live, missed)) => {
                ready.push(Ready {
                    volume,
                    live,
                    missed,
                });
                views.push(view);
            }
            Err(e) => results.push((volume.name.clone(), Err(e))),
        }
    }
    if ready.is_empty() {
        return (results, Frozen::default());
    }
    // Emptied before the freeze (a crashed run may have left copies), and after the upload.
    let staging = layout::staging(config);
    let why_not = capture::clear(&staging)
        .map_err(|e| format!("emptying the staging area: {e}"))
        .err()
        .or_else(|| why_not_capture(&ready, &views));
    let views: Vec<Arc<LiveView>> = views
        .into_iter()
        .map(|v| Arc::new(v.unwrap_or_default()))
        .collect();
    let changes = ctx.changes.clone();
    let (caught_up, frozen) = freeze::with_frozen(
        &ctx.docker,
        &ctx.journal,
        group,
        config.pause_timeout,
        cancel,
        |token| {
            let ready = &ready;
            let mirror = &mirror;
            let staging = &staging;
            let views = &views;
            async move {
                // What the journal has seen up to the freeze: the state the mirror reaches.
                let mark = match changes.clone() {
                    Some(c) => tokio::task::spawn_blocking(move || c.mark()).await.ok(),
                    None => None,
                };
                let captured = match why_not {
                    Some(reason) => Err(reason),
                    None => capture_group(ctx, ready, views, staging).await,
                };
                let reason = match captured {
                    Ok(captured) => return Ok((mark, captured)),
                    Err(reason) => reason,
                };
                let mut passes = Vec::new();
                for r in ready {
                    passes.push(pass(ctx, mirror, r.volume, Pass::Final, false, &token).await);
                }
                Ok((mark, CaughtUp::Network { reason, passes }))
            }
        },
    )
    .await;
    let (mark, caught_up) = match caught_up {
        Ok((mark, caught_up)) => (mark, Ok(caught_up)),
        Err(e) => (None, Err(e)),
    };
    log_thawed(group, &ready, &frozen, caught_up.as_ref().ok());
    let mut outcomes: Vec<(&PlannedVolume, bool)> = Vec::new();
    match caught_up {
        Ok(CaughtUp::Network { passes, reason }) => {
            for (r, result) in ready.iter().zip(passes) {
                let walked = Walked {
                    missed: r.missed,
                    ..Walked::full(format!("network catch-up: {reason}"))
                };
                let result = result.map(|last| synced(r.volume, Some(r.live), last, None, walked));
                outcomes.push((r.volume, result.is_ok()));
                results.push((r.volume.name.clone(), result));
            }
        }
        Ok(CaughtUp::Captured(Captured { captures, .. })) => {
            for ((r, capture), view) in ready.iter().zip(captures).zip(&views) {
                let walked = Walked {
                    missed: r.missed,
                    ..Walked::of(view, Some(&capture))
                };
                // From the journal, the volume's figures are its last full walk's; a whole
                // live pass counted it afresh.
                let listed = view.journal.as_ref().is_some_and(|j| j.since.is_some());
                let totals = if capture.scanned.is_none() && view.journal.is_some() && !listed {
                    (r.live.stats.files, r.live.stats.bytes)
                } else {
                    capture.totals()
                };
                let result = upload(ctx, &mirror, r.volume, &capture, cancel)
                    .await
                    .map(|last| synced(r.volume, Some(r.live), last, Some(totals), walked));
                outcomes.push((r.volume, result.is_ok()));
                results.push((r.volume.name.clone(), result));
            }
        }
        Err(e) => {
            // Every volume of the group failed for the one reason, with its kind.
            let failure = Failure::of(&e);
            for r in &ready {
                results.push((r.volume.name.clone(), Err(failure.clone().into())));
            }
        }
    }
    if let Err(e) = capture::clear(&staging) {
        warn!(error = %e, path = %staging.display(), "cannot empty the staging area");
    }
    if let Some(changes) = &ctx.changes {
        for (volume, done) in outcomes {
            changes.completed(&source_path(config, volume), mark.filter(|_| done));
        }
    }
    (results, frozen)
}

/// A volume's live pass: of what the change journal named when it can say, the scheduled full
/// pass's audited one, or whole. Also what the audit found the journal missed.
async fn live_pass(
    ctx: &Sidecar,
    mirror: &Mirror<'_>,
    volume: &PlannedVolume,
    view: Option<&LiveView>,
    cancel: &CancellationToken,
) -> Result<(PassResult, Option<u64>)> {
    let journal = view.and_then(|v| v.journal.as_ref());
    if let Some(journal) = journal.filter(|j| j.since.is_some()) {
        let live = listed_pass(ctx, mirror, volume, &journal.list, cancel).await?;
        return Ok((live, None));
    }
    if let Some(expected) = journal.and_then(|j| j.expected.as_ref()) {
        return audited_pass(ctx, mirror, volume, expected, cancel).await;
    }
    let live = pass(ctx, mirror, volume, Pass::Live, true, cancel).await?;
    Ok((live, None))
}

/// What the capture needs from before a volume's live pass (the error says why there is none):
/// from the change journal when it is on, else by a scan. `full`: why the live pass walks the
/// whole volume even so.
async fn before_live_pass(
    ctx: &Sidecar,
    volume: &PlannedVolume,
    full: Option<&str>,
) -> Result<LiveView, String> {
    let config = &ctx.config;
    if config.catch_up == CatchUp::Network {
        return Err("BACKUP_CATCH_UP=network".into());
    }
    let source = source_path(config, volume);
    let excludes = volume.excludes.clone();
    let changes = ctx.changes.clone();
    let full = full.map(str::to_string);
    let listed = tokio::task::spawn_blocking(move || {
        let Some(changes) = changes else {
            return LiveView::before_live_pass(&source, &excludes, &AtomicBool::new(false));
        };
        match LiveView::from_journal(&changes, &source, &excludes, full.as_deref()) {
            Ok(view) => Ok(view),
            // It says why in the volume's line; the scan does what it cannot.
            Err(e) => {
                let mut view =
                    LiveView::before_live_pass(&source, &excludes, &AtomicBool::new(false))?;
                view.journal = Some(JournalView {
                    reason: Some(e.to_string()),
                    ..JournalView::default()
                });
                Ok(view)
            }
        }
    })
    .await;
    listed
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| format!("listing {} before its live pass: {e}", volume.name))
}

/// Why the group cannot be captured, if it cannot: decided before the freeze.
fn why_not_capture(ready: &[Ready], views: &[Result<LiveView, String>]) -> Option<String> {
    let incomplete = ready.iter().find(|r| !r.live.complete).map(|r| {
        format!(
            "the live pass of {} could not read every file (rsync exit 23)",
            r.volume.name
        )
    });
    views
        .iter()
        .find_map(|v| v.as_ref().err().cloned())
        .or(incomplete)
}

/// While frozen: the capture of the group's volumes (see [`capture::group`]).
async fn capture_group(
    ctx: &Sidecar,
    ready: &[Ready<'_>],
    views: &[Arc<LiveView>],
    staging: &Path,
) -> Result<CaughtUp, String> {
    let config = &ctx.config;
    let jobs = ready
        .iter()
        .zip(views)
        .map(|(r, view)| Job {
            name: r.volume.name.clone(),
            source: source_path(config, r.volume),
            excludes: r.volume.excludes.clone(),
            view: Arc::clone(view),
            changes: ctx.changes.clone(),
        })
        .collect();
    capture::group::capture_group(jobs, staging, config.staging_max)
        .await
        .map(CaughtUp::Captured)
}

/// Logs `group thawed`, with the catch-up path that was taken and what it moved.
fn log_thawed(group: &Group, ready: &[Ready], frozen: &Frozen, caught_up: Option<&CaughtUp>) {
    if frozen.containers.is_empty() {
        return;
    }
    let (catch_up, reason, files, bytes, scan_ms, copy_ms) = match caught_up {
        Some(CaughtUp::Captured(Captured {
            captures,
            scan,
            copy,
        })) => (
            CatchUp::Capture,
            None,
            captures.iter().map(|c| c.choice.entries as u64).sum(),
            captures.iter().map(|c| c.choice.bytes).sum(),
            Some(scan.as_millis() as u64),
            Some(copy.as_millis() as u64),
        ),
        Some(CaughtUp::Network { reason, .. }) => {
            (CatchUp::Network, Some(reason.as_str()), 0, 0, None, None)
        }
        None => (CatchUp::Network, None, 0, 0, None, None),
    };
    // Which volumes were scanned whole while frozen though the journal watches them, and why.
    let scanned: Vec<String> = match caught_up {
        Some(CaughtUp::Captured(Captured { captures, .. })) => captures
            .iter()
            .zip(ready)
            .filter_map(|(c, r)| {
                let why = c.scanned.as_ref()?;
                Some(format!("{}: {why}", r.volume.name))
            })
            .collect(),
        _ => Vec::new(),
    };
    let full_scan = (!scanned.is_empty()).then(|| scanned.join("; "));
    info!(
        message = events::GROUP_THAWED,
        group = %group.name,
        containers = %frozen.containers.join(","),
        pause_ms = frozen.duration.as_millis() as u64,
        catch_up = %catch_up,
        reason,
        staged_files = files,
        staged_bytes = bytes,
        scan_ms,
        copy_ms,
        full_scan,
    );
}
