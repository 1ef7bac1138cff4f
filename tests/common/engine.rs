//! The Docker engine's side of a test: the docker CLI, the test's containers and volumes (apps,
//! throwaway containers that read a volume), the engine's events, a container's state, and waiting.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::Env;

/// The image app containers run.
pub const APP_IMAGE: &str = "debian:bookworm-slim";
/// Label on everything the tests create.
pub const TEST_LABEL: &str = "bs-test=1";

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

impl Env {
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
