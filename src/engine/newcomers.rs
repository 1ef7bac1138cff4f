//! Newcomers: containers that began to use a group's sources after its plan was made, so that
//! its freeze did not hold them (an app recreated by `docker compose up` mid-run, a job started
//! with `docker compose run`, a container somebody else had paused and unpaused). What the group
//! copied while they wrote is not one instant, so the run does the group again with them frozen
//! before it takes a snapshot.
//!
//! The engine's own record says who started: its `start` and `unpause` events since the plan
//! ([`started_since`]). Whether one of them uses a group's sources is the plan's own rule,
//! applied to the engine as it is now with those containers counted as running ([`Look::redo`]);
//! one already removed is a newcomer when its compose project is the group's. The group done
//! again is the one the plan makes now, so it takes the run's other sources the newcomer joins.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;

use super::discover::{Inventory, project_of};
use super::plan::{self, Group};

/// How long the engine may take to list its events.
const EVENTS_TIMEOUT: Duration = Duration::from_secs(15);

/// The engine's clock and ours may differ by a tick: the window opens this much earlier.
const CLOCK_MARGIN: Duration = Duration::from_secs(1);

/// A container the engine started or unpaused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Its id.
    pub id: String,
    /// Its name, as the event gave it.
    pub name: String,
    /// Its compose project, from the event's labels.
    pub project: Option<String>,
}

/// The containers the engine started or unpaused from `since` until now, each once.
pub async fn started_since(docker: &Docker, since: SystemTime) -> Result<Vec<Started>> {
    let stamp = |t: SystemTime| {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
    };
    let options = EventsOptions {
        since: Some(stamp(since.checked_sub(CLOCK_MARGIN).unwrap_or(since))),
        until: Some(stamp(SystemTime::now())),
        filters: Some(HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                vec!["start".to_string(), "unpause".to_string()],
            ),
        ])),
    };
    let events = tokio::time::timeout(
        EVENTS_TIMEOUT,
        docker
            .events(Some(options))
            .collect::<Vec<Result<_, bollard::errors::Error>>>(),
    )
    .await
    .context("the engine did not list its events in time")?;
    let mut started: Vec<Started> = Vec::new();
    for event in events {
        let event = event.context("cannot list the engine's events")?;
        let Some(actor) = event.actor else { continue };
        let Some(id) = actor.id else { continue };
        if started.iter().any(|s| s.id == id) {
            continue;
        }
        let labels: BTreeMap<String, String> =
            actor.attributes.unwrap_or_default().into_iter().collect();
        started.push(Started {
            name: labels.get("name").cloned().unwrap_or_else(|| id.clone()),
            project: project_of(&labels).map(String::from),
            id,
        });
    }
    Ok(started)
}

/// What a look for newcomers compares with.
pub struct Look<'a> {
    /// The ids of the containers the run froze (its plan's members, and those of the groups it
    /// did again).
    pub frozen: BTreeSet<String>,
    /// The run's sources (their names): only these are done again.
    pub planned: BTreeSet<String>,
    /// `BACKUP_PROJECTS`, as for the run's plan.
    pub projects: Option<&'a [String]>,
    /// `BACKUP_EXCLUDE`, as for the run's plan.
    pub exclude: &'a [String],
}

/// A group to do again, and the containers that began to use it unfrozen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redo {
    /// The group, as the plan makes it now, with the run's sources only.
    pub group: Group,
    /// The newcomers' names.
    pub newcomers: Vec<String>,
}

