//! What the bench found, as the markdown of `BENCHMARKS.md`.

use std::fmt::Write;
use std::process::Command;

use crate::Settings;
use crate::common::{REMOTE_IMAGE, SIDECAR_IMAGE, docker_output};
use crate::extras::{IDLE_WINDOW, Idle, LinkCase, MANY, PlanTimes, TotalRound};
use crate::freeze::CellRound;
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

/// A section's result, or why it failed.
pub type Outcome<T> = Result<T, String>;

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
            rounds: settings.rounds,
            started: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            freeze: Vec::new(),
            total: None,
            idle: None,
            link: None,
            plan: None,
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
