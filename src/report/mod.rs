//! Reports flow out: a run and a verification each produce one value, and the daemon hands it to
//! its outputs (`ops::Outputs`): the log line, the run history that health, status and metrics
//! read, and notifications. No output reaches into a run to find out what happened.

pub mod events;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{error, info};

use crate::engine::freeze::{FreezeError, FreezeFault, Frozen};
use crate::format::{human_bytes, tenths};
use crate::remote::borg::Created;
use crate::remote::copy::{Checked, Copied};
use crate::remote::fault::{Fault, RemoteError};
use crate::remote::guard::CopyPlace;

/// Why something failed, as code branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The remote side: network, disk full, host key, ...
    Remote(Fault),
    /// The freeze: a container that would not freeze or thaw, a pause timeout, ...
    Freeze(FreezeFault),
    /// The sidecar was stopped.
    Cancelled,
    /// Anything else: the Docker API, a volume that vanished, a bug.
    Other,
}

impl FailureKind {
    /// A stable name, for machines (log fields, and later notifications and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Remote(fault) => fault.as_str(),
            FailureKind::Freeze(fault) => fault.as_str(),
            FailureKind::Cancelled => "cancelled",
            FailureKind::Other => "other",
        }
    }
}

/// A failure: its kind, and the message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind.
    pub kind: FailureKind,
    /// The whole cause chain, one line.
    pub message: String,
}

impl Failure {
    /// The failure behind `error`. A kind given explicitly wins, then a container left frozen,
    /// then the remote's fault, then any other freeze fault (anyhow's `downcast_ref` looks through
    /// every context layer to the root).
    pub fn of(error: &anyhow::Error) -> Self {
        let freeze = error.downcast_ref::<FreezeError>().map(|f| f.fault);
        let kind = if let Some(f) = error.downcast_ref::<Failure>() {
            f.kind
        } else if freeze == Some(FreezeFault::Thaw) {
            FailureKind::Freeze(FreezeFault::Thaw)
        } else if let Some(r) = error.downcast_ref::<RemoteError>() {
            FailureKind::Remote(r.fault)
        } else if let Some(f) = freeze {
            FailureKind::Freeze(f)
        } else {
            FailureKind::Other
        };
        Failure {
            kind,
            message: format!("{error:#}"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A volume mirrored completely.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Synced {
    /// Size of the volume's files.
    pub bytes: u64,
    /// Entries in the volume.
    pub files: u64,
    /// What rsync sent, both passes.
    pub sent_bytes: u64,
    /// Both passes.
    pub seconds: f64,
    /// The live pass alone, when there was one.
    pub live_seconds: Option<f64>,
    /// On a scheduled full pass with the change journal: the entries it found different in the
    /// mirror that the journal had not named.
    pub journal_missed: Option<u64>,
}

/// One volume of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeReport {
    /// Volume name.
    pub name: String,
    /// Its group.
    pub group: String,
    /// Mirrored, or why not.
    pub outcome: Result<Synced, Failure>,
}

/// One group of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// Group name.
    pub name: String,
    /// What its freeze did (zero and empty when nothing was frozen).
    pub frozen: Frozen,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    /// A cron schedule.
    Schedule,
    /// `BACKUP_RUN_ON_START`.
    Start,
    /// SIGUSR1.
    Signal,
    /// The web page's button.
    Web,
}

impl fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TriggerKind::Schedule => "schedule",
            TriggerKind::Start => "start",
            TriggerKind::Signal => "signal",
            TriggerKind::Web => "web",
        })
    }
}

/// A request for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    /// What asked.
    pub kind: TriggerKind,
    /// Mirror + snapshot (true) or mirror only.
    pub snapshot: bool,
}

impl Trigger {
    /// Two requests made into one run: the first one's kind, a snapshot if either wants one.
    pub fn merge(self, other: Trigger) -> Trigger {
        Trigger {
            kind: self.kind,
            snapshot: self.snapshot || other.snapshot,
        }
    }
}

/// How a run or a verification ended, as logs, history, metrics and status name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Everything it was asked to do was done.
    Success,
    /// It failed.
    Failed,
}

