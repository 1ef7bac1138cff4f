//! The second copy (docs/copy.md), side by side for its four kinds: sftp, WebDAV and S3 (moto)
//! with the rclone replica, and a second borg repository; over the container bridge, with the
//! images as they are (`backup-sidecar:latest`, `backup-sidecar-remote:latest`) and the copy
//! targets of `tests/common/copy_targets.rs`. Run as root with `cargo bench --bench copy` (about
//! five minutes); it replaces its own section of `BENCHMARKS.md` (at the end) and prints it.
//!
//! Per kind, one after another, each in its own [`Env`] (removed before the next kind starts):
//! - a volume of 200 MiB: 195 MiB of random data in files of 1-8 MiB, and 2,000 files of 1-4 KiB;
//! - the sidecar's run on start (a snapshot) and its copy: the `copy finished` event's `bytes`
//!   and `seconds`, and `du -sb /backup/borg` on the remote;
//! - 9 more runs (SIGUSR1), each after 2 MiB of new random data and 20 small files rewritten,
//!   each waited for with its `copy finished`: copies 2 and 10, and the repository after run 10;
//!   for the rclone kinds what the copies moved aside to `TARGET.deleted/`;
//! - for sftp, then, the Pi gone: the remote removed, a new one, the repository fetched from the
//!   copy with the owner's rclone config, and `guard --setup` with the passphrase.
//!
//! A kind that fails is reported in its row, and the bench exits non-zero after writing.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/mod.rs"]
mod shared;

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;

use common::copy_targets::*;
use common::*;
use shared::attempt;

const HEADING: &str = "## The second copy";
/// Longest wait for one run or one copy.
const TIMEOUT: Duration = Duration::from_secs(1800);
/// Runs per kind: the first, and this many minus one asked with SIGUSR1.
const RUNS: usize = 10;
/// The big files' sizes in MiB, cycled until [`BIG_MIB`].
const BIG_SIZES: [u32; 8] = [3, 7, 1, 5, 8, 2, 6, 4];
const BIG_MIB: u32 = 195;
/// Small files: 2,000 of 1-4 KiB (4.9 MiB in all).
const SMALL_FILES: usize = 2000;
/// Each later run: this much new random data, and this many small files rewritten.
const NEW_MIB: u32 = 2;
const REWRITTEN: usize = 20;

/// What one `copy finished` said.
#[derive(Clone, Copy)]
struct Copied {
    bytes: u64,
    seconds: f64,
}

/// One kind's figures.
struct Measured {
    repo_after_first: u64,
    first: Copied,
    second: Copied,
    last: Copied,
    repo_after_last: u64,
    /// The sum of `TARGET.deleted/`'s files (rclone kinds), and of its segments (`data/`).
    deleted: Option<(u64, u64)>,
    /// The copy's files after the last run, summed (the second repository for borg).
    copy_size: u64,
    /// The repository's index, hints and integrity files after the last run.
    index_files: u64,
    /// The archives the repository lists after the last run.
    archives: usize,
    /// The whole kind, setup and teardown included.
    took: Duration,
}

/// The Pi gone, after the sftp kind's last run.
struct PiGone {
    fetch: Duration,
    setup: Duration,
    repo: u64,
    archives: usize,
}

/// The volume's content: the big files, then the small ones, in one container.
fn dataset_script() -> String {
    let mut sizes = Vec::new();
    let mut total = 0;
    for size in BIG_SIZES.iter().cycle() {
        let size = (*size).min(BIG_MIB - total);
        sizes.push(size);
        total += size;
        if total == BIG_MIB {
            break;
        }
    }
    let sizes: Vec<String> = sizes.iter().map(u32::to_string).collect();
    format!(
        "set -e; mkdir -p /data/big /data/small /data/new; i=0; \
         for m in {}; do head -c ${{m}}M /dev/urandom > /data/big/f$i; i=$((i+1)); done; \
         i=0; while [ $i -lt {SMALL_FILES} ]; do \
         head -c $((1024 + i % 4 * 1024)) /dev/urandom > /data/small/s$i; i=$((i+1)); done",
        sizes.join(" ")
    )
}

