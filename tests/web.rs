//! The web page in a real browser (Debian's chromium through chromedriver), against the sidecar
//! image, a real engine and the guarded remote: sign in, the overview's health (current, then
//! stale past BACKUP_MAX_AGE), a run started from the page with its progress and outcome, the
//! history plot (a point per run), an archive browsed three levels down, a file downloaded and
//! compared, a deleted file restored with its preview then its confirmation; and every change
//! refused without a session, with a forged origin, with a replayed token, and a path with `..`.
//!
//! With `BS_SCREENSHOTS=DIR` the overview, the history and the browser are saved there, light
//! and dark, desktop and phone (`docs/screenshots/` holds the ones the README shows).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::{Browser, Options};
use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const PASSWORD: &str = "correct horse battery staple";
/// The page's health turns stale this long after the last success.
const MAX_AGE: &str = "45s";

/// curl against the page: status code and body. `cookie` is `bs_session=...` or empty.
fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "30"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Where screenshots go, if asked.
fn shots() -> Option<PathBuf> {
    std::env::var_os("BS_SCREENSHOTS").map(PathBuf::from)
}

fn file_meta(volume: &str, path: &str) -> Option<(u32, u32, u32, i64, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let path = PathBuf::from(format!("/var/lib/docker/volumes/{volume}/_data/{path}"));
    let meta = std::fs::metadata(&path).ok()?;
    Some((
        meta.uid(),
        meta.gid(),
        meta.mode(),
        meta.mtime(),
        std::fs::read(&path).unwrap(),
    ))
}

