//! The browser harness's own tests (tests/common/browser.rs), against a stand-in page served
//! here: no Docker and no sidecar, only Debian's chromium and chromedriver.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::browser::{Browser, Options};

/// The stand-in's pages: a link, a form, and light and dark colours.
const INDEX: &str = r#"<!doctype html>
<html><head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stand-in</title>
<style>
  body { background: #ffffff; color: #111111; font: 16px sans-serif; margin: 1rem; }
  @media (prefers-color-scheme: dark) { body { background: #102030; color: #eeeeee; } }
</style>
</head><body>
<h1>Stand-in page</h1>
<p><a id="next" href="/next">The next page</a></p>
<form id="greet" method="post" action="/greet">
  <label>Name <input id="name" name="name" required></label>
  <button type="submit">Greet</button>
</form>
</body></html>
"#;

const NEXT: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Next</title></head>
<body><h1>The next page</h1><a href="/">Back</a></body></html>
"#;

/// The cookie the stand-in sets with its index page.
const COOKIE: (&str, &str) = ("harness", "set-by-the-server");

/// A tiny HTTP/1.1 server on a free port of 127.0.0.1, a thread per connection, that closes
/// every connection after one answer. `GET /` sets [`COOKIE`] (HttpOnly, so only the browser
/// can read it, not the page); `POST /greet` answers with the form's `name` and whether the
/// cookie came back.
struct StandIn {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    std::thread::spawn(move || serve(stream));
                }
            }
        });
        StandIn {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop up to see the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return; // a speculative connection, or the wake-up in Drop
    }
    let mut content_length = 0;
    let mut cookie_header = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.parse().unwrap_or(0),
            "cookie" => cookie_header = value.to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; content_length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, extra, page) = match (method, path) {
        ("GET", "/") => (
            "200 OK",
            format!(
                "Set-Cookie: {}={}; Path=/; HttpOnly; SameSite=Lax\r\n",
                COOKIE.0, COOKIE.1
            ),
            INDEX.to_string(),
        ),
        ("GET", "/next") => ("200 OK", String::new(), NEXT.to_string()),
        ("POST", "/greet") => {
            let form = String::from_utf8_lossy(&body);
            let name = form_field(&form, "name").unwrap_or_default();
            let came_back = cookie_header
                .split(';')
                .any(|c| c.trim() == format!("{}={}", COOKIE.0, COOKIE.1));
            let page = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Greeted</title></head>\
                 <body><p id=\"result\">Hello, {}!</p><p id=\"cookie\">{}</p></body></html>",
                escape(&name),
                if came_back {
                    "The cookie came back."
                } else {
                    "No cookie."
                }
            );
            ("200 OK", String::new(), page)
        }
        _ => ("404 Not Found", String::new(), "not found".to_string()),
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         {extra}Connection: close\r\n\r\n{page}",
        page.len()
    );
}

