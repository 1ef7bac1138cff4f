//! The archive index: a file per archive in `BACKUP_STATE_DIR/catalog/`, built once from borg's
//! listing of the archive (a stream of JSON lines, never held in memory whole) and read by seeking,
//! so that opening any folder of an archive of a million files reads a few pages, not the archive.
//! borg keeps no directory index (its `borg list ARCHIVE PATH` reads the whole item stream), and
//! archives never change, so an index built once serves every later look.
//!
//! - [`build`]: the listing in, the index file out, sorting with runs on disk (bounded memory).
//! - this file: the file's layout and the reader ([`Catalog`]).
//!
//! The file, little-endian:
//!
//! ```text
//! header    magic, version, counts, and each section's offset and length
//! entries   one fixed record per archived item, sorted by (its directory, its name)
//! names     each entry's name (and a link's target), in the entries' order
//! dirs      one fixed record per directory, sorted by path (components compared one by one):
//!           where its entries start, how many, and its whole subtree's size and file count
//! paths     each directory's path, in the dirs' order
//! users     the user and group names by id, as JSON
//! ```
//!
//! A folder is a binary search among the directories, then one read of its page of entries and
//! one of their names.

pub mod build;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

#[cfg(test)]
pub use build::build;
pub use build::{Builder, Built, RUN_BYTES};

const MAGIC: &[u8; 8] = b"BSCATLG\0";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 128;
const ENTRY_LEN: u64 = 64;
const DIR_LEN: u64 = 48;

/// What an archived item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Link,
    /// A device, fifo or socket.
    Special,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::File => 0,
            Kind::Dir => 1,
            Kind::Link => 2,
            Kind::Special => 3,
        }
    }

    fn from_code(code: u8) -> Kind {
        match code {
            0 => Kind::File,
            1 => Kind::Dir,
            2 => Kind::Link,
            _ => Kind::Special,
        }
    }
}

/// One item of a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Its name in the folder.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Permission bits and file type, as `st_mode` has them.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// A file's size; for a directory, its whole subtree's.
    pub size: u64,
    /// For a directory, the files in its whole subtree; 1 for a file.
    pub files: u64,
    /// Modification time, microseconds since the epoch (UTC).
    pub mtime_us: i64,
    /// A link's target.
    pub target: Option<String>,
}

/// A folder's page of entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Folder {
    /// Its path in the archive (`""` for the top).
    pub path: String,
    /// How many entries it has in all.
    pub total: u64,
    /// Its whole subtree's size and file count.
    pub size: u64,
    /// Its whole subtree's file count.
    pub files: u64,
    /// The entries from `offset`, sorted by name.
    pub entries: Vec<Entry>,
    /// Where this page starts.
    pub offset: u64,
}

/// The header's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Header {
    entries: u64,
    dirs: u64,
    /// Offsets and lengths of entries, names, dirs, paths, users.
    sections: [(u64, u64); 5],
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN as usize);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.entries.to_le_bytes());
        out.extend_from_slice(&self.dirs.to_le_bytes());
        for (offset, len) in self.sections {
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.resize(HEADER_LEN as usize, 0);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Header> {
        if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
            bail!("not an archive index");
        }
        if u32_at(bytes, 8) != VERSION {
            bail!("an archive index of another version");
        }
        let mut header = Header {
            entries: u64_at(bytes, 16),
            dirs: u64_at(bytes, 24),
            ..Default::default()
        };
        for (i, section) in header.sections.iter_mut().enumerate() {
            *section = (u64_at(bytes, 32 + 16 * i), u64_at(bytes, 40 + 16 * i));
        }
        Ok(header)
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// An entry record: name (offset into names, length), kind, mode, uid, gid, size, mtime, link
/// target (offset, length), and for a directory its record among the dirs (+1; 0 for others).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EntryRecord {
    name: (u64, u32),
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_us: i64,
    target: (u64, u32),
    dir: u64,
}

