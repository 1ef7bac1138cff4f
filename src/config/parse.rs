//! Parsers of single values: each refuses what it cannot use with an error naming its variable.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds};

use super::{
    ConfigError, DEFAULT_REMOTE_PORT, HOST_PLACEHOLDER, RESERVED_SSH_OPTIONS, Remote, err,
};

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

pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

pub(super) fn parse_remote(value: Option<&str>, port: Option<&str>) -> Result<Remote, ConfigError> {
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

pub(super) fn parse_remote_dir(value: Option<&str>) -> Result<String, ConfigError> {
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
    let root = trimmed.strip_suffix(&format!("/{HOST_PLACEHOLDER}"));
    if root.unwrap_or(trimmed).contains(['{', '}']) {
        return Err(err(
            VAR,
            format!("{value:?}: the only placeholder is {HOST_PLACEHOLDER}, as its last component"),
        ));
    }
    if root == Some("") {
        return Err(err(
            VAR,
            "must not be a directory of the remote's root directory",
        ));
    }
    Ok(trimmed.to_string())
}

pub(super) fn check_readable(var: &str, path: &Path) -> Result<std::fs::Metadata, ConfigError> {
    std::fs::File::open(path)
        .and_then(|f| f.metadata())
        .map_err(|e| err(var, format!("cannot read {}: {e}", path.display())))
}

pub(super) fn check_private_key(path: &Path) -> Result<(), ConfigError> {
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

pub(super) fn parse_ssh_options(value: Option<&str>) -> Result<Vec<(String, String)>, ConfigError> {
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

pub(super) fn parse_u32(var: &str, value: Option<&str>, default: u32) -> Result<u32, ConfigError> {
    match value.map(str::trim) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| err(var, format!("{v:?} is not a whole number >= 0"))),
    }
}

pub(super) fn parse_bool(
    var: &str,
    value: Option<&str>,
    default: bool,
) -> Result<bool, ConfigError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(other) => Err(err(var, format!("{other:?} is neither true nor false"))),
    }
}

pub(super) fn parse_duration(
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

/// Parses a size: a whole number of bytes, or one with a binary unit (`512MiB`, `1 GiB`, `2g`;
/// K, M, G and T, with or without `iB`, all count in 1024s).
pub(super) fn parse_size(var: &str, value: &str) -> Result<u64, ConfigError> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => 64,
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| shift < 64)
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| {
            err(
                var,
                format!("{value:?} is not a size such as 1GiB or 512MiB"),
            )
        })
}

/// Parses `BACKUP_BWLIMIT` the way rsync reads `--bwlimit`: a number of KiB/s, or one with a
/// unit (`k`, `m`, `g`, each 1024 times the last). `0` means no limit (`None`).
pub(super) fn parse_bwlimit(value: &str) -> Result<Option<String>, ConfigError> {
    let value = value.trim();
    let number = value.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    let units = value.len() - number.len();
    let rate: Option<f64> = number
        .parse()
        .ok()
        .filter(|r: &f64| r.is_finite() && *r >= 0.0);
    match rate {
        Some(r) if units <= 1 && !number.starts_with('+') => {
            Ok((r > 0.0).then(|| value.to_string()))
        }
        _ => Err(err(
            "BACKUP_BWLIMIT",
            format!("{value:?} is not a rate such as 500 (KiB/s) or 1.5m"),
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

pub(super) fn parse_archive_prefix(value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.is_empty() || value.starts_with('-') || !value.chars().all(is_name_char) {
        return Err(err(
            "BACKUP_ARCHIVE_PREFIX",
            format!("{value:?} may hold only letters, digits, '.', '_' and '-'"),
        ));
    }
    Ok(value.to_string())
}

/// A listening address: `:PORT` (every IPv4 interface), `IPv4:PORT` or `[IPv6]:PORT`. Host names
/// are refused: the address is bound once at start, and a name could resolve to several.
pub(super) fn parse_listen_addr(var: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    let value = value.trim();
    let bad = || {
        err(
            var,
            format!("{value:?} is not :PORT, IPv4:PORT or [IPv6]:PORT (such as :9102)"),
        )
    };
    // `:9102` means what it means to Go and Prometheus' own exporters: every interface. IPv4's
    // wildcard rather than IPv6's, as containers often have IPv6 turned off.
    let addr = match value.strip_prefix(':') {
        Some(port) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, port.parse().map_err(|_| bad())?)),
        None => value.parse().map_err(|_| bad())?,
    };
    if addr.port() == 0 {
        return Err(err(
            var,
            format!("{value:?}: port 0 picks a random port; give one"),
        ));
    }
    Ok(addr)
}
