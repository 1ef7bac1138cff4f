//! Two hosts, one remote. A second Docker engine on this machine (its own data root, socket,
//! bridge and host name: `scripts/second-engine.sh`) stands in for a second server. Each engine
//! runs an app and a sidecar against one guarded remote, with `BACKUP_REMOTE_DIR=.../{host}`:
//! both mirror and snapshot at once into one repository (the later one waits on borg's lock),
//! each host's archives hold only its volumes, a prune of one host leaves the other's archives,
//! host B restores host A's volume from A's archive, and a sidecar on B configured into A's
//! mirror directory is refused. The figures (run times, lock waits, the repository shared
//! against two separate ones) are printed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// The second engine's directory and its socket.
const ENGINE_B: &str = "/tmp/bs-test-engine-b";
/// The second engine's host name: its sidecar's name for itself.
const HOST_B: &str = "bs-host-b";
/// Where the first engine publishes the remote for the second: its bridge's address on the host.
const BRIDGE_B: &str = "10.199.0.1";

fn socket_b() -> String {
    format!("unix://{ENGINE_B}/docker.sock")
}

/// docker against the second engine; panics on failure, returns stdout.
fn docker_b(args: &[&str]) -> String {
    let socket = socket_b();
    docker(&[&["-H", socket.as_str()], args].concat())
}

/// The second engine, stopped and removed (with everything in it) when dropped.
struct EngineB;

impl EngineB {
    fn start() -> EngineB {
        let status = Command::new("scripts/second-engine.sh")
            .args(["start", ENGINE_B])
            .env("NAME", HOST_B)
            .env("IMAGES", format!("{APP_IMAGE} {SIDECAR_IMAGE}"))
            .status()
            .expect("scripts/second-engine.sh runs");
        assert!(status.success(), "the second engine did not start");
        EngineB
    }
}

impl Drop for EngineB {
    fn drop(&mut self) {
        let _ = Command::new("scripts/second-engine.sh")
            .args(["stop", ENGINE_B])
            .status();
    }
}

/// The first event `name` of a container on the second engine, waited for.
fn first_event_b(container: &str, name: &str) -> Value {
    let what = format!("{container} on host B");
    let logs = || docker_output(&["-H", &socket_b(), "logs", container]);
    wait_for_events_in(&what, logs, name, 1, RUN_TIMEOUT).remove(0)
}

fn field_f64(event: &Value, field: &str) -> f64 {
    event["fields"][field].as_f64().unwrap_or(f64::NAN)
}

/// The top-level entries of an archive (its volumes, and the host's marker).
fn archive_top(env: &Env, remote: &Remote, archive: &str) -> Vec<String> {
    let mut top: Vec<String> = env
        .archive_items(remote, archive)
        .into_iter()
        .filter(|l| !l.contains('/'))
        .collect();
    top.sort();
    top
}

