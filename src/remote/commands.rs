//! Every command the sidecar sends to the remote, each built by one function, in both dialects
//! (see [`guard`]): for a guarded remote the guard's verb, for a remote that gives the key a shell
//! the shell line (completion stamp, borg, the spot check's probes, preflight versions). The rsync
//! argv of the mirror passes is the same in both; only its remote path differs
//! ([`Ssh::rsync_target`]).
//!
//! Every word of a shell line that comes from configuration or the remote's answers is quoted with
//! [`quote`]; the borg passphrase is never on a line (it travels on stdin).

use std::ffi::OsString;
use std::path::Path;

use crate::config::{Borg, Link};
use crate::remote::guard::{self, Dialect, hex};
use crate::remote::process::Cmd;
use crate::remote::ssh::{Ssh, quote};

/// The file in `BACKUP_REMOTE_DIR` that says the mirror's last run completed. Removed when a run
/// starts changing the mirror, written when every volume of the run mirrored without error.
pub const COMPLETE_STAMP: &str = ".backup-sidecar-complete";
/// The file in a host's mirror directory that names the host it belongs to.
pub const HOST_MARKER: &str = ".backup-sidecar-host";

fn stamp(remote_dir: &str) -> String {
    quote(&format!("{remote_dir}/{COMPLETE_STAMP}"))
}

/// The remote's command before or after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Before (`BACKUP_REMOTE_PRE_COMMAND`, the guard's `pre_command`).
    Pre,
    /// After, on every path (`BACKUP_REMOTE_POST_COMMAND`, the guard's `post_command`).
    Post,
}

/// The guard's copy of the backups to the second place its owner configured (a guarded remote
/// only): `PREFIX` names the archive of a second repository, the directory is the mirror it is
/// made of.
pub fn copy(config: &Borg, prefix: &str, remote_dir: &str) -> String {
    guard::verb(
        "copy",
        &[prefix.to_string(), wait_seconds(config), hex(remote_dir)],
    )
}

/// The guard's check of the second copy against what it copied.
pub fn copy_check(config: &Borg) -> String {
    guard::verb("copy-check", &[wait_seconds(config)])
}

/// The guard's `hello`: what it says about itself, as JSON (a shell answers otherwise).
pub fn guard_hello() -> String {
    guard::verb("hello", &[])
}

/// The guard's `versions`: rsync's and borg's versions under the guard, as JSON.
pub fn guard_versions() -> String {
    guard::verb("versions", &[])
}

/// Prints the remote rsync's version line (a shell remote: the guard says it in `hello`).
pub fn rsync_version() -> String {
    "rsync --version | head -n1".to_string()
}

/// Prints the remote borg's version.
pub fn borg_version() -> String {
    "borg --version".to_string()
}

/// Succeeds, and says so, when `remote_dir` exists and is writable.
pub fn directory_writable(remote_dir: &str) -> String {
    format!(
        "test -d {0} && test -w {0} && echo {0} is writable",
        quote(remote_dir)
    )
}

/// `borg` with the environment every remote borg gets: no prompts ever (borg would read the answer
/// from stdin, where the passphrase is), and the passphrase from stdin when there is one.
fn borg(config: &Borg, args: &str) -> String {
    let mut line = String::from(
        "BORG_RELOCATED_REPO_ACCESS_IS_OK=no BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no ",
    );
    if config.passphrase.is_some() {
        line.push_str("BORG_PASSPHRASE_FD=0 ");
    }
    line.push_str("borg ");
    line.push_str(args);
    line
}

/// How long borg waits for a lock held by a live borg process, in seconds.
fn wait_seconds(config: &Borg) -> String {
    config.lock_wait.as_secs().max(1).to_string()
}

/// `--lock-wait N`.
fn lock_wait(config: &Borg) -> String {
    format!("--lock-wait {}", wait_seconds(config))
}

fn repo(config: &Borg) -> String {
    quote(&config.repo)
}

fn archive(config: &Borg, name: &str) -> String {
    quote(&format!("{}::{name}", config.repo))
}

/// borg's glob for the archives `prefix` names, `PREFIX-YYYY-MM-DDT...`, and not those of a
/// prefix that begins with it: another host's `nas-2-2026-...` is not `nas`'s to prune.
pub fn own_archives(prefix: &str) -> String {
    format!("{prefix}-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*")
}

