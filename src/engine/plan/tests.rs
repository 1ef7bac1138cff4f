//! Unit tests of `plan`.

use super::*;
use crate::engine::discover::{
    CONFIG_FILES_LABEL, HostPath, PROJECT_LABEL, STACK_LABEL, WORKING_DIR_LABEL,
};

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

fn container(name: &str, running: bool, vols: &[&str], pairs: &[(&str, &str)]) -> ContainerInfo {
    ContainerInfo {
        id: format!("{name}-id"),
        name: name.into(),
        labels: labels(pairs),
        running,
        volumes: vols.iter().map(|v| v.to_string()).collect(),
        binds: Vec::new(),
    }
}

const ON: (&str, &str) = (ENABLE_LABEL, "true");
const OFF: (&str, &str) = (ENABLE_LABEL, "false");

fn project(p: &str) -> (&str, &str) {
    (PROJECT_LABEL, p)
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
        ..Default::default()
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
        ..Default::default()
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
        ..Default::default()
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
        ..Default::default()
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
        ..Default::default()
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
        ..Default::default()
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

fn inventory(volumes: Vec<VolumeInfo>, containers: Vec<ContainerInfo>) -> Inventory {
    Inventory {
        volumes,
        containers,
        self_id: None,
        ..Default::default()
    }
}

/// What `select` (or `scope`) kept, by volume name, and what it skipped.
fn verdicts(selection: &[Result<Candidate, Skipped>]) -> Vec<Result<String, String>> {
    selection
        .iter()
        .map(|v| match v {
            Ok(c) => Ok(c.name.clone()),
            Err(skip) => Err(skip.volume.clone()),
        })
        .collect()
}

fn candidate<'a>(volume: &'a VolumeInfo, users: &[&'a ContainerInfo]) -> Candidate<'a> {
    Candidate {
        name: volume.name.clone(),
        origin: Origin::Volume,
        driver: Some(&volume.driver),
        excludes: split_list(volume.labels.get(EXCLUDE_LABEL).map(String::as_str)),
        project: volume.labels.get(PROJECT_LABEL).map(String::as_str),
        users: users.to_vec(),
    }
}

/// A selected volume `name` freezing `freezers` by pause.
fn selected<'a>(name: &str, freezers: &[&'a ContainerInfo]) -> Selected<'a> {
    Selected {
        freezers: freezers.iter().map(|&c| (c, Quiesce::Pause)).collect(),
        hooks: Vec::new(),
        projects: BTreeSet::new(),
        join: None,
        volume: PlannedVolume {
            name: name.into(),
            origin: Origin::Volume,
            excludes: Vec::new(),
            untouched: Vec::new(),
        },
    }
}

#[test]
fn quiesce_parses_its_own_words_only() {
    for how in [Quiesce::Pause, Quiesce::Stop, Quiesce::None] {
        assert_eq!(how.to_string().parse(), Ok(how));
    }
    assert_eq!("freeze".parse::<Quiesce>(), Err("freeze".to_string()));
    assert_eq!("Stop".parse::<Quiesce>(), Err("Stop".to_string()));
    assert_eq!(" stop".parse::<Quiesce>(), Err(" stop".to_string()));
}

#[test]
fn quiesce_label_defaults_to_pause_and_forgives_blanks() {
    let of = |pairs: &[(&str, &str)]| Quiesce::of(&container("c", true, &[], pairs));
    assert_eq!(of(&[]), Ok(Quiesce::Pause));
    assert_eq!(of(&[(QUIESCE_LABEL, " stop ")]), Ok(Quiesce::Stop));
    assert_eq!(of(&[(QUIESCE_LABEL, "none")]), Ok(Quiesce::None));
    assert_eq!(of(&[(QUIESCE_LABEL, " off ")]), Err("off".to_string()));
}

