//! The chaos soak: a seeded random schedule of runs and faults over a real engine, the real guarded
//! remote and an app whose every state can be checked ([`app`]), with the four promises checked
//! after every step:
//! 1. no container is left paused or stopped by us (after at most one restart of the sidecar);
//! 2. every archive equals the app's volumes at one frozen instant of its run;
//! 3. nothing is lost: a restore of the newest archive passes the app's own invariant;
//! 4. the sidecar recovers without a person: once a fault is healed, the next run succeeds.
//!
//! `soak_smoke` (about 20 runs) is in the normal suite; the long soak is ignored by default:
//! `SOAK_RUNS=300 cargo test --test soak -- --ignored --nocapture soak`. It prints the seed first
//! (`SOAK_SEED=N` replays the same schedule of faults) and one line per step. `SOAK_FAULTS=external`
//! draws only the faults that leave the sidecar's process running, to measure its memory and
//! descriptors over hundreds of runs. docs/faults.md says what it checks and what it cannot fake.

#[path = "../common/mod.rs"]
mod common;

mod app;
mod checks;
mod faults;
mod tally;
mod watch;

use std::time::{Duration, Instant};

use serde_json::Value;

use checks::normalize;
use common::*;
use faults::{Fault, LoopDisk, Moment};
use tally::Tally;
use watch::{Log, Pauses, Rng, Stream, count, now_ns};

/// Longest any step may take before the soak calls it hung.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest the app may stay paused: BACKUP_PAUSE_TIMEOUT (60 s) and a restart of the sidecar.
const PAUSE_BOUND: Duration = Duration::from_secs(90);
/// A restore of the newest archive every this many runs.
const RESTORE_EVERY: usize = 10;
/// The sidecar's state directory (on a small disk of its own here).
const STATE_DIR: &str = "/var/lib/backup-sidecar";

fn seed() -> u64 {
    match std::env::var("SOAK_SEED") {
        Ok(seed) => seed.parse().expect("SOAK_SEED is a whole number"),
        Err(_) => now_ns() as u64,
    }
}

fn runs(default: usize) -> usize {
    std::env::var("SOAK_RUNS")
        .map(|r| r.parse().expect("SOAK_RUNS is a whole number"))
        .unwrap_or(default)
}

/// About 20 runs with faults, in `.ci/run`: a new seed every time, printed first.
#[test]
fn soak_smoke() {
    Soak::new("smoke", seed()).go(runs(20));
}

/// The long soak (300 runs unless SOAK_RUNS says).
#[test]
#[ignore]
fn soak() {
    Soak::new("soak", seed()).go(runs(300));
}

struct Soak {
    // Dropped first: removes the containers and volumes before the loop devices go.
    env: Env,
    _remote_disk: LoopDisk,
    _state_disk: LoopDisk,
    remote: Remote,
    sidecar: String,
    app: String,
    ledger: String,
    balances: String,
    static_digest: String,
    seed: u64,
    rng: Rng,
    drawn_from: Vec<Fault>,
    log: Log,
    pauses: Pauses,
    streams: Vec<Stream>,
    tally: Tally,
    violations: Vec<String>,
    /// The newest archive a run made, and the runs since the last restore check.
    newest: Option<String>,
    since_restore: usize,
    /// The daemon process being measured and how many runs it finished.
    daemon: Option<(u32, usize)>,
    /// Archives and leftovers are checked on every this many steps (`SOAK_CHECK_EVERY`, 1).
    check_every: usize,
}

impl Drop for Soak {
    fn drop(&mut self) {
        for stream in &self.streams {
            stream.stop();
        }
    }
}

