//! Operations: what tells the user how backups go.
//!
//! - [`notify`]: notifications over ntfy, Gotify, healthchecks, Uptime Kuma, Slack-style
//!   webhooks, mail and a generic JSON webhook.

// The daemon wires notifications in the next commit; until then only the tests and the
// configuration use this.
#[cfg_attr(not(test), allow(dead_code, unused_imports))]
pub mod notify;
