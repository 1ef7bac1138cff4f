//! Configuration: the environment read once at start, in two stages.
//!
//! [`RawConfig`] is what `envy` reads: every variable as an optional string, after `NAME_FILE`
//! variables have been replaced by the content of their file. [`Config::from_raw`] turns it into
//! real types and refuses anything it cannot use with a [`ConfigError`] that names the variable.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::Deserialize;

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

fn err(variable: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.to_string(),
        message: message.into(),
    }
}

/// Variables that may be given as `NAME_FILE` (Docker secrets convention). Variables whose own name
/// already ends in `_FILE` are paths and are left alone.
const FILE_CAPABLE: &[&str] = &[
    "BACKUP_REMOTE",
    "BACKUP_REMOTE_PORT",
    "BACKUP_REMOTE_DIR",
    "BACKUP_SSH_OPTIONS",
    "BACKUP_BORG_REPO",
    "BACKUP_BORG_PASSPHRASE",
    "BACKUP_ARCHIVE_PREFIX",
    "BACKUP_REMOTE_PRE_COMMAND",
    "BACKUP_REMOTE_POST_COMMAND",
    "BACKUP_EXCLUDE",
    "BACKUP_PROJECTS",
];

/// Stage one: every variable of the specification, as the environment gave it.
#[derive(Debug, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawConfig {
    pub backup_remote: Option<String>,
    pub backup_remote_port: Option<String>,
    pub backup_remote_dir: Option<String>,
    pub backup_ssh_key_file: Option<String>,
    pub backup_ssh_options: Option<String>,
    pub backup_known_hosts_file: Option<String>,
    pub backup_borg_repo: Option<String>,
    pub backup_borg_passphrase: Option<String>,
    pub backup_archive_prefix: Option<String>,
    pub backup_keep_daily: Option<String>,
    pub backup_keep_weekly: Option<String>,
    pub backup_keep_monthly: Option<String>,
    pub backup_sync_schedule: Option<String>,
    pub backup_snapshot_schedule: Option<String>,
    pub backup_check_schedule: Option<String>,
    pub tz: Option<String>,
    pub backup_run_on_start: Option<String>,
    pub backup_pause_timeout: Option<String>,
    pub backup_retry_attempts: Option<String>,
    pub backup_retry_delay: Option<String>,
    pub backup_borg_lock_wait: Option<String>,
    pub backup_exclude: Option<String>,
    pub backup_remote_pre_command: Option<String>,
    pub backup_remote_post_command: Option<String>,
    pub backup_projects: Option<String>,
    pub backup_volumes_dir: Option<String>,
    pub backup_state_dir: Option<String>,
    pub log_format: Option<String>,
}

impl RawConfig {
    /// Reads the raw configuration from `(name, value)` pairs, resolving `NAME_FILE` variables.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut env: BTreeMap<String, String> = vars.into_iter().collect();
        for name in FILE_CAPABLE {
            let file_var = format!("{name}_FILE");
            let Some(path) = env.remove(&file_var) else {
                continue;
            };
            if env.contains_key(*name) {
                return Err(err(
                    &file_var,
                    format!("both {name} and {file_var} are set; set one"),
                ));
            }
            let content = std::fs::read_to_string(&path)
                .map_err(|e| err(&file_var, format!("cannot read {path}: {e}")))?;
            let value = content.strip_suffix('\n').unwrap_or(&content);
            let value = value.strip_suffix('\r').unwrap_or(value);
            env.insert(name.to_string(), value.to_string());
        }
        // Empty variables count as unset, as compose writes `VAR:` or `VAR=` for "nothing".
        env.retain(|_, v| !v.trim().is_empty());
        envy::from_iter(env).map_err(|e| err("environment", e.to_string()))
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

/// Stage two: the validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the mirror goes.
    pub remote: Remote,
    /// Mirror root on the remote (absolute, no trailing slash).
    pub remote_dir: String,
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
    /// Where the host's volumes directory is mounted.
    pub volumes_dir: PathBuf,
    /// The sidecar's own state.
    pub state_dir: PathBuf,
    /// Log output format.
    pub log_format: LogFormat,
}

/// ssh options that would weaken host key pinning or break our connection sharing.
const RESERVED_SSH_OPTIONS: &[&str] = &[
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

impl Config {
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
        let log_format = log_format(&raw)?;
        let RemoteSection {
            remote,
            remote_dir,
            ssh_key_file,
            known_hosts_file,
            ssh_options,
        } = remote_section(&raw)?;
        let borg = borg_section(&raw)?;
        let ScheduleSection {
            sync_schedule,
            snapshot_schedule,
            check_schedule,
            tz,
            run_on_start,
        } = schedule_section(&raw)?;
        let RunSection {
            pause_timeout,
            retry,
            exclude,
            pre_command,
            post_command,
            projects,
        } = run_section(&raw)?;
        let Paths {
            volumes_dir,
            state_dir,
        } = paths(&raw);
        Ok(Config {
            remote,
            remote_dir,
            ssh_key_file,
            ssh_options,
            known_hosts_file,
            borg,
            sync_schedule,
            snapshot_schedule,
            check_schedule,
            tz,
            run_on_start,
            pause_timeout,
            retry,
            exclude,
            pre_command,
            post_command,
            projects,
            volumes_dir,
            state_dir,
            log_format,
        })
    }
}

