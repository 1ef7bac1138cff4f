//! Test harness for the end-to-end tests: a real Docker engine, the remote image built from
//! `compose/remote/`, and the sidecar image built from this repository's Dockerfile (`prebuilt`).
//! `scripts/test.sh` builds both images; these helpers refuse to run without them rather than skip.
//!
//! Every test gets an [`Env`]: a unique name (also its compose project, passed to the sidecar as
//! `BACKUP_PROJECTS` so tests never see each other's volumes), a network, keys, and cleanup of
//! everything it created, labelled `bs-test=1` for the CI sweep.

#![allow(dead_code)]

pub mod prometheus;
pub mod receivers;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The sidecar image under test.
pub const SIDECAR_IMAGE: &str = "backup-sidecar:latest";
/// The guard's path on the remote.
pub const GUARD: &str = "/usr/local/lib/backup-sidecar/guard";

/// The remote image under test.
pub const REMOTE_IMAGE: &str = "backup-sidecar-remote:latest";
/// The image app containers run.
pub const APP_IMAGE: &str = "debian:bookworm-slim";
/// Label on everything the tests create.
pub const TEST_LABEL: &str = "bs-test=1";
/// The borg passphrase of test repositories.
pub const PASSPHRASE: &str = "correct horse battery staple";
/// A schedule that does not fire during a test.
pub const NEVER: &str = "0 0 1 1 *";

/// Runs docker, returns its output whatever the exit status.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs")
}

/// Runs docker and returns stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn require_image(image: &str) {
    let out = docker_output(&["image", "inspect", "--format", "{{.Id}}", image]);
    assert!(
        out.status.success(),
        "image {image} is missing: run scripts/test.sh, which builds it (the tests never skip)"
    );
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test's world.
pub struct Env {
    /// Unique name: prefix of every resource, and the compose project of the test's containers.
    pub name: String,
    /// The test's network.
    pub network: String,
    /// Holds the client key and known_hosts, mounted at /ssh in the sidecar.
    pub ssh_dir: tempfile::TempDir,
    containers: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
}

/// A running remote.
pub struct Remote {
    /// Container name, also its host name on the network.
    pub name: String,
}

impl Env {
    /// Sets up a test: checks the images, creates the network and a client key.
    pub fn new(test: &str) -> Env {
        require_image(SIDECAR_IMAGE);
        require_image(REMOTE_IMAGE);
        require_image(APP_IMAGE);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("bst-{test}-{}-{n}", std::process::id());
        let network = format!("{name}-net");
        docker(&["network", "create", "--label", TEST_LABEL, &network]);
        let ssh_dir = tempfile::tempdir().unwrap();
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(ssh_dir.path().join("id_ed25519"))
            .status()
            .expect("ssh-keygen runs");
        assert!(status.success());
        Env {
            name,
            network,
            ssh_dir,
            containers: Mutex::new(Vec::new()),
            volumes: Mutex::new(Vec::new()),
        }
    }

    /// A path in the ssh directory.
    pub fn ssh_path(&self, file: &str) -> PathBuf {
        self.ssh_dir.path().join(file)
    }

    /// Creates a volume `<name>-<suffix>` with labels; returns its name.
    pub fn volume(&self, suffix: &str, labels: &[&str]) -> String {
        let name = format!("{}-{suffix}", self.name);
        let mut args = vec!["volume", "create", "--label", TEST_LABEL];
        for label in labels {
            args.extend(["--label", label]);
        }
        args.push(&name);
        docker(&args);
        self.volumes.lock().unwrap().push(name.clone());
        name
    }

    /// Removes this container at the end of the test too (one made with `docker create`, say).
    pub fn track_container(&self, name: &str) {
        self.containers.lock().unwrap().push(name.to_string());
    }

    /// Removes this volume at the end of the test too (one the sidecar creates, say).
    pub fn track_volume(&self, name: &str) {
        self.volumes.lock().unwrap().push(name.to_string());
    }

    /// The compose project label of this test.
    pub fn project_label(&self) -> String {
        format!("com.docker.compose.project={}", self.name)
    }

    /// Starts a detached container `<name>-<suffix>` with extra `docker run` arguments (before
    /// the image) and a command; returns its name.
    pub fn container(&self, suffix: &str, run_args: &[&str], image: &str, cmd: &[&str]) -> String {
        let name = format!("{}-{suffix}", self.name);
        self.containers.lock().unwrap().push(name.clone());
        let mut args = vec!["run", "-d", "--name", &name, "--label", TEST_LABEL];
        args.extend(run_args);
        args.push(image);
        args.extend(cmd);
        docker(&args);
        name
    }

