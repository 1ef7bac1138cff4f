//! What each channel sends, built as plain values: pure functions of the channel and the
//! [`Message`], so the tests compare every method, URL, header and body exactly. Sending them is
//! [`super::deliver`]'s job.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::Serialize;

use super::{Message, Outcome};
use crate::config::channel::{Auth, Kind};
use crate::format::tenths;

/// ntfy turns a longer body into an attachment.
pub const NTFY_LIMIT_BYTES: usize = 4096;
/// Gotify has no limit of its own; phones show little, so the same as ntfy.
pub const GOTIFY_LIMIT_BYTES: usize = 4096;
/// Discord's content limit (Slack's is higher, Mattermost's too): the one that fits all three.
pub const SLACK_LIMIT_CHARS: usize = 2000;
/// A self-hosted healthchecks keeps this much of a ping's body by default (`PING_BODY_LIMIT`).
pub const HEALTHCHECKS_LIMIT_BYTES: usize = 10_000;
/// Uptime Kuma shows `msg` in one line of its event list.
pub const UPTIME_KUMA_MSG_CHARS: usize = 200;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
}

/// One HTTP request, described. Its `Debug` hides the URL's secrets and the credential headers,
/// so that an accidental `{:?}` prints nothing a log must not hold.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The whole URL, secrets included.
    pub url: String,
    /// Headers in the order sent; names as the services document them.
    pub headers: Vec<(&'static str, String)>,
    /// The body; empty for none.
    pub body: String,
}

/// Headers whose values are credentials.
const SECRET_HEADERS: &[&str] = &["Authorization", "X-Gotify-Key"];

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if SECRET_HEADERS.contains(name) {
                    "***"
                } else {
                    value.as_str()
                };
                (*name, shown)
            })
            .collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &crate::config::channel::redact(&self.url))
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

/// How a limit is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// UTF-8 bytes.
    Bytes(usize),
    /// Unicode scalar values (what Discord counts, roughly).
    Chars(usize),
    /// No limit (mail).
    None,
}

impl Limit {
    fn size(self, text: &str) -> usize {
        match self {
            Limit::Bytes(_) | Limit::None => text.len(),
            Limit::Chars(_) => text.chars().count(),
        }
    }

    fn max(self) -> usize {
        match self {
            Limit::Bytes(n) | Limit::Chars(n) => n,
            Limit::None => usize::MAX,
        }
    }

    /// `text` cut to the limit at a character boundary, with an ellipsis when cut.
    fn truncate(self, text: &str) -> String {
        if self.size(text) <= self.max() {
            return text.to_string();
        }
        let keep = self.max().saturating_sub(self.size("…"));
        let end = match self {
            Limit::Chars(_) => text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i),
            _ => (0..=keep.min(text.len()))
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0),
        };
        format!("{}…", &text[..end])
    }
}

impl Outcome {
    /// ntfy's emoji tag: shown as the notification's icon.
    fn emoji(self) -> &'static str {
        match self {
            Outcome::Failed => "rotating_light",
            Outcome::Recovered | Outcome::Success => "white_check_mark",
            Outcome::Test => "bell",
        }
    }
}

/// A header value as HTTP allows it: control characters become spaces, and anything outside
/// ASCII a '?', since services disagree on how to decode the rest (the body carries it whole).
fn header_value(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if c.is_ascii_control() => ' ',
            c if !c.is_ascii() => '?',
            c => c,
        })
        .collect()
}

fn when(time: Option<DateTime<Utc>>, none: &str) -> String {
    match time {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => none.to_string(),
    }
}

