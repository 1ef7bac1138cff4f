//! What the bench found, as the markdown of `BENCHMARKS.md`.

use std::fmt::Write;
use std::process::Command;

use crate::Settings;
use crate::common::{REMOTE_IMAGE, SIDECAR_IMAGE, docker_output};
use crate::dataset::{MILLION, TEN_K};
use crate::extras::{IDLE_WINDOW, Idle, LinkCase, MANY, PlanTimes, TotalRound};
use crate::freeze::CellRound;
use crate::journal::{self, GAP, LOAD_LEAD, LOAD_SCRIPT, RunSeen};
use crate::link::{Link, TBF};

/// The median; of an even count, the mean of the middle two.
pub fn median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty(), "a median of nothing");
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// `n` with a comma every three digits (1,010,001).
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The median and the largest, `None` of nothing.
fn median_max(values: Vec<f64>) -> Option<(f64, f64)> {
    let max = values.iter().copied().reduce(f64::max)?;
    Some((median(values), max))
}

/// A section's result, or why it failed.
pub type Outcome<T> = Result<T, String>;

/// The heading of the change journal's section.
pub const JOURNAL_HEADING: &str = "## The change journal at 1,000,000 files";
/// How the change journal's bullet of the Method section begins.
pub const JOURNAL_BULLET: &str = "- **Change journal**";

/// One dataset's freeze rounds.
pub struct Section {
    /// The dataset.
    pub label: &'static str,
    /// Its rounds on both links.
    pub rounds: Outcome<Vec<CellRound>>,
}

impl Section {
    /// A dataset that was measured (or failed while measured).
    pub fn of(label: &'static str, rounds: Outcome<Vec<CellRound>>) -> Section {
        Section { label, rounds }
    }

    /// A dataset that could not be set up.
    pub fn failed(label: &'static str, error: String) -> Section {
        Section {
            label,
            rounds: Err(format!("setup: {error}")),
        }
    }
}

/// Everything measured; `None` for a section that was not reached.
pub struct Report {
    quick: bool,
    journal_only: bool,
    rounds: usize,
    /// When the bench started, UTC.
    started: String,
    /// The freeze table, one section per dataset.
    pub freeze: Vec<Section>,
    /// A warm run against a bare rsync.
    pub total: Option<Outcome<Vec<TotalRound>>>,
    /// The idle daemon.
    pub idle: Option<Outcome<Idle>>,
    /// Compression and the bandwidth limit.
    pub link: Option<Outcome<Vec<LinkCase>>>,
    /// `plan` with many volumes.
    pub plan: Option<Outcome<PlanTimes>>,
    /// The change journal at 1,000,000 files.
    pub journal: Option<Outcome<journal::Results>>,
    /// The images at the start: tag, then ID and build time.
    images: Vec<(&'static str, String)>,
    /// Images retagged while the bench ran (`scripts/build-images.sh` elsewhere), and when noticed.
    image_changes: Vec<String>,
}

impl Report {
    /// An empty report for this invocation.
    pub fn new(settings: &Settings) -> Report {
        Report {
            quick: settings.quick,
            journal_only: settings.journal_only,
            rounds: settings.rounds,
            started: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            freeze: Vec::new(),
            total: None,
            idle: None,
            link: None,
            plan: None,
            journal: None,
            images: [SIDECAR_IMAGE, REMOTE_IMAGE]
                .map(|image| (image, image_identity(image)))
                .to_vec(),
            image_changes: Vec::new(),
        }
    }

    /// Notes whether an image under test was rebuilt by the end of `section`: its figures, and
    /// those after it, would then mix two builds.
    pub fn check_images(&mut self, section: &str) {
        for (image, identity) in &mut self.images {
            let now = image_identity(image);
            if now != *identity {
                let change = format!(
                    "{image} changed by the end of \"{section}\": was {identity}, now {now}"
                );
                eprintln!("WARNING: {change}");
                self.image_changes.push(change);
                *identity = now;
            }
        }
    }

    /// Whether any section failed.
    pub fn failed(&self) -> bool {
        self.freeze.iter().any(|s| s.rounds.is_err())
            || self.total.as_ref().is_some_and(Result::is_err)
            || self.idle.as_ref().is_some_and(Result::is_err)
            || self.link.as_ref().is_some_and(Result::is_err)
            || self.plan.as_ref().is_some_and(Result::is_err)
            || self.journal.as_ref().is_some_and(Result::is_err)
            || !self.image_changes.is_empty()
    }

