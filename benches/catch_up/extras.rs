//! The smaller tables: a warm run against a bare rsync, compression and the bandwidth limit on
//! the shaped link, the idle daemon, and `plan` with 500 labelled volumes.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::TIMEOUT;
use crate::common::{
    Env, Remote, SIDECAR_IMAGE, TEST_LABEL, docker, docker_output, events_named, run_now,
    wait_for_run,
};
use crate::dataset::Setup;
use crate::freeze::NO_BORG;
use crate::link::Link;
use crate::report::median;

// ---- a warm run against a bare rsync ------------------------------------------------------

/// One round: a warm sidecar run, then a bare rsync of the same volume into the same mirror.
#[derive(Debug, Clone, Copy)]
pub struct TotalRound {
    /// From the run's `run started` to its `run finished`.
    pub sidecar_s: f64,
    /// The rsync command alone, timed inside its container.
    pub rsync_s: f64,
}

/// Warm sidecar runs (default catch-up path) and bare rsyncs, alternating, on the bridge.
pub fn total_vs_rsync(setup: &Setup, rounds: usize) -> Vec<TotalRound> {
    // The freeze section stops the app for a while; if it failed then, the app is still stopped.
    docker(&["start", &setup.app]);
    let sidecar = setup.sidecar(&NO_BORG);
    let first = wait_for_run(&sidecar, TIMEOUT);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");
    let mut all = Vec::new();
    for round in 0..rounds {
        let finished = run_now(&sidecar, round + 1, TIMEOUT);
        assert_eq!(finished["fields"]["outcome"], "success", "{finished}");
        let started = events_named(&sidecar, "run started").remove(round + 1);
        let sidecar_s = seconds_between(&started, &finished)
            .unwrap_or_else(|| finished["fields"]["seconds"].as_f64().unwrap_or(f64::NAN));
        let rsync_s = bare_rsync(setup);
        eprintln!("round {round}: warm sidecar run {sidecar_s:.3} s, bare rsync {rsync_s:.3} s");
        all.push(TotalRound { sidecar_s, rsync_s });
    }
    docker(&["rm", "-f", &sidecar]);
    all
}

/// Seconds between two events' timestamps.
pub fn seconds_between(from: &Value, to: &Value) -> Option<f64> {
    let at = |e: &Value| chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str()?).ok();
    let micros = (at(to)? - at(from)?).num_microseconds()?;
    Some(micros as f64 / 1e6)
}

/// The ssh the bare rsync uses: the sidecar's key and pinned known_hosts, host key checked.
const BARE_SSH: &str = "ssh -i /ssh/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=yes \
                        -o UserKnownHostsFile=/ssh/known_hosts -o GlobalKnownHostsFile=/dev/null";

/// `rsync -aHAXS --delete --numeric-ids` of the volume's data into its mirror, from a throwaway
/// container (the sidecar image, for its rsync and ssh) on the same network with the same key and
/// the volumes directory mounted as the sidecar has it. Returns the rsync's seconds.
fn bare_rsync(setup: &Setup) -> f64 {
    let source = format!("/var/lib/docker/volumes/{}/_data/", setup.volume);
    let target = format!(
        "root@{}:/backup/mirror/{}/",
        setup.remote.name, setup.volume
    );
    let script = format!(
        "s=$(date +%s%N); rsync -aHAXS --delete --numeric-ids -e '{BARE_SSH}' {source} {target}; \
         rc=$?; e=$(date +%s%N); [ $rc -eq 0 ] || [ $rc -eq 24 ] || exit $rc; echo $((e - s))"
    );
    let ssh = format!("{}:/ssh:ro", setup.env.ssh_dir.path().display());
    let nanos = docker(&[
        "run",
        "--rm",
        "--label",
        TEST_LABEL,
        "--network",
        &setup.env.network,
        "-v",
        &ssh,
        "-v",
        "/var/lib/docker/volumes:/var/lib/docker/volumes:ro",
        "--entrypoint",
        "sh",
        SIDECAR_IMAGE,
        "-c",
        &script,
    ]);
    nanos.trim().parse::<f64>().expect("rsync's nanoseconds") / 1e9
}

// ---- the idle daemon ------------------------------------------------------------------------

