//! The run's step order against a fake: what runs, in which order, on each path.

use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::engine::plan::{Origin, PlannedVolume};
use crate::remote::fault::{Fault, RemoteError};
use crate::report::{FailureKind, Synced};
use crate::report::{Trigger, TriggerKind};

/// A fake run: records each step; fails the steps it is told to; its groups fail the volumes
/// named in `failing`; `cancel_after_group` cancels the run once that group is done.
#[derive(Default)]
struct Fake {
    calls: Vec<String>,
    fail: Vec<&'static str>,
    failing: Vec<&'static str>,
    cancel_after_group: Option<(&'static str, CancellationToken)>,
    /// What each look for newcomers finds: a group (of one volume of its name) to do again.
    newcomers: Vec<Option<&'static str>>,
}

impl Fake {
    fn step(&mut self, name: &'static str) -> Result<()> {
        self.calls.push(name.to_string());
        if self.fail.contains(&name) {
            return Err(anyhow!("{name} broke"));
        }
        Ok(())
    }
}

impl Steps for Fake {
    async fn pre_command(&mut self, _: &CancellationToken) -> Result<()> {
        self.step("pre")
    }

    async fn begin_mirror(&mut self, _: &CancellationToken) -> Result<()> {
        self.step("begin")
    }

    async fn group(&mut self, group: &Group, _: &CancellationToken) -> (VolumeResults, Frozen) {
        self.calls.push(format!("group {}", group.name));
        if let Some((name, token)) = &self.cancel_after_group
            && *name == group.name
        {
            token.cancel();
        }
        let results = group
            .volumes
            .iter()
            .map(|v| {
                let result = if self.failing.contains(&v.name.as_str()) {
                    Err(RemoteError {
                        fault: Fault::Network,
                        message: format!("{} unreachable", v.name),
                    }
                    .into())
                } else {
                    Ok(Synced {
                        bytes: 10,
                        files: 1,
                        sent_bytes: 10,
                        seconds: 0.1,
                        live_seconds: Some(0.05),
                        journal_missed: None,
                    })
                };
                (v.name.clone(), result)
            })
            .collect();
        let frozen = Frozen {
            duration: Duration::from_millis(20),
            containers: vec![format!("{}-app", group.name)],
            thawed: true,
        };
        (results, frozen)
    }

    async fn newcomers(&mut self, _: &Plan, redone: &[Group]) -> Result<Vec<Redo>> {
        self.step("newcomers")?;
        let looks = self.calls.iter().filter(|c| *c == "newcomers").count();
        Ok(match self.newcomers.get(looks - 1) {
            Some(Some(group)) => vec![Redo {
                group: plan(&[(group, &[group])]).groups.remove(0),
                newcomers: vec![format!("{group}-new{}", redone.len())],
            }],
            _ => Vec::new(),
        })
    }

    async fn write_stamp(&mut self, _: &CancellationToken) -> Result<()> {
        self.step("stamp")
    }

    async fn snapshot(&mut self, total: u64, _: &CancellationToken) -> Result<Option<Created>> {
        self.step("snapshot")?;
        Ok(Some(Created {
            archive: format!("nas-{total}"),
            seconds: 1.0,
            borg_seconds: 0.5,
            original_bytes: total,
            deduplicated_bytes: 1,
        }))
    }

