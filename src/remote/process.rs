//! Child process supervision: typed argv, a process group of its own, stdin closed or fed once,
//! stdout and stderr drained concurrently, and the whole group stopped on cancellation or drop
//! (rsync starts ssh, so killing only the direct child would leave ssh behind).

use std::ffi::OsString;
use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// How long a child group gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// How much of stderr is kept for the error message.
const STDERR_TAIL: usize = 4096;

/// A command to run: program and arguments as typed values, never a shell string.
#[derive(Clone)]
pub struct Cmd {
    /// Program name or path.
    pub program: String,
    /// Arguments.
    pub args: Vec<OsString>,
    /// Bytes written to stdin, then stdin is closed (for a passphrase); `None` means stdin is null.
    /// Never logged.
    pub stdin: Option<Vec<u8>>,
}

impl Cmd {
    /// A command with no arguments yet.
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .process_group(0)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Arguments never hold secrets (those go through stdin), so they may be shown.
        write!(f, "{}", self.program)?;
        for arg in &self.args {
            write!(f, " {}", arg.to_string_lossy())?;
        }
        Ok(())
    }
}

/// What a finished child left.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Exit code, `None` when killed by a signal.
    pub code: Option<i32>,
    /// All of stdout.
    pub stdout: String,
    /// The last few KiB of stderr.
    pub stderr: String,
}

impl Finished {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last non-empty stderr line, for a one-line error.
    pub fn last_error_line(&self) -> &str {
        crate::remote::fault::last_line(&self.stderr)
    }
}

/// Kills the process group with SIGKILL when dropped while armed, so a child never outlives the
/// future that supervises it (a panic or a dropped future included).
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; a stale group id yields ESRCH, which we ignore.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// SIGTERM to the group, a short grace, then SIGKILL; reaps the child.
async fn terminate(child: &mut Child, pgid: i32) {
    signal_group(pgid, libc::SIGTERM);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        signal_group(pgid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Whatever the child started in its group goes too.
    signal_group(pgid, libc::SIGKILL);
}

/// Runs a command to its end. Returns an error if it cannot start or is cancelled (then its whole
/// process group has been stopped); a non-zero exit is returned as [`Finished`] for the caller to
/// classify.
pub async fn run(cmd: &Cmd, cancel: &CancellationToken) -> Result<Finished> {
    let watch = Watch {
        stdout: &mut |_| false,
        stderr: &mut |line| Some(line.to_string()),
    };
    run_watched(cmd, cancel, watch).await
}

/// What [`run_watched`] does with each line as it comes. Progress meters report through these:
/// a days-long transfer's progress would not fit in memory, so what they take is not kept.
pub struct Watch<'a> {
    /// Each line of stdout (a line ends at `\n` or `\r`, which meters use to redraw); true
    /// takes it out of [`Finished::stdout`].
    pub stdout: &'a mut (dyn FnMut(&str) -> bool + Send),
    /// Each line of stderr; `None` takes it out of [`Finished::stderr`], `Some` keeps that text
    /// in its place (a JSON log line as its message, say).
    pub stderr: &'a mut (dyn FnMut(&str) -> Option<String> + Send),
}

/// [`run`], handing each line of output to `watch` as it comes.
pub async fn run_watched(
    cmd: &Cmd,
    cancel: &CancellationToken,
    watch: Watch<'_>,
) -> Result<Finished> {
    let Watch {
        stdout: watch_stdout,
        stderr: watch_stderr,
    } = watch;
    tracing::debug!(command = ?cmd, "starting child");
    let mut child = cmd
        .command()
        .spawn()
        .with_context(|| format!("cannot start {}", cmd.program))?;
    let pgid = child.id().map(|id| id as i32);
    let mut guard = GroupGuard { pgid };

    let stdin = child.stdin.take();
    let input = cmd.stdin.clone();
    let feed = async move {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            // The child may not read it at all (borg needs no key for some commands): a broken
            // pipe here is not an error.
            let _ = stdin.write_all(&input).await;
        }
    };
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let read_stdout = async move {
        let mut out = String::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 8192];
        // `ended`: the line had its terminator (the last one may not).
        let mut keep = |line: &[u8], ended: bool, out: &mut String| {
            let line = String::from_utf8_lossy(line);
            if !watch_stdout(&line) {
                out.push_str(&line);
                if ended {
                    out.push('\n');
                }
            }
        };
        loop {
            let n = match stdout.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&chunk[..n]);
            while let Some(end) = pending.iter().position(|b| *b == b'\n' || *b == b'\r') {
                keep(&pending[..end], true, &mut out);
                pending.drain(..=end);
            }
        }
        if !pending.is_empty() {
            keep(&pending, false, &mut out);
        }
        out
    };
    let stderr = child.stderr.take().expect("stderr is piped");
    let program = cmd.program.clone();
    let read_stderr = async move {
        let mut tail = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Some(line) = watch_stderr(&line) else {
                continue;
            };
            tracing::debug!(program = %program, "{line}");
            tail.push_str(&line);
            tail.push('\n');
            if tail.len() > 2 * STDERR_TAIL {
                let cut = tail.len() - STDERR_TAIL;
                let cut = (cut..tail.len())
                    .find(|&i| tail.is_char_boundary(i))
                    .unwrap_or(0);
                tail.drain(..cut);
            }
        }
        tail
    };

    let outcome = tokio::select! {
        (_, stdout, stderr, status) = async { tokio::join!(feed, read_stdout, read_stderr, child.wait()) } => {
            Some((stdout, stderr, status))
        }
        _ = cancel.cancelled() => None,
    };
    match outcome {
        Some((stdout, stderr, status)) => {
            guard.disarm();
            let status = status.with_context(|| format!("cannot wait for {}", cmd.program))?;
            Ok(Finished {
                code: status.code(),
                stdout,
                stderr,
            })
        }
        None => {
            if let Some(pgid) = pgid {
                terminate(&mut child, pgid).await;
            }
            guard.disarm();
            bail!("{} stopped: cancelled", cmd.program)
        }
    }
}

