//! Prometheus metrics: the run history rendered in the text exposition format 0.0.4 and served at
//! `/metrics` on `BACKUP_METRICS_ADDR`. Every scrape reads the state directory afresh, so the
//! numbers are the ones `status` and `health` see, and they survive a restart.
//!
//! Every series exists from the start (zeros until there is something to say), so an alert such
//! as `time() - backup_sidecar_last_success_timestamp_seconds > 2 * 86400` never meets a missing
//! series. The text is written by hand: for two dozen families that is shorter than adapting a
//! crate, and `prometheus-client` writes OpenMetrics (a `# EOF` line, counters typed without
//! `_total`), which is not the format we announce.
//!
//! The server is hyper's HTTP/1 connection on tokio's listener rather than a hand-written parser:
//! hyper is already in the tree through bollard, and it answers garbage, oversized and HEAD
//! requests correctly for free. What hyper leaves to us is bounded here: one request per
//! connection, a deadline on each connection, and a cap on connections at once.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::history::{CopyRecord, History, Running, Store, VolumeRecord};
use crate::report::Outcome;

/// The media type of the text exposition format 0.0.4. Prometheus 3 fails a scrape whose
/// Content-Type is missing or wrong.
pub const CONTENT_TYPE_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The path metrics are served at.
const METRICS_PATH: &str = "/metrics";

/// Bounds on what a client may cost.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// A whole connection, request and response: a client that sends slowly or not at all is
    /// dropped after this. Prometheus' default scrape timeout is the same ten seconds.
    deadline: Duration,
    /// Connections served at once; further ones are closed unanswered until one ends.
    connections: usize,
}

const LIMITS: Limits = Limits {
    deadline: Duration::from_secs(10),
    connections: 16,
};

/// The largest request head hyper buffers (its minimum; a scrape's is a few hundred bytes).
/// Larger requests get 431.
const MAX_REQUEST_BYTES: usize = 8192;

/// The pause after a failed `accept` (out of file descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a scrape reads: the history's files, and the volumes planned now.
#[derive(Clone)]
pub struct Source {
    store: Store,
    planned: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
}

impl Source {
    /// Reads `store` on each scrape; `planned` gives the names of the volumes planned now (those
    /// get their series before their first backup).
    pub fn new(store: Store, planned: impl Fn() -> Vec<String> + Send + Sync + 'static) -> Self {
        Source {
            store,
            planned: Arc::new(planned),
        }
    }

    /// The metrics now. Reads files: call it off the async threads.
    fn render(&self) -> String {
        render(
            &self.store.load(),
            self.store.running().as_ref(),
            &(self.planned)(),
        )
    }
}

/// Binds `addr`, to fail at start rather than at the first scrape.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("BACKUP_METRICS_ADDR: cannot listen on {addr}"))
}

/// Serves metrics on `listener` until `cancel`. Nothing here fails the caller: a bad connection
/// ends alone, and a failed `accept` is logged and retried.
pub async fn serve_on(listener: TcpListener, source: Source, cancel: CancellationToken) {
    serve_with(listener, source, LIMITS, cancel).await
}

async fn serve_with(
    listener: TcpListener,
    source: Source,
    limits: Limits,
    cancel: CancellationToken,
) {
    if let Ok(address) = listener.local_addr() {
        info!(%address, path = METRICS_PATH, "serving metrics");
    }
    let slots = Arc::new(Semaphore::new(limits.connections));
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    warn!(%error, "metrics: cannot accept a connection");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        // Dropping the stream closes it: a client that holds many connections open cannot
        // starve the others of more than the cap.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("metrics: too many connections, closing one");
            continue;
        };
        tokio::spawn(connection(
            stream,
            source.clone(),
            limits,
            cancel.clone(),
            slot,
        ));
    }
    debug!("metrics server stopped");
}

