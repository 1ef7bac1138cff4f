//! The fault suite: each case injects one fault into a real run (real engine, remote and sidecar
//! image) and checks that no container is left paused or stopped by us, that no snapshot was taken
//! from an incomplete mirror, that the failure was logged with its cause, and that the next run
//! succeeds and leaves mirror == volume. It ends by printing one table.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What every app of the suite does: write the time, all the time.
const CLOCK: &str = "while :; do date +%s%N > /data/clock; sleep 0.05; done";

/// A fault scenario: a remote, an app (compose project of the test) with a labelled volume, and
/// the sidecar once started.
struct Scenario {
    env: Env,
    remote: Remote,
    apps: Vec<String>,
    volumes: Vec<String>,
    sidecar: String,
}

/// What a case reports for the table.
struct Row {
    fault: &'static str,
    outcome: String,
    frozen: usize,
    lost: usize,
    recovered: bool,
    note: String,
}

impl Scenario {
    fn new(test: &str, remote_args: &[&str]) -> Scenario {
        let env = Env::new(test);
        let remote = env.remote_with(remote_args);
        let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
        env.in_volume(
            &volume,
            "mkdir -p /data/d && for i in $(seq 1 50); do head -c 20000 /dev/urandom > /data/d/f$i; done",
        );
        let app = env.app("app", &volume, CLOCK);
        Scenario {
            env,
            remote,
            apps: vec![app],
            volumes: vec![volume],
            sidecar: String::new(),
        }
    }

    /// Adds a second app container of the same project with its own volume.
    fn add_app(&mut self, suffix: &str) {
        let volume = self.env.volume(
            &format!("{suffix}-data"),
            &["backup.enable=true", &self.env.project_label()],
        );
        let app = self.env.app(suffix, &volume, CLOCK);
        self.apps.push(app);
        self.volumes.push(volume);
    }

    fn start(&mut self, extra: &[(&str, &str)], args: &[&str]) {
        let mut env = vec![
            ("BACKUP_RETRY_ATTEMPTS", "3"),
            ("BACKUP_RETRY_DELAY", "1s"),
            ("BACKUP_BORG_LOCK_WAIT", "3s"),
        ];
        env.extend_from_slice(extra);
        self.sidecar = self.env.sidecar_with(&self.remote, &env, args);
    }

    fn on_remote(&self, script: &str) -> String {
        self.env.on_remote(&self.remote, script)
    }

    /// The `n`th `run finished` event (1-based).
    fn run(&self, n: usize) -> serde_json::Value {
        wait_for_events(&self.sidecar, "run finished", n, RUN_TIMEOUT).remove(n - 1)
    }

    /// Asserts run `n` failed with `cause` in its error and took no snapshot; returns the error.
    fn expect_failure(&self, n: usize, cause: &str) -> String {
        let error = self.failed_run(n, cause);
        self.assert_no_new_archive();
        error
    }

    /// Asserts run `n` failed with `cause` in its error; returns the error.
    fn failed_run(&self, n: usize, cause: &str) -> String {
        let run = self.run(n);
        assert_eq!(run["fields"]["outcome"], "failed", "{run}");
        let error = run["fields"]["error"].as_str().unwrap_or("").to_string();
        assert!(error.contains(cause), "expected {cause:?} in {error:?}");
        assert_eq!(
            run["fields"]["archive"], "",
            "no snapshot from a failed run"
        );
        error
    }

    /// Every case starts with an empty repository and fails before its recovery run.
    fn assert_no_new_archive(&self) {
        assert_eq!(
            self.env.archives(&self.remote).len(),
            0,
            "no snapshot from an incomplete mirror"
        );
    }

    /// How many app containers are paused or not running.
    fn frozen(&self) -> usize {
        self.apps
            .iter()
            .filter(|app| docker_output(&["inspect", app.as_str()]).status.success())
            .filter(|app| state(app) != ("running".to_string(), false))
            .count()
    }

