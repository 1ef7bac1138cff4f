//! How long the apps are frozen by the catch-up pass, against the least any freeze can last, on a
//! fast and a slow link; and the daemon's other costs. Real engine, real remote, the images as
//! they are (`backup-sidecar:latest`, `backup-sidecar-remote:latest`). Run as root, with
//! `cargo bench --bench catch_up` (about an hour), `BENCH_QUICK=1 cargo bench --bench catch_up`
//! (one round, the 10,000-file dataset only, no change journal section, a few minutes) or
//! `BENCH_JOURNAL=1 cargo bench --bench catch_up` (the change journal's section alone, about 20
//! minutes; with `BENCH_QUICK=1` too, one round of one warm run, about 8). It overwrites `BENCHMARKS.md`
//! at the repository root and prints the same text; `BENCH_JOURNAL=1` replaces only its own
//! section and its bullet of the Method section.
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
//! and the bandwidth limit on the shaped link, the idle daemon's memory and CPU, `plan` with
//! 500 labelled volumes, and the change journal at 1,000,000 files (see `catch_up/journal.rs`):
//! its freezes against the floor, against the full scan and against 10,000 files, its warm and
//! full runs, its memory and watches, and its freeze under a competing load. Every section
//! cleans up what it made, pass or fail (the harness's `Env` and the guards here remove
//! containers, volumes, networks and qdiscs on drop); a failed section is reported in the file
//! and the bench exits non-zero. So does a rebuild of an image under test while the bench runs
//! (another worktree's `scripts/build-images.sh`), which the file warns of.

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
#[path = "catch_up/journal.rs"]
mod journal;
#[path = "catch_up/link.rs"]
mod link;
#[path = "catch_up/report.rs"]
mod report;
#[path = "shared/mod.rs"]
mod shared;

use std::time::Duration;

use dataset::{Dataset, HUNDRED_K, Setup, TEN_K};
use report::{JOURNAL_BULLET, JOURNAL_HEADING, Report, Section};
use shared::attempt;

/// Longest wait for one sidecar run: a full copy of 130 MB at 10 Mbit/s takes about two minutes.
pub const TIMEOUT: Duration = Duration::from_secs(900);

/// What one invocation measures.
pub struct Settings {
    /// `BENCH_QUICK=1`: one round, the 10,000-file dataset only (with `BENCH_JOURNAL=1`: one
    /// round of one warm run).
    pub quick: bool,
    /// `BENCH_JOURNAL=1`: the change journal's section alone.
    pub journal_only: bool,
    /// Rounds per cell; each cell reports the median.
    pub rounds: usize,
    /// Warm runs per sidecar and round in the change journal's section.
    pub journal_warm: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let set = |name| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0");
        let quick = set("BENCH_QUICK");
        Settings {
            quick,
            journal_only: set("BENCH_JOURNAL"),
            rounds: if quick { 1 } else { 3 },
            journal_warm: if quick { 1 } else { 5 },
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

/// The change journal's section into `report`.
fn measure_journal(settings: &Settings, report: &mut Report) {
    report.journal = Some(attempt("change journal at 1,000,000 files", || {
        journal::measure(settings.rounds, settings.journal_warm)
    }));
    report.check_images("change journal at 1,000,000 files");
}

/// `BENCH_JOURNAL=1`: the change journal's section alone, written into `BENCHMARKS.md` in place
/// of its old self (or before the Method section), its Method bullet likewise.
fn journal_only(settings: &Settings) {
    let mut report = Report::new(settings);
    measure_journal(settings, &mut report);
    let section = report.journal_section();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let text = with_bullet(&with_section(&old, &section), &report.journal_bullet());
    std::fs::write(&path, text.trim_end().to_string() + "\n").expect("BENCHMARKS.md is writable");
    println!(
        "{section}\n## Method (its bullet)\n\n{}",
        report.journal_bullet()
    );
    eprintln!("written to {}", path.display());
    if report.failed() {
        std::process::exit(1);
    }
}

/// `text` with the change journal's `section` in place of its old one, or else before the
/// Method section, or else at the end.
fn with_section(text: &str, section: &str) -> String {
    let section = format!("{}\n\n", section.trim_end());
    if let Some(start) = text.find(&format!("\n{JOURNAL_HEADING}\n")).map(|i| i + 1) {
        let after = start + JOURNAL_HEADING.len();
        let end = text[after..]
            .find("\n## ")
            .map_or(text.len(), |i| after + i + 1);
        return format!("{}{section}{}", &text[..start], &text[end..]);
    }
    match text.find("\n## Method\n").map(|i| i + 1) {
        Some(at) => format!("{}{section}{}", &text[..at], &text[at..]),
        None if text.trim().is_empty() => format!("# Benchmarks\n\n{section}"),
        None => format!("{}\n\n{section}", text.trim_end()),
    }
}

/// `text` with the change journal's `bullet` in place of its old one in the Method section, or
/// else last in its list; without a Method section, with one of this bullet after the journal's
/// section.
fn with_bullet(text: &str, bullet: &str) -> String {
    let Some(start) = text.find("\n## Method\n").map(|i| i + 1) else {
        let method = format!("## Method\n\n{bullet}\n\n");
        return with_section_after_journal(text, &method);
    };
    let body = start + "## Method\n".len();
    let end = text[body..]
        .find("\n## ")
        .map_or(text.len(), |i| body + i + 1);
    if let Some(at) = text[body..end]
        .find(&format!("\n{JOURNAL_BULLET}"))
        .map(|i| body + i + 1)
    {
        let line_end = text[at..end].find('\n').map_or(end, |i| at + i);
        return format!("{}{bullet}{}", &text[..at], &text[line_end..]);
    }
    let list_end = body + text[body..end].trim_end().len();
    format!("{}\n{bullet}{}", &text[..list_end], &text[list_end..])
}

/// `text` with `insert` right after the change journal's section.
fn with_section_after_journal(text: &str, insert: &str) -> String {
    let at = text
        .find(&format!("\n{JOURNAL_HEADING}\n"))
        .map(|start| {
            let after = start + 1 + JOURNAL_HEADING.len();
            text[after..]
                .find("\n## ")
                .map_or(text.len(), |i| after + i + 1)
        })
        .unwrap_or(text.len());
    let before = format!("{}\n\n", text[..at].trim_end());
    format!("{before}{insert}{}", &text[at..])
}

fn main() {
    let settings = Settings::from_env();
    if settings.journal_only {
        journal_only(&settings);
        return;
    }
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
    if !settings.quick {
        measure_journal(&settings, &mut report);
    }
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
