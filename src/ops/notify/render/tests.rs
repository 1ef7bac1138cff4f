//! Unit tests of `render`.

use super::*;
use chrono::TimeZone;

const RUN: &str = "0f7a3c1e-5b2d-4e8f-9a01-23456789abcd";

fn failed() -> Message {
    Message {
        kind: Outcome::Failed,
        host: "nas".into(),
        title: "backup failed on nas".into(),
        summary: "1 volume(s), 1.0 MiB, longest freeze 120 ms, no archive, 3.1 s: FAILED: \
                      rsync failed: the remote disk is full"
            .into(),
        stage: Some("transfer".into()),
        cause: Some("disk_full".into()),
        volumes: vec!["db".into(), "files".into()],
        thawed: true,
        duration: Duration::from_millis(3120),
        last_success: Some(Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 5).unwrap()),
        next_run: Some(Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap()),
        log_tail: vec!["sync db".into(), "rsync: No space left on device".into()],
        run_id: RUN.into(),
    }
}

const FAILED_TEXT: &str = "1 volume(s), 1.0 MiB, longest freeze 120 ms, no archive, 3.1 s: \
FAILED: rsync failed: the remote disk is full

host: nas
outcome: failed
stage: transfer
cause: disk_full
volumes: db, files
containers thawed: yes
duration: 3.1 s
last success: 2026-11-27 03:00:05 UTC
next run: 2026-11-29 03:00:00 UTC
run: 0f7a3c1e-5b2d-4e8f-9a01-23456789abcd

last log lines:
sync db
rsync: No space left on device";

#[test]
fn text_carries_every_fact() {
    assert_eq!(text(&failed(), "", Limit::None, false), FAILED_TEXT);
    let mut m = failed();
    m.kind = Outcome::Success;
    m.stage = None;
    m.cause = None;
    m.thawed = false;
    m.last_success = None;
    m.next_run = None;
    m.volumes.clear();
    m.log_tail.clear();
    m.duration = Duration::from_secs(3723);
    let text = text(&m, "", Limit::None, false);
    assert!(
        text.ends_with(
            "outcome: success\nvolumes: none\ncontainers thawed: NO, some may still be paused \
             or stopped\nduration: 1h 2m 3s\nlast success: never\nnext run: none scheduled\nrun: \
             0f7a3c1e-5b2d-4e8f-9a01-23456789abcd"
        ),
        "{text}"
    );
}

#[test]
fn text_keeps_the_end_of_the_log_within_the_limit() {
    let mut m = failed();
    m.log_tail = (1..=500).map(|i| format!("line {i:03} é")).collect();
    for limit in [Limit::Bytes(1000), Limit::Chars(1000), Limit::Bytes(4096)] {
        let text = text(&m, "", limit, false);
        assert!(
            limit.size(&text) <= limit.max(),
            "{limit:?}: {}",
            limit.size(&text)
        );
        // Within a line or so of the limit: trimming wastes little.
        assert!(
            limit.size(&text) > limit.max() - 60,
            "{limit:?}: {}",
            limit.size(&text)
        );
        assert!(text.starts_with(&FAILED_TEXT[..200]));
        assert!(text.ends_with("\nline 500 é"), "{text}");
        assert!(text.contains(" earlier line(s) cut]\n"), "{text}");
    }
    let fenced = text(&m, "title\n", Limit::Chars(SLACK_LIMIT_CHARS), true);
    assert!(fenced.starts_with("title\n1 volume(s)"));
    assert!(fenced.ends_with("line 500 é\n```"), "{fenced}");
    assert!(fenced.chars().count() <= SLACK_LIMIT_CHARS);
}

#[test]
fn text_cuts_a_head_over_the_limit() {
    let mut m = failed();
    m.summary = "é".repeat(3000);
    let text = text(&m, "", Limit::Bytes(4096), false);
    assert!(text.len() <= 4096 && text.len() > 4090, "{}", text.len());
    assert!(text.ends_with('…'));
    assert_eq!(Limit::Chars(3).truncate("abcdef"), "ab…");
    assert_eq!(Limit::Bytes(5).truncate("éééé"), "é…");
    assert_eq!(Limit::Bytes(5).truncate("abc"), "abc");
}

