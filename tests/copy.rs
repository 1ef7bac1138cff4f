//! The second copy (issue "3-2-1"): the guarded remote copies its backups to a place its owner
//! configured in guard.conf, with real servers for each kind (tests/common/copy_targets.rs): an
//! OpenSSH sftp server, `rclone serve webdav`, a second borg repository on a second ssh host, and
//! moto's S3 server. The sidecar only asks; it never holds the place's address or credentials.

mod common;

use std::time::{Duration, Instant};

use common::copy_targets::*;
use common::receivers::start_receivers;
use common::*;
use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);
const COPY_TIMEOUT: Duration = Duration::from_secs(180);
/// Where the guard keeps the still view of the repository it replicates.
const STAGING: &str = "/backup/.borg.copy";

/// The `copy finished` events so far, waiting for `count` of them.
fn copies(sidecar: &str, count: usize) -> Vec<Value> {
    wait_for_events(sidecar, "copy finished", count, COPY_TIMEOUT)
}

fn outcome(event: &Value) -> &str {
    event["fields"]["outcome"].as_str().unwrap_or("")
}

fn field_u64(event: &Value, name: &str) -> u64 {
    event["fields"][name].as_u64().unwrap_or(0)
}

/// Sets retention lines in the remote's guard.conf (before the copy lines, which the fixture
/// appends).
fn retention(env: &Env, remote: &Remote, lines: &str) {
    env.on_remote(
        remote,
        &format!("printf '{lines}' >> {GUARD_CONF}; {GUARD} --setup < /dev/null > /dev/null"),
    );
}

/// Writes `mib` MiB of random data into the volume's file `name`.
fn random_file(env: &Env, volume: &str, name: &str, mib: u32) {
    env.in_volume(
        volume,
        &format!("head -c {}M /dev/urandom > /data/{name}", mib),
    );
}

/// The copy, fetched back onto the remote into a scratch directory, opened by borg as the
/// repository it is (its own security directory, as after a loss): its archives.
fn archives_in_the_copy(env: &Env, remote: &Remote, target: &CopyTarget) -> Vec<String> {
    env.on_remote(remote, "rm -rf /tmp/fetched /tmp/borg-base");
    env.rclone(remote, &["copy", &target.target, "/tmp/fetched"]);
    let out = env.on_remote(
        remote,
        &format!(
            "BORG_BASE_DIR=/tmp/borg-base BORG_PASSPHRASE='{PASSPHRASE}' \
             BORG_RELOCATED_REPO_ACCESS_IS_OK=yes borg list --short /tmp/fetched"
        ),
    );
    env.on_remote(remote, "rm -rf /tmp/fetched /tmp/borg-base");
    out.lines().map(String::from).collect()
}