#[test]
fn the_page_shows_backups_and_brings_one_file_back() {
    let env = Env::new("web");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(
        &volume,
        "mkdir -p /data/photos/2026/12 && head -c 300000 /dev/urandom > /data/photos/2026/12/pic.jpg \
         && echo hello > /data/readme.txt && chown 1000:1000 /data/photos/2026/12/pic.jpg \
         && chmod 640 /data/photos/2026/12/pic.jpg \
         && touch -d '2021-05-06 07:08:09' /data/photos/2026/12/pic.jpg",
    );
    let original = file_meta(&volume, "photos/2026/12/pic.jpg").unwrap();
    let app = env.app("app", &volume, "sleep infinity");
    let sidecar = env.sidecar_with(
        &remote,
        &[
            ("BACKUP_RUN_ON_START", "false"),
            ("BACKUP_WEB_ADDR", ":8080"),
            ("BACKUP_WEB_PASSWORD", PASSWORD),
            ("BACKUP_WEB_HOSTS", "127.0.0.1"),
            ("BACKUP_MAX_AGE", MAX_AGE),
            ("TZ", "Europe/Berlin"),
        ],
        &["-p", "127.0.0.1::8080"],
    );
    let port = common::prometheus::published_port(&sidecar, 8080);
    let base = format!("http://127.0.0.1:{port}");
    wait_until("the page answers", Duration::from_secs(20), || {
        curl(&format!("{base}/login"), &[]).0 == 200
    });

    // Without a session: the pages send to the login, changes are refused.
    assert_eq!(curl(&format!("{base}/"), &[]).0, 303);
    let post = |path: &str, args: &[&str]| {
        let mut all = vec!["-X", "POST"];
        all.extend_from_slice(args);
        curl(&format!("{base}{path}"), &all)
    };
    assert_eq!(
        post(
            "/actions/run",
            &["-H", "Sec-Fetch-Site: same-origin", "-d", "csrf=x"]
        )
        .0,
        401
    );
    // Another name for the page (DNS rebinding) is refused before anything else.
    assert_eq!(
        curl(&format!("{base}/login"), &["-H", "Host: evil.example"]).0,
        421
    );

    // Sign in.
    let browser = Browser::desktop();
    browser.goto(&format!("{base}/"));
    browser.wait_until("the login form", |b| b.try_find("#login").is_some());
    browser.fill("#password", "wrong");
    browser.submit("#login");
    browser.wait_until("the refusal", |b| b.source().contains("wrong password"));
    browser.fill("#password", PASSWORD);
    browser.submit("#login");
    browser.wait_until("the overview", |b| b.try_find("#health").is_some());
    let session = browser
        .cookie("bs_session")
        .expect("a session cookie")
        .value;
    let cookie = format!("bs_session={session}");
    let csrf = browser
        .find("input[name=csrf]")
        .attr("value")
        .expect("a CSRF token in the forms");

    // Forged origin, missing origin, a wrong token: refused, with the session.
    let cookie_header = format!("Cookie: {cookie}");
    let forged = post(
        "/actions/run",
        &[
            "-H",
            &cookie_header,
            "-H",
            "Origin: http://evil.example",
            "-d",
            &format!("csrf={csrf}"),
        ],
    );
    assert_eq!(forged.0, 403, "{}", forged.1);
    let no_origin = post(
        "/actions/run",
        &["-H", &cookie_header, "-d", &format!("csrf={csrf}")],
    );
    assert_eq!(no_origin.0, 403, "{}", no_origin.1);
    let wrong_token = post(
        "/actions/run",
        &[
            "-H",
            &cookie_header,
            "-H",
            &format!("Origin: {base}"),
            "-d",
            "csrf=0000",
        ],
    );
    assert_eq!(wrong_token.0, 403, "{}", wrong_token.1);
    // Paths out of the archive or the volume.
    let escape = curl(
        &format!("{base}/download/any?path=..%2F..%2Fetc%2Fpasswd"),
        &["-H", &cookie_header],
    );
    assert_eq!(escape.0, 400, "{}", escape.1);
    let escape = post(
        "/restore",
        &[
            "-H",
            &cookie_header,
            "-H",
            &format!("Origin: {base}"),
            "-d",
            &format!("csrf={csrf}&from=latest&volume={volume}&path=..%2F..%2Fx"),
        ],
    );
    assert_eq!(escape.0, 400, "{}", escape.1);
    assert!(
        events_named(&sidecar, "run started").is_empty(),
        "nothing ran"
    );

    // A run from the page: its progress, then its outcome.
    let health = browser.text("#health");
    assert!(health.contains("current"), "{health}");
    browser.click("#run-snapshot");
    browser.wait_until_within("the run's outcome", RUN_TIMEOUT, |b| {
        b.text("#progress-text").contains("Run finished: success")
    });
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    assert_eq!(run["fields"]["trigger"], "web", "{run}");
    let archive = run["fields"]["archive"].as_str().unwrap().to_string();
    browser.goto(&format!("{base}/"));
    assert!(browser.text("#health").contains("Backups are current"));
    assert!(browser.text("#last-run").contains("success"));

    // A run asked for from a shell, waited for: its outcome is the exit status.
    let asked = docker_output(&["exec", &sidecar, "backup-sidecar", "backup", "--wait"]);
    let said = String::from_utf8_lossy(&asked.stdout).into_owned();
    assert!(
        asked.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&asked.stderr)
    );
    assert!(said.contains("run success"), "{said}");
    let second = wait_for_events(&sidecar, "run finished", 2, RUN_TIMEOUT).remove(1);
    assert_eq!(second["fields"]["archive"], "", "a mirror only: {second}");

    // History: one point per run.
    browser.goto(&format!("{base}/history"));
    let points = browser
        .find_all("figure.chart:first-of-type circle.point.s0")
        .len();
    assert_eq!(points, 2, "one point per run");
    assert_eq!(browser.find_all("#runs tbody tr").len(), 2);

    // Sources: the volume with its last success, and what freezes together.
    browser.goto(&format!("{base}/sources"));
    assert!(browser.text("#sources").contains(&volume));
    let groups = browser.text("#groups");
    assert!(
        groups.contains(&app) && groups.contains("pause"),
        "{groups}"
    );

    // Browse the archive three levels down (its index is built on the way).
    browser.goto(&format!("{base}/archives"));
    browser.click(&format!("a[href='/archives/{archive}']"));
    browser.wait_until_within("the archive's index", RUN_TIMEOUT, |b| {
        b.try_find("#entries").is_some()
    });
    for name in [volume.as_str(), "photos", "2026", "12"] {
        browser.click(&format!("#entries a.dir[href$='{}']", urlencode_tail(name)));
        browser.wait_until(&format!("folder {name}"), |b| {
            b.try_find(".crumbs")
                .is_some_and(|c| c.text().ends_with(name))
        });
    }
    let row = browser.find("#entries tbody tr");
    assert!(row.text().contains("pic.jpg"), "{}", row.text());
    assert!(row.text().contains("-rw-r-----"), "{}", row.text());
    if let Some(dir) = shots() {
        screenshots(&base, &session, &archive, &volume, &dir);
    }

    // Download the file and compare.
    let href = browser
        .find("#entries tbody tr a.download")
        .attr("href")
        .unwrap();
    let out = Command::new("curl")
        .args(["-s", "--fail", "-H", &cookie_header])
        .arg(format!("{base}{href}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "the download failed");
    assert_eq!(sha256(&out.stdout), sha256(&original.4));
    // Without a session, no download.
    assert_eq!(curl(&format!("{base}{href}"), &[]).0, 401);

    // Delete it, then restore it from the page: the preview, then the confirmation.
    env.in_volume(&volume, "rm /data/photos/2026/12/pic.jpg");
    browser.click("#entries tbody tr button.restore");
    browser.wait_until("the preview", |b| b.try_find("#restore-preview").is_some());
    assert!(
        browser.text("#restore-output").contains("pic.jpg"),
        "{}",
        browser.text("#restore-output")
    );
    assert_eq!(
        file_meta(&volume, "photos/2026/12/pic.jpg"),
        None,
        "the preview wrote nothing"
    );
    browser.click("#confirm button");
    browser.wait_until_within("the restore", RUN_TIMEOUT, |b| {
        b.try_find("#restore-result").is_some()
    });
    assert_eq!(
        browser.text("#restore-result"),
        "Restored.",
        "{}",
        browser.text("#restore-output")
    );
    assert_eq!(
        file_meta(&volume, "photos/2026/12/pic.jpg").as_ref(),
        Some(&original),
        "owner, mode, time and content"
    );
    assert_running_not_paused(&app);

    // A replayed token: signed out, the old session and its token no longer work.
    browser.goto(&format!("{base}/"));
    browser.click("form.logout button");
    browser.wait_until("the login form", |b| b.try_find("#login").is_some());
    let replayed = post(
        "/actions/run",
        &[
            "-H",
            &cookie_header,
            "-H",
            &format!("Origin: {base}"),
            "-d",
            &format!("csrf={csrf}"),
        ],
    );
    assert_eq!(replayed.0, 401, "{}", replayed.1);

    // Stale past BACKUP_MAX_AGE.
    let last = Instant::now();
    browser.fill("#password", PASSWORD);
    browser.submit("#login");
    browser.wait_until("the overview", |b| b.try_find("#health").is_some());
    wait_until("the health to go stale", Duration::from_secs(90), || {
        browser.goto(&format!("{base}/"));
        browser.text("#health").contains("NOT current")
    });
    assert!(last.elapsed() < Duration::from_secs(90));
    // Every action is in the log with who did it.
    let actions: Vec<String> = events_named(&sidecar, "web action")
        .iter()
        .map(|e| format!("{} {}", e["fields"]["user"], e["fields"]["action"]))
        .collect();
    assert!(
        actions.contains(&"\"admin\" \"run\"".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"\"admin\" \"restore\"".to_string()),
        "{actions:?}"
    );
}

/// The end of a folder link for `name` (what `href$=` matches).
fn urlencode_tail(name: &str) -> String {
    name.replace('%', "%25")
}

/// The overview, the history and a folder, light and dark, desktop and phone.
fn screenshots(base: &str, session: &str, archive: &str, volume: &str, dir: &PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    for (size, options) in [("desktop", Options::desktop()), ("phone", Options::phone())] {
        for dark in [false, true] {
            let options = if dark {
                options.clone().dark()
            } else {
                options.clone()
            };
            let browser = Browser::start(options);
            browser.goto(&format!("{base}/login"));
            browser.run("set the session cookie", async |driver| {
                let mut cookie = thirtyfour::Cookie::new("bs_session", session.to_string());
                cookie.set_path("/");
                driver.add_cookie(cookie).await
            });
            let theme = if dark { "dark" } else { "light" };
            for (page, url) in [
                ("overview", format!("{base}/")),
                ("history", format!("{base}/history")),
                (
                    "browser",
                    format!("{base}/archives/{archive}?path={volume}%2Fphotos%2F2026%2F12"),
                ),
            ] {
                browser.goto(&url);
                browser.wait_until(&format!("the {page}"), |b| b.try_find("main h1").is_some());
                browser.screenshot(&dir.join(format!("{page}-{theme}-{size}.png")));
            }
        }
    }
}