#[test]
fn select_wants_labelled_volumes_in_name_order_and_reports_asked_opt_outs() {
    let mut me = container("sidecar", true, &["a-by-container", "b-plain"], &[ON]);
    me.id = "f".repeat(64);
    let mut inventory = inventory(
        vec![
            volume("d-quiet-opt-out", &[OFF]),
            volume("c-asked-opt-out", &[OFF]),
            volume("b-plain", &[]),
            volume("a-by-container", &[]),
            volume("e-by-label", &[ON]),
            volume("f-odd-label", &[(ENABLE_LABEL, "yes")]),
        ],
        vec![
            me,
            container("app", false, &["a-by-container", "c-asked-opt-out"], &[ON]),
            container(
                "other",
                true,
                &["a-by-container", "d-quiet-opt-out"],
                &[OFF],
            ),
        ],
    );
    inventory.self_id = Some("f".repeat(12));
    let selection = select(&inventory);
    assert_eq!(
        verdicts(&selection),
        vec![
            Ok("a-by-container".into()),
            Err("c-asked-opt-out".into()),
            Ok("e-by-label".into()),
        ]
    );
    // The sidecar asked for b-plain, but it does not count; nor is it a user of a-by-container.
    let Ok(by_container) = &selection[0] else {
        panic!("a-by-container is selected")
    };
    let users: Vec<&str> = by_container.users.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(users, vec!["app", "other"]);
    let Err(skip) = &selection[1] else {
        panic!("c-asked-opt-out is skipped")
    };
    assert_eq!(skip.reason, "the volume is labelled backup.enable=false");
}

#[test]
fn scope_keeps_projects_by_volume_or_user_label_and_passes_skips() {
    let mine = volume("mine", &[ON, project("p1")]);
    let used = volume("used-by-p2", &[ON]);
    let theirs = volume("theirs", &[ON, project("p3")]);
    let nobodys = volume("nobodys", &[ON]);
    let user = container("c", true, &["used-by-p2"], &[project("p2")]);
    let selection = || {
        vec![
            Ok(candidate(&mine, &[])),
            Ok(candidate(&used, &[&user])),
            Ok(candidate(&theirs, &[])),
            Err(Skipped {
                volume: "opted-out".into(),
                reason: "out of every project".into(),
            }),
            Ok(candidate(&nobodys, &[])),
        ]
    };
    assert_eq!(verdicts(&scope(selection(), None)), verdicts(&selection()),);
    assert_eq!(
        verdicts(&scope(selection(), Some(&s(&["p1", "p2"])))),
        vec![
            Ok("mine".into()),
            Ok("used-by-p2".into()),
            Err("opted-out".into()),
        ]
    );
    assert_eq!(
        verdicts(&scope(selection(), Some(&[]))),
        vec![Err("opted-out".into())]
    );
}

#[test]
fn quiesce_splits_users_and_adds_excludes() {
    let v = volume("v", &[(EXCLUDE_LABEL, "cache/, *.log")]);
    let paused = container("paused", true, &["v"], &[]);
    let stopped = container("stopped", true, &["v"], &[(QUIESCE_LABEL, "stop")]);
    let down = container("down", false, &["v"], &[(QUIESCE_LABEL, "stop")]);
    let hands_off = container("hands-off", true, &["v"], &[(QUIESCE_LABEL, "none")]);
    let users = [&hands_off, &stopped, &down, &paused];
    let ready = quiesce(candidate(&v, &users), &s(&["*.tmp"]), &mut BTreeSet::new()).unwrap();
    let freezers: Vec<(&str, Quiesce)> = ready
        .freezers
        .iter()
        .map(|(c, how)| (c.name.as_str(), *how))
        .collect();
    assert_eq!(
        freezers,
        vec![("stopped", Quiesce::Stop), ("paused", Quiesce::Pause)]
    );
    assert_eq!(
        ready.volume,
        PlannedVolume {
            name: "v".into(),
            origin: Origin::Volume,
            excludes: s(&["*.tmp", "cache/", "*.log"]),
            untouched: vec![
                ("hands-off".into(), "backup.quiesce=none"),
                ("down".into(), "not running"),
            ],
        }
    );
}

