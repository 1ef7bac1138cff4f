//! Discovery: what the Docker engine has, read through its API (bollard), as plain data for the plan.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptions};

use super::compose_file::{self, References};

/// Label Docker Compose puts on the containers and volumes of a project, valued with its name.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// Label `docker stack deploy` puts on the containers and volumes of a Swarm stack, valued with
/// its name: a stack is grouped as a compose project is.
pub const STACK_LABEL: &str = "com.docker.stack.namespace";

/// The compose project, or the Swarm stack, that these labels name.
pub fn project_of(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels
        .get(PROJECT_LABEL)
        .or_else(|| labels.get(STACK_LABEL))
        .map(String::as_str)
}
/// Label Docker Compose puts on a project's containers: the project's directory on the host.
pub const WORKING_DIR_LABEL: &str = "com.docker.compose.project.working_dir";
/// Label Docker Compose puts on a project's containers: its compose files, comma-separated.
pub const CONFIG_FILES_LABEL: &str = "com.docker.compose.project.config_files";
/// Label newer Docker Compose puts on a project's containers: its `--env-file`s, comma-separated.
pub const ENV_FILES_LABEL: &str = "com.docker.compose.project.environment_file";

/// One Docker volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Volume name.
    pub name: String,
    /// Volume driver (`local` is the only one we can read).
    pub driver: String,
    /// Volume labels.
    pub labels: BTreeMap<String, String>,
}

/// One container, running or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// Running and not paused.
    pub running: bool,
    /// Names of the named volumes it mounts.
    pub volumes: Vec<String>,
    /// Host paths it bind-mounts.
    pub binds: Vec<String>,
}

impl ContainerInfo {
    /// The compose project (or Swarm stack) the container belongs to, if any.
    pub fn project(&self) -> Option<&str> {
        project_of(&self.labels)
    }

    /// Its compose project's files, from the labels compose puts on it: the compose files, the
    /// `--env-file`s and the project directory's `.env`, as host paths. Empty without the labels.
    pub fn project_files(&self) -> ProjectPaths {
        let list = |label| -> Vec<&str> {
            self.labels
                .get(label)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let configs = list(CONFIG_FILES_LABEL);
        let working_dir = self.labels.get(WORKING_DIR_LABEL).map(String::as_str);
        let mut paths = ProjectPaths::default();
        for (i, path) in configs.iter().chain(&list(ENV_FILES_LABEL)).enumerate() {
            match resolve(working_dir, configs.first().copied(), path) {
                Some(host) => {
                    if i < configs.len() {
                        paths.compose.push(host.clone());
                    }
                    paths.files.push(host)
                }
                None => paths.unresolved.push(path.to_string()),
            }
        }
        if let Some(dir) = working_dir.filter(|d| d.starts_with('/')) {
            paths
                .files
                .push(format!("{}/.env", dir.trim_end_matches('/')));
        }
        paths.files.sort();
        paths.files.dedup();
        paths.unresolved.sort();
        paths.unresolved.dedup();
        paths
    }
}

/// A compose project's files as its labels name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectPaths {
    /// Host paths, the compose files among them.
    pub files: Vec<String>,
    /// Host paths of the compose files, in the order compose read them.
    pub compose: Vec<String>,
    /// Paths as the labels give them, whose place on the host cannot be told.
    pub unresolved: Vec<String>,
}

/// The host path of `path`, a compose file or `--env-file` as a project's labels name it.
///
/// Compose v2 writes absolute paths. Compose v1 writes them as it was given them, relative to the
/// directory it ran in, which it does not record; it does record the project's directory, which
/// is that directory joined with the first compose file's directory (without
/// `--project-directory`). So a path relative to where compose ran is rewritten relative to the
/// first compose file's directory and joined with the project's: `sub/compose.yml` run in `/p`
/// gives the directory `/p/sub`, and `my.env` is `/p/sub/../my.env`. A path that climbs out of
/// the invocation directory less than the first compose file does cannot be placed: `None`.
fn resolve(working_dir: Option<&str>, first: Option<&str>, path: &str) -> Option<String> {
    if path.starts_with('/') {
        return Some(normalize(&[], path));
    }
    let working_dir = working_dir.filter(|d| d.starts_with('/'))?;
    let (first_ups, first_dir) = relative_parts(first?.rsplit_once('/').map_or("", |(d, _)| d));
    let (ups, rest) = relative_parts(path);
    if first.is_some_and(|f| f.starts_with('/')) || ups < first_ups {
        return None;
    }
    let climb = first_dir.len() + ups - first_ups;
    let mut components: Vec<&str> = vec![".."; climb];
    components.extend(rest);
    Some(normalize(&components, working_dir))
}

