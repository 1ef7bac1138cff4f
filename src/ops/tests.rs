//! The messages the outputs build from reports, and the history they keep.

use std::time::Duration;

use chrono::Utc;

use super::*;
use crate::config::RawConfig;
use crate::engine::freeze::{FreezeFault, Frozen};
use crate::report::{
    Failure, FailureKind, GroupReport, Synced, Trigger, TriggerKind, Verified, VolumeReport,
};

/// Outputs on a state directory of their own, with no notification channel.
fn outputs(dir: &std::path::Path) -> Outputs {
    let key = dir.join("key");
    std::fs::write(&key, "k").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = Config::from_raw(RawConfig {
        backup_remote: Some("pi@backup".into()),
        backup_remote_dir: Some("/m".into()),
        backup_ssh_key_file: Some(key.display().to_string()),
        backup_known_hosts_file: Some("/dev/null".into()),
        backup_sync_schedule: Some("0 3 * * *".into()),
        ..Default::default()
    })
    .unwrap();
    let notifier = Notifier::new(Vec::new(), config.notify_on, None).unwrap();
    Outputs::new(&config, Store::new(dir), notifier, "nas".into())
}

fn run(volumes: &[(&str, bool)], failure: Option<Failure>) -> RunReport {
    let mut run = RunReport::new(Trigger {
        kind: TriggerKind::Schedule,
        snapshot: true,
    });
    run.planned = volumes.iter().map(|(v, _)| v.to_string()).collect();
    run.volumes = volumes
        .iter()
        .map(|(name, ok)| VolumeReport {
            name: name.to_string(),
            group: "g".into(),
            outcome: if *ok {
                Ok(Synced {
                    bytes: 1,
                    files: 1,
                    sent_bytes: 1,
                    seconds: 0.1,
                    live_seconds: None,
                    journal_missed: None,
                })
            } else {
                Err(Failure {
                    kind: FailureKind::Other,
                    message: format!("{name} vanished"),
                })
            },
        })
        .collect();
    run.groups.push(GroupReport {
        name: "g".into(),
        frozen: Frozen {
            duration: Duration::from_millis(30),
            containers: vec!["app".into()],
            thawed: true,
        },
    });
    run.failure = failure;
    run
}

#[test]
fn a_failed_run_names_the_volumes_it_hit_and_a_success_after_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = outputs(dir.path());
    let mut history = History::default();
    let failed = run(
        &[("a", true), ("b", false)],
        Some(Failure {
            kind: FailureKind::Other,
            message: "1 volume(s) failed".into(),
        }),
    );
    let message = outputs.run_message(&failed, &history);
    assert_eq!(message.kind, Outcome::Failed);
    assert_eq!(message.title, "backup failed on nas");
    assert_eq!(message.volumes, ["b"]);
    assert_eq!(message.cause.as_deref(), Some("other"));
    assert!(message.next_run.is_some_and(|at| at > Utc::now()));
    history.record(&Report::Run(failed), Utc::now());

    let ok = run(&[("a", true), ("b", true)], None);
    let message = outputs.run_message(&ok, &history);
    assert_eq!(message.kind, Outcome::Recovered);
    assert_eq!(message.stage, None);
    // Nothing failed: it concerned every planned volume.
    assert_eq!(message.volumes, ["a", "b"]);
    history.record(&Report::Run(ok.clone()), Utc::now());
    assert_eq!(outputs.run_message(&ok, &history).kind, Outcome::Success);
}

#[test]
fn a_freeze_fault_is_the_freezes_stage_whatever_step_the_run_was_at() {
    let dir = tempfile::tempdir().unwrap();
    let mut stuck = run(
        &[("a", false)],
        Some(Failure {
            kind: FailureKind::Freeze(FreezeFault::Timeout),
            message: "held past BACKUP_PAUSE_TIMEOUT".into(),
        }),
    );
    stuck.stage = crate::report::Stage::Mirror;
    let message = outputs(dir.path()).run_message(&stuck, &History::default());
    assert_eq!(message.stage.as_deref(), Some("freeze"));
}