/// Bytes on the remote's disk under `dir`.
fn disk_bytes(env: &Env, remote: &Remote, dir: &str) -> u64 {
    env.on_remote(remote, &format!("du -sb {dir} | cut -f1"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn two_hosts_share_one_remote_and_one_repository() {
    let _engine = EngineB::start();
    let env = Env::new("hosts");
    let project = env.name.clone();
    let remote = env.remote_with(&["-p", &format!("{BRIDGE_B}::22")]);
    let port = env.published_port(&remote);
    let host_a = docker(&["info", "--format", "{{.Name}}"])
        .trim()
        .to_string();
    assert_ne!(host_a, HOST_B, "the two engines have their own names");

    // The same data on both hosts (the dedup case), and a file of each host's own: 6 files of
    // BS_HOSTS_MIB / 6 MiB (48 in CI; more for the figures in the README).
    let mib: u64 = std::env::var("BS_HOSTS_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let data = tempfile::tempdir().unwrap();
    let seed = data.path().join("seed");
    std::fs::create_dir(&seed).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg("for i in $(seq 1 6); do head -c \"$1\" /dev/urandom > \"$0/blob$i\"; done")
        .arg(&seed)
        .arg(((mib << 20) / 6).to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let seed_mount = format!("{}:/src:ro", seed.display());
    let fill = |docker: &dyn Fn(&[&str]) -> String, volume: &str, host: &str| {
        let mount = format!("{volume}:/data");
        docker(&[
            "run",
            "--rm",
            "-v",
            &seed_mount,
            "-v",
            &mount,
            APP_IMAGE,
            "sh",
            "-c",
            "cp -a /src/. /data/ && echo \"$0\" > /data/own",
            host,
        ]);
    };
    let volume_a = env.volume("data", &["backup.enable=true", &env.project_label()]);
    fill(&|a| docker(a), &volume_a, &host_a);
    let volume_b = format!("{project}-data-b");
    docker_b(&[
        "volume",
        "create",
        "--label",
        "backup.enable=true",
        "--label",
        &env.project_label(),
        &volume_b,
    ]);
    fill(&|a| docker_b(a), &volume_b, HOST_B);
    let app = "while :; do date +%s%N > /data/clock; sleep 0.2; done";
    env.app("app", &volume_a, app);
    let mount_b = format!("{volume_b}:/data");
    docker_b(&[
        "run",
        "-d",
        "--name",
        "app-b",
        "--label",
        &env.project_label(),
        "-v",
        &mount_b,
        APP_IMAGE,
        "sh",
        "-c",
        app,
    ]);

    // Host B reaches the remote on the address the first engine publishes it at.
    env.pin_host_key_at(&remote, "known_hosts_b", &format!("[{BRIDGE_B}]:{port}"));
    let per_host = [("BACKUP_REMOTE_DIR", "/backup/mirror/{host}")];
    let sidecar_b = |name: &str, extra: &[(&str, &str)]| -> String {
        let mut vars = env.sidecar_env(&remote, &per_host);
        for (k, v) in [
            ("BACKUP_REMOTE", format!("root@{BRIDGE_B}")),
            ("BACKUP_REMOTE_PORT", port.clone()),
            ("BACKUP_KNOWN_HOSTS_FILE", "/ssh/known_hosts_b".to_string()),
        ]
        .into_iter()
        .chain(extra.iter().map(|(k, v)| (*k, v.to_string())))
        {
            vars.retain(|(n, _)| n != k);
            vars.push((k.to_string(), v));
        }
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            name.into(),
            "-v".into(),
            format!("{ENGINE_B}/docker.sock:/var/run/docker.sock"),
            "-v".into(),
            format!("{ENGINE_B}/data/volumes:/var/lib/docker/volumes:ro"),
            "-v".into(),
            format!("{}:/ssh:ro", env.ssh_path("").display()),
        ];
        for (k, v) in vars {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push(SIDECAR_IMAGE.into());
        docker_b(&args.iter().map(String::as_str).collect::<Vec<_>>());
        name.to_string()
    };

    // Both hosts at once: each mirrors into its own directory and snapshots into the one
    // repository; whichever comes second waits on borg's lock.
    let started = Instant::now();
    let sidecar_a = env.sidecar(&remote, &per_host);
    let b = sidecar_b("sidecar-b", &[]);
    let run_a = wait_for_run(&sidecar_a, RUN_TIMEOUT);
    let a_done = started.elapsed();
    let run_b = first_event_b(&b, "run finished");
    let b_done = started.elapsed();
    assert_eq!(run_a["fields"]["outcome"], "success", "{run_a}");
    assert_eq!(run_b["fields"]["outcome"], "success", "{run_b}");
    let snap_a = events_named(&sidecar_a, "snapshot created").remove(0);
    let snap_b = first_event_b(&b, "snapshot created");
    let archive_a = snap_a["fields"]["archive"].as_str().unwrap().to_string();
    let archive_b = snap_b["fields"]["archive"].as_str().unwrap().to_string();
    assert!(archive_a.starts_with(&format!("{host_a}-")), "{archive_a}");
    assert!(archive_b.starts_with(&format!("{HOST_B}-")), "{archive_b}");

    // Each host's mirror directory holds its volume and its marker; each archive only its own.
    let mirror_a = format!("/backup/mirror/{host_a}");
    let mirror_b = format!("/backup/mirror/{HOST_B}");
    assert_eq!(
        env.on_remote(
            &remote,
            &format!("cat {mirror_a}/.backup-sidecar-host {mirror_b}/.backup-sidecar-host")
        ),
        format!("{host_a}\n{HOST_B}\n")
    );
    let top_a = archive_top(&env, &remote, &archive_a);
    let top_b = archive_top(&env, &remote, &archive_b);
    assert!(
        top_a.contains(&volume_a) && !top_a.contains(&volume_b),
        "{top_a:?}"
    );
    assert!(
        top_b.contains(&volume_b) && !top_b.contains(&volume_a),
        "{top_b:?}"
    );
    assert_eq!(
        env.archive_file(&remote, &archive_b, &format!("{volume_b}/own")),
        format!("{HOST_B}\n")
    );

    // The figures: run times, time outside borg's own create (the lock wait, mostly), sizes.
    let shared = disk_bytes(&env, &remote, "/backup/borg");
    let passphrase_env = format!("BORG_PASSPHRASE={PASSPHRASE}");
    let mut separate = 0;
    for (dir, repo) in [
        (&mirror_a, "/backup/alone-a"),
        (&mirror_b, "/backup/alone-b"),
    ] {
        docker(&[
            "exec",
            "-e",
            &passphrase_env,
            &remote.name,
            "borg",
            "init",
            "-e",
            "repokey",
            repo,
        ]);
        docker(&[
            "exec",
            "-e",
            &passphrase_env,
            "-w",
            dir,
            &remote.name,
            "borg",
            "create",
            &format!("{repo}::alone"),
            ".",
        ]);
        separate += disk_bytes(&env, &remote, repo);
    }
    println!(
        "two hosts, one repository ({mib} MiB shared by both, one small file of each):\n\
         \x20 host {host_a}: run {:.1} s (done at {:.1} s), snapshot {:.1} s of which borg create \
         {:.1} s\n\
         \x20 host {HOST_B}: run {:.1} s (done at {:.1} s), snapshot {:.1} s of which borg create \
         {:.1} s\n\
         \x20 repository shared: {} bytes; two separate repositories: {} bytes ({:.2}x)",
        field_f64(&run_a, "seconds"),
        a_done.as_secs_f64(),
        field_f64(&snap_a, "seconds"),
        field_f64(&snap_a, "borg_seconds"),
        field_f64(&run_b, "seconds"),
        b_done.as_secs_f64(),
        field_f64(&snap_b, "seconds"),
        field_f64(&snap_b, "borg_seconds"),
        shared,
        separate,
        separate as f64 / shared as f64
    );
    assert!(
        (shared as f64) < separate as f64 * 0.75,
        "identical data on two hosts is stored once: shared {shared}, separate {separate}"
    );

    // One borg cache on the remote serves every host: after another host wrote, the next
    // `borg create` there needs no resync. A borg client with its own cache, as a push-to-repo
    // tool has on each host, resyncs its chunks cache every time another host wrote.
    let verbose_create = |base: Option<&str>, name: &str, dir: &str| -> (f64, bool) {
        let mut argv = vec!["exec", "-e", &passphrase_env, "-w", dir];
        let base_env = base.map(|b| format!("BORG_BASE_DIR={b}"));
        if let Some(b) = &base_env {
            argv.extend(["-e", b.as_str()]);
        }
        let archive = format!("/backup/borg::{name}");
        argv.extend([remote.name.as_str(), "borg", "create", "-v", &archive, "."]);
        let started = Instant::now();
        let out = docker_output(&argv);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        (
            started.elapsed().as_secs_f64(),
            said.contains("Synchronizing chunks cache"),
        )
    };
    let (push_cold, _) = verbose_create(Some("/tmp/push-a"), "push-a-1", &mirror_a);
    verbose_create(None, "other-host-1", &mirror_b);
    let (push_after, push_resynced) = verbose_create(Some("/tmp/push-a"), "push-a-2", &mirror_a);
    verbose_create(None, "other-host-2", &mirror_b);
    let (shared_after, shared_resynced) = verbose_create(None, "shared-a-1", &mirror_a);
    println!(
        "  after another host wrote: a client with its own cache resynced: {push_resynced} \
         ({push_after:.2} s; its first create {push_cold:.2} s); the remote's shared cache \
         resynced: {shared_resynced} ({shared_after:.2} s)"
    );
    assert!(
        push_resynced,
        "a client with its own cache resyncs after another host wrote"
    );
    assert!(
        !shared_resynced,
        "the remote's one cache is never out of date"
    );
    for name in [
        "push-a-1",
        "push-a-2",
        "other-host-1",
        "other-host-2",
        "shared-a-1",
    ] {
        env.borg(&remote, &["delete", &format!("/backup/borg::{name}")]);
    }

    // A second run of host A prunes A's first archive and none of B's. (With fewer days of
    // archives than keep_daily, borg also keeps the oldest: the remote keeps one a day here.)
    env.on_remote(
        &remote,
        "printf 'keep_daily = 1\nkeep_weekly = 0\nkeep_monthly = 0\n' \
         >> /etc/backup-sidecar/guard.conf",
    );
    let run = run_now(&sidecar_a, 1, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let archives = env.archives(&remote);
    assert!(
        !archives.contains(&archive_a),
        "A's first archive pruned: {archives:?}"
    );
    assert!(
        archives.contains(&archive_b),
        "B's archive kept: {archives:?}"
    );
    assert_eq!(
        archives
            .iter()
            .filter(|a| a.starts_with(&format!("{host_a}-")))
            .count(),
        1,
        "{archives:?}"
    );

    // Host A's server died: host B restores A's volume from A's newest archive.
    let copy = format!("{project}-from-a");
    let out = docker_b(&[
        "exec",
        &b,
        "backup-sidecar",
        "restore",
        &volume_a,
        "--host",
        &host_a,
        "--from",
        "latest",
        "--to",
        &copy,
        "--yes",
    ]);
    assert!(out.contains("volume restored"), "{out}");
    let digest = |docker: &dyn Fn(&[&str]) -> String, volume: &str| {
        let mount = format!("{volume}:/data:ro");
        docker(&[
            "run",
            "--rm",
            "-v",
            &mount,
            APP_IMAGE,
            "sh",
            "-c",
            "cd /data && sha256sum blob* own",
        ])
    };
    assert_eq!(
        digest(&|a| docker_b(a), &copy),
        digest(&|a| docker(a), &volume_a)
    );
    // Its snapshots, by host.
    let listed = docker_b(&["exec", &b, "backup-sidecar", "snapshots", "--host", &host_a]);
    assert!(listed.contains(&format!("{host_a}-")), "{listed}");
    assert!(!listed.contains(&format!("{HOST_B}-")), "{listed}");

    // A sidecar on host B configured into host A's mirror directory is refused, and A's mirror
    // is as it was.
    let before = remote_digest(&env, &remote, &mirror_a);
    let wrong = sidecar_b("sidecar-b-wrong", &[("BACKUP_REMOTE_DIR", &mirror_a)]);
    let refused = first_event_b(&wrong, "run finished");
    assert_ne!(refused["fields"]["outcome"], "success", "{refused}");
    let said = refused.to_string();
    assert!(said.contains("mirror_taken"), "{said}");
    assert!(
        said.contains(&format!("is the mirror of host {host_a}")),
        "{said}"
    );
    assert_eq!(remote_digest(&env, &remote, &mirror_a), before);
}
