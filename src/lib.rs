//! backup-sidecar: mirrors labelled Docker volumes to a remote over ssh with rsync, holding their
//! containers still for only a short catch-up pass, and snapshots the mirror with borg.
//!
//! # Layout
//! Data flows one way: config -> discover -> plan -> freeze (capture) and transfer -> snapshot ->
//! report.
//!
//! - [`config`]: the environment, read and validated once at start (raw, then typed).
//! - [`engine`]: the Docker side: discovery (and what the host has at bind sources), the plan
//!   (volumes, bind directories, compose project files), the freeze and its journal, the restore
//!   helper container. It never touches the remote.
//! - [`capture`]: local work while a group is frozen: the metadata scan, what changed since the
//!   live pass, the copies in the staging area. It touches neither the engine nor the remote.
//! - [`remote`]: the ssh side: child processes, the connection, fault kinds, the guarded remote's
//!   vocabulary, which host a mirror directory belongs to, rsync passes (the upload of a
//!   capture's copies too), borg. It never touches the engine.
//! - [`ops`]: operations, what tells the user how backups go: notifications, read from reports.
//! - The use cases tie the two together: [`run`] (one backup run, and a project's files copied
//!   for it), [`restore`] (a volume, a bind directory or a whole compose project back, and the
//!   archive listing), [`verify`] (borg check and a spot check), [`check`] (preflight and the
//!   printed plan), [`init`] (the remote prepared and its key narrowed to the guard),
//!   [`schedule`] (when runs are due), [`app`] (the daemon loop).
//! - [`report`]: one value out of each run and verification; [`ops`] hands it to the outputs (log,
//!   history, notifications, metrics) and answers `status` and `health` from the history.
//! - [`layout`]: where things live in the state directory, below the host root and in a project's
//!   mirror directory.
//! - [`lock`], [`format`], [`events`], [`logging`]: the run lock, number formatting, the log
//!   events' names, log output.
//!
//! Neither side imports the other or a use case. The library never handles signals: the binary
//! turns them into a [`CancellationToken`] and run requests, so tests can do the same.
//!
//! [`CancellationToken`]: tokio_util::sync::CancellationToken

pub(crate) mod app;
pub(crate) mod capture;
pub(crate) mod check;
pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod events;
pub(crate) mod format;
pub(crate) mod init;
pub(crate) mod layout;
pub(crate) mod lock;
pub(crate) mod logging;
pub(crate) mod ops;
pub(crate) mod remote;
pub(crate) mod report;
pub(crate) mod restore;
pub(crate) mod run;
pub(crate) mod schedule;
pub(crate) mod verify;

pub use app::{daemon, on_this_host};
pub use check::{check, print_plan};
pub use config::{Config, ConfigError};
pub use init::{InitRequest, init};
pub use logging::init as init_logging;
pub use ops::{
    health_command as health, notify_test_command as notify_test, status_command as status,
};
pub use restore::{
    Request as RestoreRequest, Source as RestoreSource, What as RestoreWhat, restore, snapshots,
};
pub use schedule::{Trigger, TriggerKind};