impl Look<'_> {
    /// The groups to do again, given the engine now (`inventory`) and the containers it started
    /// or unpaused since the last look. A newcomer is a container the plan would hold still for
    /// one of the sources, with the started ones counted as running, that the run did not freeze;
    /// or a started one already removed whose compose project is a group's. Each group of the
    /// plan made now (the real one: what still runs) that shares a source with a newcomer's is
    /// done again.
    pub fn redo(&self, inventory: &Inventory, started: &[Started]) -> Vec<Redo> {
        let mut counted = inventory.clone();
        for c in &mut counted.containers {
            if started.iter().any(|s| s.id == c.id) {
                c.running = true;
            }
        }
        let plan_now = plan::plan(inventory, self.projects, self.exclude);
        let mut redo: Vec<Redo> = Vec::new();
        for g in plan::plan(&counted, self.projects, self.exclude).groups {
            let sources: BTreeSet<&str> = g
                .volumes
                .iter()
                .map(|v| v.name.as_str())
                .filter(|name| self.planned.contains(*name))
                .collect();
            if sources.is_empty() {
                continue;
            }
            let mut names: BTreeSet<String> = g
                .members
                .iter()
                .filter(|m| !self.frozen.contains(&m.id))
                .map(|m| m.name.clone())
                .collect();
            let projects = projects_of(&g, &counted);
            for s in started.iter().filter(|s| self.gone_newcomer(s, inventory)) {
                if s.project.as_deref().is_some_and(|p| projects.contains(p)) {
                    names.insert(s.name.clone());
                }
            }
            if names.is_empty() {
                continue;
            }
            for now in &plan_now.groups {
                if !now
                    .volumes
                    .iter()
                    .any(|v| sources.contains(v.name.as_str()))
                {
                    continue;
                }
                let mut group = now.clone();
                group.volumes.retain(|v| self.planned.contains(&v.name));
                match redo.iter_mut().find(|r| r.group.name == group.name) {
                    Some(r) => r.newcomers.extend(names.iter().cloned()),
                    None => redo.push(Redo {
                        group,
                        newcomers: names.iter().cloned().collect(),
                    }),
                }
            }
        }
        for r in &mut redo {
            r.newcomers.sort();
            r.newcomers.dedup();
        }
        redo
    }

    /// A started container that is removed by now, and was neither frozen nor the sidecar.
    fn gone_newcomer(&self, s: &Started, inventory: &Inventory) -> bool {
        !inventory.is_self_id(&s.id)
            && !self.frozen.contains(&s.id)
            && !inventory.containers.iter().any(|c| c.id == s.id)
    }
}