/// The remote's commands, each in the dialect this remote speaks.
impl Ssh {
    /// A hook's name in messages: the variable, or the guard's setting.
    pub fn hook_name(&self, hook: Hook) -> &'static str {
        match (hook, &self.dialect) {
            (Hook::Pre, Dialect::Shell) => "BACKUP_REMOTE_PRE_COMMAND",
            (Hook::Post, Dialect::Shell) => "BACKUP_REMOTE_POST_COMMAND",
            (Hook::Pre, Dialect::Guard(_)) => "the remote's pre_command",
            (Hook::Post, Dialect::Guard(_)) => "the remote's post_command",
        }
    }

    /// Claims `dir` for `host`: exit 0 when it is `host`'s (its name is written into [`HOST_MARKER`]
    /// when nobody's is there, and `claimed` printed), 5 with the owner's name on stdout when it is
    /// another host's, 6 when `dir` is missing and `make` is false. With `make`, only the last
    /// component is made: a missing parent (a disk not mounted) stays missing.
    pub fn claim(&self, dir: &str, host: &str, make: bool) -> String {
        if let Dialect::Guard(_) = &self.dialect {
            let make = if make { "1" } else { "0" };
            return guard::verb("claim", &[host.to_string(), make.to_string(), hex(dir)]);
        }
        format!(
            "d={dir}; f=\"$d\"/{HOST_MARKER}; if ! test -d \"$d\"; then {missing}; fi; \
             if test -f \"$f\"; then o=$(cat \"$f\"); test \"$o\" = {host} && exit 0; \
             printf '%s\\n' \"$o\"; exit 5; fi; printf '%s\\n' {host} > \"$f\" && echo claimed",
            dir = quote(dir),
            host = quote(host),
            missing = if make {
                "mkdir \"$d\" || exit 6"
            } else {
                "exit 6"
            },
        )
    }

    /// Removes the completion stamp: from here on the mirror is incomplete. (The guard also creates
    /// the directory below its mirror directory when it is missing.)
    pub fn clear_stamp(&self, remote_dir: &str) -> String {
        match &self.dialect {
            Dialect::Shell => format!("rm -f {}", stamp(remote_dir)),
            Dialect::Guard(_) => guard::verb("stamp-clear", &[hex(remote_dir)]),
        }
    }

    /// Writes the completion stamp (the time, in UTC): every volume of the run is mirrored.
    pub fn write_stamp(&self, remote_dir: &str) -> String {
        match &self.dialect {
            Dialect::Shell => format!("date -u +%Y-%m-%dT%H:%M:%SZ > {}", stamp(remote_dir)),
            Dialect::Guard(_) => guard::verb("stamp-write", &[hex(remote_dir)]),
        }
    }

    /// Succeeds when `dir` is a directory on the remote.
    pub fn is_directory(&self, dir: &str) -> String {
        match &self.dialect {
            Dialect::Shell => format!("test -d {}", quote(dir)),
            Dialect::Guard(_) => guard::verb("is-dir", &[hex(dir)]),
        }
    }

    /// Prints `SIZE MTIME` of a file, the mtime as `stat %y` shows it (nanoseconds, local time).
    pub fn size_and_mtime(&self, path: &str) -> String {
        match &self.dialect {
            Dialect::Shell => format!("stat -c '%s %y' -- {}", quote(path)),
            Dialect::Guard(_) => guard::verb("stat", &[hex(path)]),
        }
    }

    /// The line for a hook: through a guard, the verb that runs the command configured on the remote
    /// (the sidecar's own setting is not sent); otherwise the configured line, if any.
    pub fn hook_line(&self, hook: Hook, configured: Option<&str>) -> Option<String> {
        match (&self.dialect, hook) {
            (Dialect::Shell, _) => configured.map(str::to_string),
            (Dialect::Guard(_), Hook::Pre) => Some(guard::verb("pre", &[])),
            (Dialect::Guard(_), Hook::Post) => Some(guard::verb("post", &[])),
        }
    }

    /// `borg create` of the mirror root, as the archive `name`. It refuses a mirror without the
    /// completion stamp. Its stderr is JSON lines (`--log-json`), with its progress
    /// (`--progress`): see `borg::read_stderr`. The guard names the archive by its own clock,
    /// `PREFIX-<UTC time>`, and then prunes `PREFIX-<time>` with its own retention.
    pub fn borg_create(&self, config: &Borg, remote_dir: &str, prefix: &str, name: &str) -> String {
        if let Dialect::Guard(_) = &self.dialect {
            let args = [prefix.to_string(), wait_seconds(config), hex(remote_dir)];
            return guard::verb("snapshot", &args);
        }
        // While another borg (another host's run) holds the lock, look 5 times a second: borg itself
        // looks again only every tenth of its --lock-wait (30 s of the default 5 minutes).
        format!(
            "cd {dir} && if ! test -f {COMPLETE_STAMP}; then echo 'refusing to snapshot: the last run \
             of the mirror did not complete (no {COMPLETE_STAMP})' >&2; exit 3; fi && \
             n=0; while test -e {repo}/lock.exclusive && test $n -lt {polls}; do sleep 0.2; \
             n=$((n+1)); done; {create}",
            dir = quote(remote_dir),
            repo = repo(config),
            polls = config.lock_wait.as_secs() * 5,
            create = borg(
                config,
                &format!(
                    "create --json --progress --log-json {} {} .",
                    lock_wait(config),
                    archive(config, name)
                )
            ),
        )
    }

    /// Breaks a stale lock: when the repository is locked and no borg process runs on the remote, the
    /// lock was left by a killed run. Prints `held` or `broken`.
    pub fn break_stale_lock(&self, config: &Borg) -> String {
        if let Dialect::Guard(_) = &self.dialect {
            return guard::verb("unlock-stale", &[]);
        }
        // A running borg shows as "/usr/bin/borg create ..." in /proc. This script's own command line
        // names borg too; it is the only one that says "break-lock", so such lines are left out.
        format!(
            "test -e {repo}/lock.exclusive || exit 0; \
             if for f in /proc/[0-9]*/cmdline; do tr '\\000' ' ' < \"$f\"; echo; done 2>/dev/null \
             | grep -av 'break[-]lock' | grep -aEq '(^|/)[b]org( |$)'; then echo held; \
             else {break_lock} && echo broken; fi",
            repo = repo(config),
            break_lock = borg(config, &format!("break-lock {}", repo(config))),
        )
    }

    /// `borg prune` of the archives named `PREFIX-<time>` ([`own_archives`]), or `None` when every retention rule is off or
    /// the remote is guarded (its snapshot verb prunes with the remote's own retention).
    pub fn borg_prune(&self, config: &Borg, prefix: &str) -> Option<String> {
        if let Dialect::Guard(_) = &self.dialect {
            return None;
        }
        let rules: Vec<String> = [
            ("--keep-daily", config.keep.daily),
            ("--keep-weekly", config.keep.weekly),
            ("--keep-monthly", config.keep.monthly),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(flag, n)| format!("{flag} {n}"))
        .collect();
        if rules.is_empty() {
            return None;
        }
        Some(borg(
            config,
            &format!(
                "prune {} --glob-archives {} {} {}",
                lock_wait(config),
                quote(&own_archives(prefix)),
                rules.join(" "),
                repo(config)
            ),
        ))
    }

    /// `borg compact`: frees what prune marked. `None` through a guard: the repository is
    /// append-only, and compacting is the owner's step on the remote.
    pub fn borg_compact(&self, config: &Borg) -> Option<String> {
        match &self.dialect {
            Dialect::Shell => Some(borg(
                config,
                &format!("compact {} {}", lock_wait(config), repo(config)),
            )),
            Dialect::Guard(_) => None,
        }
    }

    /// `borg check` of the whole repository.
    pub fn borg_check(&self, config: &Borg) -> String {
        match &self.dialect {
            Dialect::Shell => borg(
                config,
                &format!("check {} {}", lock_wait(config), repo(config)),
            ),
            Dialect::Guard(_) => guard::verb("check", &[wait_seconds(config)]),
        }
    }

    /// The archives as JSON, oldest first.
    pub fn borg_list(&self, config: &Borg) -> String {
        match &self.dialect {
            Dialect::Shell => borg(config, &format!("list --json {}", repo(config))),
            Dialect::Guard(_) => guard::verb("list", &[]),
        }
    }

    /// Succeeds when the repository opens (a shell remote prints the newest archive's name).
    pub fn borg_list_last(&self, config: &Borg) -> String {
        match &self.dialect {
            Dialect::Shell => borg(config, &format!("list --short --last 1 {}", repo(config))),
            Dialect::Guard(_) => guard::verb("list", &[]),
        }
    }

    /// Every archive with its sizes, as JSON.
    pub fn borg_info(&self, config: &Borg) -> String {
        match &self.dialect {
            Dialect::Shell => borg(
                config,
                &format!("info --json --glob-archives '*' {}", repo(config)),
            ),
            Dialect::Guard(_) => guard::verb("info", &[]),
        }
    }

    /// The entries of an archive, one JSON object per line.
    pub fn borg_list_archive(&self, config: &Borg, name: &str) -> String {
        match &self.dialect {
            Dialect::Shell => borg(
                config,
                &format!("list --json-lines {}", archive(config, name)),
            ),
            Dialect::Guard(_) => guard::verb("list-archive", &[name.to_string()]),
        }
    }

    /// The first entry under `path` in an archive (the directory itself), one JSON line.
    pub fn borg_list_root(&self, config: &Borg, name: &str, path: &str) -> String {
        if let Dialect::Guard(_) = &self.dialect {
            return guard::verb("item", &[name.to_string(), hex(path)]);
        }
        format!(
            "{} | head -n 1",
            borg(
                config,
                &format!(
                    "list --json-lines {} {}",
                    archive(config, name),
                    quote(path)
                )
            )
        )
    }

    /// Two sha256 lines: `path` from an archive, then the mirror's `mirror_path`.
    pub fn borg_compare(&self, config: &Borg, name: &str, path: &str, mirror_path: &str) -> String {
        if let Dialect::Guard(_) = &self.dialect {
            return guard::verb("sample", &[name.to_string(), hex(path), hex(mirror_path)]);
        }
        format!(
            "{} | sha256sum; sha256sum < {}",
            borg(
                config,
                &format!("extract --stdout {} {}", archive(config, name), quote(path))
            ),
            quote(mirror_path)
        )
    }
}

