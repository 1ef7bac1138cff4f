//! The inotify side of the journal: reading events, recording what each names, and walks that
//! watch each directory before they list it.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

use super::{Dir, MOST_NAMED, Shared, State, Volume, max_user_watches};

/// What each watch reports: changes of content, metadata and names of the directory's entries,
/// and the directory's own removal or move.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW;

/// The reading thread: waits for events and records them, until the journal is dropped.
pub(super) fn read_events(shared: Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let mut poll = libc::pollfd {
            fd: strong.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, 1000) };
        if ready > 0 {
            let mut state = strong
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            drain(&strong.fd, &mut state);
        } else if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Reads and records every event waiting.
pub(super) fn drain(fd: &OwnedFd, state: &mut State) {
    // Room for many events; inotify_event is 16 bytes and aligned to 4.
    let mut buf = vec![0u32; 16384];
    loop {
        // SAFETY: the buffer is valid for its length in bytes.
        let got = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len() * std::mem::size_of::<u32>(),
            )
        };
        if got <= 0 {
            return;
        }
        let bytes: &[u8] =
            // SAFETY: `got` bytes of the buffer were written by read.
            unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), got as usize) };
        let mut at = 0;
        while at + 16 <= bytes.len() {
            let word = |i: usize| {
                u32::from_ne_bytes(bytes[at + 4 * i..at + 4 * i + 4].try_into().expect("4"))
            };
            let wd = word(0) as i32;
            let mask = word(1);
            let len = word(3) as usize;
            let name = &bytes[at + 16..(at + 16 + len).min(bytes.len())];
            let name = &name[..name.iter().position(|c| *c == 0).unwrap_or(name.len())];
            at += 16 + len;
            state.seq += 1;
            record(fd, state, wd, mask, name);
        }
    }
}

/// Records one event.
fn record(fd: &OwnedFd, state: &mut State, wd: i32, mask: u32, name: &[u8]) {
    let seq = state.seq;
    if mask & libc::IN_Q_OVERFLOW != 0 {
        for volume in state.volumes.values_mut() {
            volume.broken.get_or_insert_with(|| {
                "the kernel's queue of changes overflowed (fs.inotify.max_queued_events)".into()
            });
        }
        return;
    }
    let Some((source, dir)) = state.wds.get(&wd).cloned() else {
        return;
    };
    if mask & libc::IN_IGNORED != 0 {
        state.wds.remove(&wd);
        if let Some(volume) = state.volumes.get_mut(&source)
            && volume.dirs.get(&dir).is_some_and(|d| d.wd == wd)
        {
            volume.dirs.remove(&dir);
            if dir.is_empty() {
                volume.broken = Some("the volume's directory went away".into());
            }
        }
        return;
    }
    let Some(volume) = state.volumes.get_mut(&source) else {
        return;
    };
    if mask & libc::IN_UNMOUNT != 0 || (dir.is_empty() && mask & libc::IN_MOVE_SELF != 0) {
        volume.broken = Some("the volume's directory went away".into());
        return;
    }
    if name.is_empty() {
        if mask & libc::IN_ATTRIB != 0 {
            volume.dirty.insert(dir, seq);
        }
        return;
    }
    let path = join(&dir, name);
    let is_dir = mask & libc::IN_ISDIR != 0;
    if volume.excludes.excludes(&path, is_dir) {
        return;
    }
    volume.dirty.insert(path.clone(), seq);
    if volume.dirty.len() > MOST_NAMED {
        // The volume's runs have not completed for long: a full pass is cheaper than the list.
        volume.dirty.clear();
        volume.broken = Some(format!(
            "more than {MOST_NAMED} paths changed since its last complete run"
        ));
        return;
    }
    if mask & (libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO) != 0 {
        volume.dirty.insert(dir, seq);
    }
    if !is_dir {
        return;
    }
    if mask & (libc::IN_DELETE | libc::IN_MOVED_FROM) != 0 {
        // Its watches (and those below it) no longer name paths of this volume.
        let below: Vec<(Vec<u8>, Dir)> = subtree(&volume.dirs, &path);
        for (p, d) in below {
            volume.dirs.remove(&p);
            state.wds.remove(&d.wd);
            // SAFETY: our descriptor and one of its watches (a gone one is an error we ignore).
            unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), d.wd) };
        }
    } else if mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
        let root = source.clone();
        let volume = state.volumes.get_mut(&source).expect("looked up above");
        let mut walk = Walk {
            mark: Some(seq),
            ..Walk::default()
        };
        if let Err(e) = walk.dir(fd, &root, volume, path.clone()) {
            volume.broken.get_or_insert_with(|| {
                format!(
                    "the directory /{} could not be watched: {e}",
                    String::from_utf8_lossy(&path)
                )
            });
        }
        adopt_walk(state, &source, walk);
    }
}

/// The directories at or below `path` (a directory's path), with their watches.
fn subtree(dirs: &BTreeMap<Vec<u8>, Dir>, path: &[u8]) -> Vec<(Vec<u8>, Dir)> {
    let mut prefix = path.to_vec();
    prefix.push(b'/');
    // The paths below it sort together from `path/` on ("a-b" sorts between "a" and "a/b").
    let below = dirs
        .range(prefix.clone()..)
        .take_while(|(p, _)| p.starts_with(&prefix));
    dirs.get_key_value(path)
        .into_iter()
        .chain(below)
        .map(|(p, d)| (p.clone(), *d))
        .collect()
}

