//! The remote side: everything that runs over ssh. It never talks to the Docker engine.
//!
//! - [`process`]: child processes in their own process group, drained, killed as a group.
//! - [`ssh`]: one multiplexed connection per run with the pinned host key.
//! - [`fault`]: failures classified into kinds: the network (retried) or the remote's state (not).
//! - [`guard`]: the guarded remote's vocabulary, and finding whether a remote is guarded.
//! - [`commands`]: every command line and rsync argv sent to the remote, built in one place.
//! - [`transfer`]: one rsync pass of one volume.
//! - [`borg`]: snapshot (`borg create`, `prune`, `compact`) and archive listings.
//! - [`copy`]: the second copy the guard makes to a place its owner configured, and its check.
//! - [`install`]: the scripts `init` sends to install the guard on a remote.

pub mod borg;
pub mod claim;
pub mod commands;
pub mod copy;
pub mod fault;
pub mod guard;
pub mod install;
pub mod process;
pub mod ssh;
pub mod transfer;