/// Run `n`'s change: a new file of [`NEW_MIB`], and [`REWRITTEN`] small files rewritten (others
/// each run) at their size.
fn change_script(n: usize) -> String {
    let first = (n * REWRITTEN) % SMALL_FILES;
    format!(
        "set -e; head -c {NEW_MIB}M /dev/urandom > /data/new/run{n}; i={first}; \
         while [ $i -lt {} ]; do \
         head -c $(stat -c %s /data/small/s$i) /dev/urandom > /data/small/s$i; i=$((i+1)); done",
        first + REWRITTEN
    )
}

fn copied(sidecar: &str, n: usize) -> Copied {
    let copy = wait_for_events(sidecar, "copy finished", n, TIMEOUT).remove(n - 1);
    assert_eq!(copy["fields"]["outcome"], "success", "copy {n}: {copy}");
    Copied {
        bytes: copy["fields"]["bytes"].as_u64().unwrap_or(0),
        seconds: copy["fields"]["seconds"].as_f64().unwrap_or(0.0),
    }
}

fn succeeded(run: &Value, n: usize) {
    assert_eq!(run["fields"]["outcome"], "success", "run {n}: {run}");
}

/// `du -sb /backup/borg` on a remote.
fn repository_size(env: &Env, remote: &Remote) -> u64 {
    number(&env.on_remote(remote, "du -sb /backup/borg | cut -f1"))
}

fn number(text: &str) -> u64 {
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("not a number ({e}): {text:?}"))
}

fn sum(files: &[(String, u64)]) -> u64 {
    files.iter().map(|(_, size)| size).sum()
}

/// One kind, start to end; with `pi_gone`, the Pi-gone fetch after its last run (sftp).
fn measure(kind: CopyKind, pi_gone: bool) -> (Measured, Option<PiGone>) {
    let started = Instant::now();
    let env = Env::new(&format!("copybench-{}", label(kind)));
    let remote = env.remote();
    let target = env.copy_target(&remote, kind);
    if kind == CopyKind::Borg {
        // guard --setup makes the second repository.
        env.on_remote(&remote, &format!("{GUARD} --setup < /dev/null > /dev/null"));
    }
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, &dataset_script());
    let sidecar = env.sidecar(&remote, &[]);
    succeeded(&wait_for_run(&sidecar, TIMEOUT), 1);
    let first = copied(&sidecar, 1);
    let repo_after_first = repository_size(&env, &remote);
    eprintln!(
        "   run 1: copy {} bytes in {} s, repository {repo_after_first}",
        first.bytes, first.seconds
    );
    let mut second = first;
    let mut last = first;
    for n in 2..=RUNS {
        env.in_volume(&volume, &change_script(n));
        succeeded(&run_now(&sidecar, n - 1, TIMEOUT), n);
        let copy = copied(&sidecar, n);
        eprintln!(
            "   run {n}: copy {} bytes in {} s",
            copy.bytes, copy.seconds
        );
        if n == 2 {
            second = copy;
        }
        last = copy;
    }
    let repo_after_last = repository_size(&env, &remote);
    let deleted = (kind != CopyKind::Borg).then(|| {
        let files = env.copy_deleted_files(&target, &remote);
        let segments: Vec<(String, u64)> = files
            .iter()
            .filter(|(path, _)| path.contains("/data/"))
            .cloned()
            .collect();
        (sum(&files), sum(&segments))
    });
    let copy_size = sum(&env.copy_files(&target, &remote));
    let archives = env.archives(&remote).len();
    let index_files = number(&env.on_remote(
        &remote,
        "cat /backup/borg/index.* /backup/borg/hints.* /backup/borg/integrity.* | wc -c",
    ));

    let gone = pi_gone.then(|| {
        let archives = env.archives(&remote);
        // The Pi is gone (and with it the server's sidecar); a new one, the same name.
        docker(&["rm", "-f", "-v", &sidecar]);
        docker(&["rm", "-f", "-v", &remote.name]);
        let new_pi = env.remote();
        env.on_remote(&new_pi, "rm -rf /backup/borg");
        let t0 = Instant::now();
        env.fetch_copy_to(&target, &new_pi, "/backup/borg");
        let fetch = t0.elapsed();
        let t1 = Instant::now();
        env.on_remote(
            &new_pi,
            &format!("printf %s '{PASSPHRASE}' | {GUARD} --setup > /dev/null"),
        );
        let setup = t1.elapsed();
        assert_eq!(env.archives(&new_pi), archives, "the copy's archives");
        PiGone {
            fetch,
            setup,
            repo: repository_size(&env, &new_pi),
            archives: archives.len(),
        }
    });
    // The target (and moto with it) and then the Env go here.
    drop(target);
    drop(env);
    (
        Measured {
            repo_after_first,
            first,
            second,
            last,
            repo_after_last,
            deleted,
            copy_size,
            index_files,
            archives,
            took: started.elapsed(),
        },
        gone,
    )
}