    /// Volumes whose mirror differs from them.
    fn lost(&self) -> usize {
        self.volumes
            .iter()
            .filter(|v| {
                docker_output(&["volume", "inspect", v.as_str()])
                    .status
                    .success()
            })
            .filter(|v| {
                // The clock file changes all the time; everything else must be equal.
                let script = format!("cd /data && {{ {TREE_DIGEST}; }} | grep -v clock");
                let mirror = self.on_remote(&format!(
                    "cd /backup/mirror/{v} && {{ {TREE_DIGEST}; }} | grep -v clock"
                ));
                self.env.in_volume(v, &script) != mirror
            })
            .count()
    }

    /// Asks for run `n` with SIGUSR1 and checks it succeeds with a snapshot; then reports.
    fn recover(&self, n: usize, fault: &'static str, outcome: String, note: String) -> Row {
        docker(&["kill", "-s", "USR1", &self.sidecar]);
        self.recovered(n, fault, outcome, note)
    }

    /// Checks that run `n` (already asked for) succeeded with a snapshot; then reports.
    fn recovered(&self, n: usize, fault: &'static str, outcome: String, note: String) -> Row {
        let run = self.run(n);
        let recovered = run["fields"]["outcome"] == "success"
            && run["fields"]["archive"]
                .as_str()
                .is_some_and(|a| !a.is_empty());
        assert!(
            recovered,
            "the next run must succeed with a snapshot: {run}"
        );
        let row = Row {
            fault,
            outcome,
            frozen: self.frozen(),
            lost: self.lost(),
            recovered,
            note,
        };
        assert_eq!(row.frozen, 0, "containers left frozen");
        assert_eq!(row.lost, 0, "mirror differs from volume");
        row
    }

    fn wait_rsync_calls(&self, n: u32) {
        wait_until("the remote rsync call", RUN_TIMEOUT, || {
            self.on_remote("cat /tmp/rsync-calls 2>/dev/null || echo 0")
                .trim()
                .parse::<u32>()
                .unwrap_or(0)
                >= n
        });
    }

    fn wait_paused(&self) {
        wait_until("the group to be frozen", RUN_TIMEOUT, || {
            self.apps.iter().all(|a| state(a).1)
        });
    }

    /// A borg on the remote holds the repository lock (`borg with-lock ... sleep 600`).
    fn hold_borg_lock(&self) {
        let argv = self.env.borg_argv(
            &self.remote,
            true,
            &["with-lock", "/backup/borg", "sleep", "600"],
        );
        docker(&argv.iter().map(String::as_str).collect::<Vec<_>>());
        wait_until("the lock", Duration::from_secs(20), || {
            self.on_remote("test -e /backup/borg/lock.exclusive && echo yes || true")
                .contains("yes")
        });
    }

    /// Sends `signal` to the borg holding the lock.
    fn signal_lock_holder(&self, signal: &str) {
        self.on_remote(&format!(
            "for p in /proc/[0-9]*; do if tr '\\000' ' ' < $p/cmdline 2>/dev/null \
             | grep -q '[w]ith-lock'; then kill -{signal} ${{p#/proc/}}; fi; done"
        ));
    }

    /// Waits until sshd runs on the remote (after a restart).
    fn wait_sshd(&self) {
        self.env.wait_sshd(&self.remote);
    }

    fn retries_logged(&self) -> usize {
        events_named(&self.sidecar, "network failure; retrying").len()
    }
}

/// The freeze-time faults need a freeze that lasts: the network catch-up holds the group frozen for
/// as long as the remote's rsync takes (the capture's freeze never waits on the remote).
const NETWORK_CATCH_UP: (&str, &str) = ("BACKUP_CATCH_UP", "network");

/// The remote's rsync sleeps `seconds` on its `call`th run (1: first live pass, 2: catch-up).
fn slow_rsync(call: u32, seconds: u32) -> String {
    format!(
        "printf '%s\\n' '#!/bin/sh' \
         'n=$(cat /tmp/rsync-calls 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/rsync-calls' \
         '[ \"$n\" -eq {call} ] && sleep {seconds}' 'exec /usr/bin/rsync \"$@\"' \
         > /usr/local/bin/rsync && chmod +x /usr/local/bin/rsync"
    )
}

