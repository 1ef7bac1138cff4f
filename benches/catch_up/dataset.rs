//! The datasets, and one dataset's world: a volume filled with it, a remote, and the app that
//! keeps rewriting 1% of the files.

use std::path::PathBuf;

use crate::common::{Env, Remote, docker, docker_output};

/// Random files of one size, 100 to a directory.
pub struct Dataset {
    /// How the tables name it.
    pub label: &'static str,
    /// Number of files.
    pub files: usize,
    /// Size of each file.
    pub file_bytes: usize,
}

/// 10,000 files of 13,000 bytes (130 MB) in 100 directories.
pub const TEN_K: Dataset = Dataset {
    label: "10,000 (130 MB)",
    files: 10_000,
    file_bytes: 13_000,
};

/// 100,000 files of 1,000 bytes (100 MB) in 1,000 directories.
pub const HUNDRED_K: Dataset = Dataset {
    label: "100,000 (100 MB)",
    files: 100_000,
    file_bytes: 1_000,
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

    /// The shell script that fills /data: `split` numbers the files, and each run of 100
    /// consecutive numbers moves into its directory.
    pub fn fill_script(&self) -> String {
        assert_eq!(
            PER_DIR, 100,
            "the glob below takes two digits per directory"
        );
        let digits = self.dir_digits() + 2;
        format!(
            "cd /data && head -c {total} /dev/urandom | split -b {size} -a {digits} -d - f && \
             for d in $(seq -w 0 {last}); do mkdir d$d && mv f$d?? d$d/; done",
            total = self.files * self.file_bytes,
            size = self.file_bytes,
            last = self.dirs() - 1,
        )
    }

    /// The directories the app rewrites: the first 1% (one of 100, ten of 1,000).
    pub fn hot_dirs(&self) -> Vec<String> {
        (0..self.dirs() / 100)
            .map(|i| format!("d{i:0width$}", width = self.dir_digits()))
            .collect()
    }

    /// The app: rewrites each changing file in place in turn, 10 ms apart, forever.
    pub fn app_script(&self) -> String {
        let globs: Vec<String> = self
            .hot_dirs()
            .iter()
            .map(|d| format!("/data/{d}/*"))
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
}

impl Setup {
    /// Creates the volume, fills it, starts the remote and the app.
    pub fn new(dataset: &'static Dataset) -> Setup {
        let env = Env::new("catchup");
        let remote = env.remote();
        let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
        env.in_volume(&volume, &dataset.fill_script());
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

    /// The directories of the changing files, on the host.
    pub fn hot_paths(&self) -> Vec<PathBuf> {
        let data = self.data_dir();
        self.dataset
            .hot_dirs()
            .iter()
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