impl Soak {
    fn new(test: &str, seed: u64) -> Soak {
        println!("soak: seed {seed} (SOAK_SEED={seed} replays this schedule)");
        let env = Env::new(test);
        let remote_disk = LoopDisk::new(&env, "remote-disk", 1024);
        env.with_volume(
            &remote_disk.volume,
            &[APP_IMAGE, "mkdir", "-p", "/data/mirror"],
        );
        let remote_mount = format!("{}:/backup", remote_disk.volume);
        let remote = env.remote_with(&["-v", &remote_mount]);
        let state_disk = LoopDisk::new(&env, "state", 64);
        let project = env.project_label();
        let ledger = env.volume("ledger", &["backup.enable=true", &project]);
        let balances = env.volume("balances", &["backup.enable=true", &project]);
        env.in_volume(&ledger, app::STATIC_FILES);
        let static_digest = env.in_volume(&ledger, "cd /data/static && sha256sum f* | sort");
        let app = format!("{}-app", env.name);
        start_app(&env, &app, &ledger, &balances);
        let state_mount = format!("{}:{STATE_DIR}", state_disk.volume);
        let sidecar = env.sidecar_with(
            &remote,
            &[
                ("BACKUP_RUN_ON_START", "false"),
                ("BACKUP_BWLIMIT", "400"),
                ("BACKUP_RETRY_ATTEMPTS", "2"),
                ("BACKUP_RETRY_DELAY", "2s"),
                ("BACKUP_BORG_LOCK_WAIT", "10s"),
            ],
            &["-v", &state_mount],
        );
        let (log, log_stream) = Log::follow(&sidecar);
        let (pauses, pause_stream) = Pauses::follow(&app);
        let mut soak = Soak {
            _remote_disk: remote_disk,
            _state_disk: state_disk,
            remote,
            sidecar,
            app,
            ledger,
            balances,
            static_digest: normalize(&static_digest),
            seed,
            rng: Rng::new(seed),
            drawn_from: drawn_from(),
            log,
            pauses,
            streams: vec![log_stream, pause_stream],
            tally: Tally::default(),
            violations: Vec::new(),
            newest: None,
            since_restore: 0,
            daemon: None,
            check_every: std::env::var("SOAK_CHECK_EVERY")
                .map(|n| n.parse().expect("SOAK_CHECK_EVERY is a whole number"))
                .unwrap_or(1usize)
                .max(1),
            env,
        };
        soak.wait_started(0);
        soak
    }

    /// Starts the app again after it was removed.
    fn start_app(&self) {
        start_app(&self.env, &self.app, &self.ledger, &self.balances);
    }

    fn go(mut self, runs: usize) {
        let kinds: Vec<&str> = self.drawn_from.iter().map(|f| f.name()).collect();
        println!("soak: {runs} runs, faults drawn from: {}", kinds.join(", "));
        let began = Instant::now();
        while self.tally.started < runs {
            let faults = self.draw();
            self.step(&faults);
            if !faults.is_empty() {
                // Promise 4: once healed, the next run succeeds.
                self.step(&[]);
            }
            if self.since_restore >= RESTORE_EVERY {
                let during: Vec<Fault> = Fault::DURING_RESTORE
                    .into_iter()
                    .filter(|f| self.drawn_from.contains(f))
                    .collect();
                let fault = self.rng.chance(50).then(|| *self.rng.pick(&during));
                self.restore_check(fault);
            }
        }
        // The end: no fault, one run checked in full, health, a last restore.
        self.check_every = 1;
        let before = self.violations.len();
        self.step(&[]);
        let health = docker_output(&["exec", &self.sidecar, "backup-sidecar", "health"]);
        if !health.status.success() {
            self.violation(format!(
                "not healthy after the faults stopped: {}",
                String::from_utf8_lossy(&health.stdout)
            ));
        }
        self.restore_check(None);
        println!(
            "soak: done in {:.0} s; the end run, health and restore {}",
            began.elapsed().as_secs_f64(),
            if self.violations.len() == before {
                "held"
            } else {
                "FAILED"
            }
        );
        self.report();
        assert!(
            self.violations.is_empty(),
            "seed {}: {} promise(s) broken:\n{}",
            self.seed,
            self.violations.len(),
            self.violations.join("\n")
        );
        assert!(self.tally.archives_checked > 0, "no archive was checked");
        assert!(self.tally.restores_checked > 0, "no restore was checked");
    }