/// `LOG_FORMAT`.
fn log_format(raw: &RawConfig) -> Result<LogFormat, ConfigError> {
    match raw.log_format.as_deref().map(str::trim) {
        None => Ok(DEFAULT_LOG_FORMAT),
        Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(err(
            "LOG_FORMAT",
            format!("{other:?} is neither \"text\" nor \"json\""),
        )),
    }
}

/// Where and how to reach the remote.
struct RemoteSection {
    remote: Remote,
    remote_dir: String,
    ssh_key_file: PathBuf,
    known_hosts_file: PathBuf,
    ssh_options: Vec<(String, String)>,
}

/// `BACKUP_REMOTE`, `BACKUP_REMOTE_PORT`, `BACKUP_REMOTE_DIR`, `BACKUP_SSH_KEY_FILE`,
/// `BACKUP_KNOWN_HOSTS_FILE` and `BACKUP_SSH_OPTIONS`.
fn remote_section(raw: &RawConfig) -> Result<RemoteSection, ConfigError> {
    let remote = parse_remote(
        raw.backup_remote.as_deref(),
        raw.backup_remote_port.as_deref(),
    )?;
    let remote_dir = parse_remote_dir(raw.backup_remote_dir.as_deref())?;
    // Both files are opened now so that a missing mount fails at start, not at 3 a.m.
    let ssh_key_file = PathBuf::from(
        raw.backup_ssh_key_file
            .as_deref()
            .unwrap_or(DEFAULT_SSH_KEY_FILE),
    );
    check_private_key(&ssh_key_file)?;
    let known_hosts_file = PathBuf::from(
        raw.backup_known_hosts_file
            .as_deref()
            .unwrap_or(DEFAULT_KNOWN_HOSTS_FILE),
    );
    check_readable("BACKUP_KNOWN_HOSTS_FILE", &known_hosts_file)?;
    let ssh_options = parse_ssh_options(raw.backup_ssh_options.as_deref())?;
    Ok(RemoteSection {
        remote,
        remote_dir,
        ssh_key_file,
        known_hosts_file,
        ssh_options,
    })
}

/// `BACKUP_BORG_REPO`, `BACKUP_BORG_PASSPHRASE`, `BACKUP_ARCHIVE_PREFIX`, `BACKUP_KEEP_*` and
/// `BACKUP_BORG_LOCK_WAIT`; `None` when snapshots are off.
fn borg_section(raw: &RawConfig) -> Result<Option<Borg>, ConfigError> {
    // Retention and prefix are checked even with snapshots off, so a mistake in them is reported
    // now rather than on the day BACKUP_BORG_REPO is set.
    let keep = Keep {
        daily: parse_u32(
            "BACKUP_KEEP_DAILY",
            raw.backup_keep_daily.as_deref(),
            DEFAULT_KEEP_DAILY,
        )?,
        weekly: parse_u32(
            "BACKUP_KEEP_WEEKLY",
            raw.backup_keep_weekly.as_deref(),
            DEFAULT_KEEP_WEEKLY,
        )?,
        monthly: parse_u32(
            "BACKUP_KEEP_MONTHLY",
            raw.backup_keep_monthly.as_deref(),
            DEFAULT_KEEP_MONTHLY,
        )?,
    };
    let archive_prefix = raw
        .backup_archive_prefix
        .as_deref()
        .map(parse_archive_prefix)
        .transpose()?;
    let Some(repo) = raw.backup_borg_repo.as_deref() else {
        return Ok(None);
    };
    let repo = repo.trim();
    if repo.starts_with('-') || repo.contains(char::is_whitespace) {
        return Err(err(
            "BACKUP_BORG_REPO",
            format!("{repo:?} is not a repository path"),
        ));
    }
    Ok(Some(Borg {
        repo: repo.to_string(),
        passphrase: raw.backup_borg_passphrase.clone().map(Secret),
        archive_prefix,
        keep,
        lock_wait: parse_duration(
            "BACKUP_BORG_LOCK_WAIT",
            raw.backup_borg_lock_wait.as_deref(),
            DEFAULT_BORG_LOCK_WAIT,
        )?,
    }))
}

/// When runs happen.
struct ScheduleSection {
    sync_schedule: Cron,
    snapshot_schedule: Cron,
    check_schedule: Cron,
    tz: Tz,
    run_on_start: bool,
}

