//! Builds an archive's index from borg's listing (`borg list --json-lines`, one item per line, in
//! the order borg walked the files), holding at most about [`RUN_BYTES`] of it in memory: items
//! are sorted in runs written to disk, then merged into the index's sections, each written in
//! order. While merging, a stack of the directories above the current one adds each subtree's size
//! and file count up, and links each directory's entry in its parent to its own record.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
#[cfg(test)]
use std::io::BufRead;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::NaiveDateTime;
use serde::Deserialize;

use super::{
    DIR_LEN, DirRecord, ENTRY_LEN, EntryRecord, HEADER_LEN, Header, Kind, Names, path_order,
};

/// Most bytes of items sorted in memory at once (estimated), before a run goes to disk.
pub const RUN_BYTES: usize = 32 << 20;

/// What the build made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Built {
    /// Items indexed.
    pub entries: u64,
    /// Directories, the top included.
    pub dirs: u64,
    /// The index file's size.
    pub bytes: u64,
    /// Sorted runs written to disk.
    pub runs: usize,
}

/// One line of `borg list --json-lines`.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    mode: &'a str,
    /// A name, or the id again when the id has no name where borg ran.
    #[serde(default)]
    user: serde_json::Value,
    #[serde(default)]
    group: serde_json::Value,
    uid: u32,
    gid: u32,
    path: String,
    #[serde(default)]
    linktarget: String,
    mtime: &'a str,
    #[serde(default)]
    size: u64,
}

/// An item on its way through the sort: its directory and name, or a directory's own marker
/// (which sorts first among its entries and opens its record).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    parent: Vec<u8>,
    marker: bool,
    name: Vec<u8>,
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_us: i64,
    target: Vec<u8>,
}

impl Item {
    fn order(&self, other: &Item) -> Ordering {
        path_order(&self.parent, &other.parent)
            .then_with(|| other.marker.cmp(&self.marker))
            .then_with(|| self.name.cmp(&other.name))
    }

    /// What it costs in memory, roughly.
    fn weight(&self) -> usize {
        96 + self.parent.len() + self.name.len() + self.target.len()
    }

    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        for bytes in [&self.parent, &self.name, &self.target] {
            out.write_all(&(bytes.len() as u32).to_le_bytes())?;
            out.write_all(bytes)?;
        }
        out.write_all(&[self.marker as u8, self.kind])?;
        for n in [self.mode, self.uid, self.gid] {
            out.write_all(&n.to_le_bytes())?;
        }
        out.write_all(&self.size.to_le_bytes())?;
        out.write_all(&self.mtime_us.to_le_bytes())
    }

    fn read(input: &mut impl Read) -> io::Result<Option<Item>> {
        let mut len = [0u8; 4];
        match input.read_exact(&mut len) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        fn bytes(input: &mut impl Read, len: [u8; 4]) -> io::Result<Vec<u8>> {
            let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
            input.read_exact(&mut buf)?;
            Ok(buf)
        }
        let parent = bytes(input, len)?;
        input.read_exact(&mut len)?;
        let name = bytes(input, len)?;
        input.read_exact(&mut len)?;
        let target = bytes(input, len)?;
        let mut fixed = [0u8; 2 + 12 + 16];
        input.read_exact(&mut fixed)?;
        let u32_at = |at: usize| u32::from_le_bytes(fixed[at..at + 4].try_into().unwrap());
        Ok(Some(Item {
            parent,
            marker: fixed[0] == 1,
            name,
            kind: fixed[1],
            mode: u32_at(2),
            uid: u32_at(6),
            gid: u32_at(10),
            size: u64::from_le_bytes(fixed[14..22].try_into().unwrap()),
            mtime_us: i64::from_le_bytes(fixed[22..30].try_into().unwrap()),
            target,
        }))
    }
}

/// `st_mode` from `ls`-style text (`drwxr-sr-x`; borg writes `h` first for a hard link).
fn parse_mode(text: &str) -> u32 {
    let b = text.as_bytes();
    if b.len() < 10 {
        return 0;
    }
    let kind = match b[0] {
        b'd' => 0o040000,
        b'l' => 0o120000,
        b'c' => 0o020000,
        b'b' => 0o060000,
        b'p' => 0o010000,
        b's' => 0o140000,
        _ => 0o100000,
    };
    let mut mode = kind;
    for (i, bit) in [
        0o400, 0o200, 0o100, 0o040, 0o020, 0o010, 0o004, 0o002, 0o001,
    ]
    .into_iter()
    .enumerate()
    {
        if !matches!(b[1 + i], b'-' | b'S' | b'T') {
            mode |= bit;
        }
    }
    let special = [(3, 0o4000), (6, 0o2000), (9, 0o1000)];
    for (at, bit) in special {
        if matches!(b[at], b's' | b'S' | b't' | b'T') {
            mode |= bit;
        }
    }
    mode
}