impl Outcome {
    /// `success` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
        }
    }

    /// `Failed` when `failed`.
    pub fn of(failed: bool) -> Outcome {
        if failed {
            Outcome::Failed
        } else {
            Outcome::Success
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The step a run is at: where it stopped, when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Not begun.
    Start,
    /// Discovery and the plan.
    Discover,
    /// The ssh connection.
    Connect,
    /// The remote's pre command.
    PreCommand,
    /// The mirror passes.
    Mirror,
    /// `borg create` and prune.
    Snapshot,
    /// The remote's post command.
    PostCommand,
}

impl Stage {
    /// Its name in notifications: `discover`, `connect`, `pre command`, `mirror`, `snapshot`,
    /// `post command`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Start => "start",
            Stage::Discover => "discover",
            Stage::Connect => "connect",
            Stage::PreCommand => "pre command",
            Stage::Mirror => "mirror",
            Stage::Snapshot => "snapshot",
            Stage::PostCommand => "post command",
        }
    }
}

/// Everything a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// What started it.
    pub trigger: Trigger,
    /// When it started.
    pub started: DateTime<Utc>,
    /// The volumes the plan selected (all of them, mirrored or not).
    pub planned: Vec<String>,
    /// Each volume the run tried, in plan order.
    pub volumes: Vec<VolumeReport>,
    /// Each group that was mirrored, in plan order.
    pub groups: Vec<GroupReport>,
    /// The archive created, if any.
    pub archive: Option<Created>,
    /// Why the run failed, if it did.
    pub failure: Option<Failure>,
    /// The step the run was at: where it stopped, when it failed.
    pub stage: Stage,
    /// Wall time.
    pub duration: Duration,
}

impl RunReport {
    /// An empty report for a run that starts now.
    pub fn new(trigger: Trigger) -> Self {
        RunReport {
            trigger,
            started: Utc::now(),
            planned: Vec::new(),
            volumes: Vec::new(),
            groups: Vec::new(),
            archive: None,
            failure: None,
            stage: Stage::Start,
            duration: Duration::ZERO,
        }
    }

    /// Volumes mirrored completely, and their total size.
    pub fn mirrored(&self) -> (usize, u64) {
        self.volumes
            .iter()
            .filter_map(|v| v.outcome.as_ref().ok())
            .fold((0, 0), |(n, bytes), s| (n + 1, bytes + s.bytes))
    }

    /// The longest time any group was frozen.
    pub fn longest_freeze(&self) -> Duration {
        self.groups
            .iter()
            .map(|g| g.frozen.duration)
            .max()
            .unwrap_or_default()
    }

    /// The stage that failed, as a notification names it: a freeze fault is the freeze's, whatever
    /// step the run was at.
    pub fn failed_stage(&self) -> Option<&'static str> {
        self.failure.as_ref().map(|f| match f.kind {
            FailureKind::Freeze(_) => "freeze",
            _ => self.stage.as_str(),
        })
    }

    /// Whether every container the run froze runs again.
    pub fn all_thawed(&self) -> bool {
        self.groups.iter().all(|g| g.frozen.thawed)
    }

    /// The one line people read: `2 volume(s), 1.0 MiB, longest freeze 120 ms, archive x, 3.1 s`,
    /// then `: FAILED: cause` when it failed.
    pub fn summary(&self) -> String {
        let (volumes, bytes) = self.mirrored();
        let mut line = format!(
            "{volumes} volume(s), {}, longest freeze {} ms, {}, {} s",
            human_bytes(bytes),
            self.longest_freeze().as_millis(),
            match &self.archive {
                Some(created) => format!("archive {}", created.archive),
                None => "no archive".to_string(),
            },
            tenths(self.duration),
        );
        if let Some(failure) = &self.failure {
            line.push_str(&format!(": FAILED: {failure}"));
        }
        line
    }

    fn log(&self) {
        let (volumes, bytes) = self.mirrored();
        let thawed = self.all_thawed();
        let max_pause_ms = self.longest_freeze().as_millis() as u64;
        let archive = self
            .archive
            .as_ref()
            .map(|c| c.archive.as_str())
            .unwrap_or_default();
        let seconds = tenths(self.duration);
        let summary = self.summary();
        // One set of fields at two levels: tracing fixes an event's level where it is written.
        macro_rules! finished {
            ($level:ident, $outcome:expr) => {
                $level!(
                    message = events::RUN_FINISHED,
                    outcome = $outcome,
                    volumes,
                    bytes,
                    max_pause_ms,
                    archive = %archive,
                    seconds,
                    thawed,
                    trigger = %self.trigger.kind,
                    error = self.failure.as_ref().map(|f| f.message.as_str()),
                    cause = self.failure.as_ref().map(|f| f.kind.as_str()),
                    summary = %summary,
                )
            };
        }
        match self.failure {
            None => finished!(info, Outcome::Success.as_str()),
            Some(_) => finished!(error, Outcome::Failed.as_str()),
        }
    }
}

