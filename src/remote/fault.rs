//! Remote failures, classified from exit code and stderr into a [`Fault`] kind: the network (worth
//! retrying with backoff) or the remote's own state (disk full, not writable, a program missing, a
//! wrong host key: retrying changes nothing, so the run fails at once with one clear cause). The
//! kind is what code branches on (retries, and later notification priority and metric labels);
//! the message is for people.

use std::fmt;

/// What went wrong on the remote side, as code and users branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The connection failed or dropped; a later try may succeed.
    Network,
    /// The remote's disk (or quota) is full.
    DiskFull,
    /// The remote file system is mounted read-only.
    ReadOnly,
    /// The remote's host key is not the one pinned in BACKUP_KNOWN_HOSTS_FILE.
    HostKey,
    /// The remote refused our key.
    KeyRefused,
    /// Another borg process holds the repository lock.
    RepositoryLocked,
    /// The remote's guard refused the request (a step outside its vocabulary or its directories).
    Refused,
    /// rsync or borg is not installed on the remote.
    ProgramMissing,
    /// BACKUP_REMOTE_DIR does not exist.
    RemoteDirMissing,
    /// The remote directory is not writable for our user.
    NotWritable,
    /// BACKUP_REMOTE_DIR is another host's mirror.
    MirrorTaken,
    /// The remote program failed with an exit code (or a signal) we have no better name for.
    ExitCode,
}

impl Fault {
    /// True when a later try may succeed (only network failures).
    pub fn is_transient(self) -> bool {
        self == Fault::Network
    }

    /// A stable name, for machines: log fields, and later notifications and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Network => "network",
            Fault::DiskFull => "disk_full",
            Fault::ReadOnly => "read_only",
            Fault::HostKey => "host_key",
            Fault::KeyRefused => "key_refused",
            Fault::RepositoryLocked => "repository_locked",
            Fault::Refused => "refused",
            Fault::ProgramMissing => "program_missing",
            Fault::RemoteDirMissing => "remote_dir_missing",
            Fault::NotWritable => "not_writable",
            Fault::MirrorTaken => "mirror_taken",
            Fault::ExitCode => "exit_code",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed remote step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// What kind of failure.
    pub fault: Fault,
    /// One line for people: the step, the cause, and what the program said.
    pub message: String,
}

impl RemoteError {
    /// True when the network failed and a later try may succeed.
    pub fn is_transient(&self) -> bool {
        self.fault.is_transient()
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteError {}

/// True when any cause in the chain is a transient [`RemoteError`].
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|c| {
        c.downcast_ref::<RemoteError>()
            .is_some_and(RemoteError::is_transient)
    })
}

