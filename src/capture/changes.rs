//! The change journal: the daemon watches every directory of the volumes it backs up (inotify, one
//! watch per directory, no capability needed), and writes down each path an event names, with a
//! sequence number. A run then visits only what the journal names: the live pass sends what
//! changed since the last complete run ([`Changes::before_live_pass`]), and the capture looks only
//! at what changed since then while frozen ([`Changes::survey`]), instead of every entry.
//!
//! What an event marks: the entry it names, and for a name created, deleted or moved, the
//! directory holding it (its names and time changed). A directory created or moved in is watched
//! at once and walked (the watch first, then the listing, so nothing made in it goes unseen), and
//! everything in it is marked.
//!
//! When the journal cannot be trusted for a volume, it says why, and the run takes the full pass:
//! it has just started watching the volume (the daemon started, the volume is newly planned), the
//! kernel's queue overflowed, a watch could not be added (`fs.inotify.max_user_watches`), the
//! volume's directory went away, two volumes share directories, or the volume's last run did not
//! complete. Writes through a shared memory map make no event; the scheduled full pass is the net
//! for what the journal cannot see (see docs/capture.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::exclude::Excludes;
use super::scan::{self, Entry, Kind};

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

/// Most paths the journal keeps for a volume between two complete runs (about 100 MB of memory);
/// past it, the volume takes the full pass.
const MOST_NAMED: usize = 1_000_000;

/// The journal of every watched volume; cheap to clone (one inotify instance and one thread that
/// reads it as events come).
#[derive(Clone)]
pub struct Changes {
    shared: Arc<Shared>,
}

struct Shared {
    fd: OwnedFd,
    state: Mutex<State>,
}

#[derive(Default)]
pub struct State {
    /// The number of the last event read.
    seq: u64,
    /// Each watch's volume (by its source path) and directory.
    wds: HashMap<i32, (PathBuf, Vec<u8>)>,
    volumes: HashMap<PathBuf, Volume>,
}

/// One watched volume.
struct Volume {
    patterns: Vec<String>,
    excludes: Excludes,
    /// Every watched directory, by path: its watch and inode.
    dirs: BTreeMap<Vec<u8>, Dir>,
    /// Each path an event named since the last complete run, with the event's number.
    dirty: HashMap<Vec<u8>, u64>,
    /// The names of hard-linked files, by inode, as far as the journal has seen them.
    links: HashMap<(u64, u64), Vec<Vec<u8>>>,
    /// Why the journal cannot be trusted for this volume until it is set up again.
    broken: Option<String>,
    /// The mirror equals the volume as it stood at this event number (the last complete run's
    /// freeze); `None` until a run completes, and after one fails.
    synced: Option<u64>,
    /// Entries and bytes of the volume when it was last walked in full.
    totals: (u64, u64),
}

#[derive(Debug, Clone, Copy)]
struct Dir {
    wd: i32,
    inode: (u64, u64),
}

/// What the journal gives a run before a volume's live pass.
#[derive(Debug, Clone, Default)]
pub struct JournalView {
    /// The event number at the live pass's start: the capture copies what changed after it.
    pub mark: u64,
    /// The mirror's state (an event number): the live pass sends [`JournalView::list`], what
    /// changed since; `None` when the live pass is whole, [`JournalView::reason`] saying why.
    pub since: Option<u64>,
    /// Why the live pass walks the whole volume.
    pub reason: Option<String>,
    /// The live pass's entries, when it is not whole.
    pub list: Vec<Vec<u8>>,
    /// Entries and bytes of the volume at its last full walk.
    pub totals: (u64, u64),
    /// On a scheduled full pass, when the journal could have been used: every path it named
    /// since the mirror's state, to compare with what the whole live pass finds different.
    pub expected: Option<HashSet<Vec<u8>>>,
}

impl Changes {
    /// Starts the journal: an inotify instance and the thread that reads it. Nothing is watched
    /// until a run asks ([`Changes::before_live_pass`]).
    pub fn start() -> io::Result<Changes> {
        // SAFETY: no pointer arguments; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let shared = Arc::new(Shared {
            fd,
            state: Mutex::new(State::default()),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("change-journal".into())
            .spawn(move || read_events(weak))?;
        Ok(Changes { shared })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        drain(&self.shared.fd, &mut state);
        state
    }

