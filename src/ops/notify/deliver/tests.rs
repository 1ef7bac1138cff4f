//! Unit tests of `deliver`.

use super::*;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as a server saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// Headers the HTTP client adds of its own; the rest must be exactly what we rendered.
const TRANSPORT_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "user-agent",
    "accept",
    "connection",
];

/// A one-port HTTP server on 127.0.0.1 that records each request and answers with the next
/// status line of `answers` (the last one repeated); `None` never answers.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Receiver {
    async fn start(answers: &[Option<&'static str>]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answers = answers.to_vec();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            for n in 0.. {
                let (mut stream, _) = listener.accept().await.unwrap();
                let request = read_request(&mut stream).await;
                record.lock().unwrap().push(request);
                match answers[n.min(answers.len() - 1)] {
                    Some(status) => {
                        let answer = format!(
                            "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK"
                        );
                        stream.write_all(answer.as_bytes()).await.unwrap();
                        stream.shutdown().await.ok();
                    }
                    // Held open, never answered.
                    None => held.push(stream),
                }
            }
        });
        Receiver { port, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Seen {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed mid-request");
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let method = request_line.next().unwrap().to_string();
    let target = request_line.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&buf[..n]);
    }
    Seen {
        method,
        target,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// What the server must have seen for `expected`: the same method, target, body, and
/// headers apart from the client's own.
fn assert_sent(seen: &Seen, expected: &HttpRequest, port: u16) {
    let method = match expected.method {
        Method::Get => "GET",
        Method::Post => "POST",
    };
    let prefix = format!("http://127.0.0.1:{port}");
    let target = expected.url.strip_prefix(&prefix).expect("a local URL");
    assert_eq!(seen.method, method);
    assert_eq!(seen.target, target);
    assert_eq!(seen.body, expected.body);
    let headers: Vec<(String, String)> = seen
        .headers
        .iter()
        .filter(|(n, _)| !TRANSPORT_HEADERS.contains(&n.as_str()))
        .cloned()
        .collect();
    let wanted: Vec<(String, String)> = expected
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    assert_eq!(headers, wanted);
}

fn notifier(entries: &[String], on: NotifyOn) -> Notifier {
    let channels = entries.iter().map(|e| Channel::parse(e).unwrap()).collect();
    let mut notifier = Notifier::new(channels, on, None).unwrap();
    Arc::get_mut(&mut notifier.inner).unwrap().pacing = Pacing {
        tries: 3,
        timeout: Duration::from_millis(500),
        backoff: Duration::from_millis(10),
    };
    notifier
}

fn failed(run_id: &str) -> Message {
    Message {
        kind: super::super::Outcome::Failed,
        host: "nas".into(),
        title: "backup failed on nas".into(),
        summary: "0 volume(s): FAILED: network".into(),
        stage: Some("transfer".into()),
        cause: Some("network".into()),
        volumes: vec!["db".into()],
        thawed: true,
        duration: Duration::from_millis(1500),
        last_success: None,
        next_run: None,
        log_tail: vec!["ssh: connect to host backup.lan: Connection refused".into()],
        run_id: run_id.into(),
    }
}

#[tokio::test]
async fn each_http_channel_sends_what_it_rendered() {
    let receiver = Receiver::start(&[Some("200 OK")]).await;
    let port = receiver.port;
    let entries = [
        format!("ntfy+http://me:pw@127.0.0.1:{port}/alerts"),
        format!("gotify+http://127.0.0.1:{port}/AppToken"),
        format!("healthchecks+http://127.0.0.1:{port}/ping/5d1f"),
        format!("uptimekuma+http://127.0.0.1:{port}/api/push/KumaTok"),
        format!("slack+http://127.0.0.1:{port}/hooks/key"),
        format!("webhook+http://tok@127.0.0.1:{port}/in"),
    ];
    let notifier = notifier(&entries, NotifyOn::Failure);
    let run_id = super::super::new_run_id();
    notifier.start(&run_id).await;
    let message = failed(&run_id);
    notifier.send(&message).await;
    let seen = receiver.seen();
    // The start ping first, alone; then one request per channel, in any order.
    assert_eq!(seen.len(), 1 + entries.len(), "{seen:#?}");
    let Kind::Healthchecks { url, .. } = &notifier.channels()[2].kind else {
        panic!()
    };
    assert_sent(
        &seen[0],
        &render::healthchecks_start(url, None, &run_id),
        port,
    );
    for channel in notifier.channels() {
        let expected = render::request(&channel.kind, &message).unwrap();
        let target = expected
            .url
            .trim_start_matches(&format!("http://127.0.0.1:{port}"));
        let found = seen[1..]
            .iter()
            .find(|s| s.target == target)
            .unwrap_or_else(|| panic!("nothing sent to {channel}"));
        assert_sent(found, &expected, port);
    }
}

#[tokio::test]
async fn a_plain_success_reaches_only_monitors_unless_always() {
    let receiver = Receiver::start(&[Some("200 OK")]).await;
    let port = receiver.port;
    let entries = [
        format!("ntfy+http://127.0.0.1:{port}/alerts"),
        format!("healthchecks+http://127.0.0.1:{port}/5d1f"),
    ];
    let mut message = failed("x");
    message.kind = super::super::Outcome::Success;
    notifier(&entries, NotifyOn::Failure).send(&message).await;
    let targets: Vec<String> = receiver.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, vec!["/5d1f"]);
    notifier(&entries, NotifyOn::Always)
        .spawn_send(message)
        .await
        .unwrap();
    assert_eq!(receiver.seen().len(), 3);
}

