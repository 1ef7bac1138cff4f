//! Operations: what tells the user how backups go, read from the reports runs produce.
//!
//! - [`history`]: the run history in the state directory (atomic writes), the daemon's heartbeat
//!   and the run in progress.
//! - [`health`]: "backups are current", for the image's `HEALTHCHECK`.
//! - [`status`]: the `status` command's table and JSON.
//! - [`metrics`]: Prometheus metrics rendered from the history, served over HTTP.
//! - [`progress`]: long passes and `borg create` report their progress.
//! - [`notify`]: notifications over ntfy, Gotify, healthchecks, Uptime Kuma, Slack-style
//!   webhooks, mail and a generic JSON webhook.

pub mod health;
pub mod history;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod progress;
pub mod status;

use anyhow::Result;
use chrono::Utc;
use chrono_tz::Tz;
use croner::Cron;
use tracing::warn;

use crate::config::Config;
use crate::report::{self, Report, RunReport, VerifyReport};
use health::Verdict;
use history::{History, Store};
use notify::{Message, Notifier, Outcome};

/// The log lines kept with each run in the history, for the web page's run detail.
const KEPT_LOG_LINES: usize = 60;

/// Where the daemon's reports go: the log, the history (which health, status and the metrics
/// read) and the notification channels. Outputs never fail or delay the work: notifications go
/// out in tasks of their own, and trouble is only a warning.
pub struct Outputs {
    store: Store,
    /// Held while the history is read, changed and written: the copy worker publishes beside
    /// the runs, and neither may lose the other's report.
    writing: std::sync::Mutex<()>,
    notifier: Notifier,
    host: String,
    schedules: (Cron, Cron, Tz),
}

impl Outputs {
    /// Outputs for the daemon of `config`, on the engine named `host`.
    pub fn new(config: &Config, store: Store, notifier: Notifier, host: String) -> Self {
        Outputs {
            store,
            writing: std::sync::Mutex::new(()),
            notifier,
            host,
            schedules: (
                config.sync_schedule.clone(),
                config.snapshot_schedule.clone(),
                config.tz,
            ),
        }
    }

    /// A run begins: healthchecks hears `/start`, in the background.
    pub fn run_started(&self, run_id: &str) {
        if self.notifier.is_empty() {
            return;
        }
        let notifier = self.notifier.clone();
        let run_id = run_id.to_string();
        tokio::spawn(async move { notifier.start(&run_id).await });
    }

    /// Hands a report to every output: the log, the history, then the notification channels,
    /// which also get the lines logged since `log_mark`.
    pub fn publish(&self, report: &Report, run_id: &str, log_mark: u64) {
        report.log();
        let log_tail = logging::lines_since(log_mark);
        let before = self.change_history(|history| {
            history.record(report, Utc::now());
            if let (Report::Run(_), Some(run)) = (report, history.runs.last_mut()) {
                let skip = log_tail.len().saturating_sub(KEPT_LOG_LINES);
                run.log = log_tail[skip..].to_vec();
            }
        });
        if self.notifier.is_empty() {
            return;
        }
        let message = match report {
            Report::Run(run) => self.run_message(run, &before),
            Report::Verification(v) => match self.verification_message(v, &before) {
                Some(message) => message,
                None => return,
            },
            Report::Copy(c) => match self.copy_message(c, &before) {
                Some(message) => message,
                None => return,
            },
        };
        let message = Message {
            log_tail,
            run_id: run_id.to_string(),
            ..message
        };
        self.notifier.spawn_send(message);
    }

    /// The remote no longer configures a second copy: its record goes, so that health does not
    /// wait for copies that will never come.
    pub fn forget_copy(&self) {
        self.change_history(|history| history.copy = None);
    }

    /// Reads the history, changes it and writes it back, under `writing`; returns it as it was.
    fn change_history(&self, change: impl FnOnce(&mut History)) -> History {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut history = self.store.load();
        let before = history.clone();
        change(&mut history);
        if history != before
            && let Err(e) = self.store.save(&history)
        {
            warn!(error = %format!("{e:#}"), "cannot write the run history in BACKUP_STATE_DIR");
        }
        before
    }

