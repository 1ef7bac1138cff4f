//! Verification, on `BACKUP_CHECK_SCHEDULE`: `borg check` of the repository on the remote, then a
//! spot check that samples files of the newest archive and compares them with the mirror. A file
//! whose size and mtime are the same in both must have the same content; if not, the mirror or
//! the archive has rotted, and that is logged as an error with the archive and the path.

use std::time::Instant;

use anyhow::Result;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{Borg, Config};
use crate::remote::borg::remote_borg;
use crate::remote::borg::{list_archives, of_prefix};
use crate::remote::ssh::{Session, Ssh};
use crate::report::{Failure, Verified, VerifyReport};

/// How many files of the newest archive are compared with the mirror.
const SAMPLE: usize = 20;

#[derive(Debug, Deserialize)]
struct Item {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    size: u64,
    mtime: String,
}

/// Whether borg's `2026-11-26T22:57:59.123456` and stat's `2026-11-26 22:57:59.123456789 +0000`
/// are the same instant. borg rounds to the nearest microsecond, so they may differ by one.
fn same_time(borg: &str, stat: &str) -> bool {
    // (date and time to the second, nanoseconds)
    let split = |t: &str| {
        let t = t.replacen(' ', "T", 1);
        let t = t.split(' ').next().unwrap_or("").to_string();
        let (whole, fraction) = t.split_once('.').unwrap_or((&t, ""));
        let digits: String = format!("{fraction:0<9}").chars().take(9).collect();
        (whole.to_string(), digits.parse::<i64>().unwrap_or(-1))
    };
    let (borg_second, borg_ns) = split(borg);
    let (stat_second, stat_ns) = split(stat);
    borg_second == stat_second && (borg_ns - stat_ns).abs() <= 1000
}

/// Picks up to `n` items spread evenly over the listing (the same sample for the same archive).
fn sample(items: &[Item], n: usize) -> Vec<&Item> {
    if items.len() <= n {
        return items.iter().collect();
    }
    let step = items.len() as f64 / n as f64;
    (0..n).map(|i| &items[(i as f64 * step) as usize]).collect()
}

/// Runs `borg check` and the spot check; returns the report (the daemon publishes it).
pub async fn verify(config: &Config, cancel: &CancellationToken) -> VerifyReport {
    let started = Instant::now();
    let outcome = match &config.borg {
        None => {
            info!("verification skipped: BACKUP_BORG_REPO is not set");
            Ok(Verified::default())
        }
        Some(borg) => match Session::open(config, cancel).await {
            Ok(session) => {
                let result = check(config, borg, &session.ssh, cancel).await;
                session.close().await;
                result
            }
            Err(e) => Err(e),
        },
    };
    VerifyReport {
        outcome: outcome.map_err(|e| Failure::of(&e)),
        duration: started.elapsed(),
    }
}

async fn check(
    config: &Config,
    borg: &Borg,
    ssh: &Ssh,
    cancel: &CancellationToken,
) -> Result<Verified> {
    remote_borg(ssh, borg, "borg check", &ssh.borg_check(borg), cancel).await?;
    info!(repo = %borg.repo, "borg check passed");

    // This host's newest archive: another host's is compared with another mirror.
    let newest = list_archives(ssh, borg, cancel)
        .await?
        .into_iter()
        .find(|a| {
            borg.archive_prefix
                .as_deref()
                .is_none_or(|p| of_prefix(&a.name, p))
        });
    let Some(newest) = newest else {
        return Ok(Verified::default());
    };
    let listing = remote_borg(
        ssh,
        borg,
        "borg list",
        &ssh.borg_list_archive(borg, &newest.name),
        cancel,
    )
    .await?;
    let files: Vec<Item> = listing
        .lines()
        .filter_map(|l| serde_json::from_str::<Item>(l).ok())
        .filter(|i| i.kind == "-" && !i.path.starts_with('.'))
        .collect();
    let mut verified = Verified {
        archive: Some(newest.name.clone()),
        ..Default::default()
    };
    for item in sample(&files, SAMPLE) {
        let mirror = format!("{}/{}", config.remote_dir, item.path);
        // Size and mtime of the mirror's copy, in the remote's local time like borg's listing.
        let stat = ssh.run(&ssh.size_and_mtime(&mirror), None, cancel).await?;
        let Some((size, mtime)) = stat.stdout.trim().split_once(' ') else {
            continue; // gone from the mirror since: nothing to compare
        };
        if size.parse::<u64>().ok() != Some(item.size) || !same_time(&item.mtime, mtime) {
            continue; // changed since the archive: not comparable
        }
        let sums = remote_borg(
            ssh,
            borg,
            "borg extract",
            &ssh.borg_compare(borg, &newest.name, &item.path, &mirror),
            cancel,
        )
        .await?;
        let sums: Vec<&str> = sums
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        verified.compared += 1;
        if sums.len() != 2 || sums[0] != sums[1] {
            error!(
                archive = %newest.name,
                path = %item.path,
                "verification: the archive and the mirror differ for a file whose size and mtime agree"
            );
            verified.mismatches.push(item.path.clone());
        }
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(path: &str) -> Item {
        Item {
            path: path.into(),
            kind: "-".into(),
            size: 1,
            mtime: "2026-01-01T00:00:00.000000".into(),
        }
    }

    #[test]
    fn compares_borg_and_stat_times() {
        assert!(same_time(
            "2026-11-26T22:57:59.123456",
            "2026-11-26 22:57:59.123456789 +0000"
        ));
        assert!(same_time(
            "2026-11-26T22:57:59",
            "2026-11-26 22:57:59.000000000 +0100"
        ));
        // borg rounds 0.123456789 up.
        assert!(same_time(
            "2026-11-26T22:57:59.123457",
            "2026-11-26 22:57:59.123456789 +0000"
        ));
        assert!(!same_time(
            "2026-11-26T22:57:59.123456",
            "2026-11-26 22:57:59.123459000 +0000"
        ));
        assert!(!same_time(
            "2026-11-26T22:57:58.123456",
            "2026-11-26 22:57:59.123456000 +0000"
        ));
    }

    #[test]
    fn samples_spread_over_the_listing() {
        let items: Vec<Item> = (0..100).map(|i| item(&format!("f{i}"))).collect();
        let picked: Vec<&str> = sample(&items, 4).iter().map(|i| i.path.as_str()).collect();
        assert_eq!(picked, vec!["f0", "f25", "f50", "f75"]);
        assert_eq!(sample(&items[..3], 20).len(), 3);
    }
}
