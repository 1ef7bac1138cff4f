//! Copies entries into the staging area as they are, with what rsync `-aHAXS --numeric-ids`
//! keeps: content (a reflink where the file system can), owner, mode, extended attributes (ACLs
//! are the `system.posix_acl_*` attributes), modification time, hard links between the copied
//! names, symlinks, fifos, sockets and device nodes.
//!
//! Also builds the name skeleton the upload's delete step compares against: every name a
//! directory held while frozen, as an empty file or directory.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::capture::scan::{Entry, Kind, Stamp};

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Copies `entries` (sorted so that a directory comes before what it holds) from `source` into
/// `target`, then sets each directory's time once nothing more is written into it. The owner,
/// mode and times are the scan's (taken while frozen). Returns the bytes of file content copied.
pub fn copy_entries(
    source: &Path,
    target: &Path,
    entries: &[&Entry],
    stop: &AtomicBool,
) -> io::Result<u64> {
    std::fs::create_dir_all(target)?;
    // Directories first, parents before children; then everything else, the first name of each
    // inode copied, several at once; then the other names linked to it.
    let mut first_name: HashMap<(u64, u64), &[u8]> = HashMap::new();
    let mut dirs = Vec::new();
    let mut copies = Vec::new();
    let mut links = Vec::new();
    for &entry in entries {
        match entry.kind {
            Kind::Dir => dirs.push(entry),
            Kind::File if entry.nlink > 1 => match first_name.get(&entry.inode) {
                Some(first) => links.push((entry, *first)),
                None => {
                    first_name.insert(entry.inode, &entry.path);
                    copies.push(entry);
                }
            },
            _ => copies.push(entry),
        }
    }
    for entry in &dirs {
        copy_one(source, target, entry, &mut true)?;
    }
    let threads = if copies.len() < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
    };
    let copied = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|k| {
                let copies = &copies;
                scope.spawn(move || {
                    let mut reflinks = true;
                    let mut copied = 0;
                    for entry in copies.iter().skip(k).step_by(threads) {
                        if stop.load(Ordering::Relaxed) {
                            return Err(io::Error::new(
                                io::ErrorKind::Interrupted,
                                "the freeze ended",
                            ));
                        }
                        copied += copy_one(source, target, entry, &mut reflinks)?;
                    }
                    Ok(copied)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("copy worker panicked"))
            .sum::<io::Result<u64>>()
    })?;
    for (entry, first) in links {
        let first = target.join(OsStr::from_bytes(first));
        std::fs::hard_link(first, entry.under(target)).map_err(|e| context(entry, e))?;
    }
    // Last, deepest first: a directory's xattrs (a default ACL would otherwise be inherited by
    // the copies made in it) and its time (which each child made in it moved).
    for entry in dirs.iter().rev() {
        let to = entry.under(target);
        copy_xattrs(
            &Xattrs::Path(cstring(&entry.under(source))?),
            &Xattrs::Path(cstring(&to)?),
        )
        .map_err(|e| context(entry, e))?;
        set_times(&to, entry.mtime)?;
    }
    Ok(copied)
}

/// Below this many entries to copy, one thread copies them.
const PARALLEL_FROM: usize = 32;

fn context(entry: &Entry, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("copying /{}: {e}", String::from_utf8_lossy(&entry.path)),
    )
}

fn copy_one(source: &Path, target: &Path, entry: &Entry, reflinks: &mut bool) -> io::Result<u64> {
    let from = entry.under(source);
    let to = entry.under(target);
    let result = if entry.kind == Kind::File {
        copy_file(&from, &to, entry, reflinks)
    } else {
        copy_other(&from, &to, entry).map(|()| 0)
    };
    result.map_err(|e| context(entry, e))
}

/// A regular file, through its open descriptors: content (a reflink while the file system takes
/// them, else a copy within the kernel), owner, mode, xattrs, time.
fn copy_file(from: &Path, to: &Path, entry: &Entry, reflinks: &mut bool) -> io::Result<u64> {
    let mut source = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)?;
    let mut target = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    // SAFETY: two open file descriptors; FICLONE either clones all of the file or nothing.
    let cloned = *reflinks
        && unsafe { libc::ioctl(target.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) } == 0;
    let copied = if cloned {
        entry.size
    } else {
        // Not on this file system (or across two): do not ask again for this capture.
        *reflinks = false;
        std::io::copy(&mut source, &mut target)?
    };
    let fd = target.as_raw_fd();
    // SAFETY: an open descriptor; fchown before fchmod, which chown would undo for set-id bits.
    check(unsafe { libc::fchown(fd, entry.owner.0, entry.owner.1) })?;
    // SAFETY: as above.
    check(unsafe { libc::fchmod(fd, entry.mode & 0o7777) })?;
    copy_xattrs(&Xattrs::Fd(source.as_raw_fd()), &Xattrs::Fd(fd))?;
    let stamp = timespec(entry.mtime);
    // SAFETY: an open descriptor and a two-element array.
    check(unsafe { libc::futimens(fd, [stamp, stamp].as_ptr()) })?;
    Ok(copied)
}