/// The remote's `borg create` marks its start, then sleeps `seconds`.
fn slow_borg_create(seconds: u32) -> String {
    format!(
        "printf '%s\\n' '#!/bin/sh' \
         'if [ \"$1\" = create ]; then touch /tmp/borg-create; sleep {seconds}; fi' \
         'exec /usr/bin/borg \"$@\"' > /usr/local/bin/borg && chmod +x /usr/local/bin/borg"
    )
}

const NO_WRAPPERS: &str = "rm -f /usr/local/bin/rsync /usr/local/bin/borg /tmp/rsync-calls";

/// Kills what an interrupted run left running in the wrappers on the remote, so a late
/// `borg create` or rsync does not race the next run. (The script must not contain the patterns'
/// own text, or it kills itself.)
const KILL_LEFTOVERS: &str = "for pattern in '[/]usr/local/bin/' '[s]leep 30'; do for p in /proc/[0-9]*; do \
    if tr '\\000' ' ' < $p/cmdline 2>/dev/null | grep -q \"$pattern\"; then kill -9 ${p#/proc/}; fi; \
    done; done; true";

/// The cause of a run's error, short enough for the table.
fn short(error: &str) -> String {
    // "1 volume(s) failed, no snapshot taken: VOLUME: live pass: CAUSE" -> "live pass: CAUSE"
    let error = match error.split_once(" no snapshot taken: ") {
        Some((_, rest)) => rest.split_once(": ").map_or(rest, |(_, cause)| cause),
        None => error,
    };
    let error = error.replace('|', "/");
    if error.len() > 110 {
        let cut = (0..=110)
            .rev()
            .find(|&i| error.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}...", &error[..cut])
    } else {
        error
    }
}

fn remote_stopped_mid_transfer() -> Row {
    let mut s = Scenario::new("drop", &[]);
    s.on_remote(&slow_rsync(1, 3));
    s.start(&[], &[]);
    s.wait_rsync_calls(1);
    s.on_remote(NO_WRAPPERS);
    docker(&["stop", "-t", "1", &s.remote.name]);
    let error = s.failed_run(1, "connection to the remote failed");
    let retries = s.retries_logged();
    assert!(retries >= 1, "network failures are retried");
    docker(&["start", &s.remote.name]);
    s.wait_sshd();
    s.assert_no_new_archive();
    s.recover(
        2,
        "remote stopped mid-transfer",
        short(&error),
        format!("{retries} retries"),
    )
}

fn remote_back_within_retries() -> Row {
    let mut s = Scenario::new("flap", &[]);
    docker(&["stop", "-t", "1", &s.remote.name]);
    s.start(
        &[("BACKUP_RETRY_ATTEMPTS", "5"), ("BACKUP_RETRY_DELAY", "2s")],
        &[],
    );
    std::thread::sleep(Duration::from_secs(3));
    docker(&["start", &s.remote.name]);
    let retries_seen = s.retries_logged();
    let row = s.recovered(
        1,
        "remote down at start, back within the retries",
        "run succeeded after retrying".into(),
        String::new(),
    );
    let retries = s.retries_logged().max(retries_seen);
    assert!(retries >= 1, "at least one retry");
    Row {
        note: format!("{retries} retries"),
        ..row
    }
}

fn remote_disk_full() -> Row {
    let mut s = Scenario::new("full", &["--tmpfs", "/backup/mirror:size=4m"]);
    s.on_remote("head -c 3500000 /dev/zero > /backup/mirror/filler");
    s.start(&[], &[]);
    let error = s.expect_failure(1, "disk is full");
    assert_eq!(s.retries_logged(), 0, "no retry storm");
    s.on_remote("rm /backup/mirror/filler");
    let mut row = s.recover(2, "remote disk full", short(&error), "no retry".into());
    // 50 x 20 kB fits in 4 MB once the filler is gone.
    row.note = "no retry".into();
    row
}