/// A long-running child (the ssh control master), stopped as a group on [`Background::stop`] or drop.
pub struct Background {
    child: Child,
    guard: GroupGuard,
}

impl Background {
    /// Starts the command with stdout and stderr going to `log` (a file the caller reads on failure).
    pub fn spawn(cmd: &Cmd, log: std::fs::File) -> Result<Self> {
        tracing::debug!(command = ?cmd, "starting background child");
        let mut command = cmd.command();
        command
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", cmd.program))?;
        let pgid = child.id().map(|id| id as i32);
        Ok(Background {
            child,
            guard: GroupGuard { pgid },
        })
    }

    /// True once the child has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the group: SIGTERM, a short grace, SIGKILL.
    pub async fn stop(mut self) {
        if let Some(pgid) = self.guard.pgid {
            terminate(&mut self.child, pgid).await;
        }
        self.guard.disarm();
    }
}

/// A child whose stdout is read as it comes (a download's bytes), its group killed when it is
/// dropped before its end (the reader went away).
pub struct Streaming {
    stdout: Option<tokio::process::ChildStdout>,
    // Held for its lifetime: dropping them reaps the child and kills its group.
    _child: Child,
    _guard: GroupGuard,
}

impl Streaming {
    /// Starts `cmd` (its stdin bytes written and closed), stdout piped, stderr dropped.
    pub fn spawn(cmd: &Cmd) -> Result<Self> {
        let mut command = cmd.command();
        command.stderr(Stdio::null());
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", cmd.program))?;
        let guard = GroupGuard {
            pgid: child.id().map(|id| id as i32),
        };
        if let (Some(bytes), Some(mut stdin)) = (cmd.stdin.clone(), child.stdin.take()) {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(&bytes).await;
            });
        }
        let stdout = child.stdout.take();
        Ok(Streaming {
            stdout,
            _child: child,
            _guard: guard,
        })
    }

    /// Its stdout, to read (once).
    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.stdout.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_output_and_exit_code() {
        let cmd = Cmd::new("sh").args(["-c", "cat; echo oops >&2; exit 3"]);
        let cmd = Cmd {
            stdin: Some(b"hello".to_vec()),
            ..cmd
        };
        let done = run(&cmd, &CancellationToken::new()).await.unwrap();
        assert_eq!(done.code, Some(3));
        assert_eq!(done.stdout, "hello");
        assert_eq!(done.last_error_line(), "oops");
    }

    #[tokio::test]
    async fn watched_lines_end_at_carriage_returns_too() {
        let cmd = Cmd::new("sh").args(["-c", r"printf '10%%\r50%%\r100%%\nTotal: 3\nend'"]);
        let mut seen = Vec::new();
        let watch = Watch {
            stdout: &mut |line| {
                seen.push(line.to_string());
                line.ends_with('%')
            },
            stderr: &mut |line| Some(line.to_string()),
        };
        let done = run_watched(&cmd, &CancellationToken::new(), watch)
            .await
            .unwrap();
        assert_eq!(seen, ["10%", "50%", "100%", "Total: 3", "end"]);
        // The meter's lines are taken; the rest stays for the caller.
        assert_eq!(done.stdout, "Total: 3\nend");
    }

    #[tokio::test]
    async fn watched_stderr_lines_can_be_taken_or_rewritten() {
        let cmd = Cmd::new("sh").args([
            "-c",
            "echo progress >&2; echo '{\"m\": 1}' >&2; echo plain >&2",
        ]);
        let watch = Watch {
            stdout: &mut |_| false,
            stderr: &mut |line| match line {
                "progress" => None,
                l if l.starts_with('{') => Some("rewritten".to_string()),
                l => Some(l.to_string()),
            },
        };
        let done = run_watched(&cmd, &CancellationToken::new(), watch)
            .await
            .unwrap();
        assert_eq!(done.stderr, "rewritten\nplain\n");
    }

    #[tokio::test]
    async fn cancel_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        // The grandchild ignores nothing special; it must die with its group.
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let cmd = Cmd::new("sh").args(["-c", script.as_str()]);
        let cancel = CancellationToken::new();
        let cancel2 = cancel.clone();
        let started = std::time::Instant::now();
        let task = tokio::spawn(async move { run(&cmd, &cancel2).await });
        while !pidfile.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        cancel.cancel();
        let result = task.await.unwrap();
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
        // SAFETY: signal 0 only probes whether the process exists.
        let alive = unsafe { libc::kill(grandchild, 0) } == 0;
        let zombie = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        assert!(!alive || zombie, "grandchild {grandchild} survived");
    }
}
