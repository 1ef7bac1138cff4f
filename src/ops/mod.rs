//! Operations: what tells the user how backups go, read from the reports runs produce.
//!
//! - [`history`]: the run history in the state directory (atomic writes), the daemon's heartbeat
//!   and the run in progress.

pub mod history;