impl EntryRecord {
    fn encode(&self) -> [u8; ENTRY_LEN as usize] {
        let mut out = [0u8; ENTRY_LEN as usize];
        out[0..8].copy_from_slice(&self.name.0.to_le_bytes());
        out[8..12].copy_from_slice(&self.name.1.to_le_bytes());
        out[12] = self.kind;
        out[16..20].copy_from_slice(&self.mode.to_le_bytes());
        out[20..24].copy_from_slice(&self.uid.to_le_bytes());
        out[24..28].copy_from_slice(&self.gid.to_le_bytes());
        out[28..32].copy_from_slice(&self.target.1.to_le_bytes());
        out[32..40].copy_from_slice(&self.size.to_le_bytes());
        out[40..48].copy_from_slice(&self.mtime_us.to_le_bytes());
        out[48..56].copy_from_slice(&self.target.0.to_le_bytes());
        out[56..64].copy_from_slice(&self.dir.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> EntryRecord {
        EntryRecord {
            name: (u64_at(b, 0), u32_at(b, 8)),
            kind: b[12],
            mode: u32_at(b, 16),
            uid: u32_at(b, 20),
            gid: u32_at(b, 24),
            target: (u64_at(b, 48), u32_at(b, 28)),
            size: u64_at(b, 32),
            mtime_us: i64_at(b, 40),
            dir: u64_at(b, 56),
        }
    }
}

/// A directory record: its path (offset into paths, length), its entries (first, count), and its
/// subtree's size and files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DirRecord {
    path: (u64, u32),
    first: u64,
    count: u64,
    size: u64,
    files: u64,
}

impl DirRecord {
    fn encode(&self) -> [u8; DIR_LEN as usize] {
        let mut out = [0u8; DIR_LEN as usize];
        out[0..8].copy_from_slice(&self.path.0.to_le_bytes());
        out[8..12].copy_from_slice(&self.path.1.to_le_bytes());
        out[16..24].copy_from_slice(&self.first.to_le_bytes());
        out[24..32].copy_from_slice(&self.count.to_le_bytes());
        out[32..40].copy_from_slice(&self.size.to_le_bytes());
        out[40..48].copy_from_slice(&self.files.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> DirRecord {
        DirRecord {
            path: (u64_at(b, 0), u32_at(b, 8)),
            first: u64_at(b, 16),
            count: u64_at(b, 24),
            size: u64_at(b, 32),
            files: u64_at(b, 40),
        }
    }
}

/// Paths compared one component at a time, so that a directory's subtree follows it at once
/// (`a`, `a/b`, `a/b/c`, `a-b`): the order of the dirs section.
pub(crate) fn path_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.split(|&c| c == b'/')
        .filter(|c| !c.is_empty())
        .cmp(b.split(|&c| c == b'/').filter(|c| !c.is_empty()))
}

/// User and group names by id, as borg listed them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    /// Users.
    pub users: BTreeMap<u32, String>,
    /// Groups.
    pub groups: BTreeMap<u32, String>,
}

impl Names {
    /// The user's name, or the id when borg gave none.
    pub fn user(&self, id: u32) -> String {
        self.users
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// The group's name, or the id when borg gave none.
    pub fn group(&self, id: u32) -> String {
        self.groups
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

/// An archive's index, open for reading.
pub struct Catalog {
    file: File,
    header: Header,
    /// User and group names.
    pub names: Names,
}

impl Catalog {
    /// Opens the index at `path`.
    pub fn open(path: &Path) -> Result<Catalog> {
        let file = File::open(path)
            .with_context(|| format!("cannot open the index {}", path.display()))?;
        let mut head = vec![0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut head, 0)
            .with_context(|| format!("{} is not an archive index", path.display()))?;
        let header =
            Header::decode(&head).with_context(|| format!("{} cannot be read", path.display()))?;
        let (users_at, users_len) = header.sections[4];
        let mut users = vec![0u8; users_len as usize];
        file.read_exact_at(&mut users, users_at)?;
        let names = serde_json::from_slice(&users).context("the index's user names")?;
        Ok(Catalog {
            file,
            header,
            names,
        })
    }

    /// How many items the archive holds.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.header.entries
    }

    fn read(&self, at: u64, len: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, at)?;
        Ok(buf)
    }

    fn dir(&self, i: u64) -> Result<DirRecord> {
        let at = self.header.sections[2].0 + i * DIR_LEN;
        Ok(DirRecord::decode(&self.read(at, DIR_LEN)?))
    }

    fn dir_path(&self, dir: &DirRecord) -> Result<Vec<u8>> {
        self.read(self.header.sections[3].0 + dir.path.0, dir.path.1 as u64)
    }

    /// The directory record at `path`, by binary search.
    fn find_dir(&self, path: &[u8]) -> Result<Option<DirRecord>> {
        let (mut low, mut high) = (0, self.header.dirs);
        while low < high {
            let mid = low + (high - low) / 2;
            let dir = self.dir(mid)?;
            match path_order(&self.dir_path(&dir)?, path) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(Some(dir)),
            }
        }
        Ok(None)
    }

