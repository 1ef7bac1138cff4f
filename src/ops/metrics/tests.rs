//! Unit tests of `metrics`.

use super::*;
use crate::ops::history::{ArchiveRecord, GroupRecord, RunRecord, VerificationRecord};
use chrono::TimeZone;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn at(day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, minute, second)
        .unwrap()
}

/// A history with one run, three volumes (one gone from the plan and the last run), one group,
/// an archive and a failed verification.
fn history() -> History {
    let mut history = History {
        runs: vec![RunRecord {
            started: at(29, 3, 0, 0),
            finished: at(29, 3, 2, 30),
            trigger: "schedule".into(),
            snapshot: true,
            outcome: crate::report::Outcome::Success,
            cause: None,
            error: None,
            volumes: 1,
            bytes: 1_048_576,
            max_pause_ms: 1250,
            archive: Some("nas-2026-11-29T03:00:00".into()),
            thawed: true,
            freezes: Default::default(),
            sent_bytes: 0,
            log: Vec::new(),
        }],
        runs_total: BTreeMap::from([("success".into(), 3), ("failed".into(), 1)]),
        last_success: Some(at(29, 3, 2, 30)),
        last_archive: Some(ArchiveRecord {
            name: "nas-2026-11-29T03:00:00".into(),
            time: at(29, 3, 2, 30),
            original_bytes: 1_048_576,
            deduplicated_bytes: 2048,
            seconds: 3.5,
        }),
        last_verification: Some(VerificationRecord {
            at: at(29, 4, 0, 0),
            outcome: crate::report::Outcome::Failed,
            archive: None,
            compared: 0,
            mismatches: 0,
            error: Some("cannot reach".into()),
        }),
        ..History::default()
    };
    history.volumes.insert(
        "app".into(),
        VolumeRecord {
            group: "nc".into(),
            last_attempt: Some(at(29, 3, 0, 0)),
            last_success: Some(at(29, 3, 2, 30)),
            bytes: 1_048_576,
            files: 42,
            seconds: 12.5,
            live_seconds: Some(10.25),
            last_error: None,
            journal_missed: 0,
        },
    );
    history.volumes.insert(
        "tried".into(),
        VolumeRecord {
            group: "nc".into(),
            last_attempt: Some(at(29, 3, 0, 0)),
            last_error: Some("vanished".into()),
            journal_missed: 0,
            ..VolumeRecord::default()
        },
    );
    history.volumes.insert(
        "removed".into(),
        VolumeRecord {
            group: "nc".into(),
            last_attempt: Some(at(28, 3, 0, 0)),
            last_success: Some(at(28, 3, 1, 0)),
            bytes: 7,
            ..VolumeRecord::default()
        },
    );
    history.groups.insert(
        "nc".into(),
        GroupRecord {
            at: Some(at(29, 3, 0, 0)),
            pause_ms: 1250,
            containers: vec!["nc-app".into()],
        },
    );
    history
}