#[tokio::test]
async fn transient_failures_are_tried_again() {
    let receiver = Receiver::start(&[Some("503 Service Unavailable"), Some("200 OK")]).await;
    let entry = format!("gotify+http://127.0.0.1:{}/AppToken", receiver.port);
    let results = notifier(&[entry], NotifyOn::Failure).test("nas").await;
    assert_eq!(
        results,
        vec![(
            format!("gotify+http://127.0.0.1:{}/***", receiver.port),
            Ok(())
        )]
    );
    assert_eq!(receiver.seen().len(), 2);
}

#[tokio::test]
async fn a_refusal_is_not_tried_again_and_shows_no_secret() {
    let receiver = Receiver::start(&[Some("404 Not Found")]).await;
    let entry = format!(
        "uptimekuma+http://127.0.0.1:{}/api/push/KumaTok",
        receiver.port
    );
    let results = notifier(&[entry], NotifyOn::Failure).test("nas").await;
    let (channel, result) = &results[0];
    assert_eq!(
        channel,
        &format!("uptimekuma+http://127.0.0.1:{}/api/push/***", receiver.port)
    );
    assert_eq!(result, &Err("HTTP 404 Not Found: OK".to_string()));
    assert_eq!(receiver.seen().len(), 1);
    assert!(
        receiver.seen()[0]
            .target
            .starts_with("/api/push/KumaTok?status=up&msg=Test+")
    );
}

#[tokio::test]
async fn a_silent_server_times_out_each_try() {
    let receiver = Receiver::start(&[None]).await;
    let entry = format!("webhook+http://127.0.0.1:{}/in", receiver.port);
    let results = notifier(&[entry], NotifyOn::Failure).test("nas").await;
    assert_eq!(
        results[0].1,
        Err("no answer within 0.5 s (after 3 tries)".to_string())
    );
    assert_eq!(receiver.seen().len(), 3);
}

#[tokio::test]
async fn an_unreachable_channel_fails_with_the_reason() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let entry = format!("ntfy+http://tk_Secret1@127.0.0.1:{port}/alerts");
    let notifier = notifier(&[entry], NotifyOn::Failure);
    let results = notifier.test("nas").await;
    let error = results[0].1.clone().unwrap_err();
    assert!(
        error.contains("onnection refused") && error.ends_with("(after 3 tries)"),
        "{error}"
    );
    assert!(
        !error.contains("tk_Secret1") && !error.contains("alerts"),
        "{error}"
    );
    // send() only logs.
    notifier.send(&failed("x")).await;
}

#[tokio::test]
async fn tries_wait_one_then_two_seconds() {
    tokio::time::pause();
    let channel = Channel::parse("webhook://h/x").unwrap();
    let start = tokio::time::Instant::now();
    let times = Mutex::new(Vec::new());
    let result = with_tries(PACING, &channel, || {
        times.lock().unwrap().push(start.elapsed());
        async { Err(TryError::Transient("down".into())) }
    })
    .await;
    assert_eq!(result, Err("down (after 3 tries)".to_string()));
    // tokio's timer rounds each deadline up to its next millisecond.
    let times = times.lock().unwrap().clone();
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    assert!(matches!(gaps[..], [1000..=1002, 2000..=2002]), "{times:?}");
}