    /// The whole file.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        self.header(&mut md);
        self.freeze_table(&mut md);
        section(
            &mut md,
            "Total run time: a warm sidecar run against a bare rsync",
            self.total.as_ref().map(Result::as_deref),
            total_table,
        );
        section(
            &mut md,
            "Compression and the bandwidth limit, 10 Mbit/s link, empty mirror",
            self.link.as_ref().map(Result::as_deref),
            link_table,
        );
        section(
            &mut md,
            "The idle daemon",
            self.idle.as_ref().map(Result::as_ref),
            idle_table,
        );
        section(
            &mut md,
            &format!("Discovery and plan with {MANY} labelled volumes"),
            self.plan.as_ref().map(Result::as_ref),
            plan_table,
        );
        if self.journal.is_some() {
            md.push_str(&self.journal_section());
            md.push('\n');
        }
        self.method(&mut md);
        self.raw_rounds(&mut md);
        md
    }

    fn header(&self, md: &mut String) {
        md.push_str("# Benchmarks\n\n");
        let _ = writeln!(
            md,
            "Written by `cargo bench --bench catch_up` ({}), started {}; medians of {} round(s).\n",
            if self.quick { "BENCH_QUICK=1" } else { "full" },
            self.started,
            self.rounds
        );
        if self.quick {
            md.push_str(
                "**Quick mode**: one round, the 10,000-file dataset only. A smoke test of the \
                 bench, not figures to quote.\n\n",
            );
        }
        for change in &self.image_changes {
            let _ = writeln!(
                md,
                "**Warning: an image was rebuilt while the bench ran**; figures mix builds. \
                 {change}.\n"
            );
        }
        md.push_str("## Machine\n\n```\n");
        for (what, argv) in MACHINE_FACTS {
            let _ = writeln!(md, "$ {what}\n{}", command_output(argv).trim_end());
        }
        for (image, identity) in &self.images {
            let _ = writeln!(md, "{image}: {identity} (at the start)");
        }
        md.push_str("```\n\n");
    }

    fn freeze_table(&self, md: &mut String) {
        md.push_str("## Freeze: capture on freeze, network catch-up, stop for the copy\n\n");
        md.push_str(
            "Warm runs (mirror current), the app rewriting 1% of the files; milliseconds, \
             medians; ratios are of the medians.\n\n",
        );
        md.push_str(
            "| files | link | floor ms | capture freeze ms | capture/floor | network freeze ms \
             | network/floor | stop-for-copy ms |\n|---|---|---|---|---|---|---|---|\n",
        );
        let mut unnamed_path = false;
        for section in &self.freeze {
            match &section.rounds {
                Ok(rounds) => {
                    for link in Link::ALL {
                        let of_link: Vec<&CellRound> =
                            rounds.iter().filter(|r| r.link == link).collect();
                        unnamed_path |= of_link.iter().any(|r| r.capture.catch_up.is_none());
                        md.push_str(&freeze_row(section.label, link, &of_link));
                    }
                }
                Err(e) => {
                    let _ = writeln!(
                        md,
                        "| {} | | failed: {} | | | | | |",
                        section.label,
                        one_line(e)
                    );
                }
            }
        }
        if unnamed_path {
            md.push_str(
                "\n\\* The sidecar's `group thawed` event names no `catch_up` path: the image \
                 predates `BACKUP_CATCH_UP` and ignored it, so the capture column ran today's \
                 network catch-up too.\n",
            );
        }
        md.push('\n');
    }

    fn method(&self, md: &mut String) {
        md.push_str("## Method\n\n");
        let _ = write!(md, "{}", method_text(self.rounds));
        if self.journal.is_some() {
            // Before the blank line that ends the list.
            md.pop();
            let _ = writeln!(md, "{}\n", self.journal_bullet());
        }
    }

    /// The change journal's section, from its heading to its end (a newline).
    pub fn journal_section(&self) -> String {
        let mut md = format!("{JOURNAL_HEADING}\n\n");
        let command = if self.journal_only {
            "BENCH_JOURNAL=1 cargo bench --bench catch_up"
        } else {
            "cargo bench --bench catch_up"
        };
        let images: Vec<String> = self
            .images
            .iter()
            .map(|(image, identity)| format!("`{image}` {identity}"))
            .collect();
        match &self.journal {
            None => md.push_str("Not measured.\n"),
            Some(Err(e)) => {
                let _ = writeln!(md, "Written by `{command}`. Failed: {}", one_line(e));
            }
            Some(Ok(results)) => {
                let _ = writeln!(
                    md,
                    "Written by `{command}`, started {}; {} round(s) of {} warm run(s) per \
                     sidecar; load average at the start {}, at the end {}. Images at the start: \
                     {}.\n",
                    results.started,
                    results.rounds,
                    results.warm,
                    results.loadavg.0,
                    results.loadavg.1,
                    images.join("; ")
                );
                journal_tables(results, &mut md);
            }
        }
        for change in &self.image_changes {
            let _ = writeln!(
                md,
                "\n**Warning: an image was rebuilt while the bench ran**; figures mix builds. \
                 {change}."
            );
        }
        md
    }

