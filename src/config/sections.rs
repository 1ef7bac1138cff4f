//! Stage two, one section at a time: each takes the raw variables it needs and returns its typed
//! part or the error that names the first bad variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;
use croner::Cron;

use super::channel::{self, Channel, NotifyOn};
use super::parse::*;
use super::*;

/// `LOG_FORMAT`.
pub(super) fn log_format(raw: &RawConfig) -> Result<LogFormat, ConfigError> {
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
pub(super) struct RemoteSection {
    pub(super) remote: Remote,
    pub(super) remote_dir: String,
    pub(super) ssh_key_file: PathBuf,
    pub(super) known_hosts_file: PathBuf,
    pub(super) ssh_options: Vec<(String, String)>,
}

/// `BACKUP_REMOTE`, `BACKUP_REMOTE_PORT`, `BACKUP_REMOTE_DIR`, `BACKUP_SSH_KEY_FILE`,
/// `BACKUP_KNOWN_HOSTS_FILE` and `BACKUP_SSH_OPTIONS`.
pub(super) fn remote_section(raw: &RawConfig) -> Result<RemoteSection, ConfigError> {
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
pub(super) fn borg_section(raw: &RawConfig) -> Result<Option<Borg>, ConfigError> {
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
pub(super) struct ScheduleSection {
    pub(super) sync_schedule: Cron,
    pub(super) snapshot_schedule: Cron,
    pub(super) check_schedule: Cron,
    pub(super) full_scan_schedule: Cron,
    pub(super) copy_schedule: Option<Cron>,
    pub(super) tz: Tz,
    pub(super) run_on_start: bool,
}

/// `TZ`, `BACKUP_SYNC_SCHEDULE`, `BACKUP_SNAPSHOT_SCHEDULE`, `BACKUP_CHECK_SCHEDULE`,
/// `BACKUP_FULL_SCAN_SCHEDULE`, `BACKUP_COPY_SCHEDULE` (unset or empty: after each snapshot) and
/// `BACKUP_RUN_ON_START`.
pub(super) fn schedule_section(raw: &RawConfig) -> Result<ScheduleSection, ConfigError> {
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
    let full_scan_schedule = parse_cron(
        "BACKUP_FULL_SCAN_SCHEDULE",
        raw.backup_full_scan_schedule
            .as_deref()
            .unwrap_or(DEFAULT_FULL_SCAN_SCHEDULE),
    )?;
    let copy_schedule = match raw.backup_copy_schedule.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(pattern) => Some(parse_cron("BACKUP_COPY_SCHEDULE", pattern)?),
    };
    let run_on_start = parse_bool(
        "BACKUP_RUN_ON_START",
        raw.backup_run_on_start.as_deref(),
        DEFAULT_RUN_ON_START,
    )?;
    Ok(ScheduleSection {
        sync_schedule,
        snapshot_schedule,
        check_schedule,
        full_scan_schedule,
        copy_schedule,
        tz,
        run_on_start,
    })
}

/// How each run behaves.
pub(super) struct RunSection {
    pub(super) pause_timeout: Duration,
    pub(super) retry: Retry,
    pub(super) exclude: Vec<String>,
    pub(super) pre_command: Option<String>,
    pub(super) post_command: Option<String>,
    pub(super) projects: Option<Vec<String>>,
}

/// `BACKUP_PAUSE_TIMEOUT`, `BACKUP_RETRY_*`, `BACKUP_EXCLUDE`, `BACKUP_REMOTE_PRE_COMMAND`,
/// `BACKUP_REMOTE_POST_COMMAND` and `BACKUP_PROJECTS`.
pub(super) fn run_section(raw: &RawConfig) -> Result<RunSection, ConfigError> {
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

/// How frozen groups catch up, and the link's rsync options.
pub(super) struct CatchUpSection {
    pub(super) catch_up: CatchUp,
    pub(super) staging_max: u64,
    pub(super) change_journal: bool,
    pub(super) link: Link,
}

/// `BACKUP_CATCH_UP`, `BACKUP_STAGING_MAX`, `BACKUP_CHANGE_JOURNAL`, `BACKUP_COMPRESS` and
/// `BACKUP_BWLIMIT`.
pub(super) fn catch_up_section(raw: &RawConfig) -> Result<CatchUpSection, ConfigError> {
    let catch_up = match raw.backup_catch_up.as_deref().map(str::trim) {
        None => DEFAULT_CATCH_UP,
        Some("capture") => CatchUp::Capture,
        Some("network") => CatchUp::Network,
        Some(other) => {
            return Err(err(
                "BACKUP_CATCH_UP",
                format!("{other:?} is neither capture nor network"),
            ));
        }
    };
    let staging_max = match raw.backup_staging_max.as_deref() {
        None => DEFAULT_STAGING_MAX,
        Some(value) => parse_size("BACKUP_STAGING_MAX", value)?,
    };
    let change_journal = parse_bool(
        "BACKUP_CHANGE_JOURNAL",
        raw.backup_change_journal.as_deref(),
        DEFAULT_CHANGE_JOURNAL,
    )?;
    let compress = parse_bool(
        "BACKUP_COMPRESS",
        raw.backup_compress.as_deref(),
        DEFAULT_COMPRESS,
    )?;
    let bwlimit = match raw.backup_bwlimit.as_deref() {
        None => None,
        Some(value) => parse_bwlimit(value)?,
    };
    Ok(CatchUpSection {
        catch_up,
        staging_max,
        change_journal,
        link: Link { compress, bwlimit },
    })
}

/// Local directories.
pub(super) struct Paths {
    pub(super) volumes_dir: PathBuf,
    pub(super) host_root: Option<PathBuf>,
    pub(super) state_dir: PathBuf,
}

/// `BACKUP_VOLUMES_DIR`, `BACKUP_HOST_ROOT` and `BACKUP_STATE_DIR`. The host's root must be a
/// directory now (a mount left out of the compose file is a mistake to name at start); the others
/// the daemon checks when it opens them.
pub(super) fn paths(raw: &RawConfig) -> Result<Paths, ConfigError> {
    let host_root = match raw.backup_host_root.as_deref() {
        None => None,
        Some(value) => {
            let path = PathBuf::from(value.trim());
            if !path.is_absolute() || !path.is_dir() {
                return Err(err(
                    "BACKUP_HOST_ROOT",
                    format!(
                        "{value:?} is not a directory; mount the host's root read-only \
                         (- /:/host:ro) and set BACKUP_HOST_ROOT=/host"
                    ),
                ));
            }
            Some(path)
        }
    };
    Ok(Paths {
        volumes_dir: PathBuf::from(
            raw.backup_volumes_dir
                .as_deref()
                .unwrap_or(DEFAULT_VOLUMES_DIR),
        ),
        host_root,
        state_dir: PathBuf::from(raw.backup_state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR)),
    })
}

/// The health and progress settings.
pub(super) struct HealthSection {
    pub(super) max_age: Duration,
    pub(super) copy_max_age: Duration,
    pub(super) progress_interval: Duration,
}

/// `BACKUP_MAX_AGE` (default: twice the longest gap between two runs of `sync`, plus an hour),
/// `BACKUP_COPY_MAX_AGE` (default: twice the longest gap between two copies, those of
/// `BACKUP_COPY_SCHEDULE` or else of the snapshots, plus an hour) and `BACKUP_PROGRESS_INTERVAL`.
pub(super) fn health_section(
    raw: &RawConfig,
    sync: &Cron,
    copies: &Cron,
) -> Result<HealthSection, ConfigError> {
    let default_max_age = longest_gap(sync).saturating_mul(2) + MAX_AGE_SLACK;
    let default_copy_max_age = longest_gap(copies).saturating_mul(2) + MAX_AGE_SLACK;
    Ok(HealthSection {
        max_age: parse_duration(
            "BACKUP_MAX_AGE",
            raw.backup_max_age.as_deref(),
            default_max_age,
        )?,
        copy_max_age: parse_duration(
            "BACKUP_COPY_MAX_AGE",
            raw.backup_copy_max_age.as_deref(),
            default_copy_max_age,
        )?,
        progress_interval: parse_duration(
            "BACKUP_PROGRESS_INTERVAL",
            raw.backup_progress_interval.as_deref(),
            DEFAULT_PROGRESS_INTERVAL,
        )?,
    })
}

/// The longest time between two consecutive fires of `cron` over the next four years (leap days
/// and month ends included), or over its next 10,000 fires when it fires more often than that.
pub(super) fn longest_gap(cron: &Cron) -> Duration {
    const MOST_FIRES: usize = 10_000;
    let start = chrono::DateTime::<chrono::Utc>::from_timestamp(1_767_225_600, 0) // 2026-01-01
        .unwrap_or_default();
    let end = start + chrono::Duration::days(4 * 366);
    let mut longest = Duration::ZERO;
    let mut previous = start;
    for (n, fire) in cron.iter_after(start).enumerate() {
        if n > 0 {
            longest = longest.max((fire - previous).to_std().unwrap_or_default());
        }
        previous = fire;
        if n >= MOST_FIRES || fire > end {
            break;
        }
    }
    longest
}

/// `BACKUP_METRICS_ADDR`: where to serve metrics, `None` when unset.
pub(super) fn metrics_addr(raw: &RawConfig) -> Result<Option<SocketAddr>, ConfigError> {
    raw.backup_metrics_addr
        .as_deref()
        .map(|value| parse_listen_addr("BACKUP_METRICS_ADDR", value))
        .transpose()
}

/// Where notifications go.
pub(super) struct NotifySection {
    pub(super) urls: Vec<Channel>,
    pub(super) on: NotifyOn,
    pub(super) ca_file: Option<PathBuf>,
}

/// `BACKUP_NOTIFY_URLS`, `BACKUP_NOTIFY_ON` and `BACKUP_NOTIFY_CA_FILE`. A URL that cannot be used
/// stops the sidecar at start: a notification that silently never arrives is the one failure
/// nobody notices.
pub(super) fn notify_section(raw: &RawConfig) -> Result<NotifySection, ConfigError> {
    const URLS: &str = "BACKUP_NOTIFY_URLS";
    let entries = split_list(raw.backup_notify_urls.as_deref());
    let count = entries.len();
    let urls = entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            // The entry may hold a token: only its redacted form is ever shown.
            Channel::parse(entry).map_err(|e| {
                err(
                    URLS,
                    format!(
                        "entry {} of {count}, {}: {e}",
                        i + 1,
                        channel::redact(entry)
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let on = match raw
        .backup_notify_on
        .as_deref()
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None => DEFAULT_NOTIFY_ON,
        Some("failure") => NotifyOn::Failure,
        Some("always") => NotifyOn::Always,
        Some(other) => {
            return Err(err(
                "BACKUP_NOTIFY_ON",
                format!("{other:?} is neither \"failure\" nor \"always\""),
            ));
        }
    };
    let ca_file = raw.backup_notify_ca_file.as_deref().map(PathBuf::from);
    if let Some(path) = &ca_file {
        channel::read_ca_file(path).map_err(|e| err("BACKUP_NOTIFY_CA_FILE", e))?;
    }
    Ok(NotifySection { urls, on, ca_file })
}