/// The last non-empty line of a program's output, trimmed: what goes into a one-line error.
pub fn last_line(output: &str) -> &str {
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

const NETWORK: &[&str] = &[
    "connection refused",
    "connection timed out",
    "operation timed out",
    "no route to host",
    "network is unreachable",
    "could not resolve hostname",
    "name or service not known",
    "temporary failure in name resolution",
    "connection reset",
    "broken pipe",
    "connection closed",
    "closed by remote host",
    "connection unexpectedly closed",
    "lost connection",
    "timeout, server",
    // rsync's daemon protocol over ssh, when the other side went away before it answered.
    "did not see server greeting",
];

/// Classifies a failed remote program (`ssh`, `rsync`, `borg ...`) from its exit code and stderr.
pub fn classify(program: &str, code: Option<i32>, stderr: &str) -> RemoteError {
    let lower = stderr.to_ascii_lowercase();
    let last = match last_line(stderr) {
        "" => "no message",
        line => line,
    };
    let has = |needle: &str| lower.contains(needle);
    let error = |fault: Fault, cause: &str| RemoteError {
        fault,
        message: format!("{program} failed: {cause} ({last})"),
    };
    if has("host key verification failed") {
        return error(
            Fault::HostKey,
            "the remote's host key does not match BACKUP_KNOWN_HOSTS_FILE",
        );
    }
    if has("no space left on device") || has("disk quota exceeded") {
        return error(Fault::DiskFull, "the remote disk is full");
    }
    if has("read-only file system") {
        return error(Fault::ReadOnly, "the remote file system is read-only");
    }
    if has("permission denied (publickey") || has("too many authentication failures") {
        return error(
            Fault::KeyRefused,
            "the remote refused the key in BACKUP_SSH_KEY_FILE",
        );
    }
    if has("failed to create/acquire the lock") {
        return error(
            Fault::RepositoryLocked,
            "the borg repository is locked by another borg process",
        );
    }
    if has("backup-sidecar guard: refused") {
        return error(Fault::Refused, "the remote's guard refused the request");
    }
    if code == Some(127) || has("command not found") || has(": not found") {
        let name = program.split_whitespace().next().unwrap_or(program);
        return error(
            Fault::ProgramMissing,
            &format!("{name} is not installed on the remote"),
        );
    }
    if has("permission denied") {
        return error(Fault::NotWritable, "the remote directory is not writable");
    }
    let missing_dir = has("change_dir") || has("mkdir") || has("chdir failed");
    if has("no such file or directory") && (missing_dir || has("the mirror directory")) {
        return error(
            Fault::RemoteDirMissing,
            "BACKUP_REMOTE_DIR does not exist on the remote",
        );
    }
    let network = NETWORK.iter().any(|n| has(n))
        || code == Some(255)
        || (program == "rsync" && matches!(code, Some(10 | 12 | 30 | 35)));
    if network {
        return error(Fault::Network, "the connection to the remote failed");
    }
    let code = code.map_or_else(|| "a signal".to_string(), |c| format!("exit {c}"));
    error(Fault::ExitCode, &code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(program: &str, code: i32, stderr: &str) -> (bool, String) {
        let e = classify(program, Some(code), stderr);
        (e.is_transient(), e.message)
    }

    fn kind(program: &str, code: Option<i32>, stderr: &str) -> Fault {
        classify(program, code, stderr).fault
    }

    #[test]
    fn each_cause_has_its_kind() {
        assert_eq!(kind("ssh", Some(255), "Connection refused"), Fault::Network);
        assert_eq!(kind("rsync", Some(12), ""), Fault::Network);
        assert_eq!(
            kind("rsync", Some(11), "No space left on device"),
            Fault::DiskFull
        );
        assert_eq!(
            kind("rsync", Some(23), "Read-only file system"),
            Fault::ReadOnly
        );
        assert_eq!(
            kind("ssh", Some(255), "Host key verification failed."),
            Fault::HostKey
        );
        assert_eq!(
            kind("ssh", Some(255), "pi@b: Permission denied (publickey)."),
            Fault::KeyRefused
        );
        assert_eq!(
            kind(
                "borg create",
                Some(2),
                "Failed to create/acquire the lock x"
            ),
            Fault::RepositoryLocked
        );
        assert_eq!(kind("borg list", Some(127), ""), Fault::ProgramMissing);
        assert_eq!(
            kind("rsync", Some(23), "Permission denied (13)"),
            Fault::NotWritable
        );
        assert_eq!(
            kind(
                "rsync",
                Some(3),
                "change_dir \"/x\" failed: No such file or directory"
            ),
            Fault::RemoteDirMissing
        );
        assert_eq!(kind("borg create", Some(2), "Error"), Fault::ExitCode);
        assert_eq!(kind("borg create", None, ""), Fault::ExitCode);
        assert!(Fault::Network.is_transient());
        assert!(!Fault::DiskFull.is_transient());
        assert_eq!(Fault::RepositoryLocked.as_str(), "repository_locked");
    }

    #[test]
    fn last_line_skips_blank_lines() {
        assert_eq!(last_line("a\n  b  \n\n"), "b");
        assert_eq!(last_line(""), "");
    }

    #[test]
    fn classifies_the_guarded_remotes_failures() {
        let (t, m) = case(
            "rsync",
            5,
            "rsync: did not see server greeting
rsync error: error starting client-server \
             protocol (code 5) at main.c(1954) [sender=3.2.7]
",
        );
        assert!(t, "the remote went away: {m}");
        let (t, m) = case(
            "ssh",
            1,
            "backup-sidecar guard: the mirror directory /mnt/backup/data does not exist: No such \
             file or directory
",
        );
        assert!(!t);
        assert!(m.contains("BACKUP_REMOTE_DIR does not exist"), "{m}");
        let e = classify(
            "ssh",
            Some(1),
            "backup-sidecar guard: refused: 'rm' is not in this remote's vocabulary
",
        );
        assert_eq!(e.fault, Fault::Refused);
        let e = classify(
            "rsync",
            Some(5),
            "backup-sidecar guard: rsync: command not found
",
        );
        assert_eq!(e.fault, Fault::ProgramMissing);
    }

    #[test]
    fn classifies_remote_failures() {
        let (t, m) = case(
            "rsync",
            11,
            "rsync: [receiver] write failed on \"/backup/mirror/v/f\": No space left on device (28)\nrsync error: error in file IO (code 11)\n",
        );
        assert!(!t);
        assert!(m.contains("disk is full"), "{m}");
        let (t, m) = case(
            "rsync",
            23,
            "rsync: [receiver] mkstemp \"/m/v/.f.x\" failed: Permission denied (13)\n",
        );
        assert!(!t);
        assert!(m.contains("not writable"), "{m}");
        let (t, m) = case(
            "rsync",
            12,
            "bash: line 1: rsync: command not found\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]\n",
        );
        assert!(!t);
        assert!(m.contains("rsync is not installed"), "{m}");
        let (t, m) = case(
            "borg create",
            127,
            "bash: line 1: borg: command not found\n",
        );
        assert!(!t);
        assert!(m.contains("borg is not installed"), "{m}");
        let (t, _) = case(
            "rsync",
            12,
            "rsync: connection unexpectedly closed (1234 bytes received so far) [sender]\n",
        );
        assert!(t);
        let (t, _) = case(
            "ssh",
            255,
            "ssh: Could not resolve hostname pi: Name or service not known\n",
        );
        assert!(t);
        let (t, m) = case("ssh", 255, "Host key verification failed.\n");
        assert!(!t);
        assert!(m.contains("host key"), "{m}");
        let (t, m) = case(
            "borg create",
            2,
            "Failed to create/acquire the lock /r/lock.exclusive (timeout).\n",
        );
        assert!(!t);
        assert!(m.contains("locked"), "{m}");
        let (t, m) = case(
            "rsync",
            3,
            "rsync: [Receiver] change_dir#3 \"/nope\" failed: No such file or directory (2)\n",
        );
        assert!(!t);
        assert!(m.contains("does not exist"), "{m}");
    }

    #[test]
    fn finds_transient_errors_in_a_chain() {
        let e = anyhow::Error::new(classify("ssh", Some(255), "Connection refused"))
            .context("live pass");
        assert!(is_transient(&e));
        assert!(!is_transient(&anyhow::anyhow!("other")));
    }
}
