//! The checks after each step of the soak: the app runs unpaused, no pause outlasted its bound,
//! every run ended with a reason, every archive is one frozen instant of the app, a restore of the
//! newest archive passes the app's invariant, nothing was left behind, and the daemon's memory.

use std::time::Duration;

use serde_json::Value;

use crate::app::{self, Copy};
use crate::common::*;
use crate::faults::{Fault, Moment};
use crate::watch::{self, count};
use crate::{PAUSE_BOUND, STATE_DIR, Soak, wait_for};

impl Soak {
    /// The checks after a step: the app runs unpaused, no pause outlasted the bound, every run
    /// ended with a reason, every archive is one frozen instant, nothing was left behind.
    pub(crate) fn check_step(
        &mut self,
        t0: u128,
        from: usize,
        injected: &[(Fault, Moment, Moment)],
    ) {
        let broken_before = self.violations.len();
        self.check_step_inner(t0, from, injected);
        if self.violations.len() > broken_before {
            // What the sidecar said during the step, to find why.
            for event in self.log.since(from) {
                let mut fields = event["fields"].clone();
                let message = fields["message"].take();
                println!(
                    "soak:   | {} {message} {fields}",
                    event["timestamp"].as_str().unwrap_or("")
                );
            }
        }
    }

    fn check_step_inner(&mut self, t0: u128, from: usize, injected: &[(Fault, Moment, Moment)]) {
        let settled = wait_for(Duration::from_secs(30), || {
            self.app_state() == ("running".into(), false)
        });
        if !settled {
            let state = self.app_state();
            self.violation(format!("the app is {state:?} after the step"));
            if state.1 {
                docker_output(&["unpause", &self.app]);
            }
        }
        let windows = watch::pause_windows(&self.app, t0);
        let longest = windows
            .iter()
            .map(|(p, u)| Duration::from_nanos((u - p) as u64))
            .max()
            .unwrap_or_default();
        self.tally.longest_paused = self.tally.longest_paused.max(longest);
        if longest > PAUSE_BOUND {
            self.violation(format!("the app stayed paused {longest:?}"));
        }
        let events = self.log.since(from);
        let runs: Vec<&Value> = events
            .iter()
            .filter(|e| message(e) == "run finished")
            .collect();
        let started = count(&events, "run started");
        self.tally.interrupted += started.saturating_sub(runs.len());
        let mut line = Vec::new();
        // SOAK_CHECK_EVERY=N checks archives and leftovers on every Nth step only (a soak for
        // memory over many runs); the app, the pauses and the runs' outcomes always.
        let thorough = self.tally.started.is_multiple_of(self.check_every);
        let present = if thorough {
            self.env.archives(&self.remote)
        } else {
            Vec::new()
        };
        for run in &runs {
            let fields = &run["fields"];
            let freeze = fields["max_pause_ms"].as_u64().unwrap_or(0);
            self.tally.longest_freeze_ms = self.tally.longest_freeze_ms.max(freeze);
            let archive = fields["archive"].as_str().unwrap_or("").to_string();
            if fields["outcome"] == "success" {
                self.tally.succeeded += 1;
                line.push(format!("success {archive} (freeze {freeze} ms)"));
                if archive.is_empty() {
                } else if !thorough {
                    self.newest = Some(archive);
                } else if !present.contains(&archive) {
                    // A later run of the step pruned it (the retention keeps one a day).
                    self.tally.archives_pruned += 1;
                } else {
                    self.check_archive(&archive, &windows);
                    self.newest = Some(archive);
                    self.since_restore += 1;
                }
            } else {
                self.tally.failed += 1;
                let error = fields["error"].as_str().unwrap_or("").to_string();
                line.push(format!("failed (freeze {freeze} ms): {error}"));
                if injected.is_empty() {
                    self.violation(format!("a run failed with no fault: {error}"));
                }
                if error.is_empty() {
                    self.violation("a failed run gave no reason".into());
                }
            }
        }
        if runs.is_empty() {
            line.push("no run finished".into());
            if injected.iter().all(|(f, _, _)| !f.ends_sidecar()) {
                self.violation("no run finished and the sidecar was not stopped".into());
            }
        }
        if injected.is_empty()
            && !runs
                .iter()
                .any(|r| r["fields"]["outcome"] == "success" && r["fields"]["archive"] != "")
        {
            self.violation("a run with no fault made no archive".into());
        }
        let faults: Vec<String> = injected
            .iter()
            .map(|(f, m, l)| format!("{} aimed at {} landed in {}", f.name(), m.name(), l.name()))
            .collect();
        println!(
            "soak: run {}: [{}] -> {}; longest pause {} ms",
            self.tally.started,
            faults.join("; "),
            line.join("; "),
            longest.as_millis()
        );
        if thorough {
            self.check_leftovers(injected.is_empty());
        }
        self.measure_daemon(runs.len());
    }

