//! Configuration: the environment read once at start, in two stages.
//!
//! [`RawConfig`] ([`raw`]) is what `envy` reads: every variable as an optional string, after
//! `NAME_FILE` variables have been replaced by the content of their file. [`Config::from_raw`]
//! turns it into real types, one section at a time ([`sections`], with the value parsers in
//! [`parse`]), and refuses anything it cannot use with a [`ConfigError`] that names the variable.
//! Each default is a named constant beside the field it fills.

pub mod channel;
#[cfg(test)]
mod doc_tests;
mod parse;
mod raw;
mod sections;
#[cfg(test)]
mod tests;
mod web;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

#[cfg(test)]
pub use parse::parse_cron;
pub use parse::split_list;
pub use raw::RawConfig;
use sections::{
    CatchUpSection, HealthSection, NotifySection, Paths, RemoteSection, RunSection, ScheduleSection,
};
pub use web::{Network, Web};

use channel::{Channel, NotifyOn};

/// A configuration error: the variable at fault and what is wrong with it. The sidecar exits 2 on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration error: {}: {}",
            self.variable, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

pub(super) fn err(variable: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.to_string(),
        message: message.into(),
    }
}

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, to hand to the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// ssh's own default port, used when `BACKUP_REMOTE_PORT` is unset.
pub const DEFAULT_REMOTE_PORT: u16 = 22;

/// The ssh destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Login name on the remote.
    pub user: String,
    /// Host name or address.
    pub host: String,
    /// ssh port.
    pub port: u16,
}

impl Remote {
    /// `user@host`, as ssh takes it.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// `user@host` as rsync's remote path prefix wants it (IPv6 addresses bracketed).
    pub fn rsync_destination(&self) -> String {
        if self.host.contains(':') {
            format!("{}@[{}]", self.user, self.host)
        } else {
            self.destination()
        }
    }
}

/// Default [`Keep::daily`]: a week of daily archives.
pub const DEFAULT_KEEP_DAILY: u32 = 7;
/// Default [`Keep::weekly`]: a month of weekly archives.
pub const DEFAULT_KEEP_WEEKLY: u32 = 4;
/// Default [`Keep::monthly`]: half a year of monthly archives.
pub const DEFAULT_KEEP_MONTHLY: u32 = 6;

/// `borg prune` retention; 0 turns a rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// `--keep-daily`
    pub daily: u32,
    /// `--keep-weekly`
    pub weekly: u32,
    /// `--keep-monthly`
    pub monthly: u32,
}

/// Default [`Borg::lock_wait`] (`BACKUP_BORG_LOCK_WAIT`): five minutes.
pub const DEFAULT_BORG_LOCK_WAIT: Duration = Duration::from_secs(5 * 60);

/// Snapshot settings, present when `BACKUP_BORG_REPO` is set.
#[derive(Debug, Clone)]
pub struct Borg {
    /// Repository path on the remote.
    pub repo: String,
    /// Repository passphrase, if the repository is encrypted.
    pub passphrase: Option<Secret>,
    /// Archive name prefix; `None` means the Docker engine's host name, looked up at run time.
    pub archive_prefix: Option<String>,
    /// Retention after each snapshot.
    pub keep: Keep,
    /// How long borg waits for a repository lock held by a live borg process.
    pub lock_wait: Duration,
}

/// Default [`Retry::attempts`] (`BACKUP_RETRY_ATTEMPTS`).
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 3;
/// Default [`Retry::delay`] (`BACKUP_RETRY_DELAY`): ten seconds.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(10);

/// Retries of network failures: `attempts` tries in all, waiting `delay`, then twice that, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all (1 means no retry).
    pub attempts: u32,
    /// Wait before the second try; doubled before each further one.
    pub delay: Duration,
}

impl Retry {
    /// The wait before try number `attempt` (1-based; the first try does not wait).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        self.delay
            .saturating_mul(1u32 << attempt.saturating_sub(2).min(16))
    }
}

/// Default [`Config::log_format`] (`LOG_FORMAT`).
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