const EXPECTED: &str = r#"# HELP backup_sidecar_run_in_progress Whether a backup run is in progress (1) or not (0).
# TYPE backup_sidecar_run_in_progress gauge
backup_sidecar_run_in_progress 1
# HELP backup_sidecar_current_run_start_timestamp_seconds When the run in progress started, as a Unix time; 0 when none is.
# TYPE backup_sidecar_current_run_start_timestamp_seconds gauge
backup_sidecar_current_run_start_timestamp_seconds 1796007600
# HELP backup_sidecar_current_run_progress_timestamp_seconds When the run in progress last moved bytes (or started), as a Unix time; 0 when none is.
# TYPE backup_sidecar_current_run_progress_timestamp_seconds gauge
backup_sidecar_current_run_progress_timestamp_seconds 1796007660.5
# HELP backup_sidecar_current_run_transferred_bytes Bytes the run in progress has moved so far; 0 when none is.
# TYPE backup_sidecar_current_run_transferred_bytes gauge
backup_sidecar_current_run_transferred_bytes 512
# HELP backup_sidecar_runs_total Backup runs finished, by outcome.
# TYPE backup_sidecar_runs_total counter
backup_sidecar_runs_total{outcome="failed"} 1
backup_sidecar_runs_total{outcome="success"} 3
# HELP backup_sidecar_last_run_start_timestamp_seconds When the last finished run started, as a Unix time; 0 before the first.
# TYPE backup_sidecar_last_run_start_timestamp_seconds gauge
backup_sidecar_last_run_start_timestamp_seconds 1795921200
# HELP backup_sidecar_last_run_end_timestamp_seconds When the last finished run ended, as a Unix time; 0 before the first.
# TYPE backup_sidecar_last_run_end_timestamp_seconds gauge
backup_sidecar_last_run_end_timestamp_seconds 1795921350
# HELP backup_sidecar_last_run_duration_seconds How long the last finished run took; 0 before the first.
# TYPE backup_sidecar_last_run_duration_seconds gauge
backup_sidecar_last_run_duration_seconds 150
# HELP backup_sidecar_last_run_success Whether the last finished run succeeded (1) or failed (0); 0 before the first.
# TYPE backup_sidecar_last_run_success gauge
backup_sidecar_last_run_success 1
# HELP backup_sidecar_last_success_timestamp_seconds When the last successful run ended, as a Unix time; 0 before the first.
# TYPE backup_sidecar_last_success_timestamp_seconds gauge
backup_sidecar_last_success_timestamp_seconds 1795921350
# HELP backup_sidecar_volume_last_success_timestamp_seconds When the run that last mirrored the volume completely ended, as a Unix time; 0 before.
# TYPE backup_sidecar_volume_last_success_timestamp_seconds gauge
backup_sidecar_volume_last_success_timestamp_seconds{volume="app"} 1795921350
backup_sidecar_volume_last_success_timestamp_seconds{volume="new"} 0
backup_sidecar_volume_last_success_timestamp_seconds{volume="tried"} 0
# HELP backup_sidecar_volume_bytes Size of the volume's files at its last complete mirror.
# TYPE backup_sidecar_volume_bytes gauge
backup_sidecar_volume_bytes{volume="app"} 1048576
backup_sidecar_volume_bytes{volume="new"} 0
backup_sidecar_volume_bytes{volume="tried"} 0
# HELP backup_sidecar_volume_files Entries in the volume at its last complete mirror.
# TYPE backup_sidecar_volume_files gauge
backup_sidecar_volume_files{volume="app"} 42
backup_sidecar_volume_files{volume="new"} 0
backup_sidecar_volume_files{volume="tried"} 0
# HELP backup_sidecar_volume_sync_duration_seconds How long the volume's rsync passes took at its last complete mirror.
# TYPE backup_sidecar_volume_sync_duration_seconds gauge
backup_sidecar_volume_sync_duration_seconds{volume="app"} 12.5
backup_sidecar_volume_sync_duration_seconds{volume="new"} 0
backup_sidecar_volume_sync_duration_seconds{volume="tried"} 0
# HELP backup_sidecar_volume_live_pass_duration_seconds How long the volume's live pass (before its freeze) took at its last complete mirror; 0 when it had a single pass.
# TYPE backup_sidecar_volume_live_pass_duration_seconds gauge
backup_sidecar_volume_live_pass_duration_seconds{volume="app"} 10.25
backup_sidecar_volume_live_pass_duration_seconds{volume="new"} 0
backup_sidecar_volume_live_pass_duration_seconds{volume="tried"} 0
# HELP backup_sidecar_volume_journal_missed_total Entries the scheduled full passes (BACKUP_FULL_SCAN_SCHEDULE) found different in the mirror that the change journal had not named; 0 while it sees every change.
# TYPE backup_sidecar_volume_journal_missed_total counter
backup_sidecar_volume_journal_missed_total{volume="app"} 0
backup_sidecar_volume_journal_missed_total{volume="new"} 0
backup_sidecar_volume_journal_missed_total{volume="tried"} 0
# HELP backup_sidecar_group_last_freeze_seconds How long the group's containers were last frozen.
# TYPE backup_sidecar_group_last_freeze_seconds gauge
backup_sidecar_group_last_freeze_seconds{group="nc"} 1.25
# HELP backup_sidecar_group_last_freeze_timestamp_seconds When the run that last froze the group started, as a Unix time.
# TYPE backup_sidecar_group_last_freeze_timestamp_seconds gauge
backup_sidecar_group_last_freeze_timestamp_seconds{group="nc"} 1795921200
# HELP backup_sidecar_last_archive_timestamp_seconds When the run that created the last archive ended, as a Unix time; 0 before the first.
# TYPE backup_sidecar_last_archive_timestamp_seconds gauge
backup_sidecar_last_archive_timestamp_seconds 1795921350
# HELP backup_sidecar_last_archive_original_bytes Size of the files in the last archive.
# TYPE backup_sidecar_last_archive_original_bytes gauge
backup_sidecar_last_archive_original_bytes 1048576
# HELP backup_sidecar_last_archive_deduplicated_bytes What the last archive added to the repository after deduplication and compression.
# TYPE backup_sidecar_last_archive_deduplicated_bytes gauge
backup_sidecar_last_archive_deduplicated_bytes 2048
# HELP backup_sidecar_last_archive_duration_seconds How long creating the last archive took.
# TYPE backup_sidecar_last_archive_duration_seconds gauge
backup_sidecar_last_archive_duration_seconds 3.5
# HELP backup_sidecar_last_verification_success Whether the last verification found the repository and the mirror sound (1) or not (0); 0 before the first.
# TYPE backup_sidecar_last_verification_success gauge
backup_sidecar_last_verification_success 0
# HELP backup_sidecar_last_verification_timestamp_seconds When the last verification ended, as a Unix time; 0 before the first.
# TYPE backup_sidecar_last_verification_timestamp_seconds gauge
backup_sidecar_last_verification_timestamp_seconds 1795924800
"#;