/// `TZ`, `BACKUP_SYNC_SCHEDULE`, `BACKUP_SNAPSHOT_SCHEDULE`, `BACKUP_CHECK_SCHEDULE` and
/// `BACKUP_RUN_ON_START`.
fn schedule_section(raw: &RawConfig) -> Result<ScheduleSection, ConfigError> {
    let tz = match raw.tz.as_deref().map(str::trim) {
        None => DEFAULT_TZ,
        Some(name) => Tz::from_str(name).map_err(|_| {
            err(
                "TZ",
                format!("{name:?} is not a time zone name such as Europe/Berlin"),
            )
        })?,
    };
    let sync_schedule = parse_cron(
        "BACKUP_SYNC_SCHEDULE",
        raw.backup_sync_schedule
            .as_deref()
            .unwrap_or(DEFAULT_SYNC_SCHEDULE),
    )?;
    let snapshot_schedule = parse_cron(
        "BACKUP_SNAPSHOT_SCHEDULE",
        raw.backup_snapshot_schedule
            .as_deref()
            .unwrap_or(DEFAULT_SNAPSHOT_SCHEDULE),
    )?;
    let check_schedule = parse_cron(
        "BACKUP_CHECK_SCHEDULE",
        raw.backup_check_schedule
            .as_deref()
            .unwrap_or(DEFAULT_CHECK_SCHEDULE),
    )?;
    let run_on_start = parse_bool(
        "BACKUP_RUN_ON_START",
        raw.backup_run_on_start.as_deref(),
        DEFAULT_RUN_ON_START,
    )?;
    Ok(ScheduleSection {
        sync_schedule,
        snapshot_schedule,
        check_schedule,
        tz,
        run_on_start,
    })
}

/// How each run behaves.
struct RunSection {
    pause_timeout: Duration,
    retry: Retry,
    exclude: Vec<String>,
    pre_command: Option<String>,
    post_command: Option<String>,
    projects: Option<Vec<String>>,
}

/// `BACKUP_PAUSE_TIMEOUT`, `BACKUP_RETRY_*`, `BACKUP_EXCLUDE`, `BACKUP_REMOTE_PRE_COMMAND`,
/// `BACKUP_REMOTE_POST_COMMAND` and `BACKUP_PROJECTS`.
fn run_section(raw: &RawConfig) -> Result<RunSection, ConfigError> {
    let pause_timeout = parse_duration(
        "BACKUP_PAUSE_TIMEOUT",
        raw.backup_pause_timeout.as_deref(),
        DEFAULT_PAUSE_TIMEOUT,
    )?;
    let attempts = match parse_u32(
        "BACKUP_RETRY_ATTEMPTS",
        raw.backup_retry_attempts.as_deref(),
        DEFAULT_RETRY_ATTEMPTS,
    )? {
        0 => return Err(err("BACKUP_RETRY_ATTEMPTS", "must be at least 1")),
        n => n,
    };
    let delay = parse_duration(
        "BACKUP_RETRY_DELAY",
        raw.backup_retry_delay.as_deref(),
        DEFAULT_RETRY_DELAY,
    )?;
    let projects = match raw.backup_projects.as_deref() {
        None => None,
        Some(list) => {
            let projects = split_list(Some(list));
            // A list of only commas would otherwise mean "no filter", the opposite of its intent.
            if projects.is_empty() {
                return Err(err("BACKUP_PROJECTS", "names no project"));
            }
            Some(projects)
        }
    };
    Ok(RunSection {
        pause_timeout,
        retry: Retry { attempts, delay },
        exclude: split_list(raw.backup_exclude.as_deref()),
        pre_command: raw.backup_remote_pre_command.clone(),
        post_command: raw.backup_remote_post_command.clone(),
        projects,
    })
}

/// Local directories.
struct Paths {
    volumes_dir: PathBuf,
    state_dir: PathBuf,
}

/// `BACKUP_VOLUMES_DIR` and `BACKUP_STATE_DIR`. Nothing to refuse here: the daemon checks the
/// directories when it opens them.
fn paths(raw: &RawConfig) -> Paths {
    Paths {
        volumes_dir: PathBuf::from(
            raw.backup_volumes_dir
                .as_deref()
                .unwrap_or(DEFAULT_VOLUMES_DIR),
        ),
        state_dir: PathBuf::from(raw.backup_state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR)),
    }
}

/// Splits a comma-separated list, dropping empty items.
pub fn split_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn parse_remote(value: Option<&str>, port: Option<&str>) -> Result<Remote, ConfigError> {
    const VAR: &str = "BACKUP_REMOTE";
    let value = value
        .map(str::trim)
        .ok_or_else(|| err(VAR, "is required (ssh destination, user@host)"))?;
    let (user, host) = value
        .split_once('@')
        .ok_or_else(|| err(VAR, format!("{value:?} is not of the form user@host")))?;
    let host_ok = !host.is_empty()
        && !host.starts_with('-')
        && host.chars().all(|c| is_name_char(c) || c == ':');
    let user_ok = !user.is_empty() && !user.starts_with('-') && user.chars().all(is_name_char);
    if !host_ok || !user_ok {
        return Err(err(VAR, format!("{value:?} is not of the form user@host")));
    }
    let port = match port.map(str::trim) {
        None => DEFAULT_REMOTE_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(err(
                    "BACKUP_REMOTE_PORT",
                    format!("{p:?} is not a port number (1-65535)"),
                ));
            }
        },
    };
    Ok(Remote {
        user: user.to_string(),
        host: host.to_string(),
        port,
    })
}

