//! End to end: what gets mirrored, how containers are frozen, and what borg keeps.

mod common;

use std::time::Duration;

use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// An app writes all the time: each step appends its number to `journal`, then writes it to
/// `state`. A mirror taken at one instant has `state` = k and `journal` = 1..k or 1..k+1.
const WRITER: &str = "i=0; while :; do i=$((i+1)); echo $i >> /data/journal; \
    echo $i > /data/state.tmp; mv /data/state.tmp /data/state; sleep 0.002; done";

#[test]
fn running_app_is_mirrored_consistently_and_keeps_running() {
    let env = Env::new("writer");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    // Files that do not change during the run: 300 files of 64 KiB in nested directories.
    env.in_volume(
        &volume,
        "mkdir -p /data/static && cd /data/static && for d in 0 1 2; do mkdir -p $d; \
         for i in $(seq 1 100); do head -c 65536 /dev/urandom > $d/f$i; done; done",
    );
    let app = env.app("app", &volume, WRITER);
    wait_until("the app to write", Duration::from_secs(20), || {
        env.in_volume(&volume, "cat /data/state 2>/dev/null || echo 0")
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
            > 50
    });
    let sidecar = env.sidecar(&remote, &[]);
    let finished = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(finished["fields"]["outcome"], "success", "{finished}");

    // Unchanged files are all there, byte for byte.
    assert_eq!(
        remote_digest(&env, &remote, &format!("/backup/mirror/{volume}/static")),
        env.in_volume(&volume, &format!("cd /data/static && {{ {TREE_DIGEST}; }}")),
    );
    // Changing files hold one instant's state.
    let state: u64 = env
        .on_remote(&remote, &format!("cat /backup/mirror/{volume}/state"))
        .trim()
        .parse()
        .expect("state is a whole number");
    let journal = env.on_remote(&remote, &format!("cat /backup/mirror/{volume}/journal"));
    let lines: Vec<u64> = journal
        .lines()
        .map(|l| l.parse().expect("no torn line in journal"))
        .collect();
    assert!(state > 50, "state {state}");
    assert_eq!(lines, (1..=lines.len() as u64).collect::<Vec<_>>());
    let last = *lines.last().unwrap();
    assert!(
        last == state || last == state + 1,
        "journal ends at {last} but state is {state}: not one instant"
    );

    // One freeze, short, and the app is back and writing.
    let thawed = events_named(&sidecar, "group thawed");
    assert_eq!(thawed.len(), 1, "{thawed:?}");
    assert_eq!(thawed[0]["fields"]["containers"], app.as_str());
    // Captured while frozen and uploaded after the thaw, while the app went on writing.
    assert_eq!(thawed[0]["fields"]["catch_up"], "capture", "{}", thawed[0]);
    assert!(thawed[0]["fields"]["pause_ms"].as_u64().unwrap() < 30_000);
    assert_running_not_paused(&app);
    let later = || {
        env.in_volume(&volume, "cat /data/state")
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    let now = later();
    wait_until("the app to go on writing", Duration::from_secs(20), || {
        later() > now
    });
    let synced = events_named(&sidecar, "volume synced");
    assert_eq!(synced.len(), 1);
    assert_eq!(synced[0]["fields"]["volume"], volume.as_str());
    assert!(synced[0]["fields"]["files"].as_u64().unwrap() >= 300);
    assert!(synced[0]["fields"]["bytes"].as_u64().unwrap() >= 300 * 65536);
}

#[test]
fn labels_select_volumes() {
    let env = Env::new("select");
    let remote = env.remote();
    let project = env.project_label();
    let labelled = env.volume("labelled", &["backup.enable=true", &project]);
    let plain = env.volume("plain", &[]);
    let via_container = env.volume("via-container", &[]);
    let opted_out = env.volume("opted-out", &["backup.enable=false"]);
    let odd = env.volume("odd", &["backup.enable=true", &project]);
    for volume in [&labelled, &plain, &via_container, &opted_out, &odd] {
        env.in_volume(volume, "echo hello > /data/file");
    }
    env.container(
        "asks",
        &[
            "--label",
            &project,
            "--label",
            "backup.enable=true",
            "-v",
            &format!("{via_container}:/a"),
            "-v",
            &format!("{opted_out}:/b"),
        ],
        APP_IMAGE,
        &["sleep", "infinity"],
    );
    env.container(
        "plain-user",
        &["--label", &project, "-v", &format!("{plain}:/p")],
        APP_IMAGE,
        &["sleep", "infinity"],
    );
    let weird = env.container(
        "weird",
        &[
            "--label",
            &project,
            "--label",
            "backup.quiesce=freeze",
            "-v",
            &format!("{odd}:/o"),
        ],
        APP_IMAGE,
        &["sleep", "infinity"],
    );
    let sidecar = env.sidecar(&remote, &[]);
    let finished = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(finished["fields"]["outcome"], "success", "{finished}");
    assert_eq!(finished["fields"]["volumes"], 2);

    let mut expected = vec![labelled.clone(), via_container.clone()];
    expected.sort();
    assert_eq!(env.mirrored(&remote), expected);
    let skipped = events_named(&sidecar, "volume skipped");
    let skipped: Vec<&str> = skipped
        .iter()
        .map(|e| e["fields"]["volume"].as_str().unwrap())
        .collect();
    assert!(skipped.contains(&opted_out.as_str()), "{skipped:?}");
    assert!(skipped.contains(&odd.as_str()), "{skipped:?}");
    assert_running_not_paused(&weird);

    // `plan` shows the same, and changes nothing.
    let plan = docker(
        &{
            let mut args = vec!["run".to_string(), "--rm".into()];
            args.extend(env.sidecar_args(&env.sidecar_env(&remote, &[])));
            args.extend([SIDECAR_IMAGE.to_string(), "plan".into()]);
            args
        }
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    assert!(plan.contains(&format!("volume {labelled}")), "{plan}");
    assert!(plan.contains(&format!("volume {via_container}")), "{plan}");
    assert!(!plan.contains(&format!("volume {plain}")), "{plan}");
    assert!(plan.contains(&format!("skipped volume {odd}")), "{plan}");
}

#[test]
fn one_compose_project_freezes_and_thaws_together() {
    let env = Env::new("group");
    let remote = env.remote();
    let project = env.project_label();
    let app_data = env.volume("app-data", &["backup.enable=true", &project]);
    let db_data = env.volume("db-data", &["backup.enable=true", &project]);
    let app = env.app("app", &app_data, "sleep infinity");
    let db = env.app("db", &db_data, "sleep infinity");
    let since = engine_time();
    let sidecar = env.sidecar(&remote, &[]);
    let finished = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(finished["fields"]["outcome"], "success", "{finished}");

    let thawed = events_named(&sidecar, "group thawed");
    assert_eq!(thawed.len(), 1, "one group: {thawed:?}");
    assert_eq!(thawed[0]["fields"]["group"], env.name.as_str());
    let mut members: Vec<&str> = thawed[0]["fields"]["containers"]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    members.sort();
    assert_eq!(members, vec![app.as_str(), db.as_str()]);
    // Both were paused before either was unpaused.
    let events = engine_events(
        &since,
        &format!("label={project}"),
        "{{.Action}} {{.Actor.Attributes.name}}",
    );
    let actions: Vec<&String> = events
        .iter()
        .filter(|l| l.starts_with("pause") || l.starts_with("unpause"))
        .collect();
    assert_eq!(actions.len(), 4, "{events:?}");
    assert!(
        actions[..2].iter().all(|a| a.starts_with("pause ")),
        "{actions:?}"
    );
    assert!(
        actions[2..].iter().all(|a| a.starts_with("unpause ")),
        "{actions:?}"
    );
    assert_running_not_paused(&app);
    assert_running_not_paused(&db);
}

#[test]
fn snapshot_runs_archive_the_mirror_and_sync_runs_do_not() {
    let env = Env::new("borg");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(
        &volume,
        "mkdir -p /data/a/b && echo one > /data/a/b/one && ln -s a/b/one /data/link && \
         head -c 300000 /dev/urandom > /data/blob && chmod 640 /data/blob && chown 999:999 /data/blob",
    );
    // Start: mirror + snapshot. Every minute: mirror only.
    let sidecar = env.sidecar(
        &remote,
        &[
            ("BACKUP_SYNC_SCHEDULE", "* * * * *"),
            ("BACKUP_ARCHIVE_PREFIX", "test"),
        ],
    );
    let finished = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(finished["fields"]["outcome"], "success", "{finished}");
    let archive = finished["fields"]["archive"].as_str().unwrap().to_string();
    assert!(archive.starts_with("test-20"), "{archive}");
    assert_eq!(env.archives(&remote), vec![archive.clone()]);
    let created = events_named(&sidecar, "snapshot created");
    assert_eq!(created.len(), 1);
    assert!(created[0]["fields"]["original_bytes"].as_u64().unwrap() >= 300_000);

    // The archive holds exactly the mirror.
    env.on_remote(
        &remote,
        &format!(
            "mkdir -p /tmp/extract && cd /tmp/extract && \
             BORG_PASSPHRASE='{PASSPHRASE}' borg extract /backup/borg::{archive}"
        ),
    );
    assert_eq!(
        remote_digest(&env, &remote, &format!("/tmp/extract/{volume}")),
        remote_digest(&env, &remote, &format!("/backup/mirror/{volume}")),
    );
    assert_eq!(
        remote_digest(&env, &remote, &format!("/backup/mirror/{volume}")),
        volume_digest(&env, &volume)
    );

    // A change, then the next scheduled run that starts after it: mirrored, but no new archive.
    env.in_volume(&volume, "echo two > /data/a/two");
    let started_before = events_named(&sidecar, "run started").len();
    let started = wait_for_events(
        &sidecar,
        "run started",
        started_before + 1,
        Duration::from_secs(150),
    );
    let runs = wait_for_events(&sidecar, "run finished", started_before + 1, RUN_TIMEOUT);
    for (start, end) in started[1..].iter().zip(&runs[1..]) {
        assert_eq!(start["fields"]["trigger"], "schedule");
        assert_eq!(start["fields"]["snapshot"], false);
        assert_eq!(end["fields"]["outcome"], "success", "{end}");
        assert_eq!(end["fields"]["archive"], "");
    }
    assert_eq!(
        env.on_remote(&remote, &format!("cat /backup/mirror/{volume}/a/two")),
        "two\n"
    );
    assert_eq!(env.archives(&remote), vec![archive]);
}
