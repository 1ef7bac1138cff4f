//! Test harness for the end-to-end tests: a real Docker engine, the remote image built from
//! `compose/remote/`, and the sidecar image built from this repository's Dockerfile (`prebuilt`).
//! `scripts/test.sh` builds both images; these helpers refuse to run without them rather than skip.
//!
//! Every test gets an [`Env`]: a unique name (also its compose project, passed to the sidecar as
//! `BACKUP_PROJECTS` so tests never see each other's volumes), a network, keys, and cleanup of
//! everything it created, labelled `bs-test=1` for the CI sweep. What it stands up is in
//! [`engine`] (containers, volumes, the engine's state), [`remote`] (the remote, its mirror and
//! borg repository) and [`sidecar`] (the sidecar, its log events, restores); [`prometheus`] and
//! [`receivers`] are for the metrics and notification tests.

// Each test file is a crate of its own that uses some of these helpers.
#![allow(dead_code)]

pub mod browser;
pub mod copy_targets;
mod engine;
pub mod prometheus;
pub mod receivers;
mod remote;
mod sidecar;

pub use engine::*;
pub use remote::*;
pub use sidecar::*;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test's world.
pub struct Env {
    /// Unique name: prefix of every resource, and the compose project of the test's containers.
    pub name: String,
    /// The test's network.
    pub network: String,
    /// Holds the client key and known_hosts, mounted at /ssh in the sidecar.
    pub ssh_dir: tempfile::TempDir,
    /// What the test created (the `engine` module adds to these), removed when it ends.
    containers: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
}

impl Env {
    /// Sets up a test: checks the images, creates the network and a client key.
    pub fn new(test: &str) -> Env {
        require_image(SIDECAR_IMAGE);
        require_image(REMOTE_IMAGE);
        require_image(APP_IMAGE);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("bst-{test}-{}-{n}", std::process::id());
        let network = format!("{name}-net");
        docker(&["network", "create", "--label", TEST_LABEL, &network]);
        let ssh_dir = tempfile::tempdir().unwrap();
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(ssh_dir.path().join("id_ed25519"))
            .status()
            .expect("ssh-keygen runs");
        assert!(status.success());
        Env {
            name,
            network,
            ssh_dir,
            containers: Mutex::new(Vec::new()),
            volumes: Mutex::new(Vec::new()),
        }
    }

    /// A path in the ssh directory.
    pub fn ssh_path(&self, file: &str) -> PathBuf {
        self.ssh_dir.path().join(file)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let containers = self.containers.lock().unwrap().clone();
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            docker_output(&args);
        }
        for volume in self.volumes.lock().unwrap().iter() {
            docker_output(&["volume", "rm", "-f", volume]);
        }
        docker_output(&["network", "rm", &self.network]);
    }
}
