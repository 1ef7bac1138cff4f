//! The guarded remote: the key's forced command is `compose/remote/guard.py`, which answers only a
//! fixed vocabulary (see its docstring). Which dialect the remote speaks is found once per
//! connection by asking the guard to introduce itself; a remote whose key opens a shell does not
//! answer, and is spoken to in shell lines as before.
//!
//! The guard's words: `backup-sidecar-guard VERB ARGS`. Paths go hex-encoded (nothing in them can
//! reach a shell, and every byte of a file name survives); archive prefixes and names are plain.

use anyhow::{Result, bail};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::remote::ssh::Ssh;

/// The program word the guard answers to.
pub const PROGRAM: &str = "backup-sidecar-guard";

/// The guard file, as `init` installs it.
pub const GUARD_SOURCE: &str = include_str!("../../compose/remote/guard.py");

/// The rsync daemon configuration the guard serves the mirror with, installed next to it.
pub const RSYNCD_CONF: &str = include_str!("../../compose/remote/rsyncd.conf");

/// Where `init` installs the guard, and what the key's `command=` names.
pub const GUARD_PATH: &str = "/usr/local/lib/backup-sidecar/guard";

/// Where `init` installs the rsync daemon configuration (the guard reads it from next to itself).
pub const RSYNCD_PATH: &str = "/usr/local/lib/backup-sidecar/rsyncd.conf";

/// The guard's configuration file on the remote.
pub const GUARD_CONFIG: &str = "/etc/backup-sidecar/guard.conf";

/// The rsync module (the mirror directory) the guard serves.
pub const MODULE: &str = "mirror";

/// What the guard says about itself (`hello`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Guard {
    /// The guard's version.
    pub guard: String,
    /// The mirror directory it confines rsync and the verbs to.
    pub mirror: String,
    /// The repository it snapshots into, if any.
    pub repository: Option<String>,
    /// Whether the mirror directory is writable.
    pub writable: bool,
    /// Whether the repository's config says `append_only = 1`.
    pub append_only: Option<bool>,
    /// The second copy its owner configured (guard 2 and later; `None` from an older guard).
    #[serde(default)]
    pub copy: Option<CopyPlace>,
}

/// Where the remote copies its backups to, as the guard shows it: the credentials and the address
/// stay in the remote's own configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CopyPlace {
    /// `rclone` (the repository replicated) or `borg` (a second repository of the mirror).
    pub kind: String,
    /// The target, redacted: `NAME:PATH (TYPE)` of the remote's rclone config, or `ssh://…/PATH`.
    pub target: String,
}

impl std::fmt::Display for CopyPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} to {}", self.kind, self.target)
    }
}

/// The versions of the programs under the guard (`versions`), `None` for one not installed.
#[derive(Debug, Clone, Deserialize)]
pub struct Versions {
    /// rsync's version line.
    pub rsync: Option<String>,
    /// borg's version.
    pub borg: Option<String>,
}

/// How the remote is spoken to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Dialect {
    /// A login shell: command lines for `sh -c` (an unguarded key).
    #[default]
    Shell,
    /// The guard's vocabulary.
    Guard(Guard),
}

