//! backup-sidecar: mirrors labelled Docker volumes to a remote over ssh with rsync, holding their
//! containers still for only a short catch-up pass, and snapshots the mirror with borg.
//!
//! # Layout
//! Data flows one way: config -> engine (discover, plan, freeze) -> capture and remote (transfer,
//! snapshot) -> report -> ops. The folders, in that order:
//!
//! - [`config`]: the environment, read and validated once at start (raw, then typed), the
//!   notification channels among it.
//! - [`engine`]: the Docker side: discovery (and what the host has at bind sources and in compose
//!   files), the plan, the freeze and its journal, the containers that began to use a group
//!   mid-run, the restore helper. It never touches the remote.
//! - [`capture`]: local work while a group is frozen: the metadata scan or the change journal
//!   (inotify), what changed since the live pass, the copies in the staging area. It touches
//!   neither the engine nor the remote.
//! - [`remote`]: the ssh side, behind one object ([`remote::ssh::Ssh`]) that owns how the remote
//!   is spoken to: child processes, the connection, fault kinds, the guard's vocabulary, every
//!   command line, rsync passes, borg. It never touches the engine.
//! - [`catalog`]: an archive's index, built once from borg's listing into a file and read by
//!   seeking, so any folder of a million-file archive opens at once. It touches neither side.
//! - [`report`]: one value out of each run and verification, and the log events' names.
//! - [`ops`]: what tells the user how backups go, read from reports: log output,
//!   notifications, history, health, status, metrics, progress.
//! - [`tasks`]: the use cases that tie the sides together: one run, restore, verification,
//!   preflight, init, browsing archives, the web page, the schedule and the daemon loop; and where
//!   things live ([`tasks::layout`]).
//! - [`format`]: byte and duration formatting, shared by all.
//!
//! Arrows run down that list: neither side imports the other or a use case, and nothing imports
//! [`tasks`]. The library never handles signals: the binary turns them into a
//! [`CancellationToken`] and run requests, so tests can do the same.
//!
//! [`CancellationToken`]: tokio_util::sync::CancellationToken

pub(crate) mod capture;
pub(crate) mod catalog;
pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod format;
pub(crate) mod ops;
pub(crate) mod remote;
pub(crate) mod report;
pub(crate) mod tasks;

pub use config::{Config, ConfigError};
pub use ops::logging::init as init_logging;
pub use ops::{
    health_command as health, notify_test_command as notify_test, status_command as status,
};
pub use report::{Trigger, TriggerKind};
pub use tasks::app::{daemon, on_this_host};
pub use tasks::browse::ls;
pub use tasks::check::{check, print_plan};
pub use tasks::init::{InitRequest, init};
pub use tasks::request::backup;
pub use tasks::restore::{
    Request as RestoreRequest, Source as RestoreSource, What as RestoreWhat, restore, snapshots,
};

/// The archive index, for its benchmark (`benches/catalog.rs`); not an API.
#[doc(hidden)]
pub mod bench {
    pub use crate::catalog::{Builder, Catalog, RUN_BYTES};
}
