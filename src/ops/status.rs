//! `backup-sidecar status` (and `--json`): per volume when it was last mirrored, its size and
//! files, its group's last freeze; the last run, archive and verification; when the next sync and
//! snapshot are due; and the health verdict. Read from the state directory alone: instant, no
//! network, and the same after a restart.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::Serialize;

use crate::format::human_bytes;
use crate::ops::health::Verdict;
use crate::ops::history::{ArchiveRecord, CopyRecord, History, RunRecord, VerificationRecord};

/// One volume's line.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeStatus {
    /// Volume name.
    pub volume: String,
    /// Its group.
    pub group: String,
    /// End of the last run that mirrored it completely.
    pub last_mirrored: Option<DateTime<Utc>>,
    /// Size of its files then.
    pub bytes: u64,
    /// Entries then.
    pub files: u64,
    /// Its group's last freeze, in milliseconds.
    pub last_freeze_ms: Option<u64>,
    /// Why the last attempt failed, when it did.
    pub last_error: Option<String>,
}

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Healthy or not.
    pub healthy: bool,
    /// Why.
    pub health: String,
    /// Each volume ever backed up.
    pub volumes: Vec<VolumeStatus>,
    /// The last run.
    pub last_run: Option<RunRecord>,
    /// The last archive.
    pub last_archive: Option<ArchiveRecord>,
    /// The last verification.
    pub last_verification: Option<VerificationRecord>,
    /// The second copy, once the remote has made or tried one.
    pub copy: Option<CopyStatus>,
    /// When the next mirror-only run is due.
    pub next_sync: Option<DateTime<Utc>>,
    /// When the next mirror + snapshot run is due.
    pub next_snapshot: Option<DateTime<Utc>>,
}

/// The second copy: where it goes, how old its newest archive is, how its last copy and check
/// went.
#[derive(Debug, Clone, Serialize)]
pub struct CopyStatus {
    /// The history's record of it.
    #[serde(flatten)]
    pub record: CopyRecord,
    /// How old the newest archive in the copy is, in seconds, when there is one.
    pub newest_archive_age_seconds: Option<i64>,
}

/// The schedules `status` reports on.
pub struct Schedules<'a> {
    /// `BACKUP_SYNC_SCHEDULE`.
    pub sync: &'a Cron,
    /// `BACKUP_SNAPSHOT_SCHEDULE`.
    pub snapshot: &'a Cron,
    /// `TZ`.
    pub tz: Tz,
}