    /// The change journal's bullet of the Method section (one line, no newline).
    pub fn journal_bullet(&self) -> String {
        let fills = match &self.journal {
            Some(Ok(r)) => format!(
                "{:.0} s, {:.0} s and {:.0} s here",
                r.fill_s.0, r.fill_s.1, r.fill_s.2
            ),
            _ => "times not measured".to_string(),
        };
        let (rounds, warm) = match &self.journal {
            Some(Ok(r)) => (r.rounds, r.warm),
            _ => (self.rounds, 0),
        };
        format!(
            "{JOURNAL_BULLET} (`BENCH_JOURNAL=1 cargo bench --bench catch_up` runs it alone and \
             rewrites only its section and this bullet; the full run measures it too): two \
             datasets, set up once and kept for all rounds, each in a labelled volume of its own \
             project with its own remote on the bridge: {million} files of {million_bytes} bytes \
             in 10,000 directories of 100 (the volume filled by one perl loop in a \
             `debian:bookworm-slim` container: `mkdir` of each directory, then `open`, `print` \
             and `close` of each file, its bytes cut from one read of /dev/urandom per \
             directory), whose app rewrites {changing} of them in place, one after another, 10 \
             ms apart, forever (`{app}`); and the 10,000-file dataset above, its app rewriting \
             1%. The second {million}-file tree of the load is filled the same way; the fills \
             of the 1,000,000-file volume, the load's tree and the 10,000-file volume took \
             {fills}. A sidecar run (journal on) first fills each empty mirror. Then {rounds} \
             round(s); in each, per dataset, with the other dataset's app stopped \
             (`docker stop -t 1`): the floor (as above: pause, one-thread lstat walk of `_data`, \
             read of the changing files, unpause), then two sidecars started afresh one after \
             the other, `BACKUP_CHANGE_JOURNAL` unset (on) and `=false`, the order alternating \
             by round, both with the default catch-up (capture), no borg, \
             `BACKUP_FULL_SCAN_SCHEDULE` set to never fire, `BACKUP_RUN_ON_START=true`. Each \
             sidecar's first run walks everything (with the journal on, the journal's first \
             walk adds its watches); then {warm} warm run(s), each asked with `docker kill -s \
             USR1` {gap:.0} s after the previous run finished (the app rewrites all of its \
             changing files meanwhile). A freeze is a run's `group thawed` `pause_ms` (with \
             its `scan_ms` and `copy_ms`); a run's time is from its `run started` to its `run \
             finished` timestamp; a run used the journal when its `volume synced` says `pass` \
             `journal` and its `group thawed` says `catch_up` `capture` without `full_scan`. After \
             those runs, before any \
             other: the summed VmRSS and VmHWM of the sidecar container's processes (its \
             cgroup's `cgroup.procs`, host pids), the cgroup's `memory.stat` rss and \
             `memory.kmem.usage_in_bytes`, and the `inotify wd:` lines of every \
             `/proc/<pid>/fdinfo/*` of those processes; the `watches` figures of the table are \
             those of the log line `the change journal watches the volume`. At \
             {million} files the sidecar with the journal then makes {warm} more warm run(s) \
             under a competing load: a container of no project with the load's tree mounted \
             read-only, running `{LOAD_SCRIPT}`, started {lead:.0} s before the first of these \
             runs and removed after the last; its CPU share over them is from its cgroup's \
             `cpuacct.usage`. Freezes and run times: medians and maxima of every run of the row \
             (rounds × warm runs); the memory: medians of the rounds.",
            million = "1,000,000",
            million_bytes = MILLION.file_bytes,
            changing = MILLION.changing,
            app = MILLION.app_script(),
            gap = GAP.as_secs_f64(),
            lead = LOAD_LEAD.as_secs_f64(),
        )
    }

    fn raw_rounds(&self, md: &mut String) {
        md.push_str("## Rounds\n\n```\n");
        for section in &self.freeze {
            for r in section.rounds.iter().flatten() {
                let _ = writeln!(
                    md,
                    "{} | {} | round {}: floor {:.0} ms (pause+unpause {:.0}, walk {:.0} ms of {} \
                     entries, read {:.0} ms of {} B) | capture {} | network {} | stop for the copy \
                     {:.0} ms",
                    section.label,
                    r.link.label(),
                    r.round,
                    r.floor.total_ms,
                    r.floor.pause_unpause_ms,
                    r.floor.walk_ms,
                    r.floor.entries,
                    r.floor.read_ms,
                    r.floor.read_bytes,
                    r.capture.describe(),
                    r.network.describe(),
                    r.stop_copy_ms
                );
            }
        }
        md.push_str("```\n");
    }
}

