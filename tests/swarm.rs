//! Swarm: the sidecar deployed with `docker stack deploy` from `compose/stack.yml` as a global
//! service (on a single-node swarm made for the test), backing up an app stack's volume: a USR1
//! run pauses the app's task, mirrors its volume into the node's own directory
//! (`BACKUP_REMOTE_DIR=.../{host}`) and snapshots it under the node's name. The swarm is left and
//! everything removed at the end, pass or fail.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// While it exists, the swarm is the test's: scripts/cleanup.sh leaves it should the test die.
const SWARM_MARKER: &str = "/tmp/bs-test-swarm";

/// The app's stack: a task writing all the time into a labelled volume.
const APP_STACK: &str = r#"version: "3.8"
services:
  app:
    image: debian:bookworm-slim
    command: ["sh", "-c", "while :; do date +%s%N > /data/clock; sleep 0.05; done"]
    labels:
      bs-test: "1"
    volumes:
      - data:/data
volumes:
  data:
    labels:
      backup.enable: "true"
      bs-test: "1"
"#;

/// Leaves the swarm, with its stacks and their volumes, when dropped.
struct Swarm {
    stacks: Vec<String>,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for stack in &self.stacks {
            docker_output(&["stack", "rm", stack]);
        }
        for stack in &self.stacks {
            let label = format!("label=com.docker.stack.namespace={stack}");
            let _ = wait_until_quietly(|| {
                docker_output(&["ps", "-aq", "--filter", &label])
                    .stdout
                    .is_empty()
            });
            let volumes = docker_output(&["volume", "ls", "-q", "--filter", &label]);
            for volume in String::from_utf8_lossy(&volumes.stdout).split_whitespace() {
                docker_output(&["volume", "rm", "-f", volume]);
            }
        }
        docker_output(&["swarm", "leave", "--force"]);
        // swarm init made it; leaving keeps it.
        docker_output(&["network", "rm", "docker_gwbridge"]);
        let _ = std::fs::remove_file(SWARM_MARKER);
    }
}

fn wait_until_quietly(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..300 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The running container of a service's task on this node.
fn task(service: &str) -> String {
    let label = format!("label=com.docker.swarm.service.name={service}");
    let mut id = String::new();
    wait_until(&format!("a running task of {service}"), RUN_TIMEOUT, || {
        id = docker(&["ps", "-q", "--filter", &label]).trim().to_string();
        !id.is_empty() && !id.contains('\n')
    });
    docker(&["inspect", "--format", "{{.Name}}", &id])
        .trim()
        .trim_start_matches('/')
        .to_string()
}

fn deploy(dir: &Path, stack: &str, files: &[&Path], env: &[(&str, String)]) {
    let mut command = Command::new("docker");
    command.args(["stack", "deploy", "--resolve-image", "never"]);
    for file in files {
        command.arg("-c").arg(file);
    }
    let out = command
        .arg(stack)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker stack deploy {stack} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_global_service_backs_up_its_nodes_stack() {
    let env = Env::new("swarm");
    let app_stack = env.name.clone();
    let sidecar_stack = format!("{}-sc", env.name);
    let active = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(
        active.trim(),
        "inactive",
        "the engine must not be in a swarm already"
    );
    std::fs::write(SWARM_MARKER, "").unwrap();
    let init = docker_output(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    assert!(
        init.status.success(),
        "docker swarm init: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let _swarm = Swarm {
        stacks: vec![sidecar_stack.clone(), app_stack.clone()],
    };
    // The service reaches the remote on the host's loopback (it runs on the host's network).
    let remote = env.remote_with(&["-p", "127.0.0.1::22"]);
    let port = env.published_port(&remote);
    env.pin_host_key_at(&remote, "known_hosts", &format!("[127.0.0.1]:{port}"));
    let node = docker(&["info", "--format", "{{.Name}}"])
        .trim()
        .to_string();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yml"), APP_STACK).unwrap();
    std::fs::write(dir.path().join("borg_passphrase"), PASSPHRASE).unwrap();
    // What this test changes in compose/stack.yml: its remote, its scope, no schedule, JSON logs.
    let never = NEVER;
    std::fs::write(
        dir.path().join("test.yml"),
        format!(
            r#"version: "3.8"
services:
  backup-sidecar:
    environment:
      BACKUP_REMOTE: root@127.0.0.1
      BACKUP_REMOTE_PORT: "{port}"
      BACKUP_REMOTE_DIR: /backup/mirror/{{host}}
      BACKUP_BORG_REPO: /backup/borg
      BACKUP_PROJECTS: {app_stack}
      BACKUP_RUN_ON_START: "false"
      BACKUP_SYNC_SCHEDULE: "{never}"
      BACKUP_SNAPSHOT_SCHEDULE: "{never}"
      LOG_FORMAT: json
    labels:
      bs-test: "1"
    networks: [hostnet]
networks:
  hostnet:
    external: true
    name: host
"#
        ),
    )
    .unwrap();
    deploy(dir.path(), &app_stack, &[Path::new("app.yml")], &[]);
    let app = task(&format!("{app_stack}_app"));
    let stack_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/stack.yml");
    deploy(
        dir.path(),
        &sidecar_stack,
        &[&stack_file, Path::new("test.yml")],
        &[
            ("BACKUP_SSH_DIR", env.ssh_path("").display().to_string()),
            (
                "BACKUP_PASSPHRASE_FILE",
                dir.path().join("borg_passphrase").display().to_string(),
            ),
        ],
    );
    let sidecar = task(&format!("{sidecar_stack}_backup-sidecar"));
    wait_for_events(&sidecar, "backup-sidecar started", 1, RUN_TIMEOUT);

    let run = run_now(&sidecar, 0, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    // The app's task was paused and thawed; its volume is in the node's mirror directory.
    let thawed = events_named(&sidecar, "group thawed");
    assert_eq!(thawed.len(), 1, "{thawed:?}");
    assert_eq!(thawed[0]["fields"]["group"], app_stack.as_str());
    assert_eq!(thawed[0]["fields"]["containers"], app.as_str());
    assert_running_not_paused(&app);
    let volume = format!("{app_stack}_data");
    let clock = env.on_remote(
        &remote,
        &format!("cat /backup/mirror/{node}/{volume}/clock"),
    );
    assert!(!clock.trim().is_empty(), "the clock was mirrored");
    let archive = run["fields"]["archive"].as_str().unwrap_or("").to_string();
    assert!(archive.starts_with(&format!("{node}-")), "{run}");
    let listed = env.borg(
        &remote,
        &[
            "list",
            "--short",
            &format!("/backup/borg::{archive}"),
            &volume,
        ],
    );
    assert!(listed.contains(&format!("{volume}/clock")), "{listed}");
}
