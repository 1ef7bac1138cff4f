//! The use cases: each ties the engine, the capture and the remote together for one thing the
//! sidecar does, and hands its report to the outputs. Nothing below imports them.
//!
//! - [`app`]: the daemon: repairs what a crash left frozen, then runs on schedule and on request.
//! - [`browse`]: archive indexes, built after each snapshot or on first open, and `ls`.
//! - [`schedule`]: a trigger when a run is due, a tick when a verification is.
//! - [`run`]: one backup run, in steps (prepare, each group, finish).
//! - [`request`]: `backup [--wait]`, a run asked for from a shell.
//! - [`restore`]: a volume, a bind directory or a whole compose project back, and the archive
//!   listing.
//! - [`copy`]: the remote's second copy, after snapshots or on its schedule, and its check.
//! - [`verify`]: `borg check` and a spot check of the newest archive against the mirror.
//! - [`check`]: preflight, and the printed plan.
//! - [`init`]: the remote prepared once, and its key narrowed to the guard.
//! - [`lock`]: one run, verification or restore at a time.
//! - [`web`]: the web page, a reader of all of the above and a way to ask for runs and restores.
//! - [`layout`]: where things live in the state directory, below the host root and in a
//!   project's mirror directory.

pub mod app;
pub mod browse;
pub mod check;
pub mod copy;
pub mod init;
pub mod layout;
pub mod lock;
pub mod request;
pub mod restore;
pub mod run;
pub mod schedule;
pub mod verify;
pub mod web;