/// A field of an `application/x-www-form-urlencoded` body.
fn form_field(form: &str, name: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            percent_encoding::percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A PNG's width and height, from its IHDR chunk; panics if `path` is no PNG.
fn png_size(path: &Path) -> (u32, u32) {
    let png = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "{} is not a PNG ({} bytes)",
        path.display(),
        png.len()
    );
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

const LIGHT: &str = "rgba(255, 255, 255, 1)";
const DARK: &str = "rgba(16, 32, 48, 1)";

#[test]
fn the_browser_harness_drives_a_real_chromium() {
    let site = StandIn::start();
    let shots = tempfile::tempdir().unwrap();

    let desktop = Browser::desktop();
    let (driver, session) = desktop.startup();
    eprintln!("browser harness: chromedriver ready in {driver:?}, the session in {session:?}");
    desktop.goto(&site.url("/"));
    assert_eq!(desktop.title(), "Stand-in");
    assert_eq!(desktop.text("h1"), "Stand-in page");
    assert_eq!(
        desktop.script("return [window.innerWidth, window.innerHeight]"),
        serde_json::json!([1280, 800])
    );

    // The server's cookie: HttpOnly, so only WebDriver sees it, not the page's script.
    let cookie = desktop
        .cookie(COOKIE.0)
        .unwrap_or_else(|| panic!("no cookie {}: {:?}", COOKIE.0, desktop.cookies()));
    assert_eq!(cookie.value, COOKIE.1);
    assert_eq!(cookie.http_only, Some(true));
    assert_eq!(desktop.script("return document.cookie"), "");

    // A link.
    desktop.click("a#next");
    desktop.wait_until("the next page", |b| b.url() == site.url("/next"));
    assert_eq!(desktop.text("h1"), "The next page");

    // A form, with a value that must survive encoding; the cookie goes back with it.
    desktop.goto(&site.url("/"));
    desktop.fill("#name", "Ada & <Lovelace>");
    assert_eq!(
        desktop.find("#name").prop("value").as_deref(),
        Some("Ada & <Lovelace>")
    );
    desktop.submit("form#greet");
    desktop.wait_until("the greeting", |b| b.try_find("#result").is_some());
    assert_eq!(desktop.text("#result"), "Hello, Ada & <Lovelace>!");
    assert_eq!(desktop.text("#cookie"), "The cookie came back.");

    // Light by default; dark when emulated, and light again after.
    desktop.goto(&site.url("/"));
    assert!(!desktop.prefers_dark());
    assert_eq!(desktop.find("body").css("background-color"), LIGHT);
    let light_png = shots.path().join("desktop-light.png");
    desktop.screenshot(&light_png);
    desktop.emulate_dark(Some(true));
    assert!(desktop.prefers_dark());
    assert_eq!(desktop.find("body").css("background-color"), DARK);
    desktop.emulate_dark(None);
    assert!(!desktop.prefers_dark());
    drop(desktop);

    // A phone, started dark.
    let phone = Browser::start(Options::phone().dark());
    phone.goto(&site.url("/"));
    assert!(
        phone.prefers_dark(),
        "--force-dark-mode gives prefers-color-scheme: dark"
    );
    assert_eq!(phone.find("body").css("background-color"), DARK);
    phone.emulate_dark(Some(false));
    assert!(!phone.prefers_dark());
    phone.emulate_dark(None);
    assert!(phone.prefers_dark());
    assert_eq!(
        phone.script("return [window.innerWidth, window.innerHeight]"),
        serde_json::json!([390, 844])
    );
    let dark_png = shots.path().join("phone-dark.png");
    phone.screenshot(&dark_png);
    phone.click("a#next");
    phone.wait_until("the next page", |b| b.url() == site.url("/next"));
    // Without a viewport <meta>, a phone lays the page out 980 px wide, as a real one does.
    assert_eq!(phone.script("return window.innerWidth"), 980);
    drop(phone);

    assert_eq!(png_size(&light_png), (1280, 800));
    assert_eq!(png_size(&dark_png), (390, 844));
    for png in [&light_png, &dark_png] {
        assert!(
            std::fs::metadata(png).unwrap().len() > 1000,
            "{}",
            png.display()
        );
    }
    // To look at them: BROWSER_SHOTS=/some/dir cargo test --test browser
    if let Some(dir) = std::env::var_os("BROWSER_SHOTS") {
        for png in [&light_png, &dark_png] {
            std::fs::copy(png, Path::new(&dir).join(png.file_name().unwrap())).unwrap();
        }
    }
}

/// A failing wait panics with what it waited for, and the browser is gone afterwards: its
/// processes, and its profile directory.
#[test]
fn the_browser_harness_cleans_up_after_a_panic() {
    let site = StandIn::start();
    let browser = Browser::desktop();
    let group = browser.process_group();
    let profile = browser.profile().to_path_buf();
    let url = site.url("/");
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        browser.goto(&url);
        browser.wait_until_within(
            "a heading that never comes",
            Duration::from_millis(500),
            |b| b.try_find("h2").is_some(),
        );
    }))
    .expect_err("the wait fails");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("timed out after 500ms waiting for a heading that never comes")
            && message.contains("Stand-in"),
        "{message}"
    );
    assert!(
        !common::browser::group_runs(group as libc::pid_t),
        "a process of chromedriver's group {group} still runs"
    );
    assert!(!profile.exists(), "{} is still there", profile.display());
}