/// The idle daemon's footprint.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Anonymous resident memory of the container (cgroup `total_rss` / `anon`): no page cache.
    pub anon_bytes: Option<u64>,
    /// The processes' resident set (VmRSS, summed): anonymous plus mapped file pages (the binary).
    pub process_rss_bytes: u64,
    /// `docker stats`' memory usage, as it prints it.
    pub docker_stats_mem: String,
    /// CPU time used over the window, in percent of one core.
    pub cpu_percent: f64,
    /// The window.
    pub window: Duration,
}

/// How long the idle CPU is watched.
pub const IDLE_WINDOW: Duration = Duration::from_secs(30);

/// A sidecar after one run, left alone: its memory, and its CPU over [`IDLE_WINDOW`].
pub fn idle(setup: &Setup) -> Idle {
    let sidecar = setup.sidecar(&NO_BORG);
    let first = wait_for_run(&sidecar, TIMEOUT);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");
    std::thread::sleep(Duration::from_secs(5));
    let cgroup = Cgroup::of(&sidecar);
    let cpu_before = cgroup.cpu_nanos();
    let started = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let cpu_used = cgroup.cpu_nanos() - cpu_before;
    let window = started.elapsed();
    let idle = Idle {
        anon_bytes: cgroup.anon_bytes(),
        process_rss_bytes: cgroup.process_rss_bytes(),
        docker_stats_mem: docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}}",
            &sidecar,
        ])
        .trim()
        .to_string(),
        cpu_percent: cpu_used as f64 / window.as_nanos() as f64 * 100.0,
        window,
    };
    docker(&["rm", "-f", &sidecar]);
    eprintln!("idle: {idle:?}");
    idle
}

/// A container's cgroup, v1 (cgroupfs driver, this machine) or v2.
pub enum Cgroup {
    V1 { cpuacct: String, memory: String },
    V2 { dir: String },
}

impl Cgroup {
    /// The cgroup of a running container.
    pub fn of(container: &str) -> Cgroup {
        let id = docker(&["inspect", "--format", "{{.Id}}", container])
            .trim()
            .to_string();
        let v1 = format!("/sys/fs/cgroup/cpuacct/docker/{id}");
        if std::path::Path::new(&v1).exists() {
            return Cgroup::V1 {
                cpuacct: v1,
                memory: format!("/sys/fs/cgroup/memory/docker/{id}"),
            };
        }
        [
            format!("/sys/fs/cgroup/system.slice/docker-{id}.scope"),
            format!("/sys/fs/cgroup/docker/{id}"),
        ]
        .into_iter()
        .find(|d| std::path::Path::new(d).exists())
        .map(|dir| Cgroup::V2 { dir })
        .unwrap_or_else(|| panic!("no cgroup found for {container}"))
    }

    /// CPU time used so far, in nanoseconds.
    pub fn cpu_nanos(&self) -> u64 {
        match self {
            Cgroup::V1 { cpuacct, .. } => read_number(&format!("{cpuacct}/cpuacct.usage")),
            Cgroup::V2 { dir } => stat_field(&format!("{dir}/cpu.stat"), "usage_usec")
                .expect("cpu.stat has usage_usec")
                .saturating_mul(1000),
        }
    }

    /// The host pids of the processes in the cgroup.
    fn procs(&self) -> Vec<String> {
        let procs = match self {
            Cgroup::V1 { memory, .. } => format!("{memory}/cgroup.procs"),
            Cgroup::V2 { dir } => format!("{dir}/cgroup.procs"),
        };
        std::fs::read_to_string(&procs)
            .unwrap_or_else(|e| panic!("{procs}: {e}"))
            .lines()
            .map(String::from)
            .collect()
    }

    /// The sum of the VmRSS of the processes in the cgroup.
    pub fn process_rss_bytes(&self) -> u64 {
        self.process_kib_sum("VmRSS:") * 1024
    }

    /// The sum of a `kB` field of the processes' `/proc/<pid>/status` (`VmHWM:`, say), in KiB.
    pub fn process_kib_sum(&self, key: &str) -> u64 {
        self.procs()
            .iter()
            .filter_map(|pid| stat_field(&format!("/proc/{pid}/status"), key))
            .sum()
    }

    /// Anonymous resident memory (no page cache).
    pub fn anon_bytes(&self) -> Option<u64> {
        match self {
            Cgroup::V1 { memory, .. } => stat_field(&format!("{memory}/memory.stat"), "total_rss"),
            Cgroup::V2 { dir } => stat_field(&format!("{dir}/memory.stat"), "anon"),
        }
    }