/// A relative path as the number of `..` it starts with and its other components.
fn relative_parts(path: &str) -> (usize, Vec<&str>) {
    let mut ups = 0;
    let mut rest: Vec<&str> = Vec::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            if rest.pop().is_none() {
                ups += 1;
            }
        } else {
            rest.push(part);
        }
    }
    (ups, rest)
}

/// The absolute path `base` followed by `components`, with `.` and `..` taken away; `..` stops at
/// the root.
fn normalize(components: &[&str], base: &str) -> String {
    compose_file::join(base, &components.join("/"))
}

/// What the host has at a path, seen through `BACKUP_HOST_ROOT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPath {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// Nothing (or it cannot be read).
    Missing,
    /// A symbolic link: its target would be read in the sidecar's own file system, not the
    /// host's, so it is not followed.
    Link,
    /// A socket, device, fifo: never backed up.
    Special,
}

/// Everything the plan needs to know about the engine.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// All volumes.
    pub volumes: Vec<VolumeInfo>,
    /// All containers.
    pub containers: Vec<ContainerInfo>,
    /// The sidecar's own container id, when it runs in one.
    pub self_id: Option<String>,
    /// What the host has at each bind source and compose project file; `None` without
    /// `BACKUP_HOST_ROOT`.
    pub host: Option<BTreeMap<String, HostPath>>,
    /// The engine's data directory on the host (`/var/lib/docker`): binds into it are the
    /// engine's business, never backed up.
    pub docker_root: String,
    /// What each compose project's compose files name (env files, includes), by project; empty
    /// without `BACKUP_HOST_ROOT`.
    pub compose_references: BTreeMap<String, References>,
}

impl Inventory {
    /// Whether `container` is the sidecar's own: it must never freeze or stop itself.
    pub fn is_self(&self, container: &ContainerInfo) -> bool {
        self.is_self_id(&container.id)
    }

    /// Whether the container `id` is the sidecar's own (one the engine may list no more).
    pub fn is_self_id(&self, id: &str) -> bool {
        // Either id may be the short form of the other (the engine lists full ids, a caller may
        // hold a short one), so a prefix in either direction counts.
        self.self_id
            .as_deref()
            .is_some_and(|own| id.starts_with(own) || own.starts_with(id))
    }

    /// All containers but the sidecar's own, in inventory order.
    pub fn others(&self) -> impl Iterator<Item = &ContainerInfo> {
        self.containers.iter().filter(|c| !self.is_self(c))
    }
}

/// Connects to the engine named by `DOCKER_HOST` (or the local socket) and agrees on an API version.
pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_defaults().context("cannot set up the Docker client")?;
    docker
        .negotiate_version()
        .await
        .context("cannot reach the Docker engine")
}

/// The engine's host name, made safe for archive names: the default archive prefix, and the host
/// that notifications name.
pub async fn engine_name(docker: &Docker) -> Result<String> {
    let name = docker
        .info()
        .await
        .context("cannot ask the Docker engine for its name")?
        .name
        .unwrap_or_default();
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Ok(if name.is_empty() {
        "docker".into()
    } else {
        name
    })
}

