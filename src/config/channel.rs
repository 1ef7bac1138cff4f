//! Notification settings: each entry of `BACKUP_NOTIFY_URLS` parsed once at start into a
//! [`Channel`], and shown only [`redact`]ed, in logs, errors and `Debug` alike; who hears what
//! ([`NotifyOn`]); the private CA of `BACKUP_NOTIFY_CA_FILE`.

use std::fmt;
use std::path::Path;

use lettre::message::Mailbox;
use percent_encoding::percent_decode_str;
use reqwest::Url;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The schemes of HTTP channels; each also comes as `NAME+http` for a LAN server without TLS.
const HTTP_SCHEMES: &[&str] = &[
    "ntfy",
    "gotify",
    "healthchecks",
    "uptimekuma",
    "slack",
    "webhook",
];

/// Every scheme accepted, for the error that names an unknown one.
const SCHEMES: &str = "ntfy, gotify, healthchecks, uptimekuma, slack, webhook (each also as \
                       NAME+http), smtp, smtps, smtp+plain";

/// `BACKUP_NOTIFY_ON`: which outcomes reach the channels that are not monitors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOn {
    /// `failure`: failures, and the first success after one as `recovered`.
    Failure,
    /// `always`: every run.
    Always,
}

/// SMTP submission with STARTTLS (RFC 6409).
pub const SMTP_STARTTLS_PORT: u16 = 587;
/// SMTP submission over implicit TLS (RFC 8314).
pub const SMTPS_PORT: u16 = 465;
/// Plain SMTP, for a relay on the LAN only.
pub const SMTP_PLAIN_PORT: u16 = 25;

/// Path segments that are never secret, by scheme; every other segment is shown as `***`. A
/// list of what may be shown, rather than of what to hide, fails safe on a URL shape we did not
/// foresee. An ntfy topic is hidden too: on a public server the topic name is the only thing
/// that keeps strangers from reading or sending.
fn public_segments(scheme: &str) -> &'static [&'static str] {
    match scheme {
        "healthchecks" => &["ping"],
        "uptimekuma" => &["api", "push"],
        "slack" => &["api", "services", "hooks", "webhooks", "slack"],
        _ => &[],
    }
}

/// Query keys whose values are never secret (the mail addresses, healthchecks' `create`).
const PUBLIC_QUERY_KEYS: &[&str] = &["from", "to", "create"];

/// Secrets shorter than this are not scrubbed from free text, where replacing every "a" would
/// destroy the message; the redacted URL hides them regardless.
const MIN_SCRUBBED_SECRET: usize = 4;

/// `entry` with every password, token and secret path segment replaced by `***`. Works on any
/// text, also on an entry that is not a valid URL, so a configuration error can show it.
pub fn redact(entry: &str) -> String {
    hide(entry).0
}

/// The redacted entry, and the strings it hid (as written and percent-decoded).
fn hide(entry: &str) -> (String, Vec<String>) {
    let entry = entry.trim();
    let mut hidden = Vec::new();
    let hide_all = |hidden: &mut Vec<String>| {
        hidden.push(entry.to_string());
        ("***".to_string(), std::mem::take(hidden))
    };
    let Some((scheme, rest)) = entry.split_once("://") else {
        return hide_all(&mut hidden);
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return hide_all(&mut hidden);
    }
    let lower = scheme.to_ascii_lowercase();
    let public = public_segments(lower.split('+').next().unwrap_or_default());
    let push = |hidden: &mut Vec<String>, secret: &str| {
        hidden.push(secret.to_string());
        let decoded = percent_decode_str(secret).decode_utf8_lossy();
        if decoded != secret {
            hidden.push(decoded.into_owned());
        }
    };

    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (rest, None),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    // The last '@' ends the user information: a password containing '/' or '@' that was not
    // percent-encoded must still be hidden whole, so the host is found after it, not before.
    let (userinfo, after) = match before_query.rsplit_once('@') {
        Some((userinfo, after)) => (Some(userinfo), after),
        None => (None, before_query),
    };
    let (authority, path) = match after.find('/') {
        Some(i) => after.split_at(i),
        None => (after, ""),
    };

    let mut shown = format!("{scheme}://");
    match userinfo.map(|u| u.split_once(':')) {
        None => {}
        Some(Some((user, password))) => {
            push(&mut hidden, password);
            shown.push_str(user);
            shown.push_str(":***@");
        }
        // A user name alone is a token (ntfy's `tk_...@host`).
        Some(None) => {
            push(&mut hidden, userinfo.unwrap_or_default());
            shown.push_str("***@");
        }
    }
    shown.push_str(authority);
    let segments: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|segment| {
            if segment.is_empty() || public.contains(&segment) {
                segment.to_string()
            } else {
                push(&mut hidden, segment);
                "***".to_string()
            }
        })
        .collect();
    if !path.is_empty() {
        shown.push('/');
        shown.push_str(&segments.join("/"));
    }
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, value)) if value.is_empty() || PUBLIC_QUERY_KEYS.contains(&key) => {
                    format!("{key}={value}")
                }
                Some((key, value)) => {
                    push(&mut hidden, value);
                    format!("{key}=***")
                }
                None => pair.to_string(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    if let Some(fragment) = fragment {
        push(&mut hidden, fragment);
        shown.push_str("#***");
    }
    (shown, hidden)
}

