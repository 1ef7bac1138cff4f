//! Capture on freeze: while a group is frozen, only local work; the upload comes after the thaw.
//!
//! Before the live pass (rsync over ssh, apps running), each volume's directories are listed with
//! their inodes ([`LiveView`]); changes count from that moment less [`CTIME_MARGIN`]. While
//! frozen, each volume is scanned ([`scan`], `lstat` only, several directories at once, the
//! group's volumes at once) and the capture chooses what the mirror may lack ([`choose`]):
//!
//! - every entry whose ctime is not older than the start. The ctime moves on any change of
//!   content, mode, owner, xattr, ACL, link count or name, and an app cannot set it;
//! - everything below a directory that is not the one that stood at its path before the live
//!   pass (created, renamed or moved in since): its contents kept their ctimes, and rsync may have
//!   listed another directory, or none, at that path;
//! - every other name of a hard-linked file that is copied.
//!
//! Those entries are copied into the staging area with their metadata ([`stage`]), together with
//! the directories above them; then the group thaws. The upload then brings the mirror to the
//! frozen state with two rsync runs: one sends the copies (which the apps can no longer touch),
//! replacing entries whose type changed; one deletes, in each copied directory, the names it did
//! not hold while frozen (against a skeleton of its names; nothing is transferred) and sets the
//! directories' times as they were.
//!
//! Why the rest of the mirror is right: an entry with an old ctime did not change, and was not
//! renamed, during the live pass, and the directory holding it was the same directory throughout;
//! rsync listed that directory after the live pass started, so it sent the entry as it is now. A
//! directory whose names changed has a new ctime, so it is among the copied directories, whose
//! names are compared. The one sequence this cannot see is a directory renamed away and back to
//! the same path while the live pass runs (see docs/capture.md).
//!
//! With the change journal ([`changes`]), the scan is replaced by a look at only the entries the
//! journal named since the last complete run, and the same choice among them; the live pass then
//! sends only those too. When the look cannot be trusted and the scan runs instead, what the
//! journal named since the live pass began is copied as well.
//!
//! When the copy would exceed `BACKUP_STAGING_MAX`, or the live pass could not read everything, or
//! anything fails while capturing, the group falls back to the network catch-up inside the freeze,
//! and the `group thawed` line says why.

pub mod changes;
pub mod exclude;
pub mod group;
pub mod scan;
pub mod stage;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use changes::{Changes, JournalView};
use exclude::Excludes;
use scan::{Entry, Kind, Stamp};

/// How much older than the live pass's start a ctime may look and still count as a change: file
/// systems keep timestamps from a clock that ticks (a jiffy, or a whole second on some), and a
/// volume on a network file system has its server's clock.
pub const CTIME_MARGIN: Duration = Duration::from_secs(2);

/// Each directory's inode, by path.
pub type DirInodes = HashMap<Vec<u8>, (u64, u64)>;

/// What the capture needs from before the live pass.
#[derive(Debug, Clone, Default)]
pub struct LiveView {
    /// The start, less [`CTIME_MARGIN`]: a ctime at or after it is a change.
    pub since: Stamp,
    /// Each directory's inode, by path.
    pub dirs: DirInodes,
    /// What the change journal gave, when it watches the volume.
    pub journal: Option<JournalView>,
}

impl LiveView {
    /// Lists the directories of `source` (a volume's `_data`) right before its live pass; changes
    /// count from now, less the margin.
    pub fn before_live_pass(
        source: &Path,
        excludes: &[String],
        stop: &AtomicBool,
    ) -> io::Result<LiveView> {
        let since = changes_since();
        let entries = scan::scan(source, &Excludes::new(excludes), threads(), stop)?;
        Ok(LiveView {
            since,
            dirs: entries
                .into_iter()
                .filter(|e| e.kind == Kind::Dir)
                .map(|e| (e.path, e.inode))
                .collect(),
            journal: None,
        })
    }

    /// The same from the change journal, which watches `source` from now on if it did not: no
    /// walk of the volume once it does. `full`: a reason for the live pass to be whole anyway.
    pub fn from_journal(
        changes: &Changes,
        source: &Path,
        excludes: &[String],
        full: Option<&str>,
    ) -> io::Result<LiveView> {
        let since = changes_since();
        let (journal, dirs) = changes.before_live_pass(source, excludes, full)?;
        Ok(LiveView {
            since,
            dirs,
            journal: Some(journal),
        })
    }
}