    /// Something failed outside a run (containers a previous run left frozen that cannot be
    /// thawed): every channel hears it as a failure.
    pub fn failure(&self, stage: &str, cause: &str, summary: String) {
        if self.notifier.is_empty() {
            return;
        }
        let message = failure_message(&self.host, stage, cause, summary, self.next_run());
        self.notifier.spawn_send(message);
    }

    fn next_run(&self) -> Option<chrono::DateTime<Utc>> {
        let (sync, snapshot, tz) = &self.schedules;
        crate::config::next_run(sync, snapshot, *tz, Utc::now()).map(|(at, _)| at)
    }

    fn run_message(&self, run: &RunReport, before: &History) -> Message {
        let previous_failed = before
            .last_run()
            .is_some_and(|r| r.outcome == report::Outcome::Failed);
        let kind = Outcome::of_run(run.failure.is_some(), previous_failed);
        let failed: Vec<String> = run
            .volumes
            .iter()
            .filter(|v| v.outcome.is_err())
            .map(|v| v.name.clone())
            .collect();
        Message {
            kind,
            host: self.host.clone(),
            title: kind.title(&self.host),
            summary: run.summary(),
            stage: run.failed_stage().map(str::to_string),
            cause: run.failure.as_ref().map(|f| f.kind.as_str().to_string()),
            // On failure the volumes it hit; a run that stopped before mirroring hit them all.
            volumes: if failed.is_empty() {
                run.planned.clone()
            } else {
                failed
            },
            thawed: run.all_thawed(),
            duration: run.duration,
            last_success: before.last_success,
            next_run: self.next_run(),
            log_tail: Vec::new(),
            run_id: String::new(),
        }
    }

    /// A verification that found rot or could not look is a failure; one that found nothing
    /// wrong says nothing (monitors follow the runs).
    fn verification_message(&self, v: &VerifyReport, before: &History) -> Option<Message> {
        let (summary, cause) = match &v.outcome {
            Ok(found) if found.mismatches.is_empty() => return None,
            Ok(found) => (
                format!(
                    "verification of {} found {} file(s) whose content differs from the mirror \
                     although size and mtime agree: {}",
                    found.archive.as_deref().unwrap_or("the newest archive"),
                    found.mismatches.len(),
                    found.mismatches.join(", ")
                ),
                "rot".to_string(),
            ),
            Err(failure) => (
                format!("verification could not run: {failure}"),
                failure.kind.as_str().to_string(),
            ),
        };
        let mut message =
            failure_message(&self.host, "verification", &cause, summary, self.next_run());
        message.title = format!("backup verification failed on {}", self.host);
        message.duration = v.duration;
        message.last_success = before.last_success;
        Some(message)
    }
}

impl Outputs {
    /// A copy that failed, or a check that found the copy unsound or could not look, is a
    /// failure; the first successful copy after a failed one is a recovery; other successes say
    /// nothing.
    fn copy_message(&self, c: &report::CopyReport, before: &History) -> Option<Message> {
        let what = if c.check { "check of the copy" } else { "copy" };
        let failure = match &c.outcome {
            Err(failure) => failure,
            Ok(_) if c.check => return None,
            Ok(_) => {
                if !before.copy.as_ref().is_some_and(|r| r.failing()) {
                    return None;
                }
                let newest = c.newest.as_ref().map_or("nothing yet", |(n, _)| n.as_str());
                let mut message =
                    failure_message(&self.host, "copy", "", String::new(), self.next_run());
                message.kind = Outcome::Recovered;
                message.title = format!("backup copy recovered on {}", self.host);
                message.summary = format!(
                    "the copy ({}) is up to date again: its newest archive is {newest}",
                    c.place
                );
                message.cause = None;
                message.duration = c.duration;
                return Some(message);
            }
        };
        let newest = before
            .copy
            .as_ref()
            .and_then(|r| r.newest_archive.as_deref())
            .unwrap_or("none yet");
        let summary = format!(
            "the {what} ({}) failed: {failure}; the newest archive in the copy is {newest}",
            c.place
        );
        let mut message = failure_message(
            &self.host,
            "copy",
            failure.kind.as_str(),
            summary,
            self.next_run(),
        );
        message.title = format!("backup {what} failed on {}", self.host);
        message.duration = c.duration;
        message.last_success = before.copy.as_ref().and_then(|r| r.last_success);
        Some(message)
    }
}

