//! `backup.exec-pre` and `backup.exec-post`: commands run inside the app's container through the
//! Docker exec API, before its group's live pass and after its thaw. A dump made by the pre
//! command reaches the mirror and the archive; a pre command that fails or hangs fails the group
//! (no snapshot) and leaves nothing frozen; the post command runs on every path.

mod common;

use std::time::Duration;

use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts an app container of the test's project with `volume` at /data and these labels.
fn app_with(env: &Env, suffix: &str, volume: &str, labels: &[(&str, &str)]) -> String {
    let mount = format!("{volume}:/data");
    let project = env.project_label();
    let mut args: Vec<String> = vec!["--label".into(), project, "-v".into(), mount];
    for (k, v) in labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.container(
        suffix,
        &args,
        APP_IMAGE,
        &[
            "sh",
            "-c",
            "while :; do date +%s%N > /data/clock; sleep 0.05; done",
        ],
    )
}

fn volume_file(env: &Env, volume: &str, path: &str) -> String {
    env.in_volume(volume, &format!("cat /data/{path} 2>/dev/null; true"))
}

#[test]
fn exec_commands_run_around_the_backup_and_a_failing_one_fails_the_group() {
    let env = Env::new("exec");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    let app = app_with(
        &env,
        "app",
        &volume,
        &[
            (
                "backup.exec-pre",
                "echo dumping; date +%s%N > /data/dump.txt; echo dumped >&2",
            ),
            ("backup.exec-post", "echo after > /data/post.txt"),
        ],
    );
    let sidecar = env.sidecar(&remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    // The dump made before the live pass is in the mirror and in the archive.
    let dump = volume_file(&env, &volume, "dump.txt");
    assert!(!dump.is_empty());
    assert_eq!(
        env.on_remote(&remote, &format!("cat /backup/mirror/{volume}/dump.txt")),
        dump
    );
    let archive = run["fields"]["archive"].as_str().unwrap().to_string();
    assert_eq!(
        env.archive_file(&remote, &archive, &format!("{volume}/dump.txt")),
        dump
    );
    // The post command ran after the thaw (so its file is not in this run's mirror).
    assert_eq!(volume_file(&env, &volume, "post.txt"), "after\n");
    // Both lines, each with its stream; stdout and stderr reach the engine on two pipes, so
    // their order is not kept.
    let mut lines: Vec<(String, String)> = events_named(&sidecar, "exec output")
        .iter()
        .map(|e| {
            let field = |f: &str| e["fields"][f].as_str().unwrap_or("").to_string();
            (field("line"), field("stream"))
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            ("dumped".to_string(), "stderr".to_string()),
            ("dumping".to_string(), "stdout".to_string())
        ],
        "the pre command's output is logged"
    );
    assert_running_not_paused(&app);

    // A pre command that fails: the group fails, nothing stays frozen, post still runs.
    docker(&["rm", "-f", &app]);
    env.in_volume(&volume, "rm -f /data/post.txt");
    let app = app_with(
        &env,
        "failing",
        &volume,
        &[
            ("backup.exec-pre", "echo 'the database is down' >&2; exit 3"),
            ("backup.exec-post", "echo after > /data/post.txt"),
        ],
    );
    let run = run_now(&sidecar, 1, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "failed", "{run}");
    assert_eq!(
        run["fields"]["archive"], "",
        "no snapshot after a failed dump"
    );
    let error = run["fields"]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("backup.exec-pre in")
            && error.contains("failed (exit 3): the database is down"),
        "{error}"
    );
    assert_eq!(volume_file(&env, &volume, "post.txt"), "after\n");
    assert_running_not_paused(&app);

    // A pre command that hangs past its timeout: stopped, the group fails, post runs.
    docker(&["rm", "-f", &app]);
    env.in_volume(&volume, "rm -f /data/post.txt");
    let app = app_with(
        &env,
        "hanging",
        &volume,
        &[
            ("backup.exec-pre", "sleep 600"),
            ("backup.exec-timeout", "2s"),
            ("backup.exec-post", "echo after > /data/post.txt"),
        ],
    );
    let run = run_now(&sidecar, 2, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "failed", "{run}");
    let error = run["fields"]["error"].as_str().unwrap_or("");
    assert!(error.contains("did not finish within 2s"), "{error}");
    assert_eq!(volume_file(&env, &volume, "post.txt"), "after\n");
    assert_running_not_paused(&app);
    wait_until(
        "the hung command to be stopped",
        Duration::from_secs(10),
        || !docker(&["top", &app]).contains("sleep 600"),
    );

    // An empty command is skipped with a warning; the run goes on.
    docker(&["rm", "-f", &app]);
    let _app = app_with(&env, "empty", &volume, &[("backup.exec-pre", " ")]);
    let run = run_now(&sidecar, 3, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let warned = events(&sidecar).iter().any(|e| {
        e["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("has an empty backup.exec-pre: no command runs"))
    });
    assert!(warned, "the empty command is warned about");
}