#[test]
fn quiesce_skips_other_drivers_and_unknown_labels() {
    let mut remote = volume("remote", &[]);
    remote.driver = "rclone".into();
    let fine = container("fine", true, &[], &[]);
    let skip = quiesce(candidate(&remote, &[&fine]), &[], &mut BTreeSet::new()).unwrap_err();
    assert_eq!(skip.volume, "remote");
    assert_eq!(
        skip.reason,
        "volume driver \"rclone\" keeps no data in the volumes directory"
    );

    let v = volume("v", &[]);
    // Even a stopped container's label must make sense: it may run by the next backup.
    let odd = container("odd", false, &[], &[(QUIESCE_LABEL, "freeze")]);
    let odder = container("odder", true, &[], &[(QUIESCE_LABEL, "halt")]);
    let skip = quiesce(
        candidate(&v, &[&fine, &odd, &odder]),
        &[],
        &mut BTreeSet::new(),
    )
    .unwrap_err();
    assert_eq!(
        skip,
        Skipped {
            volume: "v".into(),
            reason: "container odd has backup.quiesce=\"freeze\"; expected pause, stop or none"
                .into(),
        }
    );
}

#[test]
fn group_joins_by_shared_container_or_project_transitively() {
    let x = container("x", true, &[], &[]);
    let y = container("y", true, &[], &[]);
    let z = container("z", true, &[], &[]);
    let p1 = container("p1", true, &[], &[project("p")]);
    let p2 = container("p2", true, &[], &[project("p")]);
    let selected = [
        selected("0", &[&x]),
        selected("1", &[&p1]),
        selected("2", &[]),
        selected("3", &[&y, &x]),
        selected("4", &[&p2]),
        selected("5", &[&z, &y]),
        selected("6", &[&z]),
        selected("7", &[]),
    ];
    let mut sets = group(&selected);
    sets.sort();
    assert_eq!(sets, vec![vec![0, 3, 5, 6], vec![1, 4], vec![2], vec![7]]);
    assert!(group(&[]).is_empty());
}

#[test]
fn assemble_names_groups_dedups_members_and_sorts() {
    let a = container("a", true, &[], &[project("pb")]);
    let b = container("b", true, &[], &[project("pa")]);
    let c = container("c", true, &[], &[]);
    let mut stop = selected("zz-stop", &[&c]);
    stop.freezers[0].1 = Quiesce::Stop;
    let selected = [
        selected("y-projects", &[&a]),
        selected("x-projects", &[&b, &a]),
        stop,
        selected("m-alone", &[]),
        selected("d-alone", &[]),
    ];
    let groups = assemble(&selected, vec![vec![0, 1], vec![2], vec![3, 4]]);
    let names: Vec<(&str, Vec<&str>)> = groups
        .iter()
        .map(|g| {
            (
                g.name.as_str(),
                g.volumes.iter().map(|v| v.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("m-alone", vec!["m-alone", "d-alone"]),
            ("pa+pb", vec!["y-projects", "x-projects"]),
            ("zz-stop", vec!["zz-stop"]),
        ]
    );
    let members: Vec<(&str, Quiesce)> = groups[1]
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.quiesce))
        .collect();
    assert_eq!(members, vec![("a", Quiesce::Pause), ("b", Quiesce::Pause)]);
    assert!(groups[0].members.is_empty());
    assert_eq!(
        groups[2].members,
        vec![Member {
            name: "c".into(),
            id: "c-id".into(),
            quiesce: Quiesce::Stop,
        }]
    );
}

