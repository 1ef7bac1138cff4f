//! End to end: what tells the user how backups go, read the way users read it: the health that
//! `docker inspect` shows, and `status` run inside the sidecar, before and after a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The health Docker reports for the container (`starting`, `healthy`, `unhealthy`).
fn health(container: &str) -> String {
    docker(&["inspect", "-f", "{{.State.Health.Status}}", container])
        .trim()
        .to_string()
}

/// Waits until Docker reports `wanted`; returns when it did, measured from `origin`.
fn wait_for_health(container: &str, wanted: &str, origin: Instant, timeout: Duration) -> Duration {
    wait_until(&format!("{container} to be {wanted}"), timeout, || {
        health(container) == wanted
    });
    origin.elapsed()
}

fn status(sidecar: &str) -> Value {
    let out = docker(&["exec", sidecar, "backup-sidecar", "status", "--json"]);
    serde_json::from_str(&out).expect("status --json prints one JSON object")
}

#[test]
fn health_follows_the_mirror_age_and_status_survives_a_restart() {
    let env = Env::new("health");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "head -c 100000 /dev/urandom > /data/blob");
    const MAX_AGE: Duration = Duration::from_secs(20);
    let origin = Instant::now();
    let sidecar = env.sidecar_with(
        &remote,
        &[("BACKUP_RUN_ON_START", "false"), ("BACKUP_MAX_AGE", "20s")],
        // The image checks every minute; the test cannot wait that long.
        &[
            "--health-interval=1s",
            "--health-retries=1",
            "--health-timeout=5s",
            "--health-start-period=0s",
        ],
    );

    // Before its first run the sidecar is not stale: its first scheduled run may be days away.
    let first_healthy = wait_for_health(&sidecar, "healthy", origin, Duration::from_secs(30));
    eprintln!("health: healthy (no run yet) at {first_healthy:.1?}");

    let first = run_now(&sidecar, 0, RUN_TIMEOUT);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");
    let mirrored_at = origin.elapsed();
    eprintln!("health: first mirror finished at {mirrored_at:.1?}");
    assert_eq!(health(&sidecar), "healthy");

    // No run since: the mirror grows older than BACKUP_MAX_AGE and the health follows.
    let unhealthy = wait_for_health(&sidecar, "unhealthy", origin, Duration::from_secs(60));
    eprintln!("health: unhealthy at {unhealthy:.1?}");
    assert!(
        unhealthy >= mirrored_at + MAX_AGE - Duration::from_secs(1),
        "unhealthy at {unhealthy:?}, only {:?} after the mirror at {mirrored_at:?}",
        unhealthy - mirrored_at
    );
    let said = docker(&[
        "inspect",
        "-f",
        "{{range .State.Health.Log}}{{.Output}}{{end}}",
        &sidecar,
    ]);
    assert!(said.contains("longer than BACKUP_MAX_AGE (20s)"), "{said}");
    let before = status(&sidecar);
    assert_eq!(before["healthy"], false, "{before}");

    // The next success makes it healthy again.
    let second = run_now(&sidecar, 1, RUN_TIMEOUT);
    assert_eq!(second["fields"]["outcome"], "success", "{second}");
    let healthy_again = wait_for_health(&sidecar, "healthy", origin, Duration::from_secs(30));
    eprintln!("health: healthy again at {healthy_again:.1?}");

    let before = status(&sidecar);
    assert_eq!(before["healthy"], true, "{before}");
    assert_eq!(before["last_run"]["outcome"], "success", "{before}");
    let volumes = before["volumes"].as_array().unwrap();
    let entry = volumes
        .iter()
        .find(|v| v["volume"] == volume.as_str())
        .unwrap_or_else(|| panic!("{volume} in {before}"));
    assert_eq!(entry["bytes"], 100_000, "{entry}");
    assert_eq!(entry["files"], 2, "{entry}");
    assert!(entry["last_mirrored"].is_string(), "{entry}");
    assert!(before["next_sync"].is_string(), "{before}");

    // The table for people says the same.
    let table = docker(&["exec", &sidecar, "backup-sidecar", "status"]);
    assert!(table.contains(&volume), "{table}");
    assert!(table.contains("last run:          success"), "{table}");

    // A restart keeps the history: status shows the runs from before it.
    docker(&["restart", "-t", "10", &sidecar]);
    // docker logs keeps the lines from before the restart: the second start is the new one.
    wait_for_events(
        &sidecar,
        "backup-sidecar started",
        2,
        Duration::from_secs(30),
    );
    let after = status(&sidecar);
    assert_eq!(after["last_run"], before["last_run"], "{after}");
    assert_eq!(after["volumes"], before["volumes"], "{after}");
}

#[test]
fn a_long_pass_reports_its_progress() {
    let env = Env::new("progress");
    let remote = env.remote();
    let volume = env.volume("big", &["backup.enable=true", &env.project_label()]);
    // Incompressible data, big enough that the first pass takes a few seconds over the bridge.
    env.in_volume(
        &volume,
        "for i in 1 2 3 4 5 6 7 8; do head -c 64000000 /dev/urandom > /data/f$i; done",
    );
    let sidecar = env.sidecar(&remote, &[("BACKUP_PROGRESS_INTERVAL", "1s")]);
    let finished = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(finished["fields"]["outcome"], "success", "{finished}");
    let (snapshot, progress): (Vec<Value>, Vec<Value>) = events_named(&sidecar, "progress")
        .into_iter()
        .partition(|l| l["fields"]["stage"] == "snapshot");
    assert!(
        !progress.is_empty(),
        "no progress line in a multi-second pass"
    );
    // borg create of the same half gigabyte reports too, with a rate and estimate of ours.
    assert!(!snapshot.is_empty(), "no progress line from borg create");
    for line in &snapshot {
        let fields = &line["fields"];
        assert!(fields["bytes"].as_u64().unwrap() > 0, "{line}");
        assert!(fields["percent"].as_u64().unwrap() < 100, "{line}");
        assert!(fields["rate"].as_str().unwrap().ends_with("/s"), "{line}");
        assert!(fields["eta"].as_str().unwrap().contains(':'), "{line}");
    }
    eprintln!(
        "progress: borg create said {}",
        snapshot.last().unwrap()["fields"]
    );
    let mut last_bytes = 0;
    for line in &progress {
        let fields = &line["fields"];
        assert_eq!(fields["volume"], volume.as_str(), "{line}");
        let bytes = fields["bytes"].as_u64().unwrap();
        assert!(bytes >= last_bytes, "progress went back: {progress:?}");
        last_bytes = bytes;
        assert!(fields["percent"].as_u64().unwrap() <= 100, "{line}");
        assert!(fields["rate"].as_str().unwrap().ends_with("/s"), "{line}");
        assert!(fields["eta"].as_str().unwrap().contains(':'), "{line}");
    }
    // At most one line per interval: never two within much less than a second.
    let times: Vec<chrono::DateTime<chrono::Utc>> = progress
        .iter()
        .map(|l| l["timestamp"].as_str().unwrap().parse().unwrap())
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::Duration::milliseconds(900),
            "two progress lines within {:?}",
            pair[1] - pair[0]
        );
    }
    eprintln!(
        "progress: {} line(s), last {}",
        progress.len(),
        progress.last().unwrap()
    );
}