/// How an HTTP channel authenticates.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// `Authorization: Bearer <token>` (ntfy access tokens).
    Bearer(String),
    /// `Authorization: Basic ...`.
    Basic { user: String, password: String },
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Security {
    /// `smtp://`: plain connect, then STARTTLS, refusing a server that does not offer it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp+plain://`: no TLS at all; for a relay on the LAN, never across the internet.
    Plain,
}

/// An SMTP channel.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Smtp {
    pub(crate) security: Security,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// User and password; `None` sends without authentication.
    pub(crate) credentials: Option<(String, String)>,
    pub(crate) from: Mailbox,
    pub(crate) to: Vec<Mailbox>,
}

/// What a channel is and where it sends. HTTP URLs are the real targets (`https://...`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// POST to `url` (`origin/topic`).
    Ntfy { url: String, auth: Option<Auth> },
    /// POST to `url` (`origin[/prefix]/message`) with the token as `X-Gotify-Key`.
    Gotify { url: String, token: String },
    /// Pings `url`, `url/start`, `url/fail` and `url/log`, each with `query` kept (`create=1`).
    Healthchecks { url: String, query: Option<String> },
    /// GET `url` (`.../api/push/TOKEN`) with our own query.
    UptimeKuma { url: String },
    /// POST `{"text": ...}` to `url`.
    Slack { url: String },
    /// POST the JSON report to `url`.
    Webhook { url: String, auth: Option<Auth> },
    /// A mail.
    Smtp(Smtp),
}

/// One notification target from `BACKUP_NOTIFY_URLS`. Its `Display` and `Debug` show only the
/// redacted URL.
#[derive(Clone)]
pub struct Channel {
    pub(crate) kind: Kind,
    shown: String,
    secrets: Vec<String>,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

// By hand: a derived Debug would print the tokens the redacted URL hides.
impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Channel").field(&self.shown).finish()
    }
}

impl PartialEq for Channel {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Channel {
    /// Parses one entry of `BACKUP_NOTIFY_URLS`. The error says what is wrong without repeating
    /// the entry, which may hold a secret: the caller shows [`redact`]ed entry beside it.
    pub fn parse(entry: &str) -> Result<Channel, String> {
        let entry = entry.trim();
        let url = Url::parse(entry).map_err(|e| format!("not a URL ({e})"))?;
        if url.fragment().is_some() {
            return Err("a notification URL takes no #fragment".into());
        }
        let scheme = url.scheme();
        let (base, variant) = scheme.split_once('+').unwrap_or((scheme, ""));
        let kind = match (base, variant) {
            ("smtp", "") => Kind::Smtp(smtp(&url, Security::StartTls)?),
            ("smtps", "") => Kind::Smtp(smtp(&url, Security::Implicit)?),
            ("smtp", "plain") => Kind::Smtp(smtp(&url, Security::Plain)?),
            (base, "" | "http") if HTTP_SCHEMES.contains(&base) => {
                let http = if variant.is_empty() { "https" } else { "http" };
                http_kind(base, http, &url)?
            }
            _ => {
                return Err(format!("unknown scheme {scheme:?}; known: {SCHEMES}"));
            }
        };
        let (shown, secrets) = hide(entry);
        Ok(Channel {
            kind,
            shown,
            secrets: secrets
                .into_iter()
                .filter(|s| s.len() >= MIN_SCRUBBED_SECRET)
                .collect(),
        })
    }

