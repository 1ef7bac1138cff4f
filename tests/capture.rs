//! End to end: capture on freeze. While the group is frozen the sidecar only copies what changed
//! into its staging area; the upload after the thaw must leave the mirror as the volume stood
//! while frozen, whatever the apps do next, and a run cut between thaw and upload must not lead
//! to a snapshot of an incomplete mirror.
//!
//! The live pass is slowed with `BACKUP_BWLIMIT` and a new incompressible file, so that the test
//! can change the volume while it runs (after the capture's start, before the freeze), and act
//! between the thaw and the end of the upload.
//!
//! Each case runs twice: with the change journal (the default: a warm run sends and looks at only
//! what the journal names) and with `BACKUP_CHANGE_JOURNAL=false` (every run walks everything).
//! The journal's own cases follow: what it must see, and when it must fall back and say so.

mod common;

use std::time::Duration;

use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// KiB/s: a 4 MB file takes about ten seconds.
const SLOW: &str = "400";

const SETUP: &str = "cd /data && mkdir -p keep/deep moved-away/b inner/sub plain && \
    for i in 1 2 3 4 5; do echo unchanged $i > keep/deep/f$i; done && \
    echo same-size-1 > inplace && for f in modes owner attrs acl; do echo content > $f; done && \
    echo rename me > old-name && echo a > moved-away/a && echo c > moved-away/b/c && \
    echo goes away > deleted && mkdir gone-dir && echo y > gone-dir/y && \
    echo file > becomes-dir && mkdir becomes-link && echo y > becomes-link/y && \
    echo file > file-to-link && echo linked > link-a && ln link-a link-b && \
    echo first > single && echo stays > plain/stays && echo i > inner/sub/i && \
    echo v1 > f";

/// Every kind of change, made while the live pass runs.
const CHANGES: &str = "cd /data && \
    printf 'same-size-2\\n' > inplace.tmp && cat inplace.tmp > inplace && rm inplace.tmp && \
    touch -r modes inplace && chmod 600 modes && chown 1234:1234 owner && \
    setfattr -n user.note -v changed attrs && setfacl -m u:1234:r acl && \
    mv old-name new-name && mv moved-away moved-here && mv inner/sub relocated-sub && \
    rm deleted && rm -r gone-dir && \
    rm becomes-dir && mkdir becomes-dir && echo now a dir > becomes-dir/x && \
    rm -r becomes-link && ln -s keep becomes-link && \
    rm file-to-link && ln -s keep/deep/f1 file-to-link && mkfifo a-fifo && \
    echo changed together > link-a && ln single second-name && \
    mkdir new-dir && echo new > new-dir/n && \
    touch -d '2001-02-03 04:05:06.123456789' plain && \
    mkdir aaa && head -c 2000000 /dev/urandom > aaa/e-big && echo v2 > f";

struct Stack {
    env: Env,
    remote: Remote,
    volume: String,
    app: String,
}

impl Stack {
    /// A volume with the hard cases' starting point, and an app that holds it (the remote's image:
    /// it has setfacl and setfattr).
    fn new(test: &str) -> Stack {
        let env = Env::new(test);
        let remote = env.remote();
        let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
        let label = env.project_label();
        let mount = format!("{volume}:/data");
        let app = env.container(
            "app",
            &["--label", &label, "-v", &mount, "--entrypoint", "sleep"],
            REMOTE_IMAGE,
            &["infinity"],
        );
        let stack = Stack {
            env,
            remote,
            volume,
            app,
        };
        stack.in_app(SETUP);
        stack
    }

    /// The sidecar, with the change journal on or off.
    fn sidecar(&self, journal: bool, extra: &[(&str, &str)]) -> String {
        let mut env = vec![(
            "BACKUP_CHANGE_JOURNAL",
            if journal { "true" } else { "false" },
        )];
        env.extend_from_slice(extra);
        self.env.sidecar(&self.remote, &env)
    }

    fn in_app(&self, script: &str) -> String {
        docker(&["exec", &self.app, "sh", "-c", script])
    }

    fn mirror(&self) -> String {
        format!("/backup/mirror/{}", self.volume)
    }

    /// Waits until the live pass is sending `name` (rsync's temporary file is in the mirror).
    fn wait_for_transfer_of(&self, name: &str) {
        let probe = format!("ls -a {} | grep -c '^\\.{name}\\.' || true", self.mirror());
        wait_until("the live pass to send the padding", RUN_TIMEOUT, || {
            self.env.on_remote(&self.remote, &probe).trim() != "0"
        });
    }

