//! The archive index (`src/catalog/`): how long building it takes, how much memory the build
//! holds, how large it is on disk, and how long opening one folder takes, on synthetic listings of
//! 100,000 and 1,000,000 files. Run with `cargo bench --bench catalog` (about ten seconds); it
//! prints a markdown section and writes it into `BENCHMARKS.md` at the repository root (replacing
//! its `## Archive index (catalog)` section, or appending one).
//!
//! Method, per size:
//! - **the listing**: lines as `borg list --json-lines` writes them, generated on the fly (never
//!   held whole), in the order of a depth-first walk whose siblings come in a pseudo-random order
//!   (borg's order is that of its walk, not sorted): `VOLUME/DIR/DIR/FILE`, files mostly in the
//!   third level, the number per directory varied (a few directories with ten times as many),
//!   sizes spread from bytes to tens of MB, four owners. Deterministic: the same every run.
//! - **floors**, in this process: generating the lines alone, then generating and parsing each
//!   with serde_json into the same shape the builder parses into.
//! - **build**, in a child process (this binary run again with `--catalog-build-child`), so that
//!   its `VmHWM` is the build's alone: every line to `Builder::line`, then `Builder::finish`;
//!   timed as a whole and by phase; `line` calls that took over 20 ms are counted as the ones that
//!   sorted and wrote a run (their number is checked against the runs the build reports).
//! - **folder open**: 1,000 directories picked at random among all of the listing's, each read
//!   with `Catalog::folder(path, 0, 500)` and timed alone, its total checked against the listing.
//!   First with the index's pages in the page cache (just written), then the same picks with the
//!   file's pages dropped before each call (`posix_fadvise(POSIX_FADV_DONTNEED)`); this is a VM,
//!   so "cold" reads may still be served by the host's cache.
//!
//! Everything lives in a temporary directory under `/tmp`, removed at the end.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use backup_sidecar::bench::{Builder, Catalog, RUN_BYTES};
use serde::Deserialize;

/// The argument that makes this binary the build's child process.
const CHILD: &str = "--catalog-build-child";
/// Folders opened per size.
const PICKS: usize = 1_000;
/// The page asked of each folder.
const PAGE: u64 = 500;
/// A `line` call longer than this sorted and wrote a run.
const RUN_CALL: Duration = Duration::from_millis(20);
/// The heading of this bench's section in `BENCHMARKS.md`.
const HEADING: &str = "## Archive index (catalog)";

/// A synthetic archive: `vols` volumes of `mids` directories of `leaves` directories each; every
/// middle directory holds `mid_files` files, the leaves share the rest.
struct Shape {
    files: u64,
    vols: u32,
    mids: u32,
    leaves: u32,
    mid_files: u32,
}

const SHAPES: [Shape; 2] = [
    Shape {
        files: 100_000,
        vols: 4,
        mids: 10,
        leaves: 24,
        mid_files: 2,
    },
    Shape {
        files: 1_000_000,
        vols: 4,
        mids: 25,
        leaves: 99,
        mid_files: 2,
    },
];

impl Shape {
    /// Directories listed (the archive's top is not an item of the listing).
    fn dirs(&self) -> u64 {
        let v = self.vols as u64;
        v + v * self.mids as u64 + v * self.mids as u64 * self.leaves as u64
    }

    fn leaf_dirs(&self) -> u64 {
        self.vols as u64 * self.mids as u64 * self.leaves as u64
    }

    fn label(&self) -> String {
        format!(
            "{} files / {} dirs",
            thousands(self.files),
            thousands(self.dirs())
        )
    }
}

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of a position in the tree: names, sizes and times are functions of where they are.
fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5EED, |acc, &p| mix(acc ^ p))
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `0..n` in a pseudo-random order: one directory's children, as its walk meets them.
fn shuffled(n: u32, rng: &mut Rng) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

