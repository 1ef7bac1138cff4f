//! The plan: a pure function from what the engine has to what a run does.
//!
//! Volumes are selected by label; the running containers that use them are the ones to hold still.
//! Volumes are joined into one group when their containers must freeze together: containers of one
//! compose project always do, and so do containers (of any project or none) that share a volume.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::config::split_list;
use crate::engine::discover::{ContainerInfo, Inventory, VolumeInfo};

/// Label that turns backups on or off, on a volume or a container.
pub const ENABLE_LABEL: &str = "backup.enable";
/// Label on a container: how it is held still.
pub const QUIESCE_LABEL: &str = "backup.quiesce";
/// Label on a volume: extra rsync exclude patterns.
pub const EXCLUDE_LABEL: &str = "backup.exclude";

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
    fn of(container: &ContainerInfo) -> Result<Self, String> {
        match container.labels.get(QUIESCE_LABEL).map(|v| v.trim()) {
            None | Some("pause") => Ok(Quiesce::Pause),
            Some("stop") => Ok(Quiesce::Stop),
            Some("none") => Ok(Quiesce::None),
            Some(other) => Err(other.to_string()),
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

/// A volume to mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVolume {
    /// Volume name; it mirrors to `BACKUP_REMOTE_DIR/<name>/`.
    pub name: String,
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
}

impl Plan {
    /// Number of volumes to mirror.
    pub fn volume_count(&self) -> usize {
        self.groups.iter().map(|g| g.volumes.len()).sum()
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
pub fn plan(inventory: &Inventory, projects: Option<&[String]>, exclude: &[String]) -> Plan {
    let is_self = |c: &ContainerInfo| {
        inventory
            .self_id
            .as_deref()
            .is_some_and(|own| c.id.starts_with(own) || own.starts_with(&c.id))
    };
    let containers: Vec<&ContainerInfo> = inventory
        .containers
        .iter()
        .filter(|c| !is_self(c))
        .collect();
    let users = |volume: &str| -> Vec<&ContainerInfo> {
        containers
            .iter()
            .copied()
            .filter(|c| c.volumes.iter().any(|v| v == volume))
            .collect()
    };

    let mut skipped = Vec::new();
    // Selected volumes with the containers to hold still for each.
    let mut selected: Vec<(&VolumeInfo, Vec<&ContainerInfo>, PlannedVolume)> = Vec::new();
    let mut volumes: Vec<&VolumeInfo> = inventory.volumes.iter().collect();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    for volume in volumes {
        let users = users(&volume.name);
        let asked_by_container = users.iter().any(|c| enabled(&c.labels) == Some(true));
        let wanted = match enabled(&volume.labels) {
            Some(true) => true,
            Some(false) => {
                if asked_by_container {
                    skipped.push(Skipped {
                        volume: volume.name.clone(),
                        reason: "the volume is labelled backup.enable=false".into(),
                    });
                }
                false
            }
            None => asked_by_container,
        };
        if !wanted {
            continue;
        }
        if let Some(projects) = projects {
            let in_scope = volume
                .labels
                .get("com.docker.compose.project")
                .into_iter()
                .map(String::as_str)
                .chain(users.iter().filter_map(|c| c.project()))
                .any(|p| projects.iter().any(|want| want == p));
            if !in_scope {
                continue;
            }
        }
        if volume.driver != "local" {
            skipped.push(Skipped {
                volume: volume.name.clone(),
                reason: format!(
                    "volume driver {:?} keeps no data in the volumes directory",
                    volume.driver
                ),
            });
            continue;
        }
        let bad_label = users.iter().find_map(|c| {
            Quiesce::of(c).err().map(|value| {
                format!(
                    "container {} has {QUIESCE_LABEL}={value:?}; expected pause, stop or none",
                    c.name
                )
            })
        });
        if let Some(reason) = bad_label {
            skipped.push(Skipped {
                volume: volume.name.clone(),
                reason,
            });
            continue;
        }
        let mut freezers = Vec::new();
        let mut untouched = Vec::new();
        for c in &users {
            match (c.running, Quiesce::of(c)) {
                (false, _) => untouched.push((c.name.clone(), "not running")),
                (true, Ok(Quiesce::None)) => {
                    untouched.push((c.name.clone(), "backup.quiesce=none"))
                }
                (true, _) => freezers.push(*c),
            }
        }
        let mut excludes = exclude.to_vec();
        excludes.extend(split_list(
            volume.labels.get(EXCLUDE_LABEL).map(String::as_str),
        ));
        let planned = PlannedVolume {
            name: volume.name.clone(),
            excludes,
            untouched,
        };
        selected.push((volume, freezers, planned));
    }

    // Union-find over selected volumes: volumes join when they share a container or a project.
    let mut parent: Vec<usize> = (0..selected.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut owner_of_key: BTreeMap<String, usize> = BTreeMap::new();
    for (index, (_, freezers, _)) in selected.iter().enumerate() {
        for c in freezers {
            let key = match c.project() {
                Some(project) => format!("project:{project}"),
                None => format!("container:{}", c.id),
            };
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
    let mut groups: Vec<Group> = by_root
        .into_values()
        .map(|indices| {
            let mut members = BTreeSet::new();
            let mut projects = BTreeSet::new();
            for &i in &indices {
                for c in &selected[i].1 {
                    if let Some(p) = c.project() {
                        projects.insert(p.to_string());
                    }
                    members.insert(Member {
                        name: c.name.clone(),
                        id: c.id.clone(),
                        quiesce: Quiesce::of(c).unwrap_or(Quiesce::Pause),
                    });
                }
            }
            let volumes: Vec<PlannedVolume> =
                indices.iter().map(|&i| selected[i].2.clone()).collect();
            let name = if projects.is_empty() {
                volumes[0].name.clone()
            } else {
                projects.into_iter().collect::<Vec<_>>().join("+")
            };
            Group {
                name,
                members: members.into_iter().collect(),
                volumes,
            }
        })
        .collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    Plan { groups, skipped }
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
            for volume in &group.volumes {
                write!(f, "  volume {}", volume.name)?;
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn volume(name: &str, pairs: &[(&str, &str)]) -> VolumeInfo {
        VolumeInfo {
            name: name.into(),
            driver: "local".into(),
            labels: labels(pairs),
        }
    }

    fn container(
        name: &str,
        running: bool,
        vols: &[&str],
        pairs: &[(&str, &str)],
    ) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}-id"),
            name: name.into(),
            labels: labels(pairs),
            running,
            volumes: vols.iter().map(|v| v.to_string()).collect(),
        }
    }

    const ON: (&str, &str) = (ENABLE_LABEL, "true");
    const OFF: (&str, &str) = (ENABLE_LABEL, "false");

    fn project(p: &str) -> (&str, &str) {
        ("com.docker.compose.project", p)
    }

    fn names(plan: &Plan) -> Vec<(String, Vec<String>, Vec<String>)> {
        plan.groups
            .iter()
            .map(|g| {
                (
                    g.name.clone(),
                    g.members.iter().map(|m| m.name.clone()).collect(),
                    g.volumes.iter().map(|v| v.name.clone()).collect(),
                )
            })
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn selects_by_volume_and_container_label_and_opt_out_wins() {
        let inventory = Inventory {
            volumes: vec![
                volume("labelled", &[ON]),
                volume("plain", &[]),
                volume("via-container", &[]),
                volume("opted-out", &[OFF]),
            ],
            containers: vec![
                container("app", true, &["via-container", "opted-out"], &[ON]),
                container("other", true, &["plain"], &[]),
            ],
            self_id: None,
        };
        let plan = plan(&inventory, None, &[]);
        assert_eq!(
            names(&plan),
            vec![
                ("labelled".into(), vec![], s(&["labelled"])),
                ("via-container".into(), s(&["app"]), s(&["via-container"])),
            ]
        );
        assert_eq!(plan.skipped.len(), 1);
        assert_eq!(plan.skipped[0].volume, "opted-out");
    }

    #[test]
    fn groups_by_project_and_by_shared_volume() {
        let inventory = Inventory {
            volumes: vec![
                volume("nc-data", &[ON]),
                volume("nc-db", &[ON]),
                volume("shared", &[ON]),
                volume("alone", &[ON]),
            ],
            containers: vec![
                container("nc-app", true, &["nc-data"], &[project("nc")]),
                container("nc-db", true, &["nc-db"], &[project("nc")]),
                container("nc-proxy", true, &[], &[project("nc")]),
                container("x", true, &["shared"], &[]),
                container("y", true, &["shared"], &[]),
                container("z", true, &["alone"], &[]),
            ],
            self_id: None,
        };
        let plan = plan(&inventory, None, &[]);
        assert_eq!(
            names(&plan),
            vec![
                ("alone".into(), s(&["z"]), s(&["alone"])),
                (
                    "nc".into(),
                    s(&["nc-app", "nc-db"]),
                    s(&["nc-data", "nc-db"])
                ),
                ("shared".into(), s(&["x", "y"]), s(&["shared"])),
            ]
        );
    }

    #[test]
    fn a_volume_shared_across_projects_joins_them() {
        let inventory = Inventory {
            volumes: vec![
                volume("a", &[ON]),
                volume("b", &[ON]),
                volume("common", &[ON]),
            ],
            containers: vec![
                container("a1", true, &["a", "common"], &[project("pa")]),
                container("b1", true, &["b"], &[project("pb")]),
                container("b2", true, &["common"], &[project("pb")]),
            ],
            self_id: None,
        };
        let plan = plan(&inventory, None, &[]);
        assert_eq!(
            names(&plan),
            vec![(
                "pa+pb".into(),
                s(&["a1", "b1", "b2"]),
                s(&["a", "b", "common"])
            )]
        );
    }

    #[test]
    fn never_freezes_itself_stopped_or_none_containers() {
        let mut me = container("sidecar", true, &["v"], &[ON]);
        me.id = "f".repeat(64);
        let inventory = Inventory {
            volumes: vec![volume("v", &[ON])],
            containers: vec![
                me,
                container("stopped", false, &["v"], &[]),
                container("hands-off", true, &["v"], &[(QUIESCE_LABEL, "none")]),
                container("db", true, &["v"], &[(QUIESCE_LABEL, "stop")]),
            ],
            self_id: Some("f".repeat(12)),
        };
        let plan = plan(&inventory, None, &[]);
        assert_eq!(plan.groups.len(), 1);
        let group = &plan.groups[0];
        assert_eq!(
            group.members,
            vec![Member {
                name: "db".into(),
                id: "db-id".into(),
                quiesce: Quiesce::Stop
            }]
        );
        assert_eq!(
            group.volumes[0].untouched,
            vec![
                ("stopped".to_string(), "not running"),
                ("hands-off".to_string(), "backup.quiesce=none")
            ]
        );
    }

    #[test]
    fn bad_quiesce_label_skips_only_that_volume() {
        let inventory = Inventory {
            volumes: vec![volume("bad", &[ON]), volume("good", &[ON])],
            containers: vec![
                container("weird", true, &["bad"], &[(QUIESCE_LABEL, "freeze")]),
                container("fine", true, &["good"], &[]),
            ],
            self_id: None,
        };
        let plan = plan(&inventory, None, &[]);
        assert_eq!(
            names(&plan),
            vec![("good".into(), s(&["fine"]), s(&["good"]))]
        );
        assert_eq!(plan.skipped[0].volume, "bad");
        assert!(plan.skipped[0].reason.contains("freeze"));
    }

    #[test]
    fn projects_limit_discovery_and_excludes_add_up() {
        let inventory = Inventory {
            volumes: vec![
                volume(
                    "mine",
                    &[ON, project("p1"), (EXCLUDE_LABEL, "cache/, *.log")],
                ),
                volume("used-by-mine", &[ON]),
                volume("theirs", &[ON, project("p2")]),
                volume("nobodys", &[ON]),
            ],
            containers: vec![container("c", false, &["used-by-mine"], &[project("p1")])],
            self_id: None,
        };
        let plan = plan(&inventory, Some(&s(&["p1"])), &s(&["*.tmp"]));
        assert_eq!(
            names(&plan),
            vec![
                ("mine".into(), vec![], s(&["mine"])),
                ("used-by-mine".into(), vec![], s(&["used-by-mine"])),
            ]
        );
        assert_eq!(
            plan.groups[0].volumes[0].excludes,
            s(&["*.tmp", "cache/", "*.log"])
        );
    }

    #[test]
    fn other_drivers_are_skipped() {
        let mut nfs = volume("nfs", &[ON]);
        nfs.driver = "rclone".into();
        let inventory = Inventory {
            volumes: vec![nfs],
            ..Default::default()
        };
        let plan = plan(&inventory, None, &[]);
        assert!(plan.groups.is_empty());
        assert!(plan.skipped[0].reason.contains("rclone"));
    }
}
