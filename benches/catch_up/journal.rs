//! The change journal at scale: the freeze at 1,000,000 files with the journal on and off, beside
//! the floor and the same freeze at 10,000 files; the warm and the full runs' times; the daemon's
//! memory and watches; and the freeze while another container walks and reads a second
//! 1,000,000-file tree.
//!
//! Both datasets are set up once and kept across the rounds; a sidecar run into each empty mirror
//! fills it first. Then, per round and per dataset (the other dataset's app stopped meanwhile):
//! the floor, then a sidecar with the journal on and one with `BACKUP_CHANGE_JOURNAL=false`
//! (which first alternates by round), each started afresh: its first run walks everything, then
//! it is asked for warm runs with SIGUSR1, [`GAP`] apart, and its memory and watches are read
//! after them. At 1,000,000 files the sidecar with the journal then makes as many warm runs
//! again under the competing load.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::TIMEOUT;
use crate::common::{APP_IMAGE, NEVER, docker, docker_output, events, message, run_now};
use crate::common::{wait_for_events, wait_for_run};
use crate::dataset::{MILLION, Setup, TEN_K};
use crate::extras::{Cgroup, seconds_between};
use crate::floor::{Floor, Prober};
use crate::freeze::NO_BORG;

/// Before each warm run: the app rewrites each of its changing files at least once meanwhile
/// (101 files, about 15 ms each, take 1.5 to 3 s).
pub const GAP: Duration = Duration::from_secs(5);

/// The competing load runs this long before the first warm run under it.
pub const LOAD_LEAD: Duration = Duration::from_secs(3);

/// The competing load: a walk and a read of every file of another 1,000,000-file tree, forever.
pub const LOAD_SCRIPT: &str =
    "while :; do find /data -type f -print0 | xargs -0 cat > /dev/null; done";

/// Longest wait for a first run into an empty mirror (1,000,000 files).
const COLD_TIMEOUT: Duration = Duration::from_secs(3600);

/// What the sidecar logged of one of its runs.
#[derive(Debug, Clone, Default)]
pub struct RunSeen {
    /// 0 for the first run after the daemon started.
    pub index: usize,
    /// From `run started` to `run finished`, in seconds.
    pub total_s: f64,
    /// `run finished` `outcome`.
    pub outcome: String,
    /// Its `group thawed` event.
    pub thaw: Option<Thawed>,
    /// Its `volume synced` event.
    pub synced: Option<Synced>,
    /// Its `the change journal watches the volume` event (the first run with the journal).
    pub watching: Option<Watching>,
    /// Whether the competing load ran meanwhile.
    pub loaded: bool,
    /// Its warnings and errors, and what it said of a live pass that was not complete (rsync's
    /// exit code): level, message and the other fields.
    pub notes: Vec<String>,
}

/// A `group thawed` event.
#[derive(Debug, Clone, Default)]
pub struct Thawed {
    /// The freeze.
    pub pause_ms: f64,
    /// The survey (the scan of every entry, or of what the journal named), while frozen.
    pub scan_ms: Option<f64>,
    /// The copy into the staging area, while frozen.
    pub copy_ms: Option<f64>,
    /// `capture` or `network`.
    pub catch_up: Option<String>,
    /// Why the network catch-up was taken.
    pub reason: Option<String>,
    /// Present when the capture scanned a volume whole: "volume: reason".
    pub full_scan: Option<String>,
    /// Entries copied into the staging area.
    pub staged_files: Option<u64>,
}

/// A `volume synced` event.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    /// `journal` or `full`.
    pub pass: Option<String>,
    /// Why the pass was full.
    pub reason: Option<String>,
    /// The live pass and the upload (or the network pass), in seconds.
    pub seconds: f64,
    /// The live pass, in seconds.
    pub live_seconds: Option<f64>,
    /// The volume's entries.
    pub files: u64,
    /// The volume's bytes.
    pub bytes: u64,
    /// What rsync sent.
    pub sent_bytes: u64,
}

/// What the journal said when it started watching a volume.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watching {
    /// Directories watched for the volume.
    pub watches: u64,
    /// Every watch of the daemon.
    pub all_watches: u64,
    /// `fs.inotify.max_user_watches`.
    pub max_user_watches: Option<u64>,
}

impl RunSeen {
    /// Whether the run used the journal all through: its live pass sent only what the journal
    /// named, and the capture looked only at that.
    pub fn journal_used(&self) -> bool {
        self.synced.as_ref().and_then(|s| s.pass.as_deref()) == Some("journal")
            && self.captured_from_journal()
    }

    /// Whether the freeze was a capture that looked only at what the journal named (not a
    /// network catch-up, not a scan of every entry).
    pub fn captured_from_journal(&self) -> bool {
        self.thaw
            .as_ref()
            .is_some_and(|t| t.catch_up.as_deref() == Some("capture") && t.full_scan.is_none())
    }