/// Reads all volumes and containers, and, with `host_root` (`BACKUP_HOST_ROOT`), what the host
/// has at their bind sources and compose project files.
pub async fn inventory(docker: &Docker, host_root: Option<&Path>) -> Result<Inventory> {
    let volumes = docker
        .list_volumes(None::<ListVolumesOptions>)
        .await
        .context("cannot list volumes")?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| VolumeInfo {
            name: v.name,
            driver: v.driver,
            labels: v.labels.into_iter().collect(),
        })
        .collect();
    let containers = docker
        .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
        .await
        .context("cannot list containers")?
        .into_iter()
        .filter_map(|c| {
            let id = c.id?;
            let name = c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_else(|| id.chars().take(12).collect());
            // A container somebody else paused is already still: we leave it alone.
            let running = c.state.map(|s| s.to_string()).as_deref() == Some("running");
            let mut volumes = Vec::new();
            let mut binds = Vec::new();
            for mount in c.mounts.unwrap_or_default() {
                match (
                    mount.typ.map(|t| t.to_string()).as_deref(),
                    mount.name,
                    mount.source,
                ) {
                    (Some("volume"), Some(name), _) => volumes.push(name),
                    (Some("bind"), _, Some(source)) if source.starts_with('/') => {
                        binds.push(source)
                    }
                    _ => {}
                }
            }
            Some(ContainerInfo {
                id,
                name,
                labels: c.labels.unwrap_or_default().into_iter().collect(),
                running,
                volumes,
                binds,
            })
        })
        .collect::<Vec<ContainerInfo>>();
    let docker_root = docker
        .info()
        .await
        .ok()
        .and_then(|i| i.docker_root_dir)
        .unwrap_or_else(|| "/var/lib/docker".into());
    let mut compose_references = BTreeMap::new();
    let host = host_root.map(|root| {
        let mut host: BTreeMap<String, HostPath> = containers
            .iter()
            .flat_map(|c| c.binds.iter().cloned().chain(c.project_files().files))
            .map(|path| {
                let kind = look(root, &path);
                (path, kind)
            })
            .collect();
        compose_references = read_compose_files(root, &containers, &host);
        for named in compose_references.values().flat_map(|r| &r.files) {
            host.entry(named.path.clone())
                .or_insert_with(|| look(root, &named.path));
        }
        host
    });
    Ok(Inventory {
        volumes,
        containers,
        self_id: own_container_id(),
        host,
        docker_root,
        compose_references,
    })
}

/// What the compose files of each project (those that are files on the host) name.
fn read_compose_files(
    root: &Path,
    containers: &[ContainerInfo],
    host: &BTreeMap<String, HostPath>,
) -> BTreeMap<String, References> {
    let mut by_project: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in containers {
        if let Some(project) = c.project() {
            let files = by_project.entry(project).or_default();
            for file in c.project_files().compose {
                if host.get(&file) == Some(&HostPath::File) && !files.contains(&file) {
                    files.push(file);
                }
            }
        }
    }
    by_project
        .into_iter()
        .filter(|(_, files)| !files.is_empty())
        .map(|(project, files)| (project.to_string(), compose_file::references(root, &files)))
        .collect()
}

/// What `root` (the host's root) has at the host path `path`.
fn look(root: &Path, path: &str) -> HostPath {
    match std::fs::symlink_metadata(root.join(path.trim_start_matches('/'))) {
        Ok(m) if m.is_dir() => HostPath::Dir,
        Ok(m) if m.is_file() => HostPath::File,
        Ok(m) if m.is_symlink() => HostPath::Link,
        Ok(_) => HostPath::Special,
        Err(_) => HostPath::Missing,
    }
}

/// The id of the container this process runs in, read from the bind mounts Docker sets up for it.
pub fn own_container_id() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    container_id_from_mountinfo(&mountinfo)
}

