//! The plan: a pure function from what the engine has to what a run does.
//!
//! Volumes are selected by label; the running containers that use them are the ones to hold still.
//! Volumes are joined into one group when their containers must freeze together: containers of one
//! compose project always do, and so do containers (of any project or none) that share a volume.
//! A container's bind-mounted directories are sources like volumes ([`binds`]), and each compose
//! project with a backed-up container brings its own files ([`project`]).

mod binds;
mod project;

pub use binds::{BIND_PREFIX, bind_name, bind_path};
pub use project::{PROJECT_PREFIX, ProjectFiles, project_dir_name};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::config::split_list;
use crate::engine::discover::{ContainerInfo, Inventory, VolumeInfo, project_of};

/// Label that turns backups on or off, on a volume or a container.
pub const ENABLE_LABEL: &str = "backup.enable";
/// Label on a container: how it is held still.
pub const QUIESCE_LABEL: &str = "backup.quiesce";
/// Label on a volume: extra rsync exclude patterns.
pub const EXCLUDE_LABEL: &str = "backup.exclude";
/// Label on a container: a command run in it before its group's live pass (a database dump).
pub const EXEC_PRE_LABEL: &str = "backup.exec-pre";
/// Label on a container: a command run in it after its group's thaw, on every path.
pub const EXEC_POST_LABEL: &str = "backup.exec-post";
/// Label on a container: how long each of its commands may take.
pub const EXEC_TIMEOUT_LABEL: &str = "backup.exec-timeout";
/// How long an exec command may take without `backup.exec-timeout`.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(300);

/// When a container's command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookStage {
    /// Before the group's live pass.
    Pre,
    /// After the group's thaw, whatever happened.
    Post,
}

impl HookStage {
    /// Its label's name, for messages.
    pub fn label(self) -> &'static str {
        match self {
            HookStage::Pre => EXEC_PRE_LABEL,
            HookStage::Post => EXEC_POST_LABEL,
        }
    }
}

/// A running container of a group with `backup.exec-pre` and/or `backup.exec-post`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExecHook {
    /// Container name.
    pub container: String,
    /// Container id.
    pub id: String,
    /// The command before the live pass.
    pub pre: Option<String>,
    /// The command after the thaw.
    pub post: Option<String>,
    /// How long each may take.
    pub timeout: Duration,
}

impl ExecHook {
    /// The command of `stage`, if any.
    pub fn command(&self, stage: HookStage) -> Option<&str> {
        match stage {
            HookStage::Pre => self.pre.as_deref(),
            HookStage::Post => self.post.as_deref(),
        }
    }
}

/// How a container is held still during the catch-up pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quiesce {
    /// cgroup freezer (`docker pause`).
    Pause,
    /// Clean stop, start again after.
    Stop,
    /// Never touched.
    None,
}

impl Quiesce {
    /// How `container` is held still, by its `backup.quiesce` label; no label means pause. The
    /// error is the value that was not understood.
    fn of(container: &ContainerInfo) -> Result<Self, String> {
        match container.labels.get(QUIESCE_LABEL) {
            None => Ok(Quiesce::Pause),
            // Labels are typed by hand, so surrounding blanks are forgiven.
            Some(value) => value.trim().parse(),
        }
    }
}

/// Parses the words [`Quiesce`] prints as: `pause`, `stop`, `none`. The error is the word that
/// was not understood.
impl FromStr for Quiesce {
    type Err = String;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        match word {
            "pause" => Ok(Quiesce::Pause),
            "stop" => Ok(Quiesce::Stop),
            "none" => Ok(Quiesce::None),
            other => Err(other.to_string()),
        }
    }
}

impl fmt::Display for Quiesce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quiesce::Pause => "pause",
            Quiesce::Stop => "stop",
            Quiesce::None => "none",
        })
    }
}

/// A container that a group holds still.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// Container name.
    pub name: String,
    /// Container id.
    pub id: String,
    /// `Pause` or `Stop`.
    pub quiesce: Quiesce,
}

/// Where a planned source's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A named volume: `BACKUP_VOLUMES_DIR/<name>/_data`.
    Volume,
    /// A bind-mounted directory, by its host path: `BACKUP_HOST_ROOT/<path>`.
    Bind(String),
    /// A compose project's files, which the run copies into its state directory first.
    Project(ProjectFiles),
}

/// A source to mirror: a volume, a bind-mounted directory or a compose project's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVolume {
    /// Its mirror directory's name: `BACKUP_REMOTE_DIR/<name>/`, and its path in archives. A
    /// volume's own name; [`bind_name`] for a bind; [`project_dir_name`] for a project's files.
    pub name: String,
    /// Where its data is.
    pub origin: Origin,
    /// rsync exclude patterns: `BACKUP_EXCLUDE` then the volume's own `backup.exclude`.
    pub excludes: Vec<String>,
    /// Containers using it that are not held still, and why, for the printed plan.
    pub untouched: Vec<(String, &'static str)>,
}