    async fn post_command(&mut self, _: &CancellationToken) -> Result<()> {
        self.step("post")
    }
}

fn plan(groups: &[(&str, &[&str])]) -> Plan {
    Plan {
        groups: groups
            .iter()
            .map(|(name, volumes)| Group {
                name: name.to_string(),
                members: Vec::new(),
                volumes: volumes
                    .iter()
                    .map(|v| PlannedVolume {
                        name: v.to_string(),
                        origin: Origin::Volume,
                        excludes: Vec::new(),
                        untouched: Vec::new(),
                    })
                    .collect(),
                hooks: Vec::new(),
            })
            .collect(),
        skipped: Vec::new(),
        warnings: Vec::new(),
    }
}

fn new_report(snapshot: bool) -> RunReport {
    RunReport::new(Trigger {
        kind: TriggerKind::Schedule,
        snapshot,
    })
}

const TWO_GROUPS: &[(&str, &[&str])] = &[("a", &["a1", "a2"]), ("b", &["b1"])];

#[tokio::test]
async fn every_step_in_order_and_the_snapshot_of_what_was_mirrored() {
    let mut fake = Fake::default();
    let mut report = new_report(true);
    let done = drive(
        &mut fake,
        &plan(TWO_GROUPS),
        &mut report,
        &CancellationToken::new(),
    )
    .await;
    assert!(done.is_ok(), "{done:?}");
    assert_eq!(
        fake.calls,
        [
            "pre",
            "begin",
            "group a",
            "group b",
            "newcomers",
            "stamp",
            "snapshot",
            "post"
        ]
    );
    let names: Vec<&str> = report.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["a1", "a2", "b1"]);
    assert_eq!(report.volumes[2].group, "b");
    assert_eq!(report.groups.len(), 2);
    assert_eq!(report.archive.as_ref().unwrap().archive, "nas-30");
    assert_eq!(report.stage, Stage::PostCommand);
}

#[tokio::test]
async fn a_mirror_only_run_takes_no_snapshot() {
    let mut fake = Fake::default();
    let mut report = new_report(false);
    drive(
        &mut fake,
        &plan(TWO_GROUPS),
        &mut report,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        fake.calls,
        [
            "pre",
            "begin",
            "group a",
            "group b",
            "newcomers",
            "stamp",
            "post"
        ]
    );
    assert!(report.archive.is_none());
}

