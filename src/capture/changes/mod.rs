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
//! volume's directory went away, two volumes share directories (or one volume has a directory at
//! two paths), or the volume's last run did not complete. Writes through a shared memory map make
//! no event; the scheduled full pass is the net for what the journal cannot see (see
//! docs/capture.md).

mod audit;
mod lookup;
mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::exclude::Excludes;
use super::scan::{self, Entry, Kind};
pub use audit::missed;
use lookup::{Found, live_list};
use watch::{Walk, adopt, drain, read_events, unwatch};

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

impl Volume {
    /// Each path named after event `since`, with its last event's number; and every other name
    /// the journal knows of a hard-linked file so named, with that number: a write through one
    /// name changes them all, and the name written may be gone by now (deleted, moved out).
    fn named_since(&self, since: u64) -> HashMap<Vec<u8>, u64> {
        let mut named: HashMap<Vec<u8>, u64> = self
            .dirty
            .iter()
            .filter(|(_, seq)| **seq > since)
            .map(|(path, seq)| (path.clone(), *seq))
            .collect();
        for names in self.links.values() {
            let Some(seq) = names.iter().filter_map(|n| named.get(n)).max().copied() else {
                continue;
            };
            for name in names {
                let s = named.entry(name.clone()).or_insert(seq);
                *s = (*s).max(seq);
            }
        }
        named
    }
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
    /// The capture looks at what was named after this event number: the mirror's state when the
    /// last run completed (even when this live pass is whole: a hard-linked file written
    /// through another name shows only in its ctime), else [`JournalView::mark`].
    pub from: u64,
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
            from: mark,
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
        if let Some(synced) = synced {
            view.from = synced;
        }
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
        let named = volume.named_since(view.from);
        let mut found = Found::new(source);
        for (path, _) in named.iter() {
            found.look(path).map_err(|e| e.to_string())?;
        }
        // Copied: what was named since the live pass began, what a ctime says changed, and each
        // directory whose names changed since the mirror's state.
        let is_chosen = |e: &Entry| {
            let seq = named.get(&e.path).copied();
            seq.is_some_and(|s| s > view.mark)
                || e.ctime >= since_ctime
                || (e.kind == Kind::Dir && seq.is_some())
        };
        // Every copied directory is listed (the upload compares its names with what it held),
        // and what the listing finds is decided in turn.
        let mut chosen: Vec<bool> = Vec::new();
        let mut listed: HashSet<Vec<u8>> = HashSet::new();
        loop {
            let decided = chosen.len();
            chosen.extend(found.entries[decided..].iter().map(is_chosen));
            let unlisted: Vec<Vec<u8>> = found
                .entries
                .iter()
                .zip(&chosen)
                .filter(|(e, c)| **c && e.kind == Kind::Dir && !listed.contains(&e.path))
                .map(|(e, _)| e.path.clone())
                .collect();
            if unlisted.is_empty() {
                break;
            }
            for dir in unlisted {
                found
                    .list(&dir, &volume.excludes)
                    .map_err(|e| format!("listing /{}: {e}", String::from_utf8_lossy(&dir)))?;
                listed.insert(dir);
            }
        }
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

    /// The paths of `source` named after event `mark` (and their hard-linked siblings the
    /// journal knows); none when it does not watch the volume. For a capture that scans the whole
    /// volume although the journal watches it.
    pub fn named_after(&self, source: &Path, mark: u64) -> HashSet<Vec<u8>> {
        let state = self.lock();
        state
            .volumes
            .get(source)
            .map(|v| v.named_since(mark).into_keys().collect())
            .unwrap_or_default()
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

/// The kernel's limit on watches per user, when it can be read.
pub fn max_user_watches() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()?
        .trim()
        .parse()
        .ok()
}