#[test]
fn ntfy_request() {
    let auth = Auth::Bearer("tk_abc".into());
    let request = ntfy("https://ntfy.sh/alerts", Some(&auth), &failed());
    assert_eq!(
        request,
        HttpRequest {
            method: Method::Post,
            url: "https://ntfy.sh/alerts".into(),
            headers: vec![
                ("Title", "backup failed on nas".into()),
                ("Priority", "high".into()),
                ("Tags", "rotating_light,failed".into()),
                ("Content-Type", "text/plain; charset=utf-8".into()),
                ("Authorization", "Bearer tk_abc".into()),
            ],
            body: FAILED_TEXT.into(),
        }
    );
    let mut m = failed();
    m.kind = Outcome::Recovered;
    m.title = "backup recovered on büro\r\n".into();
    let basic = Auth::Basic {
        user: "me".into(),
        password: "p@ss".into(),
    };
    let request = ntfy("http://ntfy.lan/alerts", Some(&basic), &m);
    assert_eq!(
        request.headers,
        vec![
            ("Title", "backup recovered on b?ro  ".into()),
            ("Priority", "default".into()),
            ("Tags", "white_check_mark,recovered".into()),
            ("Content-Type", "text/plain; charset=utf-8".into()),
            ("Authorization", "Basic bWU6cEBzcw==".into()),
        ]
    );
}

#[test]
fn gotify_request() {
    let request = gotify("https://push.lan/message", "AppTok", &failed());
    assert_eq!(request.method, Method::Post);
    assert_eq!(request.url, "https://push.lan/message");
    assert_eq!(
        request.headers,
        vec![
            ("X-Gotify-Key", "AppTok".to_string()),
            ("Content-Type", "application/json".to_string())
        ]
    );
    assert_eq!(
        request.body,
        format!(
            r#"{{"title":"backup failed on nas","message":{},"priority":8}}"#,
            serde_json::to_string(FAILED_TEXT).unwrap()
        )
    );
    let mut m = failed();
    m.kind = Outcome::Success;
    let body: serde_json::Value =
        serde_json::from_str(&gotify("https://push.lan/message", "t", &m).body).unwrap();
    assert_eq!(body["priority"], 5);
}

#[test]
fn healthchecks_requests() {
    let url = "https://hc-ping.com/5d1f";
    assert_eq!(
        healthchecks_start(url, None, RUN),
        HttpRequest {
            method: Method::Post,
            url: format!("https://hc-ping.com/5d1f/start?rid={RUN}"),
            headers: vec![],
            body: String::new(),
        }
    );
    assert_eq!(
        healthchecks(url, None, &failed()),
        HttpRequest {
            method: Method::Post,
            url: format!("https://hc-ping.com/5d1f/fail?rid={RUN}"),
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: FAILED_TEXT.into(),
        }
    );
    let mut m = failed();
    for (kind, endpoint) in [
        (Outcome::Success, ""),
        (Outcome::Recovered, ""),
        (Outcome::Test, "/log"),
    ] {
        m.kind = kind;
        assert_eq!(
            healthchecks("https://hc.lan/ping/key/nas", Some("create=1"), &m).url,
            format!("https://hc.lan/ping/key/nas{endpoint}?create=1&rid={RUN}")
        );
    }
    // Not a UUID: no rid, rather than a ping healthchecks refuses.
    m.run_id = "run-7".into();
    assert_eq!(
        healthchecks(url, None, &m).url,
        "https://hc-ping.com/5d1f/log"
    );
    m.log_tail = vec!["x".repeat(100); 500];
    assert!(healthchecks(url, None, &m).body.len() <= HEALTHCHECKS_LIMIT_BYTES);
}