fn next(cron: &Cron, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&now.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The status at `now`.
pub fn status(
    now: DateTime<Utc>,
    history: &History,
    verdict: Verdict,
    schedules: &Schedules,
) -> Status {
    let (healthy, health) = match verdict {
        Verdict::Healthy(why) => (true, why),
        Verdict::Unhealthy(why) => (false, why),
    };
    let volumes = history
        .volumes
        .iter()
        .map(|(name, v)| VolumeStatus {
            volume: name.clone(),
            group: v.group.clone(),
            last_mirrored: v.last_success,
            bytes: v.bytes,
            files: v.files,
            last_freeze_ms: history.groups.get(&v.group).map(|g| g.pause_ms),
            last_error: v.last_error.clone(),
        })
        .collect();
    Status {
        healthy,
        health,
        volumes,
        last_run: history.last_run().cloned(),
        last_archive: history.last_archive.clone(),
        last_verification: history.last_verification.clone(),
        copy: history.copy.as_ref().map(|record| CopyStatus {
            record: record.clone(),
            newest_archive_age_seconds: record
                .newest_archive_time
                .map(|t| (now - t).num_seconds().max(0)),
        }),
        next_sync: next(schedules.sync, schedules.tz, now),
        next_snapshot: next(schedules.snapshot, schedules.tz, now),
    }
}

fn when(time: Option<DateTime<Utc>>, tz: Tz) -> String {
    time.map_or_else(
        || "never".to_string(),
        |t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string(),
    )
}

impl CopyStatus {
    fn lines(&self, tz: Tz) -> String {
        let r = &self.record;
        let newest = match (&r.newest_archive, self.newest_archive_age_seconds) {
            (Some(name), Some(age)) => format!(
                "{name} ({} old)",
                humantime::format_duration(std::time::Duration::from_secs(age as u64))
            ),
            _ => "none yet".into(),
        };
        let last = match (&r.last_error, r.last_success) {
            (Some(e), _) => format!("failed at {}: {e}", when(r.last_attempt, tz)),
            (None, Some(at)) => format!(
                "success at {} ({} sent in {:.1} s)",
                when(Some(at), tz),
                human_bytes(r.bytes),
                r.seconds
            ),
            (None, None) => "none yet".into(),
        };
        let check = match (&r.last_check_error, r.last_check) {
            (_, None) => "none yet".into(),
            (Some(e), Some(at)) => format!("failed at {}: {e}", when(Some(at), tz)),
            (None, Some(at)) => format!("success at {}", when(Some(at), tz)),
        };
        format!(
            "copy:              {} to {}\n\
             copy's newest:     {newest}\n\
             last copy:         {last}\n\
             last copy check:   {check}\n",
            r.kind, r.target
        )
    }
}

impl Status {
    /// The table for people, times in `tz`.
    pub fn table(&self, tz: Tz) -> String {
        let mut out = format!(
            "{:<32} {:<22} {:>10} {:>9} {:>12}\n",
            "VOLUME", "LAST MIRRORED", "SIZE", "FILES", "LAST FREEZE"
        );
        for v in &self.volumes {
            out.push_str(&format!(
                "{:<32} {:<22} {:>10} {:>9} {:>12}\n",
                v.volume,
                when(v.last_mirrored, tz),
                human_bytes(v.bytes),
                v.files,
                v.last_freeze_ms
                    .map_or_else(|| "-".to_string(), |ms| format!("{ms} ms")),
            ));
            if let Some(error) = &v.last_error {
                out.push_str(&format!("  last attempt failed: {error}\n"));
            }
        }
        if self.volumes.is_empty() {
            out.push_str("no volume has been backed up yet\n");
        }
        out.push('\n');
        let last_run = match &self.last_run {
            Some(r) => format!(
                "{} at {} ({}, {} volume(s), {}){}",
                r.outcome,
                when(Some(r.finished), tz),
                r.trigger,
                r.volumes,
                human_bytes(r.bytes),
                r.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            None => "none yet".into(),
        };
        out.push_str(&format!("last run:          {last_run}\n"));
        let archive = match &self.last_archive {
            Some(a) => format!(
                "{} at {} ({}, added {})",
                a.name,
                when(Some(a.time), tz),
                human_bytes(a.original_bytes),
                human_bytes(a.deduplicated_bytes)
            ),
            None => "none yet".into(),
        };
        out.push_str(&format!("last archive:      {archive}\n"));
        let verification = match &self.last_verification {
            Some(v) => format!(
                "{} at {} ({} file(s) compared{}{})",
                v.outcome,
                when(Some(v.at), tz),
                v.compared,
                if v.mismatches > 0 {
                    format!(", {} differ", v.mismatches)
                } else {
                    String::new()
                },
                v.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            None => "none yet".into(),
        };
        out.push_str(&format!("last verification: {verification}\n"));
        if let Some(copy) = &self.copy {
            out.push_str(&copy.lines(tz));
        }
        out.push_str(&format!(
            "next sync:         {}\n",
            when(self.next_sync, tz)
        ));
        out.push_str(&format!(
            "next snapshot:     {}\n",
            when(self.next_snapshot, tz)
        ));
        out.push_str(&format!(
            "health:            {}: {}\n",
            if self.healthy { "healthy" } else { "unhealthy" },
            self.health
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cron;
    use crate::ops::history::{GroupRecord, VolumeRecord};
    use chrono::TimeZone;

    #[test]
    fn shows_volumes_runs_and_what_is_next() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let mut history = History::default();
        history.volumes.insert(
            "nc_data".into(),
            VolumeRecord {
                group: "nc".into(),
                last_success: Some(now),
                bytes: 1024 * 1024,
                files: 12,
                ..VolumeRecord::default()
            },
        );
        history.groups.insert(
            "nc".into(),
            GroupRecord {
                at: Some(now),
                pause_ms: 140,
                containers: vec!["nc-app".into()],
            },
        );
        let sync = parse_cron("T", "0 3 */2 * *").unwrap();
        let snapshot = parse_cron("T", "0 3 * * 0").unwrap();
        let schedules = Schedules {
            sync: &sync,
            snapshot: &snapshot,
            tz: Tz::UTC,
        };
        let status = status(now, &history, Verdict::Healthy("fine".into()), &schedules);
        assert_eq!(
            status.next_sync,
            Some(Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap())
        );
        let table = status.table(Tz::UTC);
        let line = table.lines().nth(1).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words,
            [
                "nc_data",
                "2026-11-28",
                "12:00",
                "UTC",
                "1.0",
                "MiB",
                "12",
                "140",
                "ms"
            ],
            "{table}"
        );
        assert!(table.contains("last run:          none yet"), "{table}");
        assert!(
            table.contains("next snapshot:     2026-11-29 03:00 UTC"),
            "{table}"
        );
        assert!(
            table.contains("health:            healthy: fine"),
            "{table}"
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["volumes"][0]["last_freeze_ms"], 140);
        assert_eq!(json["healthy"], true);
    }
}
