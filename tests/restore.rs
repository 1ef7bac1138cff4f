//! Restore, with proof: a volume holding everything a volume can hold is backed up, wiped, restored
//! from the mirror and compared; restored from the borg archive into a new volume and compared.
//! The comparison reads both trees on the host (root, like the engine): content, type, mode,
//! owner, mtime to the nanosecond, link targets, hard-link identity, xattrs (ACLs are the
//! `system.posix_acl_*` xattrs), sparseness, and the volume root's own metadata.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::hash::{DefaultHasher, Hasher};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything a volume can hold; runs as root in the remote image (it has setfacl and setfattr).
const FIDELITY: &str = r#"set -e
cd /data
for a in $(seq 0 19); do for b in $(seq 0 9); do mkdir -p n/$a/$b
  for c in $(seq 0 99); do echo "$a/$b/$c" > n/$a/$b/f$c; done; done; done
truncate -s 1G sparse
printf middle | dd of=sparse bs=1 seek=536870912 conv=notrunc status=none
printf end | dd of=sparse bs=1 seek=1073741821 conv=notrunc status=none
echo linked > hl1; ln hl1 hl2; mkdir -p other; ln hl1 other/hl3
ln -s hl1 sym; ln -s /nonexistent/target dangling
mkdir empty
mkfifo fifo
echo s > "with space"; echo n > $'new\nline'; echo b > $'bad\xff\xfename'
echo long > "$(printf 'x%.0s' $(seq 1 255))"
echo 0 > m0000; chmod 0000 m0000
echo s > m4755; chmod 4755 m4755
mkdir m1777; chmod 1777 m1777
echo o > owned; chown 12345:54321 owned; chown -h 23456:65432 sym
echo t > nanos; touch -d '2020-01-02 03:04:05.123456789' nanos
setfattr -n user.color -v blue hl1
setfattr -n user.note -v 'two words' owned
setfacl -m u:4242:rwx,g:4343:r-x owned
setfacl -d -m u:4242:rwx m1777
chown 999:999 /data; chmod 0750 /data
setfattr -n user.root -v top /data
setfacl -m u:4242:r-x /data
touch -d '2021-05-06 07:08:09.123456789' /data
"#;

/// What the comparison sees of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    target: Option<Vec<u8>>,
    content: Option<u64>,
    sparse: bool,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A tree: entries by relative path (raw bytes), and hard-link groups.
#[derive(Debug, PartialEq, Eq)]
struct Tree {
    entries: BTreeMap<Vec<u8>, Entry>,
    links: Vec<Vec<Vec<u8>>>,
}

fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: buffers are valid for their stated lengths; l* variants do not follow symlinks.
    let len = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let mut out = BTreeMap::new();
    if len <= 0 {
        return out;
    }
    for name in names[..len as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if n >= 0 {
            value.truncate(n as usize);
            out.insert(name.to_vec(), value);
        }
    }
    out
}

fn hash_file(path: &Path) -> u64 {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
    }
    hasher.finish()
}

fn walk(root: &Path, dir: &Path, tree: &mut Tree, inodes: &mut BTreeMap<u64, Vec<Vec<u8>>>) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    let rel = dir
        .strip_prefix(root)
        .unwrap()
        .as_os_str()
        .as_bytes()
        .to_vec();
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    };
    let is_file = ft.is_file();
    if is_file && meta.nlink() > 1 {
        inodes.entry(meta.ino()).or_default().push(rel.clone());
    }
    tree.entries.insert(
        rel,
        Entry {
            kind,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: if ft.is_dir() { 0 } else { meta.size() },
            mtime: (meta.mtime(), meta.mtime_nsec()),
            target: ft.is_symlink().then(|| {
                std::fs::read_link(dir)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            }),
            content: is_file.then(|| hash_file(dir)),
            sparse: is_file && meta.size() > 1 << 20 && meta.blocks() * 512 < meta.size() / 2,
            xattrs: xattrs(dir),
        },
    );
    if ft.is_dir() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        children.sort();
        for child in children {
            walk(root, &child, tree, inodes);
        }
    }
}

/// Reads a volume's tree on the host.
fn tree(volume: &str) -> Tree {
    let root = PathBuf::from(format!("/var/lib/docker/volumes/{volume}/_data"));
    let mut tree = Tree {
        entries: BTreeMap::new(),
        links: Vec::new(),
    };
    let mut inodes = BTreeMap::new();
    walk(&root, &root, &mut tree, &mut inodes);
    tree.links = inodes.into_values().collect();
    tree.links.iter_mut().for_each(|g| g.sort());
    tree.links.sort();
    tree
}

