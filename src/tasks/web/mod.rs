//! The web page (`BACKUP_WEB_ADDR`): one more reader of what the daemon already knows, like
//! `status` and the metrics, and a place to ask for what the commands do. Handlers are thin: they
//! read the history, the plan and the archive indexes, or call the same code the commands do (a
//! restore from the page runs `backup-sidecar restore` itself, its dry run first), and render
//! server-side HTML that reads without JavaScript; a small script only makes progress live.
//!
//! - [`auth`]: who may use it: password or forward auth, sessions, CSRF, allowed hosts.
//! - [`pages`]: what it shows (overview, history, a run, sources, archives, an archive's
//!   folders, settings).
//! - [`actions`]: what it does (run, verify, restore, download) and the live progress.
//! - [`view`]: times in the sidecar's zone, sizes, and the history's plots as SVG.

mod actions;
pub mod auth;
mod pages;
mod view;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, Secret};
use crate::ops::history::Store;
use crate::remote::borg::ArchiveEntry;
use crate::report::Trigger;
use crate::tasks::browse::Indexer;
use auth::{Auth, User};

/// What the handlers share.
pub struct App {
    /// The daemon's configuration (the password taken out).
    pub config: Config,
    /// The run history and the run in progress.
    pub store: Store,
    /// Who may use the page.
    pub auth: Auth,
    /// Asks the daemon for a run.
    pub runs: mpsc::UnboundedSender<Trigger>,
    /// Asks the daemon for a verification.
    pub checks: mpsc::UnboundedSender<()>,
    /// Builds archive indexes.
    pub indexer: Indexer,
    /// The engine's host name.
    pub host: String,
    /// The Docker engine, for the plan the sources page shows.
    pub docker: bollard::Docker,
    /// The repository's archives, as last listed, and when.
    archives: Mutex<Option<(Instant, Vec<ArchiveEntry>)>>,
}

impl App {
    /// The page's state: what asks the daemon for runs and verifications, the index builder, and
    /// the engine's name and client.
    pub fn new(
        config: Config,
        password: Option<Secret>,
        store: Store,
        (runs, checks): (mpsc::UnboundedSender<Trigger>, mpsc::UnboundedSender<()>),
        indexer: Indexer,
        (host, docker): (String, bollard::Docker),
    ) -> App {
        let auth = Auth::new(
            config.web.as_ref().expect("the page is configured"),
            password,
        );
        App {
            config,
            store,
            auth,
            runs,
            checks,
            indexer,
            host,
            docker,
            archives: Mutex::default(),
        }
    }
}

/// Binds the page's address: a port in use stops the sidecar at start.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on BACKUP_WEB_ADDR {addr}"))
}

/// Serves the page until `cancel` fires.
pub async fn serve(listener: TcpListener, app: Arc<App>, cancel: CancellationToken) {
    let router = Router::new()
        .route("/", get(pages::overview))
        .route("/history", get(pages::history))
        .route("/runs/{number}", get(pages::run))
        .route("/sources", get(pages::sources))
        .route("/archives", get(pages::archives))
        .route("/archives/{archive}", get(pages::browse))
        .route("/download/{archive}", get(actions::download))
        .route("/settings", get(pages::settings))
        .route("/progress", get(actions::progress))
        .route("/events", get(actions::events))
        .route("/actions/run", post(actions::run))
        .route("/actions/verify", post(actions::verify))
        .route("/restore", post(actions::restore))
        .route("/logout", post(actions::logout))
        .route_layer(middleware::from_fn_with_state(app.clone(), signed_in))
        .route("/login", get(pages::login_form).post(actions::login))
        .route("/static/style.css", get(style))
        .route("/static/app.js", get(script))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app);
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(cancel.cancelled_owned())
    .await;
    if let Err(e) = served {
        warn!(error = %e, "the web page stopped");
    }
}

/// The peer's address, as the engine's network shows it.
fn peer(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Every request: a host the page answers to, a change only from the page itself; and the
/// headers that keep the page out of frames and its cookies and content where they belong.
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if !app.auth.host_allowed(request.headers()) {
        let hosts = app.auth.hosts().join(", ");
        return (
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "This page answers to {hosts}. To reach it by another name, add the name to \
                 BACKUP_WEB_HOSTS.\n"
            ),
        )
            .into_response();
    }
    if request.method() == Method::POST && !app.auth.same_origin(request.headers()) {
        warn!(path = %request.uri().path(), peer = %peer(&request), "web: a change from another site was refused");
        return (
            StatusCode::FORBIDDEN,
            "refused: this change did not come from this page\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The pages behind the login: the user goes into the request, or the browser to the login.
async fn signed_in(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    match app.auth.user(request.headers(), peer(&request)) {
        Some(user) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        None if request.method() == Method::GET
            && !request.uri().path().starts_with("/download")
            && request.uri().path() != "/events"
            && request.uri().path() != "/progress" =>
        {
            Redirect::to("/login").into_response()
        }
        None => (StatusCode::UNAUTHORIZED, "refused: not signed in\n").into_response(),
    }
}

/// Checks a form's CSRF token against the session's.
fn csrf_ok(user: &User, token: &str) -> bool {
    auth::same_token(&user.csrf, token)
}

/// A rendered template, or a plain error.
fn render(template: impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the page could not be rendered: {e}\n"),
        )
            .into_response(),
    }
}

/// Logs an action with who did it.
fn log_action(user: &User, action: &str, detail: &str) {
    info!(user = %user.name, action, detail, "web action");
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../static/style.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../static/app.js"),
    )
}
