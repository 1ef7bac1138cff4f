//! Notifications: telling people how backups go, over the channels of `BACKUP_NOTIFY_URLS`.
//!
//! - the channels: the URLs, parsed once at start with the configuration
//!   ([`crate::config::channel`]), shown only redacted.
//! - [`render`]: pure: a channel and a [`Message`] in, the request (or mail) out.
//! - [`deliver`]: the [`Notifier`]: sends to every channel at once, each with a timeout and a few
//!   tries; trouble is a warning in the log and never fails or delays a run.
//!
//! Who hears what. Monitors (healthchecks, Uptime Kuma) hear the end of every run, and
//! healthchecks its start too: a monitor told only of failures would call a healthy backup down
//! once its period passed. Every other channel hears failures and the first success after one
//! (`recovered`) by default, or every run with `BACKUP_NOTIFY_ON=always`. A test message goes to
//! all.

pub mod deliver;
pub mod render;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::config::channel::NotifyOn;
pub use deliver::Notifier;

/// What a notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The run failed.
    Failed,
    /// The run succeeded after the one before it had failed.
    Recovered,
    /// The run succeeded, as the one before it.
    Success,
    /// A test message (`notify-test`).
    Test,
}

impl Outcome {
    /// The outcome of a run, given whether it failed and whether the run before it did. The
    /// daemon keeps the latter; after a restart it knows none, and a success is then `success`.
    pub fn of_run(failed: bool, previous_failed: bool) -> Outcome {
        match (failed, previous_failed) {
            (true, _) => Outcome::Failed,
            (false, true) => Outcome::Recovered,
            (false, false) => Outcome::Success,
        }
    }

    /// A stable name, for machines and for the text.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Failed => "failed",
            Outcome::Recovered => "recovered",
            Outcome::Success => "success",
            Outcome::Test => "test",
        }
    }

    /// The usual title of a backup run's message: `backup failed on nas`.
    pub fn title(self, host: &str) -> String {
        match self {
            Outcome::Failed => format!("backup failed on {host}"),
            Outcome::Recovered => format!("backup recovered on {host}"),
            Outcome::Success => format!("backup succeeded on {host}"),
            Outcome::Test => format!("test notification from backup-sidecar on {host}"),
        }
    }
}

impl NotifyOn {
    /// Whether a channel that is not a monitor hears of `outcome`.
    pub fn tells(self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Failed | Outcome::Recovered | Outcome::Test => true,
            Outcome::Success => self == NotifyOn::Always,
        }
    }
}

/// What a notification says: built by the daemon from a run's report, read by every channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// What happened.
    pub kind: Outcome,
    /// The Docker engine's host name.
    pub host: String,
    /// A short title (see [`Outcome::title`]).
    pub title: String,
    /// One line: the run's summary.
    pub summary: String,
    /// The stage that failed (`discover`, `freeze`, `transfer`, `snapshot`, ...), on failure.
    pub stage: Option<String>,
    /// Why, as `report::FailureKind::as_str()` names it, on failure.
    pub cause: Option<String>,
    /// The volumes the run concerned; on failure, the ones affected.
    pub volumes: Vec<String>,
    /// Whether every container the run froze runs again.
    pub thawed: bool,
    /// The run's wall time.
    pub duration: Duration,
    /// When the last successful run ended, if one is known.
    pub last_success: Option<DateTime<Utc>>,
    /// When the next run is due, if one is scheduled.
    pub next_run: Option<DateTime<Utc>>,
    /// The run's last log lines, oldest first; each channel keeps as many as fit, from the end.
    pub log_tail: Vec<String>,
    /// The run's identifier, from [`new_run_id`]: pairs healthchecks' start and end pings.
    pub run_id: String,
}

impl Message {
    /// The message `notify-test` sends.
    pub fn test(host: &str) -> Message {
        Message {
            kind: Outcome::Test,
            host: host.to_string(),
            title: Outcome::Test.title(host),
            summary: format!(
                "Test notification from backup-sidecar on {host}: this channel works."
            ),
            stage: None,
            cause: None,
            volumes: Vec::new(),
            thawed: true,
            duration: Duration::ZERO,
            last_success: None,
            next_run: None,
            log_tail: Vec::new(),
            run_id: new_run_id(),
        }
    }
}

/// A fresh run identifier: a random (version 4) UUID, the form healthchecks takes as `rid`.
pub fn new_run_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No entropy source is close to impossible on Linux; the clock still makes ids that
        // differ from run to run, which is all a run id needs.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_of_a_run() {
        assert_eq!(Outcome::of_run(true, false), Outcome::Failed);
        assert_eq!(Outcome::of_run(true, true), Outcome::Failed);
        assert_eq!(Outcome::of_run(false, true), Outcome::Recovered);
        assert_eq!(Outcome::of_run(false, false), Outcome::Success);
        assert_eq!(Outcome::Recovered.title("nas"), "backup recovered on nas");
    }

    #[test]
    fn notify_on_filters_successes_only() {
        for outcome in [Outcome::Failed, Outcome::Recovered, Outcome::Test] {
            assert!(NotifyOn::Failure.tells(outcome));
            assert!(NotifyOn::Always.tells(outcome));
        }
        assert!(!NotifyOn::Failure.tells(Outcome::Success));
        assert!(NotifyOn::Always.tells(Outcome::Success));
    }

    #[test]
    fn run_ids_are_uuids() {
        let a = new_run_id();
        let b = new_run_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn test_message() {
        let m = Message::test("nas");
        assert_eq!(m.kind, Outcome::Test);
        assert_eq!(m.title, "test notification from backup-sidecar on nas");
    }
}
