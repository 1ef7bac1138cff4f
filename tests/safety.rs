//! End to end: bad input stops the sidecar before it touches anything; a wrong host key is refused;
//! a frozen group is thawed on SIGTERM and when the freeze lasts too long; an app that starts
//! while its volume is copied unfrozen is frozen by the group's second try.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Makes the remote's second rsync call (the catch-up pass of the first volume) hang for a minute,
/// so a test can act while the group is frozen; with [`NETWORK_CATCH_UP`], that pass runs inside
/// the freeze.
const SLOW_CATCH_UP: &str = "printf '%s\\n' '#!/bin/sh' \
    'n=$(cat /tmp/rsync-calls 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/rsync-calls' \
    '[ \"$n\" -ge 2 ] && sleep 60' 'exec /usr/bin/rsync \"$@\"' > /usr/local/bin/rsync && \
    chmod +x /usr/local/bin/rsync";

/// The catch-up over the network, inside the freeze (the capture's freeze never waits on it).
const NETWORK_CATCH_UP: (&str, &str) = ("BACKUP_CATCH_UP", "network");

/// An app container of the test's project using a labelled volume.
fn app(env: &Env) -> String {
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "echo data > /data/file");
    env.app("app", &volume, "sleep infinity")
}

#[test]
fn bad_input_exits_2_naming_the_variable_and_touches_nothing() {
    let env = Env::new("badinput");
    let remote = env.remote();
    let app = app(&env);
    let loose_key = env.ssh_path("loose_key");
    std::fs::copy(env.ssh_path("id_ed25519"), &loose_key).unwrap();
    std::fs::set_permissions(&loose_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let since = engine_time();

    let cases: &[(&str, &str, &str)] = &[
        ("BACKUP_REMOTE", "", "BACKUP_REMOTE"),
        ("BACKUP_REMOTE_DIR", "", "BACKUP_REMOTE_DIR"),
        ("BACKUP_REMOTE", "no-at-sign", "BACKUP_REMOTE"),
        ("BACKUP_REMOTE_PORT", "65536", "BACKUP_REMOTE_PORT"),
        ("BACKUP_SYNC_SCHEDULE", "0 3 */2 *", "BACKUP_SYNC_SCHEDULE"),
        (
            "BACKUP_SNAPSHOT_SCHEDULE",
            "0 25 * * *",
            "BACKUP_SNAPSHOT_SCHEDULE",
        ),
        ("BACKUP_PAUSE_TIMEOUT", "a minute", "BACKUP_PAUSE_TIMEOUT"),
        ("BACKUP_SSH_KEY_FILE", "/ssh/missing", "BACKUP_SSH_KEY_FILE"),
        (
            "BACKUP_KNOWN_HOSTS_FILE",
            "/ssh/missing",
            "BACKUP_KNOWN_HOSTS_FILE",
        ),
        (
            "BACKUP_SSH_KEY_FILE",
            "/ssh/loose_key",
            "BACKUP_SSH_KEY_FILE",
        ),
        ("LOG_FORMAT", "yaml", "LOG_FORMAT"),
        ("BACKUP_REMOTE_DIR", "backup/mirror", "BACKUP_REMOTE_DIR"),
        (
            "BACKUP_BORG_PASSPHRASE_FILE",
            "/ssh/missing",
            "BACKUP_BORG_PASSPHRASE_FILE",
        ),
    ];
    for (variable, value, named) in cases {
        let mut env_vars = env.sidecar_env(&remote, &[(variable, value)]);
        if *variable == "BACKUP_BORG_PASSPHRASE_FILE" {
            env_vars.retain(|(k, _)| k != "BACKUP_BORG_PASSPHRASE");
            env_vars.push((variable.to_string(), value.to_string()));
        }
        let mut args = vec![
            "run".to_string(),
            "--rm".into(),
            "--label".into(),
            TEST_LABEL.into(),
        ];
        args.extend(env.sidecar_args(&env_vars));
        args.push(SIDECAR_IMAGE.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = docker_output(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{variable}={value:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{variable}={value:?}: one line, got {stderr}"
        );
        assert!(
            lines[0].contains(named),
            "{variable}={value:?}: {:?} does not name {named}",
            lines[0]
        );
        assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", out.stdout);
    }

    // No container was paused, stopped or started by any of them.
    let events = engine_events(&since, &format!("container={app}"), "{{.Action}}");
    assert!(events.is_empty(), "the app saw: {events:?}");
    assert_running_not_paused(&app);
    assert!(env.mirrored(&remote).is_empty());
}

#[test]
fn a_changed_host_key_is_refused_and_nothing_is_sent() {
    let env = Env::new("hostkey");
    let remote = env.remote();
    let app = app(&env);
    // known_hosts pins some other key for the remote's name.
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("k");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    std::fs::write(
        env.ssh_path("known_hosts"),
        format!("{} {}\n", remote.name, public.join(" ")),
    )
    .unwrap();

    let sidecar = env.sidecar(&remote, &[]);
    let finished = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(finished["fields"]["outcome"], "failed");
    let error = finished["fields"]["error"].as_str().unwrap();
    assert!(error.contains("host key"), "{error}");
    assert!(error.contains("SHA256:"), "the fingerprint it saw: {error}");
    assert!(
        env.mirrored(&remote).is_empty(),
        "the remote received nothing"
    );
    assert!(
        events_named(&sidecar, "group thawed").is_empty(),
        "nothing was frozen"
    );
    assert_running_not_paused(&app);
}

#[test]
fn sigterm_while_frozen_thaws_and_exits_0_within_10s() {
    let env = Env::new("sigterm");
    let remote = env.remote();
    let app = app(&env);
    env.on_remote(&remote, SLOW_CATCH_UP);
    let sidecar = env.sidecar(&remote, &[NETWORK_CATCH_UP]);
    wait_until("the group to be frozen", RUN_TIMEOUT, || state(&app).1);

    let started = Instant::now();
    docker(&["stop", "--time", "10", &sidecar]);
    let took = started.elapsed();
    let exit = docker(&["inspect", "--format", "{{.State.ExitCode}}", &sidecar]);
    assert_eq!(exit.trim(), "0", "exit status after SIGTERM");
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
    assert_running_not_paused(&app);
    let thawed = events_named(&sidecar, "group thawed");
    assert_eq!(thawed.len(), 1);
    let finished = events_named(&sidecar, "run finished");
    assert_eq!(finished[0]["fields"]["outcome"], "failed");
    assert!(events_named(&sidecar, "snapshot created").is_empty());
    eprintln!("docker stop took {took:?}");
}

#[test]
fn a_freeze_past_the_pause_timeout_is_abandoned_and_thawed() {
    let env = Env::new("timeout");
    let remote = env.remote();
    let app = app(&env);
    env.on_remote(&remote, SLOW_CATCH_UP);
    let sidecar = env.sidecar(&remote, &[("BACKUP_PAUSE_TIMEOUT", "2s"), NETWORK_CATCH_UP]);
    let finished = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(finished["fields"]["outcome"], "failed");
    let error = finished["fields"]["error"].as_str().unwrap();
    assert!(error.contains("BACKUP_PAUSE_TIMEOUT"), "{error}");
    let thawed = events_named(&sidecar, "group thawed");
    let pause_ms = thawed[0]["fields"]["pause_ms"].as_u64().unwrap();
    assert!((2000..3000).contains(&pause_ms), "pause_ms {pause_ms}");
    assert!(
        env.archives(&remote).is_empty(),
        "no snapshot after a failed volume"
    );
    assert_running_not_paused(&app);
}

/// Makes the remote's first rsync call wait `seconds` before it starts.
fn slow_first_rsync(seconds: u32) -> String {
    format!(
        "printf '%s\\n' '#!/bin/sh' \
         'n=$(cat /tmp/rsync-calls 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/rsync-calls' \
         '[ \"$n\" -eq 1 ] && sleep {seconds}' 'exec /usr/bin/rsync \"$@\"' > /usr/local/bin/rsync && \
         chmod +x /usr/local/bin/rsync"
    )
}

#[test]
fn an_app_started_during_an_unfrozen_pass_is_frozen_by_the_groups_second_try() {
    let env = Env::new("newcomer");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "echo 0 > /data/a && echo 0 > /data/b");
    env.on_remote(&remote, &slow_first_rsync(8));
    // Planned with nobody using the volume: one pass, nothing to freeze.
    let sidecar = env.sidecar(&remote, &[]);
    wait_for_events(&sidecar, "run started", 1, RUN_TIMEOUT);
    std::thread::sleep(Duration::from_secs(2));
    // The app comes (back) while that pass runs: `a` and `b` always hold the same count, or `a`
    // one more.
    let app = env.app(
        "app",
        &volume,
        "i=$(cat /data/a); while :; do i=$((i+1)); echo $i > /data/a.new && mv /data/a.new /data/a; \
         echo $i > /data/b.new && mv /data/b.new /data/b; done",
    );
    let finished = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(finished["fields"]["outcome"], "success", "{finished}");
    let redone = events_named(&sidecar, "group redone");
    assert_eq!(redone.len(), 1, "{redone:?}");
    let containers = redone[0]["fields"]["containers"].as_str().unwrap();
    assert!(containers.contains(&app), "{containers}");
    let thawed = events_named(&sidecar, "group thawed");
    assert_eq!(thawed.len(), 1, "the second try froze the app: {thawed:?}");
    let frozen = thawed[0]["fields"]["containers"].as_str().unwrap();
    assert!(frozen.contains(&app), "{frozen}");
    let archive = finished["fields"]["archive"].as_str().unwrap();
    let count = |name: &str| -> u64 {
        let text = env.archive_file(&remote, archive, &format!("{volume}/{name}"));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {text:?}"))
    };
    let (a, b) = (count("a"), count("b"));
    assert!(a == b || a == b + 1, "a={a} b={b}: not one instant");
    assert!(a > 0, "the archive holds the app's writes");
    assert_running_not_paused(&app);
}