/// One row of the freeze table.
fn freeze_row(label: &str, link: Link, rounds: &[&CellRound]) -> String {
    let m = |f: fn(&CellRound) -> f64| median(rounds.iter().map(|r| f(r)).collect());
    let floor = m(|r| r.floor.total_ms);
    let capture = m(|r| r.capture.pause_ms);
    let network = m(|r| r.network.pause_ms);
    let star = if rounds.iter().any(|r| r.capture.catch_up.is_none()) {
        "\\*"
    } else {
        ""
    };
    format!(
        "| {label} | {} | {floor:.0} | {capture:.0}{star} | {:.1}x | {network:.0} | {:.1}x \
         | {:.0} |\n",
        link.label(),
        capture / floor,
        network / floor,
        m(|r| r.stop_copy_ms),
    )
}

/// A small table's section: its title, then the table, or why it has none.
fn section<T: ?Sized>(
    md: &mut String,
    title: &str,
    outcome: Option<Result<&T, &String>>,
    table: fn(&T, &mut String),
) {
    let _ = writeln!(md, "## {title}\n");
    match outcome {
        Some(Ok(value)) => table(value, md),
        Some(Err(e)) => {
            let _ = writeln!(md, "Failed: {}", one_line(e));
        }
        None => md.push_str("Not measured.\n"),
    }
    md.push('\n');
}

fn total_table(rounds: &[TotalRound], md: &mut String) {
    let sidecar = median(rounds.iter().map(|r| r.sidecar_s).collect());
    let rsync = median(rounds.iter().map(|r| r.rsync_s).collect());
    md.push_str("10,000 files (130 MB), container bridge, the app running, mirror current.\n\n");
    md.push_str("| what | seconds |\n|---|---|\n");
    let _ = writeln!(
        md,
        "| warm sidecar run (`run started` to `run finished`) | {sidecar:.2} |"
    );
    let _ = writeln!(
        md,
        "| bare `rsync -aHAXS --delete --numeric-ids` over ssh | {rsync:.2} |"
    );
    let _ = writeln!(md, "| ratio | {:.1}x |", sidecar / rsync);
}

fn link_table(cases: &[LinkCase], md: &mut String) {
    md.push_str(
        "20 files of 1 MB each; `seconds` and `bytes` from the `volume synced` event, `on the \
         wire` from the tbf counter of the link towards the remote (headers included).\n\n",
    );
    md.push_str(
        "| data | BACKUP_COMPRESS | BACKUP_BWLIMIT | seconds | data rate KiB/s | on the wire MB \
         | wire rate KiB/s |\n|---|---|---|---|---|---|---|\n",
    );
    for c in cases {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {:.0} | {:.1} | {:.0} |",
            c.data,
            c.compress,
            c.bwlimit
                .map_or("unset".to_string(), |b| format!("{b} KiB/s")),
            c.seconds,
            c.bytes as f64 / c.seconds / 1024.0,
            c.wire_bytes as f64 / 1e6,
            c.wire_bytes as f64 / c.seconds / 1024.0,
        );
    }
}

fn idle_table(idle: &Idle, md: &mut String) {
    md.push_str(
        "A sidecar after one run of the 10,000-file volume, left alone 5 s, then watched.\n\n",
    );
    md.push_str("| what | value |\n|---|---|\n");
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
    let _ = writeln!(
        md,
        "| resident set of its processes (VmRSS, summed) | {} |",
        mib(idle.process_rss_bytes)
    );
    let anon = idle.anon_bytes.map_or("unknown".to_string(), mib);
    let _ = writeln!(md, "| anonymous memory (cgroup rss) | {anon} |");
    let _ = writeln!(
        md,
        "| memory (`docker stats`) | {} |",
        idle.docker_stats_mem
    );
    let _ = writeln!(
        md,
        "| CPU over {:.0} s (cgroup cpuacct) | {:.3}% of one core |",
        idle.window.as_secs_f64(),
        idle.cpu_percent
    );
}

