//! The sidecar under test: its environment and `docker run` arguments as the compose file gives
//! them, starting it, reading its JSON log events, asking for a run and waiting for one, and
//! `backup-sidecar restore` run in it.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Env, PASSPHRASE, Remote, docker, docker_output};

/// The sidecar image under test.
pub const SIDECAR_IMAGE: &str = "backup-sidecar:latest";
/// A schedule that does not fire during a test.
pub const NEVER: &str = "0 0 1 1 *";

impl Env {
    /// The sidecar's environment for a test: this test's remote and project, JSON logs, no
    /// schedule firing, a run on start; `extra` overrides.
    pub fn sidecar_env(&self, remote: &Remote, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("BACKUP_REMOTE", format!("root@{}", remote.name)),
            ("BACKUP_REMOTE_DIR", "/backup/mirror".to_string()),
            ("BACKUP_BORG_REPO", "/backup/borg".to_string()),
            ("BACKUP_BORG_PASSPHRASE", PASSPHRASE.to_string()),
            ("BACKUP_PROJECTS", self.name.clone()),
            ("BACKUP_SYNC_SCHEDULE", NEVER.to_string()),
            ("BACKUP_SNAPSHOT_SCHEDULE", NEVER.to_string()),
            ("BACKUP_RUN_ON_START", "true".to_string()),
            ("LOG_FORMAT", "json".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        env.retain(|(_, v)| !v.is_empty());
        env
    }

    /// `docker run` arguments that give the sidecar what the compose file gives it.
    pub fn sidecar_args(&self, env: &[(String, String)]) -> Vec<String> {
        // A test run against a second engine (`DOCKER_HOST` at `BS_TEST_ENGINE/docker.sock`, from
        // scripts/second-engine.sh) gives its sidecar that engine's socket and volumes.
        let (socket, volumes) = match std::env::var("BS_TEST_ENGINE") {
            Ok(dir) => (format!("{dir}/docker.sock"), format!("{dir}/data/volumes")),
            Err(_) => (
                "/var/run/docker.sock".to_string(),
                "/var/lib/docker/volumes".to_string(),
            ),
        };
        let ssh = self.ssh_dir.path();
        std::fs::set_permissions(ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut args: Vec<String> = [
            "--network",
            &self.network,
            "-v",
            &format!("{socket}:/var/run/docker.sock"),
            "-v",
            &format!("{volumes}:/var/lib/docker/volumes:ro"),
            "-v",
            &format!("{}:/ssh:ro", ssh.display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (k, v) in env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args
    }

    /// Starts the sidecar daemon; returns its container name.
    pub fn sidecar(&self, remote: &Remote, extra: &[(&str, &str)]) -> String {
        self.sidecar_with(remote, extra, &[])
    }

    /// [`Env::sidecar`] with extra `docker run` arguments.
    pub fn sidecar_with(&self, remote: &Remote, extra: &[(&str, &str)], args: &[&str]) -> String {
        let mut all = self.sidecar_args(&self.sidecar_env(remote, extra));
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.container("sidecar", &all, SIDECAR_IMAGE, &[])
    }
}

/// The log events (JSON lines) in what the sidecar printed; other lines are ignored.
pub fn json_events(printed: &str) -> Vec<Value> {
    printed
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// The sidecar's log events (JSON lines); other lines are ignored.
pub fn events(container: &str) -> Vec<Value> {
    let out = docker_output(&["logs", container]);
    json_events(&String::from_utf8_lossy(&out.stdout))
}

/// The message of an event.
pub fn message(event: &Value) -> &str {
    event["fields"]["message"].as_str().unwrap_or("")
}

/// The events with this message.
pub fn events_named(container: &str, name: &str) -> Vec<Value> {
    events(container)
        .into_iter()
        .filter(|e| message(e) == name)
        .collect()
}

/// Waits until the sidecar has logged `count` events with this message; returns them all.
pub fn wait_for_events(container: &str, name: &str, count: usize, timeout: Duration) -> Vec<Value> {
    wait_for_events_in(
        container,
        || docker_output(&["logs", container]),
        name,
        count,
        timeout,
    )
}

/// [`wait_for_events`] for a sidecar whose `docker logs` output `logs` gives (one on another
/// engine, say); `what` names it if the events do not come.
pub fn wait_for_events_in(
    what: &str,
    logs: impl Fn() -> Output,
    name: &str,
    count: usize,
    timeout: Duration,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let logs = logs();
        let found: Vec<Value> = json_events(&String::from_utf8_lossy(&logs.stdout))
            .into_iter()
            .filter(|e| message(e) == name)
            .collect();
        if found.len() >= count {
            return found;
        }
        if started.elapsed() > timeout {
            panic!(
                "{what}: no {count} {name:?} event(s) within {timeout:?}; logs:\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asks for a run (SIGUSR1) after `runs_before` runs and waits for its `run finished` event.
pub fn run_now(container: &str, runs_before: usize, timeout: Duration) -> Value {
    docker(&["kill", "-s", "USR1", container]);
    wait_for_events(container, "run finished", runs_before + 1, timeout).remove(runs_before)
}

/// Waits for the first `run finished` event and returns it.
pub fn wait_for_run(container: &str, timeout: Duration) -> Value {
    wait_for_events(container, "run finished", 1, timeout).remove(0)
}

/// What `backup-sidecar restore` printed, and how long it took.
pub struct Restored {
    pub stdout: String,
    /// The log events in `stdout`.
    pub events: Vec<Value>,
    /// The whole `docker exec`.
    pub took: Duration,
}

/// `backup-sidecar restore ARGS` in the sidecar; asserts it succeeded.
pub fn restore(sidecar: &str, args: &[&str]) -> Restored {
    let mut argv = vec!["exec", sidecar, "backup-sidecar", "restore"];
    argv.extend(args);
    let started = Instant::now();
    let out = docker_output(&argv);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "restore {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Restored {
        events: json_events(&stdout),
        stdout,
        took,
    }
}