    /// Before a volume's live pass (`source`: its `_data`): watches it if it is not watched yet
    /// (or the watches cannot be trusted), and says what the live pass sends. `full` is a reason
    /// to walk the whole volume anyway (the scheduled full pass). Also returns every directory's
    /// inode, for the capture's own full scan should it need one.
    pub fn before_live_pass(
        &self,
        source: &Path,
        patterns: &[String],
        full: Option<&str>,
    ) -> io::Result<(JournalView, super::DirInodes)> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let fresh = match state.volumes.get(source) {
            None => Some("the journal starts watching this volume".to_string()),
            Some(v) if v.patterns != patterns => Some("its exclude patterns changed".to_string()),
            Some(v) => v.broken.clone(),
        };
        if fresh.is_some() {
            unwatch(&self.shared.fd, state, source);
            let mut volume = Volume {
                patterns: patterns.to_vec(),
                excludes: Excludes::new(patterns),
                dirs: BTreeMap::new(),
                dirty: HashMap::new(),
                links: HashMap::new(),
                broken: None,
                synced: None,
                totals: (0, 0),
            };
            let mut walk = Walk::default();
            let walked = walk.dir(&self.shared.fd, source, &mut volume, Vec::new());
            volume.totals = walk.totals;
            adopt(state, source, volume, walk);
            if let Err(e) = walked {
                // Watches for part of it only help nobody: they are given back.
                unwatch(&self.shared.fd, state, source);
                let why = format!("the volume could not be watched: {e}");
                if let Some(v) = state.volumes.get_mut(source) {
                    v.broken = Some(why.clone());
                }
                return Err(io::Error::other(why));
            }
            tracing::info!(
                path = %source.display(),
                watches = state.volumes.get(source).map_or(0, |v| v.dirs.len()),
                all_watches = state.wds.len(),
                max_user_watches = max_user_watches(),
                "the change journal watches the volume"
            );
        }
        // Events the walk caused (none) and those that came during it.
        drain(&self.shared.fd, state);
        let mark = state.seq;
        let volume = state.volumes.get_mut(source).expect("set up above");
        let dirs = volume
            .dirs
            .iter()
            .map(|(path, dir)| (path.clone(), dir.inode))
            .collect();
        let mut view = JournalView {
            mark,
            since: None,
            reason: None,
            list: Vec::new(),
            totals: volume.totals,
            expected: None,
        };
        view.reason = if let Some(reason) = fresh {
            Some(reason)
        } else if let Some(broken) = &volume.broken {
            Some(broken.clone())
        } else if let Some(full) = full {
            if let Some(since) = volume.synced {
                let named = volume.dirty.iter().filter(|(_, seq)| **seq > since);
                view.expected = Some(named.map(|(path, _)| path.clone()).collect());
            }
            Some(full.to_string())
        } else if volume.synced.is_none() {
            Some("the last run of this volume did not complete".to_string())
        } else {
            None
        };
        // Until this run completes, the mirror is not known to be at any event.
        let synced = volume.synced.take();
        if view.reason.is_none() {
            let since = synced.expect("checked above");
            match live_list(source, volume, since) {
                Ok(list) => {
                    view.since = Some(since);
                    view.list = list;
                }
                Err(reason) => view.reason = Some(reason),
            }
        }
        Ok((view, dirs))
    }

    /// While frozen: the volume's entries the journal names since the mirror's state, and what
    /// to copy among them (see [`super::choice_of`]). The error says why the capture must
    /// scan the whole volume instead.
    pub fn survey(
        &self,
        source: &Path,
        view: &JournalView,
        since_ctime: scan::Stamp,
    ) -> Result<(Vec<Entry>, super::Choice), String> {
        let mut state = self.lock();
        let volume = state
            .volumes
            .get_mut(source)
            .ok_or("the journal does not watch this volume")?;
        if let Some(broken) = &volume.broken {
            return Err(broken.clone());
        }
        let base = view.since.unwrap_or(view.mark);
        let named: HashMap<&[u8], u64> = volume
            .dirty
            .iter()
            .filter(|(_, seq)| **seq > base)
            .map(|(path, seq)| (&path[..], *seq))
            .collect();
        let mut found = Found::new(source);
        for (path, _) in named.iter() {
            found.look(path).map_err(|e| e.to_string())?;
        }
        // Each directory whose names changed is listed: the upload compares its names.
        let dirs: Vec<Vec<u8>> = found
            .entries
            .iter()
            .filter(|e| e.kind == Kind::Dir && named.contains_key(&e.path[..]))
            .map(|e| e.path.clone())
            .collect();
        for dir in &dirs {
            found
                .list(dir, &volume.excludes)
                .map_err(|e| format!("listing /{}: {e}", String::from_utf8_lossy(dir)))?;
        }
        let mut chosen: Vec<bool> = found
            .entries
            .iter()
            .map(|e| {
                let seq = named.get(&e.path[..]).copied();
                seq.is_some_and(|s| s > view.mark)
                    || e.ctime >= since_ctime
                    || (e.kind == Kind::Dir && seq.is_some())
            })
            .collect();
        // Every name of a copied hard-linked file, or the whole scan when one is unknown.
        let linked: HashSet<(u64, u64)> = found
            .entries
            .iter()
            .zip(&chosen)
            .filter(|(e, c)| **c && e.kind == Kind::File && e.nlink > 1)
            .map(|(e, _)| e.inode)
            .collect();
        chosen.resize(found.entries.len(), false);
        for inode in linked {
            let names = found
                .siblings(inode, volume.links.get(&inode))
                .map_err(|e| e.to_string())?
                .ok_or("a hard-linked file has names the journal has not seen")?;
            chosen.resize(found.entries.len(), false);
            for name in &names {
                chosen[found.index[&name[..]]] = true;
            }
            volume.links.insert(inode, names);
        }
        for i in 0..found.entries.len() {
            let ancestors = found.entries[i].parent().map(<[u8]>::to_vec);
            if let Some(parent) = ancestors {
                found.ancestors(&parent).map_err(|e| e.to_string())?;
            }
        }
        chosen.resize(found.entries.len(), false);
        let choice = super::choice_of(&found.entries, &chosen);
        Ok((found.entries, choice))
    }

    /// The event number now, every event so far read: taken while frozen, it is the state the
    /// mirror reaches when the run completes.
    pub fn mark(&self) -> u64 {
        self.lock().seq
    }

    /// After a volume's run: the mirror equals the volume as it stood at `mark` (`None`: the run
    /// did not complete, so the next one walks the whole volume).
    pub fn completed(&self, source: &Path, mark: Option<u64>) {
        let mut state = self.lock();
        if let Some(volume) = state.volumes.get_mut(source) {
            volume.synced = mark;
            if let Some(mark) = mark {
                volume.dirty.retain(|_, seq| *seq > mark);
            }
        }
    }

    /// Stops watching the volumes that are not in `planned` (their sources).
    pub fn keep_only(&self, planned: &[PathBuf]) {
        let mut state = self.lock();
        let gone: Vec<PathBuf> = state
            .volumes
            .keys()
            .filter(|source| !planned.contains(source))
            .cloned()
            .collect();
        for source in gone {
            unwatch(&self.shared.fd, &mut state, &source);
            state.volumes.remove(&source);
        }
    }

    /// Holds the journal without reading its queue (a test overflows it).
    #[cfg(test)]
    pub fn hold(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }
}