/// borg's item time (`2026-11-30T03:00:00.123456`, the remote's local time, taken as UTC).
fn parse_mtime(text: &str) -> i64 {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc().timestamp_micros())
        .unwrap_or(0)
}

/// The items of one listing line: the entry, and for a directory its marker.
fn items(line: &Line) -> [Option<Item>; 2] {
    let path = line.path.trim_matches('/').as_bytes();
    let (parent, name) = match path.iter().rposition(|&c| c == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    let kind = match line.kind {
        "d" => Kind::Dir,
        "-" | "h" => Kind::File,
        "l" => Kind::Link,
        _ => Kind::Special,
    };
    let entry = Item {
        parent: parent.to_vec(),
        marker: false,
        name: name.to_vec(),
        kind: kind.code(),
        mode: parse_mode(line.mode),
        uid: line.uid,
        gid: line.gid,
        size: line.size,
        mtime_us: parse_mtime(line.mtime),
        target: if kind == Kind::Link {
            line.linktarget.as_bytes().to_vec()
        } else {
            Vec::new()
        },
    };
    let marker = (kind == Kind::Dir).then(|| marker(path));
    [Some(entry), marker]
}

fn marker(path: &[u8]) -> Item {
    Item {
        parent: path.to_vec(),
        marker: true,
        name: Vec::new(),
        kind: Kind::Dir.code(),
        mode: 0,
        uid: 0,
        gid: 0,
        size: 0,
        mtime_us: 0,
        target: Vec::new(),
    }
}

/// Builds the index of the listing `input` into `target` (written under a temporary name in
/// `scratch`, then renamed), calling `progress` with the items read so far every 100,000.
#[cfg(test)]
pub fn build(
    input: impl BufRead,
    target: &Path,
    scratch: &Path,
    progress: impl FnMut(u64),
) -> Result<Built> {
    build_in_runs(input, target, scratch, RUN_BYTES, progress)
}

/// [`build`], sorting at most `run_bytes` in memory at once.
#[cfg(test)]
pub(super) fn build_in_runs(
    input: impl BufRead,
    target: &Path,
    scratch: &Path,
    run_bytes: usize,
    mut progress: impl FnMut(u64),
) -> Result<Built> {
    let mut builder = Builder::new(scratch, run_bytes)?;
    for line in input.lines() {
        let line = line.context("reading the archive's listing")?;
        builder.line(&line)?;
        if builder.read % 100_000 == 0 {
            progress(builder.read);
        }
    }
    progress(builder.read);
    builder.finish(target)
}

/// An index being built, one listing line at a time.
pub struct Builder {
    work: tempfile::TempDir,
    names: Names,
    runs: Vec<PathBuf>,
    batch: Vec<Item>,
    weight: usize,
    run_bytes: usize,
    /// Listing lines read so far.
    pub read: u64,
}

impl Builder {
    /// A builder whose runs go to a directory of its own in `scratch`, sorting at most
    /// `run_bytes` in memory at once ([`RUN_BYTES`] for the real thing).
    pub fn new(scratch: &Path, run_bytes: usize) -> Result<Builder> {
        std::fs::create_dir_all(scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        let work = tempfile::Builder::new()
            .prefix(".building-")
            .tempdir_in(scratch)
            .context("cannot make the index's scratch directory")?;
        Ok(Builder {
            work,
            names: Names::default(),
            runs: Vec::new(),
            batch: vec![marker(b"")],
            weight: 0,
            run_bytes,
            read: 0,
        })
    }

    /// Takes one line of the listing.
    pub fn line(&mut self, line: &str) -> Result<()> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let parsed: Line = serde_json::from_str(line)
            .with_context(|| format!("a line of the listing is not an item: {line}"))?;
        if let Some(user) = parsed.user.as_str().filter(|u| !u.is_empty()) {
            self.names
                .users
                .entry(parsed.uid)
                .or_insert_with(|| user.to_string());
        }
        if let Some(group) = parsed.group.as_str().filter(|g| !g.is_empty()) {
            self.names
                .groups
                .entry(parsed.gid)
                .or_insert_with(|| group.to_string());
        }
        for item in items(&parsed).into_iter().flatten() {
            self.weight += item.weight();
            self.batch.push(item);
        }
        self.read += 1;
        if self.weight >= self.run_bytes {
            let n = self.runs.len();
            self.runs
                .push(write_run(&mut self.batch, self.work.path(), n)?);
            self.weight = 0;
        }
        Ok(())
    }

    /// Merges what was read into the index file `target`.
    pub fn finish(mut self, target: &Path) -> Result<Built> {
        let in_memory = std::mem::take(&mut self.batch);
        let mut merge = Merge::new(in_memory, &self.runs)?;
        let mut writer = Writer::new(self.work.path())?;
        while let Some(item) = merge.next()? {
            writer.add(item)?;
        }
        let built = writer.finish(self.names, target)?;
        Ok(Built {
            runs: self.runs.len(),
            ..built
        })
    }
}

/// Sorts `batch` and writes it to a run file; empties it.
fn write_run(batch: &mut Vec<Item>, dir: &Path, n: usize) -> Result<PathBuf> {
    batch.sort_by(Item::order);
    let path = dir.join(format!("run-{n}"));
    let mut out = BufWriter::new(File::create(&path)?);
    for item in batch.drain(..) {
        item.write(&mut out)?;
    }
    out.flush()?;
    Ok(path)
}

/// The sorted runs and the last, in-memory batch, merged into one ordered stream.
struct Merge {
    readers: Vec<BufReader<File>>,
    memory: std::vec::IntoIter<Item>,
    heap: BinaryHeap<Head>,
}

/// The next item of one source: runs by number, the memory batch as `usize::MAX`.
struct Head {
    item: Item,
    source: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    // Reversed: BinaryHeap pops the greatest, the merge wants the least.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .item
            .order(&self.item)
            .then_with(|| other.source.cmp(&self.source))
    }
}