fn assert_same(original: &Tree, restored: &Tree, what: &str) {
    let mut differences = Vec::new();
    for (path, entry) in &original.entries {
        match restored.entries.get(path) {
            None => differences.push(format!("missing {:?}", String::from_utf8_lossy(path))),
            Some(other) if other != entry => differences.push(format!(
                "{:?}: {entry:?} became {other:?}",
                String::from_utf8_lossy(path)
            )),
            Some(_) => {}
        }
    }
    for path in restored.entries.keys() {
        if !original.entries.contains_key(path) {
            differences.push(format!("extra {:?}", String::from_utf8_lossy(path)));
        }
    }
    if original.links != restored.links {
        differences.push(format!(
            "hard links {:?} became {:?}",
            original.links, restored.links
        ));
    }
    assert!(
        differences.is_empty(),
        "{what}: {} difference(s):\n{}",
        differences.len(),
        differences
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn round_trips_keep_everything_a_volume_holds() {
    let env = Env::new("fidelity");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.with_volume(
        &volume,
        &["--entrypoint", "bash", REMOTE_IMAGE, "-c", FIDELITY],
    );
    let original = tree(&volume);
    assert!(original.entries.len() > 20_000);
    assert!(
        original.entries.values().any(|e| e.sparse),
        "the fixture has a sparse file"
    );

    let sidecar = env.sidecar(&remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let archive = run["fields"]["archive"].as_str().unwrap().to_string();

    // The archive is listed.
    let listed = docker(&["exec", &sidecar, "backup-sidecar", "snapshots"]);
    assert!(listed.contains(&archive), "{listed}");

    // Without --yes: says what it would do, changes nothing.
    let said = restore(&sidecar, &[&volume]).stdout;
    assert!(said.contains("would overwrite"), "{said}");
    // Dry run lists changes, changes nothing.
    env.in_volume(&volume, "rm /data/hl2");
    let listed = restore(&sidecar, &[&volume, "--dry-run"]).stdout;
    assert!(listed.contains("hl2"), "{listed}");
    assert!(!tree(&volume).entries.contains_key(b"hl2".as_slice()));

    // Wipe, restore from the mirror, compare.
    env.in_volume(
        &volume,
        "find /data -mindepth 1 -delete && chown 0:0 /data && chmod 755 /data",
    );
    let from_mirror = restore(&sidecar, &[&volume, "--from", "mirror", "--yes"]);
    assert_same(&original, &tree(&volume), "restore from the mirror");

    // From the archive into a new volume, compare.
    let copy = format!("{}-copy", env.name);
    env.track_volume(&copy);
    let from_archive = restore(
        &sidecar,
        &[&volume, "--from", &archive, "--to", &copy, "--yes"],
    );
    assert_same(&original, &tree(&copy), "restore from the archive");
    // `docker exec` shows the restore's own log lines.
    let restored: Vec<&serde_json::Value> = [&from_mirror, &from_archive]
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| message(e) == "volume restored")
        .collect();
    assert_eq!(
        restored.len(),
        2,
        "{}{}",
        from_mirror.stdout,
        from_archive.stdout
    );
    for (event, took) in restored.iter().zip([from_mirror.took, from_archive.took]) {
        eprintln!(
            "restore from {}: {} files, {} bytes in {:.1} s ({} MiB/s apparent; docker exec {:.1} s)",
            event["fields"]["source"].as_str().unwrap_or(""),
            event["fields"]["files"],
            event["fields"]["bytes"],
            event["fields"]["seconds"].as_f64().unwrap_or(0.0),
            event["fields"]["mib_per_second"],
            took.as_secs_f64()
        );
    }
    // The helpers are gone.
    let helpers = docker(&[
        "ps",
        "-aq",
        "--filter",
        "label=backup-sidecar.restore-helper",
    ]);
    assert!(
        helpers.trim().is_empty(),
        "helper containers left: {helpers}"
    );
}

#[test]
fn restore_in_place_stops_and_starts_the_app() {
    let env = Env::new("inplace");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "echo version-1 > /data/page");
    // The "app" serves its page: it prints it every half second.
    let app = env.app(
        "app",
        &volume,
        "while :; do cat /data/page; sleep 0.5; done",
    );
    let sidecar = env.sidecar(&remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");

    // A bad change, then the restore while the app runs.
    env.in_volume(&volume, "echo broken > /data/page");
    let since = engine_time();
    restore(&sidecar, &[&volume, "--yes"]);
    let events = engine_events(&since, &format!("container={app}"), "{{.Action}}");
    let actions: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|a| matches!(*a, "stop" | "start"))
        .collect();
    assert_eq!(actions, vec!["stop", "start"], "{events:?}");
    assert_running_not_paused(&app);
    wait_until(
        "the app to serve the restored page",
        Duration::from_secs(20),
        || {
            let logs = docker(&["logs", "--tail", "1", &app]);
            logs.trim() == "version-1"
        },
    );
}

#[test]
fn verification_finds_a_file_that_rotted_in_the_mirror() {
    let env = Env::new("verify");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(
        &volume,
        "echo one > /data/one && echo two > /data/two && mkdir /data/d && echo three > /data/d/three",
    );
    let sidecar = env.sidecar(&remote, &[("BACKUP_CHECK_SCHEDULE", "* * * * *")]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    // Bit rot: the content changes, size and mtime do not (rsync's quick check cannot see it).
    env.on_remote(
        &remote,
        &format!(
            "f=/backup/mirror/{volume}/two; t=$(stat -c %y $f); \
             printf X | dd of=$f bs=1 conv=notrunc status=none; touch -d \"$t\" $f"
        ),
    );
    let finished = wait_for_events(
        &sidecar,
        "verification finished",
        1,
        Duration::from_secs(150),
    )
    .remove(0);
    let logs = docker(&["logs", &sidecar]);
    assert_eq!(
        finished["fields"]["outcome"], "failed",
        "{finished}\n{logs}"
    );
    assert_eq!(finished["fields"]["compared"], 3, "{finished}");
    assert_eq!(finished["fields"]["mismatches"], 1, "{finished}");
    let found: Vec<_> = events(&sidecar)
        .into_iter()
        .filter(|e| e["fields"]["path"] == format!("{volume}/two").as_str())
        .collect();
    assert_eq!(found.len(), 1, "the error names the path");
    assert_eq!(found[0]["level"], "ERROR");
    assert_eq!(found[0]["fields"]["archive"], run["fields"]["archive"]);
}

/// Owner, mode, size, modification time (to the second) and content of a file in a volume.
fn file_state(volume: &str, path: &str) -> Option<(u32, u32, u32, u64, i64, String)> {
    let path = PathBuf::from(format!("/var/lib/docker/volumes/{volume}/_data/{path}"));
    let meta = std::fs::symlink_metadata(&path).ok()?;
    let content = std::fs::read_to_string(&path).unwrap_or_default();
    Some((
        meta.uid(),
        meta.gid(),
        meta.mode(),
        meta.size(),
        meta.mtime(),
        content,
    ))
}

#[test]
fn one_path_comes_back_from_an_archive_or_the_mirror_with_the_app_running() {
    let env = Env::new("path");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(
        &volume,
        "mkdir -p /data/photos/2026 && echo a > /data/photos/2026/a.jpg \
         && echo b > /data/photos/2026/b.jpg && echo notes > /data/notes.txt \
         && chown 1000:1000 /data/photos/2026/a.jpg && chmod 640 /data/photos/2026/a.jpg \
         && touch -d '2021-05-06 07:08:09' /data/photos/2026/a.jpg /data/notes.txt",
    );
    let app = env.app("app", &volume, "sleep infinity");
    let sidecar = env.sidecar(&remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let a = file_state(&volume, "photos/2026/a.jpg").unwrap();
    let notes = file_state(&volume, "notes.txt").unwrap();
    let b = file_state(&volume, "photos/2026/b.jpg").unwrap();

    // The accident: a photo and the notes deleted; another photo changed, a new one added.
    env.in_volume(
        &volume,
        "rm /data/photos/2026/a.jpg /data/notes.txt && echo changed > /data/photos/2026/b.jpg \
         && echo c > /data/photos/2026/c.jpg",
    );
    let since = engine_time();

    // A dry run lists what it would write, and writes nothing.
    let dry = restore(
        &sidecar,
        &[
            &volume,
            "--path",
            "photos/2026/a.jpg",
            "--from",
            "latest",
            "--dry-run",
        ],
    );
    assert!(dry.stdout.contains("a.jpg"), "{}", dry.stdout);
    assert_eq!(file_state(&volume, "photos/2026/a.jpg"), None);

    // From the archive: the file as it was, owner, mode and time included.
    restore(
        &sidecar,
        &[
            &volume,
            "--path",
            "photos/2026/a.jpg",
            "--from",
            "latest",
            "--yes",
        ],
    );
    assert_eq!(file_state(&volume, "photos/2026/a.jpg").as_ref(), Some(&a));
    // From the mirror, a file at the top.
    restore(&sidecar, &[&volume, "--path", "/notes.txt", "--yes"]);
    assert_eq!(file_state(&volume, "notes.txt").as_ref(), Some(&notes));
    // Nothing else was touched.
    assert_eq!(
        file_state(&volume, "photos/2026/b.jpg").map(|s| s.5),
        Some("changed\n".into())
    );
    assert!(file_state(&volume, "photos/2026/c.jpg").is_some());

    // A directory: what it held comes back, what was added since stays.
    restore(
        &sidecar,
        &[&volume, "--path", "photos", "--from", "latest", "--yes"],
    );
    assert_eq!(file_state(&volume, "photos/2026/b.jpg").as_ref(), Some(&b));
    assert!(file_state(&volume, "photos/2026/c.jpg").is_some());

    // The app was never stopped.
    let events = engine_events(&since, &format!("container={app}"), "{{.Action}}");
    assert!(
        !events.iter().any(|a| a == "stop" || a == "kill"),
        "{events:?}"
    );
    assert_running_not_paused(&app);

    // Nothing outside the volume can be named.
    for path in ["../other", "photos/../../x", "."] {
        let out = docker_output(&[
            "exec",
            &sidecar,
            "backup-sidecar",
            "restore",
            &volume,
            "--path",
            path,
            "--yes",
        ]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "--path {path} was taken: {said}");
        assert!(said.contains("--path"), "{said}");
    }
}