/// The command line of a guard verb.
pub fn verb(name: &str, args: &[String]) -> String {
    let mut line = format!("{PROGRAM} {name}");
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// A path as the guard takes it: hex of its bytes.
pub fn hex(path: &str) -> String {
    path.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Asks the remote whether the guard answers. A guard that answers but cannot serve this
/// configuration (the mirror or the repository elsewhere) is an error naming the variable.
pub async fn detect(ssh: &Ssh, config: &Config, cancel: &CancellationToken) -> Result<Dialect> {
    let done = ssh
        .run(&crate::remote::commands::guard_hello(), None, cancel)
        .await?;
    if !done.success() {
        if done.stderr.contains("backup-sidecar guard:") || done.stderr.contains("Traceback") {
            // A guard that cannot answer (its configuration is broken, say); a shell says
            // `backup-sidecar-guard: command not found`.
            bail!(
                "the remote's guard failed: {}",
                explain(done.last_error_line())
            );
        }
        return Ok(Dialect::Shell);
    }
    let Ok(guard) = serde_json::from_str::<Guard>(done.stdout.trim()) else {
        return Ok(Dialect::Shell);
    };
    guard.accepts(config)?;
    Ok(Dialect::Guard(guard))
}

/// The guard's error line, with what to do when it is an older guard that does not know a setting
/// of a newer one (the second copy's, say): it refuses the whole configuration.
fn explain(line: &str) -> String {
    if line.contains("unknown setting 'copy") {
        format!(
            "{line} (this guard is older than the copy settings in its guard.conf: install the \
             new one with `backup-sidecar init`, or copy compose/remote/guard.py to {GUARD_PATH})"
        )
    } else {
        line.to_string()
    }
}

impl Guard {
    /// Whether this guard serves `config`: BACKUP_REMOTE_DIR inside its mirror directory, and
    /// BACKUP_BORG_REPO (when set) its repository.
    pub fn accepts(&self, config: &Config) -> Result<()> {
        let dir = config.remote_dir.trim_end_matches('/');
        if self.relative(dir).is_none() {
            bail!(
                "BACKUP_REMOTE_DIR={} is outside the guarded remote's mirror directory {} \
                 (set it to that directory or one inside it)",
                config.remote_dir,
                self.mirror
            );
        }
        if let Some(borg) = &config.borg {
            match &self.repository {
                None => bail!(
                    "BACKUP_BORG_REPO={} is set, but the guarded remote has no repository \
                     (repository in its {GUARD_CONFIG})",
                    borg.repo
                ),
                Some(repo) if repo.trim_end_matches('/') != borg.repo.trim_end_matches('/') => {
                    bail!(
                        "BACKUP_BORG_REPO={} differs from the guarded remote's repository {repo}",
                        borg.repo
                    )
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// `path` relative to the mirror directory (empty for the directory itself), or `None` when
    /// it is outside.
    pub fn relative<'a>(&self, path: &'a str) -> Option<&'a str> {
        let root = self.mirror.trim_end_matches('/');
        let rest = path.strip_prefix(root)?;
        if rest.is_empty() {
            Some("")
        } else {
            rest.strip_prefix('/')
        }
    }

    /// rsync's path for `path` in the mirror: `MODULE/relative` (rsync's daemon syntax, after
    /// `host::`).
    pub fn module_path(&self, path: &str) -> String {
        let relative = self.relative(path).unwrap_or(path);
        format!("{MODULE}/{relative}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_guard_names_what_to_do() {
        let old = "backup-sidecar guard: /etc/backup-sidecar/guard.conf:3: unknown setting 'copy'";
        assert!(explain(old).contains("older than the copy settings"));
        assert!(explain(old).starts_with(old));
        let other = "backup-sidecar guard: /etc/backup-sidecar/guard.conf:3: unknown setting 'x'";
        assert_eq!(explain(other), other);
    }

    fn guard() -> Guard {
        Guard {
            guard: "1".into(),
            mirror: "/backup/mirror".into(),
            repository: Some("/backup/borg".into()),
            writable: true,
            append_only: Some(true),
            copy: None,
        }
    }

    #[test]
    fn lines_and_paths() {
        assert_eq!(
            verb("snapshot", &["nas".into(), "60".into(), hex("/m it's")]),
            "backup-sidecar-guard snapshot nas 60 2f6d2069742773"
        );
        assert_eq!(hex("é$(x)"), "c3a9242878 29".replace(' ', ""));
        let g = guard();
        assert_eq!(g.relative("/backup/mirror"), Some(""));
        assert_eq!(g.relative("/backup/mirror/nas/app/"), Some("nas/app/"));
        assert_eq!(g.relative("/backup/mirror2"), None);
        assert_eq!(g.relative("/etc"), None);
        assert_eq!(g.module_path("/backup/mirror/app/"), "mirror/app/");
    }

    #[test]
    fn reads_hello() {
        let json = r#"{"guard": "1", "mirror": "/backup/mirror", "repository": "/backup/borg",
            "writable": true, "append_only": true}"#;
        assert_eq!(serde_json::from_str::<Guard>(json).unwrap(), guard());
        let bare = r#"{"guard": "1", "mirror": "/m", "repository": null, "writable": false,
            "append_only": null}"#;
        assert!(
            serde_json::from_str::<Guard>(bare)
                .unwrap()
                .repository
                .is_none()
        );
        let with_copy = r#"{"guard": "2", "mirror": "/m", "repository": "/b", "writable": true,
            "append_only": true, "copy": {"kind": "rclone", "target": "offsite:borg (sftp)"}}"#;
        let copy = serde_json::from_str::<Guard>(with_copy)
            .unwrap()
            .copy
            .unwrap();
        assert_eq!(copy.to_string(), "rclone to offsite:borg (sftp)");
        let versions: Versions =
            serde_json::from_str(r#"{"rsync": "rsync  version 3.2.7", "borg": null}"#).unwrap();
        assert!(versions.borg.is_none());
    }
}