impl Merge {
    fn new(mut memory: Vec<Item>, runs: &[PathBuf]) -> Result<Merge> {
        memory.sort_by(Item::order);
        let mut merge = Merge {
            readers: Vec::new(),
            memory: memory.into_iter(),
            heap: BinaryHeap::new(),
        };
        for (source, run) in runs.iter().enumerate() {
            let mut reader = BufReader::with_capacity(64 << 10, File::open(run)?);
            if let Some(item) = Item::read(&mut reader)? {
                merge.heap.push(Head { item, source });
            }
            merge.readers.push(reader);
        }
        if let Some(item) = merge.memory.next() {
            merge.heap.push(Head {
                item,
                source: usize::MAX,
            });
        }
        Ok(merge)
    }

    fn next(&mut self) -> Result<Option<Item>> {
        let Some(Head { item, source }) = self.heap.pop() else {
            return Ok(None);
        };
        let next = if source == usize::MAX {
            self.memory.next()
        } else {
            Item::read(&mut self.readers[source])?
        };
        if let Some(next) = next {
            self.heap.push(Head { item: next, source });
        }
        Ok(Some(item))
    }
}

/// A directory whose subtree is still being read.
struct Open {
    index: u64,
    path: Vec<u8>,
    record: DirRecord,
    /// Where the search for its next subdirectory's entry goes on.
    cursor: u64,
}

/// The sections, each written in order to a file of its own, and the stack of open directories.
struct Writer {
    entries: BufWriter<File>,
    names: BufWriter<File>,
    dirs: BufWriter<File>,
    paths: BufWriter<File>,
    files: [PathBuf; 4],
    entry_count: u64,
    names_len: u64,
    dir_count: u64,
    paths_len: u64,
    stack: Vec<Open>,
}

fn is_ancestor(dir: &[u8], of: &[u8]) -> bool {
    dir.is_empty() || (of.len() > dir.len() && of.starts_with(dir) && of[dir.len()] == b'/')
}

impl Writer {
    fn new(dir: &Path) -> Result<Writer> {
        let files = ["entries", "names", "dirs", "paths"].map(|n| dir.join(n));
        let open = |p: &PathBuf| -> Result<BufWriter<File>> {
            Ok(BufWriter::with_capacity(
                256 << 10,
                File::options()
                    .create_new(true)
                    .read(true)
                    .write(true)
                    .open(p)?,
            ))
        };
        Ok(Writer {
            entries: open(&files[0])?,
            names: open(&files[1])?,
            dirs: open(&files[2])?,
            paths: open(&files[3])?,
            files,
            entry_count: 0,
            names_len: 0,
            dir_count: 0,
            paths_len: 0,
            stack: Vec::new(),
        })
    }

    fn add(&mut self, item: Item) -> Result<()> {
        if item.marker {
            return self.open_dir(&item.parent);
        }
        // Entries of a directory that was not listed itself (a path given below the top to
        // borg create): an implied one.
        if self.stack.last().is_none_or(|top| top.path != item.parent) {
            self.open_dir(&item.parent)?;
        }
        let name = (self.names_len, item.name.len() as u32);
        self.names.write_all(&item.name)?;
        self.names_len += item.name.len() as u64;
        let target = (self.names_len, item.target.len() as u32);
        self.names.write_all(&item.target)?;
        self.names_len += item.target.len() as u64;
        let record = EntryRecord {
            name,
            kind: item.kind,
            mode: item.mode,
            uid: item.uid,
            gid: item.gid,
            size: item.size,
            mtime_us: item.mtime_us,
            target,
            dir: 0,
        };
        self.entries.write_all(&record.encode())?;
        self.entry_count += 1;
        let top = self.stack.last_mut().expect("a directory is open");
        top.record.count += 1;
        if item.kind == Kind::File.code() {
            top.record.size += item.size;
            top.record.files += 1;
        }
        Ok(())
    }

