//! The index against listings whose folders are known, built in memory and in many runs.

use std::collections::BTreeMap;

use super::build::build_in_runs;
use super::*;

/// A listing line as borg 1.2 writes it.
fn line(kind: &str, mode: &str, path: &str, size: u64, target: &str) -> String {
    serde_json::json!({
        "type": kind, "mode": mode, "user": "root", "group": "staff", "uid": 0, "gid": 50,
        "path": path, "healthy": true, "source": target, "linktarget": target, "flags": 0,
        "mtime": "2026-11-30T03:00:07.250000", "size": size,
    })
    .to_string()
}

fn index(listing: &[String], run_bytes: usize) -> (tempfile::TempDir, Catalog, Built) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("a.idx");
    let text = listing.join("\n");
    let built = build_in_runs(
        text.as_bytes(),
        &target,
        &dir.path().join("scratch"),
        run_bytes,
        |_| {},
    )
    .unwrap();
    let catalog = Catalog::open(&target).unwrap();
    (dir, catalog, built)
}

fn names(folder: &Folder) -> Vec<&str> {
    folder.entries.iter().map(|e| e.name.as_str()).collect()
}

/// What `borg list` gave for a small volume (in borg's order, not sorted).
fn small() -> Vec<String> {
    vec![
        line("d", "drwxr-xr-x", "vol", 0, ""),
        line("d", "drwxr-x---", "vol/sub", 0, ""),
        line("d", "drwxr-xr-x", "vol/sub/empty", 0, ""),
        line("-", "-rw-r--r--", "vol/sub/deep.txt", 5, ""),
        line("-", "-rw-r--r--", "vol/b.txt", 2, ""),
        line("-", "hrw-r--r--", "vol/a.txt", 0, "vol/b.txt"),
        line("l", "lrwxrwxrwx", "vol/link", 5, "b.txt"),
        line("-", "-rwsr-x--T", "vol/odd", 7, ""),
        line("d", "drwxr-xr-x", "vol-2", 0, ""),
        line("-", "-rw-------", "vol-2/x", 100, ""),
        // An owner without a name where borg ran: borg writes the ids as numbers.
        r#"{"type": "-", "mode": "-rw-r-----", "user": 1000, "group": 1000, "uid": 1000, "gid": 1000, "path": "vol-2/y", "healthy": true, "source": "", "linktarget": "", "flags": 0, "size": 0, "mtime": "2021-05-06T07:08:09.000000"}"#.to_string(),
    ]
}

#[test]
fn folders_list_their_entries_by_name_with_their_subtrees_totals() {
    let (_dir, catalog, built) = index(&small(), RUN_BYTES_FOR_TESTS);
    assert_eq!((built.entries, built.dirs), (11, 5));
    assert_eq!(catalog.len(), 11);
    let top = catalog.folder("", 0, 100).unwrap().unwrap();
    assert_eq!(names(&top), ["vol", "vol-2"]);
    assert_eq!((top.size, top.files), (114, 6));
    assert_eq!((top.entries[0].size, top.entries[0].files), (14, 4));
    assert_eq!((top.entries[1].size, top.entries[1].files), (100, 2));
    let vol = catalog.folder("/vol/", 0, 100).unwrap().unwrap();
    assert_eq!(names(&vol), ["a.txt", "b.txt", "link", "odd", "sub"]);
    assert_eq!(vol.total, 5);
    let link = &vol.entries[2];
    assert_eq!(
        (link.kind, link.target.as_deref()),
        (Kind::Link, Some("b.txt"))
    );
    assert_eq!(vol.entries[0].target, None);
    assert_eq!(vol.entries[3].mode, 0o100000 | 0o4000 | 0o1000 | 0o750);
    let sub = &vol.entries[4];
    assert_eq!(
        (sub.kind, sub.size, sub.files, sub.mode),
        (Kind::Dir, 5, 1, 0o040750)
    );
    assert_eq!(sub.mtime_us, 1_796_007_607_250_000);
    assert_eq!((sub.uid, sub.gid), (0, 50));
    let inner = catalog.folder("vol/sub", 0, 100).unwrap().unwrap();
    assert_eq!(names(&inner), ["deep.txt", "empty"]);
    let empty = catalog.folder("vol/sub/empty", 0, 100).unwrap().unwrap();
    assert_eq!((empty.total, empty.entries.len()), (0, 0));
    assert!(catalog.folder("vol/nothing", 0, 10).unwrap().is_none());
    assert!(catalog.folder("vol/b.txt", 0, 10).unwrap().is_none());
    assert_eq!(catalog.names.users[&0], "root");
    assert_eq!(catalog.names.groups[&50], "staff");
    assert!(!catalog.names.users.contains_key(&1000));
    let y = &catalog.folder("vol-2", 0, 10).unwrap().unwrap().entries[1];
    assert_eq!((y.name.as_str(), y.uid, y.gid), ("y", 1000, 1000));
}

/// Small enough that the small listing is sorted in several runs.
const RUN_BYTES_FOR_TESTS: usize = 1 << 20;

