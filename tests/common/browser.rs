//! A real browser for the web page's end-to-end tests: Debian's `chromium`, headless, driven over
//! WebDriver by Debian's `chromedriver` (both installed by `scripts/provision.sh --tests`; nothing
//! is downloaded) through the `thirtyfour` crate.
//!
//! [`Browser`] is synchronous like the rest of these tests: it keeps a small tokio runtime and
//! blocks on each WebDriver call. Every method panics with what it was doing on any error.
//!
//! ```ignore
//! let browser = Browser::start(Options::phone().dark());
//! browser.goto(&format!("{base}/"));
//! browser.fill("#name", "Ada");
//! browser.submit("form#greet");
//! browser.wait_until("the greeting", |b| b.text("#result").starts_with("Hello"));
//! browser.screenshot(&dir.join("phone.png"));
//! ```
//!
//! Each `Browser` has its own chromedriver (on a free port, in a process group of its own with
//! its browser) and a fresh profile directory. Dropping it, also when the test panics, ends the
//! session, kills that process group, waits until it is gone and removes the profile; when the
//! test is panicking it first prints the tail of chromedriver's log (which has the browser's
//! own log too: console messages, errors).
//!
//! For synchronous tests only: not inside an async runtime (`#[tokio::test]`), where blocking
//! on the browser's runtime panics.

use std::fmt;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use thirtyfour::ChromeCapabilities;
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;

/// Debian's browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long [`Browser::find`] and [`Browser::wait_until`] wait by default.
pub const WAIT: Duration = Duration::from_secs(10);

/// A page load's limit (WebDriver's default is 5 minutes).
const PAGE_LOAD: Duration = Duration::from_secs(30);
/// One WebDriver request's limit.
const REQUEST: Duration = Duration::from_secs(60);
/// How long chromedriver may take to answer `/status` as ready.
const DRIVER_READY: Duration = Duration::from_secs(20);
/// How long ending the session may take before the processes are killed anyway.
const QUIT: Duration = Duration::from_secs(10);

/// The size of the page's viewport (the screenshots have it too), and how it looks.
#[derive(Clone, Debug)]
pub struct Options {
    /// Viewport width in CSS pixels (and screenshot pixels: the device scale factor is 1).
    pub width: u32,
    pub height: u32,
    /// Emulates a phone (`Emulation.setDeviceMetricsOverride` with `mobile`): the page is laid
    /// out at its `<meta name="viewport">` width, or 980 px wide without one, as on a phone.
    pub mobile: bool,
    /// `prefers-color-scheme: dark` (chromium's `--force-dark-mode`).
    pub dark: bool,
}

impl Options {
    /// A desktop window: 1280x800.
    pub fn desktop() -> Options {
        Options {
            width: 1280,
            height: 800,
            mobile: false,
            dark: false,
        }
    }

    /// A phone: 390x844 (an iPhone 12-15's viewport), emulated as mobile.
    pub fn phone() -> Options {
        Options {
            width: 390,
            height: 844,
            mobile: true,
            dark: false,
        }
    }

    /// The same, in dark mode.
    pub fn dark(mut self) -> Options {
        self.dark = true;
        self
    }
}

/// A headless chromium with its own chromedriver. See the module's documentation.
pub struct Browser {
    /// `None` once the session has ended (in `Drop`).
    driver: Option<WebDriver>,
    rt: tokio::runtime::Runtime,
    /// chromedriver, leader of a process group that the browser's processes join.
    chromedriver: Child,
    /// The browser's `--user-data-dir`, removed after its processes are gone (fields drop after
    /// `Drop::drop`).
    profile: tempfile::TempDir,
    /// chromedriver's log, and its stdout and stderr.
    logs: tempfile::TempDir,
    options: Options,
    driver_ready: Duration,
    session_ready: Duration,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("chromedriver", &self.chromedriver.id())
            .field("profile", &self.profile.path())
            .field("options", &self.options)
            .finish()
    }
}

fn missing(tool: &str) -> String {
    format!(
        "{tool} is missing: run scripts/test.sh, whose scripts/provision.sh installs Debian's \
         chromium and chromium-driver packages (the tests never skip)"
    )
}