/// The reading thread: waits for events and records them, until the journal is dropped.
fn read_events(shared: Weak<Shared>) {
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
fn drain(fd: &OwnedFd, state: &mut State) {
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

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        path.extend_from_slice(dir);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

fn full_path(root: &Path, path: &[u8]) -> PathBuf {
    if path.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(path))
    }
}

/// Removes every watch of the volume at `source`.
fn unwatch(fd: &OwnedFd, state: &mut State, source: &Path) {
    if let Some(volume) = state.volumes.get_mut(source) {
        for dir in std::mem::take(&mut volume.dirs).into_values() {
            state.wds.remove(&dir.wd);
            // SAFETY: our descriptor and one of its watches.
            unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), dir.wd) };
        }
    }
}

/// Puts a newly walked volume in the state.
fn adopt(state: &mut State, source: &Path, volume: Volume, walk: Walk) {
    state.volumes.insert(source.to_path_buf(), volume);
    adopt_walk(state, source, walk);
}

/// Records a walk's watches; a watch another volume holds means both share directories, and
/// neither can tell its changes apart.
fn adopt_walk(state: &mut State, source: &Path, walk: Walk) {
    let mut shared = None;
    for (wd, path) in walk.watched {
        if let Some((other, _)) = state.wds.get(&wd)
            && other != source
        {
            shared = Some(other.clone());
        }
        state.wds.insert(wd, (source.to_path_buf(), path));
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
struct Walk {
    /// Each entry found is marked with this event number (a directory created or moved in).
    mark: Option<u64>,
    watched: Vec<(i32, Vec<u8>)>,
    totals: (u64, u64),
}

impl Walk {
    fn dir(
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

/// The live pass's list: what changed since `since` and is still there, with the other names of
/// hard-linked files. The error says why the live pass must walk the whole volume.
fn live_list(source: &Path, volume: &Volume, since: u64) -> Result<Vec<Vec<u8>>, String> {
    let mut list: Vec<Vec<u8>> = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for (path, _) in volume.dirty.iter().filter(|(_, seq)| **seq > since) {
        let meta = match std::fs::symlink_metadata(full_path(source, path)) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", String::from_utf8_lossy(path))),
        };
        if meta.is_file() && meta.nlink() > 1 {
            let names = volume
                .links
                .get(&(meta.dev(), meta.ino()))
                .filter(|names| names.len() as u64 >= meta.nlink())
                .ok_or("a hard-linked file has names the journal has not seen")?;
            for name in names {
                if seen.insert(name.clone()) {
                    list.push(name.clone());
                }
            }
        }
        if seen.insert(path.clone()) {
            list.push(path.clone());
        }
    }
    list.sort();
    Ok(list)
}

/// Entries looked up while frozen, by path.
struct Found<'a> {
    root: &'a Path,
    entries: Vec<Entry>,
    index: HashMap<Vec<u8>, usize>,
}

impl<'a> Found<'a> {
    fn new(root: &'a Path) -> Found<'a> {
        Found {
            root,
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Looks up `path`; gone is fine (its directory's names are compared).
    fn look(&mut self, path: &[u8]) -> io::Result<Option<usize>> {
        if let Some(i) = self.index.get(path) {
            return Ok(Some(*i));
        }
        match std::fs::symlink_metadata(full_path(self.root, path)) {
            Ok(meta) => Ok(Some(self.add(Entry::of(path.to_vec(), &meta)))),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn add(&mut self, entry: Entry) -> usize {
        let i = self.entries.len();
        self.index.insert(entry.path.clone(), i);
        self.entries.push(entry);
        i
    }

    /// Every entry of the directory `dir`.
    fn list(&mut self, dir: &[u8], excludes: &Excludes) -> io::Result<()> {
        let read = match std::fs::read_dir(full_path(self.root, dir)) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for item in read {
            let item = item?;
            let path = join(dir, item.file_name().as_bytes());
            if self.index.contains_key(&path) {
                continue;
            }
            let meta = item.metadata()?;
            if !excludes.excludes(&path, meta.is_dir()) {
                self.add(Entry::of(path, &meta));
            }
        }
        Ok(())
    }

    /// The directories above `path` (itself a directory), up to the root.
    fn ancestors(&mut self, path: &[u8]) -> io::Result<()> {
        let mut path = Some(path.to_vec());
        while let Some(p) = path {
            if self.index.contains_key(&p) {
                return Ok(());
            }
            if self.look(&p)?.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("/{} is gone", String::from_utf8_lossy(&p)),
                ));
            }
            path = scan::parent(&p).map(<[u8]>::to_vec);
        }
        Ok(())
    }

    /// Every name of the file `inode` (found among the entries and the journal's `known`
    /// names), or `None` when fewer than its link count are known.
    fn siblings(
        &mut self,
        inode: (u64, u64),
        known: Option<&Vec<Vec<u8>>>,
    ) -> io::Result<Option<Vec<Vec<u8>>>> {
        let mut names: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|e| e.kind == Kind::File && e.inode == inode)
            .map(|e| e.path.clone())
            .collect();
        for name in known.into_iter().flatten() {
            if names.contains(name) {
                continue;
            }
            if let Some(i) = self.look(name)?
                && self.entries[i].inode == inode
            {
                names.push(name.clone());
            }
        }
        let nlink = self
            .entries
            .iter()
            .find(|e| e.inode == inode)
            .map_or(0, |e| e.nlink);
        Ok((names.len() as u64 >= nlink).then_some(names))
    }
}

/// The kernel's limit on watches per user, when it can be read.
pub fn max_user_watches() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The entries of a whole pass's itemized output (`%i %n` lines) the journal did not name in
/// `expected`: what it missed. A deletion counts as named when its directory is (the event
/// names the directory's change of names) or when a directory above it is deleted too (its
/// removal or move out names only that directory); hard links are left out (the journal names
/// the file by the name that changed).
pub fn missed(itemized: &str, expected: &HashSet<Vec<u8>>) -> Vec<String> {
    let lines: Vec<(&str, Vec<u8>)> = itemized
        .lines()
        .filter(|line| line.len() >= 13 && line.is_char_boundary(11))
        .filter(|line| line.as_bytes()[11] == b' ')
        .map(|line| (&line[..11], &line[12..]))
        .filter(|(code, _)| matches!(code.as_bytes()[0], b'<' | b'>' | b'c' | b'.' | b'*'))
        .map(|(code, name)| {
            let name = unescape(name.trim_end_matches('/'));
            (code, if name == b"." { Vec::new() } else { name })
        })
        .collect();
    let deleted: HashSet<&[u8]> = lines
        .iter()
        .filter(|(code, _)| code.starts_with("*deleting"))
        .map(|(_, path)| &path[..])
        .collect();
    let mut missed = Vec::new();
    for (code, path) in &lines {
        let mut named = expected.contains(path);
        if code.starts_with("*deleting") {
            named |= scan::parent(path).is_some_and(|dir| expected.contains(dir));
            let mut above = scan::parent(path);
            while let Some(dir) = above {
                named |= deleted.contains(dir);
                above = scan::parent(dir);
            }
        }
        if !named {
            missed.push(String::from_utf8_lossy(path).into_owned());
        }
    }
    missed
}

/// rsync's `\#ooo` escapes (octal) of bytes it does not print as they are.
fn unescape(name: &str) -> Vec<u8> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i..i + 5).filter(|b| {
            b[0] == b'\\' && b[1] == b'#' && b[2..].iter().all(|c| (b'0'..=b'7').contains(c))
        });
        match octal {
            Some(b) => {
                out.push((b[2] - b'0') * 64 + (b[3] - b'0') * 8 + (b[4] - b'0'));
                i += 5;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
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

    #[test]
    fn missed_entries_are_those_the_journal_did_not_name() {
        let expected: HashSet<Vec<u8>> = ["a/changed", "gone-dir", "", "new"]
            .map(|p| p.as_bytes().to_vec())
            .into();
        let itemized = "Number of files: 3\n\
            >f.st...... a/changed\n\
            >f..t...... a/silent\n\
            *deleting   gone-dir/deep/x\n\
            *deleting   gone-dir/deep/\n\
            *deleting   gone-dir/\n\
            *deleting   elsewhere/y\n\
            .d..t...... ./\n\
            cd+++++++++ new/\n\
            hf+++++++++ a/link => a/changed\n\
            >f+++++++++ odd\\#012name\n";
        assert_eq!(
            missed(itemized, &expected),
            ["a/silent", "elsewhere/y", "odd\nname"]
        );
    }
}