/// Default [`Config::ssh_key_file`] (`BACKUP_SSH_KEY_FILE`).
pub const DEFAULT_SSH_KEY_FILE: &str = "/ssh/id_ed25519";
/// Default [`Config::known_hosts_file`] (`BACKUP_KNOWN_HOSTS_FILE`).
pub const DEFAULT_KNOWN_HOSTS_FILE: &str = "/ssh/known_hosts";
/// Default [`Config::sync_schedule`] (`BACKUP_SYNC_SCHEDULE`): 03:00 every other day.
pub const DEFAULT_SYNC_SCHEDULE: &str = "0 3 */2 * *";
/// Default [`Config::snapshot_schedule`] (`BACKUP_SNAPSHOT_SCHEDULE`): 03:00 on Sundays.
pub const DEFAULT_SNAPSHOT_SCHEDULE: &str = "0 3 * * 0";
/// Default [`Config::check_schedule`] (`BACKUP_CHECK_SCHEDULE`): 04:00 on the first of the month.
pub const DEFAULT_CHECK_SCHEDULE: &str = "0 4 1 * *";
/// Default [`Config::full_scan_schedule`] (`BACKUP_FULL_SCAN_SCHEDULE`): midnight before Sunday.
pub const DEFAULT_FULL_SCAN_SCHEDULE: &str = "0 0 * * 0";
/// Default [`Config::change_journal`] (`BACKUP_CHANGE_JOURNAL`).
pub const DEFAULT_CHANGE_JOURNAL: bool = true;
/// Default [`Config::tz`] (`TZ`).
pub const DEFAULT_TZ: Tz = Tz::UTC;
/// Default [`Config::run_on_start`] (`BACKUP_RUN_ON_START`).
pub const DEFAULT_RUN_ON_START: bool = false;
/// Default [`Config::pause_timeout`] (`BACKUP_PAUSE_TIMEOUT`): one minute.
pub const DEFAULT_PAUSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`Config::volumes_dir`] (`BACKUP_VOLUMES_DIR`): Docker's own volumes directory.
pub const DEFAULT_VOLUMES_DIR: &str = "/var/lib/docker/volumes";
/// Default [`Config::state_dir`] (`BACKUP_STATE_DIR`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/backup-sidecar";

/// Default [`Config::notify_on`] (`BACKUP_NOTIFY_ON`): failures, and the first success after one.
pub const DEFAULT_NOTIFY_ON: NotifyOn = NotifyOn::Failure;

/// How a frozen group's volumes are brought up to date after their live pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// While frozen, copy what changed since the live pass into the local staging area; upload
    /// it after the thaw. The freeze never waits on the network.
    Capture,
    /// While frozen, a second rsync pass over ssh (the freeze lasts as long as the link takes).
    Network,
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CatchUp::Capture => "capture",
            CatchUp::Network => "network",
        })
    }
}

/// Default [`Config::catch_up`] (`BACKUP_CATCH_UP`).
pub const DEFAULT_CATCH_UP: CatchUp = CatchUp::Capture;
/// Default [`Config::staging_max`] (`BACKUP_STAGING_MAX`): 1 GiB.
pub const DEFAULT_STAGING_MAX: u64 = 1 << 30;

/// rsync's options for the link to the remote, on every mirror pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// `BACKUP_COMPRESS`: rsync's `-z`, with the algorithm both ends negotiate.
    pub compress: bool,
    /// `BACKUP_BWLIMIT`: rsync's `--bwlimit` as given (`500`, `1.5m`: KiB/s unless suffixed);
    /// `None` for no limit.
    pub bwlimit: Option<String>,
}

/// Default [`Link::compress`] (`BACKUP_COMPRESS`): on. Measured on a 10 Mbit/s link
/// (BENCHMARKS.md), compression cost nothing on incompressible data and halved the time of
/// typical application files.
pub const DEFAULT_COMPRESS: bool = true;

/// In `BACKUP_REMOTE_DIR`, as its last component: the host's name (the Docker engine's), so that
/// hosts sharing one remote each mirror into their own directory.
pub const HOST_PLACEHOLDER: &str = "{host}";