    fn violation(&mut self, what: String) {
        println!("soak: run {}: BROKEN: {what}", self.tally.started);
        self.violations
            .push(format!("run {}: {what}", self.tally.started));
    }

    /// The faults of the next step: none (a quarter), one, or two at different moments (at most
    /// one that ends the sidecar's process).
    fn draw(&mut self) -> Vec<(Fault, Moment)> {
        let n = match self.rng.below(100) {
            0..25 => 0,
            25..85 => 1,
            _ => 2,
        };
        let mut drawn: Vec<(Fault, Moment)> = Vec::new();
        while drawn.len() < n {
            let fault = *self.rng.pick(&self.drawn_from);
            let moment = *self.rng.pick(&Moment::IN_A_RUN);
            let clash = drawn
                .iter()
                .any(|(f, m)| *m == moment || (f.ends_sidecar() && fault.ends_sidecar()));
            if !clash {
                drawn.push((fault, moment));
            }
        }
        drawn.sort_by_key(|(_, m)| *m);
        drawn
    }

    /// One step: asks for a run, injects `faults` at their moments, heals them after a random
    /// while, waits until the sidecar is idle, then checks everything.
    fn step(&mut self, faults: &[(Fault, Moment)]) {
        let t0 = now_ns();
        // A fault between runs can start a run of its own (a second trigger): everything after
        // this point belongs to the step.
        let step_from = self.log.len();
        let pauses_before = self.pauses.now().0;
        let mut injected = Vec::new();
        for &(fault, moment) in faults.iter().filter(|(_, m)| *m == Moment::BetweenRuns) {
            if self.inject(fault) {
                injected.push((fault, moment, Moment::BetweenRuns));
            }
        }
        let mut healed = 0;
        if injected.iter().any(|(f, _, _)| f.ends_sidecar()) {
            // A sidecar stopped between runs is started again before the run is asked for.
            self.heal(&injected);
            healed = injected.len();
        }
        self.ensure_running();
        let from = self.log.len();
        docker(&["kill", "-s", "USR1", &self.sidecar]);
        self.tally.started += 1;
        for &(fault, moment) in faults.iter().filter(|(_, m)| *m != Moment::BetweenRuns) {
            self.reach(moment, from, pauses_before);
            let landed = self.moment_now(from);
            if self.inject(fault) {
                injected.push((fault, moment, landed));
            }
        }
        if injected.len() > healed {
            std::thread::sleep(self.rng.millis(6000));
            let pending = injected[healed..].to_vec();
            self.heal(&pending);
        }
        self.ensure_running();
        self.wait_idle(step_from);
        for &(fault, moment, landed) in &injected {
            *self
                .tally
                .faults
                .entry((fault, moment, landed))
                .or_default() += 1;
        }
        self.check_step(t0, step_from, &injected);
    }