fn plan_table(plan: &PlanTimes, md: &mut String) {
    md.push_str(
        "Each volume of its own compose project, all in `BACKUP_PROJECTS`; timed from the bench \
         around `docker exec`, so the exec's own cost is shown beside it.\n\n",
    );
    md.push_str("| what | seconds |\n|---|---|\n");
    let _ = writeln!(
        md,
        "| `docker exec <sidecar> backup-sidecar plan` ({} of {} volumes listed) | {:.2} |",
        plan.listed, plan.volumes, plan.plan_s
    );
    let _ = writeln!(
        md,
        "| `docker exec <sidecar> backup-sidecar --version` | {:.2} |",
        plan.exec_s
    );
    let _ = writeln!(
        md,
        "| plan, less the exec | {:.2} |",
        plan.plan_s - plan.exec_s
    );
}

/// The commands whose output describes the machine.
const MACHINE_FACTS: [(&str, &[&str]); 5] = [
    ("nproc", &["nproc"]),
    ("free -g", &["free", "-g"]),
    ("uname -srm", &["uname", "-srm"]),
    ("CPU", &["sh", "-c", "grep -m1 'model name' /proc/cpuinfo"]),
    (
        "docker version",
        &[
            "docker",
            "version",
            "--format",
            "server {{.Server.Version}}, API {{.Server.APIVersion}}",
        ],
    ),
];