#[test]
fn pages_cut_a_folder_where_asked() {
    let (_dir, catalog, _) = index(&small(), RUN_BYTES_FOR_TESTS);
    let page = catalog.folder("vol", 1, 2).unwrap().unwrap();
    assert_eq!(
        (names(&page), page.offset, page.total),
        (vec!["b.txt", "link"], 1, 5)
    );
    let past = catalog.folder("vol", 9, 2).unwrap().unwrap();
    assert_eq!((past.entries.len(), past.offset), (0, 5));
}

/// A tree of `dirs` directories (some nested, some empty) with `files` files spread over them,
/// listed in a shuffled order; and what each folder holds.
fn tree(dirs: usize, files: usize) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let mut listing = Vec::new();
    let mut folders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut paths = Vec::new();
    for d in 0..dirs {
        // Every fourth directory goes inside the one before it.
        let path = match d {
            0 => "v".to_string(),
            d if d % 4 == 0 => format!("{}/d{d}", paths[d - 1]),
            d => format!("v/d{d}"),
        };
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", &path));
        folders
            .entry(parent.to_string())
            .or_default()
            .push(name.to_string());
        folders.entry(path.clone()).or_default();
        listing.push(line("d", "drwxr-xr-x", &path, 0, ""));
        paths.push(path);
    }
    for f in 0..files {
        let dir = &paths[(f * 7919) % dirs];
        if (f * 7919) % dirs % 10 == 3 {
            continue; // some directories stay empty
        }
        let name = format!("file-{f:06}.txt");
        folders.get_mut(dir).unwrap().push(name.clone());
        listing.push(line(
            "-",
            "-rw-r--r--",
            &format!("{dir}/{name}"),
            f as u64,
            "",
        ));
    }
    // A deterministic shuffle: borg's order is not the index's.
    let n = listing.len();
    for i in 0..n {
        listing.swap(i, (i * 104_729 + 17) % n);
    }
    for names in folders.values_mut() {
        names.sort();
    }
    (listing, folders)
}

#[test]
fn many_runs_give_the_same_index_as_one() {
    let (listing, folders) = tree(300, 20_000);
    let (_a, one, built_one) = index(&listing, usize::MAX);
    let (_b, many, built_many) = index(&listing, 64 << 10);
    assert_eq!(built_one.runs, 0);
    assert!(built_many.runs > 10, "{built_many:?}");
    assert_eq!(built_one.dirs, 301);
    for (path, expected) in &folders {
        for catalog in [&one, &many] {
            let folder = catalog.folder(path, 0, u64::MAX).unwrap().unwrap();
            assert_eq!(&names(&folder), expected, "{path}");
        }
    }
    // Every directory's total is the sum over its subtree.
    let top = many.folder("", 0, 10).unwrap().unwrap();
    let all: u64 = (0..20_000u64)
        .filter(|f| (f * 7919) as usize % 300 % 10 != 3)
        .sum();
    assert_eq!(top.size, all);
    let v = many.folder("v", 0, u64::MAX).unwrap().unwrap();
    let from_children: u64 = v.entries.iter().map(|e| e.size).sum();
    assert_eq!(v.size, from_children);
    assert_eq!(
        v.files,
        v.entries
            .iter()
            .map(|e| if e.kind == Kind::Dir { e.files } else { 1 })
            .sum::<u64>()
    );
}

#[test]
fn path_order_puts_a_subtree_right_after_its_directory() {
    let mut paths = vec!["a-b", "a/b/c", "", "a", "a/b", "b", "a/c"];
    paths.sort_by(|x, y| path_order(x.as_bytes(), y.as_bytes()));
    assert_eq!(paths, ["", "a", "a/b", "a/b/c", "a/c", "a-b", "b"]);
}

#[test]
fn a_listing_that_is_not_borgs_is_an_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x.idx");
    let err = build(
        "{\"no\": 1}\n".as_bytes(),
        &target,
        &dir.path().join("s"),
        |_| {},
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("not an item"), "{err:#}");
    assert!(!target.exists());
    std::fs::write(&target, "junk").unwrap();
    assert!(Catalog::open(&target).is_err());
}

#[test]
fn pruned_archives_lose_their_index() {
    let state = tempfile::tempdir().unwrap();
    for archive in ["nas-1", "nas-2"] {
        let path = index_path(state.path(), archive);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "x").unwrap();
    }
    // A build under way keeps its scratch; one a crash left a day ago loses it.
    let fresh = state.path().join(CATALOG_DIR).join(".tmpXYZ");
    std::fs::write(&fresh, "half").unwrap();
    let old = state.path().join(CATALOG_DIR).join(".building-old");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("run-0"), "x").unwrap();
    let two_days = std::time::SystemTime::now() - std::time::Duration::from_secs(48 * 3600);
    std::fs::File::open(&old)
        .unwrap()
        .set_modified(two_days)
        .unwrap();
    let mut removed = remove_others(state.path(), &["nas-2".to_string()]);
    removed.sort();
    assert_eq!(removed, [".building-old", "nas-1"]);
    assert!(index_path(state.path(), "nas-2").exists());
    assert!(fresh.exists());
}
