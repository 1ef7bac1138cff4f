//! The datasets, and one dataset's world: a volume filled with it, a remote, and the app that
//! keeps rewriting some of the files (1% of them, or 101 of the 1,000,000).

use std::path::PathBuf;
use std::time::Instant;

use crate::common::{Env, Remote, docker, docker_output};

/// Random files of one size, 100 to a directory.
pub struct Dataset {
    /// How the tables name it.
    pub label: &'static str,
    /// Number of files.
    pub files: usize,
    /// Size of each file.
    pub file_bytes: usize,
    /// Files the app rewrites: those of the first `changing / 100` directories, then the last
    /// `changing % 100` files of the last directory.
    pub changing: usize,
    /// How the volume is filled.
    pub fill: Fill,
}

/// How a volume is filled with its dataset, in a throwaway container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// `head -c | split` into one directory, then a `mv` of each run of 100 into its directory
    /// (each `mv` globs the whole directory: fine to 100,000 files, not at 1,000,000).
    Split,
    /// One perl loop: `mkdir` each directory, then `open`, `print` and `close` each file, its
    /// bytes cut from one read of /dev/urandom per directory. 1,000,000 files in 15 to 22 s in a
    /// container on this machine (on the host, under another job's load: 32 to 94 s, where one
    /// `head | split` per directory took 87 s, and `tar -x` of the same tree from a file 25 s,
    /// the stream not even made).
    Perl,
}

/// 10,000 files of 13,000 bytes (130 MB) in 100 directories; the app rewrites 1%.
pub const TEN_K: Dataset = Dataset {
    label: "10,000 (130 MB)",
    files: 10_000,
    file_bytes: 13_000,
    changing: 100,
    fill: Fill::Split,
};

/// 100,000 files of 1,000 bytes (100 MB) in 1,000 directories; the app rewrites 1%.
pub const HUNDRED_K: Dataset = Dataset {
    label: "100,000 (100 MB)",
    files: 100_000,
    file_bytes: 1_000,
    changing: 1_000,
    fill: Fill::Split,
};

/// 1,000,000 files of 100 bytes (100 MB) in 10,000 directories; the app rewrites 101 of them
/// (0.01%): the 100 of the first directory and the last file of the last.
pub const MILLION: Dataset = Dataset {
    label: "1,000,000 (100 MB)",
    files: 1_000_000,
    file_bytes: 100,
    changing: 101,
    fill: Fill::Perl,
};

/// Files per directory.
const PER_DIR: usize = 100;

impl Dataset {
    fn dirs(&self) -> usize {
        self.files / PER_DIR
    }

    /// Digits of a directory's number (`d00`..`d99`, `d000`..`d999`).
    fn dir_digits(&self) -> usize {
        (self.dirs() - 1).to_string().len()
    }

    /// Digits of a file's number: files are numbered across the volume (`d37/f3700`..`f3799`).
    fn file_digits(&self) -> usize {
        self.dir_digits() + 2
    }

    /// The shell script that fills /data (see [`Fill`]); either way directory `dN` holds the
    /// files numbered `N00` to `N99`.
    pub fn fill_script(&self) -> String {
        assert_eq!(
            PER_DIR, 100,
            "the glob below takes two digits per directory"
        );
        let digits = self.file_digits();
        match self.fill {
            Fill::Split => format!(
                "cd /data && head -c {total} /dev/urandom | split -b {size} -a {digits} -d - f && \
                 for d in $(seq -w 0 {last}); do mkdir d$d && mv f$d?? d$d/; done",
                total = self.files * self.file_bytes,
                size = self.file_bytes,
                last = self.dirs() - 1,
            ),
            Fill::Perl => format!(
                "cd /data && perl -e 'open(my $r, \"<\", \"/dev/urandom\") or die $!; \
                 for my $d (0..{last}) {{ my $dir = sprintf(\"d%0{dir_digits}d\", $d); \
                 mkdir $dir or die \"$dir: $!\"; \
                 read($r, my $b, {chunk}) == {chunk} or die \"/dev/urandom\"; \
                 for my $i (0..{per_last}) {{ \
                 open(my $f, \">\", sprintf(\"%s/f%0{digits}d\", $dir, $d * {PER_DIR} + $i)) \
                 or die $!; print $f substr($b, $i * {size}, {size}); close $f or die $!; }} }}'",
                last = self.dirs() - 1,
                dir_digits = self.dir_digits(),
                chunk = PER_DIR * self.file_bytes,
                per_last = PER_DIR - 1,
                size = self.file_bytes,
            ),
        }
    }

