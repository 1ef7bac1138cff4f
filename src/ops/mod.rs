//! Operations: what tells the user how backups go, read from the reports runs produce.
//!
//! - [`history`]: the run history in the state directory (atomic writes), the daemon's heartbeat
//!   and the run in progress.
//! - [`metrics`]: Prometheus metrics rendered from the history, served over HTTP.

// Both are wired into the daemon next; until then only their tests call them.
#[cfg_attr(not(test), allow(dead_code))]
pub mod history;
#[cfg_attr(not(test), allow(dead_code))]
pub mod metrics;