    fn digest_of_volume(&self) -> String {
        self.in_app(&format!("cd /data && {{ {FULL_DIGEST}; }}"))
    }

    fn digest_of_mirror(&self) -> String {
        self.env.on_remote(
            &self.remote,
            &format!("cd {} && {{ {FULL_DIGEST}; }}", self.mirror()),
        )
    }
}

/// The digest's lines that do not name `skip` (paths changed after the thaw).
fn without(digest: &str, skip: &[&str]) -> Vec<String> {
    digest
        .lines()
        .filter(|line| !skip.iter().any(|s| line.contains(s)))
        .map(String::from)
        .collect()
}

fn thawed_fields(sidecar: &str, index: usize) -> serde_json::Value {
    events_named(sidecar, "group thawed")[index]["fields"].clone()
}

fn synced_fields(sidecar: &str, index: usize) -> serde_json::Value {
    events_named(sidecar, "volume synced")[index]["fields"].clone()
}

/// Each case with the journal on and off.
macro_rules! both {
    ($case:ident, $on:ident, $off:ident) => {
        #[test]
        fn $on() {
            $case(true);
        }

        #[test]
        fn $off() {
            $case(false);
        }
    };
}

both!(
    every_hard_case,
    every_hard_case_reaches_the_mirror_as_it_stood_while_frozen,
    every_hard_case_reaches_the_mirror_as_it_stood_while_frozen_without_the_journal
);

fn every_hard_case(journal: bool) {
    let stack = Stack::new(if journal {
        "capture-cases"
    } else {
        "capture-cases-full"
    });
    let env = &stack.env;
    let sidecar = stack.sidecar(journal, &[("BACKUP_BWLIMIT", SLOW)]);
    let first = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");

    // A run whose live pass is slow; the volume changes in every way while it runs.
    stack.in_app("head -c 4000000 /dev/urandom > /data/pad");
    docker(&["kill", "-s", "USR1", &sidecar]);
    stack.wait_for_transfer_of("pad");
    stack.in_app(CHANGES);
    let frozen_big = stack.in_app("sha256sum < /data/aaa/e-big");

    // Right after the thaw the app writes again, while the upload (slowed too) still runs.
    wait_for_events(&sidecar, "group thawed", 2, RUN_TIMEOUT);
    stack.in_app("echo v3 > /data/f && head -c 2000000 /dev/urandom > /data/aaa/e-big");
    let second = wait_for_events(&sidecar, "run finished", 2, RUN_TIMEOUT).remove(1);
    assert_eq!(second["fields"]["outcome"], "success", "{second}");

    let thawed = thawed_fields(&sidecar, 1);
    assert_eq!(thawed["catch_up"], "capture", "{thawed}");
    assert!(thawed["staged_files"].as_u64().unwrap() >= 20, "{thawed}");
    // The first run walks everything; the second, with the journal, only what it named.
    let synced = synced_fields(&sidecar, 1);
    if journal {
        assert_eq!(synced["pass"], "journal", "{synced}");
        assert!(thawed.get("full_scan").is_none(), "{thawed}");
    } else {
        assert_eq!(synced["pass"], "full", "{synced}");
        assert_eq!(synced["reason"], "the change journal is off", "{synced}");
    }
    assert_eq!(synced_fields(&sidecar, 0)["pass"], "full");
    assert!(
        thawed["staged_bytes"].as_u64().unwrap() >= 2_000_000,
        "{thawed}"
    );

    // The mirror holds the frozen state: everything but the two files written after the thaw
    // is as the volume is now, and those two are as they were while frozen.
    let skip = [
        "./f ",
        "./aaa/e-big",
        "  ./f",
        "  ./aaa/e-big",
        "file: ./f",
        "file: ./aaa",
    ];
    assert_eq!(
        without(&stack.digest_of_mirror(), &skip),
        without(&stack.digest_of_volume(), &skip)
    );
    let mirror = stack.mirror();
    let on_mirror =
        |script: &str| env.on_remote(&stack.remote, &format!("cd {mirror} && {script}"));
    assert_eq!(on_mirror("cat f"), "v2\n");
    assert_eq!(on_mirror("sha256sum < aaa/e-big"), frozen_big);
    assert_eq!(stack.in_app("cat /data/f"), "v3\n");
    // Hard links made again, on both sides of the change.
    assert_eq!(
        on_mirror("stat -c %i link-a link-b second-name single | uniq | wc -l").trim(),
        "2"
    );
    assert_eq!(on_mirror("stat -c %F a-fifo").trim(), "fifo");
    assert_running_not_paused(&stack.app);
}

