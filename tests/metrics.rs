//! End to end: the sidecar's metrics as a real Prometheus (Debian's) scrapes them, and as
//! `promtool check metrics` lints them.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::prometheus::*;
use common::*;
use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// A raw scrape: the status line and headers, and the body.
fn scrape(port: u16) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// The value of the one series `promql` selects.
fn value(result: &Value) -> f64 {
    result[0]["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn prometheus_sees_the_series_from_the_start_and_after_a_run() {
    let env = Env::new("metrics");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "head -c 50000 /dev/urandom > /data/blob");
    let sidecar = env.sidecar_with(
        &remote,
        &[
            ("BACKUP_RUN_ON_START", "false"),
            ("BACKUP_METRICS_ADDR", ":9102"),
        ],
        &["-p", "127.0.0.1::9102"],
    );
    wait_for_events(
        &sidecar,
        "serving metrics at /metrics",
        1,
        Duration::from_secs(30),
    );
    let port = published_port(&sidecar, 9102);

    let (head, body) = scrape(port);
    // hyper answers in the request's version: 1.0 here.
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    let (code, said) = promtool_check(&body);
    assert_eq!(code, 0, "promtool check metrics: {said}\n{body}");
    eprintln!("metrics: promtool check metrics: exit {code}, said {said:?}");

    let prometheus = Prometheus::start(&format!("127.0.0.1:{port}"));
    prometheus.wait_for_target_up(Duration::from_secs(30));
    // Present from the start, before any run: zeros, never missing.
    let selector =
        format!("backup_sidecar_volume_last_success_timestamp_seconds{{volume=\"{volume}\"}}");
    let before = prometheus.wait_for(
        &selector,
        |r| !r.as_array().unwrap().is_empty(),
        Duration::from_secs(20),
    );
    assert_eq!(value(&before), 0.0, "{before}");
    let runs = prometheus.wait_for(
        "backup_sidecar_runs_total",
        |r| r.as_array().unwrap().len() == 2,
        Duration::from_secs(20),
    );
    for series in runs.as_array().unwrap() {
        assert_eq!(series["value"][1], "0", "{runs}");
    }

    docker(&["kill", "-s", "USR1", &sidecar]);
    let finished = wait_for_events(&sidecar, "run finished", 1, RUN_TIMEOUT).remove(0);
    assert_eq!(finished["fields"]["outcome"], "success", "{finished}");

    // After the run, as Prometheus sees it.
    let success = prometheus.wait_for(
        "backup_sidecar_runs_total{outcome=\"success\"}",
        |r| {
            r.as_array()
                .unwrap()
                .first()
                .is_some_and(|s| s["value"][1] == "1")
        },
        Duration::from_secs(30),
    );
    assert_eq!(value(&success), 1.0);
    let last = prometheus.wait_for(&selector, |r| value(r) > 0.0, Duration::from_secs(30));
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - value(&last)).abs() < 300.0, "{last}");
    let bytes = prometheus.query(&format!(
        "backup_sidecar_volume_bytes{{volume=\"{volume}\"}}"
    ));
    assert_eq!(value(&bytes), 50_000.0, "{bytes}");
    let ok = prometheus.query("backup_sidecar_last_run_success");
    assert_eq!(value(&ok), 1.0, "{ok}");
    let archive = prometheus.query("backup_sidecar_last_archive_original_bytes");
    assert!(value(&archive) >= 50_000.0, "{archive}");

    let (_, after) = scrape(port);
    let (code, said) = promtool_check(&after);
    assert_eq!(code, 0, "promtool check metrics: {said}\n{after}");
    eprintln!("metrics: after a run:\n{after}");
}