#[test]
fn uptime_kuma_request() {
    let url = "https://kuma.lan/api/push/tok";
    let mut m = failed();
    m.summary = "a & b\nc".into();
    assert_eq!(
        uptime_kuma(url, &m),
        HttpRequest {
            method: Method::Get,
            url: "https://kuma.lan/api/push/tok?status=down&msg=a+%26+b+c&ping=3120".into(),
            headers: vec![],
            body: String::new(),
        }
    );
    m.kind = Outcome::Test;
    m.summary = "x".repeat(500);
    let request = uptime_kuma(url, &m);
    assert!(
        request
            .url
            .starts_with("https://kuma.lan/api/push/tok?status=up&msg=xxx")
    );
    assert!(!request.url.contains("ping="));
    let msg = Url::parse(&request.url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "msg")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(msg.chars().count(), UPTIME_KUMA_MSG_CHARS);
}

#[test]
fn slack_request() {
    let mut m = failed();
    m.log_tail = vec!["<tag> & more".into()];
    let discord = slack("https://discord.com/api/webhooks/1/t/slack", &m);
    assert_eq!(discord.method, Method::Post);
    assert_eq!(
        discord.headers,
        vec![("Content-Type", "application/json".to_string())]
    );
    let head = FAILED_TEXT.split("\n\nlast log lines:").next().unwrap();
    let expected =
        format!("backup failed on nas\n{head}\n\nlast log lines:\n```\n<tag> & more\n```");
    assert_eq!(
        discord.body,
        serde_json::json!({ "text": expected }).to_string()
    );
    let real = slack("https://hooks.slack.com/services/T/B/X", &m);
    let body: serde_json::Value = serde_json::from_str(&real.body).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .ends_with("```\n&lt;tag&gt; &amp; more\n```")
    );
    m.log_tail = vec!["y".repeat(80); 200];
    let long = slack("https://mm.lan/hooks/k", &m);
    let body: serde_json::Value = serde_json::from_str(&long.body).unwrap();
    assert!(body["text"].as_str().unwrap().chars().count() <= SLACK_LIMIT_CHARS);
}

#[test]
fn webhook_request() {
    let request = webhook("https://hooks.lan/in", None, &failed());
    assert_eq!(request.method, Method::Post);
    assert_eq!(
        request.headers,
        vec![("Content-Type", "application/json".to_string())]
    );
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "version": 1,
            "outcome": "failed",
            "host": "nas",
            "title": "backup failed on nas",
            "summary": failed().summary,
            "stage": "transfer",
            "cause": "disk_full",
            "volumes": ["db", "files"],
            "thawed": true,
            "duration_seconds": 3.12,
            "last_success": "2026-11-27T03:00:05Z",
            "next_run": "2026-11-29T03:00:00Z",
            "run_id": RUN,
            "log_tail": ["sync db", "rsync: No space left on device"],
        })
    );
    let mut m = failed();
    m.kind = Outcome::Recovered;
    m.stage = None;
    m.cause = None;
    m.last_success = None;
    let auth = Auth::Basic {
        user: "u".into(),
        password: "p".into(),
    };
    let request = webhook("http://hooks.lan/in", Some(&auth), &m);
    assert_eq!(
        request.headers[1],
        ("Authorization", "Basic dTpw".to_string())
    );
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["outcome"], "recovered");
    assert!(body["stage"].is_null() && body["cause"].is_null() && body["last_success"].is_null());
}

#[test]
fn email_content() {
    let (subject, body) = email(&failed());
    assert_eq!(subject, "backup failed on nas");
    assert_eq!(body, FAILED_TEXT);
}

#[test]
fn debug_hides_credentials() {
    let request = gotify("https://push.lan/message", "AppTokSecret", &failed());
    let shown = format!("{request:?}");
    assert!(!shown.contains("AppTokSecret"), "{shown}");
    let request = uptime_kuma("https://kuma.lan/api/push/KumaSecret", &failed());
    assert!(!format!("{request:?}").contains("KumaSecret"));
}