/// A directory, symlink, fifo, socket or device node, by path (there are few).
fn copy_other(from: &Path, to: &Path, entry: &Entry) -> io::Result<()> {
    match entry.kind {
        Kind::Dir => match std::fs::create_dir(to) {
            // The root, or a directory already made as a parent of something copied.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        },
        Kind::Symlink => std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?,
        Kind::Special => {
            let path = cstring(to)?;
            // SAFETY: a valid C string; mode and device are the source's.
            check(unsafe {
                libc::mknod(
                    path.as_ptr(),
                    entry.mode as libc::mode_t,
                    entry.rdev as libc::dev_t,
                )
            })?;
        }
        Kind::File => unreachable!("files go through copy_file"),
    }
    let path = cstring(to)?;
    // SAFETY: valid C string; lchown does not follow a symlink.
    check(unsafe { libc::lchown(path.as_ptr(), entry.owner.0, entry.owner.1) })?;
    if entry.kind != Kind::Symlink {
        // After the owner: chown clears set-id bits.
        // SAFETY: valid C string.
        check(unsafe { libc::chmod(path.as_ptr(), entry.mode as libc::mode_t & 0o7777) })?;
    }
    // A directory's xattrs and time come last (see `copy_entries`).
    if entry.kind != Kind::Dir {
        copy_xattrs(&Xattrs::Path(cstring(from)?), &Xattrs::Path(path))?;
        set_times(to, entry.mtime)?;
    }
    Ok(())
}

fn timespec(stamp: Stamp) -> libc::timespec {
    libc::timespec {
        tv_sec: stamp.secs as libc::time_t,
        tv_nsec: stamp.nanos as _,
    }
}

fn set_times(path: &Path, mtime: Stamp) -> io::Result<()> {
    let path = cstring(path)?;
    let stamp = timespec(mtime);
    let times = [stamp, stamp];
    // SAFETY: valid C string and a two-element array, as utimensat wants.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Where extended attributes are read or written: an open file, or a path (not followed).
enum Xattrs {
    Fd(libc::c_int),
    Path(CString),
}

impl Xattrs {
    fn list(&self, buf: *mut u8, len: usize) -> isize {
        // SAFETY: buf is valid for len bytes (or null with len 0 to ask for the size).
        unsafe {
            match self {
                Xattrs::Fd(fd) => libc::flistxattr(*fd, buf.cast(), len),
                Xattrs::Path(p) => libc::llistxattr(p.as_ptr(), buf.cast(), len),
            }
        }
    }

    fn get(&self, name: &CStr, buf: *mut u8, len: usize) -> isize {
        // SAFETY: as above; name is a valid C string.
        unsafe {
            match self {
                Xattrs::Fd(fd) => libc::fgetxattr(*fd, name.as_ptr(), buf.cast(), len),
                Xattrs::Path(p) => libc::lgetxattr(p.as_ptr(), name.as_ptr(), buf.cast(), len),
            }
        }
    }

    fn set(&self, name: &CStr, value: &[u8]) -> io::Result<()> {
        // SAFETY: valid C strings, value valid for its length.
        check(unsafe {
            match self {
                Xattrs::Fd(fd) => {
                    libc::fsetxattr(*fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0)
                }
                Xattrs::Path(p) => libc::lsetxattr(
                    p.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                ),
            }
        })
    }
}

fn copy_xattrs(from: &Xattrs, to: &Xattrs) -> io::Result<()> {
    let names = xattr_call(|buf, len| from.list(buf, len))?;
    for name in names.split(|c| *c == 0).filter(|n| !n.is_empty()) {
        let name = CString::new(name).expect("split at NUL");
        let value = xattr_call(|buf, len| from.get(&name, buf, len))?;
        to.set(&name, &value)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", show(&name))))?;
    }
    Ok(())
}

fn show(name: &CStr) -> String {
    format!("extended attribute {}", name.to_string_lossy())
}

/// Calls a list/get xattr function twice: for the size, then for the value. Unsupported
/// attributes (`ENOTSUP`) read as none.
fn xattr_call(call: impl Fn(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let size = call(std::ptr::null_mut(), 0);
        if size < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(e),
            };
        }
        let mut buf = vec![0u8; size as usize];
        let got = call(buf.as_mut_ptr(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        // It grew between the two calls: ask again.
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return Err(io::Error::last_os_error());
        }
    }
}

/// Makes `target` hold every name of `entries` (parents first): directories as directories, with
/// their times, anything else as an empty file.
pub fn skeleton(target: &Path, entries: &[&Entry]) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    for entry in entries {
        let made = if entry.kind == Kind::Dir {
            std::fs::create_dir(entry.under(target))
        } else {
            File::create(entry.under(target)).map(drop)
        };
        match made {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
    }
    for entry in entries.iter().rev().filter(|e| e.kind == Kind::Dir) {
        set_times(&entry.under(target), entry.mtime)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::exclude::Excludes;
    use crate::capture::scan::scan;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn copies_content_metadata_links_and_specials() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("vol");
        std::fs::create_dir_all(source.join("d/e")).unwrap();
        std::fs::write(source.join("d/e/f"), b"content").unwrap();
        std::fs::hard_link(source.join("d/e/f"), source.join("d/g")).unwrap();
        std::os::unix::fs::symlink("e/f", source.join("d/link")).unwrap();
        let fifo = cstring(&source.join("d/fifo")).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
        std::fs::set_permissions(
            source.join("d/e/f"),
            std::fs::Permissions::from_mode(0o4751),
        )
        .unwrap();
        let xattr = CString::new("user.note").unwrap();
        let path = cstring(&source.join("d/e/f")).unwrap();
        // SAFETY: valid C strings and value.
        let set =
            unsafe { libc::setxattr(path.as_ptr(), xattr.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
        let has_user_xattrs = set == 0;
        set_times(
            &source.join("d/e"),
            Stamp {
                secs: 1_000_000_000,
                nanos: 123_456_789,
            },
        )
        .unwrap();

        let entries = scan(&source, &Excludes::default(), 2, &AtomicBool::new(false)).unwrap();
        let mut chosen: Vec<&Entry> = entries.iter().collect();
        chosen.sort_by(|a, b| a.path.cmp(&b.path));
        let target = dir.path().join("staging");
        let copied = copy_entries(&source, &target, &chosen, &AtomicBool::new(false)).unwrap();
        assert_eq!(copied, 7);

        let staged = |p: &str| std::fs::symlink_metadata(target.join(p)).unwrap();
        let original = |p: &str| std::fs::symlink_metadata(source.join(p)).unwrap();
        assert_eq!(std::fs::read(target.join("d/g")).unwrap(), b"content");
        assert_eq!(staged("d/g").ino(), staged("d/e/f").ino(), "hard link kept");
        assert_eq!(staged("d/e/f").mode(), original("d/e/f").mode());
        assert_eq!(
            std::fs::read_link(target.join("d/link")).unwrap(),
            Path::new("e/f")
        );
        assert_eq!(staged("d/fifo").mode(), original("d/fifo").mode());
        for p in ["d", "d/e", "d/e/f", "d/link", "d/fifo"] {
            assert_eq!(
                (staged(p).mtime(), staged(p).mtime_nsec()),
                (original(p).mtime(), original(p).mtime_nsec()),
                "{p}"
            );
            assert_eq!(
                (staged(p).uid(), staged(p).gid()),
                (original(p).uid(), original(p).gid())
            );
        }
        assert_eq!(staged("d/e").mtime_nsec(), 123_456_789);
        if has_user_xattrs {
            let path = cstring(&target.join("d/e/f")).unwrap();
            let mut buf = [0u8; 4];
            // SAFETY: valid C strings and buffer.
            let got = unsafe {
                libc::getxattr(path.as_ptr(), xattr.as_ptr(), buf.as_mut_ptr().cast(), 4)
            };
            assert_eq!(&buf[..got as usize], b"v");
        }
    }

    #[test]
    fn skeleton_holds_every_name_with_directory_times() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |path: &str, kind: Kind| Entry {
            path: path.as_bytes().to_vec(),
            kind,
            inode: (0, 0),
            nlink: 1,
            size: 0,
            mode: 0,
            owner: (0, 0),
            rdev: 0,
            ctime: Stamp::default(),
            mtime: Stamp {
                secs: 1_500_000_000,
                nanos: 5,
            },
        };
        let entries = [
            entry("", Kind::Dir),
            entry("a", Kind::Dir),
            entry("a/b", Kind::Symlink),
            entry("a/c", Kind::Dir),
            entry("x", Kind::File),
        ];
        let refs: Vec<&Entry> = entries.iter().collect();
        skeleton(dir.path(), &refs).unwrap();
        assert!(dir.path().join("a/c").is_dir());
        assert!(dir.path().join("a/b").is_file());
        assert!(dir.path().join("x").is_file());
        for p in ["", "a", "a/c"] {
            let meta = std::fs::metadata(dir.path().join(p)).unwrap();
            assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_500_000_000, 5), "{p}");
        }
    }
}
