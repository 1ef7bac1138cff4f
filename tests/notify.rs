//! End to end: notifications as each service receives them. A real SMTP server (aiosmtpd), Debian's
//! `webhook`, and a recording HTTP server for ntfy, Gotify, healthchecks, Uptime Kuma and
//! Slack-style webhooks (no server of theirs is packaged here), all in one receivers container.

mod common;

use std::time::Duration;

use common::receivers::*;
use common::*;
use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const DELIVERY: Duration = Duration::from_secs(30);

/// HTTP requests whose path starts with `prefix`.
fn requests<'a>(records: &'a Value, prefix: &str) -> Vec<&'a Value> {
    records["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with(prefix))
        .collect()
}

fn header<'a>(request: &'a Value, name: &str) -> &'a str {
    request["headers"][name].as_str().unwrap_or("")
}

/// The text a Slack-style or Gotify request carries.
fn json_field(request: &Value, field: &str) -> String {
    let body: Value = serde_json::from_str(request["body"].as_str().unwrap()).unwrap();
    body[field].as_str().unwrap().to_string()
}

/// Every channel has received `n` messages (and healthchecks `n` start pings).
fn all_received(records: &Value, n: usize) -> bool {
    let http = |prefix: &str| requests(records, prefix).len();
    let pings = requests(records, &format!("/ping/{HEALTHCHECKS_UUID}"));
    let starts = pings
        .iter()
        .filter(|r| r["path"].as_str().unwrap().contains("/start"))
        .count();
    records["smtp"].as_array().unwrap().len() >= n
        && records["webhook"].as_array().unwrap().len() >= n
        && http(&format!("/{NTFY_TOPIC}")) >= n
        && http("/message") >= n
        && http(&format!("/api/push/{UPTIME_KUMA_TOKEN}")) >= n
        && http("/services/") >= n
        && starts >= n
        && pings.len() - starts >= n
}