/// Volumes whose users freeze and thaw together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Compose project name(s) joined with `+`, or the first volume's name.
    pub name: String,
    /// Containers to hold still; empty means the volumes are copied in one pass without freezing.
    pub members: Vec<Member>,
    /// The group's volumes.
    pub volumes: Vec<PlannedVolume>,
    /// Running containers of the group with commands to run before and after (frozen or not).
    pub hooks: Vec<ExecHook>,
}

/// A volume that was asked for but is not backed up, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Volume name.
    pub volume: String,
    /// Why, for a person.
    pub reason: String,
}

/// What a run does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Groups in name order.
    pub groups: Vec<Group>,
    /// Volumes that are asked for but skipped.
    pub skipped: Vec<Skipped>,
    /// Labels that were ignored, and why, for a warning each.
    pub warnings: Vec<String>,
}

impl Plan {
    /// The names of the volumes to mirror, in plan order.
    pub fn volume_names(&self) -> Vec<String> {
        self.groups
            .iter()
            .flat_map(|g| g.volumes.iter().map(|v| v.name.clone()))
            .collect()
    }
}

fn enabled(labels: &BTreeMap<String, String>) -> Option<bool> {
    match labels.get(ENABLE_LABEL).map(|v| v.trim()) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

/// Builds the plan. `projects` limits discovery to these compose projects; `exclude` is
/// `BACKUP_EXCLUDE`.
///
/// Steps: `select` the wanted volumes, `scope` them to `projects`, `quiesce` each one (who
/// freezes, who is left alone, what is excluded), `group` those that freeze together, and
/// `assemble` the groups. Skipped volumes come in volume name order, whichever step skipped them.
pub fn plan(inventory: &Inventory, projects: Option<&[String]>, exclude: &[String]) -> Plan {
    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    let mut warnings = BTreeSet::new();
    let mut candidates = select(inventory);
    candidates.extend(binds::select(inventory, &mut warnings));
    candidates.sort_by(|a, b| verdict_name(a).cmp(verdict_name(b)));
    for verdict in scope(candidates, projects) {
        match verdict.and_then(|candidate| quiesce(candidate, exclude, &mut warnings)) {
            Ok(volume) => selected.push(volume),
            Err(skip) => skipped.push(skip),
        }
    }
    let files = project::entries(inventory, &selected, projects, &mut warnings);
    selected.extend(files);
    let groups = assemble(&selected, group(&selected));
    Plan {
        groups,
        skipped,
        warnings: warnings.into_iter().collect(),
    }
}

fn verdict_name<'a>(verdict: &'a Result<Candidate, Skipped>) -> &'a str {
    match verdict {
        Ok(candidate) => &candidate.name,
        Err(skip) => &skip.volume,
    }
}

/// A running container's exec commands, from its labels. A label with an empty command is left
/// out with a warning; a timeout that is not a duration is the error.
fn exec_hook(
    c: &ContainerInfo,
    warnings: &mut BTreeSet<String>,
) -> Result<Option<ExecHook>, String> {
    let mut command = |label: &str| {
        let value = c.labels.get(label)?.trim();
        if value.is_empty() {
            warnings.insert(format!(
                "container {} has an empty {label}: no command runs",
                c.name
            ));
            return None;
        }
        Some(value.to_string())
    };
    let (pre, post) = (command(EXEC_PRE_LABEL), command(EXEC_POST_LABEL));
    if pre.is_none() && post.is_none() {
        return Ok(None);
    }
    let timeout = match c.labels.get(EXEC_TIMEOUT_LABEL).map(|v| v.trim()) {
        None | Some("") => DEFAULT_EXEC_TIMEOUT,
        Some(value) => match humantime::parse_duration(value) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                return Err(format!(
                    "container {} has {EXEC_TIMEOUT_LABEL}={value:?}; expected a duration such \
                     as 5m or 90s",
                    c.name
                ));
            }
        },
    };
    Ok(Some(ExecHook {
        container: c.name.clone(),
        id: c.id.clone(),
        pre,
        post,
        timeout,
    }))
}

/// A volume or bind that is asked for, with the containers (never the sidecar) that use it.
#[derive(Debug)]
struct Candidate<'a> {
    /// Its mirror directory's name.
    name: String,
    origin: Origin,
    /// A volume's driver; `None` for a bind.
    driver: Option<&'a str>,
    /// Its own `backup.exclude` patterns.
    excludes: Vec<String>,
    /// The compose project of its own label (a volume's).
    project: Option<&'a str>,
    /// In inventory order.
    users: Vec<&'a ContainerInfo>,
}