fn remote_read_only() -> Row {
    let mut s = Scenario::new(
        "readonly",
        &["--cap-add", "SYS_ADMIN", "--tmpfs", "/backup/mirror:ro"],
    );
    s.start(&[], &[]);
    let error = s.expect_failure(1, "read-only");
    assert_eq!(s.retries_logged(), 0, "no retry storm");
    s.on_remote("mount -o remount,rw /backup/mirror");
    s.recover(
        2,
        "remote directory not writable (read-only)",
        short(&error),
        "no retry".into(),
    )
}

fn rsync_missing() -> Row {
    let mut s = Scenario::new("norsync", &[]);
    s.on_remote("mv /usr/bin/rsync /usr/bin/rsync.away");
    s.start(&[], &[]);
    let error = s.expect_failure(1, "rsync is not installed on the remote");
    assert_eq!(s.retries_logged(), 0, "no retry storm");
    s.on_remote("mv /usr/bin/rsync.away /usr/bin/rsync");
    s.recover(
        2,
        "rsync missing on the remote",
        short(&error),
        "no retry".into(),
    )
}

fn borg_missing() -> Row {
    let mut s = Scenario::new("noborg", &[]);
    s.on_remote("mv /usr/bin/borg /usr/bin/borg.away");
    s.start(&[], &[]);
    let error = s.failed_run(1, "borg is not installed on the remote");
    s.on_remote("mv /usr/bin/borg.away /usr/bin/borg");
    s.assert_no_new_archive();
    s.recover(
        2,
        "borg missing on the remote",
        short(&error),
        String::new(),
    )
}

fn host_key_changed() -> Row {
    let mut s = Scenario::new("newkey", &[]);
    s.on_remote(
        "rm /etc/ssh/keys/ssh_host_ed25519_key* && \
         ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/keys/ssh_host_ed25519_key",
    );
    docker(&["restart", "-t", "1", &s.remote.name]);
    s.wait_sshd();
    s.start(&[], &[]);
    let error = s.expect_failure(1, "host key");
    assert!(error.contains("SHA256:"), "the fingerprint it saw: {error}");
    assert_eq!(s.retries_logged(), 0, "never retried");
    assert!(
        s.on_remote("ls /backup/mirror").trim().is_empty(),
        "nothing sent"
    );
    s.env.pin_host_key(&s.remote);
    s.recover(2, "host key changed", short(&error), "not retried".into())
}

fn stale_borg_lock() -> Row {
    let mut s = Scenario::new("stalelock", &[]);
    // A borg killed while it held the repository lock (kill -9: no cleanup).
    s.hold_borg_lock();
    s.signal_lock_holder("KILL");
    s.start(&[], &[]);
    let row = s.recovered(
        1,
        "stale borg lock (holder killed)",
        "lock broken, run succeeded".into(),
        String::new(),
    );
    assert_eq!(
        events_named(
            &s.sidecar,
            "broke a stale borg lock: no borg process runs on the remote"
        )
        .len(),
        1
    );
    row
}

fn live_borg_lock() -> Row {
    let mut s = Scenario::new("livelock", &[]);
    s.hold_borg_lock();
    s.start(&[], &[]);
    let error = s.failed_run(1, "locked by another borg process");
    // The holder finishes (SIGTERM: borg releases its lock).
    s.signal_lock_holder("TERM");
    s.on_remote(
        "for i in $(seq 1 100); do test -e /backup/borg/lock.exclusive || break; sleep 0.2; done",
    );
    s.assert_no_new_archive();
    s.recover(
        2,
        "borg lock held by a running borg",
        short(&error),
        "waited BACKUP_BORG_LOCK_WAIT".into(),
    )
}

/// A socat between the sidecar and the engine, to cut the Docker API.
struct Proxy {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Proxy {
    fn start() -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let mut proxy = Proxy { dir, child: None };
        proxy.restart();
        proxy
    }

