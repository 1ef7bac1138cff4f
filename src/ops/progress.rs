//! Progress of long work: an rsync pass of a big volume, or `borg create` of a big mirror. A
//! [`Watcher`] turns what the programs report into `progress` log lines and keeps the
//! run-in-progress file current, which health reads.

use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::{info, warn};

use crate::format::human_bytes;
use crate::ops::history::Store;
use crate::remote::borg::CreateProgress;
use crate::remote::copy::CopyProgress;
use crate::remote::transfer::Progress;
use crate::report::events;

/// What a [`Watcher`] watches.
pub enum Subject {
    /// An rsync pass of this volume.
    Volume(String),
    /// `borg create` of a mirror of this many bytes.
    Snapshot { total: u64 },
    /// The remote's second copy (its progress goes to the copy-in-progress file).
    Copy,
}

/// Turns long work's progress into a `progress` line at most once per `BACKUP_PROGRESS_INTERVAL`
/// (the first after one interval: short work says nothing), and into the run-in-progress file
/// that health reads, so a days-long first mirror never looks stale.
pub struct Watcher {
    subject: Subject,
    interval: Duration,
    store: Store,
    started: Instant,
    logged: Option<Instant>,
    recorded: Option<Instant>,
}

impl Watcher {
    /// How often the run-in-progress file is updated, whatever the log interval.
    const RECORD_EVERY: Duration = Duration::from_secs(10);

    pub fn new(subject: Subject, interval: Duration, store: Store) -> Self {
        Watcher {
            subject,
            interval,
            store,
            started: Instant::now(),
            logged: None,
            recorded: None,
        }
    }

    /// An rsync pass's progress, with rsync's own rate and estimate.
    pub fn pass(&mut self, progress: Progress) {
        if self.due_to_log()
            && let Subject::Volume(volume) = &self.subject
        {
            info!(
                message = events::PROGRESS,
                volume = %volume,
                bytes = progress.bytes,
                percent = progress.percent,
                rate = %progress.rate,
                eta = %progress.eta,
            );
        }
        self.record(progress.bytes);
    }

    /// `borg create`'s progress: borg knows no total, the mirror's size is one.
    pub fn snapshot(&mut self, progress: CreateProgress) {
        if self.due_to_log()
            && let Subject::Snapshot { total } = self.subject
        {
            let seconds = self.started.elapsed().as_secs_f64().max(0.001);
            let rate = progress.bytes as f64 / seconds;
            let left = total.saturating_sub(progress.bytes) as f64;
            let eta = if rate > 0.0 {
                clock(Duration::from_secs_f64(left / rate))
            } else {
                "-".to_string()
            };
            // The mirror may hold more than this run's volumes: never say done before it is.
            let percent = (progress.bytes * 100)
                .checked_div(total)
                .unwrap_or(0)
                .min(99);
            info!(
                message = events::PROGRESS,
                stage = "snapshot",
                bytes = progress.bytes,
                files = progress.files,
                percent,
                rate = %format!("{}/s", human_bytes(rate as u64)),
                eta = %eta,
            );
        }
        self.record(progress.bytes);
    }

    /// The second copy's progress, with what the guard knows of the total and the rate.
    pub fn copy(&mut self, progress: CopyProgress) {
        if self.due_to_log() {
            let seconds = self.started.elapsed().as_secs_f64().max(0.001);
            let rate = progress.speed.unwrap_or(progress.bytes as f64 / seconds);
            info!(
                message = events::PROGRESS,
                stage = "copy",
                bytes = progress.bytes,
                total = progress.total.unwrap_or(0),
                percent = progress
                    .total
                    .and_then(|t| (progress.bytes * 100).checked_div(t))
                    .unwrap_or(0)
                    .min(100),
                rate = %format!("{}/s", human_bytes(rate as u64)),
                eta = %progress
                    .eta
                    .map_or_else(|| "-".to_string(), |s| clock(Duration::from_secs(s))),
            );
        }
        self.record(progress.bytes);
    }

    fn due_to_log(&mut self) -> bool {
        let since = self.logged.unwrap_or(self.started);
        if since.elapsed() < self.interval {
            return false;
        }
        self.logged = Some(Instant::now());
        true
    }

    fn record(&mut self, bytes: u64) {
        let copy = matches!(self.subject, Subject::Copy);
        let current = if copy {
            self.store.copying()
        } else {
            self.store.running()
        };
        if self
            .recorded
            .is_none_or(|t| t.elapsed() >= Self::RECORD_EVERY)
            && let Some(mut running) = current
        {
            self.recorded = Some(Instant::now());
            running.moved = Utc::now();
            running.bytes = bytes;
            let saved = if copy {
                self.store.set_copying(&running)
            } else {
                self.store.set_running(&running)
            };
            if let Err(e) = saved {
                warn!(error = %format!("{e:#}"), "cannot record the run's progress in BACKUP_STATE_DIR");
            }
        }
    }
}

/// `H:MM:SS`, as rsync prints its estimate.
fn clock(duration: Duration) -> String {
    let s = duration.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_like_rsync() {
        assert_eq!(clock(Duration::from_secs(83)), "0:01:23");
        assert_eq!(clock(Duration::from_secs(3 * 3600 + 5)), "3:00:05");
    }

    #[test]
    fn logs_at_most_once_per_interval_and_records_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let started = Utc::now();
        store
            .set_running(&crate::ops::history::Running {
                started,
                moved: started,
                bytes: 0,
            })
            .unwrap();
        let mut watcher = Watcher::new(
            Subject::Snapshot { total: 100 },
            Duration::ZERO,
            store.clone(),
        );
        assert!(watcher.due_to_log());
        watcher.snapshot(CreateProgress {
            bytes: 40,
            files: 1,
        });
        assert_eq!(store.running().unwrap().bytes, 40);
        let mut quiet = Watcher::new(
            Subject::Volume("v".into()),
            Duration::from_secs(3600),
            store,
        );
        // Short work says nothing.
        assert!(!quiet.due_to_log());
    }
}
