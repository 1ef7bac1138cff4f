//! The notification receivers: one container of the image built from `compose/receivers/`, on
//! the test's network, with a real SMTP server (aiosmtpd, port 25), Debian's `webhook` (port
//! 9000) and a recording HTTP server (port 8080) for ntfy, Gotify, healthchecks, Uptime Kuma and
//! Slack-style channels; and the `BACKUP_NOTIFY_URLS` entries that point the sidecar at them.
//!
//! Everything they received is in [`Receivers::records`], one JSON object, lists in arrival
//! order, header names in lower case:
//!
//! ```text
//! {"smtp":    [{"n", "mail_from", "rcpt_tos", "user", "peer", "subject", "headers", "body"}],
//!  "webhook": [<each POSTed body, parsed: the WebhookReport JSON>],
//!  "http":    [{"n", "method", "path", "headers", "body", "status"}]}
//! ```
//!
//! `user` is the SMTP user that authenticated (`null` for none); a mail's `body` is its decoded
//! text, as the sidecar rendered it; an HTTP `path` keeps its query. A record exists before its sender
//! gets the answer, so once the sidecar has logged a delivery, its record is there.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Env, docker_output, require_image};

/// The receivers image, built by `scripts/build-images.sh`.
pub const RECEIVERS_IMAGE: &str = "backup-sidecar-receivers:latest";
/// aiosmtpd: no TLS, AUTH PLAIN and LOGIN with any password.
pub const SMTP_PORT: u16 = 25;
/// The recording HTTP server.
pub const HTTP_PORT: u16 = 8080;
/// Debian's `webhook`, hook `backup` at `/hooks/backup`.
pub const WEBHOOK_PORT: u16 = 9000;

/// The ntfy access token (sent as `Authorization: Bearer`).
pub const NTFY_TOKEN: &str = "tok_secret";
/// The ntfy topic: secret too (on a public server the topic is what keeps strangers out), and
/// distinct enough that finding it in a log means it leaked.
pub const NTFY_TOPIC: &str = "topic_secret";
/// The Gotify application token (sent as `X-Gotify-Key`, never in the path).
pub const GOTIFY_TOKEN: &str = "APPTOKEN";
/// The healthchecks check's UUID (its ping URL is the secret).
pub const HEALTHCHECKS_UUID: &str = "5d1f0c8e-3b7a-4c2e-9f10-00000000b5c1";
/// The Uptime Kuma push token.
pub const UPTIME_KUMA_TOKEN: &str = "PUSHTOKEN";
/// The secret last segment of the Slack-style webhook path.
pub const SLACK_SECRET: &str = "XXXXSECRET";
/// The SMTP user: not a secret, the redacted URL shows it (`smtp+plain://user:***@...`).
pub const SMTP_USER: &str = "user";
/// The SMTP password.
pub const SMTP_PASSWORD: &str = "secretpass";
/// The mail's sender.
pub const MAIL_FROM: &str = "backup@example.org";
/// The mail's one recipient.
pub const MAIL_TO: &str = "ops@example.org";

/// Every secret in the URLs of [`Receivers::all_urls`]: none may appear in the sidecar's logs.
/// (The webhook URL holds none; the redactor still shows its path as `***/***`, since a
/// generic webhook's path segments may be secret.)
pub const SECRETS: &[&str] = &[
    NTFY_TOKEN,
    NTFY_TOPIC,
    GOTIFY_TOKEN,
    HEALTHCHECKS_UUID,
    UPTIME_KUMA_TOKEN,
    SLACK_SECRET,
    SMTP_PASSWORD,
];

/// A running receivers container.
pub struct Receivers {
    /// Container name, also its host name on the test's network.
    pub name: String,
}