    fn restart(&mut self) {
        let socket = self.dir.path().join("docker.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork", socket.display()))
            .arg("UNIX-CONNECT:/var/run/docker.sock")
            .spawn()
            .expect("socat runs (scripts/provision.sh installs it)");
        wait_until("the proxy socket", Duration::from_secs(10), || {
            socket.exists()
        });
        self.child = Some(child);
    }

    fn cut(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.path().join("docker.sock"));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn docker_api_cut() -> Row {
    let mut s = Scenario::new("apicut", &[]);
    // A second volume without users: copied in one pass, no Docker call needed.
    let loose = s
        .env
        .volume("zz-loose", &["backup.enable=true", &s.env.project_label()]);
    s.env.in_volume(&loose, "echo loose > /data/file");
    s.volumes.push(loose.clone());
    let mut proxy = Proxy::start();
    s.on_remote(&slow_rsync(1, 4));
    let mount = format!("{}:/proxy", proxy.dir.path().display());
    s.start(
        &[("DOCKER_HOST", "unix:///proxy/docker.sock")],
        &["-v", &mount],
    );
    s.wait_rsync_calls(1);
    proxy.cut();
    let error = s.expect_failure(1, "cannot pause container");
    let synced = events_named(&s.sidecar, "volume synced");
    assert!(
        synced
            .iter()
            .any(|e| e["fields"]["volume"] == loose.as_str()),
        "the other volume went on"
    );
    assert_eq!(s.frozen(), 0, "never paused");
    proxy.restart();
    s.on_remote(NO_WRAPPERS);
    s.recover(
        2,
        "Docker API cut mid-run",
        short(&error),
        "other volume mirrored".into(),
    )
}

fn container_removed_while_frozen() -> Row {
    let mut s = Scenario::new("removed", &[]);
    s.on_remote(&slow_rsync(2, 4));
    s.start(&[NETWORK_CATCH_UP], &[]);
    s.wait_paused();
    docker(&["rm", "-f", &s.apps[0]]);
    let error = s.expect_failure(1, "was removed while frozen");
    s.on_remote(NO_WRAPPERS);
    s.recover(
        2,
        "container removed while frozen",
        short(&error),
        String::new(),
    )
}

fn container_restarted_while_frozen() -> Row {
    let mut s = Scenario::new("restarted", &[]);
    s.on_remote(&slow_rsync(2, 4));
    s.start(&[NETWORK_CATCH_UP], &[]);
    s.wait_paused();
    docker(&["restart", "-t", "1", &s.apps[0]]);
    let error = s.expect_failure(1, "restarted or unpaused by someone else while frozen");
    s.on_remote(NO_WRAPPERS);
    s.recover(
        2,
        "container restarted while frozen",
        short(&error),
        String::new(),
    )
}

fn volume_removed_after_plan() -> Row {
    let mut s = Scenario::new("volgone", &[]);
    let loose = s
        .env
        .volume("zz-loose", &["backup.enable=true", &s.env.project_label()]);
    s.env.in_volume(&loose, "echo loose > /data/file");
    s.on_remote(&slow_rsync(1, 4));
    s.start(&[], &[]);
    s.wait_rsync_calls(1);
    docker(&["volume", "rm", &loose]);
    let error = s.expect_failure(1, "was removed after the plan");
    let synced = events_named(&s.sidecar, "volume synced");
    assert!(
        synced
            .iter()
            .any(|e| e["fields"]["volume"] == s.volumes[0].as_str()),
        "the other volume went on"
    );
    s.on_remote(NO_WRAPPERS);
    s.recover(
        2,
        "volume removed between plan and copy",
        short(&error),
        "other volume mirrored".into(),
    )
}