const APPS: [&str; 8] = [
    "nextcloud",
    "gitea",
    "postgres",
    "immich",
    "wordpress",
    "mailu",
    "paperless",
    "jellyfin",
];
const WORDS: [&str; 32] = [
    "photos",
    "archive",
    "cache",
    "assets",
    "thumbnails",
    "uploads",
    "reports",
    "invoices",
    "backups",
    "config",
    "logs",
    "mail",
    "projects",
    "music",
    "videos",
    "documents",
    "exports",
    "imports",
    "static",
    "media",
    "build",
    "releases",
    "users",
    "shared",
    "public",
    "private",
    "templates",
    "drafts",
    "scans",
    "notes",
    "data",
    "index",
];
const EXTS: [&str; 12] = [
    "jpg", "png", "pdf", "txt", "log", "json", "mp3", "docx", "csv", "html", "gz", "md",
];
/// Owners: user and group name, uid, gid.
const OWNERS: [(&str, u32); 4] = [
    ("root", 0),
    ("www-data", 33),
    ("postgres", 999),
    ("app", 1000),
];

fn vol_name(v: u32) -> String {
    format!("{}-{v}_data", APPS[v as usize % APPS.len()])
}

/// A directory's name, `index` unique among its siblings.
fn dir_name(key: u64, index: u32) -> String {
    let h = mix(key);
    format!(
        "{}-{}-{index:03}",
        WORDS[(h % 32) as usize],
        WORDS[((h >> 8) % 32) as usize]
    )
}

fn mid_path(v: u32, m: u32) -> String {
    format!(
        "{}/{}",
        vol_name(v),
        dir_name(hash(&[1, v as u64, m as u64]), m)
    )
}

fn leaf_path(v: u32, m: u32, l: u32) -> String {
    format!(
        "{}/{}",
        mid_path(v, m),
        dir_name(hash(&[2, v as u64, m as u64, l as u64]), l)
    )
}

/// The listing of a shape, line by line.
struct Listing<'a> {
    shape: &'a Shape,
    /// Files per leaf directory, by (volume, middle, leaf) in order.
    per_leaf: Vec<u32>,
}