/// A one-port SMTP server on 127.0.0.1 that accepts every mail and records every line it
/// reads; with `starttls` false it offers no STARTTLS.
async fn smtp_receiver(starttls: bool) -> (u16, Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    use tokio::io::AsyncBufReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let record = lines.clone();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut read = tokio::io::BufReader::new(read);
            write.write_all(b"220 test ESMTP\r\n").await.unwrap();
            let mut in_data = false;
            let mut line = String::new();
            // Ends at EOF, or at the bytes of a TLS handshake, which are no UTF-8 line.
            while let Ok(1..) = read.read_line(&mut line).await {
                let text = line.trim_end().to_string();
                line.clear();
                record.lock().unwrap().push(text.clone());
                let upper = text.to_ascii_uppercase();
                let answer: &[u8] = if in_data {
                    if text != "." {
                        continue;
                    }
                    in_data = false;
                    b"250 queued\r\n"
                } else if upper.starts_with("EHLO") {
                    if starttls {
                        b"250-test\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n"
                    } else {
                        b"250-test\r\n250 AUTH PLAIN LOGIN\r\n"
                    }
                } else if upper.starts_with("AUTH") {
                    b"235 ok\r\n"
                } else if upper.starts_with("DATA") {
                    in_data = true;
                    b"354 go on\r\n"
                } else if upper.starts_with("QUIT") {
                    write.write_all(b"221 bye\r\n").await.ok();
                    break;
                } else if upper.starts_with("STARTTLS") {
                    // Agrees, then speaks no TLS: the client must give up, not go on plain.
                    b"220 go ahead\r\n"
                } else {
                    b"250 ok\r\n"
                };
                write.write_all(answer).await.unwrap();
            }
        }
    });
    (port, lines, task)
}

#[tokio::test]
async fn a_mail_goes_out_over_plain_smtp() {
    let (port, lines, task) = smtp_receiver(false).await;
    let entry = format!(
        "smtp+plain://me:Secret9@127.0.0.1:{port}/?from=Backup%20<backup@nas.lan>&to=a@x.org,b+c@y.org"
    );
    let results = notifier(&[entry], NotifyOn::Failure).test("nas").await;
    task.abort();
    assert_eq!(results[0].1, Ok(()));
    let lines = lines.lock().unwrap().clone();
    let has = |wanted: &str| lines.iter().any(|l| l == wanted);
    // AUTH PLAIN of "\0me\0Secret9".
    assert!(has("AUTH PLAIN AG1lAFNlY3JldDk="), "{lines:#?}");
    assert!(has("MAIL FROM:<backup@nas.lan>"), "{lines:#?}");
    assert!(
        has("RCPT TO:<a@x.org>") && has("RCPT TO:<b+c@y.org>"),
        "{lines:#?}"
    );
    assert!(
        has("Subject: test notification from backup-sidecar on nas"),
        "{lines:#?}"
    );
    assert!(has("From: Backup <backup@nas.lan>"), "{lines:#?}");
    assert!(has("Content-Type: text/plain; charset=utf-8"), "{lines:#?}");
    assert!(
        has("Test notification from backup-sidecar on nas: this channel works."),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn smtp_without_tls_is_refused_before_anything_is_sent() {
    for starttls in [false, true] {
        let (port, lines, task) = smtp_receiver(starttls).await;
        let entry = format!("smtp://me:Secret9@127.0.0.1:{port}/?from=b@nas.lan&to=a@x.org");
        let mut notifier = notifier(&[entry], NotifyOn::Failure);
        Arc::get_mut(&mut notifier.inner).unwrap().pacing.tries = 1;
        let results = notifier.test("nas").await;
        task.abort();
        assert!(results[0].1.is_err(), "starttls {starttls}: {results:?}");
        let lines = lines.lock().unwrap().clone();
        assert!(
            lines
                .iter()
                .all(|l| !l.starts_with("AUTH") && !l.starts_with("MAIL")),
            "starttls {starttls}: {lines:#?}"
        );
    }
}

#[test]
fn reads_a_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    assert!(
        read_ca_file(&empty)
            .unwrap_err()
            .contains("no PEM certificate")
    );
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(read_ca_file(&garbage).is_err());
    assert!(
        read_ca_file(&dir.path().join("missing"))
            .unwrap_err()
            .contains("cannot read")
    );
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, crate::config::channel::TEST_CA_PEM).unwrap();
    assert_eq!(read_ca_file(&ca).unwrap().len(), 1);
    let notifier = Notifier::new(Vec::new(), NotifyOn::Always, Some(&ca)).unwrap();
    assert!(notifier.is_empty());
    assert_eq!(notifier.inner.ca.len(), 1);
}

#[test]
fn the_notifier_takes_the_configured_channels() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "k").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = crate::config::Config::from_raw(crate::config::RawConfig {
        backup_remote: Some("pi@backup".into()),
        backup_remote_dir: Some("/m".into()),
        backup_ssh_key_file: Some(key.display().to_string()),
        backup_known_hosts_file: Some("/dev/null".into()),
        backup_notify_urls: Some("uptimekuma://kuma.lan/api/push/tok".into()),
        ..Default::default()
    })
    .unwrap();
    let notifier = Notifier::from_config(&config).unwrap();
    assert_eq!(notifier.channels(), &config.notify_urls[..]);
}
