//! The capture against real rsync, on local directories: a mirror made by a live pass, the hard
//! cases changed behind it, the capture while "frozen", changes after the "thaw", the upload; the
//! mirror must then equal the volume as it was while frozen.

use super::*;
use crate::config::Link;
use crate::remote::commands::{Push, push_options};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

thread_local! {
    /// rsync's exits 23 and 24 are fine (a live pass while files move); the sidecar's are too.
    static VANISHED_OK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The last rsync exited 23: the sidecar would take the network catch-up.
    static LAST_23: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn sh(dir: &Path, script: &str) {
    let status = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

fn rsync(options: Vec<OsString>, source: &Path, target: &Path) -> String {
    let mut from = source.as_os_str().to_owned();
    from.push("/");
    // A local rsync over a tree that moves under it can hang; the sidecar's has its own limits.
    let out = Command::new("timeout")
        .args(["20", "rsync"])
        .args(options)
        .arg(from)
        .arg(target)
        .output()
        .expect("rsync is installed (scripts/provision.sh)");
    if out.status.code() == Some(23) {
        LAST_23.with(|c| c.set(true));
    }
    assert!(
        out.status.success()
            || (VANISHED_OK.with(|v| v.get()) && matches!(out.status.code(), Some(24 | 23))),
        "rsync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn now() -> Stamp {
    // Past the coarse clock's last tick, so that what comes before counts as old.
    std::thread::sleep(Duration::from_millis(30));
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    Stamp {
        secs: t.as_secs() as i64,
        nanos: t.subsec_nanos() as i64,
    }
}

/// What differs between two trees, as rsync itemizes it (content by checksum, times, modes,
/// owners, ACLs, xattrs, hard links, extra names); empty when they are equal.
/// `excludes` are left out on both sides, as the sidecar's passes leave them.
fn differences(expected: &Path, actual: &Path, excludes: &[String]) -> Vec<String> {
    let mut options = ["-aHAXS", "--numeric-ids", "--delete", "-c", "-n", "-i"]
        .map(OsString::from)
        .to_vec();
    options.extend(excludes.iter().map(|p| format!("--exclude={p}").into()));
    rsync(options, expected, actual)
        .lines()
        .map(str::to_string)
        .collect()
}

struct Volume {
    _dir: tempfile::TempDir,
    source: PathBuf,
    mirror: PathBuf,
    staging: PathBuf,
    frozen: PathBuf,
    /// The change journal, when the test runs with it.
    changes: Option<Changes>,
    /// The journal's event number while "frozen".
    frozen_mark: std::sync::Mutex<Option<u64>>,
}

impl Volume {
    fn new(setup: &str) -> Volume {
        Volume::with(setup, None, &[])
    }

    /// A volume whose runs use the change journal: yesterday's run set it up (a whole pass) and
    /// completed, so the next live pass sends only what the journal names.
    fn journaled(setup: &str, excludes: &[String]) -> Volume {
        Volume::with(setup, Some(Changes::start().unwrap()), excludes)
    }

    fn with(setup: &str, changes: Option<Changes>, excludes: &[String]) -> Volume {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let v = Volume {
            source: root.join("source"),
            mirror: root.join("mirror"),
            staging: root.join("staging"),
            frozen: root.join("frozen"),
            _dir: dir,
            changes,
            frozen_mark: Default::default(),
        };
        std::fs::create_dir_all(&v.source).unwrap();
        std::fs::create_dir_all(&v.mirror).unwrap();
        sh(&v.source, setup);
        // Yesterday's run: the mirror is current.
        let view = v.changes.as_ref().map(|c| {
            LiveView::from_journal(c, &v.source, excludes, None)
                .unwrap()
                .journal
                .unwrap()
        });
        rsync(push(Push::Whole, excludes), &v.source, &v.mirror);
        if let (Some(changes), Some(view)) = (&v.changes, view) {
            assert!(view.reason.is_some(), "the journal's first run is whole");
            changes.completed(&v.source, Some(changes.mark()));
        }
        v
    }

    /// The live pass, with what the capture needs from before it.
    fn live_pass(&self, excludes: &[String]) -> LiveView {
        self.live_pass_full(excludes, None)
    }

    /// [`Volume::live_pass`], whole for `full` (the scheduled full pass) when it says why.
    fn live_pass_full(&self, excludes: &[String], full: Option<&str>) -> LiveView {
        self.live_pass_with(excludes, full, None)
    }

    /// [`Volume::live_pass_full`], with the script `during` run while rsync runs.
    fn live_pass_with(
        &self,
        excludes: &[String],
        full: Option<&str>,
        during: Option<String>,
    ) -> LiveView {
        let mut view = match &self.changes {
            Some(changes) => LiveView::from_journal(changes, &self.source, excludes, full),
            None => LiveView::before_live_pass(&self.source, excludes, &AtomicBool::new(false)),
        }
        .unwrap();
        // Past the coarse clock's tick: what was written before counts as old in this test.
        view.since = now();
        let source = self.source.clone();
        let t = during.map(|d| std::thread::spawn(move || sh(&source, &d)));
        match view.journal.as_ref().filter(|j| j.since.is_some()) {
            Some(journal) => {
                let list = self.staging.with_extension("list");
                let mut text = Vec::new();
                for path in &journal.list {
                    text.extend_from_slice(path);
                    text.push(0);
                }
                std::fs::write(&list, text).unwrap();
                rsync(
                    push(Push::Listed { list: &list }, excludes),
                    &self.source,
                    &self.mirror,
                );
            }
            None => {
                rsync(push(Push::Whole, excludes), &self.source, &self.mirror);
            }
        }
        if let Some(t) = t {
            t.join().unwrap();
        }
        view
    }

    /// While frozen: the capture, and a copy of the volume as it is, to compare with; with the
    /// journal, the event number the run completes at.
    fn capture(&self, live: &LiveView, excludes: &[String]) -> Capture {
        let stop = AtomicBool::new(false);
        let mark = self.changes.as_ref().map(Changes::mark);
        let survey = survey(&self.source, excludes, live, self.changes.as_ref(), &stop).unwrap();
        let capture = copy(&self.source, &self.staging, survey, &stop).unwrap();
        rsync(push(Push::Whole, excludes), &self.source, &self.frozen);
        *self.frozen_mark.lock().unwrap() = mark;
        capture
    }

    /// After the thaw: the upload's rsync runs, with the options the sidecar uses.
    fn upload(&self, capture: &Capture, excludes: &[String]) {
        for step in capture.steps().unwrap() {
            let kind = if step.prune {
                Push::Prune { list: &step.list }
            } else {
                Push::Upload { list: &step.list }
            };
            rsync(push(kind, excludes), &step.source, &self.mirror);
        }
        if let Some(changes) = &self.changes {
            changes.completed(&self.source, *self.frozen_mark.lock().unwrap());
        }
        clear(&self.staging).unwrap();
    }

    fn staged(&self, capture: &Capture) -> Vec<String> {
        let mut paths: Vec<String> = capture
            .choice
            .upload
            .iter()
            .map(|&i| String::from_utf8_lossy(&capture.entries[i].path).into_owned())
            .collect();
        paths.sort();
        paths
    }
}

fn push(kind: Push, excludes: &[String]) -> Vec<OsString> {
    let link = Link {
        compress: false,
        bwlimit: None,
    };
    push_options(kind, &link, excludes, false)
}

const SETUP: &str = "
    mkdir -p keep/deep moved-away inner/sub empty-later cache plain
    for i in 1 2 3 4 5; do echo unchanged $i > keep/deep/f$i; done
    echo same-size-1 > inplace
    echo content > modes
    echo content > owner
    echo content > attrs
    echo content > acl
    echo rename me > old-name
    echo in the moved dir > moved-away/a
    mkdir moved-away/b && echo deeper > moved-away/b/c
    echo goes away > deleted
    mkdir gone-dir && echo x > gone-dir/y
    echo was a file > becomes-dir
    mkdir becomes-link && echo x > becomes-link/y
    echo was a file > file-to-link
    echo linked > link-a
    ln link-a link-b
    echo first name > single
    echo stays > plain/stays
    echo cache > cache/c1
    echo inner > inner/sub/i
    mkdir acl-dir && echo plain > acl-dir/plain-file
";

/// Every change a volume can see between the live pass and the freeze.
const CHANGES: &str = "
    printf same-size-2 > inplace.tmp && echo >> inplace.tmp && cat inplace.tmp > inplace && rm inplace.tmp
    touch -r modes inplace
    chmod 600 modes
    setfattr -n user.note -v changed attrs
    setfacl -m u:1234:r acl
    mv old-name new-name
    mv moved-away moved-here
    mv inner/sub relocated-sub
    rm deleted
    rm -r gone-dir
    rm becomes-dir && mkdir becomes-dir && echo now a dir > becomes-dir/x
    rm -r becomes-link && ln -s keep becomes-link
    rm file-to-link && ln -s keep/deep/f1 file-to-link
    mkfifo a-fifo
    echo changed together > link-a
    ln single second-name
    mkdir new-dir && echo new > new-dir/n
    echo more cache > cache/c2
    touch -d '2001-02-03 04:05:06.123456789' plain
    setfacl -d -m u:1234:rwx acl-dir && echo rewritten > acl-dir/plain-file
";

#[test]
fn the_mirror_ends_as_the_volume_was_while_frozen() {
    let v = Volume::new(SETUP);
    let excludes = vec!["/cache".to_string()];
    let live = v.live_pass(&excludes);
    sh(&v.source, CHANGES);
    if unsafe { libc::geteuid() } == 0 {
        sh(&v.source, "chown 1234:1234 owner");
    }
    let capture = v.capture(&live, &excludes);

    let staged = v.staged(&capture);
    for expected in [
        "inplace",
        "modes",
        "attrs",
        "acl",
        "new-name",
        "moved-here",
        "moved-here/a",
        "moved-here/b/c",
        "relocated-sub/i",
        "becomes-dir/x",
        "becomes-link",
        "file-to-link",
        "a-fifo",
        "link-a",
        "link-b",
        "single",
        "second-name",
        "new-dir/n",
        "plain",
    ] {
        assert!(
            staged.iter().any(|p| p == expected),
            "{expected} not staged: {staged:?}"
        );
    }
    for unchanged in ["keep/deep/f1", "plain/stays", "cache/c2"] {
        assert!(!staged.iter().any(|p| p == unchanged), "{unchanged} staged");
    }

    // After the thaw the apps write again; the upload must not send any of it.
    sh(
        &v.source,
        "echo after the thaw > inplace; echo after > new-dir/n; rm link-b; echo late > late; \
         chmod 644 modes; rm -r moved-here/b",
    );
    v.upload(&capture, &excludes);

    assert_eq!(
        differences(&v.frozen, &v.mirror, &excludes),
        Vec::<String>::new()
    );
    let ino = |p: &str| std::fs::metadata(v.mirror.join(p)).unwrap().ino();
    assert_eq!(ino("link-a"), ino("link-b"));
    assert_eq!(ino("single"), ino("second-name"));
    assert!(!v.mirror.join("cache/c2").exists(), "excluded, never sent");
}

#[test]
fn a_quiet_volume_copies_nothing() {
    let v = Volume::new(SETUP);
    let live = v.live_pass(&[]);
    let capture = v.capture(&live, &[]);
    assert_eq!(capture.choice.entries, 0);
    assert_eq!(capture.choice.bytes, 0);
    assert!(capture.choice.prune.is_empty());
    v.upload(&capture, &[]);
    assert_eq!(differences(&v.frozen, &v.mirror, &[]), Vec::<String>::new());
}

#[test]
fn a_change_before_the_live_pass_but_inside_the_margin_is_copied() {
    let v = Volume::new(SETUP);
    let mut live = v.live_pass(&[]);
    sh(&v.source, "echo changed > inplace");
    // The clock ticks coarsely: a ctime a little before the start still counts.
    let meta = std::fs::symlink_metadata(v.source.join("inplace")).unwrap();
    live.since = Stamp {
        secs: meta.ctime() - 1,
        nanos: 0,
    };
    let capture = v.capture(&live, &[]);
    assert!(v.staged(&capture).contains(&"inplace".to_string()));
}

/// The same-size rewrite with the old time put back: rsync's quick check would skip it; the
/// upload sends staged files whatever their size and time.
#[test]
fn a_rewrite_that_keeps_size_and_time_reaches_the_mirror() {
    let v = Volume::new("echo aaaa > f; touch -d 2020-01-01 f");
    let live = v.live_pass(&[]);
    sh(&v.source, "printf 'bbbb\\n' > f; touch -d 2020-01-01 f");
    let capture = v.capture(&live, &[]);
    v.upload(&capture, &[]);
    assert_eq!(std::fs::read(v.mirror.join("f")).unwrap(), b"bbbb\n");
}

#[test]
fn choose_counts_inodes_once_and_lists_parents() {
    let file = |path: &str, ino: u64, nlink: u64, secs: i64| Entry {
        path: path.as_bytes().to_vec(),
        kind: Kind::File,
        inode: (1, ino),
        nlink,
        size: 100,
        mode: 0o100644,
        owner: (0, 0),
        rdev: 0,
        ctime: Stamp { secs, nanos: 0 },
        mtime: Stamp::default(),
    };
    let dir = |path: &str, ino: u64, secs: i64| Entry {
        kind: Kind::Dir,
        size: 4096,
        ..file(path, ino, 1, secs)
    };
    let entries = vec![
        dir("", 1, 0),
        dir("a", 2, 0),
        dir("a/b", 3, 0),
        file("a/b/new", 4, 2, 10),
        file("a/other-name", 4, 2, 10),
        file("a/old", 5, 1, 0),
        dir("moved", 6, 10),
        file("moved/x", 7, 1, 0),
    ];
    let live = LiveView {
        since: Stamp { secs: 5, nanos: 0 },
        // "moved" was not there before the live pass.
        dirs: [("", 1), ("a", 2), ("a/b", 3)]
            .map(|(p, i)| (p.as_bytes().to_vec(), (1, i)))
            .into(),
        journal: None,
    };
    let choice = choose(&entries, &live, &HashSet::new());
    let paths: Vec<&str> = choice
        .upload
        .iter()
        .map(|&i| std::str::from_utf8(&entries[i].path).unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "",
            "a",
            "a/b",
            "a/b/new",
            "a/other-name",
            "moved",
            "moved/x"
        ]
    );
    // new, other-name (one inode), moved, moved/x
    assert_eq!(choice.entries, 4);
    assert_eq!(choice.bytes, 200);
    let pruned: Vec<&[u8]> = choice.prune.iter().map(|&i| &entries[i].path[..]).collect();
    assert_eq!(pruned, [&b"moved"[..]]);
}

/// [`CHANGES`] but for the new hard link, whose other name no event names (the journal then
/// scans, see below).
fn changes_without_new_links() -> String {
    CHANGES
        .lines()
        .filter(|l| !l.contains("ln single"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn with_the_journal_the_mirror_ends_as_the_volume_was_while_frozen() {
    let excludes = vec!["/cache".to_string()];
    let v = Volume::journaled(SETUP, &excludes);
    // Between the runs: changes the live pass must send.
    sh(
        &v.source,
        "echo between runs > keep/deep/f2; rm keep/deep/f3; mkdir -p fresh/a/b; \
         echo x > fresh/a/b/x; echo old-dir-file > plain/between",
    );
    let live = v.live_pass(&excludes);
    let journal = live.journal.as_ref().unwrap();
    assert_eq!(journal.reason, None);
    let listed: Vec<String> = journal
        .list
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    for expected in ["keep/deep/f2", "fresh/a/b/x", "plain/between", "keep/deep"] {
        assert!(
            listed.iter().any(|p| p == expected),
            "{expected}: {listed:?}"
        );
    }
    assert!(!listed.iter().any(|p| p == "keep/deep/f1"), "{listed:?}");
    sh(&v.source, &changes_without_new_links());
    let capture = v.capture(&live, &excludes);
    assert_eq!(capture.scanned, None, "from the journal");
    let staged = v.staged(&capture);
    for expected in [
        "inplace",
        "modes",
        "moved-here/b/c",
        "becomes-dir/x",
        "plain",
    ] {
        assert!(
            staged.iter().any(|p| p == expected),
            "{expected}: {staged:?}"
        );
    }
    for unchanged in ["keep/deep/f1", "plain/stays", "cache/c2", "keep/deep/f2"] {
        assert!(!staged.iter().any(|p| p == unchanged), "{unchanged} staged");
    }
    sh(
        &v.source,
        "echo after the thaw > inplace; rm -r moved-here/b",
    );
    v.upload(&capture, &excludes);
    assert_eq!(
        differences(&v.frozen, &v.mirror, &excludes),
        Vec::<String>::new()
    );

    // The next run starts from this freeze: only what changed since is listed.
    let live = v.live_pass(&excludes);
    let listed = &live.journal.as_ref().unwrap().list;
    assert!(listed.iter().any(|p| p == b"inplace"), "{listed:?}");
    assert!(!listed.iter().any(|p| p == b"modes"), "{listed:?}");
    let capture = v.capture(&live, &excludes);
    v.upload(&capture, &excludes);
    assert_eq!(
        differences(&v.frozen, &v.mirror, &excludes),
        Vec::<String>::new()
    );
}

/// Entries whose ctime is within the margin before the live pass are copied whatever the journal
/// says; a directory copied so must have its names listed, or the upload's delete step would
/// empty it in the mirror (a run right after the volume was set up).
#[test]
fn with_the_journal_a_directory_copied_for_its_ctime_keeps_its_names() {
    let v = Volume::journaled(SETUP, &[]);
    let mut live = v.live_pass(&[]);
    // Everything looks changed since before the live pass.
    live.since = Stamp::default();
    // A name made in the root: the root is listed, and its directories look changed.
    sh(&v.source, "echo new > new-in-root");
    let capture = v.capture(&live, &[]);
    assert_eq!(capture.scanned, None, "from the journal");
    assert!(v.staged(&capture).contains(&"keep/deep/f1".to_string()));
    v.upload(&capture, &[]);
    assert_eq!(differences(&v.frozen, &v.mirror, &[]), Vec::<String>::new());
}

/// A new name for a file in a directory nothing else changed in: no event names the old name
/// (its link count changed, which only a watch on the file itself would report).
#[test]
fn a_new_hard_link_the_journal_cannot_follow_makes_the_capture_scan() {
    let v = Volume::journaled(SETUP, &[]);
    let live = v.live_pass(&[]);
    sh(&v.source, &changes_without_new_links());
    sh(&v.source, "ln keep/deep/f4 plain/f4-link");
    let capture = v.capture(&live, &[]);
    let scanned = capture.scanned.clone().unwrap_or_default();
    assert!(scanned.contains("hard-linked"), "{scanned}");
    v.upload(&capture, &[]);
    assert_eq!(differences(&v.frozen, &v.mirror, &[]), Vec::<String>::new());
    let ino = |p: &str| std::fs::metadata(v.mirror.join(p)).unwrap().ino();
    assert_eq!(ino("keep/deep/f4"), ino("plain/f4-link"));
}

#[test]
fn an_overflowed_queue_makes_the_next_run_whole_and_says_why() {
    let v = Volume::journaled("mkdir d", &[]);
    let changes = v.changes.as_ref().unwrap();
    {
        // Nobody reads the queue while more events come than it holds.
        let _held = changes.hold();
        sh(&v.source, "cd d && seq 1 20000 | xargs touch");
    }
    let live = v.live_pass(&[]);
    let reason = live
        .journal
        .as_ref()
        .unwrap()
        .reason
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("overflowed"), "{reason}");
    let capture = v.capture(&live, &[]);
    v.upload(&capture, &[]);
    assert_eq!(differences(&v.frozen, &v.mirror, &[]), Vec::<String>::new());
    // Set up again: the run after that one is from the journal.
    let live = v.live_pass(&[]);
    assert_eq!(live.journal.as_ref().unwrap().reason, None);
}

/// Rounds of random changes between runs, during the live pass and after the thaw; after each
/// run the mirror must equal the volume as it was while frozen, with the journal on, every third
/// run a scheduled full pass.
#[test]
fn random_changes_with_the_journal_always_end_in_the_frozen_state() {
    let seed = seed();
    let mut rng = seed;
    let v = Volume::journaled("mkdir -p a/b c && echo 1 > a/x && echo 2 > c/y", &[]);
    let mut scanned = 0;
    for round in 0..12 {
        sh(&v.source, &random_script(&mut rng, 15));
        // Every third run is the scheduled full pass: whole, the journal's capture after it.
        let full = (round % 3 == 2).then_some("BACKUP_FULL_SCAN_SCHEDULE");
        let live = v.live_pass_full(&[], full);
        sh(&v.source, &random_script(&mut rng, 15));
        let capture = v.capture(&live, &[]);
        if let Some(why) = &capture.scanned {
            eprintln!("round {round}: scanned in full: {why}");
        }
        scanned += usize::from(capture.scanned.is_some());
        sh(&v.source, &random_script(&mut rng, 5));
        v.upload(&capture, &[]);
        assert_eq!(
            differences(&v.frozen, &v.mirror, &[]),
            Vec::<String>::new(),
            "seed {seed}, round {round}"
        );
    }
    eprintln!("{scanned} of 12 rounds scanned in full");
    assert!(scanned < 12, "the journal was used at least once");
}

/// The random tests' seed: `CAPTURE_SEED=N` replays one a test printed, else a new one, printed.
fn seed() -> u64 {
    let seed = std::env::var("CAPTURE_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |s| s.parse().expect("CAPTURE_SEED is a whole number"),
    );
    eprintln!("seed {seed}");
    seed
}

fn next(rng: &mut u64) -> u64 {
    *rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *rng;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A shell script of `n` random changes among a few names (each tolerates a missing name).
fn random_script(rng: &mut u64, n: usize) -> String {
    const DIRS: [&str; 5] = ["a", "a/b", "c", "c/d", "e"];
    const NAMES: [&str; 4] = ["x", "y", "z", "w"];
    let mut script = String::from("set +e\n");
    for _ in 0..n {
        let dir = DIRS[next(rng) as usize % DIRS.len()];
        let other = DIRS[next(rng) as usize % DIRS.len()];
        let name = NAMES[next(rng) as usize % NAMES.len()];
        let path = format!("{dir}/{name}");
        let line = match next(rng) % 14 {
            13 => format!("mkdir -p {other} && ln {path} {other}/{name}-hl"),
            // Moved out of the volume, then written there (a new file: a write to a name that
            // is also hard-linked inside the volume makes no event; only the host can do it, as
            // a container cannot move or link across its volume's mount).
            12 => format!(
                "mkdir -p ../out && mv {dir} ../out/{n} && echo late > ../out/{n}/{name}-late",
                n = next(rng)
            ),
            0 => format!("mkdir -p {dir} && echo $RANDOM > {path}"),
            1 => format!("echo more >> {path}"),
            2 => format!("chmod 6{}0 {path}", next(rng) % 8),
            3 => format!("mv {path} {other}/{name}"),
            4 => format!("rm -f {path}"),
            5 => format!("rm -rf {dir}"),
            6 => format!("mkdir -p {dir} && mv {dir} {dir}-moved && mv {dir}-moved {other}-n"),
            7 => format!("mkdir -p {dir}/new/deep && echo n > {dir}/new/deep/f"),
            8 => format!("touch -d '2001-01-0{} 00:00' {path}", 1 + next(rng) % 8),
            9 => format!("ln -sfn ../{name} {path}-link"),
            10 => format!("mv {dir} {dir}.tmp && mv {dir}.tmp {dir}"),
            _ => format!("printf abc > {path}.tmp && mv {path}.tmp {path}"),
        };
        script.push_str(&line);
        script.push_str(" 2>/dev/null\n");
    }
    script.push_str("true\n");
    script
}

/// [`random_changes_with_the_journal_always_end_in_the_frozen_state`] with the changes made while
/// the live pass runs. A hunt, run by hand (`cargo test --lib concurrent -- --ignored`, many
/// times): it found the directory renamed away and back that a fallen-back scan missed.
#[test]
#[ignore = "a hunt for rare interleavings: run it by hand, many times"]
fn concurrent_random_changes_with_the_journal() {
    let seed = seed();
    let mut rng = seed;
    let v = Volume::journaled("mkdir -p a/b c && echo 1 > a/x && echo 2 > c/y", &[]);
    for round in 0..12 {
        sh(&v.source, &random_script(&mut rng, 15));
        let full = (round % 3 == 2).then_some("BACKUP_FULL_SCAN_SCHEDULE");
        let during =
            random_script(&mut rng, 15).replace(" 2>/dev/null\n", " 2>/dev/null; sleep 0.003\n");
        VANISHED_OK.with(|o| o.set(true));
        LAST_23.with(|c| c.set(false));
        let live = v.live_pass_with(&[], full, Some(during));
        VANISHED_OK.with(|o| o.set(false));
        if LAST_23.with(|c| c.get()) {
            sh(&v.source, &random_script(&mut rng, 5));
            rsync(push(Push::Whole, &[]), &v.source, &v.mirror);
            v.changes.as_ref().unwrap().completed(&v.source, None);
            continue;
        }
        let capture = v.capture(&live, &[]);
        sh(&v.source, &random_script(&mut rng, 5));
        v.upload(&capture, &[]);
        assert_eq!(
            differences(&v.frozen, &v.mirror, &[]),
            Vec::<String>::new(),
            "seed {seed}, round {round}"
        );
    }
}