/// A port nothing listens on now. chromedriver binds it a moment later; should another process
/// take it in between, chromedriver exits and [`Browser::start`] tries another.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Browser {
    /// A desktop browser (1280x800).
    pub fn desktop() -> Browser {
        Browser::start(Options::desktop())
    }

    /// A phone (390x844).
    pub fn phone() -> Browser {
        Browser::start(Options::phone())
    }

    /// Starts chromedriver and a chromium session with `options`; panics, with chromedriver's
    /// log, if either does not come up.
    pub fn start(options: Options) -> Browser {
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "Browser is for synchronous tests: it cannot block (nor be dropped) inside an async \
             runtime"
        );
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(Path::new(tool).exists(), "{}", missing(tool));
        }
        // reqwest (under thirtyfour) builds a TLS configuration even for plain HTTP; this crate
        // builds reqwest without a crypto provider and uses ring (src/ops/notify/deliver.rs).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the browser");
        let logs = tempfile::Builder::new()
            .prefix("bs-test-chromedriver-")
            .tempdir()
            .unwrap();
        let profile = tempfile::Builder::new()
            .prefix("bs-test-browser-")
            .tempdir()
            .unwrap();

        let started = Instant::now();
        let (chromedriver, port) = spawn_chromedriver(logs.path());
        let driver_ready = started.elapsed();
        let mut browser = Browser {
            driver: None,
            rt,
            chromedriver,
            profile,
            logs,
            options,
            driver_ready,
            session_ready: Duration::ZERO,
        };

        let started = Instant::now();
        let caps = browser.capabilities();
        let server = format!("http://127.0.0.1:{port}");
        // Its own client: a proxy from the environment must not carry requests to the loopback.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST)
            .build()
            .expect("an HTTP client for chromedriver");
        let driver = browser
            .rt
            .block_on(async {
                WebDriver::builder(server, caps)
                    .client(client)
                    .request_timeout(REQUEST)
                    .await
            })
            .unwrap_or_else(|e| {
                // Dropping `browser` while panicking prints chromedriver's log.
                panic!("browser: no chromium session: {e}")
            });
        browser.driver = Some(driver);
        let (width, height, mobile) = (
            browser.options.width,
            browser.options.height,
            browser.options.mobile,
        );
        browser.run("setting up the session", async |driver| {
            driver.set_page_load_timeout(PAGE_LOAD).await?;
            // The window alone cannot make a phone: chromium's windows are at least 500 px
            // wide, and a window's height includes room for a toolbar even when headless.
            driver
                .cdp()
                .emulation()
                .set_device_metrics_override(width, height, 1.0, mobile)
                .await
        });
        browser.session_ready = started.elapsed();
        browser
    }

    fn capabilities(&self) -> ChromeCapabilities {
        let mut caps = DesiredCapabilities::chrome();
        let o = &self.options;
        caps.set_binary(CHROMIUM).unwrap();
        caps.set_headless().unwrap();
        caps.set_no_sandbox().unwrap(); // the tests run as root
        caps.set_disable_gpu().unwrap();
        for arg in [
            // No connection anywhere but to the page: this network refuses them, and each try
            // costs time.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-proxy-server",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", self.profile.path().display()),
            &format!("--window-size={},{}", o.width, o.height),
        ] {
            caps.add_arg(arg).unwrap();
        }
        if o.dark {
            caps.add_arg("--force-dark-mode").unwrap();
        }
        caps
    }

    /// Runs `f` with the session on the browser's runtime: for whatever thirtyfour offers beyond
    /// these methods. Panics with `what` and the error.
    pub fn run<T>(&self, what: &str, f: impl AsyncFnOnce(&WebDriver) -> WebDriverResult<T>) -> T {
        let driver = self.driver.as_ref().expect("the session is open");
        self.rt
            .block_on(f(driver))
            .unwrap_or_else(|e| panic!("browser: {what}: {e}"))
    }

    /// Blocks on `future` on the browser's runtime (for futures of thirtyfour's own types, such
    /// as [`Element::web_element`]'s methods).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// The session (to pass to [`Browser::block_on`]).
    pub fn driver(&self) -> &WebDriver {
        self.driver.as_ref().expect("the session is open")
    }

    /// The options it was started with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// How long chromedriver took to answer ready, and then the session to open (chromium's
    /// start included) and be set up.
    pub fn startup(&self) -> (Duration, Duration) {
        (self.driver_ready, self.session_ready)
    }

    /// Opens `url` and waits for its load event.
    pub fn goto(&self, url: &str) {
        self.run(&format!("opening {url}"), async |d| d.goto(url).await);
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.run("reading the URL", async |d| d.current_url().await)
            .to_string()
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.run("reading the title", async |d| d.title().await)
    }

    /// The page's HTML as it is now.
    pub fn source(&self) -> String {
        self.run("reading the page source", async |d| d.source().await)
    }

    /// The first element that `css` selects, waiting up to [`WAIT`] for one to exist.
    pub fn find(&self, css: &str) -> Element<'_> {
        let mut found = None;
        self.wait_until(&format!("an element {css:?}"), |_| {
            found = self.try_find(css);
            found.is_some()
        });
        found.expect("found")
    }

    /// The first element that `css` selects now, if any.
    pub fn try_find(&self, css: &str) -> Option<Element<'_>> {
        self.find_all(css).into_iter().next()
    }

    /// Every element that `css` selects now, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        self.run(&format!("finding {css:?}"), async |d| {
            d.find_all(By::Css(css)).await
        })
        .into_iter()
        .map(|el| Element {
            browser: self,
            el,
            css: css.to_string(),
        })
        .collect()
    }

    /// Clicks the element `css` selects (a real click: the element must be visible and not
    /// covered).
    pub fn click(&self, css: &str) {
        self.find(css).click();
    }

    /// Replaces the value of the form field `css` selects by typing `value` into it.
    pub fn fill(&self, css: &str, value: &str) {
        self.find(css).fill(value);
    }

    /// Submits the form `css` selects as its submit button would (`requestSubmit()`: the form's
    /// validation and submit handlers run). Navigation follows asynchronously: wait for what
    /// the next page shows.
    pub fn submit(&self, form_css: &str) {
        let form = self.find(form_css);
        let arg = form.el.to_json().expect("an element as JSON");
        self.run(&format!("submitting {form_css:?}"), async |d| {
            d.execute("arguments[0].requestSubmit()", vec![arg]).await
        });
    }

    /// The rendered text of the element `css` selects (waiting for it as [`Browser::find`]).
    /// An element the page replaced between finding and reading it (a re-rendered panel) is
    /// found again, so the text is always that of the element the page shows now.
    pub fn text(&self, css: &str) -> String {
        let mut text = None;
        self.wait_until(&format!("the text of {css:?}"), |_| {
            let Some(el) = self.try_find(css) else {
                return false;
            };
            match self.block_on(el.el.text()) {
                Ok(t) => text = Some(t),
                Err(e) if matches!(*e, WebDriverErrorInner::StaleElementReference(..)) => {}
                Err(e) => panic!("browser: reading the text of {css:?}: {e}"),
            }
            text.is_some()
        });
        text.expect("read")
    }

    /// Runs `script` in the page (a function body: `return` gives the value) and returns what
    /// it returned.
    pub fn script(&self, script: &str) -> Value {
        self.run(&format!("running {script:?}"), async |d| {
            d.execute(script, Vec::new()).await
        })
        .json()
        .clone()
    }

    /// Whether the page sees `prefers-color-scheme: dark`.
    pub fn prefers_dark(&self) -> bool {
        self.script("return window.matchMedia('(prefers-color-scheme: dark)').matches")
            .as_bool()
            .expect("matchMedia gives a boolean")
    }

    /// Emulates `prefers-color-scheme` in this tab from now on (CDP
    /// `Emulation.setEmulatedMedia`): `Some(true)` dark, `Some(false)` light, `None` back to
    /// the browser's own (dark when started with [`Options::dark`]).
    pub fn emulate_dark(&self, dark: Option<bool>) {
        let features = match dark {
            Some(dark) => serde_json::json!([{
                "name": "prefers-color-scheme",
                "value": if dark { "dark" } else { "light" },
            }]),
            None => serde_json::json!([]),
        };
        self.run("emulating prefers-color-scheme", async |d| {
            d.cdp()
                .send_raw(
                    "Emulation.setEmulatedMedia",
                    serde_json::json!({ "features": features }),
                )
                .await
        });
    }

    /// The cookie `name` that the browser holds for the current page, if any (HttpOnly ones
    /// too).
    pub fn cookie(&self, name: &str) -> Option<Cookie> {
        self.cookies().into_iter().find(|c| c.name == name)
    }

    /// All the cookies the browser holds for the current page.
    pub fn cookies(&self) -> Vec<Cookie> {
        self.run("reading the cookies", async |d| d.get_all_cookies().await)
    }

    /// Saves a PNG of the viewport to `path` (its directory must exist).
    pub fn screenshot(&self, path: &Path) {
        let png = self.run(
            &format!("taking a screenshot for {}", path.display()),
            async |d| d.screenshot_as_png().await,
        );
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Waits up to [`WAIT`] until `ready` holds, checking every 100 ms; panics naming `what`,
    /// with the page's URL and title. `ready` should not panic when the page is not there yet:
    /// use [`Browser::try_find`] in it, not [`Browser::find`] and what waits for an element.
    pub fn wait_until(&self, what: &str, ready: impl FnMut(&Browser) -> bool) {
        self.wait_until_within(what, WAIT, ready);
    }

    /// [`Browser::wait_until`] with another limit.
    pub fn wait_until_within(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&Browser) -> bool,
    ) {
        let started = Instant::now();
        while !ready(self) {
            if started.elapsed() >= timeout {
                let (url, title) = self
                    .rt
                    .block_on(async {
                        let d = self.driver();
                        Ok::<_, WebDriverError>((d.current_url().await?, d.title().await?))
                    })
                    .map(|(u, t)| (u.to_string(), t))
                    .unwrap_or_else(|e| (format!("? ({e})"), "?".into()));
                panic!(
                    "browser: timed out after {timeout:?} waiting for {what} (at {url}, titled \
                     {title:?})"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What chromedriver logged so far: each command and its answer, and the browser's own log
    /// (the page's console messages are its `INFO:CONSOLE` lines).
    pub fn log(&self) -> String {
        self.read_log("chromedriver.log")
    }

    /// What chromedriver printed (its start, and what Debian's `chromium` wrapper script
    /// prints).
    pub fn output(&self) -> String {
        self.read_log("chromedriver.out")
    }

    fn read_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(name)).unwrap_or_default()
    }

    /// The ends of [`Browser::output`] and [`Browser::log`], for a failure's message.
    fn logs_tail(&self) -> String {
        format!(
            "--- chromedriver's and the browser's output (last 30 lines) ---\n{}\n\
             --- chromedriver's log (last 60 lines) ---\n{}\n---",
            tail(&self.output(), 30),
            tail(&self.log(), 60)
        )
    }

    /// The browser's profile directory (removed when the browser is dropped).
    pub fn profile(&self) -> &Path {
        self.profile.path()
    }

    /// chromedriver's process id, also the id of the process group of the browser's processes.
    pub fn process_group(&self) -> u32 {
        self.chromedriver.id()
    }
}

/// Starts chromedriver on a free port, in a process group of its own, logging into `logs`, and
/// waits until it answers ready; tries another port if it exits first (its port taken).
fn spawn_chromedriver(logs: &Path) -> (Child, u16) {
    let mut tries = 0;
    loop {
        tries += 1;
        let port = free_port();
        let out = std::fs::File::create(logs.join("chromedriver.out")).unwrap();
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                logs.join("chromedriver.log").display()
            ))
            // The browser's own log (console messages, errors) into chromedriver's.
            .arg("--enable-chrome-logs")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Its browser inherits the group, so Drop can kill both at once.
            .process_group(0);
        // Dies with the test's thread: Drop does not run when the test process is killed
        // outright (scripts/cleanup.sh then ends the browser it leaves).
        // SAFETY: prctl is async-signal-safe, and the closure touches nothing else.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{} ({e})", missing(CHROMEDRIVER)));
        let started = Instant::now();
        loop {
            if status_ready(port) {
                return (child, port);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log =
                    std::fs::read_to_string(logs.join("chromedriver.out")).unwrap_or_default();
                assert!(
                    tries < 3,
                    "chromedriver exited ({status}) three times:\n{}",
                    tail(&log, 30)
                );
                break;
            }
            if started.elapsed() > DRIVER_READY {
                kill_group(&mut child);
                let log =
                    std::fs::read_to_string(logs.join("chromedriver.out")).unwrap_or_default();
                panic!(
                    "chromedriver was not ready within {DRIVER_READY:?}:\n{}",
                    tail(&log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether chromedriver on `port` answers `/status` with `"ready": true`. (It keeps the
/// connection open after its answer, whatever the request asks, so the answer is read up to its
/// `Content-Length`.)
fn status_ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|length| body.len() >= length) {
                return serde_json::from_str::<Value>(body)
                    .is_ok_and(|v| v["value"]["ready"] == true);
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Kills `child`'s process group (chromedriver and its browser), reaps `child`, and waits (up
/// to 5 s) until no process of the group runs any more, so the profile can be removed.
fn kill_group(child: &mut Child) {
    let group = child.id() as libc::pid_t;
    // SAFETY: a plain syscall on the group this harness created (its leader is our child, not
    // reaped yet, so the id cannot have been reused).
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let _ = child.wait();
    let started = Instant::now();
    while group_runs(group) && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process of process group `group` runs, zombies aside: the browser's processes,
/// orphaned by chromedriver's end, are reaped by init, which can take a second here.
pub fn group_runs(group: libc::pid_t) -> bool {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return false;
    };
    processes.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
    })
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs_tail());
        }
        // Nothing here may panic: a panic in a drop during a test's panic aborts the process,
        // leaving the browser behind.
        if let Some(driver) = self.driver.take() {
            // Ends the session (the browser quits); bounded, as a hung browser must not hang
            // the test. Marked as ended whatever came of it, so that thirtyfour does not try
            // again, blocking, when the last handle drops.
            let quitting = driver.clone();
            // (The timer must be made inside the runtime, or it panics.)
            let ended = self
                .rt
                .block_on(async { tokio::time::timeout(QUIT, quitting.quit()).await });
            if !matches!(ended, Ok(Ok(()))) {
                let _ = driver.leak();
            }
        }
        kill_group(&mut self.chromedriver);
    }
}

/// An element of the page, found by a CSS selector.
pub struct Element<'b> {
    browser: &'b Browser,
    el: WebElement,
    css: String,
}

