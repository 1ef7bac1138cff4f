//! Which host a mirror directory belongs to. The first host to mirror into `BACKUP_REMOTE_DIR`
//! writes its name into [`HOST_MARKER`] there; a host with another name configured into the same
//! directory is refused before it changes anything, since its snapshots would hold the other
//! host's volumes as its own.

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use crate::remote::commands::HOST_MARKER;
use crate::remote::fault::{Fault, RemoteError, classify};
use crate::remote::ssh::Ssh;

/// Checks that `dir` is `host`'s mirror, or claims it when nobody has. A missing `dir` is made
/// only when `make` (the `{host}` of a per-host layout, whose parent must exist); otherwise it is
/// the `remote_dir_missing` fault, as before (an unmounted disk must not be written to).
pub async fn claim(
    ssh: &Ssh,
    dir: &str,
    host: &str,
    make: bool,
    cancel: &CancellationToken,
) -> Result<()> {
    let done = ssh.run(&ssh.claim(dir, host, make), None, cancel).await?;
    let fault = |fault, message| RemoteError { fault, message };
    match done.code {
        Some(0) => {
            if done.stdout.trim() == "claimed" {
                tracing::info!(dir, host, "claimed the mirror directory for this host");
            }
            Ok(())
        }
        Some(5) => {
            let owner = done.stdout.trim();
            Err(fault(
                Fault::MirrorTaken,
                format!(
                    "BACKUP_REMOTE_DIR {dir} is the mirror of host {owner}, and this host is \
                     {host}: give each host its own directory (BACKUP_REMOTE_DIR=.../{{host}}); \
                     if {owner} is gone and this host takes its place, remove {dir}/{HOST_MARKER} \
                     on the remote"
                ),
            )
            .into())
        }
        Some(6) => Err(fault(
            Fault::RemoteDirMissing,
            format!("BACKUP_REMOTE_DIR {dir} does not exist on the remote (is its disk mounted?)"),
        )
        .into()),
        code => Err(classify("claiming the mirror directory", code, &done.stderr).into()),
    }
}
