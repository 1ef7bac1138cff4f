//! backup-sidecar: mirrors labelled Docker volumes to a remote over ssh with rsync, holding their
//! containers still for only a short catch-up pass, and snapshots the mirror with borg.
//!
//! # Layout
//! Data flows one way; each module is one concern:
//!
//! - [`config`]: the environment, read and validated once at start (two stages: raw, then typed).
//! - [`discover`]: what the Docker engine has (volumes, containers), through bollard.
//! - [`plan`]: pure; volumes and containers in, freeze groups out. `backup-sidecar plan` prints it.
//! - [`freeze`]: pause or stop a group around a piece of work and thaw on every path; the freeze
//!   journal that lets a restart undo a crash.
//! - [`fault`]: remote failures classified: the network (retried) or the remote's state (not).
//! - [`process`]: child processes in their own process group, drained, killed as a group.
//! - [`ssh`]: one multiplexed connection per run with the pinned host key; remote command lines.
//! - [`transfer`]: one rsync pass of one volume.
//! - [`snapshot`]: `borg create`, `prune`, `compact` on the remote; listing the archives.
//! - [`run`]: one run: plan, live pass, freeze + catch-up pass, snapshot, summary line.
//! - [`restore`]: a volume back from the mirror or an archive, in place or into another volume.
//! - [`schedule`]: when the next run is due.
//! - [`verify`]: `borg check` and a spot check of the newest archive against the mirror.
//! - [`app`]: the daemon loop: schedule, start and signal triggers, one run at a time.
//! - [`check`]: the preflight command.
//! - [`helper`]: the short-lived container a restore writes through.
//! - [`logging`]: text or JSON logs.
//!
//! The library never handles signals: the binary turns them into a [`CancellationToken`] and run
//! requests, so tests can do the same.
//!
//! [`CancellationToken`]: tokio_util::sync::CancellationToken

pub mod app;
pub mod check;
pub mod config;
pub mod discover;
pub mod fault;
pub mod freeze;
pub mod helper;
pub mod logging;
pub mod plan;
pub mod process;
pub mod restore;
pub mod run;
pub mod schedule;
pub mod snapshot;
pub mod ssh;
pub mod transfer;
pub mod verify;
