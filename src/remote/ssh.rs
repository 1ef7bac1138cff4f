//! ssh: one multiplexed connection per run (ControlMaster), strict host key checking against the
//! pinned known_hosts, and the argv every rsync and borg call of the run goes through.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Remote};
use crate::remote::fault::{Fault, RemoteError, classify};
use crate::remote::guard::{self, Dialect, Guard};
use crate::remote::process::{self, Background, Cmd, Finished};

/// How long the connection may take to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Quotes a word for a POSIX shell (the remote side of ssh always runs a shell).
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// How to reach the remote: destination and ssh options, bound to one control socket.
#[derive(Debug, Clone)]
pub struct Ssh {
    pub(super) remote: Remote,
    options: Vec<String>,
    pub(super) dialect: Dialect,
}

impl Ssh {
    /// ssh options for `config`, sharing the connection through `control_path`.
    pub fn new(config: &Config, control_path: &std::path::Path) -> Self {
        let mut options = vec![
            "-i".to_string(),
            config.ssh_key_file.display().to_string(),
            "-p".to_string(),
            config.remote.port.to_string(),
        ];
        // ssh keeps the first value it sees for an option: the user's come before our defaults.
        for (key, value) in &config.ssh_options {
            options.push("-o".into());
            options.push(format!("{key}={value}"));
        }
        for option in [
            "BatchMode=yes".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            format!("UserKnownHostsFile={}", config.known_hosts_file.display()),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            "UpdateHostKeys=no".to_string(),
            "IdentitiesOnly=yes".to_string(),
            format!("ControlPath={}", control_path.display()),
            "ConnectTimeout=20".to_string(),
            "ServerAliveInterval=15".to_string(),
            "ServerAliveCountMax=4".to_string(),
        ] {
            options.push("-o".into());
            options.push(option);
        }
        Ssh {
            remote: config.remote.clone(),
            options,
            dialect: Dialect::Shell,
        }
    }

    /// An Ssh to `pi@backup` without options, speaking `dialect`: for tests of command lines.
    #[cfg(test)]
    pub(crate) fn for_tests(dialect: Dialect) -> Self {
        Ssh {
            remote: Remote {
                user: "pi".into(),
                host: "backup".into(),
                port: 22,
            },
            options: Vec::new(),
            dialect,
        }
    }

    /// What the remote's guard said about itself, when a guard answers (found when the session
    /// opens; `None` until then, and for a key that opens a shell).
    pub fn guard(&self) -> Option<&Guard> {
        match &self.dialect {
            Dialect::Guard(guard) => Some(guard),
            Dialect::Shell => None,
        }
    }

    /// This remote spoken to as `other` speaks to it (a restore helper's ssh, with its own key
    /// and socket paths, say).
    pub fn speaking_like(mut self, other: &Ssh) -> Self {
        self.dialect = other.dialect.clone();
        self
    }

    /// A command run on the remote through the shared connection. `command` is a shell command
    /// line for the remote's shell; quote its words with [`quote`].
    pub fn remote(&self, command: &str) -> Cmd {
        Cmd::new("ssh")
            .args(&self.options)
            .args(["-o", "ControlMaster=no", "-T"])
            .arg(self.remote.destination())
            .arg("--")
            .arg(command)
    }

    /// The remote shell for rsync's `-e`: rsync splits it on spaces and honours single quotes.
    pub fn rsh(&self) -> String {
        let mut words = vec!["ssh".to_string()];
        words.extend(self.options.iter().map(|o| quote(o)));
        words.extend(["-o".into(), "ControlMaster=no".into()]);
        words.join(" ")
    }

    /// rsync's name for `path` on the remote: `user@host:path`, or through a guard, which serves
    /// the mirror as an rsync daemon module, `user@host::mirror/relative`.
    pub fn rsync_target(&self, path: &str) -> String {
        match &self.dialect {
            Dialect::Shell => format!("{}:{}", self.remote.rsync_destination(), path),
            Dialect::Guard(guard) => format!(
                "{}::{}",
                self.remote.rsync_destination(),
                guard.module_path(path)
            ),
        }
    }

    /// Runs a remote command to its end.
    pub async fn run(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        cancel: &CancellationToken,
    ) -> Result<Finished> {
        let cmd = Cmd {
            stdin,
            ..self.remote(command)
        };
        process::run(&cmd, cancel).await
    }

    /// [`Ssh::run`], watching the output as it comes (see [`process::run_watched`]).
    pub async fn run_watched(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        cancel: &CancellationToken,
        watch: process::Watch<'_>,
    ) -> Result<Finished> {
        let cmd = Cmd {
            stdin,
            ..self.remote(command)
        };
        process::run_watched(&cmd, cancel, watch).await
    }
}

/// The start of a control directory's name, before the pid of the process that made it.
const CONTROL_PREFIX: &str = "bs-ssh-";

/// Removes the ssh control directories in `tmp` that a process no longer running left behind (one
/// killed with SIGKILL, whose directory nobody removed). Called when the daemon starts, it also
/// removes its own pid's: a daemon restarted in the same container often gets the pid of the one
/// before it, and it has made none yet. Returns how many it removed.
pub fn clear_stale_control_dirs(tmp: &std::path::Path) -> usize {
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix(CONTROL_PREFIX))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            pid.is_some_and(|pid| pid == own || !is_process(pid))
        })
        .filter(|entry| std::fs::remove_dir_all(entry.path()).is_ok())
        .count()
}

/// Whether a process (not merely a thread: `/proc/TID` exists for every thread too, and a restarted
/// daemon's threads take the numbers its predecessor's pid had) with this pid runs.
fn is_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .is_some_and(|tgid| tgid.trim() == pid.to_string())
    })
}