fn container_id_from_mountinfo(mountinfo: &str) -> Option<String> {
    // Docker bind-mounts /etc/hostname from .../containers/<64 hex id>/hostname.
    mountinfo.lines().find_map(|line| {
        let mut parts = line.split("/containers/").skip(1);
        parts.find_map(|rest| {
            let id: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            (id.len() == 64 && rest[64..].starts_with("/hostname")).then_some(id)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_id_in_mountinfo() {
        let id = "a".repeat(64);
        let mountinfo = format!(
            "1 2 0:1 / / rw - overlay overlay rw\n\
             3 1 8:1 /var/lib/docker/containers/{id}/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda rw\n\
             4 1 8:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&mountinfo), Some(id));
        assert_eq!(container_id_from_mountinfo("1 2 0:1 / / rw\n"), None);
    }

    fn container(id: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: format!("c-{id}"),
            labels: BTreeMap::from([(PROJECT_LABEL.to_string(), "p".to_string())]),
            running: true,
            volumes: Vec::new(),
            binds: Vec::new(),
        }
    }

    #[test]
    fn self_matches_a_prefix_either_way() {
        let full = "f".repeat(64);
        let short = "f".repeat(12);
        let mut inventory = Inventory {
            containers: vec![container(&full), container(&short), container("abc")],
            self_id: Some(short.clone()),
            ..Default::default()
        };
        assert!(inventory.is_self(&container(&full)));
        assert!(inventory.is_self(&container(&short)));
        assert!(!inventory.is_self(&container("abc")));
        let others: Vec<&str> = inventory.others().map(|c| c.id.as_str()).collect();
        assert_eq!(others, vec!["abc"]);

        // The own id in full, a container listed by its short id.
        inventory.self_id = Some(full.clone());
        assert!(inventory.is_self(&container(&short)));

        inventory.self_id = None;
        assert!(!inventory.is_self(&container(&full)));
        assert_eq!(inventory.others().count(), 3);
    }

    fn compose(
        working_dir: &str,
        configs: &str,
        env_file: Option<&str>,
    ) -> (Vec<String>, Vec<String>) {
        let mut c = container("abc");
        c.labels
            .insert(WORKING_DIR_LABEL.to_string(), working_dir.to_string());
        c.labels
            .insert(CONFIG_FILES_LABEL.to_string(), configs.to_string());
        if let Some(env_file) = env_file {
            c.labels
                .insert(ENV_FILES_LABEL.to_string(), env_file.to_string());
        }
        let paths = c.project_files();
        // The compose files are among the files, in the label's order.
        assert!(paths.compose.iter().all(|f| paths.files.contains(f)));
        (paths.files, paths.unresolved)
    }

    fn paths(files: &[&str], unresolved: &[&str]) -> (Vec<String>, Vec<String>) {
        let strings = |list: &[&str]| list.iter().map(|f| f.to_string()).collect();
        (strings(files), strings(unresolved))
    }

    #[test]
    fn compose_v2_paths_are_absolute() {
        assert_eq!(
            compose(
                "/srv/p",
                "/srv/p/compose.yaml, /srv/p/compose.override.yaml",
                Some("/srv/p/./prod.env")
            ),
            paths(
                &[
                    "/srv/p/.env",
                    "/srv/p/compose.override.yaml",
                    "/srv/p/compose.yaml",
                    "/srv/p/prod.env"
                ],
                &[]
            )
        );
    }

    /// The labels below are what Debian's docker-compose 1.29.2 wrote when run in `/p` (or
    /// `/p/sub`) as each case says.
    #[test]
    fn compose_v1_paths_are_placed_from_the_project_directory() {
        // `docker-compose up` in /p, with an override file beside the compose file.
        assert_eq!(
            compose("/p", "docker-compose.yml,docker-compose.override.yml", None),
            paths(
                &[
                    "/p/.env",
                    "/p/docker-compose.override.yml",
                    "/p/docker-compose.yml"
                ],
                &[]
            )
        );
        // `docker-compose -f sub/compose.yml --env-file my.env up` in /p.
        assert_eq!(
            compose("/p/sub", "sub/compose.yml", Some("my.env")),
            paths(&["/p/my.env", "/p/sub/.env", "/p/sub/compose.yml"], &[])
        );
        // `docker-compose -f ../docker-compose.yml -f ../x/more.yml up` in /p/sub.
        assert_eq!(
            compose("/p", "../docker-compose.yml,../x/more.yml,./../y.yml", None),
            paths(
                &[
                    "/p/.env",
                    "/p/docker-compose.yml",
                    "/p/x/more.yml",
                    "/p/y.yml"
                ],
                &[]
            )
        );
        // The same, with `--env-file local.env`: relative to /p/sub, whose name the labels
        // do not hold.
        assert_eq!(
            compose("/p", "../docker-compose.yml", Some("local.env")),
            paths(&["/p/.env", "/p/docker-compose.yml"], &["local.env"])
        );
        // An absolute compose file with a relative env file: where compose ran is unknown.
        assert_eq!(
            compose("/p", "/p/docker-compose.yml", Some("my.env")),
            paths(&["/p/.env", "/p/docker-compose.yml"], &["my.env"])
        );
        // Deeper: `-f a/b/c.yml -f a/d.yml` in /p.
        assert_eq!(
            compose("/p/a/b", "a/b/c.yml,a/d.yml", None),
            paths(&["/p/a/b/.env", "/p/a/b/c.yml", "/p/a/d.yml"], &[])
        );
    }

    #[test]
    fn project_is_the_compose_label_or_the_stack() {
        assert_eq!(container("abc").project(), Some("p"));
        let mut plain = container("abc");
        plain.labels.clear();
        assert_eq!(plain.project(), None);
        plain
            .labels
            .insert(STACK_LABEL.to_string(), "stack".to_string());
        assert_eq!(plain.project(), Some("stack"));
    }
}
