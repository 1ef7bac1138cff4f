//! The engine side: everything that talks to the Docker engine. It never reaches the remote.
//!
//! - [`discover`]: volumes and containers, read through bollard, as plain data.
//! - [`compose_file`]: the files a project's compose files name (env files, includes).
//! - [`plan`]: pure; volumes and containers in, freeze groups out.
//! - [`containers`]: the seam in front of the engine: pause, unpause, stop, start, inspect.
//! - [`freeze`]: pause or stop a group around a piece of work, thaw on every path.
//! - [`journal`]: what is frozen, on disk first, so a restart can undo a crash.
//! - [`newcomers`]: containers that began to use a group mid-run, unfrozen: the group is redone.
//! - [`helper`]: the short-lived container a restore writes through.
//! - [`exec`]: the labelled commands run inside an app's container before and after its backup.

pub mod compose_file;
pub mod containers;
pub mod discover;
pub mod exec;
pub mod freeze;
pub mod helper;
pub mod journal;
pub mod newcomers;
pub mod plan;