/// What a verification found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The archive sampled.
    pub archive: Option<String>,
    /// Files compared.
    pub compared: usize,
    /// Paths whose content differs although size and mtime agree.
    pub mismatches: Vec<String>,
}

/// Everything a verification did.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// What it found, or why it could not look.
    pub outcome: Result<Verified, Failure>,
    /// Wall time.
    pub duration: Duration,
}

impl VerifyReport {
    fn log(&self) {
        let seconds = tenths(self.duration);
        match &self.outcome {
            Ok(v) if v.mismatches.is_empty() => info!(
                message = events::VERIFICATION_FINISHED,
                outcome = Outcome::Success.as_str(),
                archive = v.archive.as_deref().unwrap_or(""),
                compared = v.compared,
                seconds,
            ),
            Ok(v) => error!(
                message = events::VERIFICATION_FINISHED,
                outcome = Outcome::Failed.as_str(),
                archive = v.archive.as_deref().unwrap_or(""),
                compared = v.compared,
                mismatches = v.mismatches.len(),
                seconds,
            ),
            Err(e) => error!(
                message = events::VERIFICATION_FINISHED,
                outcome = Outcome::Failed.as_str(),
                error = %e.message,
                cause = e.kind.as_str(),
                seconds,
            ),
        }
    }
}

/// What the second copy did: brought up to date, or checked.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyDone {
    /// A copy made.
    Copied(Copied),
    /// A check that found the copy sound.
    Checked(Checked),
}

/// Everything a copy, or a check of the copy, did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// Where the copy goes (kind and redacted target).
    pub place: CopyPlace,
    /// Whether this was a check of the copy rather than a copy.
    pub check: bool,
    /// For a copy: the newest archive of this host it carries, and when it was made.
    pub newest: Option<(String, DateTime<Utc>)>,
    /// What it did, or why not.
    pub outcome: Result<CopyDone, Failure>,
    /// Wall time.
    pub duration: Duration,
}

impl CopyReport {
    fn log(&self) {
        let (kind, target) = (&self.place.kind, &self.place.target);
        let seconds = tenths(self.duration);
        let event = if self.check {
            events::COPY_CHECKED
        } else {
            events::COPY_FINISHED
        };
        match &self.outcome {
            Ok(CopyDone::Copied(copied)) => info!(
                message = event,
                outcome = Outcome::Success.as_str(),
                kind = %kind,
                target = %target,
                newest_archive = self.newest.as_ref().map(|(n, _)| n.as_str()).unwrap_or(""),
                bytes = copied.bytes,
                sent = %human_bytes(copied.bytes),
                files = copied.files,
                seconds,
            ),
            Ok(CopyDone::Checked(checked)) => info!(
                message = event,
                outcome = Outcome::Success.as_str(),
                kind = %kind,
                target = %target,
                matched = checked.matched.unwrap_or(0),
                hashes = checked.hash.unwrap_or(true),
                seconds,
            ),
            Err(e) => error!(
                message = event,
                outcome = Outcome::Failed.as_str(),
                kind = %kind,
                target = %target,
                error = %e.message,
                cause = e.kind.as_str(),
                seconds,
            ),
        }
    }
}