fn running() -> Running {
    Running {
        started: at(30, 3, 0, 0),
        moved: at(30, 3, 1, 0) + chrono::Duration::milliseconds(500),
        bytes: 512,
    }
}

#[test]
fn renders_the_exposition_format() {
    let planned = ["new".to_string(), "app".to_string()];
    let text = render(&history(), Some(&running()), &planned);
    // Line by line first, so a difference shows where it is.
    for (got, want) in text.lines().zip(EXPECTED.lines()) {
        assert_eq!(got, want);
    }
    assert_eq!(text, EXPECTED);
}

#[test]
fn every_series_exists_before_the_first_run() {
    let text = render(&History::default(), None, &["app".to_string()]);
    for line in [
        "backup_sidecar_run_in_progress 0",
        "backup_sidecar_runs_total{outcome=\"failed\"} 0",
        "backup_sidecar_runs_total{outcome=\"success\"} 0",
        "backup_sidecar_last_run_success 0",
        "backup_sidecar_last_success_timestamp_seconds 0",
        "backup_sidecar_volume_last_success_timestamp_seconds{volume=\"app\"} 0",
        "backup_sidecar_volume_bytes{volume=\"app\"} 0",
        "backup_sidecar_last_archive_timestamp_seconds 0",
        "backup_sidecar_last_verification_success 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    // The same families as with a full history, in the same order.
    let families = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("# TYPE "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(families(&text), families(EXPECTED));
    assert!(text.ends_with('\n'));
}

#[test]
fn escapes_label_values() {
    let text = render(&History::default(), None, &["a\\b\"c\nd".to_string()]);
    assert!(
        text.contains("backup_sidecar_volume_bytes{volume=\"a\\\\b\\\"c\\nd\"} 0\n"),
        "{text}"
    );
    let mut out = String::new();
    escape_label_value(&mut out, "plain-name_1.x");
    assert_eq!(out, "plain-name_1.x");
}

#[test]
fn formats_numbers() {
    let shown = |v: f64| Number(v).to_string();
    assert_eq!(shown(0.0), "0");
    assert_eq!(shown(1.25), "1.25");
    assert_eq!(shown(1e21), "1000000000000000000000");
    assert_eq!(shown(f64::INFINITY), "+Inf");
    assert_eq!(shown(f64::NEG_INFINITY), "-Inf");
    assert_eq!(shown(f64::NAN), "NaN");
}

/// Sends `request` raw and returns everything the server answered before it closed.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A server that closed early may make the write fail; what it answered still counts.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    // A reset (the server closing on unread input) ends the answer as well as a close.
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// Starts a server on a free port of 127.0.0.1 reading `dir`, with the default limits unless
/// others are given.
async fn start(
    dir: &std::path::Path,
    limits: Option<Limits>,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let source = Source::new(Store::new(dir), || vec!["app".to_string()]);
    let cancel = CancellationToken::new();
    let server = match limits {
        None => tokio::spawn(serve_on(listener, source, cancel.clone())),
        Some(limits) => tokio::spawn(serve_with(listener, source, limits, cancel.clone())),
    };
    (addr, cancel, server)
}

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n";

/// Bounds a step of a test that would otherwise hang if the server misbehaved.
async fn soon<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .unwrap_or_else(|_| panic!("{what} took over 5 s"))
}

#[tokio::test]
async fn serves_fresh_metrics_and_stops_when_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let (addr, cancel, server) = start(dir.path(), None).await;

    let response = soon("a scrape", exchange(addr, SCRAPE)).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{response}"
    );
    assert!(response.contains("\nbackup_sidecar_volume_bytes{volume=\"app\"} 0\n"));
    assert!(response.contains("\nbackup_sidecar_run_in_progress 0\n"));

    // Each scrape reads the state directory again.
    store.save(&history()).unwrap();
    store.set_running(&running()).unwrap();
    let response = soon("a scrape", exchange(addr, SCRAPE)).await;
    assert!(response.contains("\nbackup_sidecar_volume_bytes{volume=\"app\"} 1048576\n"));
    assert!(response.contains("\nbackup_sidecar_run_in_progress 1\n"));

    let head = soon(
        "HEAD",
        exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(!head.contains("backup_sidecar"), "{head}");

    let other = soon(
        "another path",
        exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
    let post = soon(
        "a POST",
        exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        ),
    )
    .await;
    assert!(
        post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{post}"
    );

    cancel.cancel();
    soon("stopping", server).await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn an_address_in_use_names_the_variable() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let error = bind(addr).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.starts_with(&format!("BACKUP_METRICS_ADDR: cannot listen on {addr}: ")),
        "{message}"
    );
}