/// An open connection: the control master runs until [`Session::close`].
pub struct Session {
    /// Commands through this connection.
    pub ssh: Ssh,
    master: Background,
    _dir: tempfile::TempDir,
}

impl Session {
    /// Opens the connection, waits until it is usable and finds whether the remote is guarded. A
    /// host key that is missing from or different in known_hosts makes this fail, and nothing is
    /// sent.
    pub async fn open(config: &Config, cancel: &CancellationToken) -> Result<Self> {
        let mut session = Self::connect(config, cancel).await?;
        match guard::detect(&session.ssh, config, cancel).await {
            Ok(dialect) => session.ssh.dialect = dialect,
            Err(e) => {
                session.master.stop().await;
                return Err(e);
            }
        }
        Ok(session)
    }

    async fn connect(config: &Config, cancel: &CancellationToken) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{CONTROL_PREFIX}{}-", std::process::id()))
            .tempdir()
            .context("cannot create a directory for the ssh control socket")?;
        let socket: PathBuf = dir.path().join("cm");
        let log_path = dir.path().join("master.log");
        let ssh = Ssh::new(config, &socket);
        let master_cmd = Cmd::new("ssh")
            .args(&ssh.options)
            .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-N"])
            .arg(config.remote.destination());
        let log = std::fs::File::create(&log_path).context("cannot create the ssh log")?;
        let mut master = Background::spawn(&master_cmd, log)?;
        let started = Instant::now();
        loop {
            if master.has_exited() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(explain_failure(&config.remote, &log).into());
            }
            if socket.exists() {
                let check = Cmd::new("ssh")
                    .args(&ssh.options)
                    .args(["-O", "check"])
                    .arg(config.remote.destination());
                if process::run(&check, cancel).await?.success() {
                    tracing::debug!(remote = %config.remote.destination(), "ssh connection up");
                    return Ok(Session {
                        ssh,
                        master,
                        _dir: dir,
                    });
                }
            }
            if cancel.is_cancelled() {
                master.stop().await;
                bail!("cancelled while connecting");
            }
            if started.elapsed() > CONNECT_TIMEOUT {
                master.stop().await;
                return Err(RemoteError {
                    fault: Fault::Network,
                    message: format!(
                        "ssh to {} did not come up within {}s",
                        config.remote.destination(),
                        CONNECT_TIMEOUT.as_secs()
                    ),
                }
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.master.stop().await;
    }
}

/// Why ssh could not connect, from what it printed.
fn explain_failure(remote: &Remote, log: &str) -> RemoteError {
    if log.contains("Host key verification failed") {
        let seen = log
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("SHA256:"))
            .map(|fp| format!("; the remote presented {fp}"))
            .unwrap_or_default();
        let why = if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
            "differs from the one pinned in"
        } else {
            "is not in"
        };
        return RemoteError {
            fault: Fault::HostKey,
            message: format!(
                "host key of {} {why} BACKUP_KNOWN_HOSTS_FILE, refusing to connect{seen}",
                remote.host
            ),
        };
    }
    let mut error = classify("ssh", None, log);
    error.message = format!("ssh to {}: {}", remote.destination(), error.message);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_dirs_of_dead_processes_threads_and_the_starting_daemon_go() {
        let tmp = tempfile::tempdir().unwrap();
        let own = format!("{CONTROL_PREFIX}{}-a1", std::process::id());
        // A thread of this process: its number is in /proc, but no process has it (found by the
        // soak: a restarted daemon's threads took the old daemon's pid).
        let (stop, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || wait.recv());
        let tid = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|t| t != &std::process::id().to_string())
            .unwrap();
        let of_thread = format!("{CONTROL_PREFIX}{tid}-d4");
        // pid 1 runs wherever the tests run; no pid is this high (pid_max is at most 2^22).
        let names = [
            own.as_str(),
            of_thread.as_str(),
            "bs-ssh-99999999-b2",
            "bs-ssh-1-c3",
            "bs-sshOld",
            "other",
        ];
        for name in names {
            std::fs::create_dir(tmp.path().join(name)).unwrap();
            std::fs::write(tmp.path().join(name).join("master.log"), "x").unwrap();
        }
        assert_eq!(clear_stale_control_dirs(tmp.path()), 3);
        stop.send(()).unwrap();
        thread.join().unwrap().unwrap();
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["bs-ssh-1-c3", "bs-sshOld", "other"]);
    }

    #[test]
    fn quotes_for_the_remote_shell() {
        assert_eq!(quote("/mnt/backup/data"), "/mnt/backup/data");
        assert_eq!(
            quote("repo::host-2026-01-01T03:00:00"),
            "repo::host-2026-01-01T03:00:00"
        );
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn explains_host_key_failures() {
        let remote = Remote {
            user: "pi".into(),
            host: "backup.lan".into(),
            port: 22,
        };
        let changed = "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n\
            The fingerprint for the ED25519 key sent by the remote host is\n\
            SHA256:abc.\nHost key verification failed.\n";
        let error = explain_failure(&remote, changed);
        assert_eq!(error.fault, Fault::HostKey);
        assert!(error.message.contains("differs"), "{error}");
        assert!(error.message.contains("SHA256:abc"), "{error}");
        let unknown = "No ED25519 host key is known for backup.lan and you have requested strict checking.\nHost key verification failed.\n";
        assert!(
            explain_failure(&remote, unknown)
                .message
                .contains("is not in")
        );
        let refused = explain_failure(
            &remote,
            "ssh: connect to host backup.lan port 22: Connection refused\n",
        );
        assert!(refused.is_transient());
        assert!(
            refused.message.starts_with("ssh to pi@backup.lan: "),
            "{refused}"
        );
    }
}
