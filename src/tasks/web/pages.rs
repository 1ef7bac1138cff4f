//! What the page shows, each from the one source of its facts: the run history (overview,
//! history, a run, sources), the repository's listing (archives), an archive's index (its
//! folders), and the configuration (settings, secrets masked).

use std::sync::Arc;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::auth::User;
use super::view::{self, Chart, When};
use super::{App, render};
use crate::catalog::{self, Catalog, Kind};
use crate::ops::history::{History, RunRecord};
use crate::ops::status;
use crate::remote::borg::{self, ArchiveEntry};
use crate::remote::ssh::Session;
use crate::tasks::browse::Indexing;

/// What every page's frame needs.
pub struct Layout {
    /// The page's title.
    pub title: String,
    /// Which tab is open.
    pub tab: &'static str,
    /// Who is signed in.
    pub user: String,
    /// The session's CSRF token, for the forms.
    pub csrf: String,
    /// The sidecar's time zone.
    pub tz: String,
    /// The engine's host name.
    pub host: String,
    /// The page refreshes itself (a run or an index in progress), for browsers without the
    /// script.
    pub refresh: bool,
}

impl Layout {
    pub fn new(app: &App, user: &User, title: &str, tab: &'static str) -> Layout {
        Layout {
            title: title.to_string(),
            tab,
            user: user.name.clone(),
            csrf: user.csrf.clone(),
            tz: app.config.tz.to_string(),
            host: app.host.clone(),
            refresh: false,
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    error: Option<String>,
}

/// The login form.
pub async fn login_form() -> Response {
    render(Login { error: None })
}

/// The login form again, saying why.
pub fn login_failed(error: String) -> Response {
    let mut response = render(Login { error: Some(error) });
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
}

/// One run, as the tables show it.
pub struct RunRow {
    /// Its number in the history (its link).
    pub number: usize,
    /// When it started.
    pub started: When,
    /// Its duration, for people.
    pub duration: String,
    /// `success` or `failed`.
    pub outcome: String,
    /// What started it.
    pub trigger: String,
    /// Volumes mirrored and their size.
    pub volumes: String,
    /// Its longest freeze.
    pub freeze_ms: u64,
    /// Bytes sent.
    pub sent: String,
    /// The archive it made.
    pub archive: String,
    /// Why it failed.
    pub error: String,
}

fn run_row(number: usize, run: &RunRecord, app: &App) -> RunRow {
    let now = Utc::now();
    RunRow {
        number,
        started: view::when(Some(run.started), app.config.tz, now).expect("a time"),
        duration: format!(
            "{:.1} s",
            (run.finished - run.started).num_milliseconds() as f64 / 1000.0
        ),
        outcome: run.outcome.to_string(),
        trigger: run.trigger.clone(),
        volumes: format!("{}, {}", run.volumes, view::bytes(run.bytes)),
        freeze_ms: run.max_pause_ms,
        sent: view::bytes(run.sent_bytes),
        archive: run.archive.clone().unwrap_or_default(),
        error: run.error.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    layout: Layout,
    healthy: bool,
    health: String,
    last_run: Option<RunRow>,
    next_sync: Option<When>,
    next_snapshot: Option<When>,
    last_success: Option<When>,
    archive: Option<(String, When, String)>,
    verification: Option<(String, When, String)>,
    snapshots: bool,
}

/// The overview: health in words and colour, the last and next runs, the last archive and
/// verification, and the buttons to run or verify now.
pub async fn overview(State(app): State<Arc<App>>, Extension(user): Extension<User>) -> Response {
    let config = &app.config;
    let status = crate::ops::current_status(config);
    let history = app.store.load();
    let now = Utc::now();
    let tz = config.tz;
    let mut layout = Layout::new(&app, &user, "Overview", "overview");
    layout.refresh = app.store.running().is_some();
    render(Overview {
        layout,
        healthy: status.healthy,
        health: status.health.clone(),
        last_run: history
            .runs
            .last()
            .map(|r| run_row(history.runs.len() - 1, r, &app)),
        next_sync: view::when(status.next_sync, tz, now),
        next_snapshot: view::when(status.next_snapshot, tz, now),
        last_success: view::when(history.last_success, tz, now),
        archive: status.last_archive.as_ref().map(|a| {
            (
                a.name.clone(),
                view::when(Some(a.time), tz, now).expect("a time"),
                format!(
                    "{} archived, {} added",
                    view::bytes(a.original_bytes),
                    view::bytes(a.deduplicated_bytes)
                ),
            )
        }),
        verification: status.last_verification.as_ref().map(|v| {
            (
                v.outcome.to_string(),
                view::when(Some(v.at), tz, now).expect("a time"),
                match &v.error {
                    Some(error) => error.clone(),
                    None => format!("{} file(s) compared, {} differ", v.compared, v.mismatches),
                },
            )
        }),
        snapshots: config.borg.is_some(),
    })
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    layout: Layout,
    charts: Vec<Chart>,
    runs: Vec<RunRow>,
    totals: String,
}

/// The run history: plots of the freezes, durations and bytes sent, and every kept run.
pub async fn history(State(app): State<Arc<App>>, Extension(user): Extension<User>) -> Response {
    let history: History = app.store.load();
    let mut runs: Vec<RunRow> = history
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| run_row(i, r, &app))
        .collect();
    runs.reverse();
    let totals = history
        .runs_total
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    render(HistoryPage {
        layout: Layout::new(&app, &user, "History", "history"),
        charts: view::charts(&history.runs),
        runs,
        totals,
    })
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    layout: Layout,
    run: RunRow,
    freezes: Vec<(String, u64)>,
    log: Vec<String>,
    snapshot: bool,
    thawed: bool,
}

/// One run: its report and its last log lines.
pub async fn run(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(number): Path<usize>,
) -> Response {
    let history = app.store.load();
    let Some(record) = history.runs.get(number) else {
        return (StatusCode::NOT_FOUND, "no such run in the history\n").into_response();
    };
    render(RunPage {
        layout: Layout::new(&app, &user, &format!("Run {number}"), "history"),
        run: run_row(number, record, &app),
        freezes: record
            .freezes
            .iter()
            .map(|(g, ms)| (g.clone(), *ms))
            .collect(),
        log: record.log.clone(),
        snapshot: record.snapshot,
        thawed: record.thawed,
    })
}

/// One source as the sources page shows it.
pub struct SourceRow {
    /// Its name in the mirror.
    pub name: String,
    /// Volume, bind directory or project files.
    pub kind: &'static str,
    /// Its group.
    pub group: String,
    /// The last time it was mirrored.
    pub last: Option<When>,
    /// Its size and files then.
    pub size: String,
    /// Its group's last freeze.
    pub freeze: String,
    /// Why its last attempt failed.
    pub error: String,
    /// Its exclude patterns, as the plan has them now.
    pub excludes: String,
}

/// A group of the plan as it stands now: what freezes together.
pub struct GroupRow {
    /// Its name.
    pub name: String,
    /// Its containers and how each is held still.
    pub members: String,
    /// Its sources.
    pub sources: String,
}

#[derive(Template)]
#[template(path = "sources.html")]
struct Sources {
    layout: Layout,
    sources: Vec<SourceRow>,
    groups: Vec<GroupRow>,
    plan_error: String,
}

/// Every source ever backed up (volumes, bind directories, projects' files).
pub async fn sources(State(app): State<Arc<App>>, Extension(user): Extension<User>) -> Response {
    let status = crate::ops::current_status(&app.config);
    let now = Utc::now();
    // The plan as a run would make it now: the same discovery and plan as `backup-sidecar plan`.
    let config = &app.config;
    let (plan, plan_error) =
        match crate::engine::discover::inventory(&app.docker, config.host_root.as_deref()).await {
            Ok(inventory) => (
                Some(crate::engine::plan::plan(
                    &inventory,
                    config.projects.as_deref(),
                    &config.exclude,
                )),
                String::new(),
            ),
            Err(e) => (None, format!("{e:#}")),
        };
    let excludes = |name: &str| {
        plan.iter()
            .flat_map(|p| p.groups.iter().flat_map(|g| &g.volumes))
            .find(|v| v.name == name)
            .map(|v| v.excludes.join(", "))
            .unwrap_or_default()
    };
    let groups = plan
        .iter()
        .flat_map(|p| &p.groups)
        .map(|g| GroupRow {
            name: g.name.clone(),
            members: if g.members.is_empty() {
                "nothing (one pass)".into()
            } else {
                g.members
                    .iter()
                    .map(|m| format!("{} ({})", m.name, m.quiesce))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            sources: g
                .volumes
                .iter()
                .map(|v| v.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let sources = status
        .volumes
        .iter()
        .map(|v: &status::VolumeStatus| SourceRow {
            name: v.volume.clone(),
            kind: if v.volume.starts_with(crate::engine::plan::BIND_PREFIX) {
                "bind directory"
            } else if v.volume.starts_with(crate::engine::plan::PROJECT_PREFIX) {
                "project files"
            } else {
                "volume"
            },
            group: v.group.clone(),
            last: view::when(v.last_mirrored, app.config.tz, now),
            size: format!("{}, {} files", view::bytes(v.bytes), v.files),
            freeze: v
                .last_freeze_ms
                .map(|ms| format!("{ms} ms"))
                .unwrap_or_default(),
            error: v.last_error.clone().unwrap_or_default(),
            excludes: excludes(&v.volume),
        })
        .collect();
    render(Sources {
        layout: Layout::new(&app, &user, "Sources", "sources"),
        sources,
        groups,
        plan_error,
    })
}

/// How long the repository's listing is kept before it is read again.
const ARCHIVES_FRESH: Duration = Duration::from_secs(60);

/// The repository's archives, newest first, from the cache or the remote. The cache is read
/// again when it is a minute old, or lacks the archive the last run made.
pub async fn list_archives(app: &App) -> anyhow::Result<Vec<ArchiveEntry>> {
    let newest = app.store.load().last_archive.map(|a| a.name);
    if let Some((at, list)) = app.archives.lock().expect("archives").clone()
        && at.elapsed() < ARCHIVES_FRESH
        && newest.is_none_or(|n| list.iter().any(|a| a.name == n))
    {
        return Ok(list);
    }
    let config = &app.config;
    let borg_config = borg::repository(config)?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let session = Session::open(config, &cancel).await?;
    let listed = borg::list_archives(&session.ssh, borg_config, &cancel).await;
    session.close().await;
    let list = listed?;
    *app.archives.lock().expect("archives") = Some((Instant::now(), list.clone()));
    Ok(list)
}

#[derive(Deserialize)]
pub struct ArchivesQuery {
    host: Option<String>,
}

#[derive(Template)]
#[template(path = "archives.html")]
struct Archives {
    layout: Layout,
    archives: Vec<(String, String, bool)>,
    hosts: Vec<String>,
    host: String,
    error: String,
}

/// The repository's archives (every host's, of a shared repository), with a host filter.
pub async fn archives(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Query(query): Query<ArchivesQuery>,
) -> Response {
    let layout = Layout::new(&app, &user, "Archives", "archives");
    let host = query.host.unwrap_or_default();
    let (list, error) = match list_archives(&app).await {
        Ok(list) => (list, String::new()),
        Err(e) => (Vec::new(), format!("{e:#}")),
    };
    let mut hosts: Vec<String> = list
        .iter()
        .filter_map(|a| a.name.rsplitn(4, '-').nth(3).map(String::from))
        .collect();
    hosts.sort();
    hosts.dedup();
    let archives = list
        .iter()
        .filter(|a| host.is_empty() || borg::of_prefix(&a.name, &host))
        .map(|a| {
            let indexed = catalog::index_path(&app.config.state_dir, &a.name).exists();
            (a.name.clone(), a.start.chars().take(19).collect(), indexed)
        })
        .collect();
    render(Archives {
        layout,
        archives,
        hosts,
        host,
        error,
    })
}

/// An entry of a folder, as the browser shows it.
pub struct EntryRow {
    /// Its name.
    pub name: String,
    /// Its path in the archive (its links).
    pub path: String,
    /// Whether it is a folder.
    pub dir: bool,
    /// Whether it can be downloaded as a file.
    pub file: bool,
    /// `drwxr-xr-x`.
    pub mode: String,
    /// Owner and group.
    pub owner: String,
    /// Its size (a folder's whole subtree).
    pub size: String,
    /// Its files (a folder's whole subtree).
    pub files: u64,
    /// Its time.
    pub time: String,
    /// A link's target.
    pub target: String,
    /// What restores it: see [`Restorable`].
    pub restore: Restorable,
}

/// What a restore of an archive's path names: the volume (or bind directory) and the path inside
/// it, or a compose project's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restorable {
    /// The volume, or `_bind-...`; empty for a project.
    pub volume: String,
    /// The path inside it; empty for all of it.
    pub inside: String,
    /// The compose project, for its `_project-...` directory.
    pub project: String,
}

impl Restorable {
    /// What restores `path` (an archive's path; empty: nothing, the top).
    fn of(path: &str) -> Option<Restorable> {
        let (top, inside) = path.split_once('/').unwrap_or((path, ""));
        if top.is_empty() {
            return None;
        }
        match top.strip_prefix(crate::engine::plan::PROJECT_PREFIX) {
            // A project comes back whole (its files, volumes and binds), never in part.
            Some(project) if inside.is_empty() => Some(Restorable {
                project: project.to_string(),
                ..Default::default()
            }),
            Some(_) => None,
            None => Some(Restorable {
                volume: top.to_string(),
                inside: inside.to_string(),
                project: String::new(),
            }),
        }
    }
}

#[derive(Template)]
#[template(path = "browse.html")]
struct Browse {
    layout: Layout,
    archive: String,
    path: String,
    crumbs: Vec<(String, String)>,
    entries: Vec<EntryRow>,
    total: u64,
    size: String,
    files: u64,
    previous: Option<u64>,
    next: Option<u64>,
    /// What restores this folder.
    restore: Option<Restorable>,
}

#[derive(Template)]
#[template(path = "indexing.html")]
struct IndexingPage {
    layout: Layout,
    archive: String,
    state: String,
    failed: bool,
}

#[derive(Deserialize)]
pub struct BrowseQuery {
    #[serde(default)]
    path: String,
    #[serde(default)]
    from: u64,
}

/// Entries per page of a folder.
const PAGE: u64 = 200;

/// A folder of an archive, from its index; an archive without one gets it built, with its
/// progress shown until it is ready.
pub async fn browse(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(archive): Path<String>,
    Query(query): Query<BrowseQuery>,
) -> Response {
    let mut layout = Layout::new(&app, &user, &format!("Archive {archive}"), "archives");
    if !archive
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c))
    {
        return (StatusCode::BAD_REQUEST, "not an archive name\n").into_response();
    }
    let index = catalog::index_path(&app.config.state_dir, &archive);
    if !index.exists() {
        let state = app.indexer.state(&archive);
        if !matches!(state, Some(Indexing::Failed(_)))
            && list_archives(&app)
                .await
                .is_ok_and(|l| l.iter().any(|a| a.name == archive))
        {
            app.indexer.index(&archive);
        }
        let (state, failed) = match app.indexer.state(&archive) {
            Some(Indexing::Reading(n)) => (format!("reading its listing: {n} items so far"), false),
            Some(Indexing::Queued) => ("waiting for another archive's index".into(), false),
            Some(Indexing::Failed(why)) => (why, true),
            None => ("the repository has no such archive".into(), true),
        };
        layout.refresh = !failed;
        return render(IndexingPage {
            layout,
            archive,
            state,
            failed,
        });
    }
    let path = query.path.trim_matches('/').to_string();
    let opened = Catalog::open(&index).and_then(|c| {
        let folder = c.folder(&path, query.from, PAGE)?;
        Ok((c, folder))
    });
    let (catalog, folder) = match opened {
        Ok((catalog, Some(folder))) => (catalog, folder),
        Ok((_, None)) => {
            return (StatusCode::NOT_FOUND, "the archive has no such folder\n").into_response();
        }
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response();
        }
    };
    let entries = folder
        .entries
        .iter()
        .map(|e| {
            let entry_path = if path.is_empty() {
                e.name.clone()
            } else {
                format!("{path}/{}", e.name)
            };
            EntryRow {
                name: e.name.clone(),
                restore: Restorable::of(&entry_path).unwrap_or_default(),
                path: entry_path,
                dir: e.kind == Kind::Dir,
                file: e.kind == Kind::File,
                mode: view::mode(e.mode),
                owner: format!(
                    "{}:{}",
                    catalog.names.user(e.uid),
                    catalog.names.group(e.gid)
                ),
                size: view::bytes(e.size),
                files: e.files,
                time: chrono::DateTime::from_timestamp_micros(e.mtime_us)
                    .map(|t| {
                        t.with_timezone(&app.config.tz)
                            .format("%Y-%m-%d %H:%M")
                            .to_string()
                    })
                    .unwrap_or_default(),
                target: e.target.clone().unwrap_or_default(),
            }
        })
        .collect();
    let mut crumbs = Vec::new();
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(part);
        crumbs.push((part.to_string(), at.clone()));
    }
    let from = folder.offset;
    render(Browse {
        layout,
        archive,
        restore: Restorable::of(&path),
        path,
        crumbs,
        entries,
        total: folder.total,
        size: view::bytes(folder.size),
        files: folder.files,
        previous: (from > 0).then(|| from.saturating_sub(PAGE)),
        next: (from + PAGE < folder.total).then_some(from + PAGE),
    })
}

#[derive(Template)]
#[template(path = "settings.html")]
struct Settings {
    layout: Layout,
    rows: Vec<(String, String)>,
}

/// The settings as the sidecar sees them; secrets show as whether they are set.
pub async fn settings(State(app): State<Arc<App>>, Extension(user): Extension<User>) -> Response {
    let c = &app.config;
    let set = |b: bool| if b { "set (hidden)" } else { "not set" }.to_string();
    let mut rows: Vec<(String, String)> = vec![
        ("BACKUP_REMOTE".into(), c.remote.destination()),
        ("BACKUP_REMOTE_DIR".into(), c.remote_dir.clone()),
        (
            "BACKUP_BORG_REPO".into(),
            c.borg.as_ref().map(|b| b.repo.clone()).unwrap_or_default(),
        ),
        (
            "BACKUP_BORG_PASSPHRASE".into(),
            set(c.borg.as_ref().is_some_and(|b| b.passphrase.is_some())),
        ),
        (
            "BACKUP_SYNC_SCHEDULE".into(),
            c.sync_schedule.pattern.to_string(),
        ),
        (
            "BACKUP_SNAPSHOT_SCHEDULE".into(),
            c.snapshot_schedule.pattern.to_string(),
        ),
        (
            "BACKUP_CHECK_SCHEDULE".into(),
            c.check_schedule.pattern.to_string(),
        ),
        ("TZ".into(), c.tz.to_string()),
        (
            "BACKUP_MAX_AGE".into(),
            humantime::format_duration(c.max_age).to_string(),
        ),
        (
            "BACKUP_PAUSE_TIMEOUT".into(),
            humantime::format_duration(c.pause_timeout).to_string(),
        ),
        ("BACKUP_EXCLUDE".into(), c.exclude.join(", ")),
        (
            "BACKUP_PROJECTS".into(),
            c.projects
                .as_ref()
                .map(|p| p.join(", "))
                .unwrap_or_default(),
        ),
        (
            "BACKUP_HOST_ROOT".into(),
            c.host_root
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("BACKUP_STATE_DIR".into(), c.state_dir.display().to_string()),
        (
            "BACKUP_NOTIFY_URLS".into(),
            c.notify_urls
                .iter()
                .map(|ch| ch.redacted().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "BACKUP_METRICS_ADDR".into(),
            c.metrics_addr.map(|a| a.to_string()).unwrap_or_default(),
        ),
    ];
    if let Some(web) = &c.web {
        rows.push(("BACKUP_WEB_ADDR".into(), web.addr.to_string()));
        rows.push(("BACKUP_WEB_PASSWORD".into(), set(app.auth.has_password())));
        rows.push((
            "BACKUP_WEB_AUTH_HEADER".into(),
            web.auth_header.clone().unwrap_or_default(),
        ));
        rows.push(("BACKUP_WEB_HOSTS".into(), web.hosts.join(", ")));
    }
    render(Settings {
        layout: Layout::new(&app, &user, "Settings", "settings"),
        rows,
    })
}