    /// The folder at `path` (`""` or `/` for the top), `limit` entries from `offset`; `None`
    /// when the archive has no such directory.
    pub fn folder(&self, path: &str, offset: u64, limit: u64) -> Result<Option<Folder>> {
        let path = path.trim_matches('/');
        let Some(dir) = self.find_dir(path.as_bytes())? else {
            return Ok(None);
        };
        let start = offset.min(dir.count);
        let n = limit.min(dir.count - start);
        let mut entries = Vec::with_capacity(n as usize);
        if n > 0 {
            let bytes = self.read(
                self.header.sections[0].0 + (dir.first + start) * ENTRY_LEN,
                n * ENTRY_LEN,
            )?;
            let records: Vec<EntryRecord> = bytes
                .chunks_exact(ENTRY_LEN as usize)
                .map(EntryRecord::decode)
                .collect();
            // The page's names (and targets) lie together, in the entries' order.
            let names_at = records[0].name.0;
            let last = records.last().unwrap();
            let names_end =
                (last.name.0 + last.name.1 as u64).max(last.target.0 + last.target.1 as u64);
            let names = self.read(self.header.sections[1].0 + names_at, names_end - names_at)?;
            let text = |(at, len): (u64, u32)| {
                let at = (at - names_at) as usize;
                String::from_utf8_lossy(&names[at..at + len as usize]).into_owned()
            };
            for r in records {
                let kind = Kind::from_code(r.kind);
                let (size, files) = match (kind, r.dir) {
                    (Kind::Dir, 1..) => {
                        let sub = self.dir(r.dir - 1)?;
                        (sub.size, sub.files)
                    }
                    (Kind::Dir, 0) => (0, 0),
                    (Kind::File, _) => (r.size, 1),
                    _ => (r.size, 0),
                };
                entries.push(Entry {
                    name: text(r.name),
                    kind,
                    mode: r.mode,
                    uid: r.uid,
                    gid: r.gid,
                    size,
                    files,
                    mtime_us: r.mtime_us,
                    target: (kind == Kind::Link).then(|| text(r.target)),
                });
            }
        }
        Ok(Some(Folder {
            path: path.to_string(),
            total: dir.count,
            size: dir.size,
            files: dir.files,
            entries,
            offset: start,
        }))
    }
}

/// Where the indexes live, in `BACKUP_STATE_DIR`.
pub const CATALOG_DIR: &str = "catalog";

/// The index file of `archive` below `state_dir`. Archive names are made of letters, digits,
/// `.`, `_`, `-` and `:` (borg's and the guard's rule), so they are file names as they are.
pub fn index_path(state_dir: &Path, archive: &str) -> PathBuf {
    state_dir.join(CATALOG_DIR).join(format!("{archive}.idx"))
}

/// Removes the indexes of archives not in `archives` (pruned ones), and what builds that did
/// not finish left a day ago or more; returns what it removed.
pub fn remove_others(state_dir: &Path, archives: &[String]) -> Vec<String> {
    let dir = state_dir.join(CATALOG_DIR);
    let Ok(read) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
    let mut removed = Vec::new();
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let gone = match name.strip_suffix(".idx") {
            Some(archive) => !archives.iter().any(|a| a == archive),
            // A build's scratch: another build may be using it now.
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < day_ago),
        };
        if !gone {
            continue;
        }
        let path = entry.path();
        let done = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if done.is_ok() {
            removed.push(name.strip_suffix(".idx").unwrap_or(&name).to_string());
        }
    }
    removed
}

#[cfg(test)]
mod tests;