    /// Starts an app container `<name>-<suffix>` of this test's compose project, with `volume`
    /// at /data, running the shell script `script`; returns its name.
    pub fn app(&self, suffix: &str, volume: &str, script: &str) -> String {
        let mount = format!("{volume}:/data");
        let project = self.project_label();
        self.container(
            suffix,
            &["--label", &project, "-v", &mount],
            APP_IMAGE,
            &["sh", "-c", script],
        )
    }

    /// Runs a shell script in a throwaway container with the volume at /data.
    pub fn in_volume(&self, volume: &str, script: &str) -> String {
        self.with_volume(volume, &[APP_IMAGE, "sh", "-c", script])
    }

    /// Runs `image_and_command` (docker run arguments from the image on) in a throwaway container
    /// with the volume at /data.
    pub fn with_volume(&self, volume: &str, image_and_command: &[&str]) -> String {
        let mount = format!("{volume}:/data");
        let mut args = vec!["run", "--rm", "--label", TEST_LABEL, "-v", &mount];
        args.extend(image_and_command);
        docker(&args)
    }

    /// Starts a guarded remote (sshd, rsync, borg, the guard as the forced command of this test's
    /// key), writes known_hosts for it, and initialises an encrypted, append-only borg repository
    /// at /backup/borg with `guard --setup`. With `GUARD=off` among the `docker run` arguments the
    /// key is a plain root login and the repository a plain `borg init`.
    pub fn remote(&self) -> Remote {
        self.remote_with(&[])
    }

    /// [`Env::remote`] with extra `docker run` arguments (a small tmpfs for the mirror, say).
    pub fn remote_with(&self, extra_args: &[&str]) -> Remote {
        let public = std::fs::read_to_string(self.ssh_path("id_ed25519.pub")).unwrap();
        let authorized = format!("AUTHORIZED_KEYS={}", public.trim());
        let mut args = vec!["--network", &self.network, "-e", &authorized];
        args.extend(extra_args);
        let name = self.container("remote", &args, REMOTE_IMAGE, &[]);
        let started = Instant::now();
        loop {
            let out = docker_output(&[
                "exec",
                &name,
                "cat",
                "/etc/ssh/keys/ssh_host_ed25519_key.pub",
            ]);
            let logs = docker_output(&["logs", &name]);
            // sshd -e logs to stderr.
            if out.status.success()
                && String::from_utf8_lossy(&logs.stderr).contains("Server listening")
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "remote did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let remote = Remote { name };
        self.pin_host_key(&remote);
        if extra_args.contains(&"GUARD=off") {
            self.borg(&remote, &["init", "-e", "repokey", "/backup/borg"]);
        } else {
            let setup = format!("printf %s '{PASSPHRASE}' | {GUARD} --setup");
            self.on_remote(&remote, &setup);
        }
        remote
    }

    /// Writes known_hosts with the remote's current host key.
    pub fn pin_host_key(&self, remote: &Remote) {
        self.pin_host_key_at(remote, "known_hosts", &remote.name);
    }

    /// Writes `file` in the ssh directory with the remote's current host key for `address`
    /// (`[ip]:port` for a published port).
    pub fn pin_host_key_at(&self, remote: &Remote, file: &str, address: &str) {
        let host_key = docker(&[
            "exec",
            &remote.name,
            "cat",
            "/etc/ssh/keys/ssh_host_ed25519_key.pub",
        ]);
        let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            self.ssh_path(file),
            format!("{address} {}\n", key.join(" ")),
        )
        .unwrap();
    }