#[test]
fn a_failure_reaches_every_channel_with_its_cause_then_recovered() {
    let env = Env::new("notify");
    let remote = env.remote();
    let receivers = start_receivers(&env);
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "echo hello > /data/file");
    let urls = receivers.all_urls().join(",");
    let sidecar = env.sidecar(
        &remote,
        &[
            ("BACKUP_RUN_ON_START", "false"),
            ("BACKUP_RETRY_ATTEMPTS", "1"),
            ("BACKUP_NOTIFY_URLS", &urls),
        ],
    );
    wait_for_events(
        &sidecar,
        "backup-sidecar started",
        1,
        Duration::from_secs(30),
    );

    // The remote is down: the run fails on the network.
    docker(&["stop", "-t", "1", &remote.name]);
    let failed = run_now(&sidecar, 0, RUN_TIMEOUT);
    assert_eq!(failed["fields"]["outcome"], "failed", "{failed}");
    assert_eq!(failed["fields"]["cause"], "network", "{failed}");
    let records = receivers.wait_for(|r| all_received(r, 1), DELIVERY);

    let mail = &records["smtp"][0];
    assert_eq!(mail["user"], SMTP_USER, "{mail}");
    assert_eq!(mail["mail_from"], MAIL_FROM, "{mail}");
    assert_eq!(mail["rcpt_tos"][0], MAIL_TO, "{mail}");
    assert!(
        mail["subject"]
            .as_str()
            .unwrap()
            .contains("backup failed on"),
        "{mail}"
    );
    let body = mail["body"].as_str().unwrap();
    for fact in [
        "outcome: failed",
        "stage: connect",
        "cause: network",
        "containers thawed: yes",
    ] {
        assert!(body.contains(fact), "mail lacks {fact:?}:\n{body}");
    }
    assert!(
        body.contains("run finished"),
        "the mail carries the run's log lines:\n{body}"
    );

    let report = &records["webhook"][0];
    assert_eq!(report["outcome"], "failed", "{report}");
    assert_eq!(report["cause"], "network", "{report}");
    assert_eq!(report["stage"], "connect", "{report}");
    assert_eq!(report["thawed"], true, "{report}");
    // It stopped before mirroring: every planned volume is affected.
    assert_eq!(report["volumes"][0], volume.as_str(), "{report}");
    assert!(report["log_tail"].as_array().unwrap().len() > 1, "{report}");

    let ntfy = requests(&records, &format!("/{NTFY_TOPIC}"))[0];
    assert_eq!(ntfy["method"], "POST");
    assert_eq!(
        header(ntfy, "authorization"),
        format!("Bearer {NTFY_TOKEN}")
    );
    assert_eq!(header(ntfy, "priority"), "high");
    assert!(header(ntfy, "title").contains("backup failed on"), "{ntfy}");
    assert!(header(ntfy, "tags").contains("failed"), "{ntfy}");
    assert!(
        ntfy["body"].as_str().unwrap().contains("cause: network"),
        "{ntfy}"
    );

    let gotify = requests(&records, "/message")[0];
    assert_eq!(gotify["method"], "POST");
    assert_eq!(header(gotify, "x-gotify-key"), GOTIFY_TOKEN);
    assert!(
        json_field(gotify, "message").contains("cause: network"),
        "{gotify}"
    );
    let priority: Value = serde_json::from_str(gotify["body"].as_str().unwrap()).unwrap();
    assert_eq!(priority["priority"], 8, "{gotify}");

    let kuma = requests(&records, &format!("/api/push/{UPTIME_KUMA_TOKEN}"))[0];
    assert_eq!(kuma["method"], "GET");
    let path = kuma["path"].as_str().unwrap();
    assert!(path.contains("status=down"), "{path}");
    assert!(path.contains("&msg=") && path.contains("&ping="), "{path}");

    let slack = requests(&records, "/services/")[0];
    assert_eq!(slack["method"], "POST");
    assert!(
        json_field(slack, "text").contains("cause: network"),
        "{slack}"
    );

    // healthchecks: a start ping, then /fail, paired by the same run id.
    let pings = requests(&records, &format!("/ping/{HEALTHCHECKS_UUID}"));
    let start = pings[0]["path"].as_str().unwrap();
    let end = pings[1]["path"].as_str().unwrap();
    assert!(start.contains("/start?rid="), "{start}");
    assert!(end.contains("/fail?rid="), "{end}");
    assert_eq!(start.split("rid=").nth(1), end.split("rid=").nth(1));
    assert!(
        pings[1]["body"]
            .as_str()
            .unwrap()
            .contains("cause: network")
    );

    // The remote is back: the next run succeeds, and every channel hears "recovered".
    docker(&["start", &remote.name]);
    env.wait_sshd(&remote);
    let recovered = run_now(&sidecar, 1, RUN_TIMEOUT);
    assert_eq!(recovered["fields"]["outcome"], "success", "{recovered}");
    let records = receivers.wait_for(|r| all_received(r, 2), DELIVERY);
    assert_eq!(records["webhook"][1]["outcome"], "recovered");
    assert!(
        records["smtp"][1]["subject"]
            .as_str()
            .unwrap()
            .contains("recovered")
    );
    let ntfy = requests(&records, &format!("/{NTFY_TOPIC}"))[1];
    assert_eq!(header(ntfy, "priority"), "default");
    let kuma = requests(&records, &format!("/api/push/{UPTIME_KUMA_TOKEN}"))[1];
    assert!(
        kuma["path"].as_str().unwrap().contains("status=up"),
        "{kuma}"
    );
    let pings = requests(&records, &format!("/ping/{HEALTHCHECKS_UUID}"));
    let success = pings[3]["path"].as_str().unwrap();
    assert!(
        success.starts_with(&format!("/ping/{HEALTHCHECKS_UUID}?rid=")),
        "{success}"
    );

    // No token or password in any log line.
    let logs = docker_output(&["logs", &sidecar]);
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
    for secret in SECRETS {
        assert!(!logs.contains(secret), "{secret} is in the logs");
    }
    // What each channel received of the failure, for people to read in the test output.
    eprintln!("notify: webhook received {}", records["webhook"][0]);
    eprintln!("notify: mail received {}", records["smtp"][0]);
    for (channel, prefix) in [
        ("ntfy", format!("/{NTFY_TOPIC}")),
        ("gotify", "/message".to_string()),
        ("uptime kuma", format!("/api/push/{UPTIME_KUMA_TOKEN}")),
        ("slack", "/services/".to_string()),
    ] {
        eprintln!(
            "notify: {channel} received {}",
            requests(&records, &prefix)[0]
        );
    }
    let pings = requests(&records, &format!("/ping/{HEALTHCHECKS_UUID}"));
    eprintln!(
        "notify: healthchecks received {} then {}",
        pings[0], pings[1]
    );

    // notify-test reaches every channel and says so, one line each.
    let tested = docker(&["exec", &sidecar, "backup-sidecar", "notify-test"]);
    assert_eq!(
        tested
            .lines()
            .filter(|l| l.starts_with("delivered"))
            .count(),
        receivers.all_urls().len(),
        "{tested}"
    );
    for secret in SECRETS {
        assert!(
            !tested.contains(secret),
            "{secret} in notify-test's output: {tested}"
        );
    }
}