/// Starts the receivers on the test's network (removed with the [`Env`]) and waits until all
/// three ports accept connections.
pub fn start_receivers(env: &Env) -> Receivers {
    require_image(RECEIVERS_IMAGE);
    let name = env.container(
        "receivers",
        &["--network", &env.network],
        RECEIVERS_IMAGE,
        &[],
    );
    let receivers = Receivers { name };
    // From inside the container: nothing of it is published to the host.
    let probe = format!(
        "import socket\nfor port in ({SMTP_PORT}, {HTTP_PORT}, {WEBHOOK_PORT}):\n    \
         socket.create_connection(('127.0.0.1', port), 1).close()"
    );
    let started = Instant::now();
    loop {
        let out = docker_output(&["exec", &receivers.name, "python3", "-c", &probe]);
        if out.status.success() {
            return receivers;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the receivers did not open ports {SMTP_PORT}, {HTTP_PORT} and {WEBHOOK_PORT} \
             within 30 s: {}\nlogs:\n{}",
            String::from_utf8_lossy(&out.stderr),
            receivers.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Receivers {
    /// ntfy with an access token: POSTs to `/topic_secret` ([`NTFY_TOPIC`]).
    pub fn ntfy_url(&self) -> String {
        format!(
            "ntfy+http://{NTFY_TOKEN}@{}:{HTTP_PORT}/{NTFY_TOPIC}",
            self.name
        )
    }

    /// Gotify: POSTs to `/message`, the token in `X-Gotify-Key`.
    pub fn gotify_url(&self) -> String {
        format!("gotify+http://{}:{HTTP_PORT}/{GOTIFY_TOKEN}", self.name)
    }

    /// healthchecks: POSTs to `/ping/UUID/start` as a run starts, then `/ping/UUID` (success),
    /// `/ping/UUID/fail` or `/ping/UUID/log` (a test message), each with `?rid=<run id>`.
    pub fn healthchecks_url(&self) -> String {
        format!(
            "healthchecks+http://{}:{HTTP_PORT}/ping/{HEALTHCHECKS_UUID}",
            self.name
        )
    }

    /// Uptime Kuma: GETs `/api/push/PUSHTOKEN?status=up|down&msg=...&ping=<ms>`.
    pub fn uptime_kuma_url(&self) -> String {
        format!(
            "uptimekuma+http://{}:{HTTP_PORT}/api/push/{UPTIME_KUMA_TOKEN}",
            self.name
        )
    }

    /// Slack-style: POSTs `{"text": ...}` to `/services/T000/B000/XXXXSECRET` (not Slack's own
    /// host, so no Slack escaping).
    pub fn slack_url(&self) -> String {
        format!(
            "slack+http://{}:{HTTP_PORT}/services/T000/B000/{SLACK_SECRET}",
            self.name
        )
    }

    /// SMTP without TLS, authenticating as [`SMTP_USER`], from [`MAIL_FROM`] to [`MAIL_TO`].
    pub fn smtp_url(&self) -> String {
        format!(
            "smtp+plain://{SMTP_USER}:{SMTP_PASSWORD}@{}:{SMTP_PORT}/?from={MAIL_FROM}&to={MAIL_TO}",
            self.name
        )
    }

    /// The generic webhook, received by Debian's `webhook`: its JSON lands in `records.webhook`.
    pub fn webhook_url(&self) -> String {
        format!("webhook+http://{}:{WEBHOOK_PORT}/hooks/backup", self.name)
    }

    /// A webhook that always answers 500 (`/fail/hook` on the HTTP recorder): every try is
    /// recorded, and the channel ends in a `notification failed` warning.
    pub fn failing_url(&self) -> String {
        format!("webhook+http://{}:{HTTP_PORT}/fail/hook", self.name)
    }

    /// A webhook that answers 503 to its first request and 200 after (`/flaky/hook` on the HTTP
    /// recorder): a transient failure the second try gets past.
    pub fn flaky_url(&self) -> String {
        format!("webhook+http://{}:{HTTP_PORT}/flaky/hook", self.name)
    }

    /// One URL per channel: ntfy, Gotify, healthchecks, Uptime Kuma, Slack-style, SMTP, webhook.
    pub fn all_urls(&self) -> Vec<String> {
        vec![
            self.ntfy_url(),
            self.gotify_url(),
            self.healthchecks_url(),
            self.uptime_kuma_url(),
            self.slack_url(),
            self.smtp_url(),
            self.webhook_url(),
        ]
    }

    /// [`Receivers::all_urls`] as the value of `BACKUP_NOTIFY_URLS`.
    pub fn notify_urls(&self) -> String {
        self.all_urls().join(",")
    }

    /// Everything received so far (see the module's documentation for its shape).
    pub fn records(&self) -> Value {
        let out = docker_output(&["exec", &self.name, "records"]);
        assert!(
            out.status.success(),
            "records failed in {}: {}\nlogs:\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "records printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Waits until `what` holds of the records; returns them. On timeout, panics with the last
    /// records and the receivers' logs.
    pub fn wait_for(&self, what: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let records = self.records();
            if what(&records) {
                return records;
            }
            if started.elapsed() > timeout {
                panic!(
                    "the receivers' records did not become as expected within {timeout:?}:\n{}\
                     \nlogs:\n{}",
                    serde_json::to_string_pretty(&records).unwrap_or_default(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The receivers' logs (each receiver logs every request).
    pub fn logs(&self) -> String {
        let out = docker_output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// How many records of `kind` (`smtp`, `webhook` or `http`) there are.
pub fn count(records: &Value, kind: &str) -> usize {
    records[kind].as_array().map_or(0, Vec::len)
}

/// The HTTP requests whose path (query included) starts with `prefix`, in arrival order.
pub fn http_requests<'a>(records: &'a Value, prefix: &str) -> Vec<&'a Value> {
    records["http"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
        .collect()
}