#[tokio::test]
async fn a_failed_volume_means_no_stamp_and_no_snapshot_but_the_post_command() {
    let mut fake = Fake {
        failing: vec!["a2"],
        ..Default::default()
    };
    let mut report = new_report(true);
    let err = drive(
        &mut fake,
        &plan(TWO_GROUPS),
        &mut report,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    // The other groups are still mirrored.
    assert_eq!(fake.calls, ["pre", "begin", "group a", "group b", "post"]);
    let failure = Failure::of(&err);
    assert_eq!(failure.kind, FailureKind::Remote(Fault::Network));
    assert!(
        failure
            .message
            .starts_with("1 volume(s) failed, no snapshot taken: a2: "),
        "{failure}"
    );
    assert!(report.volumes[1].outcome.is_err());
    assert!(report.archive.is_none());
    assert_eq!(report.stage, Stage::Mirror);
}

#[tokio::test]
async fn a_failed_pre_command_stops_before_the_mirror_and_the_post_command_runs() {
    let mut fake = Fake {
        fail: vec!["pre"],
        ..Default::default()
    };
    let mut report = new_report(true);
    let err = drive(
        &mut fake,
        &plan(TWO_GROUPS),
        &mut report,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(fake.calls, ["pre", "post"]);
    assert_eq!(format!("{err:#}"), "pre broke");
    assert_eq!(report.stage, Stage::PreCommand);
    assert!(report.volumes.is_empty());
}

#[tokio::test]
async fn a_failed_stamp_or_snapshot_stops_there() {
    for (failing, calls, stage) in [
        ("begin", &["pre", "begin", "post"][..], Stage::Mirror),
        (
            "stamp",
            &[
                "pre",
                "begin",
                "group a",
                "group b",
                "newcomers",
                "stamp",
                "post",
            ][..],
            Stage::Mirror,
        ),
        (
            "snapshot",
            &[
                "pre",
                "begin",
                "group a",
                "group b",
                "newcomers",
                "stamp",
                "snapshot",
                "post",
            ][..],
            Stage::Snapshot,
        ),
    ] {
        let mut fake = Fake {
            fail: vec![failing],
            ..Default::default()
        };
        let mut report = new_report(true);
        let err = drive(
            &mut fake,
            &plan(TWO_GROUPS),
            &mut report,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(fake.calls, calls, "{failing}");
        assert_eq!(format!("{err:#}"), format!("{failing} broke"));
        assert_eq!(report.stage, stage, "{failing}");
        assert!(report.archive.is_none());
    }
}

#[tokio::test]
async fn a_failed_post_command_fails_the_run_and_joins_an_earlier_failure() {
    let mut fake = Fake {
        fail: vec!["post"],
        ..Default::default()
    };
    let mut report = new_report(true);
    let err = drive(
        &mut fake,
        &plan(TWO_GROUPS),
        &mut report,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(format!("{err:#}"), "post broke");
    // The archive was made before the post command failed.
    assert!(report.archive.is_some());
    assert_eq!(report.stage, Stage::PostCommand);

    let mut fake = Fake {
        fail: vec!["stamp", "post"],
        ..Default::default()
    };
    let mut report = new_report(true);
    let err = drive(
        &mut fake,
        &plan(TWO_GROUPS),
        &mut report,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(format!("{err:#}"), "stamp broke; and then post broke");
}

#[tokio::test]
async fn cancelled_between_groups_stops_and_still_runs_the_post_command() {
    let cancel = CancellationToken::new();
    let mut fake = Fake {
        cancel_after_group: Some(("a", cancel.clone())),
        ..Default::default()
    };
    let mut report = new_report(true);
    let err = drive(&mut fake, &plan(TWO_GROUPS), &mut report, &cancel)
        .await
        .unwrap_err();
    assert_eq!(fake.calls, ["pre", "begin", "group a", "post"]);
    assert_eq!(format!("{err:#}"), "cancelled");
    assert_eq!(report.groups.len(), 1);
}

#[test]
fn all_failed_fails_each_volume_with_the_reason() {
    let plan = plan(TWO_GROUPS);
    let results = all_failed(&plan.groups[0], &anyhow!("pg_dump failed"));
    let got: Vec<(String, String)> = results
        .into_iter()
        .map(|(name, r)| (name, format!("{:#}", r.unwrap_err())))
        .collect();
    assert_eq!(
        got,
        [
            ("a1".to_string(), "pg_dump failed".to_string()),
            ("a2".to_string(), "pg_dump failed".to_string())
        ]
    );
}

#[tokio::test]
async fn a_group_newcomers_used_is_done_again_and_replaces_its_volumes_results() {
    let mut fake = Fake {
        newcomers: vec![Some("b1")],
        ..Default::default()
    };
    let mut report = new_report(true);
    let plan = plan(&[("a", &["a1"]), ("b1", &["b1"])]);
    drive(&mut fake, &plan, &mut report, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        fake.calls,
        [
            "pre",
            "begin",
            "group a",
            "group b1",
            "newcomers",
            "group b1",
            "newcomers",
            "stamp",
            "snapshot",
            "post"
        ]
    );
    let names: Vec<&str> = report.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["a1", "b1"], "one result per volume");
    assert_eq!(report.groups.len(), 3);
}

#[tokio::test]
async fn newcomers_that_keep_coming_fail_the_run_without_a_snapshot() {
    let mut fake = Fake {
        newcomers: vec![Some("a"); 3],
        ..Default::default()
    };
    let mut report = new_report(true);
    let err = drive(
        &mut fake,
        &plan(&[("a", &["a"])]),
        &mut report,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("a-new2"), "{err:#}");
    assert!(format!("{err:#}").contains("not one instant"), "{err:#}");
    let groups = fake.calls.iter().filter(|c| *c == "group a").count();
    assert_eq!(groups, 3, "the group and its two redos: {:?}", fake.calls);
    assert!(!fake.calls.contains(&"snapshot".to_string()));
    assert_eq!(fake.calls.last().unwrap(), "post");
}

#[tokio::test]
async fn no_look_for_newcomers_after_a_failed_volume() {
    let mut fake = Fake {
        failing: vec!["a1"],
        newcomers: vec![Some("a")],
        ..Default::default()
    };
    let mut report = new_report(true);
    drive(
        &mut fake,
        &plan(&[("a", &["a1"])]),
        &mut report,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(fake.calls, ["pre", "begin", "group a", "post"]);
}