    /// The URL with its secrets replaced by `***`, for logs and messages.
    pub fn redacted(&self) -> &str {
        &self.shown
    }

    /// Whether this is a monitor that expects every run's outcome (healthchecks, Uptime Kuma):
    /// one that hears only of failures would report the backup as down after its period.
    pub fn is_monitor(&self) -> bool {
        matches!(
            self.kind,
            Kind::Healthchecks { .. } | Kind::UptimeKuma { .. }
        )
    }

    /// `text` with every secret of this channel replaced by `***`: error texts come from
    /// servers and libraries that may quote what we sent them.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        // Longest first, so that a secret containing another is not left half shown.
        let mut secrets: Vec<&String> = self.secrets.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }
}

/// The certificates of a PEM file, for `BACKUP_NOTIFY_CA_FILE`: a private CA that signs a LAN
/// server's certificate, trusted besides the public roots built in.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    // Checked now, so that a bad certificate is a configuration error rather than every
    // notification failing.
    let mut store = rustls::RootCertStore::empty();
    for cert in &certs {
        store
            .add(cert.clone())
            .map_err(|e| format!("{}: not a usable CA certificate ({e})", path.display()))?;
    }
    Ok(certs)
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// The user and password of `url`, percent-decoded; `None` without a user name.
fn userinfo(url: &Url) -> Option<(String, Option<String>)> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    Some((decode(url.username()), url.password().map(decode)))
}

fn http_kind(scheme: &str, http: &str, url: &Url) -> Result<Kind, String> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("has no host")?;
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let origin = format!("{http}://{host}{port}");
    let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
    let auth = match userinfo(url) {
        None => None,
        Some(_) if !matches!(scheme, "ntfy" | "webhook") => {
            return Err(format!(
                "{scheme} takes no user or token before the host: its secret is in the path"
            ));
        }
        Some((user, Some(password))) if !user.is_empty() => Some(Auth::Basic { user, password }),
        Some((_, Some(password))) => Some(Auth::Bearer(password)),
        Some((token, None)) => Some(Auth::Bearer(token)),
    };
    let no_query = |what: &str| match url.query() {
        Some(_) => Err(format!("{what} takes no ?query")),
        None => Ok(()),
    };
    // Parsing the target as a real http(s) URL checks the host as browsers do.
    let target = |path: &str, query: Option<&str>| -> Result<String, String> {
        let mut text = format!("{origin}/{path}");
        if let Some(query) = query {
            text.push('?');
            text.push_str(query);
        }
        Url::parse(&text)
            .map(|u| u.to_string())
            .map_err(|e| format!("not a usable address ({e})"))
    };
    Ok(match scheme {
        "ntfy" => {
            no_query("ntfy")?;
            let [topic] = segments[..] else {
                return Err(
                    "ntfy wants exactly one path segment, the topic: ntfy://host/topic".into(),
                );
            };
            let topic_ok = topic.len() <= 64
                && topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
            if !topic_ok {
                return Err("an ntfy topic is 1 to 64 letters, digits, '-' or '_'".into());
            }
            Kind::Ntfy {
                url: target(topic, None)?,
                auth,
            }
        }
        "gotify" => {
            no_query("gotify")?;
            let Some((token, prefix)) = segments.split_last() else {
                return Err(
                    "gotify wants the application token as the path: gotify://host/TOKEN".into(),
                );
            };
            let mut path = prefix.join("/");
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str("message");
            Kind::Gotify {
                url: target(&path, None)?,
                token: decode(token),
            }
        }
        "healthchecks" => {
            if segments.is_empty() {
                return Err(
                    "healthchecks wants the ping path: healthchecks://host/UUID or \
                     healthchecks://host/ping/KEY/slug"
                        .into(),
                );
            }
            Kind::Healthchecks {
                url: target(&segments.join("/"), None)?,
                query: url.query().filter(|q| !q.is_empty()).map(String::from),
            }
        }
        "uptimekuma" => {
            let n = segments.len();
            if n < 3 || segments[n - 3] != "api" || segments[n - 2] != "push" {
                return Err(
                    "uptimekuma wants the push path: uptimekuma://host/api/push/TOKEN".into(),
                );
            }
            // The query Uptime Kuma shows beside the push URL (`?status=up&msg=OK&ping=`) is
            // dropped: we write our own.
            Kind::UptimeKuma {
                url: target(&segments.join("/"), None)?,
            }
        }
        "slack" => {
            if segments.is_empty() {
                return Err(
                    "slack wants the webhook path: slack://hooks.slack.com/services/...".into(),
                );
            }
            Kind::Slack {
                url: target(&segments.join("/"), url.query())?,
            }
        }
        "webhook" => Kind::Webhook {
            url: target(&segments.join("/"), url.query())?,
            auth,
        },
        _ => unreachable!("HTTP_SCHEMES lists every scheme matched here"),
    })
}