/// Where a borg client on this side takes the repository's passphrase from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passphrase<'a> {
    /// The repository has none.
    None,
    /// Its stdin (`BORG_PASSPHRASE_FD=0`).
    Stdin,
    /// A command that prints it (`BORG_PASSCOMMAND`), such as `cat FILE`.
    Command(&'a str),
}

/// A borg client on this side (the sidecar's own, or a restore helper's) that reads the
/// repository through this remote.
impl Ssh {
    /// `ssh://user@host:port/path::archive`: the archive as such a client names it.
    pub fn borg_archive_url(&self, config: &Borg, archive: &str) -> String {
        format!(
            "ssh://{}:{}{}{}::{archive}",
            self.remote.rsync_destination(),
            self.remote.port,
            if config.repo.starts_with('/') {
                ""
            } else {
                "/./"
            },
            config.repo
        )
    }

    /// The client's environment: ssh with this connection's options, no prompts ever (a
    /// repository the client has not seen is fine, its security directory being new each time;
    /// a relocated one is not), the passphrase from `passphrase`.
    pub fn borg_client_env(&self, passphrase: Passphrase) -> Vec<(String, String)> {
        let mut env = vec![
            ("BORG_RSH".to_string(), self.rsh()),
            ("BORG_RELOCATED_REPO_ACCESS_IS_OK".into(), "no".into()),
            (
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK".into(),
                "yes".into(),
            ),
        ];
        match passphrase {
            Passphrase::None => {}
            Passphrase::Stdin => env.push(("BORG_PASSPHRASE_FD".into(), "0".into())),
            Passphrase::Command(command) => {
                env.push(("BORG_PASSCOMMAND".into(), command.to_string()))
            }
        }
        env
    }

