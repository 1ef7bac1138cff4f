//! A frozen group's capture: its volumes scanned at once, then what changed copied into the
//! staging area, unless that would exceed `BACKUP_STAGING_MAX`. It runs on blocking threads, and
//! stops them when the freeze ends before it does (its future dropped by a timeout or a cancel).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::changes::Changes;
use super::{Capture, LiveView, copy, survey};
use crate::format::human_bytes;

/// One volume of the group.
pub struct Job {
    /// Its name: its directory in the staging area.
    pub name: String,
    /// Where it is read.
    pub source: PathBuf,
    /// Its exclude patterns.
    pub excludes: Vec<String>,
    /// What was seen before its live pass (shared: the freeze does not copy it).
    pub view: Arc<LiveView>,
    /// The change journal, when it is on.
    pub changes: Option<Changes>,
}

/// The group's copies, one per job in order, and how long the scans and the copies took.
pub struct Captured {
    /// One per job.
    pub captures: Vec<Capture>,
    /// The scans of every volume, at once.
    pub scan: Duration,
    /// The copies.
    pub copy: Duration,
}

/// Sets a flag when dropped: the freeze ended (timeout, cancellation) and the capture's threads
/// should stop.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Scans the jobs' volumes at once and copies what changed into `staging` (absent or empty), one
/// directory per job, unless it comes to more than `max` bytes. The error says why not, for the
/// `group thawed` line.
pub async fn capture_group(jobs: Vec<Job>, staging: &Path, max: u64) -> Result<Captured, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let staging = staging.to_path_buf();
    let work = move || -> Result<Captured, String> {
        let started = Instant::now();
        let surveys = std::thread::scope(|scope| {
            let threads: Vec<_> = jobs
                .iter()
                .map(|job| {
                    scope.spawn(|| {
                        survey(
                            &job.source,
                            &job.excludes,
                            &job.view,
                            job.changes.as_ref(),
                            &stop,
                        )
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("scan thread panicked"))
                .collect::<Vec<_>>()
        });
        let mut chosen = Vec::new();
        for (job, survey) in jobs.iter().zip(surveys) {
            chosen.push(survey.map_err(|e| format!("scanning {}: {e}", job.name))?);
        }
        let bytes: u64 = chosen.iter().map(|s| s.choice.bytes).sum();
        if bytes > max {
            return Err(format!(
                "{} changed while frozen, over BACKUP_STAGING_MAX ({})",
                human_bytes(bytes),
                human_bytes(max)
            ));
        }
        let scan = started.elapsed();
        let captures = std::thread::scope(|scope| {
            let threads: Vec<_> = jobs
                .iter()
                .zip(chosen)
                .map(|(job, survey)| {
                    let target = staging.join(&job.name);
                    let stop = &stop;
                    scope.spawn(move || {
                        copy(&job.source, &target, survey, stop)
                            .map_err(|e| format!("copying {} into the staging area: {e}", job.name))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("copy thread panicked"))
                .collect::<Result<Vec<_>, String>>()
        })?;
        Ok(Captured {
            captures,
            scan,
            copy: started.elapsed() - scan,
        })
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(format!("the capture failed: {e}")),
    }
}
