//! Run history in `BACKUP_STATE_DIR`: what the last runs, each volume, each group's freeze, the last
//! archive and the last verification did. Written atomically (a temporary file, fsync, rename) after
//! every report, so `status`, `health` and the metrics survive a restart and never read half a file.
//!
//! Two small files beside it change more often: `heartbeat` (the daemon's loop is alive) and
//! `running.json` (a run is in progress, and when it last moved bytes).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::report::{CopyDone, CopyReport, Outcome, Report, RunReport, VerifyReport};

/// How many runs the history keeps.
const KEPT_RUNS: usize = 50;

/// One finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: DateTime<Utc>,
    /// `schedule`, `start` or `signal`.
    pub trigger: String,
    /// Whether it was to take a snapshot.
    pub snapshot: bool,
    /// `success` or `failed`.
    pub outcome: Outcome,
    /// The failure's kind, when it failed.
    pub cause: Option<String>,
    /// The failure's message, when it failed.
    pub error: Option<String>,
    /// Volumes mirrored completely.
    pub volumes: usize,
    /// Their size.
    pub bytes: u64,
    /// The longest freeze.
    pub max_pause_ms: u64,
    /// The archive it created.
    pub archive: Option<String>,
    /// Every container it froze runs again.
    pub thawed: bool,
    /// Each frozen group's freeze, in milliseconds.
    #[serde(default)]
    pub freezes: BTreeMap<String, u64>,
    /// What rsync sent over the link, all volumes.
    #[serde(default)]
    pub sent_bytes: u64,
    /// Its last log lines.
    #[serde(default)]
    pub log: Vec<String>,
}

/// One volume, across runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// Its group in the last run that tried it.
    #[serde(default)]
    pub group: String,
    /// The last run that tried it.
    pub last_attempt: Option<DateTime<Utc>>,
    /// The end of the last run that mirrored it completely.
    pub last_success: Option<DateTime<Utc>>,
    /// Size of its files at the last success.
    pub bytes: u64,
    /// Entries at the last success.
    pub files: u64,
    /// Both passes at the last success.
    pub seconds: f64,
    /// The live pass at the last success (none when it had one pass).
    pub live_seconds: Option<f64>,
    /// Why the last attempt failed, when it did.
    pub last_error: Option<String>,
    /// Entries the scheduled full passes found different that the change journal had not
    /// named, all runs.
    #[serde(default)]
    pub journal_missed: u64,
}

/// One group's last freeze.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// When the run that froze it started.
    pub at: Option<DateTime<Utc>>,
    /// How long it was frozen.
    pub pause_ms: u64,
    /// Its frozen containers.
    pub containers: Vec<String>,
}

/// The last archive created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    /// Archive name.
    pub name: String,
    /// When the run that created it ended.
    pub time: DateTime<Utc>,
    /// Size of the archived files.
    pub original_bytes: u64,
    /// What it added to the repository.
    pub deduplicated_bytes: u64,
    /// How long `borg create` took.
    pub seconds: f64,
}

/// The last verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationRecord {
    /// When it ended.
    pub at: DateTime<Utc>,
    /// `success` or `failed`.
    pub outcome: Outcome,
    /// The archive it sampled.
    pub archive: Option<String>,
    /// Files compared.
    pub compared: usize,
    /// Files whose content differed.
    pub mismatches: usize,
    /// Why it could not look, when it could not.
    pub error: Option<String>,
}

/// The second copy, across copies and checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CopyRecord {
    /// `rclone` or `borg`, as the remote's guard last said.
    pub kind: String,
    /// Where to, redacted, as the guard last said.
    pub target: String,
    /// When a copy (or a check) was first tried: before any success, staleness is counted from
    /// here.
    pub first_attempt: Option<DateTime<Utc>>,
    /// When the last copy ended.
    pub last_attempt: Option<DateTime<Utc>>,
    /// When the last successful copy ended.
    pub last_success: Option<DateTime<Utc>>,
    /// The newest archive of this host the copy holds.
    pub newest_archive: Option<String>,
    /// When that archive was made.
    pub newest_archive_time: Option<DateTime<Utc>>,
    /// What the last successful copy sent.
    pub bytes: u64,
    /// How long the last successful copy took.
    pub seconds: f64,
    /// Bytes sent by every copy.
    pub bytes_total: u64,
    /// Copies that failed.
    pub failures_total: u64,
    /// Why the last copy failed, when it did.
    pub last_error: Option<String>,
    /// When the copy was last checked.
    pub last_check: Option<DateTime<Utc>>,
    /// Why the last check failed (the copy differs, or it could not look), when it did.
    pub last_check_error: Option<String>,
}

