//! Browsing archives: each archive's index ([`crate::catalog`]) is built once, from the guard's
//! streamed listing, after the snapshot that made it or when it is first opened; `ls` and the web
//! page read folders from it. Indexes of pruned archives are removed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use anyhow::{Context, Result, anyhow, bail};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::catalog::{self, Builder, Built, Catalog, Kind, RUN_BYTES};
use crate::config::Config;
use crate::format::human_bytes;
use crate::remote::borg;
use crate::remote::ssh::{Session, Ssh};

/// What the listing's reader is told.
enum Listed {
    Line(String),
    /// The listing ended well: the index may be written.
    End,
}

/// The index of `archive`, built now when there is none (`progress` hears the items read).
pub async fn ensure_index(
    config: &Config,
    ssh: &Ssh,
    archive: &str,
    progress: impl FnMut(u64) + Send + 'static,
    cancel: &CancellationToken,
) -> Result<PathBuf> {
    let target = catalog::index_path(&config.state_dir, archive);
    if target.exists() {
        return Ok(target);
    }
    let built = build_index(config, ssh, archive, progress, cancel).await?;
    info!(
        archive = %archive,
        entries = built.entries,
        dirs = built.dirs,
        bytes = built.bytes,
        "archive indexed"
    );
    Ok(target)
}

/// Streams the listing into a builder on a thread of its own; a bounded queue between them keeps
/// memory bounded whichever is faster.
async fn build_index(
    config: &Config,
    ssh: &Ssh,
    archive: &str,
    mut progress: impl FnMut(u64) + Send + 'static,
    cancel: &CancellationToken,
) -> Result<Built> {
    let borg_config = borg::repository(config)?;
    let target = catalog::index_path(&config.state_dir, archive);
    let scratch = target
        .parent()
        .context("the index has a directory")?
        .to_path_buf();
    let (send, receive) = mpsc::sync_channel::<Listed>(4096);
    let builder = tokio::task::spawn_blocking(move || -> Result<Option<Built>> {
        let mut builder = Builder::new(&scratch, RUN_BYTES)?;
        for listed in receive {
            match listed {
                Listed::Line(line) => {
                    builder.line(&line)?;
                    if builder.read % 100_000 == 0 {
                        progress(builder.read);
                    }
                }
                Listed::End => return builder.finish(&target).map(Some),
            }
        }
        // The listing failed: nothing is written.
        Ok(None)
    });
    let streamed = {
        let send = send.clone();
        let mut line = move |text: &str| {
            // A builder that failed says why when it is awaited.
            let _ = send.send(Listed::Line(text.to_string()));
        };
        borg::stream_archive(ssh, borg_config, archive, &mut line, cancel).await
    };
    if streamed.is_ok() {
        let _ = send.send(Listed::End);
    }
    drop(send);
    let built = builder
        .await
        .map_err(|e| anyhow!("the index builder failed: {e}"))?;
    streamed.with_context(|| format!("listing archive {archive}"))?;
    match built? {
        Some(built) => Ok(built),
        None => bail!("the listing of {archive} ended early"),
    }
}

/// Removes the indexes of archives the repository no longer holds.
pub async fn forget_pruned(config: &Config, ssh: &Ssh, cancel: &CancellationToken) -> Result<()> {
    let borg_config = borg::repository(config)?;
    let archives: Vec<String> = borg::list_archives(ssh, borg_config, cancel)
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    let removed = catalog::remove_others(&config.state_dir, &archives);
    if !removed.is_empty() {
        info!(archives = %removed.join(","), "removed the indexes of pruned archives");
    }
    Ok(())
}

/// Where an archive's index build stands, for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indexing {
    /// Waiting for the builds before it.
    Queued,
    /// Reading the listing: items so far.
    Reading(u64),
    /// It failed; a later request tries again.
    Failed(String),
}

/// Builds indexes one at a time in the background: after each snapshot, and when the page opens
/// an archive that has none. Outside the run lock: it only reads the repository (through the
/// guard's listing) and writes its own files, so runs and restores never wait for it.
#[derive(Clone)]
pub struct Indexer {
    send: tokio::sync::mpsc::UnboundedSender<String>,
    state: Arc<Mutex<BTreeMap<String, Indexing>>>,
}

