//! How long the apps are frozen by the catch-up pass, against the least any freeze can last, on a
//! fast and a slow link; and the daemon's other costs. Real engine, real remote, the images as
//! they are (`backup-sidecar:latest`, `backup-sidecar-remote:latest`). Run as root, with
//! `cargo bench --bench catch_up` (about 40 minutes) or `BENCH_QUICK=1 cargo bench --bench
//! catch_up` (one round, the 10,000-file dataset only, a few minutes). It overwrites
//! `BENCHMARKS.md` at the repository root and prints the same text.
//!
//! Method, per dataset (a labelled volume, an app container rewriting 1% of its files in place
//! all the time, a remote on the test network):
//! - each round measures both links: the container bridge, then the remote shaped to 10 Mbit/s
//!   both ways with `tc tbf` (its `eth0` egress inside its namespace, and the egress of its veth
//!   peer on the host, which is the remote's ingress);
//! - **floor**, in this process: `pause` of the app through the Docker API, a single-threaded lstat
//!   walk of the volume's `_data` on the host, a read of the app's changing files, `unpause`; the
//!   time of the whole. A freeze that does only local work cannot be shorter than this;
//! - **capture** and **network**: a sidecar with `BACKUP_CATCH_UP=capture`, then one with
//!   `=network`; each fills the mirror with its first run, then a warm run is asked with SIGUSR1
//!   and its `group thawed` `pause_ms` is the freeze;
//! - **stop for the copy**: the app stopped, one sidecar pass into an empty mirror; the pass's
//!   duration is what a backup that stops the app for its copy freezes it for. It leaves the mirror
//!   full for the next round.
//!
//! Each cell's figure is the median of its rounds; ratios are of medians. Then, smaller tables:
//! a warm sidecar run against a bare rsync of the same volume (bridge, 10,000 files), compression
//! and the bandwidth limit on the shaped link, the idle daemon's memory and CPU, and `plan` with
//! 500 labelled volumes. Every section cleans up what it made, pass or fail (the harness's `Env`
//! and the guards here remove containers, volumes, networks and qdiscs on drop); a failed section
//! is reported in the file and the bench exits non-zero. So does a rebuild of an image under test
//! while the bench runs (another worktree's `scripts/build-images.sh`), which the file warns of.

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "catch_up/dataset.rs"]
mod dataset;
#[path = "catch_up/extras.rs"]
mod extras;
#[path = "catch_up/floor.rs"]
mod floor;
#[path = "catch_up/freeze.rs"]
mod freeze;
#[path = "catch_up/link.rs"]
mod link;
#[path = "catch_up/report.rs"]
mod report;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use dataset::{Dataset, HUNDRED_K, Setup, TEN_K};
use report::{Report, Section};

/// Longest wait for one sidecar run: a full copy of 130 MB at 10 Mbit/s takes about two minutes.
pub const TIMEOUT: Duration = Duration::from_secs(900);

/// What one invocation measures.
pub struct Settings {
    /// `BENCH_QUICK=1`: one round, the 10,000-file dataset only.
    pub quick: bool,
    /// Rounds per cell; each cell reports the median.
    pub rounds: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        Settings {
            quick,
            rounds: if quick { 1 } else { 3 },
        }
    }

    fn datasets(&self) -> Vec<&'static Dataset> {
        if self.quick {
            vec![&TEN_K]
        } else {
            vec![&TEN_K, &HUNDRED_K]
        }
    }
}

/// Runs one section; a panic becomes the section's failure, so the other sections still report.
fn attempt<T>(name: &str, section: impl FnOnce() -> T) -> Result<T, String> {
    eprintln!("== {name}");
    catch_unwind(AssertUnwindSafe(section)).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".to_string());
        eprintln!("== {name} failed: {message}");
        message
    })
}

/// The freeze table for one dataset, then (10,000 files only) the sections that reuse its setup.
fn measure_dataset(settings: &Settings, dataset: &'static Dataset, report: &mut Report) {
    let setup = match attempt(&format!("setup {}", dataset.label), || Setup::new(dataset)) {
        Ok(setup) => setup,
        Err(e) => {
            report.freeze.push(Section::failed(dataset.label, e));
            return;
        }
    };
    let cells = attempt(&format!("freeze {}", dataset.label), || {
        freeze::measure(&setup, settings.rounds)
    });
    report.freeze.push(Section::of(dataset.label, cells));
    report.check_images(&format!("freeze {}", dataset.label));
    if dataset.files == TEN_K.files {
        report.total = Some(attempt("total run vs bare rsync", || {
            extras::total_vs_rsync(&setup, settings.rounds)
        }));
        report.idle = Some(attempt("idle daemon", || extras::idle(&setup)));
        report.check_images("total run and idle daemon");
    }
}

fn main() {
    let settings = Settings::from_env();
    let mut report = Report::new(&settings);
    for dataset in settings.datasets() {
        measure_dataset(&settings, dataset, &mut report);
    }
    report.link = Some(attempt("compression and bandwidth limit", || {
        extras::compress_and_bwlimit(settings.rounds)
    }));
    report.check_images("compression and bandwidth limit");
    report.plan = Some(attempt("plan with 500 volumes", || {
        extras::plan_many(settings.rounds)
    }));
    report.check_images("plan with 500 volumes");
    let text = report.markdown();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    // Other benches' sections (the archive index's) follow this one's: they are kept.
    let others = std::fs::read_to_string(&path)
        .ok()
        .and_then(|old| old.find(OTHER_SECTIONS).map(|at| old[at..].to_string()))
        .unwrap_or_default();
    let text = if others.is_empty() {
        text
    } else {
        format!("{}\n\n{others}", text.trim_end())
    };
    std::fs::write(&path, &text).expect("BENCHMARKS.md is writable");
    println!("{text}");
    eprintln!("written to {}", path.display());
    if report.failed() {
        std::process::exit(1);
    }
}

/// Where the sections of other benches begin in `BENCHMARKS.md`.
const OTHER_SECTIONS: &str = "\n## Archive index (catalog)";