/// One connection, one request, in its own task.
async fn connection(
    stream: TcpStream,
    source: Source,
    limits: Limits,
    cancel: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    // No keep-alive: a scrape every few seconds costs a connection each, and one request per
    // connection lets a single deadline cover everything a client can make us wait for (slow
    // headers, an idle connection, a response it never reads).
    let exchange = http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_REQUEST_BYTES)
        .serve_connection(
            TokioIo::new(stream),
            service_fn(move |request| respond(request, source.clone())),
        );
    tokio::select! {
        () = cancel.cancelled() => {}
        ended = tokio::time::timeout(limits.deadline, exchange) => match ended {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(%error, "metrics: connection failed"),
            Err(_) => debug!("metrics: connection timed out"),
        },
    }
}

async fn respond(
    request: Request<Incoming>,
    source: Source,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != METRICS_PATH {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        ));
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    match tokio::task::spawn_blocking(move || source.render()).await {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_0_0_4));
            Ok(response)
        }
        Err(error) => {
            warn!(%error, "metrics: rendering failed");
            Ok(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering failed\n",
            ))
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The metrics in the text exposition format 0.0.4.
///
/// Volumes: those in `planned` (zeros until they are first mirrored) and those the last run
/// tried. A volume that left the plan drops out after the next run instead of holding a staleness
/// alert forever. Groups: every group the history saw frozen, with the time of that freeze.
pub fn render(history: &History, running: Option<&Running>, planned: &[String]) -> String {
    let mut out = Exposition::default();
    let last = history.last_run();
    let volumes = volumes(history, planned);

    out.single(
        "backup_sidecar_run_in_progress",
        Kind::Gauge,
        "Whether a backup run is in progress (1) or not (0).",
        flag(running.is_some()),
    );
    out.single(
        "backup_sidecar_current_run_start_timestamp_seconds",
        Kind::Gauge,
        "When the run in progress started, as a Unix time; 0 when none is.",
        unix(running.map(|r| r.started)),
    );
    out.single(
        "backup_sidecar_current_run_progress_timestamp_seconds",
        Kind::Gauge,
        "When the run in progress last moved bytes (or started), as a Unix time; 0 when none is.",
        unix(running.map(|r| r.moved)),
    );
    out.single(
        "backup_sidecar_current_run_transferred_bytes",
        Kind::Gauge,
        "Bytes the run in progress has moved so far; 0 when none is.",
        running.map_or(0.0, |r| r.bytes as f64),
    );

    let mut totals: BTreeMap<&str, u64> = BTreeMap::from([
        (Outcome::Failed.as_str(), 0),
        (Outcome::Success.as_str(), 0),
    ]);
    totals.extend(history.runs_total.iter().map(|(k, v)| (k.as_str(), *v)));
    out.labelled(
        "backup_sidecar_runs_total",
        Kind::Counter,
        "Backup runs finished, by outcome.",
        "outcome",
        totals.iter().map(|(outcome, n)| (*outcome, *n as f64)),
    );
    out.single(
        "backup_sidecar_last_run_start_timestamp_seconds",
        Kind::Gauge,
        "When the last finished run started, as a Unix time; 0 before the first.",
        unix(last.map(|r| r.started)),
    );
    out.single(
        "backup_sidecar_last_run_end_timestamp_seconds",
        Kind::Gauge,
        "When the last finished run ended, as a Unix time; 0 before the first.",
        unix(last.map(|r| r.finished)),
    );
    out.single(
        "backup_sidecar_last_run_duration_seconds",
        Kind::Gauge,
        "How long the last finished run took; 0 before the first.",
        last.map_or(0.0, |r| seconds_between(r.started, r.finished)),
    );
    out.single(
        "backup_sidecar_last_run_success",
        Kind::Gauge,
        "Whether the last finished run succeeded (1) or failed (0); 0 before the first.",
        flag(last.is_some_and(|r| r.outcome == Outcome::Success)),
    );
    out.single(
        "backup_sidecar_last_success_timestamp_seconds",
        Kind::Gauge,
        "When the last successful run ended, as a Unix time; 0 before the first.",
        unix(history.last_success),
    );

    out.labelled(
        "backup_sidecar_volume_last_success_timestamp_seconds",
        Kind::Gauge,
        "When the run that last mirrored the volume completely ended, as a Unix time; 0 before.",
        "volume",
        volumes
            .iter()
            .map(|(name, v)| (*name, unix(v.last_success))),
    );
    out.labelled(
        "backup_sidecar_volume_bytes",
        Kind::Gauge,
        "Size of the volume's files at its last complete mirror.",
        "volume",
        volumes.iter().map(|(name, v)| (*name, v.bytes as f64)),
    );
    out.labelled(
        "backup_sidecar_volume_files",
        Kind::Gauge,
        "Entries in the volume at its last complete mirror.",
        "volume",
        volumes.iter().map(|(name, v)| (*name, v.files as f64)),
    );
    out.labelled(
        "backup_sidecar_volume_sync_duration_seconds",
        Kind::Gauge,
        "How long the volume's rsync passes took at its last complete mirror.",
        "volume",
        volumes.iter().map(|(name, v)| (*name, v.seconds)),
    );
    out.labelled(
        "backup_sidecar_volume_live_pass_duration_seconds",
        Kind::Gauge,
        "How long the volume's live pass (before its freeze) took at its last complete mirror; \
         0 when it had a single pass.",
        "volume",
        volumes
            .iter()
            .map(|(name, v)| (*name, v.live_seconds.unwrap_or(0.0))),
    );

    out.labelled(
        "backup_sidecar_volume_journal_missed_total",
        Kind::Counter,
        "Entries the scheduled full passes (BACKUP_FULL_SCAN_SCHEDULE) found different in the \
         mirror that the change journal had not named; 0 while it sees every change.",
        "volume",
        volumes
            .iter()
            .map(|(name, v)| (*name, v.journal_missed as f64)),
    );

    out.labelled(
        "backup_sidecar_group_last_freeze_seconds",
        Kind::Gauge,
        "How long the group's containers were last frozen.",
        "group",
        history
            .groups
            .iter()
            .map(|(name, g)| (name.as_str(), g.pause_ms as f64 / 1000.0)),
    );
    out.labelled(
        "backup_sidecar_group_last_freeze_timestamp_seconds",
        Kind::Gauge,
        "When the run that last froze the group started, as a Unix time.",
        "group",
        history
            .groups
            .iter()
            .map(|(name, g)| (name.as_str(), unix(g.at))),
    );

    let archive = history.last_archive.as_ref();
    out.single(
        "backup_sidecar_last_archive_timestamp_seconds",
        Kind::Gauge,
        "When the run that created the last archive ended, as a Unix time; 0 before the first.",
        unix(archive.map(|a| a.time)),
    );
    out.single(
        "backup_sidecar_last_archive_original_bytes",
        Kind::Gauge,
        "Size of the files in the last archive.",
        archive.map_or(0.0, |a| a.original_bytes as f64),
    );
    out.single(
        "backup_sidecar_last_archive_deduplicated_bytes",
        Kind::Gauge,
        "What the last archive added to the repository after deduplication and compression.",
        archive.map_or(0.0, |a| a.deduplicated_bytes as f64),
    );
    out.single(
        "backup_sidecar_last_archive_duration_seconds",
        Kind::Gauge,
        "How long creating the last archive took.",
        archive.map_or(0.0, |a| a.seconds),
    );

    let verification = history.last_verification.as_ref();
    out.single(
        "backup_sidecar_last_verification_success",
        Kind::Gauge,
        "Whether the last verification found the repository and the mirror sound (1) or not (0); \
         0 before the first.",
        flag(verification.is_some_and(|v| v.outcome == Outcome::Success)),
    );
    out.single(
        "backup_sidecar_last_verification_timestamp_seconds",
        Kind::Gauge,
        "When the last verification ended, as a Unix time; 0 before the first.",
        unix(verification.map(|v| v.at)),
    );

    // The second copy's series, once the remote has made or tried one: a remote without a copy
    // has none, rather than a copy that looks forever stale.
    if let Some(copy) = &history.copy {
        copy_series(&mut out, copy);
    }
    out.text
}