both!(
    staging_over_its_limit,
    staging_over_its_limit_falls_back_to_the_network_catch_up_and_says_so,
    staging_over_its_limit_falls_back_to_the_network_catch_up_and_says_so_without_the_journal
);

fn staging_over_its_limit(journal: bool) {
    let stack = Stack::new(if journal {
        "capture-limit"
    } else {
        "capture-limit-full"
    });
    let sidecar = stack.sidecar(
        journal,
        &[("BACKUP_STAGING_MAX", "1MiB"), ("BACKUP_BWLIMIT", SLOW)],
    );
    let first = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");

    stack.in_app("head -c 4000000 /dev/urandom > /data/pad");
    docker(&["kill", "-s", "USR1", &sidecar]);
    stack.wait_for_transfer_of("pad");
    stack.in_app("head -c 3000000 /dev/urandom > /data/changed-while-live");
    let second = wait_for_events(&sidecar, "run finished", 2, RUN_TIMEOUT).remove(1);
    assert_eq!(second["fields"]["outcome"], "success", "{second}");

    let thawed = thawed_fields(&sidecar, 1);
    assert_eq!(thawed["catch_up"], "network", "{thawed}");
    let reason = thawed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("BACKUP_STAGING_MAX"), "{thawed}");
    assert!(reason.contains("MiB changed while frozen"), "{thawed}");
    assert_eq!(stack.digest_of_mirror(), stack.digest_of_volume());
    assert_running_not_paused(&stack.app);
}

both!(
    killed_between_thaw_and_upload,
    a_sidecar_killed_between_thaw_and_upload_leaves_no_snapshot_and_the_next_run_completes,
    a_sidecar_killed_between_thaw_and_upload_leaves_no_snapshot_and_the_next_run_completes_without_the_journal
);

fn killed_between_thaw_and_upload(journal: bool) {
    let stack = Stack::new(if journal {
        "capture-kill"
    } else {
        "capture-kill-full"
    });
    let env = &stack.env;
    let sidecar = stack.sidecar(journal, &[("BACKUP_BWLIMIT", SLOW)]);
    let first = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");
    let archives = env.archives(&stack.remote);
    assert_eq!(archives.len(), 1, "{archives:?}");

    // A snapshot run whose capture holds a large new file; killed once thawed.
    stack.in_app("head -c 4000000 /dev/urandom > /data/pad");
    docker(&["kill", "-s", "USR1", &sidecar]);
    stack.wait_for_transfer_of("pad");
    stack.in_app("head -c 3000000 /dev/urandom > /data/big && echo v2 > /data/f");
    let thawed = wait_for_events(&sidecar, "group thawed", 2, RUN_TIMEOUT);
    assert_eq!(thawed[1]["fields"]["catch_up"], "capture", "{}", thawed[1]);
    docker(&["kill", "-s", "KILL", &sidecar]);
    assert_running_not_paused(&stack.app);

    // The mirror lacks the capture, and says it is incomplete; no archive was made of it.
    let mirror = stack.mirror();
    assert_eq!(
        env.on_remote(
            &stack.remote,
            "ls -a /backup/mirror | grep -c complete || true"
        )
        .trim(),
        "0"
    );
    assert_ne!(
        env.on_remote(&stack.remote, &format!("cat {mirror}/f")),
        "v2\n"
    );
    assert_eq!(env.archives(&stack.remote).len(), 1);

    // Started again: the run at start mirrors everything, and only then snapshots.
    docker(&["start", &sidecar]);
    let runs = wait_for_events(&sidecar, "run finished", 2, RUN_TIMEOUT);
    let last = runs.last().unwrap();
    assert_eq!(last["fields"]["outcome"], "success", "{last}");
    assert_eq!(stack.digest_of_mirror(), stack.digest_of_volume());
    let archives = env.archives(&stack.remote);
    assert_eq!(archives.len(), 2, "{archives:?}");
    let newest = format!("/backup/borg::{}", archives.last().unwrap());
    let listed = env.borg(
        &stack.remote,
        &["list", "--format", "{path} {size}{NL}", &newest],
    );
    assert!(
        listed
            .lines()
            .any(|l| l.ends_with(&format!("{}/big 3000000", stack.volume))),
        "{listed}"
    );
}

// The change journal's own cases.

/// Where this engine keeps its volumes, as the test (root on the host) sees them.
fn volumes_dir() -> std::path::PathBuf {
    match std::env::var("BS_TEST_ENGINE") {
        Ok(dir) => format!("{dir}/data/volumes").into(),
        Err(_) => "/var/lib/docker/volumes".into(),
    }
}