impl<'a> Listing<'a> {
    fn new(shape: &'a Shape) -> Listing<'a> {
        // Weights of 20 to 180, one leaf in a hundred ten times that; the files shared out in
        // proportion, exactly.
        let leaves = shape.leaf_dirs();
        let weights: Vec<u64> = (0..leaves)
            .map(|i| {
                let h = hash(&[3, i]);
                let w = 20 + h % 161;
                if (h >> 32).is_multiple_of(100) {
                    w * 10
                } else {
                    w
                }
            })
            .collect();
        let total: u64 = weights.iter().sum();
        let leaf_files =
            shape.files - shape.vols as u64 * shape.mids as u64 * shape.mid_files as u64;
        let mut per_leaf = Vec::with_capacity(leaves as usize);
        let mut cumulative = 0u64;
        let mut given = 0u64;
        for w in weights {
            cumulative += w;
            let upto = (leaf_files as u128 * cumulative as u128 / total as u128) as u64;
            per_leaf.push((upto - given) as u32);
            given = upto;
        }
        Listing { shape, per_leaf }
    }

    fn files_in_leaf(&self, v: u32, m: u32, l: u32) -> u32 {
        let s = self.shape;
        self.per_leaf[((v * s.mids + m) * s.leaves + l) as usize]
    }

    /// Entries directly in a directory (by depth and position), as the index should count them.
    fn entries_of(&self, pick: Pick) -> u64 {
        match pick {
            Pick::Top => self.shape.vols as u64,
            Pick::Vol(_) => self.shape.mids as u64,
            Pick::Mid(..) => self.shape.leaves as u64 + self.shape.mid_files as u64,
            Pick::Leaf(v, m, l) => self.files_in_leaf(v, m, l) as u64,
        }
    }

    /// Calls `emit` with every line of the listing, in the walk's order.
    fn walk(&self, mut emit: impl FnMut(&str)) {
        let s = self.shape;
        let mut rng = Rng(0xB0_4B);
        let mut line = String::with_capacity(512);
        for v in shuffled(s.vols, &mut rng) {
            let owner = OWNERS[v as usize % OWNERS.len()];
            let vol = vol_name(v);
            dir_line(&mut line, &vol, owner, hash(&[4, v as u64]));
            emit(&line);
            for m in shuffled(s.mids, &mut rng) {
                let mid = mid_path(v, m);
                dir_line(&mut line, &mid, owner, hash(&[5, v as u64, m as u64]));
                emit(&line);
                // Its subdirectories and its own files, mixed, as a directory's walk meets them.
                for c in shuffled(s.leaves + s.mid_files, &mut rng) {
                    if c >= s.leaves {
                        let key = [6, v as u64, m as u64, c as u64];
                        file_line(&mut line, &mid, c - s.leaves, owner, hash(&key));
                        emit(&line);
                        continue;
                    }
                    let leaf = leaf_path(v, m, c);
                    let key = [7, v as u64, m as u64, c as u64];
                    dir_line(&mut line, &leaf, owner, hash(&key));
                    emit(&line);
                    for k in shuffled(self.files_in_leaf(v, m, c), &mut rng) {
                        let key = [8, v as u64, m as u64, c as u64, k as u64];
                        file_line(&mut line, &leaf, k, owner, hash(&key));
                        emit(&line);
                    }
                }
            }
        }
    }
}

/// borg's time format, a time in 2024–2026 from `h`.
fn write_mtime(out: &mut String, h: u64) {
    let _ = write!(
        out,
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        2024 + h % 3,
        1 + (h >> 4) % 12,
        1 + (h >> 8) % 28,
        (h >> 16) % 24,
        (h >> 24) % 60,
        (h >> 32) % 60,
        (h >> 40) % 1_000_000
    );
}

fn dir_line(out: &mut String, path: &str, (user, id): (&str, u32), h: u64) {
    out.clear();
    let _ = write!(
        out,
        r#"{{"type": "d", "mode": "drwxr-xr-x", "user": "{user}", "group": "{user}", "uid": {id}, "gid": {id}, "path": "{path}", "healthy": true, "source": "", "linktarget": "", "flags": 0, "mtime": ""#
    );
    write_mtime(out, h);
    out.push_str(r#"", "size": 0}"#);
}

fn file_line(out: &mut String, dir: &str, k: u32, (user, id): (&str, u32), h: u64) {
    out.clear();
    let mode = if h.is_multiple_of(20) {
        "-rwxr-xr-x"
    } else {
        "-rw-r--r--"
    };
    // Sizes spread over orders of magnitude: up to 2^(0..27) bytes.
    let size = (h >> 8) % (1u64 << ((h >> 3) % 27 + 1));
    let _ = write!(
        out,
        r#"{{"type": "-", "mode": "{mode}", "user": "{user}", "group": "{user}", "uid": {id}, "gid": {id}, "path": "{dir}/{}_{}-{k:05}.{}", "healthy": true, "source": "", "linktarget": "", "flags": 0, "mtime": ""#,
        WORDS[((h >> 40) % 32) as usize],
        WORDS[((h >> 48) % 32) as usize],
        EXTS[((h >> 56) % 12) as usize],
    );
    write_mtime(out, mix(h));
    let _ = write!(out, r#"", "size": {size}}}"#);
}

/// What the builder parses a line into (`src/catalog/build.rs`), for the parse floor.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    mode: &'a str,
    #[serde(default)]
    user: String,
    #[serde(default)]
    group: String,
    uid: u32,
    gid: u32,
    path: String,
    #[serde(default)]
    linktarget: String,
    mtime: &'a str,
    #[serde(default)]
    size: u64,
}

/// A directory of the listing, by position.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Top,
    Vol(u32),
    Mid(u32, u32),
    Leaf(u32, u32, u32),
}

impl Pick {
    /// The `i`th directory (0 the top), counting volumes, then middles, then leaves.
    fn nth(shape: &Shape, mut i: u64) -> Pick {
        if i == 0 {
            return Pick::Top;
        }
        i -= 1;
        let (vols, mids, leaves) = (shape.vols as u64, shape.mids as u64, shape.leaves as u64);
        if i < vols {
            return Pick::Vol(i as u32);
        }
        i -= vols;
        if i < vols * mids {
            return Pick::Mid((i / mids) as u32, (i % mids) as u32);
        }
        i -= vols * mids;
        Pick::Leaf(
            (i / (mids * leaves)) as u32,
            (i / leaves % mids) as u32,
            (i % leaves) as u32,
        )
    }

