//! Remote failures, classified from exit code and stderr: the network (worth retrying with
//! backoff) or the remote's own state (disk full, not writable, a program missing, a wrong host
//! key: retrying changes nothing, so the run fails at once with one clear cause).

use std::fmt;

/// A failed remote step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// True when the network failed and a later try may succeed.
    pub transient: bool,
    /// One line for people: the step, the cause, and what the program said.
    pub message: String,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteError {}

/// True when any cause in the chain is a transient [`RemoteError`].
pub fn is_transient(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|c| c.downcast_ref::<RemoteError>().is_some_and(|r| r.transient))
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
];

/// Classifies a failed remote program (`ssh`, `rsync`, `borg ...`) from its exit code and stderr.
pub fn classify(program: &str, code: Option<i32>, stderr: &str) -> RemoteError {
    let lower = stderr.to_ascii_lowercase();
    let last = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message");
    let has = |needle: &str| lower.contains(needle);
    let permanent = |cause: &str| RemoteError {
        transient: false,
        message: format!("{program} failed: {cause} ({last})"),
    };
    if has("host key verification failed") {
        return permanent("the remote's host key does not match BACKUP_KNOWN_HOSTS_FILE");
    }
    if has("no space left on device") || has("disk quota exceeded") {
        return permanent("the remote disk is full");
    }
    if has("read-only file system") {
        return permanent("the remote file system is read-only");
    }
    if has("permission denied (publickey") || has("too many authentication failures") {
        return permanent("the remote refused the key in BACKUP_SSH_KEY_FILE");
    }
    if has("failed to create/acquire the lock") {
        return permanent("the borg repository is locked by another borg process");
    }
    if code == Some(127) || has("command not found") || has(": not found") {
        let name = program.split_whitespace().next().unwrap_or(program);
        return permanent(&format!("{name} is not installed on the remote"));
    }
    if has("permission denied") {
        return permanent("the remote directory is not writable");
    }
    if has("no such file or directory") && (has("change_dir") || has("mkdir")) {
        return permanent("BACKUP_REMOTE_DIR does not exist on the remote");
    }
    let network = NETWORK.iter().any(|n| has(n))
        || code == Some(255)
        || (program == "rsync" && matches!(code, Some(10 | 12 | 30 | 35)));
    if network {
        return RemoteError {
            transient: true,
            message: format!("{program} failed: the connection to the remote failed ({last})"),
        };
    }
    let code = code.map_or_else(|| "a signal".to_string(), |c| format!("exit {c}"));
    permanent(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(program: &str, code: i32, stderr: &str) -> (bool, String) {
        let e = classify(program, Some(code), stderr);
        (e.transient, e.message)
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
