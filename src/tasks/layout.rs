//! Where things live: the sidecar's working files in `BACKUP_STATE_DIR`, the host's files below
//! `BACKUP_HOST_ROOT`, and what a compose project's mirror directory holds. The use cases take
//! these names from here rather than from each other.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::engine::plan::{Origin, PlannedVolume};

/// In `BACKUP_STATE_DIR`: the staging area of the group being frozen, one directory per volume.
pub const STAGING_DIR: &str = "staging";
/// In `BACKUP_STATE_DIR`: each compose project's files, copied before its group's passes.
const PROJECTS_DIR: &str = "projects";
/// At the top of a project's mirror directory: the project's list of what it holds.
pub const MANIFEST: &str = "manifest.json";
/// In a project's mirror directory: the project's files, by host path.
pub const FILES_DIR: &str = "files";

/// The staging area.
pub fn staging(config: &Config) -> PathBuf {
    config.state_dir.join(STAGING_DIR)
}

/// Where a run reads a source from: a volume's `_data`, a bind's path below the host's root, a
/// project's copy.
pub fn source_path(config: &Config, volume: &PlannedVolume) -> PathBuf {
    match &volume.origin {
        Origin::Volume => config.volumes_dir.join(&volume.name).join("_data"),
        Origin::Bind(path) => host_path(config, path),
        Origin::Project(_) => config.state_dir.join(PROJECTS_DIR).join(&volume.name),
    }
}

/// The host path `path` as the sidecar sees it, below `BACKUP_HOST_ROOT`.
pub fn host_path(config: &Config, path: &str) -> PathBuf {
    let root = config.host_root.as_deref().unwrap_or(Path::new("/"));
    root.join(path.trim_start_matches('/'))
}
