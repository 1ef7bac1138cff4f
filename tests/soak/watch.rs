//! What the soak watches while it runs: the sidecar's log events as they are printed (through
//! restarts of the sidecar and of the engine), the app's pauses as the engine reports them, the
//! daemon's memory and descriptors, and the seeded random numbers everything is drawn from.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::{docker, message};

/// splitmix64: small, seeded, the same sequence for the same seed on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `percent`%.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Nanoseconds since the epoch (the engine's events and the app's `date +%s%N` use this clock).
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// `docker events --since` wants seconds.
pub fn since_arg(ns: u128) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// A `docker` command that streams lines (`logs -f`, `events`), run again whenever it ends (the
/// container or the engine restarted) until stopped; `args` gives its arguments each time.
#[derive(Clone)]
pub struct Stream {
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<std::process::Child>>>,
}

impl Stream {
    pub fn start(
        mut args: impl FnMut() -> Vec<String> + Send + 'static,
        mut line: impl FnMut(usize, String) + Send + 'static,
    ) -> Stream {
        let stream = Stream {
            stop: Arc::new(AtomicBool::new(false)),
            child: Arc::new(Mutex::new(None)),
        };
        let shared = stream.clone();
        std::thread::spawn(move || {
            while !shared.stop.load(Ordering::SeqCst) {
                let child = Command::new("docker")
                    .args(args())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn();
                let Ok(mut child) = child else { return };
                let out = child.stdout.take().unwrap();
                *shared.child.lock().unwrap() = Some(child);
                for (i, text) in BufReader::new(out).lines().enumerate() {
                    let Ok(text) = text else { break };
                    line(i, text);
                }
                if let Some(mut child) = shared.child.lock().unwrap().take() {
                    let _ = child.wait();
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        stream
    }

    /// Stops the stream and its `docker` process.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(child) = self.child.lock().unwrap().as_mut() {
            let _ = child.kill();
        }
    }
}

/// Everything the sidecar printed as JSON events, as it prints them.
#[derive(Clone)]
pub struct Log {
    events: Arc<(Mutex<Vec<Value>>, Condvar)>,
}

impl Log {
    /// Follows `container`'s log with `docker logs -f`, again after each restart (the engine keeps
    /// a container's log across restarts; the lines already read are skipped).
    pub fn follow(container: &str) -> (Log, Stream) {
        let log = Log {
            events: Arc::new((Mutex::new(Vec::new()), Condvar::new())),
        };
        let shared = log.clone();
        let name = container.to_string();
        let mut seen = 0usize;
        let stream = Stream::start(
            move || vec!["logs".into(), "-f".into(), name.clone()],
            move |i, line| {
                if i < seen {
                    return;
                }
                seen = i + 1;
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    let (events, changed) = &*shared.events;
                    events.lock().unwrap().push(event);
                    changed.notify_all();
                }
            },
        );
        (log, stream)
    }

    /// How many events so far.
    pub fn len(&self) -> usize {
        self.events.0.lock().unwrap().len()
    }

    /// The events from `from` on.
    pub fn since(&self, from: usize) -> Vec<Value> {
        let events = self.events.0.lock().unwrap();
        events[from.min(events.len())..].to_vec()
    }

    /// Waits until `cond` holds of the events from `from` on; false on timeout.
    pub fn wait(&self, from: usize, timeout: Duration, cond: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (events, changed) = &*self.events;
        let mut guard = events.lock().unwrap();
        loop {
            if cond(&guard[from.min(guard.len())..]) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
    }
}

/// How many events of `events` have this message.
pub fn count(events: &[Value], name: &str) -> usize {
    events.iter().filter(|e| message(e) == name).count()
}

/// The app's pauses and thaws as the engine reports them, as they happen.
#[derive(Clone)]
pub struct Pauses {
    state: Arc<(Mutex<(u64, bool)>, Condvar)>,
}

impl Pauses {
    /// Follows the engine's `pause`/`unpause` events of `container` (by name, so a recreated
    /// container is followed too), again after the engine restarts.
    pub fn follow(container: &str) -> (Pauses, Stream) {
        let pauses = Pauses {
            state: Arc::new((Mutex::new((0, false)), Condvar::new())),
        };
        let shared = pauses.clone();
        let filter = format!("container={container}");
        let since = Arc::new(Mutex::new(now_ns()));
        let since_args = since.clone();
        let stream = Stream::start(
            move || {
                let since = since_arg(*since_args.lock().unwrap());
                ["events", "--since", &since, "--filter", &filter]
                    .into_iter()
                    .chain(["--filter", "event=pause", "--filter", "event=unpause"])
                    .chain(["--format", "{{.Status}} {{.TimeNano}}"])
                    .map(String::from)
                    .collect()
            },
            move |_, line| {
                let mut parts = line.split_whitespace();
                let status = parts.next().unwrap_or("");
                let at: u128 = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                let mut since = since.lock().unwrap();
                *since = (*since).max(at + 1);
                let (state, changed) = &*shared.state;
                let mut state = state.lock().unwrap();
                if status == "pause" {
                    state.0 += 1;
                    state.1 = true;
                } else {
                    state.1 = false;
                }
                changed.notify_all();
            },
        );
        (pauses, stream)
    }

    /// How many pauses so far, and whether the app is paused now.
    pub fn now(&self) -> (u64, bool) {
        *self.state.0.lock().unwrap()
    }

    /// Waits for pause number `n` (1-based); false on timeout.
    pub fn wait_pause(&self, n: u64, timeout: Duration) -> bool {
        let (state, changed) = &*self.state;
        let guard = state.lock().unwrap();
        let (guard, _) = changed
            .wait_timeout_while(guard, timeout, |s| s.0 < n)
            .unwrap();
        guard.0 >= n
    }
}

/// The pause windows (pause, unpause; ns) of `container` between `since_ns` and now, as the engine
/// kept them; a pause with no unpause yet ends now.
pub fn pause_windows(container: &str, since_ns: u128) -> Vec<(u128, u128)> {
    let until = now_ns();
    let filter = format!("container={container}");
    let out = docker(&[
        "events",
        "--since",
        &since_arg(since_ns),
        "--until",
        &since_arg(until),
        "--filter",
        &filter,
        "--filter",
        "event=pause",
        "--filter",
        "event=unpause",
        "--format",
        "{{.Status}} {{.TimeNano}}",
    ]);
    let mut windows = Vec::new();
    let mut open: Option<u128> = None;
    for line in out.lines() {
        let mut parts = line.split_whitespace();
        let status = parts.next().unwrap_or("");
        let Some(at) = parts.next().and_then(|t| t.parse::<u128>().ok()) else {
            continue;
        };
        match status {
            "pause" => open = Some(open.unwrap_or(at)),
            _ => {
                if let Some(paused) = open.take() {
                    windows.push((paused, at));
                }
            }
        }
    }
    if let Some(paused) = open {
        windows.push((paused, until));
    }
    windows
}

/// The daemon's process (tini's child) on the host: its pid, resident memory (kB) and open
/// descriptors.
pub fn daemon_usage(sidecar: &str) -> Option<(u32, u64, usize)> {
    let tini = docker(&["inspect", "--format", "{{.State.Pid}}", sidecar]);
    let tini: u32 = tini.trim().parse().ok().filter(|p| *p > 0)?;
    let children = std::fs::read_to_string(format!("/proc/{tini}/task/{tini}/children")).ok()?;
    let pid: u32 = children.split_whitespace().next()?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((pid, rss, fds))
}