/// A kernel setting of the host, changed for one test and put back when it ends (even when it
/// fails). The tests run one at a time (scripts/test.sh), so no other sidecar sees it.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: u64) -> Sysctl {
        let old = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, value.to_string()).unwrap();
        Sysctl { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        std::fs::write(self.path, self.old.trim()).unwrap();
    }
}

/// Asks for a run and waits until `count` runs have finished; returns the last.
fn another_run(sidecar: &str, count: usize) -> serde_json::Value {
    docker(&["kill", "-s", "USR1", sidecar]);
    let runs = wait_for_events(sidecar, "run finished", count, RUN_TIMEOUT);
    let last = runs.last().unwrap().clone();
    assert_eq!(last["fields"]["outcome"], "success", "{last}");
    last
}

/// A directory made and filled while the live pass runs, and trees moved into the volume from
/// outside it (a rename on the same file system: everything in them keeps its old times), one
/// between the runs and one during the live pass: all of it reaches the mirror, from the journal.
#[test]
fn with_the_journal_new_and_moved_in_trees_reach_the_mirror() {
    let stack = Stack::new("journal-trees");
    let env = &stack.env;
    let outside = env.volume("outside", &[]);
    let outside_data = volumes_dir().join(&outside).join("_data");
    let inside_data = volumes_dir().join(&stack.volume).join("_data");
    for tree in ["tree1", "tree2"] {
        for d in 0..5 {
            let dir = outside_data.join(format!("{tree}/d{d}/deeper"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..10 {
                std::fs::write(dir.join(format!("f{f}")), format!("{tree} {d} {f}")).unwrap();
            }
        }
    }
    let sidecar = stack.sidecar(true, &[("BACKUP_BWLIMIT", SLOW)]);
    let first = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");

    // Between the runs: a tree moved in.
    std::fs::rename(outside_data.join("tree1"), inside_data.join("tree1")).unwrap();
    stack.in_app("head -c 4000000 /dev/urandom > /data/pad");
    docker(&["kill", "-s", "USR1", &sidecar]);
    stack.wait_for_transfer_of("pad");
    // During the live pass: another tree moved in, and a directory made and filled.
    std::fs::rename(outside_data.join("tree2"), inside_data.join("keep/tree2")).unwrap();
    stack.in_app(
        "mkdir -p /data/made/a/b && for i in $(seq 1 40); do echo $i > /data/made/a/b/f$i; done",
    );
    let runs = wait_for_events(&sidecar, "run finished", 2, RUN_TIMEOUT);
    assert_eq!(runs[1]["fields"]["outcome"], "success", "{}", runs[1]);
    let synced = synced_fields(&sidecar, 1);
    assert_eq!(synced["pass"], "journal", "{synced}");
    assert_eq!(stack.digest_of_mirror(), stack.digest_of_volume());
    assert_running_not_paused(&stack.app);
}

/// More events than the kernel's queue holds: the journal cannot know what it lost, so the
/// next run walks everything and says why; the one after is from the journal again. A daemon
/// started again starts watching anew: its first run walks everything too.
#[test]
fn an_overflow_or_a_restart_makes_the_next_run_whole_and_says_why() {
    let stack = Stack::new("journal-overflow");
    let sidecar = {
        // The queue's size is taken when the daemon starts its journal.
        let _small = Sysctl::set("/proc/sys/fs/inotify/max_queued_events", 16);
        let sidecar = stack.sidecar(true, &[]);
        let first = wait_for_run(&sidecar, RUN_TIMEOUT);
        assert_eq!(first["fields"]["outcome"], "success", "{first}");
        sidecar
    };
    let synced = synced_fields(&sidecar, 0);
    assert_eq!(synced["pass"], "full", "{synced}");
    let reason = synced["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("starts watching"), "{synced}");

    // A burst of events (gone again: a directory of 3,000 names keeps its size on ext4, and the
    // digests compare sizes).
    stack.in_app(
        "mkdir /data/flood && cd /data/flood && seq 1 3000 | xargs touch && rm -r /data/flood",
    );
    another_run(&sidecar, 2);
    let synced = synced_fields(&sidecar, 1);
    assert_eq!(synced["pass"], "full", "{synced}");
    let reason = synced["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("overflowed"), "{synced}");
    assert_eq!(stack.digest_of_mirror(), stack.digest_of_volume());

    stack.in_app("echo after > /data/f");
    another_run(&sidecar, 3);
    assert_eq!(synced_fields(&sidecar, 2)["pass"], "journal");

    docker(&["restart", "-t", "10", &sidecar]);
    let runs = wait_for_events(&sidecar, "run finished", 4, RUN_TIMEOUT);
    assert_eq!(runs[3]["fields"]["outcome"], "success", "{}", runs[3]);
    let synced = synced_fields(&sidecar, 3);
    assert_eq!(synced["pass"], "full", "{synced}");
    stack.in_app("echo again > /data/f");
    another_run(&sidecar, 5);
    assert_eq!(synced_fields(&sidecar, 4)["pass"], "journal");
    assert_eq!(stack.digest_of_mirror(), stack.digest_of_volume());
    assert_running_not_paused(&stack.app);
}

/// Watches in use by every process of the host's root user.
fn watches_in_use() -> u64 {
    let mut count = 0;
    for proc in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = std::fs::read_dir(proc.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(info) = std::fs::read_to_string(fd.path()) {
                count += info
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count() as u64;
            }
        }
    }
    count
}

/// A volume with more directories than the watches left: the journal gives back what it took,
/// the runs walk everything (and say why), and `check` warns.
#[test]
fn a_watch_limit_too_small_falls_back_says_so_and_check_warns() {
    let stack = Stack::new("journal-watches");
    stack.in_app("cd /data && for i in $(seq 1 300); do mkdir -p many/d$i; done");
    let _small = Sysctl::set(
        "/proc/sys/fs/inotify/max_user_watches",
        watches_in_use() + 100,
    );
    let sidecar = stack.sidecar(true, &[]);
    let first = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");
    stack.in_app("echo changed > /data/f");
    another_run(&sidecar, 2);
    let synced = synced_fields(&sidecar, 1);
    assert_eq!(synced["pass"], "full", "{synced}");
    let reason = synced["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("max_user_watches"), "{synced}");
    assert_eq!(stack.digest_of_mirror(), stack.digest_of_volume());
    let check = docker_output(&["exec", &sidecar, "backup-sidecar", "check"]);
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("WARN  change journal:") && l.contains("max_user_watches")),
        "{printed}"
    );
}

/// The scheduled full pass compares the mirror with what the journal named: after runs with
/// every kind of change, nothing is missed.
#[test]
fn the_scheduled_full_pass_finds_nothing_the_journal_missed() {
    let stack = Stack::new("journal-audit");
    let sidecar = stack.sidecar(true, &[("BACKUP_FULL_SCAN_SCHEDULE", "* * * * *")]);
    let first = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");
    // In this order, then again: each finds what the one before left.
    let changes = [
        "echo $$ > /data/f && mkdir -p /data/n1/a && echo x > /data/n1/a/x",
        "rm -rf /data/n2 && mv /data/n1 /data/n2 && rm -f /data/deleted && chmod 600 /data/modes",
        "printf '%s\\n' $$ > /data/inplace && ln -f /data/single /data/third-name",
        "rm -rf /data/moved-away /data/gone-dir/sub && mkdir /data/gone-dir/sub && echo s > /data/gone-dir/sub/s",
        "rm -rf /data/deep-moved && mkdir -p /data/keep/deep && echo d > /data/keep/deep/d && \
         mv /data/keep/deep /data/deep-moved && touch -d 2001-01-01 /data/plain",
    ];
    let started = std::time::Instant::now();
    let mut runs = 1;
    let mut journal_runs = 0;
    // Until a scheduled full pass comes after a run from the journal (the minute's first one
    // may come before any).
    let mut checks_before_the_journal = None;
    loop {
        let checks = events_named(&sidecar, "journal checked").len();
        if checks_before_the_journal.is_some_and(|before| checks > before) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "no scheduled full pass after a run from the journal"
        );
        stack.in_app(changes[(runs - 1) % changes.len()]);
        // The change's events reach the journal before the run is asked for. When they reach
        // it only after the live pass began (a loaded machine), the scheduled full pass was once
        // seen to find a directory's time different in the mirror ("keep", after its child was
        // moved out): an open defect of that path (docs/capture.md), not this test's subject.
        std::thread::sleep(Duration::from_secs(1));
        runs += 1;
        another_run(&sidecar, runs);
        if synced_fields(&sidecar, runs - 1)["pass"] == "journal" {
            journal_runs += 1;
            checks_before_the_journal.get_or_insert(checks);
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    assert!(journal_runs > 0, "a run between came from the journal");
    for checked in events_named(&sidecar, "journal checked") {
        assert_eq!(checked["fields"]["missed"], 0, "{checked}");
    }
    let synced = synced_fields(&sidecar, runs - 1);
    assert_eq!(synced["pass"], "full", "{synced}");
    let reason = synced["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("BACKUP_FULL_SCAN_SCHEDULE"), "{synced}");
    assert_eq!(stack.digest_of_mirror(), stack.digest_of_volume());
}