    /// The client's options for reading: `--bypass-lock` where a guard serves the repository
    /// read-only (its reader cannot write a lock; the guard's `borg serve` is append-only).
    pub fn borg_read_options(&self) -> Vec<String> {
        match &self.dialect {
            Dialect::Guard(_) => vec!["--bypass-lock".into()],
            Dialect::Shell => Vec::new(),
        }
    }

    /// `borg export-tar` of `path` (a directory) in `archive` to stdout, run here: the folder as
    /// a tar stream, never staged. As for [`Ssh::borg_extract_stdout`] otherwise.
    pub fn borg_export_tar(
        &self,
        config: &Borg,
        archive: &str,
        path: &str,
        base_dir: &Path,
    ) -> Cmd {
        self.local_borg(config, base_dir, &["export-tar"], archive, &["-", path])
    }

    /// `borg extract --stdout` of `path` in `archive`, run here, with the passphrase on stdin
    /// and `base_dir` as borg's own directory (a scratch one: nothing of it is kept).
    pub fn borg_extract_stdout(
        &self,
        config: &Borg,
        archive: &str,
        path: &str,
        base_dir: &Path,
    ) -> Cmd {
        self.local_borg(config, base_dir, &["extract", "--stdout"], archive, &[path])
    }

    /// A borg on this side reading `archive` through this remote: `borg COMMAND OPTIONS URL
    /// AFTER`, the passphrase on stdin.
    fn local_borg(
        &self,
        config: &Borg,
        base_dir: &Path,
        command: &[&str],
        archive: &str,
        after: &[&str],
    ) -> Cmd {
        let mut cmd = Cmd::new("env")
            .args(
                self.borg_client_env(Passphrase::Stdin)
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}")),
            )
            .arg(format!("BORG_BASE_DIR={}", base_dir.display()))
            .arg("borg")
            .args(command)
            .args(self.borg_read_options())
            .arg(self.borg_archive_url(config, archive))
            .args(after);
        cmd.stdin = Some(
            config
                .passphrase
                .as_ref()
                .map(|p| p.expose().as_bytes().to_vec())
                .unwrap_or_default(),
        );
        cmd
    }
}

/// What a mirror pass does; each kind has its own rsync options.
#[derive(Debug, Clone, Copy)]
pub enum Push<'a> {
    /// A pass of the whole volume (`--delete`): the live pass, the network catch-up while frozen,
    /// the only pass of a volume nobody uses.
    Whole,
    /// A whole pass that also prints each entry it changes (`%i %n`): the scheduled full pass,
    /// to count what the change journal missed.
    Audit,
    /// The capture's delete step: in each directory of `list` (`DIR/.`, NUL-separated), deletes
    /// the names the source (a skeleton of names) lacks and sets the directories' times from it;
    /// transfers nothing, changes no other attribute.
    Prune {
        /// The directories, as rsync's `--files-from` with `--from0`.
        list: &'a Path,
    },
    /// A live pass from the change journal: sends the entries of `list` (what changed since the
    /// mirror's state; gone ones are skipped), whatever their size and time, each with its
    /// directories, none recursively.
    Listed {
        /// The entries, as rsync's `--files-from` with `--from0`.
        list: &'a Path,
    },
    /// The capture's upload: sends the entries of `list` from the staging area, whatever their
    /// size and time (`-I`; delta transfer still sends only what differs).
    Upload {
        /// The entries, as rsync's `--files-from` with `--from0`.
        list: &'a Path,
    },
}

/// The options of a mirror pass (everything but `-e`, the source and the target).
pub fn push_options(kind: Push, link: &Link, excludes: &[String], progress: bool) -> Vec<OsString> {
    let mut options: Vec<OsString> = Vec::new();
    let files_from = |list: &Path| {
        let mut option = OsString::from("--files-from=");
        option.push(list);
        option
    };
    match kind {
        Push::Whole => {
            options.extend(ARCHIVE.map(OsString::from));
            options.push("--delete".into());
        }
        Push::Audit => {
            options.extend(ARCHIVE.map(OsString::from));
            options.extend(["--delete", "--out-format=%i %n"].map(OsString::from));
        }
        Push::Prune { list } => {
            options.extend(
                [
                    "-t",
                    "--delete",
                    "--existing",
                    "--ignore-existing",
                    "--from0",
                ]
                .map(OsString::from),
            );
            options.push(files_from(list));
        }
        Push::Listed { list } => {
            // -I: each entry is known to have changed, even one rewritten at the same size with
            // its time put back, which rsync's quick check would skip.
            options.extend(ARCHIVE.map(OsString::from));
            options.extend(["-I", "--from0", "--ignore-missing-args"].map(OsString::from));
            options.push(files_from(list));
        }
        Push::Upload { list } => {
            options.extend(ARCHIVE.map(OsString::from));
            options.extend(["-I", "--force", "--from0"].map(OsString::from));
            options.push(files_from(list));
        }
    }
    if progress {
        options.push("--info=progress2".into());
    }
    if link.compress {
        options.push("-z".into());
    }
    if let Some(rate) = &link.bwlimit {
        options.push(format!("--bwlimit={rate}").into());
    }
    for pattern in excludes {
        options.push(format!("--exclude={pattern}").into());
    }
    options
}

