//! A compose project's own files: its compose files, `.env` files and the single files its
//! services bind-mount (configs), read from the labels compose puts on its containers. Each project
//! with a backed-up source keeps them, and a list of its sources, in one mirror directory, so that
//! any archive holds the whole project as it was.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::binds::{escape, never, under};
use super::{Origin, PlannedVolume, Selected};
use crate::engine::discover::{HostPath, Inventory, WORKING_DIR_LABEL};

/// What every project's mirror directory name starts with.
pub const PROJECT_PREFIX: &str = "_project-";

/// Host directories whose single files belong to the host, not to a project (`/etc/localtime`).
const SYSTEM_DIRS: &[&str] = &["/etc", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/boot"];

/// A project's files and sources: what its mirror directory's `manifest.json` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectFiles {
    /// The compose project's name.
    pub project: String,
    /// Its directory on the host.
    pub working_dir: String,
    /// Host paths of its regular files: compose files, `.env` files, bind-mounted configs.
    pub files: Vec<String>,
    /// Its volumes' names.
    pub volumes: Vec<String>,
    /// Host paths of its bind-mounted directories.
    pub binds: Vec<String>,
}

/// The mirror directory of `project`'s files: [`PROJECT_PREFIX`] and the name, every byte but
/// ASCII letters, digits, `.`, `_` and `-` written `%XX`.
pub fn project_dir_name(project: &str) -> String {
    format!("{PROJECT_PREFIX}{}", escape(project, "-"))
}

/// One source per compose project (within `scope`, `BACKUP_PROJECTS`) that `selected` sources
/// belong to and that compose made (its containers carry the working directory label). Without
/// the host's root a project gets a warning instead.
pub(super) fn entries<'a>(
    inventory: &'a Inventory,
    selected: &[Selected<'a>],
    scope: Option<&[String]>,
    warnings: &mut BTreeSet<String>,
) -> Vec<Selected<'a>> {
    let projects: BTreeSet<&str> = selected
        .iter()
        .flat_map(|s| s.projects.iter().map(String::as_str))
        .filter(|p| scope.is_none_or(|wanted| wanted.iter().any(|w| w == p)))
        .collect();
    let mut entries = Vec::new();
    for project in projects {
        let containers: Vec<_> = inventory
            .others()
            .filter(|c| c.project() == Some(project))
            .collect();
        let Some(working_dir) = containers
            .iter()
            .find_map(|c| c.labels.get(WORKING_DIR_LABEL))
        else {
            continue;
        };
        let Some(host) = &inventory.host else {
            warnings.insert(format!(
                "the files of compose project {project} (compose files, .env, configs) are not \
                 kept: mount the host's root read-only into the sidecar (- /:/host:ro) and set \
                 BACKUP_HOST_ROOT=/host"
            ));
            continue;
        };
        let mut files = BTreeSet::new();
        // Host paths compose reads, and whether it fails without them.
        let mut named: BTreeSet<(String, bool)> = BTreeSet::new();
        for c in &containers {
            let paths = c.project_files();
            for path in &paths.unresolved {
                warnings.insert(format!(
                    "compose project {project}: cannot tell where {path} is on the host (compose \
                     was given it relative to the directory it ran in, and {working_dir} is not \
                     that directory joined with the first compose file's); it is not kept: run \
                     compose with absolute -f and --env-file paths"
                ));
            }
            // Compose reads `.env` only when it is there.
            named.extend(paths.files.into_iter().map(|path| {
                let required = !path.ends_with("/.env");
                (path, required)
            }));
            for path in &c.binds {
                let system = SYSTEM_DIRS.iter().any(|dir| under(path, dir));
                if host.get(path) == Some(&HostPath::File)
                    && !system
                    && !never(path, &inventory.docker_root)
                {
                    files.insert(path.clone());
                }
            }
        }
        if let Some(references) = inventory.compose_references.get(project) {
            named.extend(
                references
                    .files
                    .iter()
                    .map(|n| (n.path.clone(), n.required)),
            );
            for problem in &references.problems {
                warnings.insert(format!(
                    "compose project {project}: {problem}; it is not kept"
                ));
            }
        }
        for (path, required) in named {
            match host.get(&path) {
                Some(HostPath::File) => {
                    files.insert(path);
                }
                _ if !required => {}
                _ => {
                    warnings.insert(format!(
                        "compose project {project}: {path} is not a file on the host; it is not \
                         kept"
                    ));
                }
            }
        }
        let mut volumes = Vec::new();
        let mut binds = Vec::new();
        for source in selected.iter().filter(|s| s.projects.contains(project)) {
            match &source.volume.origin {
                Origin::Volume => volumes.push(source.volume.name.clone()),
                Origin::Bind(path) => binds.push(path.clone()),
                Origin::Project(_) => {}
            }
        }
        entries.push(Selected {
            freezers: Vec::new(),
            hooks: Vec::new(),
            projects: BTreeSet::from([project.to_string()]),
            join: Some(project.to_string()),
            volume: PlannedVolume {
                name: project_dir_name(project),
                origin: Origin::Project(ProjectFiles {
                    project: project.to_string(),
                    working_dir: working_dir.clone(),
                    files: files.into_iter().collect(),
                    volumes,
                    binds,
                }),
                excludes: Vec::new(),
                untouched: Vec::new(),
            },
        });
    }
    entries
}
