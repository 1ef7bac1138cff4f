//! Stage one: every variable of the specification as the environment gave it, with `NAME_FILE`
//! variables (Docker secrets) read in.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, err};

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
    "BACKUP_NOTIFY_URLS",
    "BACKUP_WEB_PASSWORD",
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
    pub backup_copy_schedule: Option<String>,
    pub backup_copy_max_age: Option<String>,
    pub tz: Option<String>,
    pub backup_run_on_start: Option<String>,
    pub backup_max_age: Option<String>,
    pub backup_progress_interval: Option<String>,
    pub backup_pause_timeout: Option<String>,
    pub backup_retry_attempts: Option<String>,
    pub backup_retry_delay: Option<String>,
    pub backup_borg_lock_wait: Option<String>,
    pub backup_exclude: Option<String>,
    pub backup_catch_up: Option<String>,
    pub backup_staging_max: Option<String>,
    pub backup_change_journal: Option<String>,
    pub backup_full_scan_schedule: Option<String>,
    pub backup_compress: Option<String>,
    pub backup_bwlimit: Option<String>,
    pub backup_remote_pre_command: Option<String>,
    pub backup_remote_post_command: Option<String>,
    pub backup_projects: Option<String>,
    pub backup_volumes_dir: Option<String>,
    pub backup_host_root: Option<String>,
    pub backup_state_dir: Option<String>,
    pub backup_metrics_addr: Option<String>,
    pub log_format: Option<String>,
    pub backup_notify_urls: Option<String>,
    pub backup_notify_on: Option<String>,
    pub backup_notify_ca_file: Option<String>,
    pub backup_web_addr: Option<String>,
    pub backup_web_password: Option<String>,
    pub backup_web_auth_header: Option<String>,
    pub backup_web_trusted_proxies: Option<String>,
    pub backup_web_hosts: Option<String>,
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