fn parse_remote_dir(value: Option<&str>) -> Result<String, ConfigError> {
    const VAR: &str = "BACKUP_REMOTE_DIR";
    let value = value.map(str::trim).ok_or_else(|| {
        err(
            VAR,
            "is required (mirror root on the remote, an absolute path)",
        )
    })?;
    if !value.starts_with('/') {
        return Err(err(VAR, format!("{value:?} is not an absolute path")));
    }
    if value.split('/').any(|part| part == "..") {
        return Err(err(VAR, format!("{value:?} must not contain \"..\"")));
    }
    let trimmed = value.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(err(VAR, "must not be the remote's root directory"));
    }
    Ok(trimmed.to_string())
}

fn check_readable(var: &str, path: &Path) -> Result<std::fs::Metadata, ConfigError> {
    std::fs::File::open(path)
        .and_then(|f| f.metadata())
        .map_err(|e| err(var, format!("cannot read {}: {e}", path.display())))
}

fn check_private_key(path: &Path) -> Result<(), ConfigError> {
    const VAR: &str = "BACKUP_SSH_KEY_FILE";
    let meta = check_readable(VAR, path)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(
            VAR,
            format!(
                "{} is readable by group or others (mode {mode:04o}); chmod 600 it",
                path.display()
            ),
        ));
    }
    Ok(())
}

fn parse_ssh_options(value: Option<&str>) -> Result<Vec<(String, String)>, ConfigError> {
    const VAR: &str = "BACKUP_SSH_OPTIONS";
    let mut options = Vec::new();
    for item in split_list(value) {
        let (key, val) = item
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, v)| {
                !k.is_empty() && !v.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric())
            })
            .ok_or_else(|| err(VAR, format!("{item:?} is not of the form Key=Value")))?;
        if RESERVED_SSH_OPTIONS.contains(&key.to_ascii_lowercase().as_str()) {
            return Err(err(
                VAR,
                format!("{key} is set by the sidecar itself and cannot be changed here"),
            ));
        }
        options.push((key.to_string(), val.to_string()));
    }
    Ok(options)
}

fn parse_u32(var: &str, value: Option<&str>, default: u32) -> Result<u32, ConfigError> {
    match value.map(str::trim) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| err(var, format!("{v:?} is not a whole number >= 0"))),
    }
}

fn parse_bool(var: &str, value: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(other) => Err(err(var, format!("{other:?} is neither true nor false"))),
    }
}

fn parse_duration(
    var: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(value) = value.map(str::trim) else {
        return Ok(default);
    };
    match humantime::parse_duration(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(err(var, "must be longer than zero")),
        Err(e) => Err(err(
            var,
            format!("{value:?} is not a duration such as 60s or 2m ({e})"),
        )),
    }
}