#[tokio::test]
async fn survives_slow_garbage_and_greedy_clients() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        deadline: Duration::from_millis(300),
        connections: 16,
    };
    let (addr, cancel, _server) = start(dir.path(), Some(limits)).await;

    // Half a request, then silence: dropped at the deadline.
    let slow = soon("a slow client", exchange(addr, b"GET /metr")).await;
    assert!(!slow.contains("200 OK"), "{slow}");

    let garbage = soon("garbage", exchange(addr, b"\x00\x01 nonsense\r\n\r\n")).await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");

    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    huge.resize(huge.len() + 3 * MAX_REQUEST_BYTES, b'a');
    let huge = soon("an oversized request", exchange(addr, &huge)).await;
    assert!(!huge.contains("200 OK"), "{huge}");

    // None of it hurt the next scrape.
    let response = soon("a scrape", exchange(addr, SCRAPE)).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    cancel.cancel();
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        deadline: Duration::from_secs(60),
        connections: 1,
    };
    let (addr, cancel, _server) = start(dir.path(), Some(limits)).await;
    // The first connection takes the only slot and holds it, sending nothing.
    let idle = TcpStream::connect(addr).await.unwrap();
    // The second is closed unanswered long before the deadline would.
    let refused = soon("a connection over the cap", exchange(addr, SCRAPE)).await;
    assert_eq!(refused, "");
    drop(idle);
    cancel.cancel();
}

#[test]
fn the_copys_series_appear_once_the_remote_has_tried_one() {
    let mut history = history();
    let without = render(&history, None, &[]);
    assert!(!without.contains("backup_sidecar_copy_"));
    history.copy = Some(crate::ops::history::CopyRecord {
        kind: "rclone".into(),
        target: "offsite:borg (sftp)".into(),
        last_success: Some(at(29, 4, 0, 0)),
        newest_archive_time: Some(at(29, 3, 0, 0)),
        bytes: 2048,
        bytes_total: 4096,
        seconds: 1.5,
        failures_total: 2,
        ..Default::default()
    });
    let text = render(&history, None, &[]);
    for line in [
        "backup_sidecar_copy_last_success_timestamp_seconds 1795924800\n",
        "backup_sidecar_copy_newest_archive_timestamp_seconds 1795921200\n",
        "backup_sidecar_copy_last_sent_bytes 2048\n",
        "# TYPE backup_sidecar_copy_sent_bytes_total counter\nbackup_sidecar_copy_sent_bytes_total 4096\n",
        "backup_sidecar_copy_last_duration_seconds 1.5\n",
        "backup_sidecar_copy_failures_total 2\n",
        "backup_sidecar_copy_last_check_success 0\n",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}