    /// The freeze, in milliseconds (NaN without one).
    pub fn pause_ms(&self) -> f64 {
        self.thaw.as_ref().map_or(f64::NAN, |t| t.pause_ms)
    }

    /// One line for the raw rounds.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "run {}{}: {:.2} s, {}",
            self.index,
            if self.loaded { " (under load)" } else { "" },
            self.total_s,
            self.outcome
        );
        if let Some(t) = &self.thaw {
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
            text += &format!(
                "; freeze {:.0} ms (scan {}, copy {}, {} staged, via {})",
                t.pause_ms,
                ms(t.scan_ms),
                ms(t.copy_ms),
                t.staged_files.unwrap_or(0),
                t.catch_up.as_deref().unwrap_or("?"),
            );
            if let Some(reason) = &t.reason {
                text += &format!(" reason: {reason}");
            }
            if let Some(full) = &t.full_scan {
                text += &format!(" full_scan: {full}");
            }
        }
        if let Some(s) = &self.synced {
            text += &format!(
                "; pass {}, {:.2} s (live {}), sent {} B; {} entries, {} B",
                s.pass.as_deref().unwrap_or("?"),
                s.seconds,
                s.live_seconds
                    .map_or("-".to_string(), |v| format!("{v:.2} s")),
                s.sent_bytes,
                s.files,
                s.bytes,
            );
            if let Some(reason) = &s.reason {
                text += &format!(" ({reason})");
            }
        }
        if let Some(w) = &self.watching {
            text += &format!(
                "; watches {} (all {}, max_user_watches {})",
                w.watches,
                w.all_watches,
                w.max_user_watches
                    .map_or("?".to_string(), |m| m.to_string())
            );
        }
        for note in &self.notes {
            text += &format!("; {note}");
        }
        text
    }
}

/// A text field (absent: `None`).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The sidecar's runs, from its log: each event between a `run started` and its `run finished`
/// belongs to that run.
fn runs_of(container: &str) -> Vec<RunSeen> {
    let mut runs: Vec<RunSeen> = Vec::new();
    let mut started: Option<Value> = None;
    for event in events(container) {
        let f = &event["fields"];
        match message(&event) {
            "run started" => {
                runs.push(RunSeen {
                    index: runs.len(),
                    ..RunSeen::default()
                });
                started = Some(event.clone());
            }
            "run finished" => {
                if let (Some(run), Some(from)) = (runs.last_mut(), started.take()) {
                    run.total_s = seconds_between(&from, &event).unwrap_or(f64::NAN);
                    run.outcome = text(&f["outcome"]).unwrap_or_default();
                }
            }
            "group thawed" => {
                if let Some(run) = runs.last_mut() {
                    run.thaw = Some(Thawed {
                        pause_ms: f["pause_ms"].as_f64().expect("group thawed has pause_ms"),
                        scan_ms: f["scan_ms"].as_f64(),
                        copy_ms: f["copy_ms"].as_f64(),
                        catch_up: text(&f["catch_up"]),
                        reason: text(&f["reason"]),
                        full_scan: text(&f["full_scan"]),
                        staged_files: f["staged_files"].as_u64(),
                    });
                }
            }
            "volume synced" => {
                if let Some(run) = runs.last_mut() {
                    run.synced = Some(Synced {
                        pass: text(&f["pass"]),
                        reason: text(&f["reason"]),
                        seconds: f["seconds"].as_f64().unwrap_or(f64::NAN),
                        live_seconds: f["live_seconds"].as_f64(),
                        files: f["files"].as_u64().unwrap_or(0),
                        bytes: f["bytes"].as_u64().unwrap_or(0),
                        sent_bytes: f["sent_bytes"].as_u64().unwrap_or(0),
                    });
                }
            }
            "the change journal watches the volume" => {
                if let Some(run) = runs.last_mut() {
                    run.watching = Some(Watching {
                        watches: f["watches"].as_u64().unwrap_or(0),
                        all_watches: f["all_watches"].as_u64().unwrap_or(0),
                        max_user_watches: f["max_user_watches"].as_u64(),
                    });
                }
            }
            _ => {}
        }
        let level = event["level"].as_str().unwrap_or("");
        let noted = matches!(level, "WARN" | "ERROR") || !f["exit_code"].is_null();
        if let Some(run) = runs.last_mut().filter(|_| noted) {
            let mut others = f.clone();
            if let Some(fields) = others.as_object_mut() {
                fields.remove("message");
            }
            run.notes
                .push(format!("{level} \"{}\" {others}", message(&event)));
        }
    }
    runs
}

