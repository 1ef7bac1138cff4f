//! The web page's speed, against the sidecar image, a real engine and the guarded remote: each
//! page's time with a history of 50 runs and 500 sources (20 requests each, median and worst), an
//! archive's folder once indexed, and the download of a 1 GiB file through the page against
//! `borg extract --stdout` of the same file on the remote itself. Run as root with
//! `cargo bench --bench web` (a few minutes); it replaces its own section of `BENCHMARKS.md`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/mod.rs"]
mod shared;

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use serde_json::json;

use common::*;

const HEADING: &str = "## The web page";
const PASSWORD: &str = "correct horse battery staple";
const RUNS: usize = 50;
const SOURCES: usize = 500;
const REQUESTS: usize = 20;

/// A history of `RUNS` runs and `SOURCES` sources, as the daemon writes it.
fn history() -> String {
    let now = Utc::now();
    let runs: Vec<_> = (0..RUNS)
        .map(|i| {
            let started = now - Span::hours((RUNS - i) as i64 * 24);
            json!({
                "started": started, "finished": started + Span::seconds(40 + (i % 7) as i64),
                "trigger": "schedule", "snapshot": i % 7 == 0,
                "outcome": if i % 13 == 5 { "failed" } else { "success" },
                "cause": null, "error": null, "volumes": SOURCES, "bytes": 40u64 << 30,
                "max_pause_ms": 150 + (i * 37) % 200, "archive": null, "thawed": true,
                "freezes": { "nextcloud": 150 + (i * 37) % 200, "immich": 90 + (i * 11) % 50 },
                "sent_bytes": 10_000_000 + i * 1_000_000,
                "log": (0..60).map(|n| format!("2026-12-01T03:00:{n:02}Z INFO a log line")).collect::<Vec<_>>(),
            })
        })
        .collect();
    let volumes: serde_json::Map<String, serde_json::Value> = (0..SOURCES)
        .map(|i| {
            (
                format!("project{}_volume{i}", i % 20),
                json!({
                    "group": format!("project{}", i % 20), "last_attempt": now,
                    "last_success": now, "bytes": 1u64 << 30, "files": 20_000,
                    "seconds": 12.5, "live_seconds": 12.0, "last_error": null,
                }),
            )
        })
        .collect();
    json!({
        "since": now - Span::days(60), "runs": runs,
        "runs_total": { "success": RUNS, "failed": 3 }, "last_success": now,
        "volumes": volumes, "groups": {},
    })
    .to_string()
}

/// Seconds of each of `n` GETs of `url` with `cookie`: (median, worst) in ms.
fn times(url: &str, cookie: &str, n: usize) -> (f64, f64) {
    let mut all: Vec<f64> = (0..n)
        .map(|_| {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"])
                .args(["-H", &format!("Cookie: {cookie}")])
                .arg(url)
                .output()
                .expect("curl runs");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (code, secs) = text.split_once(' ').unwrap_or(("0", "0"));
            assert_eq!(code, "200", "GET {url}");
            secs.parse::<f64>().unwrap() * 1000.0
        })
        .collect();
    all.sort_by(|a, b| a.total_cmp(b));
    (all[all.len() / 2], all[all.len() - 1])
}

/// Signs in: the session cookie.
fn sign_in(base: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-", "-X", "POST"])
        .args(["-H", &format!("Origin: {base}")])
        .args(["--data-urlencode", &format!("password={PASSWORD}")])
        .arg(format!("{base}/login"))
        .output()
        .expect("curl runs");
    let headers = String::from_utf8_lossy(&out.stdout).into_owned();
    headers
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session: {headers}"))
        .to_string()
}

/// Time and bytes of a command whose stdout is counted.
fn timed(argv: &[&str]) -> (f64, u64) {
    let started = Instant::now();
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (started.elapsed().as_secs_f64(), bytes)
}