    /// Starts the record of the directory at `path`: closes the open ones that are not above it,
    /// and points its entry in its parent at it.
    fn open_dir(&mut self, path: &[u8]) -> Result<()> {
        while let Some(top) = self.stack.last() {
            if is_ancestor(&top.path, path) {
                break;
            }
            self.close_top()?;
        }
        let index = self.dir_count;
        let record = DirRecord {
            path: (self.paths_len, path.len() as u32),
            first: self.entry_count,
            ..Default::default()
        };
        self.paths.write_all(path)?;
        self.paths_len += path.len() as u64;
        self.dirs.write_all(&record.encode())?;
        self.dir_count += 1;
        if let Some(parent) = self.stack.last_mut()
            && !path.is_empty()
        {
            let name = &path[path.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1)..];
            link_entry(&mut self.entries, &mut self.names, parent, name, index)?;
        }
        self.stack.push(Open {
            index,
            path: path.to_vec(),
            cursor: record.first,
            record,
        });
        Ok(())
    }

    /// Writes the top directory's final record and adds its subtree to its parent's.
    fn close_top(&mut self) -> Result<()> {
        let open = self.stack.pop().expect("an open directory");
        self.dirs.flush()?;
        self.dirs
            .get_ref()
            .write_all_at(&open.record.encode(), open.index * DIR_LEN)?;
        if let Some(parent) = self.stack.last_mut() {
            parent.record.size += open.record.size;
            parent.record.files += open.record.files;
        }
        Ok(())
    }

    fn finish(mut self, names: Names, target: &Path) -> Result<Built> {
        while !self.stack.is_empty() {
            self.close_top()?;
        }
        for section in [
            &mut self.entries,
            &mut self.names,
            &mut self.dirs,
            &mut self.paths,
        ] {
            section.flush()?;
        }
        let users = serde_json::to_vec(&names)?;
        let lengths = [
            self.entry_count * ENTRY_LEN,
            self.names_len,
            self.dir_count * DIR_LEN,
            self.paths_len,
            users.len() as u64,
        ];
        let mut header = Header {
            entries: self.entry_count,
            dirs: self.dir_count,
            ..Default::default()
        };
        let mut at = HEADER_LEN;
        for (section, len) in header.sections.iter_mut().zip(lengths) {
            *section = (at, len);
            at += len;
        }
        let dir = target.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut out = tempfile::NamedTempFile::new_in(dir)?;
        {
            let mut w = BufWriter::with_capacity(1 << 20, out.as_file_mut());
            w.write_all(&header.encode())?;
            for path in &self.files {
                let mut section = File::open(path)?;
                section.seek(SeekFrom::Start(0))?;
                io::copy(&mut section, &mut w)?;
            }
            w.write_all(&users)?;
            w.flush()?;
        }
        out.as_file().sync_all()?;
        let bytes = out.as_file().metadata()?.len();
        if bytes != at {
            bail!("the index came out {bytes} bytes long, not {at}");
        }
        out.persist(target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        Ok(Built {
            entries: self.entry_count,
            dirs: self.dir_count,
            bytes,
            runs: 0,
        })
    }
}

/// Points the entry `name` of the open directory `parent` at directory record `index`, searching
/// forward from where the last search stopped: its subdirectories open in the order of their
/// names, which is the order of its entries.
fn link_entry(
    entries: &mut BufWriter<File>,
    names: &mut BufWriter<File>,
    parent: &mut Open,
    name: &[u8],
    index: u64,
) -> Result<()> {
    entries.flush()?;
    names.flush()?;
    let end = parent.record.first + parent.record.count;
    let mut record = [0u8; ENTRY_LEN as usize];
    while parent.cursor < end {
        let at = parent.cursor * ENTRY_LEN;
        entries.get_ref().read_exact_at(&mut record, at)?;
        let mut entry = EntryRecord::decode(&record);
        parent.cursor += 1;
        if entry.kind != Kind::Dir.code() || entry.name.1 as usize != name.len() {
            continue;
        }
        let mut seen = vec![0u8; name.len()];
        names.get_ref().read_exact_at(&mut seen, entry.name.0)?;
        if seen == name {
            entry.dir = index + 1;
            entries.get_ref().write_all_at(&entry.encode(), at)?;
            return Ok(());
        }
    }
    Ok(())
}
