//! The metadata scan: every entry of a volume with what the capture decides on (type, inode,
//! link count, size, ctime, mtime), read with `lstat` only. Several directories are read at once:
//! the scan runs while the apps are frozen, and a walk of 100,000 entries takes a few hundred
//! milliseconds in one thread.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use crate::capture::exclude::Excludes;

/// What kind of entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A fifo, socket or device node.
    Special,
}

/// A time as the kernel keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// Seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds.
    pub nanos: i64,
}

/// One entry of the volume.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path from the volume's root, `/`-separated; empty for the root itself.
    pub path: Vec<u8>,
    /// Entry type.
    pub kind: Kind,
    /// Device and inode: one file with several names shares them.
    pub inode: (u64, u64),
    /// Number of names of the inode.
    pub nlink: u64,
    /// Size in bytes (a symlink's: its target's length).
    pub size: u64,
    /// Type and permission bits, as `st_mode`.
    pub mode: u32,
    /// Owner and group.
    pub owner: (u32, u32),
    /// The device a device node stands for.
    pub rdev: u64,
    /// Last change of content or metadata (not settable by the app).
    pub ctime: Stamp,
    /// Last change of content (for a directory: of its names).
    pub mtime: Stamp,
}

impl Entry {
    pub(crate) fn of(path: Vec<u8>, meta: &Metadata) -> Entry {
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_file() {
            Kind::File
        } else if file_type.is_symlink() {
            Kind::Symlink
        } else {
            debug_assert!(
                file_type.is_fifo()
                    || file_type.is_socket()
                    || file_type.is_block_device()
                    || file_type.is_char_device()
            );
            Kind::Special
        };
        Entry {
            path,
            kind,
            inode: (meta.dev(), meta.ino()),
            nlink: meta.nlink(),
            size: meta.size(),
            mode: meta.mode(),
            owner: (meta.uid(), meta.gid()),
            rdev: meta.rdev(),
            ctime: Stamp {
                secs: meta.ctime(),
                nanos: meta.ctime_nsec(),
            },
            mtime: Stamp {
                secs: meta.mtime(),
                nanos: meta.mtime_nsec(),
            },
        }
    }

    /// The parent's path; `None` for the root.
    pub fn parent(&self) -> Option<&[u8]> {
        parent(&self.path)
    }

    /// The path as the file system takes it, below `root`.
    pub fn under(&self, root: &Path) -> PathBuf {
        if self.path.is_empty() {
            root.to_path_buf()
        } else {
            root.join(OsStr::from_bytes(&self.path))
        }
    }
}

/// The parent of a relative path; `None` for the root (the empty path).
pub fn parent(path: &[u8]) -> Option<&[u8]> {
    if path.is_empty() {
        return None;
    }
    Some(match path.iter().rposition(|c| *c == b'/') {
        Some(i) => &path[..i],
        None => b"",
    })
}

/// The directories still to read, and how many are being read.
struct Queue {
    dirs: VecDeque<Vec<u8>>,
    busy: usize,
    failed: Option<io::Error>,
}

/// Reads every entry below `root` (and the root itself) that `excludes` leaves in, with `threads`
/// directories read at once. Stops early with an error when `stop` is set.
pub fn scan(
    root: &Path,
    excludes: &Excludes,
    threads: usize,
    stop: &AtomicBool,
) -> io::Result<Vec<Entry>> {
    let meta = std::fs::symlink_metadata(root)?;
    let mut all = vec![Entry::of(Vec::new(), &meta)];
    let queue = Mutex::new(Queue {
        dirs: VecDeque::from([Vec::new()]),
        busy: 0,
        failed: None,
    });
    let ready = Condvar::new();
    let found: Vec<Vec<Entry>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| scope.spawn(|| worker(root, excludes, &queue, &ready, stop)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("scan worker panicked"))
            .collect()
    });
    if let Some(e) = queue.into_inner().expect("scan queue poisoned").failed {
        return Err(e);
    }
    if stop.load(Ordering::Relaxed) {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "scan stopped"));
    }
    for part in found {
        all.extend(part);
    }
    Ok(all)
}