/// Stage two: the validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the mirror goes.
    pub remote: Remote,
    /// This host's mirror directory on the remote (absolute, no trailing slash); it may end with
    /// [`HOST_PLACEHOLDER`] until [`Config::for_host`] fills it in.
    pub remote_dir: String,
    /// The directory every host's mirror is in: `BACKUP_REMOTE_DIR` without its `/{host}`; the
    /// mirror itself when it has none.
    pub mirror_root: String,
    /// Private key for ssh.
    pub ssh_key_file: PathBuf,
    /// Extra `-o Key=Value` options for ssh.
    pub ssh_options: Vec<(String, String)>,
    /// known_hosts with the remote's pinned host key.
    pub known_hosts_file: PathBuf,
    /// Snapshot settings, `None` when snapshots are off.
    pub borg: Option<Borg>,
    /// Mirror-only runs.
    pub sync_schedule: Cron,
    /// Mirror + snapshot runs.
    pub snapshot_schedule: Cron,
    /// Verification of the repository and the newest archive against the mirror.
    pub check_schedule: Cron,
    /// The first run after each of its times walks every volume in full, and counts what the
    /// change journal missed.
    pub full_scan_schedule: Cron,
    /// When the remote brings its second copy up to date (`BACKUP_COPY_SCHEDULE`); `None`: after
    /// each snapshot.
    pub copy_schedule: Option<Cron>,
    /// Time zone of both schedules.
    pub tz: Tz,
    /// One mirror + snapshot run right after start.
    pub run_on_start: bool,
    /// Longest a group may stay frozen.
    pub pause_timeout: Duration,
    /// Attempts for a step that failed on the network (ssh connect, a group's rsync passes).
    pub retry: Retry,
    /// rsync exclude patterns for every volume.
    pub exclude: Vec<String>,
    /// Run on the remote before each run.
    pub pre_command: Option<String>,
    /// Run on the remote after each run, also a failed one.
    pub post_command: Option<String>,
    /// Compose projects to limit discovery to; `None` means all.
    pub projects: Option<Vec<String>>,
    /// How a frozen group is brought up to date (`BACKUP_CATCH_UP`).
    pub catch_up: CatchUp,
    /// Most a group's capture may copy into the staging area (`BACKUP_STAGING_MAX`, bytes).
    pub staging_max: u64,
    /// Whether the daemon watches the volumes for changes (`BACKUP_CHANGE_JOURNAL`), so that a
    /// run visits only what changed.
    pub change_journal: bool,
    /// rsync's options for the link to the remote.
    pub link: Link,
    /// Where the host's volumes directory is mounted.
    pub volumes_dir: PathBuf,
    /// Where the host's root is mounted (`BACKUP_HOST_ROOT`), for bind mounts and compose files;
    /// `None`: they are not backed up.
    pub host_root: Option<PathBuf>,
    /// The sidecar's own state.
    pub state_dir: PathBuf,
    /// Log output format.
    pub log_format: LogFormat,
    /// Health turns unhealthy when the last successful mirror is older than this.
    pub max_age: Duration,
    /// Health turns unhealthy when the newest archive in the second copy is older than this.
    pub copy_max_age: Duration,
    /// How often a long pass logs its progress.
    pub progress_interval: Duration,
    /// Where to serve Prometheus metrics (`BACKUP_METRICS_ADDR`); `None` (unset) serves none.
    /// `:9102` means every IPv4 interface, `[::]:9102` every interface (IPv4 too, where the
    /// system maps it).
    pub metrics_addr: Option<SocketAddr>,
    /// Where notifications go (`BACKUP_NOTIFY_URLS`), in the order given; empty for none.
    pub notify_urls: Vec<Channel>,
    /// Which outcomes reach the channels that are not monitors (`BACKUP_NOTIFY_ON`).
    pub notify_on: NotifyOn,
    /// A private CA for notification servers, trusted besides the public roots
    /// (`BACKUP_NOTIFY_CA_FILE`, PEM).
    pub notify_ca_file: Option<PathBuf>,
    /// The web page (`BACKUP_WEB_*`); `None` (`BACKUP_WEB_ADDR` unset) serves none.
    pub web: Option<Web>,
}

impl Config {
    /// Whether `BACKUP_REMOTE_DIR` ends with `{host}`: each host mirrors into its own directory
    /// of [`Config::mirror_root`], made by its first run.
    pub fn per_host(&self) -> bool {
        self.mirror_root != self.remote_dir
    }

    /// Whether `{host}` is still to be filled in by [`Config::for_host`].
    pub fn needs_host(&self) -> bool {
        self.remote_dir.ends_with(HOST_PLACEHOLDER)
    }