#[test]
fn only_a_verification_that_found_rot_or_could_not_look_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = outputs(dir.path());
    let report = |outcome| VerifyReport {
        outcome,
        duration: Duration::from_secs(3),
    };
    let clean = report(Ok(Verified {
        archive: Some("nas-1".into()),
        compared: 10,
        mismatches: Vec::new(),
    }));
    assert!(
        outputs
            .verification_message(&clean, &History::default())
            .is_none()
    );
    let rot = report(Ok(Verified {
        archive: Some("nas-1".into()),
        compared: 10,
        mismatches: vec!["app/f".into()],
    }));
    let message = outputs
        .verification_message(&rot, &History::default())
        .unwrap();
    assert_eq!(message.cause.as_deref(), Some("rot"));
    assert_eq!(message.title, "backup verification failed on nas");
    assert!(
        message.summary.contains("nas-1 found 1 file(s)"),
        "{}",
        message.summary
    );
    let blind = report(Err(Failure {
        kind: FailureKind::Other,
        message: "no archive".into(),
    }));
    let message = outputs
        .verification_message(&blind, &History::default())
        .unwrap();
    assert_eq!(message.summary, "verification could not run: no archive");
}

#[test]
fn publishing_keeps_the_history_without_any_channel() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = outputs(dir.path());
    outputs.publish(&Report::Run(run(&[("a", true)], None)), "id", 0);
    let history = Store::new(dir.path()).load();
    assert_eq!(history.runs.len(), 1);
    assert_eq!(history.runs[0].outcome, report::Outcome::Success);
    assert!(history.last_success.is_some());
}

fn copy_report(check: bool, outcome: Result<report::CopyDone, Failure>) -> report::CopyReport {
    report::CopyReport {
        place: crate::remote::guard::CopyPlace {
            kind: "rclone".into(),
            target: "offsite:borg (sftp)".into(),
        },
        check,
        newest: Some((
            "nas-2026-12-06T03:00:00".into(),
            chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 6, 3, 0, 0).unwrap(),
        )),
        outcome,
        duration: Duration::from_secs(2),
    }
}

fn copied(bytes: u64) -> Result<report::CopyDone, Failure> {
    Ok(report::CopyDone::Copied(crate::remote::copy::Copied {
        kind: "rclone".into(),
        bytes,
        files: 3,
        seconds: 1.5,
        archive: None,
    }))
}

#[test]
fn a_failed_copy_is_told_and_so_is_the_first_success_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = outputs(dir.path());
    let unreachable = Err(Failure {
        kind: FailureKind::Remote(crate::remote::fault::Fault::Network),
        message: "copy: dial tcp …: connection refused".into(),
    });
    let failed = copy_report(false, unreachable);
    let message = outputs.copy_message(&failed, &History::default()).unwrap();
    assert_eq!(message.kind, Outcome::Failed);
    assert_eq!(message.title, "backup copy failed on nas");
    assert_eq!(message.stage.as_deref(), Some("copy"));
    assert_eq!(message.cause.as_deref(), Some("network"));
    assert!(
        message.summary.contains("offsite:borg (sftp)"),
        "{}",
        message.summary
    );

    // A success after a success says nothing; after a failure it is a recovery.
    let mut history = History::default();
    history.record(&Report::Copy(copy_report(false, copied(10))), Utc::now());
    let ok = copy_report(false, copied(5));
    assert!(outputs.copy_message(&ok, &history).is_none());
    history.record(&Report::Copy(failed.clone()), Utc::now());
    let record = history.copy.as_ref().unwrap();
    assert!(record.failing());
    assert_eq!((record.failures_total, record.bytes_total), (1, 10));
    assert_eq!(
        record.newest_archive.as_deref(),
        Some("nas-2026-12-06T03:00:00")
    );
    let message = outputs.copy_message(&ok, &history).unwrap();
    assert_eq!(message.kind, Outcome::Recovered);
    assert!(
        message.summary.contains("nas-2026-12-06T03:00:00"),
        "{}",
        message.summary
    );
    history.record(&Report::Copy(ok), Utc::now());
    let record = history.copy.as_ref().unwrap();
    assert!(!record.failing());
    assert_eq!((record.bytes, record.bytes_total), (5, 15));

    // A check that found the copy unsound is told, and kept apart from the copies.
    let differs = copy_report(
        true,
        Err(Failure {
            kind: FailureKind::Other,
            message: "the copy differs from what was copied: 1 file(s) differ".into(),
        }),
    );
    let message = outputs.copy_message(&differs, &history).unwrap();
    assert_eq!(message.title, "backup check of the copy failed on nas");
    history.record(&Report::Copy(differs.clone()), Utc::now());
    let record = history.copy.as_ref().unwrap();
    assert!(record.last_check_error.is_some() && !record.failing());
    // A check before any copy starts the clock health counts from.
    let mut fresh = History::default();
    fresh.record(&Report::Copy(differs), Utc::now());
    assert!(fresh.copy.unwrap().first_attempt.is_some());
}
