//! Sending: the one impure part. Every channel at once, each try bounded by a timeout, a few
//! tries with backoff; what still fails is a warning in the log, never an error of the run.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rustls::pki_types::CertificateDer;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::Message;
use super::render::{self, HttpRequest, Method};
use crate::config::Config;
use crate::config::channel::NotifyOn;
use crate::config::channel::{Channel, Kind, Security, Smtp, read_ca_file};
use crate::report::events;

/// The longest one try may take: connecting, sending and reading the answer.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per channel and message.
pub const TRIES: u32 = 3;
/// The wait after the first failed try; doubled after each further one (1 s, 2 s).
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// How hard to try.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    tries: u32,
    timeout: Duration,
    backoff: Duration,
}

const PACING: Pacing = Pacing {
    tries: TRIES,
    timeout: TRY_TIMEOUT,
    backoff: FIRST_BACKOFF,
};

/// Why a try failed, and whether another could do better.
#[derive(Debug)]
enum TryError {
    /// The network, a timeout, a 5xx, 408 or 429: worth another try.
    Transient(String),
    /// The service refused (401, 404, a 5xx SMTP reply, a bad address): the same again will not
    /// help, and healthchecks' rate limit makes pointless tries harmful.
    Permanent(String),
}

/// The HTTP client: rustls with ring (no C toolchain beyond cc, no aws-lc), Mozilla's roots built
/// in (the image needs no CA bundle) plus the private CA, HTTP/1.1, no redirects (a redirected
/// POST would silently become a GET; better to fail and name the status).
fn http_client(ca: &[CertificateDer<'static>]) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in ca {
        roots
            .add(cert.clone())
            .context("BACKUP_NOTIFY_CA_FILE holds a certificate rustls refuses")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("backup-sidecar/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client for notifications")
}

struct Inner {
    channels: Vec<Channel>,
    on: NotifyOn,
    http: reqwest::Client,
    ca: Vec<CertificateDer<'static>>,
    pacing: Pacing,
}

/// Sends notifications. Cheap to clone (one shared client), so a clone can move into a task.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    /// A notifier for `channels`, telling the ones that are not monitors what `on` selects;
    /// `ca_file` adds a private CA to the public roots.
    pub fn new(
        channels: Vec<Channel>,
        on: NotifyOn,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        // lettre asks for the process-wide provider; make it ring, the only one compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = match ca_file {
            Some(path) => read_ca_file(path).map_err(anyhow::Error::msg)?,
            None => Vec::new(),
        };
        Ok(Notifier {
            inner: Arc::new(Inner {
                http: http_client(&ca)?,
                channels,
                on,
                ca,
                pacing: PACING,
            }),
        })
    }

    /// The notifier the configuration describes.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        Self::new(
            config.notify_urls.clone(),
            config.notify_on,
            config.notify_ca_file.as_deref(),
        )
    }

    /// Whether there is no channel at all.
    pub fn is_empty(&self) -> bool {
        self.inner.channels.is_empty()
    }

    /// The channels, in configuration order (for tests: the daemon only sends).
    #[cfg(test)]
    pub fn channels(&self) -> &[Channel] {
        &self.inner.channels
    }

    /// Tells the monitors that a run starts (healthchecks' `/start`, which measures the run and
    /// catches one that never ends). Returns when every channel has answered or given up.
    pub async fn start(&self, run_id: &str) {
        let tries = self
            .inner
            .channels
            .iter()
            .filter_map(|channel| match &channel.kind {
                Kind::Healthchecks { url, query } => {
                    let request = render::healthchecks_start(url, query.as_deref(), run_id);
                    Some(self.deliver(channel, Work::Http(request)))
                }
                _ => None,
            });
        join_all(tries).await;
    }

    /// Sends `message` to every channel that hears of its outcome, all at once. Never fails:
    /// a channel that still fails after its tries is logged as a `notification failed` warning.
    pub async fn send(&self, message: &Message) {
        let tries = self
            .inner
            .channels
            .iter()
            .filter(|channel| channel.is_monitor() || self.inner.on.tells(message.kind))
            .map(|channel| self.deliver(channel, Work::of(channel, message)));
        join_all(tries).await;
    }

    /// [`Notifier::send`] in a task of its own, so the caller goes on at once.
    pub fn spawn_send(&self, message: Message) -> JoinHandle<()> {
        let notifier = self.clone();
        tokio::spawn(async move { notifier.send(&message).await })
    }

    /// Sends a test message from `host` to every channel; returns each channel (redacted) with
    /// whether it was delivered or why not.
    pub async fn test(&self, host: &str) -> Vec<(String, Result<(), String>)> {
        let message = Message::test(host);
        let tries = self.inner.channels.iter().map(|channel| async {
            let result = self.deliver(channel, Work::of(channel, &message)).await;
            (channel.to_string(), result)
        });
        join_all(tries).await
    }

    /// One piece of work for one channel, with its tries; logs the outcome.
    async fn deliver(&self, channel: &Channel, work: Work<'_>) -> Result<(), String> {
        let pacing = self.inner.pacing;
        let result = with_tries(pacing, channel, || self.attempt(&work)).await;
        // Servers and libraries may quote what they were sent: scrub before anything shows it.
        let result = result.map_err(|e| channel.scrub(&e));
        match &result {
            Ok(()) => debug!(channel = %channel, "notification sent"),
            Err(e) => warn!(
                message = events::NOTIFICATION_FAILED,
                channel = %channel,
                error = %e,
            ),
        }
        result
    }

    async fn attempt(&self, work: &Work<'_>) -> Result<(), TryError> {
        match work {
            Work::Http(request) => self.send_http(request).await,
            Work::Mail(smtp, message) => self.send_mail(smtp, message).await,
        }
    }

    async fn send_http(&self, request: &HttpRequest) -> Result<(), TryError> {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let mut builder = self.inner.http.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if request.method == Method::Post {
            builder = builder.body(request.body.clone());
        }
        let response = builder.send().await.map_err(|e| {
            // Without the URL: reqwest's message would otherwise carry the token in it.
            let permanent = e.is_builder();
            let text = chain(&e.without_url());
            if permanent {
                TryError::Permanent(text)
            } else {
                TryError::Transient(text)
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let answer = response.text().await.unwrap_or_default();
        let answer: String = answer
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(200)
            .collect();
        let mut text = format!("HTTP {status}");
        if status.is_redirection() {
            text.push_str(" (redirects are not followed: check the URL, or its +http)");
        }
        if !answer.is_empty() {
            text.push_str(": ");
            text.push_str(&answer);
        }
        let transient = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        Err(if transient {
            TryError::Transient(text)
        } else {
            TryError::Permanent(text)
        })
    }

    async fn send_mail(&self, smtp: &Smtp, message: &Message) -> Result<(), TryError> {
        let (subject, body) = render::email(message);
        let mut builder = lettre::Message::builder()
            .from(smtp.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &smtp.to {
            builder = builder.to(to.clone());
        }
        let mail = builder
            .body(body)
            .map_err(|e| TryError::Permanent(format!("cannot build the mail: {e}")))?;
        let transport = self.smtp_transport(smtp).map_err(TryError::Permanent)?;
        transport.send(mail).await.map(drop).map_err(|e| {
            if e.is_permanent() {
                TryError::Permanent(chain(&e))
            } else {
                TryError::Transient(chain(&e))
            }
        })
    }

    fn smtp_transport(&self, smtp: &Smtp) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let parameters = || -> Result<TlsParameters, String> {
            let mut builder = TlsParameters::builder(smtp.host.clone());
            for cert in &self.inner.ca {
                let cert = Certificate::from_der(cert.to_vec()).map_err(|e| chain(&e))?;
                builder = builder.add_root_certificate(cert);
            }
            builder.build_rustls().map_err(|e| chain(&e))
        };
        let tls = match smtp.security {
            Security::StartTls => Tls::Required(parameters()?),
            Security::Implicit => Tls::Wrapper(parameters()?),
            Security::Plain => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(self.inner.pacing.timeout));
        if let Some((user, password)) = &smtp.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(builder.build())
    }
}

/// What one channel sends for one message.
enum Work<'a> {
    Http(HttpRequest),
    Mail(&'a Smtp, &'a Message),
}

impl<'a> Work<'a> {
    fn of(channel: &'a Channel, message: &'a Message) -> Self {
        match &channel.kind {
            Kind::Smtp(smtp) => Work::Mail(smtp, message),
            kind => Work::Http(render::request(kind, message).expect("an HTTP channel")),
        }
    }
}

/// An error and its sources, one line, repeats dropped (libraries often restate their source).
fn chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// Runs `attempt` up to `pacing.tries` times, each bounded by `pacing.timeout`, waiting
/// `pacing.backoff`, then twice that, between transient failures.
async fn with_tries<F, Fut>(pacing: Pacing, channel: &Channel, mut attempt: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), TryError>>,
{
    let mut backoff = pacing.backoff;
    for number in 1..=pacing.tries {
        let error = match tokio::time::timeout(pacing.timeout, attempt()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(TryError::Permanent(e))) => return Err(e),
            Ok(Err(TryError::Transient(e))) => e,
            Err(_) => format!("no answer within {} s", pacing.timeout.as_secs_f64()),
        };
        if number == pacing.tries {
            let tries = if number == 1 { "try" } else { "tries" };
            return Err(format!("{error} (after {number} {tries})"));
        }
        debug!(channel = %channel, attempt = number, error = %channel.scrub(&error), "notification try failed");
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2);
    }
    unreachable!("the last try returns")
}

#[cfg(test)]
mod tests;
