//! The capture against real rsync, on local directories: a mirror made by a live pass, the hard
//! cases changed behind it, the capture while "frozen", changes after the "thaw", the upload; the
//! mirror must then equal the volume as it was while frozen.

use super::*;
use crate::config::Link;
use crate::remote::commands::{Push, push_options};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

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
    let out = Command::new("rsync")
        .args(options)
        .arg(from)
        .arg(target)
        .output()
        .expect("rsync is installed (scripts/provision.sh)");
    assert!(
        out.status.success(),
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
}

impl Volume {
    fn new(setup: &str) -> Volume {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let v = Volume {
            source: root.join("source"),
            mirror: root.join("mirror"),
            staging: root.join("staging"),
            frozen: root.join("frozen"),
            _dir: dir,
        };
        std::fs::create_dir_all(&v.source).unwrap();
        std::fs::create_dir_all(&v.mirror).unwrap();
        sh(&v.source, setup);
        // Yesterday's run: the mirror is current.
        rsync(push(Push::Whole, &[]), &v.source, &v.mirror);
        v
    }

    /// The live pass, with what the capture needs from before it.
    fn live_pass(&self, excludes: &[String]) -> LiveView {
        let mut view =
            LiveView::before_live_pass(&self.source, excludes, &AtomicBool::new(false)).unwrap();
        // Past the coarse clock's tick: what was written before counts as old in this test.
        view.since = now();
        rsync(push(Push::Whole, excludes), &self.source, &self.mirror);
        view
    }

    /// While frozen: the capture, and a copy of the volume as it is, to compare with.
    fn capture(&self, live: &LiveView, excludes: &[String]) -> Capture {
        let stop = AtomicBool::new(false);
        let (entries, choice) = survey(&self.source, excludes, live, &stop).unwrap();
        let capture = copy(&self.source, &self.staging, entries, choice, &stop).unwrap();
        rsync(push(Push::Whole, excludes), &self.source, &self.frozen);
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
    };
    let choice = choose(&entries, &live);
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