    /// Kernel memory charged to the cgroup (slab objects such as inotify marks, page tables,
    /// stacks): v1 `memory.kmem.usage_in_bytes`, v2 `memory.stat` `kernel`.
    pub fn kernel_bytes(&self) -> Option<u64> {
        match self {
            Cgroup::V1 { memory, .. } => {
                std::fs::read_to_string(format!("{memory}/memory.kmem.usage_in_bytes"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            }
            Cgroup::V2 { dir } => stat_field(&format!("{dir}/memory.stat"), "kernel"),
        }
    }

    /// The inotify watches the cgroup's processes hold: the `inotify wd:` lines of the fdinfo
    /// of each of their descriptors.
    pub fn inotify_watches(&self) -> u64 {
        let mut watches = 0;
        for pid in self.procs() {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
                continue;
            };
            for fd in fds.filter_map(Result::ok) {
                let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
                watches += info
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count() as u64;
            }
        }
        watches
    }
}

fn read_number(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The number after `key` in a file of `key value` lines (`VmRSS:   2048 kB` gives 2048).
fn stat_field(path: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next()? == key).then(|| words.next()?.parse().ok())?
    })
}

// ---- compression and the bandwidth limit ----------------------------------------------------

/// One cold mirror on the shaped link.
#[derive(Debug, Clone)]
pub struct LinkCase {
    /// `text`, `system` or `random`.
    pub data: &'static str,
    /// `BACKUP_COMPRESS`.
    pub compress: bool,
    /// `BACKUP_BWLIMIT` (KiB/s), if set.
    pub bwlimit: Option<u32>,
    /// The pass's seconds (median of the rounds).
    pub seconds: f64,
    /// The volume's bytes.
    pub bytes: u64,
    /// What crossed the link towards the remote (tbf's counter), median of the rounds.
    pub wire_bytes: u64,
}

/// Size of each dataset of this table: 20 files of 1 MB.
const LINK_FILES: usize = 20;
const LINK_FILE_BYTES: usize = 1_000_000;

/// The cases: each data kind with compression on and off, then incompressible data limited to
/// 500 KiB/s without compression (so the limit is the only brake besides the link).
const LINK_CASES: [(&str, bool, Option<u32>); 7] = [
    ("text", true, None),
    ("text", false, None),
    ("system", true, None),
    ("system", false, None),
    ("random", true, None),
    ("random", false, None),
    ("random", false, Some(500)),
];

/// Compressible data: log-like lines that differ only in their number.
const TEXT_SOURCE: &str =
    "seq -f 'line %08g: GET /index.php?page=home HTTP/1.1 200 5120 Mozilla/5.0' 1 1000000";

/// Typical application data: programs, libraries and their text files (the debian image's
/// `/usr` as a tar stream), which compresses a few times, unlike the log lines' best case.
const SYSTEM_SOURCE: &str = "tar -cf - /usr 2>/dev/null";

/// Cold mirrors of 20 MB of text, of system files and of random bytes on the 10 Mbit/s link.
pub fn compress_and_bwlimit(rounds: usize) -> Vec<LinkCase> {
    let env = Env::new("catchup-link");
    let remote = env.remote();
    let text = link_volume(&env, "text", TEXT_SOURCE);
    let system = link_volume(&env, "system", SYSTEM_SOURCE);
    let random = link_volume(&env, "random", "cat /dev/urandom");
    let shaping = Link::Shaped
        .apply(&remote.name)
        .expect("the shaped link shapes");
    let mut cases = Vec::new();
    for (data, compress, bwlimit) in LINK_CASES {
        let project = match data {
            "text" => &text,
            "system" => &system,
            _ => &random,
        };
        let mut runs = Vec::new();
        for _ in 0..rounds {
            env.on_remote(&remote, "rm -rf /backup/mirror/*");
            let sent_before = shaping.bytes_to_remote();
            let mirrored = cold_mirror(&env, &remote, project, compress, bwlimit);
            let wire = shaping.bytes_to_remote() - sent_before;
            runs.push((mirrored, wire));
        }
        let case = LinkCase {
            data,
            compress,
            bwlimit,
            seconds: median(runs.iter().map(|(m, _)| m.seconds).collect()),
            bytes: runs[0].0.bytes,
            wire_bytes: median(runs.iter().map(|(_, w)| *w as f64).collect()) as u64,
        };
        eprintln!("{case:?}");
        cases.push(case);
    }
    cases
}