pub(super) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        path.extend_from_slice(dir);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

pub(super) fn full_path(root: &Path, path: &[u8]) -> PathBuf {
    if path.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(path))
    }
}

/// Removes every watch of the volume at `source`.
pub(super) fn unwatch(fd: &OwnedFd, state: &mut State, source: &Path) {
    if let Some(volume) = state.volumes.get_mut(source) {
        for dir in std::mem::take(&mut volume.dirs).into_values() {
            state.wds.remove(&dir.wd);
            // SAFETY: our descriptor and one of its watches.
            unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), dir.wd) };
        }
    }
}

/// Puts a newly walked volume in the state.
pub(super) fn adopt(state: &mut State, source: &Path, volume: Volume, walk: Walk) {
    state.volumes.insert(source.to_path_buf(), volume);
    adopt_walk(state, source, walk);
}

/// Records a walk's watches; a watch another volume holds means both share directories, and
/// neither can tell its changes apart.
fn adopt_walk(state: &mut State, source: &Path, walk: Walk) {
    let mut shared = None;
    let mut twice = None;
    for (wd, path) in walk.watched {
        match state.wds.get(&wd) {
            Some((other, _)) if other != source => shared = Some(other.clone()),
            // One directory at two paths (a bind mount inside the volume): an event names one.
            Some((_, seen)) if *seen != path => twice = Some(path.clone()),
            _ => {}
        }
        state.wds.insert(wd, (source.to_path_buf(), path));
    }
    if let Some(path) = twice
        && let Some(v) = state.volumes.get_mut(source)
    {
        v.broken = Some(format!(
            "the directory /{} is also at another path of the volume",
            String::from_utf8_lossy(&path)
        ));
    }
    if let Some(other) = shared {
        let reason = format!(
            "it shares directories with {}, so the journal cannot tell their changes apart",
            other.display()
        );
        for s in [source.to_path_buf(), other] {
            if let Some(v) = state.volumes.get_mut(&s) {
                v.broken = Some(reason.clone());
            }
        }
    }
}

/// A walk that watches each directory before it lists it.
#[derive(Default)]
pub(super) struct Walk {
    /// Each entry found is marked with this event number (a directory created or moved in).
    pub(super) mark: Option<u64>,
    watched: Vec<(i32, Vec<u8>)>,
    pub(super) totals: (u64, u64),
}

impl Walk {
    pub(super) fn dir(
        &mut self,
        fd: &OwnedFd,
        root: &Path,
        volume: &mut Volume,
        path: Vec<u8>,
    ) -> io::Result<()> {
        let mut todo = vec![path];
        while let Some(path) = todo.pop() {
            let full = full_path(root, &path);
            let c = CString::new(full.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path"))?;
            // SAFETY: our descriptor and a valid C string.
            let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), MASK) };
            if wd < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    // Gone (or replaced) since its parent was listed: its parent's events say so.
                    Some(libc::ENOENT | libc::ENOTDIR) if !path.is_empty() => continue,
                    Some(libc::ENOSPC) => {
                        return Err(io::Error::other(format!(
                            "the limit fs.inotify.max_user_watches ({}) is reached",
                            max_user_watches().map_or("?".into(), |n| n.to_string())
                        )));
                    }
                    _ => return Err(e),
                }
            }
            let meta = match std::fs::symlink_metadata(&full) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !path.is_empty() => continue,
                Err(e) => return Err(e),
            };
            let inode = (meta.dev(), meta.ino());
            volume.dirs.insert(path.clone(), Dir { wd, inode });
            self.watched.push((wd, path.clone()));
            if let Some(seq) = self.mark {
                volume.dirty.insert(path.clone(), seq);
            }
            let read = match std::fs::read_dir(&full) {
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !path.is_empty() => continue,
                Err(e) => return Err(e),
            };
            for item in read {
                let item = item?;
                let child = join(&path, item.file_name().as_bytes());
                let meta = match item.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if volume.excludes.excludes(&child, meta.is_dir()) {
                    continue;
                }
                self.totals.0 += 1;
                if meta.is_file() || meta.file_type().is_symlink() {
                    self.totals.1 += meta.size();
                }
                if meta.is_file() && meta.nlink() > 1 {
                    let names = volume.links.entry((meta.dev(), meta.ino())).or_default();
                    if !names.contains(&child) {
                        names.push(child.clone());
                    }
                }
                if let Some(seq) = self.mark {
                    volume.dirty.insert(child.clone(), seq);
                }
                if meta.is_dir() {
                    todo.push(child);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subtree_is_the_directory_and_what_is_below_it() {
        let dir = Dir {
            wd: 1,
            inode: (0, 0),
        };
        let dirs: BTreeMap<Vec<u8>, Dir> = ["a", "a b", "a-x", "a/b", "a/b/c", "ab", "b"]
            .map(|p| (p.as_bytes().to_vec(), dir))
            .into();
        let paths: Vec<Vec<u8>> = subtree(&dirs, b"a").into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, [&b"a"[..], b"a/b", b"a/b/c"]);
    }
}
