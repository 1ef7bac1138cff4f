//! The names of the log events that users, the tests and the benchmarks read: part of the
//! product's contract (SPEC.md), so they live in one place and never change by accident.

/// A run began.
pub const RUN_STARTED: &str = "run started";
/// A run ended, with its outcome and summary.
pub const RUN_FINISHED: &str = "run finished";
/// A volume's mirror is current.
pub const VOLUME_SYNCED: &str = "volume synced";
/// A volume could not be mirrored.
pub const VOLUME_FAILED: &str = "volume failed";
/// A volume that was asked for is not backed up.
pub const VOLUME_SKIPPED: &str = "volume skipped";
/// A long pass's progress: bytes, percent, rate, ETA.
pub const PROGRESS: &str = "progress";
/// A group's containers run again.
pub const GROUP_THAWED: &str = "group thawed";
/// Containers began to use a group after its plan, unfrozen: the group is done again with them
/// frozen (fields `group`, `containers`, `attempt`).
pub const GROUP_REDONE: &str = "group redone";
/// A scheduled full pass compared the mirror with what the change journal named.
pub const JOURNAL_CHECKED: &str = "journal checked";
/// `borg create` made an archive.
pub const SNAPSHOT_CREATED: &str = "snapshot created";
/// The remote began bringing its second copy up to date (fields `kind`, `target`).
pub const COPY_STARTED: &str = "copy started";
/// A copy ended (fields `outcome`, `kind`, `target`, `newest_archive`, `bytes`, `files`,
/// `seconds`; `error` and `cause` when it failed).
pub const COPY_FINISHED: &str = "copy finished";
/// A check of the second copy ended (fields `outcome`, `kind`, `target`, `differences`, `matched`,
/// `hashes`; `error` and `cause` when it failed).
pub const COPY_CHECKED: &str = "copy checked";
/// A verification ended.
pub const VERIFICATION_FINISHED: &str = "verification finished";
/// A restore ended.
pub const VOLUME_RESTORED: &str = "volume restored";
/// A whole project's restore ended (fields `project`, `items`, `seconds`).
pub const PROJECT_RESTORED: &str = "project restored";
/// A notification could not be delivered after its tries (fields `channel`, redacted, and
/// `error`).
pub const NOTIFICATION_FAILED: &str = "notification failed";
/// The remote's key opens a shell there, not only the guard's vocabulary (fields `remote`, `risk`,
/// `fix`); logged once per process.
pub const REMOTE_UNGUARDED: &str = "remote unguarded";
