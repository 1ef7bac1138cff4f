//! The floor: the least a freeze that does only local work can last. The app is paused through the
//! Docker API (as the sidecar pauses it), the volume's data directory is walked with one lstat per
//! entry in one thread, the changing files are read, and the app is unpaused; the floor is the
//! time of the whole, from the pause request to the unpause's answer.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bollard::Docker;
use tokio::runtime::Runtime;

/// One floor measurement, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Pause and unpause calls together.
    pub pause_unpause_ms: f64,
    /// The lstat walk.
    pub walk_ms: f64,
    /// Reading the changing files.
    pub read_ms: f64,
    /// All of it: what the freeze would last.
    pub total_ms: f64,
    /// Entries the walk saw.
    pub entries: usize,
    /// Bytes read from the changing files.
    pub read_bytes: u64,
}

/// A Docker API client, with a runtime to drive it from the bench's synchronous code.
pub struct Prober {
    runtime: Runtime,
    docker: Docker,
}

impl Prober {
    /// Connects to the local engine and agrees on an API version with it.
    pub fn connect() -> Prober {
        let runtime = Runtime::new().expect("a tokio runtime");
        let docker = runtime
            .block_on(async {
                Docker::connect_with_local_defaults()?
                    .negotiate_version()
                    .await
            })
            .expect("the Docker API answers");
        Prober { runtime, docker }
    }

    /// Pauses `app`, walks `data`, reads the changing files (`hot`: directories whose every file
    /// changes, and single files), unpauses `app`.
    pub fn floor(&self, app: &str, data: &Path, hot: &[PathBuf]) -> Floor {
        let started = Instant::now();
        self.call(|d| async move { d.pause_container(app).await });
        let paused = started.elapsed();
        // Unpause even when the local work fails, then report the failure.
        let work = std::panic::catch_unwind(|| (timed(|| walk(data)), timed(|| read(hot))));
        let unpause_started = Instant::now();
        self.call(|d| async move { d.unpause_container(app).await });
        let unpaused = unpause_started.elapsed();
        let total = started.elapsed();
        let ((walk_ms, entries), (read_ms, read_bytes)) =
            work.unwrap_or_else(|p| std::panic::resume_unwind(p));
        Floor {
            pause_unpause_ms: ms(paused + unpaused),
            walk_ms,
            read_ms,
            total_ms: ms(total),
            entries,
            read_bytes,
        }
    }

    fn call<F, Fut>(&self, request: F)
    where
        F: FnOnce(Docker) -> Fut,
        Fut: Future<Output = Result<(), bollard::errors::Error>>,
    {
        self.runtime
            .block_on(request(self.docker.clone()))
            .expect("the Docker API call succeeds");
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Entries under `root` (not counting it), each lstat'ed once; one thread, depth first.
fn walk(root: &Path) -> usize {
    let mut entries = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("the volume is readable") {
            let entry = entry.expect("a directory entry");
            // DirEntry::metadata does not follow symlinks: an lstat (fstatat) per entry.
            let meta = entry.metadata().expect("lstat");
            entries += 1;
            if meta.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    entries
}

/// Reads every file of the directories in `hot`, and the files in `hot`; returns the bytes read.
fn read(hot: &[PathBuf]) -> u64 {
    let read_file = |path: &Path| {
        std::fs::read(path)
            .expect("a changing file is readable")
            .len() as u64
    };
    let mut bytes = 0;
    for path in hot {
        if !path.is_dir() {
            bytes += read_file(path);
            continue;
        }
        for entry in std::fs::read_dir(path).expect("a changing directory is readable") {
            bytes += read_file(&entry.expect("a directory entry").path());
        }
    }
    bytes
}

/// The value of `work` with the milliseconds it took.
fn timed<T>(work: impl FnOnce() -> T) -> (f64, T) {
    let started = Instant::now();
    let value = work();
    (ms(started.elapsed()), value)
}