/// rsync of the local directory `source` to `target` on the remote (a mirror pass); with
/// `progress`, rsync reports the whole transfer's progress on stdout (`--info=progress2`).
pub fn rsync_push(
    ssh: &Ssh,
    link: &Link,
    kind: Push,
    source: &Path,
    target: &str,
    excludes: &[String],
    progress: bool,
) -> Cmd {
    let mut source = source.as_os_str().to_owned();
    source.push("/");
    Cmd::new("rsync")
        .args(push_options(kind, link, excludes, progress))
        .arg("-e")
        .arg(ssh.rsh())
        .arg(source)
        .arg(ssh.rsync_target(target))
}

/// rsync of `remote` (a directory on the remote, with a trailing slash) into the local directory
/// `local`, for a restore; `extra` options go before the paths.
pub fn rsync_pull(ssh: &Ssh, remote: &str, local: &str, extra: &[&str]) -> Cmd {
    Cmd::new("rsync")
        .args(ARCHIVE)
        .arg("--delete")
        .args(extra)
        .arg("-e")
        .arg(ssh.rsh())
        .arg(ssh.rsync_target(remote))
        .arg(local)
}

/// rsync pulling only the files listed in the options' `--files-from` below `remote` into
/// `local`: they are added or replaced, with their directories, and nothing else is touched (no
/// `--delete`; the top directory's own metadata is not sent).
pub fn rsync_pull_listed(ssh: &Ssh, remote: &str, local: &str, extra: &[&str]) -> Cmd {
    Cmd::new("rsync")
        .args(ARCHIVE)
        .args(extra)
        .arg("-e")
        .arg(ssh.rsh())
        .arg(ssh.rsync_target(remote))
        .arg(local)
}

/// rsync of one file or directory `path` (relative) of the remote directory `root` to the same
/// path below the local directory `local`, with its parent directories and its subtree: added or
/// replaced, nothing else touched (no `--delete`).
pub fn rsync_pull_path(ssh: &Ssh, root: &str, path: &str, local: &str, extra: &[&str]) -> Cmd {
    Cmd::new("rsync")
        .args(ARCHIVE)
        .arg("--relative")
        .args(extra)
        .arg("-e")
        .arg(ssh.rsh())
        .arg(ssh.rsync_target(&format!("{root}/./{path}")))
        .arg(local)
}

