//! Health that means "backups are current": `backup-sidecar health`, which the image's
//! `HEALTHCHECK` runs. Unhealthy when the last fully successful mirror is older than
//! `BACKUP_MAX_AGE`, or when the daemon's loop has stopped beating. Tools such as autoheal restart
//! unhealthy containers, so two things never count as stale: a run in progress that keeps moving
//! bytes (a first mirror may take days), and a sidecar that has not been up for `BACKUP_MAX_AGE`
//! yet (its first scheduled run may still be ahead).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ops::history::{History, Running};

/// How often the daemon beats.
pub const BEAT_INTERVAL: Duration = Duration::from_secs(30);
/// A heartbeat older than this means the daemon's loop has stopped.
const BEAT_STALE: Duration = Duration::from_secs(5 * 60);
/// A run in progress whose bytes have not moved for this long no longer counts as alive.
const STALLED: Duration = Duration::from_secs(30 * 60);

/// What the health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Backups are current; why, for people.
    Healthy(String),
    /// Backups are not current, or the daemon is stuck; why, for people.
    Unhealthy(String),
}

fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or_default()
}

fn ago(duration: Duration) -> String {
    let rounded = Duration::from_secs(duration.as_secs());
    format!("{} ago", humantime::format_duration(rounded))
}

/// The verdict at `now`, from the state directory's files.
pub fn verdict(
    now: DateTime<Utc>,
    history: &History,
    heartbeat: Option<DateTime<Utc>>,
    running: Option<&Running>,
    max_age: Duration,
) -> Verdict {
    match heartbeat {
        None => return Verdict::Unhealthy("the daemon has not started its loop".into()),
        Some(beat) if age(now, beat) > BEAT_STALE => {
            return Verdict::Unhealthy(format!(
                "the daemon's loop stopped: last heartbeat {}",
                ago(age(now, beat))
            ));
        }
        Some(_) => {}
    }
    let limit = humantime::format_duration(max_age);
    match history.last_success {
        Some(success) if age(now, success) <= max_age => {
            return Verdict::Healthy(format!("last successful mirror {}", ago(age(now, success))));
        }
        None => {
            // Not stale before the first scheduled run could have happened and gone wrong.
            if let Some(since) = history.since
                && age(now, since) <= max_age
            {
                return Verdict::Healthy(format!(
                    "no run has completed yet; up since {}",
                    ago(age(now, since))
                ));
            }
        }
        Some(_) => {}
    }
    if let Some(run) = running
        && age(now, run.moved) <= STALLED
    {
        return Verdict::Healthy(format!(
            "a run in progress since {} is moving bytes",
            ago(age(now, run.started))
        ));
    }
    Verdict::Unhealthy(match history.last_success {
        Some(success) => format!(
            "the last successful mirror was {}, longer than BACKUP_MAX_AGE ({limit})",
            ago(age(now, success))
        ),
        None => format!("no successful mirror within BACKUP_MAX_AGE ({limit}) of the start"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn history(since: Option<DateTime<Utc>>, success: Option<DateTime<Utc>>) -> History {
        History {
            since,
            last_success: success,
            ..History::default()
        }
    }

    fn healthy(v: &Verdict) -> bool {
        matches!(v, Verdict::Healthy(_))
    }

    #[test]
    fn a_recent_success_is_healthy_an_old_one_is_not() {
        let h = history(Some(at(1, 0)), Some(at(10, 3)));
        let now = at(12, 3);
        assert!(healthy(&verdict(now, &h, Some(now), None, 4 * DAY)));
        let late = at(15, 3);
        let v = verdict(late, &h, Some(late), None, 4 * DAY);
        assert_eq!(
            v,
            Verdict::Unhealthy(
                "the last successful mirror was 5days ago, longer than BACKUP_MAX_AGE (4days)"
                    .into()
            )
        );
        // Healthy again after the next success.
        let h = history(Some(at(1, 0)), Some(at(15, 4)));
        assert!(healthy(&verdict(
            at(15, 5),
            &h,
            Some(at(15, 5)),
            None,
            4 * DAY
        )));
    }

    #[test]
    fn before_the_first_run_is_not_stale() {
        let h = history(Some(at(10, 0)), None);
        assert!(healthy(&verdict(
            at(12, 0),
            &h,
            Some(at(12, 0)),
            None,
            4 * DAY
        )));
        let v = verdict(at(20, 0), &h, Some(at(20, 0)), None, 4 * DAY);
        assert!(!healthy(&v), "{v:?}");
    }

    #[test]
    fn a_long_run_that_moves_bytes_is_healthy_one_that_stalls_is_not() {
        let h = history(Some(at(1, 0)), None);
        let now = at(20, 0);
        let moving = Running {
            started: at(15, 0),
            moved: now - chrono::Duration::minutes(1),
            bytes: 1 << 40,
        };
        assert!(healthy(&verdict(
            now,
            &h,
            Some(now),
            Some(&moving),
            4 * DAY
        )));
        let stalled = Running {
            moved: now - chrono::Duration::hours(2),
            ..moving
        };
        assert!(!healthy(&verdict(
            now,
            &h,
            Some(now),
            Some(&stalled),
            4 * DAY
        )));
    }

    #[test]
    fn a_stopped_loop_is_unhealthy_whatever_the_history() {
        let h = history(Some(at(1, 0)), Some(at(12, 0)));
        let now = at(12, 1);
        let v = verdict(
            now,
            &h,
            Some(now - chrono::Duration::minutes(10)),
            None,
            4 * DAY,
        );
        assert_eq!(
            v,
            Verdict::Unhealthy("the daemon's loop stopped: last heartbeat 10m ago".into())
        );
        assert!(!healthy(&verdict(now, &h, None, None, 4 * DAY)));
    }
}