    fn path(self) -> String {
        match self {
            Pick::Top => String::new(),
            Pick::Vol(v) => vol_name(v),
            Pick::Mid(v, m) => mid_path(v, m),
            Pick::Leaf(v, m, l) => leaf_path(v, m, l),
        }
    }
}

/// `VmHWM` of this process, KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child: builds the index of shape `args[0]` into `args[1]/index.idx` (scratch in
/// `args[1]/scratch`) and prints what it measured as `key=value` words.
fn child(args: &[String]) -> Result<()> {
    let shape = &SHAPES[args[0].parse::<usize>()?];
    let dir = Path::new(&args[1]);
    let listing = Listing::new(shape);
    let hwm_before = vm_hwm_kib();
    let start = Instant::now();
    let mut builder = Builder::new(&dir.join("scratch"), RUN_BYTES)?;
    let mut failed = None;
    let (mut run_calls, mut run_time) = (0u64, Duration::ZERO);
    listing.walk(|line| {
        if failed.is_some() {
            return;
        }
        let t = Instant::now();
        if let Err(e) = builder.line(line) {
            failed = Some(e);
        }
        let took = t.elapsed();
        if took > RUN_CALL {
            run_calls += 1;
            run_time += took;
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let fed = start.elapsed();
    let read = builder.read;
    let built = builder.finish(&dir.join("index.idx"))?;
    let total = start.elapsed();
    println!(
        "lines={read} entries={} dirs={} bytes={} runs={} feed_s={} run_calls={run_calls} \
         run_s={} finish_s={} total_s={} hwm_before_kib={hwm_before} hwm_kib={}",
        built.entries,
        built.dirs,
        built.bytes,
        built.runs,
        fed.as_secs_f64(),
        run_time.as_secs_f64(),
        (total - fed).as_secs_f64(),
        total.as_secs_f64(),
        vm_hwm_kib(),
    );
    Ok(())
}

/// Runs the build of `SHAPES[index]` in a child process; its `key=value` report.
fn build_in_child(index: usize, dir: &Path) -> Result<HashMap<String, f64>> {
    let output = Command::new(std::env::current_exe()?)
        .arg(CHILD)
        .arg(index.to_string())
        .arg(dir)
        .output()
        .context("running the build's child process")?;
    if !output.status.success() {
        bail!(
            "the build's child failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8(output.stdout)?;
    let mut report = HashMap::new();
    for word in text.split_whitespace() {
        if let Some((key, value)) = word.split_once('=') {
            report.insert(key.to_string(), value.parse::<f64>()?);
        }
    }
    Ok(report)
}

/// Drops `file`'s pages from the page cache.
fn drop_pages(file: &File) -> Result<()> {
    // SAFETY: a plain call on an open descriptor.
    let err = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if err != 0 {
        bail!("posix_fadvise: {}", std::io::Error::from_raw_os_error(err));
    }
    Ok(())
}

/// How many of `file`'s pages are in the page cache, and of how many (mincore of a mapping).
fn resident_pages(file: &File) -> Result<(usize, usize)> {
    let len = file.metadata()?.len() as usize;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let pages = len.div_ceil(page);
    // SAFETY: a read-only shared mapping of an open file, unmapped before returning; mincore
    // writes one byte per page into a vector of exactly that many.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if addr == libc::MAP_FAILED {
            bail!("mmap: {}", std::io::Error::last_os_error());
        }
        let mut vec = vec![0u8; pages];
        let rc = libc::mincore(addr, len, vec.as_mut_ptr());
        libc::munmap(addr, len);
        if rc != 0 {
            bail!("mincore: {}", std::io::Error::last_os_error());
        }
        Ok((vec.iter().filter(|&&b| b & 1 == 1).count(), pages))
    }
}

/// Median, 99th percentile (nearest rank) and worst of durations, in ms.
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    p99: f64,
    worst: f64,
}

impl Spread {
    fn of(mut times: Vec<Duration>) -> Spread {
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let n = times.len();
        let median = if n % 2 == 1 {
            ms(times[n / 2])
        } else {
            (ms(times[n / 2 - 1]) + ms(times[n / 2])) / 2.0
        };
        Spread {
            median,
            p99: ms(times[(n * 99).div_ceil(100) - 1]),
            worst: ms(times[n - 1]),
        }
    }

    fn cells(&self) -> [String; 3] {
        [self.median, self.p99, self.worst].map(|v| format!("{v:.3}"))
    }
}

/// What one size measured.
struct Measured {
    label: String,
    lines: u64,
    generate_s: f64,
    parse_s: f64,
    build: HashMap<String, f64>,
    open_ms: f64,
    warm: Spread,
    cold: Spread,
    resident_after_drop: (usize, usize),
    largest_page: u64,
}

impl Measured {
    fn get(&self, key: &str) -> f64 {
        self.build[key]
    }
}

/// Times `folder` on every pick; with `cold`, the index's pages dropped before each call.
fn open_folders(
    catalog: &Catalog,
    listing: &Listing,
    picks: &[(Pick, String)],
    drop: Option<&File>,
) -> Result<(Vec<Duration>, u64)> {
    let mut times = Vec::with_capacity(picks.len());
    let mut largest = 0;
    for (pick, path) in picks {
        if let Some(file) = drop {
            drop_pages(file)?;
        }
        let t = Instant::now();
        let folder = catalog.folder(path, 0, PAGE)?;
        times.push(t.elapsed());
        let Some(folder) = folder else {
            bail!("the index has no folder {path:?}");
        };
        let expected = listing.entries_of(*pick);
        if folder.total != expected || folder.entries.len() as u64 != expected.min(PAGE) {
            bail!(
                "folder {path:?}: {} entries ({} on the page), the listing has {expected}",
                folder.total,
                folder.entries.len()
            );
        }
        largest = largest.max(folder.entries.len() as u64);
    }
    Ok((times, largest))
}

fn measure(index: usize, tmp: &Path) -> Result<Measured> {
    let shape = &SHAPES[index];
    let listing = Listing::new(shape);
    eprintln!("== {}", shape.label());

    // Floors: generating the lines, then generating and parsing them.
    let t = Instant::now();
    let mut lines = 0u64;
    let mut bytes = 0u64;
    listing.walk(|line| {
        lines += 1;
        bytes += black_box(line).len() as u64 + 1;
    });
    let generate_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut sizes = 0u64;
    listing.walk(|line| {
        let parsed: Line = serde_json::from_str(line).expect("a generated line parses");
        sizes = sizes.wrapping_add(black_box(parsed).size);
    });
    let parse_s = t.elapsed().as_secs_f64();
    eprintln!(
        "   {lines} lines, {:.0} bytes each on average; generated in {generate_s:.2} s, \
         generated and parsed in {parse_s:.2} s",
        bytes as f64 / lines as f64
    );
    if lines != shape.files + shape.dirs() {
        bail!("{lines} lines, not {}", shape.files + shape.dirs());
    }

    let dir = tmp.join(format!("size-{index}"));
    std::fs::create_dir_all(&dir)?;
    let build = build_in_child(index, &dir)?;
    eprintln!("   build: {build:?}");
    if build["lines"] as u64 != lines || build["dirs"] as u64 != shape.dirs() + 1 {
        bail!(
            "the build read {} lines into {} dirs",
            build["lines"],
            build["dirs"]
        );
    }
    let path = dir.join("index.idx");

    let t = Instant::now();
    let catalog = Catalog::open(&path)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut rng = Rng(0xF0_1D + index as u64);
    let all = shape.dirs() + 1;
    let picks: Vec<(Pick, String)> = (0..PICKS)
        .map(|_| {
            let pick = Pick::nth(shape, rng.below(all));
            (pick, pick.path())
        })
        .collect();
    let (warm, largest_warm) = open_folders(&catalog, &listing, &picks, None)?;
    let file = File::open(&path)?;
    drop_pages(&file)?;
    let resident_after_drop = resident_pages(&file)?;
    let (cold, largest_cold) = open_folders(&catalog, &listing, &picks, Some(&file))?;
    drop(catalog);
    std::fs::remove_dir_all(&dir)?;
    let measured = Measured {
        label: shape.label(),
        lines,
        generate_s,
        parse_s,
        build,
        open_ms,
        warm: Spread::of(warm),
        cold: Spread::of(cold),
        resident_after_drop,
        largest_page: largest_warm.max(largest_cold),
    };
    eprintln!(
        "   folder warm median {:.3} ms, cold median {:.3} ms",
        measured.warm.median, measured.cold.median
    );
    Ok(measured)
}

fn thousands(n: u64) -> String {
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

fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

/// The section of `BENCHMARKS.md`.
fn markdown(sizes: &[Measured], started: &str, load: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{HEADING}\n");
    let _ = writeln!(
        out,
        "Run with `cargo bench --bench catalog` (about ten seconds; it rewrites this section \
         only). This one started {started}; one run. Machine: 2-core VM, shared with other work \
         (load average at the start: {load}); the index and its scratch on the VM's disk under \
         `/tmp`.\n"
    );
    let _ = write!(out, "| | ");
    let header: Vec<&str> = sizes.iter().map(|m| m.label.as_str()).collect();
    let _ = writeln!(out, "{} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(sizes.len()));
    let mut row = |what: &str, cell: &dyn Fn(&Measured) -> String| {
        let cells: Vec<String> = sizes.iter().map(cell).collect();
        let _ = writeln!(out, "| {what} | {} |", cells.join(" | "));
    };
    row("listing lines (items)", &|m| thousands(m.lines));
    row("generating the lines alone, s (floor)", &|m| {
        format!("{:.2}", m.generate_s)
    });
    row("generating + serde_json parse, s (floor)", &|m| {
        format!("{:.2}", m.parse_s)
    });
    row("**index build, s** (every `line`, then `finish`)", &|m| {
        format!("**{:.2}**", m.get("total_s"))
    });
    row(
        "&nbsp;&nbsp;feeding the lines (generation included), s",
        &|m| format!("{:.2}", m.get("feed_s")),
    );
    row(
        "&nbsp;&nbsp;&nbsp;&nbsp;of which the `line` calls that sorted and wrote a run, s",
        &|m| format!("{:.2} ({} calls)", m.get("run_s"), m.get("run_calls")),
    );
    row(
        "&nbsp;&nbsp;`finish` (last sort, merge, write the index), s",
        &|m| format!("{:.2}", m.get("finish_s")),
    );
    row("sorted runs written to disk", &|m| {
        format!("{}", m.get("runs"))
    });
    row("**peak RSS of the build process (VmHWM), MiB**", &|m| {
        format!(
            "**{}** ({} before the build)",
            mib(m.get("hwm_kib")),
            mib(m.get("hwm_before_kib"))
        )
    });
    row("**index size, bytes**", &|m| {
        format!("**{}**", thousands(m.get("bytes") as u64))
    });
    row("index bytes per item", &|m| {
        format!("{:.1}", m.get("bytes") / m.get("entries"))
    });
    row("`Catalog::open`, ms", &|m| format!("{:.3}", m.open_ms));
    row("**folder open, warm**: median / p99 / worst, ms", &|m| {
        m.warm.cells().join(" / ")
    });
    row(
        "**folder open, pages dropped**: median / p99 / worst, ms",
        &|m| m.cold.cells().join(" / "),
    );
    row("entries on the largest page read (limit 500)", &|m| {
        m.largest_page.to_string()
    });
    row("index pages in the page cache after a drop", &|m| {
        format!(
            "{} of {}",
            thousands(m.resident_after_drop.0 as u64),
            thousands(m.resident_after_drop.1 as u64)
        )
    });
    out
}

/// Writes `section` into `BENCHMARKS.md`: in place of its old self, or at the end.
fn write_section(section: &str) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let start = if old.starts_with(HEADING) {
        Some(0)
    } else {
        old.find(&format!("\n{HEADING}\n")).map(|i| i + 1)
    };
    let new = match start {
        Some(start) => {
            let after = start + HEADING.len();
            let end = old[after..]
                .find("\n## ")
                .map_or(old.len(), |i| after + i + 1);
            format!("{}{section}\n{}", &old[..start], &old[end..])
        }
        None if old.trim().is_empty() => format!("# Benchmarks\n\n{section}"),
        None => format!("{}\n\n{section}", old.trim_end()),
    };
    std::fs::write(&path, new.trim_end().to_string() + "\n")?;
    eprintln!("written to {}", path.display());
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(CHILD) {
        return child(&args[2..]);
    }
    let started = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let tmp = tempfile::Builder::new()
        .prefix("catalog-bench-")
        .tempdir_in("/tmp")?;
    let mut sizes = Vec::new();
    for index in 0..SHAPES.len() {
        sizes.push(measure(index, tmp.path())?);
    }
    tmp.close()?;
    let mut section = markdown(&sizes, &started, &load);
    section.push('\n');
    section.push_str(&explain(&sizes));
    println!("{section}");
    write_section(&section)
}

/// The paragraph under the table: the numbers of this run, read.
fn explain(sizes: &[Measured]) -> String {
    let (small, large) = (&sizes[0], &sizes[sizes.len() - 1]);
    let steps = |m: &Measured| (m.get("dirs") as u64).next_power_of_two().trailing_zeros();
    let us_per_item = |m: &Measured, key: &str| m.get(key) / m.lines as f64 * 1e6;
    let other_line_s = large.get("feed_s") - large.get("run_s") - large.parse_s;
    format!(
        "Opening a folder is a binary search in the directory table ({} steps of two small reads \
         at {} directories, {} at {}) and one read of a page of entries, not a read of the \
         archive: with {:.0}x the items the warm median goes from {:.3} to {:.3} ms, and with the \
         file's pages dropped before each call from {:.3} to {:.3} ms, the cold case paying for \
         each step's read below the page cache, in a directory table {:.0}x larger. The build \
         holds at most `RUN_BYTES` ({} MiB) of estimated item weight before it sorts a run to \
         disk: \
         {} MiB peak at {} items ({} runs) and {} MiB at {} ({} runs), the excess over \
         `RUN_BYTES` being, by our reading of the code, what the estimate leaves out of each \
         item (its struct and allocations), the batch vector's spare capacity and the sort's \
         scratch; a larger listing adds runs, not resident memory (by construction; not \
         measured past {} items). \
         At the large size the build takes {:.1} us per item: {:.2} s in the {} `line` calls that \
         sorted and wrote a run, {:.2} s generating and parsing the JSON lines (the floors), \
         {:.2} s in the rest of `line`, and {:.2} s in `finish`. The index costs {:.1} and {:.1} \
         bytes per item (a 64-byte record and its name per item, 48 bytes and its path per \
         directory).\n",
        steps(large),
        thousands(large.get("dirs") as u64),
        steps(small),
        thousands(small.get("dirs") as u64),
        large.lines as f64 / small.lines as f64,
        small.warm.median,
        large.warm.median,
        small.cold.median,
        large.cold.median,
        large.get("dirs") / small.get("dirs"),
        RUN_BYTES >> 20,
        mib(small.get("hwm_kib")),
        thousands(small.lines),
        small.get("runs"),
        mib(large.get("hwm_kib")),
        thousands(large.lines),
        large.get("runs"),
        thousands(large.lines),
        us_per_item(large, "total_s"),
        large.get("run_s"),
        large.get("run_calls"),
        large.parse_s,
        other_line_s,
        large.get("finish_s"),
        small.get("bytes") / small.get("entries"),
        large.get("bytes") / large.get("entries"),
    )
}