fn smtp(url: &Url, security: Security) -> Result<Smtp, String> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("has no host")?;
    // lettre wants an IPv6 address without its brackets.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port().unwrap_or(match security {
        Security::StartTls => SMTP_STARTTLS_PORT,
        Security::Implicit => SMTPS_PORT,
        Security::Plain => SMTP_PLAIN_PORT,
    });
    let credentials = match userinfo(url) {
        None => None,
        Some((user, Some(password))) if !user.is_empty() => Some((user, password)),
        Some(_) => return Err("smtp wants both a user and a password, or neither".into()),
    };
    if !matches!(url.path(), "" | "/") {
        return Err("smtp takes no path: smtp://user:pass@host:port/?from=...&to=...".into());
    }
    let mut from = None;
    let mut to = Vec::new();
    // By hand rather than with form decoding, which would turn the '+' of `me+backup@...` into
    // a space.
    for pair in url.query().unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value);
        let mailbox = |address: &str| -> Result<Mailbox, String> {
            address
                .trim()
                .parse::<Mailbox>()
                .map_err(|_| format!("{key}: {:?} is not a mail address", address.trim()))
        };
        match key {
            "from" => from = Some(mailbox(&value)?),
            "to" => {
                for address in value.split(',').filter(|a| !a.trim().is_empty()) {
                    to.push(mailbox(address)?);
                }
            }
            _ => {
                return Err(format!(
                    "smtp takes only from and to in its query, not {key:?}"
                ));
            }
        }
    }
    let from = from.ok_or("smtp wants a sender: ?from=backup@example.org")?;
    if to.is_empty() {
        return Err("smtp wants at least one recipient: &to=a@example.org,b@example.org".into());
    }
    Ok(Smtp {
        security,
        host,
        port,
        credentials,
        from,
        to,
    })
}