/// A duration for people: tenths of a second below a minute, then `1h 2m 3s`.
fn duration(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{} s", tenths(d))
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

/// The facts of a message, one per line, before the log.
fn head(m: &Message) -> String {
    let mut lines = vec![
        m.summary.clone(),
        String::new(),
        format!("host: {}", m.host),
        format!("outcome: {}", m.kind.as_str()),
    ];
    if m.kind != Outcome::Test {
        if let Some(stage) = &m.stage {
            lines.push(format!("stage: {stage}"));
        }
        if let Some(cause) = &m.cause {
            lines.push(format!("cause: {cause}"));
        }
        let volumes = if m.volumes.is_empty() {
            "none".to_string()
        } else {
            m.volumes.join(", ")
        };
        lines.push(format!("volumes: {volumes}"));
        lines.push(format!(
            "containers thawed: {}",
            if m.thawed {
                "yes"
            } else {
                "NO, some may still be paused or stopped"
            }
        ));
        lines.push(format!("duration: {}", duration(m.duration)));
        lines.push(format!("last success: {}", when(m.last_success, "never")));
        lines.push(format!("next run: {}", when(m.next_run, "none scheduled")));
    }
    lines.push(format!("run: {}", m.run_id));
    lines.join("\n")
}

/// The message as text: `prefix`, the facts, then as many of the last log lines as fit in
/// `limit`, oldest cut first (the end of a log says why it failed). With `fence`, the log goes in
/// a ``` block, which Slack, Discord and Mattermost all render as code.
pub(super) fn text(m: &Message, prefix: &str, limit: Limit, fence: bool) -> String {
    let head = format!("{prefix}{}", head(m));
    if m.log_tail.is_empty() {
        return limit.truncate(&head);
    }
    let (open, close) = if fence {
        ("\n\nlast log lines:\n```\n", "```")
    } else {
        ("\n\nlast log lines:\n", "")
    };
    // Room for the longest marker that could be needed, whichever is written.
    let marker = |cut: usize| format!("[{cut} earlier line(s) cut]\n");
    let reserved = limit.size(&head)
        + limit.size(open)
        + limit.size(close)
        + limit.size(&marker(m.log_tail.len()));
    let budget = limit.max().saturating_sub(reserved);
    let mut used = 0;
    let mut start = m.log_tail.len();
    while start > 0 {
        let size = limit.size(&m.log_tail[start - 1]) + 1;
        if used + size > budget {
            break;
        }
        used += size;
        start -= 1;
    }
    let mut text = head;
    text.push_str(open);
    if start > 0 {
        text.push_str(&marker(start));
    }
    for line in &m.log_tail[start..] {
        text.push_str(line);
        text.push('\n');
    }
    if fence {
        text.push_str(close);
    } else {
        text.pop();
    }
    // A head alone over the limit (a huge cause) is cut too.
    limit.truncate(&text)
}

fn auth_header(auth: &Auth) -> (&'static str, String) {
    match auth {
        Auth::Bearer(token) => ("Authorization", format!("Bearer {token}")),
        Auth::Basic { user, password } => {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            ("Authorization", format!("Basic {encoded}"))
        }
    }
}

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// ntfy: the text as the body of a POST to the topic, the rest in headers.
pub(super) fn ntfy(url: &str, auth: Option<&Auth>, m: &Message) -> HttpRequest {
    let priority = if m.kind == Outcome::Failed {
        "high"
    } else {
        "default"
    };
    let mut headers = vec![
        ("Title", header_value(&m.title)),
        ("Priority", priority.to_string()),
        ("Tags", format!("{},{}", m.kind.emoji(), m.kind.as_str())),
        ("Content-Type", TEXT_PLAIN.to_string()),
    ];
    headers.extend(auth.map(auth_header));
    HttpRequest {
        method: Method::Post,
        url: url.to_string(),
        headers,
        body: text(m, "", Limit::Bytes(NTFY_LIMIT_BYTES), false),
    }
}

/// Gotify's priority for a failure: 8 and above pops up on Android.
pub const GOTIFY_PRIORITY_FAILURE: u8 = 8;
/// Gotify's priority otherwise: makes a sound, does not pop up.
pub const GOTIFY_PRIORITY_DEFAULT: u8 = 5;

/// Gotify's `POST /message` body.
#[derive(Serialize)]
struct GotifyMessage<'a> {
    title: &'a str,
    message: String,
    priority: u8,
}

/// Gotify: JSON to `/message`, the token in `X-Gotify-Key` so it never lands in an access log.
pub(super) fn gotify(url: &str, token: &str, m: &Message) -> HttpRequest {
    let body = GotifyMessage {
        title: &m.title,
        message: text(m, "", Limit::Bytes(GOTIFY_LIMIT_BYTES), false),
        priority: if m.kind == Outcome::Failed {
            GOTIFY_PRIORITY_FAILURE
        } else {
            GOTIFY_PRIORITY_DEFAULT
        },
    };
    HttpRequest {
        method: Method::Post,
        url: url.to_string(),
        headers: vec![
            ("X-Gotify-Key", token.to_string()),
            ("Content-Type", JSON.to_string()),
        ],
        body: serde_json::to_string(&body).expect("a struct of strings serializes"),
    }
}