fn copy_series(out: &mut Exposition, copy: &CopyRecord) {
    out.single(
        "backup_sidecar_copy_last_success_timestamp_seconds",
        Kind::Gauge,
        "When the remote's last successful second copy ended, as a Unix time; 0 before the first.",
        unix(copy.last_success),
    );
    out.single(
        "backup_sidecar_copy_newest_archive_timestamp_seconds",
        Kind::Gauge,
        "When the newest archive of this host that the second copy holds was made, as a Unix \
         time; 0 before the first copy.",
        unix(copy.newest_archive_time),
    );
    out.single(
        "backup_sidecar_copy_last_sent_bytes",
        Kind::Gauge,
        "What the last successful copy sent to the second place.",
        copy.bytes as f64,
    );
    out.single(
        "backup_sidecar_copy_sent_bytes_total",
        Kind::Counter,
        "What every copy sent to the second place.",
        copy.bytes_total as f64,
    );
    out.single(
        "backup_sidecar_copy_last_duration_seconds",
        Kind::Gauge,
        "How long the last successful copy took.",
        copy.seconds,
    );
    out.single(
        "backup_sidecar_copy_failures_total",
        Kind::Counter,
        "Copies to the second place that failed.",
        copy.failures_total as f64,
    );
    out.single(
        "backup_sidecar_copy_last_check_success",
        Kind::Gauge,
        "Whether the last check of the second copy found it sound (1) or not (0); 0 before the \
         first.",
        flag(copy.last_check.is_some() && copy.last_check_error.is_none()),
    );
}

