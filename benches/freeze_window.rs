//! How long the apps are frozen, against how long they would be frozen if the copy happened
//! inside the freeze. Real engine, real remote, the sidecar image; run with
//! `cargo bench --bench freeze_window` after `scripts/build-images.sh`.
//!
//! Volume: 10,000 files of 13,000 bytes (130 MB) in 100 directories. The app rewrites 100 of
//! them (1%) all the time, so they change between the live pass and the catch-up pass.
//!
//! Each round, side by side:
//! - cold: two-pass run into an empty mirror (the live pass is a full copy);
//! - warm: two-pass run into the mirror the cold run left (the everyday case);
//! - full copy: one pass into an empty mirror with the app stopped: what a freeze would last if
//!   the whole copy happened inside it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;

const TIMEOUT: Duration = Duration::from_secs(300);
const ROUNDS: usize = 3;

fn field(event: &serde_json::Value, name: &str) -> f64 {
    event["fields"][name].as_f64().unwrap_or(f64::NAN)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

struct Round {
    cold_live_s: f64,
    cold_pause_ms: f64,
    warm_live_s: f64,
    warm_pause_ms: f64,
    full_copy_s: f64,
}

fn main() {
    let env = Env::new("bench");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(
        &volume,
        "cd /data && head -c 130000000 /dev/urandom | split -b 13000 -a 4 -d - f && \
         for d in $(seq -w 0 99); do mkdir d$d && mv f$d?? d$d/; done",
    );
    let files = env.in_volume(&volume, "find /data -type f | wc -l");
    assert_eq!(files.trim(), "10000");
    let hot = "while :; do for f in /data/d00/*; do head -c 13000 /dev/urandom > $f; \
               sleep 0.01; done; done";
    let app_args = [
        "--label",
        &env.project_label(),
        "-v",
        &format!("{volume}:/data"),
    ];
    let app = env.container("app", &app_args, APP_IMAGE, &["sh", "-c", hot]);
    let no_borg = [("BACKUP_BORG_REPO", ""), ("BACKUP_BORG_PASSPHRASE", "")];

    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        env.on_remote(&remote, "rm -rf /backup/mirror/*");
        let sidecar = env.sidecar(&remote, &no_borg);
        let cold = wait_for_run(&sidecar, TIMEOUT);
        assert_eq!(cold["fields"]["outcome"], "success", "{cold}");
        docker(&["kill", "-s", "USR1", &sidecar]);
        let runs = wait_for_events(&sidecar, "run finished", 2, TIMEOUT);
        assert_eq!(runs[1]["fields"]["outcome"], "success", "{}", runs[1]);
        let synced = events_named(&sidecar, "volume synced");
        let thawed = events_named(&sidecar, "group thawed");
        docker(&["rm", "-f", &sidecar]);

        // The same copy in one pass, into an empty mirror, with nothing running.
        env.on_remote(&remote, "rm -rf /backup/mirror/*");
        docker(&["stop", "-t", "1", &app]);
        let sidecar = env.sidecar(&remote, &no_borg);
        let full = wait_for_run(&sidecar, TIMEOUT);
        assert_eq!(full["fields"]["outcome"], "success", "{full}");
        let full_synced = events_named(&sidecar, "volume synced");
        docker(&["rm", "-f", &sidecar]);
        docker(&["start", &app]);

        let r = Round {
            cold_live_s: field(&synced[0], "live_seconds"),
            cold_pause_ms: field(&thawed[0], "pause_ms"),
            warm_live_s: field(&synced[1], "live_seconds"),
            warm_pause_ms: field(&thawed[1], "pause_ms"),
            full_copy_s: field(&full_synced[0], "seconds"),
        };
        eprintln!(
            "round {round}: cold live {:.2} s, pause {} ms; warm live {:.2} s, pause {} ms; \
             full copy {:.2} s",
            r.cold_live_s, r.cold_pause_ms, r.warm_live_s, r.warm_pause_ms, r.full_copy_s
        );
        rounds.push(r);
    }

    let m = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let full_ms = m(|r| r.full_copy_s) * 1000.0;
    println!("freeze window, 10,000 files / 130 MB, 1% changing; medians of {ROUNDS} rounds");
    println!("| run | live pass | longest pause_ms | full copy in the freeze would be |");
    println!("|---|---|---|---|");
    for (name, live, pause) in [
        (
            "cold (empty mirror)",
            m(|r| r.cold_live_s),
            m(|r| r.cold_pause_ms),
        ),
        (
            "warm (mirror current)",
            m(|r| r.warm_live_s),
            m(|r| r.warm_pause_ms),
        ),
    ] {
        println!(
            "| {name} | {live:.2} s | {pause:.0} ms | {full_ms:.0} ms ({:.1}x the pause) |",
            full_ms / pause
        );
    }
}