impl CopyRecord {
    /// Whether the last copy failed.
    pub fn failing(&self) -> bool {
        self.last_error.is_some()
    }
}

/// Everything kept between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// When this state directory first saw the daemon start: before the first run, staleness is
    /// counted from here.
    pub since: Option<DateTime<Utc>>,
    /// The last runs, oldest first.
    pub runs: Vec<RunRecord>,
    /// Runs by outcome, since the state directory was made.
    pub runs_total: BTreeMap<String, u64>,
    /// The end of the last run whose mirror completed.
    pub last_success: Option<DateTime<Utc>>,
    /// Each volume ever tried.
    pub volumes: BTreeMap<String, VolumeRecord>,
    /// Each group ever frozen.
    pub groups: BTreeMap<String, GroupRecord>,
    /// The last archive.
    pub last_archive: Option<ArchiveRecord>,
    /// The last verification.
    pub last_verification: Option<VerificationRecord>,
    /// The second copy, once the remote has made or tried one.
    #[serde(default)]
    pub copy: Option<CopyRecord>,
}

impl History {
    /// Adds a report.
    pub fn record(&mut self, report: &Report, now: DateTime<Utc>) {
        match report {
            Report::Run(run) => self.record_run(run, now),
            Report::Verification(v) => self.record_verification(v, now),
            Report::Copy(c) => self.record_copy(c, now),
        }
    }

    fn record_copy(&mut self, c: &CopyReport, now: DateTime<Utc>) {
        let record = self.copy.get_or_insert_with(CopyRecord::default);
        record.kind = c.place.kind.clone();
        record.target = c.place.target.clone();
        // Staleness is counted from the first time the remote's copy was heard of.
        record.first_attempt.get_or_insert(now);
        if c.check {
            record.last_check = Some(now);
            record.last_check_error = c.outcome.as_ref().err().map(|f| f.message.clone());
            return;
        }
        record.last_attempt = Some(now);
        match &c.outcome {
            Ok(done) => {
                let bytes = match done {
                    CopyDone::Copied(copied) => copied.bytes,
                    CopyDone::Checked(_) => 0,
                };
                record.last_success = Some(now);
                record.bytes = bytes;
                record.seconds = c.duration.as_secs_f64();
                record.bytes_total += bytes;
                record.last_error = None;
                if let Some((name, time)) = &c.newest {
                    record.newest_archive = Some(name.clone());
                    record.newest_archive_time = Some(*time);
                }
            }
            Err(failure) => {
                record.failures_total += 1;
                record.last_error = Some(failure.message.clone());
            }
        }
    }

    fn record_run(&mut self, run: &RunReport, now: DateTime<Utc>) {
        let (volumes, bytes) = run.mirrored();
        let outcome = Outcome::of(run.failure.is_some());
        self.runs.push(RunRecord {
            started: run.started,
            finished: now,
            trigger: run.trigger.kind.to_string(),
            snapshot: run.trigger.snapshot,
            outcome,
            cause: run.failure.as_ref().map(|f| f.kind.as_str().to_string()),
            error: run.failure.as_ref().map(|f| f.message.clone()),
            volumes,
            bytes,
            max_pause_ms: run.longest_freeze().as_millis() as u64,
            archive: run.archive.as_ref().map(|a| a.archive.clone()),
            thawed: run.all_thawed(),
            freezes: run
                .groups
                .iter()
                .filter(|g| !g.frozen.containers.is_empty())
                .map(|g| (g.name.clone(), g.frozen.duration.as_millis() as u64))
                .collect(),
            sent_bytes: run
                .volumes
                .iter()
                .filter_map(|v| v.outcome.as_ref().ok())
                .map(|s| s.sent_bytes)
                .sum(),
            log: Vec::new(),
        });
        if self.runs.len() > KEPT_RUNS {
            self.runs.drain(..self.runs.len() - KEPT_RUNS);
        }
        *self.runs_total.entry(outcome.as_str().into()).or_default() += 1;
        if run.failure.is_none() {
            self.last_success = Some(now);
        }
        for volume in &run.volumes {
            let record = self.volumes.entry(volume.name.clone()).or_default();
            record.group = volume.group.clone();
            record.last_attempt = Some(run.started);
            match &volume.outcome {
                Ok(synced) => {
                    record.last_success = Some(now);
                    record.bytes = synced.bytes;
                    record.files = synced.files;
                    record.seconds = synced.seconds;
                    record.live_seconds = synced.live_seconds;
                    record.journal_missed += synced.journal_missed.unwrap_or(0);
                    record.last_error = None;
                }
                Err(failure) => record.last_error = Some(failure.message.clone()),
            }
        }
        for group in &run.groups {
            if group.frozen.containers.is_empty() {
                continue;
            }
            self.groups.insert(
                group.name.clone(),
                GroupRecord {
                    at: Some(run.started),
                    pause_ms: group.frozen.duration.as_millis() as u64,
                    containers: group.frozen.containers.clone(),
                },
            );
        }
        if let Some(created) = &run.archive {
            self.last_archive = Some(ArchiveRecord {
                name: created.archive.clone(),
                time: now,
                original_bytes: created.original_bytes,
                deduplicated_bytes: created.deduplicated_bytes,
                seconds: created.seconds,
            });
        }
    }