/// What the daemon holds, read after the same runs with the journal on and off.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    /// VmRSS of the container's processes, summed.
    pub rss_bytes: u64,
    /// VmHWM (the peak resident set) of the container's processes, summed.
    pub peak_rss_bytes: u64,
    /// The cgroup's anonymous memory.
    pub anon_bytes: Option<u64>,
    /// The cgroup's kernel memory (inotify marks are charged there).
    pub kernel_bytes: Option<u64>,
    /// `inotify wd:` lines in the fdinfo of the container's processes.
    pub watches: u64,
}

impl Footprint {
    fn of(container: &str) -> Footprint {
        let cgroup = Cgroup::of(container);
        Footprint {
            rss_bytes: cgroup.process_rss_bytes(),
            peak_rss_bytes: cgroup.process_kib_sum("VmHWM:") * 1024,
            anon_bytes: cgroup.anon_bytes(),
            kernel_bytes: cgroup.kernel_bytes(),
            watches: cgroup.inotify_watches(),
        }
    }
}

/// One sidecar, started afresh: its runs, and what it held after its first run and the warm runs
/// (before any under the load).
#[derive(Debug, Clone)]
pub struct Life {
    /// The dataset's number of files.
    pub files: usize,
    /// `BACKUP_CHANGE_JOURNAL`.
    pub journal: bool,
    /// The round, from 0.
    pub round: usize,
    /// Its runs, the first included.
    pub runs: Vec<RunSeen>,
    /// Read after the first run and the warm runs.
    pub footprint: Footprint,
    /// The competing load's CPU during the runs under it, in percent of one core.
    pub load_cpu_percent: Option<f64>,
}

impl Life {
    /// The warm runs (after the first), under the load or not.
    pub fn warm(&self, loaded: bool) -> impl Iterator<Item = &RunSeen> {
        self.runs
            .iter()
            .filter(move |r| r.index > 0 && r.loaded == loaded)
    }
}

/// Everything this section measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// Rounds.
    pub rounds: usize,
    /// Warm runs per sidecar (and again under the load).
    pub warm: usize,
    /// When the section started, UTC.
    pub started: String,
    /// `/proc/loadavg` at the start and at the end.
    pub loadavg: (String, String),
    /// Seconds to fill the 1,000,000-file volume, the load's tree, and the 10,000-file volume.
    pub fill_s: (f64, f64, f64),
    /// The first run of each dataset into its empty mirror (journal on), by number of files.
    pub cold: Vec<(usize, RunSeen)>,
    /// The floors: the dataset's number of files, the round, the floor.
    pub floors: Vec<(usize, usize, Floor)>,
    /// Every sidecar's life.
    pub lives: Vec<Life>,
}

impl Results {
    /// The lives of one dataset with the journal on or off.
    pub fn lives(&self, files: usize, journal: bool) -> impl Iterator<Item = &Life> {
        self.lives
            .iter()
            .filter(move |l| l.files == files && l.journal == journal)
    }

    /// The warm runs of one dataset with the journal on or off, under the load or not.
    pub fn warm(&self, files: usize, journal: bool, loaded: bool) -> Vec<&RunSeen> {
        self.lives(files, journal)
            .flat_map(|l| l.warm(loaded))
            .collect()
    }

    /// The first runs after the daemon started (the mirror current but for the app's changes).
    pub fn first(&self, files: usize, journal: bool) -> Vec<&RunSeen> {
        self.lives(files, journal)
            .filter_map(|l| l.runs.first())
            .collect()
    }

    /// The floors of one dataset, in milliseconds.
    pub fn floors(&self, files: usize) -> Vec<&Floor> {
        self.floors
            .iter()
            .filter(|(f, _, _)| *f == files)
            .map(|(_, _, floor)| floor)
            .collect()
    }
}

/// The competing load's container; dropping it removes it.
struct Load {
    name: String,
}

impl Load {
    /// Starts [`LOAD_SCRIPT`] over `volume`, in a container of its own (not of the project).
    fn start(setup: &Setup, volume: &str) -> Load {
        let name = format!("{}-load", setup.env.name);
        docker_output(&["rm", "-f", &name]);
        let mount = format!("{volume}:/data:ro");
        let load = Load {
            name: setup.env.container(
                "load",
                &["-v", &mount],
                APP_IMAGE,
                &["sh", "-c", LOAD_SCRIPT],
            ),
        };
        assert_eq!(load.name, name);
        load
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        docker_output(&["rm", "-f", &self.name]);
    }
}