impl Indexer {
    /// Starts the worker, until `cancel` fires.
    pub fn start(config: Config, cancel: CancellationToken) -> Indexer {
        let (send, mut receive) = tokio::sync::mpsc::unbounded_channel::<String>();
        let state: Arc<Mutex<BTreeMap<String, Indexing>>> = Arc::default();
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let archive = tokio::select! {
                    _ = cancel.cancelled() => return,
                    next = receive.recv() => match next {
                        Some(archive) => archive,
                        None => return,
                    },
                };
                set(&shared, &archive, Some(Indexing::Reading(0)));
                let progress = {
                    let shared = shared.clone();
                    let archive = archive.clone();
                    move |n| set(&shared, &archive, Some(Indexing::Reading(n)))
                };
                match index_and_forget(&config, &archive, progress, &cancel).await {
                    Ok(()) => set(&shared, &archive, None),
                    Err(e) => {
                        let message = format!("{e:#}");
                        warn!(archive = %archive, error = %message, "cannot index the archive");
                        set(&shared, &archive, Some(Indexing::Failed(message)));
                    }
                }
            }
        });
        Indexer { send, state }
    }

    /// Asks for `archive`'s index (nothing when it is queued or being built already).
    pub fn index(&self, archive: &str) {
        let mut state = self.state.lock().expect("the indexer's state");
        if matches!(
            state.get(archive),
            Some(Indexing::Queued | Indexing::Reading(_))
        ) {
            return;
        }
        state.insert(archive.to_string(), Indexing::Queued);
        let _ = self.send.send(archive.to_string());
    }

    /// Where `archive`'s build stands; `None` when none was asked for or it is done.
    pub fn state(&self, archive: &str) -> Option<Indexing> {
        self.state
            .lock()
            .expect("the indexer's state")
            .get(archive)
            .cloned()
    }
}

fn set(state: &Mutex<BTreeMap<String, Indexing>>, archive: &str, to: Option<Indexing>) {
    let mut state = state.lock().expect("the indexer's state");
    match to {
        Some(to) => state.insert(archive.to_string(), to),
        None => state.remove(archive),
    };
}

/// One archive indexed, and the indexes of pruned archives removed, over one connection.
async fn index_and_forget(
    config: &Config,
    archive: &str,
    progress: impl FnMut(u64) + Send + 'static,
    cancel: &CancellationToken,
) -> Result<()> {
    let session = Session::open(config, cancel).await?;
    let result = async {
        ensure_index(config, &session.ssh, archive, progress, cancel).await?;
        forget_pruned(config, &session.ssh, cancel).await
    }
    .await;
    session.close().await;
    result
}

/// `backup-sidecar ls ARCHIVE [PATH]`: the folder's entries, one line each (mode, owner, size,
/// time, name), read from the archive's index, which is built first if it is missing.
pub async fn ls(
    config: &Config,
    archive: &str,
    path: &str,
    cancel: &CancellationToken,
) -> Result<()> {
    let index = catalog::index_path(&config.state_dir, archive);
    if !index.exists() {
        eprintln!("indexing archive {archive} (once; later listings are instant) ...");
        let session = Session::open(config, cancel).await?;
        let built = ensure_index(
            config,
            &session.ssh,
            archive,
            |n| eprintln!("  {n} items read"),
            cancel,
        )
        .await;
        session.close().await;
        built?;
    }
    let catalog = Catalog::open(&index)?;
    let folder = catalog
        .folder(path, 0, u64::MAX)?
        .ok_or_else(|| anyhow!("archive {archive} has no directory {path:?}"))?;
    for entry in &folder.entries {
        let time = chrono::DateTime::from_timestamp_micros(entry.mtime_us)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        let suffix = match (&entry.kind, &entry.target) {
            (Kind::Dir, _) => "/".to_string(),
            (Kind::Link, Some(target)) => format!(" -> {target}"),
            _ => String::new(),
        };
        println!(
            "{} {:>8} {:>8} {:>10} {time} {}{suffix}",
            mode_text(entry.mode),
            catalog.names.user(entry.uid),
            catalog.names.group(entry.gid),
            human_bytes(entry.size),
            entry.name,
        );
    }
    println!(
        "{} entries, {} in {} file(s) below /{} (of {} items in {archive})",
        folder.total,
        human_bytes(folder.size),
        folder.files,
        folder.path,
        catalog.len()
    );
    Ok(())
}

/// `drwxr-xr-x` from `st_mode`.
pub fn mode_text(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '-',
    };
    let mut text = String::from(kind);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        let bit = 0o400 >> i;
        let special = match i {
            2 => (mode & 0o4000 != 0).then_some('s'),
            5 => (mode & 0o2000 != 0).then_some('s'),
            8 => (mode & 0o1000 != 0).then_some('t'),
            _ => None,
        };
        text.push(match (mode & bit != 0, special) {
            (true, Some(s)) => s,
            (false, Some(s)) => s.to_ascii_uppercase(),
            (true, None) => c,
            (false, None) => '-',
        });
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_writes_them() {
        assert_eq!(mode_text(0o040755), "drwxr-xr-x");
        assert_eq!(mode_text(0o100640), "-rw-r-----");
        assert_eq!(mode_text(0o104750 | 0o1000), "-rwsr-x--T");
        assert_eq!(mode_text(0o120777), "lrwxrwxrwx");
        assert_eq!(mode_text(0o102644), "-rw-r-Sr--");
    }
}