/// An image's ID and build time.
fn image_identity(image: &str) -> String {
    let out = docker_output(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} built {{.Created}}",
        image,
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn command_output(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("({} did not run: {e})", argv[0]))
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// How every figure was obtained.
fn method_text(rounds: usize) -> String {
    format!(
        "\
- **Datasets**, each in a Docker volume labelled `backup.enable=true` and of the bench's compose \
project: 10,000 random files of 13,000 bytes (130 MB) in 100 directories of 100, and 100,000 \
random files of 1,000 bytes (100 MB) in 1,000 directories of 100. An app container \
(`debian:bookworm-slim`, `sh -c`) rewrites the files of the first 1% of the directories in place, \
one after another, forever: `head -c <size> /dev/urandom > $f; sleep 0.01`.
- **Links**: the remote (`{REMOTE_IMAGE}`: sshd, rsync, borg) on the bench's bridge network; and \
the same shaped both ways with `tc qdisc replace ... root {tbf}`, on the remote's `eth0` (entered \
with `nsenter -t <pid> -n`) and on its veth peer on the host (found by the container's \
`/sys/class/net/eth0/iflink`). netem is not in this kernel. The qdiscs are removed after each \
cell.
- **Rounds**: {rounds}; each round measures the bridge, then the shaped link; in each, in this \
order: the floor, capture, network, stop for the copy. Figures are medians over the rounds; the \
ratios are median freeze / median floor.
- **floor**: from the bench process (root, on the host): `pause` through the Docker API \
(bollard), a walk of the volume's `_data` directory with one lstat per entry in one thread, a \
read of every file of the changing directories, `unpause`; the time from the pause request to \
the unpause's answer.
- **capture freeze** / **network freeze**: a sidecar (`{SIDECAR_IMAGE}`, no borg: \
`BACKUP_BORG_REPO` and `BACKUP_BORG_PASSPHRASE` empty) with `BACKUP_CATCH_UP=capture` / \
`=network` and `BACKUP_RUN_ON_START=true`, its state directory (and so the staging area) on a \
volume, as the compose file has it. Its first run brings the mirror current; then \
`docker kill -s USR1` asks for a warm run, and the freeze is that run's `group thawed` \
`pause_ms`. When the event names its path (`catch_up`), the bench asserts it is the one asked for.
- **stop-for-copy**: the mirror emptied, the app stopped (`docker stop -t 1`), a sidecar's single \
pass (`volume synced` `seconds`) into the empty mirror: what a backup that stops the app for its \
copy stops it for (the stop and start themselves not counted). The app is started again and the \
full mirror serves the next round.
- **Total run time**: on the bridge with the 10,000-file volume and the app running, alternating: \
a warm sidecar run (default catch-up path; `run started` to `run finished` timestamps) and a bare \
`rsync -aHAXS --delete --numeric-ids -e ssh` of the same `_data` directory into the same mirror \
directory, from a throwaway container of the sidecar image on the same network with the same key \
and known_hosts, timed inside the container around rsync alone. The sidecar adds \
`--modify-window=-1 --stats` and compression, a listing of the volume's directories before the \
live pass, the freeze with its capture, and the upload after it.
- **Compression and bandwidth limit**: on the shaped link, 20 MB of log-like text lines (the best \
case), 20 MB of system files (the debian image's `/usr` as a tar stream: programs, libraries and \
their text, a typical mix) and 20 MB from /dev/urandom, each 20 files of 1 MB in a volume of its own project (no app), mirrored into an \
empty mirror by a sidecar with `BACKUP_COMPRESS=true|false` and, in the last case, \
`BACKUP_BWLIMIT=500`; the rate is `volume synced` bytes / seconds.
- **Idle daemon**: the sidecar after one run of the 10,000-file volume, left 5 s, then \
the summed VmRSS of its processes, its cgroup's `memory.stat` rss, `docker stats --no-stream`, \
and its cgroup's CPU time over {idle:.0} s.
- **Plan**: {MANY} volumes labelled `backup.enable=true`, each with its own \
`com.docker.compose.project` label, all listed in `BACKUP_PROJECTS` of a sidecar that does not \
run; `docker exec <sidecar> backup-sidecar plan` timed from the bench, beside `backup-sidecar \
--version` through the same exec. The volumes are removed after.
\n",
        tbf = TBF.join(" "),
        idle = IDLE_WINDOW.as_secs_f64(),
    )
}

/// One figure of a daemon's footprint, if known.
type FootprintFigure = fn(&journal::Footprint) -> Option<f64>;

/// The change journal's tables, goals and rounds.
fn journal_tables(r: &journal::Results, md: &mut String) {
    let datasets = [&MILLION, &TEN_K];
    let _ = writeln!(
        md,
        "Container bridge, mirror current. 1,000,000 files of {} bytes in 10,000 directories, the \
         app rewriting {} of them ({:.2}%); 10,000 files of {} bytes in 100 directories, the app \
         rewriting {} (1%). Freezes: the `group thawed` `pause_ms` of warm runs (those after the \
         daemon's first run, but for the row that says so), milliseconds; `n` counts the runs (or \
         floors) of the row; a run used the journal when its live pass sent only what the journal \
         named (`pass` `journal`) and the capture looked only at that (`catch_up` `capture`, no \
         `full_scan`).\n",
        MILLION.file_bytes,
        MILLION.changing,
        MILLION.changing as f64 * 100.0 / MILLION.files as f64,
        grouped(TEN_K.file_bytes as u64),
        TEN_K.changing,
    );
    md.push_str(
        "| files | freeze | n | median ms | max ms | scan ms (median) | copy ms (median) | \
         used the journal |\n|---|---|---|---|---|---|---|---|\n",
    );
    let dash = || "-".to_string();
    let fmt = |v: Option<(f64, f64)>, digits: usize| {
        v.map_or((dash(), dash()), |(m, x)| {
            (format!("{m:.digits$}"), format!("{x:.digits$}"))
        })
    };
    let mut unused = Vec::new();
    for d in datasets {
        let floors = r.floors(d.files);
        let (m, x) = fmt(median_max(floors.iter().map(|f| f.total_ms).collect()), 0);
        let entries = grouped(floors.first().map_or(0, |f| f.entries) as u64);
        let _ = writeln!(
            md,
            "| {} | floor: pause, one-thread lstat walk ({entries} entries), read of the {} \
             changing files, unpause | {} | {m} | {x} | | | |",
            d.label,
            d.changing,
            floors.len()
        );
        // Which runs, and whether the journal is on: warm runs use it throughout; a daemon's
        // first run walks everything before the freeze, and is counted by its capture alone.
        let rows: [(&str, Vec<&RunSeen>, Option<bool>); 4] = [
            ("**journal on**", r.warm(d.files, true, false), Some(true)),
            (
                "journal on, competing load",
                r.warm(d.files, true, true),
                Some(true),
            ),
            (
                "journal on, the daemon's first run (its live pass full)",
                r.first(d.files, true),
                Some(false),
            ),
            (
                "journal off (`BACKUP_CHANGE_JOURNAL=false`: a full scan)",
                r.warm(d.files, false, false),
                None,
            ),
        ];
        for (what, runs, warm) in rows {
            if runs.is_empty() {
                continue;
            }
            let (m, x) = fmt(median_max(runs.iter().map(|r| r.pause_ms()).collect()), 0);
            let part = |f: fn(&RunSeen) -> Option<f64>| {
                let values: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
                median_max(values).map_or(dash(), |(m, _)| format!("{m:.0}"))
            };
            let used = runs.iter().filter(|r| r.journal_used()).count();
            let frozen = runs.iter().filter(|r| r.captured_from_journal()).count();
            if warm == Some(true) && used < runs.len() {
                unused.push(format!(
                    "{} ({what}): {} of {}",
                    d.label,
                    runs.len() - used,
                    runs.len()
                ));
            }
            let _ = writeln!(
                md,
                "| {} | {what} | {} | {m} | {x} | {} | {} | {} |",
                d.label,
                runs.len(),
                part(|r| r.thaw.as_ref()?.scan_ms),
                part(|r| r.thaw.as_ref()?.copy_ms),
                match warm {
                    Some(true) => format!("{used} of {}", runs.len()),
                    Some(false) => format!("while frozen: {frozen} of {}", runs.len()),
                    None => dash(),
                },
            );
        }
    }
    if !unused.is_empty() {
        let _ = writeln!(
            md,
            "\n**With the journal on, some warm runs did not use it** (see `pass` and `full_scan` \
             in the rounds below): {}.",
            unused.join("; ")
        );
    }

    md.push_str(
        "\nRun times (`run started` to `run finished`), seconds; the live pass's seconds and \
         what rsync sent are from `volume synced`.\n\n",
    );
    md.push_str(
        "| files | run | n | median s | max s | live pass s (median) | sent MB (median) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for d in datasets {
        let rows: Vec<(&str, Vec<&RunSeen>)> = vec![
            ("**warm run, journal on**", r.warm(d.files, true, false)),
            (
                "warm run, journal on, competing load",
                r.warm(d.files, true, true),
            ),
            (
                "warm run, journal off (a full pass)",
                r.warm(d.files, false, false),
            ),
            (
                "first run after the daemon starts, journal on (full pass and the journal's \
                 first walk)",
                r.first(d.files, true),
            ),
            (
                "first run after the daemon starts, journal off (full pass)",
                r.first(d.files, false),
            ),
            (
                "first run into the empty mirror (journal on)",
                r.cold
                    .iter()
                    .filter(|(f, _)| *f == d.files)
                    .map(|(_, run)| run)
                    .collect(),
            ),
        ];
        for (what, runs) in rows {
            if runs.is_empty() {
                continue;
            }
            let (m, x) = fmt(median_max(runs.iter().map(|r| r.total_s).collect()), 2);
            let synced: Vec<_> = runs.iter().filter_map(|r| r.synced.as_ref()).collect();
            let live = median_max(synced.iter().filter_map(|s| s.live_seconds).collect())
                .map_or(dash(), |(m, _)| format!("{m:.2}"));
            let sent = median_max(synced.iter().map(|s| s.sent_bytes as f64 / 1e6).collect())
                .map_or(dash(), |(m, _)| format!("{m:.2}"));
            let _ = writeln!(
                md,
                "| {} | {what} | {} | {m} | {x} | {live} | {sent} |",
                d.label,
                runs.len()
            );
        }
    }

    let _ = writeln!(
        md,
        "\nThe daemon after its first run and {} warm run(s) (none under the load), medians of \
         the rounds.\n",
        r.warm
    );
    md.push_str("| files | what | journal on | journal off |\n|---|---|---|---|\n");
    let mib = |b: f64| format!("{:.1} MiB", b / 1048576.0);
    for d in datasets {
        let footprint = |journal: bool, f: FootprintFigure| {
            let values: Vec<f64> = r
                .lives(d.files, journal)
                .filter_map(|l| f(&l.footprint))
                .collect();
            median_max(values).map(|(m, _)| m)
        };
        let rows: [(&str, FootprintFigure, bool); 5] = [
            (
                "resident set of its processes (VmRSS, summed)",
                |f| Some(f.rss_bytes as f64),
                true,
            ),
            (
                "peak resident set (VmHWM, summed)",
                |f| Some(f.peak_rss_bytes as f64),
                true,
            ),
            (
                "anonymous memory (cgroup rss)",
                |f| f.anon_bytes.map(|b| b as f64),
                true,
            ),
            (
                "kernel memory (cgroup kmem)",
                |f| f.kernel_bytes.map(|b| b as f64),
                true,
            ),
            (
                "inotify watches (`inotify wd:` lines in /proc/<pid>/fdinfo)",
                |f| Some(f.watches as f64),
                false,
            ),
        ];
        for (what, f, bytes) in rows {
            let show = |v: Option<f64>| match v {
                None => "unknown".to_string(),
                Some(v) if bytes => mib(v),
                Some(v) => format!("{v:.0}"),
            };
            let _ = writeln!(
                md,
                "| {} | {what} | {} | {} |",
                d.label,
                show(footprint(true, f)),
                show(footprint(false, f))
            );
        }
        let logged: Vec<String> = r
            .lives(d.files, true)
            .filter_map(|l| l.runs.first()?.watching)
            .map(|w| {
                format!(
                    "{} (all {}; max_user_watches {})",
                    w.watches,
                    w.all_watches,
                    w.max_user_watches
                        .map_or("?".to_string(), |m| m.to_string())
                )
            })
            .collect();
        let mut distinct = logged.clone();
        distinct.dedup();
        let _ = writeln!(
            md,
            "| {} | watches, by the log line `the change journal watches the volume` (each \
             round) | {} | - |",
            d.label,
            if distinct.len() == 1 {
                distinct[0].clone()
            } else if logged.is_empty() {
                "no such line".to_string()
            } else {
                logged.join(", ")
            }
        );
    }

    let loads: Vec<f64> = r.lives.iter().filter_map(|l| l.load_cpu_percent).collect();
    if let Some((m, x)) = median_max(loads) {
        let _ = writeln!(
            md,
            "\nThe competing load used {m:.0}% of one core (median of the rounds; at most {x:.0}%) \
             while its runs went on."
        );
    }

    md.push_str("\nGoals:\n\n");
    let freeze = |files, loaded| {
        median_max(
            r.warm(files, true, loaded)
                .iter()
                .map(|r| r.pause_ms())
                .collect(),
        )
    };
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    if let (Some((_, worst)), loaded) = (freeze(MILLION.files, false), freeze(MILLION.files, true))
    {
        let first = median_max(
            r.first(MILLION.files, true)
                .iter()
                .map(|r| r.pause_ms())
                .collect(),
        );
        let _ = writeln!(
            md,
            "- the longest freeze at 1,000,000 files with the journal, under 100 ms: {worst:.0} ms \
             of the warm runs ({}){}{}.",
            verdict(worst < 100.0),
            loaded.map_or(String::new(), |(_, w)| format!(
                "; under the competing load {w:.0} ms ({})",
                verdict(w < 100.0)
            )),
            first.map_or(String::new(), |(_, w)| format!(
                "; of the daemon's first runs {w:.0} ms ({})",
                verdict(w < 100.0)
            ))
        );
    }
    let warm_runs = median_max(
        r.warm(MILLION.files, true, false)
            .iter()
            .map(|r| r.total_s)
            .collect(),
    );
    if let Some((m, x)) = warm_runs {
        let _ = writeln!(
            md,
            "- the warm run at 1,000,000 files with the journal, under 5 s: median {m:.2} s, \
             longest {x:.2} s ({}).",
            verdict(x < 5.0)
        );
    }
    if let (Some((big, _)), Some((small, _))) =
        (freeze(MILLION.files, false), freeze(TEN_K.files, false))
    {
        let ratio = big / small;
        let _ = writeln!(
            md,
            "- the freeze at 1,000,000 files within 1.5x of that at 10,000, journal on, medians: \
             {big:.0} / {small:.0} ms = {ratio:.2}x ({}).",
            verdict(ratio <= 1.5)
        );
    }

    md.push_str("\nRounds (each sidecar's runs; run 0 is its first):\n\n```\n");
    for d in datasets {
        for (files, run) in &r.cold {
            if *files == d.files {
                let _ = writeln!(
                    md,
                    "{} | into the empty mirror | {}",
                    d.label,
                    run.describe()
                );
            }
        }
        for round in 0..r.rounds {
            for (files, rd, f) in &r.floors {
                if *files == d.files && *rd == round {
                    let _ = writeln!(
                        md,
                        "{} | round {round} | floor {:.0} ms (pause+unpause {:.0}, walk {:.0} ms \
                         of {} entries, read {:.0} ms of {} B)",
                        d.label,
                        f.total_ms,
                        f.pause_unpause_ms,
                        f.walk_ms,
                        f.entries,
                        f.read_ms,
                        f.read_bytes
                    );
                }
            }
            for life in r
                .lives
                .iter()
                .filter(|l| l.files == d.files && l.round == round)
            {
                let on = if life.journal {
                    "journal on"
                } else {
                    "journal off"
                };
                for run in &life.runs {
                    let _ = writeln!(
                        md,
                        "{} | round {round} | {on} | {}",
                        d.label,
                        run.describe()
                    );
                }
                let f = &life.footprint;
                let _ = writeln!(
                    md,
                    "{} | round {round} | {on} | after run {}: VmRSS {} KiB, VmHWM {} KiB, cgroup \
                     rss {}, kmem {}, inotify wd lines {}{}",
                    d.label,
                    r.warm,
                    f.rss_bytes / 1024,
                    f.peak_rss_bytes / 1024,
                    f.anon_bytes
                        .map_or("?".to_string(), |b| format!("{} KiB", b / 1024)),
                    f.kernel_bytes
                        .map_or("?".to_string(), |b| format!("{} KiB", b / 1024)),
                    f.watches,
                    life.load_cpu_percent.map_or(String::new(), |p| format!(
                        "; the load used {p:.0}% of one core"
                    )),
                );
            }
        }
    }
    md.push_str("```\n");
}