/// A failure message outside a run's report.
fn failure_message(
    host: &str,
    stage: &str,
    cause: &str,
    summary: String,
    next_run: Option<chrono::DateTime<Utc>>,
) -> Message {
    Message {
        kind: Outcome::Failed,
        host: host.to_string(),
        title: Outcome::Failed.title(host),
        summary,
        stage: Some(stage.to_string()),
        cause: Some(cause.to_string()),
        volumes: Vec::new(),
        thawed: true,
        duration: std::time::Duration::ZERO,
        last_success: None,
        next_run,
        log_tail: Vec::new(),
        run_id: notify::new_run_id(),
    }
}

/// The sidecar cannot start (the Docker engine is unreachable, say): tells every channel, waiting
/// for the deliveries (each bounded by its timeout and tries) before the sidecar exits.
pub async fn notify_start_failure(config: &Config, cause: &str, error: &anyhow::Error) {
    let Ok(notifier) = Notifier::from_config(config) else {
        return;
    };
    if notifier.is_empty() {
        return;
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "docker".into());
    let message = Message {
        log_tail: logging::lines_since(0),
        ..failure_message(
            &host,
            "start",
            cause,
            format!("backup-sidecar cannot start: {error:#}"),
            None,
        )
    };
    notifier.send(&message).await;
}

/// Health: the mirror's verdict, then the second copy's.
fn verdict(config: &Config, store: &Store, history: &History) -> Verdict {
    let now = Utc::now();
    let mirror = health::verdict(
        now,
        history,
        store.heartbeat(),
        store.running().as_ref(),
        config.max_age,
    );
    let copy = health::copy_verdict(now, history, store.copying().as_ref(), config.copy_max_age);
    match (mirror, copy) {
        (Verdict::Healthy(why), Ok(Some(copy))) => Verdict::Healthy(format!("{why}; {copy}")),
        (Verdict::Healthy(_), Err(why)) => Verdict::Unhealthy(why),
        (verdict, _) => verdict,
    }
}

/// `backup-sidecar health`: prints the verdict on one line; true when healthy.
pub fn health_command(config: &Config) -> bool {
    let store = Store::new(&config.state_dir);
    match verdict(config, &store, &store.load()) {
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

/// The status now, from the state directory: what `status` prints and the page shows.
pub fn current_status(config: &Config) -> status::Status {
    let store = Store::new(&config.state_dir);
    let schedules = status::Schedules {
        sync: &config.sync_schedule,
        snapshot: &config.snapshot_schedule,
        tz: config.tz,
    };
    // One read of the history for the table and the verdict alike.
    let history = store.load();
    status::status(
        Utc::now(),
        &history,
        verdict(config, &store, &history),
        &schedules,
    )
}

/// `backup-sidecar status [--json]`.
pub fn status_command(config: &Config, json: bool) -> Result<()> {
    let status = current_status(config);
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.table(config.tz));
    }
    Ok(())
}

/// `backup-sidecar notify-test`: one test message to each channel of `BACKUP_NOTIFY_URLS`; prints,
/// per channel (redacted), delivered or why not. Fails when any channel failed.
pub async fn notify_test_command(config: &Config) -> Result<()> {
    let notifier = Notifier::from_config(config)?;
    if notifier.is_empty() {
        anyhow::bail!("BACKUP_NOTIFY_URLS is not set: there is no channel to test");
    }
    let host = match crate::engine::discover::connect().await {
        Ok(docker) => crate::engine::discover::engine_name(&docker).await.ok(),
        Err(_) => None,
    }
    .unwrap_or_else(|| "docker".into());
    let mut failed = 0;
    for (channel, result) in notifier.test(&host).await {
        match result {
            Ok(()) => println!("delivered  {channel}"),
            Err(why) => {
                failed += 1;
                println!("FAILED     {channel}: {why}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} channel(s) failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