/// Stops or kills the sidecar while it is in `phase`; then starts it again (a run on start).
fn sidecar_interrupted(phase: &'static str, kill: bool) -> Row {
    let fault: &'static str = match (phase, kill) {
        ("live", false) => "SIGTERM during the live pass",
        ("live", true) => "SIGKILL during the live pass",
        ("freeze", false) => "SIGTERM while frozen",
        ("freeze", true) => "SIGKILL while frozen",
        ("snapshot", false) => "SIGTERM during borg create",
        _ => "SIGKILL during borg create",
    };
    let mut s = Scenario::new(
        &format!("{phase}{}", if kill { "kill" } else { "term" }),
        &[],
    );
    if phase == "freeze" {
        s.add_app("db");
    }
    match phase {
        "live" => s.on_remote(&slow_rsync(1, 30)),
        "freeze" => s.on_remote(&slow_rsync(s.apps.len() as u32 + 1, 30)),
        _ => s.on_remote(&slow_borg_create(30)),
    };
    if phase == "freeze" {
        s.start(&[NETWORK_CATCH_UP], &[]);
    } else {
        s.start(&[], &[]);
    }
    match phase {
        "live" => s.wait_rsync_calls(1),
        "freeze" => s.wait_paused(),
        _ => wait_until("borg create", RUN_TIMEOUT, || {
            docker_output(&["exec", &s.remote.name, "test", "-e", "/tmp/borg-create"])
                .status
                .success()
        }),
    }
    let started = Instant::now();
    let mut note;
    if kill {
        docker(&["kill", "-s", "KILL", &s.sidecar]);
        note = format!("killed after {:.1} s", started.elapsed().as_secs_f64());
    } else {
        docker(&["stop", "-t", "10", &s.sidecar]);
        let took = started.elapsed();
        let exit = docker(&["inspect", "--format", "{{.State.ExitCode}}", &s.sidecar]);
        assert_eq!(exit.trim(), "0");
        assert!(took < Duration::from_secs(10), "stopped in {took:?}");
        assert_eq!(s.frozen(), 0, "thawed before exit");
        note = format!("exit 0 in {:.1} s", took.as_secs_f64());
    }
    assert_eq!(
        s.env.archives(&s.remote).len(),
        0,
        "no archive from an interrupted run"
    );
    // Kill whatever the interrupted run left on the remote, then start the sidecar again.
    s.on_remote(KILL_LEFTOVERS);
    s.on_remote(NO_WRAPPERS);
    let restarted = Instant::now();
    docker(&["start", &s.sidecar]);
    if kill && phase == "freeze" {
        wait_until("the journal repair", Duration::from_secs(30), || {
            s.frozen() == 0
        });
        let repair = restarted.elapsed();
        note = format!(
            "{} containers thawed {} ms after restart",
            s.apps.len(),
            repair.as_millis()
        );
        let repaired = events_named(
            &s.sidecar,
            "thawed a container left frozen by a previous run",
        );
        assert_eq!(repaired.len(), s.apps.len(), "the repair is logged");
    }
    let finished_before = if kill {
        events_named(&s.sidecar, "run finished").len()
    } else {
        1
    };
    let outcome = if kill {
        "killed: no run finished line".to_string()
    } else {
        let error = s.run(1)["fields"]["error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        short(&error)
    };
    let row = s.recovered(finished_before + 1, fault, outcome, note);
    // A killed daemon's ssh control directory is removed by the next one (found by the soak).
    wait_until(
        "no ssh control directory left",
        Duration::from_secs(10),
        || {
            docker(&[
                "exec",
                &s.sidecar,
                "sh",
                "-c",
                "ls -d /tmp/bs-ssh* 2>/dev/null || true",
            ])
            .trim()
            .is_empty()
        },
    );
    row
}