/// A source to back up, ready to group.
#[derive(Debug)]
struct Selected<'a> {
    /// Running users to hold still, and how.
    freezers: Vec<(&'a ContainerInfo, Quiesce)>,
    /// Running users with exec commands (held still or not).
    hooks: Vec<ExecHook>,
    /// The compose projects it belongs to: its own label's and its users'.
    projects: BTreeSet<String>,
    /// A project's files join that project's group.
    join: Option<String>,
    volume: PlannedVolume,
}

/// Which volumes are wanted, in name order: those labelled `backup.enable=true`, and those used
/// by a container labelled so. `backup.enable=false` on the volume wins; it is reported as
/// skipped when a container asked for the volume (somebody expects it backed up), and dropped
/// silently otherwise.
fn select(inventory: &Inventory) -> Vec<Result<Candidate<'_>, Skipped>> {
    let mut volumes: Vec<&VolumeInfo> = inventory.volumes.iter().collect();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    volumes
        .into_iter()
        .filter_map(|volume| {
            let users: Vec<&ContainerInfo> = inventory
                .others()
                .filter(|c| c.volumes.contains(&volume.name))
                .collect();
            let asked_by_container = users.iter().any(|c| enabled(&c.labels) == Some(true));
            let candidate = |users| Candidate {
                name: volume.name.clone(),
                origin: Origin::Volume,
                driver: Some(volume.driver.as_str()),
                excludes: split_list(volume.labels.get(EXCLUDE_LABEL).map(String::as_str)),
                project: project_of(&volume.labels),
                users,
            };
            match enabled(&volume.labels) {
                Some(true) => Some(Ok(candidate(users))),
                Some(false) => asked_by_container.then(|| {
                    Err(Skipped {
                        volume: volume.name.clone(),
                        reason: "the volume is labelled backup.enable=false".into(),
                    })
                }),
                None => asked_by_container.then(|| Ok(candidate(users))),
            }
        })
        .collect()
}

/// Keeps the sources of the compose projects in `projects` (`BACKUP_PROJECTS`; all when unset).
/// A source belongs to a project by its own compose label or by a container that uses it.
/// Skipped volumes pass through: an opt-out a container asked for is reported whatever the
/// project.
fn scope<'a>(
    selection: Vec<Result<Candidate<'a>, Skipped>>,
    projects: Option<&[String]>,
) -> Vec<Result<Candidate<'a>, Skipped>> {
    let Some(projects) = projects else {
        return selection;
    };
    let in_scope = |candidate: &Candidate| {
        candidate
            .project
            .into_iter()
            .chain(candidate.users.iter().filter_map(|c| c.project()))
            .any(|p| projects.iter().any(|want| want == p))
    };
    selection
        .into_iter()
        .filter(|verdict| verdict.as_ref().map_or(true, in_scope))
        .collect()
}

/// One source: skips it when its data is not in the volumes directory (a driver other than
/// `local`) or when a user has a `backup.quiesce` we do not know (we would not guess how to hold
/// it still). Otherwise splits the users into running containers to freeze and containers left
/// alone with the reason, and puts the source's own `backup.exclude` after `exclude`.
fn quiesce<'a>(
    candidate: Candidate<'a>,
    exclude: &[String],
    warnings: &mut BTreeSet<String>,
) -> Result<Selected<'a>, Skipped> {
    let Candidate {
        name,
        origin,
        driver,
        excludes: own_excludes,
        project,
        users,
    } = candidate;
    let skip = |reason| Skipped {
        volume: name.clone(),
        reason,
    };
    if let Some(driver) = driver.filter(|d| *d != "local") {
        return Err(skip(format!(
            "volume driver {driver:?} keeps no data in the volumes directory"
        )));
    }
    let projects: BTreeSet<String> = project
        .into_iter()
        .chain(users.iter().filter_map(|c| c.project()))
        .map(String::from)
        .collect();
    let hows = users
        .iter()
        .map(|c| {
            Quiesce::of(c).map_err(|value| {
                skip(format!(
                    "container {} has {QUIESCE_LABEL}={value:?}; expected pause, stop or none",
                    c.name
                ))
            })
        })
        .collect::<Result<Vec<Quiesce>, Skipped>>()?;
    let mut hooks = Vec::new();
    for c in users.iter().filter(|c| c.running) {
        if let Some(hook) = exec_hook(c, warnings).map_err(skip)? {
            hooks.push(hook);
        }
    }
    let mut freezers = Vec::new();
    let mut untouched = Vec::new();
    for (c, how) in users.into_iter().zip(hows) {
        match (c.running, how) {
            (false, _) => untouched.push((c.name.clone(), "not running")),
            (true, Quiesce::None) => untouched.push((c.name.clone(), "backup.quiesce=none")),
            (true, how) => freezers.push((c, how)),
        }
    }
    let mut excludes = exclude.to_vec();
    excludes.extend(own_excludes);
    Ok(Selected {
        freezers,
        hooks,
        projects,
        join: None,
        volume: PlannedVolume {
            name,
            origin,
            excludes,
            untouched,
        },
    })
}