/// Now less [`CTIME_MARGIN`]: a ctime at or after it is a change.
fn changes_since() -> Stamp {
    let since = SystemTime::now()
        .checked_sub(CTIME_MARGIN)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default();
    Stamp {
        secs: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i64,
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// What the capture chose in one volume.
#[derive(Debug, Default)]
pub struct Choice {
    /// Entries to copy, and the directories above them, by path (parents first): the upload's
    /// list.
    pub upload: Vec<usize>,
    /// The copied directories: the upload deletes in each what it did not hold while frozen.
    pub prune: Vec<usize>,
    /// Bytes of file content to copy.
    pub bytes: u64,
    /// Entries copied (not counting the directories above them).
    pub entries: usize,
}

/// Chooses what to copy from a volume's scan (see the module's notes), every entry at a path of
/// `named` (what the change journal named since the live pass began) too.
pub fn choose(entries: &[Entry], live: &LiveView, named: &HashSet<Vec<u8>>) -> Choice {
    // Only directories need an order (parents first); there are few of them.
    let mut dirs: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].kind == Kind::Dir)
        .collect();
    dirs.sort_by(|a, b| entries[*a].path.cmp(&entries[*b].path));
    let mut whole: HashSet<&[u8]> = HashSet::new();
    for &i in &dirs {
        let e = &entries[i];
        let elsewhere = live.dirs.get(&e.path) != Some(&e.inode);
        if elsewhere || e.parent().is_some_and(|p| whole.contains(p)) {
            whole.insert(&e.path);
        }
    }
    let below_whole = |e: &Entry| {
        !whole.is_empty()
            && (whole.contains(&e.path[..]) || e.parent().is_some_and(|p| whole.contains(p)))
    };
    let mut chosen: Vec<bool> = entries
        .iter()
        .map(|e| e.ctime >= live.since || below_whole(e) || named.contains(&e.path))
        .collect();
    // Every name of a copied inode, so that the links are made again.
    let linked: HashSet<(u64, u64)> = entries
        .iter()
        .zip(&chosen)
        .filter(|(e, c)| **c && e.kind == Kind::File && e.nlink > 1)
        .map(|(e, _)| e.inode)
        .collect();
    if !linked.is_empty() {
        for (e, c) in entries.iter().zip(chosen.iter_mut()) {
            *c |= e.kind == Kind::File && linked.contains(&e.inode);
        }
    }
    choice_of(entries, &chosen)
}

/// The upload's list, the directories to compare and the figures, for the `chosen` entries.
/// Every directory above a chosen entry must be among `entries`.
pub fn choice_of(entries: &[Entry], chosen: &[bool]) -> Choice {
    let dir_index: HashMap<&[u8], usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == Kind::Dir)
        .map(|(i, e)| (&e.path[..], i))
        .collect();
    let mut choice = Choice::default();
    let mut inodes = HashSet::new();
    let mut upload: BTreeMap<&[u8], usize> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate().filter(|(i, _)| chosen[*i]) {
        choice.entries += 1;
        if e.kind == Kind::File && inodes.insert(e.inode) {
            choice.bytes += e.size;
        }
        if e.kind == Kind::Dir {
            choice.prune.push(i);
        }
        upload.insert(&e.path, i);
        // The directories above it, up to one already listed.
        let mut path: &[u8] = &e.path;
        while let Some(parent) = scan::parent(path) {
            if upload.contains_key(parent) {
                break;
            }
            upload.insert(parent, dir_index[parent]);
            path = parent;
        }
    }
    choice.upload = upload.into_values().collect();
    choice
        .prune
        .sort_by(|a, b| entries[*a].path.cmp(&entries[*b].path));
    choice
}

/// One volume's capture, from the scan to the files the upload reads.
#[derive(Debug)]
pub struct Capture {
    /// The volume's entries while frozen.
    pub entries: Vec<Entry>,
    /// What was chosen.
    pub choice: Choice,
    /// Where the copies are.
    pub copies: PathBuf,
    /// Where the upload's name skeleton and lists go.
    pub work: PathBuf,
    /// Entries and bytes of the volume, counted as rsync counts them (`Number of files`, `Total
    /// file size`: content and symlink targets): as frozen after a full scan, else as the
    /// journal last walked it.
    pub totals: (u64, u64),
    /// Why the whole volume was scanned while frozen, when the journal watches it.
    pub scanned: Option<String>,
}

impl Capture {
    /// See [`Capture::totals`] (the field).
    pub fn totals(&self) -> (u64, u64) {
        self.totals
    }

    /// The upload's rsync runs, in order, with their lists written: the copies, then (when a
    /// directory was copied) the delete step against the skeleton of names. None when nothing
    /// changed.
    pub fn steps(&self) -> io::Result<Vec<Step>> {
        if self.choice.upload.is_empty() {
            return Ok(Vec::new());
        }
        let list = self.work.join("upload.list");
        std::fs::write(&list, self.upload_list())?;
        let mut steps = vec![Step {
            source: self.copies.clone(),
            list,
            prune: false,
        }];
        if !self.choice.prune.is_empty() {
            let list = self.work.join("prune.list");
            std::fs::write(&list, self.prune_list())?;
            steps.push(Step {
                source: self.skeleton()?,
                list,
                prune: true,
            });
        }
        Ok(steps)
    }

    /// The upload's list (NUL-separated, `.` for the root).
    fn upload_list(&self) -> Vec<u8> {
        list(
            self.choice
                .upload
                .iter()
                .map(|&i| &self.entries[i].path[..]),
            "",
        )
    }