// rsync's quick check compares whole seconds by default: a file rewritten at the same size within
// the second of the live pass would be skipped by the catch-up pass. Nanoseconds count.
const ARCHIVE: [&str; 4] = ["-aHAXS", "--numeric-ids", "--modify-window=-1", "--stats"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Keep, RawConfig, Secret};

    const KEEP: Keep = Keep {
        daily: 7,
        weekly: 4,
        monthly: 6,
    };
    const ENV: &str = "BORG_RELOCATED_REPO_ACCESS_IS_OK=no \
                       BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no BORG_PASSPHRASE_FD=0 ";

    fn borg_config(passphrase: bool, keep: Keep) -> Borg {
        Borg {
            repo: "/mnt/backup/borg".into(),
            passphrase: passphrase.then(|| Secret::new("pw".into())),
            archive_prefix: None,
            keep,
            lock_wait: std::time::Duration::from_secs(120),
        }
    }

    /// A remote whose key opens a shell.
    fn sh() -> Ssh {
        Ssh::for_tests(Dialect::Shell)
    }

    fn argv(cmd: &Cmd) -> Vec<String> {
        cmd.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// An Ssh for argv tests: the config check wants a private key that only its owner reads.
    fn ssh(dir: &Path) -> Ssh {
        let key = dir.join("key");
        std::fs::write(&key, "k").unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let config = Config::from_raw(RawConfig {
            backup_remote: Some("pi@backup".into()),
            backup_remote_dir: Some("/m".into()),
            backup_ssh_key_file: Some(key.display().to_string()),
            backup_known_hosts_file: Some("/dev/null".into()),
            backup_ssh_options: Some("Ciphers=aes128-ctr".into()),
            ..Default::default()
        })
        .unwrap();
        Ssh::new(&config, Path::new("/tmp/x/cm"))
    }

    #[test]
    fn stamp_and_probe_lines() {
        assert_eq!(
            sh().clear_stamp("/mnt/backup/data"),
            "rm -f /mnt/backup/data/.backup-sidecar-complete"
        );
        assert_eq!(
            sh().write_stamp("/mnt/my data"),
            "date -u +%Y-%m-%dT%H:%M:%SZ > '/mnt/my data/.backup-sidecar-complete'"
        );
        assert_eq!(sh().is_directory("/m/app"), "test -d /m/app");
        assert_eq!(sh().size_and_mtime("/m/a b"), "stat -c '%s %y' -- '/m/a b'");
        assert_eq!(rsync_version(), "rsync --version | head -n1");
        assert_eq!(borg_version(), "borg --version");
        assert_eq!(
            directory_writable("/m"),
            "test -d /m && test -w /m && echo /m is writable"
        );
    }

    #[test]
    fn claim_lines() {
        assert_eq!(
            sh().claim("/m/nas", "nas", false),
            "d=/m/nas; f=\"$d\"/.backup-sidecar-host; if ! test -d \"$d\"; then exit 6; fi; \
             if test -f \"$f\"; then o=$(cat \"$f\"); test \"$o\" = nas && exit 0; \
             printf '%s\\n' \"$o\"; exit 5; fi; printf '%s\\n' nas > \"$f\" && echo claimed"
        );
        assert!(
            sh().claim("/m/nas", "nas", true)
                .contains("then mkdir \"$d\" || exit 6; fi")
        );
    }

    #[test]
    fn borg_lines() {
        let b = borg_config(true, KEEP);
        let create = sh().borg_create(&b, "/mnt/backup/data", "nas", "nas-2026-11-01T03:00:07");
        let (line, name) = create.rsplit_once("::").unwrap();
        assert_eq!(
            line,
            format!(
                "cd /mnt/backup/data && if ! test -f .backup-sidecar-complete; then echo \
                 'refusing to snapshot: the last run of the mirror did not complete (no \
                 .backup-sidecar-complete)' >&2; exit 3; fi && n=0; while test -e \
                 /mnt/backup/borg/lock.exclusive && test $n -lt 600; do sleep 0.2; n=$((n+1)); \
                 done; {ENV}borg create --json --progress \
                 --log-json --lock-wait 120 /mnt/backup/borg"
            )
        );
        assert_eq!(name, "nas-2026-11-01T03:00:07 .");
        assert_eq!(
            sh().borg_prune(&b, "nas").unwrap(),
            format!(
                "{ENV}borg prune --lock-wait 120 --glob-archives 'nas-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*' --keep-daily 7 \
                 --keep-weekly 4 --keep-monthly 6 /mnt/backup/borg"
            )
        );
        assert_eq!(
            sh().borg_compact(&b).unwrap(),
            format!("{ENV}borg compact --lock-wait 120 /mnt/backup/borg")
        );
        assert_eq!(
            sh().borg_check(&b),
            format!("{ENV}borg check --lock-wait 120 /mnt/backup/borg")
        );
        assert_eq!(
            sh().borg_list(&b),
            format!("{ENV}borg list --json /mnt/backup/borg")
        );
        assert_eq!(
            sh().borg_list_last(&b),
            format!("{ENV}borg list --short --last 1 /mnt/backup/borg")
        );
        assert_eq!(
            sh().borg_info(&b),
            format!("{ENV}borg info --json --glob-archives '*' /mnt/backup/borg")
        );
        assert_eq!(
            sh().borg_list_archive(&b, "nas-1"),
            format!("{ENV}borg list --json-lines /mnt/backup/borg::nas-1")
        );
        assert_eq!(
            sh().borg_list_root(&b, "nas-1", "app data"),
            format!("{ENV}borg list --json-lines /mnt/backup/borg::nas-1 'app data' | head -n 1")
        );
        assert_eq!(
            sh().borg_compare(&b, "nas-1", "app/f", "/m/app/f"),
            format!(
                "{ENV}borg extract --stdout /mnt/backup/borg::nas-1 app/f | sha256sum; \
                 sha256sum < /m/app/f"
            )
        );
        let lock = sh().break_stale_lock(&b);
        assert!(
            lock.starts_with("test -e /mnt/backup/borg/lock.exclusive || exit 0; "),
            "{lock}"
        );
        assert!(
            lock.ends_with(&format!(
                "else {ENV}borg break-lock /mnt/backup/borg && echo broken; fi"
            )),
            "{lock}"
        );
    }

    #[test]
    fn guard_verbs() {
        let b = borg_config(true, KEEP);
        let g = Ssh::for_tests(Dialect::Guard(crate::remote::guard::Guard {
            guard: "1".into(),
            mirror: "/m".into(),
            repository: Some("/mnt/backup/borg".into()),
            writable: true,
            append_only: Some(true),
            copy: None,
        }));
        let v = |rest: &str| format!("backup-sidecar-guard {rest}");
        assert_eq!(g.clear_stamp("/m"), v("stamp-clear 2f6d"));
        assert_eq!(copy(&b, "nas", "/m"), v("copy nas 120 2f6d"));
        assert_eq!(copy_check(&b), v("copy-check 120"));
        assert_eq!(g.write_stamp("/m"), v("stamp-write 2f6d"));
        assert_eq!(g.is_directory("/m/a"), v("is-dir 2f6d2f61"));
        assert_eq!(g.size_and_mtime("/m/a"), v("stat 2f6d2f61"));
        assert_eq!(g.hook_line(Hook::Pre, Some("rm -rf /")), Some(v("pre")));
        assert_eq!(g.hook_line(Hook::Post, None), Some(v("post")));
        assert_eq!(sh().hook_line(Hook::Post, None), None);
        assert_eq!(
            sh().hook_line(Hook::Pre, Some("mount /m")),
            Some("mount /m".into())
        );
        assert_eq!(
            g.borg_create(&b, "/m", "nas", "nas-2026-11-01T03:00:07"),
            v("snapshot nas 120 2f6d")
        );
        assert_eq!(g.break_stale_lock(&b), v("unlock-stale"));
        assert_eq!(g.borg_prune(&b, "nas"), None);
        assert_eq!(g.borg_compact(&b), None);
        assert_eq!(g.borg_check(&b), v("check 120"));
        assert_eq!(g.borg_list(&b), v("list"));
        assert_eq!(g.borg_info(&b), v("info"));
        assert_eq!(g.borg_list_archive(&b, "nas-1"), v("list-archive nas-1"));
        assert_eq!(g.borg_list_root(&b, "nas-1", "a"), v("item nas-1 61"));
        assert_eq!(
            g.borg_compare(&b, "nas-1", "a/f", "/m/a/f"),
            v("sample nas-1 612f66 2f6d2f612f66")
        );
    }

    #[test]
    fn passphrase_never_in_a_line() {
        let with = borg_config(true, KEEP);
        let without = borg_config(false, KEEP);
        assert!(
            !sh()
                .borg_create(&with, "/d", "a", "a-2026-11-01T03:00:07")
                .contains("pw")
        );
        assert!(
            !sh()
                .borg_create(&without, "/d", "a", "a-2026-11-01T03:00:07")
                .contains("PASSPHRASE")
        );
        assert_eq!(
            sh().borg_list(&without),
            "BORG_RELOCATED_REPO_ACCESS_IS_OK=no BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no \
             borg list --json /mnt/backup/borg"
        );
    }

    #[test]
    fn prune_rules() {
        let some = borg_config(
            false,
            Keep {
                daily: 7,
                weekly: 0,
                monthly: 6,
            },
        );
        let line = sh().borg_prune(&some, "nas").unwrap();
        assert!(
            line.ends_with(
                "--glob-archives 'nas-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*' --keep-daily 7 --keep-monthly 6 /mnt/backup/borg"
            ),
            "{line}"
        );
        let none = Keep {
            daily: 0,
            weekly: 0,
            monthly: 0,
        };
        assert_eq!(sh().borg_prune(&borg_config(false, none), "nas"), None);
    }

    #[test]
    fn lines_are_valid_shell() {
        let b = borg_config(true, KEEP);
        for line in [
            sh().clear_stamp("/mnt/my backup"),
            sh().write_stamp("/mnt/my backup"),
            directory_writable("/mnt/it's"),
            sh().borg_create(&b, "/mnt/my backup", "nas", "nas-2026-11-01T03:00:07"),
            sh().break_stale_lock(&b),
            sh().borg_prune(&b, "nas").unwrap(),
            sh().borg_list_root(&b, "a", "v"),
            sh().borg_compare(&b, "a", "v/f", "/m/v/f"),
        ] {
            let status = std::process::Command::new("sh")
                .args(["-n", "-c", &line])
                .status()
                .unwrap();
            assert!(status.success(), "not valid sh: {line}");
        }
    }

    #[test]
    fn rsync_argv() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = ssh(dir.path());
        let plain = Link {
            compress: false,
            bwlimit: None,
        };
        let push = argv(&rsync_push(
            &ssh,
            &plain,
            Push::Whole,
            Path::new("/v/app/_data"),
            "/m/app/",
            &["*.tmp".into()],
            false,
        ));
        assert_eq!(
            &push[..7],
            &[
                "-aHAXS",
                "--numeric-ids",
                "--modify-window=-1",
                "--stats",
                "--delete",
                "--exclude=*.tmp",
                "-e"
            ]
        );
        assert!(push[7].starts_with("ssh -i "), "{}", push[7]);
        assert!(push[7].contains("-o Ciphers=aes128-ctr"));
        assert!(push[7].contains("-o StrictHostKeyChecking=yes"));
        assert!(push[7].ends_with("-o ControlMaster=no"));
        assert_eq!(&push[8..], &["/v/app/_data/", "pi@backup:/m/app/"]);

        let link = Link {
            compress: true,
            bwlimit: Some("1.5m".into()),
        };
        let live = argv(&rsync_push(
            &ssh,
            &link,
            Push::Whole,
            Path::new("/v/a"),
            "/m/a/",
            &[],
            true,
        ));
        assert_eq!(
            &live[4..8],
            &["--delete", "--info=progress2", "-z", "--bwlimit=1.5m"]
        );
        assert_eq!(&live[10..], &["/v/a/", "pi@backup:/m/a/"]);

        let list = Path::new("/state/staging/a/work/prune");
        let prune = push_options(Push::Prune { list }, &plain, &["c".into()], false);
        assert_eq!(
            prune,
            [
                "-t",
                "--delete",
                "--existing",
                "--ignore-existing",
                "--from0",
                "--files-from=/state/staging/a/work/prune",
                "--exclude=c"
            ]
        );
        let upload = push_options(Push::Upload { list }, &plain, &[], true);
        assert_eq!(&upload[..4], ARCHIVE);
        assert_eq!(
            &upload[4..],
            [
                "-I",
                "--force",
                "--from0",
                "--files-from=/state/staging/a/work/prune",
                "--info=progress2"
            ]
        );

        let pull = argv(&rsync_pull(&ssh, "/m/app/", "/target/", &["--dry-run"]));
        assert_eq!(&pull[..5], &push[..5]);
        assert_eq!(pull[5], "--dry-run");
        assert_eq!(&pull[8..], &["pi@backup:/m/app/", "/target/"]);
    }

    /// The guard's verbs and their argument counts, read from the guard the binary embeds (its
    /// `VERBS` table: `"name": (function, count),`).
    fn guard_verb_table() -> std::collections::BTreeMap<String, usize> {
        let source = crate::remote::guard::GUARD_SOURCE;
        let start = source
            .find("\nVERBS = {\n")
            .expect("the guard has a VERBS table");
        let table = &source[start..];
        let table = &table[..table.find("\n}\n").expect("the VERBS table ends")];
        table
            .lines()
            .skip(2)
            .map(|line| {
                let (name, rest) = line.trim().split_once(':').expect("\"name\": (f, n),");
                let count = rest
                    .trim()
                    .trim_end_matches("),")
                    .rsplit(", ")
                    .next()
                    .unwrap();
                (
                    name.trim_matches('"').to_string(),
                    count.parse().expect("a count"),
                )
            })
            .collect()
    }

    #[test]
    fn every_verb_the_sidecar_sends_is_the_guards_with_its_argument_count() {
        let table = guard_verb_table();
        assert!(table.len() >= 10, "{table:?}");
        let b = borg_config(true, KEEP);
        let g = Ssh::for_tests(Dialect::Guard(crate::remote::guard::Guard {
            guard: "1".into(),
            mirror: "/m".into(),
            repository: Some("/r".into()),
            writable: true,
            append_only: Some(true),
            copy: None,
        }));
        let sent = [
            guard_hello(),
            guard_versions(),
            g.claim("/m/h", "h", true),
            g.clear_stamp("/m"),
            g.write_stamp("/m"),
            g.is_directory("/m/a"),
            g.size_and_mtime("/m/a"),
            g.hook_line(Hook::Pre, None).unwrap(),
            g.hook_line(Hook::Post, None).unwrap(),
            g.borg_create(&b, "/m", "nas", "nas-1"),
            g.break_stale_lock(&b),
            g.borg_check(&b),
            g.borg_list(&b),
            g.borg_list_last(&b),
            g.borg_info(&b),
            g.borg_list_archive(&b, "nas-1"),
            g.borg_list_root(&b, "nas-1", "a b"),
            g.borg_compare(&b, "nas-1", "a/f", "/m/a/f"),
            copy(&b, "nas", "/m"),
            copy_check(&b),
        ];
        let mut named = std::collections::BTreeSet::new();
        for line in &sent {
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(words[0], crate::remote::guard::PROGRAM, "{line}");
            let count = table
                .get(words[1])
                .unwrap_or_else(|| panic!("the guard has no verb {}: {line}", words[1]));
            assert_eq!(words.len() - 2, *count, "{line}");
            assert!(
                words[2..]
                    .iter()
                    .all(|w| !w.is_empty() && !w.starts_with('-')),
                "{line}"
            );
            named.insert(words[1].to_string());
        }
        // Every verb the remote module's code names is among those sent above.
        for source in [
            include_str!("commands.rs"),
            include_str!("guard.rs"),
            include_str!("claim.rs"),
            include_str!("borg.rs"),
        ] {
            for piece in source.split("verb(\"").skip(1) {
                let verb = &piece[..piece.find('"').unwrap()];
                if table.contains_key(verb) {
                    assert!(named.contains(verb), "{verb} is sent but not checked here");
                } else {
                    assert!(
                        !source.contains(&format!("guard::verb(\"{verb}\"")),
                        "the sidecar sends {verb}, which the guard does not know"
                    );
                }
            }
        }
    }

    #[test]
    fn a_local_borg_client_reads_through_this_remote() {
        let b = borg_config(true, KEEP);
        let shell = sh();
        assert_eq!(
            shell.borg_archive_url(&b, "nas-1"),
            "ssh://pi@backup:22/mnt/backup/borg::nas-1"
        );
        let relative = Borg {
            repo: "borg".into(),
            ..borg_config(false, KEEP)
        };
        assert_eq!(
            shell.borg_archive_url(&relative, "a"),
            "ssh://pi@backup:22/./borg::a"
        );
        let env = shell.borg_client_env(Passphrase::Command("cat /run/p"));
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "BORG_RSH",
                "BORG_RELOCATED_REPO_ACCESS_IS_OK",
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK",
                "BORG_PASSCOMMAND"
            ]
        );
        assert_eq!(env[3].1, "cat /run/p");
        assert!(shell.borg_read_options().is_empty());
        let g = Ssh::for_tests(Dialect::Guard(crate::remote::guard::Guard {
            guard: "1".into(),
            mirror: "/m".into(),
            repository: Some("/mnt/backup/borg".into()),
            writable: true,
            append_only: Some(true),
            copy: None,
        }));
        assert_eq!(g.borg_read_options(), ["--bypass-lock"]);
        let extract = g.borg_extract_stdout(&b, "nas-1", "p/manifest.json", Path::new("/s"));
        assert_eq!(extract.program, "env");
        let args = argv(&extract);
        assert!(
            args.contains(&"BORG_PASSPHRASE_FD=0".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"BORG_BASE_DIR=/s".to_string()), "{args:?}");
        assert_eq!(
            &args[args.len() - 6..],
            [
                "borg",
                "extract",
                "--stdout",
                "--bypass-lock",
                "ssh://pi@backup:22/mnt/backup/borg::nas-1",
                "p/manifest.json"
            ]
        );
        // The passphrase goes on stdin, never in the argv.
        assert!(!args.iter().any(|a| a.contains("pw")), "{args:?}");
        assert_eq!(extract.stdin.as_deref(), Some(&b"pw"[..]));
    }
}
