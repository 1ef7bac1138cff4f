//! What the page does: sign in and out, ask for a run or a verification, restore (the dry run
//! first, then the change after a separate confirmation, both by `backup-sidecar restore` itself),
//! download a file or a folder (streamed from borg, never staged), and report progress (server-sent
//! events, and the same as JSON for the script's fallback).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use super::auth::{COOKIE, User};
use super::pages::{Layout, list_archives, login_failed};
use super::{App, csrf_ok, log_action, render};
use crate::catalog::{self, Catalog, Kind};
use crate::remote::borg;
use crate::remote::process::Streaming;
use crate::remote::ssh::Session;
use crate::report::{Trigger, TriggerKind};
use crate::tasks::restore::inside;

#[derive(Deserialize)]
pub struct LoginForm {
    password: String,
}

/// Signs in with the password: a session cookie (`HttpOnly`, `SameSite=Strict`).
pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    match app.auth.login(peer.ip(), form.password).await {
        Ok(session) => {
            tracing::info!(user = "admin", peer = %peer.ip(), "web: signed in");
            (
                [(
                    header::SET_COOKIE,
                    format!("{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"),
                )],
                Redirect::to("/"),
            )
                .into_response()
        }
        Err(why) => {
            tracing::warn!(peer = %peer.ip(), why = %why, "web: a sign-in was refused");
            login_failed(why)
        }
    }
}

#[derive(Deserialize)]
pub struct Token {
    csrf: String,
}