/// Parses a standard 5-field cron expression.
pub fn parse_cron(var: &str, value: &str) -> Result<Cron, ConfigError> {
    let value = value.trim();
    if value.split_whitespace().count() != 5 {
        return Err(err(
            var,
            format!(
                "{value:?} is not a cron expression of 5 fields (minute hour day month weekday)"
            ),
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(value)
        .map_err(|e| {
            err(
                var,
                format!("{value:?} is not a valid cron expression: {e}"),
            )
        })
}

fn parse_archive_prefix(value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.is_empty() || value.starts_with('-') || !value.chars().all(is_name_char) {
        return Err(err(
            "BACKUP_ARCHIVE_PREFIX",
            format!("{value:?} may hold only letters, digits, '.', '_' and '-'"),
        ));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for (name, mode) in [("id_ed25519", 0o600), ("known_hosts", 0o644)] {
                let path = dir.path().join(name);
                std::fs::File::create(&path)
                    .unwrap()
                    .write_all(b"x\n")
                    .unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            Files { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }

        fn base(&self) -> Vec<(String, String)> {
            vec![
                ("BACKUP_REMOTE".into(), "pi@backup.lan".into()),
                ("BACKUP_REMOTE_DIR".into(), "/mnt/backup/data/".into()),
                ("BACKUP_SSH_KEY_FILE".into(), self.path("id_ed25519")),
                ("BACKUP_KNOWN_HOSTS_FILE".into(), self.path("known_hosts")),
            ]
        }

        /// The base variables, with `extra` added or replacing them.
        fn vars(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
            let mut vars = self.base();
            for (k, v) in extra {
                vars.retain(|(name, _)| name != k);
                vars.push((k.to_string(), v.to_string()));
            }
            vars
        }

        fn with(&self, extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
            Config::from_vars(self.vars(extra))
        }

        fn raw(&self, extra: &[(&str, &str)]) -> RawConfig {
            RawConfig::from_vars(self.vars(extra)).unwrap()
        }

        fn error_variable(&self, extra: &[(&str, &str)]) -> String {
            self.with(extra).unwrap_err().variable
        }
    }

    #[test]
    fn defaults() {
        let files = Files::new();
        let config = files.with(&[]).unwrap();
        assert_eq!(config.remote.user, "pi");
        assert_eq!(config.remote.host, "backup.lan");
        assert_eq!(config.remote.port, 22);
        assert_eq!(config.remote_dir, "/mnt/backup/data");
        assert!(config.borg.is_none());
        assert_eq!(config.pause_timeout, Duration::from_secs(60));
        assert_eq!(config.tz, Tz::UTC);
        assert!(!config.run_on_start);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.volumes_dir, PathBuf::from("/var/lib/docker/volumes"));
        assert!(config.projects.is_none());
    }

    #[test]
    fn full() {
        let files = Files::new();
        let secret = files.dir.path().join("pass");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let config = files
            .with(&[
                ("BACKUP_REMOTE_PORT", "2222"),
                ("BACKUP_BORG_REPO", "/mnt/backup/borg"),
                ("BACKUP_BORG_PASSPHRASE_FILE", secret.to_str().unwrap()),
                ("BACKUP_KEEP_DAILY", "0"),
                ("BACKUP_SSH_OPTIONS", "Ciphers=aes128-ctr, Compression=no"),
                ("BACKUP_EXCLUDE", "*.tmp,cache/"),
                ("BACKUP_PROJECTS", "nextcloud"),
                ("BACKUP_PAUSE_TIMEOUT", "1500ms"),
                ("TZ", "Europe/Berlin"),
                ("BACKUP_RUN_ON_START", "true"),
                ("LOG_FORMAT", "json"),
            ])
            .unwrap();
        let borg = config.borg.unwrap();
        assert_eq!(borg.passphrase.unwrap().expose(), "s3cret");
        assert_eq!(borg.keep.daily, 0);
        assert_eq!(borg.keep.weekly, 4);
        assert_eq!(config.remote.port, 2222);
        assert_eq!(
            config.ssh_options,
            vec![
                ("Ciphers".to_string(), "aes128-ctr".to_string()),
                ("Compression".to_string(), "no".to_string())
            ]
        );
        assert_eq!(config.exclude, vec!["*.tmp", "cache/"]);
        assert_eq!(config.projects, Some(vec!["nextcloud".to_string()]));
        assert_eq!(config.pause_timeout, Duration::from_millis(1500));
        assert_eq!(config.tz, chrono_tz::Europe::Berlin);
        assert!(config.run_on_start);
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn each_bad_input_names_its_variable() {
        let files = Files::new();
        let missing = files.path("nope");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("BACKUP_REMOTE", "")], "BACKUP_REMOTE"),
            (&[("BACKUP_REMOTE", "backup.lan")], "BACKUP_REMOTE"),
            (&[("BACKUP_REMOTE", "-oProxyCommand=x@h")], "BACKUP_REMOTE"),
            (&[("BACKUP_REMOTE_DIR", "")], "BACKUP_REMOTE_DIR"),
            (&[("BACKUP_REMOTE_DIR", "backup/data")], "BACKUP_REMOTE_DIR"),
            (&[("BACKUP_REMOTE_DIR", "/")], "BACKUP_REMOTE_DIR"),
            (&[("BACKUP_REMOTE_PORT", "70000")], "BACKUP_REMOTE_PORT"),
            (&[("BACKUP_REMOTE_PORT", "0")], "BACKUP_REMOTE_PORT"),
            (
                &[("BACKUP_SYNC_SCHEDULE", "61 * * * *")],
                "BACKUP_SYNC_SCHEDULE",
            ),
            (
                &[("BACKUP_SNAPSHOT_SCHEDULE", "weekly")],
                "BACKUP_SNAPSHOT_SCHEDULE",
            ),
            (
                &[("BACKUP_SNAPSHOT_SCHEDULE", "0 0 3 * * 0")],
                "BACKUP_SNAPSHOT_SCHEDULE",
            ),
            (
                &[("BACKUP_CHECK_SCHEDULE", "monthly")],
                "BACKUP_CHECK_SCHEDULE",
            ),
            (&[("BACKUP_PAUSE_TIMEOUT", "soon")], "BACKUP_PAUSE_TIMEOUT"),
            (&[("BACKUP_PAUSE_TIMEOUT", "0s")], "BACKUP_PAUSE_TIMEOUT"),
            (&[("BACKUP_RETRY_ATTEMPTS", "0")], "BACKUP_RETRY_ATTEMPTS"),
            (&[("BACKUP_RETRY_DELAY", "later")], "BACKUP_RETRY_DELAY"),
            (
                &[("BACKUP_BORG_REPO", "/r"), ("BACKUP_BORG_LOCK_WAIT", "x")],
                "BACKUP_BORG_LOCK_WAIT",
            ),
            (&[("BACKUP_SSH_KEY_FILE", &missing)], "BACKUP_SSH_KEY_FILE"),
            (
                &[("BACKUP_KNOWN_HOSTS_FILE", &missing)],
                "BACKUP_KNOWN_HOSTS_FILE",
            ),
            (&[("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (&[("TZ", "Mars/Olympus")], "TZ"),
            (&[("BACKUP_KEEP_WEEKLY", "-1")], "BACKUP_KEEP_WEEKLY"),
            (&[("BACKUP_RUN_ON_START", "maybe")], "BACKUP_RUN_ON_START"),
            (
                &[("BACKUP_SSH_OPTIONS", "StrictHostKeyChecking=no")],
                "BACKUP_SSH_OPTIONS",
            ),
            (&[("BACKUP_SSH_OPTIONS", "Ciphers")], "BACKUP_SSH_OPTIONS"),
            (&[("BACKUP_PROJECTS", ",")], "BACKUP_PROJECTS"),
            (&[("BACKUP_ARCHIVE_PREFIX", "a b")], "BACKUP_ARCHIVE_PREFIX"),
            (
                &[("BACKUP_BORG_PASSPHRASE_FILE", &missing)],
                "BACKUP_BORG_PASSPHRASE_FILE",
            ),
        ];
        for (extra, variable) in cases {
            assert_eq!(&files.error_variable(extra), variable, "case {extra:?}");
        }
    }

    #[test]
    fn key_readable_by_others_is_refused() {
        let files = Files::new();
        let key = files.path("id_ed25519");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = files.with(&[]).unwrap_err();
        assert_eq!(error.variable, "BACKUP_SSH_KEY_FILE");
        assert!(error.message.contains("0644"), "{error}");
    }

    #[test]
    fn value_and_file_together_are_refused() {
        let files = Files::new();
        let key = files.path("known_hosts");
        let error = files
            .with(&[
                ("BACKUP_BORG_PASSPHRASE", "x"),
                ("BACKUP_BORG_PASSPHRASE_FILE", &key),
            ])
            .unwrap_err();
        assert_eq!(error.variable, "BACKUP_BORG_PASSPHRASE_FILE");
    }

    #[test]
    fn retry_delays_double() {
        let retry = Retry {
            attempts: 4,
            delay: Duration::from_secs(10),
        };
        let waits: Vec<u64> = (2..=4).map(|a| retry.delay_before(a).as_secs()).collect();
        assert_eq!(waits, vec![10, 20, 40]);
    }

    #[test]
    fn secret_is_not_printed() {
        let secret = Secret("hunter2".into());
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    /// A raw configuration from the given variables alone, read as the sidecar reads them.
    fn raw(vars: &[(&str, &str)]) -> RawConfig {
        RawConfig::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    /// The variable a section refused; section results are not all `Debug`, so no `unwrap_err`.
    fn refused<T>(result: Result<T, ConfigError>) -> String {
        match result {
            Ok(_) => panic!("accepted"),
            Err(e) => e.variable,
        }
    }

    #[test]
    fn log_format_section() {
        assert_eq!(log_format(&raw(&[])), Ok(DEFAULT_LOG_FORMAT));
        assert_eq!(
            log_format(&raw(&[("LOG_FORMAT", " json ")])),
            Ok(LogFormat::Json)
        );
        assert_eq!(
            log_format(&raw(&[("LOG_FORMAT", "text")])),
            Ok(LogFormat::Text)
        );
        assert_eq!(
            refused(log_format(&raw(&[("LOG_FORMAT", "xml")]))),
            "LOG_FORMAT"
        );
    }

    #[test]
    fn remote_section_defaults() {
        let files = Files::new();
        let section = remote_section(&files.raw(&[])).unwrap();
        assert_eq!(section.remote.port, DEFAULT_REMOTE_PORT);
        assert!(section.ssh_options.is_empty());

        // The default paths are only usable where the sidecar's mounts exist: accept either
        // outcome, as long as it is the default path that was tried.
        let mut vars = files.base();
        vars.retain(|(name, _)| !name.ends_with("_FILE"));
        match remote_section(&RawConfig::from_vars(vars.clone()).unwrap()) {
            Ok(section) => assert_eq!(section.ssh_key_file, Path::new(DEFAULT_SSH_KEY_FILE)),
            Err(e) => {
                assert_eq!(e.variable, "BACKUP_SSH_KEY_FILE");
                assert!(e.message.contains(DEFAULT_SSH_KEY_FILE), "{e}");
            }
        }
        vars.push(("BACKUP_SSH_KEY_FILE".into(), files.path("id_ed25519")));
        match remote_section(&RawConfig::from_vars(vars).unwrap()) {
            Ok(section) => assert_eq!(
                section.known_hosts_file,
                Path::new(DEFAULT_KNOWN_HOSTS_FILE)
            ),
            Err(e) => {
                assert_eq!(e.variable, "BACKUP_KNOWN_HOSTS_FILE");
                assert!(e.message.contains(DEFAULT_KNOWN_HOSTS_FILE), "{e}");
            }
        }
    }

    #[test]
    fn remote_section_reads_each_variable() {
        let files = Files::new();
        let section = remote_section(&files.raw(&[
            ("BACKUP_REMOTE", "backup@fd00::1"),
            ("BACKUP_REMOTE_PORT", "2222"),
            ("BACKUP_SSH_OPTIONS", "Ciphers=aes128-ctr"),
        ]))
        .unwrap();
        assert_eq!(
            section.remote,
            Remote {
                user: "backup".into(),
                host: "fd00::1".into(),
                port: 2222
            }
        );
        assert_eq!(section.remote_dir, "/mnt/backup/data");
        assert_eq!(section.ssh_key_file, Path::new(&files.path("id_ed25519")));
        assert_eq!(
            section.known_hosts_file,
            Path::new(&files.path("known_hosts"))
        );
        assert_eq!(
            section.ssh_options,
            vec![("Ciphers".to_string(), "aes128-ctr".to_string())]
        );
    }

    #[test]
    fn remote_section_bad_values_name_their_variable() {
        let files = Files::new();
        let missing = files.path("nope");
        for (name, value) in [
            ("BACKUP_REMOTE", "backup.lan"),
            ("BACKUP_REMOTE_PORT", "ssh"),
            ("BACKUP_REMOTE_DIR", "/a/../b"),
            ("BACKUP_SSH_KEY_FILE", missing.as_str()),
            ("BACKUP_KNOWN_HOSTS_FILE", missing.as_str()),
            ("BACKUP_SSH_OPTIONS", "Port=2222"),
        ] {
            let result = remote_section(&files.raw(&[(name, value)]));
            assert_eq!(refused(result), name, "{name}={value}");
        }
    }

    #[test]
    fn borg_section_is_off_without_a_repository() {
        assert!(borg_section(&raw(&[])).unwrap().is_none());
        // The lock wait only matters to borg, so without a repository it is not read.
        assert!(
            borg_section(&raw(&[("BACKUP_BORG_LOCK_WAIT", "x")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn borg_section_defaults() {
        let borg = borg_section(&raw(&[("BACKUP_BORG_REPO", " /mnt/backup/borg ")]))
            .unwrap()
            .unwrap();
        assert_eq!(borg.repo, "/mnt/backup/borg");
        assert!(borg.passphrase.is_none());
        assert!(borg.archive_prefix.is_none());
        assert_eq!(
            borg.keep,
            Keep {
                daily: DEFAULT_KEEP_DAILY,
                weekly: DEFAULT_KEEP_WEEKLY,
                monthly: DEFAULT_KEEP_MONTHLY,
            }
        );
        assert_eq!(borg.lock_wait, DEFAULT_BORG_LOCK_WAIT);
    }

    #[test]
    fn borg_section_reads_each_variable() {
        let borg = borg_section(&raw(&[
            ("BACKUP_BORG_REPO", "/r"),
            ("BACKUP_BORG_PASSPHRASE", "s3cret"),
            ("BACKUP_ARCHIVE_PREFIX", "nas-1"),
            ("BACKUP_KEEP_DAILY", "1"),
            ("BACKUP_KEEP_WEEKLY", "2"),
            ("BACKUP_KEEP_MONTHLY", "0"),
            ("BACKUP_BORG_LOCK_WAIT", "30s"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(borg.passphrase, Some(Secret::new("s3cret".into())));
        assert_eq!(borg.archive_prefix.as_deref(), Some("nas-1"));
        assert_eq!(
            borg.keep,
            Keep {
                daily: 1,
                weekly: 2,
                monthly: 0
            }
        );
        assert_eq!(borg.lock_wait, Duration::from_secs(30));
    }

    #[test]
    fn borg_section_bad_values_name_their_variable() {
        // Retention and prefix are refused even while snapshots are off.
        for (name, value) in [
            ("BACKUP_KEEP_DAILY", "x"),
            ("BACKUP_KEEP_WEEKLY", "-1"),
            ("BACKUP_KEEP_MONTHLY", "1.5"),
            ("BACKUP_ARCHIVE_PREFIX", "-p"),
        ] {
            assert_eq!(refused(borg_section(&raw(&[(name, value)]))), name);
        }
        for (name, value) in [
            ("BACKUP_BORG_REPO", "-r"),
            ("BACKUP_BORG_REPO", "/my repo"),
            ("BACKUP_BORG_LOCK_WAIT", "0s"),
        ] {
            let mut vars = vec![("BACKUP_BORG_REPO", "/r")];
            vars.retain(|(n, _)| *n != name);
            vars.push((name, value));
            assert_eq!(refused(borg_section(&raw(&vars))), name, "{name}={value}");
        }
    }

    #[test]
    fn schedule_section_defaults() {
        let section = schedule_section(&raw(&[])).unwrap();
        let cron = |value| parse_cron("test", value).unwrap();
        assert_eq!(section.sync_schedule, cron(DEFAULT_SYNC_SCHEDULE));
        assert_eq!(section.snapshot_schedule, cron(DEFAULT_SNAPSHOT_SCHEDULE));
        assert_eq!(section.check_schedule, cron(DEFAULT_CHECK_SCHEDULE));
        assert_eq!(section.tz, DEFAULT_TZ);
        assert_eq!(section.run_on_start, DEFAULT_RUN_ON_START);
    }

    #[test]
    fn schedule_section_reads_each_variable() {
        let section = schedule_section(&raw(&[
            ("BACKUP_SYNC_SCHEDULE", "15 * * * *"),
            ("BACKUP_SNAPSHOT_SCHEDULE", "0 2 * * *"),
            ("BACKUP_CHECK_SCHEDULE", "0 5 * * 6"),
            ("TZ", "America/New_York"),
            ("BACKUP_RUN_ON_START", "Yes"),
        ]))
        .unwrap();
        let cron = |value| parse_cron("test", value).unwrap();
        assert_eq!(section.sync_schedule, cron("15 * * * *"));
        assert_eq!(section.snapshot_schedule, cron("0 2 * * *"));
        assert_eq!(section.check_schedule, cron("0 5 * * 6"));
        assert_eq!(section.tz, chrono_tz::America::New_York);
        assert!(section.run_on_start);
    }

    #[test]
    fn schedule_section_bad_values_name_their_variable() {
        for (name, value) in [
            ("BACKUP_SYNC_SCHEDULE", "@daily"),
            ("BACKUP_SNAPSHOT_SCHEDULE", "0 25 * * *"),
            ("BACKUP_CHECK_SCHEDULE", "0 4 1 * * *"),
            ("TZ", "CEST+2"),
            ("BACKUP_RUN_ON_START", "y"),
        ] {
            assert_eq!(
                refused(schedule_section(&raw(&[(name, value)]))),
                name,
                "{name}={value}"
            );
        }
    }

    #[test]
    fn run_section_defaults() {
        let section = run_section(&raw(&[])).unwrap();
        assert_eq!(section.pause_timeout, DEFAULT_PAUSE_TIMEOUT);
        assert_eq!(
            section.retry,
            Retry {
                attempts: DEFAULT_RETRY_ATTEMPTS,
                delay: DEFAULT_RETRY_DELAY,
            }
        );
        assert!(section.exclude.is_empty());
        assert!(section.pre_command.is_none());
        assert!(section.post_command.is_none());
        assert!(section.projects.is_none());
    }

    #[test]
    fn run_section_reads_each_variable() {
        let section = run_section(&raw(&[
            ("BACKUP_PAUSE_TIMEOUT", "2m"),
            ("BACKUP_RETRY_ATTEMPTS", "1"),
            ("BACKUP_RETRY_DELAY", "500ms"),
            ("BACKUP_EXCLUDE", "*.tmp, ,cache/"),
            ("BACKUP_REMOTE_PRE_COMMAND", "mount /mnt/backup"),
            ("BACKUP_REMOTE_POST_COMMAND", "umount /mnt/backup"),
            ("BACKUP_PROJECTS", "nextcloud, immich"),
        ]))
        .unwrap();
        assert_eq!(section.pause_timeout, Duration::from_secs(120));
        assert_eq!(
            section.retry,
            Retry {
                attempts: 1,
                delay: Duration::from_millis(500),
            }
        );
        assert_eq!(section.exclude, vec!["*.tmp", "cache/"]);
        assert_eq!(section.pre_command.as_deref(), Some("mount /mnt/backup"));
        assert_eq!(section.post_command.as_deref(), Some("umount /mnt/backup"));
        assert_eq!(
            section.projects,
            Some(vec!["nextcloud".to_string(), "immich".to_string()])
        );
    }

    #[test]
    fn run_section_bad_values_name_their_variable() {
        for (name, value) in [
            ("BACKUP_PAUSE_TIMEOUT", "60"),
            ("BACKUP_RETRY_ATTEMPTS", "0"),
            ("BACKUP_RETRY_ATTEMPTS", "three"),
            ("BACKUP_RETRY_DELAY", "0ms"),
            ("BACKUP_PROJECTS", " , "),
        ] {
            assert_eq!(
                refused(run_section(&raw(&[(name, value)]))),
                name,
                "{name}={value}"
            );
        }
    }

    #[test]
    fn paths_section() {
        let defaults = paths(&raw(&[]));
        assert_eq!(defaults.volumes_dir, Path::new(DEFAULT_VOLUMES_DIR));
        assert_eq!(defaults.state_dir, Path::new(DEFAULT_STATE_DIR));
        let set = paths(&raw(&[
            ("BACKUP_VOLUMES_DIR", "/host/volumes"),
            ("BACKUP_STATE_DIR", "/state"),
        ]));
        assert_eq!(set.volumes_dir, Path::new("/host/volumes"));
        assert_eq!(set.state_dir, Path::new("/state"));
    }

    #[test]
    fn the_first_section_at_fault_is_reported() {
        let files = Files::new();
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("LOG_FORMAT", "xml"), ("BACKUP_REMOTE", "")],
                "LOG_FORMAT",
            ),
            (
                &[
                    ("BACKUP_SSH_OPTIONS", "Ciphers"),
                    ("BACKUP_KEEP_DAILY", "x"),
                ],
                "BACKUP_SSH_OPTIONS",
            ),
            (
                &[("BACKUP_ARCHIVE_PREFIX", "a b"), ("TZ", "Mars/Olympus")],
                "BACKUP_ARCHIVE_PREFIX",
            ),
            (
                &[
                    ("BACKUP_BORG_REPO", "/r"),
                    ("BACKUP_BORG_LOCK_WAIT", "x"),
                    ("BACKUP_SYNC_SCHEDULE", "x"),
                ],
                "BACKUP_BORG_LOCK_WAIT",
            ),
            (
                &[("TZ", "Mars/Olympus"), ("BACKUP_SYNC_SCHEDULE", "x")],
                "TZ",
            ),
            (
                &[
                    ("BACKUP_RUN_ON_START", "maybe"),
                    ("BACKUP_PAUSE_TIMEOUT", "x"),
                ],
                "BACKUP_RUN_ON_START",
            ),
            (
                &[("BACKUP_PROJECTS", ","), ("BACKUP_RETRY_DELAY", "x")],
                "BACKUP_RETRY_DELAY",
            ),
        ];
        for (extra, variable) in cases {
            assert_eq!(&files.error_variable(extra), variable, "case {extra:?}");
        }
    }
}