    /// The delete step's list: each copied directory's contents (`DIR/.`).
    fn prune_list(&self) -> Vec<u8> {
        list(
            self.choice.prune.iter().map(|&i| &self.entries[i].path[..]),
            "/.",
        )
    }

    /// Writes the skeleton of the copied directories' names into `self.work/names` and returns
    /// its path: each copied directory, what it held and the directories above it, directories
    /// with their times. Done after the thaw: it needs only the scan.
    fn skeleton(&self) -> io::Result<PathBuf> {
        let dirs: HashSet<&[u8]> = self
            .choice
            .prune
            .iter()
            .map(|&i| &self.entries[i].path[..])
            .collect();
        let index: HashMap<&[u8], &Entry> = self.entries.iter().map(|e| (&e.path[..], e)).collect();
        let mut names: BTreeSet<&[u8]> = BTreeSet::new();
        for e in &self.entries {
            let listed = dirs.contains(&e.path[..]) || e.parent().is_some_and(|p| dirs.contains(p));
            if !listed {
                continue;
            }
            let mut path = Some(&e.path[..]);
            while let Some(p) = path
                && names.insert(p)
            {
                path = scan::parent(p);
            }
        }
        let root = self.work.join("names");
        // Parents first: a path sorts before the paths below it.
        let entries: Vec<&Entry> = names.iter().map(|p| index[p]).collect();
        stage::skeleton(&root, &entries)?;
        Ok(root)
    }
}

/// One rsync run of an upload.
#[derive(Debug)]
pub struct Step {
    /// What rsync reads: the copies, or the skeleton of names.
    pub source: PathBuf,
    /// The `--files-from` list (NUL-separated).
    pub list: PathBuf,
    /// The delete step (else the copies).
    pub prune: bool,
}

fn list<'a>(paths: impl Iterator<Item = &'a [u8]>, suffix: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_empty() {
            out.push(b'.');
        } else {
            out.extend_from_slice(path);
        }
        if !path.is_empty() || suffix != "/." {
            out.extend_from_slice(suffix.as_bytes());
        }
        out.push(0);
    }
    out
}

/// What a frozen volume's survey found.
#[derive(Debug)]
pub struct Survey {
    /// The entries looked at: every entry of the volume after a full scan; what the journal
    /// named, the directories above and the names of the directories compared, else.
    pub entries: Vec<Entry>,
    /// What to copy.
    pub choice: Choice,
    /// See [`Capture::totals`].
    pub totals: (u64, u64),
    /// See [`Capture::scanned`].
    pub scanned: Option<String>,
}

/// Chooses what to copy from a frozen volume (`source`: its `_data`): from the change journal
/// when it watches the volume and can be trusted, else by a scan of every entry.
pub fn survey(
    source: &Path,
    excludes: &[String],
    live: &LiveView,
    changes: Option<&Changes>,
    stop: &AtomicBool,
) -> io::Result<Survey> {
    let scanned = match (changes, &live.journal) {
        (Some(changes), Some(view)) => match changes.survey(source, view, live.since) {
            Ok((entries, choice)) => {
                return Ok(Survey {
                    entries,
                    choice,
                    totals: view.totals,
                    scanned: None,
                });
            }
            Err(reason) => Some(reason),
        },
        _ => None,
    };
    let entries = scan::scan(source, &Excludes::new(excludes), threads(), stop)?;
    // What the journal named since the live pass began is copied too: it saw moves the scan
    // cannot (a directory renamed away and back while rsync walked it).
    let named = match (changes, &live.journal) {
        (Some(changes), Some(view)) => changes.named_after(source, view.mark),
        _ => HashSet::new(),
    };
    let choice = choose(&entries, live, &named);
    let bytes = entries
        .iter()
        .filter(|e| matches!(e.kind, Kind::File | Kind::Symlink))
        .map(|e| e.size)
        .sum();
    Ok(Survey {
        totals: (entries.len() as u64, bytes),
        entries,
        choice,
        scanned,
    })
}

/// Copies what was chosen into `staging` (absent or empty): copies under `staging/copies`, the
/// upload's working files under `staging/work`.
pub fn copy(
    source: &Path,
    staging: &Path,
    survey: Survey,
    stop: &AtomicBool,
) -> io::Result<Capture> {
    let copies = staging.join("copies");
    let work = staging.join("work");
    std::fs::create_dir_all(&work)?;
    let Survey {
        entries,
        choice,
        totals,
        scanned,
    } = survey;
    let chosen: Vec<&Entry> = choice.upload.iter().map(|&i| &entries[i]).collect();
    stage::copy_entries(source, &copies, &chosen, stop)?;
    Ok(Capture {
        entries,
        choice,
        copies,
        work,
        totals,
        scanned,
    })
}

/// Empties a staging directory (gone is fine).
pub fn clear(staging: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(staging) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