#[test]
fn skipped_volumes_keep_name_order_across_steps() {
    let mut remote = volume("c-remote", &[ON]);
    remote.driver = "rclone".into();
    let inventory = inventory(
        vec![
            volume("d-opted-out", &[OFF]),
            remote,
            volume("b-opted-out", &[OFF]),
            volume("a-bad-label", &[ON]),
        ],
        vec![
            container("app", true, &["b-opted-out", "d-opted-out"], &[ON]),
            container("odd", true, &["a-bad-label"], &[(QUIESCE_LABEL, "x")]),
        ],
    );
    let skipped = |projects: Option<&[String]>| -> Vec<String> {
        plan(&inventory, projects, &[])
            .skipped
            .into_iter()
            .map(|s| s.volume)
            .collect()
    };
    assert_eq!(
        skipped(None),
        s(&["a-bad-label", "b-opted-out", "c-remote", "d-opted-out"])
    );
    // An opt-out a container asked for is reported whatever the project; the others are
    // out of scope.
    assert_eq!(
        skipped(Some(&s(&["p"]))),
        s(&["b-opted-out", "d-opted-out"])
    );
}

#[test]
fn prints_the_plan() {
    let inventory = inventory(
        vec![
            volume("data", &[ON, (EXCLUDE_LABEL, "cache/")]),
            volume("off", &[OFF]),
            volume("plain", &[ON]),
        ],
        vec![
            container("app", true, &["data", "off"], &[ON, project("nc")]),
            container(
                "db",
                true,
                &["data"],
                &[project("nc"), (QUIESCE_LABEL, "stop")],
            ),
            container("old", false, &["data"], &[]),
        ],
    );
    assert_eq!(
        plan(&inventory, None, &s(&["*.tmp"])).to_string(),
        "group nc: live pass, then freeze app (pause), db (stop) for a catch-up pass\n\
             \x20 volume data exclude *.tmp,cache/; old left alone (not running)\n\
             group plain: nothing to freeze, one pass\n\
             \x20 volume plain exclude *.tmp\n\
             skipped volume off: the volume is labelled backup.enable=false\n"
    );
    assert_eq!(
        Plan::default().to_string(),
        "no volumes selected (label a volume or a container backup.enable=true)\n"
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

#[test]
fn exec_labels_become_the_groups_hooks() {
    let inventory = Inventory {
        volumes: vec![volume("db-data", &[ON]), volume("cache", &[ON])],
        containers: vec![
            container(
                "db",
                true,
                &["db-data"],
                &[
                    project("p"),
                    ("backup.quiesce", "none"),
                    (EXEC_PRE_LABEL, " pg_dump -f /data/dump.sql "),
                    (EXEC_POST_LABEL, "rm /data/dump.sql"),
                    (EXEC_TIMEOUT_LABEL, "90s"),
                ],
            ),
            container(
                "app",
                true,
                &["db-data"],
                &[project("p"), (EXEC_POST_LABEL, "")],
            ),
            container("stopped", false, &["db-data"], &[(EXEC_PRE_LABEL, "x")]),
            container(
                "slow",
                true,
                &["cache"],
                &[(EXEC_PRE_LABEL, "sync"), (EXEC_TIMEOUT_LABEL, "soon")],
            ),
        ],
        self_id: None,
        ..Default::default()
    };
    let plan = plan(&inventory, None, &[]);
    assert_eq!(plan.groups.len(), 1);
    let group = &plan.groups[0];
    // Not frozen (quiesce none) and still its commands run; a stopped container's do not.
    assert_eq!(
        group.hooks,
        vec![ExecHook {
            container: "db".into(),
            id: "db-id".into(),
            pre: Some("pg_dump -f /data/dump.sql".into()),
            post: Some("rm /data/dump.sql".into()),
            timeout: Duration::from_secs(90),
        }]
    );
    assert_eq!(
        plan.warnings,
        vec!["container app has an empty backup.exec-post: no command runs".to_string()]
    );
    assert_eq!(plan.skipped.len(), 1);
    assert_eq!(plan.skipped[0].volume, "cache");
    assert!(
        plan.skipped[0]
            .reason
            .contains("backup.exec-timeout=\"soon\""),
        "{}",
        plan.skipped[0].reason
    );
    let printed = plan.to_string();
    assert!(
        printed.contains("  backup.exec-pre in db: pg_dump -f /data/dump.sql\n"),
        "{printed}"
    );
    assert!(
        printed.contains("warning: container app has an empty"),
        "{printed}"
    );
    let default = exec_hook(
        &container("c", true, &[], &[(EXEC_PRE_LABEL, "x")]),
        &mut BTreeSet::new(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(default.timeout, DEFAULT_EXEC_TIMEOUT);
}

fn with_binds(mut c: ContainerInfo, binds: &[&str]) -> ContainerInfo {
    c.binds = binds.iter().map(|b| b.to_string()).collect();
    c
}

#[test]
fn bind_names_are_stable_readable_and_never_collide() {
    assert_eq!(bind_name("/srv/nextcloud/data"), "_bind-srv-nextcloud-data");
    assert_eq!(bind_name("/srv/my-app/data"), "_bind-srv-my%2Dapp-data");
    assert_eq!(bind_name("/srv/my_app/da ta"), "_bind-srv-my_app-da%20ta");
    // Paths that a plain join would confuse.
    let paths = [
        "/a-b/c", "/a/b-c", "/a/b/c", "/a-b-c", "/a%2Db/c", "/a/b/c/",
    ];
    let names: BTreeSet<String> = paths[..5].iter().map(|p| bind_name(p)).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(bind_name(paths[5]), bind_name(paths[2]));
    for path in &paths[..5] {
        assert_eq!(bind_path(&bind_name(path)).as_deref(), Some(*path));
    }
    for bad in [
        "_bind-a-%2Fetc",
        "_bind-..-etc",
        "_bind-a--b",
        "_bind-a%2",
        "vol",
        "_bind-a%2db",
    ] {
        assert_eq!(bind_path(bad), None, "{bad}");
    }
    assert_eq!(project_dir_name("my-app"), "_project-my-app");
    assert_eq!(project_dir_name("a/b"), "_project-a%2Fb");
}

fn host(paths: &[(&str, HostPath)]) -> Option<BTreeMap<String, HostPath>> {
    Some(paths.iter().map(|(p, k)| (p.to_string(), *k)).collect())
}

#[test]
fn binds_of_labelled_containers_are_sources_and_system_paths_never() {
    let app = with_binds(
        container(
            "app",
            true,
            &[],
            &[ON, project("p"), (EXCLUDE_LABEL, "*.tmp, cache/")],
        ),
        &[
            "/srv/app/data",
            "/srv/app/data/uploads",
            "/var/run/docker.sock",
            "/proc",
            "/var/lib/docker/volumes",
            "/srv/gone",
            "/srv/link",
        ],
    );
    let off = with_binds(container("off", true, &[], &[OFF]), &["/srv/off"]);
    let plain = with_binds(container("plain", true, &[], &[]), &["/srv/plain"]);
    let sharer = with_binds(
        container("sharer", true, &[], &[]),
        &["/srv/app/data/uploads"],
    );
    let inventory = Inventory {
        containers: vec![app, off, plain, sharer],
        host: host(&[
            ("/srv/app/data", HostPath::Dir),
            ("/srv/app/data/uploads", HostPath::Dir),
            ("/var/run/docker.sock", HostPath::Special),
            ("/srv/link", HostPath::Link),
            ("/srv/off", HostPath::Dir),
            ("/srv/plain", HostPath::Dir),
        ]),
        docker_root: "/var/lib/docker".into(),
        ..Default::default()
    };
    let plan = plan(&inventory, None, &["*.log".to_string()]);
    assert_eq!(plan.groups.len(), 1, "{plan}");
    let group = &plan.groups[0];
    assert_eq!(group.name, "p");
    // The nested bind is the outer one's: its user freezes with it.
    let members: Vec<&str> = group.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(members, vec!["app", "sharer"]);
    let sources: Vec<(&str, &Origin, &[String])> = group
        .volumes
        .iter()
        .map(|v| (v.name.as_str(), &v.origin, v.excludes.as_slice()))
        .collect();
    let excludes = s(&["*.log", "*.tmp", "cache/"]);
    assert_eq!(
        sources,
        vec![
            (
                "_bind-srv-app-data",
                &Origin::Bind("/srv/app/data".into()),
                excludes.as_slice()
            ),
            // A vanished directory stays a source: its copy fails alone.
            (
                "_bind-srv-gone",
                &Origin::Bind("/srv/gone".into()),
                excludes.as_slice()
            ),
        ]
    );
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(plan.warnings[0].contains("/srv/link is a symbolic link"));
    assert!(
        plan.to_string()
            .contains("  bind /srv/app/data as _bind-srv-app-data")
    );
}

#[test]
fn without_the_host_root_binds_and_project_files_are_warnings() {
    let app = with_binds(
        container(
            "app",
            true,
            &["db"],
            &[
                ON,
                project("p"),
                (WORKING_DIR_LABEL, "/srv/p"),
                (CONFIG_FILES_LABEL, "/srv/p/compose.yaml"),
            ],
        ),
        &["/srv/p/data", "/var/run/docker.sock"],
    );
    let inventory = Inventory {
        volumes: vec![volume("db", &[])],
        containers: vec![app],
        docker_root: "/var/lib/docker".into(),
        ..Default::default()
    };
    let plan = plan(&inventory, None, &[]);
    assert_eq!(names(&plan), vec![("p".into(), s(&["app"]), s(&["db"]))]);
    assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);
    assert!(
        plan.warnings[0].starts_with("bind mount /srv/p/data of container app is not backed up")
    );
    assert!(plan.warnings[0].contains("BACKUP_HOST_ROOT"));
    assert!(plan.warnings[1].starts_with("the files of compose project p"));
    assert!(plan.warnings[1].contains("BACKUP_HOST_ROOT"));
}

#[test]
fn a_compose_project_keeps_its_files_with_its_sources() {
    let labels = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![
            project("p"),
            (WORKING_DIR_LABEL, "/srv/p"),
            (
                CONFIG_FILES_LABEL,
                "/srv/p/compose.yaml,/srv/p/compose.override.yaml",
            ),
        ];
        l.extend_from_slice(extra);
        l
    };
    let web = with_binds(
        container("web", true, &["p_db"], &labels(&[ON])),
        &[
            "/srv/p/data",
            "/srv/p/nginx.conf",
            "/etc/localtime",
            "/var/run/docker.sock",
        ],
    );
    // Another service of the project, not backed up itself: its config is the project's too.
    let cron = with_binds(
        container("cron", false, &[], &labels(&[])),
        &["/opt/cron/crontab"],
    );
    let other = with_binds(
        container("other", true, &["o"], &[ON, project("q")]),
        &["/srv/q/conf.yaml"],
    );
    let inventory = Inventory {
        volumes: vec![volume("p_db", &[]), volume("o", &[])],
        containers: vec![web, cron, other],
        host: host(&[
            ("/srv/p/data", HostPath::Dir),
            ("/srv/p/nginx.conf", HostPath::File),
            ("/etc/localtime", HostPath::File),
            ("/var/run/docker.sock", HostPath::Special),
            ("/opt/cron/crontab", HostPath::File),
            ("/srv/p/compose.yaml", HostPath::File),
            ("/srv/p/compose.override.yaml", HostPath::Missing),
            ("/srv/p/.env", HostPath::File),
            ("/srv/q/conf.yaml", HostPath::File),
        ]),
        docker_root: "/var/lib/docker".into(),
        ..Default::default()
    };
    let plan = plan(&inventory, Some(&s(&["p"])), &["*.log".into()]);
    assert_eq!(
        names(&plan),
        vec![(
            "p".into(),
            s(&["web"]),
            s(&["_bind-srv-p-data", "p_db", "_project-p"])
        )]
    );
    let files = &plan.groups[0].volumes[2];
    assert!(files.excludes.is_empty());
    assert_eq!(
        files.origin,
        Origin::Project(ProjectFiles {
            project: "p".into(),
            working_dir: "/srv/p".into(),
            files: s(&[
                "/opt/cron/crontab",
                "/srv/p/.env",
                "/srv/p/compose.yaml",
                "/srv/p/nginx.conf"
            ]),
            volumes: s(&["p_db"]),
            binds: s(&["/srv/p/data"]),
        })
    );
    assert_eq!(
        plan.warnings,
        vec![
            "compose project p: /srv/p/compose.override.yaml is not a file on the host; it is \
             not kept"
                .to_string()
        ]
    );
}

#[test]
fn a_swarm_stack_groups_like_a_compose_project() {
    let stack =
        |name: &str, vols: &[&str]| container(name, true, vols, &[ON, (STACK_LABEL, "media")]);
    let inventory = Inventory {
        volumes: vec![
            volume("media_db", &[(STACK_LABEL, "media")]),
            volume("media_files", &[]),
        ],
        containers: vec![
            stack("media_db.1.x", &["media_db"]),
            stack("media_web.1.y", &["media_files"]),
        ],
        ..Default::default()
    };
    let plan = plan(&inventory, Some(&s(&["media"])), &[]);
    assert_eq!(
        names(&plan),
        vec![(
            "media".into(),
            s(&["media_db.1.x", "media_web.1.y"]),
            s(&["media_db", "media_files"])
        )]
    );
}

#[test]
fn a_project_keeps_what_its_compose_files_name() {
    use crate::engine::compose_file::{Named, References};
    let app = container(
        "app",
        true,
        &["p_db"],
        &[
            ON,
            project("p"),
            (WORKING_DIR_LABEL, "/srv/p"),
            (CONFIG_FILES_LABEL, "/srv/p/compose.yaml"),
        ],
    );
    let named = |path: &str, required| Named {
        path: path.into(),
        required,
    };
    let inventory = Inventory {
        volumes: vec![volume("p_db", &[])],
        containers: vec![app],
        host: host(&[
            ("/srv/p/compose.yaml", HostPath::File),
            ("/srv/p/.env", HostPath::Missing),
            ("/srv/p/web.env", HostPath::File),
            ("/srv/p/gone.env", HostPath::Missing),
            ("/srv/p/optional.env", HostPath::Missing),
        ]),
        docker_root: "/var/lib/docker".into(),
        compose_references: BTreeMap::from([(
            "p".to_string(),
            References {
                files: [
                    named("/srv/p/web.env", true),
                    named("/srv/p/gone.env", true),
                    named("/srv/p/optional.env", false),
                ]
                .into(),
                problems: [
                    "/srv/p/compose.yaml names ${X}.env, whose place depends on a \
                            variable"
                        .to_string(),
                ]
                .into(),
            },
        )]),
        ..Default::default()
    };
    let plan = plan(&inventory, None, &[]);
    let Origin::Project(files) = &plan.groups[0].volumes[1].origin else {
        panic!("{plan}");
    };
    assert_eq!(files.files, s(&["/srv/p/compose.yaml", "/srv/p/web.env"]));
    assert_eq!(
        plan.warnings,
        vec![
            "compose project p: /srv/p/compose.yaml names ${X}.env, whose place depends on a \
             variable; it is not kept"
                .to_string(),
            "compose project p: /srv/p/gone.env is not a file on the host; it is not kept"
                .to_string(),
        ]
    );
}