    fn record_verification(&mut self, v: &VerifyReport, now: DateTime<Utc>) {
        let record = match &v.outcome {
            Ok(found) => VerificationRecord {
                at: now,
                outcome: Outcome::of(!found.mismatches.is_empty()),
                archive: found.archive.clone(),
                compared: found.compared,
                mismatches: found.mismatches.len(),
                error: None,
            },
            Err(failure) => VerificationRecord {
                at: now,
                outcome: Outcome::Failed,
                archive: None,
                compared: 0,
                mismatches: 0,
                error: Some(failure.message.clone()),
            },
        };
        self.last_verification = Some(record);
    }

    /// The last run, if any.
    pub fn last_run(&self) -> Option<&RunRecord> {
        self.runs.last()
    }
}

/// A run in progress, as `running.json` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Running {
    /// When it started.
    pub started: DateTime<Utc>,
    /// The last time it moved bytes (or started).
    pub moved: DateTime<Utc>,
    /// Bytes moved so far, all volumes.
    pub bytes: u64,
}

/// The history's files in the state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Store {
            dir: state_dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The history, or an empty one when there is none yet (or it cannot be read: a history is
    /// never worth failing a backup for).
    pub fn load(&self) -> History {
        read_json(&self.path("history.json")).unwrap_or_default()
    }

    /// Writes the history atomically.
    pub fn save(&self, history: &History) -> Result<()> {
        write_atomically(
            &self.path("history.json"),
            &serde_json::to_vec_pretty(history)?,
        )
    }

    /// Says the daemon's loop is alive now.
    pub fn beat(&self, now: DateTime<Utc>) -> Result<()> {
        write_atomically(&self.path("heartbeat"), now.to_rfc3339().as_bytes())
    }

    /// When the daemon's loop last said it was alive.
    pub fn heartbeat(&self) -> Option<DateTime<Utc>> {
        let text = std::fs::read_to_string(self.path("heartbeat")).ok()?;
        DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The run in progress, if any.
    pub fn running(&self) -> Option<Running> {
        read_json(&self.path("running.json"))
    }

    /// The copy in progress, if any (`copying.json`: health counts a copy that moves bytes as
    /// alive).
    pub fn copying(&self) -> Option<Running> {
        read_json(&self.path("copying.json"))
    }

    /// Records the copy in progress.
    pub fn set_copying(&self, copying: &Running) -> Result<()> {
        write_atomically(&self.path("copying.json"), &serde_json::to_vec(copying)?)
    }

    /// No copy is in progress.
    pub fn clear_copying(&self) {
        let _ = std::fs::remove_file(self.path("copying.json"));
    }

    /// Records the run in progress.
    pub fn set_running(&self, running: &Running) -> Result<()> {
        write_atomically(&self.path("running.json"), &serde_json::to_vec(running)?)
    }

    /// No run is in progress.
    pub fn clear_running(&self) {
        let _ = std::fs::remove_file(self.path("running.json"));
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes `path` so that a reader sees the old or the new content, never a mix, even across a
/// crash: a temporary file in the same directory, fsynced, renamed over it, the directory fsynced.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::freeze::Frozen;
    use crate::remote::borg::Created;
    use crate::remote::fault::Fault;
    use crate::report::{Failure, FailureKind, GroupReport, Synced, Verified, VolumeReport};
    use crate::report::{Trigger, TriggerKind};
    use chrono::TimeZone;
    use std::time::Duration;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, hour, 0, 0).unwrap()
    }

    fn run(failed: bool) -> RunReport {
        let mut report = RunReport::new(Trigger {
            kind: TriggerKind::Schedule,
            snapshot: true,
        });
        report.started = at(3);
        report.volumes = vec![
            VolumeReport {
                name: "app".into(),
                group: "nc".into(),
                outcome: Ok(Synced {
                    bytes: 100,
                    files: 3,
                    sent_bytes: 10,
                    seconds: 1.5,
                    live_seconds: Some(1.0),
                    journal_missed: None,
                }),
            },
            VolumeReport {
                name: "db".into(),
                group: "nc".into(),
                outcome: if failed {
                    Err(Failure {
                        kind: FailureKind::Remote(Fault::DiskFull),
                        message: "disk full".into(),
                    })
                } else {
                    Ok(Synced {
                        bytes: 50,
                        files: 1,
                        sent_bytes: 0,
                        seconds: 0.2,
                        live_seconds: None,
                        journal_missed: None,
                    })
                },
            },
        ];
        report.groups = vec![GroupReport {
            name: "nc".into(),
            frozen: Frozen {
                duration: Duration::from_millis(120),
                containers: vec!["nc-app".into()],
                thawed: true,
            },
        }];
        if failed {
            report.failure = Some(Failure {
                kind: FailureKind::Remote(Fault::DiskFull),
                message: "1 volume(s) failed".into(),
            });
        } else {
            report.archive = Some(Created {
                archive: "nas-2026-11-29T03:00:00".into(),
                seconds: 2.0,
                borg_seconds: 1.5,
                original_bytes: 150,
                deduplicated_bytes: 20,
            });
        }
        report
    }

    #[test]
    fn records_runs_volumes_groups_and_archives() {
        let mut history = History::default();
        history.record(&Report::Run(run(false)), at(4));
        history.record(&Report::Run(run(true)), at(5));
        assert_eq!(history.runs.len(), 2);
        assert_eq!(history.runs_total["success"], 1);
        assert_eq!(history.runs_total["failed"], 1);
        // The failed run does not move the last success.
        assert_eq!(history.last_success, Some(at(4)));
        let last = history.last_run().unwrap();
        assert_eq!(last.outcome, Outcome::Failed);
        assert_eq!(last.cause.as_deref(), Some("disk_full"));
        assert_eq!(history.volumes["app"].last_success, Some(at(5)));
        assert_eq!(history.volumes["db"].last_success, Some(at(4)));
        assert_eq!(
            history.volumes["db"].last_error.as_deref(),
            Some("disk full")
        );
        assert_eq!(history.volumes["db"].bytes, 50);
        assert_eq!(history.groups["nc"].pause_ms, 120);
        let archive = history.last_archive.as_ref().unwrap();
        assert_eq!(archive.name, "nas-2026-11-29T03:00:00");
        assert_eq!(archive.time, at(4));
    }

    #[test]
    fn keeps_the_last_runs_only() {
        let mut history = History::default();
        for _ in 0..KEPT_RUNS + 5 {
            history.record(&Report::Run(run(false)), at(4));
        }
        assert_eq!(history.runs.len(), KEPT_RUNS);
        assert_eq!(history.runs_total["success"], (KEPT_RUNS + 5) as u64);
    }

    #[test]
    fn records_verifications() {
        let mut history = History::default();
        let report = VerifyReport {
            outcome: Ok(Verified {
                archive: Some("a".into()),
                compared: 20,
                mismatches: vec!["x".into()],
            }),
            duration: Duration::from_secs(1),
        };
        history.record(&Report::Verification(report), at(6));
        let v = history.last_verification.unwrap();
        assert_eq!(v.outcome, Outcome::Failed);
        assert_eq!((v.compared, v.mismatches), (20, 1));
    }

    #[test]
    fn store_round_trips_and_survives_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.load(), History::default());
        let mut history = History::default();
        history.record(&Report::Run(run(false)), at(4));
        store.save(&history).unwrap();
        assert_eq!(Store::new(dir.path()).load(), history);
        std::fs::write(dir.path().join("history.json"), "{not json").unwrap();
        assert_eq!(store.load(), History::default());

        assert_eq!(store.heartbeat(), None);
        store.beat(at(7)).unwrap();
        assert_eq!(store.heartbeat(), Some(at(7)));

        assert_eq!(store.running(), None);
        let running = Running {
            started: at(3),
            moved: at(3),
            bytes: 0,
        };
        store.set_running(&running).unwrap();
        assert_eq!(store.running(), Some(running));
        store.clear_running();
        assert_eq!(store.running(), None);
        // Nothing but the files themselves is left behind (no temporary files).
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["heartbeat", "history.json"]);
    }
}