/// Signs out.
pub async fn logout(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
    Form(form): Form<Token>,
) -> Response {
    if !csrf_ok(&user, &form.csrf) {
        return refused();
    }
    app.auth.logout(&headers);
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

fn refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "refused: the form's token is not this session's (reload the page)\n",
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct RunForm {
    csrf: String,
    #[serde(default)]
    snapshot: Option<String>,
}

/// Asks the daemon for a run now (after the one in progress, if any), as SIGUSR1 does.
pub async fn run(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Form(form): Form<RunForm>,
) -> Response {
    if !csrf_ok(&user, &form.csrf) {
        return refused();
    }
    let snapshot = form.snapshot.is_some_and(|s| s == "1");
    log_action(
        &user,
        "run",
        if snapshot {
            "mirror + snapshot"
        } else {
            "mirror"
        },
    );
    let _ = app.runs.send(Trigger {
        kind: TriggerKind::Web,
        snapshot,
    });
    Redirect::to("/?asked=run").into_response()
}

/// Asks the daemon for a verification now.
pub async fn verify(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Form(form): Form<Token>,
) -> Response {
    if !csrf_ok(&user, &form.csrf) {
        return refused();
    }
    log_action(&user, "verify", "");
    let _ = app.checks.send(());
    Redirect::to("/?asked=verify").into_response()
}

#[derive(Deserialize)]
pub struct RestoreForm {
    csrf: String,
    /// `mirror`, `latest` or an archive's name.
    from: String,
    /// A volume (or `_bind-...`), for a volume or a path restore.
    #[serde(default)]
    volume: String,
    /// A path inside the volume; empty for the whole volume.
    #[serde(default)]
    path: String,
    /// A compose project, for a project restore.
    #[serde(default)]
    project: String,
    /// Present on the confirmation: go ahead.
    #[serde(default)]
    confirm: Option<String>,
}

#[derive(Template)]
#[template(path = "restore.html")]
struct RestorePage {
    layout: Layout,
    what: String,
    output: String,
    ok: bool,
    confirmed: bool,
    running: bool,
    from: String,
    volume: String,
    path: String,
    project: String,
}

/// A restore: without `confirm`, its dry run (what would change) and a confirmation form; with
/// it, the restore. Both run `backup-sidecar restore`, as a user would in a shell, so the page and
/// the command are one path; the run lock makes either wait for no one (a run in progress makes
/// it refuse, and the page says so).
pub async fn restore(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Form(form): Form<RestoreForm>,
) -> Response {
    if !csrf_ok(&user, &form.csrf) {
        return refused();
    }
    let mut args: Vec<String> = vec!["restore".into()];
    let what = if !form.project.is_empty() {
        args.extend(["--project".into(), form.project.clone()]);
        format!("compose project {}", form.project)
    } else {
        if form.volume.is_empty() || form.volume.starts_with('-') {
            return (StatusCode::BAD_REQUEST, "name a volume or a project\n").into_response();
        }
        args.push(form.volume.clone());
        if form.path.is_empty() {
            format!("volume {}", form.volume)
        } else {
            match inside(&form.path) {
                Ok(path) => {
                    args.extend(["--path".into(), path.clone()]);
                    format!("{path} of {}", form.volume)
                }
                Err(e) => return (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response(),
            }
        }
    };
    if form.from.starts_with('-') {
        return (StatusCode::BAD_REQUEST, "not an archive\n").into_response();
    }
    args.extend(["--from".into(), form.from.clone()]);
    let confirmed = form.confirm.is_some();
    args.push(if confirmed { "--yes" } else { "--dry-run" }.into());
    log_action(
        &user,
        if confirmed {
            "restore"
        } else {
            "restore preview"
        },
        &format!("{what} from {}", form.from),
    );
    let (ok, output) = own_command(&args).await;
    render(RestorePage {
        layout: Layout::new(&app, &user, "Restore", "archives"),
        what,
        output,
        ok,
        confirmed,
        running: app.store.running().is_some(),
        from: form.from,
        volume: form.volume,
        path: form.path,
        project: form.project,
    })
}

/// Runs this program with `args` (a command of its own: the same code as in a shell), with the
/// daemon's environment; whether it succeeded, and what it printed.
async fn own_command(args: &[String]) -> (bool, String) {
    let exe = std::env::current_exe().unwrap_or_else(|_| "backup-sidecar".into());
    let out = tokio::process::Command::new(exe)
        .args(args)
        .env("LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match out {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, format!("cannot start the restore: {e}")),
    }
}

#[derive(Deserialize)]
pub struct DownloadQuery {
    path: String,
}

/// A file (its bytes) or a folder (a tar stream) of an archive, streamed from a borg on this
/// side as it reads the archive: never staged in memory or on disk.
pub async fn download(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(archive): Path<String>,
    Query(query): Query<DownloadQuery>,
) -> Response {
    let path = match inside(&query.path) {
        Ok(path) => path,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response(),
    };
    let config = &app.config;
    let Ok(borg_config) = borg::repository(config) else {
        return (StatusCode::NOT_FOUND, "no repository\n").into_response();
    };
    if !list_archives(&app)
        .await
        .is_ok_and(|l| l.iter().any(|a| a.name == archive))
    {
        return (StatusCode::NOT_FOUND, "no such archive\n").into_response();
    }
    // What it is, from the index when there is one (a folder goes as tar).
    let index = catalog::index_path(&config.state_dir, &archive);
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", &path));
    let kind = Catalog::open(&index).ok().and_then(|c| {
        let mut from = 0;
        loop {
            let folder = c.folder(parent, from, 1000).ok()??;
            if let Some(e) = folder.entries.iter().find(|e| e.name == name) {
                return Some(e.kind);
            }
            from += 1000;
            if from >= folder.total {
                return None;
            }
        }
    });
    let folder = kind == Some(Kind::Dir);
    log_action(&user, "download", &format!("{archive}:{path}"));
    let cancel = CancellationToken::new();
    let session = match Session::open(config, &cancel).await {
        Ok(session) => session,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("{e:#}\n")).into_response(),
    };
    let scratch = match tempfile::tempdir_in(&config.state_dir) {
        Ok(dir) => dir,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let cmd = if folder {
        session
            .ssh
            .borg_export_tar(borg_config, &archive, &path, scratch.path())
    } else {
        session
            .ssh
            .borg_extract_stdout(borg_config, &archive, &path, scratch.path())
    };
    let child = match Streaming::spawn(&cmd) {
        Ok(child) => child,
        Err(e) => {
            session.close().await;
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response();
        }
    };
    let file_name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let (file_name, kind) = if folder {
        (format!("{file_name}.tar"), "application/x-tar")
    } else {
        (file_name, "application/octet-stream")
    };
    // The connection and the scratch directory live as long as the stream.
    let body = Body::from_stream(DownloadStream::new(child, session, scratch));
    (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// A download's bytes, holding what they come through until they end.
struct DownloadStream {
    reader: ReaderStream<tokio::process::ChildStdout>,
    _child: Streaming,
    session: Option<Session>,
    _scratch: tempfile::TempDir,
}

impl DownloadStream {
    fn new(mut child: Streaming, session: Session, scratch: tempfile::TempDir) -> Self {
        let stdout = child.take_stdout().expect("stdout is piped");
        DownloadStream {
            reader: ReaderStream::new(stdout),
            _child: child,
            session: Some(session),
            _scratch: scratch,
        }
    }
}

impl Stream for DownloadStream {
    type Item = std::io::Result<axum::body::Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = std::pin::Pin::new(&mut self.reader).poll_next(cx);
        if let std::task::Poll::Ready(None) = next
            && let Some(session) = self.session.take()
        {
            tokio::spawn(session.close());
        }
        next
    }
}

impl Drop for DownloadStream {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            tokio::spawn(session.close());
        }
    }
}

/// The run in progress and the last run, for the live view.
#[derive(Serialize)]
struct Progress {
    running: Option<RunningView>,
    last: Option<LastView>,
}

#[derive(Serialize)]
struct RunningView {
    seconds: i64,
    bytes: String,
}

#[derive(Serialize)]
struct LastView {
    number: usize,
    outcome: String,
    summary: String,
}

fn progress_now(app: &App) -> Progress {
    let history = app.store.load();
    Progress {
        running: app.store.running().map(|r| RunningView {
            seconds: (chrono::Utc::now() - r.started).num_seconds(),
            bytes: crate::format::human_bytes(r.bytes),
        }),
        last: history.runs.last().map(|r| LastView {
            number: history.runs.len() - 1,
            outcome: r.outcome.to_string(),
            summary: format!(
                "{} volume(s), {}, longest freeze {} ms{}",
                r.volumes,
                crate::format::human_bytes(r.bytes),
                r.max_pause_ms,
                r.archive
                    .as_ref()
                    .map(|a| format!(", archive {a}"))
                    .unwrap_or_default()
            ),
        }),
    }
}

/// The progress as JSON: the script's fallback when server-sent events do not get through.
pub async fn progress(State(app): State<Arc<App>>) -> Response {
    axum::Json(progress_now(&app)).into_response()
}

/// The progress as server-sent events, one a second.
pub async fn events(
    State(app): State<Arc<App>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = stream::unfold(app, |app| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let data = serde_json::to_string(&progress_now(&app)).unwrap_or_default();
        Some((Ok(Event::default().event("progress").data(data)), app))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