    /// Promise 2: the archive holds one instant of the app, one at which its run had it paused.
    fn check_archive(&mut self, archive: &str, windows: &[(u128, u128)]) {
        self.tally.archives_checked += 1;
        let copy = self.archive_copy(archive);
        let history = self.history();
        let records = match app::records(&history) {
            Ok(r) => r,
            Err(e) => return self.violation(format!("the app's own ledger is broken: {e}")),
        };
        match app::check(&copy, &history) {
            Err(e) => self.violation(format!("archive {archive}: {e}")),
            Ok(n) if windows.is_empty() => {
                // The app was not running when its group was captured (removed by a fault).
                self.tally.archives_unfrozen += 1;
                println!("soak: archive {archive}: {n} records, taken with the app down");
            }
            Ok(n) => {
                if !app::taken_while_frozen(&records, n, windows, 500_000_000) {
                    self.violation(format!(
                        "archive {archive}: its {n} records are not the app at a frozen instant \
                         (pauses {windows:?})"
                    ));
                }
            }
        }
        let listed = self.env.borg(
            &self.remote,
            &[
                "list",
                "--format",
                "{sha256} {path}{NL}",
                &format!("/backup/borg::{archive}"),
                &format!("{}/static", self.ledger),
            ],
        );
        if normalize(&listed) != self.static_digest {
            self.violation(format!("archive {archive}: the static files differ"));
        }
    }

    fn archive_copy(&self, archive: &str) -> Copy {
        let file = |path: String| {
            let out = docker_output(
                &self
                    .env
                    .borg_argv(
                        &self.remote,
                        false,
                        &[
                            "extract",
                            "--stdout",
                            &format!("/backup/borg::{archive}"),
                            &path,
                        ],
                    )
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            );
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        };
        Copy {
            ledger: file(format!("{}/ledger", self.ledger)).unwrap_or_default(),
            balances: file(format!("{}/balances", self.balances)).unwrap_or_default(),
            blob: file(format!("{}/blob", self.ledger)),
        }
    }

    /// The app's whole history so far (its ledger, read from the volume).
    fn history(&self) -> String {
        self.env.in_volume(&self.ledger, "cat /data/ledger")
    }

    /// Nothing left behind once idle: no restore helper, no lock or borg/rsync on the remote, no
    /// ssh, rsync or borg in the sidecar, no ssh control directory, an empty staging area. After a
    /// fault some can stay until the next run clears them (a lock in a repository whose remote
    /// was stopped, say): `strict` is for the step with no fault, which must leave nothing.
    fn check_leftovers(&mut self, strict: bool) {
        let mut last = String::new();
        let clean = wait_for(Duration::from_secs(if strict { 30 } else { 5 }), || {
            last = leftovers(&self.sidecar, &self.remote.name);
            last.is_empty()
        });
        if clean {
            return;
        }
        if strict {
            self.violation(format!("left behind: {last}"));
        } else {
            self.tally.left_for_next_run += 1;
            println!("soak: left for the next run to clear: {last}");
        }
    }

    /// Memory and descriptors of the daemon process, at its 50th run and at the end.
    fn measure_daemon(&mut self, finished: usize) {
        let Some((pid, rss, fds)) = watch::daemon_usage(&self.sidecar) else {
            return;
        };
        let runs = match self.daemon {
            Some((p, runs)) if p == pid => runs + finished,
            _ => finished,
        };
        self.daemon = Some((pid, runs));
        if runs >= 50 && self.tally.memory_at_50.is_none_or(|(r, _, _)| r > runs) {
            self.tally.memory_at_50 = Some((runs, rss, fds));
        }
        if self.tally.memory_last.is_none_or(|(r, _, _)| runs >= r) {
            self.tally.memory_last = Some((runs, rss, fds));
        }
    }