/// The guard's check of the copy against what it copied, asked through the sidecar's own key.
fn guard_check(remote: &Remote) -> Value {
    let out = docker_output(&[
        "exec",
        &remote.name,
        "sh",
        "-c",
        &format!("SSH_ORIGINAL_COMMAND='backup-sidecar-guard copy-check 60' {GUARD} < /dev/null"),
    ]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "copy-check printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn a_copy_follows_each_snapshot_and_survives_prune_and_compaction() {
    let env = Env::new("copy-sftp");
    let remote = env.remote();
    // A tight retention, so that every run's prune marks the archive before it.
    retention(
        &env,
        &remote,
        "keep_daily = 1\\nkeep_weekly = 0\\nkeep_monthly = 0\\n",
    );
    let target = env.copy_target(&remote, CopyKind::Sftp);
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    random_file(&env, &volume, "base", 8);
    let sidecar = env.sidecar(&remote, &[("BACKUP_ARCHIVE_PREFIX", "nas")]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let first = copies(&sidecar, 1).remove(0);
    assert_eq!(outcome(&first), "success", "{first}");
    assert_eq!(first["fields"]["kind"], "rclone", "{first}");
    assert_eq!(
        first["fields"]["target"], "offsite:/backup/copy (sftp)",
        "the target as the guard shows it: {first}"
    );
    let archive = run["fields"]["archive"].as_str().unwrap().to_string();
    assert_eq!(first["fields"]["newest_archive"], archive.as_str());
    assert!(field_u64(&first, "bytes") > 8 << 20, "{first}");
    let checked = guard_check(&remote);
    assert_eq!(checked["ok"], true, "{checked}");
    assert_eq!(
        checked["hash"], true,
        "sftp with md5sum compares hashes: {checked}"
    );
    assert_eq!(
        archives_in_the_copy(&env, &remote, &target),
        env.archives(&remote)
    );
    // No lock is left, in the repository or in the copy.
    env.on_remote(&remote, "test ! -e /backup/borg/lock.exclusive");
    assert!(
        !env.copy_files(&target, &remote)
            .iter()
            .any(|(p, _)| p.starts_with("lock.")),
        "the copy carries no lock"
    );

    // Nine more runs, each with a little new data: each copy sends what is new.
    let mut sent = vec![(
        1,
        field_u64(&first, "bytes"),
        first["fields"]["seconds"].clone(),
    )];
    for n in 2..=10 {
        random_file(&env, &volume, &format!("new-{n}"), 1);
        let run = run_now(&sidecar, n - 1, RUN_TIMEOUT);
        assert_eq!(run["fields"]["outcome"], "success", "{run}");
        let copy = copies(&sidecar, n).remove(n - 1);
        assert_eq!(outcome(&copy), "success", "{copy}");
        sent.push((
            n,
            field_u64(&copy, "bytes"),
            copy["fields"]["seconds"].clone(),
        ));
    }
    println!("copies to sftp (repository after each run):\n| run | sent bytes | seconds |");
    for (n, bytes, seconds) in &sent {
        println!("| {n} | {bytes} | {seconds} |");
    }
    assert!(
        sent[1].1 < sent[0].1 / 2,
        "an incremental copy sends what is new, not the repository: {sent:?}"
    );
    // Prune marked every archive but the newest (keep_daily 1); append-only, so the copy still
    // holds all their data, and the repository lists one archive.
    assert_eq!(env.archives(&remote).len(), 1);

    // The owner's compaction frees the pruned data; the next copy moves what it deleted aside
    // (TARGET.deleted/<time>), never deletes it, and the copy opens as the repository does.
    assert!(
        env.copy_deleted_files(&target, &remote)
            .iter()
            .all(|(p, _)| !p.contains("data/"))
    );
    env.on_remote(
        &remote,
        &format!("printf %s '{PASSPHRASE}' | {GUARD} --compact > /dev/null"),
    );
    random_file(&env, &volume, "after-compaction", 1);
    let run = run_now(&sidecar, 10, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let copy = copies(&sidecar, 11).remove(10);
    assert_eq!(outcome(&copy), "success", "{copy}");
    let aside = env.copy_deleted_files(&target, &remote);
    assert!(
        aside.iter().any(|(p, _)| p.contains("data/")),
        "segments compaction deleted are kept aside in the copy: {aside:?}"
    );
    assert_eq!(
        archives_in_the_copy(&env, &remote, &target),
        env.archives(&remote)
    );
    assert_eq!(guard_check(&remote)["ok"], true);

    // status says where the copy goes and how old its newest archive is.
    let status = docker(&["exec", &sidecar, "backup-sidecar", "status", "--json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["copy"]["kind"], "rclone", "{status}");
    assert_eq!(
        status["copy"]["newest_archive"], run["fields"]["archive"],
        "{status}"
    );
    assert!(
        status["copy"]["newest_archive_age_seconds"]
            .as_i64()
            .unwrap()
            < 600
    );
    assert!(
        status["health"]
            .as_str()
            .unwrap()
            .contains("the copy's newest archive"),
        "{status}"
    );
    let check = docker_output(&["exec", &sidecar, "backup-sidecar", "check"]);
    let check = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.contains(
            "ok    second copy: rclone to offsite:/backup/copy (sftp); the last copy succeeded"
        ),
        "{check}"
    );
}

#[test]
fn a_copy_to_webdav_is_checked_on_the_check_schedule() {
    let env = Env::new("copy-webdav");
    let remote = env.remote();
    let target = env.copy_target(&remote, CopyKind::Webdav);
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    random_file(&env, &volume, "base", 2);
    let sidecar = env.sidecar(&remote, &[("BACKUP_CHECK_SCHEDULE", "* * * * *")]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let copy = copies(&sidecar, 1).remove(0);
    assert_eq!(outcome(&copy), "success", "{copy}");
    assert_eq!(copy["fields"]["target"], "offsite:backup/borg (webdav)");
    let checked = wait_for_events(&sidecar, "copy checked", 1, COPY_TIMEOUT).remove(0);
    assert_eq!(outcome(&checked), "success", "{checked}");
    assert_eq!(
        checked["fields"]["hashes"], false,
        "WebDAV keeps no hashes: sizes only, and the log says so: {checked}"
    );
    assert_eq!(
        archives_in_the_copy(&env, &remote, &target),
        env.archives(&remote)
    );

    // Rot in the copy: a segment there replaced by a shorter one, through the server. The next
    // check fails and says how.
    let segments = env.rclone(
        &remote,
        &[
            "lsf",
            "-R",
            "--files-only",
            &format!("{}/data", target.target),
        ],
    );
    let segment = segments
        .lines()
        .next()
        .expect("the copy has a data segment")
        .to_string();
    env.on_remote(
        &remote,
        &format!(
            "printf rot | rclone --config {RCLONE_CONF} rcat {}/data/{segment}",
            target.target
        ),
    );
    let checks = wait_for_events(&sidecar, "copy checked", 3, COPY_TIMEOUT);
    let failed = checks
        .iter()
        .skip(1)
        .find(|c| outcome(c) == "failed")
        .unwrap_or_else(|| panic!("a check after the rot fails: {checks:?}"));
    assert!(
        failed["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("1 file(s) differ"),
        "{failed}"
    );
    let status = docker(&["exec", &sidecar, "backup-sidecar", "status", "--json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert!(status["copy"]["last_check_error"].is_string(), "{status}");
}

#[test]
fn a_second_borg_repository_is_made_of_the_mirror() {
    let env = Env::new("copy-borg");
    let remote = env.remote();
    let target = env.copy_target(&remote, CopyKind::Borg);
    // guard --setup makes the second repository with its own passphrase.
    let setup = env.on_remote(&remote, &format!("{GUARD} --setup < /dev/null"));
    assert!(
        setup.contains("copy borg to ssh://…/backup/copy-borg"),
        "{setup}"
    );
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "echo first > /data/file");
    let sidecar = env.sidecar(&remote, &[("BACKUP_ARCHIVE_PREFIX", "nas")]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let copy = copies(&sidecar, 1).remove(0);
    assert_eq!(outcome(&copy), "success", "{copy}");
    assert_eq!(copy["fields"]["kind"], "borg");
    assert_eq!(copy["fields"]["target"], "ssh://…/backup/copy-borg");
    let archives = env.copy_archives(&target, &remote);
    assert_eq!(archives.len(), 1, "{archives:?}");
    assert!(archives[0].starts_with("nas-"), "{archives:?}");
    let file = env.copy_borg(
        &target,
        &remote,
        &[
            "extract",
            "--stdout",
            &format!("{}::{}", target.target, archives[0]),
            &format!("{volume}/file"),
        ],
    );
    assert_eq!(file, "first\n");

    // Killed mid-way: while the copy's borg create runs (slowed by a rate limit of the owner's),
    // the borg serving it on the second host is killed outright (that host rebooted, say); the
    // second repository's lock stays behind, and the next copy breaks it and completes.
    env.on_remote(
        &remote,
        &format!("echo 'copy_bwlimit = 64K' >> {GUARD_CONF}"),
    );
    random_file(&env, &volume, "big", 6);
    docker(&["kill", "-s", "USR1", &sidecar]);
    wait_for_events(&sidecar, "copy started", 2, COPY_TIMEOUT);
    std::thread::sleep(Duration::from_secs(4));
    let container = target.container.as_deref().unwrap();
    docker(&["exec", container, "pkill", "-KILL", "-f", "[b]org serve"]);
    let failed = copies(&sidecar, 2).remove(1);
    assert_eq!(outcome(&failed), "failed", "{failed}");
    docker(&[
        "exec",
        container,
        "test",
        "-e",
        &format!("{BORG_COPY_PATH}/lock.exclusive"),
    ]);
    env.on_remote(&remote, &format!("sed -i '/copy_bwlimit/d' {GUARD_CONF}"));
    let run = run_now(&sidecar, 2, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let last = copies(&sidecar, 3).remove(2);
    assert_eq!(outcome(&last), "success", "{last}");
    let complete: Vec<String> = env
        .copy_archives(&target, &remote)
        .into_iter()
        .filter(|a| !a.ends_with(".checkpoint"))
        .collect();
    assert_eq!(complete.len(), 2, "{complete:?}");
    env.copy_borg(&target, &remote, &["check", &target.target]);
}

#[test]
fn a_copy_to_s3_against_moto() {
    let env = Env::new("copy-s3");
    let remote = env.remote();
    let target = env.copy_target(&remote, CopyKind::S3);
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    random_file(&env, &volume, "base", 2);
    // On a schedule of its own, the copy does not follow the snapshot...
    let sidecar = env.sidecar(&remote, &[("BACKUP_COPY_SCHEDULE", NEVER)]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    std::thread::sleep(Duration::from_secs(8));
    assert!(events_named(&sidecar, "copy started").is_empty());
    docker(&["rm", "-f", &sidecar]);
    // ... it comes when its schedule fires.
    let sidecar = env.sidecar(
        &remote,
        &[
            ("BACKUP_COPY_SCHEDULE", "* * * * *"),
            ("BACKUP_RUN_ON_START", "false"),
        ],
    );
    let copy = copies(&sidecar, 1).remove(0);
    assert_eq!(outcome(&copy), "success", "{copy}");
    assert_eq!(copy["fields"]["target"], "offsite:copybucket/borg (s3)");
    assert_eq!(copy["fields"]["newest_archive"], run["fields"]["archive"]);
    let checked = guard_check(&remote);
    assert_eq!(checked["ok"], true, "{checked}");
    assert_eq!(checked["hash"], true, "S3 keeps MD5s: {checked}");
    assert_eq!(
        archives_in_the_copy(&env, &remote, &target),
        env.archives(&remote)
    );
    // Nothing of the place's address or credentials reached the sidecar's log.
    let logs = docker_output(&["logs", &sidecar]);
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
    for secret in &target.secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "{secret} in the sidecar's log"
        );
    }
}

#[test]
fn an_unreachable_copy_never_fails_the_snapshot_and_is_told() {
    let env = Env::new("copy-down");
    let remote = env.remote();
    let target = env.copy_target(&remote, CopyKind::Sftp);
    let receivers = start_receivers(&env);
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    random_file(&env, &volume, "base", 1);
    env.stop_copy_target(&target);
    let sidecar = env.sidecar(
        &remote,
        &[
            ("BACKUP_NOTIFY_URLS", &receivers.webhook_url()),
            ("BACKUP_COPY_MAX_AGE", "20s"),
            ("BACKUP_MAX_AGE", "1h"),
        ],
    );
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(
        run["fields"]["outcome"], "success",
        "the snapshot does not wait for the copy: {run}"
    );
    assert!(!run["fields"]["archive"].as_str().unwrap_or("").is_empty());
    let failed = copies(&sidecar, 1).remove(0);
    assert_eq!(outcome(&failed), "failed", "{failed}");
    let error = failed["fields"]["error"].as_str().unwrap();
    assert!(
        !error.contains(target.container.as_deref().unwrap()),
        "the address stays on the remote: {error}"
    );
    let records = receivers.wait_for(
        |r| {
            r["webhook"].as_array().is_some_and(|w| {
                w.iter().any(|m| {
                    m["title"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("backup copy failed"))
                })
            })
        },
        Duration::from_secs(30),
    );
    let told = records["webhook"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["title"]
                .as_str()
                .unwrap_or("")
                .starts_with("backup copy failed")
        })
        .unwrap();
    assert_eq!(told["outcome"], "failed", "{told}");
    assert_eq!(told["stage"], "copy", "{told}");
    // Stale after BACKUP_COPY_MAX_AGE, with the reason.
    std::thread::sleep(Duration::from_secs(21));
    let health = docker_output(&["exec", &sidecar, "backup-sidecar", "health"]);
    let said = String::from_utf8_lossy(&health.stdout);
    assert!(!health.status.success(), "{said}");
    assert!(said.contains("BACKUP_COPY_MAX_AGE (20s)"), "{said}");
    assert!(said.contains("the last copy failed"), "{said}");

    // The place is back: the next snapshot's copy catches up, and the recovery is told.
    env.start_copy_target(&target);
    let run = run_now(&sidecar, 1, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let copy = copies(&sidecar, 2).remove(1);
    assert_eq!(outcome(&copy), "success", "{copy}");
    receivers.wait_for(
        |r| {
            r["webhook"].as_array().is_some_and(|w| {
                w.iter()
                    .any(|m| m["outcome"] == "recovered" && m["stage"] == "copy")
            })
        },
        Duration::from_secs(30),
    );
    let health = docker_output(&["exec", &sidecar, "backup-sidecar", "health"]);
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stdout)
    );
    assert_eq!(
        archives_in_the_copy(&env, &remote, &target),
        env.archives(&remote),
        "both archives are in the copy"
    );
}

#[test]
fn a_killed_copy_leaves_no_lock_and_the_next_one_completes() {
    let env = Env::new("copy-kill");
    let remote = env.remote();
    let target = env.copy_target(&remote, CopyKind::Sftp);
    // The owner's rate limit makes the copy of 4 MiB last about 16 s.
    env.on_remote(
        &remote,
        &format!("echo 'copy_bwlimit = 256K' >> {GUARD_CONF}"),
    );
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    random_file(&env, &volume, "base", 4);
    let sidecar = env.sidecar(&remote, &[("BACKUP_PROGRESS_INTERVAL", "2s")]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let progress: Vec<Value> = wait_for_events(&sidecar, "progress", 1, COPY_TIMEOUT)
        .into_iter()
        .filter(|e| e["fields"]["stage"] == "copy")
        .collect();
    let progress = match progress.first() {
        Some(p) => p.clone(),
        None => {
            std::thread::sleep(Duration::from_secs(3));
            events_named(&sidecar, "progress")
                .into_iter()
                .find(|e| e["fields"]["stage"] == "copy")
                .expect("the copy reports its progress")
        }
    };
    assert!(progress["fields"]["rate"].is_string(), "{progress}");
    assert!(progress["fields"]["eta"].is_string(), "{progress}");
    docker(&["kill", &sidecar]);
    let killed = Instant::now();
    wait_until(
        "the killed copy's rclone to end",
        Duration::from_secs(60),
        || {
            env.on_remote(&remote, "pgrep -x rclone || true")
                .trim()
                .is_empty()
        },
    );
    println!(
        "the killed copy's rclone ended {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    env.on_remote(&remote, "test ! -e /backup/borg/lock.exclusive");
    assert!(
        events_named(&sidecar, "copy finished").is_empty(),
        "the copy was killed before it finished"
    );

    // The next start: a snapshot, then a copy that completes.
    env.on_remote(&remote, &format!("sed -i '/copy_bwlimit/d' {GUARD_CONF}"));
    docker(&["start", &sidecar]);
    let copy = copies(&sidecar, 1).remove(0);
    assert_eq!(outcome(&copy), "success", "{copy}");
    assert_eq!(guard_check(&remote)["ok"], true);
    assert_eq!(
        archives_in_the_copy(&env, &remote, &target),
        env.archives(&remote)
    );
    env.on_remote(&remote, &format!("test -d {STAGING}"));
}

#[test]
fn an_older_guard_refuses_the_copy_settings_with_a_clear_message() {
    let env = Env::new("copy-old-guard");
    let remote = env.remote();
    // The guard as it was before copies (version 1), from this repository's history.
    let old = std::process::Command::new("git")
        .args(["show", "5d00e7e:compose/remote/guard.py"])
        .output()
        .expect("git runs");
    assert!(
        old.status.success(),
        "the version-1 guard is in the history: {}",
        String::from_utf8_lossy(&old.stderr)
    );
    let file = env.ssh_path("guard-v1.py");
    std::fs::write(&file, &old.stdout).unwrap();
    docker(&[
        "cp",
        file.to_str().unwrap(),
        &format!("{}:{GUARD}", remote.name),
    ]);
    env.on_remote(&remote, &format!("chmod 755 {GUARD}; printf 'copy = rclone\\ncopy_target = offsite:borg\\n' >> {GUARD_CONF}"));
    let mut args: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--label".into(),
        TEST_LABEL.into(),
    ];
    args.extend(env.sidecar_args(&env.sidecar_env(&remote, &[])));
    args.extend([SIDECAR_IMAGE.to_string(), "check".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = docker_output(&args);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("unknown setting 'copy'"), "{said}");
    assert!(said.contains("older than the copy settings"), "{said}");
}
