//! Operations: what tells the user how backups go, read from the reports runs produce.
//!
//! - [`history`]: the run history in the state directory (atomic writes), the daemon's heartbeat
//!   and the run in progress.
//! - [`health`]: "backups are current", for the image's `HEALTHCHECK`.
//! - [`status`]: the `status` command's table and JSON.
//! - [`metrics`]: Prometheus metrics rendered from the history, served over HTTP.
//! - [`notify`]: notifications over ntfy, Gotify, healthchecks, Uptime Kuma, Slack-style
//!   webhooks, mail and a generic JSON webhook.

pub mod health;
pub mod history;
pub mod metrics;
pub mod notify;
pub mod status;

use anyhow::Result;
use chrono::Utc;
use tracing::warn;

use crate::config::Config;
use crate::report::Report;
use health::Verdict;
use history::Store;

/// Where the daemon's reports go. Outputs never fail the work: they only log their own trouble.
pub struct Outputs {
    store: Store,
}

impl Outputs {
    /// Outputs that keep their state in `store`.
    pub fn new(store: Store) -> Self {
        Outputs { store }
    }

    /// Hands a report to every output: the log, then the history.
    pub fn publish(&self, report: &Report) {
        report.log();
        let mut history = self.store.load();
        history.record(report, Utc::now());
        if let Err(e) = self.store.save(&history) {
            warn!(error = %format!("{e:#}"), "cannot write the run history in BACKUP_STATE_DIR");
        }
    }
}

fn verdict(config: &Config, store: &Store) -> Verdict {
    health::verdict(
        Utc::now(),
        &store.load(),
        store.heartbeat(),
        store.running().as_ref(),
        config.max_age,
    )
}

/// `backup-sidecar health`: prints the verdict on one line; true when healthy.
pub fn health_command(config: &Config) -> bool {
    match verdict(config, &Store::new(&config.state_dir)) {
        Verdict::Healthy(why) => {
            println!("healthy: {why}");
            true
        }
        Verdict::Unhealthy(why) => {
            println!("unhealthy: {why}");
            false
        }
    }
}

/// `backup-sidecar status [--json]`.
pub fn status_command(config: &Config, json: bool) -> Result<()> {
    let store = Store::new(&config.state_dir);
    let schedules = status::Schedules {
        sync: &config.sync_schedule,
        snapshot: &config.snapshot_schedule,
        tz: config.tz,
    };
    let status = status::status(
        Utc::now(),
        &store.load(),
        verdict(config, &store),
        &schedules,
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.table(config.tz));
    }
    Ok(())
}