/// The sidecar killed while `restore --to` runs (found by the soak): its helper container, left
/// running, held the target volume, so the next restore to it was refused as "in use". The next
/// start of the sidecar removes it, and a restore then succeeds.
fn sidecar_killed_during_restore() -> Row {
    let mut s = Scenario::new("restorekill", &[]);
    s.env
        .in_volume(&s.volumes[0], "head -c 60000000 /dev/urandom > /data/big");
    s.start(&[], &[]);
    s.recovered(1, "SIGKILL during a restore", String::new(), String::new());
    let target = format!("{}-check", s.volumes[0]);
    s.env.track_volume(&target);
    let argv = [
        "exec",
        &s.sidecar,
        "backup-sidecar",
        "restore",
        &s.volumes[0],
        "--from",
        "latest",
        "--to",
        &target,
        "--yes",
    ];
    let mut restore = Command::new("docker").args(argv).spawn().unwrap();
    // Running or not: one that exited still holds the target volume.
    let helpers = || {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            "label=backup-sidecar.restore-helper",
        ])
        .split_whitespace()
        .count()
    };
    wait_until("the restore helper", RUN_TIMEOUT, || helpers() > 0);
    docker(&["kill", "-s", "KILL", &s.sidecar]);
    let _ = restore.wait();
    let left = helpers();
    assert_eq!(left, 1, "the killed restore left its helper");
    docker(&["start", &s.sidecar]);
    wait_for_events(&s.sidecar, "backup-sidecar started", 2, RUN_TIMEOUT);
    assert_eq!(helpers(), 0, "removed when the sidecar started");
    let removed = events_named(&s.sidecar, "removed a restore helper a killed restore left");
    assert_eq!(removed.len(), 1, "the removal is logged");
    // The run on start holds the run lock; the restore goes after it.
    s.run(2);
    let out = docker_output(&argv);
    assert!(
        out.status.success(),
        "a restore after the restart: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let row = s.recover(
        3,
        "SIGKILL during a restore",
        format!("{left} helper left, removed at the next start"),
        "restore again succeeded".into(),
    );
    let restored = s.env.in_volume(&target, "sha256sum /data/big");
    let original = s.env.in_volume(&s.volumes[0], "sha256sum /data/big");
    assert_eq!(restored, original, "the restored volume");
    row
}

#[test]
fn fault_suite() {
    type Case = (&'static str, Box<dyn Fn() -> Row>);
    let cases: Vec<Case> = vec![
        (
            "remote stopped mid-transfer",
            Box::new(remote_stopped_mid_transfer),
        ),
        (
            "remote back within retries",
            Box::new(remote_back_within_retries),
        ),
        ("remote disk full", Box::new(remote_disk_full)),
        ("remote read-only", Box::new(remote_read_only)),
        ("rsync missing", Box::new(rsync_missing)),
        ("borg missing", Box::new(borg_missing)),
        ("host key changed", Box::new(host_key_changed)),
        ("stale borg lock", Box::new(stale_borg_lock)),
        ("live borg lock", Box::new(live_borg_lock)),
        ("Docker API cut", Box::new(docker_api_cut)),
        (
            "container removed while frozen",
            Box::new(container_removed_while_frozen),
        ),
        (
            "container restarted while frozen",
            Box::new(container_restarted_while_frozen),
        ),
        (
            "volume removed after plan",
            Box::new(volume_removed_after_plan),
        ),
        (
            "SIGTERM live",
            Box::new(|| sidecar_interrupted("live", false)),
        ),
        (
            "SIGKILL live",
            Box::new(|| sidecar_interrupted("live", true)),
        ),
        (
            "SIGTERM freeze",
            Box::new(|| sidecar_interrupted("freeze", false)),
        ),
        (
            "SIGKILL freeze",
            Box::new(|| sidecar_interrupted("freeze", true)),
        ),
        (
            "SIGTERM snapshot",
            Box::new(|| sidecar_interrupted("snapshot", false)),
        ),
        (
            "SIGKILL snapshot",
            Box::new(|| sidecar_interrupted("snapshot", true)),
        ),
        ("SIGKILL restore", Box::new(sidecar_killed_during_restore)),
    ];
    let only = std::env::var("FAULT").ok();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (name, case) in &cases {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(case)) {
            Ok(row) => rows.push(row),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{name}: {message}"));
                rows.push(Row {
                    fault: name,
                    outcome: format!("CASE FAILED: {}", short(&message)),
                    frozen: usize::MAX,
                    lost: usize::MAX,
                    recovered: false,
                    note: String::new(),
                });
            }
        }
        eprintln!("{name}: {:.1} s", started.elapsed().as_secs_f64());
    }
    println!("\n| fault | outcome | containers left frozen | data lost | recovered | note |");
    println!("|---|---|---|---|---|---|");
    let show = |n: usize| {
        if n == usize::MAX {
            "?".to_string()
        } else {
            n.to_string()
        }
    };
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.fault,
            row.outcome,
            show(row.frozen),
            show(row.lost),
            if row.recovered { "yes" } else { "NO" },
            row.note
        );
    }
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
    assert!(!rows.is_empty(), "no case ran");
}