fn label(kind: CopyKind) -> &'static str {
    match kind {
        CopyKind::Sftp => "sftp",
        CopyKind::Webdav => "webdav",
        CopyKind::S3 => "s3",
        CopyKind::Borg => "borg",
    }
}

/// The name in the table.
fn title(kind: CopyKind) -> &'static str {
    match kind {
        CopyKind::Sftp => "rclone, sftp (OpenSSH)",
        CopyKind::Webdav => "rclone, WebDAV (`rclone serve webdav`)",
        CopyKind::S3 => "rclone, S3 (moto)",
        CopyKind::Borg => "borg, a second repository over ssh",
    }
}

/// `ID (created)` of an image, to tell whether it changed during the bench.
fn image_identity(image: &str) -> String {
    docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Created}}",
        image,
    ])
    .trim()
    .to_string()
}

fn mib(bytes: u64) -> String {
    let m = bytes as f64 / 1048576.0;
    if m >= 10.0 {
        format!("{m:.1} MiB")
    } else {
        format!("{m:.2} MiB")
    }
}

fn sent(copy: Copied) -> String {
    format!("{}, {:.1} s", mib(copy.bytes), copy.seconds)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let started = Instant::now();
    let images: Vec<(&str, String)> = [SIDECAR_IMAGE, REMOTE_IMAGE]
        .into_iter()
        .map(|image| (image, image_identity(image)))
        .collect();
    let load_before = load();
    let kinds = [
        CopyKind::Sftp,
        CopyKind::Webdav,
        CopyKind::S3,
        CopyKind::Borg,
    ];
    let mut results = Vec::new();
    let mut pi_gone = None;
    for kind in kinds {
        let result = attempt(label(kind), || measure(kind, kind == CopyKind::Sftp));
        let result = result.map(|(measured, gone)| {
            if gone.is_some() {
                pi_gone = gone;
            }
            eprintln!(
                "   {} took {:.0} s",
                label(kind),
                measured.took.as_secs_f64()
            );
            measured
        });
        results.push((kind, result));
    }
    let changed: Vec<String> = images
        .iter()
        .filter_map(|(image, before)| {
            let now = image_identity(image);
            (now != *before).then(|| format!("{image} changed during the bench: {before} -> {now}"))
        })
        .collect();
    let took = started.elapsed();

    let mut rows = Vec::new();
    for (kind, result) in &results {
        rows.push(match result {
            Ok(m) => format!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                title(*kind),
                mib(m.repo_after_first),
                sent(m.first),
                sent(m.second),
                sent(m.last),
                mib(m.repo_after_last),
                m.deleted.map_or(
                    "(none: nothing is moved aside)".to_string(),
                    |(all, _)| mib(all)
                ),
            ),
            Err(e) => format!(
                "| {} | failed: {} | | | | | |",
                title(*kind),
                e.lines().next().unwrap_or("").replace('|', "\\|")
            ),
        });
    }
    let measured: Vec<(CopyKind, &Measured)> = results
        .iter()
        .filter_map(|(k, r)| r.as_ref().ok().map(|m| (*k, m)))
        .collect();
    let copy_sizes = measured
        .iter()
        .map(|(k, m)| format!("{} {}", label(*k), mib(m.copy_size)))
        .collect::<Vec<_>>()
        .join(", ");
    let rclone: Vec<(CopyKind, &Measured, (u64, u64))> = measured
        .iter()
        .filter_map(|(k, m)| m.deleted.map(|d| (*k, *m, d)))
        .collect();
    let index = rclone
        .first()
        .map_or("?".to_string(), |(_, m, _)| mib(m.index_files));
    let aside = rclone
        .iter()
        .map(|(k, _, (all, segments))| {
            let segments = if *segments == 0 {
                String::new()
            } else {
                format!(", of which {} segments", mib(*segments))
            };
            format!("{} {}{segments}", label(*k), mib(*all))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let no_segment = if rclone.iter().all(|(_, _, (_, segments))| *segments == 0) {
        ", and no segment: nothing was compacted"
    } else {
        ""
    };
    let archives = measured
        .first()
        .map_or("?".to_string(), |(_, m)| m.archives.to_string());
    let per_kind = measured
        .iter()
        .map(|(k, m)| format!("{} {:.0} s", label(*k), m.took.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ");
    let pi_line = match &pi_gone {
        Some(p) => format!(
            "**The Pi gone** (sftp, after run 10): a new remote, its new repository removed, then \
             the repository fetched from the copy with the owner's rclone config \
             (`rclone copy`, {} over the bridge) in **{:.1} s**, and `guard --setup` with the \
             passphrase in **{:.1} s** (the fetched repository is append-only already: the \
             setup only gives it to the reader); `borg list` then shows the same {} archives.",
            mib(p.repo),
            p.fetch.as_secs_f64(),
            p.setup.as_secs_f64(),
            p.archives
        ),
        None => "**The Pi gone**: not measured (the sftp kind failed).".to_string(),
    };
    let image_line = images
        .iter()
        .map(|(image, id)| {
            let short = id.strip_prefix("sha256:").unwrap_or(id);
            format!("`{image}` {}", &short[..12.min(short.len())])
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut section = format!(
        "{HEADING}\n\n`cargo bench --bench copy`, {} on this project's 2-core VM (shared; load \
         {load_before} at the start), one run of each kind in turn over the container bridge, the \
         images as built ({image_line}); {:.1} min in all ({per_kind}). A volume of 200 MiB \
         (195 MiB of random data in files of 1-8 MiB, 2,000 files of 1-4 KiB); the sidecar's run \
         on start (its snapshot, then its copy), then 9 runs asked with SIGUSR1, each after \
         {NEW_MIB} MiB of new random data and {REWRITTEN} small files rewritten. Sent and seconds \
         are the `copy finished` event's `bytes` and `seconds`; the repository is `du -sb \
         /backup/borg` on the remote; kept aside is what the copies moved to `TARGET.deleted/`.\n\n\
         | kind | repository after run 1 | first copy: sent, seconds | copy after run 2: sent, \
         seconds | copy after run 10: sent, seconds | repository after run 10 | kept aside \
         (`.deleted`) |\n|---|---|---|---|---|---|---|\n{}\n\n\
         - An rclone copy after a run sends the run's new segments (its {NEW_MIB} MiB of new \
         data, random and so incompressible, the {REWRITTEN} rewritten small files and the \
         archive's new metadata) plus what every transaction rewrites whole: the index, hints \
         and integrity files ({index} after run 10). The files it replaces are moved aside: \
         `.deleted` holds {aside} after 9 such copies{no_segment}. The repository grows by each \
         run's data: prune runs after each snapshot ({archives} archives listed after run 10), \
         but the sidecar's key keeps the repository append-only, so nothing is freed.\n\
         - The borg kind's bytes are what the archive added to the second repository \
         (`deduplicated_size`: new chunks, compressed, deduplicated), not bytes on the wire; its \
         seconds include the Pi's own `borg create` of the whole mirror (the files cache skips \
         unchanged files) and its prune. Its repository column is the first repository's, like \
         the others'. For the rclone kinds, sent is rclone's count of the files' bytes it \
         transferred, without protocol overhead.\n\
         - The copy itself after run 10 (its files, summed; for borg the second repository, \
         which its prune does not shrink without a compaction): {copy_sizes}.\n\
         - {pi_line}\n",
        Utc::now().format("%Y-%m-%d"),
        took.as_secs_f64() / 60.0,
        rows.join("\n"),
    );
    for change in &changed {
        section.push_str(&format!(
            "\n**Warning**: {change}; the figures may mix two builds.\n"
        ));
    }
    println!("{section}");
    let path = shared::write_section(HEADING, &section);
    eprintln!("written to {}", path.display());
    eprintln!("total {:.0} s", took.as_secs_f64());
    if results.iter().any(|(_, r)| r.is_err()) || !changed.is_empty() {
        std::process::exit(1);
    }
}