#[test]
fn a_success_tells_only_the_monitors_and_a_dead_receiver_delays_nothing() {
    let env = Env::new("notifyok");
    let remote = env.remote();
    let receivers = start_receivers(&env);
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "echo hello > /data/file");
    // Nothing listens on port 1 of the receivers: that channel fails at once, every try. A
    // monitor, so that it hears of the success, and one with no start ping: one message.
    let dead = format!(
        "uptimekuma+http://{}:1/api/push/{UPTIME_KUMA_TOKEN}",
        receivers.name
    );
    let urls = [
        receivers.ntfy_url(),
        receivers.healthchecks_url(),
        receivers.webhook_url(),
        dead,
    ]
    .join(",");
    let sidecar = env.sidecar(
        &remote,
        &[
            ("BACKUP_RUN_ON_START", "false"),
            ("BACKUP_NOTIFY_URLS", &urls),
            ("BACKUP_NOTIFY_ON", "failure"),
        ],
    );
    wait_for_events(
        &sidecar,
        "backup-sidecar started",
        1,
        Duration::from_secs(30),
    );
    let finished = run_now(&sidecar, 0, RUN_TIMEOUT);
    assert_eq!(finished["fields"]["outcome"], "success", "{finished}");
    // The monitor hears the success; the others hear nothing of it.
    let records = receivers.wait_for(
        |r| requests(r, &format!("/ping/{HEALTHCHECKS_UUID}")).len() >= 2,
        DELIVERY,
    );
    // The dead channel gives up after its tries (1 s, then 2 s apart): one warning.
    let warnings = wait_for_events(&sidecar, "notification failed", 1, DELIVERY);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let channel = warnings[0]["fields"]["channel"].as_str().unwrap();
    assert!(channel.contains(":1/"), "{channel}");
    assert!(!channel.contains(UPTIME_KUMA_TOKEN), "{channel}");
    // The run did not wait for it: it had finished before the channel gave up.
    let time = |event: &Value| -> chrono::DateTime<chrono::Utc> {
        event["timestamp"].as_str().unwrap().parse().unwrap()
    };
    assert!(
        time(&finished) < time(&warnings[0]),
        "{finished} vs {}",
        warnings[0]
    );
    std::thread::sleep(Duration::from_secs(2));
    let records = {
        let later = receivers.records();
        assert_eq!(later, records, "nothing more arrived");
        later
    };
    assert!(requests(&records, &format!("/{NTFY_TOPIC}")).is_empty());
    assert!(records["webhook"].as_array().unwrap().is_empty());
    let pings = requests(&records, &format!("/ping/{HEALTHCHECKS_UUID}"));
    assert!(pings[0]["path"].as_str().unwrap().contains("/start?rid="));
    assert!(
        pings[1]["path"]
            .as_str()
            .unwrap()
            .starts_with(&format!("/ping/{HEALTHCHECKS_UUID}?rid="))
    );
}
