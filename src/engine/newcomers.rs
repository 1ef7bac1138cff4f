//! Newcomers: containers that began to use a group's sources after its plan was made, so that
//! its freeze did not hold them (an app recreated by `docker compose up` mid-run, a job started
//! with `docker compose run`, a container somebody else had paused and unpaused). What the group
//! copied while they wrote is not one instant, so the run does the group again with them frozen.
//!
//! The engine's own record says who started: its `start` and `unpause` events since the plan
//! ([`started_since`]). Whether one of them uses the group's sources is the plan's own rule,
//! applied to the engine as it is now with those containers counted as running
//! ([`newcomers`]); one already removed is a newcomer when its compose project is the group's.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;

use super::discover::{Inventory, project_of};
use super::plan::{self, Group, Plan};

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
        let labels: std::collections::BTreeMap<String, String> =
            actor.attributes.unwrap_or_default().into_iter().collect();
        started.push(Started {
            name: labels.get("name").cloned().unwrap_or_else(|| id.clone()),
            project: project_of(&labels).map(String::from),
            id,
        });
    }
    Ok(started)
}

/// The names of the containers that `group` should have frozen and did not: by the plan made now
/// (`inventory`, with every container of `started` counted as running), a container to hold
/// still for one of the group's sources that is not among its members; and a container of
/// `started` already removed whose compose project is one of the group's. `projects` and
/// `exclude` are the configuration's, as for the run's plan.
pub fn newcomers(
    group: &Group,
    inventory: &Inventory,
    started: &[Started],
    projects: Option<&[String]>,
    exclude: &[String],
) -> Vec<String> {
    let members: BTreeSet<&str> = group.members.iter().map(|m| m.id.as_str()).collect();
    let mut now = inventory.clone();
    for c in &mut now.containers {
        if started.iter().any(|s| s.id == c.id) {
            c.running = true;
        }
    }
    let sources: BTreeSet<&str> = group.volumes.iter().map(|v| v.name.as_str()).collect();
    let mut found: BTreeSet<String> = plan::plan(&now, projects, exclude)
        .groups
        .iter()
        .filter(|g| g.volumes.iter().any(|v| sources.contains(v.name.as_str())))
        .flat_map(|g| &g.members)
        .filter(|m| !members.contains(m.id.as_str()))
        .map(|m| m.name.clone())
        .collect();
    // The group's compose projects: its members' and its volumes' own.
    let own: BTreeSet<&str> = inventory
        .containers
        .iter()
        .filter(|c| members.contains(c.id.as_str()))
        .filter_map(|c| c.project())
        .chain(
            inventory
                .volumes
                .iter()
                .filter(|v| sources.contains(v.name.as_str()))
                .filter_map(|v| project_of(&v.labels)),
        )
        .collect();
    for s in started {
        let gone = !inventory.containers.iter().any(|c| c.id == s.id);
        let mine = inventory
            .self_id
            .as_deref()
            .is_some_and(|own_id| s.id.starts_with(own_id) || own_id.starts_with(s.id.as_str()));
        if gone
            && !mine
            && !members.contains(s.id.as_str())
            && s.project.as_deref().is_some_and(|p| own.contains(p))
        {
            found.insert(s.name.clone());
        }
    }
    found.into_iter().collect()
}

/// The group to do again: `old`'s sources, frozen with every member the plan made now
/// (`plan`) gives them, and with their exec commands.
pub fn regroup(old: &Group, plan: &Plan) -> Group {
    let sources: BTreeSet<&str> = old.volumes.iter().map(|v| v.name.as_str()).collect();
    let mut members = BTreeSet::new();
    let mut hooks = BTreeSet::new();
    for g in plan
        .groups
        .iter()
        .filter(|g| g.volumes.iter().any(|v| sources.contains(v.name.as_str())))
    {
        members.extend(g.members.iter().cloned());
        hooks.extend(g.hooks.iter().cloned());
    }
    Group {
        name: old.name.clone(),
        members: members.into_iter().collect(),
        volumes: old.volumes.clone(),
        hooks: hooks.into_iter().collect(),
    }
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

    /// The group the plan made from `inventory`.
    fn group_of(inventory: &Inventory) -> Group {
        plan::plan(inventory, None, &[]).groups.remove(0)
    }

    #[test]
    fn nobody_new_is_no_newcomer() {
        let inventory = Inventory {
            volumes: vec![volume("data")],
            containers: vec![container("app", "p", true, &["data"])],
            ..Inventory::default()
        };
        let group = group_of(&inventory);
        // The member restarted (same id): it was frozen.
        let restarted = [started("app", Some("p"))];
        assert!(newcomers(&group, &inventory, &restarted, None, &[]).is_empty());
    }

    #[test]
    fn an_app_recreated_during_an_unfrozen_pass_is_a_newcomer() {
        // Planned while the app was removed: nothing to freeze.
        let before = Inventory {
            volumes: vec![volume("data")],
            ..Inventory::default()
        };
        let group = group_of(&before);
        assert!(group.members.is_empty());
        let after = Inventory {
            volumes: vec![volume("data")],
            containers: vec![container("app2", "p", true, &["data"])],
            ..Inventory::default()
        };
        let seen = newcomers(&group, &after, &[started("app2", Some("p"))], None, &[]);
        assert_eq!(seen, ["app2-name"]);
    }

    #[test]
    fn a_job_that_ran_and_exited_is_a_newcomer_and_one_of_another_volume_is_not() {
        let inventory = Inventory {
            volumes: vec![volume("data"), volume("other")],
            containers: vec![
                container("app", "p", true, &["data"]),
                container("job", "p", false, &["data"]),
                container("elsewhere", "q", false, &["other"]),
            ],
            ..Inventory::default()
        };
        let group = plan::plan(&inventory, None, &[])
            .groups
            .into_iter()
            .find(|g| g.volumes[0].name == "data")
            .unwrap();
        let events = [started("job", Some("p")), started("elsewhere", Some("q"))];
        assert_eq!(
            newcomers(&group, &inventory, &events, None, &[]),
            ["job-name"]
        );
    }

    #[test]
    fn a_removed_container_counts_by_its_project() {
        let inventory = Inventory {
            volumes: vec![volume("data")],
            containers: vec![container("app", "p", true, &["data"])],
            ..Inventory::default()
        };
        let group = group_of(&inventory);
        let events = [
            started("gone-job", Some("p")),
            started("gone-other", Some("q")),
            started("gone-plain", None),
        ];
        assert_eq!(
            newcomers(&group, &inventory, &events, None, &[]),
            ["gone-job-name"]
        );
    }

    #[test]
    fn the_group_done_again_freezes_the_newcomer_and_keeps_its_sources() {
        let before = Inventory {
            volumes: vec![volume("data")],
            ..Inventory::default()
        };
        let group = group_of(&before);
        let after = Inventory {
            volumes: vec![volume("data"), volume("other")],
            containers: vec![
                container("app2", "p", true, &["data"]),
                container("b", "q", true, &["other"]),
            ],
            ..Inventory::default()
        };
        let again = regroup(&group, &plan::plan(&after, None, &[]));
        assert_eq!(again.name, group.name);
        assert_eq!(again.volumes, group.volumes);
        let ids: Vec<&str> = again.members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["app2"]);
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
        let group = group_of(&inventory);
        let events = [started("cron", Some("p")), started("sidecar", Some("p"))];
        assert!(newcomers(&group, &inventory, &events, None, &[]).is_empty());
    }
}