fn main() {
    let env = Env::new("webbench");
    let remote = env.remote();
    // The sidecar's state, seeded with the history.
    let state = env.volume("state", &[]);
    let seed = format!("{state}:/s");
    let mut writer = Command::new("docker")
        .args([
            "run",
            "--rm",
            "-i",
            "-v",
            &seed,
            APP_IMAGE,
            "sh",
            "-c",
            "cat > /s/history.json",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writer
        .stdin
        .take()
        .unwrap()
        .write_all(history().as_bytes())
        .unwrap();
    assert!(writer.wait().unwrap().success());
    // A volume with a 1 GiB file (random: nothing to compress or deduplicate).
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "head -c 1073741824 /dev/urandom > /data/big.bin");
    let state_mount = format!("{state}:/var/lib/backup-sidecar");
    let sidecar = env.sidecar_with(
        &remote,
        &[
            ("BACKUP_WEB_ADDR", ":8080"),
            ("BACKUP_WEB_PASSWORD", PASSWORD),
            ("BACKUP_WEB_HOSTS", "127.0.0.1"),
        ],
        &["-p", "127.0.0.1::8080", "-v", &state_mount],
    );
    let run = wait_for_run(&sidecar, Duration::from_secs(900));
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let archive = run["fields"]["archive"].as_str().unwrap().to_string();
    let port = common::prometheus::published_port(&sidecar, 8080);
    let base = format!("http://127.0.0.1:{port}");
    let cookie = sign_in(&base);
    // The index is built in the background after the snapshot.
    wait_until("the archive's index", Duration::from_secs(300), || {
        Command::new("curl")
            .args(["-s", "-H", &format!("Cookie: {cookie}")])
            .arg(format!("{base}/archives/{archive}"))
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("id=\"entries\""))
    });

    let mut rows = Vec::new();
    for (page, path) in [
        ("overview", "/".to_string()),
        ("history (50 runs, plots)", "/history".to_string()),
        (
            "a run's detail (60 log lines)",
            format!("/runs/{}", RUNS - 1),
        ),
        ("sources (500)", "/sources".to_string()),
        ("archives (cached listing)", "/archives".to_string()),
        (
            "an archive's folder (indexed)",
            format!("/archives/{archive}?path={volume}"),
        ),
        ("settings", "/settings".to_string()),
    ] {
        let (median, worst) = times(&format!("{base}{path}"), &cookie, REQUESTS);
        rows.push(format!("| {page} | {median:.1} | {worst:.1} |"));
    }

    // 1 GiB through the page, against borg on the remote itself.
    let url = format!("{base}/download/{archive}?path={volume}%2Fbig.bin");
    let (page_s, page_bytes) = timed(&[
        "sh",
        "-c",
        &format!("curl -s --fail -H 'Cookie: {cookie}' '{url}' | wc -c"),
    ]);
    let item = format!("{volume}/big.bin");
    let (borg_s, borg_bytes) = timed(&[
        "docker",
        "exec",
        "-e",
        &format!("BORG_PASSPHRASE={PASSPHRASE}"),
        &remote.name,
        "sh",
        "-c",
        &format!("borg extract --stdout /backup/borg::{archive} {item} | wc -c"),
    ]);
    assert_eq!(page_bytes, 1 << 30, "the page sent the whole file");
    assert_eq!(borg_bytes, 1 << 30);
    let mib = |s: f64| 1024.0 / s;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let section = format!(
        "{HEADING}\n\n`cargo bench --bench web`, {} on this project's 2-core VM (shared; load \
         {}). The sidecar image with a seeded history of {RUNS} runs and {SOURCES} sources, the \
         guarded remote on the test network; {REQUESTS} GETs of each page with curl, signed in.\n\n\
         | page | median, ms | worst, ms |\n|---|---|---|\n{}\n\n\
         | 1 GiB file | seconds | MiB/s |\n|---|---|---|\n\
         | downloaded through the page (ssh, borg on the sidecar, HTTP) | {page_s:.1} | {:.0} |\n\
         | `borg extract --stdout` on the remote itself (no ssh, no HTTP) | {borg_s:.1} | {:.0} |\n\n\
         The page adds the connection to the remote and HTTP to borg's own extraction: {:.2}x its \
         time. Neither is staged: the bytes go to the browser as borg reads them.\n",
        Utc::now().format("%Y-%m-%d"),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        rows.join("\n"),
        mib(page_s),
        mib(borg_s),
        page_s / borg_s,
    );
    println!("{section}");
    shared::write_section(HEADING, &section);
}