fn worker(
    root: &Path,
    excludes: &Excludes,
    queue: &Mutex<Queue>,
    ready: &Condvar,
    stop: &AtomicBool,
) -> Vec<Entry> {
    let mut found = Vec::new();
    loop {
        let dir = {
            let mut q = queue.lock().expect("scan queue poisoned");
            loop {
                if q.failed.is_some() || stop.load(Ordering::Relaxed) {
                    ready.notify_all();
                    return found;
                }
                if let Some(dir) = q.dirs.pop_front() {
                    q.busy += 1;
                    break dir;
                }
                if q.busy == 0 {
                    ready.notify_all();
                    return found;
                }
                q = ready.wait(q).expect("scan queue poisoned");
            }
        };
        let mut subdirs = Vec::new();
        let outcome = read_dir(root, &dir, excludes, &mut found, &mut subdirs);
        let mut q = queue.lock().expect("scan queue poisoned");
        q.busy -= 1;
        match outcome {
            Ok(()) => q.dirs.extend(subdirs),
            Err(e) => {
                let path = String::from_utf8_lossy(&dir).into_owned();
                q.failed
                    .get_or_insert(io::Error::new(e.kind(), format!("reading /{path}: {e}")));
            }
        }
        ready.notify_all();
    }
}

fn read_dir(
    root: &Path,
    dir: &[u8],
    excludes: &Excludes,
    found: &mut Vec<Entry>,
    subdirs: &mut Vec<Vec<u8>>,
) -> io::Result<()> {
    let full = if dir.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(dir))
    };
    for item in std::fs::read_dir(full)? {
        let item = item?;
        let mut path = Vec::with_capacity(dir.len() + 1 + item.file_name().len());
        if !dir.is_empty() {
            path.extend_from_slice(dir);
            path.push(b'/');
        }
        path.extend_from_slice(item.file_name().as_bytes());
        // `DirEntry::metadata` is an `fstatat` on the open directory, without following links.
        let meta = item.metadata()?;
        if excludes.excludes(&path, meta.is_dir()) {
            continue;
        }
        if meta.is_dir() {
            subdirs.push(path.clone());
        }
        found.push(Entry::of(path, &meta));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_entry_once_and_skips_excluded_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in 0..20 {
            for f in 0..15 {
                let sub = root.join(format!("d{d}/e{}", f % 3));
                std::fs::create_dir_all(&sub).unwrap();
                std::fs::write(sub.join(format!("f{f}")), b"12345").unwrap();
            }
        }
        std::fs::create_dir_all(root.join("cache/deep")).unwrap();
        std::fs::write(root.join("cache/deep/x"), b"x").unwrap();
        std::os::unix::fs::symlink("d0", root.join("link")).unwrap();
        let excludes = Excludes::new(&["/cache".to_string()]);
        for threads in [1, 4] {
            let entries = scan(root, &excludes, threads, &AtomicBool::new(false)).unwrap();
            let mut paths: Vec<String> = entries
                .iter()
                .map(|e| String::from_utf8(e.path.clone()).unwrap())
                .collect();
            paths.sort();
            let unique = paths.len();
            paths.dedup();
            assert_eq!(unique, paths.len());
            // root + link + 20 dirs × (3 subdirs + 15 files)
            assert_eq!(paths.len(), 1 + 1 + 20 * (1 + 3 + 15), "{threads} threads");
            assert!(!paths.iter().any(|p| p.starts_with("cache")));
            let link = entries.iter().find(|e| e.path == b"link").unwrap();
            assert_eq!(link.kind, Kind::Symlink);
            let file = entries.iter().find(|e| e.path == b"d3/e1/f4").unwrap();
            assert_eq!((file.kind, file.size), (Kind::File, 5));
        }
    }

    #[test]
    fn parents() {
        assert_eq!(parent(b""), None);
        assert_eq!(parent(b"a"), Some(&b""[..]));
        assert_eq!(parent(b"a/b/c"), Some(&b"a/b"[..]));
    }
}