/// Whether `id` has a UUID's shape: healthchecks refuses any other `rid`, which would lose the
/// whole ping for a pairing that is only a nicety.
fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn healthchecks_url(url: &str, endpoint: &str, query: Option<&str>, run_id: &str) -> String {
    let mut pairs: Vec<String> = query.map(String::from).into_iter().collect();
    if is_uuid(run_id) {
        pairs.push(format!("rid={run_id}"));
    }
    let mut full = format!("{url}{endpoint}");
    if !pairs.is_empty() {
        full.push('?');
        full.push_str(&pairs.join("&"));
    }
    full
}

/// healthchecks, as a run starts: `/start`, which also measures the run's duration there.
pub(super) fn healthchecks_start(url: &str, query: Option<&str>, run_id: &str) -> HttpRequest {
    HttpRequest {
        method: Method::Post,
        url: healthchecks_url(url, "/start", query, run_id),
        headers: Vec::new(),
        body: String::new(),
    }
}

/// healthchecks, as a run ends: the bare URL for success, `/fail` for failure, `/log` for a test
/// (recorded without changing the check's state); the text as the body.
pub(super) fn healthchecks(url: &str, query: Option<&str>, m: &Message) -> HttpRequest {
    let endpoint = match m.kind {
        Outcome::Failed => "/fail",
        Outcome::Recovered | Outcome::Success => "",
        Outcome::Test => "/log",
    };
    HttpRequest {
        method: Method::Post,
        url: healthchecks_url(url, endpoint, query, &m.run_id),
        headers: vec![("Content-Type", TEXT_PLAIN.to_string())],
        body: text(m, "", Limit::Bytes(HEALTHCHECKS_LIMIT_BYTES), false),
    }
}

/// Uptime Kuma's push: `status`, a one-line `msg`, and `ping` as the run's duration in ms (its
/// chart then shows how long backups take). A test pushes `up`: there is no neutral push.
pub(super) fn uptime_kuma(url: &str, m: &Message) -> HttpRequest {
    let status = if m.kind == Outcome::Failed {
        "down"
    } else {
        "up"
    };
    let line: String = m
        .summary
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let msg = Limit::Chars(UPTIME_KUMA_MSG_CHARS).truncate(&line);
    let mut full = Url::parse(url).expect("parsed when the channel was");
    {
        let mut query = full.query_pairs_mut();
        query.append_pair("status", status).append_pair("msg", &msg);
        if m.kind != Outcome::Test {
            query.append_pair("ping", &m.duration.as_millis().to_string());
        }
    }
    HttpRequest {
        method: Method::Get,
        url: full.to_string(),
        headers: Vec::new(),
        body: String::new(),
    }
}

/// Slack reads `&`, `<` and `>` as markup; Discord and Mattermost would show the escapes, so only
/// Slack's own host gets them.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack-style incoming webhooks (Slack, Discord's `/slack`, Mattermost): `{"text": ...}`.
pub(super) fn slack(url: &str, m: &Message) -> HttpRequest {
    let is_slack = Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h == "slack.com" || h.ends_with(".slack.com"))
        })
        .unwrap_or(false);
    let escaped;
    let m = if is_slack {
        escaped = Message {
            title: slack_escape(&m.title),
            summary: slack_escape(&m.summary),
            host: slack_escape(&m.host),
            stage: m.stage.as_deref().map(slack_escape),
            cause: m.cause.as_deref().map(slack_escape),
            volumes: m.volumes.iter().map(|v| slack_escape(v)).collect(),
            log_tail: m.log_tail.iter().map(|l| slack_escape(l)).collect(),
            ..m.clone()
        };
        &escaped
    } else {
        m
    };
    let text = text(
        m,
        &format!("{}\n", m.title),
        Limit::Chars(SLACK_LIMIT_CHARS),
        true,
    );
    HttpRequest {
        method: Method::Post,
        url: url.to_string(),
        headers: vec![("Content-Type", JSON.to_string())],
        body: serde_json::json!({ "text": text }).to_string(),
    }
}