    /// Waits until the run (started after event `from`) reaches `moment`, then a random part of
    /// it; returns at once if the run ended first.
    fn reach(&mut self, moment: Moment, from: usize, pauses_before: u64) {
        let extra = self.rng.millis(match moment {
            Moment::LivePass => 1500,
            Moment::Upload => 300,
            Moment::BorgCreate => 800,
            _ => 0,
        });
        if state(&self.sidecar).0 != "running" {
            // An earlier fault of the step ended the sidecar: its run reaches nothing more.
            return;
        }
        let finished = |events: &[Value]| count(events, "run finished") > 0;
        let wait = |name: &'static str, n: usize| {
            self.log.wait(from, STEP_TIMEOUT, move |events| {
                count(events, name) >= n || finished(events)
            });
        };
        match moment {
            Moment::BetweenRuns | Moment::Restore => {}
            Moment::LivePass => {
                wait("run started", 1);
                std::thread::sleep(extra);
            }
            Moment::Frozen => {
                // The engine says when the app is paused; the run may end first.
                let deadline = Instant::now() + STEP_TIMEOUT;
                while Instant::now() < deadline
                    && !self
                        .pauses
                        .wait_pause(pauses_before + 1, Duration::from_millis(200))
                    && count(&self.log.since(from), "run finished") == 0
                {}
            }
            Moment::Upload => {
                wait("group thawed", 1);
                std::thread::sleep(extra);
            }
            Moment::BorgCreate => {
                wait("volume synced", 2);
                std::thread::sleep(extra);
            }
            Moment::Prune => wait("snapshot created", 1),
        }
    }

    /// Where the run (started after event `from`) is now.
    fn moment_now(&self, from: usize) -> Moment {
        let events = self.log.since(from);
        if count(&events, "run finished") > 0 || count(&events, "run started") == 0 {
            Moment::BetweenRuns
        } else if self.pauses.now().1 {
            Moment::Frozen
        } else if count(&events, "snapshot created") > 0 {
            Moment::Prune
        } else if count(&events, "volume synced") >= 2 {
            Moment::BorgCreate
        } else if count(&events, "group thawed") > 0 {
            Moment::Upload
        } else {
            Moment::LivePass
        }
    }

    /// Injects `fault`; false (and a line saying why) where it cannot be (a fault of the same step
    /// already stopped or removed what it needs).
    fn inject(&mut self, fault: Fault) -> bool {
        let remote = self.remote.name.clone();
        let (sidecar, app, network) = (&self.sidecar, &self.app, &self.env.network);
        let argv: Vec<&str> = match fault {
            Fault::SidecarKill => vec!["kill", "-s", "KILL", sidecar],
            Fault::SidecarTerm => return self.stop_sidecar(),
            Fault::RemoteStop => vec!["stop", "-t", "1", &remote],
            Fault::RemoteRestart => vec!["restart", "-t", "1", &remote],
            Fault::NetworkCut => vec!["network", "disconnect", network, &remote],
            Fault::RemoteDiskFull => return faults::fill(&remote, "/backup"),
            Fault::StateDiskFull => return faults::fill(sidecar, STATE_DIR),
            Fault::EngineRestart => {
                faults::restart_engine();
                return true;
            }
            Fault::AppRestart => vec!["restart", "-t", "1", app],
            Fault::AppRecreate => vec!["rm", "-f", app],
            Fault::SecondTrigger => vec!["kill", "-s", "USR1", sidecar],
        };
        let out = docker_output(&argv);
        if !out.status.success() {
            println!(
                "soak: could not inject {}: {}",
                fault.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        out.status.success()
    }

    /// SIGTERM: the sidecar must exit 0 within 10 s with the app thawed.
    fn stop_sidecar(&mut self) -> bool {
        let started = Instant::now();
        if !docker_output(&["stop", "-t", "10", &self.sidecar])
            .status
            .success()
        {
            return false;
        }
        let took = started.elapsed();
        let exit = docker(&["inspect", "--format", "{{.State.ExitCode}}", &self.sidecar]);
        if exit.trim() != "0" || took >= Duration::from_secs(10) {
            self.violation(format!(
                "SIGTERM: exit {} after {took:?} (expected 0 within 10 s)",
                exit.trim()
            ));
        }
        if self.app_state() == ("running".into(), true) {
            self.violation("SIGTERM: the app was left paused at exit".into());
        }
        true
    }

    /// Undoes the faults: what was stopped is started, the network joined, the fillers removed.
    fn heal(&mut self, injected: &[(Fault, Moment, Moment)]) {
        let remote = self.remote.name.clone();
        let faults: Vec<Fault> = injected.iter().map(|(f, _, _)| *f).collect();
        if faults.contains(&Fault::EngineRestart) {
            docker(&["start", &remote]);
            docker_output(&["start", &self.app]);
        }
        if faults.contains(&Fault::RemoteStop) {
            docker(&["start", &remote]);
        }
        if faults.contains(&Fault::NetworkCut) {
            docker(&["network", "connect", &self.env.network, &remote]);
        }
        if faults.contains(&Fault::AppRecreate) {
            self.start_app();
        }
        if faults.iter().any(|f| f.ends_sidecar()) {
            self.ensure_running();
        }
        if faults.contains(&Fault::RemoteDiskFull) && !faults::unfill(&remote, "/backup") {
            self.violation("cannot remove the remote's filler".into());
        }
        if faults.contains(&Fault::StateDiskFull) && !faults::unfill(&self.sidecar, STATE_DIR) {
            self.violation("cannot remove the state disk's filler".into());
        }
        self.env.wait_sshd(&self.remote);
    }

    /// Starts the sidecar if it is not running, and waits until it listens for signals.
    fn ensure_running(&mut self) {
        if state(&self.sidecar).0 != "running" {
            let before = self.log.len();
            docker(&["start", &self.sidecar]);
            self.wait_started(before);
        }
    }

    /// Waits for the `backup-sidecar started` line logged after event `from` (before it, a
    /// SIGUSR1 could find no handler yet).
    fn wait_started(&mut self, from: usize) {
        let started = self.log.wait(from, Duration::from_secs(60), |events| {
            count(events, "backup-sidecar started") > 0
        });
        if !started {
            self.violation("the sidecar did not start within 60 s".into());
        }
    }

    /// Waits until every run started after event `from` has finished and none follows.
    fn wait_idle(&mut self, from: usize) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let events = self.log.since(from);
            // A run cut short by the end of the process logs no `run finished`.
            let lives = events
                .iter()
                .rposition(|e| message(e) == "backup-sidecar started");
            let current = &events[lives.unwrap_or(0)..];
            let open = count(current, "run started") > count(current, "run finished");
            if !open {
                let seen = self.log.len();
                std::thread::sleep(Duration::from_millis(1000));
                if self.log.len() == seen || count(&self.log.since(seen), "run started") == 0 {
                    return;
                }
                continue;
            }
            if Instant::now() > deadline {
                self.violation(format!("a run did not finish within {STEP_TIMEOUT:?}"));
                docker(&["restart", "-t", "10", &self.sidecar]);
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn app_state(&self) -> (String, bool) {
        if docker_output(&["inspect", &self.app]).status.success() {
            state(&self.app)
        } else {
            ("gone".into(), false)
        }
    }
}

/// The faults this soak draws from: all of them; only those that leave the sidecar's process
/// running with `SOAK_FAULTS=external`; all but the engine's restart on a second engine
/// (`BS_TEST_ENGINE`: restarting one there deleted the first engine's `docker0`).
fn drawn_from() -> Vec<Fault> {
    let external = std::env::var("SOAK_FAULTS").as_deref() == Ok("external");
    let second_engine = std::env::var("BS_TEST_ENGINE").is_ok();
    Fault::ALL
        .into_iter()
        .filter(|f| !(external && f.ends_sidecar()))
        .filter(|f| !(second_engine && *f == Fault::EngineRestart))
        .collect()
}

/// Starts the app container `name` on its two volumes (removing one of that name first).
fn start_app(env: &Env, name: &str, ledger: &str, balances: &str) {
    docker_output(&["rm", "-f", name]);
    let ledger = format!("{ledger}:/ledger");
    let balances = format!("{balances}:/bal");
    let project = env.project_label();
    let args = ["--label", &project, "-v", &ledger, "-v", &balances];
    let started = env.container("app", &args, APP_IMAGE, &["sh", "-c", app::LEDGER_APP]);
    assert_eq!(started, name);
}

/// Polls `cond` until it holds or `timeout` passes.
fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