/// What the daemon produces.
#[derive(Debug, Clone)]
pub enum Report {
    /// A backup run ended.
    Run(RunReport),
    /// A verification ended.
    Verification(VerifyReport),
    /// A copy, or a check of the copy, ended.
    Copy(CopyReport),
}

impl Report {
    /// Logs `run finished`, `verification finished`, `copy finished` or `copy checked`.
    pub fn log(&self) {
        match self {
            Report::Run(run) => run.log(),
            Report::Verification(verification) => verification.log(),
            Report::Copy(copy) => copy.log(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TriggerKind;

    fn synced(bytes: u64) -> Result<Synced, Failure> {
        Ok(Synced {
            bytes,
            files: 1,
            sent_bytes: 0,
            seconds: 0.5,
            live_seconds: None,
            journal_missed: None,
        })
    }

    fn report() -> RunReport {
        let mut report = RunReport::new(Trigger {
            kind: TriggerKind::Signal,
            snapshot: true,
        });
        report.volumes = vec![
            VolumeReport {
                name: "a".into(),
                group: "p".into(),
                outcome: synced(1024 * 1024),
            },
            VolumeReport {
                name: "b".into(),
                group: "p".into(),
                outcome: synced(1024 * 1024),
            },
        ];
        report.groups = vec![
            GroupReport {
                name: "p".into(),
                frozen: Frozen {
                    duration: Duration::from_millis(120),
                    containers: vec!["app".into()],
                    thawed: true,
                },
            },
            GroupReport {
                name: "q".into(),
                frozen: Frozen::default(),
            },
        ];
        report.duration = Duration::from_millis(3140);
        report
    }

    #[test]
    fn summarises_a_run() {
        let mut report = report();
        assert_eq!(
            report.summary(),
            "2 volume(s), 2.0 MiB, longest freeze 120 ms, no archive, 3.1 s"
        );
        report.volumes[1].outcome = Err(Failure {
            kind: FailureKind::Remote(Fault::DiskFull),
            message: "rsync failed: the remote disk is full".into(),
        });
        report.failure = Some(Failure {
            kind: FailureKind::Remote(Fault::DiskFull),
            message: "1 volume(s) failed".into(),
        });
        assert_eq!(
            report.summary(),
            "1 volume(s), 1.0 MiB, longest freeze 120 ms, no archive, 3.1 s: FAILED: 1 volume(s) \
             failed"
        );
        assert!(report.all_thawed());
        report.groups[0].frozen.thawed = false;
        assert!(!report.all_thawed());
    }

    #[test]
    fn failure_kind_comes_from_the_chain() {
        let remote = anyhow::Error::new(crate::remote::fault::classify(
            "rsync",
            Some(11),
            "No space left on device",
        ))
        .context("final pass");
        let failure = Failure::of(&remote);
        assert_eq!(failure.kind, FailureKind::Remote(Fault::DiskFull));
        assert!(failure.message.starts_with("final pass: rsync failed"));
        let freeze = anyhow::Error::new(FreezeError {
            fault: FreezeFault::Timeout,
            message: "abandoned".into(),
        });
        assert_eq!(
            Failure::of(&freeze).kind,
            FailureKind::Freeze(FreezeFault::Timeout)
        );
        // A failure made from others keeps the kind it was given.
        let wrapped = anyhow::Error::new(Failure {
            kind: FailureKind::Cancelled,
            message: "x".into(),
        })
        .context("run");
        assert_eq!(Failure::of(&wrapped).kind, FailureKind::Cancelled);
        assert_eq!(
            Failure::of(&anyhow::anyhow!("docker")).kind,
            FailureKind::Other
        );
        // A thaw that failed after the work failed on the remote: the frozen container wins.
        let both = anyhow::Error::new(crate::remote::fault::classify("rsync", Some(12), ""))
            .context(FreezeError {
                fault: FreezeFault::Thaw,
                message: "and thawing failed".into(),
            });
        assert_eq!(
            Failure::of(&both).kind,
            FailureKind::Freeze(FreezeFault::Thaw)
        );
        assert_eq!(FailureKind::Remote(Fault::Network).as_str(), "network");
    }
}