/// A volume of its own compose project holding [`LINK_FILES`] files cut from `source`'s output;
/// returns the project.
fn link_volume(env: &Env, kind: &str, source: &str) -> String {
    let project = format!("{}-{kind}", env.name);
    let volume = env.volume(
        kind,
        &[
            "backup.enable=true",
            &format!("com.docker.compose.project={project}"),
        ],
    );
    env.in_volume(
        &volume,
        &format!(
            "cd /data && {source} | head -c {} | split -b {LINK_FILE_BYTES} -a 2 -d - f",
            LINK_FILES * LINK_FILE_BYTES
        ),
    );
    project
}

/// What a `volume synced` event says of a pass.
struct Mirrored {
    seconds: f64,
    bytes: u64,
}

/// One sidecar run of `project`'s volume into an empty mirror.
fn cold_mirror(
    env: &Env,
    remote: &Remote,
    project: &str,
    compress: bool,
    bwlimit: Option<u32>,
) -> Mirrored {
    let bwlimit = bwlimit.map(|b| b.to_string()).unwrap_or_default();
    let mut vars = NO_BORG.to_vec();
    vars.extend([
        ("BACKUP_PROJECTS", project),
        ("BACKUP_COMPRESS", if compress { "true" } else { "false" }),
        ("BACKUP_BWLIMIT", &bwlimit),
    ]);
    let sidecar = env.sidecar(remote, &vars);
    let run = wait_for_run(&sidecar, TIMEOUT);
    let synced = events_named(&sidecar, "volume synced");
    docker(&["rm", "-f", &sidecar]);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let fields = &synced[0]["fields"];
    Mirrored {
        seconds: fields["seconds"]
            .as_f64()
            .expect("volume synced has seconds"),
        bytes: fields["bytes"].as_u64().expect("volume synced has bytes"),
    }
}

// ---- plan with 500 labelled volumes ---------------------------------------------------------

/// `plan` with many volumes.
#[derive(Debug, Clone, Copy)]
pub struct PlanTimes {
    /// Labelled volumes in scope.
    pub volumes: usize,
    /// `docker exec <sidecar> backup-sidecar plan`, median.
    pub plan_s: f64,
    /// `docker exec <sidecar> backup-sidecar --version`, median: the exec's own cost.
    pub exec_s: f64,
    /// Volumes the plan's output names.
    pub listed: usize,
}

/// How many volumes.
pub const MANY: usize = 500;

/// Volumes made here, removed in one call on drop.
struct Volumes(Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        for chunk in self.0.chunks(100) {
            let mut args = vec!["volume", "rm", "-f"];
            args.extend(chunk.iter().map(String::as_str));
            docker_output(&args);
        }
    }
}

/// Discovery and plan with [`MANY`] labelled volumes, each of its own compose project.
pub fn plan_many(rounds: usize) -> PlanTimes {
    let env = Env::new("catchup-plan");
    let remote = env.remote();
    let mut volumes = Volumes(Vec::new());
    let mut projects = Vec::new();
    for i in 0..MANY {
        let project = format!("{}-p{i:03}", env.name);
        let volume = format!("{project}-v");
        let label = format!("com.docker.compose.project={project}");
        let labels = [
            "--label",
            TEST_LABEL,
            "--label",
            "backup.enable=true",
            "--label",
        ];
        docker(&[&["volume", "create"][..], &labels, &[&label, &volume]].concat());
        volumes.0.push(volume);
        projects.push(project);
    }
    let projects = projects.join(",");
    let mut vars = NO_BORG.to_vec();
    vars.extend([
        ("BACKUP_PROJECTS", projects.as_str()),
        ("BACKUP_RUN_ON_START", "false"),
    ]);
    let sidecar = env.sidecar(&remote, &vars);
    let exec = |args: &[&str]| {
        let started = Instant::now();
        let out = docker(&[&["exec", &sidecar, "backup-sidecar"][..], args].concat());
        (started.elapsed().as_secs_f64(), out)
    };
    let (mut plans, mut execs, mut listed) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        let (seconds, out) = exec(&["plan"]);
        listed = volumes
            .0
            .iter()
            .filter(|v| out.contains(v.as_str()))
            .count();
        plans.push(seconds);
        execs.push(exec(&["--version"]).0);
    }
    docker(&["rm", "-f", &sidecar]);
    let times = PlanTimes {
        volumes: volumes.0.len(),
        plan_s: median(plans),
        exec_s: median(execs),
        listed,
    };
    eprintln!("{times:?}");
    times
}