/// A group's compose projects: its members' and its volumes' own labels.
fn projects_of<'a>(group: &Group, inventory: &'a Inventory) -> BTreeSet<&'a str> {
    let members: BTreeSet<&str> = group.members.iter().map(|m| m.id.as_str()).collect();
    let sources: BTreeSet<&str> = group.volumes.iter().map(|v| v.name.as_str()).collect();
    let of_members = inventory
        .containers
        .iter()
        .filter(|c| members.contains(c.id.as_str()))
        .filter_map(|c| c.project());
    let of_volumes = inventory
        .volumes
        .iter()
        .filter(|v| sources.contains(v.name.as_str()))
        .filter_map(|v| project_of(&v.labels));
    of_members.chain(of_volumes).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::discover::{ContainerInfo, VolumeInfo};

    fn volume(name: &str) -> VolumeInfo {
        VolumeInfo {
            name: name.into(),
            driver: "local".into(),
            labels: BTreeMap::from([("backup.enable".into(), "true".into())]),
        }
    }

    fn container(id: &str, project: &str, running: bool, volumes: &[&str]) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: format!("{id}-name"),
            labels: BTreeMap::from([(
                "com.docker.compose.project".to_string(),
                project.to_string(),
            )]),
            running,
            volumes: volumes.iter().map(|v| v.to_string()).collect(),
            binds: Vec::new(),
        }
    }

    fn started(id: &str, project: Option<&str>) -> Started {
        Started {
            id: id.into(),
            name: format!("{id}-name"),
            project: project.map(String::from),
        }
    }

    /// What the run planned from `inventory` would compare with.
    fn look(inventory: &Inventory) -> Look<'static> {
        let plan = plan::plan(inventory, None, &[]);
        Look {
            frozen: plan
                .groups
                .iter()
                .flat_map(|g| &g.members)
                .map(|m| m.id.clone())
                .collect(),
            planned: plan.volume_names().into_iter().collect(),
            projects: None,
            exclude: &[],
        }
    }

    fn summary(redo: &[Redo]) -> Vec<(Vec<String>, Vec<String>, Vec<String>)> {
        redo.iter()
            .map(|r| {
                (
                    r.group.volumes.iter().map(|v| v.name.clone()).collect(),
                    r.group.members.iter().map(|m| m.id.clone()).collect(),
                    r.newcomers.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn a_member_restarted_is_no_newcomer() {
        let inventory = Inventory {
            volumes: vec![volume("data")],
            containers: vec![container("app", "p", true, &["data"])],
            ..Inventory::default()
        };
        let restarted = [started("app", Some("p"))];
        assert!(look(&inventory).redo(&inventory, &restarted).is_empty());
    }

    #[test]
    fn an_app_recreated_mid_run_redoes_every_source_it_joins_frozen() {
        // Planned while the app was removed: two groups, nothing to freeze.
        let before = Inventory {
            volumes: vec![volume("bal"), volume("ledger")],
            ..Inventory::default()
        };
        assert_eq!(plan::plan(&before, None, &[]).groups.len(), 2);
        let after = Inventory {
            volumes: vec![volume("bal"), volume("ledger")],
            containers: vec![container("app2", "p", true, &["bal", "ledger"])],
            ..Inventory::default()
        };
        let redo = look(&before).redo(&after, &[started("app2", Some("p"))]);
        assert_eq!(
            summary(&redo),
            [(
                vec!["bal".to_string(), "ledger".to_string()],
                vec!["app2".to_string()],
                vec!["app2-name".to_string()]
            )]
        );
    }

    #[test]
    fn a_job_that_ran_and_exited_redoes_its_group_without_freezing_it() {
        let inventory = Inventory {
            volumes: vec![volume("data"), volume("other")],
            containers: vec![
                container("app", "p", true, &["data"]),
                container("job", "p", false, &["data"]),
                container("elsewhere", "q", false, &["other"]),
            ],
            ..Inventory::default()
        };
        let mut looked = look(&inventory);
        // `elsewhere` was seen running at the plan and frozen.
        looked.frozen.insert("elsewhere".into());
        let events = [started("job", Some("p")), started("elsewhere", Some("q"))];
        assert_eq!(
            summary(&looked.redo(&inventory, &events)),
            [(
                vec!["data".to_string()],
                vec!["app".to_string()],
                vec!["job-name".to_string()]
            )]
        );
    }

    #[test]
    fn a_removed_container_counts_by_its_project() {
        let inventory = Inventory {
            volumes: vec![volume("data")],
            containers: vec![container("app", "p", true, &["data"])],
            ..Inventory::default()
        };
        let events = [
            started("gone-job", Some("p")),
            started("gone-other", Some("q")),
            started("gone-plain", None),
        ];
        let redo = look(&inventory).redo(&inventory, &events);
        assert_eq!(redo.len(), 1);
        assert_eq!(redo[0].newcomers, ["gone-job-name"]);
    }

    #[test]
    fn only_the_runs_sources_are_done_again() {
        let before = Inventory {
            volumes: vec![volume("data")],
            ..Inventory::default()
        };
        let after = Inventory {
            volumes: vec![volume("data"), volume("new")],
            containers: vec![container("app", "p", true, &["data", "new"])],
            ..Inventory::default()
        };
        let redo = look(&before).redo(&after, &[started("app", Some("p"))]);
        assert_eq!(summary(&redo)[0].0, ["data"]);
    }

    #[test]
    fn quiesce_none_and_the_sidecar_are_never_newcomers() {
        let mut untouched = container("cron", "p", false, &["data"]);
        untouched
            .labels
            .insert("backup.quiesce".into(), "none".into());
        let inventory = Inventory {
            volumes: vec![volume("data")],
            containers: vec![
                container("app", "p", true, &["data"]),
                untouched,
                container("sidecar", "p", true, &["data"]),
            ],
            self_id: Some("sidecar".into()),
            ..Inventory::default()
        };
        let events = [started("cron", Some("p")), started("sidecar", Some("p"))];
        assert!(look(&inventory).redo(&inventory, &events).is_empty());
    }
}