    /// Promise 3: the newest archive restored into new volumes passes the app's invariant and
    /// equals the archive; with `fault`, a first restore meets it and a second one must succeed.
    pub(crate) fn restore_check(&mut self, fault: Option<Fault>) {
        self.since_restore = 0;
        let Some(archive) = self.newest.clone() else {
            return;
        };
        let targets = [
            (self.ledger.clone(), format!("{}-check", self.ledger)),
            (self.balances.clone(), format!("{}-check", self.balances)),
        ];
        for (_, target) in &targets {
            docker_output(&["volume", "rm", "-f", target]);
            self.env.track_volume(target);
        }
        if let Some(fault) = fault {
            let argv = restore_argv(&self.sidecar, &targets[0].0, &archive, &targets[0].1);
            let first = std::thread::spawn(move || {
                docker_output(&argv.iter().map(String::as_str).collect::<Vec<_>>())
            });
            std::thread::sleep(self.rng.millis(1500));
            let injected = self.inject(fault);
            std::thread::sleep(self.rng.millis(3000));
            if injected {
                self.heal(&[(fault, Moment::Restore, Moment::Restore)]);
                self.tally.restores_with_fault += 1;
                *self
                    .tally
                    .faults
                    .entry((fault, Moment::Restore, Moment::Restore))
                    .or_default() += 1;
            }
            let out = first.join().unwrap();
            println!(
                "soak: restore met {}: {}",
                fault.name(),
                if out.status.success() {
                    "it succeeded".to_string()
                } else {
                    let printed = format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let last = printed.lines().rfind(|l| !l.trim().is_empty());
                    format!("it failed: {}", last.unwrap_or("(nothing printed)"))
                }
            );
            self.ensure_running();
            self.check_leftovers(false);
        }
        for (source, target) in &targets {
            let argv = restore_argv(&self.sidecar, source, &archive, target);
            let out = docker_output(&argv.iter().map(String::as_str).collect::<Vec<_>>());
            if !out.status.success() {
                return self.violation(format!(
                    "restore of {source} from {archive} failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let restored = Copy {
            ledger: self.env.in_volume(&targets[0].1, "cat /data/ledger"),
            balances: self.env.in_volume(&targets[1].1, "cat /data/balances"),
            blob: Some(self.env.in_volume(&targets[0].1, "cat /data/blob")),
        };
        let history = self.history();
        self.tally.restores_checked += 1;
        if let Err(e) = app::check(&restored, &history) {
            return self.violation(format!("restored from {archive}: {e}"));
        }
        let archived = self.archive_copy(&archive);
        if archived.ledger != restored.ledger
            || archived.balances != restored.balances
            || archived.blob != restored.blob
        {
            self.violation(format!("restored from {archive}: differs from the archive"));
        }
        let digest = self
            .env
            .in_volume(&targets[0].1, "cd /data/static && sha256sum f* | sort");
        if normalize(&digest) != self.static_digest {
            self.violation(format!("restored from {archive}: the static files differ"));
        }
        println!("soak: restore of {archive}: the invariant holds");
    }
}

/// The `docker exec` argv of a restore of `volume` from `archive` into `target`.
fn restore_argv(sidecar: &str, volume: &str, archive: &str, target: &str) -> Vec<String> {
    [
        "exec",
        sidecar,
        "backup-sidecar",
        "restore",
        volume,
        "--from",
        archive,
        "--to",
        target,
        "--yes",
    ]
    .map(String::from)
    .to_vec()
}

/// What is left behind, or nothing.
fn leftovers(sidecar: &str, remote: &str) -> String {
    let mut found = Vec::new();
    let helpers = docker(&[
        "ps",
        "-aq",
        "--filter",
        "label=backup-sidecar.restore-helper",
    ]);
    if !helpers.trim().is_empty() {
        found.push(format!(
            "restore helpers {}",
            helpers.split_whitespace().count()
        ));
    }
    let on_remote = docker_output(&[
        "exec",
        remote,
        "sh",
        "-c",
        "test -e /backup/borg/lock.exclusive && echo 'borg lock'; \
         for p in /proc/[0-9]*; do c=$(tr '\\000' ' ' < $p/cmdline 2>/dev/null); \
         case \"$c\" in *borg*|*rsync*) echo \"remote process: $c\";; esac; done",
    ]);
    let on_remote = String::from_utf8_lossy(&on_remote.stdout);
    found.extend(
        on_remote
            .lines()
            .filter(|l| !l.contains("/proc/[0-9]"))
            .map(String::from),
    );
    let in_sidecar = docker_output(&[
        "exec",
        sidecar,
        "sh",
        "-c",
        &format!(
            "ls -d /tmp/bs-ssh* 2>/dev/null; ls -A {STATE_DIR}/staging 2>/dev/null | sed 's/^/staging: /'; \
             for p in /proc/[0-9]*; do c=$(tr '\\000' ' ' < $p/cmdline 2>/dev/null); \
             case \"$c\" in ssh*|rsync*|borg*|*/ssh\\ *) echo \"sidecar process: $c\";; esac; done"
        ),
    ]);
    found.extend(
        String::from_utf8_lossy(&in_sidecar.stdout)
            .lines()
            .map(String::from),
    );
    found.join(", ")
}

/// `sha256sum` and `borg list` lines as `HASH NAME` with the name's last part only, sorted.
pub(crate) fn normalize(listing: &str) -> String {
    let mut lines: Vec<String> = listing
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let hash = parts.next()?;
            let path = parts.next()?;
            let name = path.rsplit('/').next()?;
            name.starts_with('f').then(|| format!("{hash} {name}"))
        })
        .collect();
    lines.sort();
    lines.join("\n")
}
