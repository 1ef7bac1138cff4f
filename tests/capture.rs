//! End to end: capture on freeze. While the group is frozen the sidecar only copies what changed
//! into its staging area; the upload after the thaw must leave the mirror as the volume stood
//! while frozen, whatever the apps do next, and a run cut between thaw and upload must not lead
//! to a snapshot of an incomplete mirror.
//!
//! The live pass is slowed with `BACKUP_BWLIMIT` and a new incompressible file, so that the test
//! can change the volume while it runs (after the capture's start, before the freeze), and act
//! between the thaw and the end of the upload.

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

#[test]
fn every_hard_case_reaches_the_mirror_as_it_stood_while_frozen() {
    let stack = Stack::new("capture-cases");
    let env = &stack.env;
    let sidecar = env.sidecar(&stack.remote, &[("BACKUP_BWLIMIT", SLOW)]);
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

#[test]
fn staging_over_its_limit_falls_back_to_the_network_catch_up_and_says_so() {
    let stack = Stack::new("capture-limit");
    let env = &stack.env;
    let sidecar = env.sidecar(
        &stack.remote,
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

#[test]
fn a_sidecar_killed_between_thaw_and_upload_leaves_no_snapshot_and_the_next_run_completes() {
    let stack = Stack::new("capture-kill");
    let env = &stack.env;
    let sidecar = env.sidecar(&stack.remote, &[("BACKUP_BWLIMIT", SLOW)]);
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