/// The JSON a `webhook://` channel posts: one object per notification. Fields are only ever
/// added; a receiver should ignore fields it does not know.
#[derive(Debug, Serialize, PartialEq)]
pub struct WebhookReport<'a> {
    /// The format's version: 1. It changes only if a field changes meaning or goes away.
    pub version: u32,
    /// `failed`, `recovered` (the first success after a failure), `success` or `test`.
    pub outcome: Outcome,
    /// The Docker engine's host name.
    pub host: &'a str,
    /// A short title, such as `backup failed on nas`.
    pub title: &'a str,
    /// One line, the same as the log's run summary.
    pub summary: &'a str,
    /// The stage that failed (`discover`, `freeze`, `transfer`, `snapshot`, ...); `null` unless
    /// the outcome is `failed`.
    pub stage: Option<&'a str>,
    /// The failure's kind, a stable name for machines (`network`, `disk_full`, `timeout`, ...);
    /// `null` unless the outcome is `failed`.
    pub cause: Option<&'a str>,
    /// The volumes the run concerned (on failure, the ones affected).
    pub volumes: &'a [String],
    /// Whether every container the run froze runs again. `false` needs a person.
    pub thawed: bool,
    /// The run's wall time in seconds, to the millisecond.
    pub duration_seconds: f64,
    /// When the last successful run ended (RFC 3339, UTC); `null` if none is known.
    #[serde(serialize_with = "rfc3339")]
    pub last_success: Option<DateTime<Utc>>,
    /// When the next run is scheduled (RFC 3339, UTC); `null` if none is.
    #[serde(serialize_with = "rfc3339")]
    pub next_run: Option<DateTime<Utc>>,
    /// The run's identifier (a UUID), also sent to healthchecks as `rid`.
    pub run_id: &'a str,
    /// The run's last log lines, oldest first, untrimmed.
    pub log_tail: &'a [String],
}

/// A time as RFC 3339 in UTC to the second (`2026-11-27T03:00:05Z`), or `null`.
fn rfc3339<S: serde::Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(t) => serializer.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => serializer.serialize_none(),
    }
}

impl<'a> WebhookReport<'a> {
    /// The report of `m`.
    pub fn of(m: &'a Message) -> Self {
        WebhookReport {
            version: 1,
            outcome: m.kind,
            host: &m.host,
            title: &m.title,
            summary: &m.summary,
            stage: m.stage.as_deref(),
            cause: m.cause.as_deref(),
            volumes: &m.volumes,
            thawed: m.thawed,
            duration_seconds: crate::format::millis(m.duration.as_secs_f64()),
            last_success: m.last_success,
            next_run: m.next_run,
            run_id: &m.run_id,
            log_tail: &m.log_tail,
        }
    }
}

/// A generic webhook: the [`WebhookReport`] as JSON.
pub(super) fn webhook(url: &str, auth: Option<&Auth>, m: &Message) -> HttpRequest {
    let mut headers = vec![("Content-Type", JSON.to_string())];
    headers.extend(auth.map(auth_header));
    HttpRequest {
        method: Method::Post,
        url: url.to_string(),
        headers,
        body: serde_json::to_string(&WebhookReport::of(m)).expect("the report serializes"),
    }
}

/// A mail's subject and plain-text body; the log untrimmed.
pub(super) fn email(m: &Message) -> (String, String) {
    (header_value(&m.title), text(m, "", Limit::None, false))
}

/// The HTTP request of an HTTP channel for `m`; `None` for SMTP.
pub(super) fn request(kind: &Kind, m: &Message) -> Option<HttpRequest> {
    Some(match kind {
        Kind::Ntfy { url, auth } => ntfy(url, auth.as_ref(), m),
        Kind::Gotify { url, token } => gotify(url, token, m),
        Kind::Healthchecks { url, query } => healthchecks(url, query.as_deref(), m),
        Kind::UptimeKuma { url } => uptime_kuma(url, m),
        Kind::Slack { url } => slack(url, m),
        Kind::Webhook { url, auth } => webhook(url, auth.as_ref(), m),
        Kind::Smtp(_) => return None,
    })
}

#[cfg(test)]
mod tests;