/// A self-signed CA certificate (valid until 2126), for tests of `BACKUP_NOTIFY_CA_FILE`.
#[cfg(test)]
pub const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIUR1cZhakn+r4C9TQp4C7EnrwOR+MwCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWYmFja3VwLXNpZGVjYXIgdGVzdCBDQTAgFw0yNjExMjkxNjQ5
MjZaGA8yMTI2MTEwNTE2NDkyNlowITEfMB0GA1UEAwwWYmFja3VwLXNpZGVjYXIg
dGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABLZfsbTLzm3CAelIM1Mv
T6F6AG2I1RAPQHIBczTYXquzfk+/Q2dp28ZSklO2i4vDkNdxlQMD7V9UAhiMY9XY
iFOjUzBRMB0GA1UdDgQWBBTbKlSCMWGSgf0Qbdij6r599VzpLDAfBgNVHSMEGDAW
gBTbKlSCMWGSgf0Qbdij6r599VzpLDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0gAMEUCIHiYUycQUsplfJCmkOABf1oQbC2KSwcdaFCMlJwQqEC8AiEA2OXy
geeW3SZrOkBVc5wSViKYdAosOEom8myzruCF5lY=
-----END CERTIFICATE-----
";

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(entry: &str) -> Kind {
        Channel::parse(entry).unwrap().kind
    }

    #[test]
    fn redacts_userinfo_and_path_secrets() {
        let cases = [
            ("ntfy://tk_abcdef@ntfy.sh/alerts", "ntfy://***@ntfy.sh/***"),
            (
                "ntfy+http://me:hunter22@ntfy.lan:8080/alerts",
                "ntfy+http://me:***@ntfy.lan:8080/***",
            ),
            ("gotify://push.lan/AbCdEf123", "gotify://push.lan/***"),
            (
                "healthchecks://hc-ping.com/0f7a3c1e-0000-4000-8000-000000000001",
                "healthchecks://hc-ping.com/***",
            ),
            (
                "healthchecks+http://hc.lan/ping/pingkey99/nas-backup?create=1",
                "healthchecks+http://hc.lan/ping/***/***?create=1",
            ),
            (
                "uptimekuma://kuma.lan/api/push/Tok3nXyz?status=up&msg=OK&ping=",
                "uptimekuma://kuma.lan/api/push/***?status=***&msg=***&ping=",
            ),
            (
                "slack://hooks.slack.com/services/T000/B000/XXXXsecret",
                "slack://hooks.slack.com/services/***/***/***",
            ),
            (
                "slack://discord.com/api/webhooks/1234/tokentoken/slack",
                "slack://discord.com/api/webhooks/***/***/slack",
            ),
            (
                "smtp://me%40example.org:p%40ss@mail.example.org:587/?from=a@b.c&to=d@e.f",
                "smtp://me%40example.org:***@mail.example.org:587/?from=a@b.c&to=d@e.f",
            ),
            (
                "smtp://me@example.org:pa/ss@mail.example.org/?to=d@e.f",
                "smtp://me@example.org:***@mail.example.org/?to=d@e.f",
            ),
            (
                "webhook://hooks.lan/x/y?token=abc",
                "webhook://hooks.lan/***/***?token=***",
            ),
            ("bogus://u:secret@host/a#frag", "bogus://u:***@host/***#***"),
            ("not a url at all", "***"),
            ("ntfy:/tk_abc@x", "***"),
        ];
        for (entry, shown) in cases {
            assert_eq!(redact(entry), shown, "{entry}");
        }
    }

    /// Every secret, in every form the channel could print.
    #[test]
    fn no_secret_survives_display_or_debug() {
        let entries = [
            (
                "ntfy://tk_SECRET1@ntfy.sh/topicSECRET",
                &["tk_SECRET1", "topicSECRET"][..],
            ),
            ("ntfy://me:SECRET2@ntfy.sh/alerts", &["SECRET2"]),
            ("gotify+http://push.lan/SECRET3", &["SECRET3"]),
            ("healthchecks://hc-ping.com/SECRET4", &["SECRET4"]),
            ("healthchecks://hc.lan/ping/SECRET5/slug", &["SECRET5"]),
            ("uptimekuma://kuma.lan/api/push/SECRET6", &["SECRET6"]),
            (
                "slack://hooks.slack.com/services/T1/B1/SECRET7",
                &["SECRET7"],
            ),
            (
                "slack://discord.com/api/webhooks/1/SECRET8/slack",
                &["SECRET8"],
            ),
            ("webhook://me:SECRET9@hooks.lan/in", &["SECRET9"]),
            ("webhook://tokSECRET10@hooks.lan/in", &["tokSECRET10"]),
            (
                "smtps://me:SECRET11@mail.lan/?from=a@b.c&to=d@e.f",
                &["SECRET11"],
            ),
            (
                "smtp://me:SEC%2FRET12@mail.lan/?from=a@b.c&to=d@e.f",
                &["SEC/RET12", "SEC%2FRET12"],
            ),
        ];
        for (entry, secrets) in entries {
            let channel = Channel::parse(entry).unwrap_or_else(|e| panic!("{entry}: {e}"));
            let texts = [
                channel.to_string(),
                format!("{channel:?}"),
                format!("{:?}", vec![channel.clone()]),
                channel.scrub(&format!("server said: {entry} and {}", secrets.join(" "))),
            ];
            for text in &texts {
                for secret in secrets {
                    assert!(!text.contains(secret), "{secret} shown in {text}");
                }
            }
        }
    }

    #[test]
    fn parses_http_channels() {
        assert!(matches!(
            kind("ntfy://tk_abc@ntfy.sh/alerts"),
            Kind::Ntfy { url, auth: Some(Auth::Bearer(t)) } if url == "https://ntfy.sh/alerts" && t == "tk_abc"
        ));
        assert!(matches!(
            kind("ntfy+http://me:p%40ss@10.0.0.2:8080/alerts"),
            Kind::Ntfy { url, auth: Some(Auth::Basic { user, password }) }
                if url == "http://10.0.0.2:8080/alerts" && user == "me" && password == "p@ss"
        ));
        assert!(matches!(
            kind("gotify://push.example.org/AbC"),
            Kind::Gotify { url, token } if url == "https://push.example.org/message" && token == "AbC"
        ));
        assert!(matches!(
            kind("gotify+http://lan:8080/gotify/AbC"),
            Kind::Gotify { url, .. } if url == "http://lan:8080/gotify/message"
        ));
        assert!(matches!(
            kind("healthchecks://hc-ping.com/ping/key/slug?create=1"),
            Kind::Healthchecks { url, query: Some(q) }
                if url == "https://hc-ping.com/ping/key/slug" && q == "create=1"
        ));
        assert!(matches!(
            kind("uptimekuma+http://kuma:3001/api/push/tok?status=up&msg=OK&ping="),
            Kind::UptimeKuma { url } if url == "http://kuma:3001/api/push/tok"
        ));
        assert!(matches!(
            kind("slack://hooks.slack.com/services/T/B/X"),
            Kind::Slack { url } if url == "https://hooks.slack.com/services/T/B/X"
        ));
        assert!(matches!(
            kind("webhook+http://[::1]:9000/"),
            Kind::Webhook { url, auth: None } if url == "http://[::1]:9000/"
        ));
        assert!(
            Channel::parse("healthchecks://hc-ping.com/x")
                .unwrap()
                .is_monitor()
        );
        assert!(!Channel::parse("ntfy://ntfy.sh/x").unwrap().is_monitor());
    }

    #[test]
    fn parses_smtp() {
        let Kind::Smtp(smtp) = kind(
            "smtp://me%40x.org:p%2Bw@mail.x.org/?from=Backup%20<b@x.org>&to=a+backup@x.org,c@y.org",
        ) else {
            panic!("not smtp")
        };
        assert_eq!(smtp.security, Security::StartTls);
        assert_eq!(smtp.port, SMTP_STARTTLS_PORT);
        assert_eq!(smtp.host, "mail.x.org");
        assert_eq!(
            smtp.credentials,
            Some(("me@x.org".to_string(), "p+w".to_string()))
        );
        assert_eq!(smtp.from.to_string(), "Backup <b@x.org>");
        let to: Vec<String> = smtp.to.iter().map(|m| m.to_string()).collect();
        assert_eq!(to, vec!["a+backup@x.org", "c@y.org"]);

        let Kind::Smtp(smtp) = kind("smtps://mail.x.org/?from=b@x.org&to=a@x.org") else {
            panic!()
        };
        assert_eq!(
            (smtp.security, smtp.port, smtp.credentials),
            (Security::Implicit, SMTPS_PORT, None)
        );
        let Kind::Smtp(smtp) = kind("smtp+plain://127.0.0.1:2525?from=b@x.org&to=a@x.org") else {
            panic!()
        };
        assert_eq!((smtp.security, smtp.port), (Security::Plain, 2525));
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let cases = [
            ("https://hooks.slack.com/services/T/B/X", "unknown scheme"),
            ("telegram://x/y", "unknown scheme"),
            ("smtp+http://mail/?from=a@b.c&to=d@e.f", "unknown scheme"),
            ("ntfy+plain://ntfy.lan/x", "unknown scheme"),
            ("ntfy://ntfy.sh", "exactly one path segment"),
            ("ntfy://ntfy.sh/a/b", "exactly one path segment"),
            ("ntfy://ntfy.sh/a b", "topic"),
            ("ntfy://ntfy.sh/x?y=1", "query"),
            ("gotify://push.lan", "application token"),
            ("gotify://u:p@push.lan/tok", "no user or token"),
            ("healthchecks://hc-ping.com", "ping path"),
            ("uptimekuma://kuma/tok", "push path"),
            ("slack://hooks.slack.com", "webhook path"),
            ("smtp://mail.lan/?to=a@b.c", "sender"),
            ("smtp://mail.lan/?from=a@b.c", "recipient"),
            (
                "smtp://mail.lan/?from=a@b.c&to=nobody",
                "not a mail address",
            ),
            (
                "smtp://me@mail.lan/?from=a@b.c&to=d@e.f",
                "user and a password",
            ),
            (
                "smtp://mail.lan/?from=a@b.c&to=d@e.f&cc=x@y.z",
                "only from and to",
            ),
            ("smtp://mail.lan/inbox?from=a@b.c&to=d@e.f", "no path"),
            ("webhook://", "no host"),
            ("webhook://h/x#y", "fragment"),
            ("ntfy", "not a URL"),
        ];
        for (entry, expected) in cases {
            match Channel::parse(entry) {
                Ok(c) => panic!("{entry} accepted as {c}"),
                Err(e) => assert!(e.contains(expected), "{entry}: {e}"),
            }
        }
    }
}