/// Joins the volumes that must freeze together, by union-find: two volumes join when a container
/// to freeze for one freezes for the other too, or shares its compose project (a project freezes
/// as a whole). Returns the sets as indices into `selected`, ascending within a set, the sets in
/// the order of their roots.
fn group(selected: &[Selected]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..selected.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    // The first volume seen with each container or project; later ones join it.
    let mut owner_of_key: BTreeMap<String, usize> = BTreeMap::new();
    for (index, volume) in selected.iter().enumerate() {
        let keys = volume.freezers.iter().map(|(c, _)| match c.project() {
            Some(project) => format!("project:{project}"),
            None => format!("container:{}", c.id),
        });
        let joins = volume.join.iter().map(|p| format!("project:{p}"));
        for key in keys.chain(joins) {
            match owner_of_key.get(&key) {
                Some(&other) => {
                    let (a, b) = (root(&mut parent, index), root(&mut parent, other));
                    parent[a] = b;
                }
                None => {
                    owner_of_key.insert(key, index);
                }
            }
        }
    }
    let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for index in 0..selected.len() {
        let r = root(&mut parent, index);
        by_root.entry(r).or_default().push(index);
    }
    by_root.into_values().collect()
}

/// Builds a [`Group`] from each set of indices into `selected`: its members are the containers to
/// freeze, each once, in order; its name is its compose projects joined with `+`, or its first
/// volume's name when it has none. Groups come in name order.
fn assemble(selected: &[Selected], sets: Vec<Vec<usize>>) -> Vec<Group> {
    let mut groups: Vec<Group> = sets
        .into_iter()
        .map(|indices| {
            let mut members = BTreeSet::new();
            let mut projects = BTreeSet::new();
            let mut hooks = BTreeSet::new();
            for &i in &indices {
                hooks.extend(selected[i].hooks.iter().cloned());
                projects.extend(selected[i].join.iter().cloned());
                for &(c, quiesce) in &selected[i].freezers {
                    if let Some(p) = c.project() {
                        projects.insert(p.to_string());
                    }
                    members.insert(Member {
                        name: c.name.clone(),
                        id: c.id.clone(),
                        quiesce,
                    });
                }
            }
            let volumes: Vec<PlannedVolume> = indices
                .iter()
                .map(|&i| selected[i].volume.clone())
                .collect();
            let name = if projects.is_empty() {
                volumes[0].name.clone()
            } else {
                projects.into_iter().collect::<Vec<_>>().join("+")
            };
            Group {
                name,
                members: members.into_iter().collect(),
                volumes,
                hooks: hooks.into_iter().collect(),
            }
        })
        .collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    groups
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.groups.is_empty() {
            writeln!(
                f,
                "no volumes selected (label a volume or a container backup.enable=true)"
            )?;
        }
        for group in &self.groups {
            if group.members.is_empty() {
                writeln!(f, "group {}: nothing to freeze, one pass", group.name)?;
            } else {
                let members: Vec<String> = group
                    .members
                    .iter()
                    .map(|m| format!("{} ({})", m.name, m.quiesce))
                    .collect();
                writeln!(
                    f,
                    "group {}: live pass, then freeze {} for a catch-up pass",
                    group.name,
                    members.join(", ")
                )?;
            }
            for hook in &group.hooks {
                for stage in [HookStage::Pre, HookStage::Post] {
                    if let Some(command) = hook.command(stage) {
                        writeln!(f, "  {} in {}: {command}", stage.label(), hook.container)?;
                    }
                }
            }
            for volume in &group.volumes {
                match &volume.origin {
                    Origin::Volume => write!(f, "  volume {}", volume.name)?,
                    Origin::Bind(path) => write!(f, "  bind {path} as {}", volume.name)?,
                    Origin::Project(files) => write!(
                        f,
                        "  files of project {} as {}: {}",
                        files.project,
                        volume.name,
                        files.files.join(", ")
                    )?,
                }
                if !volume.excludes.is_empty() {
                    write!(f, " exclude {}", volume.excludes.join(","))?;
                }
                for (name, why) in &volume.untouched {
                    write!(f, "; {name} left alone ({why})")?;
                }
                writeln!(f)?;
            }
        }
        for skip in &self.skipped {
            writeln!(f, "skipped volume {}: {}", skip.volume, skip.reason)?;
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