    /// The host port the remote's sshd is published at (`-p ADDRESS::22`).
    pub fn published_port(&self, remote: &Remote) -> String {
        let port = docker(&["port", &remote.name, "22"]);
        port.trim().rsplit(':').next().unwrap().to_string()
    }

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
        let ssh = self.ssh_dir.path();
        std::fs::set_permissions(ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut args: Vec<String> = [
            "--network",
            &self.network,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            "/var/lib/docker/volumes:/var/lib/docker/volumes:ro",
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

    /// Waits until sshd accepts connections on the remote (after a restart: the entrypoint first
    /// runs the guard's setup).
    pub fn wait_sshd(&self, remote: &Remote) {
        wait_until("sshd", Duration::from_secs(20), || {
            let probe = "bash -c '</dev/tcp/127.0.0.1/22' 2>/dev/null && echo yes || true";
            docker_output(&["exec", &remote.name, "sh", "-c", probe])
                .stdout
                .starts_with(b"yes")
        });
    }

    /// Runs a shell command on the remote and returns stdout.
    pub fn on_remote(&self, remote: &Remote, script: &str) -> String {
        docker(&["exec", &remote.name, "sh", "-c", script])
    }

    /// Names of the mirrored volume directories.
    pub fn mirrored(&self, remote: &Remote) -> Vec<String> {
        let mut names: Vec<String> = self
            .on_remote(remote, "ls -1 /backup/mirror")
            .lines()
            .map(String::from)
            .collect();
        names.sort();
        names
    }

    /// Runs borg on the remote with the test repository's passphrase; returns stdout.
    pub fn borg(&self, remote: &Remote, args: &[&str]) -> String {
        docker(
            &self
                .borg_argv(remote, false, args)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    }

    /// The `docker exec` argv for borg on the remote (`detach`: in the background).
    pub fn borg_argv(&self, remote: &Remote, detach: bool, args: &[&str]) -> Vec<String> {
        let mut argv = vec!["exec".to_string()];
        if detach {
            argv.push("-d".into());
        }
        argv.extend(["-e".into(), format!("BORG_PASSPHRASE={PASSPHRASE}")]);
        argv.extend([remote.name.clone(), "borg".into()]);
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// Archives in the test repository.
    pub fn archives(&self, remote: &Remote) -> Vec<String> {
        self.borg(remote, &["list", "--short", "/backup/borg"])
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let containers = self.containers.lock().unwrap().clone();
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            docker_output(&args);
        }
        for volume in self.volumes.lock().unwrap().iter() {
            docker_output(&["volume", "rm", "-f", volume]);
        }
        docker_output(&["network", "rm", &self.network]);
    }
}

/// A listing of a directory tree (type, mode, owner, file size, link target; not directory sizes,
/// which depend on the file system) and checksums of its
/// files, for comparing a volume with its mirror. `sh` runs it where the tree is.
pub const TREE_DIGEST: &str = "find . \\( -type d -printf '%p %y %m %U:%G\\n' \\) \
    -o -printf '%p %y %m %U:%G %s %l\\n' | LC_ALL=C sort; \
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum";

/// Content, modes, owners, link counts, times (to the nanosecond), symlink targets, and every
/// extended attribute (ACLs included) of the tree under the current directory.
pub const FULL_DIGEST: &str = "find . -printf '%p %y %m %U:%G %n %s %T@ %l\\n' | LC_ALL=C sort; \
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum; \
    find . -print0 | LC_ALL=C sort -z | xargs -0 getfattr -h -d -m - --absolute-names 2>/dev/null";

/// The digest of a volume's content.
pub fn volume_digest(env: &Env, volume: &str) -> String {
    env.in_volume(volume, &format!("cd /data && {{ {TREE_DIGEST}; }}"))
}

/// The digest of a directory on the remote.
pub fn remote_digest(env: &Env, remote: &Remote, dir: &str) -> String {
    env.on_remote(remote, &format!("cd {dir} && {{ {TREE_DIGEST}; }}"))
}

/// The sidecar's log events (JSON lines); other lines are ignored.
pub fn events(container: &str) -> Vec<Value> {
    let out = docker_output(&["logs", container]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
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
    let started = Instant::now();
    loop {
        let found = events_named(container, name);
        if found.len() >= count {
            return found;
        }
        if started.elapsed() > timeout {
            let logs = docker_output(&["logs", container]);
            panic!(
                "no {count} {name:?} event(s) within {timeout:?}; logs:\n{}{}",
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

/// The engine's clock, to bound [`engine_events`].
pub fn engine_time() -> String {
    docker(&["info", "--format", "{{.SystemTime}}"])
        .trim()
        .to_string()
}

/// The engine's events since `since` (from [`engine_time`]) until now, matching `filter`, one
/// line each in `format`.
pub fn engine_events(since: &str, filter: &str, format: &str) -> Vec<String> {
    let until = engine_time();
    docker(&[
        "events", "--since", since, "--until", &until, "--filter", filter, "--format", format,
    ])
    .lines()
    .map(String::from)
    .collect()
}

/// `running`/`paused`/... and the Paused flag of a container.
pub fn state(container: &str) -> (String, bool) {
    let out = docker(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.Paused}}",
        container,
    ]);
    let mut parts = out.split_whitespace();
    (
        parts.next().unwrap_or("").to_string(),
        parts.next() == Some("true"),
    )
}

/// Asserts the container runs and is not paused.
pub fn assert_running_not_paused(container: &str) {
    assert_eq!(
        state(container),
        ("running".to_string(), false),
        "{container} must be running and not paused"
    );
}

/// Waits until `cond` holds.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