    fn dir_name(&self, i: usize) -> String {
        format!("d{i:0width$}", width = self.dir_digits())
    }

    /// The directories whose every file the app rewrites (one of 100, ten of 1,000, one of
    /// 10,000).
    pub fn hot_dirs(&self) -> Vec<String> {
        (0..self.changing / PER_DIR)
            .map(|i| self.dir_name(i))
            .collect()
    }

    /// The other files the app rewrites, relative to the volume's root: the last
    /// `changing % 100` of the last directory.
    pub fn hot_files(&self) -> Vec<String> {
        let last = self.dir_name(self.dirs() - 1);
        (self.files - self.changing % PER_DIR..self.files)
            .map(|n| format!("{last}/f{n:0width$}", width = self.file_digits()))
            .collect()
    }

    /// The app: rewrites each changing file in place in turn, 10 ms apart, forever.
    pub fn app_script(&self) -> String {
        let globs: Vec<String> = self
            .hot_dirs()
            .iter()
            .map(|d| format!("/data/{d}/*"))
            .chain(self.hot_files().iter().map(|f| format!("/data/{f}")))
            .collect();
        format!(
            "while :; do for f in {}; do head -c {} /dev/urandom > $f; sleep 0.01; done; done",
            globs.join(" "),
            self.file_bytes
        )
    }
}

/// One dataset's world. Dropping it removes everything (the `Env` does).
pub struct Setup {
    /// The harness: network, keys, and cleanup.
    pub env: Env,
    /// The remote, on the env's network.
    pub remote: Remote,
    /// The labelled volume.
    pub volume: String,
    /// The app container rewriting 1% of the volume.
    pub app: String,
    /// What is in the volume.
    pub dataset: &'static Dataset,
    /// The sidecar's state volume (not backed up).
    pub state: String,
    /// How long the fill took, in seconds.
    pub fill_seconds: f64,
}

impl Setup {
    /// Creates the volume, fills it, starts the remote and the app.
    pub fn new(dataset: &'static Dataset) -> Setup {
        let env = Env::new("catchup");
        let remote = env.remote();
        let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
        let filling = Instant::now();
        env.in_volume(&volume, &dataset.fill_script());
        let fill_seconds = filling.elapsed().as_secs_f64();
        eprintln!("{}: filled in {fill_seconds:.1} s", dataset.label);
        let files = env.in_volume(&volume, "find /data -type f | wc -l");
        assert_eq!(files.trim(), dataset.files.to_string(), "dataset filled");
        let app = env.app("app", &volume, &dataset.app_script());
        // As the compose file has it: the state directory (and so the staging area) on a volume.
        let state = env.volume("state", &[]);
        Setup {
            env,
            remote,
            volume,
            app,
            dataset,
            state,
            fill_seconds,
        }
    }

    /// The volume's data directory on the host.
    pub fn data_dir(&self) -> PathBuf {
        let mountpoint = docker(&[
            "volume",
            "inspect",
            "--format",
            "{{.Mountpoint}}",
            &self.volume,
        ]);
        PathBuf::from(mountpoint.trim())
    }

    /// The directories of the changing files and the other changing files, on the host.
    pub fn hot_paths(&self) -> Vec<PathBuf> {
        let data = self.data_dir();
        self.dataset
            .hot_dirs()
            .iter()
            .chain(&self.dataset.hot_files())
            .map(|d| data.join(d))
            .collect()
    }

    /// Starts a sidecar with these variables over the harness's, after removing one that a
    /// failed section may have left behind (its name is fixed).
    pub fn sidecar(&self, vars: &[(&str, &str)]) -> String {
        docker_output(&["rm", "-f", &format!("{}-sidecar", self.env.name)]);
        let state = format!("{}:/var/lib/backup-sidecar", self.state);
        self.env
            .sidecar_with(&self.remote, vars, &["-v", state.as_str()])
    }

    /// Empties the remote's mirror.
    pub fn clear_mirror(&self) {
        self.env.on_remote(&self.remote, "rm -rf /backup/mirror/*");
    }
}