/// The volumes to report, by name: the planned ones and the ones the last run tried.
fn volumes<'a>(history: &'a History, planned: &'a [String]) -> BTreeMap<&'a str, &'a VolumeRecord> {
    static NEVER: VolumeRecord = VolumeRecord {
        group: String::new(),
        last_attempt: None,
        last_success: None,
        bytes: 0,
        files: 0,
        seconds: 0.0,
        live_seconds: None,
        last_error: None,
        journal_missed: 0,
    };
    let mut volumes: BTreeMap<&str, &VolumeRecord> = planned
        .iter()
        .map(|name| (name.as_str(), history.volumes.get(name).unwrap_or(&NEVER)))
        .collect();
    if let Some(last) = history.last_run() {
        volumes.extend(
            history
                .volumes
                .iter()
                .filter(|(_, v)| v.last_attempt.is_some_and(|t| t >= last.started))
                .map(|(name, v)| (name.as_str(), v)),
        );
    }
    volumes
}

fn unix(time: Option<DateTime<Utc>>) -> f64 {
    time.map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0)
}

fn seconds_between(start: DateTime<Utc>, end: DateTime<Utc>) -> f64 {
    ((end - start).num_milliseconds().max(0)) as f64 / 1000.0
}

fn flag(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// The exposition text being written: each family's `# HELP` and `# TYPE` lines, then its
/// samples, every line ending in a newline (the last one too).
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        // HELP texts are our own constants, free of the backslashes and newlines it would escape.
        debug_assert!(!help.contains(['\\', '\n']));
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.header(name, kind, help);
        let _ = writeln!(self.text, "{name} {}", Number(value));
    }

    /// A family with one label, one sample per `(label value, value)`.
    fn labelled<'a>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, f64)>,
    ) {
        self.header(name, kind, help);
        for (label_value, value) in samples {
            let _ = write!(self.text, "{name}{{{label}=\"");
            escape_label_value(&mut self.text, label_value);
            let _ = writeln!(self.text, "\"}} {}", Number(value));
        }
    }
}

/// A label value as the format wants it: backslash, double quote and line feed escaped.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value: Rust's shortest round-trip form (`3`, `0.25`, never an exponent), and the
/// format's own spellings of the non-finite values.
struct Number(f64);

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            f64::INFINITY => f.write_str("+Inf"),
            f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests;