    /// This configuration for the host named `host` (the engine's name): `{host}` in
    /// `BACKUP_REMOTE_DIR` replaced, and the archive prefix `host` unless it is set.
    pub fn for_host(mut self, host: &str) -> Config {
        if self.needs_host() {
            self.remote_dir = format!("{}/{host}", self.mirror_root);
        }
        if let Some(borg) = &mut self.borg {
            borg.archive_prefix.get_or_insert_with(|| host.to_string());
        }
        self
    }

    /// Reads and validates the configuration from `(name, value)` pairs.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::from_raw(RawConfig::from_vars(vars)?)
    }

    /// Reads and validates the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Validates a raw configuration, section by section.
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        // With several mistakes only the first is reported: the sections run in a fixed order
        // so that the one named does not change from release to release.
        let log_format = sections::log_format(&raw)?;
        let RemoteSection {
            remote,
            remote_dir,
            ssh_key_file,
            known_hosts_file,
            ssh_options,
        } = sections::remote_section(&raw)?;
        let borg = sections::borg_section(&raw)?;
        let ScheduleSection {
            sync_schedule,
            snapshot_schedule,
            check_schedule,
            full_scan_schedule,
            copy_schedule,
            tz,
            run_on_start,
        } = sections::schedule_section(&raw)?;
        let RunSection {
            pause_timeout,
            retry,
            exclude,
            pre_command,
            post_command,
            projects,
        } = sections::run_section(&raw)?;
        let CatchUpSection {
            catch_up,
            staging_max,
            change_journal,
            link,
        } = sections::catch_up_section(&raw)?;
        let Paths {
            volumes_dir,
            host_root,
            state_dir,
        } = sections::paths(&raw)?;
        let HealthSection {
            max_age,
            copy_max_age,
            progress_interval,
        } = sections::health_section(
            &raw,
            &sync_schedule,
            copy_schedule.as_ref().unwrap_or(&snapshot_schedule),
        )?;
        let metrics_addr = sections::metrics_addr(&raw)?;
        let web = web::web_section(&raw)?;
        let NotifySection {
            urls: notify_urls,
            on: notify_on,
            ca_file: notify_ca_file,
        } = sections::notify_section(&raw)?;
        let mirror_root = remote_dir
            .strip_suffix(&format!("/{HOST_PLACEHOLDER}"))
            .unwrap_or(&remote_dir)
            .to_string();
        Ok(Config {
            remote,
            remote_dir,
            mirror_root,
            ssh_key_file,
            ssh_options,
            known_hosts_file,
            borg,
            sync_schedule,
            snapshot_schedule,
            check_schedule,
            full_scan_schedule,
            copy_schedule,
            tz,
            run_on_start,
            pause_timeout,
            retry,
            exclude,
            pre_command,
            post_command,
            projects,
            catch_up,
            staging_max,
            change_journal,
            link,
            volumes_dir,
            host_root,
            state_dir,
            log_format,
            max_age,
            copy_max_age,
            progress_interval,
            metrics_addr,
            web,
            notify_urls,
            notify_on,
            notify_ca_file,
        })
    }
}

/// How often a long pass logs its progress, unless `BACKUP_PROGRESS_INTERVAL` says otherwise.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(60);
/// Added to twice the sync schedule's longest gap for the default `BACKUP_MAX_AGE`: a run that
/// starts on time and takes a while is not late.
pub const MAX_AGE_SLACK: Duration = Duration::from_secs(3600);

/// ssh options that would weaken host key pinning or break our connection sharing.
pub(super) const RESERVED_SSH_OPTIONS: &[&str] = &[
    "stricthostkeychecking",
    "userknownhostsfile",
    "globalknownhostsfile",
    "knownhostscommand",
    "updatehostkeys",
    "batchmode",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "identityfile",
    "port",
];

/// The next run strictly after `after`: its time and whether it takes a snapshot. When a sync and a
/// snapshot fall on the same minute, one run does both.
pub fn next_run(
    sync: &Cron,
    snapshot: &Cron,
    tz: Tz,
    after: DateTime<Utc>,
) -> Option<(DateTime<Utc>, bool)> {
    let local = after.with_timezone(&tz);
    let next = |cron: &Cron| {
        cron.find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    match (next(sync), next(snapshot)) {
        (Some(s), Some(n)) if n <= s => Some((n, true)),
        (Some(s), _) => Some((s, false)),
        (None, Some(n)) => Some((n, true)),
        (None, None) => None,
    }
}