impl fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Element({:?})", self.css)
    }
}

impl Element<'_> {
    fn run<T>(&self, what: &str, f: impl AsyncFnOnce(&WebElement) -> WebDriverResult<T>) -> T {
        self.browser
            .block_on(f(&self.el))
            .unwrap_or_else(|e| panic!("browser: {what} {:?}: {e}", self.css))
    }

    /// Clicks it.
    pub fn click(&self) {
        self.run("clicking", async |el| el.click().await);
    }

    /// Clears it and types `value`.
    pub fn fill(&self, value: &str) {
        self.run("filling", async |el| {
            el.clear().await?;
            el.send_keys(value).await
        });
    }

    /// Its rendered text.
    pub fn text(&self) -> String {
        self.run("reading the text of", async |el| el.text().await)
    }

    /// Its attribute `name`, as in the HTML.
    pub fn attr(&self, name: &str) -> Option<String> {
        self.run("reading an attribute of", async |el| el.attr(name).await)
    }

    /// Its property `name` (a form field's current `value`, `checked`, ...).
    pub fn prop(&self, name: &str) -> Option<String> {
        self.run("reading a property of", async |el| el.prop(name).await)
    }

    /// The computed value of its CSS property `name` (a colour as `rgba(r, g, b, a)`).
    pub fn css(&self, name: &str) -> String {
        self.run("reading a style of", async |el| el.css_value(name).await)
    }

    /// Whether it is displayed.
    pub fn is_displayed(&self) -> bool {
        self.run("checking the display of", async |el| {
            el.is_displayed().await
        })
    }

    /// thirtyfour's element, for anything else (with [`Browser::block_on`]).
    pub fn web_element(&self) -> &WebElement {
        &self.el
    }
}