/// A fresh sidecar on `setup` with the journal on or off: its first run, then `warm` warm runs,
/// its footprint, then (given a load's volume) `warm` warm runs under the load.
fn life(
    setup: &Setup,
    journal: bool,
    round: usize,
    warm: usize,
    load: Option<&str>,
    first_timeout: Duration,
) -> Life {
    let mut vars = NO_BORG.to_vec();
    vars.push(("BACKUP_FULL_SCAN_SCHEDULE", NEVER));
    if !journal {
        vars.push(("BACKUP_CHANGE_JOURNAL", "false"));
    }
    let sidecar = setup.sidecar(&vars);
    let first = wait_for_run(&sidecar, first_timeout);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");
    let mut runs = 1;
    let warm_run = |runs: &mut usize| {
        std::thread::sleep(GAP);
        let finished = run_now(&sidecar, *runs, TIMEOUT);
        assert_eq!(finished["fields"]["outcome"], "success", "{finished}");
        *runs += 1;
    };
    for _ in 0..warm {
        warm_run(&mut runs);
    }
    let footprint = Footprint::of(&sidecar);
    let unloaded = runs;
    let load_cpu_percent = load.map(|volume| {
        let load = Load::start(setup, volume);
        let cgroup = Cgroup::of(&load.name);
        std::thread::sleep(LOAD_LEAD);
        let (cpu, started) = (cgroup.cpu_nanos(), Instant::now());
        for _ in 0..warm {
            warm_run(&mut runs);
        }
        let percent =
            (cgroup.cpu_nanos() - cpu) as f64 / started.elapsed().as_nanos() as f64 * 100.0;
        drop(load);
        percent
    });
    // Every run's events are in the log once its `run finished` is.
    wait_for_events(&sidecar, "run finished", runs, TIMEOUT);
    let mut seen = runs_of(&sidecar);
    docker(&["rm", "-f", &sidecar]);
    assert_eq!(seen.len(), runs, "one `run started` per run: {seen:?}");
    for run in &mut seen[unloaded..] {
        run.loaded = true;
    }
    let life = Life {
        files: setup.dataset.files,
        journal,
        round,
        runs: seen,
        footprint,
        load_cpu_percent,
    };
    for run in &life.runs {
        eprintln!(
            "{} | journal {} | round {round} | {}",
            setup.dataset.label,
            if journal { "on" } else { "off" },
            run.describe()
        );
    }
    eprintln!("  {footprint:?}, load {load_cpu_percent:?}% of one core");
    life
}

/// Runs the app of `on` and stops that of `off`.
fn switch_apps(on: &Setup, off: &Setup) {
    docker(&["stop", "-t", "1", &off.app]);
    docker(&["start", &on.app]);
}

/// The whole section: `rounds` rounds of `warm` warm runs per sidecar.
pub fn measure(rounds: usize, warm: usize) -> Results {
    let started = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let loadavg = || {
        let all = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        all.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    };
    let load_before = loadavg();
    let prober = Prober::connect();
    let big = Setup::new(&MILLION);
    // The load's tree: the same dataset in a volume of no project, which no sidecar backs up.
    let load_volume = big.env.volume("load", &[]);
    let filling = Instant::now();
    big.env.in_volume(&load_volume, &MILLION.fill_script());
    let load_fill_s = filling.elapsed().as_secs_f64();
    eprintln!("the load's tree: filled in {load_fill_s:.1} s");
    let small = Setup::new(&TEN_K);
    let mut cold = Vec::new();
    for (on, off) in [(&big, &small), (&small, &big)] {
        switch_apps(on, off);
        let filled = life(on, true, 0, 0, None, COLD_TIMEOUT);
        cold.push((on.dataset.files, filled.runs[0].clone()));
    }
    let mut floors = Vec::new();
    let mut lives = Vec::new();
    for round in 0..rounds {
        for (on, off) in [(&big, &small), (&small, &big)] {
            switch_apps(on, off);
            let floor = prober.floor(&on.app, &on.data_dir(), &on.hot_paths());
            eprintln!(
                "{} | round {round} | floor {:.0} ms (pause+unpause {:.0}, walk {:.0} of {} \
                 entries, read {:.0} of {} B)",
                on.dataset.label,
                floor.total_ms,
                floor.pause_unpause_ms,
                floor.walk_ms,
                floor.entries,
                floor.read_ms,
                floor.read_bytes
            );
            floors.push((on.dataset.files, round, floor));
            let load = (on.dataset.files == MILLION.files).then_some(load_volume.as_str());
            // Which goes first alternates, so that neither always follows the other.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for journal in order {
                let load = load.filter(|_| journal);
                lives.push(life(on, journal, round, warm, load, TIMEOUT));
            }
        }
    }
    Results {
        rounds,
        warm,
        started,
        loadavg: (load_before, loadavg()),
        fill_s: (big.fill_seconds, load_fill_s, small.fill_seconds),
        cold,
        floors,
        lives,
    }
}
