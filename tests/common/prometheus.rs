//! A real Prometheus for the metrics test, run on the host as a child process (Debian's
//! `prometheus` package, installed by `scripts/provision.sh`), scraping one target every second;
//! and `promtool check metrics`.
//!
//! The sidecar runs in a container: publish its metrics port on the host's loopback
//! (`-p 127.0.0.1::9102`), find the host port with [`published_port`], and scrape
//! `127.0.0.1:<port>`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::docker;

/// A Prometheus scraping one target; killed, and its directory removed, when dropped.
pub struct Prometheus {
    child: Child,
    /// Its configuration, its TSDB and its log; removed after the child is killed (fields drop
    /// after `Drop::drop`).
    dir: tempfile::TempDir,
    /// The port of its HTTP API on 127.0.0.1.
    pub port: u16,
}

fn missing(tool: &str) -> String {
    format!(
        "{tool} is missing: run scripts/test.sh, whose scripts/provision.sh installs Debian's \
         prometheus package (the tests never skip)"
    )
}

/// A port nothing listens on now. Prometheus binds it a moment later; another process taking it
/// in between is possible but makes Prometheus fail loudly, not the test pass wrongly.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`, path `/metrics`, every second) and
    /// waits until it is ready (not until the target is up: see
    /// [`Prometheus::wait_for_target_up`]).
    pub fn start(target: &str) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("bs-test-prometheus-")
            .tempdir()
            .unwrap();
        // The timeout may not exceed the interval, and the default (10 s) does.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: backup-sidecar\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: ['{target}']\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let port = free_port();
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Dies with the test: Drop does not run when the test process itself is killed (a
        // timeout in CI), and an orphan would scrape on forever.
        // SAFETY: prctl is async-signal-safe, and the closure touches nothing else.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("{} ({e})", missing("prometheus"));
        });
        let mut prometheus = Prometheus { child, dir, port };
        prometheus.wait_ready(Duration::from_secs(30));
        prometheus
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = self.try_get("/-/ready") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            assert!(
                started.elapsed() < timeout,
                "prometheus was not ready within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The base URL of its HTTP API and web UI.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` over plain HTTP/1.0 (the connection closes after the answer, so reading to
    /// the end reads it all); the status and body.
    fn try_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_string()))
    }

    /// `GET path` of the API, its JSON `data`; panics on any error, with Prometheus's.
    fn api(&self, path: &str) -> Value {
        let (status, body) = self
            .try_get(path)
            .unwrap_or_else(|e| panic!("GET {path} from prometheus: {e}\n{}", self.log()));
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: HTTP {status}, not JSON ({e}): {body}"));
        assert!(
            status == 200 && json["status"] == "success",
            "GET {path}: HTTP {status}: {body}"
        );
        json["data"].clone()
    }

    /// Evaluates `promql` now (`/api/v1/query`); returns `data.result`: for a vector, an array
    /// of `{"metric": {labels}, "value": [time, "value as text"]}`.
    pub fn query(&self, promql: &str) -> Value {
        let query = utf8_percent_encode(promql, NON_ALPHANUMERIC);
        self.api(&format!("/api/v1/query?query={query}"))["result"].clone()
    }

    /// Waits until `what` holds of [`Prometheus::query`]'s result; returns it. Scrapes come
    /// every second, so a series shows up a second or two after the target serves it.
    pub fn wait_for(
        &self,
        promql: &str,
        what: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let started = Instant::now();
        loop {
            let result = self.query(promql);
            if what(&result) {
                return result;
            }
            assert!(
                started.elapsed() < timeout,
                "{promql} did not become as expected within {timeout:?}; last result: {result}; \
                 targets: {}",
                self.targets()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The scrape targets (`/api/v1/targets`, `data.activeTargets`): each with its `health`
    /// (`up`, `down`, `unknown`) and `lastError`.
    pub fn targets(&self) -> Value {
        self.api("/api/v1/targets")["activeTargets"].clone()
    }

    /// Waits until the target has been scraped successfully; panics with the scrape error (a
    /// malformed exposition shows here) and Prometheus's log on timeout.
    pub fn wait_for_target_up(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let targets = self.targets();
            let up = targets
                .as_array()
                .is_some_and(|t| !t.is_empty() && t.iter().all(|t| t["health"] == "up"));
            if up {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "the target was not up within {timeout:?}: {targets}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool check metrics` on `text` (an exposition, on its stdin): its exit code (0 clean, 1
/// unparsable, 3 lint problems) and what it printed, stdout then stderr.
pub fn promtool_check(text: &str) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} ({e})", missing("promtool")));
    // promtool reads all of stdin before it writes, so writing first cannot deadlock; should it
    // stop early, its exit code and output say why, better than a broken pipe here.
    let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), printed)
}

/// The host port that `container`'s `port`/tcp is published on (`docker port`), for a container
/// run with `-p 127.0.0.1::<port>`.
pub fn published_port(container: &str, port: u16) -> u16 {
    let out = docker(&["port", container, &format!("{port}/tcp")]);
    // One line per binding, `127.0.0.1:49153` (or `[::1]:49153`): the port after the last ':'.
    out.lines()
        .next()
        .and_then(|line| line.trim().rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{container} publishes no {port}/tcp: {out:?}"))
}
