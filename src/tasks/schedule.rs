//! Schedule: a trigger each time a run is due, from the two cron expressions in `TZ`
//! ([`next_run`]), and a tick for each verification.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::next_run;
use crate::report::{Trigger, TriggerKind};

/// Sends a trigger each time a schedule fires, until cancelled.
pub async fn drive(
    sync: Cron,
    snapshot: Cron,
    tz: Tz,
    triggers: mpsc::UnboundedSender<Trigger>,
    cancel: CancellationToken,
) {
    let next = |after| {
        next_run(&sync, &snapshot, tz, after).map(|(at, snapshot)| {
            tracing::debug!(at = %at, snapshot, "next scheduled run");
            let trigger = Trigger {
                kind: TriggerKind::Schedule,
                snapshot,
            };
            (at, trigger)
        })
    };
    fire(next, triggers, cancel).await
}

/// Sends `()` each time `cron` fires, until cancelled (for verification).
pub async fn ticks(
    cron: Cron,
    tz: Tz,
    ticks: mpsc::UnboundedSender<()>,
    cancel: CancellationToken,
) {
    let next = |after: DateTime<Utc>| {
        cron.find_next_occurrence(&after.with_timezone(&tz), false)
            .ok()
            .map(|at| (at.with_timezone(&Utc), ()))
    };
    fire(next, ticks, cancel).await
}

/// Waits for each time `next` names after the previous one and sends its value, until `next` has
/// none, the receiver is gone, or `cancel` fires.
async fn fire<T>(
    next: impl Fn(DateTime<Utc>) -> Option<(DateTime<Utc>, T)>,
    sender: mpsc::UnboundedSender<T>,
    cancel: CancellationToken,
) {
    let mut after = Utc::now();
    while let Some((at, value)) = next(after) {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if sender.send(value).is_err() {
            return;
        }
        after = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cron;
    use chrono::TimeZone;
    use std::time::Duration;

    fn cron(s: &str) -> Cron {
        parse_cron("TEST", s).unwrap()
    }

    #[test]
    fn defaults_fire_every_other_day_and_sundays_together() {
        let sync = cron("0 3 */2 * *");
        let snap = cron("0 3 * * 0");
        // Saturday 2026-11-28 12:00 UTC: next sync is Sunday 29th 03:00 (29 is odd, */2 from 1),
        // which is also the Sunday snapshot: one run does both.
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let (at, snapshot) = next_run(&sync, &snap, Tz::UTC, now).unwrap();
        assert_eq!(at, Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap());
        assert!(snapshot);
        // After that: Tuesday 1st December 03:00, a sync only.
        let (at, snapshot) = next_run(&sync, &snap, Tz::UTC, at).unwrap();
        assert_eq!(at, Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap());
        assert!(!snapshot);
    }

    #[test]
    fn time_zone_applies() {
        let sync = cron("0 3 * * *");
        let snap = cron("0 3 1 1 *");
        let now = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let (at, snapshot) = next_run(&sync, &snap, chrono_tz::Europe::Berlin, now).unwrap();
        // 03:00 in Berlin summer time is 01:00 UTC.
        assert_eq!(at, Utc.with_ymd_and_hms(2026, 7, 1, 1, 0, 0).unwrap());
        assert!(!snapshot);
    }

    #[test]
    fn merges_triggers() {
        let sync = Trigger {
            kind: TriggerKind::Schedule,
            snapshot: false,
        };
        let signal = Trigger {
            kind: TriggerKind::Signal,
            snapshot: true,
        };
        assert_eq!(
            sync.merge(signal),
            Trigger {
                kind: TriggerKind::Schedule,
                snapshot: true
            }
        );
    }

    /// `future`'s output, or a failed test after an hour of (paused, so auto-advancing) time: a
    /// loop that never ends fails instead of hanging.
    async fn bounded<F: std::future::Future>(future: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(3600), future)
            .await
            .expect("finished within an hour of paused time")
    }

    #[tokio::test(start_paused = true)]
    async fn drive_sends_and_stops_on_cancel() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(drive(
            cron("* * * * *"),
            cron("0 0 1 1 *"),
            Tz::UTC,
            tx,
            cancel.clone(),
        ));
        // Paused time auto-advances to the sleep's deadline: a minute schedule fires.
        let trigger = bounded(rx.recv()).await.unwrap();
        assert_eq!(trigger.kind, TriggerKind::Schedule);
        cancel.cancel();
        bounded(task).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_send_and_stop_when_nobody_listens() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(ticks(
            cron("* * * * *"),
            Tz::UTC,
            tx,
            CancellationToken::new(),
        ));
        bounded(rx.recv()).await.unwrap();
        drop(rx);
        // The next send fails, and the loop ends without being cancelled.
        bounded(task).await.unwrap();
    }
}
