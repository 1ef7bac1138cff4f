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

/// The second copy's part of the verdict: `Err` (unhealthy, why) when the newest archive in the
/// copy is older than `BACKUP_COPY_MAX_AGE`, or no copy has succeeded within it of the first try;
/// a copy in progress that moves bytes is not stale. `Ok` with what to add to a healthy verdict;
/// `Ok(None)` when the remote has never made or tried a copy.
pub fn copy_verdict(
    now: DateTime<Utc>,
    history: &History,
    copying: Option<&Running>,
    max_age: Duration,
) -> Result<Option<String>, String> {
    let Some(copy) = &history.copy else {
        return Ok(None);
    };
    let limit = humantime::format_duration(max_age);
    // The newest archive in the copy; a copy that succeeded while this host had no archive yet
    // counts from its success.
    let fresh = copy
        .newest_archive_time
        .or(copy.last_success)
        .or(copy.first_attempt);
    if let Some(time) = fresh
        && age(now, time) <= max_age
    {
        return Ok(Some(match &copy.newest_archive {
            Some(name) => format!(
                "the copy's newest archive {name} is from {}",
                ago(age(now, time))
            ),
            None => "no copy has completed yet".to_string(),
        }));
    }
    if let Some(c) = copying
        && age(now, c.moved) <= STALLED
    {
        return Ok(Some(format!(
            "a copy in progress since {} is moving bytes",
            ago(age(now, c.started))
        )));
    }
    let why = copy
        .last_error
        .as_ref()
        .map(|e| format!("; the last copy failed: {e}"))
        .unwrap_or_default();
    Err(match (&copy.newest_archive, copy.newest_archive_time) {
        (Some(name), Some(time)) => format!(
            "the copy's newest archive {name} is from {}, older than BACKUP_COPY_MAX_AGE \
             ({limit}){why}",
            ago(age(now, time))
        ),
        _ => format!("no copy has succeeded within BACKUP_COPY_MAX_AGE ({limit}){why}"),
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

    #[test]
    fn a_stale_copy_is_unhealthy_with_the_reason() {
        use crate::ops::history::CopyRecord;
        let mut h = history(Some(at(1, 0)), Some(at(10, 3)));
        assert_eq!(copy_verdict(at(10, 4), &h, None, DAY), Ok(None));
        h.copy = Some(CopyRecord {
            first_attempt: Some(at(10, 3)),
            ..CopyRecord::default()
        });
        // Trying, not late yet.
        assert!(copy_verdict(at(10, 4), &h, None, DAY).is_ok());
        // A copy that succeeded before this host had an archive counts from its success.
        let copy = h.copy.as_mut().unwrap();
        copy.last_success = Some(at(11, 3));
        assert!(copy_verdict(at(12, 0), &h, None, DAY).is_ok());
        h.copy.as_mut().unwrap().last_success = None;
        let copy = h.copy.as_mut().unwrap();
        copy.last_error = Some("rclone: connection refused".into());
        let v = copy_verdict(at(12, 4), &h, None, DAY).unwrap_err();
        assert!(
            v.contains("no copy has succeeded within BACKUP_COPY_MAX_AGE (1day)"),
            "{v}"
        );
        assert!(v.contains("connection refused"), "{v}");
        let copy = h.copy.as_mut().unwrap();
        copy.newest_archive = Some("nas-2026-11-12T03:00:00".into());
        copy.newest_archive_time = Some(at(12, 3));
        assert!(copy_verdict(at(12, 4), &h, None, DAY).is_ok());
        let v = copy_verdict(at(14, 4), &h, None, DAY).unwrap_err();
        assert!(
            v.starts_with("the copy's newest archive nas-2026-11-12T03:00:00 is from 2days 1h ago"),
            "{v}"
        );
        // A long copy that moves bytes is not stale.
        let copying = Running {
            started: at(13, 0),
            moved: at(14, 4),
            bytes: 1,
        };
        assert!(copy_verdict(at(14, 4), &h, Some(&copying), DAY).is_ok());
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
