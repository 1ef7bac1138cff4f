//! The freeze table's measurements for one dataset: in each round and on each link, the floor,
//! the warm freeze with capture on freeze and with the network catch-up, and the stop for a whole
//! copy.

use serde_json::Value;

use crate::TIMEOUT;
use crate::common::{docker, events_named, run_now, wait_for_run};
use crate::dataset::Setup;
use crate::floor::{Floor, Prober};
use crate::link::Link;

/// No borg: these runs only mirror.
pub const NO_BORG: [(&str, &str); 2] = [("BACKUP_BORG_REPO", ""), ("BACKUP_BORG_PASSPHRASE", "")];

/// What a `group thawed` event says.
#[derive(Debug, Clone)]
pub struct Thaw {
    /// How long the group was frozen.
    pub pause_ms: f64,
    /// `capture` or `network`; absent from images that predate `BACKUP_CATCH_UP`.
    pub catch_up: Option<String>,
    /// Why that path was taken, when the sidecar says.
    pub reason: Option<String>,
    /// Entries copied to staging while frozen.
    pub staged_files: Option<u64>,
    /// Bytes copied to staging while frozen.
    pub staged_bytes: Option<u64>,
}

impl Thaw {
    fn from_event(event: &Value) -> Thaw {
        let f = &event["fields"];
        Thaw {
            pause_ms: f["pause_ms"].as_f64().expect("group thawed has pause_ms"),
            catch_up: f["catch_up"].as_str().map(String::from),
            reason: match &f["reason"] {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            },
            staged_files: f["staged_files"].as_u64(),
            staged_bytes: f["staged_bytes"].as_u64(),
        }
    }

    /// One line for the raw rounds.
    pub fn describe(&self) -> String {
        let mut text = format!("{:.0} ms", self.pause_ms);
        if let Some(path) = &self.catch_up {
            text += &format!(" via {path}");
        }
        if let (Some(files), Some(bytes)) = (self.staged_files, self.staged_bytes) {
            text += &format!(", staged {files} files / {bytes} B");
        }
        if let Some(reason) = &self.reason {
            text += &format!(" ({reason})");
        }
        text
    }
}

/// One round on one link.
#[derive(Debug, Clone)]
pub struct CellRound {
    /// The link measured.
    pub link: Link,
    /// The round's number, from 0.
    pub round: usize,
    /// The floor, in this round.
    pub floor: Floor,
    /// The warm freeze with `BACKUP_CATCH_UP=capture`.
    pub capture: Thaw,
    /// The warm freeze with `BACKUP_CATCH_UP=network`.
    pub network: Thaw,
    /// One pass into an empty mirror with the app stopped, in milliseconds.
    pub stop_copy_ms: f64,
}

/// All rounds on both links for the dataset of `setup`.
pub fn measure(setup: &Setup, rounds: usize) -> Vec<CellRound> {
    let prober = Prober::connect();
    let mut all = Vec::new();
    for round in 0..rounds {
        for link in Link::ALL {
            let _shaping = link.apply(&setup.remote.name);
            let cell = measure_round(setup, &prober, link, round);
            eprintln!(
                "{} | {} | round {round}: floor {:.0} ms (pause+unpause {:.0}, walk {:.0} of {} \
                 entries, read {:.0} of {} B); capture {}; network {}; stop for the copy {:.0} ms",
                setup.dataset.label,
                link.label(),
                cell.floor.total_ms,
                cell.floor.pause_unpause_ms,
                cell.floor.walk_ms,
                cell.floor.entries,
                cell.floor.read_ms,
                cell.floor.read_bytes,
                cell.capture.describe(),
                cell.network.describe(),
                cell.stop_copy_ms,
            );
            all.push(cell);
        }
    }
    all
}

fn measure_round(setup: &Setup, prober: &Prober, link: Link, round: usize) -> CellRound {
    let floor = prober.floor(&setup.app, &setup.data_dir(), &setup.hot_paths());
    let capture = warm_freeze(setup, "capture");
    let network = warm_freeze(setup, "network");
    let stop_copy_ms = stop_for_copy(setup);
    CellRound {
        link,
        round,
        floor,
        capture,
        network,
        stop_copy_ms,
    }
}

/// A sidecar with `BACKUP_CATCH_UP=mode`: its first run brings the mirror current, then the warm
/// run asked with SIGUSR1 is measured.
fn warm_freeze(setup: &Setup, mode: &str) -> Thaw {
    let mut vars = NO_BORG.to_vec();
    vars.push(("BACKUP_CATCH_UP", mode));
    let sidecar = setup.sidecar(&vars);
    let first = wait_for_run(&sidecar, TIMEOUT);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");
    let warm = run_now(&sidecar, 1, TIMEOUT);
    assert_eq!(warm["fields"]["outcome"], "success", "{warm}");
    let thawed = events_named(&sidecar, "group thawed");
    docker(&["rm", "-f", &sidecar]);
    assert_eq!(thawed.len(), 2, "one freeze per run: {thawed:?}");
    let thaw = Thaw::from_event(&thawed[1]);
    // Images that predate the feature ignore BACKUP_CATCH_UP and do not name the path.
    if let Some(path) = &thaw.catch_up {
        assert_eq!(
            path, mode,
            "BACKUP_CATCH_UP={mode}, but the freeze took the {path} path: {}",
            thawed[1]
        );
    }
    thaw
}

/// What a backup that stops the app for its copy freezes it for: one pass into an empty mirror
/// with the app stopped (no freeze then: nothing runs). Leaves the mirror full.
fn stop_for_copy(setup: &Setup) -> f64 {
    setup.clear_mirror();
    docker(&["stop", "-t", "1", &setup.app]);
    let sidecar = setup.sidecar(&NO_BORG);
    let run = wait_for_run(&sidecar, TIMEOUT);
    let synced = events_named(&sidecar, "volume synced");
    docker(&["rm", "-f", &sidecar]);
    docker(&["start", &setup.app]);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    assert_eq!(synced.len(), 1, "one volume: {synced:?}");
    let fields = &synced[0]["fields"];
    assert!(fields["live_seconds"].is_null(), "one pass: {fields}");
    fields["seconds"]
        .as_f64()
        .expect("volume synced has seconds")
        * 1000.0
}
