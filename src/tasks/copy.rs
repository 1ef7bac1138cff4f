//! The second copy: after each snapshot (or on `BACKUP_COPY_SCHEDULE`), the remote's guard brings
//! the place its owner configured up to date, and on `BACKUP_CHECK_SCHEDULE` checks it. One worker
//! does these one at a time, outside the runs: a copy that fails or is slow never fails or delays
//! a snapshot. A replica of the repository needs no run lock (the guard holds the repository's
//! lock only while it links a still view of it); a second borg repository is made of the mirror,
//! so that copy holds the run lock and the mirror stays still.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{Borg, Config};
use crate::ops::history::{Running, Store};
use crate::ops::progress::{Subject, Watcher};
use crate::ops::{Outputs, logging, notify};
use crate::remote::borg::{archive_time, list_archives, of_prefix};
use crate::remote::copy;
use crate::remote::guard::CopyPlace;
use crate::remote::ssh::{Session, Ssh};
use crate::report::{CopyDone, CopyReport, Failure, FailureKind, Report, events};
use crate::tasks::lock::RunLock;

/// What the worker is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Bring the copy up to date.
    Copy,
    /// Check the copy against what was copied.
    Check,
}

/// Asks the copy worker for jobs; those asked while one runs become one more of each after it.
#[derive(Clone)]
pub struct Copier {
    jobs: mpsc::UnboundedSender<Job>,
}

/// What the worker needs.
struct Worker {
    config: Config,
    store: Store,
    outputs: Arc<Outputs>,
}

impl Copier {
    /// Starts the worker; it stops when `cancel` fires.
    pub fn start(
        config: Config,
        store: Store,
        outputs: Arc<Outputs>,
        cancel: CancellationToken,
    ) -> Copier {
        let (jobs, asked) = mpsc::unbounded_channel();
        let worker = Worker {
            config,
            store,
            outputs,
        };
        tokio::spawn(worker.serve(asked, cancel));
        Copier { jobs }
    }

    /// Asks for a job.
    pub fn ask(&self, job: Job) {
        let _ = self.jobs.send(job);
    }
}

impl Worker {
    async fn serve(self, mut asked: mpsc::UnboundedReceiver<Job>, cancel: CancellationToken) {
        self.store.clear_copying();
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => return,
                job = asked.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            };
            let mut jobs = vec![first];
            while let Ok(job) = asked.try_recv() {
                jobs.push(job);
            }
            for job in [Job::Copy, Job::Check] {
                if !jobs.contains(&job) || cancel.is_cancelled() {
                    continue;
                }
                let run_id = notify::new_run_id();
                let log_mark = logging::mark();
                let report = self.one(job, &cancel).await;
                // A copy stopped with the sidecar is neither a failure nor news.
                if let Some(report) = report.filter(|_| !cancel.is_cancelled()) {
                    self.outputs
                        .publish(&Report::Copy(report), &run_id, log_mark);
                }
            }
        }
    }

    /// One job; `None` when there is nothing to copy to (no repository, or a guard without a
    /// copy) and nothing was ever copied.
    async fn one(&self, job: Job, cancel: &CancellationToken) -> Option<CopyReport> {
        let borg = self.config.borg.as_ref()?;
        let started = Instant::now();
        let report = |place: CopyPlace, newest, outcome| CopyReport {
            place,
            check: job == Job::Check,
            newest,
            outcome,
            duration: started.elapsed(),
        };
        let session = match Session::open(&self.config, cancel).await {
            Ok(session) => session,
            Err(e) => {
                // The remote is out of reach: a copy it made before is falling behind.
                let known = self.store.load().copy?;
                let place = CopyPlace {
                    kind: known.kind,
                    target: known.target,
                };
                return Some(report(place, None, Err(Failure::of(&e))));
            }
        };
        let Some(place) = session.ssh.guard().and_then(|g| g.copy.clone()) else {
            session.close().await;
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                info!(
                    "no second copy: the remote's guard.conf configures none (README: A second \
                     copy)"
                );
            }
            if self.store.load().copy.is_some() {
                self.outputs.forget_copy();
            }
            return None;
        };
        let (newest, outcome) = match job {
            Job::Copy => self.copy(&session.ssh, borg, &place, cancel).await,
            Job::Check => (None, check(&session.ssh, borg, cancel).await),
        };
        session.close().await;
        Some(report(place, newest, outcome))
    }

    /// A copy: the newest archive of this host it will carry, then the guard's copy.
    async fn copy(
        &self,
        ssh: &Ssh,
        borg: &Borg,
        place: &CopyPlace,
        cancel: &CancellationToken,
    ) -> (Option<(String, DateTime<Utc>)>, Result<CopyDone, Failure>) {
        // A second borg repository is made of the mirror: no run may change it meanwhile.
        let _lock = if place.kind == "borg" {
            tokio::select! {
                lock = RunLock::acquire(&self.config.state_dir) => match lock {
                    Ok(lock) => Some(lock),
                    Err(e) => return (None, Err(Failure::of(&e))),
                },
                _ = cancel.cancelled() => return (None, Err(cancelled())),
            }
        } else {
            None
        };
        let prefix = borg.archive_prefix.as_deref().unwrap_or_default();
        let newest = match list_archives(ssh, borg, cancel).await {
            Ok(archives) => archives
                .into_iter()
                .find(|a| of_prefix(&a.name, prefix))
                .and_then(|a| archive_time(&a.name, prefix).map(|t| (a.name, t))),
            Err(e) => return (None, Err(Failure::of(&e))),
        };
        info!(message = events::COPY_STARTED, kind = %place.kind, target = %place.target);
        let now = Utc::now();
        let running = Running {
            started: now,
            moved: now,
            bytes: 0,
        };
        if let Err(e) = self.store.set_copying(&running) {
            tracing::warn!(error = %format!("{e:#}"), "cannot record the copy in BACKUP_STATE_DIR");
        }
        let mut watcher = Watcher::new(
            Subject::Copy,
            self.config.progress_interval,
            self.store.clone(),
        );
        let mut progress = |p| watcher.copy(p);
        let remote_dir = &self.config.remote_dir;
        let copied = copy::copy(ssh, borg, prefix, remote_dir, &mut progress, cancel).await;
        self.store.clear_copying();
        match copied {
            Ok(copied) => (newest, Ok(CopyDone::Copied(copied))),
            Err(e) => (newest, Err(Failure::of(&e))),
        }
    }
}

/// A check of the copy: one that differs is a failure that says how.
async fn check(ssh: &Ssh, borg: &Borg, cancel: &CancellationToken) -> Result<CopyDone, Failure> {
    match copy::check(ssh, borg, cancel).await {
        Ok(checked) if checked.ok => Ok(CopyDone::Checked(checked)),
        Ok(checked) => Err(Failure {
            kind: FailureKind::Other,
            message: match checked.differences {
                Some(n) => format!(
                    "the copy differs from what was copied: {n} file(s) differ, are missing or \
                     are extra"
                ),
                None => "the copy's check failed (see the log)".to_string(),
            },
        }),
        Err(e) => Err(Failure::of(&e)),
    }
}

fn cancelled() -> Failure {
    Failure {
        kind: FailureKind::Cancelled,
        message: "cancelled".into(),
    }
}
