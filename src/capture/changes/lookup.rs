//! Looking up what the journal named: the live pass's list, and the entries the capture needs
//! while frozen.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::watch::{full_path, join};
use super::{Excludes, Volume};
use crate::capture::scan::{self, Entry, Kind};

/// The live pass's list: what changed since `since` and is still there, with the other names of
/// hard-linked files (see [`Volume::named_since`]). The error says why the live pass must walk
/// the whole volume.
pub(super) fn live_list(
    source: &Path,
    volume: &Volume,
    since: u64,
) -> Result<Vec<Vec<u8>>, String> {
    let mut list: Vec<Vec<u8>> = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for path in volume.named_since(since).into_keys() {
        let meta = match std::fs::symlink_metadata(full_path(source, &path)) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", String::from_utf8_lossy(&path))),
        };
        if meta.is_file() && meta.nlink() > 1 {
            // The names the journal knows that are this file's now (an inode number is reused,
            // a name may hold another file by now).
            let inode = (meta.dev(), meta.ino());
            let names: Vec<&Vec<u8>> = volume
                .links
                .get(&inode)
                .into_iter()
                .flatten()
                .filter(|name| {
                    std::fs::symlink_metadata(full_path(source, name))
                        .is_ok_and(|m| (m.dev(), m.ino()) == inode)
                })
                .collect();
            if (names.len() as u64) < meta.nlink() {
                return Err("a hard-linked file has names the journal has not seen".into());
            }
            for name in names {
                if seen.insert(name.clone()) {
                    list.push(name.clone());
                }
            }
        }
        if seen.insert(path.clone()) {
            list.push(path);
        }
    }
    list.sort();
    Ok(list)
}

/// Entries looked up while frozen, by path.
pub(super) struct Found<'a> {
    pub(super) root: &'a Path,
    pub(super) entries: Vec<Entry>,
    pub(super) index: HashMap<Vec<u8>, usize>,
}

impl<'a> Found<'a> {
    pub(super) fn new(root: &'a Path) -> Found<'a> {
        Found {
            root,
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Looks up `path`; gone is fine (its directory's names are compared).
    pub(super) fn look(&mut self, path: &[u8]) -> io::Result<Option<usize>> {
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
    pub(super) fn list(&mut self, dir: &[u8], excludes: &Excludes) -> io::Result<()> {
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
    pub(super) fn ancestors(&mut self, path: &[u8]) -> io::Result<()> {
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
    pub(super) fn siblings(
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
